// gemv_f32 and gemm_f32_nn: every variant this CPU runs against the double-accumulating reference
// on awkward shapes, with padded strides; tolerance eps·K·max|w|·max|x|.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>

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
