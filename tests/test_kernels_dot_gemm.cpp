// Every compiled u8·s8 dot and float GEMM kernel against its scalar reference on every ISA level this
// CPU runs: the dot exactly, the GEMM within eps·K·max|a|·max|b|; plus closed-form reference checks.
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <stdexcept>
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

std::vector<cq::IsaLevel> levels_of_this_arch() { return cq::test::isa_levels_of_this_arch(); }

class KernelsAtLevel : public cq::test::KernelTableAtLevel {};

// ---- dot_u8_s8 ----

const int64_t kDotLengths[] = {0, 1, 3, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 128, 129, 1000, 4097};

// Runs the kernel on guarded copies of a and b and compares with the reference, exactly.
::testing::AssertionResult dot_same_as_ref(const cq::Kernel<cq::DotU8S8Fn>& k, const std::vector<uint8_t>& a,
                                           const std::vector<int8_t>& b, const char* pattern) {
    GuardedBuffer<uint8_t> ga(a);
    GuardedBuffer<int8_t> gb(b);
    const int64_t n = int64_t(a.size());
    const int32_t got = k.fn(ga.data(), gb.data(), n);
    const int32_t want = ck::dot_u8_s8__ref(a.data(), b.data(), n);
    if (got == want) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure() << k.name << " n=" << n << " (" << pattern << "): got " << got
                                         << ", reference " << want;
}

TEST_P(KernelsAtLevel, DotU8S8ExactOnAwkwardLengths) {
    const auto& k = table_.dot_u8_s8;
    ASSERT_NE(k.fn, nullptr);
    std::mt19937 rng(7);
    std::uniform_int_distribution<int> u8(0, 255), s8(-128, 127);
    for (int64_t n : kDotLengths) {
        const size_t sn = size_t(n);
        EXPECT_TRUE(dot_same_as_ref(k, std::vector<uint8_t>(sn, 255), std::vector<int8_t>(sn, -128), "255 x -128"));
        EXPECT_TRUE(dot_same_as_ref(k, std::vector<uint8_t>(sn, 255), std::vector<int8_t>(sn, 127), "255 x 127"));
        std::vector<uint8_t> a(sn);
        std::vector<int8_t> b(sn);
        for (size_t i = 0; i < sn; ++i) {  // extremes alternating, so int16 pair sums would overflow
            a[i] = (i % 3 == 2) ? 0 : 255;
            b[i] = (i % 2) ? 127 : -128;
        }
        EXPECT_TRUE(dot_same_as_ref(k, a, b, "alternating extremes"));
        for (size_t i = 0; i < sn; ++i) {
            a[i] = uint8_t(u8(rng));
            b[i] = int8_t(s8(rng));
        }
        EXPECT_TRUE(dot_same_as_ref(k, a, b, "random"));
    }
}

TEST_P(KernelsAtLevel, DotU8S8AtTheLengthLimit) {
    // n = 2^16 is the largest length the table promises; 255·(-128)·2^16 still fits int32.
    const size_t n = size_t(1) << 16;
    EXPECT_TRUE(dot_same_as_ref(table_.dot_u8_s8, std::vector<uint8_t>(n, 255), std::vector<int8_t>(n, -128), "255 x -128"));
    EXPECT_TRUE(dot_same_as_ref(table_.dot_u8_s8, std::vector<uint8_t>(n, 255), std::vector<int8_t>(n, 127), "255 x 127"));
}

TEST(DotReference, ClosedForm) {
    for (int64_t n : kDotLengths) {
        const std::vector<uint8_t> a(size_t(n), 255);
        const std::vector<int8_t> b(size_t(n), -128);
        EXPECT_EQ(ck::dot_u8_s8__ref(a.data(), b.data(), n), int32_t(-32640 * n)) << "n=" << n;
    }
    const uint8_t a[] = {1, 2, 3, 200};
    const int8_t b[] = {-1, 5, -7, 3};
    EXPECT_EQ(ck::dot_u8_s8__ref(a, b, 4), -1 + 10 - 21 + 600);
    const std::vector<uint8_t> big_a(size_t(1) << 16, 255);
    const std::vector<int8_t> big_b(size_t(1) << 16, -128);
    EXPECT_EQ(ck::dot_u8_s8__ref(big_a.data(), big_b.data(), int64_t(big_a.size())), -2139095040);
}

// ---- gemm_f32 ----

