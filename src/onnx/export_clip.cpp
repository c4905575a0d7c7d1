// ONNX graphs of CLIP (src/models/clip.cpp's forward): the joint graph Optimum exports for CLIPModel (input_ids,
// pixel_values, attention_mask → logits_per_image, logits_per_text, text_embeds, image_embeds) and each tower alone
// (input_ids, attention_mask → text_embeds; pixel_values → image_embeds), whose embeddings equal the joint graph's:
// zero-shot classification runs the joint graph, retrieval embeds texts and images apart (as transformers.js's
// text_model / vision_model files). The embeddings are L2-normalised, as CLIPModel returns them.
#include "models/encoder_families.h"
#include "onnx/export_encoder_graphs.h"

namespace cq::onnx_export {

namespace {

constexpr int32_t kF32 = onnx_ir::kFloat, kI64 = onnx_ir::kInt64;

// input_ids, attention_mask [B, S] → text_embeds [B, projection_dim]
std::string text_tower(Emitter& e, const EncoderConfig& c, const EncoderWeights& w) {
    GraphBuilder& g = e.g;
    const EncoderConfig t = clip_text_tower(c);
    const int64_t D = t.hidden;
    g.set_scope("/text/embed");
    const std::string pos = e.positions("input_ids", 1);  // [S]
    std::string x = g.op("Gather", {g.f32("text_model.embeddings.token_embedding.weight", {t.vocab, D}, tensor_f32(w.word_embd)), "input_ids"});
    x = g.op("Add", {x, g.op("Gather", {g.f32("text_model.embeddings.position_embedding.weight", {t.max_positions, D}, tensor_f32(*w.text_pos_embd)),
                                        pos})});
    // [B, 1, S, S]: query i attends to key j where j ≤ i (causal) and j is a real token
    const std::string causal = g.op("GreaterOrEqual", {g.op("Unsqueeze", {pos, g.const_i64({1})}), g.op("Unsqueeze", {pos, g.const_i64({0})})});
    const std::string real = g.op("Unsqueeze", {g.op("Cast", {"attention_mask"}, {attr("to", int64_t{onnx_ir::kBool})}), g.const_i64({1, 2})});
    const std::string mask = g.op("And", {causal, real});
    const ops::Activation act = *ops::activation_from_name(t.hidden_act);
    for (size_t l = 0; l < w.text_blocks.size(); ++l) {
        g.set_scope("/text/layer." + std::to_string(l));
        x = e.pre_ln_block(w.text_blocks[l], t, act, x, "", mask);
    }
    g.set_scope("/text/pool");
    // the pooled token: the first eos_token_id of each sequence, or for the legacy eos_token_id 2 the first largest id
    const std::string ids = g.op("Cast", {"input_ids"}, {attr("to", int64_t{onnx_ir::kInt32})});
    const std::string key = t.clip_text.eos_token_id == 2
                                ? ids
                                : g.op("Cast", {g.op("Equal", {ids, g.typed("text_model.eos_token_id", onnx_ir::kInt32, {}, &t.clip_text.eos_token_id, 4)})},
                                       {attr("to", int64_t{onnx_ir::kInt32})});
    const std::string at = g.op("ArgMax", {key}, {attr("axis", int64_t{1}), attr("keepdims", int64_t{1})});  // [B, 1]
    const std::string pooled = g.op("GatherND", {x, at}, {attr("batch_dims", int64_t{1})});                    // [B, D]
    const std::string normed = e.layer_norm(pooled, *w.text_final_norm, "text_model.final_layer_norm", t.norm_eps);
    return e.l2_normalize(e.linear(*w.text_projection, normed));
}

// pixel_values [B, C, H, W] → image_embeds [B, projection_dim]
std::string vision_tower(Emitter& e, const EncoderConfig& c, const EncoderWeights& w) {
    GraphBuilder& g = e.g;
    g.set_scope("/vision/embed");
    std::string x = vit_tokens(e, c, w, "pixel_values");
    x = e.layer_norm(x, *w.pre_norm, "vision_model.pre_layrnorm", c.norm_eps);
    const ops::Activation act = *ops::activation_from_name(c.hidden_act);
    for (size_t l = 0; l < w.blocks.size(); ++l) {
        g.set_scope("/vision/layer." + std::to_string(l));
        x = e.pre_ln_block(w.blocks[l], c, act, x, "", "");
    }
    g.set_scope("/vision/pool");
    const std::string cls = g.op("Gather", {x, g.scalar_i64(0)}, {attr("axis", int64_t{1})});
    const std::string normed = e.layer_norm(cls, *w.final_norm, "vision_model.post_layernorm", c.norm_eps);
    return e.l2_normalize(e.linear(*w.visual_projection, normed));
}

}  // namespace

void clip_graph(Emitter& e, const EncoderConfig& c, const EncoderWeights& w, ClipGraph which) {
    GraphBuilder& g = e.g;
    const std::string Bt = "text_batch_size", Bi = "image_batch_size", S = "sequence_length";
    const int64_t E = c.clip_text.projection_dim, C = c.num_channels, H = c.image_size;
    const bool text = which != ClipGraph::vision, vision = which != ClipGraph::text;
    if (text) g.input("input_ids", kI64, {Bt, S});
    if (vision) g.input("pixel_values", kF32, {Bi, C, H, H});
    if (text) g.input("attention_mask", kI64, {Bt, S});
    if (which == ClipGraph::joint) {
        g.output("logits_per_image", kF32, {Bi, Bt});
        g.output("logits_per_text", kF32, {Bt, Bi});
    }
    if (text) g.output("text_embeds", kF32, {Bt, E});
    if (vision) g.output("image_embeds", kF32, {Bi, E});

    const std::string text_embeds = text ? text_tower(e, c, w) : "", image_embeds = vision ? vision_tower(e, c, w) : "";
    if (text) g.op_to("Identity", {text_embeds}, "text_embeds");
    if (vision) g.op_to("Identity", {image_embeds}, "image_embeds");
    if (which != ClipGraph::joint) return;
    g.set_scope("/logits");
    // logits_per_text = exp(logit_scale) · text · imageᵀ; logits_per_image its transpose (transformers' order)
    const std::string dots = g.op("MatMul", {text_embeds, g.op("Transpose", {image_embeds}, {attr("perm", std::vector<int64_t>{1, 0})})});
    const std::string per_text = g.op("Mul", {dots, g.f32("logit_scale_exp", {}, std::span<const float>(&w.logit_scale, 1))});
    g.op_to("Identity", {per_text}, "logits_per_text");
    g.op_to("Transpose", {per_text}, "logits_per_image", {attr("perm", std::vector<int64_t>{1, 0})});
}

}  // namespace cq::onnx_export
