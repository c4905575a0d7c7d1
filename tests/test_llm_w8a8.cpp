// W8A8 of decoder LLMs (quantize_llm_w8a8): GPT-2's [in, out] weights quantize as their transpose, a saved GGUF loads
// back to the same logits bit for bit (LLaMA's q/k rows unpermuted on the way out, re-permuted on the way in), symmetric
// ranges are TensorRT's codes, and the int8 exports lower every block Linear. ONNX Runtime's runs of these exports are
// measured in docs/onnx.md ("W8A8 decoders").
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "cq/calibration.h"
#include "cq/error.h"
#include "cq/llm.h"
#include "cq/onnx.h"
#include "cq/quantize.h"
#include "cq/w8a8.h"
#include "ops/ops.h"
#include "test_support.h"

namespace cq {
namespace {

using test::fixture;
using test::TempDir;

const std::vector<int32_t> kTokens{1, 403, 1873, 263, 931, 29892, 727, 471, 263, 2217, 7826, 4257, 365, 2354, 29889, 2296};

std::vector<float> logits_of(LanguageModel& m, std::vector<int32_t> tokens) {
    for (int32_t& t : tokens) t %= static_cast<int32_t>(m.config().n_vocab);
    std::vector<float> out(tokens.size() * static_cast<size_t>(m.config().n_vocab));
    m.forward(tokens, 0, out, true);
    return out;
}

LlmW8A8Options static_options(int64_t ctx = 64, int64_t chunks = 4) {
    LlmW8A8Options o;
    o.calib_text = fixture("data/stories_calib.txt");
    o.calib_ctx = ctx;
    o.calib_chunks = chunks;
    return o;
}

TEST(LlmW8A8, TransposedWeightsQuantizeAsTheirTranspose) {
    Tensor w = Tensor::zeros({5, 3}, DType::F32);  // [in, out] as GPT-2's Conv1D stores it
    auto* p = static_cast<float*>(w.mutable_data());
    for (int i = 0; i < 15; ++i) p[i] = std::sin(1.7f * static_cast<float>(i)) * (i % 4 == 0 ? 3.0f : 0.5f);
    Linear conv1d;
    conv1d.name = "c";
    conv1d.weight = w;
    conv1d.transposed = true;
    Linear plain;
    plain.name = "c";
    plain.weight = Tensor::zeros({3, 5}, DType::F32);
    auto* t = static_cast<float*>(plain.weight.mutable_data());
    for (int o = 0; o < 3; ++o)
        for (int i = 0; i < 5; ++i) t[o * 5 + i] = p[i * 3 + o];
    const auto a = quantize_linear_w8a8(conv1d, ActivationQuant::dynamic_per_token);
    const auto b = quantize_linear_w8a8(plain, ActivationQuant::dynamic_per_token);
    ASSERT_EQ(a->n_out, 3);
    ASSERT_EQ(a->n_in, 5);
    EXPECT_EQ(a->weight_scale, b->weight_scale);
    EXPECT_EQ(std::memcmp(a->weight.data(), b->weight.data(), 15), 0);
    // the closed form: row o's scale is max|w[o, ·]| / 127
    for (int o = 0; o < 3; ++o) {
        float amax = 0;
        for (int i = 0; i < 5; ++i) amax = std::max(amax, std::fabs(t[o * 5 + i]));
        EXPECT_FLOAT_EQ(a->weight_scale[static_cast<size_t>(o)], amax / 127.0f);
    }
}

TEST(LlmW8A8, SymmetricRangesAreTensorRtCodes) {
    const calib::U8Params p = calib::u8_params_symmetric({-3.0f, 1.5f}, 255);
    EXPECT_EQ(p.zero_point, 128);
    EXPECT_FLOAT_EQ(p.scale, 3.0f / 127.0f);
    // u8 code − 128 is TensorRT's s8 code round(x / s) clamped to [−128, 127], for values inside and beyond the range
    for (const float x : {-3.5f, -3.0f, -0.01f, 0.0f, 0.7f, 1.5f, 2.9f, 3.2f}) {
        const float u8 = std::clamp(std::nearbyint(x / p.scale) + 128.0f, 0.0f, 255.0f);
        const float s8 = std::clamp(std::nearbyint(x / p.scale), -128.0f, 127.0f);
        EXPECT_EQ(u8 - 128.0f, s8) << x;
    }
    EXPECT_EQ(calib::u8_params_symmetric({-1.0f, 2.0f}, 127).zero_point, 64);
    EXPECT_THROW(calib::u8_params_symmetric({-1.0f, 1.0f}, 200), InvalidArgument);
}

TEST(LlmW8A8, DynamicQuantizeLinearParamsAreOnnxs) {
    // the example of ONNX's DynamicQuantizeLinear operator documentation
    const std::vector<float> x{0.0f, 2.0f, -3.0f, -2.5f, 1.34f, 0.5f};
    const calib::U8Params p = dynamic_quantize_linear_params(-3.0f, 2.0f);
    EXPECT_FLOAT_EQ(p.scale, 0.019607844f);
    EXPECT_EQ(p.zero_point, 153);
    const std::vector<int> expected{153, 255, 0, 26, 221, 179};
    for (size_t i = 0; i < x.size(); ++i)
        EXPECT_EQ(static_cast<int>(std::clamp(std::nearbyint(x[i] / p.scale) + 153.0f, 0.0f, 255.0f)), expected[i]) << i;
    // the range always holds 0; an all-zero input gets scale 1
    EXPECT_EQ(dynamic_quantize_linear_params(0.5f, 2.0f).zero_point, 0);
    EXPECT_EQ(dynamic_quantize_linear_params(-4.0f, -1.0f).zero_point, 255);
    EXPECT_FLOAT_EQ(dynamic_quantize_linear_params(0.0f, 0.0f).scale, 1.0f);
}

TEST(LlmW8A8, PerTensorDynamicLinearMatchesItsDefinition) {
    const int64_t T = 5, K = 37, N = 19;  // awkward: K not a multiple of 4, N not of the 16-channel panel
    Linear l;
    l.name = "awkward";
    l.weight = Tensor::zeros({N, K}, DType::F32);
    auto* w = static_cast<float*>(l.weight.mutable_data());
    for (int64_t i = 0; i < N * K; ++i) w[i] = std::cos(0.37f * static_cast<float>(i)) * (i % 7 == 0 ? 2.0f : 0.3f);
    Tensor bias = Tensor::zeros({N}, DType::F32);
    for (int64_t n = 0; n < N; ++n) static_cast<float*>(bias.mutable_data())[n] = 0.01f * static_cast<float>(n);
    l.bias = bias;
    l.int8 = quantize_linear_w8a8(l, ActivationQuant::dynamic_per_tensor, {1.0f, 0}, 255);
    std::vector<float> x(static_cast<size_t>(T * K)), y(static_cast<size_t>(T * N));
    for (size_t i = 0; i < x.size(); ++i) x[i] = std::sin(0.91f * static_cast<float>(i)) * (i == 17 ? 9.0f : 1.5f) + 0.4f;
    ops::linear(l, x.data(), T, y.data());
    // the definition: one (scale, zero point) from the whole input, u8 codes, integer products, both scales, the bias
    const auto [lo, hi] = std::minmax_element(x.begin(), x.end());
    const calib::U8Params p = dynamic_quantize_linear_params(*lo, *hi);
    const Int8Linear& q = *l.int8;
    const auto* wq = static_cast<const int8_t*>(q.weight.data());
    for (int64_t t = 0; t < T; ++t)
        for (int64_t n = 0; n < N; ++n) {
            int64_t acc = 0;
            for (int64_t k = 0; k < K; ++k) {
                const int64_t code = static_cast<int64_t>(std::clamp(std::nearbyint(x[static_cast<size_t>(t * K + k)] / p.scale) + float(p.zero_point), 0.0f, 255.0f));
                acc += (code - p.zero_point) * wq[n * K + k];
            }
            const double ref = static_cast<double>(acc) * p.scale * q.weight_scale[static_cast<size_t>(n)] + 0.01 * static_cast<double>(n);
            EXPECT_NEAR(y[static_cast<size_t>(t * N + n)], ref, 1e-4 * (1.0 + std::fabs(ref))) << t << "," << n;
        }
    // and the per-tensor mode is 8-bit only
    EXPECT_THROW(quantize_linear_w8a8(l, ActivationQuant::dynamic_per_tensor, {1.0f, 0}, 127), InvalidArgument);
}

TEST(LlmW8A8, SavedLlamaReloadsToTheSameLogits) {
    TempDir dir;
    LoadOptions load;
    load.n_ctx = 64;
    auto m = LanguageModel::load(fixture("models/llama-256d-stories"), load);
    const std::vector<float> before = logits_of(*m, kTokens);
    const int64_t n = quantize_llm_w8a8(*m, static_options());
    EXPECT_EQ(n, 7 * m->config().n_layer);  // q k v o gate up down; the head stays float
    EXPECT_FALSE(m->weights().output.int8);
    const std::vector<float> quantized = logits_of(*m, kTokens);
    // the quantized model is a different model, but it predicts the float one's next tokens
    EXPECT_NE(quantized, before);
    const size_t V = static_cast<size_t>(m->config().n_vocab);
    int same = 0;
    for (size_t t = 0; t < kTokens.size(); ++t)
        same += std::max_element(before.begin() + t * V, before.begin() + (t + 1) * V) - (before.begin() + t * V) ==
                std::max_element(quantized.begin() + t * V, quantized.begin() + (t + 1) * V) - (quantized.begin() + t * V);
    EXPECT_GE(same, 13) << "of " << kTokens.size();
    m->save(dir.file("w8a8.gguf"));
    auto back = LanguageModel::load(dir.file("w8a8.gguf"), load);
    int64_t int8 = 0;
    for (const Linear* l : back->linears()) int8 += l->int8 != nullptr;
    EXPECT_EQ(int8, n);
    for (const Linear* l : back->linears())
        if (l->int8) EXPECT_EQ(l->int8->activations, ActivationQuant::static_per_tensor) << l->name;
    // The file holds q / k rows in GGUF's order (HF's rotate-half rows unpermuted, their scales with them), and the
    // reloaded model rotates adjacent pairs: the same numbers summed in another order, so an activation code on a rounding
    // edge may flip. A wrong row or scale order would move every logit by O(1).
    const std::vector<float> reloaded = logits_of(*back, kTokens);
    double sum = 0;
    int kept = 0;
    for (size_t i = 0; i < reloaded.size(); ++i) sum += std::fabs(reloaded[i] - quantized[i]);
    for (size_t t = 0; t < kTokens.size(); ++t)
        kept += std::max_element(reloaded.begin() + t * V, reloaded.begin() + (t + 1) * V) - (reloaded.begin() + t * V) ==
                std::max_element(quantized.begin() + t * V, quantized.begin() + (t + 1) * V) - (quantized.begin() + t * V);
    EXPECT_LT(sum / static_cast<double>(reloaded.size()), 1e-2);
    EXPECT_GE(kept, 15);
}

TEST(LlmW8A8, SavedGpt2ReloadsToTheSameLogits) {
    TempDir dir;
    LoadOptions load;
    load.n_ctx = 64;
    auto m = LanguageModel::load(fixture("models/gpt2-tiny-stories"), load);
    LlmW8A8Options o;
    o.activations = ActivationQuant::dynamic_per_token;
    o.activation_bits = 8;
    EXPECT_EQ(quantize_llm_w8a8(*m, o), 4 * m->config().n_layer);  // qkv o up down
    const std::vector<float> quantized = logits_of(*m, kTokens);
    m->save(dir.file("w8a8.gguf"));
    auto back = LanguageModel::load(dir.file("w8a8.gguf"), load);
    EXPECT_EQ(logits_of(*back, kTokens), quantized);
}

TEST(LlmW8A8, PerTensorDynamicFileReloadsAsPerTensor) {
    TempDir dir;
    LoadOptions load;
    load.n_ctx = 64;
    // from a GGUF copy, whose q / k rows are already in the order the saved file holds: the reloaded model then sums
    // exactly as the quantized one did (per-tensor scales move with any rounding of the input's extremes)
    QuantizeOptions f32;
    f32.type = "f32";
    quantize_model(fixture("models/llama-256d-stories"), dir.file("f32.gguf"), f32);
    auto m = LanguageModel::load(dir.file("f32.gguf"), load);
    LlmW8A8Options o;
    o.activations = ActivationQuant::dynamic_per_tensor;
    quantize_llm_w8a8(*m, o);
    const std::vector<float> quantized = logits_of(*m, kTokens);
    EXPECT_EQ(logits_of(*m, kTokens), quantized);
    m->save(dir.file("w8a8.gguf"));
    auto back = LanguageModel::load(dir.file("w8a8.gguf"), load);
    for (const Linear* l : back->linears())
        if (l->int8) EXPECT_EQ(l->int8->activations, ActivationQuant::dynamic_per_tensor) << l->name;
    EXPECT_EQ(logits_of(*back, kTokens), quantized);
}

TEST(LlmW8A8, Int8ExportsLowerEveryBlockLinear) {
    TempDir dir;
    LoadOptions load;
    load.n_ctx = 64;
    auto m = LanguageModel::load(fixture("models/llama-256d-stories"), load);
    LlmW8A8Options o = static_options();
    o.symmetric = true;
    const int64_t n = quantize_llm_w8a8(*m, o);
    for (const Linear* l : m->linears())
        if (l->int8) EXPECT_EQ(l->int8->input.zero_point, 128) << l->name;
    OnnxExportOptions e;
    e.format = OnnxFormat::qdq;
    OnnxExportReport r = export_onnx(*m, dir.file("qdq.onnx"), e);
    ASSERT_EQ(r.files.size(), 2u);  // the full-sequence and the decode graph
    for (const auto& f : r.files) {
        EXPECT_EQ(f.linears.at("Q/DQ MatMul"), n) << f.graph;
        EXPECT_EQ(f.linears.at("MatMul"), 1) << f.graph;  // the head
    }
    e.format = OnnxFormat::trt_qdq;  // export_onnx checks TensorRT's rules itself
    r = export_onnx(*m, dir.file("trt.onnx"), e);
    EXPECT_EQ(r.files.front().linears.at("Q/DQ MatMul (TensorRT)"), n);
}

TEST(LlmW8A8, BadOptionsAreClearErrors) {
    LoadOptions load;
    load.n_ctx = 64;
    auto m = LanguageModel::load(fixture("models/llama-256d-stories"), load);
    LlmW8A8Options o;  // static without text
    EXPECT_THROW(quantize_llm_w8a8(*m, o), InvalidArgument);
    o = static_options();
    o.activation_bits = 6;
    EXPECT_THROW(quantize_llm_w8a8(*m, o), InvalidArgument);
    o = static_options();
    o.rules = {W8A8Rule{RuleScope{"nothing.*"}, true}};
    EXPECT_THROW(quantize_llm_w8a8(*m, o), InvalidArgument);
    o = LlmW8A8Options{};
    o.activations = ActivationQuant::dynamic_per_token;
    o.symmetric = true;
    EXPECT_THROW(quantize_llm_w8a8(*m, o), InvalidArgument);
    // GPT-2's head is its token embedding: W8A8 would change the embedding lookup's bytes too
    auto gpt2 = LanguageModel::load(fixture("models/gpt2-tiny-stories"), load);
    o = LlmW8A8Options{};
    o.activations = ActivationQuant::dynamic_per_token;
    o.rules.push_back(W8A8Rule{RuleScope{"output"}, true});
    EXPECT_THROW(quantize_llm_w8a8(*gpt2, o), InvalidArgument);
    for (const Linear* l : m->linears()) EXPECT_FALSE(l->int8) << l->name;  // nothing changed by the refused calls
}

}  // namespace
}  // namespace cq
