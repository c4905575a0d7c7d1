// Scalar reference for BF16 matrix products with FP32 accumulation (the specification of gemm_bf16 /
// gemm_bf16_nn): each bf16 operand widens exactly to f32, the products of two bf16 values are exact, and each
// output is accumulated in double and rounded once, so a fast kernel differs from it only by its f32 sums.
#include <cstdint>

#include "kernels/kernel_decls.h"

namespace cq::kernels {

// a: [m, k] bf16 (row stride lda), b: [n, k] bf16 (row stride ldb) → c: [m, n] f32 (row stride ldc), overwritten.
void gemm_bf16__ref(int64_t m, int64_t n, int64_t k, const uint16_t* a, int64_t lda, const uint16_t* b, int64_t ldb,
                    float* c, int64_t ldc) {
    for (int64_t i = 0; i < m; ++i)
        for (int64_t j = 0; j < n; ++j) {
            double sum = 0.0;
            for (int64_t p = 0; p < k; ++p)
                sum += double(bf16_to_f32_scalar(a[i * lda + p])) * double(bf16_to_f32_scalar(b[j * ldb + p]));
            c[i * ldc + j] = float(sum);
        }
}

// a: [m, k] bf16 (row stride lda), b: [k, n] bf16 (row stride ldb) → c: [m, n] f32 (row stride ldc), overwritten.
void gemm_bf16_nn__ref(int64_t m, int64_t n, int64_t k, const uint16_t* a, int64_t lda, const uint16_t* b, int64_t ldb,
                       float* c, int64_t ldc) {
    for (int64_t i = 0; i < m; ++i)
        for (int64_t j = 0; j < n; ++j) {
            double sum = 0.0;
            for (int64_t p = 0; p < k; ++p)
                sum += double(bf16_to_f32_scalar(a[i * lda + p])) * double(bf16_to_f32_scalar(b[p * ldb + j]));
            c[i * ldc + j] = float(sum);
        }
}

// a: [k, m] bf16 (row stride lda), b: [k, n] bf16 (row stride ldb) → c: [m, n] = aᵀ·b f32 (row stride ldc), overwritten.
void gemm_bf16_tn__ref(int64_t m, int64_t n, int64_t k, const uint16_t* a, int64_t lda, const uint16_t* b, int64_t ldb,
                       float* c, int64_t ldc) {
    for (int64_t i = 0; i < m; ++i)
        for (int64_t j = 0; j < n; ++j) {
            double sum = 0.0;
            for (int64_t p = 0; p < k; ++p)
                sum += double(bf16_to_f32_scalar(a[p * lda + i])) * double(bf16_to_f32_scalar(b[p * ldb + j]));
            c[i * ldc + j] = float(sum);
        }
}

}  // namespace cq::kernels
