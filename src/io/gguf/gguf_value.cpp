// GGUF metadata values: typed accessors and the short display form used by `cq info --metadata`.
#include <cmath>
#include <cstdio>
#include <limits>

#include "cq/io/gguf.h"

namespace cq::gguf {

std::string_view value_type_name(ValueType type) {
    switch (type) {
        case ValueType::U8: return "u8";
        case ValueType::I8: return "i8";
        case ValueType::U16: return "u16";
        case ValueType::I16: return "i16";
        case ValueType::U32: return "u32";
        case ValueType::I32: return "i32";
        case ValueType::F32: return "f32";
        case ValueType::BOOL: return "bool";
        case ValueType::STRING: return "string";
        case ValueType::ARRAY: return "array";
        case ValueType::U64: return "u64";
        case ValueType::I64: return "i64";
        case ValueType::F64: return "f64";
    }
    return "?";
}

bool Value::is_integer() const {
    return std::holds_alternative<uint64_t>(data) || std::holds_alternative<int64_t>(data);
}

bool Value::is_number() const { return is_integer() || std::holds_alternative<double>(data); }

std::optional<int64_t> Value::as_int() const {
    if (const auto* u = std::get_if<uint64_t>(&data)) {
        if (*u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return std::nullopt;
        return static_cast<int64_t>(*u);
    }
    if (const auto* i = std::get_if<int64_t>(&data)) return *i;
    return std::nullopt;
}

std::optional<double> Value::as_double() const {
    if (const auto* d = std::get_if<double>(&data)) return *d;
    if (const auto* u = std::get_if<uint64_t>(&data)) return static_cast<double>(*u);
    if (const auto* i = std::get_if<int64_t>(&data)) return static_cast<double>(*i);
    return std::nullopt;
}

const std::string* Value::as_string() const { return std::get_if<std::string>(&data); }
const Array* Value::as_array() const { return std::get_if<Array>(&data); }

namespace {
std::string quote(const std::string& s, size_t max_chars) {
    std::string out = "\"";
    size_t shown = 0;
    for (char c : s) {
        if (shown++ == max_chars) {
            out += "…\" (" + std::to_string(s.size()) + " bytes)";
            return out;
        }
        if (c == '\n') out += "\\n";
        else if (c == '\t') out += "\\t";
        else if (c == '"') out += "\\\"";
        else if (static_cast<unsigned char>(c) < 0x20) out += "\\x" + std::to_string(static_cast<int>(c));
        else out += c;
    }
    return out + "\"";
}
std::string format_double(double v, ValueType type) {
    char buf[64];
    std::snprintf(buf, sizeof buf, type == ValueType::F32 ? "%.9g" : "%.17g", v);
    return buf;
}
}  // namespace

std::string Value::to_display_string(size_t max_items) const {
    if (const auto* u = std::get_if<uint64_t>(&data)) return std::to_string(*u);
    if (const auto* i = std::get_if<int64_t>(&data)) return std::to_string(*i);
    if (const auto* d = std::get_if<double>(&data)) return format_double(*d, type);
    if (const auto* b = std::get_if<bool>(&data)) return *b ? "true" : "false";
    if (const auto* s = std::get_if<std::string>(&data)) return quote(*s, 120);
    const Array& a = std::get<Array>(data);
    std::string out;
    if (a.items.size() > max_items)
        out = "[" + std::to_string(a.items.size()) + " × " + std::string(value_type_name(a.element_type)) + "] ";
    out += "[";
    for (size_t i = 0; i < a.items.size() && i < max_items; ++i) {
        if (i) out += ", ";
        out += a.items[i].to_display_string(max_items);
    }
    if (a.items.size() > max_items) out += ", …";
    return out + "]";
}

}  // namespace cq::gguf
