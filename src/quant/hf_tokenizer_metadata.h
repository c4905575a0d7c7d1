// An HF directory's tokenizer as the GGUF `tokenizer.*` key-values llama.cpp's convert_hf_to_gguf.py writes.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "cq/io/gguf.h"

namespace cq::quant {

using GgufKeyValues = std::vector<std::pair<std::string, gguf::Value>>;

/// `arch` "llama": SentencePiece tokenizer.model → tokenizer model "llama"; "gpt2": GPT-2 byte-level BPE
/// (tokenizer.json or vocab.json + merges.txt) → "gpt2". `config`: config.json; `n_vocab`: its vocab_size
/// (≤ 0: the tokenizer's own size). Unsupported for a LLaMA tokenizer without tokenizer.model.
GgufKeyValues hf_tokenizer_metadata(const std::string& dir, const nlohmann::json& config, const std::string& arch, int64_t n_vocab);

}  // namespace cq::quant
