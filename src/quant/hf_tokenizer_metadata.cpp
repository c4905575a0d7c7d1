// An HF directory's tokenizer as GGUF `tokenizer.*` keys, the way llama.cpp's convert_hf_to_gguf.py
// writes them: SentencePiece tokenizer.model → "llama" (pieces, scores, types from the model, then
// added_tokens.json and tokenizer_config.json's added_tokens_decoder); GPT-2 byte-level BPE
// (tokenizer.json or vocab.json + merges.txt) → "gpt2" (tokens, types, merges). Special token ids and
// add_*_token flags follow gguf-py's SpecialVocab: tokenizer_config.json's tokens looked up in
// tokenizer.json's added_tokens, then config.json's *_token_id.
#include <sentencepiece_processor.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include "core/json_file.h"
#include "cq/error.h"
#include "quant/hf_tokenizer_metadata.h"

namespace cq::quant {

namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// llama.cpp's token types (llama_token_type / gguf TokenType).
enum TokenType : int64_t { kNormal = 1, kUnknown = 2, kControl = 3, kUserDefined = 4, kUnused = 5, kByte = 6 };

gguf::Value str(std::string s) { return gguf::Value{gguf::ValueType::STRING, std::move(s)}; }
gguf::Value u32(int64_t v) { return gguf::Value{gguf::ValueType::U32, static_cast<uint64_t>(v)}; }
gguf::Value boolean(bool v) { return gguf::Value{gguf::ValueType::BOOL, v}; }

template <typename T>
gguf::Value array(gguf::ValueType type, const std::vector<T>& items) {
    gguf::Array a;
    a.element_type = type;
    a.items.reserve(items.size());
    for (const auto& v : items) {
        if constexpr (std::is_same_v<T, std::string>) a.items.push_back(gguf::Value{type, v});
        else if constexpr (std::is_same_v<T, float>) a.items.push_back(gguf::Value{type, static_cast<double>(v)});
        else a.items.push_back(gguf::Value{type, static_cast<int64_t>(v)});
    }
    return gguf::Value{gguf::ValueType::ARRAY, std::move(a)};
}

std::string replace_all(std::string s, const std::string& from, const std::string& to) {
    for (size_t pos = 0; (pos = s.find(from, pos)) != std::string::npos; pos += to.size()) s.replace(pos, from.size(), to);
    return s;
}

bool starts_ends(const std::string& s, const std::string& a, const std::string& b) {
    return s.size() >= a.size() + b.size() && s.compare(0, a.size(), a) == 0 && s.compare(s.size() - b.size(), b.size(), b) == 0;
}

// convert_hf_to_gguf's does_token_look_special.
bool looks_special(const std::string& t) {
    return t == "<pad>" || t == "<mask>" || t == "<2mass>" || t == "[@BOS@]" || starts_ends(t, "<|", "|>") ||
           starts_ends(t, "<\xEF\xBD\x9C", "\xEF\xBD\x9C>") || starts_ends(t, "<unused", ">");
}

struct Files {
    fs::path dir;
    json config, tokenizer_config, tokenizer_json;  // null when absent
};

json read_if_present(const fs::path& p) {
    std::error_code ec;
    return fs::is_regular_file(p, ec) ? read_json_file(p.string(), "json") : json();
}

const json* member(const json& j, const char* key) {
    if (!j.is_object()) return nullptr;
    const auto it = j.find(key);
    return it == j.end() || it->is_null() ? nullptr : &*it;
}

// A special token's text in tokenizer_config.json: a string or an {"content": ...} object.
std::optional<std::string> token_text(const json& entry) {
    if (entry.is_string()) return entry.get<std::string>();
    if (entry.is_object())
        if (const json* c = member(entry, "content"); c && c->is_string()) return c->get<std::string>();
    return std::nullopt;
}

// gguf-py's SpecialVocab (without its TemplateProcessing / RobertaProcessing heuristics, which only
// apply to tokenizer.json post-processors of other families) and its add_to_gguf order.
void add_special_vocab(const Files& f, std::optional<int64_t> n_vocab, GgufKeyValues& out) {
    static const char* const kTypes[] = {"bos", "eos", "unk", "sep", "pad", "cls", "mask"};
    std::vector<std::pair<std::string, int64_t>> ids;
    auto set_id = [&](const std::string& type, const json* v) {
        if (!v || !v->is_number_integer()) return;
        const int64_t id = v->get<int64_t>();
        if (id < 0) throw FormatError("json", (f.dir / "config.json").string(), 0, type + "_token_id is negative (" + std::to_string(id) + ")");
        if (n_vocab && id >= *n_vocab) return;  // gguf-py skips it with a warning
        for (const auto& [t, _] : ids)
            if (t == type) return;
        ids.emplace_back(type, id);
    };
    std::vector<std::pair<std::string, bool>> add_flags;
    if (f.tokenizer_config.is_object()) {
        const json* added = member(f.tokenizer_json, "added_tokens");
        for (const char* type : kTypes) {
            if (const json* a = member(f.tokenizer_config, (std::string("add_") + type + "_token").c_str()); a && a->is_boolean())
                add_flags.emplace_back(type, a->get<bool>());
            const json* entry = member(f.tokenizer_config, (std::string(type) + "_token").c_str());
            const auto text = entry ? token_text(*entry) : std::nullopt;
            if (!text || !added || !added->is_array()) continue;
            for (const auto& tok : *added)
                if (const json* c = member(tok, "content"); c && c->is_string() && c->get<std::string>() == *text) {
                    set_id(type, member(tok, "id"));
                    break;
                }
        }
    }
    for (const char* type : kTypes) set_id(type, member(f.config, (std::string(type) + "_token_id").c_str()));

    static const std::map<std::string, std::string> kIdKeys = {
        {"bos", "tokenizer.ggml.bos_token_id"},     {"eos", "tokenizer.ggml.eos_token_id"},
        {"unk", "tokenizer.ggml.unknown_token_id"}, {"sep", "tokenizer.ggml.seperator_token_id"},
        {"pad", "tokenizer.ggml.padding_token_id"}, {"mask", "tokenizer.ggml.mask_token_id"}};  // gguf-py has no cls key
    for (const auto& [type, id] : ids)
        if (const auto it = kIdKeys.find(type); it != kIdKeys.end()) out.emplace_back(it->second, u32(id));
    for (const auto& [type, value] : add_flags)
        if (type == "bos" || type == "eos" || type == "sep") out.emplace_back("tokenizer.ggml.add_" + type + "_token", boolean(value));
    if (const json* t = member(f.tokenizer_config, "chat_template"); t && t->is_string())
        out.emplace_back("tokenizer.chat_template", str(t->get<std::string>()));
}

void add_sentencepiece(const Files& f, int64_t n_vocab, GgufKeyValues& out) {
    const std::string path = (f.dir / "tokenizer.model").string();
    sentencepiece::SentencePieceProcessor sp;
    if (const auto status = sp.Load(path); !status.ok())
        throw FormatError("sentencepiece", path, 0, "cannot load the SentencePiece model: " + status.ToString());
    const int64_t n_sp = sp.GetPieceSize();
    const int64_t n = n_vocab > 0 ? n_vocab : n_sp;
    std::vector<std::string> tokens(static_cast<size_t>(n));
    std::vector<float> scores(static_cast<size_t>(n), -10000.0f);
    std::vector<int64_t> types(static_cast<size_t>(n), kUnused);
    for (int64_t i = 0; i < n; ++i) tokens[static_cast<size_t>(i)] = "[PAD" + std::to_string(i) + "]";
    for (int id = 0; id < std::min<int64_t>(n_sp, n); ++id) {
        const auto i = static_cast<size_t>(id);
        tokens[i] = sp.IdToPiece(id);
        scores[i] = sp.GetScore(id);
        types[i] = sp.IsUnknown(id) ? kUnknown : sp.IsControl(id) ? kControl : sp.IsUnused(id) ? kUnused : sp.IsByte(id) ? kByte : kNormal;
    }
    const json added_tokens = read_if_present(f.dir / "added_tokens.json");
    if (added_tokens.is_object())
        for (const auto& [text, id] : added_tokens.items()) {
            if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() >= n) continue;
            const auto i = static_cast<size_t>(id.get<int64_t>());
            tokens[i] = text, scores[i] = -1000.0f, types[i] = kUserDefined;
        }
    if (const json* decoder = member(f.tokenizer_config, "added_tokens_decoder"); decoder && decoder->is_object())
        for (const auto& [key, data] : decoder->items()) {
            int64_t id = -1;
            try {
                id = std::stoll(key);
            } catch (...) {
                throw FormatError("json", (f.dir / "tokenizer_config.json").string(), 0, "added_tokens_decoder has the key '" + key + "', not a token id");
            }
            const json* content = member(data, "content");
            if (id < 0 || id >= n || !content || !content->is_string()) continue;
            std::string text = content->get<std::string>();
            const json* special = member(data, "special");
            const auto i = static_cast<size_t>(id);
            if ((special && special->is_boolean() && special->get<bool>()) || looks_special(text)) {
                types[i] = kControl;
            } else {
                text = replace_all(text, "\xE2\x96\x81", " ");  // pre-normalise user-defined spaces
                types[i] = kUserDefined;
            }
            tokens[i] = text, scores[i] = -1000.0f;
        }
    out.emplace_back("tokenizer.ggml.model", str("llama"));
    out.emplace_back("tokenizer.ggml.pre", str("default"));
    out.emplace_back("tokenizer.ggml.tokens", array(gguf::ValueType::STRING, tokens));
    out.emplace_back("tokenizer.ggml.scores", array(gguf::ValueType::F32, scores));
    out.emplace_back("tokenizer.ggml.token_type", array(gguf::ValueType::I32, types));
    add_special_vocab(f, static_cast<int64_t>(tokens.size()), out);
}

