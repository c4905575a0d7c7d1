// The one HF ↔ GGUF tensor-name table of the decoder families: each tensor's llama.cpp name, its name in
// an HF checkpoint and its role. The model loader (both file forms) and the HF → GGUF converter
// (quant/hf_model_source.cpp) read names from here, so a family's naming is written once.
#pragma once

#include <string>
#include <string_view>

#include "cq/error.h"
#include "cq/llm.h"
#include "cq/model.h"

namespace cq::models {

struct TensorName {
    const char* gguf;  // llama.cpp's name without ".weight": "attn_q", "token_embd"
    const char* hf;    // the HF module path without ".weight" (relative to the block inside a block)
    LayerRole role;
};

// Tensors inside block N: GGUF "blk.N.<gguf>", HF "<block prefix>N.<hf>".
inline constexpr TensorName kLlamaBlockTensors[] = {
    {"attn_norm", "input_layernorm", LayerRole::norm},
    {"attn_q", "self_attn.q_proj", LayerRole::attn_q},
    {"attn_k", "self_attn.k_proj", LayerRole::attn_k},
    {"attn_v", "self_attn.v_proj", LayerRole::attn_v},
    {"attn_output", "self_attn.o_proj", LayerRole::attn_out},
    {"ffn_norm", "post_attention_layernorm", LayerRole::norm},
    {"ffn_gate", "mlp.gate_proj", LayerRole::ffn_gate},
    {"ffn_up", "mlp.up_proj", LayerRole::ffn_up},
    {"ffn_down", "mlp.down_proj", LayerRole::ffn_down},
};
inline constexpr TensorName kGpt2BlockTensors[] = {
    {"attn_norm", "ln_1", LayerRole::norm},
    {"attn_qkv", "attn.c_attn", LayerRole::attn_qkv},
    {"attn_output", "attn.c_proj", LayerRole::attn_out},
    {"ffn_norm", "ln_2", LayerRole::norm},
    {"ffn_up", "mlp.c_fc", LayerRole::ffn_up},
    {"ffn_down", "mlp.c_proj", LayerRole::ffn_down},
};
// Tensors outside the blocks (GPT-2's HF names take the "transformer." prefix when the file uses it).
inline constexpr TensorName kLlamaGlobalTensors[] = {
    {"token_embd", "model.embed_tokens", LayerRole::token_embed},
    {"output_norm", "model.norm", LayerRole::norm},
    {"output", "lm_head", LayerRole::lm_head},
};
inline constexpr TensorName kGpt2GlobalTensors[] = {
    {"token_embd", "wte", LayerRole::token_embed},
    {"position_embd", "wpe", LayerRole::position_embed},
    {"output_norm", "ln_f", LayerRole::norm},
    {"output", "lm_head", LayerRole::lm_head},
};

/// How one checkpoint of a decoder family names its tensors.
class DecoderNames {
public:
    /// hf: HF names (gpt2_prefix "transformer." or "" for GPT-2 files saved without it); else GGUF names.
    DecoderNames(LlmFamily family, bool hf, std::string gpt2_prefix = "transformer.")
        : family_(family), hf_(hf), prefix_(family == LlmFamily::gpt2 ? std::move(gpt2_prefix) : "") {}

    /// The file's name of a block tensor ("attn_q" in block 3 → "blk.3.attn_q" or "model.layers.3.self_attn.q_proj").
    std::string block(int64_t n, std::string_view gguf) const {
        const TensorName& t = find(gguf, true);
        if (!hf_) return "blk." + std::to_string(n) + "." + t.gguf;
        return (family_ == LlmFamily::llama ? std::string("model.layers.") : prefix_ + "h.") + std::to_string(n) + "." + t.hf;
    }
    /// The file's name of a tensor outside the blocks ("output" → "output" or "lm_head").
    std::string global(std::string_view gguf) const {
        const TensorName& t = find(gguf, false);
        if (!hf_) return t.gguf;
        return t.role == LayerRole::lm_head ? std::string(t.hf) : prefix_ + t.hf;
    }
    LayerRole role(std::string_view gguf, bool in_block) const { return find(gguf, in_block).role; }

private:
    const TensorName& find(std::string_view gguf, bool in_block) const {
        const auto search = [&](const auto& table) -> const TensorName* {
            for (const TensorName& t : table)
                if (gguf == t.gguf) return &t;
            return nullptr;
        };
        const TensorName* t = family_ == LlmFamily::llama ? (in_block ? search(kLlamaBlockTensors) : search(kLlamaGlobalTensors))
                                                          : (in_block ? search(kGpt2BlockTensors) : search(kGpt2GlobalTensors));
        if (!t) throw Error("[names] no tensor '" + std::string(gguf) + "' in the name table");  // a bug, not bad input
        return *t;
    }
    LlmFamily family_;
    bool hf_;
    std::string prefix_;
};

}  // namespace cq::models
