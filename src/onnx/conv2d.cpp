// 2-D convolution: the direct reference in double and the im2col + kernel-table GEMM path (see cq/onnx_model.h).
#include "onnx/conv2d.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "cq/error.h"
#include "cq/int8_gemm.h"
#include "cq/kernels.h"
#include "cq/onnx_model.h"
#include "cq/thread_pool.h"
#include "cq/w8a8.h"

namespace cq::onnx_ops {

namespace {
// Patch rows of ld elements (≥ C·kh·kw; the tail is filled with `pad`), `pad` also where the window leaves the image.
template <class T>
void im2col_rows(const T* x, int64_t N, int64_t C, int64_t H, int64_t W, int64_t kh, int64_t kw, const int64_t stride[2],
                 const int64_t pads[4], const int64_t dilation[2], int64_t OH, int64_t OW, T pad, T* patches, int64_t ld) {
    const int64_t K = C * kh * kw, s0 = stride[0], s1 = stride[1], p0 = pads[0], p1 = pads[1], d0 = dilation[0], d1 = dilation[1];
    if (kh == 1 && kw == 1 && s0 == 1 && s1 == 1 && p0 == 0 && p1 == 0 && OH == H && OW == W) {
        // a pointwise conv: the patches are the NCHW planes transposed to [N·H·W, C]
        const int64_t HW = H * W;
        ThreadPool::global().parallel_for(N * HW, [=](int64_t begin, int64_t end) {
            for (int64_t r = begin; r < end; ++r) {
                const T* in = x + (r / HW) * C * HW + r % HW;
                T* out = patches + r * ld;
                for (int64_t c = 0; c < C; ++c) out[c] = in[c * HW];
                for (int64_t c = C; c < ld; ++c) out[c] = pad;
            }
        }, std::max<int64_t>(1, 16384 / std::max<int64_t>(C, 1)));
        return;
    }
    // output rows (n, oy) in parallel: each writes its own patches, so the bytes do not depend on the thread count
    ThreadPool::global().parallel_for(N * OH, [=](int64_t begin, int64_t end) {
        for (int64_t r = begin; r < end; ++r) {
            const int64_t n = r / OH, oy = r % OH;
            for (int64_t ox = 0; ox < OW; ++ox) {
                T* row = patches + (r * OW + ox) * ld;
                const int64_t ix0 = ox * s1 - p1;
                const bool inside_x = ix0 >= 0 && ix0 + (kw - 1) * d1 < W;  // no column of the window is padding
                for (int64_t c = 0; c < C; ++c) {
                    const T* plane = x + (n * C + c) * H * W;
                    for (int64_t ky = 0; ky < kh; ++ky) {
                        const int64_t iy = oy * s0 - p0 + ky * d0;
                        T* out = row + (c * kh + ky) * kw;
                        if (iy < 0 || iy >= H) {
                            for (int64_t kx = 0; kx < kw; ++kx) out[kx] = pad;
                        } else if (inside_x) {
                            const T* in = plane + iy * W + ix0;
                            for (int64_t kx = 0; kx < kw; ++kx) out[kx] = in[kx * d1];
                        } else {
                            const T* line = plane + iy * W;
                            for (int64_t kx = 0; kx < kw; ++kx) {
                                const int64_t ix = ix0 + kx * d1;
                                out[kx] = ix >= 0 && ix < W ? line[ix] : pad;
                            }
                        }
                    }
                }
                for (int64_t k = K; k < ld; ++k) row[k] = pad;
            }
        }
    }, std::max<int64_t>(1, 16384 / std::max<int64_t>(OW * K, 1)));
}
}  // namespace

void im2col(const float* x, int64_t N, int64_t C, int64_t H, int64_t W, int64_t kh, int64_t kw, const int64_t stride[2],
            const int64_t pads[4], const int64_t dilation[2], int64_t OH, int64_t OW, float* patches) {
    im2col_rows<float>(x, N, C, H, W, kh, kw, stride, pads, dilation, OH, OW, 0.0f, patches, C * kh * kw);
}

void im2col_nhwc_u8(const uint8_t* x, int64_t N, int64_t C, int64_t H, int64_t W, int64_t kh, int64_t kw, const int64_t stride[2],
                    const int64_t pads[4], const int64_t dilation[2], int64_t OH, int64_t OW, uint8_t pad, uint8_t* patches, int64_t ld) {
    const int64_t K = C * kh * kw;
    ThreadPool::global().parallel_for(N * OH, [=](int64_t begin, int64_t end) {
        for (int64_t r = begin; r < end; ++r) {
            const int64_t n = r / OH, oy = r % OH;
            for (int64_t ox = 0; ox < OW; ++ox) {
                uint8_t* row = patches + (r * OW + ox) * ld;
                const int64_t ix0 = ox * stride[1] - pads[1];
                // with dilation 1 a window row that stays inside the image is one run of kw·C bytes
                const bool row_inside = dilation[1] == 1 && ix0 >= 0 && ix0 + kw <= W;
                auto copy = [pad](uint8_t* out, const uint8_t* in, int64_t count) {  // in == nullptr: padding
                    if (count >= 32) {  // a library call pays off only on longer runs
                        if (in) std::memcpy(out, in, static_cast<size_t>(count));
                        else std::memset(out, pad, static_cast<size_t>(count));
                    } else {
                        for (int64_t c = 0; c < count; ++c) out[c] = in ? in[c] : pad;
                    }
                };
                for (int64_t ky = 0; ky < kh; ++ky) {
                    const int64_t iy = oy * stride[0] - pads[0] + ky * dilation[0];
                    uint8_t* out = row + ky * kw * C;
                    if (iy < 0 || iy >= H) {
                        copy(out, nullptr, kw * C);
                    } else if (row_inside) {
                        copy(out, x + ((n * H + iy) * W + ix0) * C, kw * C);
                    } else {
                        for (int64_t kx = 0; kx < kw; ++kx) {
                            const int64_t ix = ix0 + kx * dilation[1];
                            copy(out + kx * C, ix >= 0 && ix < W ? x + ((n * H + iy) * W + ix) * C : nullptr, C);
                        }
                    }
                }
                if (ld > K) std::memset(row + K, pad, static_cast<size_t>(ld - K));
            }
        }
    }, std::max<int64_t>(1, 65536 / std::max<int64_t>(OW * ld, 1)));
}

void planes_to_pixels_u8(const uint8_t* x, int64_t N, int64_t C, int64_t HW, uint8_t* y) {
    // image by image, writing each pixel's C bytes in order; an image's planes are read C streams at a time, which the
    // caches and prefetchers serve for a CNN's feature maps
    ThreadPool::global().parallel_for(N, [=](int64_t n0, int64_t n1) {
        for (int64_t n = n0; n < n1; ++n) {
            const uint8_t* in = x + n * C * HW;
            uint8_t* out = y + n * HW * C;
            for (int64_t p = 0; p < HW; ++p)
                for (int64_t c = 0; c < C; ++c) out[p * C + c] = in[c * HW + p];
        }
    }, std::max<int64_t>(1, 65536 / std::max<int64_t>(C * HW, 1)));
}

void nhwc_to_nchw(const float* y_nhwc, int64_t N, int64_t HW, int64_t M, float* y, bool relu) {
    // blocks of 16 channels × 16 pixels, so both sides are read and written in whole cache lines; images in parallel
    constexpr int64_t kB = 16;
    ThreadPool::global().parallel_for(N * ((M + kB - 1) / kB), [=](int64_t begin, int64_t end) {
        const int64_t mblocks = (M + kB - 1) / kB;
        for (int64_t t = begin; t < end; ++t) {
            const int64_t n = t / mblocks, m0 = t % mblocks * kB, m1 = std::min(M, m0 + kB);
            const float* src = y_nhwc + n * HW * M;
            float* dst = y + n * M * HW;
            for (int64_t p0 = 0; p0 < HW; p0 += kB) {
                const int64_t p1 = std::min(HW, p0 + kB);
                for (int64_t m = m0; m < m1; ++m)
                    for (int64_t p = p0; p < p1; ++p) {
                        const float v = src[p * M + m];
                        dst[m * HW + p] = relu && !(v > 0.0f) ? 0.0f : v;
                    }
            }
        }
    }, std::max<int64_t>(1, 65536 / std::max<int64_t>(HW * kB, 1)));
}

std::shared_ptr<Int8Linear> pixel_major_weight(const Int8Linear& q, int64_t C, int64_t kh, int64_t kw) {
    if (q.n_in != C * kh * kw) throw InvalidArgument("[onnx] pixel_major_weight: the weight has " + std::to_string(q.n_in) + " inputs, not C·kh·kw");
    auto w = std::make_shared<Int8Linear>(q);
    w->weight = Tensor::zeros({q.n_out, q.n_in}, DType::I8);
    const auto* src = static_cast<const int8_t*>(q.weight.data());
    auto* dst = static_cast<int8_t*>(w->weight.mutable_data());
    for (int64_t m = 0; m < q.n_out; ++m)
        for (int64_t c = 0; c < C; ++c)
            for (int64_t t = 0; t < kh * kw; ++t) dst[(m * kh * kw + t) * C + c] = src[(m * C + c) * kh * kw + t];
    pack_int8_linear(*w);
    return w;
}

void conv2d_w8a8_static(const float* x, bool x_channels_last, int64_t N, int64_t C, int64_t H, int64_t W, const Int8Linear& q, int64_t kh,
                        int64_t kw, const int64_t stride[2], const int64_t pads[4], const int64_t dilation[2], int64_t OH, int64_t OW, float* y,
                        bool y_channels_last, bool relu, int64_t ldy) {
    if (ldy <= 0) ldy = q.n_out;
    const int64_t HW = H * W, rows = N * OH * OW, ld = (q.n_in + 3) / 4 * 4;
    // scratch reused across calls: fresh multi-megabyte buffers per conv cost more in page faults than the GEMM
    thread_local std::vector<uint8_t> planes, pixels, patches;
    planes.resize(static_cast<size_t>((N * C * HW + 3) / 4 * 4));
    if (!x_channels_last) pixels.resize(static_cast<size_t>(N * C * HW));
    uint8_t* pl = planes.data();
    const auto quantize = kernel_table().quantize_rows_u8_static.fn;
    // One scale for the whole tensor: quantized as one long row, in pieces of whole quads, because the kernel pads each
    // row it writes with zero points up to a multiple of 4 bytes (hence also the buffer's padding).
    const int64_t total = N * C * HW;
    ThreadPool::global().parallel_for((total + 3) / 4, [&](int64_t q0, int64_t q1) {
        const int64_t e0 = 4 * q0, e1 = std::min(total, 4 * q1);
        quantize(x + e0, 1, e1 - e0, e1 - e0, q.input.scale, q.input.zero_point, q.act_qmax, pl + e0, e1 - e0);
    }, 16384);
    const uint8_t* codes = pl;  // channels-last input: already pixel-major
    if (!x_channels_last) {
        planes_to_pixels_u8(pl, N, C, HW, pixels.data());
        codes = pixels.data();
    }
    const bool pointwise = kh == 1 && kw == 1 && stride[0] == 1 && stride[1] == 1 && pads[0] == 0 && pads[1] == 0 && OH == H && OW == W;
    if (!(pointwise && ld == C)) {  // a pointwise conv over a multiple of 4 channels: the pixel-major codes are the patches
        patches.resize(static_cast<size_t>(rows * ld));
        im2col_nhwc_u8(codes, N, C, H, W, kh, kw, stride, pads, dilation, OH, OW, static_cast<uint8_t>(q.input.zero_point), patches.data(), ld);
        codes = patches.data();
    }
    // The GEMM by blocks of one image's pixels, each block's [pixels, M] result transposed into the NCHW output (and
    // through the fused Relu) while it is still in cache, instead of a whole NHWC result written and read back.
    const int64_t M = q.n_out, OHW = OH * OW;
    const int64_t block = std::clamp<int64_t>(8192 / std::max<int64_t>(M, 1) / 16 * 16, 16, 512);
    const int64_t blocks_per_image = (OHW + block - 1) / block;
    const KernelTable& k = kernel_table();
    const GemmU8S8Fn gemm = q.act_qmax <= kU7QMax ? k.gemm_u7s8.fn : k.gemm_u8s8.fn;
    const float* bias = q.bias.empty() ? nullptr : q.bias.data();
    // a thread's share is at least ~2 M multiply-adds (a few microseconds of VNNI work): waking another thread costs
    // tens of microseconds on a busy or virtual machine, so a batch-1 layer of a small CNN runs on one
    const int64_t min_tasks = std::max<int64_t>(1, (int64_t{1} << 21) / std::max<int64_t>(block * M * q.n_in, 1));
    ThreadPool::global().parallel_for(N * blocks_per_image, [&](int64_t t0, int64_t t1) {
        thread_local std::vector<float> tile;
        tile.resize(static_cast<size_t>(block * M));
        for (int64_t t = t0; t < t1; ++t) {
            const int64_t n = t / blocks_per_image, p0 = t % blocks_per_image * block, p1 = std::min(OHW, p0 + block);
            if (y_channels_last) {  // straight into the output's rows, then the Relu over them
                float* out = y + (n * OHW + p0) * ldy;
                gemm(p1 - p0, M, q.n_in, codes + (n * OHW + p0) * ld, ld, &q.input.scale, &q.input.zero_point, 0, q.packed.get(),
                     q.weight_sums.data(), q.weight_scale.data(), bias, out, ldy);
                if (relu)
                    for (int64_t r = 0; r < p1 - p0; ++r)
                        for (int64_t m = 0; m < M; ++m) out[r * ldy + m] = out[r * ldy + m] > 0.0f ? out[r * ldy + m] : 0.0f;
                continue;
            }
            gemm(p1 - p0, M, q.n_in, codes + (n * OHW + p0) * ld, ld, &q.input.scale, &q.input.zero_point, 0, q.packed.get(),
                 q.weight_sums.data(), q.weight_scale.data(), bias, tile.data(), M);
            float* out = y + n * M * OHW;
            for (int64_t m = 0; m < M; ++m)
                for (int64_t p = p0; p < p1; ++p) {
                    const float v = tile[static_cast<size_t>((p - p0) * M + m)];
                    out[m * OHW + p] = relu && !(v > 0.0f) ? 0.0f : v;
                }
        }
    }, min_tasks);
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
