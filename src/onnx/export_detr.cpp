// ONNX graph of DETR (DetrForObjectDetection, transformers' ResNet backbone): pixel_values [B, C, H, W], already
// normalised as DetrImageProcessor gives them, → logits [B, Q, num_labels + 1] and pred_boxes [B, Q, 4], as Optimum
// names them. The same layers as src/models/detr.cpp: the ResNet backbone (BatchNorm folded into its convs, lowered as
// export_cnn.cpp lowers ResNet's) up to the feature stage, input_projection over NHWC rows, the 2-D position embedding
// built in the graph for the feature map's size (sine, or the learned row / column tables), post-LN encoder and decoder
// layers, the heads. Every pixel is real: there is no pixel_mask input (a padded batch needs cq's own forward).
#include <cmath>
#include <numbers>

#include "cq/error.h"
#include "models/detr_internal.h"
#include "onnx/export_common.h"
#include "onnx/export_families.h"

namespace cq::onnx_export {

namespace {

constexpr int32_t kF32 = onnx_ir::kFloat;

std::string conv_unit(Emitter& e, const ConvUnit& u, const std::string& x) {
    const int64_t p = u.kernel / 2;  // "same" padding k/2, as resnet.cpp's run_conv
    std::string y = e.conv(u.conv, x, u.in_channels, u.kernel, u.stride, {p, p, p, p});
    if (u.activation.empty()) return y;
    const auto act = ops::activation_from_name(u.activation);
    if (!act) throw Unsupported("[onnx] " + u.conv.name + ": activation '" + u.activation + "'");
    return e.activation(*act, y);
}

// The backbone: stem conv, 3×3 stride-2 max pool (pad 1), residual units act(path(x) + shortcut(x)); [B, F, h, w].
std::string backbone(Emitter& e, const DetrModel::State& s, const std::string& pixels) {
    GraphBuilder& g = e.g;
    const EncoderWeights& w = s.backbone;
    g.set_scope("/backbone/embedder");
    std::string x = conv_unit(e, *w.stem, pixels);
    x = g.op("MaxPool", {x}, {attr("kernel_shape", std::vector<int64_t>{3, 3}), attr("strides", std::vector<int64_t>{2, 2}),
                              attr("pads", std::vector<int64_t>{1, 1, 1, 1})});
    for (size_t i = 0; i < w.residual_units.size(); ++i) {
        g.set_scope("/backbone/unit." + std::to_string(i));
        const ResidualUnit& u = w.residual_units[i];
        std::string path = x;
        for (const ConvUnit& conv : u.path) path = conv_unit(e, conv, path);
        const std::string shortcut = u.shortcut ? conv_unit(e, *u.shortcut, x) : x;
        x = e.activation(s.backbone_act, g.op("Add", {path, shortcut}));
    }
    return x;
}

// [n, half] from positions [n] (int64): the sine embedding of one axis of an unpadded map, DetrSinePositionEmbedding's
// (p + 1) / (n + 1e-6) · 2π / dim_t, sin on even channels and cos on odd ones (the cumulative sum of an all-ones mask is
// p + 1, its last value n).
std::string sine_axis(GraphBuilder& g, const std::string& positions, const std::string& n, const std::vector<float>& dim_t,
                      const std::vector<uint8_t>& even, const std::string& name) {
    const int64_t half = static_cast<int64_t>(dim_t.size());
    const std::string cum = g.op("Cast", {g.op("Add", {positions, g.scalar_i64(1)})}, {attr("to", int64_t{kF32})});
    const std::string last = g.op("Add", {g.op("Cast", {n}, {attr("to", int64_t{kF32})}), g.scalar_f32(1e-6f)});
    const std::string embed = g.op("Mul", {g.op("Div", {cum, last}), g.scalar_f32(static_cast<float>(2 * std::numbers::pi))});
    const std::string v = g.op("Div", {g.op("Unsqueeze", {embed, g.const_i64({1})}), g.f32(name + ".dim_t", {half}, dim_t)});
    const std::string is_even = g.typed(name + ".even", onnx_ir::kBool, {half}, even.data(), even.size());
    return g.op("Where", {is_even, g.op("Sin", {v}), g.op("Cos", {v})});
}

// The position embedding of the feature map `fmap` [B, F, h, w] as [1, h·w, D]: channels [0, D/2) from the row (y),
// [D/2, D) from the column (x) — sine, or the learned tables' column ‖ row, as detr.cpp builds them.
std::string position_embedding(Emitter& e, const DetrConfig& c, const DetrModel::State& s, const std::string& fmap) {
    GraphBuilder& g = e.g;
    g.set_scope("/position_embedding");
    const int64_t D = c.d_model, half = D / 2;
    const std::string ys = e.positions(fmap, 2), xs = e.positions(fmap, 3);
    const std::string h = g.op("Shape", {fmap}, {attr("start", int64_t{2}), attr("end", int64_t{3})});
    const std::string w = g.op("Shape", {fmap}, {attr("start", int64_t{3}), attr("end", int64_t{4})});
    std::string row, col;  // [h, half], [w, half]
    if (c.learned_positions) {
        row = g.op("Gather", {g.f32("model.backbone.position_embedding.row_embeddings.weight", {c.learned_position_rows, half}, tensor_f32(s.row_embd)), ys});
        col = g.op("Gather", {g.f32("model.backbone.position_embedding.column_embeddings.weight", {c.learned_position_rows, half}, tensor_f32(s.col_embd)),
                              xs});
    } else {
        std::vector<float> dim_t(static_cast<size_t>(half));
        std::vector<uint8_t> even(static_cast<size_t>(half));
        for (int64_t i = 0; i < half; ++i) {
            dim_t[static_cast<size_t>(i)] = std::pow(10000.0f, static_cast<float>(2 * (i / 2)) / static_cast<float>(half));
            even[static_cast<size_t>(i)] = i % 2 == 0;
        }
        row = sine_axis(g, ys, g.op("Squeeze", {h, g.const_i64({0})}), dim_t, even, "position_embedding.row");
        col = sine_axis(g, xs, g.op("Squeeze", {w, g.const_i64({0})}), dim_t, even, "position_embedding.column");
    }
    // learned: column first (x ‖ y); sine: y first (pos_y ‖ pos_x)
    const std::string shape = g.op("Concat", {h, w, g.const_i64({half})}, {attr("axis", int64_t{0})});
    const std::string row_map = g.op("Expand", {g.op("Unsqueeze", {row, g.const_i64({1})}), shape});  // [h, w, half]
    const std::string col_map = g.op("Expand", {g.op("Unsqueeze", {col, g.const_i64({0})}), shape});
    const std::string pos = c.learned_positions ? g.op("Concat", {col_map, row_map}, {attr("axis", int64_t{-1})})
                                                : g.op("Concat", {row_map, col_map}, {attr("axis", int64_t{-1})});
    return g.op("Reshape", {pos, g.const_i64({1, -1, D})});
}

// Multi-head attention with the layer's projections: q from q_in, k from k_in, v from v_in ([B, T, D] each) → [B, Tq, D].
std::string attention(Emitter& e, const Linear& q, const Linear& k, const Linear& v, const Linear& out, const std::string& q_in,
                      const std::string& k_in, const std::string& v_in, int64_t D, int64_t heads) {
    const int64_t hd = D / heads;
    const std::string qh = e.split_heads(e.linear(q, q_in), heads, hd);
    const std::string kh = e.split_heads(e.linear(k, k_in), heads, hd);
    const std::string vh = e.split_heads(e.linear(v, v_in), heads, hd);
    return e.linear(out, e.merge_heads(e.attention(qh, kh, vh, hd, "", ""), heads, hd));
}

// x: [B, T, D] → LN(x + fc2(act(fc1 x)))
std::string ffn(Emitter& e, const Seq2SeqLayer& l, ops::Activation act, const std::string& x, float eps) {
    const std::string f = e.linear(l.ffn_out, e.activation(act, e.linear(l.ffn_in, x)));
    return e.layer_norm(e.g.op("Add", {x, f}), l.ffn_norm, l.ffn_norm.name, eps);
}

void detr_graph(Emitter& e, const DetrModel& model) {
    GraphBuilder& g = e.g;
    const DetrConfig& c = model.config();
    const DetrModel::State& s = model.state();
    const std::string B = "batch_size";
    const int64_t D = c.d_model, Q = c.num_queries, L = c.num_labels + 1;
    const float eps = c.layer_norm_eps;
    g.input("pixel_values", kF32, {B, c.backbone.num_channels, "height", "width"});
    g.output("logits", kF32, {B, Q, L});
    g.output("pred_boxes", kF32, {B, Q, 4});

    const std::string fmap = backbone(e, s, "pixel_values");
    const std::string pos = position_embedding(e, c, s, fmap);
    // feature rows [B, h·w, F] (NHWC) → input_projection
    g.set_scope("/input_projection");
    const int64_t F = s.input_projection.n_in();
    const std::string rows = g.op("Transpose", {g.op("Reshape", {fmap, g.const_i64({0, F, -1})})}, {attr("perm", std::vector<int64_t>{0, 2, 1})});
    std::string enc = e.linear(s.input_projection, rows);

    for (size_t i = 0; i < s.encoder.size(); ++i) {
        g.set_scope("/encoder/layers." + std::to_string(i));
        const Seq2SeqLayer& l = s.encoder[i];
        const std::string qk = g.op("Add", {enc, pos});
        const std::string a = attention(e, l.q, l.k, l.v, l.attn_out, qk, qk, enc, D, c.encoder_heads);
        enc = e.layer_norm(g.op("Add", {enc, a}), l.attn_norm, l.attn_norm.name, eps);
        enc = ffn(e, l, s.act, enc, eps);
    }

    // decoder over zero object queries [B, Q, D]; query_pos [1, Q, D] broadcast over the batch
    g.set_scope("/decoder");
    const std::string qpos = g.f32("model.query_position_embeddings.weight", {1, Q, D}, tensor_f32(s.query_pos));
    const std::string batch = g.op("Shape", {"pixel_values"}, {attr("start", int64_t{0}), attr("end", int64_t{1})});
    std::string dec = g.op("Expand", {g.scalar_f32(0.0f), g.op("Concat", {batch, g.const_i64({Q, D})}, {attr("axis", int64_t{0})})});
    const std::string enc_pos = g.op("Add", {enc, pos});
    for (size_t i = 0; i < s.decoder.size(); ++i) {
        g.set_scope("/decoder/layers." + std::to_string(i));
        const Seq2SeqLayer& l = s.decoder[i];
        const std::string qk = g.op("Add", {dec, qpos});
        const std::string a = attention(e, l.q, l.k, l.v, l.attn_out, qk, qk, dec, D, c.decoder_heads);
        dec = e.layer_norm(g.op("Add", {dec, a}), l.attn_norm, l.attn_norm.name, eps);
        const std::string cq = g.op("Add", {dec, qpos});
        const std::string x = attention(e, *l.cross_q, *l.cross_k, *l.cross_v, *l.cross_out, cq, enc_pos, enc, D, c.decoder_heads);
        dec = e.layer_norm(g.op("Add", {dec, x}), *l.cross_norm, l.cross_norm->name, eps);
        dec = ffn(e, l, s.act, dec, eps);
        if (c.auxiliary_loss) dec = e.layer_norm(dec, s.decoder_norm, s.decoder_norm.name, eps);
    }
    dec = e.layer_norm(dec, s.decoder_norm, s.decoder_norm.name, eps);

    g.set_scope("/heads");
    g.op_to("Identity", {e.linear(s.class_head, dec)}, "logits");
    std::string b = g.op("Relu", {e.linear(s.bbox[0], dec)});
    b = g.op("Relu", {e.linear(s.bbox[1], b)});
    g.op_to("Sigmoid", {e.linear(s.bbox[2], b)}, "pred_boxes");
}

}  // namespace

void export_detr(const DetrModel& model, const std::string& path, const OnnxExportOptions& options, OnnxExportReport& report) {
    if (options.progress) options.progress("graph model");
    const std::string& arch = model.config().architecture;
    onnx_ir::Model m = new_model(options, "cq_" + arch, "cq export (" + arch + ", " + onnx_format_name(options.format) + ")");
    GraphBuilder g(m.graph);
    Emitter e{g, options, {}};
    detr_graph(e, model);
    OnnxExportFile file;
    file.graph = "model";
    file.linears = e.lowered;
    if (options.progress) options.progress("writing " + path);
    write_model(m, path, options, file);
    report.files.push_back(std::move(file));
}

}  // namespace cq::onnx_export
