// GPT-2 byte-level BPE: the GPT-2 pre-tokenizer regex (a hand-written scanner with Python `regex`
// semantics, Unicode classes from ICU), bytes mapped to printable characters by bytes_to_unicode, then
// merges applied by rank (lowest first, ties leftmost) within each pre-token. Loads from GGUF
// (tokenizer.ggml.tokens/merges), vocab.json + merges.txt, or an HF tokenizer.json of model type BPE.
#include <climits>
#include <cstdlib>
#include <functional>
#include <fstream>
#include <queue>

#include "core/json_file.h"
#include "cq/error.h"
#include "cq/io/gguf.h"
#include "cq/mapped_file.h"
#include "tokenizers/tokenizer_internal.h"

namespace cq::tok {

// ---- pre-tokenizer ----------------------------------------------------------------------------------------

namespace {

enum class CharClass : uint8_t { letter, number, space, other };

CharClass classify(uint32_t cp) {
    if (is_letter(cp)) return CharClass::letter;
    if (is_number(cp)) return CharClass::number;
    if (is_white_space(cp)) return CharClass::space;
    return CharClass::other;
}

}  // namespace

void gpt2_pretokenize(std::string_view text, std::vector<std::pair<size_t, size_t>>& out) {
    struct Char {
        uint32_t cp;
        uint32_t offset;
        CharClass cls;
    };
    std::vector<Char> c;
    c.reserve(text.size());
    for (size_t i = 0; i < text.size();) {
        size_t len = 0;
        const uint32_t cp = utf8_decode(text, i, len);
        c.push_back({cp, static_cast<uint32_t>(i), classify(cp)});
        i += len;
    }
    const size_t n = c.size();
    const auto offset = [&](size_t k) { return k < n ? size_t{c[k].offset} : text.size(); };
    const auto run_end = [&](size_t k, CharClass cls) {
        while (k < n && c[k].cls == cls) ++k;
        return k;
    };

    for (size_t i = 0; i < n;) {
        size_t j = 0;
        // 's|'t|'re|'ve|'m|'ll|'d
        if (c[i].cp == '\'' && i + 1 < n) {
            const uint32_t a = c[i + 1].cp;
            const uint32_t b = i + 2 < n ? c[i + 2].cp : 0;
            if (a == 's' || a == 't' || a == 'm' || a == 'd') j = i + 2;
            else if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) j = i + 3;
        }
        if (j == 0) {
            // ` ?\p{L}+`, ` ?\p{N}+`, ` ?[^\s\p{L}\p{N}]+`: the class after the optional space decides.
            const size_t k = (c[i].cp == ' ' && i + 1 < n && c[i + 1].cls != CharClass::space) ? i + 1 : i;
            if (c[k].cls != CharClass::space) {
                j = run_end(k, c[k].cls);
            } else {
                // \s+(?!\S) backs off one character when non-space follows the run; else \s+.
                const size_t e = run_end(i, CharClass::space);
                j = (e < n && e - i >= 2) ? e - 1 : e;
            }
        }
        out.emplace_back(offset(i), offset(j));
        i = j;
    }
}

namespace {

// ---- bytes_to_unicode -----------------------------------------------------------------------------------

struct ByteMap {
    std::string byte_to_utf8[256];
    int16_t cp_to_byte[324];  // every mapped code point is < 324

