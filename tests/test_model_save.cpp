// Load → change in memory → write: what a pass did to a model is what its saved file holds. Each saved
// file is loaded back and must give the in-memory model's logits (or classes); an unchanged GGUF saves to
// the same tensors; the changed layer's bytes equal what cq quantize writes from the file alone (whose
// bytes are llama.cpp's, test_quant_*), and quantize_model over a changed model keeps the change.
#include <cmath>
#include <cstring>
#include <filesystem>

#include <gtest/gtest.h>

#include "cq/atomic_file.h"
#include "cq/classify.h"
#include "cq/compare.h"
#include "cq/encoder.h"
#include "cq/error.h"
#include "cq/io/gguf.h"
#include "cq/llm.h"
#include "cq/quantize.h"
#include "cq/quantize_encoder.h"
#include "test_support.h"

namespace cq {
namespace {

namespace fs = std::filesystem;
using test::TempDir;

const std::string kStoriesGguf = "models/stories260K-gguf/stories260K.gguf";
const std::string kStoriesHf = "models/stories260K-hf";
const std::string kGpt2 = "models/gpt2-tiny-stories";

std::vector<float> logits_of(LanguageModel& m) {
    const std::vector<int32_t> ids = m.tokenizer().encode("Once upon a time there was a little dog who", true);
    std::vector<float> out(ids.size() * static_cast<size_t>(m.config().n_vocab));
    m.forward(ids, 0, out, true);
    return out;
}

void expect_close(const std::vector<float>& a, const std::vector<float>& b, double tol, const std::string& what) {
    ASSERT_EQ(a.size(), b.size()) << what;
    double worst = 0;
    for (size_t i = 0; i < a.size(); ++i) worst = std::max(worst, static_cast<double>(std::abs(a[i] - b[i])));
    EXPECT_LE(worst, tol) << what;
}

std::vector<uint8_t> tensor_bytes(const gguf::File& f, const std::string& name) {
    const Tensor t = f.tensor(name);
    const auto* p = static_cast<const uint8_t*>(t.data());
    return {p, p + t.nbytes()};
}

TEST(ModelSave, UnchangedGgufSavesTheSameTensors) {
    TempDir dir;
    auto m = LanguageModel::load(test::fixture(kStoriesGguf));
    m->save(dir.file("same.gguf"));
    const gguf::File a = gguf::File::open(test::fixture(kStoriesGguf)), b = gguf::File::open(dir.file("same.gguf"));
    ASSERT_EQ(a.tensors().size(), b.tensors().size());
    for (size_t i = 0; i < a.tensors().size(); ++i) {
        EXPECT_EQ(a.tensors()[i].name, b.tensors()[i].name);
        EXPECT_EQ(a.tensors()[i].dtype, b.tensors()[i].dtype) << a.tensors()[i].name;
        EXPECT_EQ(tensor_bytes(a, a.tensors()[i].name), tensor_bytes(b, a.tensors()[i].name)) << a.tensors()[i].name;
    }
    EXPECT_EQ(a.metadata().size(), b.metadata().size());
    EXPECT_THROW(m->save(test::fixture(kStoriesGguf)), InvalidArgument);  // never over its own file
}

// HF LLaMA: q/k rows are held in HF's rotate_half order and must be written in GGUF's.
TEST(ModelSave, HfLlamaChangedInMemoryRunsTheSameFromItsFile) {
    TempDir dir;
    LoadOptions lo;
    lo.n_ctx = 64;
    auto m = LanguageModel::load(test::fixture(kStoriesHf), lo);
    for (const char* name : {"blk.0.attn_q", "blk.0.attn_k", "blk.2.ffn_gate"}) m->quantize_linear(*m->find_linear(name), DType::Q4_0);
    m->quantize_linear(*m->find_linear("blk.4.attn_v"), DType::Q8_0);
    const std::vector<float> in_memory = logits_of(*m);
    m->save(dir.file("changed.gguf"));
    auto back = LanguageModel::load(dir.file("changed.gguf"), lo);
    EXPECT_EQ(back->find_linear("blk.0.attn_q")->format(), "q4_0");
    EXPECT_EQ(back->find_linear("blk.1.attn_q")->format(), "f32");
    expect_close(logits_of(*back), in_memory, 1e-4, "stories260K HF, saved and reloaded");

    // The changed tensors are exactly what cq quantize writes from the file for the same types.
    QuantizeOptions o;
    o.type = "f32";
    o.tensor_types = {"blk.0.attn_q.weight=q4_0", "blk.0.attn_k.weight=q4_0", "blk.2.ffn_gate.weight=q4_0", "blk.4.attn_v.weight=q8_0"};
    quantize_model(test::fixture(kStoriesGguf), dir.file("ruled.gguf"), o);
    const gguf::File saved = gguf::File::open(dir.file("changed.gguf")), ruled = gguf::File::open(dir.file("ruled.gguf"));
    for (const char* name : {"blk.0.attn_q.weight", "blk.0.attn_k.weight", "blk.2.ffn_gate.weight", "blk.4.attn_v.weight", "blk.3.attn_q.weight"})
        EXPECT_EQ(tensor_bytes(saved, name), tensor_bytes(ruled, name)) << name;
}

// GPT-2 from HF: Conv1D weights are held [in, out]; a changed one is [out, in] as GGUF wants.
TEST(ModelSave, HfGpt2ChangedInMemoryRunsTheSameFromItsFile) {
    TempDir dir;
    LoadOptions lo;
    lo.n_ctx = 64;
    auto m = LanguageModel::load(test::fixture(kGpt2), lo);
    m->quantize_linear(*m->find_linear("blk.1.attn_qkv"), DType::Q8_0);
    m->quantize_linear(*m->find_linear("blk.3.ffn_down"), DType::Q4_0);
    const std::vector<float> in_memory = logits_of(*m);
    m->save(dir.file("gpt2.gguf"));
    auto back = LanguageModel::load(dir.file("gpt2.gguf"), lo);
    EXPECT_EQ(back->find_linear("blk.1.attn_qkv")->format(), "q8_0");
    // Unchanged Conv1D layers run [in, out] in memory and [out, in] from the file: the same products summed in
    // another order, a few 1e-5 relative on logits of magnitude ~10.
    expect_close(logits_of(*back), in_memory, 1e-3, "gpt2 HF, saved and reloaded");
}

// A scaled rewrite, as AWQ / SmoothQuant make: block 0's attn_norm multiplied by s per channel and the
// columns of q, k and v divided by s computes the same function; saved and reloaded, the file runs as
// memory does and holds the scaled norm.
TEST(ModelSave, ScaledNormAndLinearsAreWrittenTogether) {
    TempDir dir;
    LoadOptions lo;
    lo.n_ctx = 64;
    auto m = LanguageModel::load(test::fixture(kStoriesHf), lo);
    const std::vector<float> before = logits_of(*m);
    Norm& norm = m->weights().blocks[0].attn_norm;
    const int64_t D = norm.weight.numel();
    std::vector<float> s(static_cast<size_t>(D)), g = norm.weight.to_float();
    for (int64_t c = 0; c < D; ++c) s[static_cast<size_t>(c)] = 0.5f + static_cast<float>(c % 7) * 0.25f;  // exact in binary
    Tensor scaled = Tensor::zeros({D}, DType::F32);
    for (int64_t c = 0; c < D; ++c) static_cast<float*>(scaled.mutable_data())[c] = g[static_cast<size_t>(c)] * s[static_cast<size_t>(c)];
    norm.weight = scaled;
    norm.modified_by = "test_scale";
    for (const char* name : {"blk.0.attn_q", "blk.0.attn_k", "blk.0.attn_v"}) {
        Linear& l = *m->find_linear(name);
        std::vector<float> w = l.weight.to_float();
        for (int64_t o = 0; o < l.n_out(); ++o)
            for (int64_t c = 0; c < D; ++c) w[static_cast<size_t>(o * D + c)] /= s[static_cast<size_t>(c)];
        Tensor t = Tensor::zeros({l.n_out(), D}, DType::F32);
        std::memcpy(t.mutable_data(), w.data(), w.size() * sizeof(float));
        m->set_weight(l, t, "test_scale");
    }
    const std::vector<float> in_memory = logits_of(*m);
    expect_close(in_memory, before, 1e-4, "a scale folded into the norm is the same function");
    m->save(dir.file("scaled.gguf"));
    auto back = LanguageModel::load(dir.file("scaled.gguf"), lo);
    expect_close(logits_of(*back), in_memory, 1e-4, "scaled model saved and reloaded");  // RoPE pairs differ: HF in memory, GGUF from the file
    const std::vector<float> saved_norm = back->weights().blocks[0].attn_norm.weight.to_float();
    for (int64_t c = 0; c < D; ++c) EXPECT_EQ(saved_norm[static_cast<size_t>(c)], g[static_cast<size_t>(c)] * s[static_cast<size_t>(c)]) << c;
}

// quantize_model over a changed model: the pass's layers stay as the pass left them (and the report says
// so); every other tensor follows the rules, byte for byte what quantize_model writes from the file.
TEST(ModelSave, QuantizeKeepsWhatAPassChanged) {
    TempDir dir;
    LoadOptions lo;
    lo.n_ctx = 16;
    lo.pack_for_kernels = false;
    auto m = LanguageModel::load(test::fixture(kStoriesGguf), lo);
    m->quantize_linear(*m->find_linear("blk.1.attn_output"), DType::Q8_0, "my_pass");
    QuantizeOptions o;
    o.type = "q4_0";
    const QuantizeReport r = quantize_model(*m, dir.file("model.gguf"), o);
    quantize_model(test::fixture(kStoriesGguf), dir.file("file.gguf"), o);
    bool seen = false;
    for (const TensorPlan& p : r.tensors)
        if (p.name == "blk.1.attn_output.weight") {
            seen = true;
            EXPECT_EQ(p.chosen, DType::Q8_0);
            EXPECT_EQ(p.rule, "model: my_pass");
        }
    EXPECT_TRUE(seen);
    const gguf::File a = gguf::File::open(dir.file("model.gguf")), b = gguf::File::open(dir.file("file.gguf"));
    for (const auto& t : b.tensors()) {
        if (t.name == "blk.1.attn_output.weight") {
            EXPECT_EQ(a.find_tensor(t.name)->dtype, DType::Q8_0);
            continue;
        }
        EXPECT_EQ(tensor_bytes(a, t.name), tensor_bytes(b, t.name)) << t.name;
    }
    // With nothing changed the two paths write the same file.
    auto untouched = LanguageModel::load(test::fixture(kStoriesGguf), lo);
    quantize_model(*untouched, dir.file("untouched.gguf"), o);
    EXPECT_EQ(test::read_bytes(dir.file("untouched.gguf")), test::read_bytes(dir.file("file.gguf")));
}

TEST(ModelSave, NonFiniteWeightIsRefusedByPlace) {
    LoadOptions lo;
    lo.n_ctx = 16;
    auto m = LanguageModel::load(test::fixture(kStoriesGguf), lo);
    Linear& q = *m->find_linear("blk.0.attn_q");
    std::vector<float> w = q.weight.to_float();
    w[3 * 64 + 5] = std::nanf("");
    Tensor poisoned = Tensor::zeros({q.n_out(), q.n_in()}, DType::F32);
    std::memcpy(poisoned.mutable_data(), w.data(), w.size() * sizeof(float));
    m->set_weight(q, poisoned);
    try {
        m->quantize_linear(q, DType::Q8_0);
        FAIL() << "a NaN must be refused";
    } catch (const InvalidArgument& e) {
        EXPECT_NE(std::string(e.what()).find("row 3, column 5"), std::string::npos) << e.what();
    }
}

// An encoder: W8A8 applied in memory, saved as cq's container, loaded back: the same classes.
TEST(ModelSave, EncoderW8A8SavedRunsTheSame) {
    TempDir dir;
    auto m = EncoderModel::load(test::fixture("models/bert-tiny-sst2"));
    apply_w8a8(*m, default_w8a8_rules(), ActivationQuant::dynamic_per_token, nullptr, calib::Method::minmax, 100.0, 8);
    const std::vector<std::string> texts = {"a gorgeous, witty, seductive movie.", "the plot is nothing but boilerplate clichés"};
    const TextBatch batch = m->tokenize(texts, 64);
    std::vector<float> a(2 * static_cast<size_t>(m->config().num_labels)), b(a.size());
    m->classify(batch, a.data());
    m->save(dir.file("bert.gguf"));
    auto back = EncoderModel::load(dir.file("bert.gguf"));
    int64_t int8_layers = 0;
    for (const Linear* l : back->linears()) int8_layers += l->int8 ? 1 : 0;
    EXPECT_EQ(int8_layers, 6 * m->config().n_layer);  // q k v out ffn_in ffn_out of every block
    back->classify(back->tokenize(texts, 64), b.data());
    for (size_t i = 0; i < a.size(); ++i) EXPECT_FLOAT_EQ(a[i], b[i]) << i;
    EXPECT_THROW(back->save(dir.file("again.gguf")), Unsupported);
}

// The encoders' same-run comparison lives in the library: a model against itself agrees everywhere with
// zero KLD; against its W8A8 form (saved and reloaded) it classifies the same samples, and the report
// carries both accuracies as classify_dataset gives them.
TEST(ModelSave, EncoderComparisonInTheLibrary) {
    TempDir dir;
    auto base = EncoderModel::load(test::fixture("models/bert-tiny-sst2"));
    auto same = EncoderModel::load(test::fixture("models/bert-tiny-sst2"));
    EncoderCompareOptions o;
    o.selection.first = 0;
    o.selection.count = 48;
    o.bench = false;
    const std::string data = test::fixture("data/sst2_dev.tsv");
    const EncoderComparisonReport self = compare_encoders(*base, *same, data, o);
    EXPECT_EQ(self.base.samples, 48);
    EXPECT_EQ(self.agreement.agreement, 1.0);
    EXPECT_EQ(self.agreement.mean_kld, 0.0);
    EXPECT_FALSE(self.base_speed.has_value());

    EncoderQuantizeOptions q;
    quantize_encoder(test::fixture("models/bert-tiny-sst2"), dir.file("w8.gguf"), q);
    auto w8 = EncoderModel::load(dir.file("w8.gguf"));
    o.bench = true;
    o.bench_repetitions = 1;
    o.bench_batch = 2;
    o.bench_seq = 16;
    const EncoderComparisonReport r = compare_encoders(*base, *w8, data, o);
    const ClassificationResult direct = classify_dataset(*w8, load_labelled_data(data, *base, o.selection), o.run);
    EXPECT_EQ(r.candidate.accuracy, direct.accuracy);
    EXPECT_GE(r.agreement.agreement, 0.9);
    EXPECT_GT(r.agreement.mean_kld, 0.0);
    ASSERT_TRUE(r.candidate_speed.has_value());
    EXPECT_EQ(r.candidate_speed->batch, 2);
}

}  // namespace
}  // namespace cq

