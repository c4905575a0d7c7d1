// Mixed-precision training: bf16 gradients of a real model close to fp32's (norm-wise, within bf16's rounding) and
// the same bytes for any thread count; FP16 dynamic loss scaling (an overflowed step is skipped and halves the scale,
// the scale grows after N finite steps, a run whose every step overflows leaves the weights as they were, a resumed
// fp16 run equals an uninterrupted one).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>

#include "cq/error.h"
#include "cq/thread_pool.h"
#include "cq/train.h"
#include "test_support.h"
#include "train/train_ops.h"

namespace cq {
namespace {

std::unique_ptr<LanguageModel> load_llama() {
    LoadOptions o;
    o.n_ctx = 64;
    o.pack_for_kernels = false;
    return LanguageModel::load(test::fixture("models/llama-256d-stories"), o);
}

struct Grads {
    double loss = 0;
    std::vector<std::vector<float>> g;
};

Grads grads_at(train::MatmulPrecision precision, int threads) {
    ThreadPool::set_global_threads(threads);
    auto model = load_llama();
    const TextWindows w = load_text_windows(*model, test::fixture("data/stories_calib.txt"), 40);
    std::vector<int32_t> in(3 * 40), tg(in.size());
    for (int64_t i = 0; i < 3; ++i) w.window(i, in.data() + i * 40, tg.data() + i * 40);
    LmTrainer trainer(*model);
    Grads r;
    {
        const train::ScopedMatmulPrecision scope(precision);
        r.loss = trainer.forward_backward(in, tg, 3, 40);
    }
    for (const TrainParam& p : trainer.params()) r.g.emplace_back(p.grad, p.grad + p.numel);
    ThreadPool::set_global_threads(0);
    return r;
}

TEST(TrainPrecision, Bf16GradientsAreCloseToFp32AndDeterministicEndToEnd) {
    const Grads f32 = grads_at(train::MatmulPrecision::f32, 2);
    const Grads bf = grads_at(train::MatmulPrecision::bf16, 2), bf1 = grads_at(train::MatmulPrecision::bf16, 1);
    const Grads emu = grads_at(train::MatmulPrecision::bf16_via_f32, 1);
    EXPECT_LT(std::fabs(bf.loss - f32.loss) / f32.loss, 1e-2) << bf.loss << " vs fp32 " << f32.loss;
    double worst = 0, worst_emu = 0;
    for (size_t i = 0; i < f32.g.size(); ++i) {
        double num = 0, den = 0, num_emu = 0;
        for (size_t j = 0; j < f32.g[i].size(); ++j) {
            const double d = double(bf.g[i][j]) - f32.g[i][j], de = double(bf.g[i][j]) - emu.g[i][j];
            num += d * d, den += double(f32.g[i][j]) * f32.g[i][j], num_emu += de * de;
        }
        if (den == 0) continue;
        worst = std::max(worst, std::sqrt(num / den)), worst_emu = std::max(worst_emu, std::sqrt(num_emu / den));
        EXPECT_EQ(0, std::memcmp(bf.g[i].data(), bf1.g[i].data(), bf.g[i].size() * sizeof(float))) << "parameter " << i << " at 1 vs 2 threads";
    }
    // bf16 keeps 8 significant bits (u = 2^-8): products of rounded operands stay within a few u of fp32's. The native
    // kernels and the emulation on f32 products round the same operands but sum in another order, so activations
    // rounded to bf16 later in the graph can differ by an ulp: they agree within the same bound, not bit for bit.
    EXPECT_LT(worst, 8 * std::ldexp(1.0, -8));
    EXPECT_GT(worst, 1e-5) << "bf16 changed nothing: the operands were not rounded";
    EXPECT_LT(worst_emu, 8 * std::ldexp(1.0, -8));
    std::printf("bf16 vs fp32: loss %.6f vs %.6f, worst gradient rel %.2e; native vs emulated bf16 %.2e\n", bf.loss, f32.loss, worst,
                worst_emu);
}

TEST(TrainPrecision, LossScalerSkipsOverflowAndGrows) {
    LossScalerOptions o;
    o.init_scale = 1024.0f, o.growth_interval = 3;
    DynamicLossScaler s(o);
    std::vector<float> g = {2048.0f, -1024.0f, 512.0f};
    TrainParam p;
    p.grad = g.data(), p.numel = 3;
    std::vector<TrainParam> params = {p};
    EXPECT_TRUE(s.unscale_and_check(params));
    EXPECT_EQ(g, (std::vector<float>{2.0f, -1.0f, 0.5f}));
    s.update(true), s.update(true);
    EXPECT_EQ(s.scale(), 1024.0f);
    s.update(true);  // the third finite step in a row
    EXPECT_EQ(s.scale(), 2048.0f);
    EXPECT_EQ(s.finite_in_a_row(), 0);
    g[1] = std::numeric_limits<float>::infinity();
    EXPECT_FALSE(s.unscale_and_check(params));
    EXPECT_EQ(g[0], 2.0f) << "gradients are left as they are on an overflow";
    s.update(false);
    EXPECT_EQ(s.scale(), 1024.0f);
    EXPECT_EQ(s.skipped_steps(), 1);
    g[1] = std::numeric_limits<float>::quiet_NaN();
    EXPECT_FALSE(s.unscale_and_check(params));
    s.update(true), s.update(true), s.update(false);  // an overflow restarts the count
    EXPECT_EQ(s.scale(), 512.0f);
    s.update(true), s.update(true);
    EXPECT_EQ(s.scale(), 512.0f);
    s.update(true);
    EXPECT_EQ(s.scale(), 1024.0f);
    o.backoff_factor = 1.5f;
    EXPECT_THROW(DynamicLossScaler{o}, InvalidArgument);
    EXPECT_THROW(s.restore(-1.0f, 0, 0), InvalidArgument);
}

FinetuneOptions fp16_options() {
    FinetuneOptions o;
    o.data = test::fixture("data/stories_calib.txt");
    o.batch = 2, o.ctx = 32, o.seed = 3;
    o.schedule.lr = 1e-3f;
    o.precision = "fp16";
    return o;
}

// Gradients of ~1e-3 times 2^120 fit f32 (≤ 3.4e38) but not fp16 (≤ 65504): the overflow is fp16's, the steps are
// skipped (weights untouched) and each halves the scale.
TEST(TrainPrecision, Fp16OverflowedStepsAreSkippedAndHalveTheScaleEndToEnd) {
    auto model = load_llama();
    const auto before = model->weights().blocks[2].ffn_down.weight.to_float();
    FinetuneOptions o = fp16_options();
    o.steps = 2, o.loss_scaler.init_scale = std::ldexp(1.0f, 120);
    const FinetuneReport r = finetune(*model, o);
    EXPECT_EQ(r.skipped_steps, 2);
    EXPECT_EQ(r.loss_scale, std::ldexp(1.0, 118));
    const auto after = model->weights().blocks[2].ffn_down.weight.to_float();
    EXPECT_EQ(0, std::memcmp(before.data(), after.data(), before.size() * sizeof(float))) << "a skipped step changed the weights";

    // From a moderate scale nothing overflows; the scale doubles every 2 finite steps, and the run follows fp32's
    // (fp16 keeps 11 significant bits: its losses within 1e-2 of fp32's at every step).
    auto model2 = load_llama();
    o.steps = 5, o.loss_scaler.init_scale = 8.0f, o.loss_scaler.growth_interval = 2;
    const FinetuneReport r2 = finetune(*model2, o);
    EXPECT_EQ(r2.skipped_steps, 0);
    EXPECT_EQ(r2.loss_scale, 32.0);
    auto model3 = load_llama();
    FinetuneOptions o32 = o;
    o32.precision = "fp32";
    const FinetuneReport r3 = finetune(*model3, o32);
    ASSERT_EQ(r2.loss_curve.size(), r3.loss_curve.size());
    for (size_t i = 0; i < r3.loss_curve.size(); ++i)
        EXPECT_NEAR(r2.loss_curve[i], r3.loss_curve[i], 1e-2 * r3.loss_curve[i]) << "step " << i + 1;
    EXPECT_NE(r2.loss_curve, r3.loss_curve) << "fp16 changed nothing: the operands were not rounded";
}

// The loss scaler's state travels in the state file: stopped and resumed equals straight through, byte for byte.
TEST(TrainPrecision, Fp16ResumedRunEqualsAnUninterruptedOneEndToEnd) {
    test::TempDir dir;
    FinetuneOptions o = fp16_options();
    o.steps = 4, o.loss_scaler.init_scale = std::ldexp(1.0f, 60), o.loss_scaler.growth_interval = 1;
    auto straight = load_llama();
    const FinetuneReport a = finetune(*straight, o);
    FinetuneOptions o1 = o;
    o1.stop_after = 2, o1.state_path = dir.file("state.bin");
    auto first = load_llama();
    finetune(*first, o1);
    FinetuneOptions o2 = o;
    o2.resume_from = o1.state_path;
    auto second = load_llama();
    const FinetuneReport b = finetune(*second, o2);
    EXPECT_EQ(a.loss_curve, b.loss_curve);
    EXPECT_EQ(a.loss_scale, b.loss_scale);
    EXPECT_EQ(a.skipped_steps, b.skipped_steps);
    const auto wa = straight->weights().blocks[0].wq.weight.to_float(), wb = second->weights().blocks[0].wq.weight.to_float();
    EXPECT_EQ(0, std::memcmp(wa.data(), wb.data(), wa.size() * sizeof(float)));
    // An fp32 run refuses the fp16 file (it holds the scaler section), and an fp16 run an fp32 file.
    FinetuneOptions f32 = o2;
    f32.precision = "fp32";
    auto third = load_llama();
    EXPECT_THROW(finetune(*third, f32), InvalidArgument);
    FinetuneOptions bad = o;
    bad.precision = "int3";
    EXPECT_THROW(finetune(*third, bad), InvalidArgument);
}

}  // namespace
}  // namespace cq