    ByteMap() {
        std::fill(std::begin(cp_to_byte), std::end(cp_to_byte), int16_t{-1});
        uint32_t next = 256;
        for (uint32_t b = 0; b < 256; ++b) {
            const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
            const uint32_t cp = printable ? b : next++;
            utf8_append(byte_to_utf8[b], cp);
            cp_to_byte[cp] = static_cast<int16_t>(b);
        }
    }
};

const ByteMap& byte_map() {
    static const ByteMap map;
    return map;
}

/// The bytes a byte-level piece stands for; characters outside the map are kept as UTF-8.
std::string unmap_bytes(std::string_view piece) {
    const ByteMap& m = byte_map();
    std::string out;
    out.reserve(piece.size());
    for (size_t i = 0; i < piece.size();) {
        size_t len = 0;
        const uint32_t cp = utf8_decode(piece, i, len);
        if (cp < 324 && m.cp_to_byte[cp] >= 0 && cp != 0xFFFD) out += static_cast<char>(m.cp_to_byte[cp]);
        else out.append(piece.substr(i, len));
        i += len;
    }
    return out;
}

// ---- the tokenizer ------------------------------------------------------------------------------------

/// Where a vocabulary came from, for error messages.
struct Source {
    std::string format;  // "gguf", "json", "merges"
    std::string path;
    std::function<uint64_t(size_t merge_index)> merge_offset;  // byte offset of merge i (best effort)
    std::string merges_what;                                    // "tokenizer metadata 'tokenizer.ggml.merges'" ...
};

class BpeTokenizer final : public PieceTokenizer {
public:
    enum class Special : uint8_t { none, control, user_defined };

    TokenizerKind kind() const override { return TokenizerKind::bpe; }

    std::string token_to_text(int32_t id) const override {
        check(id);
        const auto k = static_cast<size_t>(id);
        if (special_[k] == Special::control) return {};
        if (special_[k] == Special::user_defined) return pieces_[k];
        return unmap_bytes(pieces_[k]);
    }

    void set_specials(int32_t bos, int32_t eos, bool add_bos, bool add_eos) {
        bos_id_ = bos;
        eos_id_ = eos;
        add_bos_ = add_bos && bos >= 0;
        add_eos_ = add_eos && eos >= 0;
    }

    void set_add_prefix_space(bool on) {
        add_prefix_space_ = on;
        strip_leading_space_ = on;
    }

    void mark_control(int32_t id) {
        if (id >= 0 && static_cast<size_t>(id) < special_.size()) special_[static_cast<size_t>(id)] = Special::control;
    }

    const PieceMap& piece_to_id() const { return piece_to_id_; }

private:
    void encode_text(std::string_view text, std::vector<int32_t>& out) const override {
        out.reserve(out.size() + text.size() / 3 + 2);
        std::string prefixed;
        if (add_prefix_space_ && !text.empty() && text.front() != ' ') {  // HF ByteLevel add_prefix_space
            prefixed.reserve(text.size() + 1);
            prefixed += ' ';
            prefixed += text;
            text = prefixed;
        }
        std::vector<std::pair<size_t, size_t>> words;
        gpt2_pretokenize(text, words);
        std::vector<int32_t> ids;
        for (const auto& [b, e] : words) {
            ids.clear();
            for (size_t i = b; i < e; ++i) ids.push_back(byte_ids_[static_cast<uint8_t>(text[i])]);
            merge(ids);
            out.insert(out.end(), ids.begin(), ids.end());
        }
    }

public:
    /// pieces[i] is token i ("" for ids no entry names); merges are (left, right) piece pairs in rank order.
    void build(std::vector<std::string> pieces, std::vector<Special> special,
               const std::vector<std::pair<std::string, std::string>>& merges, const Source& src) {
        pieces_ = std::move(pieces);
        special_ = std::move(special);
        special_.resize(pieces_.size(), Special::none);
        piece_to_id_.reserve(pieces_.size());
        for (size_t i = 0; i < pieces_.size(); ++i)
            if (!pieces_[i].empty()) piece_to_id_.emplace(pieces_[i], static_cast<int32_t>(i));

        const ByteMap& m = byte_map();
        for (int b = 0; b < 256; ++b) {
            byte_ids_[b] = find_piece(piece_to_id_, m.byte_to_utf8[b]);
            if (byte_ids_[b] < 0)
                throw FormatError(src.format, src.path, 0,
                                  "the byte-level BPE vocabulary has no token for byte " + std::to_string(b) + " ('" +
                                      m.byte_to_utf8[b] + "')");
        }

        merges_.reserve(merges.size());
        for (size_t r = 0; r < merges.size(); ++r) {
            const auto& [a, b] = merges[r];
            const int32_t ia = find_piece(piece_to_id_, a);
            const int32_t ib = find_piece(piece_to_id_, b);
            const int32_t ic = find_piece(piece_to_id_, a + b);
            if (ia < 0 || ib < 0 || ic < 0) {
                const std::string& missing = ia < 0 ? a : ib < 0 ? b : a + b;
                throw FormatError(src.format, src.path, src.merge_offset ? src.merge_offset(r) : 0,
                                  src.merges_what + ": merge " + std::to_string(r) + " ('" + a + " " + b +
                                      "') refers to '" + missing + "', which is not in the vocabulary");
            }
            merges_.try_emplace(pair_key(ia, ib), Merge{static_cast<int32_t>(r), ic});  // first (best) rank wins
        }
    }

private:
    struct Merge {
        int32_t rank;
        int32_t id;
    };
    static uint64_t pair_key(int32_t a, int32_t b) {
        return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
    }
    const Merge* find_merge(int32_t a, int32_t b) const {
        const auto it = merges_.find(pair_key(a, b));
        return it == merges_.end() ? nullptr : &it->second;
    }

