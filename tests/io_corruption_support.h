// Shared by the test_io_corruption_*.cpp files: hostile input for the model readers (GGUF, safetensors,
// sharded index, HF directory). The contract they check: a bad file gives a cq::FormatError naming the
// file and the byte offset ("<file>: at byte N: ..."), never a crash, an over-read (the suite runs under
// ASan+UBSan), or an exception that is not a cq::Error. Here: byte helpers, outcome checks, and the small
// GGUF / safetensors writers each hostile case starts from.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <typeinfo>
#include <vector>

#include <stdlib.h>  // mkdtemp

#include <nlohmann/json.hpp>

#include "cq/dtype.h"
#include "cq/error.h"
#include "cq/inspect.h"
#include "cq/io/gguf.h"
#include "io/hf/hf_model.h"
#include "cq/io/safetensors.h"
#include "cq/mapped_file.h"
#include "cq/tensor.h"
#include "test_support.h"

namespace cq::test::hostile {


using Bytes = std::vector<uint8_t>;
using nlohmann::json;
namespace fs = std::filesystem;
namespace gguf = cq::gguf;
namespace st = cq::safetensors;

inline constexpr uint64_t kU64Max = ~uint64_t{0};

// ---------------------------------------------------------------------------------------------
// Little-endian byte helpers.

inline void put_u8(Bytes& b, uint8_t v) { b.push_back(v); }
inline void put_u32(Bytes& b, uint32_t v) {
    for (int i = 0; i < 4; ++i) b.push_back(static_cast<uint8_t>(v >> (8 * i)));
}
inline void put_u64(Bytes& b, uint64_t v) {
    for (int i = 0; i < 8; ++i) b.push_back(static_cast<uint8_t>(v >> (8 * i)));
}
inline void put_str(Bytes& b, const std::string& s) {
    put_u64(b, s.size());
    b.insert(b.end(), s.begin(), s.end());
}
inline void set_u32(Bytes& b, uint64_t at, uint32_t v) {
    for (int i = 0; i < 4; ++i) b.at(at + i) = static_cast<uint8_t>(v >> (8 * i));
}
inline void set_u64(Bytes& b, uint64_t at, uint64_t v) {
    for (int i = 0; i < 8; ++i) b.at(at + i) = static_cast<uint8_t>(v >> (8 * i));
}
inline uint32_t get_u32(const Bytes& b, uint64_t at) {
    uint32_t v = 0;
    for (int i = 0; i < 4; ++i) v |= uint32_t{b.at(at + i)} << (8 * i);
    return v;
}
inline uint64_t get_u64(const Bytes& b, uint64_t at) {
    uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v |= uint64_t{b.at(at + i)} << (8 * i);
    return v;
}
inline Bytes prefix(const Bytes& b, size_t n) { return Bytes(b.begin(), b.begin() + static_cast<std::ptrdiff_t>(n)); }

// A non-owning source over caller-owned bytes: lets the flip tests mutate a file in place instead of
// copying a 29 MB buffer per iteration. The buffer still ends exactly at the file's end, so ASan sees
// any read past it.
class ViewSource final : public cq::ByteSource {
public:
    ViewSource(const uint8_t* data, uint64_t size, std::string name) {
        data_ = data;
        size_ = size;
        name_ = std::move(name);
    }
};
inline std::shared_ptr<const cq::ByteSource> view_of(const Bytes& b, const std::string& name) {
    return std::make_shared<ViewSource>(b.data(), b.size(), name);
}

// ---------------------------------------------------------------------------------------------
// What a call did: returned, or threw which kind of error.

struct Outcome {
    enum Kind { Ok, Format, Unsupported, Io, InvalidArgument, OtherCq, Foreign } kind = Ok;
    std::string what;
    std::string file;
    uint64_t offset = 0;
};

inline const char* kind_name(Outcome::Kind k) {
    switch (k) {
        case Outcome::Ok: return "success";
        case Outcome::Format: return "cq::FormatError";
        case Outcome::Unsupported: return "cq::Unsupported";
        case Outcome::Io: return "cq::IoError";
        case Outcome::InvalidArgument: return "cq::InvalidArgument";
        case Outcome::OtherCq: return "cq::Error";
        case Outcome::Foreign: return "a non-cq exception";
    }
    return "?";
}

inline Outcome run(const std::function<void()>& f) {
    Outcome o;
    try {
        f();
    } catch (const cq::FormatError& e) {
        o = {Outcome::Format, e.what(), e.file(), e.offset()};
    } catch (const cq::Unsupported& e) {
        o = {Outcome::Unsupported, e.what(), {}, 0};
    } catch (const cq::IoError& e) {
        o = {Outcome::Io, e.what(), {}, 0};
    } catch (const cq::InvalidArgument& e) {
        o = {Outcome::InvalidArgument, e.what(), {}, 0};
    } catch (const cq::Error& e) {
        o = {Outcome::OtherCq, e.what(), {}, 0};
    } catch (const std::exception& e) {
        o = {Outcome::Foreign, std::string(typeid(e).name()) + ": " + e.what(), {}, 0};
    } catch (...) {
        o = {Outcome::Foreign, "an exception not derived from std::exception", {}, 0};
    }
    return o;
}

inline std::string describe(const Outcome& o) {
    return std::string(kind_name(o.kind)) + (o.what.empty() ? "" : " \"" + o.what + "\"");
}

// The message contract every FormatError must keep: it names the file and "at byte <offset>".
inline testing::AssertionResult format_error_contract(const Outcome& o) {
    if (o.kind != Outcome::Format) return testing::AssertionSuccess();
    if (o.what.find(o.file) == std::string::npos)
        return testing::AssertionFailure() << "FormatError message does not name its file '" << o.file << "': " << o.what;
    if (o.what.find("at byte " + std::to_string(o.offset)) == std::string::npos)
        return testing::AssertionFailure() << "FormatError message lacks \"at byte " << o.offset << "\": " << o.what;
    return testing::AssertionSuccess();
}

// A FormatError about `file` whose message mentions `needle`, at a byte offset <= `max_offset`.
inline testing::AssertionResult IsFormatError(const Outcome& o, const std::string& file, const std::string& needle,
                                       std::optional<uint64_t> max_offset = std::nullopt) {
    if (o.kind != Outcome::Format)
        return testing::AssertionFailure() << "expected cq::FormatError mentioning \"" << needle << "\", got " << describe(o);
    if (o.file != file) return testing::AssertionFailure() << "FormatError names file '" << o.file << "', expected '" << file << "'";
    if (auto c = format_error_contract(o); !c) return c;
    if (o.what.find(needle) == std::string::npos)
        return testing::AssertionFailure() << "FormatError message does not mention \"" << needle << "\": " << o.what;
    if (max_offset && o.offset > *max_offset)
        return testing::AssertionFailure() << "FormatError offset " << o.offset << " is past " << *max_offset << ": " << o.what;
    return testing::AssertionSuccess();
}

inline testing::AssertionResult IsKind(const Outcome& o, Outcome::Kind kind, const std::string& needle = "") {
    if (o.kind != kind) return testing::AssertionFailure() << "expected " << kind_name(kind) << ", got " << describe(o);
    if (!needle.empty() && o.what.find(needle) == std::string::npos)
        return testing::AssertionFailure() << kind_name(kind) << " message does not mention \"" << needle << "\": " << o.what;
    return testing::AssertionSuccess();
}

// Anything but a crash or a foreign exception is fine (fuzz-style checks).
inline testing::AssertionResult IsOkOrCqError(const Outcome& o) {
    if (o.kind == Outcome::Foreign) return testing::AssertionFailure() << "threw " << o.what;
    return format_error_contract(o);
}

// Reads every byte a parsed model claims: first and last byte of each tensor, every metadata value.
// Under ASan this turns a missed bounds check into a report.
inline volatile uint8_t g_sink = 0;

inline void touch_value(const gguf::Value& v) {
    g_sink = g_sink + static_cast<uint8_t>(v.to_display_string(4).size());
    (void)v.as_int();
    (void)v.as_double();
    if (const auto* s = v.as_string(); s && !s->empty()) g_sink = g_sink + static_cast<uint8_t>(s->front() ^ s->back());
    if (const auto* a = v.as_array())
        for (const auto& item : a->items) touch_value(item);
}

inline testing::AssertionResult touch(const gguf::File& f) {
    for (const auto& kv : f.metadata()) touch_value(kv.value);
    for (const auto& t : f.tensors()) {
        if (t.file_offset > f.file_size() || t.nbytes > f.file_size() - t.file_offset)
            return testing::AssertionFailure() << "tensor '" << t.name << "' (" << t.nbytes << " bytes at " << t.file_offset
                                               << ") lies outside the " << f.file_size() << "-byte file";
        const cq::Tensor x = f.tensor(t);
        if (x.nbytes() != t.nbytes) return testing::AssertionFailure() << "tensor '" << t.name << "' nbytes mismatch";
        if (x.nbytes()) {
            const auto* p = static_cast<const uint8_t*>(x.data());
            g_sink = g_sink + p[0] + p[x.nbytes() - 1];
        }
    }
    return testing::AssertionSuccess();
}

inline testing::AssertionResult touch(const st::File& f) {
    for (const auto& [k, v] : f.metadata()) g_sink = g_sink + static_cast<uint8_t>(k.size() + v.size());
    for (const auto& t : f.tensors()) {
        if (t.file_offset > f.file_size() || t.nbytes > f.file_size() - t.file_offset)
            return testing::AssertionFailure() << "tensor '" << t.name << "' (" << t.nbytes << " bytes at " << t.file_offset
                                               << ") lies outside the " << f.file_size() << "-byte file";
        const cq::Tensor x = f.tensor(t);
        if (x.nbytes()) {
            const auto* p = static_cast<const uint8_t*>(x.data());
            g_sink = g_sink + p[0] + p[x.nbytes() - 1];
        }
    }
    return testing::AssertionSuccess();
}

// Parses and touches; a touch failure is reported as a foreign outcome so it fails any check.
inline Outcome parse_gguf(std::shared_ptr<const cq::ByteSource> src, const gguf::Limits& limits = {}) {
    std::string touch_problem;
    Outcome o = run([&] {
        const auto f = gguf::File::parse(std::move(src), limits);
        if (auto r = touch(f); !r) touch_problem = r.message();
    });
    if (!touch_problem.empty()) o = {Outcome::Foreign, "parsed, but " + touch_problem, {}, 0};
    return o;
}
inline Outcome parse_gguf(const Bytes& b, const std::string& name) { return parse_gguf(cq::memory_source(b, name)); }

inline Outcome parse_st(std::shared_ptr<const cq::ByteSource> src, const st::Limits& limits = {}) {
    std::string touch_problem;
    Outcome o = run([&] {
        const auto f = st::File::parse(std::move(src), limits);
        if (auto r = touch(f); !r) touch_problem = r.message();
    });
    if (!touch_problem.empty()) o = {Outcome::Foreign, "parsed, but " + touch_problem, {}, 0};
    return o;
}
inline Outcome parse_st(const Bytes& b, const std::string& name) { return parse_st(cq::memory_source(b, name)); }

// ---------------------------------------------------------------------------------------------
// A tiny GGUF writer: each hostile case is a valid file plus one wrong field.

enum : uint32_t {
    T_U8 = 0, T_I8 = 1, T_U16 = 2, T_I16 = 3, T_U32 = 4, T_I32 = 5, T_F32 = 6, T_BOOL = 7,
    T_STRING = 8, T_ARRAY = 9, T_U64 = 10, T_I64 = 11, T_F64 = 12,
};
enum : uint32_t { G_F32 = 0, G_F16 = 1, G_Q4_0 = 2, G_Q8_0 = 8, G_Q4_K = 12 };

inline Bytes v_u32(uint32_t x) { Bytes b; put_u32(b, x); return b; }
inline Bytes v_u64(uint64_t x) { Bytes b; put_u64(b, x); return b; }
inline Bytes v_u8(uint8_t x) { return Bytes{x}; }
inline Bytes v_str(const std::string& s) { Bytes b; put_str(b, s); return b; }
// An array value: element type, count (as written, may lie), then the encoded items.
inline Bytes v_array(uint32_t element_type, uint64_t count, const Bytes& items = {}) {
    Bytes b;
    put_u32(b, element_type);
    put_u64(b, count);
    b.insert(b.end(), items.begin(), items.end());
    return b;
}
inline Bytes concat(std::initializer_list<Bytes> parts) {
    Bytes b;
    for (const auto& p : parts) b.insert(b.end(), p.begin(), p.end());
    return b;
}
// `levels` arrays nested in each other; the innermost holds one u8.
inline Bytes v_nested(uint32_t levels) {
    Bytes b;
    for (uint32_t i = 1; i < levels; ++i) {
        put_u32(b, T_ARRAY);
        put_u64(b, 1);
    }
    put_u32(b, T_U8);
    put_u64(b, 1);
    put_u8(b, 7);
    return b;
}

struct GgufWriter {
    struct Kv {
        std::string key;
        uint32_t type;
        Bytes value;
    };
    struct Tensor {
        std::string name;
        std::vector<uint64_t> ne;  // ggml order: ne[0] is the row length
        uint32_t type;
        std::optional<uint64_t> offset;  // default: right after the previous tensor, aligned
        std::optional<uint64_t> nbytes;  // default: computed from ne and type
        std::optional<uint32_t> n_dims;  // default: ne.size()
    };
    std::string magic = "GGUF";
    uint32_t version = 3;
    std::optional<uint64_t> n_tensors, n_kv;  // override the counts in the header
    uint64_t alignment = 32;                 // layout only: add a general.alignment KV to change the file's
    std::vector<Kv> kvs;
    std::vector<Tensor> tensors;

