// Model inspection behind `cq info`: what a model file or directory holds (architecture, main
// hyperparameters, tensors, parameters, bytes by dtype, bits per weight), as plain data.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace cq {

struct TensorSummary {
    std::string name;
    std::vector<int64_t> shape;  // row-major, outermost first
    std::string dtype;
    uint64_t nbytes = 0;
    uint64_t offset = 0;  // absolute byte offset in `file`
    std::string file;     // the file holding it (shards differ)
};

/// One metadata key-value (a GGUF key, a config.json top-level key, a safetensors __metadata__ entry).
struct MetadataEntry {
    std::string key;
    std::string json;  // the value as compact JSON text (invalid UTF-8 replaced by U+FFFD)
    std::string text;  // display-ready: a string value as it is (bytes untouched), anything else as `json`
};

struct ModelSummary {
    std::string path;
    std::string format;        // "gguf", "safetensors" or "hf"
    std::string architecture;  // "llama", "gpt2", "bert", ... ("" if unknown)
    std::string name;          // general.name / _name_or_path, if any
    std::vector<std::pair<std::string, std::string>> hyperparameters;  // ordered, display-ready
    uint64_t tensor_count = 0;
    uint64_t parameter_count = 0;  // Σ elements over all tensors
    uint64_t tensor_bytes = 0;     // Σ bytes over all tensors
    uint64_t file_bytes = 0;       // Σ file sizes (all shards)
    std::map<std::string, uint64_t> bytes_by_dtype;
    std::map<std::string, uint64_t> tensors_by_dtype;
    double bits_per_weight = 0;    // 8 · tensor_bytes / parameter_count (0 without tensors)
    std::vector<TensorSummary> tensors;
    std::vector<MetadataEntry> metadata;  // GGUF key-values or config.json, sorted by key (long arrays summarised)
    std::vector<std::string> notes;  // e.g. tokenizer files found, vocab-only file
};

/// Inspects a .gguf file, a .safetensors file (or index) or an HF model directory.
ModelSummary summarize_model(const std::string& path);

}  // namespace cq