struct GemmShape {
    int64_t m, n, k, lda, ldb, ldc;
};

std::string shape_str(const GemmShape& s) {
    return "m=" + std::to_string(s.m) + " n=" + std::to_string(s.n) + " k=" + std::to_string(s.k) +
           " lda=" + std::to_string(s.lda) + " ldb=" + std::to_string(s.ldb) + " ldc=" + std::to_string(s.ldc);
}

// Elements a row-major matrix spans: the last row ends at its last column, not at the stride.
size_t extent(int64_t rows, int64_t ld, int64_t cols) {
    return rows == 0 || cols == 0 ? 0 : size_t((rows - 1) * ld + cols);
}

// Runs `k` on guarded, randomly filled A, B and a NaN-filled C, and compares C with the reference
// within eps·K·max|a|·max|b| (the reference sums in double); C's row padding must stay untouched.
::testing::AssertionResult gemm_close_to_ref(const cq::Kernel<cq::GemmF32Fn>& k, const GemmShape& s, std::mt19937& rng) {
    std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
    GuardedBuffer<float> a(extent(s.m, s.lda, s.k)), b(extent(s.n, s.ldb, s.k)), c(extent(s.m, s.ldc, s.n));
    for (size_t i = 0; i < a.size(); ++i) a[i] = dist(rng);
    for (size_t i = 0; i < b.size(); ++i) b[i] = dist(rng);
    const float sentinel = std::numeric_limits<float>::quiet_NaN();
    for (size_t i = 0; i < c.size(); ++i) c[i] = sentinel;
    std::vector<float> want(size_t(s.m * s.n));
    ck::gemm_f32__ref(s.m, s.n, s.k, a.data(), s.lda, b.data(), s.ldb, want.data(), s.n);
    k.fn(s.m, s.n, s.k, a.data(), s.lda, b.data(), s.ldb, c.data(), s.ldc);

    float max_a = 0, max_b = 0;
    for (size_t i = 0; i < a.size(); ++i) max_a = std::max(max_a, std::fabs(a[i]));
    for (size_t i = 0; i < b.size(); ++i) max_b = std::max(max_b, std::fabs(b[i]));
    const double tol = double(std::numeric_limits<float>::epsilon()) * double(s.k) * max_a * max_b;
    for (int64_t i = 0; i < s.m; ++i) {
        for (int64_t j = 0; j < s.n; ++j) {
            const double got = c[size_t(i * s.ldc + j)], ref = want[size_t(i * s.n + j)];
            if (!(std::fabs(got - ref) <= tol))
                return ::testing::AssertionFailure() << k.name << " " << shape_str(s) << ": c[" << i << "," << j
                                                     << "] = " << got << ", reference " << ref << ", tolerance " << tol;
        }
        for (int64_t j = s.n; j < s.ldc && i + 1 < s.m; ++j)
            if (!std::isnan(c[size_t(i * s.ldc + j)]))
                return ::testing::AssertionFailure() << k.name << " " << shape_str(s) << ": wrote row padding c[" << i
                                                     << "," << j << "]";
    }
    return ::testing::AssertionSuccess();
}

TEST_P(KernelsAtLevel, GemmF32AwkwardShapes) {
    const auto& k = table_.gemm_f32;
    ASSERT_NE(k.fn, nullptr);
    std::mt19937 rng(11);
    const int64_t dims[] = {1, 3, 7, 16, 17, 33, 64, 65};
    for (int64_t m : dims)
        for (int64_t n : dims)
            for (int64_t kk : dims) {
                EXPECT_TRUE(gemm_close_to_ref(k, {m, n, kk, kk, kk, n}, rng));
                EXPECT_TRUE(gemm_close_to_ref(k, {m, n, kk, kk + 5, kk + 3, n + 7}, rng));  // padded strides
            }
}

TEST_P(KernelsAtLevel, GemmF32ModelShapes) {
    std::mt19937 rng(13);
    for (const GemmShape& s : {GemmShape{1, 256, 4096, 4096, 4096, 256},   // decode step, LLaMA-like K
                               GemmShape{5, 300, 1000, 1000, 1000, 300},  // few tokens
                               GemmShape{128, 96, 768, 800, 768, 100}})   // BERT-like K, padded
        EXPECT_TRUE(gemm_close_to_ref(table_.gemm_f32, s, rng));
}

