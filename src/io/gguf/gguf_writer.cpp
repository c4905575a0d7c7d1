// GGUF v3 serialisation (little-endian, as every supported host is).
#include "cq/io/gguf_writer.h"

#include <cstring>

#include "cq/error.h"

namespace cq::gguf {

namespace {

class ByteBuffer {
public:
    template <typename T>
    void put(T v) {
        const auto* p = reinterpret_cast<const uint8_t*>(&v);
        bytes.insert(bytes.end(), p, p + sizeof(T));
    }
    void put_string(const std::string& s) {
        put<uint64_t>(s.size());
        bytes.insert(bytes.end(), s.begin(), s.end());
    }
    void put_value(const Value& v) {
        switch (v.type) {
            case ValueType::U8: put<uint8_t>(static_cast<uint8_t>(std::get<uint64_t>(v.data))); break;
            case ValueType::I8: put<int8_t>(static_cast<int8_t>(std::get<int64_t>(v.data))); break;
            case ValueType::U16: put<uint16_t>(static_cast<uint16_t>(std::get<uint64_t>(v.data))); break;
            case ValueType::I16: put<int16_t>(static_cast<int16_t>(std::get<int64_t>(v.data))); break;
            case ValueType::U32: put<uint32_t>(static_cast<uint32_t>(std::get<uint64_t>(v.data))); break;
            case ValueType::I32: put<int32_t>(static_cast<int32_t>(std::get<int64_t>(v.data))); break;
            case ValueType::U64: put<uint64_t>(std::get<uint64_t>(v.data)); break;
            case ValueType::I64: put<int64_t>(std::get<int64_t>(v.data)); break;
            case ValueType::F32: put<float>(static_cast<float>(std::get<double>(v.data))); break;
            case ValueType::F64: put<double>(std::get<double>(v.data)); break;
            case ValueType::BOOL: put<uint8_t>(std::get<bool>(v.data) ? 1 : 0); break;
            case ValueType::STRING: put_string(std::get<std::string>(v.data)); break;
            case ValueType::ARRAY: {
                const Array& a = std::get<Array>(v.data);
                put<uint32_t>(static_cast<uint32_t>(a.element_type));
                put<uint64_t>(a.items.size());
                for (const Value& item : a.items) put_value(item);
                break;
            }
        }
    }
    std::vector<uint8_t> bytes;
};

uint64_t pad_to(uint64_t n, uint64_t a) { return (n + a - 1) / a * a; }

}  // namespace

Writer::Writer(uint64_t alignment) : alignment_(alignment) {
    if (alignment == 0 || (alignment & (alignment - 1)) != 0)
        throw InvalidArgument("[gguf] alignment " + std::to_string(alignment) + " is not a power of two");
    if (alignment != 32) set_u32("general.alignment", static_cast<uint32_t>(alignment));
}

bool Writer::has(const std::string& key) const {
    for (const auto& kv : kv_)
        if (kv.key == key) return true;
    return false;
}

void Writer::set(const std::string& key, Value value) {
    for (auto& kv : kv_)
        if (kv.key == key) {
            kv.value = std::move(value);
            return;
        }
    kv_.push_back({key, std::move(value), 0});
}

void Writer::set_string_array(const std::string& key, const std::vector<std::string>& items) {
    Array a;
    a.element_type = ValueType::STRING;
    for (const auto& s : items) a.items.push_back(Value{ValueType::STRING, s});
    set(key, Value{ValueType::ARRAY, std::move(a)});
}

void Writer::copy_metadata(const File& file) {
    for (const auto& kv : file.metadata())
        if (kv.key != "general.alignment") set(kv.key, kv.value);
}

void Writer::add_tensor(const std::string& name, const std::vector<int64_t>& shape, DType dtype) {
    for (const auto& t : tensors_)
        if (t.name == name) throw InvalidArgument("[gguf] duplicate tensor '" + name + "'");
    if (shape.empty() || shape.size() > 4) throw InvalidArgument("[gguf] tensor '" + name + "' must have 1 to 4 dimensions");
    const auto numel = checked_numel(shape);
    const auto& traits = dtype_traits(dtype);
    if (traits.ggml_id < 0) throw InvalidArgument("[gguf] tensor '" + name + "': type " + std::string(traits.name) + " has no GGUF id");
    if (!numel || shape.back() % traits.block_size != 0)
        throw InvalidArgument("[gguf] tensor '" + name + "' rows of " + std::to_string(shape.back()) + " are not a whole number of " +
                              std::string(traits.name) + " blocks");
    tensors_.push_back({name, shape, dtype, *dtype_bytes(dtype, static_cast<uint64_t>(*numel))});
}

std::vector<uint8_t> Writer::header() const {
    ByteBuffer h;
    h.bytes.reserve(1 << 16);  // also keeps GCC 12 from a false -Wstringop-overflow on the first insert
    h.put<uint32_t>(0x46554747u);  // "GGUF" in little-endian byte order
    h.put<uint32_t>(3);
    h.put<uint64_t>(tensors_.size());
    h.put<uint64_t>(kv_.size());
    for (const auto& kv : kv_) {
        h.put_string(kv.key);
        h.put<uint32_t>(static_cast<uint32_t>(kv.value.type));
        h.put_value(kv.value);
    }
    uint64_t offset = 0;
    for (const auto& t : tensors_) {
        h.put_string(t.name);
        h.put<uint32_t>(static_cast<uint32_t>(t.shape.size()));
        for (auto it = t.shape.rbegin(); it != t.shape.rend(); ++it) h.put<uint64_t>(static_cast<uint64_t>(*it));  // ne[0] innermost
        h.put<uint32_t>(static_cast<uint32_t>(dtype_traits(t.dtype).ggml_id));
        h.put<uint64_t>(offset);
        offset += pad_to(t.nbytes, alignment_);
    }
    h.bytes.resize(pad_to(h.bytes.size(), alignment_), 0);
    return std::move(h.bytes);
}

uint64_t Writer::file_size() const {
    uint64_t size = header().size();
    for (const auto& t : tensors_) size += pad_to(t.nbytes, alignment_);
    return size;
}

void Writer::write(AtomicFile& out, const std::function<void(size_t, std::vector<uint8_t>&)>& produce) const {
    const std::vector<uint8_t> h = header();
    out.write(h.data(), h.size());
    std::vector<uint8_t> buffer;
    static const std::vector<uint8_t> zeros(4096, 0);
    for (size_t i = 0; i < tensors_.size(); ++i) {
        buffer.clear();
        produce(i, buffer);
        if (buffer.size() != tensors_[i].nbytes)
            throw Error("[gguf] tensor '" + tensors_[i].name + "' produced " + std::to_string(buffer.size()) + " bytes, expected " +
                        std::to_string(tensors_[i].nbytes));
        out.write(buffer.data(), buffer.size());
        uint64_t pad = pad_to(buffer.size(), alignment_) - buffer.size();
        while (pad > 0) {
            const uint64_t n = std::min<uint64_t>(pad, zeros.size());
            out.write(zeros.data(), n);
            pad -= n;
        }
    }
}

}  // namespace cq::gguf
