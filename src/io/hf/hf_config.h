// The one reader of HF config values (config.json, preprocessor_config.json): typed lookups over one or
// more alternative key names, with defaults, where a key that is present with the wrong type (or, for
// the size getters, not positive) is an error naming the file and the key instead of a silent default.
// JSON null counts as absent (HF writes "n_inner": null for "use the default").
#pragma once

#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cq/error.h"

namespace cq::hf {

/// The sizes every transformer config states, under the names the families use for them (0: absent).
struct TransformerSizes {
    int64_t hidden = 0, layers = 0, heads = 0, kv_heads = 0, head_dim = 0, ffn = 0, vocab = 0, positions = 0;
};

class Config {
public:
    Config(const nlohmann::json& j, std::string path) : j_(j), path_(std::move(path)) {}

    const nlohmann::json* find(const char* key) const {
        if (!j_.is_object()) return nullptr;
        const auto it = j_.find(key);
        return it == j_.end() || it->is_null() ? nullptr : &*it;
    }
    /// The first of `keys` present, as an integer.
    std::optional<int64_t> opt_int(std::initializer_list<const char*> keys) const {
        for (const char* k : keys)
            if (const nlohmann::json* v = find(k)) {
                if (!v->is_number_integer()) fail(k, "is not an integer");
                return v->get<int64_t>();
            }
        return std::nullopt;
    }
    int64_t int_or(std::initializer_list<const char*> keys, int64_t fallback) const { return opt_int(keys).value_or(fallback); }
    /// A size: the first of `keys` present, which must be a positive integer.
    std::optional<int64_t> opt_size(std::initializer_list<const char*> keys) const {
        for (const char* k : keys)
            if (const nlohmann::json* v = find(k)) {
                if (!v->is_number_integer() || v->get<int64_t>() <= 0) fail(k, "is not a positive integer");
                return v->get<int64_t>();
            }
        return std::nullopt;
    }
    int64_t size_or(std::initializer_list<const char*> keys, int64_t fallback) const { return opt_size(keys).value_or(fallback); }
    int64_t get_size(std::initializer_list<const char*> keys) const {
        if (auto v = opt_size(keys)) return *v;
        fail(*keys.begin(), "is missing");
    }
    std::optional<double> opt_number(const char* key) const {
        if (const nlohmann::json* v = find(key)) {
            if (!v->is_number()) fail(key, "is not a number");
            return v->get<double>();
        }
        return std::nullopt;
    }
    double number_or(const char* key, double fallback) const { return opt_number(key).value_or(fallback); }
    std::string string_or(const char* key, const std::string& fallback) const {
        if (const nlohmann::json* v = find(key)) {
            if (!v->is_string()) fail(key, "is not a string");
            return v->get<std::string>();
        }
        return fallback;
    }
    bool bool_or(const char* key, bool fallback) const {
        if (const nlohmann::json* v = find(key)) {
            if (!v->is_boolean()) fail(key, "is not true or false");
            return v->get<bool>();
        }
        return fallback;
    }
    /// The sizes under every family's key names: BERT/LLaMA ("hidden_size", ...), GPT-2 ("n_embd", ...),
    /// DistilBERT ("dim", ...). Each must be a positive integer where present.
    TransformerSizes transformer_sizes() const {
        TransformerSizes s;
        s.hidden = size_or({"hidden_size", "n_embd", "dim"}, 0);
        s.layers = size_or({"num_hidden_layers", "n_layer", "n_layers"}, 0);
        s.heads = size_or({"num_attention_heads", "n_head", "n_heads"}, 0);
        s.kv_heads = size_or({"num_key_value_heads"}, 0);
        s.head_dim = size_or({"head_dim"}, 0);
        s.ffn = size_or({"intermediate_size", "n_inner", "hidden_dim"}, 0);
        s.vocab = size_or({"vocab_size"}, 0);
        s.positions = size_or({"max_position_embeddings", "n_positions", "n_ctx"}, 0);
        return s;
    }
    /// The object under `key` (CLIP's / BLIP's text_config, vision_config) as a Config named "<path> <key>": empty where
    /// the key is absent or null (the sub-config's defaults apply), an error where it is not an object.
    Config section(const char* key) const {
        static const nlohmann::json empty = nlohmann::json::object();
        const nlohmann::json* v = find(key);
        if (v && !v->is_object()) fail(key, "is not a JSON object");
        return Config(v ? *v : empty, path_ + " " + key);
    }
    /// The class names: id2label's (ids 0..n−1, each once, as PretrainedConfig requires), else num_labels (default 2)
    /// named LABEL_i, as transformers names them when a config has none.
    std::vector<std::string> labels() const {
        std::vector<std::string> out;
        if (const nlohmann::json* ids = find("id2label"); ids && ids->is_object() && !ids->empty()) {
            out.assign(ids->size(), "");
            for (const auto& [key, value] : ids->items()) {
                size_t used = 0;
                int64_t id = -1;
                try {
                    id = std::stoll(key, &used);
                } catch (const std::exception&) {
                }
                if (used != key.size() || id < 0 || id >= static_cast<int64_t>(out.size()) || !value.is_string())
                    fail("id2label", "entry '" + key + "' is not an id in [0, " + std::to_string(out.size()) + ") with a string label");
                out[static_cast<size_t>(id)] = value.get<std::string>();
            }
            return out;
        }
        const int64_t n = size_or({"num_labels"}, 2);
        for (int64_t i = 0; i < n; ++i) out.push_back("LABEL_" + std::to_string(i));
        return out;
    }
    [[noreturn]] void fail(const std::string& key, const std::string& what) const {
        throw FormatError("hf", path_, 0, "'" + key + "' " + what);
    }
    const nlohmann::json& json() const { return j_; }
    const std::string& path() const { return path_; }

private:
    const nlohmann::json& j_;
    std::string path_;
};

}  // namespace cq::hf
