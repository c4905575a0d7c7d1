// ONNX graphs of the decoder LLMs (LLaMA family, GPT-2), in the layout ONNX Runtime GenAI and Optimum use:
// input_ids / attention_mask / position_ids in, logits and present.N.key / present.N.value out, and in the
// decode graph past_key_values.N.key / .value in. Keys are stored after RoPE, [batch, kv_heads, seq, head_dim].
#include <cmath>
#include <numeric>

#include "cq/error.h"
#include "cq/llm.h"
#include "onnx/export_common.h"
#include "onnx/export_families.h"

namespace cq::onnx_export {

namespace {

constexpr int32_t kF32 = onnx_ir::kFloat, kI64 = onnx_ir::kInt64;

struct DecoderGraph {
    Emitter& e;
    const LlmConfig& c;
    const LlmWeights& w;
    bool with_past;
    std::string mask, cos, sin;  // mask: [B, 1, T, L] bool; cos/sin: [B, 1, T, rope_dims/2]
    std::vector<int64_t> idx_a, idx_b, idx_pass, inverse;

    GraphBuilder& g() { return e.g; }

    // mask[b, 0, t, s] = s ≤ past + t and attention_mask[b, s]: causal by index, padding by the mask.
    void build_mask() {
        g().set_scope("/mask");
        const std::string T = g().op("Shape", {"input_ids"}, {attr("start", int64_t{1}), attr("end", int64_t{2})});
        const std::string L = g().op("Shape", {"attention_mask"}, {attr("start", int64_t{1}), attr("end", int64_t{2})});
        const std::string t_s = g().op("Squeeze", {T, g().const_i64({0})});
        const std::string l_s = g().op("Squeeze", {L, g().const_i64({0})});
        const std::string past = g().op("Sub", {l_s, t_s});
        const std::string one = g().scalar_i64(1);
        const std::string keys = g().op("Range", {g().scalar_i64(0), l_s, one});
        const std::string queries = g().op("Range", {past, l_s, one});
        const std::string causal = g().op("LessOrEqual", {g().op("Unsqueeze", {keys, g().const_i64({0})}),
                                                           g().op("Unsqueeze", {queries, g().const_i64({1})})});
        const std::string pad = g().op("Cast", {g().op("Unsqueeze", {"attention_mask", g().const_i64({1, 2})})},
                                       {attr("to", int64_t{onnx_ir::kBool})});
        mask = g().op("And", {causal, pad});
    }

    // cos/sin of each position's angles, from tables computed in double as ops::rope does.
    void build_rope() {
        g().set_scope("/rope");
        const int64_t hd = c.head_dim, rd = c.rope_dims, half = rd / 2;
        const int64_t n_pos = c.n_ctx_train > 0 ? c.n_ctx_train : 4096;
        std::vector<float> cos_t(static_cast<size_t>(n_pos * half)), sin_t(cos_t.size());
        for (int64_t i = 0; i < half; ++i) {
            const double inv_freq = std::pow(static_cast<double>(c.rope_theta), -2.0 * static_cast<double>(i) / static_cast<double>(rd));
            for (int64_t p = 0; p < n_pos; ++p) {
                const double angle = static_cast<double>(p) / c.rope_scale * inv_freq;
                cos_t[static_cast<size_t>(p * half + i)] = static_cast<float>(std::cos(angle));
                sin_t[static_cast<size_t>(p * half + i)] = static_cast<float>(std::sin(angle));
            }
        }
        const std::string axes = g().const_i64({1});
        cos = g().op("Unsqueeze", {g().op("Gather", {g().f32("rope.cos", {n_pos, half}, cos_t), "position_ids"}), axes});
        sin = g().op("Unsqueeze", {g().op("Gather", {g().f32("rope.sin", {n_pos, half}, sin_t), "position_ids"}), axes});
        // which dimensions of a head form pair i, and where each lands after [rotated a | rotated b | pass-through]
        std::vector<int64_t> order;
        for (int64_t i = 0; i < half; ++i) idx_a.push_back(c.rope_pairing == RopePairing::adjacent ? 2 * i : i);
        for (int64_t i = 0; i < half; ++i) idx_b.push_back(c.rope_pairing == RopePairing::adjacent ? 2 * i + 1 : i + half);
        for (int64_t d = rd; d < hd; ++d) idx_pass.push_back(d);
        order = idx_a;
        order.insert(order.end(), idx_b.begin(), idx_b.end());
        order.insert(order.end(), idx_pass.begin(), idx_pass.end());
        inverse.assign(static_cast<size_t>(hd), 0);
        for (int64_t j = 0; j < hd; ++j) inverse[static_cast<size_t>(order[static_cast<size_t>(j)])] = j;
    }

