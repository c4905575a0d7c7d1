// ONNX graphs of the encoder–decoder generators (T5 v1.0 / v1.1, BART, BLIP captioning) in Optimum's layout, three files in
// one directory: encoder_model.onnx, decoder_model.onnx and decoder_with_past_model.onnx (see cq/onnx.h). The same sequence
// of layers as seq2seq.cpp's forward (and blip.cpp's vision tower), steered by the same Seq2SeqConfig flags.
#include <cmath>
#include <filesystem>

#include "cq/error.h"
#include "cq/seq2seq.h"
#include "models/seq2seq_internal.h"
#include "onnx/export_common.h"
#include "onnx/export_families.h"

namespace cq::onnx_export {

namespace {

namespace fs = std::filesystem;
constexpr int32_t kF32 = onnx_ir::kFloat, kI64 = onnx_ir::kInt64;
// symbolic dimensions, as Optimum names them
const char* const kBatch = "batch_size";
const char* const kSource = "encoder_sequence_length";
const char* const kTarget = "decoder_sequence_length";
const char* const kPast = "past_decoder_sequence_length";
const char* const kTotal = "total_decoder_sequence_length";

struct Seq2SeqGraph {
    Emitter& e;
    const Seq2SeqConfig& c;
    const Seq2SeqModel::State& s;

    GraphBuilder& g() { return e.g; }
    int64_t encoder_width() const { return c.encoder_width > 0 ? c.encoder_width : c.d_model; }

    // x: [B, T, d] → the config's norm (T5LayerNorm or LayerNorm), as norm_rows
    std::string norm(const std::string& x, const Norm& n) {
        return c.rms_norm ? e.rms_norm(x, n, n.name, c.norm_eps) : e.layer_norm(x, n, n.name, c.norm_eps);
    }

    // One residual sublayer: pre-norm (T5) x + f(norm(x)); post-LN (BART, BLIP) LN(x + f(x)).
    template <class F>
    std::string sublayer(const Norm& n, const std::string& x, F&& f) {
        if (c.pre_norm) return g().op("Add", {x, f(norm(x, n))});
        return norm(g().op("Add", {x, f(x)}), n);
    }

    // ffn_out(act(ffn_in x)), or ffn_out(act(ffn_gate x) · ffn_in x) when gated (T5 v1.1)
    std::string ffn(const Seq2SeqLayer& l, const std::string& x) {
        if (!l.ffn_gate) return e.linear(l.ffn_out, e.activation(s.act, e.linear(l.ffn_in, x)));
        const std::string gate = e.activation(s.act, e.linear(*l.ffn_gate, x));
        return e.linear(l.ffn_out, g().op("Mul", {e.linear(l.ffn_in, x), gate}));
    }

    // Queries from x through q_proj over keys / values k, v [B, H, L, hd] → out_proj [B, T, d]. Scores scaled by 1/√hd
    // (BART, BLIP) or not (T5); `bias` [1, H, T, L] added (T5's positions), `mask` (bool, true = attend) broadcast.
    std::string attend(const Linear& q_proj, const Linear& out_proj, const std::string& x, const std::string& k, const std::string& v, int64_t H,
                       const std::string& bias, const std::string& mask) {
        const int64_t hd = q_proj.n_out() / H;
        const std::string q = e.split_heads(e.linear(q_proj, x), H, hd);
        const float scale = c.scale_attention ? 1.0f / std::sqrt(static_cast<float>(hd)) : 1.0f;
        return e.linear(out_proj, e.merge_heads(e.attention_scaled(q, k, v, scale, bias, mask), H, hd));
    }

    // ids [B, T] at positions `pos` [T] → [B, T, d]: the shared embeddings (× embed_scale), learned positions at
    // pos + position_offset (BART, BLIP), the embedding LayerNorm (BART's layernorm_embedding, BLIP's).
    std::string embed(const Seq2SeqStack& stack, const std::string& ids, const std::string& pos) {
        std::string x = g().op("Gather", {g().f32(s.shared_name + ".weight", {c.vocab, c.d_model}, tensor_f32(s.shared)), ids});
        if (c.embed_scale != 1.0f) x = g().op("Mul", {x, g().scalar_f32(c.embed_scale)});
        if (stack.positions.ndim() > 0) {
            const std::string table = g().f32(stack.positions_name + ".weight", {stack.positions.dim(0), c.d_model}, tensor_f32(stack.positions));
            const std::string at = c.position_offset != 0 ? g().op("Add", {pos, g().scalar_i64(c.position_offset)}) : pos;
            x = g().op("Add", {x, g().op("Gather", {table, at})});
        }
        if (stack.embed_norm) x = e.layer_norm(x, *stack.embed_norm, stack.embed_norm->name, c.norm_eps);
        return x;
    }

