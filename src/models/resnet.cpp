// ResNet image classifier (HF ResNetForImageClassification): a 7×7 stride-2 stem conv + BN + act and a 3×3 stride-2
// max pool, stages of basic (3×3, 3×3) or bottleneck (1×1, 3×3, 1×1; width out/4) blocks x → act(path(x) + shortcut(x)),
// a global average pool and the classifier. Each conv has its BatchNorm folded in at load and runs as im2col + a
// Linear through ops::linear (the kernel table's GEMM, the thread pool; the ONNX import's path), so observers, W8A8
// and weight rewrites see every convolution as a Linear. Activations are NCHW.
#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

#include "cq/error.h"
#include "models/encoder_families.h"
#include "onnx/conv2d.h"
#include "ops/ops.h"

namespace cq {

namespace {

// BatchNorm2d's eps: HF's ResNet builds its norms with PyTorch's default.
constexpr float kBatchNormEps = 1e-5f;

// prefix.convolution with prefix.normalization folded in.
ConvUnit conv_bn(const EncoderWeightSource& src, const std::string& prefix, int64_t in, int64_t out, int64_t kernel, int64_t stride,
                 std::string activation, int64_t block) {
    return cq::conv_bn(src, prefix + ".convolution", prefix + ".normalization", in, out, kernel, stride, std::move(activation), block, kBatchNormEps);
}

// x: [N, C, H, W] → y: [N, M, OH, OW] = act(conv(x) + b); OH = (H + 2·(k/2) − k) / stride + 1 (HF pads k/2 each side).
void run_conv(const EncoderPass& p, const ConvUnit& u, const std::vector<float>& x, int64_t N, int64_t& H, int64_t& W, std::vector<float>& y) {
    const int64_t k = u.kernel, pad = k / 2, M = u.conv.n_out();
    const int64_t OH = (H + 2 * pad - k) / u.stride + 1, OW = (W + 2 * pad - k) / u.stride + 1;
    const int64_t pads[4] = {pad, pad, pad, pad};
    std::vector<float> out;
    conv_rows(p, u, x.data(), N, H, W, pads, OH, OW, out);
    y.resize(out.size());
    onnx_ops::nhwc_to_nchw(out.data(), N, OH * OW, M, y.data());
    if (!u.activation.empty()) ops::activate(*ops::activation_from_name(u.activation), y.data(), static_cast<int64_t>(y.size()));
    H = OH;
    W = OW;
}

// x: [N, C, H, W] → [N, C, OH, OW], 3×3 windows, stride 2, padding 1 (padding never wins: it is −∞).
std::vector<float> max_pool_3x3_s2(const std::vector<float>& x, int64_t N, int64_t C, int64_t& H, int64_t& W) {
    const int64_t OH = (H + 2 - 3) / 2 + 1, OW = (W + 2 - 3) / 2 + 1;
    std::vector<float> y(static_cast<size_t>(N * C * OH * OW));
    for (int64_t plane = 0; plane < N * C; ++plane)
        for (int64_t oy = 0; oy < OH; ++oy)
            for (int64_t ox = 0; ox < OW; ++ox) {
                float m = -std::numeric_limits<float>::infinity();
                for (int64_t iy = oy * 2 - 1; iy <= oy * 2 + 1; ++iy)
                    for (int64_t ix = ox * 2 - 1; ix <= ox * 2 + 1; ++ix)
                        if (iy >= 0 && iy < H && ix >= 0 && ix < W) m = std::max(m, x[static_cast<size_t>((plane * H + iy) * W + ix)]);
                y[static_cast<size_t>((plane * OH + oy) * OW + ox)] = m;
            }
    H = OH;
    W = OW;
    return y;
}

}  // namespace

void load_resnet_backbone(const EncoderConfig& c, const EncoderWeightSource& src, const std::string& prefix, int64_t n_stages, EncoderWeights& w) {
    // The inner convs of HF's blocks use ReLU whatever hidden_act says (ResNetConvLayer's default); the stem and the
    // activation after each residual add use hidden_act.
    const std::string& act = c.hidden_act;
    w.stem = conv_bn(src, prefix + "embedder.embedder", c.num_channels, c.embedding_size, 7, 2, act, -1);
    int64_t in = c.embedding_size, block = 0;
    for (size_t s = 0; s < static_cast<size_t>(n_stages); ++s) {
        const int64_t out = c.stage_sizes[s];
        for (int64_t d = 0; d < c.stage_depths[s]; ++d, ++block) {
            const int64_t stride = d > 0 ? 1 : s > 0 || c.downsample_in_first_stage ? 2 : 1;
            const std::string name = prefix + "encoder.stages." + std::to_string(s) + ".layers." + std::to_string(d);
            ResidualUnit u;
            if (in != out || stride != 1) u.shortcut = conv_bn(src, name + ".shortcut", in, out, 1, stride, "", block);
            const std::string l = name + ".layer.";
            if (c.bottleneck) {
                const int64_t r = out / 4;
                const bool first = c.downsample_in_bottleneck;
                u.path.push_back(conv_bn(src, l + "0", in, r, 1, first ? stride : 1, "relu", block));
                u.path.push_back(conv_bn(src, l + "1", r, r, 3, first ? 1 : stride, "relu", block));
                u.path.push_back(conv_bn(src, l + "2", r, out, 1, 1, "", block));
            } else {
                u.path.push_back(conv_bn(src, l + "0", in, out, 3, stride, "relu", block));
                u.path.push_back(conv_bn(src, l + "1", out, out, 3, 1, "", block));
            }
            w.residual_units.push_back(std::move(u));
            in = out;
        }
    }
}

void load_resnet_weights(const EncoderConfig& c, const EncoderWeightSource& src, EncoderWeights& w) {
    load_resnet_backbone(c, src, "resnet.", static_cast<int64_t>(c.stage_sizes.size()), w);
    w.classifier = src.linear("classifier.1", c.num_labels, c.stage_sizes.back(), LayerRole::classifier);
}

int64_t resnet_features(const EncoderPass& p, const float* pixels, int64_t batch, int64_t& H, int64_t& W, std::vector<float>& x) {
    const EncoderWeights& w = p.w;
    int64_t C = p.c.num_channels;
    std::vector<float> in(pixels, pixels + batch * C * H * W), y, shortcut;
    run_conv(p, *w.stem, in, batch, H, W, y);
    C = w.stem->conv.n_out();
    x = max_pool_3x3_s2(y, batch, C, H, W);
    const ops::Activation act = p.act;
    for (const ResidualUnit& u : w.residual_units) {
        int64_t h = H, wd = W;
        std::vector<float> cur = x;
        for (const ConvUnit& conv : u.path) {
            run_conv(p, conv, cur, batch, h, wd, y);
            cur.swap(y);
        }
        if (u.shortcut) {
            int64_t sh = H, sw = W;
            run_conv(p, *u.shortcut, x, batch, sh, sw, shortcut);
            ops::add(cur.data(), shortcut.data(), static_cast<int64_t>(cur.size()));
        } else {
            ops::add(cur.data(), x.data(), static_cast<int64_t>(cur.size()));
        }
        ops::activate(act, cur.data(), static_cast<int64_t>(cur.size()));
        x.swap(cur);
        H = h;
        W = wd;
        C = u.path.back().conv.n_out();
    }
    return C;
}

void resnet_forward(const EncoderPass& p, const float* pixels, int64_t batch, float* logits) {
    const EncoderWeights& w = p.w;
    int64_t H = p.c.image_size, W = p.c.image_size;
    std::vector<float> x;
    const int64_t C = resnet_features(p, pixels, batch, H, W, x);
    // pooled: [batch, C] = the mean of each channel's plane (in double: planes can be large)
    std::vector<float> pooled(static_cast<size_t>(batch * C));
    for (int64_t plane = 0; plane < batch * C; ++plane) {
        double sum = 0;
        for (int64_t i = 0; i < H * W; ++i) sum += x[static_cast<size_t>(plane * H * W + i)];
        pooled[static_cast<size_t>(plane)] = static_cast<float>(sum / static_cast<double>(H * W));
    }
    p.linear(w.classifier, pooled.data(), batch, logits);
}

}  // namespace cq
