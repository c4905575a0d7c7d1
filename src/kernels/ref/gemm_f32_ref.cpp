// Scalar reference for float GEMM, C = A·Bᵀ: each output is a dot product accumulated in double and
// rounded once to float, so it is at least as accurate as any float-accumulating kernel it checks.
#include <cstdint>

#include "kernels/kernel_decls.h"

namespace cq::kernels {

// a: [m, k] (row stride lda), b: [n, k] (row stride ldb) → c: [m, n] (row stride ldc), overwritten.
void gemm_f32__ref(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b, int64_t ldb,
                   float* c, int64_t ldc) {
    for (int64_t i = 0; i < m; ++i) {
        const float* a_row = a + i * lda;
        for (int64_t j = 0; j < n; ++j) {
            const float* b_row = b + j * ldb;
            double sum = 0.0;
            for (int64_t p = 0; p < k; ++p) sum += double(a_row[p]) * double(b_row[p]);
            c[i * ldc + j] = float(sum);
        }
    }
}

}  // namespace cq::kernels
