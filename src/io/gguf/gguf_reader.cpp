// GGUF parser. Reads through a bounds-checked cursor over the mapped bytes, so no size or offset
// from the file is trusted before it is checked against what remains; the tensor data layout is
// validated with llama.cpp's rule (each tensor starts where the previous one, padded, ended).
#include <algorithm>
#include <cstring>

#include "cq/error.h"
#include "cq/io/gguf.h"
#include "io/tensor_table.h"

namespace cq::gguf {

class Parser {
public:
    Parser(std::shared_ptr<const ByteSource> source, const Limits& limits)
        : src_(std::move(source)), limits_(limits), data_(src_->data()), size_(src_->size()) {}

    File parse();

private:
    [[noreturn]] void fail(uint64_t offset, const std::string& what) const {
        throw FormatError("gguf", src_->name(), offset, what);
    }
    uint64_t remaining() const { return size_ - pos_; }
    void need(uint64_t n, const char* what) const {
        if (n > remaining())
            fail(pos_, std::string("file ends while reading ") + what + " (" + std::to_string(n) + " bytes needed, " +
                           std::to_string(remaining()) + " left)");
    }
    template <typename T>
    T read(const char* what) {
        need(sizeof(T), what);
        T v;
        std::memcpy(&v, data_ + pos_, sizeof(T));
        pos_ += sizeof(T);
        return v;
    }
    enum class Record { metadata, tensor };
    // The name that starts record i (a metadata key or a tensor name): FormatError at its start if it is
    // empty or already in `seen`.
    std::string read_name(const std::unordered_map<std::string, size_t>& seen, uint64_t i, Record record) {
        const uint64_t at = pos_;
        const bool key = record == Record::metadata;
        std::string name = read_string(limits_.max_key_bytes, key ? "a metadata key" : "a tensor name");
        if (name.empty())
            fail(at, key ? "metadata key " + std::to_string(i) + " is empty" : "tensor " + std::to_string(i) + " has an empty name");
        if (seen.count(name)) fail(at, std::string(key ? "duplicate metadata key '" : "duplicate tensor name '") + name + "'");
        return name;
    }

    std::string read_string(uint64_t cap, const char* what) {
        const uint64_t at = pos_;
        const auto len = read<uint64_t>(what);
        if (len > cap)
            fail(at, std::string(what) + " length " + std::to_string(len) + " exceeds the limit of " +
                         std::to_string(cap) + " bytes");
        need(len, what);
        std::string s(reinterpret_cast<const char*>(data_ + pos_), len);
        pos_ += len;
        return s;
    }
    ValueType read_type(const char* what) {
        const uint64_t at = pos_;
        const auto t = read<uint32_t>(what);
        if (t > static_cast<uint32_t>(ValueType::F64)) fail(at, "unknown metadata value type " + std::to_string(t));
        return static_cast<ValueType>(t);
    }
    Value read_value(ValueType type, uint32_t depth);

