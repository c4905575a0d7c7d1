// Internals shared by the tokenizer implementations: UTF-8 helpers, Unicode classes (ICU), GGUF
// metadata access with error reporting, and the per-family factories load_tokenizer() dispatches to.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

#include "cq/tokenizer.h"

namespace cq::gguf {
struct Value;
}

namespace cq::tok {

// ---- UTF-8 ------------------------------------------------------------------------------------------

/// Decodes one code point at `s[i]`; `len` gets the bytes consumed (≥ 1). Malformed sequences
/// (bad continuation, overlong, surrogate, > U+10FFFF, truncated) give U+FFFD and consume one byte.
uint32_t utf8_decode(std::string_view s, size_t i, size_t& len);
void utf8_append(std::string& out, uint32_t cp);

/// "▁" (U+2581), SentencePiece's visible space.
inline constexpr std::string_view kSpmSpace = "\xE2\x96\x81";
/// `s` with every "▁" replaced by a space.
std::string spm_unescape(std::string_view s);
/// Parses "<0xAB>" → 0xAB; nullopt if `piece` is not of that form.
std::optional<uint8_t> parse_byte_piece(std::string_view piece);

// ---- Unicode classes (ICU) --------------------------------------------------------------------------

bool is_letter(uint32_t cp);        // \p{L}
bool is_number(uint32_t cp);        // \p{N}
bool is_white_space(uint32_t cp);   // White_Space property (\s in Python `regex` and Rust)
bool is_punctuation(uint32_t cp);   // \p{P}
bool is_other(uint32_t cp);         // \p{C}: Cc Cf Cs Co Cn
bool is_nonspacing_mark(uint32_t cp);  // Mn
bool is_cjk_ideograph(uint32_t cp);    // the CJK blocks BERT pads with spaces
/// cps in NFD with the nonspacing marks (Mn) removed (BERT's strip_accents).
std::vector<uint32_t> strip_accents(const std::vector<uint32_t>& cps);
/// Appends the full lowercase mapping of cp (İ → i̇), per character like Rust's char::to_lowercase.
void append_lowercase(uint32_t cp, std::vector<uint32_t>& out);

// ---- string-keyed maps with string_view lookup --------------------------------------------------------

struct StringHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};
using PieceMap = std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>>;

inline int32_t find_piece(const PieceMap& map, std::string_view s) {
    const auto it = map.find(s);
    return it == map.end() ? -1 : it->second;
}

// ---- GGUF token types (llama.cpp's llama_token_type) --------------------------------------------------

enum class TokenType : int32_t { undefined = 0, normal = 1, unknown = 2, control = 3, user_defined = 4, unused = 5, byte = 6 };

/// Reads `tokenizer.ggml.*` (and other) metadata with FormatErrors that name the file, the key and
/// the byte offset of its record.
class GgufMeta {
public:
    explicit GgufMeta(const gguf::File& file) : file_(file) {}
    const std::string& path() const;
    const gguf::Value* find(std::string_view key) const;
    uint64_t offset(std::string_view key) const;
    [[noreturn]] void fail(std::string_view key, const std::string& what) const;

    std::vector<std::string> strings(std::string_view key) const;  // required string array
    std::optional<std::vector<double>> numbers(std::string_view key) const;  // optional number array
    std::optional<std::vector<int64_t>> integers(std::string_view key) const;  // optional int array
    /// The token pieces: a required, non-empty string array of fewer than 2^31 entries.
    std::vector<std::string> tokens() const;
    /// FormatError unless an optional per-token array `key` has one entry for each of n_vocab tokens.
    void expect_per_token(std::string_view key, size_t size, size_t n_vocab) const;
    /// `tokenizer.ggml.token_type`, checked to be per token and llama.cpp's types; nullopt if absent.
    std::optional<std::vector<TokenType>> token_types(size_t n_vocab) const;
    std::optional<bool> boolean(std::string_view key) const;
    /// A token id key: absent, -1 or 0xFFFFFFFF → nullopt; otherwise it must lie in [0, n_vocab).
    std::optional<int32_t> token_id(std::string_view key, size_t n_vocab) const;

private:
    const gguf::File& file_;
};