TEST_P(KernelsAtLevel, GemmF32EmptyAndIdentity) {
    const auto& k = table_.gemm_f32;
    // k = 0: an empty sum, C is overwritten with zeros.
    std::vector<float> c(6, std::numeric_limits<float>::quiet_NaN());
    const float dummy[1] = {0};
    k.fn(2, 3, 0, dummy, 1, dummy, 1, c.data(), 3);
    for (size_t i = 0; i < c.size(); ++i) EXPECT_EQ(c[i], 0.0f) << k.name << " k=0 index " << i;
    // m = 0 or n = 0: nothing is touched.
    k.fn(0, 3, 4, dummy, 4, dummy, 4, nullptr, 3);
    k.fn(3, 0, 4, dummy, 4, dummy, 4, nullptr, 1);
    // B = I: C = A exactly.
    for (int64_t n : {1, 7, 33, 65}) {
        const int64_t m = 9;
        std::mt19937 rng{uint32_t(n)};
        std::uniform_real_distribution<float> dist(-4.0f, 4.0f);
        std::vector<float> a(size_t(m * n)), eye(size_t(n * n), 0.0f), out(size_t(m * n));
        for (auto& v : a) v = dist(rng);
        for (int64_t i = 0; i < n; ++i) eye[size_t(i * n + i)] = 1.0f;
        k.fn(m, n, n, a.data(), n, eye.data(), n, out.data(), n);
        for (size_t i = 0; i < a.size(); ++i) ASSERT_EQ(out[i], a[i]) << k.name << " A·I, n=" << n << " index " << i;
    }
}

INSTANTIATE_TEST_SUITE_P(Isa, KernelsAtLevel, ::testing::ValuesIn(levels_of_this_arch()),
                         [](const ::testing::TestParamInfo<cq::IsaLevel>& info) {
                             return std::string(cq::isa_level_name(info.param));
                         });

TEST(GemmReference, ClosedForm) {
    // [[1,2,3],[4,5,6]] · [[7,8,9],[10,11,12]]ᵀ = [[50,68],[122,167]]
    const float a[] = {1, 2, 3, 4, 5, 6};
    const float b[] = {7, 8, 9, 10, 11, 12};
    float c[4];
    ck::gemm_f32__ref(2, 2, 3, a, 3, b, 3, c, 2);
    EXPECT_EQ(c[0], 50.0f);
    EXPECT_EQ(c[1], 68.0f);
    EXPECT_EQ(c[2], 122.0f);
    EXPECT_EQ(c[3], 167.0f);
    // Strides: a 2x2 block out of a 2x4 A, rows of B 3 apart, C rows 5 apart; padding untouched.
    const float a2[] = {1, 2, -1, -1, 3, 4, -1, -1};
    const float b2[] = {1, 0, -1, 0, 1, -1};  // rows [1,0] and [0,1]
    float c2[7] = {9, 9, 9, 9, 9, 9, 9};
    ck::gemm_f32__ref(2, 2, 2, a2, 4, b2, 3, c2, 5);
    const float want2[] = {1, 2, 9, 9, 9, 3, 4};
    for (int i = 0; i < 7; ++i) EXPECT_EQ(c2[i], want2[i]) << "index " << i;
    // Accumulation in double: 1 + 2^-24 - 1 would be 0 in float.
    const float a3[] = {1.0f, std::ldexp(1.0f, -24), -1.0f};
    const float b3[] = {1.0f, 1.0f, 1.0f};
    float c3 = 0;
    ck::gemm_f32__ref(1, 1, 3, a3, 3, b3, 3, &c3, 1);
    EXPECT_EQ(c3, std::ldexp(1.0f, -24));
}

// The process-wide table (the detected level, or CQ_ISA's) agrees with the reference too.
TEST(DotGemmKernelTable, ProcessTableMatchesReference) {
    const cq::KernelTable& t = cq::kernel_table();
    std::mt19937 rng(17);
    std::uniform_int_distribution<int> u8(0, 255), s8(-128, 127);
    std::vector<uint8_t> a(777);
    std::vector<int8_t> b(777);
    for (size_t i = 0; i < a.size(); ++i) {
        a[i] = uint8_t(u8(rng));
        b[i] = int8_t(s8(rng));
    }
    EXPECT_TRUE(dot_same_as_ref(t.dot_u8_s8, a, b, "random"));
    EXPECT_TRUE(gemm_close_to_ref(t.gemm_f32, {17, 33, 65, 65, 65, 33}, rng));
}

}  // namespace
