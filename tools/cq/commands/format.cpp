// Text-formatting helpers for the CLI's tables.
#include "commands/format.h"

#include <algorithm>
#include <cstdio>
#include <iostream>
#include <string>

#include "cq/error.h"

namespace cq::cli {

std::string group_digits(uint64_t v) {
    std::string s = std::to_string(v);
    for (int i = static_cast<int>(s.size()) - 3; i > 0; i -= 3) s.insert(static_cast<size_t>(i), ",");
    return s;
}

std::string human_bytes(uint64_t v) {
    const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double x = static_cast<double>(v);
    int u = 0;
    while (x >= 1024 && u < 4) x /= 1024, ++u;
    char buf[32];
    std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.2f %s", x, units[u]);
    return buf;
}

std::string human_count(uint64_t v) {
    const char* units[] = {"", " K", " M", " B", " T"};
    double x = static_cast<double>(v);
    int u = 0;
    while (x >= 1000 && u < 4) x /= 1000, ++u;
    char buf[32];
    std::snprintf(buf, sizeof buf, u == 0 ? "%.0f%s" : "%.2f%s", x, units[u]);
    return buf;
}

namespace {
// Display width: count UTF-8 code points, not bytes, so "×" and "…" line up.
size_t display_width(const std::string& s) {
    return static_cast<size_t>(std::count_if(s.begin(), s.end(), [](char c) { return (static_cast<unsigned char>(c) & 0xC0) != 0x80; }));
}
}  // namespace

void print_table(const std::vector<std::vector<std::string>>& rows, const std::vector<bool>& right, int indent) {
    std::vector<size_t> width;
    for (const auto& row : rows) {
        if (width.size() < row.size()) width.resize(row.size(), 0);
        for (size_t c = 0; c < row.size(); ++c) width[c] = std::max(width[c], display_width(row[c]));
    }
    for (const auto& row : rows) {
        std::string line(static_cast<size_t>(indent), ' ');
        for (size_t c = 0; c < row.size(); ++c) {
            const size_t pad = width[c] - display_width(row[c]);
            const bool r = c < right.size() && right[c];
            if (r) line += std::string(pad, ' ');
            line += row[c];
            if (c + 1 < row.size()) {
                if (!r) line += std::string(pad, ' ');
                line += "  ";
            }
        }
        std::cout << line << '\n';
    }
}

void print_json(const nlohmann::json& j) {
    std::cout << j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << '\n';
}

}  // namespace cq::cli

#include <unistd.h>

#include "cq/mapped_file.h"

namespace cq::cli {

Progress::Progress(std::string label, bool enabled) : label_(std::move(label)), enabled_(enabled && ::isatty(STDERR_FILENO)) {}

Progress::~Progress() { finish(); }

void Progress::finish() {
    if (drawn_) std::fprintf(stderr, "\r\033[K");
    drawn_ = false;
}

void Progress::update(int64_t done, int64_t total, const std::string& detail) {
    if (!enabled_) return;
    std::fprintf(stderr, "\r\033[K[%s] %lld/%lld %s", label_.c_str(), static_cast<long long>(done), static_cast<long long>(total),
                 detail.c_str());
    std::fflush(stderr);
    drawn_ = true;
}

std::string read_prompt_file(const std::string& path) {
    std::string text = read_text_file(path, uint64_t{1} << 32);
    if (!text.empty() && text.back() == '\n') text.pop_back();
    return text;
}

std::pair<int64_t, int64_t> parse_sample_range(const std::string& spec, const char* option) {
    if (spec.empty()) return {0, -1};
    const auto bad = [&]() { return InvalidArgument(std::string(option) + " '" + spec + "' is not FIRST:END (e.g. 8000:10000, or 100: for the rest)"); };
    const auto colon = spec.find(':');
    if (colon == std::string::npos) throw bad();
    const auto number = [&](const std::string& s) {
        if (s.empty() || s.size() > 15 || s.find_first_not_of("0123456789") != std::string::npos) throw bad();
        return static_cast<int64_t>(std::stoll(s));
    };
    const int64_t first = colon == 0 ? 0 : number(spec.substr(0, colon));
    if (colon + 1 == spec.size()) return {first, -1};
    const int64_t end = number(spec.substr(colon + 1));
    if (end < first) throw bad();
    return {first, end - first};
}

}  // namespace cq::cli
