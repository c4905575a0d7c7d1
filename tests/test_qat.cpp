// QAT: the fake-quantization ops against PyTorch (tests/expected/qat/fake_quant.json from scripts/qat_reference.py:
// torch.fake_quantize_per_{tensor,channel}_affine, torch's learnable LSQ+ op and the LSQ formulas) to 1e-6, the fast
// forms against their scalar twins on awkward shapes, dynamic per-token activations against cq's W8A8 runtime
// quantizer, the spec parsers, and the export: a trained model's GGUF decodes to the fake-quantized values bit for bit.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <map>
#include <random>

#include <nlohmann/json.hpp>

#include "cq/encoder.h"
#include "cq/error.h"
#include "cq/train.h"
#include "cq/kernels.h"
#include "cq/llm.h"
#include "cq/qat.h"
#include "cq/quantize.h"
#include "test_support.h"

namespace cq {
namespace {

nlohmann::json reference() {
    std::ifstream f(std::string(CQ_TESTS_DIR) + "/expected/qat/fake_quant.json");
    return nlohmann::json::parse(f);
}

std::vector<float> floats(const nlohmann::json& j) { return j.get<std::vector<float>>(); }

void expect_close(const std::vector<float>& got, const nlohmann::json& want, double tol, const std::string& what) {
    const std::vector<double> w = want.get<std::vector<double>>();
    ASSERT_EQ(got.size(), w.size()) << what;
    for (size_t i = 0; i < w.size(); ++i) EXPECT_NEAR(got[i], w[i], tol * std::max(1.0, std::abs(w[i]))) << what << " [" << i << "]";
}

TEST(FakeQuant, MatchesTorchPerChannelAndLsq) {
    const nlohmann::json ref = reference();
    for (const auto& c : ref["cases"]) {
        const std::string name = c["name"];
        const std::vector<float> x = floats(c["x"]), dy = floats(c["dy"]), scale = floats(c["scale"]);
        std::vector<float> zp;
        for (int z : c["zero_point"]) zp.push_back(static_cast<float>(z));
        const int64_t n = static_cast<int64_t>(x.size()), group = c["group"];
        const int32_t qmin = c["qmin"], qmax = c["qmax"];
        const float gf = c["grad_factor"];
        std::vector<float> y(x.size()), y_ref(x.size()), dx(x.size()), dx_ref(x.size());
        std::vector<uint8_t> mask(x.size()), mask_ref(x.size());
        qat::fake_quant_forward(x.data(), n, group, scale.data(), zp.data(), qmin, qmax, y.data(), mask.data());
        qat::fake_quant_forward__ref(x.data(), n, group, scale.data(), zp.data(), qmin, qmax, y_ref.data(), mask_ref.data());
        expect_close(y, c["y"], 1e-6, name + " forward");
        EXPECT_EQ(y, y_ref) << name;
        EXPECT_EQ(mask, mask_ref) << name;
        qat::fake_quant_backward_ste(dy.data(), mask.data(), n, dx.data());
        expect_close(dx, c["dx_ste"], 1e-6, name + " STE");

        std::vector<float> ds(scale.size(), 0.0f), dz(scale.size(), 0.0f), ds_ref(scale.size(), 0.0f), dz_ref(scale.size(), 0.0f);
        qat::fake_quant_backward_lsq(dy.data(), x.data(), n, group, scale.data(), zp.data(), qmin, qmax, gf, dx.data(), ds.data(), dz.data());
        qat::fake_quant_backward_lsq__ref(dy.data(), x.data(), n, group, scale.data(), zp.data(), qmin, qmax, gf, dx_ref.data(),
                                          ds_ref.data(), dz_ref.data());
        for (const char* src : {"torch_lsq", "formula_lsq"}) {
            expect_close(dx, c[src]["dx"], 1e-6, name + " " + src + " dx");
            expect_close(ds, c[src]["dscale"], 1e-6, name + " " + src + " dscale");
            expect_close(dz, c[src]["dzero_point"], 1e-6, name + " " + src + " dzero_point");
            expect_close(ds_ref, c[src]["dscale"], 1e-6, name + " " + src + " dscale (ref)");
        }
    }
    const auto& t = ref["per_tensor"];
    const std::vector<float> x = floats(t["x"]), dy = floats(t["dy"]);
    const float s = t["scale"], z = static_cast<float>(t["zero_point"].get<int>());
    std::vector<float> y(x.size()), dx(x.size());
    std::vector<uint8_t> mask(x.size());
    qat::fake_quant_forward(x.data(), static_cast<int64_t>(x.size()), static_cast<int64_t>(x.size()), &s, &z, t["qmin"], t["qmax"], y.data(), mask.data());
    qat::fake_quant_backward_ste(dy.data(), mask.data(), static_cast<int64_t>(x.size()), dx.data());
    expect_close(y, t["y"], 1e-6, "per tensor forward");
    expect_close(dx, t["dx_ste"], 1e-6, "per tensor STE");
}

TEST(FakeQuant, FastFormsMatchTwinsOnAwkwardShapes) {
    std::mt19937 rng(11);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    for (int64_t n : {1, 7, 31, 33, 250, 1001}) {
        for (int64_t group : {int64_t{1}, int64_t{5}, int64_t{32}, n}) {
            std::vector<float> x(static_cast<size_t>(n)), dy(x.size());
            for (auto& v : x) v = 3.0f * nd(rng);
            for (auto& v : dy) v = nd(rng);
            const int64_t ng = (n + group - 1) / group;
            std::vector<float> s(static_cast<size_t>(ng)), z(s.size());
            for (auto& v : s) v = 0.05f + 0.1f * std::abs(nd(rng));
            for (auto& v : z) v = std::nearbyint(3.0f * nd(rng));
            std::vector<float> y(x.size()), yr(x.size()), dx(x.size()), dxr(x.size()), ds(s.size()), dsr(s.size()), dz(s.size()), dzr(s.size());
            qat::fake_quant_forward(x.data(), n, group, s.data(), z.data(), -8, 7, y.data(), nullptr);
            qat::fake_quant_forward__ref(x.data(), n, group, s.data(), z.data(), -8, 7, yr.data(), nullptr);
            ASSERT_EQ(y, yr) << "n " << n << " group " << group;
            qat::fake_quant_backward_lsq(dy.data(), x.data(), n, group, s.data(), z.data(), -8, 7, 0.3f, dx.data(), ds.data(), dz.data());
            qat::fake_quant_backward_lsq__ref(dy.data(), x.data(), n, group, s.data(), z.data(), -8, 7, 0.3f, dxr.data(), dsr.data(), dzr.data());
            ASSERT_EQ(dx, dxr);
            for (int64_t p = 0; p < ng; ++p) {
                // float sums of ≤ group terms of |dy·Δ| ≤ |dy|·8: eps·group·max term
                const double tol = 1.2e-7 * static_cast<double>(group) * 8.0 * 4.0 * 0.3;
                EXPECT_NEAR(ds[p], dsr[p], tol) << "n " << n << " group " << group << " p " << p;
                EXPECT_NEAR(dz[p], dzr[p], tol) << "n " << n << " group " << group << " p " << p;
            }
        }
    }
}

TEST(FakeQuant, DynamicPerTokenEqualsTheW8A8RuntimeQuantizer) {
    std::mt19937 rng(5);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    for (int64_t rows : {1, 3, 17}) {
        for (int64_t cols : {1, 5, 64, 129}) {
            std::vector<float> x(static_cast<size_t>(rows * cols)), y(x.size());
            for (auto& v : x) v = 2.0f * nd(rng) + 0.3f;
            if (rows > 2) std::fill_n(x.begin() + cols, cols, 0.0f);  // an all-zero row
            for (int32_t qmax : {255, 127}) {
                qat::fake_quant_dynamic_per_token(x.data(), rows, cols, qmax, y.data());
                const int64_t ldq = (cols + 3) / 4 * 4;
                std::vector<uint8_t> q(static_cast<size_t>(rows * ldq));
                std::vector<float> s(static_cast<size_t>(rows));
                std::vector<int32_t> z(static_cast<size_t>(rows));
                kernel_table().quantize_rows_u8_dynamic.fn(x.data(), rows, cols, cols, qmax, q.data(), ldq, s.data(), z.data());
                for (int64_t r = 0; r < rows; ++r)
                    for (int64_t i = 0; i < cols; ++i)
                        ASSERT_EQ(y[r * cols + i], (static_cast<float>(q[r * ldq + i]) - static_cast<float>(z[r])) * s[r])
                            << rows << "x" << cols << " qmax " << qmax << " at " << r << "," << i;
            }
        }
    }
}

TEST(FakeQuant, GgmlRoundTripIsTheCodec) {
    std::mt19937 rng(9);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    for (DType t : {DType::Q4_0, DType::Q3_K, DType::Q8_0, DType::Q5_K}) {
        const auto& tr = dtype_traits(t);
        const int64_t rows = 3, cols = 2 * tr.block_size;
        std::vector<float> x(static_cast<size_t>(rows * cols)), y(x.size()), back(x.size());
        for (auto& v : x) v = nd(rng);
        qat::fake_quant_ggml(t, x.data(), rows, cols, y.data());
        std::vector<uint8_t> bytes(static_cast<size_t>(rows * cols / tr.block_size * tr.bytes_per_block));
        tr.from_float(x.data(), bytes.data(), rows * cols);
        tr.to_float(bytes.data(), back.data(), rows * cols);
        EXPECT_EQ(y, back) << tr.name;
        // idempotent: the decoded values are on the grid
        std::vector<float> y2(x.size());
        qat::fake_quant_ggml(t, y.data(), rows, cols, y2.data());
        if (t == DType::Q4_0 || t == DType::Q8_0) EXPECT_EQ(y2, y) << tr.name;
        EXPECT_THROW(qat::fake_quant_ggml(t, x.data(), 1, cols - 1, y.data()), InvalidArgument);
    }
}

TEST(QatSpecs, ParseAndReject) {
    WeightQuantSpec s = parse_weight_quant_spec("int4-g32");
    EXPECT_EQ(s.bits, 4);
    EXPECT_EQ(s.granularity, WeightQuantSpec::Granularity::group);
    EXPECT_EQ(s.group, 32);
    EXPECT_TRUE(s.symmetric);
    EXPECT_EQ(s.qmin(), -7);
    EXPECT_EQ(s.qmax(), 7);
    s = parse_weight_quant_spec("int8-tensor-asym");
    EXPECT_EQ(s.qmin(), 0);
    EXPECT_EQ(s.qmax(), 255);
    EXPECT_EQ(s.text(), "int8-tensor-asym");
    EXPECT_EQ(parse_weight_quant_spec("q3_K").type, DType::Q3_K);
    EXPECT_EQ(parse_weight_quant_spec("int8").granularity, WeightQuantSpec::Granularity::channel);
    for (const char* bad : {"int9", "int1", "int4-g0", "int4-x", "f32", "q4_0x", ""}) EXPECT_THROW(parse_weight_quant_spec(bad), InvalidArgument) << bad;
    EXPECT_EQ(parse_act_quant_mode("static"), ActQuantMode::static_learned);
    EXPECT_THROW(parse_act_quant_mode("per-channel"), InvalidArgument);
    EXPECT_FALSE(parse_qat_rule("*.attn_q.weight=float").quantize);
    EXPECT_THROW(parse_qat_rule("=int8"), InvalidArgument);
}

TEST(WeightFakeQuant, SteAndLsqCarryGradientsToTheMasters) {
    std::vector<float> w = {0.5f, -1.0f, 0.25f, 2.0f, -0.125f, 0.75f, 1.6f, -3.0f}, g(w.size(), 0.0f);
    std::vector<TrainParam> params(1);
    params[0].name = "w", params[0].shape = {2, 4}, params[0].numel = 8, params[0].value = w.data(), params[0].grad = g.data();
    const WeightQuantSpec spec = parse_weight_quant_spec("int2-channel");  // levels −1, 0, 1
    for (WeightGrad mode : {WeightGrad::ste, WeightGrad::lsq}) {
        std::vector<float> w0 = {0.5f, -1.0f, 0.25f, 2.0f, -0.125f, 0.75f, 1.6f, -3.0f};
        w = w0;
        WeightFakeQuant wfq(params, [&](const std::string&) { return &spec; }, mode);
        wfq.apply();
        // scale = max|row| / 1: row 0 → 2, row 1 → 3
        EXPECT_EQ(w, (std::vector<float>{0.0f, -0.0f, 0.0f, 2.0f, -0.0f, 0.0f, 3.0f, -3.0f}));
        for (size_t i = 0; i < g.size(); ++i) g[i] = static_cast<float>(i + 1);
        wfq.backward();
        EXPECT_EQ(wfq.quantized()[0].grad, g);  // nothing clipped at the round-to-nearest grid's own range
        EXPECT_EQ(wfq.optimizer_params().size(), mode == WeightGrad::lsq ? 2u : 1u);
        if (mode == WeightGrad::lsq) {
            // row 0: Σ dy·(round(w/s) − w/s) = 1·(0 − .25) + 2·(−0 + .5) + 3·(0 − .125) + 4·(1 − 1), times 1/√(4·1)
            EXPECT_NEAR(wfq.quantized()[0].dscale[0], (-0.25f + 1.0f - 0.375f) * 0.5f, 1e-7);
        }
        EXPECT_EQ(wfq.quantized()[0].master, w0);
    }
}

TEST(QatLm, ExportDecodesToExactlyTheValuesTrainingSaw) {
    test::TempDir dir;
    const std::string ptq_path = dir.file("ptq.gguf");
    QuantizeOptions qo;
    qo.type = "q3_k_m";  // a mix: Q3_K, Q4_K, Q5_K, Q6_K and the 32-blocks where rows do not fit 256
    quantize_model(test::fixture("models/stories260K-gguf/stories260K.gguf"), ptq_path, qo);
    auto m = LanguageModel::load(ptq_path);
    std::map<std::string, WeightQuantSpec> specs;
    for (const Linear* l : m->linears())
        if (dtype_traits(l->weight.dtype()).is_quantized) specs[l->name + ".weight"] = parse_weight_quant_spec(std::string(dtype_name(l->weight.dtype())));
    LmTrainer trainer(*m);
    auto& params = trainer.params();
    WeightFakeQuant wfq(params, [&](const std::string& n) -> const WeightQuantSpec* {
        const auto it = specs.find(n);
        return it == specs.end() ? nullptr : &it->second;
    });
    ASSERT_EQ(wfq.quantized().size(), specs.size());
    // move the masters off the grid, as training does, then quantize again
    std::mt19937 rng(1);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    for (TrainParam& p : wfq.optimizer_params())
        if (specs.count(p.name))
            for (int64_t i = 0; i < p.numel; ++i) p.value[i] += 0.01f * nd(rng);
    wfq.apply();
    std::map<std::string, std::vector<float>> seen;
    for (const auto& q : wfq.quantized()) seen[params[q.param].name].assign(params[q.param].value, params[q.param].value + params[q.param].numel);
    export_ggml_weights(*m, wfq, params);
    m->weights().embeddings_modified_by.clear();
    m->save(dir.file("qat.gguf"));
    auto out = LanguageModel::load(dir.file("qat.gguf"));
    for (const Linear* l : out->linears()) {
        const auto it = seen.find(l->name + ".weight");
        if (it == seen.end()) continue;
        EXPECT_EQ(l->weight.dtype(), specs.at(it->first).type) << l->name;
        EXPECT_TRUE(l->weight.to_float() == it->second) << l->name << ": the file's values differ from the fake-quantized ones";
        seen.erase(it);
    }
    EXPECT_TRUE(seen.empty());
}

TEST(QatLm, ExportedGgufDecodesToTheFakeQuantizedValuesEndToEnd) {
    test::TempDir dir;
    const std::string fp_path = test::fixture("models/stories260K-gguf/stories260K.gguf");
    const std::string ptq_path = dir.file("ptq.gguf");
    QuantizeOptions qo;
    qo.type = "q4_0";
    quantize_model(fp_path, ptq_path, qo);
    auto fp = LanguageModel::load(fp_path);
    auto ptq = LanguageModel::load(ptq_path);
    QatLmOptions o;
    o.data = test::fixture("data/stories_calib.txt");
    o.steps = 3, o.batch = 2, o.ctx = 32, o.schedule.lr = 1e-3f, o.output = dir.file("qat.gguf");
    const QatReport r = qat_lm(*ptq, fp.get(), o);
    EXPECT_GT(r.n_quantized, 0);
    auto out = LanguageModel::load(o.output);
    auto base = LanguageModel::load(ptq_path);
    int64_t changed = 0, compared = 0;
    const auto in_memory = ptq->linears();
    const auto from_file = out->linears();
    const auto from_ptq = base->linears();
    ASSERT_EQ(in_memory.size(), from_file.size());
    for (size_t i = 0; i < from_file.size(); ++i) {
        const Linear& a = *in_memory[i];
        const Linear& b = *from_file[i];
        ASSERT_EQ(a.weight.dtype(), b.weight.dtype()) << b.name;
        ASSERT_EQ(a.weight.nbytes(), b.weight.nbytes()) << b.name;
        EXPECT_EQ(std::memcmp(a.weight.data(), b.weight.data(), a.weight.nbytes()), 0) << b.name;
        if (a.modified_by == "qat") {
            ++compared;
            changed += a.weight.to_float() != from_ptq[i]->weight.to_float();
        }
    }
    EXPECT_EQ(compared, r.n_quantized);
    EXPECT_GT(changed, 0);  // training moved the quantized values
}

TEST(QatClassifier, W8A8ExportHoldsTheTrainedGridEndToEnd) {
    test::TempDir dir;
    const std::string bert = test::fixture("models/bert-tiny-sst2");
    auto model = EncoderModel::load(bert);
    auto teacher = EncoderModel::load(bert);
    QatClassifierOptions o;
    o.data = test::fixture("data/sst2_train.tsv");
    o.data_selection.first = 0, o.data_selection.count = 48;
    o.eval_data = test::fixture("data/sst2_dev.tsv");
    o.eval_selection.first = 0, o.eval_selection.count = 64;
    o.steps = 3, o.batch = 16, o.calib_samples = 32, o.max_len = 32, o.schedule.lr = 1e-3f;
    o.output = dir.file("qat.gguf");
    const QatClassifierReport r = qat_classifier(*model, teacher.get(), o);
    EXPECT_EQ(r.n_quantized, 4 * 6);  // every Linear of the 4 encoder blocks
    EXPECT_TRUE(r.has_eval);
    auto out = EncoderModel::load(o.output);
    const auto trained = model->linears();
    const auto loaded = out->linears();
    ASSERT_EQ(trained.size(), loaded.size());
    int64_t int8_layers = 0;
    for (size_t i = 0; i < loaded.size(); ++i) {
        const Linear& a = *trained[i];
        const Linear& b = *loaded[i];
        ASSERT_EQ(static_cast<bool>(a.int8), static_cast<bool>(b.int8)) << b.name;
        if (!b.int8) continue;
        ++int8_layers;
        // the file's codes × scales are the fake-quantized weights the model trained and ran with, bit for bit
        const std::vector<float> w = a.weight.to_float();
        const auto* codes = static_cast<const int8_t*>(b.int8->weight.data());
        for (int64_t r = 0; r < b.int8->n_out; ++r)
            for (int64_t c = 0; c < b.int8->n_in; ++c)
                ASSERT_EQ(static_cast<float>(codes[r * b.int8->n_in + c]) * b.int8->weight_scale[r], w[r * b.int8->n_in + c]) << b.name;
        EXPECT_EQ(b.int8->activations, ActivationQuant::static_per_tensor);
        EXPECT_EQ(b.int8->input.scale, a.int8->input.scale) << b.name;
        EXPECT_EQ(b.int8->input.zero_point, a.int8->input.zero_point) << b.name;
    }
    EXPECT_EQ(int8_layers, 24);
}

// The input hook's plumbing: a hook that doubles a Linear's input (and its gradient) trains exactly like the model
// whose weight is doubled: same loss, dW(hooked) = 2·dW'(doubled), every other gradient equal.
struct DoublingHook : LinearInputHook {
    std::vector<int> chosen;
    bool applies(int wp) const override { return std::find(chosen.begin(), chosen.end(), wp) != chosen.end(); }
    void forward(int, const float* x, int64_t N, int64_t I, float* xq, bool) override {
        for (int64_t i = 0; i < N * I; ++i) xq[i] = 2.0f * x[i];
    }
    void backward(int, const float*, int64_t N, int64_t I, float* dxq) override {
        for (int64_t i = 0; i < N * I; ++i) dxq[i] *= 2.0f;
    }
};

TEST(QatClassifier, LinearInputHookIsCarriedThroughTheBackward) {
    const std::string bert = test::fixture("models/bert-tiny-sst2");
    auto a = EncoderModel::load(bert), b = EncoderModel::load(bert);
    EncoderTrainer ta(*a), tb(*b);
    DoublingHook hook;
    for (size_t i = 0; i < ta.params().size(); ++i) {
        const std::string& n = ta.params()[i].name;
        if (n.find("layer.1.attention.self.key.weight") != std::string::npos || n.find("layer.2.output.dense.weight") != std::string::npos ||
            n == "classifier.weight")
            hook.chosen.push_back(static_cast<int>(i));
    }
    ASSERT_EQ(hook.chosen.size(), 3u);
    for (int i : hook.chosen)
        for (int64_t k = 0; k < tb.params()[i].numel; ++k) tb.params()[i].value[k] *= 2.0f;
    ta.set_linear_input_hook(&hook);
    const std::vector<std::string> texts = {"a gorgeous, witty film", "dull and overlong", "not bad at all"};
    const TextBatch batch = a->tokenize(texts, 16);
    const std::vector<int32_t> labels = {1, 0, 1};
    ta.zero_grad(), tb.zero_grad();
    const double la = ta.forward_backward(batch, labels, 0.1f, 7), lb = tb.forward_backward(batch, labels, 0.1f, 7);
    EXPECT_NEAR(la, lb, 1e-6 * std::abs(lb));
    for (size_t i = 0; i < ta.params().size(); ++i) {
        const TrainParam& pa = ta.params()[i];
        const TrainParam& pb = tb.params()[i];
        const float f = hook.applies(static_cast<int>(i)) ? 2.0f : 1.0f;
        double norm = 0, diff = 0;
        for (int64_t k = 0; k < pa.numel; ++k) {
            norm += double(pb.grad[k]) * pb.grad[k];
            diff += (double(pa.grad[k]) - f * pb.grad[k]) * (double(pa.grad[k]) - f * pb.grad[k]);
        }
        EXPECT_LE(std::sqrt(diff), 1e-5 * std::sqrt(norm) + 1e-12) << pa.name;
    }
}

TEST(QatClassifier, RefusesAnExportWithoutARuntimeFormat) {
    auto model = EncoderModel::load(test::fixture("models/bert-tiny-sst2"));
    QatClassifierOptions o;
    o.data = test::fixture("data/sst2_train.tsv");
    o.weights = parse_weight_quant_spec("int4-g32");
    o.teacher = false;
    o.output = "/nonexistent/never-written.gguf";
    EXPECT_THROW(qat_classifier(*model, nullptr, o), Unsupported);
}

}  // namespace
}  // namespace cq
