// NEON DotProd (Armv8.2 sdot) quantized matrix products of every ggml format: the shared ARM kernels
// (kernels/arm/quant_gemm_arm.h) with one sdot as their 16-byte dot step. Only called where getauxval
// reports asimddp.
#include "kernels/kernel_decls.h"

#if defined(__aarch64__)
#include "kernels/arm/quant_gemm_arm.h"

namespace cq::kernels {
namespace {
struct DotSdot {
    static int32x4_t step(int32x4_t acc, int8x16_t w, int8x16_t a) { return vdotq_s32(acc, w, a); }
};
}  // namespace
}  // namespace cq::kernels

CQ_DEFINE_ARM_QUANT_GEMMS(neon_dotprod, DotSdot)

#endif  // __aarch64__
