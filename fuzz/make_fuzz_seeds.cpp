// Writes seed corpora for the fuzz targets: the fixtures re-encoded small (long metadata arrays cut to
// a few items, every tensor shrunk to one block, so a seed is kilobytes, not megabytes) plus
// handmade edge cases. Usage: make_fuzz_seeds <fixtures dir> <out dir>; writes <out>/gguf,
// <out>/safetensors and <out>/index (inputs for fuzz_safetensors_index, first byte = mode).
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cq/dtype.h"
#include "cq/error.h"
#include "cq/io/gguf.h"
#include "cq/io/safetensors.h"
#include "cq/mapped_file.h"

namespace {

namespace fs = std::filesystem;
namespace gguf = cq::gguf;
using Bytes = std::vector<uint8_t>;
using nlohmann::json;

template <typename T>
void put(Bytes& b, T v) {
    const auto* p = reinterpret_cast<const uint8_t*>(&v);
    b.insert(b.end(), p, p + sizeof(T));
}
void put_str(Bytes& b, const std::string& s) {
    put<uint64_t>(b, s.size());
    b.insert(b.end(), s.begin(), s.end());
}

void put_value(Bytes& b, const gguf::Value& v, size_t max_items) {
    using gguf::ValueType;
    const auto u = [&] { return std::get<uint64_t>(v.data); };
    const auto i = [&] { return std::get<int64_t>(v.data); };
    switch (v.type) {
        case ValueType::U8: put<uint8_t>(b, static_cast<uint8_t>(u())); break;
        case ValueType::I8: put<int8_t>(b, static_cast<int8_t>(i())); break;
        case ValueType::U16: put<uint16_t>(b, static_cast<uint16_t>(u())); break;
        case ValueType::I16: put<int16_t>(b, static_cast<int16_t>(i())); break;
        case ValueType::U32: put<uint32_t>(b, static_cast<uint32_t>(u())); break;
        case ValueType::I32: put<int32_t>(b, static_cast<int32_t>(i())); break;
        case ValueType::U64: put<uint64_t>(b, u()); break;
        case ValueType::I64: put<int64_t>(b, i()); break;
        case ValueType::F32: put<float>(b, static_cast<float>(std::get<double>(v.data))); break;
        case ValueType::F64: put<double>(b, std::get<double>(v.data)); break;
        case ValueType::BOOL: put<uint8_t>(b, std::get<bool>(v.data) ? 1 : 0); break;
        case ValueType::STRING: put_str(b, std::get<std::string>(v.data)); break;
        case ValueType::ARRAY: {
            const auto& a = std::get<gguf::Array>(v.data);
            put<uint32_t>(b, static_cast<uint32_t>(a.element_type));
            const size_t n = std::min(a.items.size(), max_items);
            put<uint64_t>(b, n);
            for (size_t k = 0; k < n; ++k) put_value(b, a.items[k], max_items);
            break;
        }
    }
}

struct SeedTensor {
    std::string name;
    std::vector<uint64_t> ne;  // ggml order
    cq::DType dtype;
};

// A GGUF file from key-values (already encoded: key, type, value) and tensors, laid out as llama.cpp does.
Bytes gguf_file(uint32_t version, const std::vector<std::pair<std::string, Bytes>>& kvs, const std::vector<SeedTensor>& tensors,
                uint64_t alignment) {
    Bytes b{'G', 'G', 'U', 'F'};
    put<uint32_t>(b, version);
    put<uint64_t>(b, tensors.size());
    put<uint64_t>(b, kvs.size());
    for (const auto& [key, typed_value] : kvs) {
        put_str(b, key);
        b.insert(b.end(), typed_value.begin(), typed_value.end());
    }
    uint64_t offset = 0;
    for (const auto& t : tensors) {
        put_str(b, t.name);
        put<uint32_t>(b, static_cast<uint32_t>(t.ne.size()));
        uint64_t n = 1;
        for (uint64_t d : t.ne) {
            put<uint64_t>(b, d);
            n *= d;
        }
        put<uint32_t>(b, static_cast<uint32_t>(cq::dtype_traits(t.dtype).ggml_id));
        put<uint64_t>(b, offset);
        const uint64_t bytes = cq::dtype_bytes(t.dtype, n).value();
        offset += (bytes + alignment - 1) / alignment * alignment;
    }
    while (b.size() % alignment) b.push_back(0);
    for (uint64_t k = 0; k < offset; ++k) b.push_back(static_cast<uint8_t>(k * 29 + 3));
    return b;
}

Bytes typed(gguf::ValueType type, const Bytes& value) {
    Bytes b;
    put<uint32_t>(b, static_cast<uint32_t>(type));
    b.insert(b.end(), value.begin(), value.end());
    return b;
}

// The fixture with arrays cut to `max_items` and each tensor shrunk to one block per row, one row.
Bytes shrink_gguf(const gguf::File& f, size_t max_items) {
    std::vector<std::pair<std::string, Bytes>> kvs;
    for (const auto& kv : f.metadata()) {
        Bytes v;
        put_value(v, kv.value, max_items);
        kvs.emplace_back(kv.key, typed(kv.value.type, v));
    }
    std::vector<SeedTensor> tensors;
    for (const auto& t : f.tensors()) {
        std::vector<uint64_t> ne(t.shape.size(), 1);
        if (!ne.empty()) ne[0] = cq::dtype_traits(t.dtype).block_size;
        tensors.push_back({t.name, ne, t.dtype});
    }
    return gguf_file(f.version(), kvs, tensors, f.alignment());
}

size_t st_size(const std::string& dtype) {
    if (dtype == "F64" || dtype == "I64" || dtype == "U64") return 8;
    if (dtype == "F32" || dtype == "I32" || dtype == "U32") return 4;
    if (dtype == "F16" || dtype == "BF16" || dtype == "I16" || dtype == "U16") return 2;
    return 1;
}

struct StSeedTensor {
    std::string name, dtype;
    std::vector<int64_t> shape;
};

Bytes st_file(const std::vector<StSeedTensor>& tensors, const std::map<std::string, std::string>& metadata, size_t pad_to = 8) {
    json h = json::object();
    if (!metadata.empty()) h["__metadata__"] = metadata;
    uint64_t off = 0;
    for (const auto& t : tensors) {
        uint64_t n = st_size(t.dtype);
        for (int64_t d : t.shape) n *= static_cast<uint64_t>(d);
        h[t.name] = {{"dtype", t.dtype}, {"shape", t.shape}, {"data_offsets", {off, off + n}}};
        off += n;
    }
    std::string text = h.dump();
    while (text.size() % pad_to) text += ' ';  // the reference writer pads with spaces
    Bytes b;
    put<uint64_t>(b, text.size());
    b.insert(b.end(), text.begin(), text.end());
    for (uint64_t k = 0; k < off; ++k) b.push_back(static_cast<uint8_t>(k * 17 + 1));
    return b;
}

Bytes shrink_safetensors(const cq::safetensors::File& f) {
    std::vector<StSeedTensor> tensors;
    for (const auto& t : f.tensors()) {
        std::vector<int64_t> shape(t.shape.size(), 1);
        tensors.push_back({t.name, t.dtype_name, shape});
    }
    return st_file(tensors, f.metadata());
}

void write(const fs::path& path, const Bytes& b) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
    if (!out) throw cq::IoError("cannot write " + path.string());
    std::printf("  %-60s %8zu bytes\n", path.string().c_str(), b.size());
}
Bytes text(const std::string& s) { return Bytes(s.begin(), s.end()); }
Bytes with_mode(uint8_t mode, const Bytes& b) {
    Bytes out(b.size() + 1);  // sized once: GCC 12's -Warray-bounds misreads insert() after a one-byte start
    out[0] = mode;
    std::copy(b.begin(), b.end(), out.begin() + 1);
    return out;
}
std::string read_text(const fs::path& p) { return cq::read_text_file(p.string(), 1 << 20); }

}  // namespace

