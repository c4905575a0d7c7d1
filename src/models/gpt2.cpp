// GPT-2 decoder block: pre-LayerNorm, fused q|k|v projection with bias, causal attention, output
// projection; LayerNorm → up (bias) → GELU (tanh) → down (bias); learned absolute positions.
#include <string>

#include "cq/error.h"
#include <algorithm>

#include "models/families.h"
#include "ops/ops.h"

namespace cq {

namespace {
void grow(std::vector<float>& v, int64_t n) {
    if (static_cast<int64_t>(v.size()) < n) v.resize(static_cast<size_t>(n));
}
}  // namespace

void gpt2_embed(const LlmConfig& c, const LlmWeights& w, std::span<const int32_t> tokens, int64_t n_past, float* x, ForwardScratch& s) {
    const int64_t T = static_cast<int64_t>(tokens.size()), D = c.n_embd;
    if (n_past + T > w.pos_embd->dim(0))
        throw InvalidArgument("[gpt2] position " + std::to_string(n_past + T - 1) + " is past the model's " +
                              std::to_string(w.pos_embd->dim(0)) + " learned positions");
    grow(s.tmp, T * D);
    ops::embedding(w.token_embd, tokens, x);
    std::vector<int32_t> positions(static_cast<size_t>(T));
    for (int64_t t = 0; t < T; ++t) positions[static_cast<size_t>(t)] = static_cast<int32_t>(n_past + t);
    ops::embedding(*w.pos_embd, positions, s.tmp.data());
    ops::add(x, s.tmp.data(), T * D);
}

void gpt2_block(const LlmConfig& c, const LlmWeights& w, KvCache& cache, int64_t l, float* x, int64_t T, int64_t n_past,
                ForwardScratch& s) {
    const int64_t D = c.n_embd, hd = c.head_dim, F = c.n_ff;
    grow(s.xn, T * D);
    grow(s.qkv, T * 3 * D);
    grow(s.attn, T * D);
    grow(s.up, T * F);
    grow(s.tmp, T * D);
    const DecoderBlock& b = w.blocks[static_cast<size_t>(l)];
    ops::layer_norm(x, T, D, b.attn_norm.weight, b.attn_norm.bias ? &*b.attn_norm.bias : nullptr, c.norm_eps, s.xn.data());
    // qkv: [T, 3D] = q | k | v, heads contiguous inside each
    ops::linear(b.wqkv, s.xn.data(), T, s.qkv.data());
    for (int64_t t = 0; t < T; ++t) {
        std::copy_n(s.qkv.data() + t * 3 * D + D, D, cache.k(l, n_past + t));
        std::copy_n(s.qkv.data() + t * 3 * D + 2 * D, D, cache.v(l, n_past + t));
    }
    ops::attention(s.qkv.data(), 3 * D, cache, l, n_past, T, c.n_head, c.n_head, hd, s.attn.data());
    ops::linear(b.wo, s.attn.data(), T, s.tmp.data());
    ops::add(x, s.tmp.data(), T * D);

    ops::layer_norm(x, T, D, b.ffn_norm.weight, b.ffn_norm.bias ? &*b.ffn_norm.bias : nullptr, c.norm_eps, s.xn.data());
    ops::linear(b.ffn_up, s.xn.data(), T, s.up.data());
    ops::gelu_tanh(s.up.data(), T * F);
    ops::linear(b.ffn_down, s.up.data(), T, s.tmp.data());
    ops::add(x, s.tmp.data(), T * D);
    if (s.block_observers) notify_block(s.block_observers, {l, x, T, D, nullptr});
}

void gpt2_head(const LlmConfig& c, const LlmWeights& w, const float* x, int64_t T, std::span<float> logits, bool all_logits,
               ForwardScratch& s) {
    grow(s.xn, T * c.n_embd);
    ops::layer_norm(x, T, c.n_embd, w.output_norm.weight, w.output_norm.bias ? &*w.output_norm.bias : nullptr, c.norm_eps, s.xn.data());
    lm_head(c, w, s.xn.data(), T, logits, all_logits);
}

void gpt2_forward(const LlmConfig& c, const LlmWeights& w, KvCache& cache, std::span<const int32_t> tokens, int64_t n_past,
                  std::span<float> logits, bool all_logits, ForwardScratch& s) {
    const int64_t T = static_cast<int64_t>(tokens.size());
    grow(s.x, T * c.n_embd);
    gpt2_embed(c, w, tokens, n_past, s.x.data(), s);
    for (int64_t l = 0; l < c.n_layer; ++l) gpt2_block(c, w, cache, l, s.x.data(), T, n_past, s);
    gpt2_head(c, w, s.x.data(), T, logits, all_logits, s);
}

}  // namespace cq