    // T5's position bias [1, H, Tq, Tk] for queries at q_pos [Tq] over keys at k_pos [Tk]. A table over the relative
    // positions −max_distance..max_distance, its rows from t5::relative_position_bucket (the function cq's forward uses);
    // farther positions are clipped to its ends, where the logarithmic buckets have reached their last one.
    std::string relative_bias(const Seq2SeqStack& stack, bool bidirectional, const std::string& q_pos, const std::string& k_pos) {
        const int64_t md = c.relative_max_distance, n_buckets = stack.relative_bias.dim(0), H = stack.relative_bias.dim(1);
        const std::vector<float> w = tensor_f32(stack.relative_bias);
        std::vector<float> table(static_cast<size_t>((2 * md + 1) * H));
        for (int64_t r = -md; r <= md; ++r) {
            const int64_t b = t5::relative_position_bucket(r, bidirectional, n_buckets, md);
            for (int64_t h = 0; h < H; ++h) table[static_cast<size_t>((r + md) * H + h)] = w[static_cast<size_t>(b * H + h)];
        }
        const std::string t = g().f32(stack.positions_name + (bidirectional ? ".bidirectional" : ".causal"), {2 * md + 1, H}, table);
        const std::string rel = g().op("Sub", {g().op("Unsqueeze", {k_pos, g().const_i64({0})}), g().op("Unsqueeze", {q_pos, g().const_i64({1})})});
        const std::string row = g().op("Add", {g().op("Clip", {rel, g().scalar_i64(-md), g().scalar_i64(md)}), g().scalar_i64(md)});
        const std::string bias = g().op("Transpose", {g().op("Gather", {t, row})}, {attr("perm", std::vector<int64_t>{2, 0, 1})});  // [H, Tq, Tk]
        return g().op("Unsqueeze", {bias, g().const_i64({0})});
    }

    // [0, n) for n the size of axis `axis` of x, and n itself (int64 scalars)
    std::pair<std::string, std::string> range_of(const std::string& x, int64_t axis) {
        const std::string n = g().op("Squeeze", {g().op("Shape", {x}, {attr("start", axis), attr("end", axis + 1)}), g().const_i64({0})});
        return {g().op("Range", {g().scalar_i64(0), n, g().scalar_i64(1)}), n};
    }

    // int64 mask [B, S] (1 real, 0 padding) → bool [B, 1, 1, S]
    std::string key_mask(const std::string& mask) {
        return g().op("Cast", {g().op("Unsqueeze", {mask, g().const_i64({1, 2})})}, {attr("to", int64_t{onnx_ir::kBool})});
    }

    // encoder_model.onnx, token sources: input_ids, attention_mask [B, S] → last_hidden_state [B, S, d] (run_encoder)
    void text_encoder() {
        g().input("input_ids", kI64, {kBatch, kSource});
        g().input("attention_mask", kI64, {kBatch, kSource});
        g().output("last_hidden_state", kF32, {kBatch, kSource, c.d_model});
        g().set_scope("/embed");
        const std::string pos = range_of("input_ids", 1).first;
        std::string x = embed(s.encoder, "input_ids", pos);
        const std::string mask = key_mask("attention_mask");
        const std::string bias = s.encoder.relative_bias.ndim() > 0 ? relative_bias(s.encoder, true, pos, pos) : "";
        for (size_t i = 0; i < s.encoder.layers.size(); ++i) {
            const Seq2SeqLayer& l = s.encoder.layers[i];
            g().set_scope("/encoder.layer." + std::to_string(i));
            if (e.options.progress) e.options.progress("encoder layer " + std::to_string(i));
            const int64_t H = c.encoder_heads, hd = l.q.n_out() / H;
            x = sublayer(l.attn_norm, x, [&](const std::string& in) {
                const std::string k = e.split_heads(e.linear(l.k, in), H, hd), v = e.split_heads(e.linear(l.v, in), H, hd);
                return attend(l.q, l.attn_out, in, k, v, H, bias, mask);
            });
            x = sublayer(l.ffn_norm, x, [&](const std::string& in) { return ffn(l, in); });
        }
        g().set_scope("/final");
        if (s.encoder.final_norm) x = norm(x, *s.encoder.final_norm);
        g().op_to("Identity", {x}, "last_hidden_state");
    }

