// GGUF v2/v3 reader: header, every metadata value type (nested arrays included), tensor infos and
// zero-copy tensor data from a read-only mapping. Every size and offset is checked against the file;
// any violation is a FormatError naming the file, the byte offset and what was wrong.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <variant>
#include <vector>

#include "cq/dtype.h"
#include "cq/mapped_file.h"
#include "cq/tensor.h"

namespace cq::gguf {

/// GGUF metadata value types (ids as in the spec).
enum class ValueType : uint32_t {
    U8 = 0, I8 = 1, U16 = 2, I16 = 3, U32 = 4, I32 = 5, F32 = 6, BOOL = 7,
    STRING = 8, ARRAY = 9, U64 = 10, I64 = 11, F64 = 12,
};
std::string_view value_type_name(ValueType type);

struct Value;
struct Array {
    ValueType element_type = ValueType::U8;
    std::vector<Value> items;
};

/// One metadata value. Unsigned integers are held as uint64_t, signed ones as int64_t,
/// F32/F64 as double; `type` keeps the exact type from the file.
struct Value {
    ValueType type = ValueType::U8;
    std::variant<uint64_t, int64_t, double, bool, std::string, Array> data;

    bool is_integer() const;
    bool is_number() const;  // integer or float
    /// Numeric value as int64 (nullopt if not an integer or out of range).
    std::optional<int64_t> as_int() const;
    std::optional<double> as_double() const;
    const std::string* as_string() const;
    const Array* as_array() const;
    /// Short human form; arrays longer than `max_items` are summarised ("[32000 × string] [a, b, …]").
    std::string to_display_string(size_t max_items = 8) const;
};

struct KeyValue {
    std::string key;
    Value value;
    uint64_t file_offset = 0;  // where this key-value record starts
};

struct TensorInfo {
    std::string name;
    std::vector<int64_t> shape;  // row-major, outermost first (GGUF's ne reversed)
    DType dtype = DType::F32;
    uint64_t data_offset = 0;   // relative to the start of the tensor data section
    uint64_t file_offset = 0;   // absolute position of the first byte
    uint64_t nbytes = 0;
    uint64_t info_offset = 0;   // where this tensor-info record starts
    int64_t numel = 0;
};

/// Caps that keep a hostile header from exhausting memory. Defaults fit every real model.
struct Limits {
    uint64_t max_string_bytes = 64ull << 20;  // one metadata string
    uint64_t max_key_bytes = 1ull << 16;      // one key or tensor name
    uint64_t max_array_items = 1ull << 27;    // one array (largest real vocabularies are ~256k)
    uint32_t max_array_depth = 4;             // nested arrays
    uint64_t max_tensors = 1ull << 20;
    uint64_t max_kv = 1ull << 20;
};

class File {
public:
    /// Maps and parses `path`.
    static File open(const std::string& path, const Limits& limits = {});
    /// Parses bytes already in memory (tests, fuzzers).
    static File parse(std::shared_ptr<const ByteSource> source, const Limits& limits = {});

    uint32_t version() const { return version_; }
    uint64_t alignment() const { return alignment_; }
    /// Absolute offset of the tensor data section.
    uint64_t data_section_offset() const { return data_offset_; }
    const std::string& path() const { return source_->name(); }
    uint64_t file_size() const { return source_->size(); }

    const std::vector<KeyValue>& metadata() const { return kv_; }
    const Value* find(std::string_view key) const;
    std::optional<std::string> get_string(std::string_view key) const;
    std::optional<int64_t> get_int(std::string_view key) const;
    std::optional<double> get_double(std::string_view key) const;
    /// "general.architecture", or "" when absent.
    std::string architecture() const;

    const std::vector<TensorInfo>& tensors() const { return tensors_; }
    const TensorInfo* find_tensor(std::string_view name) const;
    /// A zero-copy view of the tensor's bytes (valid while any copy of this File or the Tensor lives).
    Tensor tensor(const TensorInfo& info) const;
    /// Throws InvalidArgument if there is no tensor called `name`.
    Tensor tensor(std::string_view name) const;

private:
    std::shared_ptr<const ByteSource> source_;
    uint32_t version_ = 0;
    uint64_t alignment_ = 32;
    uint64_t data_offset_ = 0;
    std::vector<KeyValue> kv_;
    std::vector<TensorInfo> tensors_;
    std::unordered_map<std::string, size_t> kv_index_;
    std::unordered_map<std::string, size_t> tensor_index_;

    friend class Parser;
};

}  // namespace cq::gguf