std::vector<std::string> read_merges_txt(const fs::path& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw IoError("[tokenizer] cannot read " + path.string());
    std::vector<std::string> merges;
    std::string line;
    bool first = true;
    const auto trim = [](std::string& s) {
        const auto b = s.find_first_not_of(" \t\r\n\f\v"), e = s.find_last_not_of(" \t\r\n\f\v");
        s = b == std::string::npos ? std::string() : s.substr(b, e - b + 1);
    };
    while (std::getline(in, line)) {
        trim(line);
        if (first && line.rfind('#', 0) == 0) {  // "#version: 0.2"
            first = false;
            continue;
        }
        first = false;
        if (line.empty()) continue;
        const auto sp = line.find_first_of(" \t");
        std::string a = line.substr(0, sp), b = sp == std::string::npos ? "" : line.substr(sp);
        trim(b);
        if (b.empty() || b.find_first_of(" \t") != std::string::npos) continue;  // malformed: gguf-py skips it
        merges.push_back(a + " " + b);
    }
    return merges;
}

void add_gpt2_bpe(const Files& f, int64_t n_vocab, GgufKeyValues& out) {
    std::error_code ec;
    std::map<int64_t, std::string> by_id;
    std::vector<std::string> merges;
    // Added tokens: text → special. transformers registers the tokenizer's special tokens as added ones;
    // GPT2Tokenizer's default bos/eos/unk is "<|endoftext|>".
    std::map<std::string, bool> added;
    if (f.tokenizer_json.is_object()) {
        const json* model = member(f.tokenizer_json, "model");
        const json* vocab = model ? member(*model, "vocab") : nullptr;
        if (!vocab || !vocab->is_object())
            throw FormatError("json", (f.dir / "tokenizer.json").string(), 0, "tokenizer.json has no model.vocab object");
        for (const auto& [t, id] : vocab->items())
            if (id.is_number_integer()) by_id[id.get<int64_t>()] = t;
        if (const json* m = member(*model, "merges"); m && m->is_array())
            for (const auto& item : *m) {
                if (item.is_string()) merges.push_back(item.get<std::string>());
                else if (item.is_array() && item.size() == 2 && item[0].is_string() && item[1].is_string()) {
                    // transformers ≥ 4.45 pairs; a space inside a part is written as U+0120, as gguf-py does
                    merges.push_back(replace_all(item[0].get<std::string>(), " ", "\xC4\xA0") + " " +
                                     replace_all(item[1].get<std::string>(), " ", "\xC4\xA0"));
                } else {
                    throw FormatError("json", (f.dir / "tokenizer.json").string(), 0, "tokenizer.json has merges in an unknown format");
                }
            }
        if (const json* a = member(f.tokenizer_json, "added_tokens"); a && a->is_array())
            for (const auto& tok : *a) {
                const json* c = member(tok, "content");
                const json* id = member(tok, "id");
                if (!c || !c->is_string() || !id || !id->is_number_integer()) continue;
                by_id[id->get<int64_t>()] = c->get<std::string>();
                const json* s = member(tok, "special");
                added[c->get<std::string>()] = s && s->is_boolean() && s->get<bool>();
            }
    } else {
        const json vocab = read_json_file((f.dir / "vocab.json").string(), "json");
        if (!vocab.is_object()) throw FormatError("json", (f.dir / "vocab.json").string(), 0, "vocab.json is not an object");
        for (const auto& [t, id] : vocab.items())
            if (id.is_number_integer()) by_id[id.get<int64_t>()] = t;
    }
    if (merges.empty() && fs::is_regular_file(f.dir / "merges.txt", ec)) merges = read_merges_txt(f.dir / "merges.txt");
    if (merges.empty()) throw FormatError("hf", f.dir.string(), 0, "the GPT-2 tokenizer has no merges (tokenizer.json model.merges or merges.txt)");
    if (const json* d = member(f.tokenizer_config, "added_tokens_decoder"); d && d->is_object())
        for (const auto& [key, data] : d->items())
            if (const json* c = member(data, "content"); c && c->is_string()) {
                const json* s = member(data, "special");
                added[c->get<std::string>()] |= s && s->is_boolean() && s->get<bool>();
            }
    const json added_json = read_if_present(f.dir / "added_tokens.json");
    if (added_json.is_object())
        for (const auto& [text, id] : added_json.items()) added.emplace(text, false);
    bool any_special = false;
    for (const char* type : {"bos", "eos", "unk", "sep", "pad", "cls", "mask"})
        if (const json* e = member(f.tokenizer_config, (std::string(type) + "_token").c_str()))
            if (const auto text = token_text(*e)) added[*text] = any_special = true;
    if (!any_special) added["<|endoftext|>"] = true;

    if (by_id.empty()) throw FormatError("hf", f.dir.string(), 0, "the GPT-2 tokenizer's vocabulary is empty");
    const int64_t max_id = by_id.rbegin()->first;
    const int64_t n = n_vocab > 0 ? n_vocab : static_cast<int64_t>(by_id.size());
    if (by_id.begin()->first < 0 || max_id >= n)
        throw FormatError("hf", f.dir.string(), 0, "the tokenizer has the token id " + std::to_string(max_id) +
                                                      ", outside config.json's vocab_size " + std::to_string(n));
    std::vector<std::string> tokens(static_cast<size_t>(n));
    std::vector<int64_t> types(static_cast<size_t>(n), kNormal);
    for (int64_t i = 0; i < n; ++i) {
        const auto it = by_id.find(i);
        auto& t = tokens[static_cast<size_t>(i)];
        auto& type = types[static_cast<size_t>(i)];
        if (it == by_id.end()) {
            t = "[PAD" + std::to_string(i) + "]", type = kUnused;
            continue;
        }
        t = it->second;
        if (const auto a = added.find(t); a != added.end()) {
            if (a->second || looks_special(t)) type = kControl;
            else t = replace_all(t, "\xE2\x96\x81", " "), type = kUserDefined;
        }
    }
    out.emplace_back("tokenizer.ggml.model", str("gpt2"));
    // convert_hf_to_gguf identifies the pre-tokenizer by hashing a test string's tokens; for GPT-2's own
    // tokenizer that gives "gpt-2" (the only BPE pre-tokenizer cq implements).
    out.emplace_back("tokenizer.ggml.pre", str("gpt-2"));
    out.emplace_back("tokenizer.ggml.tokens", array(gguf::ValueType::STRING, tokens));
    out.emplace_back("tokenizer.ggml.token_type", array(gguf::ValueType::I32, types));
    out.emplace_back("tokenizer.ggml.merges", array(gguf::ValueType::STRING, merges));
    add_special_vocab(f, std::nullopt, out);
}

}  // namespace

