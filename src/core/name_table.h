// Enum ↔ name lookups over a constant table of {value, name} pairs, so that each enum's names are
// written once (one row per value) and both directions read the same rows.
#pragma once

#include <optional>
#include <string_view>
#include <utility>

namespace cq {

template <typename E, size_t N>
std::string_view name_in(const std::pair<E, std::string_view> (&table)[N], E value, std::string_view unknown) {
    for (const auto& [v, name] : table)
        if (v == value) return name;
    return unknown;
}

template <typename E, size_t N>
std::optional<E> value_in(const std::pair<E, std::string_view> (&table)[N], std::string_view name) {
    for (const auto& [v, n] : table)
        if (n == name) return v;
    return std::nullopt;
}

}  // namespace cq
