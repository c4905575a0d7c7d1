// ONNX export of the encoder families: the allow-list of (family, head) pairs that have a graph, the dispatch to each
// family group's builder (export_vision.cpp, export_cnn.cpp, export_clip.cpp, export_deberta.cpp), and the BERT-family
// text graph: BERT / RoBERTa / DistilBERT / LayoutLM (input_ids, [bbox,] attention_mask, token_type_ids → logits, as
// Optimum names them), the same sequence of layers as src/models/bert.cpp, including HF's additive finfo.min padding mask.
#include <filesystem>
#include <string>

#include "cq/error.h"
#include "onnx/export_encoder_graphs.h"
#include "onnx/export_families.h"

namespace cq::onnx_export {

namespace {

constexpr int32_t kF32 = onnx_ir::kFloat, kI64 = onnx_ir::kInt64;

std::string head(Emitter& e, const EncoderConfig& c, const EncoderWeights& w, const std::string& cls) {
    GraphBuilder& g = e.g;
    g.set_scope("/head");
    if (w.pooler) {
        const std::string pooled = g.op("Tanh", {e.linear(*w.pooler, cls)});
        return e.linear(w.classifier, pooled);
    }
    if (w.pre_classifier) {
        const std::string h = e.linear(*w.pre_classifier, cls);
        return e.linear(w.classifier, g.op(c.family == EncoderFamily::distilbert ? "Relu" : "Tanh", {h}));
    }
    return e.linear(w.classifier, cls);
}

// `path` with `suffix` before its .onnx extension ("out/clip.onnx" → "out/clip_text_model.onnx").
std::string sibling_path(const std::string& path, const std::string& suffix) {
    const std::filesystem::path p(path);
    const std::string stem = p.extension() == ".onnx" ? p.stem().string() : p.filename().string();
    return (p.parent_path() / (stem + suffix + ".onnx")).string();
}

// The families and heads with a graph. An allow-list, not a deny-list: a family the loader learns later would
// otherwise reach a graph of another family's layers and crash, or silently compute something else.
bool graph_exists(const EncoderConfig& c) {
    switch (c.family) {
    case EncoderFamily::bert: return !c.token_classification;  // sequence classifier or bare encoder (BertModel)
    case EncoderFamily::roberta:
    case EncoderFamily::distilbert: return !c.token_classification && !c.feature_extraction;
    case EncoderFamily::layoutlm: return !c.feature_extraction;  // sequence and token classifiers
    case EncoderFamily::vit:
    case EncoderFamily::deit:
    case EncoderFamily::clip:
    case EncoderFamily::deberta_v2:
    case EncoderFamily::resnet:
    case EncoderFamily::efficientnet: return !c.token_classification && !c.feature_extraction;
    }
    return false;
}

}  // namespace

void bert_family_graph(Emitter& e, const EncoderConfig& c, const EncoderWeights& w, ops::Activation act) {
    GraphBuilder& g = e.g;
    const std::string B = "batch_size", S = "sequence_length";
    const int64_t D = c.hidden;
    g.input("input_ids", kI64, {B, S});
    if (w.x_pos_embd) g.input("bbox", kI64, {B, S, 4});
    g.input("attention_mask", kI64, {B, S});
    if (w.type_embd) g.input("token_type_ids", kI64, {B, S});
    if (c.feature_extraction) g.output("last_hidden_state", kF32, {B, S, D});
    else if (c.token_classification) g.output("logits", kF32, {B, S, c.num_labels});
    else g.output("logits", kF32, {B, c.num_labels});

    g.set_scope("/embed");
    std::string x = g.op("Gather", {g.f32("embeddings.word_embeddings.weight", {c.vocab, D}, tensor_f32(w.word_embd)), "input_ids"});
    if (w.type_embd)
        x = g.op("Add", {x, g.op("Gather", {g.f32("embeddings.token_type_embeddings.weight", {c.type_vocab, D}, tensor_f32(*w.type_embd)),
                                            "token_type_ids"})});
    std::string positions;
    if (c.family == EncoderFamily::roberta) {
        // HF's create_position_ids_from_input_ids: real tokens count from padding_idx + 1, padding gets padding_idx
        const std::string pad = g.scalar_i64(c.pad_token_id);
        const std::string real = g.op("Cast", {g.op("Not", {g.op("Equal", {"input_ids", pad})})}, {attr("to", int64_t{kI64})});
        const std::string count = g.op("CumSum", {real, g.scalar_i64(1)});
        positions = g.op("Add", {g.op("Mul", {count, real}), pad});
    } else {
        positions = e.positions("input_ids", 1);
    }
    x = g.op("Add", {x, g.op("Gather", {g.f32("embeddings.position_embeddings.weight", {c.max_positions, D}, tensor_f32(w.pos_embd)), positions})});
    if (w.x_pos_embd) {
        // LayoutLM: + x[x0] + y[y0] + x[x1] + y[y1] + h[y1 − y0] + w[x1 − x0], in bert.cpp's order
        const int64_t G = c.max_2d_positions;
        const std::string xt = g.f32("embeddings.x_position_embeddings.weight", {G, D}, tensor_f32(*w.x_pos_embd));
        const std::string yt = g.f32("embeddings.y_position_embeddings.weight", {G, D}, tensor_f32(*w.y_pos_embd));
        const std::string ht = g.f32("embeddings.h_position_embeddings.weight", {G, D}, tensor_f32(*w.h_pos_embd));
        const std::string wt = g.f32("embeddings.w_position_embeddings.weight", {G, D}, tensor_f32(*w.w_pos_embd));
        std::string coord[4];
        for (int i = 0; i < 4; ++i) coord[i] = g.op("Gather", {"bbox", g.scalar_i64(i)}, {attr("axis", int64_t{2})});  // [B, S]
        const std::string height = g.op("Sub", {coord[3], coord[1]}), width = g.op("Sub", {coord[2], coord[0]});
        for (const auto& [table, index] : {std::pair{xt, coord[0]}, std::pair{yt, coord[1]}, std::pair{xt, coord[2]}, std::pair{yt, coord[3]},
                                           std::pair{ht, height}, std::pair{wt, width}})
            x = g.op("Add", {x, g.op("Gather", {table, index})});
    }
    x = e.layer_norm(x, w.embd_norm, "embeddings.LayerNorm", c.norm_eps);

    const std::string mask_add = e.additive_key_mask("attention_mask");  // [B, 1, 1, S]
    for (size_t l = 0; l < w.blocks.size(); ++l) {
        g.set_scope("/layer." + std::to_string(l));
        const EncoderBlock& b = w.blocks[l];
        x = e.layer_norm(g.op("Add", {x, e.self_attention(b, c.hidden, c.n_head, x, mask_add, "")}), b.attn_norm, b.attn_norm.name, c.norm_eps);
        const std::string f = e.linear(b.ffn_out, e.activation(act, e.linear(b.ffn_in, x)));
        x = e.layer_norm(g.op("Add", {x, f}), b.ffn_norm, b.ffn_norm.name, c.norm_eps);
    }
    if (c.feature_extraction) return g.op_to("Identity", {x}, "last_hidden_state");
    if (c.token_classification) {
        g.set_scope("/head");
        return g.op_to("Identity", {e.linear(w.classifier, x)}, "logits");
    }
    const std::string cls = g.op("Gather", {x, g.scalar_i64(0)}, {attr("axis", int64_t{1})});
    g.op_to("Identity", {head(e, c, w, cls)}, "logits");
}

void export_encoder(const EncoderModel& model, const std::string& path, const OnnxExportOptions& options, OnnxExportReport& report) {
    const EncoderConfig& c = model.config();
    if (!graph_exists(c))
        throw Unsupported("[onnx] " + c.architecture +
                          " has no ONNX export yet (exported: BERT, RoBERTa, DistilBERT and DeBERTa v2/v3 sequence classifiers, a bare "
                          "BertModel, LayoutLM sequence and token classifiers, ViT, DeiT, ResNet, EfficientNet, CLIP)");
    const auto act = ops::activation_from_name(c.hidden_act);
    if (!act) throw Unsupported("[onnx] " + c.architecture + ": activation '" + c.hidden_act + "'");
    const EncoderWeights& w = model.weights();
    if (w.attention == AttentionPrecision::int8)
        report.notes.push_back("self-attention is f32 in the graph; cq runs this model's in INT8 (cq.w8a8.attention = int8), so outputs "
                               "differ by that rounding as well");

    // One graph per file: CLIP writes Optimum's joint graph and each tower alone (see export_clip.cpp); the others one.
    struct Part {
        std::string name, path;
        ClipGraph clip = ClipGraph::joint;
    };
    std::vector<Part> parts{{"model", path}};
    if (c.family == EncoderFamily::clip) {
        parts.push_back({"text_model", sibling_path(path, "_text_model"), ClipGraph::text});
        parts.push_back({"vision_model", sibling_path(path, "_vision_model"), ClipGraph::vision});
    }
    for (const Part& part : parts) {
        if (options.progress) options.progress("graph " + part.name);
        onnx_ir::Model m = new_model(options, "cq_" + c.architecture + (part.name == "model" ? "" : "_" + part.name),
                                     "cq export (" + c.architecture + ", " + onnx_format_name(options.format) + ")");
        GraphBuilder g(m.graph);
        Emitter e{g, options, {}};
        switch (c.family) {
        case EncoderFamily::vit:
        case EncoderFamily::deit: vit_graph(e, c, w, *act); break;
        case EncoderFamily::resnet: resnet_graph(e, c, w, *act); break;
        case EncoderFamily::efficientnet: efficientnet_graph(e, c, w, *act); break;
        case EncoderFamily::clip: clip_graph(e, c, w, part.clip); break;
        case EncoderFamily::deberta_v2: deberta_graph(e, c, w, *act); break;
        default: bert_family_graph(e, c, w, *act); break;
        }
        OnnxExportFile file;
        file.graph = part.name;
        if (options.progress) options.progress("writing " + part.path);
        file.linears = e.lowered;
        write_model(m, part.path, options, file);
        report.files.push_back(std::move(file));
    }
}

}  // namespace cq::onnx_export
