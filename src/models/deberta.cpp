// DeBERTa-v2 / v3 sequence classifiers (DebertaV2ForSequenceClassification): word (+ absolute position) (+ token type)
// embeddings (→ embed_proj) → LayerNorm → post-LN blocks whose attention adds the disentangled terms
// (content→position q·pos_k, position→content k·pos_q over relative positions, log-bucketed when position_buckets > 0)
// → ContextPooler (dense + pooler_hidden_act on the first token) → classifier. As transformers' modeling_deberta_v2.
#include <algorithm>
#include <cmath>
#include <string>

#include "cq/error.h"
#include "models/encoder_families.h"
#include "ops/ops.h"

namespace cq {

namespace {

void grow(std::vector<float>& v, int64_t n) {
    if (static_cast<int64_t>(v.size()) < n) v.resize(static_cast<size_t>(n));
}

}  // namespace

int64_t deberta_relative_position(int64_t rel, int64_t bucket_size, int64_t max_position) {
    if (bucket_size <= 0 || max_position <= 0) return rel;
    // make_log_bucket_position, in float32 as torch computes it: distances inside ±mid stay, farther ones share
    // logarithmically wider buckets up to max_position.
    const int64_t mid = bucket_size / 2;
    const int64_t abs_pos = (rel < mid && rel > -mid) ? mid - 1 : std::abs(rel);
    if (abs_pos <= mid) return rel;
    const float ratio = static_cast<float>(abs_pos) / static_cast<float>(mid);
    const float base = static_cast<float>(static_cast<double>(max_position - 1) / static_cast<double>(mid));
    const float log_pos = std::ceil(std::log(ratio) / std::log(base) * static_cast<float>(mid - 1)) + static_cast<float>(mid);
    return static_cast<int64_t>(log_pos) * (rel > 0 ? 1 : -1);
}

void load_deberta_weights(const EncoderConfig& c, const EncoderWeightSource& src, EncoderWeights& w) {
    const DebertaConfig& dc = c.deberta;
    const int64_t D = c.hidden, E = dc.embedding_size;
    const std::string e = "deberta.embeddings.";
    w.word_embd = src.get(e + "word_embeddings.weight", {c.vocab, E});
    if (dc.position_biased_input) w.pos_embd = src.get(e + "position_embeddings.weight", {c.max_positions, E});
    if (c.type_vocab > 0) w.type_embd = src.get(e + "token_type_embeddings.weight", {c.type_vocab, E});
    if (E != D) {
        w.embed_proj = src.linear(e + "embed_proj", D, E, LayerRole::other);
        if (w.embed_proj->bias) src.fail("tensor '" + e + "embed_proj.bias' is unexpected: DeBERTa's embed_proj has no bias");
    }
    w.embd_norm = src.norm(e + "LayerNorm", D);
    const std::string layers = "deberta.encoder.layer.";
    w.blocks = src.blocks(layers,
                          {"attention.self.query_proj", "attention.self.key_proj", "attention.self.value_proj", "attention.output.dense",
                           "attention.output.LayerNorm", "intermediate.dense", "output.dense", "output.LayerNorm"},
                          c.n_layer, D, c.n_ff);
    if (dc.relative_attention) {
        w.rel_embd = src.get("deberta.encoder.rel_embeddings.weight", {2 * dc.att_span, D});
        if (dc.norm_rel_ebd) w.rel_norm = src.norm("deberta.encoder.LayerNorm", D);
        if (!dc.share_att_key)
            for (int64_t l = 0; l < c.n_layer; ++l) {
                EncoderBlock& b = w.blocks[static_cast<size_t>(l)];
                const std::string p = layers + std::to_string(l) + ".attention.self.";
                if (dc.c2p) b.pos_k = src.linear(p + "pos_key_proj", D, D, LayerRole::attn_k, l);
                if (dc.p2c) b.pos_q = src.linear(p + "pos_query_proj", D, D, LayerRole::attn_q, l);
            }
    }
    w.pooler = src.linear("pooler.dense", dc.pooler_size, D, LayerRole::pooler);
    w.classifier = src.linear("classifier", c.num_labels, dc.pooler_size, LayerRole::classifier);
}

void deberta_forward(const EncoderPass& p, const TextBatch& batch, float* logits, float* pooled, float* hidden) {
    const EncoderConfig& c = p.c;
    const DebertaConfig& dc = c.deberta;
    const EncoderWeights& w = p.w;
    EncoderScratch& s = p.s;
    const int64_t B = batch.batch, S = batch.seq, D = c.hidden, E = dc.embedding_size, rows = B * S;
    if (dc.position_biased_input && S > c.max_positions)
        throw InvalidArgument("[encoder] the batch's " + std::to_string(S) + " tokens exceed the model's " + std::to_string(c.max_positions) +
                              " learned positions");
    for (auto* v : {&s.x, &s.xn, &s.q, &s.k, &s.v, &s.attn, &s.tmp}) grow(*v, rows * std::max(D, E));
    grow(s.ffn, rows * c.n_ff);
    grow(s.cls, B * D);
    grow(s.head, B * dc.pooler_size);

    // x: [B·S, E] = word (+ position) (+ token type) → embed_proj → [B·S, D] → LayerNorm, padding rows zeroed (× mask)
    float* emb = w.embed_proj ? s.xn.data() : s.x.data();
    ops::embedding(w.word_embd, batch.ids, emb);
    std::vector<float> add(static_cast<size_t>(rows * E));
    if (dc.position_biased_input) {
        std::vector<int32_t>& positions = s.positions;
        positions.resize(static_cast<size_t>(rows));
        for (int64_t i = 0; i < rows; ++i) positions[static_cast<size_t>(i)] = static_cast<int32_t>(i % S);
        ops::embedding(w.pos_embd, positions, add.data());
        ops::add(emb, add.data(), rows * E);
    }
    if (w.type_embd) {
        const std::vector<int32_t> zeros(static_cast<size_t>(rows), 0);
        ops::embedding(*w.type_embd, batch.type_ids.empty() ? std::span<const int32_t>(zeros) : std::span<const int32_t>(batch.type_ids), add.data());
        ops::add(emb, add.data(), rows * E);
    }
    if (w.embed_proj) p.linear(*w.embed_proj, emb, rows, s.x.data(), batch.mask.data());
    ops::layer_norm_rows(s.x.data(), rows, D, w.embd_norm.weight, &*w.embd_norm.bias, c.norm_eps, s.x.data());
    for (int64_t i = 0; i < rows; ++i)
        if (!batch.mask[static_cast<size_t>(i)]) std::fill_n(s.x.data() + i * D, D, 0.0f);

    // Relative positions: the rows of the projected relative embeddings each (query i, key j) gathers.
    ops::RelativeTerms rel;
    std::vector<float> rel_embd, pos_k, pos_q;
    std::vector<int32_t> c2p_index, p2c_index;
    const int64_t terms = dc.relative_attention ? int64_t{dc.c2p} + int64_t{dc.p2c} : 0;
    rel.scale = 1.0f / std::sqrt(static_cast<float>(D / c.n_head) * static_cast<float>(1 + terms));
    const int64_t span = dc.att_span, n_rel = 2 * span;
    if (dc.relative_attention) {
        rel_embd = w.rel_embd->to_float();
        if (w.rel_norm) ops::layer_norm_rows(rel_embd.data(), n_rel, D, w.rel_norm->weight, &*w.rel_norm->bias, c.norm_eps, rel_embd.data());
        c2p_index.resize(static_cast<size_t>(S * S));
        p2c_index.resize(static_cast<size_t>(S * S));
        const auto clamp = [&](int64_t r) { return static_cast<int32_t>(std::clamp<int64_t>(r + span, 0, n_rel - 1)); };
        for (int64_t i = 0; i < S; ++i)
            for (int64_t j = 0; j < S; ++j) {
                // relative_pos[i][j] = bucket(i − j); p2c reads −relative_pos[j][i], transposed back
                c2p_index[static_cast<size_t>(i * S + j)] = clamp(deberta_relative_position(i - j, dc.position_buckets, dc.max_relative_positions));
                p2c_index[static_cast<size_t>(i * S + j)] = clamp(-deberta_relative_position(j - i, dc.position_buckets, dc.max_relative_positions));
            }
        rel.n_rel = n_rel;
        rel.c2p_index = c2p_index.data();
        rel.p2c_index = p2c_index.data();
        if (dc.c2p) pos_k.resize(static_cast<size_t>(n_rel * D));
        if (dc.p2c) pos_q.resize(static_cast<size_t>(n_rel * D));
    }

    const int32_t* mask = batch.mask.data();
    for (size_t l = 0; l < w.blocks.size(); ++l) {
        const EncoderBlock& b = w.blocks[l];
        const Linear* qkv[] = {&b.q, &b.k, &b.v};
        float* const out[] = {s.q.data(), s.k.data(), s.v.data()};
        ops::linear_shared_input(qkv, s.x.data(), rows, out, mask);
        if (dc.relative_attention) {
            // the relative embeddings through this layer's key / query projections (shared, or pos_key_proj / pos_query_proj)
            if (dc.c2p) p.linear(dc.share_att_key ? b.k : *b.pos_k, rel_embd.data(), n_rel, pos_k.data());
            if (dc.p2c) p.linear(dc.share_att_key ? b.q : *b.pos_q, rel_embd.data(), n_rel, pos_q.data());
            rel.pos_k = dc.c2p ? pos_k.data() : nullptr;
            rel.pos_q = dc.p2c ? pos_q.data() : nullptr;
        }
        ops::attention_disentangled(s.q.data(), s.k.data(), s.v.data(), D, B, S, c.n_head, D / c.n_head, mask, rel, s.attn.data());
        p.linear(b.attn_out, s.attn.data(), rows, s.tmp.data(), mask);
        ops::add_layer_norm_rows(s.x.data(), s.tmp.data(), rows, D, b.attn_norm.weight, &*b.attn_norm.bias, c.norm_eps, s.x.data());
        p.linear(b.ffn_in, s.x.data(), rows, s.ffn.data(), mask);
        ops::activate(p.act, s.ffn.data(), rows * c.n_ff);
        p.linear(b.ffn_out, s.ffn.data(), rows, s.tmp.data(), mask);
        ops::add_layer_norm_rows(s.x.data(), s.tmp.data(), rows, D, b.ffn_norm.weight, &*b.ffn_norm.bias, c.norm_eps, s.x.data());
        p.block_done(static_cast<int64_t>(l), s.x.data(), rows, mask);
    }
    if (hidden) std::copy_n(s.x.data(), rows * D, hidden);
    if (!logits) return;

    // ContextPooler: act(dense(h_first)) → classifier
    p.gather_cls(B, S);
    const int64_t P = dc.pooler_size;
    p.linear(*w.pooler, s.cls.data(), B, s.head.data());
    ops::activate(*ops::activation_from_name(dc.pooler_act), s.head.data(), B * P);
    if (pooled) std::copy_n(s.head.data(), B * P, pooled);
    p.linear(w.classifier, s.head.data(), B, logits);
}

}  // namespace cq
