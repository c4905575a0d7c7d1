// Decoder-only language models (LLaMA family incl. Mistral/Qwen2-style configs, GPT-2) built from a
// GGUF file or an HF directory: weights stay memory-mapped, compute is f32 over f32/f16/bf16 weights,
// prompt tokens are processed as one batch, and a KV cache serves generation.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "cq/model.h"
#include "cq/tensor.h"
#include "cq/tokenizer.h"

namespace cq {

enum class LlmFamily { llama, gpt2 };

/// How RoPE pairs the dimensions of a head: GGUF `llama` weights rotate adjacent pairs (2i, 2i+1);
/// HF weights are stored permuted for rotate_half, pairing (i, i + head_dim/2). Using the pairing that
/// matches the file avoids un-permuting q/k at load.
enum class RopePairing { adjacent, half_split };

struct LlmConfig {
    LlmFamily family = LlmFamily::llama;
    std::string architecture;  // as the file names it: "llama", "mistral", "qwen2", "gpt2"
    int64_t n_vocab = 0;
    int64_t n_embd = 0;
    int64_t n_layer = 0;
    int64_t n_head = 0;
    int64_t n_head_kv = 0;
    int64_t head_dim = 0;
    int64_t n_ff = 0;
    int64_t n_ctx_train = 0;
    float norm_eps = 1e-5f;
    // RoPE (llama family)
    float rope_theta = 10000.0f;
    float rope_scale = 1.0f;  // linear position scaling: position / rope_scale
    int64_t rope_dims = 0;    // rotated dimensions per head (≤ head_dim)
    RopePairing rope_pairing = RopePairing::adjacent;
};

struct DecoderBlock {
    Norm attn_norm, ffn_norm;
    Linear wq, wk, wv, wo;        // llama (separate projections)
    Linear wqkv;                  // gpt2 (fused q|k|v)
    Linear ffn_gate, ffn_up, ffn_down;
};

struct LlmWeights {
    Tensor token_embd;               // [n_vocab, n_embd]
    std::optional<Tensor> pos_embd;  // gpt2: [n_ctx_train, n_embd]
    std::vector<DecoderBlock> blocks;
    Norm output_norm;
    Linear output;                   // tied models point at token_embd
    /// Empty while the embedding tables are the file's; a pass that changes them (training) names itself here, and
    /// Model::save writes them as the model holds them.
    std::string embeddings_modified_by;
};

/// Per-sequence attention state: K and V for every layer and position (f32).
class KvCache {
public:
    KvCache() = default;
    KvCache(int64_t n_layer, int64_t n_ctx, int64_t kv_dim);
    int64_t n_ctx() const { return n_ctx_; }
    float* k(int64_t layer, int64_t pos) { return k_.data() + (layer * n_ctx_ + pos) * kv_dim_; }
    float* v(int64_t layer, int64_t pos) { return v_.data() + (layer * n_ctx_ + pos) * kv_dim_; }
    /// Bytes held by K and V together.
    uint64_t bytes() const { return (k_.size() + v_.size()) * sizeof(float); }

private:
    int64_t n_ctx_ = 0, kv_dim_ = 0;
    std::vector<float> k_, v_;
};

struct ForwardScratch;

struct LoadOptions {
    int64_t n_ctx = 0;  // KV cache length; 0 = the model's training context (capped at 4096)
    // Longer prompts run in micro-batches of this many tokens (llama.cpp's n_ubatch): batch buffers are
    // sized by it, not by the prompt. Results do not depend on it.
    int64_t micro_batch = 512;
    // false: no load-time packed copies of the weights (a model loaded to be changed and saved, not run fast)
    bool pack_for_kernels = true;
};

class LanguageModel : public Model {
public:
    LanguageModel();
    ~LanguageModel() override;
    /// Loads a .gguf file or an HF directory. Unsupported names the architecture and the supported ones.
    static std::unique_ptr<LanguageModel> load(const std::string& path, const LoadOptions& options = {});

    const LlmConfig& config() const { return config_; }
    const Tokenizer& tokenizer() const { return *tokenizer_; }
    const LlmWeights& weights() const { return weights_; }
    LlmWeights& weights() { return weights_; }

    ModelKind kind() const override { return ModelKind::decoder; }
    const std::string& architecture() const override { return config_.architecture; }
    int64_t n_blocks() const override { return config_.n_layer; }
    std::vector<LayerInfo> layers() const override;
    /// The KV cache length this model was set up with.
    int64_t n_ctx() const { return cache_.n_ctx(); }

    /// Runs `tokens` at positions [n_past, n_past + T) and writes logits [T, n_vocab] (all positions)
    /// or [1, n_vocab] (the last one) to `logits`. Positions ≥ n_past + T are forgotten.
    void forward(std::span<const int32_t> tokens, int64_t n_past, std::span<float> logits, bool all_logits);

    /// The forward pass a stage at a time, for passes that calibrate block by block (GPTQ, AWQ) and so hold one
    /// block's activations, not the whole model's: embed → run_block(0) … run_block(n_blocks − 1) → run_head equals
    /// forward(tokens, n_past, logits, true). hidden is the residual stream [T, n_embd], changed in place; positions
    /// are [n_past, n_past + T) of one sequence (run_block fills block's part of the KV cache). Observers fire as in forward.
    void embed(std::span<const int32_t> tokens, int64_t n_past, float* hidden);
    void run_block(int64_t block, float* hidden, int64_t T, int64_t n_past);
    void run_head(const float* hidden, int64_t T, float* logits);

    /// Writes the model as llama.cpp-compatible GGUF (see Model::save): Linears a pass changed as the model
    /// holds them, every other tensor as the file has it (an HF directory: as convert_hf_to_gguf.py converts it).
    void save(const std::string& path, const SaveOptions& options = {}) const override;

    /// Bytes of weight data (what one generated token has to read).
    uint64_t weight_bytes() const;
    /// Bytes the forward pass's scratch buffers hold now (activations / workspace; they grow to the largest batch run).
    uint64_t workspace_bytes() const;
    /// Bytes of the KV cache (K and V, f32, every layer and position: allocated whole at load).
    uint64_t kv_cache_bytes() const;

private:
    LlmConfig config_;
    LlmWeights weights_;
    std::unique_ptr<Tokenizer> tokenizer_;
    KvCache cache_;
    int64_t micro_batch_ = 512;
    void collect_linears(std::vector<Linear*>& out) override;
    std::unique_ptr<ForwardScratch> scratch_;
    friend class LlmLoader;
};

/// The architectures LanguageModel::load accepts, for error messages and --help.
std::string supported_llm_architectures();

}  // namespace cq
