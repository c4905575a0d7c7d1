// NEON (AArch64) u8·s8 dot product, exact: bytes widen to int16, whose products (in [-32640, 32385])
// fit int16 exactly, and vpadal adds them pairwise into int32 lanes; 16 pairs per step, tail in scalar.
#include <cstdint>

#include "kernels/kernel_decls.h"

#if defined(__aarch64__)
#include <arm_neon.h>

namespace cq::kernels {

// a: [n] u8, b: [n] s8 → Σ a[i]·b[i]
int32_t dot_u8_s8__neon(const uint8_t* a, const int8_t* b, int64_t n) {
    int32x4_t acc0 = vdupq_n_s32(0);
    int32x4_t acc1 = vdupq_n_s32(0);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const uint8x16_t va = vld1q_u8(a + i);
        const int8x16_t vb = vld1q_s8(b + i);
        const int16x8_t a_lo = vreinterpretq_s16_u16(vmovl_u8(vget_low_u8(va)));
        const int16x8_t a_hi = vreinterpretq_s16_u16(vmovl_high_u8(va));
        const int16x8_t b_lo = vmovl_s8(vget_low_s8(vb));
        const int16x8_t b_hi = vmovl_high_s8(vb);
        acc0 = vpadalq_s16(acc0, vmulq_s16(a_lo, b_lo));
        acc1 = vpadalq_s16(acc1, vmulq_s16(a_hi, b_hi));
    }
    int32_t sum = vaddvq_s32(vaddq_s32(acc0, acc1));
    for (; i < n; ++i) sum += int32_t(a[i]) * int32_t(b[i]);
    return sum;
}

}  // namespace cq::kernels

#endif  // __aarch64__
