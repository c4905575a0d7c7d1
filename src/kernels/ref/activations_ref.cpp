// Scalar references for the encoder activations: exact GELU through a rational erf (x·P(x²)/Q(x²) on
// [-4, 4], Eigen's/XLA's float coefficients, |error| ≤ 3.4e-7 against erf in double) and softmax through
// a Cephes-style exp (2^n · poly(r)). Every step is one IEEE operation (fma where the vector kernels use
// one), so a vector kernel that follows the same sequence per element matches these bit for bit.
#include <cmath>
#include <cstdint>
#include <cstring>

#include "kernels/kernel_decls.h"

namespace cq::kernels {

float erf_rational_scalar(float x) {
    x = x < -4.0f ? -4.0f : (x > 4.0f ? 4.0f : x);  // erf is ±1 in float beyond; NaN passes through
    const float x2 = x * x;
    float p = std::fma(x2, -2.72614225801306e-10f, 2.77068142495902e-08f);
    p = std::fma(x2, p, -2.10102402082508e-06f);
    p = std::fma(x2, p, -5.69250639462346e-05f);
    p = std::fma(x2, p, -7.34990630326855e-04f);
    p = std::fma(x2, p, -2.95459980854025e-03f);
    p = std::fma(x2, p, -1.60960333262415e-02f);
    p = x * p;
    float q = std::fma(x2, -1.45660718464996e-05f, -2.13374055278905e-04f);
    q = std::fma(x2, q, -1.68282697438203e-03f);
    q = std::fma(x2, q, -7.37332916720468e-03f);
    q = std::fma(x2, q, -1.42647390514189e-02f);
    return p / q;
}

float exp_nonpositive_scalar(float x) {
    if (!(x >= -87.0f)) return 0.0f;  // below the smallest normal's log (and −inf, NaN): 0
    const float n = std::nearbyint(x * 1.44269504088896341f);
    float r = std::fma(n, -0.693359375f, x);
    r = std::fma(n, 2.12194440e-4f, r);
    float p = std::fma(1.9875691500e-4f, r, 1.3981999507e-3f);
    p = std::fma(p, r, 8.3334519073e-3f);
    p = std::fma(p, r, 4.1665795894e-2f);
    p = std::fma(p, r, 1.6666665459e-1f);
    p = std::fma(p, r, 5.0000001201e-1f);
    p = std::fma(p, r * r, r) + 1.0f;
    const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;  // 2^n, n in [-126, 0]
    float scale;
    std::memcpy(&scale, &bits, sizeof(scale));
    return p * scale;
}

// x: [n] → y: [n] = x·Φ(x) = h + h·erf(x/√2), h = x/2 (y may alias x)
void gelu_erf_f32__ref(const float* x, float* y, int64_t n) {
    for (int64_t i = 0; i < n; ++i) {
        const float h = 0.5f * x[i];
        y[i] = std::fma(h, erf_rational_scalar(x[i] * 0.70710678118654752f), h);
    }
}

// gate: [n] ← silu(gate)·up = gate·σ(gate)·up, σ through e = exp(−|g|): 1/(1+e) for g ≥ 0, e/(1+e) below
// (so exp only sees arguments ≤ 0 and never overflows).
void silu_mul_f32__ref(float* gate, const float* up, int64_t n) {
    for (int64_t i = 0; i < n; ++i) {
        const float g = gate[i];
        const float e = exp_nonpositive_scalar(-std::fabs(g));
        const float sigma = (g >= 0.0f ? 1.0f : e) / (1.0f + e);
        gate[i] = g * sigma * up[i];
    }
}

// x: [n] ← softmax(scale·x); −inf entries get 0 (at least one entry must be finite).
void softmax_f32__ref(float* x, int64_t n, float scale) {
    float mx = -INFINITY;
    for (int64_t i = 0; i < n; ++i) mx = x[i] > mx ? x[i] : mx;
    const float shift = -scale * mx;
    float sum = 0.0f;
    for (int64_t i = 0; i < n; ++i) {
        x[i] = exp_nonpositive_scalar(std::fma(x[i], scale, shift));
        sum += x[i];
    }
    const float inv = 1.0f / sum;
    for (int64_t i = 0; i < n; ++i) x[i] *= inv;
}

}  // namespace cq::kernels
