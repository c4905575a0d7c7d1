// CLIP's byte-level BPE (transformers' CLIPTokenizer, the path it takes without ftfy): BasicTokenizer's cleaning (control
// characters dropped, whitespace to spaces, CJK ideographs spaced, per-character full lowercase; no accent stripping, no
// punctuation split), CLIP's regex, GPT-2's byte map, and merges by rank where a word's last symbol ends in "</w>".
// As transformers reads merges.txt, its first line is skipped and at most 49152 − 256 − 2 merges are used.
#include "tokenizers/clip_tokenizer.h"

#include <climits>
#include <filesystem>
#include <unordered_map>

#include "core/json_file.h"
#include "cq/error.h"
#include "cq/mapped_file.h"
#include "tokenizers/tokenizer_internal.h"

namespace cq::tok {

namespace {

namespace fs = std::filesystem;

constexpr size_t kMaxMerges = 49152 - 256 - 2;  // CLIPTokenizer: merges[1 : 49152 - 256 - 2 + 1]
constexpr std::string_view kEndOfWord = "</w>";

// Full lowercase of one code point (İ → i̇), as Python's str.lower per character.
void lowercase_into(uint32_t cp, std::vector<uint32_t>& out) {
    if (cp < 0x80) out.push_back(cp >= 'A' && cp <= 'Z' ? cp + 32 : cp);
    else append_lowercase(cp, out);
}

// Python's category Zs plus \t \n \r (BasicTokenizer's _is_whitespace); U+2028/2029 too (str.split splits on them).
bool is_basic_whitespace(uint32_t cp) {
    if (cp == ' ' || cp == '\t' || cp == '\n' || cp == '\r') return true;
    if (cp < 0x80 || cp == 0x85) return false;
    return is_white_space(cp);
}

class ClipTokenizer final : public PieceTokenizer {
public:
    TokenizerKind kind() const override { return TokenizerKind::bpe; }

    std::string token_to_text(int32_t id) const override {
        check(id);
        if (id == bos_id_ || id == eos_id_ || id == pad_id_) return {};
        std::string piece = pieces_[static_cast<size_t>(id)];
        const bool word_end = piece.ends_with(kEndOfWord);
        if (word_end) piece.resize(piece.size() - kEndOfWord.size());
        std::string out;
        for (size_t i = 0; i < piece.size();) {
            size_t len = 0;
            const uint32_t cp = utf8_decode(piece, i, len);
            const auto it = unicode_to_byte_.find(cp);
            if (it != unicode_to_byte_.end()) out += static_cast<char>(it->second);
            else out.append(piece, i, len);
            i += len;
        }
        if (word_end) out += ' ';  // CLIP's decoder: "</w>" → space
        return out;
    }

    int32_t pad_id() const { return pad_id_; }

    void load(const std::string& dir) {
        const std::string vocab_path = (fs::path(dir) / "vocab.json").string(), merges_path = (fs::path(dir) / "merges.txt").string();
        std::error_code ec;
        for (const auto& p : {vocab_path, merges_path})
            if (!fs::is_regular_file(p, ec)) throw IoError("[tokenizer] " + p + " does not exist (CLIP's tokenizer needs vocab.json and merges.txt)");
        const nlohmann::json vocab = read_json_file(vocab_path, "json");
        if (!vocab.is_object()) throw FormatError("json", vocab_path, 0, "the vocabulary is not a JSON object of piece → id");
        size_t n = 0;
        for (const auto& [piece, id] : vocab.items()) {
            if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() >= (int64_t{1} << 31))
                throw FormatError("json", vocab_path, 0, "vocabulary entry '" + piece + "' has an invalid id");
            n = std::max(n, static_cast<size_t>(id.get<int64_t>()) + 1);
        }
        pieces_.assign(n, "");
        for (const auto& [piece, id] : vocab.items()) {
            auto& slot = pieces_[static_cast<size_t>(id.get<int64_t>())];
            if (!slot.empty())
                throw FormatError("json", vocab_path, 0, "vocabulary id " + std::to_string(id.get<int64_t>()) + " is given to both '" + slot +
                                                             "' and '" + piece + "'");
            slot = piece;
            piece_to_id_.emplace(piece, static_cast<int32_t>(id.get<int64_t>()));
        }

