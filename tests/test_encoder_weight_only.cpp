// Weight-only block quantization of encoders into cq's container (`cq quantize ENCODER_DIR OUT --type q4_0`): on the
// real bert-tiny-sst2, the file's model against an independent f32 model with the same dequantized weights, accuracy
// on SST-2 dev against the fixture's reference, K-quant row fallbacks, the CLI's report and its errors.
#include <gtest/gtest.h>

#include <fstream>

#include <nlohmann/json.hpp>

#include "command_runner.h"
#include "cq/classify.h"
#include "cq/encoder.h"
#include "cq/error.h"
#include "cq/io/gguf.h"
#include "cq/quantize_encoder.h"
#include "cq/w8a8.h"
#include "test_support.h"

namespace cq {
namespace {

const std::string kBert = "models/bert-tiny-sst2";

LabelledData sst2_dev(const EncoderModel& m, int64_t n) {
    DataSelection s;
    s.count = n;
    return load_labelled_data(test::fixture("data/sst2_dev.tsv"), m, s);
}

TEST(EncoderWeightOnly, Q4_0ContainerEqualsDequantizedFloatModelAndKeepsAccuracy) {
    const std::string dir = test::fixture(kBert);
    test::TempDir tmp;
    EncoderQuantizeOptions o;
    o.weight_type = DType::Q4_0;
    o.embedding_type = DType::F32;
    const EncoderQuantizeReport r = quantize_encoder(dir, tmp.file("q4.gguf"), o);
    EXPECT_EQ(r.type, "q4_0");
    int64_t q4 = 0;
    for (const auto& p : r.linears) {
        q4 += p.weight_type == "q4_0";
        if (p.weight_type == "q4_0") EXPECT_TRUE(p.fallback.empty()) << p.name;
    }
    EXPECT_EQ(q4, 24);  // 4 blocks × 6 (hidden 128, FFN 512: whole 32-blocks); pooler and classifier stay f32
    // Each Q4_0 weight is 18 bytes per 32 values in the file.
    const gguf::File f = gguf::File::open(tmp.file("q4.gguf"));
    EXPECT_FALSE(f.find("cq.w8a8.activation_bits"));
    int64_t q4_tensors = 0;
    for (const auto& t : f.tensors())
        if (t.dtype == DType::Q4_0) {
            ++q4_tensors;
            EXPECT_EQ(t.nbytes * 32, static_cast<uint64_t>(t.numel) * 18) << t.name;
        }
    EXPECT_EQ(q4_tensors, 24);

    // Independent: the f32 model whose selected Linears hold the Q4_0 codec's dequantized values. The container's model
    // differs from it only by the Q4_0 kernels' Q8_0 rounding of the activations.
    auto loaded = EncoderModel::load(tmp.file("q4.gguf"));
    auto dequantized = EncoderModel::load(dir);
    for (Linear* l : dequantized->linears()) {
        const Linear* q = loaded->find_linear(l->name);
        ASSERT_NE(q, nullptr);
        if (q->weight.dtype() != DType::Q4_0) continue;
        const std::vector<float> values = q->weight.to_float();
        Tensor w = Tensor::zeros({l->n_out(), l->n_in()}, DType::F32);
        std::copy(values.begin(), values.end(), static_cast<float*>(w.mutable_data()));
        // and those values are the Q4_0 codec's rounding of the original weights: within half a step (amax / 16) of
        // each value, a whole step (amax / 8) where the +7 end of the grid clips a value of the sign opposite the maximum
        const std::vector<float> original = l->weight.to_float();
        for (size_t b = 0; b < original.size(); b += 32) {
            float amax = 0;
            for (size_t i = b; i < b + 32; ++i) amax = std::max(amax, std::fabs(original[i]));
            for (size_t i = b; i < b + 32; ++i) ASSERT_LE(std::fabs(values[i] - original[i]), amax / 8 * 1.01f + 1e-6f) << l->name << " " << i;
        }
        dequantized->set_weight(*l, std::move(w));
    }
    ClassifyOptions run;
    run.max_len = 64;
    const auto got = classify_dataset(*loaded, sst2_dev(*loaded, 64), run);
    const auto want = classify_dataset(*dequantized, sst2_dev(*dequantized, 64), run);
    double worst = 0;
    for (size_t i = 0; i < got.logits.size(); ++i) worst = std::max(worst, double(std::fabs(got.logits[i] - want.logits[i])));
    std::printf("bert-tiny-sst2 Q4_0 container vs f32 with dequantized weights: max |Δlogit| %.4g over 64 sentences\n", worst);
    EXPECT_LT(worst, 0.05);

    // Accuracy over all 872 dev sentences against the fixture's FP32 count (reference.json: 694): Q4_0 costs a few points
    // at most on this 4-layer model; measured and printed.
    std::ifstream ref_in(test::fixture(kBert + "/reference.json"));
    const int64_t fp32_correct = nlohmann::json::parse(ref_in)["eval"]["fp32_correct"].get<int64_t>();
    const auto all = classify_dataset(*loaded, sst2_dev(*loaded, -1), run);
    auto fp32 = EncoderModel::load(dir);
    const auto base = classify_dataset(*fp32, sst2_dev(*fp32, -1), run);
    ASSERT_EQ(base.correct, fp32_correct);
    const PredictionAgreement agree = compare_predictions(base, all);
    std::printf("bert-tiny-sst2 Q4_0 weight-only: %lld / 872 correct (f32 %lld), agreement %.2f %%, file %llu → %llu bytes\n",
                static_cast<long long>(all.correct), static_cast<long long>(base.correct), 100 * agree.agreement,
                static_cast<unsigned long long>(r.file_bytes_in), static_cast<unsigned long long>(r.file_bytes_out));
    EXPECT_GE(all.correct, fp32_correct - 17);  // within 2 points
    EXPECT_GE(agree.agreement, 0.9);
    // With the embeddings kept f32, the tensors shrink by exactly the Q4_0 Linears' 4 − 18/32 bytes per weight.
    uint64_t saved = 0;
    for (const auto& p : r.linears)
        if (p.weight_type == "q4_0") saved += static_cast<uint64_t>(p.n_out * p.n_in) * 4 - static_cast<uint64_t>(p.n_out * p.n_in) / 32 * 18;
    EXPECT_EQ(r.tensor_bytes_in - r.tensor_bytes_out, saved);
}

TEST(EncoderWeightOnly, KQuantRowsFallBackAsLlamaCppAndSameBytesEveryRun) {
    // Q4_K's blocks are 256 wide: BERT-tiny's 128-wide rows take llama.cpp's fallback (q5_0), its 512-wide FFN output rows fit.
    const std::string dir = test::fixture(kBert);
    test::TempDir tmp;
    EncoderQuantizeOptions o;
    o.weight_type = DType::Q4_K;
    const EncoderQuantizeReport r = quantize_encoder(dir, tmp.file("a.gguf"), o);
    int64_t k = 0, fallback = 0;
    for (const auto& p : r.linears) {
        if (p.weight_type == "q4_K") {
            ++k;
            EXPECT_EQ(p.n_in % 256, 0) << p.name;
        } else if (!p.fallback.empty()) {
            ++fallback;
            EXPECT_EQ(p.weight_type, "q5_0") << p.name;
        }
    }
    EXPECT_EQ(k, 4);          // ffn output, [128, 512], one per block
    EXPECT_EQ(fallback, 20);  // the other five per block
    quantize_encoder(dir, tmp.file("b.gguf"), o);
    std::ifstream a(tmp.file("a.gguf"), std::ios::binary), b(tmp.file("b.gguf"), std::ios::binary);
    const std::string ab((std::istreambuf_iterator<char>(a)), {}), bb((std::istreambuf_iterator<char>(b)), {});
    EXPECT_TRUE(ab == bb);
}

TEST(EncoderWeightOnly, CliReportsTypesAndRefusesCalibration) {
    const std::string cq = CQ_CLI_PATH, dir = test::fixture(kBert);
    test::TempDir tmp;
    const auto r = test::run_command(cq + " quantize " + dir + " " + tmp.file("q8.gguf") + " --type q8_0 --json");
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const auto j = nlohmann::json::parse(r.out);
    EXPECT_EQ(j["quantize"]["type"], "q8_0");
    int64_t q8 = 0;
    for (const auto& l : j["quantize"]["linears"]) q8 += l.value("weight_type", "") == "q8_0";
    EXPECT_EQ(q8, 24);
    {
        auto m = EncoderModel::load(tmp.file("q8.gguf"));
        const Linear* query = m->find_linear("bert.encoder.layer.0.attention.self.query");
        ASSERT_NE(query, nullptr);
        EXPECT_EQ(query->weight.dtype(), DType::Q8_0);
    }

    const auto bad = test::run_command(cq + " quantize " + dir + " " + tmp.file("x.gguf") + " --type q4_0 --calib " +
                                       test::fixture("data/sst2_train.tsv"));
    EXPECT_NE(bad.exit_code, 0);
    EXPECT_NE(bad.err.find("weight-only"), std::string::npos) << bad.err;
    EXPECT_FALSE(std::ifstream(tmp.file("x.gguf")).good());
}

}  // namespace
}  // namespace cq
