// Scalar steps the reference codecs share (and the reference kernels may call): ggml's rounding rules
// and the signed extreme a symmetric scale is taken from. Header-only, no state.
#pragma once

#include <bit>
#include <cmath>
#include <cstdint>

namespace cq::formats {

// Round to nearest, ties to even, for |v| < 2^22: adding 1.5·2^23 leaves the integer in the mantissa.
inline int nearest_int(float v) {
    const float shifted = v + 12582912.0f;
    const int32_t bits = std::bit_cast<int32_t>(shifted);
    return (bits & 0x007FFFFF) - 0x00400000;
}

// The value of largest magnitude, sign kept (the first one on ties), and that magnitude.
struct SignedMax {
    float max = 0.0f;
    float amax = 0.0f;
};
inline SignedMax signed_absmax(const float* x, int n) {
    SignedMax m;
    for (int j = 0; j < n; ++j) {
        const float a = std::fabs(x[j]);
        if (m.amax < a) {
            m.amax = a;
            m.max = x[j];
        }
    }
    return m;
}

}  // namespace cq::formats
