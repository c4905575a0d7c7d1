// The BF16 matrix products (gemm_bf16: C = A·Bᵀ, gemm_bf16_nn: C = A·B, gemm_bf16_tn: C = Aᵀ·B; bf16 in, f32 out) of every ISA level this CPU
// runs against their scalar reference on awkward shapes and padded strides, in guarded buffers; the reference
// against closed forms. Products of bf16 values are exact in f32, so a kernel differs from the reference (double
// sums) only by its f32 accumulation: within eps·K·max|a|·max|b|.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
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

struct Shape {
    int64_t m, n, k, lda, ldb, ldc;
};

std::string shape_str(const Shape& s, int layout) {
    return std::string(layout == 0 ? "nt" : layout == 1 ? "nn" : "tn") + " m=" + std::to_string(s.m) + " n=" + std::to_string(s.n) + " k=" + std::to_string(s.k) +
           " lda=" + std::to_string(s.lda) + " ldb=" + std::to_string(s.ldb) + " ldc=" + std::to_string(s.ldc);
}

size_t extent(int64_t rows, int64_t ld, int64_t cols) { return rows == 0 || cols == 0 ? 0 : size_t((rows - 1) * ld + cols); }

enum class Layout { nt, nn, tn };  // nt: a [m, k], b [n, k]; nn: a [m, k], b [k, n]; tn: a [k, m], b [k, n]

::testing::AssertionResult close_to_ref(cq::GemmBF16Fn fn, const char* name, Layout layout, const Shape& s, std::mt19937& rng) {
    const bool nn = layout != Layout::nt;  // b is [k, n]
    std::uniform_real_distribution<float> dist(-2.0f, 2.0f);
    GuardedBuffer<uint16_t> a(layout == Layout::tn ? extent(s.k, s.lda, s.m) : extent(s.m, s.lda, s.k)),
            b(nn ? extent(s.k, s.ldb, s.n) : extent(s.n, s.ldb, s.k));
    GuardedBuffer<float> c(extent(s.m, s.ldc, s.n));
    float max_a = 0, max_b = 0;
    for (size_t i = 0; i < a.size(); ++i) a[i] = ck::f32_to_bf16_scalar(dist(rng)), max_a = std::max(max_a, std::fabs(ck::bf16_to_f32_scalar(a[i])));
    for (size_t i = 0; i < b.size(); ++i) b[i] = ck::f32_to_bf16_scalar(dist(rng)), max_b = std::max(max_b, std::fabs(ck::bf16_to_f32_scalar(b[i])));
    for (size_t i = 0; i < c.size(); ++i) c[i] = std::numeric_limits<float>::quiet_NaN();
    std::vector<float> want(size_t(s.m * s.n));
    const auto ref = layout == Layout::tn ? ck::gemm_bf16_tn__ref : nn ? ck::gemm_bf16_nn__ref : ck::gemm_bf16__ref;
    ref(s.m, s.n, s.k, a.data(), s.lda, b.data(), s.ldb, want.data(), s.n);
    fn(s.m, s.n, s.k, a.data(), s.lda, b.data(), s.ldb, c.data(), s.ldc);
    const double tol = double(std::numeric_limits<float>::epsilon()) * double(std::max<int64_t>(s.k, 1)) * max_a * max_b;
    for (int64_t i = 0; i < s.m; ++i) {
        for (int64_t j = 0; j < s.n; ++j) {
            const double got = c[size_t(i * s.ldc + j)], ref = want[size_t(i * s.n + j)];
            if (!(std::fabs(got - ref) <= tol))
                return ::testing::AssertionFailure() << name << " " << shape_str(s, int(layout)) << ": c[" << i << "," << j << "] = " << got
                                                     << ", reference " << ref << ", tolerance " << tol;
        }
        for (int64_t j = s.n; j < s.ldc && i + 1 < s.m; ++j)
            if (!std::isnan(c[size_t(i * s.ldc + j)]))
                return ::testing::AssertionFailure() << name << " " << shape_str(s, int(layout)) << ": wrote row padding c[" << i << "," << j << "]";
    }
    return ::testing::AssertionSuccess();
}

std::vector<cq::IsaLevel> levels_of_this_arch() { return cq::test::isa_levels_of_this_arch(); }

class GemmBF16AtLevel : public cq::test::KernelTableAtLevel {};

TEST_P(GemmBF16AtLevel, AwkwardShapes) {
    ASSERT_NE(table_.gemm_bf16.fn, nullptr);
    ASSERT_NE(table_.gemm_bf16_nn.fn, nullptr);
    std::mt19937 rng(21);
    const int64_t dims[] = {1, 2, 7, 16, 17, 33, 64, 65};
    for (int64_t m : dims)
        for (int64_t n : dims)
            for (int64_t k : dims) {
                EXPECT_TRUE(close_to_ref(table_.gemm_bf16.fn, table_.gemm_bf16.name, Layout::nt, {m, n, k, k, k, n}, rng));
                EXPECT_TRUE(close_to_ref(table_.gemm_bf16.fn, table_.gemm_bf16.name, Layout::nt, {m, n, k, k + 5, k + 3, n + 7}, rng));
                EXPECT_TRUE(close_to_ref(table_.gemm_bf16_nn.fn, table_.gemm_bf16_nn.name, Layout::nn, {m, n, k, k, n, n}, rng));
                EXPECT_TRUE(close_to_ref(table_.gemm_bf16_nn.fn, table_.gemm_bf16_nn.name, Layout::nn, {m, n, k, k + 3, n + 5, n + 1}, rng));
                EXPECT_TRUE(close_to_ref(table_.gemm_bf16_tn.fn, table_.gemm_bf16_tn.name, Layout::tn, {m, n, k, m, n, n}, rng));
                EXPECT_TRUE(close_to_ref(table_.gemm_bf16_tn.fn, table_.gemm_bf16_tn.name, Layout::tn, {m, n, k, m + 9, n + 5, n + 2}, rng));
            }
}

