// Reading JSON files (configs, vocabularies) with every parser failure turned into a FormatError
// that names the file and, where the parser knows it, the byte offset.
#pragma once

#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

namespace cq {

/// Parses JSON text that came from `file`; `format` names the reader in errors ("hf", "json", ...).
nlohmann::json parse_json_text(const std::string& text, const std::string& format, const std::string& file);
/// Reads and parses `path` (IoError if unreadable or over `max_bytes`).
nlohmann::json read_json_file(const std::string& path, const std::string& format, uint64_t max_bytes = 256ull << 20);

}  // namespace cq
