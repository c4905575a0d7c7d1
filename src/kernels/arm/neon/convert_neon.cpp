// NEON (AArch64) f16/bf16 <-> f32 conversion, bit-exact against the scalar reference (convert_ref.cpp)
// under the default FPCR (round to nearest even, no flush-to-zero, no default NaN); tails in scalar.
#include <cstdint>

#include "kernels/kernel_decls.h"

#if defined(__aarch64__)
#include <arm_neon.h>

namespace cq::kernels {

namespace {

// x: [4] f32 bits → [4] bf16 bits in the low half of each 32-bit lane (RNE, NaN quieted).
inline uint32x4_t f32_to_bf16_lanes(uint32x4_t x) {
    const uint32x4_t lsb = vandq_u32(vshrq_n_u32(x, 16), vdupq_n_u32(1));
    const uint32x4_t rounded = vshrq_n_u32(vaddq_u32(x, vaddq_u32(lsb, vdupq_n_u32(0x7FFF))), 16);
    const uint32x4_t is_nan = vcgtq_u32(vandq_u32(x, vdupq_n_u32(0x7FFFFFFF)), vdupq_n_u32(0x7F800000));
    const uint32x4_t nan = vorrq_u32(vshrq_n_u32(x, 16), vdupq_n_u32(0x0040));
    return vbslq_u32(is_nan, nan, rounded);
}

}  // namespace

// x: [n] f16 bits → y: [n] f32
void convert_f16_f32__neon(const uint16_t* x, float* y, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const float16x8_t h = vreinterpretq_f16_u16(vld1q_u16(x + i));
        vst1q_f32(y + i, vcvt_f32_f16(vget_low_f16(h)));
        vst1q_f32(y + i + 4, vcvt_high_f32_f16(h));
    }
    for (; i < n; ++i) y[i] = f16_to_f32_scalar(x[i]);
}

// x: [n] f32 → y: [n] f16 bits
void convert_f32_f16__neon(const float* x, uint16_t* y, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const float16x4_t lo = vcvt_f16_f32(vld1q_f32(x + i));
        const float16x8_t h = vcvt_high_f16_f32(lo, vld1q_f32(x + i + 4));
        vst1q_u16(y + i, vreinterpretq_u16_f16(h));
    }
    for (; i < n; ++i) y[i] = f32_to_f16_scalar(x[i]);
}

// x: [n] bf16 bits → y: [n] f32
void convert_bf16_f32__neon(const uint16_t* x, float* y, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const uint16x8_t h = vld1q_u16(x + i);
        vst1q_f32(y + i, vreinterpretq_f32_u32(vshll_n_u16(vget_low_u16(h), 16)));
        vst1q_f32(y + i + 4, vreinterpretq_f32_u32(vshll_high_n_u16(h, 16)));
    }
    for (; i < n; ++i) y[i] = bf16_to_f32_scalar(x[i]);
}

// x: [n] f32 → y: [n] bf16 bits
void convert_f32_bf16__neon(const float* x, uint16_t* y, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const uint32x4_t lo = f32_to_bf16_lanes(vreinterpretq_u32_f32(vld1q_f32(x + i)));
        const uint32x4_t hi = f32_to_bf16_lanes(vreinterpretq_u32_f32(vld1q_f32(x + i + 4)));
        vst1q_u16(y + i, vmovn_high_u32(vmovn_u32(lo), hi));
    }
    for (; i < n; ++i) y[i] = f32_to_bf16_scalar(x[i]);
}

}  // namespace cq::kernels

#endif  // __aarch64__
