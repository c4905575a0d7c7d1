// Float GEMM through OpenBLAS, C = A·Bᵀ (weights stored [out, in]); OpenBLAS accumulates in float.
#include <cblas.h>

#include <algorithm>
#include <cstdint>

#include "kernels/blas/openblas_column_split.h"
#include "kernels/kernel_decls.h"

namespace cq::kernels {

// a: [m, k] (row stride lda), b: [n, k] (row stride ldb) → c: [m, n] (row stride ldc), overwritten.
void gemm_f32__openblas(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b,
                        int64_t ldb, float* c, int64_t ldc) {
    if (m <= 0 || n <= 0) return;
    if (k <= 0) {  // an empty sum; cblas would reject lda < 1
        for (int64_t i = 0; i < m; ++i)
            for (int64_t j = 0; j < n; ++j) c[i * ldc + j] = 0.0f;
        return;
    }
    // cblas checks lda ≥ k, ldb ≥ k, ldc ≥ n even where a single row makes the stride unused.
    if (m == 1) {
        if (lda < k) lda = k;
        if (ldc < n) ldc = n;
    }
    const int64_t block = kOpenblasColumnBlock;
    for (int64_t j0 = 0; j0 < n; j0 += block) {
        const int64_t nb = std::min(block, n - j0);
        const int64_t ldb_call = nb == 1 ? std::max(ldb, k) : ldb;  // a single row leaves the stride unused
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, blasint(m), blasint(nb), blasint(k), 1.0f, a,
                    blasint(lda), b + j0 * ldb, blasint(ldb_call), 0.0f, c + j0, blasint(ldc));
    }
}

}  // namespace cq::kernels