    /// Applies the merges to one pre-token's symbols in place.
    void merge(std::vector<int32_t>& ids) const {
        if (ids.size() < 2) return;
        if (ids.size() > 32) return merge_long(ids);
        // Short words: rescan for the best pair after each merge (O(n²), no allocation).
        for (;;) {
            int32_t best_rank = INT32_MAX, best_id = -1;
            size_t best = 0;
            for (size_t i = 0; i + 1 < ids.size(); ++i)
                if (const Merge* mg = find_merge(ids[i], ids[i + 1]); mg && mg->rank < best_rank) {
                    best_rank = mg->rank;
                    best_id = mg->id;
                    best = i;
                }
            if (best_id < 0) return;
            ids[best] = best_id;
            ids.erase(ids.begin() + static_cast<std::ptrdiff_t>(best) + 1);
        }
    }

    /// Long words: a linked list of symbols and a queue of candidate pairs (O(n log n)).
    void merge_long(std::vector<int32_t>& ids) const {
        const auto n = static_cast<int32_t>(ids.size());
        std::vector<int32_t> prev(ids.size()), next(ids.size());
        for (int32_t i = 0; i < n; ++i) {
            prev[static_cast<size_t>(i)] = i - 1;
            next[static_cast<size_t>(i)] = i + 1 < n ? i + 1 : -1;
        }
        struct Cand {
            int32_t rank, left, right, left_id, right_id;
            bool operator>(const Cand& o) const { return rank > o.rank || (rank == o.rank && left > o.left); }
        };
        std::priority_queue<Cand, std::vector<Cand>, std::greater<Cand>> queue;
        const auto push = [&](int32_t l, int32_t r) {
            if (l < 0 || r < 0) return;
            if (const Merge* mg = find_merge(ids[static_cast<size_t>(l)], ids[static_cast<size_t>(r)]))
                queue.push({mg->rank, l, r, ids[static_cast<size_t>(l)], ids[static_cast<size_t>(r)]});
        };
        for (int32_t i = 0; i + 1 < n; ++i) push(i, i + 1);
        std::vector<bool> dead(ids.size(), false);
        while (!queue.empty()) {
            const Cand c = queue.top();
            queue.pop();
            const auto l = static_cast<size_t>(c.left), r = static_cast<size_t>(c.right);
            if (dead[l] || dead[r] || next[l] != c.right || ids[l] != c.left_id || ids[r] != c.right_id) continue;
            ids[l] = find_merge(c.left_id, c.right_id)->id;
            dead[r] = true;
            next[l] = next[r];
            if (next[r] >= 0) prev[static_cast<size_t>(next[r])] = c.left;
            push(prev[l], c.left);
            push(c.left, next[l]);
        }
        size_t k = 0;
        for (int32_t i = 0; i >= 0; i = next[static_cast<size_t>(i)]) ids[k++] = ids[static_cast<size_t>(i)];
        ids.resize(k);
    }

