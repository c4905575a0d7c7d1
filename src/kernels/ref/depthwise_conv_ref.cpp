// Depthwise 2-D convolution, the scalar reference (the specification of DepthwiseConvF32Fn): one NHWC image, each
// output the bias plus one std::fma per in-range tap in (ky, kx) order, which the vector rungs repeat lane by lane.
#include <cmath>
#include <cstdint>

#include "kernels/kernel_decls.h"

namespace cq::kernels {

// x: [H, W, C], w: [k·k, C], bias: [C] or null → y rows [oy0, oy1) of [OH, OW, C]
void depthwise_conv_f32__ref(const float* x, int64_t H, int64_t W, int64_t C, const float* w, int64_t k, int64_t stride,
                             int64_t pad_top, int64_t pad_left, const float* bias, float* y, int64_t OW, int64_t oy0, int64_t oy1) {
    for (int64_t oy = oy0; oy < oy1; ++oy)
        for (int64_t ox = 0; ox < OW; ++ox)
            for (int64_t c = 0; c < C; ++c) {
                float acc = bias ? bias[c] : 0.0f;
                for (int64_t ky = 0; ky < k; ++ky) {
                    const int64_t iy = oy * stride - pad_top + ky;
                    if (iy < 0 || iy >= H) continue;
                    for (int64_t kx = 0; kx < k; ++kx) {
                        const int64_t ix = ox * stride - pad_left + kx;
                        if (ix < 0 || ix >= W) continue;
                        acc = std::fma(x[(iy * W + ix) * C + c], w[(ky * k + kx) * C + c], acc);
                    }
                }
                y[(oy * OW + ox) * C + c] = acc;
            }
}

}  // namespace cq::kernels