TEST_P(GemmBF16AtLevel, TrainingShapesAndEmptySums) {
    std::mt19937 rng(23);
    // A row tile of a 256-wide model's FFN (forward, dX) and a dW column tile over 2048 tokens.
    for (const Shape& s : {Shape{64, 768, 256, 256, 256, 768}, Shape{64, 256, 768, 768, 768, 256}})
        EXPECT_TRUE(close_to_ref(table_.gemm_bf16.fn, table_.gemm_bf16.name, Layout::nt, s, rng));
    EXPECT_TRUE(close_to_ref(table_.gemm_bf16_nn.fn, table_.gemm_bf16_nn.name, Layout::nn, {64, 256, 768, 768, 256, 256}, rng));
    // dW's column tile: 64 outputs of 768 over 1024 tokens, dY read in place (lda 768).
    EXPECT_TRUE(close_to_ref(table_.gemm_bf16_tn.fn, table_.gemm_bf16_tn.name, Layout::tn, {64, 256, 1024, 768, 256, 256}, rng));
    // k = 0: C is overwritten with zeros; m = 0 / n = 0 touch nothing.
    std::vector<float> c(6, std::numeric_limits<float>::quiet_NaN());
    const uint16_t dummy[1] = {0};
    table_.gemm_bf16.fn(2, 3, 0, dummy, 1, dummy, 1, c.data(), 3);
    table_.gemm_bf16_nn.fn(0, 3, 4, dummy, 4, dummy, 3, nullptr, 3);
    for (size_t i = 0; i < c.size(); ++i) EXPECT_EQ(c[i], 0.0f) << table_.gemm_bf16.name << " k=0 index " << i;
}

INSTANTIATE_TEST_SUITE_P(Isa, GemmBF16AtLevel, ::testing::ValuesIn(levels_of_this_arch()),
                         [](const ::testing::TestParamInfo<cq::IsaLevel>& info) { return std::string(cq::isa_level_name(info.param)); });

TEST(GemmBF16Reference, ClosedForm) {
    const auto bf = [](float f) { return ck::f32_to_bf16_scalar(f); };
    // [[1,2,3],[4,5,6]] · [[7,8,9],[10,11,12]]ᵀ = [[50,68],[122,167]]; the same B stored [k, n] for nn.
    const uint16_t a[] = {bf(1), bf(2), bf(3), bf(4), bf(5), bf(6)};
    const uint16_t b[] = {bf(7), bf(8), bf(9), bf(10), bf(11), bf(12)};
    const uint16_t bt[] = {bf(7), bf(10), bf(8), bf(11), bf(9), bf(12)};
    const uint16_t at[] = {bf(1), bf(4), bf(2), bf(5), bf(3), bf(6)};  // a stored [k, m]
    float c[4], c2[4], c3[4];
    ck::gemm_bf16__ref(2, 2, 3, a, 3, b, 3, c, 2);
    ck::gemm_bf16_nn__ref(2, 2, 3, a, 3, bt, 2, c2, 2);
    ck::gemm_bf16_tn__ref(2, 2, 3, at, 2, bt, 2, c3, 2);
    const float want[] = {50, 68, 122, 167};
    for (int i = 0; i < 4; ++i) {
        EXPECT_EQ(c[i], want[i]) << i;
        EXPECT_EQ(c2[i], want[i]) << i;
        EXPECT_EQ(c3[i], want[i]) << i;
    }
    // (1 + 2^-7)² = 1 + 2^-6 + 2^-14: exact from bf16 operands, which f32 holds.
    const uint16_t x = bf(1.0f + 1.0f / 128);
    float sq = 0;
    ck::gemm_bf16__ref(1, 1, 1, &x, 1, &x, 1, &sq, 1);
    EXPECT_EQ(sq, 1.0f + 1.0f / 64 + 1.0f / 16384);
}

// Where the CPU multiplies bf16 natively, the ladder must not leave the products on the scalar reference; the tuned
// table may (training then rounds operands onto the f32 GEMMs), but only by a measured preference that says why.
TEST(GemmBF16Dispatch, NativeWhereTheCpuHasAvx512Bf16) {
    const cq::KernelTable& tuned = cq::kernel_table();
    if (!cq::cpu_features().avx512_bf16 || tuned.level == cq::IsaLevel::ref || !cq::cpu_supports(cq::IsaLevel::avx512))
        GTEST_SKIP() << "no AVX-512 BF16 here (or CQ_ISA=ref)";
    if (tuned.gemm_f32.isa != cq::IsaLevel::avx512) GTEST_SKIP() << "built without oneDNN";
    const cq::KernelTable ladder = cq::make_kernel_table(tuned.level);
    EXPECT_NE(ladder.gemm_bf16.isa, cq::IsaLevel::ref) << ladder.gemm_bf16.name;
    EXPECT_NE(ladder.gemm_bf16_nn.isa, cq::IsaLevel::ref) << ladder.gemm_bf16_nn.name;
    EXPECT_NE(ladder.gemm_bf16_tn.isa, cq::IsaLevel::ref) << ladder.gemm_bf16_tn.name;
    for (const auto* k : {&tuned.gemm_bf16, &tuned.gemm_bf16_nn, &tuned.gemm_bf16_tn})
        if (k->isa == cq::IsaLevel::ref) EXPECT_FALSE(std::string(tuned.tuned_for).empty() || std::string(k->why).empty()) << k->name;
}

}  // namespace
