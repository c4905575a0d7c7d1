// Small text-formatting helpers shared by the subcommands' human-readable output.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace cq::cli {

/// 1234567 → "1,234,567"
std::string group_digits(uint64_t v);
/// 1234567 → "1.18 MiB"
std::string human_bytes(uint64_t v);
/// 292480 → "292.48 K"
std::string human_count(uint64_t v);
/// Prints rows as an aligned table; the first row is the header, `right` marks right-aligned columns.
void print_table(const std::vector<std::vector<std::string>>& rows, const std::vector<bool>& right, int indent = 2);
/// JSON to stdout, invalid UTF-8 replaced rather than thrown on.
void print_json(const nlohmann::json& j);

}  // namespace cq::cli

namespace cq::cli {

/// A one-line progress display on stderr, shown only when stderr is a terminal and JSON is off.
class Progress {
public:
    Progress(std::string label, bool enabled);
    ~Progress();
    void update(int64_t done, int64_t total, const std::string& detail);
    /// Clears the line (before the result is printed).
    void finish();

private:
    std::string label_;
    bool enabled_;
    bool drawn_ = false;
};

/// A FIRST:END sample range (END exclusive; "A:" = to the end, "" = all) → (first, count or −1).
/// InvalidArgument naming `option` for anything else.
std::pair<int64_t, int64_t> parse_sample_range(const std::string& spec, const char* option);

/// Reads a text file as llama.cpp's -f does (one trailing newline removed). IoError if unreadable.
std::string read_prompt_file(const std::string& path);

}  // namespace cq::cli