        // bytes_to_unicode (GPT-2's printable stand-ins); every byte must be a piece, alone and word-final.
        uint32_t next = 256;
        for (uint32_t b = 0; b < 256; ++b) {
            const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
            const uint32_t cp = printable ? b : next++;
            utf8_append(byte_to_utf8_[b], cp);
            unicode_to_byte_[cp] = static_cast<uint8_t>(b);
            for (const std::string& s : {byte_to_utf8_[b], byte_to_utf8_[b] + std::string(kEndOfWord)})
                if (find_piece(piece_to_id_, s) < 0)
                    throw FormatError("json", vocab_path, 0, "CLIP's vocabulary has no piece '" + s + "' (byte " + std::to_string(b) + ")");
        }

        const std::string text = read_text_file(merges_path, 64ull << 20);
        size_t rank = 0;
        for (size_t pos = 0, line_no = 0; pos < text.size() && rank < kMaxMerges; ++line_no) {
            size_t end = text.find('\n', pos);
            if (end == std::string::npos) end = text.size();
            std::string_view line(text.data() + pos, end - pos);
            const uint64_t at = pos;
            pos = end + 1;
            if (line_no == 0) continue;  // "#version: 0.2", skipped whatever it says, as transformers does
            if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
            if (line.empty()) continue;
            const size_t sp = line.find(' ');
            if (sp == std::string_view::npos || sp == 0 || sp + 1 >= line.size() || line.find(' ', sp + 1) != std::string_view::npos)
                throw FormatError("merges", merges_path, at, "line " + std::to_string(line_no + 1) + " ('" + std::string(line) +
                                                                 "') is not two pieces separated by one space");
            ranks_.try_emplace(std::string(line), static_cast<int32_t>(rank++));
        }

        // Special tokens: tokenizer_config.json's strings (or {"content": …}), else CLIP's defaults.
        nlohmann::json cfg;
        const std::string cfg_path = (fs::path(dir) / "tokenizer_config.json").string();
        if (fs::is_regular_file(cfg_path, ec)) cfg = read_json_file(cfg_path, "json");
        const auto special = [&](const char* key, const char* fallback) {
            std::string s = fallback;
            if (cfg.is_object() && cfg.contains(key)) {
                const auto& v = cfg[key];
                if (v.is_string()) s = v.get<std::string>();
                else if (v.is_object() && v.contains("content") && v["content"].is_string()) s = v["content"].get<std::string>();
            }
            const int32_t id = find_piece(piece_to_id_, s);
            if (id < 0) throw FormatError("json", vocab_path, 0, std::string("the ") + key + " '" + s + "' is not in the vocabulary");
            return id;
        };
        bos_id_ = special("bos_token", "<|startoftext|>");
        eos_id_ = special("eos_token", "<|endoftext|>");
        pad_id_ = special("pad_token", "<|endoftext|>");
        unk_id_ = special("unk_token", "<|endoftext|>");
        add_bos_ = add_eos_ = true;
        bos_text_ = pieces_[static_cast<size_t>(bos_id_)];
        eos_text_ = pieces_[static_cast<size_t>(eos_id_)];
    }

private:
    void encode_text(std::string_view text, std::vector<int32_t>& out) const override {
        // BasicTokenizer: drop NUL, U+FFFD and control characters, whitespace → space, CJK spaced, lowercase.
        std::vector<uint32_t> cps;
        cps.reserve(text.size());
        for (size_t i = 0; i < text.size();) {
            size_t len = 0;
            const uint32_t cp = utf8_decode(text, i, len);
            i += len;
            if (is_basic_whitespace(cp)) cps.push_back(' ');
            else if (cp == 0 || cp == 0xFFFD || is_other(cp)) continue;
            else if (is_cjk_ideograph(cp)) cps.insert(cps.end(), {' ', cp, ' '});
            else lowercase_into(cp, cps);
        }
        // CLIP's pattern on the result: <|startoftext|>|<|endoftext|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+
        const size_t n = cps.size();
        const auto starts_with = [&](size_t i, std::string_view s) {
            if (i + s.size() > n) return false;
            for (size_t k = 0; k < s.size(); ++k)
                if (cps[i + k] != static_cast<unsigned char>(s[k])) return false;
            return true;
        };
        const auto is_space = [](uint32_t cp) { return is_white_space(cp); };
        std::string word;
        for (size_t i = 0; i < n;) {
            const uint32_t c = cps[i];
            if (is_space(c)) {
                ++i;
                continue;
            }
            if (starts_with(i, bos_text_) || starts_with(i, eos_text_)) {
                const bool bos = starts_with(i, bos_text_);
                out.push_back(bos ? bos_id_ : eos_id_);
                i += (bos ? bos_text_ : eos_text_).size();
                continue;
            }
            size_t j = i;
            if (c == '\'' && i + 1 < n) {
                const uint32_t a = cps[i + 1], b = i + 2 < n ? cps[i + 2] : 0;
                if (a == 's' || a == 't' || a == 'm' || a == 'd') j = i + 2;
                else if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) j = i + 3;
            }
            if (j == i) {
                if (is_letter(c)) {
                    while (j < n && is_letter(cps[j])) ++j;
                } else if (is_number(c)) {
                    j = i + 1;  // one digit per token
                } else {
                    while (j < n && !is_space(cps[j]) && !is_letter(cps[j]) && !is_number(cps[j])) ++j;
                }
            }
            word.clear();
            for (size_t k = i; k < j; ++k) {
                std::string utf8;
                utf8_append(utf8, cps[k]);
                for (const char ch : utf8) word += byte_to_utf8_[static_cast<uint8_t>(ch)];
            }
            bpe(word, out);
            i = j;
        }
    }

