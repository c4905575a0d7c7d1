// Scalar reference for float GEMM without transposition, C = A·B: each output is accumulated in
// double and rounded once. Used where the right operand is stored [k, n] (attention's P·V, GPT-2 Conv1D).
#include <cstdint>

#include "kernels/kernel_decls.h"

namespace cq::kernels {

// a: [m, k] (row stride lda), b: [k, n] (row stride ldb) → c: [m, n] (row stride ldc), overwritten.
void gemm_f32_nn__ref(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b, int64_t ldb,
                      float* c, int64_t ldc) {
    for (int64_t i = 0; i < m; ++i) {
        for (int64_t j = 0; j < n; ++j) {
            double sum = 0.0;
            for (int64_t p = 0; p < k; ++p) sum += double(a[i * lda + p]) * double(b[p * ldb + j]);
            c[i * ldc + j] = float(sum);
        }
    }
}

}  // namespace cq::kernels