    std::vector<Special> special_;
    PieceMap piece_to_id_;
    std::unordered_map<uint64_t, Merge> merges_;
    int32_t byte_ids_[256];
    bool add_prefix_space_ = false;
};

std::pair<std::string, std::string> split_merge(std::string_view line) {
    const size_t sp = line.find(' ');
    if (sp == std::string_view::npos || sp == 0 || sp + 1 >= line.size() || line.find(' ', sp + 1) != std::string_view::npos)
        return {};
    return {std::string(line.substr(0, sp)), std::string(line.substr(sp + 1))};
}

/// GGUF `tokenizer.ggml.pre` values whose pre-tokenizer is GPT-2's regex (llama.cpp's LLAMA_VOCAB_PRE_TYPE_GPT2).
bool is_gpt2_pre(const std::string& pre) {
    return pre == "gpt-2" || pre == "phi-2" || pre == "jina-es" || pre == "jina-de" || pre == "gigachat" ||
           pre == "jina-v1-en" || pre == "jina-v2-es" || pre == "jina-v2-de" || pre == "jina-v2-code" ||
           pre == "roberta-bpe";
}

/// Looks a special token up by its tokenizer_config.json string, then by its *_token_id.
int32_t hf_special_id(const HfTokenizerConfig& cfg, const PieceMap& map, const char* token_key, const char* id_key,
                      size_t n_vocab) {
    if (const auto s = hf_token_string(cfg, token_key))
        if (const int32_t id = find_piece(map, *s); id >= 0) return id;
    if (const auto id = hf_int(cfg, id_key); id && *id >= 0) {
        if (static_cast<uint64_t>(*id) >= n_vocab)
            throw FormatError("json", cfg.dir + "/config.json", 0,
                              std::string(id_key) + " " + std::to_string(*id) + " is outside the vocabulary of " +
                                  std::to_string(n_vocab) + " tokens");
        return static_cast<int32_t>(*id);
    }
    return -1;
}

/// Marks the special tokens tokenizer_config.json's added_tokens_decoder declares.
void mark_config_specials(const HfTokenizerConfig& cfg, std::vector<BpeTokenizer::Special>& special) {
    if (!cfg.tokenizer_config.is_object()) return;
    const auto it = cfg.tokenizer_config.find("added_tokens_decoder");
    if (it == cfg.tokenizer_config.end() || !it->is_object()) return;
    for (const auto& [key, v] : it->items()) {
        char* end = nullptr;
        const long id = std::strtol(key.c_str(), &end, 10);
        if (*end || id < 0 || static_cast<size_t>(id) >= special.size() || !v.is_object()) continue;
        const auto sp = v.find("special");
        const bool is_special = sp != v.end() && sp->is_boolean() && sp->get<bool>();
        special[static_cast<size_t>(id)] = is_special ? BpeTokenizer::Special::control : BpeTokenizer::Special::user_defined;
    }
}

void finish_hf(BpeTokenizer& t, const HfTokenizerConfig& cfg) {
    const size_t n = static_cast<size_t>(t.vocab_size());
    const int32_t bos = hf_special_id(cfg, t.piece_to_id(), "bos_token", "bos_token_id", n);
    const int32_t eos = hf_special_id(cfg, t.piece_to_id(), "eos_token", "eos_token_id", n);
    t.mark_control(bos);
    t.mark_control(eos);
    t.set_specials(bos, eos, hf_bool(cfg, "add_bos_token").value_or(false), hf_bool(cfg, "add_eos_token").value_or(false));
}

}  // namespace

// ---- factories ----------------------------------------------------------------------------------------

