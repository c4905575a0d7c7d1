// Dense linear algebra GPTQ needs, deterministic for any thread count: a tiled Cholesky factorization in double
// over cq's pool, and plain C = A·B products in f32 (the kernel table) or f64 (OpenBLAS, or a loop without it).
#pragma once

#include <cstdint>

namespace cq {

class ThreadPool;

namespace gptq_detail {

/// A: [n, n] row-major, lower triangle read → A's lower triangle becomes L with A = L·Lᵀ (the strict upper
/// triangle is scratch). Returns -1, or the first pivot index that is not positive (A not positive definite).
/// The tiling is fixed, so the result does not depend on the pool's size.
int64_t cholesky_lower_in_place(double* A, int64_t n, ThreadPool& pool);

/// c: [m, n] = a: [m, k] · b: [k, n] (row strides lda, ldb, ldc), overwritten; k = 0 writes zeros.
/// One thread; the same arguments give the same bits on every call.
void gemm_nn(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b, int64_t ldb, float* c, int64_t ldc);
void gemm_nn(int64_t m, int64_t n, int64_t k, const double* a, int64_t lda, const double* b, int64_t ldb, double* c, int64_t ldc);

}  // namespace gptq_detail
}  // namespace cq