    std::shared_ptr<const ByteSource> src_;
    Limits limits_;
    const uint8_t* data_;
    uint64_t size_;
    uint64_t pos_ = 0;
};

namespace {
// Smallest encoding of one array element of `type`: bounds an array's count by the bytes left.
uint64_t min_encoded_size(ValueType type) {
    switch (type) {
        case ValueType::U8: case ValueType::I8: case ValueType::BOOL: return 1;
        case ValueType::U16: case ValueType::I16: return 2;
        case ValueType::U32: case ValueType::I32: case ValueType::F32: return 4;
        case ValueType::U64: case ValueType::I64: case ValueType::F64: case ValueType::STRING: return 8;
        case ValueType::ARRAY: return 12;
    }
    return 1;
}

std::string removed_type_hint(uint32_t id) {
    if (id == 4 || id == 5) return " (Q4_2/Q4_3, removed from ggml in 2023)";
    if (id >= 31 && id <= 33) return " (Q4_0_4_4/Q4_0_4_8/Q4_0_8_8, removed; re-quantize to Q4_0)";
    if (id >= 36 && id <= 38) return " (IQ4_NL_4_4/4_8/8_8, removed; re-quantize to IQ4_NL)";
    return "";
}
}  // namespace

Value Parser::read_value(ValueType type, uint32_t depth) {
    Value v;
    v.type = type;
    switch (type) {
        case ValueType::U8: v.data = uint64_t{read<uint8_t>("a u8 value")}; break;
        case ValueType::I8: v.data = int64_t{read<int8_t>("an i8 value")}; break;
        case ValueType::U16: v.data = uint64_t{read<uint16_t>("a u16 value")}; break;
        case ValueType::I16: v.data = int64_t{read<int16_t>("an i16 value")}; break;
        case ValueType::U32: v.data = uint64_t{read<uint32_t>("a u32 value")}; break;
        case ValueType::I32: v.data = int64_t{read<int32_t>("an i32 value")}; break;
        case ValueType::U64: v.data = read<uint64_t>("a u64 value"); break;
        case ValueType::I64: v.data = read<int64_t>("an i64 value"); break;
        case ValueType::F32: v.data = double{read<float>("an f32 value")}; break;
        case ValueType::F64: v.data = read<double>("an f64 value"); break;
        case ValueType::BOOL: {
            const uint64_t at = pos_;
            const auto b = read<uint8_t>("a bool value");
            if (b > 1) fail(at, "bool value " + std::to_string(b) + " is neither 0 nor 1");
            v.data = b == 1;
            break;
        }
        case ValueType::STRING: v.data = read_string(limits_.max_string_bytes, "a string value"); break;
        case ValueType::ARRAY: {
            const uint64_t at = pos_;
            Array a;
            a.element_type = read_type("an array element type");
            if (a.element_type == ValueType::ARRAY && depth + 1 >= limits_.max_array_depth)
                fail(at, "arrays nested deeper than " + std::to_string(limits_.max_array_depth) + " levels");
            const uint64_t count_at = pos_;
            const auto count = read<uint64_t>("an array length");
            if (count > limits_.max_array_items)
                fail(count_at, "array length " + std::to_string(count) + " exceeds the limit of " +
                                   std::to_string(limits_.max_array_items) + " items");
            if (count > remaining() / min_encoded_size(a.element_type))
                fail(count_at, "array of " + std::to_string(count) + " " +
                                   std::string(value_type_name(a.element_type)) + " items cannot fit in the " +
                                   std::to_string(remaining()) + " bytes left in the file");
            a.items.reserve(count);
            for (uint64_t i = 0; i < count; ++i) a.items.push_back(read_value(a.element_type, depth + 1));
            v.data = std::move(a);
            break;
        }
    }
    return v;
}

File Parser::parse() {
    File f;
    f.source_ = src_;
    if (size_ < 4) fail(0, "file is " + std::to_string(size_) + " bytes, too short to be GGUF");
    if (std::memcmp(data_, "GGUF", 4) != 0) {
        char magic[5] = {};
        std::memcpy(magic, data_, 4);
        for (char& c : magic)
            if (c && (c < 0x20 || c > 0x7e)) c = '?';
        fail(0, std::string("not a GGUF file (magic '") + magic + "', expected 'GGUF')");
    }
    pos_ = 4;
    const uint64_t version_at = pos_;
    f.version_ = read<uint32_t>("the version");
    if (f.version_ == 1)
        throw Unsupported("[gguf] " + src_->name() + ": GGUF version 1 is not supported (re-convert the model; v2 and v3 are)");
    if (f.version_ >= 0x01000000u)
        throw Unsupported("[gguf] " + src_->name() + ": big-endian GGUF files are not supported");
    if (f.version_ != 2 && f.version_ != 3)
        fail(version_at, "unknown GGUF version " + std::to_string(f.version_) + " (cq reads versions 2 and 3)");

    const uint64_t counts_at = pos_;
    const auto n_tensors = read<uint64_t>("the tensor count");
    const auto n_kv = read<uint64_t>("the metadata count");
    if (n_tensors > limits_.max_tensors || n_tensors > remaining() / 24)
        fail(counts_at, "tensor count " + std::to_string(n_tensors) + " is impossible for a file of " +
                            std::to_string(size_) + " bytes");
    if (n_kv > limits_.max_kv || n_kv > remaining() / 13)
        fail(counts_at + 8, "metadata count " + std::to_string(n_kv) + " is impossible for a file of " +
                                std::to_string(size_) + " bytes");

    f.kv_.reserve(n_kv);
    for (uint64_t i = 0; i < n_kv; ++i) {
        KeyValue kv;
        kv.file_offset = pos_;
        kv.key = read_name(f.kv_index_, i, Record::metadata);
        const ValueType type = read_type("a metadata value type");
        kv.value = read_value(type, 0);
        f.kv_index_.emplace(kv.key, f.kv_.size());
        f.kv_.push_back(std::move(kv));
    }

    if (const Value* align = f.find("general.alignment")) {
        const uint64_t at = f.kv_[f.kv_index_.at("general.alignment")].file_offset;
        if (align->type != ValueType::U32)
            fail(at, "general.alignment has type " + std::string(value_type_name(align->type)) + ", expected u32");
        const uint64_t a = std::get<uint64_t>(align->data);
        if (a == 0 || (a & (a - 1)) != 0)
            fail(at, "general.alignment " + std::to_string(a) + " is not a power of two");
        f.alignment_ = a;
    }

    f.tensors_.reserve(n_tensors);
    for (uint64_t i = 0; i < n_tensors; ++i) {
        TensorInfo t;
        t.info_offset = pos_;
        t.name = read_name(f.tensor_index_, i, Record::tensor);
        const uint64_t dims_at = pos_;
        const auto n_dims = read<uint32_t>("a tensor's dimension count");
        if (n_dims > 4)
            fail(dims_at, "tensor '" + t.name + "' has " + std::to_string(n_dims) + " dimensions (GGUF allows at most 4)");
        std::vector<int64_t> ne(n_dims);
        for (uint32_t d = 0; d < n_dims; ++d) {
            const uint64_t at = pos_;
            const auto v = read<uint64_t>("a tensor dimension");
            if (v > static_cast<uint64_t>(INT64_MAX))
                fail(at, "tensor '" + t.name + "' dimension " + std::to_string(d) + " is " + std::to_string(v));
            ne[d] = static_cast<int64_t>(v);
        }
        t.shape.assign(ne.rbegin(), ne.rend());
        const auto numel = checked_numel(t.shape);
        if (!numel) fail(dims_at, "tensor '" + t.name + "' has too many elements (the dimensions overflow)");
        t.numel = *numel;
        const uint64_t type_at = pos_;
        const auto type_id = read<uint32_t>("a tensor type");
        const auto dtype = dtype_from_ggml_id(type_id);
        if (!dtype)
            fail(type_at, "tensor '" + t.name + "' has unknown ggml type id " + std::to_string(type_id) +
                              removed_type_hint(type_id));
        t.dtype = *dtype;
        const auto& traits = dtype_traits(t.dtype);
        const int64_t row = ne.empty() ? 1 : ne[0];
        if (row % traits.block_size != 0)
            fail(type_at, "tensor '" + t.name + "' has rows of " + std::to_string(row) + " elements, not a multiple of " +
                              std::string(traits.name) + "'s block size " + std::to_string(traits.block_size));
        const auto bytes = dtype_bytes(t.dtype, static_cast<uint64_t>(t.numel));
        if (!bytes) fail(type_at, "tensor '" + t.name + "' is too large");
        t.nbytes = *bytes;
        const uint64_t offset_at = pos_;
        t.data_offset = read<uint64_t>("a tensor offset");
        if (t.data_offset % f.alignment_ != 0)
            fail(offset_at, "tensor '" + t.name + "' offset " + std::to_string(t.data_offset) +
                                " is not a multiple of the alignment " + std::to_string(f.alignment_));
        f.tensor_index_.emplace(t.name, f.tensors_.size());
        f.tensors_.push_back(std::move(t));
    }

    // The data section starts at the next multiple of the alignment.
    const uint64_t pad = (f.alignment_ - pos_ % f.alignment_) % f.alignment_;
    f.data_offset_ = pos_ + pad;
    if (!f.tensors_.empty() && f.data_offset_ > size_)
        fail(pos_, "the tensor data section would start at byte " + std::to_string(f.data_offset_) + ", past the end of the " +
                       std::to_string(size_) + "-byte file");
    uint64_t expected = 0;  // running, padded end of the previous tensor (relative)
    const uint64_t data_bytes = size_ >= f.data_offset_ ? size_ - f.data_offset_ : 0;
    for (auto& t : f.tensors_) {
        const uint64_t offset_at = t.info_offset + 8 + t.name.size() + 4 + 8 * t.shape.size() + 4;
        if (t.data_offset != expected)
            fail(offset_at, "tensor '" + t.name + "' has data offset " + std::to_string(t.data_offset) + ", expected " +
                                std::to_string(expected) +
                                " (tensors must follow each other in order, each padded to the alignment)");
        if (t.nbytes > data_bytes || t.data_offset > data_bytes - t.nbytes)
            fail(offset_at, "tensor '" + t.name + "' (" + std::to_string(t.nbytes) + " bytes at data offset " +
                                std::to_string(t.data_offset) + ") extends past the end of the file (" +
                                std::to_string(size_) + " bytes, data section at " + std::to_string(f.data_offset_) + ")");
        t.file_offset = f.data_offset_ + t.data_offset;
        const uint64_t padded = (t.nbytes + f.alignment_ - 1) / f.alignment_ * f.alignment_;
        expected = t.data_offset + padded;
    }
    return f;
}

File File::open(const std::string& path, const Limits& limits) { return parse(map_file(path), limits); }

File File::parse(std::shared_ptr<const ByteSource> source, const Limits& limits) {
    return Parser(std::move(source), limits).parse();
}

const Value* File::find(std::string_view key) const {
    const auto it = kv_index_.find(std::string(key));
    return it == kv_index_.end() ? nullptr : &kv_[it->second].value;
}

std::optional<std::string> File::get_string(std::string_view key) const {
    const Value* v = find(key);
    if (!v || !v->as_string()) return std::nullopt;
    return *v->as_string();
}

std::optional<int64_t> File::get_int(std::string_view key) const {
    const Value* v = find(key);
    return v ? v->as_int() : std::nullopt;
}

std::optional<double> File::get_double(std::string_view key) const {
    const Value* v = find(key);
    return v ? v->as_double() : std::nullopt;
}

std::string File::architecture() const { return get_string("general.architecture").value_or(""); }

const TensorInfo* File::find_tensor(std::string_view name) const { return io::find_by_name(tensor_index_, tensors_, name); }

Tensor File::tensor(const TensorInfo& info) const {
    return Tensor::borrowed(info.shape, info.dtype, source_->data() + info.file_offset, source_);
}

Tensor File::tensor(std::string_view name) const { return io::tensor_named(*this, name, "gguf"); }

}  // namespace cq::gguf
