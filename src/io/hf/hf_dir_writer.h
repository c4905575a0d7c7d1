// Reading config.json, and writing an HF directory beside its source (pruned models, students, fine-tuned models): config.json and the side
// files — tokenizer, preprocessor, generation config — that cq does not change but transformers needs to load it.
#pragma once

#include <filesystem>
#include <string>

#include <nlohmann/json.hpp>

namespace cq::hf {

/// dir/config.json parsed; FormatError naming the file when it is not JSON.
nlohmann::json read_config(const std::filesystem::path& dir);
/// Writes output_dir/config.json atomically (two-space indent).
void write_config(const std::filesystem::path& output_dir, const nlohmann::json& config);
/// Copies the side files of source_dir that exist (and config.json with `with_config`) into output_dir as writable
/// files. IoError naming the file, prefixed with `what` ("[prune]").
void copy_side_files(const std::filesystem::path& source_dir, const std::filesystem::path& output_dir, const std::string& what,
                     bool with_config = false);

}  // namespace cq::hf
