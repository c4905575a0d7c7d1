// AVX-512 float matrix-vector product: four rows share each 16-wide load of x; the k tail uses a
// masked load, so no scalar loop is needed.
#include "kernels/x86/avx512_prelude.h"

#include <cstdint>

#include "kernels/kernel_decls.h"

namespace cq::kernels {

// w: [n, k] (row stride ldw), x: [k] → y: [n]
void gemv_f32__avx512(int64_t n, int64_t k, const float* w, int64_t ldw, const float* x, float* y) {
    const int64_t k16 = k & ~int64_t{15};
    const __mmask16 tail = static_cast<__mmask16>((1u << (k - k16)) - 1u);
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        const float* r0 = w + (i + 0) * ldw;
        const float* r1 = w + (i + 1) * ldw;
        const float* r2 = w + (i + 2) * ldw;
        const float* r3 = w + (i + 3) * ldw;
        __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps(), a2 = _mm512_setzero_ps(), a3 = _mm512_setzero_ps();
        for (int64_t p = 0; p < k16; p += 16) {
            const __m512 xv = _mm512_loadu_ps(x + p);
            a0 = _mm512_fmadd_ps(_mm512_loadu_ps(r0 + p), xv, a0);
            a1 = _mm512_fmadd_ps(_mm512_loadu_ps(r1 + p), xv, a1);
            a2 = _mm512_fmadd_ps(_mm512_loadu_ps(r2 + p), xv, a2);
            a3 = _mm512_fmadd_ps(_mm512_loadu_ps(r3 + p), xv, a3);
        }
        if (tail) {
            const __m512 xv = _mm512_maskz_loadu_ps(tail, x + k16);
            a0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(tail, r0 + k16), xv, a0);
            a1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(tail, r1 + k16), xv, a1);
            a2 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(tail, r2 + k16), xv, a2);
            a3 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(tail, r3 + k16), xv, a3);
        }
        y[i] = _mm512_reduce_add_ps(a0);
        y[i + 1] = _mm512_reduce_add_ps(a1);
        y[i + 2] = _mm512_reduce_add_ps(a2);
        y[i + 3] = _mm512_reduce_add_ps(a3);
    }
    for (; i < n; ++i) {
        const float* r = w + i * ldw;
        __m512 a = _mm512_setzero_ps();
        for (int64_t p = 0; p < k16; p += 16) a = _mm512_fmadd_ps(_mm512_loadu_ps(r + p), _mm512_loadu_ps(x + p), a);
        if (tail) a = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(tail, r + k16), _mm512_maskz_loadu_ps(tail, x + k16), a);
        y[i] = _mm512_reduce_add_ps(a);
    }
}

}  // namespace cq::kernels
