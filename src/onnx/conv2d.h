// im2col for the imported Conv layers: a convolution becomes one GEMM of the patches [N·OH·OW, C·kh·kw] with the
// weight [M, C·kh·kw] (a Linear), then a transpose of [N, OH·OW, M] to NCHW.
#pragma once

#include <cstdint>

namespace cq::onnx_ops {

// x: [N, C, H, W] → patches: [N·OH·OW, C·kh·kw], element (c, ky, kx) of the row in the weight's order; padding reads 0.
void im2col(const float* x, int64_t N, int64_t C, int64_t H, int64_t W, int64_t kh, int64_t kw, const int64_t stride[2],
            const int64_t pads[4], const int64_t dilation[2], int64_t OH, int64_t OW, float* patches);
// y_nhwc: [N, OH·OW, M] → y: [N, M, OH, OW]
void nhwc_to_nchw(const float* y_nhwc, int64_t N, int64_t HW, int64_t M, float* y);

}  // namespace cq::onnx_ops