std::unique_ptr<Tokenizer> make_bpe_from_gguf(const GgufMeta& meta) {
    if (const gguf::Value* pre = meta.find("tokenizer.ggml.pre")) {
        const std::string* name = pre->as_string();
        if (!name) meta.fail("tokenizer.ggml.pre", "is not a string");
        if (!is_gpt2_pre(*name))
            throw Unsupported("[tokenizer] " + meta.path() + ": BPE pre-tokenizer '" + *name +
                              "' is not supported (cq implements GPT-2's)");
    }
    std::vector<std::string> pieces = meta.tokens();
    const size_t n = pieces.size();
    std::vector<BpeTokenizer::Special> special(n, BpeTokenizer::Special::none);
    if (const auto types = meta.token_types(n))
        for (size_t i = 0; i < n; ++i) {
            const TokenType type = (*types)[i];
            if (type == TokenType::control || type == TokenType::unknown) special[i] = BpeTokenizer::Special::control;
            else if (type == TokenType::user_defined) special[i] = BpeTokenizer::Special::user_defined;
        }
    if (!meta.find("tokenizer.ggml.merges")) meta.fail("tokenizer.ggml.merges", "is missing");
    const std::vector<std::string> lines = meta.strings("tokenizer.ggml.merges");
    std::vector<std::pair<std::string, std::string>> merges;
    merges.reserve(lines.size());
    for (size_t i = 0; i < lines.size(); ++i) {
        merges.push_back(split_merge(lines[i]));
        if (merges.back().first.empty())
            meta.fail("tokenizer.ggml.merges", "entry " + std::to_string(i) + " ('" + lines[i] + "') is not two pieces");
    }
    Source src{"gguf", meta.path(), [&](size_t) { return meta.offset("tokenizer.ggml.merges"); },
               "tokenizer metadata 'tokenizer.ggml.merges'"};

    auto t = std::make_unique<BpeTokenizer>();
    t->build(std::move(pieces), std::move(special), merges, src);
    const int32_t bos = meta.token_id("tokenizer.ggml.bos_token_id", n).value_or(-1);
    const int32_t eos = meta.token_id("tokenizer.ggml.eos_token_id", n).value_or(-1);
    t->set_specials(bos, eos, meta.boolean("tokenizer.ggml.add_bos_token").value_or(false),
                    meta.boolean("tokenizer.ggml.add_eos_token").value_or(false));
    return t;
}

namespace {

/// vocab: {"piece": id, ...} → pieces indexed by id (FormatError for non-integer, negative or duplicate ids).
std::vector<std::string> pieces_from_vocab(const nlohmann::json& vocab, const std::string& path, size_t extra_max_id) {
    if (!vocab.is_object()) throw FormatError("json", path, 0, "the vocabulary is not a JSON object of piece → id");
    size_t n = extra_max_id;
    for (const auto& [piece, id] : vocab.items()) {
        if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() >= (int64_t{1} << 31))
            throw FormatError("json", path, 0, "vocabulary entry '" + piece + "' has an invalid id");
        n = std::max(n, static_cast<size_t>(id.get<int64_t>()) + 1);
    }
    std::vector<std::string> pieces(n);
    for (const auto& [piece, id] : vocab.items()) {
        auto& slot = pieces[static_cast<size_t>(id.get<int64_t>())];
        if (!slot.empty())
            throw FormatError("json", path, 0, "vocabulary id " + std::to_string(id.get<int64_t>()) + " is given to both '" +
                                                   slot + "' and '" + piece + "'");
        slot = piece;
    }
    return pieces;
}

}  // namespace

std::unique_ptr<Tokenizer> make_bpe_from_files(const std::string& vocab_path, const std::string& merges_path,
                                               const HfTokenizerConfig& cfg) {
    const nlohmann::json vocab = read_json_file(vocab_path, "json");
    std::vector<std::string> pieces = pieces_from_vocab(vocab, vocab_path, 0);

    const std::string text = read_text_file(merges_path, 256ull << 20);
    std::vector<std::pair<std::string, std::string>> merges;
    std::vector<uint64_t> offsets;
    for (size_t pos = 0, line_no = 0; pos < text.size(); ++line_no) {
        size_t end = text.find('\n', pos);
        if (end == std::string::npos) end = text.size();
        std::string_view line(text.data() + pos, end - pos);
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        const uint64_t at = pos;
        pos = end + 1;
        if (line.empty() || (line_no == 0 && line.rfind("#version", 0) == 0)) continue;
        merges.push_back(split_merge(line));
        offsets.push_back(at);
        if (merges.back().first.empty())
            throw FormatError("merges", merges_path, at, "line " + std::to_string(line_no + 1) + " ('" + std::string(line) +
                                                             "') is not two pieces separated by one space");
    }
    Source src{"merges", merges_path, [&](size_t i) { return offsets[i]; }, "merges.txt"};

    std::vector<BpeTokenizer::Special> special(pieces.size(), BpeTokenizer::Special::none);
    mark_config_specials(cfg, special);
    auto t = std::make_unique<BpeTokenizer>();
    t->build(std::move(pieces), std::move(special), merges, src);
    finish_hf(*t, cfg);
    return t;
}

