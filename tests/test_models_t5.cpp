// T5 (issue 20) against Hugging Face transformers: four tiny random T5ForConditionalGeneration models from
// scripts/make_family_references.py (v1.0 relu / tied head and v1.1 gated-gelu / untied, two configs each), their
// SentencePiece ids, the relative position buckets, teacher-forced logits to 3e-5, greedy generations identical (KV cache
// against the full recomputation too), the pair loss, the same bytes at 1 and 3 threads, W8A8 in memory, clear errors and
// the CLI. Suites are named families_t5 so that `ctest -R families` selects them.
#include <sys/wait.h>

#include "cq/layer_stats.h"
#include "cq/w8a8.h"
#include "models/seq2seq_internal.h"
#include "ops/ops.h"
#include "seq2seq_test_support.h"

namespace cq {
namespace {

using namespace test::seq2seq;

struct T5Case {
    const char* name;
    int64_t enc_layers, dec_layers;
    bool gated;
};
// t5-tiny-random:    d 32, d_kv 8 × 4 heads, FFN 64, 2 + 2 layers, 32 buckets up to 128, relu, tied
// t5-random-b:       d 24, d_kv 10 × 3 heads (30 ≠ 24), FFN 40, 1 + 3 layers, 8 buckets up to 20, eps 1e-5, relu, tied
// t5v11-tiny-random: d 32, d_kv 16 × 2 heads, FFN 48, 2 + 1 layers, 16 buckets up to 32, gated-gelu, untied
// t5v11-random-b:    d 20, d_kv 6 × 4 heads (24 ≠ 20), FFN 36, 3 + 2 layers, 12 buckets up to 24, gated-gelu, untied
const T5Case kCases[] = {{"t5-tiny-random", 2, 2, false}, {"t5-random-b", 1, 3, false}, {"t5v11-tiny-random", 2, 1, true}, {"t5v11-random-b", 3, 2, true}};

void expect_t5_matches(const T5Case& c) {
    const std::string name = c.name;
    const auto model = Seq2SeqModel::load(family_dir(name));
    const nlohmann::json ref = read_json(family_dir(name) + "/reference.json");
    EXPECT_EQ(model->architecture(), "T5ForConditionalGeneration");
    EXPECT_EQ(model->n_blocks(), c.enc_layers + c.dec_layers);
    const int64_t ffn = c.gated ? 3 : 2;
    EXPECT_EQ(static_cast<int64_t>(model->linears().size()), (4 + ffn) * c.enc_layers + (8 + ffn) * c.dec_layers + 1) << name;
    // T5Tokenizer's ids: pieces </s>, no <s>
    for (size_t i = 0; i < ref["sources"].size(); ++i)
        EXPECT_EQ(model->tokenize(ref["sources"][i].get<std::string>()), source_of(ref, i)) << name << " source " << i;
    // transformers' bucket function over relative positions −300..300, both directions
    const Seq2SeqConfig& g = model->config();
    for (const bool bidirectional : {true, false}) {
        const auto want = ref[bidirectional ? "buckets_bidirectional" : "buckets_causal"].get<std::vector<int64_t>>();
        ASSERT_EQ(want.size(), 601u);
        for (int64_t r = -300; r <= 300; ++r)
            ASSERT_EQ(t5::relative_position_bucket(r, bidirectional, g.relative_buckets, g.relative_max_distance), want[static_cast<size_t>(r + 300)])
                << name << " relative position " << r << (bidirectional ? " (encoder)" : " (decoder)");
    }

    // Measured ≤ 7.5e-6 on the fast kernels and 1.05e-5 on the reference kernels (CQ_ISA=ref); the bar is 1e-4.
    expect_matches_reference(*model, ref, name, 3e-5);
}

TEST(families_t5, V10TinyMatchesTransformers) { expect_t5_matches(kCases[0]); }
TEST(families_t5, V10SecondConfigMatchesTransformers) { expect_t5_matches(kCases[1]); }
TEST(families_t5, V11TinyMatchesTransformers) { expect_t5_matches(kCases[2]); }
TEST(families_t5, V11SecondConfigMatchesTransformers) { expect_t5_matches(kCases[3]); }

TEST(families_t5, TeacherForcedLossOnPairsMatchesTransformers) {
    // the first 16 pairs of bart_pairs.tsv: the token count and the mean NLL transformers gave (labels = target </s>, one
    // pair at a time, sources whole: T5 has no position table)
    for (const T5Case& c : kCases) {
        const auto model = Seq2SeqModel::load(family_dir(c.name));
        const nlohmann::json ref = read_json(family_dir(c.name) + "/reference.json");
        const Seq2SeqEvalResult r = evaluate_pairs(*model, pairs_tsv(), 0, 16);
        EXPECT_EQ(r.pairs, 16);
        EXPECT_EQ(r.tokens, ref["pairs_tokens_16"].get<int64_t>()) << c.name;
        const double want = ref["pairs_nll_16"].get<double>() / ref["pairs_tokens_16"].get<double>();
        EXPECT_NEAR(r.mean_nll, want, 2e-6) << c.name;
        std::printf("%s: teacher-forced mean NLL %.7f (transformers %.7f, |Δ| %.2g), perplexity %.3f\n", c.name, r.mean_nll, want,
                    std::abs(r.mean_nll - want), r.perplexity);
    }
}

TEST(families_t5, StatsSeeEveryLinearOnPairs) {
    auto model = Seq2SeqModel::load(family_dir("t5v11-random-b"));
    LayerStatsOptions o;
    o.selection.first = 0;
    o.selection.count = 4;
    const LayerStatsReport r = collect_layer_stats(*model, pairs_tsv(), o);
    EXPECT_EQ(r.units, 4);
    ASSERT_EQ(r.linears.size(), model->linears().size());
    for (const auto& l : r.linears) EXPECT_GT(l.rows, 0) << l.name;
}

// Teacher-forced logits of pairs [first, end) of bart_pairs.tsv, concatenated, with the positions' count.
std::vector<float> pair_logits(Seq2SeqModel& m, int64_t first, int64_t end) {
    std::ifstream in(pairs_tsv());
    std::string line;
    std::getline(in, line);  // source \t target
    std::vector<float> out;
    for (int64_t row = 0; row < end && std::getline(in, line); ++row) {
        if (row < first) continue;
        const size_t tab = line.find('\t');
        const auto source = m.tokenize(line.substr(0, tab));
        const auto target = m.tokenize(line.substr(tab + 1));
        std::vector<int32_t> dec{m.config().decoder_start_token_id};
        dec.insert(dec.end(), target.begin(), target.end() - 1);
        std::vector<float> l(dec.size() * static_cast<size_t>(m.config().vocab));
        m.logits(source, dec, l.data());
        out.insert(out.end(), l.begin(), l.end());
    }
    return out;
}

TEST(families_t5, W8A8DynamicAndStaticKeepTheLoss) {
    // quantize_seq2seq_w8a8 on every block Linear (lm_head f32): dynamic, and static with minmax ranges from pairs 16..64,
    // evaluated on pairs 0..16 against FP32: mean NLL, top-1 agreement over the target positions, max |Δlogit|
    for (const T5Case& c : kCases) {
        auto fp32 = Seq2SeqModel::load(family_dir(c.name));
        const double fp32_nll = evaluate_pairs(*fp32, pairs_tsv(), 0, 16).mean_nll;
        const std::vector<float> want = pair_logits(*fp32, 0, 16);
        const int64_t V = fp32->config().vocab, positions = static_cast<int64_t>(want.size()) / V;
        for (const bool is_static : {false, true}) {
            auto model = Seq2SeqModel::load(family_dir(c.name));
            const int64_t n = quantize_seq2seq_w8a8(*model, is_static ? ActivationQuant::static_per_tensor : ActivationQuant::dynamic_per_token,
                                                    pairs_tsv(), 16, 64);
            EXPECT_EQ(n, static_cast<int64_t>(model->linears().size()) - 1) << c.name;
            for (const Linear* l : model->linears()) EXPECT_EQ(static_cast<bool>(l->int8), l->block >= 0) << l->name;
            const double nll = evaluate_pairs(*model, pairs_tsv(), 0, 16).mean_nll;
            const std::vector<float> got = pair_logits(*model, 0, 16);
            ASSERT_EQ(got.size(), want.size());
            int64_t agree = 0;
            double worst = 0;
            for (int64_t p = 0; p < positions; ++p) {
                const float* a = want.data() + p * V;
                const float* b = got.data() + p * V;
                agree += (std::max_element(a, a + V) - a) == (std::max_element(b, b + V) - b);
                for (int64_t i = 0; i < V; ++i) worst = std::max(worst, static_cast<double>(std::abs(a[i] - b[i])));
            }
            const double agreement = static_cast<double>(agree) / static_cast<double>(positions);
            std::printf("%s W8A8 %s: mean NLL %.5f vs FP32 %.5f; top-1 agreement %.1f%% of %lld positions; max |Δlogit| %.3f\n", c.name,
                        is_static ? "static (minmax)" : "dynamic", nll, fp32_nll, 100 * agreement, static_cast<long long>(positions), worst);
            EXPECT_NE(nll, fp32_nll) << c.name;
            EXPECT_LT(std::abs(nll - fp32_nll), 0.1) << c.name;  // nats per token
            // Measured 87.9-96.8 % on VNNI kernels (8-bit activations), 83.0 % on the reference kernels (7-bit, as on AVX2):
            // random models have close logits that rounding easily swaps, so the loss bound above is the main check.
            EXPECT_GT(agreement, 0.75) << c.name;
        }
    }
    auto model = Seq2SeqModel::load(family_dir("t5-tiny-random"));
    EXPECT_THROW(quantize_seq2seq_w8a8(*model, ActivationQuant::static_per_tensor), InvalidArgument);
}

TEST(families_t5, LayersAndModelLoad) {
    const auto any = Model::load(family_dir("t5v11-random-b"));  // model_type t5 → Seq2SeqModel
    auto* model = dynamic_cast<Seq2SeqModel*>(any.get());
    ASSERT_NE(model, nullptr);
    std::vector<std::string> names;
    for (const LayerInfo& l : model->layers()) names.push_back(l.name);
    for (const char* n : {"shared", "encoder.block.0.layer.0.SelfAttention.relative_attention_bias", "encoder.block.2.layer.1.DenseReluDense.wi_0",
                          "encoder.final_layer_norm", "decoder.block.1.layer.1.EncDecAttention.o", "decoder.block.1.layer.2.layer_norm",
                          "decoder.final_layer_norm", "lm_head"})
        EXPECT_NE(std::find(names.begin(), names.end(), n), names.end()) << n;
    EXPECT_EQ(model->linears().back()->source_name, "lm_head");  // untied
    EXPECT_EQ(Seq2SeqModel::load(family_dir("t5-tiny-random"))->linears().back()->source_name, "shared");  // tied
    const Seq2SeqConfig& g = model->config();
    EXPECT_EQ(g.d_kv * g.encoder_heads, 24);
    EXPECT_EQ(g.d_model, 20);
    EXPECT_EQ(g.decoder_start_token_id, g.pad_token_id);
    EXPECT_TRUE(g.gated_ffn);
    EXPECT_EQ(g.activation, "gelu_new");
    // no position table: a long source runs (relative positions far beyond max_distance share the last buckets)
    const std::vector<int32_t> long_source(300, 5), dec{0, 7};
    std::vector<float> out(2 * static_cast<size_t>(g.vocab));
    model->logits(long_source, dec, out.data());
    for (const float v : out) ASSERT_TRUE(std::isfinite(v));
    // saving writes cq's encoder–decoder container (test_seq2seq_container checks what it holds)
    EXPECT_NO_THROW(model->save(test::TempDir("cq_seq2seq").file("m.gguf")));
}

TEST(families_t5, BrokenConfigsFailNamingKeyAndFile) {
    const auto load_edited = [](const char* name, const std::function<void(nlohmann::json&)>& edit, std::initializer_list<std::string> needles) {
        test::TempDir dir("cq_t5");
        const std::string p = edited_copy(dir, name, edit);
        expect_error([&] { Seq2SeqModel::load(p); }, needles);
    };
    for (const char* key : {"d_model", "d_kv", "num_heads", "num_layers", "d_ff", "vocab_size"})
        load_edited("t5-tiny-random", [key](nlohmann::json& c) { c.erase(key); }, {std::string("'") + key + "' is missing", "config.json"});
    load_edited("t5-tiny-random", [](nlohmann::json& c) { c["feed_forward_proj"] = "gated-softsign"; }, {"feed_forward_proj 'gated-softsign'", "config.json"});
    load_edited("t5-tiny-random", [](nlohmann::json& c) { c["feed_forward_proj"] = "relu-gated"; }, {"'feed_forward_proj' 'relu-gated'", "config.json"});
    load_edited("t5-tiny-random", [](nlohmann::json& c) { c["d_kv"] = 0; }, {"'d_kv' is not a positive integer"});
    load_edited("t5-tiny-random", [](nlohmann::json& c) { c["relative_attention_max_distance"] = 16; }, {"'relative_attention_max_distance' 16"});
    load_edited("t5-tiny-random", [](nlohmann::json& c) { c["num_decoder_layers"] = 3; },
                {"decoder.block.2.layer.0.SelfAttention.q.weight' is missing", "model.safetensors"});
    load_edited("t5-tiny-random", [](nlohmann::json& c) { c["d_kv"] = 6; }, {"encoder.block.0.layer.0.SelfAttention.q.weight", "has shape"});
    // v1.0 weights read as gated, v1.1 as ungated, v1.1 with its head declared tied: each a missing (or extra) tensor
    load_edited("t5-tiny-random", [](nlohmann::json& c) { c["feed_forward_proj"] = "gated-gelu"; }, {"DenseReluDense.wi_0.weight' is missing"});
    load_edited("t5v11-tiny-random", [](nlohmann::json& c) { c["feed_forward_proj"] = "relu"; }, {"DenseReluDense.wi.weight' is missing"});
    load_edited("t5-tiny-random", [](nlohmann::json& c) { c["tie_word_embeddings"] = false; }, {"'lm_head.weight' is missing"});
    load_edited("t5-tiny-random", [](nlohmann::json& c) { c["architectures"] = {"T5EncoderModel"}; }, {"architecture 'T5EncoderModel'"});
}

// cq's stdout for `args`, and its exit status.
std::pair<int, std::string> run_cli(const std::string& args) {
    test::TempDir dir("cq_t5_cli");
    const int status = std::system((std::string(CQ_CLI_PATH) + " " + args + " >" + dir.file("out.txt") + " 2>&1").c_str());
    std::ifstream in(dir.file("out.txt"));
    std::stringstream ss;
    ss << in.rdbuf();
    return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, ss.str()};
}

TEST(families_t5, CliEvalAndInfo) {
    const std::string dir = family_dir("t5v11-tiny-random");
    const nlohmann::json ref = read_json(dir + "/reference.json");
    auto [rc, out] = run_cli("eval '" + dir + "' --data '" + pairs_tsv() + "' --range 0:16 --w8a8-dynamic --json");
    ASSERT_EQ(rc, 0) << out;
    const auto j = nlohmann::json::parse(out);
    EXPECT_EQ(j["pairs"], 16);
    EXPECT_EQ(j["tokens"], ref["pairs_tokens_16"]);
    EXPECT_NEAR(j["mean_nll"].get<double>(), ref["pairs_nll_16"].get<double>() / ref["pairs_tokens_16"].get<double>(), 2e-6);
    EXPECT_TRUE(j.contains("w8a8")) << out;
    std::tie(rc, out) = run_cli("info '" + dir + "' --layers");
    ASSERT_EQ(rc, 0) << out;
    EXPECT_NE(out.find("T5ForConditionalGeneration"), std::string::npos) << out;
    EXPECT_NE(out.find("3 blocks, 26 Linears"), std::string::npos) << out;  // 2 × (4 + 3) + (8 + 3) + lm_head
    EXPECT_NE(out.find("decoder.block.0.layer.1.EncDecAttention.o"), std::string::npos) << out;
    EXPECT_NE(out.find("DenseReluDense.wi_1"), std::string::npos) << out;
    std::tie(rc, out) = run_cli("eval '" + family_dir("t5-random-b") + "' --data '" + family_dir("t5-random-b") + "/config.json'");
    EXPECT_NE(rc, 0);
    EXPECT_NE(out.find("'source' and 'target'"), std::string::npos) << out;
}

}  // namespace
}  // namespace cq
