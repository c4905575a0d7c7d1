// BERT WordPiece, as HF's BertNormalizer + BertPreTokenizer + WordPiece: drop NUL, U+FFFD and
// control characters, whitespace → space, pad CJK ideographs with spaces, NFD + drop Mn (strip
// accents), per-character full lowercase, split on whitespace and around punctuation, then greedy
// longest-match with "##" continuation pieces ([UNK] for a word > 100 characters or one that cannot be
// segmented). Loads vocab.txt, an HF tokenizer.json of model type WordPiece, or GGUF "bert" metadata
// (llama.cpp's renamed pieces: "▁" marks word starts, continuations lose "##").

#include "cq/error.h"
#include "cq/io/gguf.h"
#include "cq/mapped_file.h"
#include "tokenizers/tokenizer_internal.h"

namespace cq::tok {

namespace {

constexpr std::string_view kContinuation = "##";

struct WordPieceOptions {
    bool lowercase = true;
    bool strip_accents = true;
    bool clean_text = true;
    bool chinese_chars = true;
    size_t max_word_chars = 100;
};

class WordPieceTokenizer final : public PieceTokenizer {
public:
    TokenizerKind kind() const override { return TokenizerKind::wordpiece; }

    std::string token_to_text(int32_t id) const override {
        check(id);
        return text_[static_cast<size_t>(id)];
    }

    /// `pieces`: as stored in the file; `hf`: the same in HF form ("##" continuations); `control`: special tokens.
    void build(std::vector<std::string> pieces, const std::vector<std::string>& hf, const std::vector<bool>& control,
               WordPieceOptions opt) {
        pieces_ = std::move(pieces);
        opt_ = opt;
        text_.resize(pieces_.size());
        map_.reserve(hf.size());
        for (size_t i = 0; i < hf.size(); ++i) {
            if (!hf[i].empty()) map_.emplace(hf[i], static_cast<int32_t>(i));
            max_piece_bytes_ = std::max(max_piece_bytes_, hf[i].size());
            if (control[i]) continue;
            if (hf[i].rfind(kContinuation, 0) == 0) text_[i] = hf[i].substr(kContinuation.size());
            else text_[i] = " " + hf[i];
        }
        strip_leading_space_ = true;
    }

    void set_specials(int32_t unk, int32_t cls, int32_t sep, bool add_cls, bool add_sep) {
        unk_id_ = unk;
        bos_id_ = cls;
        eos_id_ = sep;
        add_bos_ = add_cls && cls >= 0;
        add_eos_ = add_sep && sep >= 0;
    }

    const PieceMap& map() const { return map_; }

private:
    void encode_text(std::string_view text, std::vector<int32_t>& out) const override {
        const std::vector<uint32_t> cps = normalize(text);
        std::string word;
        size_t word_chars = 0;
        const auto flush = [&] {
            if (word_chars > 0) tokenize_word(word, word_chars, out);
            word.clear();
            word_chars = 0;
        };
        for (const uint32_t cp : cps) {
            if (is_white_space(cp)) {
                flush();
            } else if (is_bert_punctuation(cp)) {
                flush();
                utf8_append(word, cp);
                word_chars = 1;
                flush();
            } else {
                utf8_append(word, cp);
                ++word_chars;
            }
        }
        flush();
    }

    static bool is_bert_punctuation(uint32_t cp) {
        if ((cp >= 33 && cp <= 47) || (cp >= 58 && cp <= 64) || (cp >= 91 && cp <= 96) || (cp >= 123 && cp <= 126))
            return true;
        return cp >= 0x80 && is_punctuation(cp);
    }

    std::vector<uint32_t> normalize(std::string_view text) const {
        std::vector<uint32_t> cps;
        cps.reserve(text.size());
        bool ascii = true;
        for (size_t i = 0; i < text.size();) {
            size_t len = 0;
            const uint32_t cp = utf8_decode(text, i, len);
            i += len;
            if (opt_.clean_text) {
                if (cp == 0 || cp == 0xFFFD) continue;
                if (cp == '\t' || cp == '\n' || cp == '\r' || is_white_space(cp)) {
                    cps.push_back(' ');
                    continue;
                }
                if (is_other(cp)) continue;
            }
            if (opt_.chinese_chars && is_cjk_ideograph(cp)) {
                cps.push_back(' ');
                cps.push_back(cp);
                cps.push_back(' ');
            } else {
                cps.push_back(cp);
            }
            ascii = ascii && cp < 0x80;
        }
        if (!ascii && opt_.strip_accents) cps = strip_accents(cps);
        if (opt_.lowercase) {
            if (ascii) {
                for (uint32_t& cp : cps)
                    if (cp >= 'A' && cp <= 'Z') cp += 32;
            } else {
                cps = lowercase(cps);
            }
        }
        return cps;
    }

