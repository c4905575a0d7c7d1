// CLIP (CLIPModel): a text tower (token + learned positions, pre-LN blocks with causal attention, final LayerNorm, the
// pooled token projected) and a vision tower (ViT with class embedding, pre_layrnorm, post_layernorm on the class row,
// projected); both embeddings L2-normalised, logits their cosine times exp(logit_scale), as transformers computes them.
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

const EncoderWeightSource::BlockNames kClipBlock = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.out_proj",
                                                   "layer_norm1",      "mlp.fc1",          "mlp.fc2",          "layer_norm2"};

// rows: [n, d] ← rows / ‖rows‖ (transformers divides by the norm without an epsilon)
void l2_normalize_rows(float* rows, int64_t n, int64_t d) {
    for (int64_t i = 0; i < n; ++i) {
        float* r = rows + i * d;
        double ss = 0;
        for (int64_t j = 0; j < d; ++j) ss += double{r[j]} * r[j];
        const float inv = ss > 0 ? static_cast<float>(1.0 / std::sqrt(ss)) : 0.0f;
        for (int64_t j = 0; j < d; ++j) r[j] *= inv;
    }
}

}  // namespace

EncoderConfig clip_text_tower(const EncoderConfig& c) {
    EncoderConfig t;
    t.family = EncoderFamily::clip;
    t.architecture = c.architecture;
    t.hidden = c.clip_text.hidden;
    t.n_layer = c.clip_text.n_layer;
    t.n_head = c.clip_text.n_head;
    t.n_ff = c.clip_text.n_ff;
    t.max_positions = c.clip_text.max_positions;
    t.vocab = c.clip_text.vocab;
    t.norm_eps = c.clip_text.norm_eps;
    t.hidden_act = c.clip_text.hidden_act;
    t.clip_text = c.clip_text;
    return t;
}

void load_clip_weights(const EncoderConfig& c, const EncoderWeightSource& src, EncoderWeights& w) {
    const ClipTextConfig& tc = c.clip_text;
    const int64_t Dt = tc.hidden, Dv = c.hidden, E = tc.projection_dim;
    const std::string t = "text_model.", v = "vision_model.";
    w.word_embd = src.get(t + "embeddings.token_embedding.weight", {tc.vocab, Dt});
    w.text_pos_embd = src.get(t + "embeddings.position_embedding.weight", {tc.max_positions, Dt});
    w.text_blocks = src.blocks(t + "encoder.layers.", kClipBlock, tc.n_layer, Dt, tc.n_ff);
    w.text_final_norm = src.norm(t + "final_layer_norm", Dt);
    // Text blocks are numbered after the vision blocks, so every block has its own index for observers and rules.
    for (auto& b : w.text_blocks)
        for (Linear* l : {&b.q, &b.k, &b.v, &b.attn_out, &b.ffn_in, &b.ffn_out}) l->block += c.n_layer;

    const int64_t patch_in = c.num_channels * c.patch_size * c.patch_size;
    w.patch_embd = src.linear(v + "embeddings.patch_embedding", Dv, patch_in, LayerRole::patch_embed);
    if (w.patch_embd.bias) src.fail("tensor '" + v + "embeddings.patch_embedding.bias' is unexpected: CLIP's patch convolution has no bias");
    w.cls_token = src.get(v + "embeddings.class_embedding", {Dv});
    w.pos_embd = src.get(v + "embeddings.position_embedding.weight", {c.max_positions, Dv});
    w.pre_norm = src.norm(v + "pre_layrnorm", Dv);
    w.blocks = src.blocks(v + "encoder.layers.", kClipBlock, c.n_layer, Dv, c.n_ff);
    w.final_norm = src.norm(v + "post_layernorm", Dv);

    w.text_projection = src.linear("text_projection", E, Dt, LayerRole::other);
    w.visual_projection = src.linear("visual_projection", E, Dv, LayerRole::other);
    const Tensor scale = src.get("logit_scale", {1});
    const float s = scale.to_float()[0];
    if (!std::isfinite(s) || s > 80.0f) src.fail("tensor 'logit_scale' holds " + std::to_string(s) + ", not a finite log-scale ≤ 80");
    w.logit_scale = std::exp(s);
}

void clip_text_forward(const EncoderPass& p, const TextBatch& batch, float* embeds) {
    const EncoderConfig& c = p.c;  // the text tower's
    const EncoderWeights& w = p.w;
    EncoderScratch& s = p.s;
    const int64_t B = batch.batch, S = batch.seq, D = c.hidden, rows = B * S;
    for (auto* x : {&s.x, &s.xn, &s.q, &s.k, &s.v, &s.attn, &s.tmp}) grow(*x, rows * D);
    grow(s.ffn, rows * c.n_ff);
    grow(s.cls, B * D);

    // x: [B·S, D] = token embedding + position embedding (positions 0..S−1 in every sequence)
    ops::embedding(w.word_embd, batch.ids, s.x.data());
    std::vector<int32_t>& positions = s.positions;
    positions.resize(static_cast<size_t>(S));
    for (int64_t i = 0; i < S; ++i) positions[static_cast<size_t>(i)] = static_cast<int32_t>(i);
    std::vector<float> pos(static_cast<size_t>(S * D));
    ops::embedding(*w.text_pos_embd, positions, pos.data());
    for (int64_t b = 0; b < B; ++b) ops::add(s.x.data() + b * S * D, pos.data(), S * D);

    pre_ln_blocks(p, w.text_blocks, B, S, batch.mask.data(), true, static_cast<int64_t>(w.blocks.size()));

    // pooled row: the first eos_token_id; for the legacy eos_token_id 2, the (first) largest id. With neither
    // present transformers' argmax gives position 0, and so does this.
    const int32_t eos = c.clip_text.eos_token_id;
    for (int64_t b = 0; b < B; ++b) {
        const int32_t* ids = batch.ids.data() + b * S;
        int64_t at = 0;
        if (eos == 2) at = std::max_element(ids, ids + S) - ids;
        else if (const int32_t* f = std::find(ids, ids + S, eos); f != ids + S) at = f - ids;
        std::copy_n(s.x.data() + (b * S + at) * D, D, s.cls.data() + b * D);
    }
    // The final LayerNorm is per row: only the pooled rows need it.
    ops::layer_norm_rows(s.cls.data(), B, D, w.text_final_norm->weight, &*w.text_final_norm->bias, c.norm_eps, s.cls.data());
    p.linear(*w.text_projection, s.cls.data(), B, embeds);
    l2_normalize_rows(embeds, B, c.clip_text.projection_dim);
}

void clip_vision_forward(const EncoderPass& p, const float* pixels, int64_t batch, float* embeds) {
    const EncoderConfig& c = p.c;
    const EncoderWeights& w = p.w;
    EncoderScratch& s = p.s;
    const int64_t S = vit_encode(p, pixels, batch);
    p.gather_cls(batch, S);
    ops::layer_norm_rows(s.cls.data(), batch, c.hidden, w.final_norm->weight, &*w.final_norm->bias, c.norm_eps, s.cls.data());
    p.linear(*w.visual_projection, s.cls.data(), batch, embeds);
    l2_normalize_rows(embeds, batch, c.clip_text.projection_dim);
}

}  // namespace cq
