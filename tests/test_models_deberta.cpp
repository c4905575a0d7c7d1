// DeBERTa-v2/v3 (issue 20) against Hugging Face transformers: two tiny random DebertaV2ForSequenceClassification models
// from scripts/make_family_references.py (tests/data/families/deberta-*: v3's shared keys, c2p + p2c and log buckets; v2's
// pos_*_proj, c2p only, clamped positions, absolute positions, token types, embed_proj), their SentencePiece ids, logits to
// 1e-4, padding independence, the same bytes at 1 and 3 threads, the bucket function, W8A8 / 4-bit weights, the
// container and clear errors. Suites are named families_deberta so that `ctest -R families` selects them.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>

#include <nlohmann/json.hpp>

#include "cq/classify.h"
#include "cq/encoder.h"
#include "cq/error.h"
#include "cq/quantize_encoder.h"
#include "cq/thread_pool.h"
#include "cq/w8a8.h"
#include "models/encoder_families.h"
#include "test_support.h"

namespace cq {
namespace {

namespace fs = std::filesystem;

std::string deberta_dir(const std::string& name) { return test::tests_dir() + "/data/families/" + name; }

nlohmann::json read_json(const std::string& path) {
    std::ifstream in(path);
    return nlohmann::json::parse(in);
}

std::vector<int32_t> ints(const nlohmann::json& rows) {
    std::vector<int32_t> out;
    for (const auto& row : rows)
        for (const auto& v : row) out.push_back(v.get<int32_t>());
    return out;
}

double max_abs_diff(const std::vector<float>& got, const nlohmann::json& expected) {
    std::vector<double> flat;
    for (const auto& row : expected)
        for (const auto& v : row) flat.push_back(v.get<double>());
    EXPECT_EQ(flat.size(), got.size());
    double worst = 0;
    for (size_t i = 0; i < std::min(flat.size(), got.size()); ++i) worst = std::max(worst, std::abs(got[i] - flat[i]));
    return worst;
}

std::vector<float> classify(EncoderModel& m, const TextBatch& b) {
    std::vector<float> out(static_cast<size_t>(b.batch * m.config().num_labels));
    m.classify(b, out.data());
    return out;
}

void expect_deberta_matches(const std::string& name, int64_t n_linears) {
    const auto model = EncoderModel::load(deberta_dir(name));
    const nlohmann::json ref = read_json(deberta_dir(name) + "/reference.json");
    EXPECT_EQ(model->config().family, EncoderFamily::deberta_v2);
    EXPECT_EQ(static_cast<int64_t>(model->linears().size()), n_linears) << name;
    const auto texts = ref["texts"].get<std::vector<std::string>>();
    const TextBatch batch = model->tokenize(texts, ref["max_len"].get<int64_t>());
    // DebertaV2Tokenizer's ids ([CLS] pieces [SEP], [PAD] 0), mask and token types
    EXPECT_EQ(batch.ids, ints(ref["input_ids"])) << name;
    EXPECT_EQ(batch.mask, ints(ref["attention_mask"])) << name;
    EXPECT_EQ(batch.type_ids, ints(ref["token_type_ids"])) << name;
    const std::vector<float> logits = classify(*model, batch);
    double worst = max_abs_diff(logits, ref["logits"]);
    // Each sequence alone, unpadded, gives what it gave in the padded batch.
    const int64_t L = model->config().num_labels;
    for (int64_t i = 0; i < batch.batch; ++i) {
        TextBatch one;
        one.batch = 1;
        one.seq = std::count(batch.mask.begin() + i * batch.seq, batch.mask.begin() + (i + 1) * batch.seq, 1);
        one.ids.assign(batch.ids.begin() + i * batch.seq, batch.ids.begin() + i * batch.seq + one.seq);
        one.type_ids.assign(static_cast<size_t>(one.seq), 0);
        one.mask.assign(static_cast<size_t>(one.seq), 1);
        const std::vector<float> l = classify(*model, one);
        for (int64_t j = 0; j < L; ++j) worst = std::max(worst, std::abs(double(l[static_cast<size_t>(j)]) - logits[static_cast<size_t>(i * L + j)]));
    }
    EXPECT_LT(worst, 1e-4) << name;
    std::printf("%s: max |Δlogit| vs transformers %.3g\n", name.c_str(), worst);

    ThreadPool::set_global_threads(1);
    const std::vector<float> one = classify(*model, batch);
    ThreadPool::set_global_threads(3);
    const std::vector<float> three = classify(*model, batch);
    ThreadPool::set_global_threads(0);
    EXPECT_EQ(one, three) << name;
}

TEST(families_deberta, V3SharedKeysBothTermsLogBucketsMatchTransformers) {
    // 2 blocks × 6 Linears, pooler, classifier
    expect_deberta_matches("deberta-v3-random", 2 * 6 + 2);
}

TEST(families_deberta, V2PositionProjectionsSecondConfigMatchesTransformers) {
    // embed_proj, 3 blocks × (6 + pos_key_proj), pooler, classifier
    expect_deberta_matches("deberta-v2-random-b", 1 + 3 * 7 + 2);
}

TEST(families_deberta, LogBucketsAreTransformersBuckets) {
    // make_log_bucket_position's values from transformers 4.46 (torch 1.13): within ±mid the distance itself, then
    // logarithmic buckets (not clamped here: the caller clamps to the relative-embedding rows)
    const std::pair<int64_t, int64_t> cases[] = {{0, 0},     {1, 1},     {-1, -1},     {127, 127}, {128, 128},   {-128, -128},
                                                 {129, 129}, {200, 169}, {-200, -169}, {511, 255}, {1000, 317}, {-1000, -317}};
    for (const auto& [rel, bucket] : cases) EXPECT_EQ(deberta_relative_position(rel, 256, 512), bucket) << rel;
    // bucket_size 8, max_position 64 (deberta-v3-random's), distances −40..40
    const int64_t small[] = {-7, -7, -7, -7, -7, -7, -7, -7, -7, -7, -7, -7, -7, -7, -7, -6, -6, -6, -6, -6, -6, -6, -6, -6, -6, -6, -6,
                             -6, -6, -6, -5, -5, -5, -5, -5, -5, -4, -3, -2, -1, 0,  1,  2,  3,  4,  5,  5,  5,  5,  5,  5,  6,  6,  6,
                             6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  7,  7,  7,  7,  7,  7,  7,  7,  7,  7,  7,  7,  7,  7,  7};
    for (int64_t r = -40; r <= 40; ++r) EXPECT_EQ(deberta_relative_position(r, 8, 64), small[r + 40]) << r;
    EXPECT_EQ(deberta_relative_position(-7, -1, 64), -7);  // no buckets: the distance
    // monotone and odd
    for (int64_t r = 0; r < 600; ++r) {
        EXPECT_LE(deberta_relative_position(r, 256, 512), deberta_relative_position(r + 1, 256, 512));
        EXPECT_EQ(deberta_relative_position(-r, 256, 512), -deberta_relative_position(r, 256, 512));
    }
}

TEST(families_deberta, LayersListTheRelativeEmbeddingsAndPositionProjections) {
    EXPECT_TRUE(is_encoder_model(deberta_dir("deberta-v3-random")));  // the CLI (cq bench) routes DeBERTa to the encoder engine
    const auto model = EncoderModel::load(deberta_dir("deberta-v2-random-b"));
    std::vector<std::string> names;
    for (const LayerInfo& l : model->layers()) names.push_back(l.name);
    for (const char* n : {"deberta.embeddings.embed_proj", "deberta.encoder.rel_embeddings", "deberta.encoder.layer.2.attention.self.pos_key_proj",
                          "deberta.encoder.layer.0.attention.self.query_proj", "pooler.dense", "classifier"})
        EXPECT_NE(std::find(names.begin(), names.end(), n), names.end()) << n;
    EXPECT_EQ(std::find(names.begin(), names.end(), "position_embeddings") == names.end(), false);
    const auto v3 = EncoderModel::load(deberta_dir("deberta-v3-random"));
    names.clear();
    for (const LayerInfo& l : v3->layers()) names.push_back(l.name);
    EXPECT_EQ(std::find(names.begin(), names.end(), "position_embeddings"), names.end());  // position_biased_input false
    EXPECT_NE(std::find(names.begin(), names.end(), "deberta.encoder.LayerNorm"), names.end());
}

TEST(families_deberta, BadConfigsAreClearErrors) {
    const auto expect_error = [](const std::function<void()>& f, const std::string& needle) {
        try {
            f();
            ADD_FAILURE() << "no error; expected one naming '" << needle << "'";
        } catch (const Error& e) {
            EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
        }
    };
    const auto edited = [](const test::TempDir& dir, const std::string& name, const std::function<void(nlohmann::json&)>& edit) {
        const std::string src = deberta_dir(name);
        for (const auto& e : fs::directory_iterator(src)) fs::copy_file(e.path(), fs::path(dir.path()) / e.path().filename());
        nlohmann::json config = read_json(src + "/config.json");
        edit(config);
        std::ofstream(dir.file("config.json")) << config.dump(1);
        return dir.path();
    };
    {
        test::TempDir dir("cq_deberta");
        const std::string p = edited(dir, "deberta-v3-random", [](nlohmann::json& c) { c["share_att_key"] = false; });
        expect_error([&] { EncoderModel::load(p); }, "deberta.encoder.layer.0.attention.self.pos_key_proj.weight' is missing");
    }
    {
        test::TempDir dir("cq_deberta");
        const std::string p = edited(dir, "deberta-v3-random", [](nlohmann::json& c) { c["position_buckets"] = 16; });
        expect_error([&] { EncoderModel::load(p); }, "deberta.encoder.rel_embeddings.weight' has shape");
    }
    {
        test::TempDir dir("cq_deberta");
        const std::string p = edited(dir, "deberta-v3-random", [](nlohmann::json& c) { c["pos_att_type"] = "p2c|c2p|p2p"; });
        expect_error([&] { EncoderModel::load(p); }, "pos_att_type 'p2p'");
    }
    {
        test::TempDir dir("cq_deberta");
        const std::string p = edited(dir, "deberta-v3-random", [](nlohmann::json& c) { c["pooler_hidden_act"] = "mish"; });
        expect_error([&] { EncoderModel::load(p); }, "pooler_hidden_act 'mish'");
    }
    {
        test::TempDir dir("cq_deberta");
        const std::string p = edited(dir, "deberta-v3-random", [](nlohmann::json& c) { c["conv_kernel_size"] = 3; });
        expect_error([&] { EncoderModel::load(p); }, "conv_kernel_size");
    }
    {
        // the old string form of pos_att_type loads like the list
        test::TempDir dir("cq_deberta");
        const std::string p = edited(dir, "deberta-v3-random", [](nlohmann::json& c) { c["pos_att_type"] = "P2C|c2p"; });
        const auto m = EncoderModel::load(p);
        EXPECT_TRUE(m->config().deberta.c2p && m->config().deberta.p2c);
    }
}

TEST(families_deberta, W8A8AndFourBitWeightsAndTheContainer) {
    const std::string name = "deberta-v3-random";
    const nlohmann::json ref = read_json(deberta_dir(name) + "/reference.json");
    const auto texts = ref["texts"].get<std::vector<std::string>>();
    {
        auto model = EncoderModel::load(deberta_dir(name));
        const TextBatch batch = model->tokenize(texts, 40);
        int64_t int8 = 0;
        for (const auto& p : apply_w8a8(*model, default_w8a8_rules(), ActivationQuant::dynamic_per_token, nullptr, calib::Method::minmax, 100.0, 8))
            int8 += p.int8;
        EXPECT_EQ(int8, 2 * 6);  // the blocks' Linears (rules: *.layer.*); pooler and classifier stay f32
        const std::vector<float> q = classify(*model, batch);
        const double change = max_abs_diff(q, ref["logits"]);
        std::printf("%s W8A8 dynamic: max |Δlogit| vs transformers FP32 %.4f\n", name.c_str(), change);
        EXPECT_GT(change, 0.0);
        EXPECT_LT(change, 0.1);
        test::TempDir dir("cq_deberta");
        model->save(dir.file("deberta.gguf"));
        const auto reloaded = EncoderModel::load(dir.file("deberta.gguf"));
        EXPECT_EQ(reloaded->tokenize(texts, 40).ids, batch.ids);  // spm.model travels inside the container
        EXPECT_EQ(classify(*reloaded, batch), q);
    }
    {
        // 4-bit weight-only: Q4_0 on every block Linear (32 / 64 wide: whole 32-blocks)
        auto model = EncoderModel::load(deberta_dir(name));
        const TextBatch batch = model->tokenize(texts, 40);
        int64_t rewritten = 0;
        for (Linear* l : model->linears())
            if (l->block >= 0) model->quantize_linear(*l, DType::Q4_0), ++rewritten;
        EXPECT_EQ(rewritten, 12);
        const double change = max_abs_diff(classify(*model, batch), ref["logits"]);
        std::printf("%s Q4_0 weights: max |Δlogit| vs transformers FP32 %.4f\n", name.c_str(), change);
        EXPECT_GT(change, 0.0);
        EXPECT_LT(change, 0.5);
    }
}

}  // namespace
}  // namespace cq
