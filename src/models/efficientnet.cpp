// EfficientNet image classifier (HF EfficientNetForImageClassification): stem 3×3 stride-2 conv (after zero padding of
// one row / column at the bottom / right) + BN + act, MBConv blocks (expand 1×1 + BN + act, depthwise k×k + BN + act,
// squeeze-and-excitation, project 1×1 + BN, + the input where transformers adds it), top 1×1 conv + BN + act, mean or
// max pooling, classifier. Every BN is folded into its conv at load. Activations are NHWC rows after the stem, so each
// 1×1 conv is a plain Linear over [N·H·W, C] (observers, W8A8 and weight rewrites see it) and the depthwise convs run
// on the kernel table's depthwise_conv_f32 with channels on the vector lanes.
#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

#include "cq/error.h"
#include "models/encoder_families.h"
#include "ops/ops.h"

namespace cq {

namespace {

// Mean (or max) of each channel over each image's rows: x: [N·HW, C] → y: [N, C] (means summed in double).
void pool_rows(const float* x, int64_t N, int64_t HW, int64_t C, bool max, float* y) {
    for (int64_t n = 0; n < N; ++n)
        for (int64_t c = 0; c < C; ++c) {
            const float* p = x + n * HW * C + c;
            if (max) {
                float m = -std::numeric_limits<float>::infinity();
                for (int64_t i = 0; i < HW; ++i) m = std::max(m, p[i * C]);
                y[n * C + c] = m;
            } else {
                double sum = 0;
                for (int64_t i = 0; i < HW; ++i) sum += p[i * C];
                y[n * C + c] = static_cast<float>(sum / static_cast<double>(HW));
            }
        }
}

// The block's depthwise conv with its BatchNorm folded in, transposed to [k·k, C]. Padding as transformers builds it:
// stride 2 pads (k/2 − 1 before, k/2 after) unless the block is in depthwise_padding (k/2 on every side), then a valid
// conv; stride 1 is PyTorch's "same" (k/2 on every side, k odd).
DepthwiseConvUnit depthwise_bn(const EncoderWeightSource& src, const std::string& prefix, int64_t C, int64_t k, int64_t stride, bool adjust,
                               int64_t block, float eps) {
    DepthwiseConvUnit d;
    d.name = prefix + ".depthwise_conv";
    d.channels = C;
    d.kernel = k;
    d.stride = stride;
    d.block = block;
    const int64_t h = k / 2, before = stride == 2 && adjust ? h - 1 : h;
    d.pad_top = d.pad_left = before;
    d.pad_bottom = d.pad_right = h;
    const std::vector<float> w = src.get(d.name + ".weight", {C, k * k}).to_float();  // stored [C, 1, k, k]
    std::vector<float> scale, shift;
    fold_batch_norm(src, prefix + ".depthwise_norm", C, eps, scale, shift);
    d.weight = Tensor::zeros({k * k, C}, DType::F32);
    float* out = static_cast<float*>(d.weight.mutable_data());
    for (int64_t c = 0; c < C; ++c)
        for (int64_t t = 0; t < k * k; ++t) out[t * C + c] = w[static_cast<size_t>(c * k * k + t)] * scale[static_cast<size_t>(c)];
    d.bias = Tensor::zeros({C}, DType::F32);
    std::copy(shift.begin(), shift.end(), static_cast<float*>(d.bias.mutable_data()));
    return d;
}

}  // namespace

int64_t efficientnet_round_filters(const EfficientNetConfig& e, int64_t channels) {
    // transformers' round_filters: the width scaled and rounded to the divisor, never more than 10 % below the scaled one
    const double scaled = static_cast<double>(channels) * e.width_coefficient;
    const int64_t d = e.depth_divisor;
    int64_t dim = std::max<int64_t>(d, static_cast<int64_t>(scaled + static_cast<double>(d) / 2) / d * d);
    if (static_cast<double>(dim) < 0.9 * scaled) dim += d;
    return dim;
}

int64_t efficientnet_round_repeats(const EfficientNetConfig& e, int64_t repeats) {
    return static_cast<int64_t>(std::ceil(e.depth_coefficient * static_cast<double>(repeats)));
}

void load_efficientnet_weights(const EncoderConfig& c, const EncoderWeightSource& src, EncoderWeights& w) {
    const EfficientNetConfig& e = c.efficientnet;
    const float eps = e.batch_norm_eps;
    const std::string& act = c.hidden_act;
    const int64_t stem = efficientnet_round_filters(e, 32);
    w.stem = conv_bn(src, "efficientnet.embeddings.convolution", "efficientnet.embeddings.batchnorm", c.num_channels, stem, 3, 2, act, -1, eps);
    int64_t width = stem, block = 0;
    for (size_t i = 0; i < e.in_channels.size(); ++i) {
        const int64_t in_dim = efficientnet_round_filters(e, e.in_channels[i]), out_dim = efficientnet_round_filters(e, e.out_channels[i]);
        if (in_dim != width)  // transformers would build it and fail in its first forward pass
            src.fail("config.json's 'in_channels'[" + std::to_string(i) + "] gives stage " + std::to_string(i) + " " + std::to_string(in_dim) +
                     " input channels, but the stage before it outputs " + std::to_string(width));
        const int64_t k = e.kernel_sizes[i];
        for (int64_t j = 0; j < efficientnet_round_repeats(e, e.num_block_repeats[i]); ++j, ++block) {
            const int64_t stride = j > 0 ? 1 : e.strides[i], in = j > 0 ? out_dim : in_dim;
            const int64_t expanded = in * e.expand_ratios[i];
            const bool adjust = std::find(e.depthwise_padding.begin(), e.depthwise_padding.end(), block) == e.depthwise_padding.end();
            const std::string p = "efficientnet.encoder.blocks." + std::to_string(block) + ".";
            MBConvUnit u;
            if (e.expand_ratios[i] != 1)
                u.expand = conv_bn(src, p + "expansion.expand_conv", p + "expansion.expand_bn", in, expanded, 1, 1, act, block, eps);
            u.depthwise = depthwise_bn(src, p + "depthwise_conv", expanded, k, stride, adjust, block, eps);
            const int64_t squeezed = std::max<int64_t>(1, static_cast<int64_t>(static_cast<double>(in) * e.squeeze_expansion_ratio));
            u.se_reduce = src.linear(p + "squeeze_excite.reduce", squeezed, expanded, LayerRole::other, block);
            u.se_expand = src.linear(p + "squeeze_excite.expand", expanded, squeezed, LayerRole::other, block);
            u.project = conv_bn(src, p + "projection.project_conv", p + "projection.project_bn", expanded, out_dim, 1, 1, "", block, eps);
            u.residual = j > 0;  // transformers: stride == 1 and not id_skip (the first block of each stage)
            w.mbconv_units.push_back(std::move(u));
        }
        width = out_dim;
    }
    w.top = conv_bn(src, "efficientnet.encoder.top_conv", "efficientnet.encoder.top_bn", width, e.hidden_dim, 1, 1, act, -1, eps);
    w.classifier = src.linear("classifier", c.num_labels, e.hidden_dim, LayerRole::classifier);
    // transformers pools with a hidden_dim-wide window (ceil mode): one output per channel only while the last feature map
    // is no larger than that
    int64_t side = (c.image_size + 1 - 3) / 2 + 1;
    for (const MBConvUnit& u : w.mbconv_units) {
        const DepthwiseConvUnit& d = u.depthwise;
        side = (side + d.pad_top + d.pad_bottom - d.kernel) / d.stride + 1;
        if (side < 1) src.fail("the image size " + std::to_string(c.image_size) + " leaves no pixels after " + d.name);
    }
    if (side > e.hidden_dim)
        throw Unsupported("[encoder] EfficientNet's pooling window is hidden_dim (" + std::to_string(e.hidden_dim) + ") wide, but the last feature map is " +
                          std::to_string(side) + " pixels wide: transformers would not pool it to one value per channel");
}

void efficientnet_forward(const EncoderPass& p, const float* pixels, int64_t batch, float* logits) {
    const EncoderConfig& c = p.c;
    const EncoderWeights& w = p.w;
    // stem: ZeroPad2d((0, 1, 0, 1)) then a valid 3×3 stride-2 conv → x: [batch·H·W, C] (NHWC rows)
    int64_t H = (c.image_size + 1 - 3) / 2 + 1, W = H;
    const int64_t stem_pads[4] = {0, 0, 1, 1};
    std::vector<float> x, expanded, y, out;
    conv_rows(p, *w.stem, pixels, batch, c.image_size, c.image_size, stem_pads, H, W, x);
    ops::activate(p.act, x.data(), static_cast<int64_t>(x.size()));
    std::vector<float> pooled, squeezed, gate;
    for (const MBConvUnit& u : w.mbconv_units) {
        const DepthwiseConvUnit& d = u.depthwise;
        const int64_t C = d.channels, rows = batch * H * W;
        const float* in = x.data();
        if (u.expand) {
            expanded.resize(static_cast<size_t>(rows * C));
            p.linear(u.expand->conv, x.data(), rows, expanded.data());
            ops::activate(p.act, expanded.data(), rows * C);
            in = expanded.data();
        }
        const int64_t OH = (H + d.pad_top + d.pad_bottom - d.kernel) / d.stride + 1, OW = (W + d.pad_left + d.pad_right - d.kernel) / d.stride + 1;
        const int64_t out_rows = batch * OH * OW;
        y.resize(static_cast<size_t>(out_rows * C));
        ops::depthwise_conv2d(in, batch, H, W, C, static_cast<const float*>(d.weight.data()), d.kernel, d.stride, d.pad_top, d.pad_left,
                              static_cast<const float*>(d.bias.data()), y.data(), OH, OW);
        ops::activate(p.act, y.data(), out_rows * C);
        // squeeze-and-excitation: gate [batch, C] = σ(expand(act(reduce(channel means)))), each channel scaled by its gate
        const int64_t S = u.se_reduce.n_out();
        pooled.resize(static_cast<size_t>(batch * C));
        squeezed.resize(static_cast<size_t>(batch * S));
        gate.resize(static_cast<size_t>(batch * C));
        pool_rows(y.data(), batch, OH * OW, C, false, pooled.data());
        p.linear(u.se_reduce, pooled.data(), batch, squeezed.data());
        ops::activate(p.act, squeezed.data(), batch * S);
        p.linear(u.se_expand, squeezed.data(), batch, gate.data());
        ops::sigmoid(gate.data(), batch * C);
        for (int64_t r = 0; r < out_rows; ++r) {
            const float* g = gate.data() + (r / (OH * OW)) * C;
            float* row = y.data() + r * C;
            for (int64_t ch = 0; ch < C; ++ch) row[ch] *= g[ch];
        }
        const int64_t M = u.project.conv.n_out();
        out.resize(static_cast<size_t>(out_rows * M));
        p.linear(u.project.conv, y.data(), out_rows, out.data());
        if (u.residual) ops::add(out.data(), x.data(), out_rows * M);  // stride 1, same width: x has out_rows rows of M
        x.swap(out);
        H = OH;
        W = OW;
    }
    const int64_t rows = batch * H * W, D = w.top->conv.n_out();
    out.resize(static_cast<size_t>(rows * D));
    p.linear(w.top->conv, x.data(), rows, out.data());
    ops::activate(p.act, out.data(), rows * D);
    pooled.resize(static_cast<size_t>(batch * D));
    pool_rows(out.data(), batch, H * W, D, c.efficientnet.max_pooling, pooled.data());
    p.linear(w.classifier, pooled.data(), batch, logits);
}

}  // namespace cq