GgufKeyValues hf_tokenizer_metadata(const std::string& dir, const nlohmann::json& config, const std::string& arch, int64_t n_vocab) {
    Files f;
    f.dir = dir;
    f.config = config;
    f.tokenizer_config = read_if_present(f.dir / "tokenizer_config.json");
    f.tokenizer_json = read_if_present(f.dir / "tokenizer.json");
    std::error_code ec;
    GgufKeyValues out;
    if (arch == "llama") {
        if (const json* p = member(f.tokenizer_config, "add_prefix_space"); p && p->is_boolean())
            out.emplace_back("tokenizer.ggml.add_space_prefix", boolean(p->get<bool>()));
        if (!fs::is_regular_file(f.dir / "tokenizer.model", ec))
            throw Unsupported("[quantize] " + dir + ": converting a LLaMA-family tokenizer without tokenizer.model "
                              "(tokenizer.json only, e.g. Llama 3) is not supported yet");
        add_sentencepiece(f, n_vocab, out);
    } else {
        if (!f.tokenizer_json.is_object() && !fs::is_regular_file(f.dir / "vocab.json", ec))
            throw IoError("[quantize] " + dir + ": no GPT-2 tokenizer (tokenizer.json, or vocab.json + merges.txt)");
        add_gpt2_bpe(f, n_vocab, out);
    }
    return out;
}

}  // namespace cq::quant
