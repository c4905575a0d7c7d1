// Structured pruning of encoders (cq/prune_encoder.h) on bert-tiny-sst2: the smaller directory against the dense model
// with the removed heads' attention-output columns and the removed neurons' FFN-output columns zeroed in memory (an exact
// identity: those units then add nothing), its config and shapes, transformers' logits on the same directory (skipped
// without /work/venv-fam's python), the expanded twin (exact zeros), recovery training the pruned model directly, the W8A8 container with Q4_0
// embeddings (lookup = dequantized table), bad targets, and determinism.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "cq/encoder.h"
#include "cq/error.h"
#include "cq/io/safetensors.h"
#include "cq/prune_encoder.h"
#include "cq/quantize_encoder.h"
#include "cq/thread_pool.h"
#include "ops/ops.h"
#include "test_support.h"

namespace cq {
namespace {

const char* kModel = "models/bert-tiny-sst2";
const char* kTrain = "data/sst2_train.tsv";
const char* kDev = "data/sst2_dev.tsv";

EncoderPruneOptions options(const char* spec = "heads=0.3,ffn=0.3") {
    EncoderPruneOptions o;
    o.target = StructuredTarget::parse(spec, "[prune]");
    o.calib_data = test::fixture(kTrain);
    o.calib_samples = 64;
    o.run.max_len = 64;
    return o;
}

// The first n texts of the dev TSV (header "sentence<TAB>label").
std::vector<std::string> dev_texts(size_t n) {
    std::ifstream in(test::fixture(kDev));
    std::string line;
    std::getline(in, line);
    std::vector<std::string> out;
    while (out.size() < n && std::getline(in, line)) out.push_back(line.substr(0, line.find('\t')));
    return out;
}

std::vector<float> logits_of(EncoderModel& m, const std::vector<std::string>& texts) {
    const TextBatch b = m.tokenize(texts, 128);
    std::vector<float> out(texts.size() * static_cast<size_t>(m.config().num_labels));
    m.classify(b, out.data());
    return out;
}

double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b, size_t* at) {
    double d = 0;
    for (size_t i = 0; i < a.size(); ++i)
        if (std::fabs(double(a[i]) - b[i]) > d) d = std::fabs(double(a[i]) - b[i]), *at = i;
    return d;
}

std::string read_bytes(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
}

TEST(PruneEncoder, SmallerModelEqualsTheZeroedDenseOne) {
    test::TempDir dir;
    const std::string out = dir.file("pruned");
    const EncoderPruneReport r = prune_encoder_structured(test::fixture(kModel), out, options());
    ASSERT_EQ(r.blocks.size(), 4u);
    EXPECT_EQ(r.n_head_in, 4);
    EXPECT_EQ(r.n_head_out, 3);  // round(0.3 · 4) = 1 head per block
    EXPECT_EQ(r.n_ff_in, 512);
    EXPECT_EQ(r.n_ff_out, 352);  // 512 − round(0.3 · 512) = 358, to a multiple of 16
    EXPECT_EQ(r.calib_samples, 64);

    auto dense = EncoderModel::load(test::fixture(kModel));
    const int64_t D = 128, hd = 32, F = 512;
    for (const EncoderPrunedBlock& pb : r.blocks) {
        EncoderBlock& b = dense->weights().blocks[static_cast<size_t>(pb.block)];
        // The kept heads are the top-scoring ones.
        double min_kept = 1e300, max_removed = -1;
        for (int64_t h = 0; h < 4; ++h) {
            const bool kept = std::find(pb.heads_kept.begin(), pb.heads_kept.end(), h) != pb.heads_kept.end();
            (kept ? min_kept : max_removed) = kept ? std::min(min_kept, pb.head_scores[static_cast<size_t>(h)])
                                                   : std::max(max_removed, pb.head_scores[static_cast<size_t>(h)]);
        }
        EXPECT_GE(min_kept, max_removed) << "block " << pb.block;
        std::vector<float> wo = b.attn_out.weight.to_float(), wd = b.ffn_out.weight.to_float();
        for (int64_t h = 0; h < 4; ++h)
            if (std::find(pb.heads_kept.begin(), pb.heads_kept.end(), h) == pb.heads_kept.end())
                for (int64_t i = 0; i < D; ++i) std::fill_n(wo.begin() + i * D + h * hd, hd, 0.0f);
        for (int64_t j = 0; j < F; ++j)
            if (!std::binary_search(pb.ffn_neurons.begin(), pb.ffn_neurons.end(), j))
                for (int64_t i = 0; i < D; ++i) wd[static_cast<size_t>(i * F + j)] = 0.0f;
        Tensor two = Tensor::zeros({D, D}, DType::F32), tdd = Tensor::zeros({D, F}, DType::F32);
        std::copy(wo.begin(), wo.end(), static_cast<float*>(two.mutable_data()));
        std::copy(wd.begin(), wd.end(), static_cast<float*>(tdd.mutable_data()));
        dense->set_weight(b.attn_out, std::move(two), "test zero");
        dense->set_weight(b.ffn_out, std::move(tdd), "test zero");
    }
    auto pruned = EncoderModel::load(out);
    const std::vector<std::string> texts = dev_texts(16);
    const std::vector<float> a = logits_of(*dense, texts), b = logits_of(*pruned, texts);
    double scale = 0;
    for (float x : a) scale = std::max(scale, std::fabs(double(x)));
    size_t at = 0;
    const double d = max_abs_diff(a, b, &at);
    // float rounding only: the sums differ by the order of their (zero) terms
    EXPECT_LT(d, 1e-4 * std::max(1.0, scale)) << "logit " << at << ": zeroed dense " << a[at] << ", pruned " << b[at];
    // and the removed units matter: the unmasked dense model differs
    auto original = EncoderModel::load(test::fixture(kModel));
    const std::vector<float> c = logits_of(*original, texts);
    EXPECT_GT(max_abs_diff(c, b, &at), 1e-3);
}

TEST(PruneEncoder, ConfigAndShapesAreTransformers) {
    test::TempDir dir;
    const std::string out = dir.file("pruned");
    const EncoderPruneReport r = prune_encoder_structured(test::fixture(kModel), out, options());
    std::ifstream cf(out + "/config.json");
    const nlohmann::json cfg = nlohmann::json::parse(cf);
    EXPECT_EQ(cfg["num_attention_heads"], 4);  // HF keeps it: head size = hidden / num_attention_heads
    EXPECT_EQ(cfg["intermediate_size"], 352);
    ASSERT_TRUE(cfg["pruned_heads"].is_object());
    for (const EncoderPrunedBlock& pb : r.blocks) {
        const nlohmann::json& removed = cfg["pruned_heads"][std::to_string(pb.block)];
        ASSERT_EQ(removed.size(), 1u);
        EXPECT_EQ(std::count(pb.heads_kept.begin(), pb.heads_kept.end(), removed[0].get<int64_t>()), 0);
    }
    const safetensors::Model st = safetensors::Model::open(out);
    const auto shape = [&](const std::string& n) {
        const safetensors::TensorInfo* t = st.find_tensor(n);
        return t ? t->shape : std::vector<int64_t>{};
    };
    for (int l = 0; l < 4; ++l) {
        const std::string p = "bert.encoder.layer." + std::to_string(l) + ".";
        EXPECT_EQ(shape(p + "attention.self.query.weight"), (std::vector<int64_t>{96, 128}));
        EXPECT_EQ(shape(p + "attention.self.value.bias"), (std::vector<int64_t>{96}));
        EXPECT_EQ(shape(p + "attention.output.dense.weight"), (std::vector<int64_t>{128, 96}));
        EXPECT_EQ(shape(p + "intermediate.dense.weight"), (std::vector<int64_t>{352, 128}));
        EXPECT_EQ(shape(p + "output.dense.weight"), (std::vector<int64_t>{128, 352}));
    }
    EXPECT_EQ(shape("bert.embeddings.word_embeddings.weight"), (std::vector<int64_t>{30522, 128}));
    auto m = EncoderModel::load(out);
    for (const EncoderBlock& b : m->weights().blocks) EXPECT_EQ(b.n_head, 3);
    EXPECT_EQ(r.params_in - r.params_out, 4 * (4 * 32 * 128 + 3 * 32 + 2 * 160 * 128 + 160));  // 230,400
}

TEST(PruneEncoder, MatchesTransformers) {
    const char* py = std::getenv("CQ_TRANSFORMERS_PYTHON");
    const std::string python = py ? py : "/work/venv-fam/bin/python";
    if (!std::filesystem::exists(python)) GTEST_SKIP() << "no Python with transformers (" << python << "; set CQ_TRANSFORMERS_PYTHON)";
    test::TempDir dir;
    const std::string out = dir.file("pruned");
    prune_encoder_structured(test::fixture(kModel), out, options());
    const std::string script = std::string(CQ_TESTS_DIR) + "/../scripts/hf_encoder_logits.py";
    const std::string cmd = python + " " + script + " " + out + " " + test::fixture(kDev) + " 16 2>/dev/null";
    FILE* p = popen(cmd.c_str(), "r");
    ASSERT_NE(p, nullptr);
    std::string text;
    char buf[4096];
    while (size_t n = fread(buf, 1, sizeof buf, p)) text.append(buf, n);
    const int rc = pclose(p);
    if (rc != 0 && text.empty()) GTEST_SKIP() << "the transformers reference did not run: " << cmd;
    const nlohmann::json ref = nlohmann::json::parse(text);
    EXPECT_EQ(ref["heads"], nlohmann::json({3, 3, 3, 3}));
    std::vector<float> want;
    for (const auto& row : ref["logits"])
        for (const auto& x : row) want.push_back(x.get<float>());
    auto m = EncoderModel::load(out);
    const std::vector<float> got = logits_of(*m, dev_texts(16));
    ASSERT_EQ(got.size(), want.size());
    size_t at = 0;
    EXPECT_LT(max_abs_diff(got, want, &at), 1e-4) << "logit " << at << ": cq " << got[at] << ", transformers " << want[at];
}

TEST(PruneEncoder, ExpandedModelIsTheSameFunction) {
    test::TempDir dir;
    const std::string pruned = dir.file("pruned"), expanded = dir.file("expanded");
    prune_encoder_structured(test::fixture(kModel), pruned, options());
    expand_pruned_encoder(pruned, expanded);
    auto e = EncoderModel::load(expanded);
    for (const EncoderBlock& b : e->weights().blocks) EXPECT_EQ(b.q.n_out(), 128);
    auto p = EncoderModel::load(pruned);
    const std::vector<std::string> texts = dev_texts(8);
    size_t at = 0;
    EXPECT_LT(max_abs_diff(logits_of(*e, texts), logits_of(*p, texts), &at), 1e-5);
    // the removed heads are exact zeros, recorded under cq_structured_prune
    std::ifstream cf(expanded + "/config.json");
    const nlohmann::json config = nlohmann::json::parse(cf);
    EXPECT_FALSE(config.contains("pruned_heads"));
    const int64_t h = config["cq_structured_prune"]["pruned_heads"]["0"][0];
    const std::vector<float> q = safetensors::Model::open(expanded).tensor("bert.encoder.layer.0.attention.self.query.weight").to_float();
    for (int64_t i = h * 32 * 128; i < (h + 1) * 32 * 128; ++i) ASSERT_EQ(q[static_cast<size_t>(i)], 0.0f) << i;
}

// --recover trains the pruned model as it is (per-block head counts): the output keeps pruned_heads and the sliced
// shapes, its weights moved, and the run is the same bytes twice.
TEST(PruneEncoder, RecoverTrainsThePrunedModelDirectly) {
    test::TempDir dir;
    EncoderPruneOptions o = options();
    o.recover_steps = 4;
    o.recover.batch = 8, o.recover.max_len = 32, o.recover.schedule.lr = 1e-4f;
    const EncoderPruneReport r = prune_encoder_structured(test::fixture(kModel), dir.file("a"), o);
    prune_encoder_structured(test::fixture(kModel), dir.file("b"), o);
    prune_encoder_structured(test::fixture(kModel), dir.file("plain"), options());
    ASSERT_TRUE(r.recovery);
    EXPECT_EQ(r.recovery->steps, 4);
    EXPECT_EQ(read_bytes(dir.file("a") + "/model.safetensors"), read_bytes(dir.file("b") + "/model.safetensors"));
    std::ifstream ca(dir.file("a") + "/config.json"), cp(dir.file("plain") + "/config.json");
    EXPECT_EQ(nlohmann::json::parse(ca)["pruned_heads"], nlohmann::json::parse(cp)["pruned_heads"]);
    const safetensors::Model a = safetensors::Model::open(dir.file("a")), plain = safetensors::Model::open(dir.file("plain"));
    for (const char* name : {"bert.encoder.layer.0.attention.self.query.weight", "bert.encoder.layer.0.attention.output.dense.weight"}) {
        ASSERT_NE(a.find_tensor(name), nullptr) << name;
        EXPECT_EQ(a.find_tensor(name)->shape, plain.find_tensor(name)->shape) << name;
        EXPECT_NE(a.tensor(name).to_float(), plain.tensor(name).to_float()) << name << ": recovery did not train it";
    }
    for (const char* tmp : {".pruned.tmp", ".expanded.tmp", ".distilled.tmp"}) EXPECT_FALSE(std::filesystem::exists(dir.file("a") + tmp)) << tmp;
}

TEST(PruneEncoder, W8A8ContainerWithQ4_0EmbeddingsLoadsThePrunedModel) {
    test::TempDir dir;
    const std::string pruned = dir.file("pruned"), out = dir.file("q.gguf");
    prune_encoder_structured(test::fixture(kModel), pruned, options());
    EncoderQuantizeOptions q;
    q.activations = ActivationQuant::static_per_tensor;
    q.embedding_type = DType::Q4_0;
    q.calib_data = test::fixture(kTrain);
    q.calib_samples = 32;
    q.run.max_len = 64;
    const EncoderQuantizeReport r = quantize_encoder(pruned, out, q);
    EXPECT_EQ(r.embeddings, "q4_0");
    EXPECT_LT(r.file_bytes_out, 19139184 / 5);  // ≤ 0.2× the FP32 model.safetensors
    auto m = EncoderModel::load(out);
    for (const EncoderBlock& b : m->weights().blocks) EXPECT_EQ(b.n_head, 3);
    const Tensor& words = m->weights().word_embd;
    ASSERT_EQ(words.dtype(), DType::Q4_0);
    const std::vector<float> table = words.to_float();
    const std::vector<int32_t> ids = {0, 101, 2023, 30521, 7};
    std::vector<float> rows(ids.size() * 128);
    ops::embedding(words, ids, rows.data());
    for (size_t t = 0; t < ids.size(); ++t)
        for (int64_t i = 0; i < 128; ++i)
            ASSERT_EQ(rows[t * 128 + i], table[static_cast<size_t>(ids[t]) * 128 + i]) << "token " << ids[t] << " column " << i;
    auto f32 = EncoderModel::load(pruned);
    const std::vector<std::string> texts = dev_texts(16);
    const std::vector<float> a = logits_of(*f32, texts), b = logits_of(*m, texts);
    int agree = 0;
    for (size_t i = 0; i < texts.size(); ++i) agree += (a[2 * i] < a[2 * i + 1]) == (b[2 * i] < b[2 * i + 1]);
    EXPECT_GE(agree, 15);
}

TEST(PruneEncoder, BadTargetsNameTheOption) {
    for (const char* bad : {"heads=1.5", "width=0.2", "heads=x"}) {
        try {
            StructuredTarget::parse(bad, "[prune]");
            ADD_FAILURE() << bad << " was accepted";
        } catch (const InvalidArgument& e) {
            EXPECT_NE(std::string(e.what()).find("--structured"), std::string::npos) << e.what();
            EXPECT_NE(std::string(e.what()).find(bad), std::string::npos) << e.what();
        }
    }
    test::TempDir dir;
    EXPECT_THROW(prune_encoder_structured(test::fixture(kModel), dir.file("o"), options("layers=1")), InvalidArgument);
    EncoderPruneOptions no_calib = options();
    no_calib.calib_data.clear();
    EXPECT_THROW(prune_encoder_structured(test::fixture(kModel), dir.file("o"), no_calib), InvalidArgument);
    EXPECT_THROW(prune_encoder_structured(test::fixture(kModel), test::fixture(kModel), options()), InvalidArgument);
    EXPECT_FALSE(std::filesystem::exists(dir.file("o")));
}

TEST(PruneEncoder, SameBytesAtOneAndTwoThreads) {
    test::TempDir dir;
    ThreadPool::set_global_threads(1);
    prune_encoder_structured(test::fixture(kModel), dir.file("t1"), options());
    ThreadPool::set_global_threads(2);
    prune_encoder_structured(test::fixture(kModel), dir.file("t2"), options());
    ThreadPool::set_global_threads(0);
    EXPECT_EQ(read_bytes(dir.file("t1") + "/model.safetensors"), read_bytes(dir.file("t2") + "/model.safetensors"));
    EXPECT_EQ(read_bytes(dir.file("t1") + "/config.json"), read_bytes(dir.file("t2") + "/config.json"));
}

}  // namespace
}  // namespace cq
