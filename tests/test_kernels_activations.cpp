// Encoder activation kernels: the scalar references against erf / exp in double over dense ranges (stated
// maximum errors), and every compiled variant against its reference behind guard pages on lengths below,
// at and above the vector width: GELU bit for bit (same per-element operation sequence), softmax within
// the rounding of a reordered sum; −inf scores give exactly 0.
#include <gtest/gtest.h>

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
#include "guarded_buffer.h"
#include "kernels/kernel_decls.h"

namespace {

namespace ck = cq::kernels;
using cq::test::GuardedBuffer;

constexpr double kEps = std::numeric_limits<float>::epsilon();

double gelu_exact(double x) { return 0.5 * x * (1.0 + std::erf(x / std::sqrt(2.0))); }

uint32_t bits_of(float f) {
    uint32_t b;
    std::memcpy(&b, &f, sizeof(b));
    return b;
}

// Lengths around every vector width and unroll (8, 16) and their tails, and attention's row lengths.
std::vector<int64_t> lengths() {
    std::vector<int64_t> n;
    for (int64_t i = 1; i <= 40; ++i) n.push_back(i);
    for (int64_t i : {63, 64, 65, 127, 128, 129, 197, 384, 1000, 3072}) n.push_back(i);
    return n;
}

// ---- the references against double precision ----

TEST(ActivationsReference, ErfWithinStatedError) {
    double worst = 0, at = 0;
    for (double xd = -8.0; xd <= 8.0; xd += 1.0 / 16384) {
        const float x = float(xd);
        const double err = std::fabs(double(ck::erf_rational_scalar(x)) - std::erf(double(x)));
        if (err > worst) worst = err, at = x;
    }
    EXPECT_LE(worst, 3.4e-7) << "erf_rational_scalar: max |error| " << worst << " at x = " << at;
    EXPECT_EQ(ck::erf_rational_scalar(0.0f), 0.0f);
    EXPECT_NEAR(ck::erf_rational_scalar(100.0f), 1.0f, 1e-7);
    EXPECT_NEAR(ck::erf_rational_scalar(-INFINITY), -1.0f, 1e-7);
}

TEST(ActivationsReference, GeluWithinStatedError) {
    // dense over [-10, 10] (every 2^-14), then spread out to ±1e4
    std::vector<float> x;
    for (double xd = -10.0; xd <= 10.0; xd += 1.0 / 16384) x.push_back(float(xd));
    for (double xd = 10.0; xd <= 1e4; xd *= 1.001) x.push_back(float(xd)), x.push_back(float(-xd));
    std::vector<float> y(x.size());
    ck::gelu_erf_f32__ref(x.data(), y.data(), int64_t(x.size()));
    double worst = 0, at = 0;
    for (size_t i = 0; i < x.size(); ++i) {
        const double err = std::fabs(double(y[i]) - gelu_exact(x[i])) / std::max(1.0, std::fabs(double(x[i])));
        if (err > worst) worst = err, at = x[i];
    }
    EXPECT_LE(worst, 4e-7) << "gelu_erf_f32__ref: max |error| / max(1, |x|) " << worst << " at x = " << at;
    const float special[] = {0.0f, INFINITY, std::numeric_limits<float>::quiet_NaN()};
    float out[3];
    ck::gelu_erf_f32__ref(special, out, 3);
    EXPECT_EQ(out[0], 0.0f);
    EXPECT_EQ(out[1], INFINITY);
    EXPECT_TRUE(std::isnan(out[2]));
}

TEST(ActivationsReference, ExpWithinStatedError) {
    double worst = 0, at = 0;
    for (double xd = -87.0; xd <= 0.0; xd += 1.0 / 4096) {
        const float x = float(xd);
        const double want = std::exp(double(x));
        const double err = std::fabs(double(ck::exp_nonpositive_scalar(x)) - want) / want;
        if (err > worst) worst = err, at = x;
    }
    EXPECT_LE(worst, 2 * kEps) << "exp_nonpositive_scalar: max relative error " << worst << " at x = " << at;
    EXPECT_EQ(ck::exp_nonpositive_scalar(0.0f), 1.0f);
    EXPECT_EQ(ck::exp_nonpositive_scalar(-88.0f), 0.0f);
    EXPECT_EQ(ck::exp_nonpositive_scalar(-INFINITY), 0.0f);
}

// silu(g)·u against double: σ through the Cephes exp (≤ 2 ulp) and one division, so a few eps relative
// (plus 1e-30 absolute: exp flushes to 0 below −87, where silu is below 1e-36).
TEST(ActivationsReference, SiluMulAgainstDouble) {
    std::vector<float> g, u;
    for (float x = -100.0f; x <= 100.0f; x += 0.0625f) {
        g.push_back(x);
        u.push_back(0.75f - 0.01f * x);
    }
    g.push_back(-1e30f);  // exp underflows: σ = 0, result −0 · u
    u.push_back(1.0f);
    g.push_back(1e30f);   // σ = 1
    u.push_back(2.0f);
    std::vector<float> got = g;
    ck::silu_mul_f32__ref(got.data(), u.data(), int64_t(g.size()));
    for (size_t i = 0; i < g.size(); ++i) {
        const double x = g[i], want = x / (1.0 + std::exp(-x)) * double(u[i]);
        ASSERT_NEAR(got[i], want, 8 * kEps * std::fabs(want) + 1e-30) << "g=" << g[i] << " u=" << u[i];
    }
}

TEST(ActivationsReference, SoftmaxAgainstDouble) {
    std::mt19937 rng(7);
    std::normal_distribution<float> dist(0.0f, 4.0f);
    for (const int64_t n : lengths()) {
        std::vector<float> x(static_cast<size_t>(n));
        for (auto& v : x) v = dist(rng);
        if (n > 2) x[1] = -INFINITY;  // a masked key
        const float scale = 0.125f;
        std::vector<float> y = x;
        ck::softmax_f32__ref(y.data(), n, scale);
        double mx = -INFINITY, sum = 0;
        for (const float v : x) mx = std::max(mx, double(v));
        for (const float v : x) sum += std::exp(double(scale) * (double(v) - mx));
        for (int64_t i = 0; i < n; ++i) {
            const double want = std::exp(double(scale) * (double(x[size_t(i)]) - mx)) / sum;
            // exp's 2 eps, the shift's rounding scaled by |scale·x| ≤ 8, and the sum's n eps
            ASSERT_NEAR(y[size_t(i)], want, (double(n) + 16) * kEps * want + 1e-30) << "softmax_f32__ref n=" << n << " index " << i;
        }
        if (n > 2) EXPECT_EQ(y[1], 0.0f);
    }
}

// ---- every variant against its reference ----

std::vector<cq::IsaLevel> levels() { return cq::test::isa_levels_of_this_arch(); }

class ActivationKernels : public cq::test::KernelTableAtLevel {};

TEST_P(ActivationKernels, GeluMatchesReferenceBitForBit) {
    std::mt19937 rng(11);
    std::normal_distribution<float> dist(0.0f, 3.0f);
    for (const int64_t n : lengths()) {
        std::vector<float> x(static_cast<size_t>(n));
        for (auto& v : x) v = dist(rng);
        x[0] = n > 1 ? -5.0f : 0.0f;  // past the clamp
        std::vector<float> want(static_cast<size_t>(n));
        ck::gelu_erf_f32__ref(x.data(), want.data(), n);
        GuardedBuffer<float> in(x), out(static_cast<size_t>(n)), inplace(x);
        table_.gelu_erf_f32.fn(in.data(), out.data(), n);
        table_.gelu_erf_f32.fn(inplace.data(), inplace.data(), n);
        for (int64_t i = 0; i < n; ++i) {
            ASSERT_EQ(bits_of(out[size_t(i)]), bits_of(want[size_t(i)]))
                << table_.gelu_erf_f32.name << " n=" << n << " index " << i << " x=" << x[size_t(i)];
            ASSERT_EQ(bits_of(inplace[size_t(i)]), bits_of(want[size_t(i)])) << table_.gelu_erf_f32.name << " in place, n=" << n << " index " << i;
        }
    }
}

TEST_P(ActivationKernels, SoftmaxMatchesReference) {
    std::mt19937 rng(13);
    std::normal_distribution<float> dist(0.0f, 5.0f);
    for (const int64_t n : lengths()) {
        for (const bool masked : {false, true}) {
            std::vector<float> x(static_cast<size_t>(n));
            for (auto& v : x) v = dist(rng);
            if (masked)
                for (int64_t i = 0; i < n; i += 3) x[size_t(i)] = -INFINITY;
            if (masked && n % 3 == 1) x[size_t(n - 1)] = -INFINITY;  // a masked tail lane
            if (x[size_t(n - 1)] == -INFINITY && n == 1) x[0] = 1.0f;
            if (masked && n > 1) x[1] = 2.0f;
            std::vector<float> want = x;
            ck::softmax_f32__ref(want.data(), n, 0.125f);
            GuardedBuffer<float> got(x);
            table_.softmax_f32.fn(got.data(), n, 0.125f);
            for (int64_t i = 0; i < n; ++i) {
                const float w = want[size_t(i)];
                // same exp per element; the two sums differ by at most 2n eps relative
                ASSERT_NEAR(got[size_t(i)], w, (2.0 * double(n) + 4) * kEps * w)
                    << table_.softmax_f32.name << " n=" << n << (masked ? " masked" : "") << " index " << i;
                if (x[size_t(i)] == -INFINITY) ASSERT_EQ(got[size_t(i)], 0.0f) << table_.softmax_f32.name << " n=" << n << " index " << i;
            }
        }
    }
}

TEST_P(ActivationKernels, SiluMulMatchesReferenceBitForBit) {
    std::mt19937 rng(17);
    std::normal_distribution<float> dist(0.0f, 6.0f);
    for (const int64_t n : lengths()) {
        std::vector<float> g(static_cast<size_t>(n)), u(static_cast<size_t>(n));
        for (auto& v : g) v = dist(rng);
        for (auto& v : u) v = dist(rng);
        g[0] = n > 1 ? -95.0f : 0.0f;  // exp below its range
        std::vector<float> want = g;
        ck::silu_mul_f32__ref(want.data(), u.data(), n);
        GuardedBuffer<float> got(g), up(u);
        table_.silu_mul_f32.fn(got.data(), up.data(), n);
        for (int64_t i = 0; i < n; ++i)
            ASSERT_EQ(bits_of(got[size_t(i)]), bits_of(want[size_t(i)]))
                << table_.silu_mul_f32.name << " n=" << n << " index " << i << " g=" << g[size_t(i)];
    }
}

INSTANTIATE_TEST_SUITE_P(Isa, ActivationKernels, ::testing::ValuesIn(levels()),
                         [](const ::testing::TestParamInfo<cq::IsaLevel>& info) { return std::string(cq::isa_level_name(info.param)); });

}  // namespace
