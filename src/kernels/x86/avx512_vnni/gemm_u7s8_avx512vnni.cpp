// gemm_u7s8 on AVX-512 VNNI: vpdpbusd multiplies u8 by s8 into int32 without saturating, so 7-bit
// activations need nothing beyond the u8×s8 kernel; this only gives the op its own name.
#include "kernels/kernel_decls.h"

namespace cq::kernels {

void gemm_u7s8_f32__avx512vnni(int64_t m, int64_t n, int64_t k, const uint8_t* a, int64_t lda, const float* a_scale,
                               const int32_t* a_zero_point, int64_t a_param_stride, const int8_t* packed_w,
                               const int32_t* w_sums, const float* w_scale, const float* bias, float* c, int64_t ldc) {
    gemm_u8s8_f32__avx512vnni(m, n, k, a, lda, a_scale, a_zero_point, a_param_stride, packed_w, w_sums, w_scale, bias, c, ldc);
}

}  // namespace cq::kernels
