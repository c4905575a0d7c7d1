// W8A8 end to end: the per-channel weight rule in closed form, ops::linear's INT8 path against an
// independent double-precision model of the documented quantization, the layer rules, and the GGUF
// container on the real fixtures (round trip bit-exact, accuracy against the fixtures' reference.json).
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <random>

#include <nlohmann/json.hpp>

#include "cq/classify.h"
#include "cq/encoder.h"
#include "cq/error.h"
#include "cq/io/gguf.h"
#include "cq/kernels.h"
#include "cq/quantize_encoder.h"
#include "cq/w8a8.h"
#include "ops/ops.h"
#include "test_support.h"

namespace cq {
namespace {

Linear float_linear(int64_t n_out, int64_t n_in, const std::vector<float>& w, const std::vector<float>& b = {}) {
    Linear l;
    l.name = "test.layer.0.dense";
    l.weight = Tensor::zeros({n_out, n_in}, DType::F32);
    std::copy(w.begin(), w.end(), static_cast<float*>(l.weight.mutable_data()));
    if (!b.empty()) {
        l.bias = Tensor::zeros({n_out}, DType::F32);
        std::copy(b.begin(), b.end(), static_cast<float*>(l.bias->mutable_data()));
    }
    return l;
}

TEST(W8A8Weights, PerChannelSymmetricRuleInClosedForm) {
    // Row 0: max|w| = 4 → scale 4/127; w·127/4 = 31.75, −63.5, 15.875, 127 → 32, −64 (ties to even), 16, 127.
    // Row 1: all zero → scale 1, codes 0.
    const Linear l = float_linear(2, 4, {1.0f, -2.0f, 0.5f, 4.0f, 0, 0, 0, 0});
    const auto q = quantize_linear_w8a8(l, ActivationQuant::dynamic_per_token);
    ASSERT_EQ(q->weight.dtype(), DType::I8);
    const auto* w = static_cast<const int8_t*>(q->weight.data());
    EXPECT_EQ(std::vector<int>(w, w + 4), (std::vector<int>{32, -64, 16, 127}));
    EXPECT_EQ(std::vector<int>(w + 4, w + 8), (std::vector<int>{0, 0, 0, 0}));
    EXPECT_FLOAT_EQ(q->weight_scale[0], 4.0f / 127.0f);
    EXPECT_FLOAT_EQ(q->weight_scale[1], 1.0f);
    EXPECT_EQ(q->weight_sums[0], 32 - 64 + 16 + 127);
}

TEST(W8A8Weights, NonFiniteWeightIsAnErrorNamingTheLayer) {
    const Linear l = float_linear(1, 2, {1.0f, std::nanf("")});
    try {
        quantize_linear_w8a8(l, ActivationQuant::dynamic_per_token);
        FAIL() << "no error";
    } catch (const InvalidArgument& e) {
        EXPECT_NE(std::string(e.what()).find("test.layer.0.dense"), std::string::npos) << e.what();
    }
}

// The documented computation, written independently in double: per-row (or given) u8 activation
// codes, int8 weight codes, integer dot product, then scales and bias.
std::vector<double> expected_w8a8(const std::vector<float>& x, int64_t T, int64_t n_in, const Int8Linear& q) {
    std::vector<double> y(static_cast<size_t>(T * q.n_out));
    const auto* w = static_cast<const int8_t*>(q.weight.data());
    for (int64_t t = 0; t < T; ++t) {
        const float* row = x.data() + t * n_in;
        float scale = q.input.scale;
        int32_t zp = q.input.zero_point;
        if (q.activations == ActivationQuant::dynamic_per_token) {
            float lo = 0, hi = 0;
            for (int64_t k = 0; k < n_in; ++k) lo = std::min(lo, row[k]), hi = std::max(hi, row[k]);
            scale = (hi - lo) / static_cast<float>(q.act_qmax);
            if (!(scale > 0)) scale = 1, zp = 0;
            else zp = static_cast<int32_t>(std::clamp(std::nearbyint(-lo / scale), 0.0f, static_cast<float>(q.act_qmax)));
        }
        const float inv = 1.0f / scale;
        for (int64_t i = 0; i < q.n_out; ++i) {
            int64_t acc = 0;
            for (int64_t k = 0; k < n_in; ++k) {
                const float code = std::clamp(std::nearbyint(row[k] * inv) + static_cast<float>(zp), 0.0f, static_cast<float>(q.act_qmax));
                acc += (static_cast<int64_t>(code) - zp) * w[i * n_in + k];
            }
            y[static_cast<size_t>(t * q.n_out + i)] =
                static_cast<double>(acc) * scale * q.weight_scale[static_cast<size_t>(i)] + (q.bias.empty() ? 0.0 : q.bias[static_cast<size_t>(i)]);
        }
    }
    return y;
}

void check_linear(ActivationQuant mode, int32_t act_qmax, int64_t T, int64_t n_out, int64_t n_in) {
    std::mt19937 rng(static_cast<uint32_t>(T * 1000 + n_out * 10 + n_in + act_qmax));
    std::normal_distribution<float> nd(0.0f, 1.0f);
    std::vector<float> w(static_cast<size_t>(n_out * n_in)), b(static_cast<size_t>(n_out)), x(static_cast<size_t>(T * n_in));
    for (auto& v : w) v = 0.05f * nd(rng);
    for (auto& v : b) v = 0.1f * nd(rng);
    for (auto& v : x) v = nd(rng) + 0.3f;  // skewed, so the zero point matters
    Linear l = float_linear(n_out, n_in, w, b);
    const calib::U8Params input{6.0f / static_cast<float>(act_qmax), act_qmax / 3};  // static: [−2, 4], some values clip
    l.int8 = quantize_linear_w8a8(l, mode, input, act_qmax);
    std::vector<float> y(static_cast<size_t>(T * n_out));
    ops::linear(l, x.data(), T, y.data());
    const std::vector<double> e = expected_w8a8(x, T, n_in, *l.int8);
    std::vector<float> yf(y.size());
    Linear plain = l;
    plain.int8.reset();
    ops::linear(plain, x.data(), T, yf.data());
    double max_err = 0, max_quant_err = 0;
    for (size_t i = 0; i < y.size(); ++i) {
        max_err = std::max(max_err, std::fabs(y[i] - e[i]) / (1.0 + std::fabs(e[i])));
        max_quant_err = std::max(max_quant_err, std::fabs(static_cast<double>(y[i]) - yf[i]));
    }
    // Same codes, same integers: only the f32 epilogue's rounding separates kernel and model.
    EXPECT_LT(max_err, 1e-5) << "T " << T << " n_out " << n_out << " n_in " << n_in;
    // And the result is still the float layer's, within quantization error (dynamic only: static clips).
    if (mode == ActivationQuant::dynamic_per_token) EXPECT_LT(max_quant_err, act_qmax == 255 ? 0.05 : 0.1);
}

TEST(W8A8Linear, DynamicPathEqualsIndependentModelOnAwkwardShapes) {
    for (const int32_t qmax : {255, 127})
        for (const int64_t T : {1, 5, 33})
            for (const auto& [n_out, n_in] : {std::pair<int64_t, int64_t>{1, 1}, {17, 5}, {50, 63}, {64, 130}}) check_linear(ActivationQuant::dynamic_per_token, qmax, T, n_out, n_in);
}

TEST(W8A8Linear, StaticPathEqualsIndependentModelIncludingClipping) {
    for (const int32_t qmax : {255, 127})
        for (const int64_t T : {1, 7, 40}) check_linear(ActivationQuant::static_per_tensor, qmax, T, 33, 70);
}

// q, k, v of an attention block: one quantized input and one pass give what three separate calls give,
// bit for bit; a float layer among them, or one quantized differently, sends all three the plain way.
TEST(W8A8Linear, SharedInputEqualsSeparateCalls) {
    std::mt19937 rng(7);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    const int64_t T = 13, n_in = 70;
    std::vector<float> x(static_cast<size_t>(T * n_in));
    for (auto& v : x) v = nd(rng) + 0.2f;
    std::vector<Linear> layers;
    for (const int64_t n_out : {24, 16, 41}) {
        std::vector<float> w(static_cast<size_t>(n_out * n_in)), b(static_cast<size_t>(n_out));
        for (auto& v : w) v = 0.05f * nd(rng);
        for (auto& v : b) v = 0.1f * nd(rng);
        layers.push_back(float_linear(n_out, n_in, w, b));
    }
    const auto run = [&](const std::vector<Linear>& ls) {
        std::vector<std::vector<float>> shared(3), separate(3);
        for (size_t i = 0; i < 3; ++i) {
            shared[i].assign(static_cast<size_t>(T * ls[i].n_out()), -1.0f);
            separate[i].assign(shared[i].size(), -2.0f);
            ops::linear(ls[i], x.data(), T, separate[i].data());
        }
        const Linear* ptrs[] = {&ls[0], &ls[1], &ls[2]};
        float* const ys[] = {shared[0].data(), shared[1].data(), shared[2].data()};
        ops::linear_shared_input(ptrs, x.data(), T, ys);
        for (size_t i = 0; i < 3; ++i) EXPECT_EQ(shared[i], separate[i]) << "layer " << i;
    };
    for (auto& l : layers) l.int8 = quantize_linear_w8a8(l, ActivationQuant::dynamic_per_token, {1.0f, 0}, 127);
    run(layers);
    layers[1].int8 = quantize_linear_w8a8(layers[1], ActivationQuant::dynamic_per_token, {1.0f, 0}, 255);  // another width
    run(layers);
    layers[1].int8.reset();  // a float layer
    run(layers);
}

TEST(W8A8Rules, DefaultQuantizesEncoderBlocksOnlyAndLaterRulesWin) {
    auto rules = default_w8a8_rules();
    EXPECT_TRUE(w8a8_selects(rules, "bert.encoder.layer.0.attention.self.query"));
    EXPECT_TRUE(w8a8_selects(rules, "distilbert.transformer.layer.5.ffn.lin2"));
    EXPECT_TRUE(w8a8_selects(rules, "vit.encoder.layer.3.output.dense"));
    EXPECT_FALSE(w8a8_selects(rules, "bert.pooler.dense"));
    EXPECT_FALSE(w8a8_selects(rules, "classifier"));
    rules.push_back(parse_w8a8_rule("*.output.dense=float"));
    rules.push_back(parse_w8a8_rule("classifier=int8"));
    EXPECT_FALSE(w8a8_selects(rules, "bert.encoder.layer.0.output.dense"));
    EXPECT_TRUE(w8a8_selects(rules, "bert.encoder.layer.0.intermediate.dense"));
    EXPECT_TRUE(w8a8_selects(rules, "classifier"));
    EXPECT_THROW(parse_w8a8_rule("classifier"), InvalidArgument);
    EXPECT_THROW(parse_w8a8_rule("classifier=int4"), InvalidArgument);
    EXPECT_THROW(parse_w8a8_rule("=int8"), InvalidArgument);
}

nlohmann::json reference(const std::string& model) {
    std::ifstream in(test::fixture("models/" + model + "/reference.json"));
    return nlohmann::json::parse(in);
}

// The first `n` SST-2 dev rows (or all with n = −1).
LabelledData sst2_dev(const EncoderModel& m, int64_t n) {
    DataSelection s;
    s.count = n;
    return load_labelled_data(test::fixture("data/sst2_dev.tsv"), m, s);
}

TEST(W8A8Container, BertDynamicRoundTripIsBitExactAndAccuracyHolds) {
    const std::string dir = test::fixture("models/bert-tiny-sst2");
    test::TempDir tmp;
    EncoderQuantizeOptions o;
    const EncoderQuantizeReport r = quantize_encoder(dir, tmp.file("bert.gguf"), o);
    int64_t int8 = 0;
    for (const auto& p : r.linears) int8 += p.int8;
    EXPECT_EQ(int8, 24);  // 4 blocks × 6; pooler and classifier stay float
    EXPECT_EQ(r.linears.size(), 26u);
    EXPECT_LT(r.file_bytes_out * 3, r.file_bytes_in);
    // dynamic by default: the file says "auto" and this CPU's choice ran (8 bits only with VNNI)
    EXPECT_TRUE(r.activation_bits_auto);
    EXPECT_EQ(r.activation_bits, cq::kernel_table().gemm_u8s8.isa == cq::IsaLevel::avx512_vnni ? 8 : 7);
    EXPECT_EQ(gguf::File::open(tmp.file("bert.gguf")).get_int("cq.w8a8.activation_bits"), 0);
    const auto auto_bits_model = EncoderModel::load(tmp.file("bert.gguf"));  // the model must outlive the loop over its Linears
    for (const Linear* l : auto_bits_model->linears())
        if (l->int8) ASSERT_EQ(l->int8->act_qmax, (1 << r.activation_bits) - 1) << l->name;
    // an explicit width is recorded as such
    EncoderQuantizeOptions eight = o;
    eight.activation_bits = 8;
    eight.embedding_type = DType::F32;
    const EncoderQuantizeReport r8 = quantize_encoder(dir, tmp.file("bert8.gguf"), eight);
    EXPECT_FALSE(r8.activation_bits_auto);
    EXPECT_EQ(gguf::File::open(tmp.file("bert8.gguf")).get_int("cq.w8a8.activation_bits"), 8);
    const auto loaded8 = EncoderModel::load(tmp.file("bert8.gguf"));  // the model must outlive the loop over its Linears
    for (const Linear* l : loaded8->linears())
        if (l->int8) ASSERT_EQ(l->int8->act_qmax, 255) << l->name;

    // With float embeddings kept, the file loads back into exactly the model quantized in memory.
    EncoderQuantizeOptions keep = o;
    keep.embedding_type = DType::F32;
    quantize_encoder(dir, tmp.file("bert-f32-embd.gguf"), keep);
    auto in_memory = EncoderModel::load(dir);
    apply_w8a8(*in_memory, default_w8a8_rules(), ActivationQuant::dynamic_per_token, nullptr, calib::Method::minmax, 99.99,
               auto_activation_bits());
    auto kept = EncoderModel::load(tmp.file("bert-f32-embd.gguf"));
    ClassifyOptions run;
    run.max_len = 64;
    const LabelledData first = sst2_dev(*kept, 64);
    const auto a = classify_dataset(*kept, first, run), b = classify_dataset(*in_memory, first, run);
    EXPECT_EQ(a.logits, b.logits);

    // The default file (Q8_0 word embeddings as well).
    auto loaded = EncoderModel::load(tmp.file("bert.gguf"));

    // reference.json: 694 of 872 correct in fp32; W8A8 dynamic must stay within 0.5 pt (4 samples).
    const int64_t fp32_correct = reference("bert-tiny-sst2")["eval"]["fp32_correct"].get<int64_t>();
    const auto all = classify_dataset(*loaded, sst2_dev(*loaded, -1), run);
    EXPECT_GE(all.correct, fp32_correct - 4) << "accuracy " << all.accuracy;
    auto fp32 = EncoderModel::load(dir);
    const auto base = classify_dataset(*fp32, sst2_dev(*fp32, -1), run);
    EXPECT_EQ(base.correct, fp32_correct);
    const PredictionAgreement agree = compare_predictions(base, all);
    EXPECT_GE(agree.agreement, 0.99);
    EXPECT_LT(agree.mean_kld, 1e-3);
}

TEST(W8A8Container, Int8AttentionIsRecordedAndKeepsAccuracy) {
    const std::string dir = test::fixture("models/bert-tiny-sst2");
    test::TempDir tmp;
    EncoderQuantizeOptions o;
    o.activation_bits = 8;
    o.embedding_type = DType::F32;
    quantize_encoder(dir, tmp.file("f32-attention.gguf"), o);
    o.attention = AttentionPrecision::int8;
    const EncoderQuantizeReport r = quantize_encoder(dir, tmp.file("int8-attention.gguf"), o);
    EXPECT_EQ(r.attention, "int8");
    EXPECT_EQ(gguf::File::open(tmp.file("int8-attention.gguf")).get_string("cq.w8a8.attention"), "int8");
    EXPECT_FALSE(gguf::File::open(tmp.file("f32-attention.gguf")).get_string("cq.w8a8.attention").has_value());
    auto f32_attention = EncoderModel::load(tmp.file("f32-attention.gguf"));
    auto int8_attention = EncoderModel::load(tmp.file("int8-attention.gguf"));
    EXPECT_EQ(f32_attention->weights().attention, AttentionPrecision::f32);
    ASSERT_EQ(int8_attention->weights().attention, AttentionPrecision::int8);
    ClassifyOptions run;
    run.max_len = 64;
    const auto a = classify_dataset(*f32_attention, sst2_dev(*f32_attention, -1), run);
    const auto b = classify_dataset(*int8_attention, sst2_dev(*int8_attention, -1), run);
    EXPECT_NE(a.logits, b.logits);  // the INT8 kernel ran
    // reference.json's FP32 count, within 0.5 pt (4 samples), and near-total agreement with f32 attention
    EXPECT_GE(b.correct, reference("bert-tiny-sst2")["eval"]["fp32_correct"].get<int64_t>() - 4) << "accuracy " << b.accuracy;
    const PredictionAgreement agree = compare_predictions(a, b);
    EXPECT_GE(agree.agreement, 0.99);
    EXPECT_LT(agree.mean_kld, 1e-3);
    // The precision is a W8A8 choice: refused for weight-only types, before anything is written.
    EncoderQuantizeOptions weight_only;
    weight_only.weight_type = DType::Q8_0;
    weight_only.attention = AttentionPrecision::int8;
    EXPECT_THROW(quantize_encoder(dir, tmp.file("wo.gguf"), weight_only), InvalidArgument);
    EXPECT_FALSE(std::ifstream(tmp.file("wo.gguf")).good());
}

TEST(W8A8Container, StaticCalibrationIsCachedAndReusedAndAccuracyHolds) {
    const std::string dir = test::fixture("models/vit-tiny-mnist");
    test::TempDir tmp;
    EncoderQuantizeOptions o;
    o.activations = ActivationQuant::static_per_tensor;
    o.method = calib::Method::minmax;
    o.calib_data = test::fixture("data/t10k-images-idx3-ubyte.gz");
    o.calib_selection.count = 8000;  // the images the model was trained on, never the evaluation range
    o.calib_samples = 64;
    o.calib_cache = tmp.file("vit.calib.json");
    const auto r1 = quantize_encoder(dir, tmp.file("a.gguf"), o);
    EXPECT_FALSE(r1.calib_from_cache);
    o.method = calib::Method::entropy;
    const auto r2 = quantize_encoder(dir, tmp.file("b.gguf"), o);
    EXPECT_TRUE(r2.calib_from_cache);
    for (size_t i = 0; i < r2.linears.size(); ++i)
        if (r2.linears[i].int8) {
            EXPECT_LE(r2.linears[i].range.hi, r1.linears[i].range.hi);  // entropy clips within min–max
            EXPECT_GE(r2.linears[i].range.lo, r1.linears[i].range.lo);
        }
    // A cache made for other samples is refused, not silently reused.
    o.calib_samples = 32;
    EXPECT_THROW(quantize_encoder(dir, tmp.file("c.gguf"), o), InvalidArgument);

    // reference.json: 1969 of images 8000..9999 correct; static W8A8 within 1 pt (20 images).
    const nlohmann::json ref = reference("vit-tiny-mnist");
    auto model = EncoderModel::load(tmp.file("b.gguf"));
    DataSelection eval;
    eval.first = 8000;
    const auto res = classify_dataset(*model, load_labelled_data(test::fixture("data/t10k-images-idx3-ubyte.gz"), *model, eval), ClassifyOptions{});
    EXPECT_EQ(res.samples, ref["num_eval"].get<int64_t>());
    EXPECT_GE(res.correct, ref["correct"].get<int64_t>() - 20) << "accuracy " << res.accuracy;
}

TEST(W8A8Container, BadContainersGiveClearErrors) {
    test::TempDir tmp;
    const std::string llm = test::fixture("models/stories260K-gguf/stories260K.gguf");
    try {
        EncoderModel::load(llm);
        FAIL() << "an LLM GGUF loaded as an encoder";
    } catch (const Unsupported& e) {
        EXPECT_NE(std::string(e.what()).find("not a cq encoder container"), std::string::npos) << e.what();
    }
    EncoderQuantizeOptions o;
    quantize_encoder(test::fixture("models/vit-tiny-mnist"), tmp.file("vit.gguf"), o);
    const auto bytes = test::read_bytes(tmp.file("vit.gguf"));
    const std::string cut = tmp.write("cut.gguf", std::string(bytes.begin(), bytes.begin() + static_cast<long>(bytes.size() / 2)));
    EXPECT_THROW(EncoderModel::load(cut), FormatError);
    // Calibration asking for more samples than the data holds.
    o.activations = ActivationQuant::static_per_tensor;
    o.calib_data = test::fixture("data/t10k-images-idx3-ubyte.gz");
    o.calib_selection.count = 10;
    o.calib_samples = 64;
    try {
        quantize_encoder(test::fixture("models/vit-tiny-mnist"), tmp.file("x.gguf"), o);
        FAIL() << "too few calibration samples accepted";
    } catch (const InvalidArgument& e) {
        EXPECT_NE(std::string(e.what()).find("fewer than the 64"), std::string::npos) << e.what();
    }
    EXPECT_FALSE(std::ifstream(tmp.file("x.gguf")).good());  // nothing written
}

}  // namespace
}  // namespace cq
