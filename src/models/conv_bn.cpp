// The convolution pieces ResNet and EfficientNet share: BatchNorm folded into the preceding conv at load, and a conv run
// as the ONNX import's im2col + a Linear through ops::linear (so observers, W8A8 and weight rewrites see it as a Linear).
#include <cmath>
#include <string>
#include <vector>

#include "cq/thread_pool.h"
#include "models/encoder_families.h"
#include "onnx/conv2d.h"

namespace cq {

void fold_batch_norm(const EncoderWeightSource& src, const std::string& bn, int64_t n, float eps, std::vector<float>& scale,
                     std::vector<float>& shift) {
    const auto gamma = src.get(bn + ".weight", {n}).to_float(), beta = src.get(bn + ".bias", {n}).to_float();
    const auto mean = src.get(bn + ".running_mean", {n}).to_float(), var = src.get(bn + ".running_var", {n}).to_float();
    scale.assign(static_cast<size_t>(n), 0.0f);
    shift.assign(static_cast<size_t>(n), 0.0f);
    for (size_t i = 0; i < scale.size(); ++i) {
        if (!(var[i] + eps > 0)) src.fail("tensor '" + bn + ".running_var' holds a variance below −eps at channel " + std::to_string(i));
        scale[i] = gamma[i] / std::sqrt(var[i] + eps);
        shift[i] = beta[i] - mean[i] * scale[i];
    }
}

ConvUnit conv_bn(const EncoderWeightSource& src, const std::string& conv, const std::string& bn, int64_t in, int64_t out, int64_t kernel,
                 int64_t stride, std::string activation, int64_t block, float eps) {
    ConvUnit u;
    u.in_channels = in;
    u.kernel = kernel;
    u.stride = stride;
    u.activation = std::move(activation);
    const int64_t K = in * kernel * kernel;
    Linear& l = u.conv;
    l.name = l.source_name = conv;
    l.role = LayerRole::other;
    l.block = block;
    const Tensor w = src.get(conv + ".weight", {out, K});
    std::vector<float> scale, shift;
    fold_batch_norm(src, bn, out, eps, scale, shift);
    l.bias = Tensor::zeros({out}, DType::F32);
    std::copy(shift.begin(), shift.end(), static_cast<float*>(l.bias->mutable_data()));
    // A weight stored as I8 (cq's W8A8 container) or in ggml blocks (its weight-only form) was folded before it was
    // quantized: only the bias is rebuilt.
    if (w.dtype() == DType::I8 || dtype_traits(w.dtype()).is_quantized) {
        l.weight = w;
        return u;
    }
    l.weight = Tensor::zeros({out, K}, DType::F32);
    const std::vector<float> values = w.to_float();
    float* folded = static_cast<float*>(l.weight.mutable_data());
    for (int64_t o = 0; o < out; ++o)
        for (int64_t k = 0; k < K; ++k) folded[o * K + k] = values[static_cast<size_t>(o * K + k)] * scale[static_cast<size_t>(o)];
    return u;
}

void conv_rows(const EncoderPass& p, const ConvUnit& u, const float* x, int64_t N, int64_t H, int64_t W, const int64_t pads[4], int64_t OH,
               int64_t OW, std::vector<float>& rows) {
    const int64_t k = u.kernel, M = u.conv.n_out(), K = u.conv.n_in();
    const int64_t stride[2] = {u.stride, u.stride}, dilation[2] = {1, 1};
    const int64_t image_rows = OH * OW;
    std::vector<float> patches(static_cast<size_t>(N * image_rows * K));
    // One image per task: each writes its own rows of the patch matrix.
    ThreadPool::global().parallel_for(N, [&](int64_t n0, int64_t n1) {
        for (int64_t n = n0; n < n1; ++n)
            onnx_ops::im2col(x + n * u.in_channels * H * W, 1, u.in_channels, H, W, k, k, stride, pads, dilation, OH, OW,
                             patches.data() + n * image_rows * K);
    });
    rows.resize(static_cast<size_t>(N * image_rows * M));
    p.linear(u.conv, patches.data(), N * image_rows, rows.data());  // [N·OH·OW, M]
}

}  // namespace cq
