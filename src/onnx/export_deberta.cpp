// ONNX graph of DeBERTa v2 / v3 sequence classifiers (input_ids, attention_mask[, token_type_ids] → logits), the same
// sequence of layers as src/models/deberta.cpp: embeddings (→ embed_proj) → LayerNorm → × mask → post-LN blocks whose
// attention adds the disentangled terms → ContextPooler → classifier. Sequence length is dynamic: the relative
// positions i − j are computed in the graph from the input's length, and mapped to rows of the relative embeddings
// through a constant table of cq's own bucket function (deberta_relative_position, log buckets included) over the
// distances where it still changes; farther distances are clipped to the table's ends, where the clamp to the
// 2·att_span rows has saturated. So the graph computes exactly cq's indices without repeating the float log in ONNX.
#include <algorithm>
#include <cmath>

#include "cq/error.h"
#include "models/encoder_families.h"
#include "onnx/export_encoder_graphs.h"

namespace cq::onnx_export {

namespace {

constexpr int32_t kF32 = onnx_ir::kFloat, kI64 = onnx_ir::kInt64;

// The rows of the relative embeddings that score (row, col) gathers, as a function of r = row − col:
// c2p[r] = clamp(bucket(r) + span), p2c[r] = clamp(−bucket(r) + span) (the latter read at (key j, query i), as
// transformers gathers p2c before transposing it). Entries cover r in [−reach, reach]; beyond, both are constant.
struct RelativeTables {
    int64_t reach = 0;
    std::vector<int64_t> c2p, p2c;
};

RelativeTables relative_tables(const DebertaConfig& dc) {
    const int64_t span = dc.att_span, n_rel = 2 * span;
    const auto c2p = [&](int64_t r) { return std::clamp<int64_t>(deberta_relative_position(r, dc.position_buckets, dc.max_relative_positions) + span, 0, n_rel - 1); };
    const auto p2c = [&](int64_t r) { return std::clamp<int64_t>(-deberta_relative_position(r, dc.position_buckets, dc.max_relative_positions) + span, 0, n_rel - 1); };
    // Both functions are monotone in r; past max(max_relative_positions, span) the log buckets exceed the span and the
    // clamp holds them at its ends. `limit` is well beyond that, and the search checks it.
    const int64_t limit = 2 * std::max(dc.max_relative_positions, span) + 16;
    int64_t reach = 1;
    for (int64_t r = 1; r < limit; ++r)
        if (c2p(r) != c2p(r + 1) || c2p(-r) != c2p(-r - 1) || p2c(r) != p2c(r + 1) || p2c(-r) != p2c(-r - 1)) reach = r + 1;
    for (const int64_t far : {limit, 4 * limit})
        if (c2p(far) != c2p(reach) || c2p(-far) != c2p(-reach) || p2c(far) != p2c(reach) || p2c(-far) != p2c(-reach))
            throw Error("[onnx] DeBERTa's relative positions still change beyond distance " + std::to_string(reach) + " (cq's bug)");
    RelativeTables t;
    t.reach = reach;
    for (int64_t r = -reach; r <= reach; ++r) {
        t.c2p.push_back(c2p(r));
        t.p2c.push_back(p2c(r));
    }
    return t;
}

}  // namespace

void deberta_graph(Emitter& e, const EncoderConfig& c, const EncoderWeights& w, ops::Activation act) {
    GraphBuilder& g = e.g;
    const DebertaConfig& dc = c.deberta;
    const std::string B = "batch_size", S = "sequence_length";
    const int64_t D = c.hidden, E = dc.embedding_size, H = c.n_head, hd = D / H;
    g.input("input_ids", kI64, {B, S});
    g.input("attention_mask", kI64, {B, S});
    if (w.type_embd) g.input("token_type_ids", kI64, {B, S});
    g.output("logits", kF32, {B, c.num_labels});

    g.set_scope("/embed");
    const std::string e_ = "deberta.embeddings.";
    std::string x = g.op("Gather", {g.f32(e_ + "word_embeddings.weight", {c.vocab, E}, tensor_f32(w.word_embd)), "input_ids"});
    const std::string pos = e.positions("input_ids", 1);  // [S]
    if (dc.position_biased_input)
        x = g.op("Add", {x, g.op("Gather", {g.f32(e_ + "position_embeddings.weight", {c.max_positions, E}, tensor_f32(w.pos_embd)), pos})});
    if (w.type_embd)
        x = g.op("Add", {x, g.op("Gather", {g.f32(e_ + "token_type_embeddings.weight", {c.type_vocab, E}, tensor_f32(*w.type_embd)), "token_type_ids"})});
    if (w.embed_proj) x = e.linear(*w.embed_proj, x);
    x = e.layer_norm(x, w.embd_norm, e_ + "LayerNorm", c.norm_eps);
    // padding rows zeroed, as DebertaV2Embeddings multiplies by the mask
    const std::string mask_f = g.op("Cast", {"attention_mask"}, {attr("to", int64_t{kF32})});
    x = g.op("Mul", {x, g.op("Unsqueeze", {mask_f, g.const_i64({-1})})});
    const std::string mask_add = e.additive_key_mask("attention_mask");  // [B, 1, 1, S]

    // relative positions: rel [S, S] = row − col, clipped to the tables' reach, → c2p rows [query, key] and p2c rows
    // [key, query] of the projected relative embeddings
    std::string rel_embd, c2p_index, p2c_index;
    const int64_t terms = dc.relative_attention ? int64_t{dc.c2p} + int64_t{dc.p2c} : 0;
    const int64_t n_rel = 2 * dc.att_span;
    if (dc.relative_attention) {
        g.set_scope("/relative");
        rel_embd = g.f32("deberta.encoder.rel_embeddings.weight", {n_rel, D}, tensor_f32(*w.rel_embd));
        if (w.rel_norm) rel_embd = e.layer_norm(rel_embd, *w.rel_norm, "deberta.encoder.LayerNorm", c.norm_eps);
        const RelativeTables tables = relative_tables(dc);
        const std::string reach = g.scalar_i64(tables.reach);
        const std::string rel = g.op("Sub", {g.op("Unsqueeze", {pos, g.const_i64({1})}), g.op("Unsqueeze", {pos, g.const_i64({0})})});
        const std::string row = g.op("Add", {g.op("Min", {g.op("Max", {rel, g.op("Neg", {reach})}), reach}), reach});
        const int64_t n = static_cast<int64_t>(tables.c2p.size());
        if (dc.c2p) c2p_index = g.op("Gather", {g.i64("deberta.relative_c2p_rows", {n}, tables.c2p), row});
        if (dc.p2c) p2c_index = g.op("Gather", {g.i64("deberta.relative_p2c_rows", {n}, tables.p2c), row});
    }
    const float scale = 1.0f / std::sqrt(static_cast<float>(hd) * static_cast<float>(1 + terms));

    // pos: [n_rel, D] → [H, hd, n_rel], so that a [B, H, S, hd] · it gives every (token, relative row) product per head
    const auto heads_of_rel = [&](const Linear& proj) {
        const std::string p = g.op("Reshape", {e.linear(proj, rel_embd), g.const_i64({n_rel, H, hd})});
        return g.op("Transpose", {p}, {attr("perm", std::vector<int64_t>{1, 2, 0})});
    };
    for (size_t l = 0; l < w.blocks.size(); ++l) {
        g.set_scope("/layer." + std::to_string(l));
        const EncoderBlock& b = w.blocks[l];
        const std::string q = e.split_heads(e.linear(b.q, x), H, hd);
        const std::string k = e.split_heads(e.linear(b.k, x), H, hd);
        const std::string v = e.split_heads(e.linear(b.v, x), H, hd);
        std::string scores = g.op("MatMul", {q, g.op("Transpose", {k}, {attr("perm", std::vector<int64_t>{0, 1, 3, 2})})});  // [B, H, S, S]
        if (dc.relative_attention) {
            const std::string shape = g.op("Shape", {scores});
            if (dc.c2p) {
                // content → position: q_i · pos_k[c2p(i, j)]
                const std::string all = g.op("MatMul", {q, heads_of_rel(dc.share_att_key ? b.k : *b.pos_k)});  // [B, H, S, n_rel]
                scores = g.op("Add", {scores, g.op("GatherElements", {all, g.op("Expand", {c2p_index, shape})}, {attr("axis", int64_t{3})})});
            }
            if (dc.p2c) {
                // position → content: k_j · pos_q[p2c(i, j)], gathered at [j, i] and transposed
                const std::string all = g.op("MatMul", {k, heads_of_rel(dc.share_att_key ? b.q : *b.pos_q)});  // [B, H, S, n_rel]
                const std::string at = g.op("GatherElements", {all, g.op("Expand", {p2c_index, shape})}, {attr("axis", int64_t{3})});
                scores = g.op("Add", {scores, g.op("Transpose", {at}, {attr("perm", std::vector<int64_t>{0, 1, 3, 2})})});
            }
        }
        scores = g.op("Add", {g.op("Mul", {scores, g.scalar_f32(scale)}), mask_add});
        const std::string probs = g.op("Softmax", {scores}, {attr("axis", int64_t{-1})});
        const std::string attn = e.linear(b.attn_out, e.merge_heads(g.op("MatMul", {probs, v}), H, hd));
        x = e.layer_norm(g.op("Add", {x, attn}), b.attn_norm, b.attn_norm.name, c.norm_eps);
        const std::string f = e.linear(b.ffn_out, e.activation(act, e.linear(b.ffn_in, x)));
        x = e.layer_norm(g.op("Add", {x, f}), b.ffn_norm, b.ffn_norm.name, c.norm_eps);
    }

    // ContextPooler: pooler_hidden_act(dense(h_first)) → classifier
    g.set_scope("/head");
    const std::string cls = g.op("Gather", {x, g.scalar_i64(0)}, {attr("axis", int64_t{1})});
    const auto pooler_act = ops::activation_from_name(dc.pooler_act);
    if (!pooler_act) throw Unsupported("[onnx] " + c.architecture + ": pooler_hidden_act '" + dc.pooler_act + "'");
    const std::string pooled = e.activation(*pooler_act, e.linear(*w.pooler, cls));
    g.op_to("Identity", {e.linear(w.classifier, pooled)}, "logits");
}

}  // namespace cq::onnx_export
