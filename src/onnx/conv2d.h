// im2col for the imported Conv layers: a convolution becomes one GEMM of the patches [N·OH·OW, C·kh·kw] with the
// weight [M, C·kh·kw] (a Linear), then a transpose of [N, OH·OW, M] to NCHW.
#pragma once

#include <cstdint>
#include <memory>

#include "cq/w8a8.h"

namespace cq::onnx_ops {

// x: [N, C, H, W] → patches: [N·OH·OW, C·kh·kw], element (c, ky, kx) of the row in the weight's order; padding reads 0.
void im2col(const float* x, int64_t N, int64_t C, int64_t H, int64_t W, int64_t kh, int64_t kw, const int64_t stride[2],
            const int64_t pads[4], const int64_t dilation[2], int64_t OH, int64_t OW, float* patches);
// Quantized codes in pixel-major layout (x: [N, H, W, C] u8) → patch rows of `ld` bytes ordered (ky, kx, c): each tap
// is one contiguous run of C bytes (the weight must be laid out the same way); padding and the tail hold `pad`.
void im2col_nhwc_u8(const uint8_t* x, int64_t N, int64_t C, int64_t H, int64_t W, int64_t kh, int64_t kw, const int64_t stride[2],
                    const int64_t pads[4], const int64_t dilation[2], int64_t OH, int64_t OW, uint8_t pad, uint8_t* patches, int64_t ld);
// [N, C, HW] → [N, HW, C] bytes
void planes_to_pixels_u8(const uint8_t* x, int64_t N, int64_t C, int64_t HW, uint8_t* y);
// y_nhwc: [N, OH·OW, M] → y: [N, M, OH, OW], with max(0, ·) (a fused Relu) when `relu`
void nhwc_to_nchw(const float* y_nhwc, int64_t N, int64_t HW, int64_t M, float* y, bool relu = false);

// Static W8A8 convolution (group 1) from pixel-major codes: the image [N, C, H, W] is quantized once with q's input
// scale / zero point (each pixel once, not kh·kw times), laid out [N, H, W, C] (already so when `x_channels_last`) so
// that each kernel tap is one run of C bytes, gathered into patch rows ordered (ky, kx, c) — none for a pointwise conv
// over a multiple of 4 channels — and multiplied by q, a weight in that same order (pixel_major_weight), block by block
// of one image's pixels. y is [N, M, OH, OW], or its channels-last layout [N, OH, OW, M] when `y_channels_last`; with
// `relu`, max(0, ·); channels-last rows are `ldy` floats apart (0: M), so that a conv can write its channels of a
// channel Concat's output in place. The integer sums are exact, so y equals the W8A8 Linear of the original weight over
// the float im2col patches, bit for bit.
void conv2d_w8a8_static(const float* x, bool x_channels_last, int64_t N, int64_t C, int64_t H, int64_t W, const Int8Linear& q, int64_t kh,
                        int64_t kw, const int64_t stride[2], const int64_t pads[4], const int64_t dilation[2], int64_t OH, int64_t OW, float* y,
                        bool y_channels_last, bool relu, int64_t ldy = 0);
// The static-W8A8 weight of a conv ([M, C·kh·kw] in (c, ky, kx) order) re-ordered (ky, kx, c) and packed for the kernels.
std::shared_ptr<Int8Linear> pixel_major_weight(const Int8Linear& q, int64_t C, int64_t kh, int64_t kw);

}  // namespace cq::onnx_ops
