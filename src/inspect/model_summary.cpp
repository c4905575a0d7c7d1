// Builds the ModelSummary behind `cq info` from a GGUF file, a safetensors file/index or an HF
// directory. Counts come from the tensors themselves, so parameters = Σ elements, always.
#include <filesystem>

#include <nlohmann/json.hpp>

#include "cq/error.h"
#include "cq/inspect.h"
#include "cq/io/gguf.h"
#include "cq/io/safetensors.h"
#include "io/hf/hf_model.h"

namespace cq {

using nlohmann::json;
namespace fs = std::filesystem;

namespace {

constexpr size_t kMaxArrayItemsShown = 16;

json gguf_value_to_json(const gguf::Value& v) {
    using gguf::ValueType;
    if (const auto* u = std::get_if<uint64_t>(&v.data)) return *u;
    if (const auto* i = std::get_if<int64_t>(&v.data)) return *i;
    if (const auto* d = std::get_if<double>(&v.data)) return *d;
    if (const auto* b = std::get_if<bool>(&v.data)) return *b;
    if (const auto* s = std::get_if<std::string>(&v.data)) return *s;
    const gguf::Array& a = std::get<gguf::Array>(v.data);
    json items = json::array();
    for (size_t i = 0; i < a.items.size() && i < kMaxArrayItemsShown; ++i) items.push_back(gguf_value_to_json(a.items[i]));
    if (a.items.size() <= kMaxArrayItemsShown) return items;
    return json{{"type", "array"},
                {"element_type", std::string(gguf::value_type_name(a.element_type))},
                {"count", a.items.size()},
                {"head", items}};
}

// Sorted by key, as the JSON object they came from; text as `cq info --metadata` shows it.
std::vector<MetadataEntry> metadata_entries(const json& object) {
    std::vector<MetadataEntry> out;
    out.reserve(object.size());
    for (const auto& [k, v] : object.items()) {
        std::string text = v.dump(-1, ' ', false, json::error_handler_t::replace);
        out.push_back({k, text, v.is_string() ? v.get<std::string>() : text});
    }
    return out;
}

void add_tensor(ModelSummary& s, TensorSummary t, int64_t numel) {
    s.parameter_count += static_cast<uint64_t>(numel);
    s.tensor_bytes += t.nbytes;
    s.bytes_by_dtype[t.dtype] += t.nbytes;
    s.tensors_by_dtype[t.dtype] += 1;
    s.tensors.push_back(std::move(t));
}

void finish(ModelSummary& s) {
    s.tensor_count = s.tensors.size();
    s.bits_per_weight = s.parameter_count ? 8.0 * static_cast<double>(s.tensor_bytes) / static_cast<double>(s.parameter_count) : 0.0;
}

ModelSummary summarize_gguf(const std::string& path) {
    const gguf::File f = gguf::File::open(path);
    ModelSummary s;
    s.path = path;
    s.format = "gguf";
    s.file_bytes = f.file_size();
    s.architecture = f.architecture();
    s.name = f.get_string("general.name").value_or("");
    json metadata = json::object();
    const std::string prefix = s.architecture.empty() ? std::string("\x01") : s.architecture + ".";
    for (const auto& kv : f.metadata()) {
        metadata[kv.key] = gguf_value_to_json(kv.value);
        if (kv.key.rfind(prefix, 0) == 0 && kv.value.type != gguf::ValueType::ARRAY)
            s.hyperparameters.emplace_back(kv.key.substr(prefix.size()), kv.value.to_display_string());
    }
    s.metadata = metadata_entries(metadata);
    s.hyperparameters.emplace_back("gguf_version", std::to_string(f.version()));
    if (auto model = f.get_string("tokenizer.ggml.model")) s.hyperparameters.emplace_back("tokenizer", *model);
    if (const auto* tokens = f.find("tokenizer.ggml.tokens"); tokens && tokens->as_array())
        s.hyperparameters.emplace_back("tokenizer_vocab", std::to_string(tokens->as_array()->items.size()));
    if (f.tensors().empty()) s.notes.push_back("no tensors: a vocabulary-only file");
    for (const auto& t : f.tensors())
        add_tensor(s, {t.name, t.shape, std::string(dtype_name(t.dtype)), t.nbytes, t.file_offset, path}, t.numel);
    finish(s);
    return s;
}

void add_safetensors(ModelSummary& s, const safetensors::Model& m) {
    for (const auto& shard : m.shards()) s.file_bytes += shard.file_size();
    for (const auto* t : m.tensors())
        add_tensor(s, {t->name, t->shape, t->dtype_name, t->nbytes, t->file_offset, m.shard_of(t->name)->path()}, t->numel);
}

// The config.json keys worth showing, in display order; the first alias present wins.
const std::vector<std::pair<const char*, std::vector<const char*>>> kHfHyperparameters = {
    {"hidden_size", {"hidden_size", "n_embd", "d_model", "dim"}},
    {"num_layers", {"num_hidden_layers", "n_layer", "num_layers", "n_layers"}},
    {"num_attention_heads", {"num_attention_heads", "n_head", "num_heads"}},
    {"num_key_value_heads", {"num_key_value_heads"}},
    {"intermediate_size", {"intermediate_size", "n_inner", "ffn_dim"}},
    {"vocab_size", {"vocab_size"}},
    {"max_position_embeddings", {"max_position_embeddings", "n_positions", "n_ctx"}},
    {"rope_theta", {"rope_theta"}},
    {"rope_scaling", {"rope_scaling"}},
    {"norm_eps", {"rms_norm_eps", "layer_norm_eps", "layer_norm_epsilon"}},
    {"activation", {"hidden_act", "activation_function"}},
    {"tie_word_embeddings", {"tie_word_embeddings"}},
    {"image_size", {"image_size"}},
    {"patch_size", {"patch_size"}},
    {"num_channels", {"num_channels"}},
    {"torch_dtype", {"torch_dtype"}},
};

ModelSummary summarize_hf(const std::string& path) {
    const hf::ModelDir d = hf::open_model_dir(path);
    ModelSummary s;
    s.path = path;
    s.format = "hf";
    s.architecture = d.model_type;
    if (const auto it = d.config.find("_name_or_path"); it != d.config.end() && it->is_string()) s.name = *it;
    s.metadata = metadata_entries(d.config);
    for (const auto& [label, aliases] : kHfHyperparameters) {
        for (const char* key : aliases) {
            const auto it = d.config.find(key);
            if (it == d.config.end() || it->is_null()) continue;
            s.hyperparameters.emplace_back(label, it->is_string() ? it->get<std::string>() : it->dump());
            break;
        }
    }
    if (const auto it = d.config.find("id2label"); it != d.config.end() && it->is_object())
        s.hyperparameters.emplace_back("num_labels", std::to_string(it->size()));
    if (!d.architectures.empty()) {
        std::string archs;
        for (const auto& a : d.architectures) archs += (archs.empty() ? "" : ", ") + a;
        s.hyperparameters.emplace_back("architectures", archs);
    }
    std::string tok;
    for (const auto& t : d.tokenizer_files) tok += (tok.empty() ? "" : ", ") + t;
    s.notes.push_back(tok.empty() ? "no tokenizer files found" : "tokenizer files: " + tok);
    if (d.generation_config) s.notes.push_back("generation_config.json present");
    if (!d.weights.index_path().empty())
        s.notes.push_back("sharded weights: " + std::to_string(d.weights.shards().size()) + " files");
    add_safetensors(s, d.weights);
    finish(s);
    return s;
}

ModelSummary summarize_safetensors(const std::string& path) {
    const auto m = safetensors::Model::open(path);
    ModelSummary s;
    s.path = path;
    s.format = "safetensors";
    json meta = json::object();
    for (const auto& shard : m.shards())
        for (const auto& [k, v] : shard.metadata()) meta[k] = v;
    s.metadata = metadata_entries(meta);
    add_safetensors(s, m);
    finish(s);
    return s;
}

}  // namespace

#if !defined(CQ_MINIMAL)
ModelSummary summarize_onnx(const std::string& path);
#endif

ModelSummary summarize_model(const std::string& path) {
    std::error_code ec;
    if (fs::is_directory(path, ec)) {
        if (hf::is_model_dir(path)) return summarize_hf(path);
        return summarize_safetensors(path);  // a bare folder of safetensors weights
    }
    if (!fs::exists(path, ec)) throw IoError("[info] '" + path + "' does not exist");
    const std::string ext = fs::path(path).extension().string();
    if (ext == ".safetensors" || ext == ".json") return summarize_safetensors(path);
    if (ext == ".gguf") return summarize_gguf(path);
    if (ext == ".onnx") {
#if defined(CQ_MINIMAL)
        throw Unsupported("[info] " + path + ": ONNX files need the full cq build (this is the CQ_MINIMAL runtime)");
#else
        return summarize_onnx(path);  // src/onnx/onnx_summary.cpp
#endif
    }
    // Unknown extension: trust the magic bytes.
    const auto src = map_file(path);
    if (src->size() >= 4 && std::string(reinterpret_cast<const char*>(src->data()), 4) == "GGUF") return summarize_gguf(path);
    if (src->size() >= 9 && src->data()[8] == '{') return summarize_safetensors(path);
    throw Unsupported("[info] " + path + ": not a format cq reads (expected a .gguf file, a .safetensors file, "
                      "a model.safetensors.index.json, an .onnx file or an HF model directory)");
}

}  // namespace cq
