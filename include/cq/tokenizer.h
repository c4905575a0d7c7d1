// Text ↔ token ids for the model families cq runs: SentencePiece-style (LLaMA; from GGUF metadata
// or a tokenizer.model), GPT-2 byte-level BPE (vocab.json + merges.txt, tokenizer.json or GGUF) and
// BERT WordPiece. Built from the model's own files so ids always match the weights.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace cq {

namespace gguf {
class File;
}
namespace hf {
struct ModelDir;
}

enum class TokenizerKind { spm, bpe, wordpiece };

class Tokenizer {
public:
    virtual ~Tokenizer() = default;

    virtual TokenizerKind kind() const = 0;
    virtual int32_t vocab_size() const = 0;
    /// Token ids of `text`. With `add_special`, the model's BOS (and for BERT [CLS] … [SEP]) is added
    /// as the model's own tokenizer config says; without it, only the text's tokens.
    virtual std::vector<int32_t> encode(std::string_view text, bool add_special) const = 0;
    /// The bytes token `id` stands for (byte tokens decoded, "▁" → space, GPT-2 byte map undone).
    /// Special tokens (BOS/EOS...) give "". Throws InvalidArgument for an out-of-range id.
    virtual std::string token_to_text(int32_t id) const = 0;
    /// The token's piece as stored in the vocabulary (for display).
    virtual std::string piece(int32_t id) const = 0;

    /// Concatenated token_to_text (for SPM without the leading space the encoder added).
    std::string decode(std::span<const int32_t> ids) const;

    int32_t bos_id() const { return bos_id_; }  // -1 if none
    int32_t eos_id() const { return eos_id_; }  // -1 if none
    bool adds_bos() const { return add_bos_; }

protected:
    int32_t bos_id_ = -1;
    int32_t eos_id_ = -1;
    bool add_bos_ = false;
    /// decode() drops one leading space from the first non-empty token text (SPM's dummy prefix,
    /// WordPiece's word-start marker).
    bool strip_leading_space_ = false;
};

/// From GGUF `tokenizer.ggml.*` metadata (model "llama" → SPM, "gpt2" → BPE, "bert" → WordPiece).
/// FormatError if the metadata is missing or inconsistent (e.g. scores/tokens of different lengths).
std::unique_ptr<Tokenizer> load_tokenizer(const gguf::File& file);
/// From an HF directory: tokenizer.model (SentencePiece, via libsentencepiece), tokenizer.json,
/// vocab.json + merges.txt, or vocab.txt. IoError naming what is missing when none is present.
std::unique_ptr<Tokenizer> load_tokenizer(const hf::ModelDir& dir);

}  // namespace cq