    // One pre-token (byte characters) → ids: symbols are its characters, the last one + "</w>"; the lowest-ranked
    // adjacent pair is merged everywhere (left to right) until no pair has a rank, as CLIPTokenizer.bpe does.
    void bpe(const std::string& word, std::vector<int32_t>& out) const {
        std::vector<std::string> sym;
        for (size_t i = 0; i < word.size();) {
            size_t len = 0;
            utf8_decode(word, i, len);
            sym.emplace_back(word, i, len);
            i += len;
        }
        if (sym.empty()) return;
        sym.back() += kEndOfWord;
        std::string key;
        while (sym.size() > 1) {
            int32_t best = INT32_MAX;
            size_t at = 0;
            for (size_t i = 0; i + 1 < sym.size(); ++i) {
                key.assign(sym[i]).append(" ").append(sym[i + 1]);
                if (const auto it = ranks_.find(key); it != ranks_.end() && it->second < best) {
                    best = it->second;
                    at = i;
                }
            }
            if (best == INT32_MAX) break;
            const std::string a = sym[at], b = sym[at + 1];
            std::vector<std::string> merged;
            merged.reserve(sym.size());
            for (size_t i = 0; i < sym.size();) {
                if (i + 1 < sym.size() && sym[i] == a && sym[i + 1] == b) {
                    merged.push_back(a + b);
                    i += 2;
                } else {
                    merged.push_back(sym[i++]);
                }
            }
            sym = std::move(merged);
        }
        for (const std::string& s : sym) {
            const int32_t id = find_piece(piece_to_id_, s);
            out.push_back(id >= 0 ? id : unk_id_);  // transformers: a piece outside the vocabulary is unk
        }
    }

    PieceMap piece_to_id_;
    std::unordered_map<std::string, int32_t> ranks_;  // "left right" → rank
    std::string byte_to_utf8_[256];
    std::unordered_map<uint32_t, uint8_t> unicode_to_byte_;
    std::string bos_text_, eos_text_;
    int32_t pad_id_ = -1, unk_id_ = -1;
};

}  // namespace

std::unique_ptr<Tokenizer> make_clip_tokenizer(const std::string& dir) {
    auto t = std::make_unique<ClipTokenizer>();
    t->load(dir);
    return t;
}

int32_t clip_pad_id(const Tokenizer& t) {
    const auto* c = dynamic_cast<const ClipTokenizer*>(&t);
    if (!c) throw InvalidArgument("[tokenizer] clip_pad_id needs CLIP's tokenizer");
    return c->pad_id();
}

}  // namespace cq::tok
