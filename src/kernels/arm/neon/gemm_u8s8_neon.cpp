// Plain NEON (Armv8.0) INT8 W8A8 GEMM: u8 activations and s8 weights widened to s16 (products within
// ±32640 fit), pair sums into int32 lanes (sadalp) and folded to one lane per channel at the end (addp).
// gemm_u7s8 (7-bit activations) runs the same kernel: it is exact for any u8.
#include "kernels/kernel_decls.h"

#if defined(__aarch64__)
#include "kernels/arm/gemm_u8s8_arm.h"

namespace cq::kernels {
namespace {
struct StepNeon {
    static constexpr int32_t kOffset = 0;
    struct Acc {
        int32x4_t lo, hi;  // lo: pair sums of channels 0, 0, 1, 1; hi: of channels 2, 2, 3, 3
    };
    static Acc zero() { return {vdupq_n_s32(0), vdupq_n_s32(0)}; }
    static Acc step(Acc acc, uint8x16_t a, int8x16_t w) {
        const int16x8_t a_lo = vreinterpretq_s16_u16(vmovl_u8(vget_low_u8(a))), a_hi = vreinterpretq_s16_u16(vmovl_high_u8(a));
        acc.lo = vpadalq_s16(acc.lo, vmulq_s16(a_lo, vmovl_s8(vget_low_s8(w))));
        acc.hi = vpadalq_s16(acc.hi, vmulq_s16(a_hi, vmovl_high_s8(w)));
        return acc;
    }
    static int32x4_t finish(Acc acc) { return vpaddq_s32(acc.lo, acc.hi); }
};
}  // namespace

// a: [m, k] u8 · packed w: [n, k] s8 → c: [m, n] f32
void gemm_u8s8_f32__neon(int64_t m, int64_t n, int64_t k, const uint8_t* a, int64_t lda, const float* a_scale,
                         const int32_t* a_zero_point, int64_t a_param_stride, const int8_t* packed_w, const int32_t* w_sums,
                         const float* w_scale, const float* bias, float* c, int64_t ldc) {
    gemm_u8s8_panels<StepNeon>(m, n, k, a, lda, a_scale, a_zero_point, a_param_stride, packed_w, w_sums, w_scale, bias, c, ldc);
}

}  // namespace cq::kernels

#endif  // __aarch64__