    // x: [B, H, T, hd] → the same with the first rope_dims of each head rotated
    std::string rope(const std::string& x) {
        const std::string a = g().op("Gather", {x, g().const_i64(idx_a)}, {attr("axis", int64_t{3})});
        const std::string b = g().op("Gather", {x, g().const_i64(idx_b)}, {attr("axis", int64_t{3})});
        const std::string ra = g().op("Sub", {g().op("Mul", {a, cos}), g().op("Mul", {b, sin})});
        const std::string rb = g().op("Add", {g().op("Mul", {a, sin}), g().op("Mul", {b, cos})});
        std::vector<std::string> parts{ra, rb};
        if (!idx_pass.empty()) parts.push_back(g().op("Gather", {x, g().const_i64(idx_pass)}, {attr("axis", int64_t{3})}));
        const std::string cat = g().op("Concat", parts, {attr("axis", int64_t{3})});
        std::vector<int64_t> identity(inverse.size());
        std::iota(identity.begin(), identity.end(), 0);
        if (inverse == identity) return cat;
        return g().op("Gather", {cat, g().const_i64(inverse)}, {attr("axis", int64_t{3})});
    }

    // k, v: [B, n_kv, T, hd] → with the past prepended, written as present.l.*; returned repeated to n_head heads
    std::pair<std::string, std::string> cache(int64_t l, std::string k, std::string v) {
        const std::string p = "past_key_values." + std::to_string(l), o = "present." + std::to_string(l);
        if (with_past) {
            k = g().op("Concat", {p + ".key", k}, {attr("axis", int64_t{2})});
            v = g().op("Concat", {p + ".value", v}, {attr("axis", int64_t{2})});
        }
        g().op_to("Identity", {k}, o + ".key");
        g().op_to("Identity", {v}, o + ".value");
        if (c.n_head_kv == c.n_head) return {o + ".key", o + ".value"};
        std::vector<int64_t> heads(static_cast<size_t>(c.n_head));
        for (int64_t h = 0; h < c.n_head; ++h) heads[static_cast<size_t>(h)] = h / (c.n_head / c.n_head_kv);
        const std::string idx = g().const_i64(heads);
        return {g().op("Gather", {o + ".key", idx}, {attr("axis", int64_t{1})}), g().op("Gather", {o + ".value", idx}, {attr("axis", int64_t{1})})};
    }

    std::string llama_block(int64_t l, const std::string& x) {
        const DecoderBlock& b = w.blocks[static_cast<size_t>(l)];
        const int64_t hd = c.head_dim;
        const std::string xn = e.rms_norm(x, b.attn_norm, "blk." + std::to_string(l) + ".attn_norm", c.norm_eps);
        const std::string q = rope(e.split_heads(e.linear(b.wq, xn), c.n_head, hd));
        const std::string k = rope(e.split_heads(e.linear(b.wk, xn), c.n_head_kv, hd));
        const std::string v = e.split_heads(e.linear(b.wv, xn), c.n_head_kv, hd);
        const auto [ka, va] = cache(l, k, v);
        const std::string attn = e.merge_heads(e.attention(q, ka, va, hd, "", mask), c.n_head, hd);
        const std::string h = g().op("Add", {x, e.linear(b.wo, attn)});
        const std::string hn = e.rms_norm(h, b.ffn_norm, "blk." + std::to_string(l) + ".ffn_norm", c.norm_eps);
        const std::string act = g().op("Mul", {e.silu(e.linear(b.ffn_gate, hn)), e.linear(b.ffn_up, hn)});
        return g().op("Add", {h, e.linear(b.ffn_down, act)});
    }

