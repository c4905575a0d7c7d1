// ONNX graphs of ViT and DeiT (pixel_values, already normalised → logits): the patch conv, the CLS token (DeiT: then
// its distillation token), learned positions, pre-LN blocks, the final LayerNorm and the head on the CLS state; DeiT
// with teacher averages the CLS head's and the distillation head's logits. The same sequence of layers as
// src/models/vit.cpp.
#include "onnx/export_encoder_graphs.h"

namespace cq::onnx_export {

std::string vit_tokens(Emitter& e, const EncoderConfig& c, const EncoderWeights& w, const std::string& pixel_values) {
    GraphBuilder& g = e.g;
    const int64_t D = c.hidden, P = c.patch_size, C = c.num_channels;
    // the patch conv: p×p, stride p (a W8A8 one lowers as any quantized conv)
    const std::string conv = e.conv(w.patch_embd, pixel_values, C, P, P, {0, 0, 0, 0});
    // [B, D, side, side] → [B, patches, D]
    const std::string patches = g.op("Transpose", {g.op("Reshape", {conv, g.const_i64({0, D, -1})})}, {attr("perm", std::vector<int64_t>{0, 2, 1})});
    const std::string batch = g.op("Shape", {pixel_values}, {attr("start", int64_t{0}), attr("end", int64_t{1})});
    const std::string cls_shape = g.op("Concat", {batch, g.const_i64({1, D})}, {attr("axis", int64_t{0})});
    // the tokens in front of the patches: CLS (DeiT: then the distillation token), each broadcast over the batch
    std::vector<std::string> tokens{g.op("Expand", {g.f32("embeddings.cls_token", {1, 1, D}, tensor_f32(*w.cls_token)), cls_shape})};
    if (w.dist_token) tokens.push_back(g.op("Expand", {g.f32("embeddings.distillation_token", {1, 1, D}, tensor_f32(*w.dist_token)), cls_shape}));
    tokens.push_back(patches);
    const std::string x = g.op("Concat", tokens, {attr("axis", int64_t{1})});
    return g.op("Add", {x, g.f32("embeddings.position_embeddings", {1, c.max_positions, D}, tensor_f32(w.pos_embd))});
}

void vit_graph(Emitter& e, const EncoderConfig& c, const EncoderWeights& w, ops::Activation act) {
    GraphBuilder& g = e.g;
    const std::string B = "batch_size";
    const int64_t C = c.num_channels, H = c.image_size;
    g.input("pixel_values", onnx_ir::kFloat, {B, C, H, H});
    g.output("logits", onnx_ir::kFloat, {B, c.num_labels});

    g.set_scope("/embed");
    std::string x = vit_tokens(e, c, w, "pixel_values");

    for (size_t l = 0; l < w.blocks.size(); ++l) {
        g.set_scope("/layer." + std::to_string(l));
        x = e.pre_ln_block(w.blocks[l], c, act, x, "", "");
    }
    g.set_scope("/final");
    const std::string xn = e.layer_norm(x, *w.final_norm, w.final_norm->name.empty() ? "layernorm" : w.final_norm->name, c.norm_eps);
    const auto token = [&](int64_t t) { return g.op("Gather", {xn, g.scalar_i64(t)}, {attr("axis", int64_t{1})}); };  // [B, D]
    const std::string cls = token(0), dist_token = w.dist_classifier ? token(1) : "";
    g.set_scope("/head");
    std::string logits = e.linear(w.classifier, cls);
    if (w.dist_classifier) {
        // (cls_classifier(h_CLS) + distillation_classifier(h_dist)) / 2, as transformers computes it
        const std::string dist = e.linear(*w.dist_classifier, dist_token);
        logits = g.op("Div", {g.op("Add", {logits, dist}), g.scalar_f32(2.0f)});
    }
    g.op_to("Identity", {logits}, "logits");
}

}  // namespace cq::onnx_export
