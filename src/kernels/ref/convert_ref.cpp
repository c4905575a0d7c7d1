// Scalar reference for f16/bf16 <-> f32 conversion: the specification every vector kernel must match
// bit for bit (NaN handling follows x86 F16C vcvtps2ph/vcvtph2ps, which ARM FCVT also produces).
#include <bit>
#include <cstdint>

#include "kernels/kernel_decls.h"

namespace cq::kernels {

// f16: 1 sign, 5 exponent (bias 15), 10 mantissa bits. Every f16 is exactly representable in f32.
// NaN is returned quiet (bit 22 set) with the payload shifted up, as vcvtph2ps and FCVT do.
float f16_to_f32_scalar(uint16_t h) {
    const uint32_t sign = uint32_t(h & 0x8000u) << 16;
    const uint32_t exp = (h >> 10) & 0x1Fu;
    const uint32_t mant = h & 0x3FFu;
    uint32_t bits;
    if (exp == 0x1F) {
        bits = sign | 0x7F800000u | (mant << 13);  // inf, or NaN ...
        if (mant != 0) bits |= 0x00400000u;        // ... made quiet
    } else if (exp != 0) {
        bits = sign | ((exp - 15 + 127) << 23) | (mant << 13);
    } else if (mant == 0) {
        bits = sign;  // ±0
    } else {
        // Subnormal: value = mant · 2^-24. Normalise so the leading 1 sits at bit 10.
        int e = -14;
        uint32_t m = mant;
        while ((m & 0x400u) == 0) {
            m <<= 1;
            --e;
        }
        bits = sign | (uint32_t(e + 127) << 23) | ((m & 0x3FFu) << 13);
    }
    return std::bit_cast<float>(bits);
}

// Round to nearest, ties to even; values past 65504 (after rounding) become ±inf; results below the
// normal range become f16 subnormals or ±0 (no flush); NaN becomes sign | 0x7C00 | 0x0200 | mant >> 13.
uint16_t f32_to_f16_scalar(float f) {
    const uint32_t bits = std::bit_cast<uint32_t>(f);
    const uint16_t sign = uint16_t((bits >> 16) & 0x8000u);
    const int32_t exp = int32_t((bits >> 23) & 0xFFu);
    const uint32_t mant = bits & 0x7FFFFFu;

    if (exp == 0xFF) {
        if (mant == 0) return uint16_t(sign | 0x7C00u);                  // ±inf
        return uint16_t(sign | 0x7C00u | 0x0200u | (mant >> 13));         // quiet NaN, payload truncated
    }
    const int32_t e = exp - 127 + 15;  // the f16 biased exponent, before rounding
    if (e >= 31) return uint16_t(sign | 0x7C00u);  // too large even before rounding → ±inf

    // Drops the low `shift` bits of `m` with round-to-nearest-even.
    auto round_shift = [](uint32_t m, int shift) -> uint32_t {
        const uint32_t kept = m >> shift;
        const uint32_t rest = m & ((1u << shift) - 1u);
        const uint32_t half = 1u << (shift - 1);
        return kept + ((rest > half || (rest == half && (kept & 1u))) ? 1u : 0u);
    };

    if (e <= 0) {
        // f16 subnormal (unit 2^-24) or zero. Values below 2^-25 round to zero; exactly 2^-25 is a tie
        // that rounds to the even 0. f32 subnormals (exp == 0) are far below and also land here.
        if (e < -10) return sign;
        const uint32_t m = mant | 0x800000u;  // implicit leading 1: value = m · 2^(exp-150)
        // m · 2^(exp-150) / 2^-24 = m >> (126 - exp) = m >> (14 - e); a carry out of the top gives
        // 0x0400, the smallest normal, which is the correct encoding.
        return uint16_t(sign | round_shift(m, 14 - e));
    }
    // Normal: keep 10 mantissa bits. A rounding carry moves into the exponent; from e = 30 it
    // reaches 0x7C00 = inf, which is the correct overflow.
    const uint32_t h = (uint32_t(e) << 10) | (mant >> 13);
    const uint32_t rest = mant & 0x1FFFu;
    const uint32_t up = (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) ? 1u : 0u;
    return uint16_t(sign | (h + up));
}

// bf16 is the top half of an f32: widening is a shift, exact for every pattern (NaN payload kept).
float bf16_to_f32_scalar(uint16_t h) { return std::bit_cast<float>(uint32_t(h) << 16); }

// Round to nearest, ties to even, on the low 16 bits; overflow carries into inf naturally; f32
// subnormals stay subnormal (no flush). NaN: the top half with the quiet bit (0x0040) set.
uint16_t f32_to_bf16_scalar(float f) {
    const uint32_t bits = std::bit_cast<uint32_t>(f);
    if ((bits & 0x7FFFFFFFu) > 0x7F800000u) return uint16_t((bits >> 16) | 0x0040u);
    const uint32_t lsb = (bits >> 16) & 1u;
    return uint16_t((bits + 0x7FFFu + lsb) >> 16);
}

// x: [n] f16 bits → y: [n] f32
void convert_f16_f32__ref(const uint16_t* x, float* y, int64_t n) {
    for (int64_t i = 0; i < n; ++i) y[i] = f16_to_f32_scalar(x[i]);
}

// x: [n] f32 → y: [n] f16 bits
void convert_f32_f16__ref(const float* x, uint16_t* y, int64_t n) {
    for (int64_t i = 0; i < n; ++i) y[i] = f32_to_f16_scalar(x[i]);
}

// x: [n] bf16 bits → y: [n] f32
void convert_bf16_f32__ref(const uint16_t* x, float* y, int64_t n) {
    for (int64_t i = 0; i < n; ++i) y[i] = bf16_to_f32_scalar(x[i]);
}

// x: [n] f32 → y: [n] bf16 bits
void convert_f32_bf16__ref(const float* x, uint16_t* y, int64_t n) {
    for (int64_t i = 0; i < n; ++i) y[i] = f32_to_bf16_scalar(x[i]);
}

}  // namespace cq::kernels
