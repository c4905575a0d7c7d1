// Float GEMM through OpenBLAS without transposition, C = A·B (right operand stored [k, n]).
#include <cblas.h>

#include <algorithm>
#include <cstdint>

#include "kernels/blas/openblas_column_split.h"
#include "kernels/kernel_decls.h"

namespace cq::kernels {

// a: [m, k] (row stride lda), b: [k, n] (row stride ldb) → c: [m, n] (row stride ldc), overwritten.
void gemm_f32_nn__openblas(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b,
                           int64_t ldb, float* c, int64_t ldc) {
    if (m <= 0 || n <= 0) return;
    if (k <= 0) {
        for (int64_t i = 0; i < m; ++i)
            for (int64_t j = 0; j < n; ++j) c[i * ldc + j] = 0.0f;
        return;
    }
    // cblas checks strides even where a single row or column leaves them unused.
    lda = std::max(lda, k);
    ldb = std::max(ldb, n);
    ldc = std::max(ldc, n);
    const int64_t block = kOpenblasColumnBlock;
    for (int64_t j0 = 0; j0 < n; j0 += block) {
        const int64_t nb = std::min(block, n - j0);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, blasint(m), blasint(nb), blasint(k), 1.0f, a, blasint(lda),
                    b + j0, blasint(ldb), 0.0f, c + j0, blasint(ldc));
    }
}

}  // namespace cq::kernels
