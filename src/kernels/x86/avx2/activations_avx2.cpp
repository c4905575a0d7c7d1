// AVX2+FMA encoder activations: exact GELU and softmax, 8 lanes at a time, each lane the same operation
// sequence as the scalar references (activations_ref.cpp), so GELU matches them bit for bit and softmax
// differs only in the order of the sum. Tails go through masked loads and stores.
#include <immintrin.h>

#include <cmath>
#include <cstdint>

#include "kernels/kernel_decls.h"
#include "kernels/x86/simd_x86.h"

namespace cq::kernels {

namespace {

inline __m256i tail_mask(int64_t left) {  // lanes [0, left) set, left < 8
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int32_t>(left)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

inline __m256 erf8(__m256 x) {
    x = _mm256_max_ps(_mm256_set1_ps(-4.0f), _mm256_min_ps(_mm256_set1_ps(4.0f), x));  // NaN stays in x
    const __m256 x2 = _mm256_mul_ps(x, x);
    __m256 p = _mm256_fmadd_ps(x2, _mm256_set1_ps(-2.72614225801306e-10f), _mm256_set1_ps(2.77068142495902e-08f));
    p = _mm256_fmadd_ps(x2, p, _mm256_set1_ps(-2.10102402082508e-06f));
    p = _mm256_fmadd_ps(x2, p, _mm256_set1_ps(-5.69250639462346e-05f));
    p = _mm256_fmadd_ps(x2, p, _mm256_set1_ps(-7.34990630326855e-04f));
    p = _mm256_fmadd_ps(x2, p, _mm256_set1_ps(-2.95459980854025e-03f));
    p = _mm256_fmadd_ps(x2, p, _mm256_set1_ps(-1.60960333262415e-02f));
    p = _mm256_mul_ps(x, p);
    __m256 q = _mm256_fmadd_ps(x2, _mm256_set1_ps(-1.45660718464996e-05f), _mm256_set1_ps(-2.13374055278905e-04f));
    q = _mm256_fmadd_ps(x2, q, _mm256_set1_ps(-1.68282697438203e-03f));
    q = _mm256_fmadd_ps(x2, q, _mm256_set1_ps(-7.37332916720468e-03f));
    q = _mm256_fmadd_ps(x2, q, _mm256_set1_ps(-1.42647390514189e-02f));
    return _mm256_div_ps(p, q);
}

inline __m256 gelu8(__m256 x) {
    const __m256 h = _mm256_mul_ps(_mm256_set1_ps(0.5f), x);
    return _mm256_fmadd_ps(h, erf8(_mm256_mul_ps(x, _mm256_set1_ps(0.70710678118654752f))), h);
}


}  // namespace

// x: [n] → y: [n] = x·Φ(x) (y may alias x)
void gelu_erf_f32__avx2(const float* x, float* y, int64_t n) {
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m256 a = gelu8(_mm256_loadu_ps(x + i)), b = gelu8(_mm256_loadu_ps(x + i + 8));
        _mm256_storeu_ps(y + i, a);
        _mm256_storeu_ps(y + i + 8, b);
    }
    for (; i < n; i += 8) {
        if (n - i >= 8) {
            _mm256_storeu_ps(y + i, gelu8(_mm256_loadu_ps(x + i)));
            continue;
        }
        const __m256i m = tail_mask(n - i);
        _mm256_maskstore_ps(y + i, m, gelu8(_mm256_maskload_ps(x + i, m)));
    }
}

// gate: [n] ← gate·σ(gate)·up, the reference's steps per lane (bit for bit).
void silu_mul_f32__avx2(float* gate, const float* up, int64_t n) {
    const __m256 one = _mm256_set1_ps(1.0f), sign = _mm256_set1_ps(-0.0f);
    const auto silu8 = [&](__m256 g, __m256 u) {
        const __m256 e = exp8(_mm256_or_ps(g, sign));  // −|g|
        const __m256 num = _mm256_blendv_ps(e, one, _mm256_cmp_ps(g, _mm256_setzero_ps(), _CMP_GE_OQ));
        return _mm256_mul_ps(_mm256_mul_ps(g, _mm256_div_ps(num, _mm256_add_ps(one, e))), u);
    };
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(gate + i, silu8(_mm256_loadu_ps(gate + i), _mm256_loadu_ps(up + i)));
    if (i < n) {
        const __m256i m = tail_mask(n - i);
        _mm256_maskstore_ps(gate + i, m, silu8(_mm256_maskload_ps(gate + i, m), _mm256_maskload_ps(up + i, m)));
    }
}

// x: [n] ← softmax(scale·x); −inf entries get 0 (at least one entry must be finite).
void softmax_f32__avx2(float* x, int64_t n, float scale) {
    const int64_t full = n / 8 * 8;
    const __m256i m = tail_mask(n - full);
    const __m256 ninf = _mm256_set1_ps(-INFINITY);
    __m256 vmx = ninf;
    for (int64_t i = 0; i < full; i += 8) vmx = _mm256_max_ps(vmx, _mm256_loadu_ps(x + i));
    if (full < n) vmx = _mm256_max_ps(vmx, _mm256_blendv_ps(ninf, _mm256_maskload_ps(x + full, m), _mm256_castsi256_ps(m)));
    const float mx = hmax(vmx);
    const __m256 vs = _mm256_set1_ps(scale), shift = _mm256_set1_ps(-scale * mx);
    __m256 vsum = _mm256_setzero_ps();
    for (int64_t i = 0; i < full; i += 8) {
        const __m256 e = exp8(_mm256_fmadd_ps(_mm256_loadu_ps(x + i), vs, shift));
        _mm256_storeu_ps(x + i, e);
        vsum = _mm256_add_ps(vsum, e);
    }
    if (full < n) {
        const __m256 e = _mm256_and_ps(exp8(_mm256_fmadd_ps(_mm256_maskload_ps(x + full, m), vs, shift)), _mm256_castsi256_ps(m));
        _mm256_maskstore_ps(x + full, m, e);
        vsum = _mm256_add_ps(vsum, e);
    }
    const __m256 inv = _mm256_set1_ps(1.0f / hsum(vsum));
    for (int64_t i = 0; i < full; i += 8) _mm256_storeu_ps(x + i, _mm256_mul_ps(_mm256_loadu_ps(x + i), inv));
    if (full < n) _mm256_maskstore_ps(x + full, m, _mm256_mul_ps(_mm256_maskload_ps(x + full, m), inv));
}

}  // namespace cq::kernels
