// The LLM engine on real models against independent references: PyTorch logits in each fixture's
// reference.json (1e-4 absolute), llama.cpp's llama-perplexity figures (0.1 %), GGUF ≡ HF for
// stories260K, batched ≡ incremental decoding, KLD of a run against itself, and clear errors.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>

#include <nlohmann/json.hpp>

#include "cq/error.h"
#include "cq/eval.h"
#include "cq/llm.h"
#include "test_support.h"

namespace cq {
namespace {

namespace fs = std::filesystem;

nlohmann::json reference(const std::string& model_dir) {
    std::ifstream in(test::fixture("models/" + model_dir + "/reference.json"));
    return nlohmann::json::parse(in);
}

std::string read_eval_text() {
    // As llama.cpp's -f: the whole file with one trailing newline removed.
    const auto bytes = test::read_bytes(test::fixture("data/tinystories_valid_subset.txt"));
    std::string text(bytes.begin(), bytes.end());
    if (!text.empty() && text.back() == '\n') text.pop_back();
    return text;
}

const std::string kStoriesGguf = "models/stories260K-gguf/stories260K.gguf";
const std::string kStoriesHf = "models/stories260K-hf";
const std::string kGpt2 = "models/gpt2-tiny-stories";

void expect_reference_logits(const std::string& model_path, const std::string& ref_dir) {
    auto model = LanguageModel::load(test::fixture(model_path));
    const auto ref = reference(ref_dir);
    for (const auto& p : ref["prompts"]) {
        const std::vector<int32_t> ids = p["ids"].get<std::vector<int32_t>>();
        EXPECT_EQ(model->tokenizer().encode(p["prompt"].get<std::string>(), model->tokenizer().adds_bos()), ids) << p["prompt"];
        std::vector<float> logits(static_cast<size_t>(model->config().n_vocab));
        model->forward(ids, 0, logits, false);
        const auto expected = p["last_logits"].get<std::vector<double>>();
        ASSERT_EQ(expected.size(), logits.size());
        double max_diff = 0;
        size_t worst = 0;
        for (size_t i = 0; i < logits.size(); ++i) {
            const double d = std::abs(logits[i] - expected[i]);
            if (d > max_diff) max_diff = d, worst = i;
        }
        EXPECT_LT(max_diff, 1e-4) << model_path << " prompt '" << p["prompt"] << "': logit " << worst << " = " << logits[worst]
                                  << ", reference " << expected[worst];
        EXPECT_EQ(std::max_element(logits.begin(), logits.end()) - logits.begin(), p["argmax"].get<int64_t>());
    }
}

TEST(LlmLogits, Stories260KGgufMatchesPyTorch) { expect_reference_logits(kStoriesGguf, "stories260K-hf"); }
TEST(LlmLogits, Stories260KHfMatchesPyTorch) { expect_reference_logits(kStoriesHf, "stories260K-hf"); }
TEST(LlmLogits, Gpt2MatchesPyTorch) { expect_reference_logits(kGpt2, "gpt2-tiny-stories"); }

TEST(LlmLogits, IncrementalDecodingEqualsOneBatch) {
    for (const std::string& path : {kStoriesGguf, kGpt2}) {
        auto model = LanguageModel::load(test::fixture(path));
        const int64_t V = model->config().n_vocab;
        const std::vector<int32_t> ids = model->tokenizer().encode("Lily and Ben went to the park. They saw a big dog and", true);
        std::vector<float> batch(ids.size() * static_cast<size_t>(V));
        model->forward(ids, 0, batch, true);
        std::vector<float> one(static_cast<size_t>(V));
        for (size_t t = 0; t < ids.size(); ++t) {
            model->forward(std::span(ids).subspan(t, 1), static_cast<int64_t>(t), one, false);
            // The batch runs other GEMM shapes (and so other summation orders) than one token at a time: float rounding,
            // relative to the logit's size (measured 2.0e-5 at |logit| 5.9 on an AVX2 Zen CPU; 2.04e-5 at |logit| 0.002 on
            // Zen 4 once decoding's scores became a 16-lane GEMV, so the absolute part is 3e-5).
            for (int64_t v = 0; v < V; ++v) {
                const float want = batch[t * static_cast<size_t>(V) + static_cast<size_t>(v)];
                ASSERT_NEAR(one[static_cast<size_t>(v)], want, 3e-5 + 4e-6 * std::fabs(want)) << path << " position " << t << " token " << v;
            }
        }
    }
}

// A prompt longer than the micro-batch runs in pieces; every position, and the last-only logits, must
// equal one batch of the whole prompt.
TEST(LlmLogits, MicroBatchedPromptEqualsOneBatch) {
    for (const std::string& path : {kStoriesGguf, kGpt2}) {
        LoadOptions one_batch, pieces;
        one_batch.n_ctx = pieces.n_ctx = 200;
        pieces.micro_batch = 61;  // 200 = 3 × 61 + 17: uneven pieces
        auto a = LanguageModel::load(test::fixture(path), one_batch);
        auto b = LanguageModel::load(test::fixture(path), pieces);
        const int64_t V = a->config().n_vocab;
        std::vector<int32_t> ids;
        const std::vector<int32_t> sentence = a->tokenizer().encode(" Lily and Ben went to the park. They saw a big dog.", false);
        while (ids.size() < 200) ids.insert(ids.end(), sentence.begin(), sentence.end());
        ids.resize(200);
        std::vector<float> whole(ids.size() * static_cast<size_t>(V)), split(whole.size());
        a->forward(ids, 0, whole, true);
        b->forward(ids, 0, split, true);
        // Pieces of another length take other GEMM blockings, so sums come in another order: equal to 2e-5 relative to
        // the logit's size (the AVX2 rung's OpenBLAS differs by 1.9e-6 relative at logit 12.7).
        const auto tol = [](float x) { return 2e-5 * std::max(1.0, std::fabs(static_cast<double>(x))); };
        for (size_t i = 0; i < whole.size(); ++i) ASSERT_NEAR(whole[i], split[i], tol(whole[i])) << path << " element " << i;
        std::vector<float> last(static_cast<size_t>(V));
        b->forward(ids, 0, last, false);
        for (int64_t v = 0; v < V; ++v) {
            const float w = whole[(ids.size() - 1) * static_cast<size_t>(V) + static_cast<size_t>(v)];
            ASSERT_NEAR(last[static_cast<size_t>(v)], w, tol(w)) << path;
        }
    }
    LoadOptions bad;
    bad.micro_batch = 0;
    EXPECT_THROW(LanguageModel::load(test::fixture(kStoriesGguf), bad), InvalidArgument);
}

struct PplCase {
    std::string model;
    int64_t n_ctx;
    double llamacpp_ppl;  // llama-perplexity on the same text (fixtures' reference.json)
    int64_t chunks;
    bool lf_text = false;  // evaluate the text with CRLF turned into LF
};

TEST(LlmPerplexity, MatchesLlamaCpp) {
    const std::string text = read_eval_text();
    const auto stories = reference("stories260K-hf")["perplexity"]["llamacpp"];
    const auto gpt2 = reference("gpt2-tiny-stories")["perplexity"]["llamacpp_crosscheck"];
    const PplCase cases[] = {
        {kStoriesGguf, 128, stories["128"]["ppl"].get<double>(), stories["128"]["chunks"].get<int64_t>()},
        {kStoriesGguf, 256, stories["256"]["ppl"].get<double>(), stories["256"]["chunks"].get<int64_t>()},
        {kStoriesHf, 128, stories["128"]["ppl"].get<double>(), stories["128"]["chunks"].get<int64_t>()},
        {kStoriesHf, 256, stories["256"]["ppl"].get<double>(), stories["256"]["chunks"].get<int64_t>()},
        // The GPT-2 figures (torch 118.5274, llama.cpp 118.5284, 7177 tokens) were computed on the file
        // read in Python text mode, i.e. with CRLF → LF; on the raw CRLF bytes the text is 7195 tokens.
        {kGpt2, 256, gpt2["llamacpp_ppl"].get<double>(), gpt2["chunks"].get<int64_t>(), true},
    };
    for (const auto& c : cases) {
        LoadOptions lo;
        lo.n_ctx = c.n_ctx;
        auto model = LanguageModel::load(test::fixture(c.model), lo);
        PerplexityOptions po;
        po.n_ctx = c.n_ctx;
        std::string lf;
        if (c.lf_text) std::copy_if(text.begin(), text.end(), std::back_inserter(lf), [](char ch) { return ch != '\r'; });
        const auto r = evaluate_perplexity(*model, c.lf_text ? lf : text, po);
        EXPECT_EQ(r.n_chunks, c.chunks) << c.model << " ctx " << c.n_ctx;
        EXPECT_NEAR(r.ppl, c.llamacpp_ppl, 1e-3 * c.llamacpp_ppl) << c.model << " ctx " << c.n_ctx;
        EXPECT_GT(r.ppl_err, 0.0);
    }
}

TEST(LlmPerplexity, KldAgainstItselfIsZero) {
    const std::string text = read_eval_text();
    const auto dir = fs::temp_directory_path() / ("cq_kld_" + std::to_string(::getpid()));
    fs::create_directories(dir);
    const std::string base = (dir / "base.logits").string();
    LoadOptions lo;
    lo.n_ctx = 128;
    auto model = LanguageModel::load(test::fixture(kStoriesGguf), lo);
    PerplexityOptions po;
    po.n_ctx = 128;
    po.max_chunks = 10;
    po.save_logits = base;
    const auto saved = evaluate_perplexity(*model, text, po);
    ASSERT_TRUE(fs::exists(base));
    po.save_logits.clear();
    po.kld_base = base;
    // The HF twin of the same weights (different RoPE pairing, permuted q/k) must agree to rounding.
    auto hf = LanguageModel::load(test::fixture(kStoriesHf), lo);
    for (LanguageModel* m : {model.get(), hf.get()}) {
        const bool same_model = m == model.get();
        const auto r = evaluate_perplexity(*m, text, po);
        ASSERT_TRUE(r.kld);
        // The same model reproduces its logits bit for bit; the HF twin differs only by float rounding.
        EXPECT_LE(r.kld->mean, same_model ? 0.0 : 1e-6) << m->path();
        EXPECT_LE(r.kld->max, same_model ? 0.0 : 1e-5) << m->path();
        EXPECT_EQ(r.kld->same_top, 1.0);
        EXPECT_NEAR(r.kld->base_ppl, saved.ppl, 1e-9 * saved.ppl);
        EXPECT_NEAR(r.kld->ppl_ratio, 1.0, 1e-6);
        EXPECT_EQ(r.kld->n, saved.n_scored);
    }
    // A different context length is refused with a clear message.
    po.n_ctx = 64;
    LoadOptions lo64;
    lo64.n_ctx = 64;
    auto m64 = LanguageModel::load(test::fixture(kStoriesGguf), lo64);
    EXPECT_THROW(evaluate_perplexity(*m64, text, po), InvalidArgument);
    fs::remove_all(dir);
}

TEST(LlmGenerate, GreedyIsDeterministicAndSamplingFollowsSeed) {
    auto model = LanguageModel::load(test::fixture(kStoriesGguf));
    SamplingOptions greedy;
    const auto a = generate(*model, "Once upon a time", 32, greedy);
    const auto b = generate(*model, "Once upon a time", 32, greedy);
    EXPECT_EQ(a.tokens, b.tokens);
    ASSERT_FALSE(a.tokens.empty());
    EXPECT_EQ(a.tokens[0], reference("stories260K-hf")["prompts"][0]["argmax"].get<int32_t>());  // ","
    SamplingOptions s;
    s.temperature = 0.8f, s.top_k = 40, s.top_p = 0.95f, s.seed = 7;
    const auto c = generate(*model, "Once upon a time", 32, s);
    const auto d = generate(*model, "Once upon a time", 32, s);
    EXPECT_EQ(c.tokens, d.tokens);
    s.seed = 8;
    EXPECT_NE(generate(*model, "Once upon a time", 32, s).tokens, c.tokens);
}

TEST(LlmGenerate, Greedy64TokensEqualLlamaCpp) {
    const auto bytes = test::read_bytes(test::tests_dir() + "/expected/llamacpp_greedy/stories260K-once-upon-a-time-64.txt");
    std::string expected(bytes.begin(), bytes.end());
    while (!expected.empty() && (expected.back() == '\n' || expected.back() == ' ')) expected.pop_back();
    auto model = LanguageModel::load(test::fixture(kStoriesGguf));
    const auto r = generate(*model, "Once upon a time", 64, SamplingOptions{});
    EXPECT_EQ(r.tokens.size(), 64u);
    std::string got = "Once upon a time" + r.text;
    while (!got.empty() && (got.back() == '\n' || got.back() == ' ')) got.pop_back();
    EXPECT_EQ(got, expected);
}

TEST(LlmErrors, ClearMessagesForBadInput) {
    auto model = LanguageModel::load(test::fixture(kStoriesGguf));
    PerplexityOptions po;
    po.n_ctx = 128;
    try {
        evaluate_perplexity(*model, "Once upon a time there was a tiny text.", po);
        FAIL() << "a text shorter than two chunks must be refused";
    } catch (const InvalidArgument& e) {
        EXPECT_NE(std::string(e.what()).find("needs at least 256"), std::string::npos) << e.what();
    }
    LoadOptions too_long;
    too_long.n_ctx = 100000;
    EXPECT_THROW(LanguageModel::load(test::fixture(kStoriesGguf), too_long), InvalidArgument);
    try {
        LanguageModel::load(test::fixture("models/bert-tiny-sst2"));
        FAIL() << "bert is not a decoder";
    } catch (const Unsupported& e) {
        const std::string msg = e.what();
        EXPECT_NE(msg.find("'bert'"), std::string::npos) << msg;
        EXPECT_NE(msg.find("llama"), std::string::npos) << msg;
        EXPECT_NE(msg.find("gpt2"), std::string::npos) << msg;
    }
    // An HF directory without its tokenizer.model.
    const auto dir = fs::temp_directory_path() / ("cq_notok_" + std::to_string(::getpid()));
    fs::create_directories(dir);
    for (const char* f : {"config.json", "model.safetensors"}) fs::copy_file(test::fixture(kStoriesHf + "/" + f), dir / f);
    EXPECT_THROW(LanguageModel::load(dir.string()), Error);
    fs::remove_all(dir);
}

}  // namespace
}  // namespace cq
