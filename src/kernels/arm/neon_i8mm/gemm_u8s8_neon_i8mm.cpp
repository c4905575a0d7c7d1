// NEON I8MM INT8 W8A8 GEMM: usdot multiplies the u8 activations by the s8 weights directly (Armv8.6 I8MM),
// four products per int32 lane, so no offset and no widening. Only called where getauxval reports i8mm.
#include "kernels/kernel_decls.h"

#if defined(__aarch64__)
#include "kernels/arm/gemm_u8s8_arm.h"

namespace cq::kernels {
namespace {
struct StepUsdot {
    static constexpr int32_t kOffset = 0;
    using Acc = int32x4_t;
    static Acc zero() { return vdupq_n_s32(0); }
    static Acc step(Acc acc, uint8x16_t a, int8x16_t w) { return vusdotq_s32(acc, a, w); }
    static int32x4_t finish(Acc acc) { return acc; }
};
}  // namespace

// a: [m, k] u8 · packed w: [n, k] s8 → c: [m, n] f32
void gemm_u8s8_f32__neon_i8mm(int64_t m, int64_t n, int64_t k, const uint8_t* a, int64_t lda, const float* a_scale,
                              const int32_t* a_zero_point, int64_t a_param_stride, const int8_t* packed_w,
                              const int32_t* w_sums, const float* w_scale, const float* bias, float* c, int64_t ldc) {
    gemm_u8s8_panels<StepUsdot>(m, n, k, a, lda, a_scale, a_zero_point, a_param_stride, packed_w, w_sums, w_scale, bias, c, ldc);
}

}  // namespace cq::kernels

#endif  // __aarch64__
