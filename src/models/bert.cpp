// BERT, RoBERTa, DistilBERT and LayoutLM classifiers: word + position (+ token type) embeddings (LayoutLM: + the
// 2-D embeddings of each token's box) → LayerNorm → post-LN blocks (x = LN(x + attn(x)); x = LN(x + ffn(x))) →
// a head on the first ([CLS] / <s>) token, or on every token for a token classifier.
// Heads: BERT / LayoutLM tanh pooler → classifier; RoBERTa dense → tanh → out_proj; DistilBERT pre_classifier → ReLU
// → classifier; token classification: classifier on each token's final state.
#include <algorithm>
#include <string>

#include "cq/error.h"
#include "cq/thread_pool.h"
#include "models/encoder_families.h"
#include "ops/ops.h"

namespace cq {

namespace {

void grow(std::vector<float>& v, int64_t n) {
    if (static_cast<int64_t>(v.size()) < n) v.resize(static_cast<size_t>(n));
}

// positions: [batch·seq]. RoBERTa counts only real tokens, from padding_idx + 1 (HF's
// create_position_ids_from_input_ids), and gives padding the padding_idx row; the others use 0..seq-1.
void position_ids(const EncoderConfig& c, const TextBatch& batch, std::vector<int32_t>& positions) {
    positions.resize(static_cast<size_t>(batch.batch * batch.seq));
    for (int64_t b = 0; b < batch.batch; ++b) {
        int32_t seen = 0;
        for (int64_t t = 0; t < batch.seq; ++t) {
            const size_t i = static_cast<size_t>(b * batch.seq + t);
            if (c.family != EncoderFamily::roberta) positions[i] = static_cast<int32_t>(t);
            else positions[i] = batch.ids[i] != c.pad_token_id ? c.pad_token_id + ++seen : c.pad_token_id;
            if (positions[i] >= c.max_positions)
                throw InvalidArgument("[encoder] sequence " + std::to_string(b) + " needs position " + std::to_string(positions[i]) +
                                      ", past the model's " + std::to_string(c.max_positions) + " learned positions");
        }
    }
}

// One post-LN block over x: [batch·seq, hidden] in place (the pass's scratch for everything else).
void run_block(const EncoderPass& p, const EncoderBlock& b, float* x, int64_t batch, int64_t seq, const int32_t* mask) {
    const EncoderConfig& c = p.c;
    EncoderScratch& s = p.s;
    const int64_t rows = batch * seq, D = c.hidden;
    p.self_attention(b, x, batch, seq, mask);  // → s.tmp
    ops::add_layer_norm_rows(x, s.tmp.data(), rows, D, b.attn_norm.weight, &*b.attn_norm.bias, c.norm_eps, x);
    p.linear(b.ffn_in, x, rows, s.ffn.data(), mask);
    ops::activate(p.act, s.ffn.data(), rows * c.n_ff);
    p.linear(b.ffn_out, s.ffn.data(), rows, s.tmp.data(), mask);
    ops::add_layer_norm_rows(x, s.tmp.data(), rows, D, b.ffn_norm.weight, &*b.ffn_norm.bias, c.norm_eps, x);
}

}  // namespace

void load_bert_family_weights(const EncoderConfig& c, const EncoderWeightSource& src, EncoderWeights& w) {
    const int64_t D = c.hidden, F = c.n_ff;
    if (c.family == EncoderFamily::distilbert) {
        const std::string e = "distilbert.embeddings.";
        w.word_embd = src.get(e + "word_embeddings.weight", {c.vocab, D});
        w.pos_embd = src.get(e + "position_embeddings.weight", {c.max_positions, D});
        w.embd_norm = src.norm(e + "LayerNorm", D);
        w.blocks = src.blocks("distilbert.transformer.layer.",
                              {"attention.q_lin", "attention.k_lin", "attention.v_lin", "attention.out_lin", "sa_layer_norm",
                               "ffn.lin1", "ffn.lin2", "output_layer_norm"},
                              c.n_layer, D, F, &c);
        w.pre_classifier = src.linear("pre_classifier", D, D, LayerRole::pre_classifier);
        w.classifier = src.linear("classifier", c.num_labels, D, LayerRole::classifier);
        return;
    }
    // A bare BertModel keeps its tensors at the top level ("embeddings.…", "encoder.layer.…").
    const std::string root = c.feature_extraction ? "" : c.family == EncoderFamily::roberta ? "roberta." : c.family == EncoderFamily::layoutlm ? "layoutlm." : "bert.";
    const std::string e = root + "embeddings.";
    w.word_embd = src.get(e + "word_embeddings.weight", {c.vocab, D});
    w.pos_embd = src.get(e + "position_embeddings.weight", {c.max_positions, D});
    if (c.family == EncoderFamily::layoutlm) {
        w.x_pos_embd = src.get(e + "x_position_embeddings.weight", {c.max_2d_positions, D});
        w.y_pos_embd = src.get(e + "y_position_embeddings.weight", {c.max_2d_positions, D});
        w.h_pos_embd = src.get(e + "h_position_embeddings.weight", {c.max_2d_positions, D});
        w.w_pos_embd = src.get(e + "w_position_embeddings.weight", {c.max_2d_positions, D});
    }
    if (c.type_vocab > 0) w.type_embd = src.get(e + "token_type_embeddings.weight", {c.type_vocab, D});
    w.embd_norm = src.norm(e + "LayerNorm", D);
    w.blocks = src.blocks(root + "encoder.layer.",
                          {"attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense",
                           "attention.output.LayerNorm", "intermediate.dense", "output.dense", "output.LayerNorm"},
                          c.n_layer, D, F, &c);
    if (c.feature_extraction) return;  // no head (its pooler, if the file has one, is not on the hidden states' path)
    if (c.family == EncoderFamily::roberta) {
        w.pre_classifier = src.linear("classifier.dense", D, D, LayerRole::pre_classifier);
        w.classifier = src.linear("classifier.out_proj", c.num_labels, D, LayerRole::classifier);
    } else if (c.token_classification) {
        // The pooler (if the file has one) is not on a token classifier's path: not loaded, so passes do not see it.
        w.classifier = src.linear("classifier", c.num_labels, D, LayerRole::classifier);
    } else {
        w.pooler = src.linear(root + "pooler.dense", D, D, LayerRole::pooler);
        w.classifier = src.linear("classifier", c.num_labels, D, LayerRole::classifier);
    }
}

void bert_family_forward(const EncoderPass& p, const TextBatch& batch, float* logits, float* pooled, float* hidden) {
    const EncoderConfig& c = p.c;
    const EncoderWeights& w = p.w;
    EncoderScratch& s = p.s;
    const int64_t B = batch.batch, S = batch.seq, D = c.hidden, rows = B * S;
    for (auto* v : {&s.x, &s.q, &s.k, &s.v, &s.attn, &s.tmp}) grow(*v, rows * D);
    grow(s.ffn, rows * c.n_ff);
    grow(s.cls, B * D);
    grow(s.head, B * D);

    // x: [rows, D] = LN(word[ids] + type[type_ids] + pos[positions])
    ops::embedding(w.word_embd, batch.ids, s.x.data());
    if (w.type_embd) {
        if (batch.type_ids.empty()) {
            const std::vector<int32_t> zeros(static_cast<size_t>(rows), 0);
            ops::embedding(*w.type_embd, zeros, s.tmp.data());
        } else {
            ops::embedding(*w.type_embd, batch.type_ids, s.tmp.data());
        }
        ops::add(s.x.data(), s.tmp.data(), rows * D);
    }
    position_ids(c, batch, s.positions);
    ops::embedding(w.pos_embd, s.positions, s.tmp.data());
    ops::add(s.x.data(), s.tmp.data(), rows * D);
    if (w.x_pos_embd) {
        // LayoutLM: + x[x0] + y[y0] + x[x1] + y[y1] + h[y1 − y0] + w[x1 − x0] (boxes checked by EncoderModel::classify)
        std::vector<int32_t>& index = s.positions;
        const auto add_table = [&](const Tensor& table, auto coordinate) {
            for (int64_t r = 0; r < rows; ++r)
                index[static_cast<size_t>(r)] = batch.bbox.empty() ? 0 : coordinate(batch.bbox.data() + r * 4);
            ops::embedding(table, index, s.tmp.data());
            ops::add(s.x.data(), s.tmp.data(), rows * D);
        };
        add_table(*w.x_pos_embd, [](const int32_t* b) { return b[0]; });
        add_table(*w.y_pos_embd, [](const int32_t* b) { return b[1]; });
        add_table(*w.x_pos_embd, [](const int32_t* b) { return b[2]; });
        add_table(*w.y_pos_embd, [](const int32_t* b) { return b[3]; });
        add_table(*w.h_pos_embd, [](const int32_t* b) { return b[3] - b[1]; });
        add_table(*w.w_pos_embd, [](const int32_t* b) { return b[2] - b[0]; });
    }
    ops::layer_norm_rows(s.x.data(), rows, D, w.embd_norm.weight, &*w.embd_norm.bias, c.norm_eps, s.x.data());

    const int32_t* mask = batch.mask.data();
    if (p.splits_by_sequence(w.blocks, B, S)) {
        ThreadPool::global().parallel_for(B, [&](int64_t b0, int64_t b1) {
            EncoderScratch& local = EncoderPass::thread_scratch(c, w.blocks, (b1 - b0) * S);
            const EncoderPass sub{c, w, local, nullptr, p.act};
            for (size_t l = 0; l < w.blocks.size(); ++l) run_block(sub, w.blocks[l], s.x.data() + b0 * S * D, b1 - b0, S, mask ? mask + b0 * S : nullptr);
        });
    } else {
        for (size_t l = 0; l < w.blocks.size(); ++l) {
            run_block(p, w.blocks[l], s.x.data(), B, S, mask);
            p.block_done(static_cast<int64_t>(l), s.x.data(), rows, mask);
        }
    }

    if (hidden) std::copy_n(s.x.data(), rows * D, hidden);
    if (c.feature_extraction) return;
    if (c.token_classification) {
        // x: [B·S, D] → logits: [B·S, num_labels]; pooled: the CLS states
        p.linear(w.classifier, s.x.data(), rows, logits, mask);
        if (pooled) {
            p.gather_cls(B, S);
            std::copy_n(s.cls.data(), B * D, pooled);
        }
        return;
    }
    // cls: [B, D] → head: [B, D] → logits: [B, num_labels]
    p.gather_cls(B, S);
    if (w.pooler) {
        p.linear(*w.pooler, s.cls.data(), B, s.head.data());
        ops::activate(ops::Activation::tanh, s.head.data(), B * D);
        if (pooled) std::copy_n(s.head.data(), B * D, pooled);
        p.linear(w.classifier, s.head.data(), B, logits);
        return;
    }
    if (pooled) std::copy_n(s.cls.data(), B * D, pooled);
    p.linear(*w.pre_classifier, s.cls.data(), B, s.head.data());
    ops::activate(c.family == EncoderFamily::distilbert ? ops::Activation::relu : ops::Activation::tanh, s.head.data(), B * D);
    p.linear(w.classifier, s.head.data(), B, logits);
}

}  // namespace cq
