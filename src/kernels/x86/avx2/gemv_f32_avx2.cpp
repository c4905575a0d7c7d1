// AVX2+FMA float matrix-vector product: four rows at a time share each load of x, two accumulators
// per row hide FMA latency; memory-bound, so the goal is streaming W at full bandwidth.
#include <immintrin.h>

#include <cstdint>

#include "kernels/kernel_decls.h"
#include "kernels/x86/simd_x86.h"

namespace cq::kernels {

// w: [n, k] (row stride ldw), x: [k] → y: [n]
void gemv_f32__avx2(int64_t n, int64_t k, const float* w, int64_t ldw, const float* x, float* y) {
    const int64_t k16 = k & ~int64_t{15};
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        const float* r0 = w + (i + 0) * ldw;
        const float* r1 = w + (i + 1) * ldw;
        const float* r2 = w + (i + 2) * ldw;
        const float* r3 = w + (i + 3) * ldw;
        __m256 a0 = _mm256_setzero_ps(), b0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), b1 = _mm256_setzero_ps();
        __m256 a2 = _mm256_setzero_ps(), b2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps(), b3 = _mm256_setzero_ps();
        for (int64_t p = 0; p < k16; p += 16) {
            const __m256 x0 = _mm256_loadu_ps(x + p), x1 = _mm256_loadu_ps(x + p + 8);
            a0 = _mm256_fmadd_ps(_mm256_loadu_ps(r0 + p), x0, a0);
            b0 = _mm256_fmadd_ps(_mm256_loadu_ps(r0 + p + 8), x1, b0);
            a1 = _mm256_fmadd_ps(_mm256_loadu_ps(r1 + p), x0, a1);
            b1 = _mm256_fmadd_ps(_mm256_loadu_ps(r1 + p + 8), x1, b1);
            a2 = _mm256_fmadd_ps(_mm256_loadu_ps(r2 + p), x0, a2);
            b2 = _mm256_fmadd_ps(_mm256_loadu_ps(r2 + p + 8), x1, b2);
            a3 = _mm256_fmadd_ps(_mm256_loadu_ps(r3 + p), x0, a3);
            b3 = _mm256_fmadd_ps(_mm256_loadu_ps(r3 + p + 8), x1, b3);
        }
        float s0 = hsum(_mm256_add_ps(a0, b0)), s1 = hsum(_mm256_add_ps(a1, b1));
        float s2 = hsum(_mm256_add_ps(a2, b2)), s3 = hsum(_mm256_add_ps(a3, b3));
        for (int64_t p = k16; p < k; ++p) {
            s0 += r0[p] * x[p];
            s1 += r1[p] * x[p];
            s2 += r2[p] * x[p];
            s3 += r3[p] * x[p];
        }
        y[i] = s0, y[i + 1] = s1, y[i + 2] = s2, y[i + 3] = s3;
    }
    for (; i < n; ++i) {
        const float* r = w + i * ldw;
        __m256 a = _mm256_setzero_ps(), b = _mm256_setzero_ps();
        for (int64_t p = 0; p < k16; p += 16) {
            a = _mm256_fmadd_ps(_mm256_loadu_ps(r + p), _mm256_loadu_ps(x + p), a);
            b = _mm256_fmadd_ps(_mm256_loadu_ps(r + p + 8), _mm256_loadu_ps(x + p + 8), b);
        }
        float s = hsum(_mm256_add_ps(a, b));
        for (int64_t p = k16; p < k; ++p) s += r[p] * x[p];
        y[i] = s;
    }
}

}  // namespace cq::kernels
