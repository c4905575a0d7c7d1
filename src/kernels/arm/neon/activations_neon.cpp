// NEON (Armv8.0) encoder / FFN activations: exact GELU, SiLU·up and softmax, 4 lanes at a time, each lane the
// same IEEE operation sequence as the scalar references (activations_ref.cpp: fma where they fma, vector
// divide where they divide, frintn for nearbyint) and softmax's sum in their order, so all three match them bit
// for bit. Tails run the references' scalar functions.
#include <cmath>
#include <cstdint>

#include "kernels/kernel_decls.h"

#if defined(__aarch64__)
#include <arm_neon.h>

namespace cq::kernels {
namespace {

inline float32x4_t erf4(float32x4_t x) {
    x = vmaxq_f32(vdupq_n_f32(-4.0f), vminq_f32(vdupq_n_f32(4.0f), x));  // fmin / fmax keep NaN, as the reference
    const float32x4_t x2 = vmulq_f32(x, x);
    float32x4_t p = vfmaq_f32(vdupq_n_f32(2.77068142495902e-08f), x2, vdupq_n_f32(-2.72614225801306e-10f));
    p = vfmaq_f32(vdupq_n_f32(-2.10102402082508e-06f), x2, p);
    p = vfmaq_f32(vdupq_n_f32(-5.69250639462346e-05f), x2, p);
    p = vfmaq_f32(vdupq_n_f32(-7.34990630326855e-04f), x2, p);
    p = vfmaq_f32(vdupq_n_f32(-2.95459980854025e-03f), x2, p);
    p = vfmaq_f32(vdupq_n_f32(-1.60960333262415e-02f), x2, p);
    p = vmulq_f32(x, p);
    float32x4_t q = vfmaq_f32(vdupq_n_f32(-2.13374055278905e-04f), x2, vdupq_n_f32(-1.45660718464996e-05f));
    q = vfmaq_f32(vdupq_n_f32(-1.68282697438203e-03f), x2, q);
    q = vfmaq_f32(vdupq_n_f32(-7.37332916720468e-03f), x2, q);
    q = vfmaq_f32(vdupq_n_f32(-1.42647390514189e-02f), x2, q);
    return vdivq_f32(p, q);
}

// exp(x) for x ≤ 0, 0 below −87 (and for −inf / NaN), as exp_nonpositive_scalar.
inline float32x4_t exp4_nonpositive(float32x4_t x) {
    const uint32x4_t in_range = vcgeq_f32(x, vdupq_n_f32(-87.0f));  // false for NaN
    const float32x4_t n = vrndnq_f32(vmulq_f32(x, vdupq_n_f32(1.44269504088896341f)));
    float32x4_t r = vfmaq_f32(x, n, vdupq_n_f32(-0.693359375f));
    r = vfmaq_f32(r, n, vdupq_n_f32(2.12194440e-4f));
    float32x4_t p = vfmaq_f32(vdupq_n_f32(1.3981999507e-3f), vdupq_n_f32(1.9875691500e-4f), r);
    p = vfmaq_f32(vdupq_n_f32(8.3334519073e-3f), p, r);
    p = vfmaq_f32(vdupq_n_f32(4.1665795894e-2f), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.6666665459e-1f), p, r);
    p = vfmaq_f32(vdupq_n_f32(5.0000001201e-1f), p, r);
    p = vaddq_f32(vfmaq_f32(r, p, vmulq_f32(r, r)), vdupq_n_f32(1.0f));
    const int32x4_t bits = vshlq_n_s32(vaddq_s32(vcvtq_s32_f32(n), vdupq_n_s32(127)), 23);  // 2^n
    const float32x4_t y = vmulq_f32(p, vreinterpretq_f32_s32(bits));
    return vreinterpretq_f32_u32(vandq_u32(vreinterpretq_u32_f32(y), in_range));
}

}  // namespace

// x: [n] → y: [n] = h + h·erf(x/√2), h = x/2 (y may alias x)
void gelu_erf_f32__neon(const float* x, float* y, int64_t n) {
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        const float32x4_t v = vld1q_f32(x + i);
        const float32x4_t h = vmulq_f32(vdupq_n_f32(0.5f), v);
        vst1q_f32(y + i, vfmaq_f32(h, h, erf4(vmulq_f32(v, vdupq_n_f32(0.70710678118654752f)))));
    }
    for (; i < n; ++i) {
        const float h = 0.5f * x[i];
        y[i] = std::fma(h, erf_rational_scalar(x[i] * 0.70710678118654752f), h);
    }
}

// gate: [n] ← gate·σ(gate)·up, σ = 1/(1+e) (g ≥ 0) or e/(1+e), e = exp(−|g|)
void silu_mul_f32__neon(float* gate, const float* up, int64_t n) {
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        const float32x4_t g = vld1q_f32(gate + i);
        const float32x4_t e = exp4_nonpositive(vnegq_f32(vabsq_f32(g)));
        const float32x4_t num = vbslq_f32(vcgeq_f32(g, vdupq_n_f32(0.0f)), vdupq_n_f32(1.0f), e);
        const float32x4_t sigma = vdivq_f32(num, vaddq_f32(vdupq_n_f32(1.0f), e));
        vst1q_f32(gate + i, vmulq_f32(vmulq_f32(g, sigma), vld1q_f32(up + i)));
    }
    for (; i < n; ++i) {
        const float g = gate[i];
        const float e = exp_nonpositive_scalar(-std::fabs(g));
        const float sigma = (g >= 0.0f ? 1.0f : e) / (1.0f + e);
        gate[i] = g * sigma * up[i];
    }
}

// x: [n] ← softmax(scale·x); −inf entries get 0
void softmax_f32__neon(float* x, int64_t n, float scale) {
    float32x4_t vmax = vdupq_n_f32(-INFINITY);
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) vmax = vmaxq_f32(vmax, vld1q_f32(x + i));
    float mx = vmaxvq_f32(vmax);
    for (; i < n; ++i) mx = x[i] > mx ? x[i] : mx;
    const float shift = -scale * mx;
    for (i = 0; i + 4 <= n; i += 4)
        vst1q_f32(x + i, exp4_nonpositive(vfmaq_f32(vdupq_n_f32(shift), vld1q_f32(x + i), vdupq_n_f32(scale))));
    for (; i < n; ++i) x[i] = exp_nonpositive_scalar(std::fma(x[i], scale, shift));
    // The sum in the reference's order: attention probabilities feed Q8 activation quantizers, where a 1-ulp
    // difference can flip a rounding, so ARM keeps the reference's bits (and x86's reference perplexity).
    float sum = 0.0f;
    for (i = 0; i < n; ++i) sum += x[i];
    const float inv = 1.0f / sum;
    for (i = 0; i + 4 <= n; i += 4) vst1q_f32(x + i, vmulq_f32(vld1q_f32(x + i), vdupq_n_f32(inv)));
    for (; i < n; ++i) x[i] *= inv;
}

}  // namespace cq::kernels

#endif  // __aarch64__
