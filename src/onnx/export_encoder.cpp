// ONNX graphs of the encoder classifiers: BERT / RoBERTa / DistilBERT (input_ids, attention_mask, token_type_ids →
// logits, as Optimum names them) and ViT (pixel_values, already normalised → logits). The same sequence of layers
// as src/models/bert.cpp and vit.cpp, including HF's additive finfo.min padding mask.
#include <limits>

#include "cq/error.h"
#include "cq/w8a8.h"
#include "onnx/export_common.h"
#include "onnx/export_families.h"
#include "ops/encoder_ops.h"

namespace cq::onnx_export {

namespace {

constexpr int32_t kF32 = onnx_ir::kFloat, kI64 = onnx_ir::kInt64;

struct EncoderGraph {
    Emitter& e;
    const EncoderConfig& c;
    const EncoderWeights& w;
    GraphBuilder& g() { return e.g; }

    std::string activate(ops::Activation act, const std::string& x) {
        switch (act) {
        case ops::Activation::gelu_erf: return e.gelu_erf(x);
        case ops::Activation::gelu_tanh: return e.gelu_tanh(x);
        case ops::Activation::relu: return g().op("Relu", {x});
        case ops::Activation::tanh: return g().op("Tanh", {x});
        }
        return x;
    }

    std::string self_attention(const EncoderBlock& b, const std::string& x, const std::string& mask_add) {
        const int64_t hd = c.hidden / c.n_head, H = b.n_head > 0 ? b.n_head : c.n_head;  // H: heads the block keeps
        const std::string q = e.split_heads(e.linear(b.q, x), H, hd);
        const std::string k = e.split_heads(e.linear(b.k, x), H, hd);
        const std::string v = e.split_heads(e.linear(b.v, x), H, hd);
        return e.linear(b.attn_out, e.merge_heads(e.attention(q, k, v, hd, mask_add, ""), H, hd));
    }

    std::string head(const std::string& cls) {
        g().set_scope("/head");
        if (w.pooler) {
            const std::string pooled = g().op("Tanh", {e.linear(*w.pooler, cls)});
            return e.linear(w.classifier, pooled);
        }
        if (w.pre_classifier) {
            const std::string h = e.linear(*w.pre_classifier, cls);
            return e.linear(w.classifier, g().op(c.family == EncoderFamily::distilbert ? "Relu" : "Tanh", {h}));
        }
        return e.linear(w.classifier, cls);
    }

    void text(ops::Activation act) {
        const std::string B = "batch_size", S = "sequence_length";
        const int64_t D = c.hidden;
        g().input("input_ids", kI64, {B, S});
        g().input("attention_mask", kI64, {B, S});
        if (w.type_embd) g().input("token_type_ids", kI64, {B, S});
        g().output("logits", kF32, {B, c.num_labels});

        g().set_scope("/embed");
        std::string x = g().op("Gather", {g().f32("embeddings.word_embeddings.weight", {c.vocab, D}, tensor_f32(w.word_embd)), "input_ids"});
        if (w.type_embd)
            x = g().op("Add", {x, g().op("Gather", {g().f32("embeddings.token_type_embeddings.weight", {c.type_vocab, D}, tensor_f32(*w.type_embd)),
                                                  "token_type_ids"})});
        std::string positions;
        if (c.family == EncoderFamily::roberta) {
            // HF's create_position_ids_from_input_ids: real tokens count from padding_idx + 1, padding gets padding_idx
            const std::string pad = g().scalar_i64(c.pad_token_id);
            const std::string real = g().op("Cast", {g().op("Not", {g().op("Equal", {"input_ids", pad})})}, {attr("to", int64_t{kI64})});
            const std::string count = g().op("CumSum", {real, g().scalar_i64(1)});
            positions = g().op("Add", {g().op("Mul", {count, real}), pad});
        } else {
            const std::string S1 = g().op("Shape", {"input_ids"}, {attr("start", int64_t{1}), attr("end", int64_t{2})});
            positions = g().op("Range", {g().scalar_i64(0), g().op("Squeeze", {S1, g().const_i64({0})}), g().scalar_i64(1)});
        }
        x = g().op("Add", {x, g().op("Gather", {g().f32("embeddings.position_embeddings.weight", {c.max_positions, D}, tensor_f32(w.pos_embd)), positions})});
        x = e.layer_norm(x, w.embd_norm, "embeddings.LayerNorm", c.norm_eps);

        // [B, 1, 1, S]: 0 for real keys, the lowest float for padding (HF's extended attention mask)
        const std::string m = g().op("Cast", {"attention_mask"}, {attr("to", int64_t{kF32})});
        const std::string mask_add = g().op("Unsqueeze", {g().op("Mul", {g().op("Sub", {g().scalar_f32(1.0f), m}),
                                                                          g().scalar_f32(std::numeric_limits<float>::lowest())}),
                                                          g().const_i64({1, 2})});
        for (size_t l = 0; l < w.blocks.size(); ++l) {
            g().set_scope("/layer." + std::to_string(l));
            const EncoderBlock& b = w.blocks[l];
            x = e.layer_norm(g().op("Add", {x, self_attention(b, x, mask_add)}), b.attn_norm, b.attn_norm.name, c.norm_eps);
            const std::string f = e.linear(b.ffn_out, activate(act, e.linear(b.ffn_in, x)));
            x = e.layer_norm(g().op("Add", {x, f}), b.ffn_norm, b.ffn_norm.name, c.norm_eps);
        }
        const std::string cls = g().op("Gather", {x, g().scalar_i64(0)}, {attr("axis", int64_t{1})});
        g().op_to("Identity", {head(cls)}, "logits");
    }

