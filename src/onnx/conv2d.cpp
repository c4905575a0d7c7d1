// 2-D convolution: the direct reference in double and the im2col + kernel-table GEMM path (see cq/onnx_model.h).
#include "onnx/conv2d.h"

#include <algorithm>
#include <vector>

#include "cq/kernels.h"
#include "cq/onnx_model.h"
#include "cq/thread_pool.h"

namespace cq::onnx_ops {

void im2col(const float* x, int64_t N, int64_t C, int64_t H, int64_t W, int64_t kh, int64_t kw, const int64_t stride[2],
            const int64_t pads[4], const int64_t dilation[2], int64_t OH, int64_t OW, float* patches) {
    const int64_t K = C * kh * kw, s0 = stride[0], s1 = stride[1], p0 = pads[0], p1 = pads[1], d0 = dilation[0], d1 = dilation[1];
    if (kh == 1 && kw == 1 && s0 == 1 && s1 == 1 && p0 == 0 && p1 == 0 && OH == H && OW == W) {
        // a pointwise conv: the patches are the NCHW planes transposed to [N·H·W, C]
        const int64_t HW = H * W;
        ThreadPool::global().parallel_for(N * HW, [=](int64_t begin, int64_t end) {
            for (int64_t r = begin; r < end; ++r) {
                const float* in = x + (r / HW) * C * HW + r % HW;
                float* out = patches + r * C;
                for (int64_t c = 0; c < C; ++c) out[c] = in[c * HW];
            }
        }, std::max<int64_t>(1, 16384 / std::max<int64_t>(C, 1)));
        return;
    }
    // output rows (n, oy) in parallel: each writes its own patches, so the bytes do not depend on the thread count
    ThreadPool::global().parallel_for(N * OH, [=](int64_t begin, int64_t end) {
        for (int64_t r = begin; r < end; ++r) {
            const int64_t n = r / OH, oy = r % OH;
            for (int64_t ox = 0; ox < OW; ++ox) {
                float* row = patches + (r * OW + ox) * K;
                const int64_t ix0 = ox * s1 - p1;
                const bool inside_x = ix0 >= 0 && ix0 + (kw - 1) * d1 < W;  // no column of the window is padding
                for (int64_t c = 0; c < C; ++c) {
                    const float* plane = x + (n * C + c) * H * W;
                    for (int64_t ky = 0; ky < kh; ++ky) {
                        const int64_t iy = oy * s0 - p0 + ky * d0;
                        float* out = row + (c * kh + ky) * kw;
                        if (iy < 0 || iy >= H) {
                            for (int64_t kx = 0; kx < kw; ++kx) out[kx] = 0.0f;
                        } else if (inside_x) {
                            const float* in = plane + iy * W + ix0;
                            for (int64_t kx = 0; kx < kw; ++kx) out[kx] = in[kx * d1];
                        } else {
                            const float* line = plane + iy * W;
                            for (int64_t kx = 0; kx < kw; ++kx) {
                                const int64_t ix = ix0 + kx * d1;
                                out[kx] = ix >= 0 && ix < W ? line[ix] : 0.0f;
                            }
                        }
                    }
                }
            }
        }
    }, std::max<int64_t>(1, 16384 / std::max<int64_t>(OW * K, 1)));
}

void nhwc_to_nchw(const float* y_nhwc, int64_t N, int64_t HW, int64_t M, float* y) {
    for (int64_t n = 0; n < N; ++n)
        for (int64_t p = 0; p < HW; ++p)
            for (int64_t m = 0; m < M; ++m) y[(n * M + m) * HW + p] = y_nhwc[(n * HW + p) * M + m];
}

void conv2d_ref(const float* x, int64_t N, int64_t C, int64_t H, int64_t W, const float* w, int64_t M, int64_t kh, int64_t kw,
                const float* b, int64_t group, const int64_t stride[2], const int64_t pads[4], const int64_t dilation[2], float* y,
                int64_t OH, int64_t OW) {
    const int64_t cg = C / group, mg = M / group;
    for (int64_t n = 0; n < N; ++n)
        for (int64_t m = 0; m < M; ++m) {
            const int64_t g = m / mg;
            for (int64_t oy = 0; oy < OH; ++oy)
                for (int64_t ox = 0; ox < OW; ++ox) {
                    double acc = b ? b[m] : 0.0;
                    for (int64_t c = 0; c < cg; ++c)
                        for (int64_t ky = 0; ky < kh; ++ky)
                            for (int64_t kx = 0; kx < kw; ++kx) {
                                const int64_t iy = oy * stride[0] - pads[0] + ky * dilation[0];
                                const int64_t ix = ox * stride[1] - pads[1] + kx * dilation[1];
                                if (iy < 0 || iy >= H || ix < 0 || ix >= W) continue;
                                acc += static_cast<double>(x[((n * C + g * cg + c) * H + iy) * W + ix]) *
                                       static_cast<double>(w[((m * cg + c) * kh + ky) * kw + kx]);
                            }
                    y[((n * M + m) * OH + oy) * OW + ox] = static_cast<float>(acc);
                }
        }
}

void conv2d_im2col(const float* x, int64_t N, int64_t C, int64_t H, int64_t W, const float* w, int64_t M, int64_t kh, int64_t kw,
                   const float* b, const int64_t stride[2], const int64_t pads[4], const int64_t dilation[2], float* y, int64_t OH,
                   int64_t OW) {
    const int64_t K = C * kh * kw, rows = N * OH * OW;
    std::vector<float> patches(static_cast<size_t>(rows * K)), out(static_cast<size_t>(rows * M));
    im2col(x, N, C, H, W, kh, kw, stride, pads, dilation, OH, OW, patches.data());
    kernel_table().gemm_f32.fn(rows, M, K, patches.data(), K, w, K, out.data(), M);
    if (b)
        for (int64_t r = 0; r < rows; ++r)
            for (int64_t m = 0; m < M; ++m) out[static_cast<size_t>(r * M + m)] += b[m];
    nhwc_to_nchw(out.data(), N, OH * OW, M, y);
}

}  // namespace cq::onnx_ops