namespace cq {
namespace {

// A pass that changes the embedding table (training) names itself; save writes the table as the model holds it, and
// the changed values reload; with a quantizing rule the table follows the rule from the model's values.
TEST(ModelSave, ChangedEmbeddingTableIsWrittenFromTheModel) {
    test::TempDir dir;
    auto m = LanguageModel::load(test::fixture("models/stories260K-gguf/stories260K.gguf"));
    LlmWeights& w = m->weights();
    std::vector<float> v = w.token_embd.to_float();
    v[5] = 3.25f;
    Tensor t = Tensor::zeros(w.token_embd.shape(), DType::F32);
    std::memcpy(t.mutable_data(), v.data(), v.size() * sizeof(float));
    w.token_embd = std::move(t);
    m->save(dir.file("unmarked.gguf"));
    EXPECT_NE(LanguageModel::load(dir.file("unmarked.gguf"))->weights().token_embd.to_float()[5], 3.25f) << "unmarked: the file's table";
    w.embeddings_modified_by = "test";
    m->save(dir.file("marked.gguf"));
    EXPECT_EQ(LanguageModel::load(dir.file("marked.gguf"))->weights().token_embd.to_float()[5], 3.25f);
    QuantizeOptions q;
    q.type = "q8_0";
    quantize_model(*m, dir.file("q8.gguf"), q);
    const auto r = LanguageModel::load(dir.file("q8.gguf"));
    EXPECT_EQ(r->weights().token_embd.dtype(), DType::Q8_0);
    EXPECT_NEAR(r->weights().token_embd.to_float()[5], 3.25f, 3.25f / 127);
}

}  // namespace
}  // namespace cq