    GgufWriter& kv(std::string key, uint32_t type, Bytes value) {
        kvs.push_back({std::move(key), type, std::move(value)});
        return *this;
    }
    GgufWriter& u32(std::string key, uint32_t v) { return kv(std::move(key), T_U32, v_u32(v)); }
    GgufWriter& str(std::string key, const std::string& v) { return kv(std::move(key), T_STRING, v_str(v)); }
    GgufWriter& tensor(std::string name, std::vector<uint64_t> ne, uint32_t type = G_F32) {
        tensors.push_back({std::move(name), std::move(ne), type, {}, {}, {}});
        return *this;
    }
    Tensor& last() { return tensors.back(); }

    static uint64_t bytes_of(const Tensor& t) {
        if (t.nbytes) return *t.nbytes;
        const auto dtype = cq::dtype_from_ggml_id(t.type);
        if (!dtype) return 0;
        unsigned __int128 n = 1;
        for (uint64_t d : t.ne) n *= d;
        if (n > (uint64_t{1} << 40)) return 0;  // absurd shapes: the reader must refuse before data matters
        return cq::dtype_bytes(*dtype, static_cast<uint64_t>(n)).value_or(0);
    }

    // The header alone (up to the end of the tensor infos) and the data offsets used.
    Bytes header(std::vector<uint64_t>* offsets = nullptr, uint64_t* data_end = nullptr) const {
        Bytes b(magic.begin(), magic.end());
        put_u32(b, version);
        put_u64(b, n_tensors.value_or(tensors.size()));
        put_u64(b, n_kv.value_or(kvs.size()));
        for (const auto& kv : kvs) {
            put_str(b, kv.key);
            put_u32(b, kv.type);
            b.insert(b.end(), kv.value.begin(), kv.value.end());
        }
        uint64_t next = 0, end = 0;
        for (const auto& t : tensors) {
            put_str(b, t.name);
            put_u32(b, t.n_dims.value_or(static_cast<uint32_t>(t.ne.size())));
            for (uint64_t d : t.ne) put_u64(b, d);
            put_u32(b, t.type);
            const uint64_t off = t.offset.value_or(next);
            put_u64(b, off);
            if (offsets) offsets->push_back(off);
            const uint64_t n = bytes_of(t);
            end = std::max(end, off + n);
            next = off + (n + alignment - 1) / alignment * alignment;
        }
        if (data_end) *data_end = end;
        return b;
    }

