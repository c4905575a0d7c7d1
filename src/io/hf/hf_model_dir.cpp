// Reads a Hugging Face model directory: config.json, generation_config.json, which tokenizer and
// preprocessor files are present, and the safetensors weights.
#include <filesystem>

#include "core/json_file.h"
#include "cq/error.h"
#include "io/hf/hf_model.h"

namespace cq::hf {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {
constexpr uint64_t kMaxConfigBytes = 16ull << 20;

json read_json_file(const fs::path& path) { return cq::read_json_file(path.string(), "hf", kMaxConfigBytes); }
}  // namespace

bool is_model_dir(const std::string& path) {
    std::error_code ec;
    return fs::is_directory(path, ec) && fs::is_regular_file(fs::path(path) / "config.json", ec);
}

std::string model_type_of_dir(const std::string& path) {
    if (!is_model_dir(path)) return "";
    const nlohmann::json j = read_json_file(fs::path(path) / "config.json");
    const auto it = j.is_object() ? j.find("model_type") : j.end();
    return it != j.end() && it->is_string() ? it->get<std::string>() : "";
}

ModelDir open_model_dir(const std::string& path) {
    const fs::path dir(path);
    std::error_code ec;
    if (!fs::is_directory(dir, ec)) throw IoError("[hf] '" + path + "' is not a directory");
    if (!fs::is_regular_file(dir / "config.json", ec))
        throw IoError("[hf] " + path + ": no config.json (an HF model directory needs one)");
    ModelDir m;
    m.path = path;
    m.config = read_json_file(dir / "config.json");
    if (!m.config.is_object()) throw FormatError("hf", (dir / "config.json").string(), 0, "config.json is not a JSON object");
    if (fs::is_regular_file(dir / "generation_config.json", ec)) m.generation_config = read_json_file(dir / "generation_config.json");
    if (const auto it = m.config.find("model_type"); it != m.config.end() && it->is_string()) m.model_type = *it;
    if (const auto it = m.config.find("architectures"); it != m.config.end() && it->is_array())
        for (const auto& a : *it)
            if (a.is_string()) m.architectures.push_back(a);

    for (const char* name : {"tokenizer.json", "tokenizer.model", "tokenizer_config.json", "special_tokens_map.json",
                             "vocab.txt", "vocab.json", "merges.txt", "added_tokens.json"})
        if (fs::is_regular_file(dir / name, ec)) m.tokenizer_files.emplace_back(name);
    for (const char* name : {"preprocessor_config.json", "generation_config.json"})
        if (fs::is_regular_file(dir / name, ec)) m.other_files.emplace_back(name);

    const bool has_safetensors =
        fs::is_regular_file(dir / "model.safetensors", ec) || fs::is_regular_file(dir / "model.safetensors.index.json", ec);
    if (!has_safetensors) {
        if (fs::exists(dir / "pytorch_model.bin", ec) || fs::exists(dir / "pytorch_model.bin.index.json", ec))
            throw Unsupported("[hf] " + path + ": weights are only in PyTorch pickle format (pytorch_model.bin); "
                              "cq reads safetensors — convert them first");
        throw IoError("[hf] " + path + ": no model.safetensors or model.safetensors.index.json");
    }
    m.weights = safetensors::Model::open(path);
    return m;
}

}  // namespace cq::hf