// ---- the vocabulary-backed implementations -------------------------------------------------------------

/// InvalidArgument unless 0 ≤ id < n_vocab.
void check_token_id(int32_t id, int32_t n_vocab);

/// What the SPM, BPE and WordPiece tokenizers share: the pieces indexed by id, and encode() as BOS, the
/// text's tokens, EOS.
class PieceTokenizer : public Tokenizer {
public:
    int32_t vocab_size() const override { return static_cast<int32_t>(pieces_.size()); }
    std::string piece(int32_t id) const override {
        check_token_id(id, vocab_size());
        return pieces_[static_cast<size_t>(id)];
    }
    std::vector<int32_t> encode(std::string_view text, bool add_special) const override {
        std::vector<int32_t> out;
        if (add_special && add_bos_ && bos_id_ >= 0) out.push_back(bos_id_);
        encode_text(text, out);
        if (add_special && add_eos_ && eos_id_ >= 0) out.push_back(eos_id_);
        return out;
    }

protected:
    /// Appends the tokens of `text` alone (no BOS/EOS) to `out`.
    virtual void encode_text(std::string_view text, std::vector<int32_t>& out) const = 0;
    void check(int32_t id) const { check_token_id(id, vocab_size()); }

    std::vector<std::string> pieces_;
    bool add_eos_ = false;
};

// ---- factories ----------------------------------------------------------------------------------------

std::unique_ptr<Tokenizer> make_spm_from_gguf(const GgufMeta& meta);
std::unique_ptr<Tokenizer> make_bpe_from_gguf(const GgufMeta& meta);
std::unique_ptr<Tokenizer> make_wordpiece_from_gguf(const GgufMeta& meta);

/// Settings an HF directory gives through config.json / tokenizer_config.json.
struct HfTokenizerConfig {
    std::string dir;
    nlohmann::json config;            // config.json (may be null)
    nlohmann::json tokenizer_config;  // tokenizer_config.json (may be null)
};

std::unique_ptr<Tokenizer> make_sentencepiece(const std::string& model_path, const HfTokenizerConfig& cfg);
/// vocab.json + merges.txt.
std::unique_ptr<Tokenizer> make_bpe_from_files(const std::string& vocab_path, const std::string& merges_path,
                                               const HfTokenizerConfig& cfg);
/// tokenizer.json of any supported model type (BPE byte-level, WordPiece); nullptr if its model type
/// is one cq does not implement (the caller may fall back to other files).
std::unique_ptr<Tokenizer> make_from_tokenizer_json(const std::string& path, const HfTokenizerConfig& cfg);
std::unique_ptr<Tokenizer> make_bpe_from_tokenizer_json(const std::string& path, const nlohmann::json& j,
                                                        const HfTokenizerConfig& cfg);
std::unique_ptr<Tokenizer> make_wordpiece_from_tokenizer_json(const std::string& path, const nlohmann::json& j,
                                                              const HfTokenizerConfig& cfg);
std::unique_ptr<Tokenizer> make_wordpiece_from_vocab_txt(const std::string& path, const HfTokenizerConfig& cfg);

/// Helpers for the HF configs: a bool / string / int setting from tokenizer_config.json, then config.json.
std::optional<bool> hf_bool(const HfTokenizerConfig& cfg, const char* key);
std::optional<int64_t> hf_int(const HfTokenizerConfig& cfg, const char* key);
/// A special token's content from tokenizer_config.json: a string or an {"content": ...} object.
std::optional<std::string> hf_token_string(const HfTokenizerConfig& cfg, const char* key);

// ---- GPT-2 pre-tokenizer (exposed for tests) ------------------------------------------------------------

/// Byte ranges [begin, end) of the pieces the GPT-2 regex
/// 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
/// splits `text` into, with Python `regex` semantics. Together they cover `text` exactly.
void gpt2_pretokenize(std::string_view text, std::vector<std::pair<size_t, size_t>>& out);

}  // namespace cq::tok
