// LLaMA-family decoder block (also Mistral and Qwen2 configs): RMSNorm → q/k/v (optional biases) →
// RoPE → grouped-query causal attention → output projection → residual; RMSNorm → SwiGLU MLP → residual.
#include <algorithm>

#include "models/families.h"
#include "ops/ops.h"

namespace cq {

namespace {
void grow(std::vector<float>& v, int64_t n) {
    if (static_cast<int64_t>(v.size()) < n) v.resize(static_cast<size_t>(n));
}
}  // namespace

void lm_head(const LlmConfig& c, const LlmWeights& w, const float* x, int64_t T, std::span<float> logits, bool all_logits) {
    if (all_logits) ops::linear(w.output, x, T, logits.data());
    else ops::linear(w.output, x + (T - 1) * c.n_embd, 1, logits.data());
}

void llama_block(const LlmConfig& c, const LlmWeights& w, KvCache& cache, int64_t l, float* x, int64_t T, int64_t n_past,
                 ForwardScratch& s) {
    const int64_t D = c.n_embd, hd = c.head_dim, q_dim = c.n_head * hd, kv_dim = c.n_head_kv * hd, F = c.n_ff;
    grow(s.xn, T * D);
    grow(s.q, T * q_dim);
    grow(s.k, T * kv_dim);
    grow(s.v, T * kv_dim);
    grow(s.attn, T * q_dim);
    grow(s.gate, T * F);
    grow(s.up, T * F);
    grow(s.tmp, T * D);
    const DecoderBlock& b = w.blocks[static_cast<size_t>(l)];
    // x: [T, D] → xn
    ops::rms_norm(x, T, D, b.attn_norm.weight, c.norm_eps, s.xn.data());
    ops::linear(b.wq, s.xn.data(), T, s.q.data());
    ops::linear(b.wk, s.xn.data(), T, s.k.data());
    ops::linear(b.wv, s.xn.data(), T, s.v.data());
    ops::rope(s.q.data(), T, q_dim, c.n_head, hd, c.rope_dims, n_past, c.rope_theta, c.rope_scale, c.rope_pairing);
    ops::rope(s.k.data(), T, kv_dim, c.n_head_kv, hd, c.rope_dims, n_past, c.rope_theta, c.rope_scale, c.rope_pairing);
    for (int64_t t = 0; t < T; ++t) {
        std::copy_n(s.k.data() + t * kv_dim, kv_dim, cache.k(l, n_past + t));
        std::copy_n(s.v.data() + t * kv_dim, kv_dim, cache.v(l, n_past + t));
    }
    ops::attention(s.q.data(), q_dim, cache, l, n_past, T, c.n_head, c.n_head_kv, hd, s.attn.data());
    ops::linear(b.wo, s.attn.data(), T, s.tmp.data());
    ops::add(x, s.tmp.data(), T * D);

    ops::rms_norm(x, T, D, b.ffn_norm.weight, c.norm_eps, s.xn.data());
    ops::linear(b.ffn_gate, s.xn.data(), T, s.gate.data());
    ops::linear(b.ffn_up, s.xn.data(), T, s.up.data());
    ops::silu_mul(s.gate.data(), s.up.data(), T * F);
    ops::linear(b.ffn_down, s.gate.data(), T, s.tmp.data());
    ops::add(x, s.tmp.data(), T * D);
    if (s.block_observers) notify_block(s.block_observers, {l, x, T, D, nullptr});
}

void llama_head(const LlmConfig& c, const LlmWeights& w, const float* x, int64_t T, std::span<float> logits, bool all_logits,
                ForwardScratch& s) {
    grow(s.xn, T * c.n_embd);
    ops::rms_norm(x, T, c.n_embd, w.output_norm.weight, c.norm_eps, s.xn.data());
    lm_head(c, w, s.xn.data(), T, logits, all_logits);
}

void llama_forward(const LlmConfig& c, const LlmWeights& w, KvCache& cache, std::span<const int32_t> tokens, int64_t n_past,
                   std::span<float> logits, bool all_logits, ForwardScratch& s) {
    const int64_t T = static_cast<int64_t>(tokens.size());
    grow(s.x, T * c.n_embd);
    ops::embedding(w.token_embd, tokens, s.x.data());
    for (int64_t l = 0; l < c.n_layer; ++l) llama_block(c, w, cache, l, s.x.data(), T, n_past, s);
    llama_head(c, w, s.x.data(), T, logits, all_logits, s);
}

}  // namespace cq
