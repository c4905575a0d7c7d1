// gemm_u7s8 reference: 7-bit activations are u8 activations that never exceed 127, so the u8×s8
// reference is already exact for them; this only gives the op its own name in the kernel table.
#include "kernels/kernel_decls.h"

namespace cq::kernels {

void gemm_u7s8_f32__ref(int64_t m, int64_t n, int64_t k, const uint8_t* a, int64_t lda, const float* a_scale,
                        const int32_t* a_zero_point, int64_t a_param_stride, const int8_t* packed_w, const int32_t* w_sums,
                        const float* w_scale, const float* bias, float* c, int64_t ldc) {
    gemm_u8s8_f32__ref(m, n, k, a, lda, a_scale, a_zero_point, a_param_stride, packed_w, w_sums, w_scale, bias, c, ldc);
}

}  // namespace cq::kernels