    // encoder_model.onnx, BLIP: pixel_values [B, C, H, W] (normalised) → last_hidden_state [B, 1 + patches, width]: the ViT
    // tower (patch conv, class token, positions, pre-LN blocks) and post_layernorm on every row (blip_encode_image).
    void image_encoder() {
        const ImageEncoder& im = *s.image;
        const EncoderConfig& vc = im.c;
        const EncoderWeights& w = im.w;
        const int64_t D = vc.hidden, P = vc.patch_size, C = vc.num_channels, side = vc.image_size / vc.patch_size, S = side * side + 1;
        g().input("pixel_values", kF32, {kBatch, C, vc.image_size, vc.image_size});
        g().output("last_hidden_state", kF32, {kBatch, S, D});
        g().set_scope("/embed");
        const Linear& pe = w.patch_embd;
        std::vector<std::string> conv_in{"pixel_values", g().f32(pe.name + ".weight", {D, C, P, P}, linear_weight_f32(pe))};
        const std::vector<float> pe_bias = pe.int8 ? pe.int8->bias : pe.bias ? pe.bias->to_float() : std::vector<float>{};
        if (!pe_bias.empty()) conv_in.push_back(g().f32(pe.name + ".bias", {D}, pe_bias));
        const std::string conv = g().op("Conv", conv_in, {attr("kernel_shape", std::vector<int64_t>{P, P}), attr("strides", std::vector<int64_t>{P, P})});
        // [B, D, side, side] → [B, patches, D]
        const std::string patches = g().op("Transpose", {g().op("Reshape", {conv, g().const_i64({0, D, -1})})}, {attr("perm", std::vector<int64_t>{0, 2, 1})});
        const std::string batch = g().op("Shape", {"pixel_values"}, {attr("start", int64_t{0}), attr("end", int64_t{1})});
        const std::string cls_shape = g().op("Concat", {batch, g().const_i64({1, D})}, {attr("axis", int64_t{0})});
        const std::string cls = g().op("Expand", {g().f32("vision_model.embeddings.class_embedding", {1, 1, D}, tensor_f32(*w.cls_token)), cls_shape});
        std::string x = g().op("Concat", {cls, patches}, {attr("axis", int64_t{1})});
        x = g().op("Add", {x, g().f32("vision_model.embeddings.position_embedding", {1, S, D}, tensor_f32(w.pos_embd))});
        const int64_t H = vc.n_head, hd = D / H;
        for (size_t i = 0; i < w.blocks.size(); ++i) {
            const EncoderBlock& b = w.blocks[i];
            g().set_scope("/vision.layer." + std::to_string(i));
            if (e.options.progress) e.options.progress("vision layer " + std::to_string(i));
            const std::string xn = e.layer_norm(x, b.attn_norm, b.attn_norm.name, vc.norm_eps);
            const std::string q = e.split_heads(e.linear(b.q, xn), H, hd), k = e.split_heads(e.linear(b.k, xn), H, hd),
                              v = e.split_heads(e.linear(b.v, xn), H, hd);
            const std::string h = g().op("Add", {x, e.linear(b.attn_out, e.merge_heads(e.attention(q, k, v, hd, "", ""), H, hd))});
            const std::string hn = e.layer_norm(h, b.ffn_norm, b.ffn_norm.name, vc.norm_eps);
            x = g().op("Add", {h, e.linear(b.ffn_out, e.activation(im.act, e.linear(b.ffn_in, hn)))});
        }
        g().set_scope("/final");
        g().op_to("Identity", {e.layer_norm(x, *w.final_norm, w.final_norm->name, vc.norm_eps)}, "last_hidden_state");
    }