    // Per character, like Rust's char::to_lowercase (no final-sigma context), full mappings (İ → i̇).
    static std::vector<uint32_t> lowercase(const std::vector<uint32_t>& cps) {
        std::vector<uint32_t> out;
        out.reserve(cps.size());
        for (const uint32_t cp : cps) append_lowercase(cp, out);
        return out;
    }

    void tokenize_word(const std::string& word, size_t n_chars, std::vector<int32_t>& out) const {
        if (n_chars > opt_.max_word_chars) {
            out.push_back(unk_id_);
            return;
        }
        std::vector<size_t> bounds;  // byte offsets of character starts, plus the end
        bounds.reserve(n_chars + 1);
        for (size_t i = 0; i < word.size();) {
            bounds.push_back(i);
            size_t len = 0;
            utf8_decode(word, i, len);
            i += len;
        }
        bounds.push_back(word.size());

        const size_t first = out.size();
        std::string candidate;
        for (size_t s = 0; s + 1 < bounds.size();) {
            int32_t found = -1;
            size_t found_end = 0;
            for (size_t e = bounds.size() - 1; e > s; --e) {
                const size_t bytes = bounds[e] - bounds[s] + (s > 0 ? kContinuation.size() : 0);
                if (bytes > max_piece_bytes_) continue;
                candidate.clear();
                if (s > 0) candidate += kContinuation;
                candidate.append(word, bounds[s], bounds[e] - bounds[s]);
                if (const int32_t id = find_piece(map_, candidate); id >= 0) {
                    found = id;
                    found_end = e;
                    break;
                }
            }
            if (found < 0) {
                out.resize(first);
                out.push_back(unk_id_);
                return;
            }
            out.push_back(found);
            s = found_end;
        }
    }

    std::vector<std::string> text_;
    PieceMap map_;
    size_t max_piece_bytes_ = 0;
    int32_t unk_id_ = -1;
    WordPieceOptions opt_;
};

int32_t id_of(const PieceMap& map, const std::optional<std::string>& piece, const char* fallback) {
    if (piece)
        if (const int32_t id = find_piece(map, *piece); id >= 0) return id;
    return find_piece(map, fallback);
}

WordPieceOptions options_from_config(const HfTokenizerConfig& cfg) {
    WordPieceOptions opt;
    opt.lowercase = hf_bool(cfg, "do_lower_case").value_or(true);
    opt.strip_accents = hf_bool(cfg, "strip_accents").value_or(opt.lowercase);
    opt.chinese_chars = hf_bool(cfg, "tokenize_chinese_chars").value_or(true);
    return opt;
}

std::unique_ptr<Tokenizer> finish_hf(std::vector<std::string> pieces, const WordPieceOptions& opt,
                                     const HfTokenizerConfig& cfg, const std::string& path,
                                     const std::optional<std::string>& unk_override, std::vector<bool> control) {
    auto t = std::make_unique<WordPieceTokenizer>();
    std::vector<std::string> hf = pieces;
    control.resize(pieces.size(), false);
    PieceMap tmp;
    for (size_t i = 0; i < hf.size(); ++i) tmp.emplace(hf[i], static_cast<int32_t>(i));
    const int32_t unk = id_of(tmp, unk_override ? unk_override : hf_token_string(cfg, "unk_token"), "[UNK]");
    const int32_t cls = id_of(tmp, hf_token_string(cfg, "cls_token"), "[CLS]");
    const int32_t sep = id_of(tmp, hf_token_string(cfg, "sep_token"), "[SEP]");
    if (unk < 0) throw FormatError("wordpiece", path, 0, "the vocabulary has no unknown token ([UNK])");
    for (const char* key : {"unk_token", "cls_token", "sep_token", "pad_token", "mask_token"})
        if (const auto s = hf_token_string(cfg, key))
            if (const int32_t id = find_piece(tmp, *s); id >= 0) control[static_cast<size_t>(id)] = true;
    for (const int32_t id : {unk, cls, sep})
        if (id >= 0) control[static_cast<size_t>(id)] = true;
    for (const char* s : {"[PAD]", "[MASK]"})
        if (const int32_t id = find_piece(tmp, s); id >= 0) control[static_cast<size_t>(id)] = true;
    t->build(std::move(pieces), hf, control, opt);
    t->set_specials(unk, cls, sep, true, true);
    return t;
}

}  // namespace

std::unique_ptr<Tokenizer> make_wordpiece_from_vocab_txt(const std::string& path, const HfTokenizerConfig& cfg) {
    const std::string text = read_text_file(path, 64ull << 20);
    std::vector<std::string> pieces;
    for (size_t pos = 0; pos < text.size();) {
        size_t end = text.find('\n', pos);
        if (end == std::string::npos) end = text.size();
        std::string line = text.substr(pos, end - pos);
        if (!line.empty() && line.back() == '\r') line.pop_back();
        pieces.push_back(std::move(line));
        pos = end + 1;
    }
    if (pieces.empty()) throw FormatError("wordpiece", path, 0, "vocab.txt is empty");
    return finish_hf(std::move(pieces), options_from_config(cfg), cfg, path, std::nullopt, {});
}

std::unique_ptr<Tokenizer> make_wordpiece_from_tokenizer_json(const std::string& path, const nlohmann::json& j,
                                                              const HfTokenizerConfig& cfg) {
    const nlohmann::json& model = j.at("model");
    if (model.value("continuing_subword_prefix", std::string("##")) != "##")
        throw Unsupported("[tokenizer] " + path + ": WordPiece continuing_subword_prefix other than '##'");
    const nlohmann::json vocab = model.value("vocab", nlohmann::json());
    if (!vocab.is_object()) throw FormatError("json", path, 0, "tokenizer.json model.vocab is not an object");
    size_t n = 0;
    for (const auto& [piece, id] : vocab.items()) {
        if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() >= (int64_t{1} << 31))
            throw FormatError("json", path, 0, "vocabulary entry '" + piece + "' has an invalid id");
        n = std::max(n, static_cast<size_t>(id.get<int64_t>()) + 1);
    }
    std::vector<std::string> pieces(n);
    for (const auto& [piece, id] : vocab.items()) pieces[static_cast<size_t>(id.get<int64_t>())] = piece;
    std::vector<bool> control(n, false);
    for (const auto& a : j.value("added_tokens", nlohmann::json::array()))
        if (a.is_object() && a.value("special", false) && a.contains("id") && a["id"].is_number_integer() &&
            a["id"].get<int64_t>() >= 0 && static_cast<size_t>(a["id"].get<int64_t>()) < n)
            control[static_cast<size_t>(a["id"].get<int64_t>())] = true;

