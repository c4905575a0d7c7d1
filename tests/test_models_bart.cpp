// BART (issue 20) against Hugging Face transformers: two tiny random BartForConditionalGeneration models from
// scripts/make_family_references.py (tests/data/families/bart-*), their BPE ids, teacher-forced logits to 1e-4, greedy
// generations identical (KV cache against the full recomputation too), the same bytes at 1 and 3 threads, W8A8 / 4-bit
// weights in memory, and clear errors. Suites are named families_bart so that `ctest -R families` selects them.
#include "cq/layer_stats.h"
#include "cq/w8a8.h"
#include "seq2seq_test_support.h"

namespace cq {
namespace {

using namespace test::seq2seq;

std::string bart_dir(const std::string& name) { return family_dir(name); }

void expect_bart_matches(const std::string& name, int64_t enc_layers, int64_t dec_layers) {
    const auto model = Seq2SeqModel::load(bart_dir(name));
    const nlohmann::json ref = read_json(bart_dir(name) + "/reference.json");
    EXPECT_EQ(model->n_blocks(), enc_layers + dec_layers);
    EXPECT_EQ(static_cast<int64_t>(model->linears().size()), 6 * enc_layers + 10 * dec_layers + 1) << name;
    // BartTokenizer's ids: <s> pieces </s>
    for (size_t i = 0; i < ref["sources"].size(); ++i)
        EXPECT_EQ(model->tokenize(ref["sources"][i].get<std::string>()), source_of(ref, i)) << name << " source " << i;

    expect_matches_reference(*model, ref, name, 1e-4);
}

TEST(families_bart, TinyMatchesTransformers) {
    // d 32, 2 + 2 layers, 4 heads, FFN 64, gelu, no forced </s>
    expect_bart_matches("bart-tiny-random", 2, 2);
}

TEST(families_bart, SecondConfigMatchesTransformers) {
    // d 24, 1 encoder + 3 decoder layers, 3 / 2 heads, FFN 40 / 56, gelu_new, scaled embeddings, forced_eos_token_id 2
    expect_bart_matches("bart-random-b", 1, 3);
}

TEST(families_bart, TeacherForcedLossOnPairsMatchesTransformers) {
    // the first 16 pairs of bart_pairs.tsv (SST-2 dev sentences → their first four words): the token count and the mean
    // NLL transformers gave (labels = <s> target </s>, one pair at a time, sources truncated to the position table)
    for (const char* name : {"bart-tiny-random", "bart-random-b"}) {
        const auto model = Seq2SeqModel::load(bart_dir(name));
        const nlohmann::json ref = read_json(bart_dir(name) + "/reference.json");
        const Seq2SeqEvalResult r = evaluate_pairs(*model, test::tests_dir() + "/data/families/bart_pairs.tsv", 0, 16);
        EXPECT_EQ(r.pairs, 16);
        EXPECT_EQ(r.tokens, ref["pairs_tokens_16"].get<int64_t>()) << name;
        const double want = ref["pairs_nll_16"].get<double>() / ref["pairs_tokens_16"].get<double>();
        EXPECT_NEAR(r.mean_nll, want, 1e-4) << name;
        std::printf("%s: teacher-forced mean NLL %.6f (transformers %.6f), perplexity %.3f\n", name, r.mean_nll, want, r.perplexity);
    }
    const auto model = Seq2SeqModel::load(bart_dir("bart-tiny-random"));
    test::TempDir dir("cq_bart");
    std::ofstream(dir.file("bad.tsv")) << "sentence\tlabel\nhello\t1\n";
    try {
        evaluate_pairs(*model, dir.file("bad.tsv"));
        ADD_FAILURE() << "a TSV without source / target columns did not throw";
    } catch (const FormatError& e) {
        EXPECT_NE(std::string(e.what()).find("'source' and 'target'"), std::string::npos) << e.what();
    }
    std::ofstream(dir.file("short.tsv")) << "source\ttarget\nonly one column\n";
    EXPECT_THROW(evaluate_pairs(*model, dir.file("short.tsv")), FormatError);
}

TEST(families_bart, StatsSeeEveryLinearOnPairs) {
    // cq stats' runner for an encoder–decoder: teacher-forced passes over the pairs; every Linear sees rows
    auto model = Seq2SeqModel::load(bart_dir("bart-random-b"));
    LayerStatsOptions o;
    o.selection.first = 0;
    o.selection.count = 8;
    const LayerStatsReport r = collect_layer_stats(*model, test::tests_dir() + "/data/families/bart_pairs.tsv", o);
    EXPECT_EQ(r.units, 8);
    ASSERT_EQ(r.linears.size(), model->linears().size());
    for (const auto& l : r.linears) EXPECT_GT(l.rows, 0) << l.name;
}

TEST(families_bart, W8A8DynamicAndStaticKeepTheLoss) {
    // quantize_seq2seq_w8a8: dynamic, and static with ranges from pairs 16..64 (evaluated on 0..16)
    const std::string pairs = test::tests_dir() + "/data/families/bart_pairs.tsv";
    for (const bool is_static : {false, true}) {
        auto model = Seq2SeqModel::load(bart_dir("bart-tiny-random"));
        const double fp32 = evaluate_pairs(*model, pairs, 0, 16).mean_nll;
        EXPECT_EQ(quantize_seq2seq_w8a8(*model, is_static ? ActivationQuant::static_per_tensor : ActivationQuant::dynamic_per_token, pairs, 16, 64),
                  6 * 2 + 10 * 2);
        for (const Linear* l : model->linears())
            if (l->block >= 0) {
                ASSERT_TRUE(l->int8) << l->name;
                EXPECT_EQ(l->int8->activations, is_static ? ActivationQuant::static_per_tensor : ActivationQuant::dynamic_per_token);
            }
        const double q = evaluate_pairs(*model, pairs, 0, 16).mean_nll;
        std::printf("bart-tiny-random W8A8 %s: mean NLL %.5f vs FP32 %.5f\n", is_static ? "static (minmax)" : "dynamic", q, fp32);
        EXPECT_NE(q, fp32);
        EXPECT_LT(std::abs(q - fp32), 0.1);  // nats per token
    }
    auto model = Seq2SeqModel::load(bart_dir("bart-tiny-random"));
    EXPECT_THROW(quantize_seq2seq_w8a8(*model, ActivationQuant::static_per_tensor), InvalidArgument);
}

TEST(families_bart, LayersAndErrors) {
    const auto model = Seq2SeqModel::load(bart_dir("bart-tiny-random"));
    std::vector<std::string> names;
    for (const LayerInfo& l : model->layers()) names.push_back(l.name);
    for (const char* n : {"model.shared", "model.encoder.layers.1.fc2", "model.decoder.layers.0.encoder_attn.k_proj",
                          "model.decoder.layers.1.encoder_attn_layer_norm", "lm_head"})
        EXPECT_NE(std::find(names.begin(), names.end(), n), names.end()) << n;
    // saving writes cq's encoder–decoder container (test_seq2seq_container checks what it holds)
    EXPECT_NO_THROW(model->save(test::TempDir("cq_seq2seq").file("m.gguf")));
    const std::vector<int32_t> src{0, 5, 2}, none;
    std::vector<float> out(64 * static_cast<size_t>(model->config().vocab));
    EXPECT_THROW(model->logits(none, src, out.data()), InvalidArgument);
    EXPECT_THROW(model->logits(src, none, out.data()), InvalidArgument);
    EXPECT_THROW(model->generate_greedy(src, 0), InvalidArgument);
    const std::vector<int32_t> bad{0, 100000, 2};
    EXPECT_THROW(model->logits(bad, src, out.data()), InvalidArgument);
    const std::vector<int32_t> too_long(65, 5);  // 64 positions
    EXPECT_THROW(model->logits(too_long, src, out.data()), InvalidArgument);

    const auto edited = [](const test::TempDir& dir, const std::function<void(nlohmann::json&)>& edit) { return edited_copy(dir, "bart-tiny-random", edit); };
    {
        test::TempDir dir("cq_bart");
        const std::string p = edited(dir, [](nlohmann::json& c) { c["decoder_layers"] = 3; });
        expect_error([&] { Seq2SeqModel::load(p); }, {"model.decoder.layers.2.self_attn.q_proj.weight' is missing"});
    }
    {
        test::TempDir dir("cq_bart");
        const std::string p = edited(dir, [](nlohmann::json& c) { c["activation_function"] = "softsign"; });
        expect_error([&] { Seq2SeqModel::load(p); }, {"activation_function 'softsign'"});
    }
    {
        test::TempDir dir("cq_bart");
        const std::string p = edited(dir, [](nlohmann::json& c) { c["d_model"] = 40; });
        expect_error([&] { Seq2SeqModel::load(p); }, {"has shape"});
    }
    {
        test::TempDir dir("cq_bart");
        const std::string p = edited(dir, [](nlohmann::json& c) { c["model_type"] = "pegasus"; });
        expect_error([&] { Seq2SeqModel::load(p); }, {"model_type 'pegasus'", "T5ForConditionalGeneration (t5)"});
    }
}

TEST(families_bart, W8A8AndFourBitWeightsInMemory) {
    const std::string name = "bart-tiny-random";
    const nlohmann::json ref = read_json(bart_dir(name) + "/reference.json");
    for (const bool four_bit : {false, true}) {
        auto model = Seq2SeqModel::load(bart_dir(name));
        int64_t rewritten = 0;
        for (Linear* l : model->linears()) {
            if (l->block < 0) continue;  // lm_head stays f32
            if (four_bit) model->quantize_linear(*l, DType::Q4_0);
            else l->int8 = quantize_linear_w8a8(*l, ActivationQuant::dynamic_per_token, {}, 255);
            ++rewritten;
        }
        EXPECT_EQ(rewritten, 6 * 2 + 10 * 2);
        const Outputs o = run(*model, ref);
        const double change = max_abs_diff(o.logits, ref["logits"]);
        int64_t same = 0, total = 0;
        for (size_t i = 0; i < o.generated.size(); ++i) {
            const auto want = ref["generated"][i].get<std::vector<int32_t>>();
            for (size_t t = 0; t < std::min(want.size(), o.generated[i].size()); ++t) same += want[t] == o.generated[i][t], ++total;
        }
        std::printf("%s %s: teacher-forced max |Δlogit| vs transformers FP32 %.4f; generated tokens equal to FP32's %lld / %lld\n",
                    name.c_str(), four_bit ? "Q4_0 weights" : "W8A8 dynamic", change,
                    static_cast<long long>(same), static_cast<long long>(total));
        EXPECT_GT(change, 0.0);
        // measured: 0.098 (W8A8), 1.78 (Q4_0: every block Linear of a random model with N(0, 0.2²) weights, 4 layers deep)
        EXPECT_LT(change, four_bit ? 3.0 : 0.2);
    }
}

}  // namespace
}  // namespace cq