    void vision(ops::Activation act) {
        const std::string B = "batch_size";
        const int64_t D = c.hidden, P = c.patch_size, C = c.num_channels, H = c.image_size;
        g().input("pixel_values", kF32, {B, C, H, H});
        g().output("logits", kF32, {B, c.num_labels});

        g().set_scope("/embed");
        const Linear& pe = w.patch_embd;
        std::vector<std::string> conv_in{"pixel_values", g().f32(pe.name + ".weight", {D, C, P, P}, linear_weight_f32(pe))};
        if (pe.bias || pe.int8) conv_in.push_back(g().f32(pe.name + ".bias", {D}, pe.int8 ? pe.int8->bias : pe.bias->to_float()));
        const std::string conv = g().op("Conv", conv_in, {attr("kernel_shape", std::vector<int64_t>{P, P}), attr("strides", std::vector<int64_t>{P, P})});
        // [B, D, side, side] → [B, patches, D]
        const std::string patches = g().op("Transpose", {g().op("Reshape", {conv, g().const_i64({0, D, -1})})},
                                           {attr("perm", std::vector<int64_t>{0, 2, 1})});
        const std::string batch = g().op("Shape", {"pixel_values"}, {attr("start", int64_t{0}), attr("end", int64_t{1})});
        const std::string cls_shape = g().op("Concat", {batch, g().const_i64({1, D})}, {attr("axis", int64_t{0})});
        const std::string cls = g().op("Expand", {g().f32("embeddings.cls_token", {1, 1, D}, tensor_f32(*w.cls_token)), cls_shape});
        std::string x = g().op("Concat", {cls, patches}, {attr("axis", int64_t{1})});
        x = g().op("Add", {x, g().f32("embeddings.position_embeddings", {1, c.max_positions, D}, tensor_f32(w.pos_embd))});

        for (size_t l = 0; l < w.blocks.size(); ++l) {
            g().set_scope("/layer." + std::to_string(l));
            const EncoderBlock& b = w.blocks[l];
            const std::string h = g().op("Add", {x, self_attention(b, e.layer_norm(x, b.attn_norm, b.attn_norm.name, c.norm_eps), "")});
            const std::string hn = e.layer_norm(h, b.ffn_norm, b.ffn_norm.name, c.norm_eps);
            x = g().op("Add", {h, e.linear(b.ffn_out, activate(act, e.linear(b.ffn_in, hn)))});
        }
        g().set_scope("/final");
        const std::string xn = e.layer_norm(x, *w.final_norm, w.final_norm->name.empty() ? "layernorm" : w.final_norm->name, c.norm_eps);
        g().op_to("Identity", {head(g().op("Gather", {xn, g().scalar_i64(0)}, {attr("axis", int64_t{1})}))}, "logits");
    }
};

}  // namespace

void export_encoder(const EncoderModel& model, const std::string& path, const OnnxExportOptions& options, OnnxExportReport& report) {
    const EncoderConfig& c = model.config();
    const auto act = ops::activation_from_name(c.hidden_act);
    if (!act) throw Unsupported("[onnx] " + c.architecture + ": activation '" + c.hidden_act + "'");
    // The graphs below are BERT / RoBERTa / DistilBERT's and ViT's; every other family (DeiT's distillation token,
    // LayoutLM's boxes, ResNet's convolutions, CLIP's towers, DeBERTa's disentangled attention) has no ONNX form yet, and a
    // BERT or ViT graph of its weights would crash or silently compute something else: an allow-list, not a deny-list.
    const bool graph_exists = c.family == EncoderFamily::bert || c.family == EncoderFamily::roberta ||
                              c.family == EncoderFamily::distilbert || c.family == EncoderFamily::vit;
    if (!graph_exists || c.feature_extraction || c.token_classification)
        throw Unsupported("[onnx] " + c.architecture + " has no ONNX export yet (exported: BERT, RoBERTa, DistilBERT sequence classifiers, ViT)");
    if (options.progress) options.progress("graph");
    onnx_ir::Model m = new_model(options, "cq_" + c.architecture,
                                   "cq export (" + c.architecture + ", " + onnx_format_name(options.format) + ")");
    GraphBuilder g(m.graph);
    Emitter e{g, options, {}};
    EncoderGraph graph{e, c, model.weights()};
    if (model.is_vision()) graph.vision(*act);
    else graph.text(*act);
    OnnxExportFile file;
    file.graph = "model";
    if (options.progress) options.progress("writing " + path);
    file.linears = e.lowered;
    write_model(m, path, options, file);
    report.files.push_back(std::move(file));
}

}  // namespace cq::onnx_export
