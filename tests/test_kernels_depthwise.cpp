// Depthwise convolution: the scalar reference against a plain NCHW convolution in double (derived bound), every
// compiled variant against the reference bit for bit behind guard pages on awkward shapes (odd sizes, kernels 3 / 5,
// strides 1 / 2, every padding EfficientNet uses and some it does not, channels around the vector widths), and the
// threaded op (ops::depthwise_conv2d) the same bytes at 1, 2 and 3 threads; a timing of the op against the reference.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "kernel_levels.h"
#include "cq/cpu_features.h"
#include "cq/kernels.h"
#include "cq/thread_pool.h"
#include "guarded_buffer.h"
#include "kernels/kernel_decls.h"
#include "ops/encoder_ops.h"

namespace {

namespace ck = cq::kernels;
using cq::test::GuardedBuffer;

struct Shape {
    int64_t H, W, C, k, stride, pad_top, pad_left, pad_bottom, pad_right;
    int64_t OH() const { return (H + pad_top + pad_bottom - k) / stride + 1; }
    int64_t OW() const { return (W + pad_left + pad_right - k) / stride + 1; }
    std::string str() const {
        return "H" + std::to_string(H) + " W" + std::to_string(W) + " C" + std::to_string(C) + " k" + std::to_string(k) + " s" +
               std::to_string(stride) + " pads(t" + std::to_string(pad_top) + " l" + std::to_string(pad_left) + " b" +
               std::to_string(pad_bottom) + " r" + std::to_string(pad_right) + ")";
    }
};

// Every combination of the awkward cases, the output at least 1×1.
std::vector<Shape> shapes() {
    std::vector<Shape> out;
    for (const int64_t k : {3, 5})
        for (const int64_t stride : {1, 2})
            for (const int64_t H : {1, 2, 5, 7, 14})
                for (const int64_t W : {1, 3, 6, 13})
                    for (const int64_t C : {1, 3, 8, 13, 32, 40, 67}) {
                        // PyTorch "same" (stride 1), EfficientNet's stride-2 paddings (k/2 − 1, k/2) and (k/2, k/2), none
                        const int64_t h = k / 2;
                        for (const auto& [t, l, b, r] : {std::array<int64_t, 4>{h, h, h, h}, std::array<int64_t, 4>{h - 1, h - 1, h, h},
                                                         std::array<int64_t, 4>{0, 0, 0, 0}, std::array<int64_t, 4>{0, 2, 1, 0}}) {
                            Shape s{H, W, C, k, stride, t, l, b, r};
                            if (s.OH() >= 1 && s.OW() >= 1 && H + t + b >= k && W + l + r >= k) out.push_back(s);
                        }
                    }
    return out;
}

std::vector<float> random_values(size_t n, uint32_t seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> dist(0.0f, 1.0f);
    std::vector<float> v(n);
    for (auto& x : v) x = dist(rng);
    return v;
}

uint32_t bits_of(float f) {
    uint32_t b;
    std::memcpy(&b, &f, sizeof(b));
    return b;
}

TEST(DepthwiseReference, MatchesPlainConvolutionInDouble) {
    const double eps = std::numeric_limits<float>::epsilon();
    for (const Shape& s : shapes()) {
        const auto x = random_values(size_t(s.H * s.W * s.C), 1), w = random_values(size_t(s.k * s.k * s.C), 2), b = random_values(size_t(s.C), 3);
        std::vector<float> y(size_t(s.OH() * s.OW() * s.C));
        ck::depthwise_conv_f32__ref(x.data(), s.H, s.W, s.C, w.data(), s.k, s.stride, s.pad_top, s.pad_left, b.data(), y.data(), s.OW(), 0, s.OH());
        for (int64_t c = 0; c < s.C; ++c)
            for (int64_t oy = 0; oy < s.OH(); ++oy)
                for (int64_t ox = 0; ox < s.OW(); ++ox) {
                    // the convolution written over a zero-padded plane, as PyTorch's Conv2d(groups = C) defines it
                    double want = b[size_t(c)], bound = std::fabs(b[size_t(c)]);
                    for (int64_t ky = 0; ky < s.k; ++ky)
                        for (int64_t kx = 0; kx < s.k; ++kx) {
                            const int64_t iy = oy * s.stride + ky - s.pad_top, ix = ox * s.stride + kx - s.pad_left;
                            const double xv = iy >= 0 && iy < s.H && ix >= 0 && ix < s.W ? x[size_t((iy * s.W + ix) * s.C + c)] : 0.0;
                            want += xv * w[size_t((ky * s.k + kx) * s.C + c)];
                            bound += std::fabs(xv * w[size_t((ky * s.k + kx) * s.C + c)]);
                        }
                    const float got = y[size_t((oy * s.OW() + ox) * s.C + c)];
                    // k² + 1 fma roundings, each within eps/2 of the running sum ≤ Σ|terms|
                    ASSERT_NEAR(got, want, (double(s.k * s.k) + 1) * eps * bound) << "depthwise_conv_f32__ref " << s.str() << " c" << c << " oy" << oy << " ox" << ox;
                }
    }
}

std::vector<cq::IsaLevel> levels() { return cq::test::isa_levels_of_this_arch(); }

class DepthwiseKernels : public cq::test::KernelTableAtLevel {};

TEST_P(DepthwiseKernels, MatchReferenceBitForBitBehindGuardPages) {
    const auto& kernel = table_.depthwise_conv_f32;
    for (const Shape& s : shapes())
        for (const bool with_bias : {true, false}) {
            const auto xv = random_values(size_t(s.H * s.W * s.C), 4), wv = random_values(size_t(s.k * s.k * s.C), 5), bv = random_values(size_t(s.C), 6);
            const size_t n_out = size_t(s.OH() * s.OW() * s.C);
            std::vector<float> want(n_out);
            ck::depthwise_conv_f32__ref(xv.data(), s.H, s.W, s.C, wv.data(), s.k, s.stride, s.pad_top, s.pad_left, with_bias ? bv.data() : nullptr,
                                        want.data(), s.OW(), 0, s.OH());
            GuardedBuffer<float> x(xv), w(wv), b(bv), y(n_out);
            // in two calls (rows split as threads split them): the second starts mid-image
            const int64_t mid = s.OH() / 2;
            kernel.fn(x.data(), s.H, s.W, s.C, w.data(), s.k, s.stride, s.pad_top, s.pad_left, with_bias ? b.data() : nullptr, y.data(), s.OW(), 0, mid);
            kernel.fn(x.data(), s.H, s.W, s.C, w.data(), s.k, s.stride, s.pad_top, s.pad_left, with_bias ? b.data() : nullptr, y.data(), s.OW(), mid, s.OH());
            for (size_t i = 0; i < n_out; ++i)
                ASSERT_EQ(bits_of(y[i]), bits_of(want[i])) << kernel.name << " " << s.str() << (with_bias ? " bias" : " no bias") << " index " << i
                                                         << " (oy " << i / size_t(s.OW() * s.C) << ", ox " << i / size_t(s.C) % size_t(s.OW()) << ", c "
                                                         << i % size_t(s.C) << ")";
        }
}

INSTANTIATE_TEST_SUITE_P(Isa, DepthwiseKernels, ::testing::ValuesIn(levels()),
                         [](const ::testing::TestParamInfo<cq::IsaLevel>& info) { return std::string(cq::isa_level_name(info.param)); });

// The threaded op over a batch: the same bytes at 1, 2 and 3 threads, and equal to the reference image by image.
TEST(DepthwiseOp, SameBytesAtAnyThreadCountAndEqualToTheReference) {
    for (const Shape& s : {Shape{15, 15, 40, 5, 2, 1, 1, 2, 2}, Shape{7, 9, 13, 3, 1, 1, 1, 1, 1}, Shape{28, 28, 24, 3, 2, 0, 0, 1, 1}}) {
        const int64_t N = 3, OH = s.OH(), OW = s.OW();
        const auto x = random_values(size_t(N * s.H * s.W * s.C), 7), w = random_values(size_t(s.k * s.k * s.C), 8), b = random_values(size_t(s.C), 9);
        std::vector<std::vector<float>> outs;
        for (const int threads : {1, 2, 3}) {
            cq::ThreadPool::set_global_threads(threads);
            std::vector<float> y(size_t(N * OH * OW * s.C));
            cq::ops::depthwise_conv2d(x.data(), N, s.H, s.W, s.C, w.data(), s.k, s.stride, s.pad_top, s.pad_left, b.data(), y.data(), OH, OW);
            outs.push_back(std::move(y));
        }
        cq::ThreadPool::set_global_threads(0);
        EXPECT_EQ(outs[0], outs[1]) << s.str();
        EXPECT_EQ(outs[0], outs[2]) << s.str();
        std::vector<float> want(outs[0].size());
        for (int64_t n = 0; n < N; ++n)
            ck::depthwise_conv_f32__ref(x.data() + n * s.H * s.W * s.C, s.H, s.W, s.C, w.data(), s.k, s.stride, s.pad_top, s.pad_left, b.data(),
                                        want.data() + n * OH * OW * s.C, OW, 0, OH);
        EXPECT_EQ(outs[0], want) << s.str();
    }
}

// Not a pass/fail check: the op (the process's kernel table, the thread pool) against the scalar reference on one
// thread, on an EfficientNet-B0 stage-2 shape (56×56×144, 3×3, stride 1) — printed for docs/model_families.md.
TEST(DepthwiseOp, SpeedAgainstTheReference) {
    const Shape s{56, 56, 144, 3, 1, 1, 1, 1, 1};
    const int64_t N = 2, OH = s.OH(), OW = s.OW();
    const auto x = random_values(size_t(N * s.H * s.W * s.C), 10), w = random_values(size_t(s.k * s.k * s.C), 11), b = random_values(size_t(s.C), 12);
    std::vector<float> y(size_t(N * OH * OW * s.C));
    const auto time = [&](auto&& f) {
        double best = 1e30;
        for (int rep = 0; rep < 5; ++rep) {
            const auto t0 = std::chrono::steady_clock::now();
            f();
            best = std::min(best, std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
        }
        return best;
    };
    const double ref = time([&] {
        for (int64_t n = 0; n < N; ++n)
            ck::depthwise_conv_f32__ref(x.data() + n * s.H * s.W * s.C, s.H, s.W, s.C, w.data(), s.k, s.stride, s.pad_top, s.pad_left, b.data(),
                                        y.data() + n * OH * OW * s.C, OW, 0, OH);
    });
    const double op = time([&] { cq::ops::depthwise_conv2d(x.data(), N, s.H, s.W, s.C, w.data(), s.k, s.stride, s.pad_top, s.pad_left, b.data(), y.data(), OH, OW); });
    std::printf("depthwise 2×56×56×144 k3 s1: reference %.3f ms, %s on %d threads %.3f ms (×%.1f)\n", ref, cq::kernel_table().depthwise_conv_f32.name,
                cq::ThreadPool::global().size(), op, ref / op);
}

}  // namespace
