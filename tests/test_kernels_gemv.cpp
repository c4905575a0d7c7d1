// gemv_f32 and gemm_f32_nn: every variant this CPU runs against the double-accumulating reference
// on awkward shapes, with padded strides; tolerance eps·K·max|w|·max|x|. On ARM also the NEON kernels' split invariance.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <tuple>
#include <vector>

#include "cq/kernels.h"
#include "kernels/kernel_decls.h"

namespace cq {
namespace {

std::vector<float> random_vector(size_t n, std::mt19937& rng) {
    std::uniform_real_distribution<float> d(-1.0f, 1.0f);
    std::vector<float> v(n);
    for (auto& x : v) x = d(rng);
    return v;
}

TEST(KernelsGemv, EveryLevelMatchesReference) {
    std::mt19937 rng(42);
    for (IsaLevel level : supported_isa_levels()) {
        const KernelTable t = make_kernel_table(level);
        for (int64_t n : {1, 3, 4, 5, 7, 8, 17, 64, 65}) {
            for (int64_t k : {1, 7, 8, 15, 16, 17, 31, 32, 33, 63, 64, 65, 768, 1000}) {
                const int64_t ldw = k + 3;
                const auto w = random_vector(static_cast<size_t>(n * ldw), rng);
                const auto x = random_vector(static_cast<size_t>(k), rng);
                std::vector<float> ref(static_cast<size_t>(n) + 1, 7.0f), got(static_cast<size_t>(n) + 1, 7.0f);
                kernels::gemv_f32__ref(n, k, w.data(), ldw, x.data(), ref.data());
                t.gemv_f32.fn(n, k, w.data(), ldw, x.data(), got.data());
                const float tol = std::numeric_limits<float>::epsilon() * static_cast<float>(k) * 1.0f;
                for (int64_t i = 0; i < n; ++i)
                    ASSERT_NEAR(got[static_cast<size_t>(i)], ref[static_cast<size_t>(i)], tol)
                        << t.gemv_f32.name << " n=" << n << " k=" << k << " row " << i;
                EXPECT_EQ(got[static_cast<size_t>(n)], 7.0f) << t.gemv_f32.name << " wrote past y[n-1]";
            }
        }
    }
}

TEST(KernelsGemmNN, EveryLevelMatchesReference) {
    std::mt19937 rng(7);
    for (IsaLevel level : supported_isa_levels()) {
        const KernelTable t = make_kernel_table(level);
        for (int64_t m : {1, 3, 16, 17}) {
            for (int64_t n : {1, 7, 16, 33}) {
                for (int64_t k : {1, 5, 16, 65}) {
                    const int64_t lda = k + 1, ldb = n + 2, ldc = n + 3;
                    const auto a = random_vector(static_cast<size_t>(m * lda), rng);
                    const auto b = random_vector(static_cast<size_t>(k * ldb), rng);
                    std::vector<float> ref(static_cast<size_t>(m * ldc), 7.0f), got(ref);
                    kernels::gemm_f32_nn__ref(m, n, k, a.data(), lda, b.data(), ldb, ref.data(), ldc);
                    t.gemm_f32_nn.fn(m, n, k, a.data(), lda, b.data(), ldb, got.data(), ldc);
                    const float tol = std::numeric_limits<float>::epsilon() * static_cast<float>(k);
                    for (int64_t i = 0; i < m; ++i)
                        for (int64_t j = 0; j < ldc; ++j) {
                            const size_t idx = static_cast<size_t>(i * ldc + j);
                            if (j < n) ASSERT_NEAR(got[idx], ref[idx], tol) << t.gemm_f32_nn.name << " m=" << m << " n=" << n << " k=" << k << " at " << i << "," << j;
                            else ASSERT_EQ(got[idx], 7.0f) << t.gemm_f32_nn.name << " wrote into row padding";
                        }
                }
            }
        }
    }
}

#if defined(__aarch64__)
// The NEON float kernels fix each output's summation order by k alone (kernels/arm/kernel_decls_arm.h): any split of
// rows or columns (the ops cut columns at multiples of 64, training cuts rows anywhere) gives the same bits, and
// gemv_f32 equals gemm_f32 at m = 1. (test_kernels_dispatch checks the column splits on larger shapes at every
// level, the reference's included, which takes minutes under emulation.)
TEST(KernelsFloatNeon, SplitsAndGemvGiveTheSameBits) {
    if (!cpu_supports(IsaLevel::neon)) GTEST_SKIP() << "no NEON";
    const KernelTable t = make_kernel_table(IsaLevel::neon);
    std::mt19937 rng(3);
    for (const auto& [m, n, k] : {std::tuple<int64_t, int64_t, int64_t>{13, 203, 67}, {9, 130, 64}, {1, 77, 33}}) {
        const auto a = random_vector(size_t(m * k), rng), bt = random_vector(size_t(n * k), rng), bn = random_vector(size_t(k * n), rng);
        for (const bool nn : {false, true}) {
            const auto run = [&](int64_t r0, int64_t r1, int64_t c0, int64_t c1, float* c) {
                if (nn) t.gemm_f32_nn.fn(r1 - r0, c1 - c0, k, a.data() + r0 * k, k, bn.data() + c0, n, c + r0 * n + c0, n);
                else t.gemm_f32.fn(r1 - r0, c1 - c0, k, a.data() + r0 * k, k, bt.data() + c0 * k, k, c + r0 * n + c0, n);
            };
            std::vector<float> whole(size_t(m * n)), split(size_t(m * n));
            run(0, m, 0, n, whole.data());
            for (const int64_t cut : {int64_t(1), int64_t(5), int64_t(64), n - 3}) {
                const int64_t rcut = m > 1 ? m / 2 + 1 : 1;
                run(0, rcut, 0, cut, split.data()), run(0, rcut, cut, n, split.data());
                run(rcut, m, 0, n - cut, split.data()), run(rcut, m, n - cut, n, split.data());
                ASSERT_EQ(std::memcmp(whole.data(), split.data(), whole.size() * sizeof(float)), 0)
                        << (nn ? t.gemm_f32_nn.name : t.gemm_f32.name) << " m=" << m << " n=" << n << " k=" << k << " cut " << cut;
            }
            if (!nn)
                for (int64_t r = 0; r < m; ++r) {
                    std::vector<float> y(static_cast<size_t>(n));
                    t.gemv_f32.fn(n, k, bt.data(), k, a.data() + r * k, y.data());
                    ASSERT_EQ(std::memcmp(y.data(), whole.data() + r * n, y.size() * sizeof(float)), 0) << t.gemv_f32.name << " row " << r;
                }
        }
    }
}
#endif

TEST(KernelsGemv, ReferenceClosedForm) {
    // w = [[1,2,3],[4,5,6]], x = [1,0,-1] → y = [-2, -2]
    const float w[] = {1, 2, 3, 4, 5, 6}, x[] = {1, 0, -1};
    float y[2];
    kernels::gemv_f32__ref(2, 3, w, 3, x, y);
    EXPECT_EQ(y[0], -2.0f);
    EXPECT_EQ(y[1], -2.0f);
}

}  // namespace
}  // namespace cq
