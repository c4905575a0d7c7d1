// A Hugging Face model directory: config.json (+ generation_config.json), the tokenizer and
// preprocessor files present, and the safetensors weights (single or sharded).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cq/io/safetensors.h"

namespace cq::hf {

struct ModelDir {
    std::string path;
    nlohmann::json config;                            // config.json
    std::optional<nlohmann::json> generation_config;  // generation_config.json, if present
    std::string model_type;                           // config["model_type"], "" if absent
    std::vector<std::string> architectures;           // config["architectures"]
    std::vector<std::string> tokenizer_files;         // tokenizer.json, tokenizer.model, vocab.txt, ... present
    std::vector<std::string> other_files;             // preprocessor_config.json etc. present
    safetensors::Model weights;
};

/// True if `path` is a directory with a config.json.
bool is_model_dir(const std::string& path);
/// config.json's model_type of the HF directory `path`; "" when `path` is no such directory or names none.
/// FormatError for a config.json that is not JSON.
std::string model_type_of_dir(const std::string& path);
/// Reads the directory. FormatError for malformed JSON; Unsupported for weights only in a format cq
/// cannot read (pytorch_model.bin); IoError if config.json or the weights are missing.
ModelDir open_model_dir(const std::string& path);

}  // namespace cq::hf