std::unique_ptr<Tokenizer> make_bpe_from_tokenizer_json(const std::string& path, const nlohmann::json& j,
                                                        const HfTokenizerConfig& cfg) {
    const nlohmann::json& model = j.at("model");
    const auto unsupported = [&](const std::string& what) {
        throw Unsupported("[tokenizer] " + path + ": " + what + " (cq implements GPT-2 byte-level BPE)");
    };
    for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"})
        if (model.contains(key) && model[key].is_string() && !model[key].get<std::string>().empty())
            unsupported(std::string("BPE option '") + key + "' is set");
    if (model.value("byte_fallback", false)) unsupported("BPE byte_fallback is set");
    if (j.contains("normalizer") && !j["normalizer"].is_null()) unsupported("a normalizer is set");
    const nlohmann::json pre = j.value("pre_tokenizer", nlohmann::json());
    const auto is_byte_level = [](const nlohmann::json& p) {
        return p.is_object() && p.value("type", "") == "ByteLevel" && p.value("use_regex", true);
    };
    bool ok = is_byte_level(pre);
    if (!ok && pre.is_object() && pre.value("type", "") == "Sequence" && pre.contains("pretokenizers") &&
        pre["pretokenizers"].is_array() && pre["pretokenizers"].size() == 1)
        ok = is_byte_level(pre["pretokenizers"][0]);
    if (!ok) unsupported("the pre-tokenizer is not GPT-2's ByteLevel");
    const nlohmann::json& level = pre.value("type", "") == "Sequence" ? pre["pretokenizers"][0] : pre;
    const bool add_prefix_space = level.value("add_prefix_space", false);

    size_t max_added = 0;
    const nlohmann::json added = j.value("added_tokens", nlohmann::json::array());
    for (const auto& a : added)
        if (a.is_object() && a.contains("id") && a["id"].is_number_integer() && a["id"].get<int64_t>() >= 0)
            max_added = std::max(max_added, static_cast<size_t>(a["id"].get<int64_t>()) + 1);
    if (!model.contains("vocab")) throw FormatError("json", path, 0, "tokenizer.json has no model.vocab");
    std::vector<std::string> pieces = pieces_from_vocab(model["vocab"], path, max_added);
    std::vector<BpeTokenizer::Special> special(pieces.size(), BpeTokenizer::Special::none);
    for (const auto& a : added) {
        if (!a.is_object() || !a.contains("id") || !a["id"].is_number_integer() || a["id"].get<int64_t>() < 0 ||
            !a.contains("content") || !a["content"].is_string())
            continue;
        const auto id = static_cast<size_t>(a["id"].get<int64_t>());
        if (pieces[id].empty()) pieces[id] = a["content"].get<std::string>();
        special[id] = a.value("special", false) ? BpeTokenizer::Special::control : BpeTokenizer::Special::user_defined;
    }
    mark_config_specials(cfg, special);

    std::vector<std::pair<std::string, std::string>> merges;
    const nlohmann::json ms = model.value("merges", nlohmann::json::array());
    for (size_t i = 0; i < ms.size(); ++i) {
        const auto& m = ms[i];
        if (m.is_string()) merges.push_back(split_merge(m.get<std::string>()));
        else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string())
            merges.emplace_back(m[0].get<std::string>(), m[1].get<std::string>());
        else merges.emplace_back();
        if (merges.back().first.empty() || merges.back().second.empty())
            throw FormatError("json", path, 0, "model.merges entry " + std::to_string(i) + " is not two pieces");
    }
    Source src{"json", path, nullptr, "model.merges"};
    auto t = std::make_unique<BpeTokenizer>();
    t->build(std::move(pieces), std::move(special), merges, src);
    t->set_add_prefix_space(add_prefix_space);
    finish_hf(*t, cfg);
    return t;
}

}  // namespace cq::tok