    // The whole file: header, padding to the alignment, then tensor data (a byte pattern) up to the end
    // of the furthest tensor, or exactly `data_bytes` bytes when given.
    Bytes build(std::optional<uint64_t> data_bytes = std::nullopt) const {
        uint64_t end = 0;
        Bytes b = header(nullptr, &end);
        while (b.size() % alignment) b.push_back(0);
        const uint64_t n = data_bytes.value_or(end);
        for (uint64_t i = 0; i < n; ++i) b.push_back(static_cast<uint8_t>(i * 37 + 11));
        return b;
    }
};

// A small valid file the edits start from.
inline GgufWriter base_gguf() {
    GgufWriter w;
    w.str("general.architecture", "llama").u32("llama.block_count", 1).kv("tokenizer.ggml.scores", T_ARRAY,
                                                                          v_array(T_F32, 2, concat({v_u32(0), v_u32(0x3f800000)})));
    w.tensor("tok.weight", {32, 3}).tensor("norm.weight", {5}).tensor("q.weight", {64, 2}, G_Q8_0);
    return w;
}

inline const std::string kG = "hostile.gguf";
inline const std::string kS = "hostile.safetensors";


inline const std::vector<std::string> kGgufFixtures = {
    "models/stories260K-gguf/stories260K.gguf",
    "tokenizers/llamacpp_vocab/ggml-vocab-llama-spm.gguf",
    "tokenizers/llamacpp_vocab/ggml-vocab-gpt-2.gguf",
    "tokenizers/llamacpp_vocab/ggml-vocab-bert-bge.gguf",
};
inline const std::vector<std::string> kSafetensorsFixtures = {
    "models/stories260K-hf/model.safetensors",
    "models/gpt2-tiny-stories/model.safetensors",
    "models/bert-tiny-sst2/model.safetensors",
    "models/vit-tiny-mnist/model.safetensors",
};

inline std::string param_name(const testing::TestParamInfo<std::string>& info) {
    std::string name;
    for (char c : info.param.substr(info.param.find('/') + 1)) name += std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
    return name;
}

// Fixture bytes, read once per file.
inline const Bytes& fixture_bytes(const std::string& rel) {
    static std::map<std::string, Bytes> cache;
    auto it = cache.find(rel);
    if (it == cache.end()) it = cache.emplace(rel, cq::test::read_bytes(cq::test::fixture(rel))).first;
    return it->second;
}

// A temporary directory, removed with everything in it.
class TempDir {
public:
    TempDir() {
        std::string tmpl = (fs::temp_directory_path() / "cq_corruption_XXXXXX").string();
        if (!mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
        path_ = tmpl;
    }
    ~TempDir() {
        std::error_code ec;
        fs::remove_all(path_, ec);
    }
    const fs::path& path() const { return path_; }
    std::string file(const std::string& name) const { return (path_ / name).string(); }
    std::string write(const std::string& name, const Bytes& bytes) const {
        std::ofstream out(path_ / name, std::ios::binary);
        out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
        return file(name);
    }
    std::string write(const std::string& name, const std::string& text) const { return write(name, Bytes(text.begin(), text.end())); }

private:
    fs::path path_;
};

// ---------------------------------------------------------------------------------------------
// safetensors: a writer, then one wrong field at a time.

inline size_t st_elem_size(const std::string& dtype) {
    if (dtype == "F64" || dtype == "I64" || dtype == "U64") return 8;
    if (dtype == "F32" || dtype == "I32" || dtype == "U32") return 4;
    if (dtype == "F16" || dtype == "BF16" || dtype == "I16" || dtype == "U16") return 2;
    return 1;
}

struct StTensor {
    std::string name, dtype;
    std::vector<int64_t> shape;
};

// A header with the tensors laid out one after the other; `data_bytes` gets the data size.
inline json st_header(const std::vector<StTensor>& ts, uint64_t* data_bytes = nullptr) {
    json h = json::object();
    h["__metadata__"] = {{"format", "pt"}};
    uint64_t off = 0;
    for (const auto& t : ts) {
        uint64_t n = st_elem_size(t.dtype);
        for (int64_t d : t.shape) n *= static_cast<uint64_t>(d);
        h[t.name] = {{"dtype", t.dtype}, {"shape", t.shape}, {"data_offsets", {off, off + n}}};
        off += n;
    }
    if (data_bytes) *data_bytes = off;
    return h;
}

// The file: header length (or `declared_len`), header text, then `data_bytes` bytes of data.
inline Bytes st_file(const std::string& header_text, uint64_t data_bytes, std::optional<uint64_t> declared_len = std::nullopt) {
    Bytes b;
    put_u64(b, declared_len.value_or(header_text.size()));
    b.insert(b.end(), header_text.begin(), header_text.end());
    for (uint64_t i = 0; i < data_bytes; ++i) b.push_back(static_cast<uint8_t>(i * 13 + 5));
    return b;
}

inline const std::vector<StTensor> kStBase = {{"a.weight", "F32", {4, 3}}, {"a.bias", "BF16", {3}}, {"b.mask", "BOOL", {5}}};

inline Bytes st_base(uint64_t* data_bytes_out = nullptr) {
    uint64_t n = 0;
    const json h = st_header(kStBase, &n);
    if (data_bytes_out) *data_bytes_out = n;
    return st_file(h.dump(), n);
}

// The base header with one tensor entry edited.
inline Outcome st_with(const std::function<void(json&)>& change, std::optional<uint64_t> data_bytes = std::nullopt) {
    uint64_t n = 0;
    json h = st_header(kStBase, &n);
    change(h);
    return parse_st(st_file(h.dump(), data_bytes.value_or(n)), kS);
}

// ---------------------------------------------------------------------------------------------
// Sharded models: three shards in one directory; index() writes the index naming them.
struct ShardedDir {
    TempDir dir;
    ShardedDir() {
        dir.write("a.safetensors", st_file(st_header({{"x", "F32", {2, 2}}, {"shared", "U8", {3}}}).dump(), 19));
        dir.write("b.safetensors", st_file(st_header({{"y", "F16", {4}}, {"shared", "U8", {3}}}).dump(), 11));
        dir.write("c.safetensors", st_file(st_header({{"z", "I8", {4}}}).dump(), 4));
    }
    std::string index(const json& weight_map) const {
        return dir.write("model.safetensors.index.json", json{{"metadata", {{"total_size", 1}}}, {"weight_map", weight_map}}.dump());
    }
    std::string index_text(const std::string& text) const { return dir.write("model.safetensors.index.json", text); }
};

}  // namespace cq::test::hostile
