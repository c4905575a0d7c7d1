// Forward passes of the decoder families, written as sequences of ops (src/ops) over the weights.
#pragma once

#include <span>
#include <vector>

#include "cq/llm.h"

namespace cq {

/// Activations reused across calls (grown on demand), one set per model.
struct ForwardScratch {
    std::vector<float> x, xn, q, k, v, qkv, attn, gate, up, tmp;
    const std::vector<std::pair<ObserverId, BlockObserver>>* block_observers = nullptr;  // null: none attached
};

void llama_forward(const LlmConfig& c, const LlmWeights& w, KvCache& cache, std::span<const int32_t> tokens, int64_t n_past,
                   std::span<float> logits, bool all_logits, ForwardScratch& s);
void gpt2_forward(const LlmConfig& c, const LlmWeights& w, KvCache& cache, std::span<const int32_t> tokens, int64_t n_past,
                  std::span<float> logits, bool all_logits, ForwardScratch& s);

/// The same passes a stage at a time (LanguageModel::embed / run_block / run_head): x [T, n_embd] is the residual
/// stream, changed in place by each block.
void llama_block(const LlmConfig& c, const LlmWeights& w, KvCache& cache, int64_t l, float* x, int64_t T, int64_t n_past,
                 ForwardScratch& s);
void llama_head(const LlmConfig& c, const LlmWeights& w, const float* x, int64_t T, std::span<float> logits, bool all_logits,
                ForwardScratch& s);
void gpt2_embed(const LlmConfig& c, const LlmWeights& w, std::span<const int32_t> tokens, int64_t n_past, float* x, ForwardScratch& s);
void gpt2_block(const LlmConfig& c, const LlmWeights& w, KvCache& cache, int64_t l, float* x, int64_t T, int64_t n_past,
                ForwardScratch& s);
void gpt2_head(const LlmConfig& c, const LlmWeights& w, const float* x, int64_t T, std::span<float> logits, bool all_logits,
               ForwardScratch& s);

/// Final norm output x: [T, n_embd] → logits for all rows or only the last.
void lm_head(const LlmConfig& c, const LlmWeights& w, const float* x, int64_t T, std::span<float> logits, bool all_logits);

}  // namespace cq
