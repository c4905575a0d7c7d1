// ONNX graphs of the convolutional classifiers (pixel_values, already normalised → logits), with every BatchNorm
// already folded into its conv as cq loads them. ResNet (src/models/resnet.cpp): stem conv + act, 3×3 stride-2 max
// pool, residual units act(path(x) + shortcut(x)), global average pool, classifier; NCHW throughout. EfficientNet
// (src/models/efficientnet.cpp): the stem conv in NCHW, then NHWC as cq runs it, so that every 1×1 conv (expansion,
// squeeze-and-excitation, projection, top) is a MatMul over the channels through the Emitter like any Linear, and each
// depthwise conv a grouped Conv (group = channels) between two transposes.
#include "cq/error.h"
#include "onnx/export_encoder_graphs.h"

namespace cq::onnx_export {

namespace {

constexpr int32_t kF32 = onnx_ir::kFloat;

const std::vector<int64_t> kToNhwc{0, 2, 3, 1}, kToNchw{0, 3, 1, 2};

// A ConvUnit's conv ("same" padding k/2, as ResNet's) and its activation, if it names one.
std::string conv_unit(Emitter& e, const ConvUnit& u, const std::string& x, const std::vector<int64_t>& pads) {
    std::string y = e.conv(u.conv, x, u.in_channels, u.kernel, u.stride, pads);
    if (u.activation.empty()) return y;
    const auto act = ops::activation_from_name(u.activation);
    if (!act) throw Unsupported("[onnx] " + u.conv.name + ": activation '" + u.activation + "'");
    return e.activation(*act, y);
}

std::vector<int64_t> same_pads(const ConvUnit& u) {
    const int64_t p = u.kernel / 2;
    return {p, p, p, p};
}

}  // namespace

void resnet_graph(Emitter& e, const EncoderConfig& c, const EncoderWeights& w, ops::Activation act) {
    GraphBuilder& g = e.g;
    const std::string B = "batch_size";
    g.input("pixel_values", kF32, {B, c.num_channels, c.image_size, c.image_size});
    g.output("logits", kF32, {B, c.num_labels});

    g.set_scope("/embedder");
    std::string x = conv_unit(e, *w.stem, "pixel_values", same_pads(*w.stem));
    // 3×3 windows, stride 2, padding 1 (padding never wins: MaxPool ignores it)
    x = g.op("MaxPool", {x}, {attr("kernel_shape", std::vector<int64_t>{3, 3}), attr("strides", std::vector<int64_t>{2, 2}),
                              attr("pads", std::vector<int64_t>{1, 1, 1, 1})});
    for (size_t i = 0; i < w.residual_units.size(); ++i) {
        g.set_scope("/unit." + std::to_string(i));
        const ResidualUnit& u = w.residual_units[i];
        std::string path = x;
        for (const ConvUnit& conv : u.path) path = conv_unit(e, conv, path, same_pads(conv));
        const std::string shortcut = u.shortcut ? conv_unit(e, *u.shortcut, x, same_pads(*u.shortcut)) : x;
        x = e.activation(act, g.op("Add", {path, shortcut}));
    }
    g.set_scope("/head");
    const std::string pooled = g.op("Flatten", {g.op("GlobalAveragePool", {x})}, {attr("axis", int64_t{1})});  // [B, C]
    g.op_to("Identity", {e.linear(w.classifier, pooled)}, "logits");
}

void efficientnet_graph(Emitter& e, const EncoderConfig& c, const EncoderWeights& w, ops::Activation act) {
    GraphBuilder& g = e.g;
    const std::string B = "batch_size";
    g.input("pixel_values", kF32, {B, c.num_channels, c.image_size, c.image_size});
    g.output("logits", kF32, {B, c.num_labels});

    // stem: ZeroPad2d((0, 1, 0, 1)) then a valid 3×3 stride-2 conv, i.e. pads {top 0, left 0, bottom 1, right 1}
    g.set_scope("/stem");
    std::string x = e.activation(act, e.conv(w.stem->conv, "pixel_values", w.stem->in_channels, 3, 2, {0, 0, 1, 1}));
    x = g.op("Transpose", {x}, {attr("perm", kToNhwc)});  // [B, H, W, C]
    const std::vector<int64_t> spatial{1, 2};
    for (size_t i = 0; i < w.mbconv_units.size(); ++i) {
        g.set_scope("/block." + std::to_string(i));
        const MBConvUnit& u = w.mbconv_units[i];
        const DepthwiseConvUnit& d = u.depthwise;
        const int64_t C = d.channels, k = d.kernel;
        std::string h = u.expand ? e.activation(act, e.linear(u.expand->conv, x)) : x;
        // depthwise: weight [k·k, C] tap-major → [C, 1, k, k]
        const std::vector<float> taps = tensor_f32(d.weight);
        std::vector<float> weight(static_cast<size_t>(C * k * k));
        for (int64_t ch = 0; ch < C; ++ch)
            for (int64_t t = 0; t < k * k; ++t) weight[static_cast<size_t>(ch * k * k + t)] = taps[static_cast<size_t>(t * C + ch)];
        const std::string conv = g.op("Conv", {g.op("Transpose", {h}, {attr("perm", kToNchw)}), g.f32(d.name + ".weight", {C, 1, k, k}, weight),
                                               g.f32(d.name + ".bias", {C}, tensor_f32(d.bias))},
                                      {attr("group", C), attr("kernel_shape", std::vector<int64_t>{k, k}),
                                       attr("strides", std::vector<int64_t>{d.stride, d.stride}),
                                       attr("pads", std::vector<int64_t>{d.pad_top, d.pad_left, d.pad_bottom, d.pad_right})});
        ++e.lowered["Conv (depthwise)"];
        h = g.op("Transpose", {e.activation(act, conv)}, {attr("perm", kToNhwc)});
        // squeeze-and-excitation: gate [B, C] = σ(expand(act(reduce(channel means)))), each channel scaled by its gate
        const std::string means = e.reduce("ReduceMean", h, spatial, false);
        const std::string gate = g.op("Sigmoid", {e.linear(u.se_expand, e.activation(act, e.linear(u.se_reduce, means)))});
        h = g.op("Mul", {h, g.op("Unsqueeze", {gate, g.const_i64({1, 2})})});
        h = e.linear(u.project.conv, h);
        x = u.residual ? g.op("Add", {h, x}) : h;
    }
    g.set_scope("/head");
    const std::string top = e.activation(act, e.linear(w.top->conv, x));
    const std::string pooled = e.reduce(c.efficientnet.max_pooling ? "ReduceMax" : "ReduceMean", top, spatial, false);  // [B, hidden_dim]
    g.op_to("Identity", {e.linear(w.classifier, pooled)}, "logits");
}

}  // namespace cq::onnx_export
