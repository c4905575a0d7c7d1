// Tokenizer entry points: decode(), the GGUF and HF-directory loaders that pick an implementation,
// and the metadata/config helpers the implementations share.
#include <filesystem>
#include <limits>

#include "core/json_file.h"
#include "cq/error.h"
#include "cq/io/gguf.h"
#include "io/hf/hf_model.h"
#include "cq/mapped_file.h"
#include "tokenizers/tokenizer_internal.h"

namespace cq {

namespace fs = std::filesystem;

std::string Tokenizer::decode(std::span<const int32_t> ids) const {
    std::string out;
    bool first = true;
    for (const int32_t id : ids) {
        std::string text = token_to_text(id);
        if (text.empty()) continue;
        if (first && strip_leading_space_ && text.front() == ' ') text.erase(0, 1);
        first = false;
        out += text;
    }
    return out;
}

namespace tok {

// ---- GGUF metadata ----------------------------------------------------------------------------------

const std::string& GgufMeta::path() const { return file_.path(); }

const gguf::Value* GgufMeta::find(std::string_view key) const { return file_.find(key); }

uint64_t GgufMeta::offset(std::string_view key) const {
    for (const auto& kv : file_.metadata())
        if (kv.key == key) return kv.file_offset;
    return 0;
}

void GgufMeta::fail(std::string_view key, const std::string& what) const {
    throw FormatError("gguf", path(), offset(key), "tokenizer metadata '" + std::string(key) + "' " + what);
}

std::vector<std::string> GgufMeta::strings(std::string_view key) const {
    const gguf::Value* v = find(key);
    if (!v) fail(key, "is missing");
    const gguf::Array* a = v->as_array();
    if (!a || a->element_type != gguf::ValueType::STRING) fail(key, "is not an array of strings");
    std::vector<std::string> out;
    out.reserve(a->items.size());
    for (const auto& item : a->items) out.push_back(*item.as_string());
    return out;
}

// Optional array `key` with each item converted by `get` (an optional), which must succeed.
template <typename T, typename Get>
static std::optional<std::vector<T>> array_of(const GgufMeta& meta, std::string_view key, const char* item_kind, Get get) {
    const gguf::Value* v = meta.find(key);
    if (!v) return std::nullopt;
    const gguf::Array* a = v->as_array();
    if (!a) meta.fail(key, "is not an array");
    std::vector<T> out;
    out.reserve(a->items.size());
    for (const auto& item : a->items) {
        const auto x = get(item);
        if (!x) meta.fail(key, std::string("holds a value that is not ") + item_kind);
        out.push_back(*x);
    }
    return out;
}

std::optional<std::vector<double>> GgufMeta::numbers(std::string_view key) const {
    return array_of<double>(*this, key, "a number", [](const gguf::Value& item) { return item.as_double(); });
}

std::optional<std::vector<int64_t>> GgufMeta::integers(std::string_view key) const {
    return array_of<int64_t>(*this, key, "an integer", [](const gguf::Value& item) { return item.as_int(); });
}

std::vector<std::string> GgufMeta::tokens() const {
    std::vector<std::string> pieces = strings("tokenizer.ggml.tokens");
    if (pieces.empty()) fail("tokenizer.ggml.tokens", "is empty");
    if (pieces.size() > static_cast<size_t>(INT32_MAX)) fail("tokenizer.ggml.tokens", "has too many tokens");
    return pieces;
}

void GgufMeta::expect_per_token(std::string_view key, size_t size, size_t n_vocab) const {
    if (size != n_vocab)
        fail(key, "has " + std::to_string(size) + " entries but there are " + std::to_string(n_vocab) + " tokens");
}

std::optional<std::vector<TokenType>> GgufMeta::token_types(size_t n_vocab) const {
    constexpr std::string_view key = "tokenizer.ggml.token_type";
    const auto types = integers(key);
    if (!types) return std::nullopt;
    expect_per_token(key, types->size(), n_vocab);
    std::vector<TokenType> out(n_vocab);
    for (size_t i = 0; i < n_vocab; ++i) {
        const int64_t t = (*types)[i];
        if (t < 0 || t > 6) fail(key, "has the unknown type " + std::to_string(t));
        out[i] = static_cast<TokenType>(t);
    }
    return out;
}

std::optional<bool> GgufMeta::boolean(std::string_view key) const {
    const gguf::Value* v = find(key);
    if (!v) return std::nullopt;
    if (const bool* b = std::get_if<bool>(&v->data)) return *b;
    if (const auto i = v->as_int()) return *i != 0;
    fail(key, "is not a boolean");
}

std::optional<int32_t> GgufMeta::token_id(std::string_view key, size_t n_vocab) const {
    const gguf::Value* v = find(key);
    if (!v) return std::nullopt;
    if (const auto* u = std::get_if<uint64_t>(&v->data)) {
        if (*u == 0xFFFFFFFFull || *u == std::numeric_limits<uint64_t>::max()) return std::nullopt;
        if (*u >= n_vocab) fail(key, "is " + std::to_string(*u) + ", outside the vocabulary of " + std::to_string(n_vocab) + " tokens");
        return static_cast<int32_t>(*u);
    }
    if (const auto* i = std::get_if<int64_t>(&v->data)) {
        if (*i == -1) return std::nullopt;
        if (*i < 0 || static_cast<uint64_t>(*i) >= n_vocab)
            fail(key, "is " + std::to_string(*i) + ", outside the vocabulary of " + std::to_string(n_vocab) + " tokens");
        return static_cast<int32_t>(*i);
    }
    fail(key, "is not an integer");
}

void check_token_id(int32_t id, int32_t n_vocab) {
    if (id < 0 || id >= n_vocab)
        throw InvalidArgument("[tokenizer] token id " + std::to_string(id) + " is outside the vocabulary of " +
                              std::to_string(n_vocab) + " tokens");
}

// ---- HF configs ---------------------------------------------------------------------------------------

static const nlohmann::json* json_key(const nlohmann::json& j, const char* key) {
    if (!j.is_object()) return nullptr;
    const auto it = j.find(key);
    return it == j.end() || it->is_null() ? nullptr : &*it;
}

std::optional<bool> hf_bool(const HfTokenizerConfig& cfg, const char* key) {
    for (const nlohmann::json* j : {&cfg.tokenizer_config, &cfg.config})
        if (const auto* v = json_key(*j, key); v && v->is_boolean()) return v->get<bool>();
    return std::nullopt;
}

std::optional<int64_t> hf_int(const HfTokenizerConfig& cfg, const char* key) {
    for (const nlohmann::json* j : {&cfg.tokenizer_config, &cfg.config})
        if (const auto* v = json_key(*j, key); v && v->is_number_integer()) return v->get<int64_t>();
    return std::nullopt;
}

std::optional<std::string> hf_token_string(const HfTokenizerConfig& cfg, const char* key) {
    const auto* v = json_key(cfg.tokenizer_config, key);
    if (!v) return std::nullopt;
    if (v->is_string()) return v->get<std::string>();
    if (v->is_object())
        if (const auto* c = json_key(*v, "content"); c && c->is_string()) return c->get<std::string>();
    return std::nullopt;
}

static nlohmann::json read_json(const fs::path& path) { return read_json_file(path.string(), "json"); }

}  // namespace tok

// ---- loaders ------------------------------------------------------------------------------------------

std::unique_ptr<Tokenizer> load_tokenizer(const gguf::File& file) {
    const tok::GgufMeta meta(file);
    const gguf::Value* model = meta.find("tokenizer.ggml.model");
    if (!model) throw FormatError("gguf", file.path(), 0, "no tokenizer: the metadata has no 'tokenizer.ggml.model'");
    const std::string* name = model->as_string();
    if (!name) meta.fail("tokenizer.ggml.model", "is not a string");
    if (*name == "llama") return tok::make_spm_from_gguf(meta);
    if (*name == "gpt2") return tok::make_bpe_from_gguf(meta);
    if (*name == "bert") return tok::make_wordpiece_from_gguf(meta);
    throw Unsupported("[tokenizer] " + file.path() + ": tokenizer model '" + *name +
                      "' is not supported (cq reads 'llama' SentencePiece, 'gpt2' BPE and 'bert' WordPiece)");
}

std::unique_ptr<Tokenizer> load_tokenizer(const hf::ModelDir& dir) {
    const fs::path root(dir.path);
    std::error_code ec;
    const auto has = [&](const char* name) { return fs::is_regular_file(root / name, ec); };

    tok::HfTokenizerConfig cfg;
    cfg.dir = dir.path;
    cfg.config = dir.config;
    if (has("tokenizer_config.json")) cfg.tokenizer_config = tok::read_json(root / "tokenizer_config.json");

    // DeBERTa-v2/v3 names its SentencePiece model spm.model, T5 spiece.model
    const char* spm_file = has("tokenizer.model") ? "tokenizer.model" : has("spm.model") ? "spm.model" : has("spiece.model") ? "spiece.model" : nullptr;
#if defined(CQ_MINIMAL)
    if (spm_file)
        throw Unsupported("[tokenizer] " + (root / spm_file).string() +
                          ": SentencePiece model files need the full cq build (this is the CQ_MINIMAL runtime; GGUF files "
                          "carry their tokenizer)");
#else
    if (spm_file) return tok::make_sentencepiece((root / spm_file).string(), cfg);
#endif
    if (has("tokenizer.json"))
        if (auto t = tok::make_from_tokenizer_json((root / "tokenizer.json").string(), cfg)) return t;
    if (has("vocab.json") && has("merges.txt"))
        return tok::make_bpe_from_files((root / "vocab.json").string(), (root / "merges.txt").string(), cfg);
    if (has("vocab.txt")) return tok::make_wordpiece_from_vocab_txt((root / "vocab.txt").string(), cfg);

    std::string what = "no tokenizer files (looked for tokenizer.model, spm.model, spiece.model, tokenizer.json, vocab.json + merges.txt, vocab.txt)";
    if (has("vocab.json")) what = "vocab.json is present but merges.txt is missing";
    else if (has("merges.txt")) what = "merges.txt is present but vocab.json is missing";
    else if (has("tokenizer.json")) what = "tokenizer.json holds a model type cq does not implement, and there is no "
                                           "tokenizer.model, vocab.json + merges.txt or vocab.txt";
    throw IoError("[tokenizer] " + dir.path + ": " + what);
}

namespace tok {

std::unique_ptr<Tokenizer> make_from_tokenizer_json(const std::string& path, const HfTokenizerConfig& cfg) {
    const nlohmann::json j = read_json(path);
    const auto* model = json_key(j, "model");
    if (!model || !model->is_object()) throw FormatError("json", path, 0, "tokenizer.json has no 'model' object");
    std::string type;
    if (const auto* t = json_key(*model, "type"); t && t->is_string()) type = t->get<std::string>();
    if (type.empty() && json_key(*model, "merges")) type = "BPE";
    try {
        if (type == "BPE") return make_bpe_from_tokenizer_json(path, j, cfg);
        if (type == "WordPiece") return make_wordpiece_from_tokenizer_json(path, j, cfg);
    } catch (const nlohmann::json::exception& e) {
        throw FormatError("json", path, 0, std::string("tokenizer.json has an unexpected structure: ") + e.what());
    }
    return nullptr;
}

}  // namespace tok

}  // namespace cq