    std::string gpt2_block(int64_t l, const std::string& x) {
        const DecoderBlock& b = w.blocks[static_cast<size_t>(l)];
        const int64_t hd = c.head_dim, D = c.n_embd;
        const std::string xn = e.layer_norm(x, b.attn_norm, "blk." + std::to_string(l) + ".attn_norm", c.norm_eps);
        const auto qkv = g().ops("Split", {e.linear(b.wqkv, xn), g().const_i64({D, D, D})}, 3, {attr("axis", int64_t{-1})});
        const std::string q = e.split_heads(qkv[0], c.n_head, hd);
        const auto [ka, va] = cache(l, e.split_heads(qkv[1], c.n_head, hd), e.split_heads(qkv[2], c.n_head, hd));
        const std::string attn = e.merge_heads(e.attention(q, ka, va, hd, "", mask), c.n_head, hd);
        const std::string h = g().op("Add", {x, e.linear(b.wo, attn)});
        const std::string hn = e.layer_norm(h, b.ffn_norm, "blk." + std::to_string(l) + ".ffn_norm", c.norm_eps);
        return g().op("Add", {h, e.linear(b.ffn_down, e.gelu_tanh(e.linear(b.ffn_up, hn)))});
    }

    void build() {
        const std::string B = "batch_size", T = "sequence_length", L = "total_sequence_length", P = "past_sequence_length";
        g().input("input_ids", kI64, {B, T});
        g().input("attention_mask", kI64, {B, L});
        g().input("position_ids", kI64, {B, T});
        for (int64_t l = 0; l < c.n_layer && with_past; ++l) {
            const std::string p = "past_key_values." + std::to_string(l);
            g().input(p + ".key", kF32, {B, c.n_head_kv, P, c.head_dim});
            g().input(p + ".value", kF32, {B, c.n_head_kv, P, c.head_dim});
        }
        g().output("logits", kF32, {B, T, c.n_vocab});
        for (int64_t l = 0; l < c.n_layer; ++l) {
            const std::string o = "present." + std::to_string(l);
            g().output(o + ".key", kF32, {B, c.n_head_kv, L, c.head_dim});
            g().output(o + ".value", kF32, {B, c.n_head_kv, L, c.head_dim});
        }
        build_mask();
        g().set_scope("/embed");
        std::string x = g().op("Gather", {g().f32("token_embd.weight", {c.n_vocab, c.n_embd}, tensor_f32(w.token_embd)), "input_ids"});
        if (c.family == LlmFamily::gpt2) {
            const std::string pos = g().f32("position_embd.weight", {w.pos_embd->dim(0), c.n_embd}, tensor_f32(*w.pos_embd));
            x = g().op("Add", {x, g().op("Gather", {pos, "position_ids"})});
        } else {
            build_rope();
        }
        for (int64_t l = 0; l < c.n_layer; ++l) {
            g().set_scope("/blk." + std::to_string(l));
            if (e.options.progress) e.options.progress("block " + std::to_string(l));
            x = c.family == LlmFamily::gpt2 ? gpt2_block(l, x) : llama_block(l, x);
        }
        g().set_scope("/head");
        const std::string xn = c.family == LlmFamily::gpt2 ? e.layer_norm(x, w.output_norm, "output_norm", c.norm_eps)
                                                           : e.rms_norm(x, w.output_norm, "output_norm", c.norm_eps);
        g().op_to("Identity", {e.linear(w.output, xn)}, "logits");
    }
};

}  // namespace

void export_decoder(const LanguageModel& model, const std::string& path, const OnnxExportOptions& options, OnnxExportReport& report) {
    const LlmConfig& c = model.config();
    if (c.n_head_kv <= 0 || c.n_head % c.n_head_kv != 0)
        throw Unsupported("[onnx] " + c.architecture + ": " + std::to_string(c.n_head) + " query heads over " +
                          std::to_string(c.n_head_kv) + " KV heads");
    for (bool with_past : {false, true}) {
        if (with_past && !options.with_past) continue;
        const std::string out = with_past ? onnx_with_past_path(path) : path;
        if (options.progress) options.progress(with_past ? "decode graph" : "full-sequence graph");
        onnx_ir::Model m = new_model(options, "cq_" + c.architecture + (with_past ? "_with_past" : ""),
                                       "cq export (" + c.architecture + ", " + onnx_format_name(options.format) + ")");
        GraphBuilder g(m.graph);
        Emitter e{g, options, {}};
        DecoderGraph d{e, c, model.weights(), with_past, {}, {}, {}, {}, {}, {}, {}};
        d.build();
        OnnxExportFile file;
        file.graph = with_past ? "decode" : "model";
        if (options.progress) options.progress("writing " + out);
        file.linears = e.lowered;
        write_model(m, out, options, file);
        report.files.push_back(std::move(file));
    }
}

}  // namespace cq::onnx_export
