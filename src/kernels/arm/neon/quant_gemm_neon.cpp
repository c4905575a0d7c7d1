// Plain NEON (Armv8.0) quantized matrix products of every ggml format: the shared ARM kernels
// (kernels/arm/quant_gemm_arm.h) with smull + sadalp as their 16-byte dot step (s8·s8 products fit s16).
#include "kernels/kernel_decls.h"

#if defined(__aarch64__)
#include "kernels/arm/quant_gemm_arm.h"

namespace cq::kernels {
namespace {
struct DotNeon {
    // acc lanes += pairwise sums of the 16 products (lanes hold pairs, not quads: callers only add lanes up)
    static int32x4_t step(int32x4_t acc, int8x16_t w, int8x16_t a) {
        acc = vpadalq_s16(acc, vmull_s8(vget_low_s8(w), vget_low_s8(a)));
        return vpadalq_s16(acc, vmull_high_s8(w, a));
    }
};
}  // namespace
}  // namespace cq::kernels

CQ_DEFINE_ARM_QUANT_GEMMS(neon, DotNeon)

#endif  // __aarch64__
