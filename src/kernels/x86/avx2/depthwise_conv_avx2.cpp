// AVX2+FMA depthwise 2-D convolution (DepthwiseConvF32Fn) on NHWC: channels run along the vector lanes, 32 at a time in
// four independent accumulators (then 8, then a masked tail), and each output's in-range taps are worked out once per
// row / column instead of tested per tap. Each lane repeats the reference's fma sequence, so the bits are the same.
#include <immintrin.h>

#include <algorithm>
#include <cstdint>

#include "kernels/kernel_decls.h"

namespace cq::kernels {

namespace {

inline __m256i lanes_below(int64_t n) {  // lanes [0, n) set, n < 8
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int32_t>(n)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

}  // namespace

// x: [H, W, C], w: [k·k, C], bias: [C] or null → y rows [oy0, oy1) of [OH, OW, C]
void depthwise_conv_f32__avx2(const float* x, int64_t H, int64_t W, int64_t C, const float* w, int64_t k, int64_t stride,
                              int64_t pad_top, int64_t pad_left, const float* bias, float* y, int64_t OW, int64_t oy0, int64_t oy1) {
    const __m256i tail = lanes_below(C % 8);
    const int64_t c32 = C / 32 * 32, c8 = C / 8 * 8;
    for (int64_t oy = oy0; oy < oy1; ++oy) {
        const int64_t iy0 = oy * stride - pad_top;
        const int64_t ky0 = std::max<int64_t>(0, -iy0), ky1 = std::min<int64_t>(k, H - iy0);
        for (int64_t ox = 0; ox < OW; ++ox) {
            const int64_t ix0 = ox * stride - pad_left;
            const int64_t kx0 = std::max<int64_t>(0, -ix0), kx1 = std::min<int64_t>(k, W - ix0);
            float* out = y + (oy * OW + ox) * C;
            int64_t c = 0;
            for (; c < c32; c += 32) {
                __m256 a0 = bias ? _mm256_loadu_ps(bias + c) : _mm256_setzero_ps();
                __m256 a1 = bias ? _mm256_loadu_ps(bias + c + 8) : _mm256_setzero_ps();
                __m256 a2 = bias ? _mm256_loadu_ps(bias + c + 16) : _mm256_setzero_ps();
                __m256 a3 = bias ? _mm256_loadu_ps(bias + c + 24) : _mm256_setzero_ps();
                for (int64_t ky = ky0; ky < ky1; ++ky)
                    for (int64_t kx = kx0; kx < kx1; ++kx) {
                        const float* xp = x + ((iy0 + ky) * W + ix0 + kx) * C + c;
                        const float* wp = w + (ky * k + kx) * C + c;
                        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(xp), _mm256_loadu_ps(wp), a0);
                        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(xp + 8), _mm256_loadu_ps(wp + 8), a1);
                        a2 = _mm256_fmadd_ps(_mm256_loadu_ps(xp + 16), _mm256_loadu_ps(wp + 16), a2);
                        a3 = _mm256_fmadd_ps(_mm256_loadu_ps(xp + 24), _mm256_loadu_ps(wp + 24), a3);
                    }
                _mm256_storeu_ps(out + c, a0);
                _mm256_storeu_ps(out + c + 8, a1);
                _mm256_storeu_ps(out + c + 16, a2);
                _mm256_storeu_ps(out + c + 24, a3);
            }
            for (; c < c8; c += 8) {
                __m256 a = bias ? _mm256_loadu_ps(bias + c) : _mm256_setzero_ps();
                for (int64_t ky = ky0; ky < ky1; ++ky)
                    for (int64_t kx = kx0; kx < kx1; ++kx)
                        a = _mm256_fmadd_ps(_mm256_loadu_ps(x + ((iy0 + ky) * W + ix0 + kx) * C + c), _mm256_loadu_ps(w + (ky * k + kx) * C + c), a);
                _mm256_storeu_ps(out + c, a);
            }
            if (c < C) {  // masked: no read or write past the last channel
                __m256 a = bias ? _mm256_maskload_ps(bias + c, tail) : _mm256_setzero_ps();
                for (int64_t ky = ky0; ky < ky1; ++ky)
                    for (int64_t kx = kx0; kx < kx1; ++kx)
                        a = _mm256_fmadd_ps(_mm256_maskload_ps(x + ((iy0 + ky) * W + ix0 + kx) * C + c, tail),
                                            _mm256_maskload_ps(w + (ky * k + kx) * C + c, tail), a);
                _mm256_maskstore_ps(out + c, tail, a);
            }
        }
    }
}

}  // namespace cq::kernels