int main(int argc, char** argv) {
    if (argc != 3) {
        std::fprintf(stderr, "usage: %s <fixtures dir> <out dir>\n", argv[0]);
        return 2;
    }
    const fs::path fixtures = argv[1], out = argv[2];
    const fs::path g = out / "gguf", s = out / "safetensors", ix = out / "index";
    for (const auto& d : {g, s, ix}) fs::create_directories(d);
    using VT = gguf::ValueType;
    try {
        // GGUF: fixtures, shrunk.
        for (const char* rel : {"models/stories260K-gguf/stories260K.gguf", "tokenizers/llamacpp_vocab/ggml-vocab-llama-spm.gguf",
                                "tokenizers/llamacpp_vocab/ggml-vocab-gpt-2.gguf", "tokenizers/llamacpp_vocab/ggml-vocab-bert-bge.gguf"}) {
            const fs::path p = fixtures / rel;
            if (!fs::exists(p)) continue;
            const auto f = gguf::File::open(p.string());
            write(g / (p.stem().string() + ".gguf"), shrink_gguf(f, 12));
            write(g / (p.stem().string() + "-2.gguf"), shrink_gguf(f, 2));
        }
        // GGUF: handmade.
        write(g / "empty-v3.gguf", gguf_file(3, {}, {}, 32));
        {
            std::vector<std::pair<std::string, Bytes>> kvs;
            auto scalar = [&](const std::string& key, VT t, const Bytes& v) { kvs.emplace_back(key, typed(t, v)); };
            Bytes v;
            scalar("u8", VT::U8, {200});
            scalar("i8", VT::I8, {0x80});
            scalar("u16", VT::U16, {1, 2});
            scalar("i16", VT::I16, {0xff, 0xff});
            scalar("u32", VT::U32, {1, 0, 0, 0});
            scalar("i32", VT::I32, {0xff, 0xff, 0xff, 0x7f});
            scalar("f32", VT::F32, {0, 0, 0x80, 0x3f});
            scalar("bool", VT::BOOL, {1});
            scalar("u64", VT::U64, {1, 2, 3, 4, 5, 6, 7, 8});
            scalar("i64", VT::I64, {0, 0, 0, 0, 0, 0, 0, 0x80});
            scalar("f64", VT::F64, {0, 0, 0, 0, 0, 0, 0xf0, 0x7f});
            Bytes str;
            put_str(str, "hello \xff world");
            scalar("general.name", VT::STRING, str);
            Bytes arr;  // [[1, 2], []] of u16
            put<uint32_t>(arr, static_cast<uint32_t>(VT::ARRAY));
            put<uint64_t>(arr, 2);
            put<uint32_t>(arr, static_cast<uint32_t>(VT::U16));
            put<uint64_t>(arr, 2);
            put<uint16_t>(arr, 1);
            put<uint16_t>(arr, 2);
            put<uint32_t>(arr, static_cast<uint32_t>(VT::U16));
            put<uint64_t>(arr, 0);
            scalar("nested", VT::ARRAY, arr);
            Bytes strs;
            put<uint32_t>(strs, static_cast<uint32_t>(VT::STRING));
            put<uint64_t>(strs, 3);
            put_str(strs, "a");
            put_str(strs, "");
            put_str(strs, "<0x0A>");
            scalar("tokenizer.ggml.tokens", VT::ARRAY, strs);
            Bytes align;
            put<uint32_t>(align, 64);
            scalar("general.alignment", VT::U32, align);
            std::vector<SeedTensor> tensors;
            for (const auto& t : cq::all_dtypes())
                if (t.ggml_id >= 0) tensors.push_back({"t." + std::string(t.name), {t.block_size, 2}, t.dtype});
            tensors.push_back({"scalar", {}, cq::DType::F32});
            tensors.push_back({"empty", {0, 3}, cq::DType::F16});
            write(g / "all-types-v3.gguf", gguf_file(3, kvs, tensors, 64));
            kvs.pop_back();
            write(g / "all-values-v2.gguf", gguf_file(2, kvs, {{"w", {4, 4, 2, 1}, cq::DType::F32}}, 32));
        }

        // safetensors: fixtures, shrunk, and handmade.
        for (const char* dir : {"stories260K-hf", "gpt2-tiny-stories", "bert-tiny-sst2", "vit-tiny-mnist"}) {
            const fs::path p = fixtures / "models" / dir / "model.safetensors";
            if (!fs::exists(p)) continue;
            const auto f = cq::safetensors::File::open(p.string());
            write(s / (std::string(dir) + ".safetensors"), shrink_safetensors(f));
        }
        write(s / "empty.safetensors", st_file({}, {}, 1));
        {
            std::vector<StSeedTensor> all;
            for (const char* dt : {"F64", "F32", "F16", "BF16", "I64", "I32", "I16", "I8", "U64", "U32", "U16", "U8", "BOOL",
                                   "F8_E4M3", "F8_E5M2"})
                all.push_back({std::string("t.") + dt, dt, {2, 1}});
            all.push_back({"zero", "F32", {0, 5}});
            all.push_back({"scalar", "I8", {}});
            write(s / "all-dtypes.safetensors", st_file(all, {{"format", "pt"}, {"note", "\xc3\xa9"}}));
        }

        // fuzz_safetensors_index: mode 0 (index), 1 (config.json), 2 (shard a.safetensors, must hold x).
        write(ix / "index-both.bin", with_mode(0, text(R"({"metadata":{"total_size":8},"weight_map":{"x":"a.safetensors","y":"b.safetensors"}})")));
        write(ix / "index-one.bin", with_mode(0, text(R"({"weight_map":{"x":"a.safetensors"}})")));
        write(ix / "index-empty.bin", with_mode(0, text(R"({"weight_map":{}})")));
        for (const char* dir : {"stories260K-hf", "gpt2-tiny-stories", "bert-tiny-sst2", "vit-tiny-mnist"}) {
            const fs::path p = fixtures / "models" / dir / "config.json";
            if (fs::exists(p)) write(ix / (std::string("config-") + dir + ".bin"), with_mode(1, text(read_text(p))));
        }
        write(ix / "config-min.bin", with_mode(1, text(R"({"model_type":"llama","architectures":["LlamaForCausalLM"]})")));
        write(ix / "shard-x.bin", with_mode(2, st_file({{"x", "U8", {4}}, {"extra", "F16", {2}}}, {{"format", "pt"}})));
        write(ix / "shard-empty.bin", with_mode(2, st_file({}, {})));
    } catch (const cq::Error& e) {
        std::fprintf(stderr, "make_fuzz_seeds: %s\n", e.what());
        return 1;
    }
    return 0;
}
