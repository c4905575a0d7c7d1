// Class names → label ids, shared by the dataset readers: exact match first, then ignoring ASCII case
// (a model's id2label says "POSITIVE" where a TSV may say "positive").
#pragma once

#include <charconv>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace cq::data {

inline bool equal_ignoring_case(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); ++i) {
        auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; };
        if (lower(a[i]) != lower(b[i])) return false;
    }
    return true;
}

/// The whole of `s` as an int32, or nothing (no sign other than '-', no spaces, no trailing text).
inline std::optional<int32_t> parse_int32(std::string_view s) {
    int32_t v = 0;
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc() || end != s.data() + s.size() || s.empty()) return std::nullopt;
    return v;
}

/// The label of `value`: its index in `names` when names are given (an integer in range is also
/// accepted, since GLUE dev sets use 0/1 while models name the classes), else the integer itself.
inline std::optional<int32_t> label_of(std::string_view value, std::span<const std::string> names) {
    if (names.empty()) return parse_int32(value);
    for (size_t i = 0; i < names.size(); ++i)
        if (names[i] == value) return static_cast<int32_t>(i);
    for (size_t i = 0; i < names.size(); ++i)
        if (equal_ignoring_case(names[i], value)) return static_cast<int32_t>(i);
    if (auto v = parse_int32(value); v && *v >= 0 && static_cast<size_t>(*v) < names.size()) return v;
    return std::nullopt;
}

/// "a, b, c" for error messages.
inline std::string join_names(std::span<const std::string> names) {
    std::string out;
    for (const auto& n : names) out += (out.empty() ? "" : ", ") + ("'" + n + "'");
    return out;
}

}  // namespace cq::data