    // decoder_model.onnx (with_past false) / decoder_with_past_model.onnx (run_decoder): input_ids [B, T] at positions
    // past..past + T − 1 (past: the length of past_key_values.0.decoder.key; 0 without), causal self-attention over the
    // past and these, cross-attention to the source (keys / values from encoder_hidden_states, or the past's encoder
    // entries), then the head. Token sources take encoder_attention_mask [B, S]; an image has no padding and none.
    void decoder(bool with_past) {
        const int64_t H = c.decoder_heads, hd = s.decoder.layers[0].q.n_out() / H, chd = s.decoder.layers[0].cross_q->n_out() / H;
        const bool source_mask = !s.image;
        g().input("input_ids", kI64, {kBatch, kTarget});
        if (source_mask) g().input("encoder_attention_mask", kI64, {kBatch, kSource});
        if (!with_past) g().input("encoder_hidden_states", kF32, {kBatch, kSource, encoder_width()});
        for (size_t i = 0; i < s.decoder.layers.size() && with_past; ++i) {
            const std::string p = "past_key_values." + std::to_string(i);
            g().input(p + ".decoder.key", kF32, {kBatch, H, kPast, hd});
            g().input(p + ".decoder.value", kF32, {kBatch, H, kPast, hd});
            g().input(p + ".encoder.key", kF32, {kBatch, H, kSource, chd});
            g().input(p + ".encoder.value", kF32, {kBatch, H, kSource, chd});
        }
        g().output("logits", kF32, {kBatch, kTarget, c.vocab});
        for (size_t i = 0; i < s.decoder.layers.size(); ++i) {
            const std::string p = "present." + std::to_string(i);
            g().output(p + ".decoder.key", kF32, {kBatch, H, with_past ? kTotal : kTarget, hd});
            g().output(p + ".decoder.value", kF32, {kBatch, H, with_past ? kTotal : kTarget, hd});
            if (with_past) continue;
            g().output(p + ".encoder.key", kF32, {kBatch, H, kSource, chd});
            g().output(p + ".encoder.value", kF32, {kBatch, H, kSource, chd});
        }

        // query positions past..total − 1 over keys 0..total − 1; causal: key j ≤ query position
        g().set_scope("/positions");
        const std::string T = range_of("input_ids", 1).second;
        const std::string past = with_past ? range_of("past_key_values.0.decoder.key", 2).second : g().scalar_i64(0);
        const std::string total = g().op("Add", {past, T});
        const std::string q_pos = g().op("Range", {past, total, g().scalar_i64(1)});
        const std::string k_pos = g().op("Range", {g().scalar_i64(0), total, g().scalar_i64(1)});
        const std::string causal = g().op("LessOrEqual", {g().op("Unsqueeze", {k_pos, g().const_i64({0})}), g().op("Unsqueeze", {q_pos, g().const_i64({1})})});
        const std::string cross_mask = source_mask ? key_mask("encoder_attention_mask") : "";
        const std::string bias = s.decoder.relative_bias.ndim() > 0 ? relative_bias(s.decoder, false, q_pos, k_pos) : "";
        g().set_scope("/embed");
        std::string x = embed(s.decoder, "input_ids", q_pos);

        for (size_t i = 0; i < s.decoder.layers.size(); ++i) {
            const Seq2SeqLayer& l = s.decoder.layers[i];
            const std::string p = "past_key_values." + std::to_string(i), o = "present." + std::to_string(i);
            g().set_scope("/decoder.layer." + std::to_string(i));
            if (e.options.progress) e.options.progress("decoder layer " + std::to_string(i));
            x = sublayer(l.attn_norm, x, [&](const std::string& in) {
                std::string k = e.split_heads(e.linear(l.k, in), H, hd), v = e.split_heads(e.linear(l.v, in), H, hd);
                if (with_past) {
                    k = g().op("Concat", {p + ".decoder.key", k}, {attr("axis", int64_t{2})});
                    v = g().op("Concat", {p + ".decoder.value", v}, {attr("axis", int64_t{2})});
                }
                g().op_to("Identity", {k}, o + ".decoder.key");
                g().op_to("Identity", {v}, o + ".decoder.value");
                return attend(l.q, l.attn_out, in, o + ".decoder.key", o + ".decoder.value", H, bias, causal);
            });
            x = sublayer(*l.cross_norm, x, [&](const std::string& in) {
                std::string ck = p + ".encoder.key", cv = p + ".encoder.value";
                if (!with_past) {
                    // the cross-attention keys / values: made once from the source, read by every later step
                    g().op_to("Identity", {e.split_heads(e.linear(*l.cross_k, "encoder_hidden_states"), H, chd)}, o + ".encoder.key");
                    g().op_to("Identity", {e.split_heads(e.linear(*l.cross_v, "encoder_hidden_states"), H, chd)}, o + ".encoder.value");
                    ck = o + ".encoder.key";
                    cv = o + ".encoder.value";
                }
                return attend(*l.cross_q, *l.cross_out, in, ck, cv, H, "", cross_mask);
            });
            x = sublayer(l.ffn_norm, x, [&](const std::string& in) { return ffn(l, in); });
        }

        g().set_scope("/head");
        if (s.decoder.final_norm) x = norm(x, *s.decoder.final_norm);
        if (c.logits_scale != 1.0f) x = g().op("Mul", {x, g().scalar_f32(c.logits_scale)});  // T5's tied head
        if (s.head_dense) x = norm(e.activation(s.act, e.linear(*s.head_dense, x)), *s.head_norm);  // BLIP's transform
        g().op_to("Identity", {e.linear(s.lm_head, x)}, "logits");
    }
};

}  // namespace

void export_seq2seq(const Seq2SeqModel& model, const std::string& dir, const OnnxExportOptions& options, OnnxExportReport& report) {
    const Seq2SeqConfig& c = model.config();
    const Seq2SeqModel::State& s = Seq2SeqLoader::state(model);
    if (fs::path(dir).extension() == ".onnx")
        throw InvalidArgument("[onnx] " + c.architecture + " exports three graphs (encoder_model.onnx, decoder_model.onnx, decoder_with_past_model.onnx, "
                              "as Optimum lays them out): give a directory to write them into, not '" + dir + "'");
    if (s.decoder.layers.empty()) throw Unsupported("[onnx] " + c.architecture + " without decoder layers has no decoder graph");
    struct Part {
        const char* file;
        const char* graph;
    };
    std::vector<Part> parts{{"encoder_model.onnx", "encoder"}, {"decoder_model.onnx", "decoder"}};
    if (options.with_past) parts.push_back({"decoder_with_past_model.onnx", "decoder_with_past"});
    // every graph is built before any file is written, so that a model the export refuses leaves nothing behind
    std::vector<std::pair<onnx_ir::Model, OnnxExportFile>> built;
    for (const Part& part : parts) {
        if (options.progress) options.progress(std::string(part.graph) + " graph");
        onnx_ir::Model m = new_model(options, "cq_" + c.architecture + "_" + part.graph,
                                     "cq export (" + c.architecture + " " + part.graph + ", " + onnx_format_name(options.format) + ")");
        GraphBuilder g(m.graph);
        Emitter e{g, options, {}};
        Seq2SeqGraph graph{e, c, s};
        const std::string name = part.graph;
        if (name == "encoder") {
            if (s.image) graph.image_encoder();
            else graph.text_encoder();
        } else {
            graph.decoder(name == "decoder_with_past");
        }
        OnnxExportFile file;
        file.graph = part.graph;
        file.path = (fs::path(dir) / part.file).string();
        file.linears = e.lowered;
        built.emplace_back(std::move(m), std::move(file));
    }
    std::error_code ec;
    if (!fs::is_directory(dir, ec) && !fs::create_directory(dir, ec))
        throw IoError("[onnx] cannot create the directory '" + dir + "'" + (ec ? ": " + ec.message() : ""));
    for (auto& [m, file] : built) {
        if (options.progress) options.progress("writing " + file.path);
        const std::string path = file.path;
        write_model(m, path, options, file);
        report.files.push_back(std::move(file));
    }
}

}  // namespace cq::onnx_export