    WordPieceOptions opt = options_from_config(cfg);
    if (const nlohmann::json norm = j.value("normalizer", nlohmann::json()); norm.is_object() && norm.value("type", "") == "BertNormalizer") {
        opt.lowercase = norm.value("lowercase", true);
        opt.clean_text = norm.value("clean_text", true);
        opt.chinese_chars = norm.value("handle_chinese_chars", true);
        const auto sa = norm.find("strip_accents");
        opt.strip_accents = (sa == norm.end() || sa->is_null()) ? opt.lowercase : sa->get<bool>();
    }
    opt.max_word_chars = model.value("max_input_chars_per_word", size_t{100});
    std::optional<std::string> unk;
    if (model.contains("unk_token") && model["unk_token"].is_string()) unk = model["unk_token"].get<std::string>();
    return finish_hf(std::move(pieces), opt, cfg, path, unk, std::move(control));
}

std::unique_ptr<Tokenizer> make_wordpiece_from_gguf(const GgufMeta& meta) {
    std::vector<std::string> pieces = meta.tokens();
    const size_t n = pieces.size();
    std::vector<bool> control(n, false);
    if (const auto types = meta.token_types(n))
        for (size_t i = 0; i < n; ++i) control[i] = (*types)[i] == TokenType::control || (*types)[i] == TokenType::unknown;
    // Undo llama.cpp's renaming: "▁x" → "x" (word start), "[x]" and control tokens unchanged, else "##x".
    std::vector<std::string> hf(n);
    for (size_t i = 0; i < n; ++i) {
        const std::string& p = pieces[i];
        if (control[i] || (p.size() >= 2 && p.front() == '[' && p.back() == ']')) hf[i] = p;
        else if (p.rfind(kSpmSpace, 0) == 0) hf[i] = p.substr(kSpmSpace.size());
        else hf[i] = std::string(kContinuation) + p;
    }
    PieceMap tmp;
    for (size_t i = 0; i < n; ++i) tmp.emplace(hf[i], static_cast<int32_t>(i));
    const auto pick = [&](std::initializer_list<const char*> keys, const char* fallback) {
        for (const char* k : keys)
            if (const auto id = meta.token_id(k, n)) return *id;
        return find_piece(tmp, fallback);
    };
    const int32_t unk = pick({"tokenizer.ggml.unknown_token_id"}, "[UNK]");
    const int32_t cls = pick({"tokenizer.ggml.cls_token_id", "tokenizer.ggml.bos_token_id"}, "[CLS]");
    const int32_t sep = pick({"tokenizer.ggml.seperator_token_id", "tokenizer.ggml.eos_token_id"}, "[SEP]");
    if (unk < 0) meta.fail("tokenizer.ggml.unknown_token_id", "is missing and the vocabulary has no [UNK]");
    for (const int32_t id : {unk, cls, sep})
        if (id >= 0) control[static_cast<size_t>(id)] = true;

    auto t = std::make_unique<WordPieceTokenizer>();
    t->build(std::move(pieces), hf, control, WordPieceOptions{});
    t->set_specials(unk, cls, sep, meta.boolean("tokenizer.ggml.add_bos_token").value_or(true),
                    meta.boolean("tokenizer.ggml.add_eos_token").value_or(true));
    return t;
}

}  // namespace cq::tok
