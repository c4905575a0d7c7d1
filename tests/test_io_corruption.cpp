// Hostile input for the model readers (GGUF, safetensors, sharded index, HF directory): truncation at
// every header boundary, single-field edits (made with the small GGUF/safetensors writers below or
// patched into the real fixtures), seeded random byte flips, and replays of past fuzzer findings
// (tests/fuzz_findings/). The contract: a bad file gives a cq::FormatError naming the file and the
// byte offset ("<file>: at byte N: ..."), never a crash, an over-read (run under ASan+UBSan), or an
// exception that is not a cq::Error.
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
#include "cq/io/hf_model.h"
#include "cq/io/safetensors.h"
#include "cq/mapped_file.h"
#include "cq/tensor.h"
#include "test_support.h"

namespace {

using Bytes = std::vector<uint8_t>;
using nlohmann::json;
namespace fs = std::filesystem;
namespace gguf = cq::gguf;
namespace st = cq::safetensors;

constexpr uint64_t kU64Max = ~uint64_t{0};

// ---------------------------------------------------------------------------------------------
// Little-endian byte helpers.

void put_u8(Bytes& b, uint8_t v) { b.push_back(v); }
void put_u32(Bytes& b, uint32_t v) {
    for (int i = 0; i < 4; ++i) b.push_back(static_cast<uint8_t>(v >> (8 * i)));
}
void put_u64(Bytes& b, uint64_t v) {
    for (int i = 0; i < 8; ++i) b.push_back(static_cast<uint8_t>(v >> (8 * i)));
}
void put_str(Bytes& b, const std::string& s) {
    put_u64(b, s.size());
    b.insert(b.end(), s.begin(), s.end());
}
void set_u32(Bytes& b, uint64_t at, uint32_t v) {
    for (int i = 0; i < 4; ++i) b.at(at + i) = static_cast<uint8_t>(v >> (8 * i));
}
void set_u64(Bytes& b, uint64_t at, uint64_t v) {
    for (int i = 0; i < 8; ++i) b.at(at + i) = static_cast<uint8_t>(v >> (8 * i));
}
uint32_t get_u32(const Bytes& b, uint64_t at) {
    uint32_t v = 0;
    for (int i = 0; i < 4; ++i) v |= uint32_t{b.at(at + i)} << (8 * i);
    return v;
}
uint64_t get_u64(const Bytes& b, uint64_t at) {
    uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v |= uint64_t{b.at(at + i)} << (8 * i);
    return v;
}
Bytes prefix(const Bytes& b, size_t n) { return Bytes(b.begin(), b.begin() + static_cast<std::ptrdiff_t>(n)); }

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
std::shared_ptr<const cq::ByteSource> view_of(const Bytes& b, const std::string& name) {
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

const char* kind_name(Outcome::Kind k) {
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

Outcome run(const std::function<void()>& f) {
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

std::string describe(const Outcome& o) {
    return std::string(kind_name(o.kind)) + (o.what.empty() ? "" : " \"" + o.what + "\"");
}

// The message contract every FormatError must keep: it names the file and "at byte <offset>".
testing::AssertionResult format_error_contract(const Outcome& o) {
    if (o.kind != Outcome::Format) return testing::AssertionSuccess();
    if (o.what.find(o.file) == std::string::npos)
        return testing::AssertionFailure() << "FormatError message does not name its file '" << o.file << "': " << o.what;
    if (o.what.find("at byte " + std::to_string(o.offset)) == std::string::npos)
        return testing::AssertionFailure() << "FormatError message lacks \"at byte " << o.offset << "\": " << o.what;
    return testing::AssertionSuccess();
}

// A FormatError about `file` whose message mentions `needle`, at a byte offset <= `max_offset`.
testing::AssertionResult IsFormatError(const Outcome& o, const std::string& file, const std::string& needle,
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

testing::AssertionResult IsKind(const Outcome& o, Outcome::Kind kind, const std::string& needle = "") {
    if (o.kind != kind) return testing::AssertionFailure() << "expected " << kind_name(kind) << ", got " << describe(o);
    if (!needle.empty() && o.what.find(needle) == std::string::npos)
        return testing::AssertionFailure() << kind_name(kind) << " message does not mention \"" << needle << "\": " << o.what;
    return testing::AssertionSuccess();
}

// Anything but a crash or a foreign exception is fine (fuzz-style checks).
testing::AssertionResult IsOkOrCqError(const Outcome& o) {
    if (o.kind == Outcome::Foreign) return testing::AssertionFailure() << "threw " << o.what;
    return format_error_contract(o);
}

// Reads every byte a parsed model claims: first and last byte of each tensor, every metadata value.
// Under ASan this turns a missed bounds check into a report.
volatile uint8_t g_sink = 0;

void touch_value(const gguf::Value& v) {
    g_sink = g_sink + static_cast<uint8_t>(v.to_display_string(4).size());
    (void)v.as_int();
    (void)v.as_double();
    if (const auto* s = v.as_string(); s && !s->empty()) g_sink = g_sink + static_cast<uint8_t>(s->front() ^ s->back());
    if (const auto* a = v.as_array())
        for (const auto& item : a->items) touch_value(item);
}

testing::AssertionResult touch(const gguf::File& f) {
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

testing::AssertionResult touch(const st::File& f) {
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
Outcome parse_gguf(std::shared_ptr<const cq::ByteSource> src, const gguf::Limits& limits = {}) {
    std::string touch_problem;
    Outcome o = run([&] {
        const auto f = gguf::File::parse(std::move(src), limits);
        if (auto r = touch(f); !r) touch_problem = r.message();
    });
    if (!touch_problem.empty()) o = {Outcome::Foreign, "parsed, but " + touch_problem, {}, 0};
    return o;
}
Outcome parse_gguf(const Bytes& b, const std::string& name) { return parse_gguf(cq::memory_source(b, name)); }

Outcome parse_st(std::shared_ptr<const cq::ByteSource> src, const st::Limits& limits = {}) {
    std::string touch_problem;
    Outcome o = run([&] {
        const auto f = st::File::parse(std::move(src), limits);
        if (auto r = touch(f); !r) touch_problem = r.message();
    });
    if (!touch_problem.empty()) o = {Outcome::Foreign, "parsed, but " + touch_problem, {}, 0};
    return o;
}
Outcome parse_st(const Bytes& b, const std::string& name) { return parse_st(cq::memory_source(b, name)); }

// ---------------------------------------------------------------------------------------------
// A tiny GGUF writer: each hostile case is a valid file plus one wrong field.

enum : uint32_t {
    T_U8 = 0, T_I8 = 1, T_U16 = 2, T_I16 = 3, T_U32 = 4, T_I32 = 5, T_F32 = 6, T_BOOL = 7,
    T_STRING = 8, T_ARRAY = 9, T_U64 = 10, T_I64 = 11, T_F64 = 12,
};
enum : uint32_t { G_F32 = 0, G_F16 = 1, G_Q4_0 = 2, G_Q8_0 = 8, G_Q4_K = 12 };

Bytes v_u32(uint32_t x) { Bytes b; put_u32(b, x); return b; }
Bytes v_u64(uint64_t x) { Bytes b; put_u64(b, x); return b; }
Bytes v_u8(uint8_t x) { return Bytes{x}; }
Bytes v_str(const std::string& s) { Bytes b; put_str(b, s); return b; }
// An array value: element type, count (as written, may lie), then the encoded items.
Bytes v_array(uint32_t element_type, uint64_t count, const Bytes& items = {}) {
    Bytes b;
    put_u32(b, element_type);
    put_u64(b, count);
    b.insert(b.end(), items.begin(), items.end());
    return b;
}
Bytes concat(std::initializer_list<Bytes> parts) {
    Bytes b;
    for (const auto& p : parts) b.insert(b.end(), p.begin(), p.end());
    return b;
}
// `levels` arrays nested in each other; the innermost holds one u8.
Bytes v_nested(uint32_t levels) {
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
GgufWriter base_gguf() {
    GgufWriter w;
    w.str("general.architecture", "llama").u32("llama.block_count", 1).kv("tokenizer.ggml.scores", T_ARRAY,
                                                                          v_array(T_F32, 2, concat({v_u32(0), v_u32(0x3f800000)})));
    w.tensor("tok.weight", {32, 3}).tensor("norm.weight", {5}).tensor("q.weight", {64, 2}, G_Q8_0);
    return w;
}

const std::string kG = "hostile.gguf";
const std::string kS = "hostile.safetensors";

// ---------------------------------------------------------------------------------------------
// GGUF: the writer itself, then one wrong field at a time.

TEST(GgufHostile, WriterMakesValidFiles) {
    const Bytes b = base_gguf().build();
    const auto f = gguf::File::parse(cq::memory_source(b, kG));
    ASSERT_EQ(f.tensors().size(), 3u);
    EXPECT_EQ(f.tensors()[2].dtype, cq::DType::Q8_0);
    EXPECT_EQ(f.tensors()[1].data_offset, 384u);  // 32·3·4 = 384, already aligned
    EXPECT_EQ(f.tensors()[2].data_offset, 416u);  // 5·4 = 20 padded to 32
    EXPECT_EQ(f.architecture(), "llama");
    EXPECT_TRUE(touch(f));
    // Tensor-less and KV-less files are fine too.
    GgufWriter empty;
    EXPECT_TRUE(IsKind(parse_gguf(empty.build(), kG), Outcome::Ok));
    // And so is v2.
    GgufWriter v2 = base_gguf();
    v2.version = 2;
    EXPECT_TRUE(IsKind(parse_gguf(v2.build(), kG), Outcome::Ok));
}

TEST(GgufHostile, BadMagic) {
    GgufWriter w = base_gguf();
    w.magic = "GGML";
    EXPECT_TRUE(IsFormatError(parse_gguf(w.build(), kG), kG, "magic", 0));
    EXPECT_TRUE(IsFormatError(parse_gguf(Bytes{'G', 'G', 'U'}, kG), kG, "too short", 0));
    EXPECT_TRUE(IsFormatError(parse_gguf(Bytes{}, kG), kG, "too short", 0));
    EXPECT_TRUE(IsFormatError(parse_gguf(Bytes{0, 0, 0, 0, 3, 0, 0, 0}, kG), kG, "not a GGUF file", 0));
}

TEST(GgufHostile, Versions) {
    for (uint32_t v : {0u, 4u, 0xffffu}) {
        GgufWriter w = base_gguf();
        w.version = v;
        EXPECT_TRUE(IsFormatError(parse_gguf(w.build(), kG), kG, "version", 4)) << "version " << v;
    }
    GgufWriter v1 = base_gguf();
    v1.version = 1;
    EXPECT_TRUE(IsKind(parse_gguf(v1.build(), kG), Outcome::Unsupported, "version 1"));
    GgufWriter be = base_gguf();
    be.version = 0x03000000;  // 3, written by a big-endian machine
    EXPECT_TRUE(IsKind(parse_gguf(be.build(), kG), Outcome::Unsupported, "big-endian"));
    // Truncated inside the version field.
    EXPECT_TRUE(IsFormatError(parse_gguf(prefix(base_gguf().build(), 6), kG), kG, "version", 6));
}

TEST(GgufHostile, AbsurdCounts) {
    for (uint64_t n : {uint64_t{1} << 63, kU64Max, uint64_t{1} << 21, uint64_t{1000}}) {
        GgufWriter w = base_gguf();
        w.n_tensors = n;
        EXPECT_TRUE(IsFormatError(parse_gguf(w.build(), kG), kG, "tensor count", 8)) << n;
        GgufWriter k = base_gguf();
        k.n_kv = n;
        EXPECT_TRUE(IsFormatError(parse_gguf(k.build(), kG), kG, "metadata count", 16)) << n;
    }
    // One KV more than written: the parser reads a tensor info as a KV and fails cleanly.
    GgufWriter k = base_gguf();
    k.n_kv = 4;
    EXPECT_TRUE(IsKind(parse_gguf(k.build(), kG), Outcome::Format));
}

TEST(GgufHostile, HugeLengths) {
    // Key length 2^64-1 and 2^63.
    for (uint64_t len : {kU64Max, uint64_t{1} << 63, uint64_t{1} << 17}) {
        Bytes b(4);
        std::memcpy(b.data(), "GGUF", 4);
        put_u32(b, 3);
        put_u64(b, 0);
        put_u64(b, 1);
        put_u64(b, len);  // key length
        b.resize(b.size() + 64, 'k');
        EXPECT_TRUE(IsFormatError(parse_gguf(b, kG), kG, "exceeds the limit", 24)) << len;
    }
    // Key length past the end of the file (but under the cap).
    {
        Bytes b = base_gguf().build();
        set_u64(b, 24, 60000);
        EXPECT_TRUE(IsFormatError(parse_gguf(prefix(b, 200), kG), kG, "file ends while reading a metadata key", 200));
    }
    // String value length 2^64-1, and just past the end of the file.
    for (uint64_t len : {kU64Max, uint64_t{1} << 40, uint64_t{4096}}) {
        GgufWriter w = base_gguf();
        Bytes v;
        put_u64(v, len);
        v.insert(v.end(), {'a', 'b', 'c'});
        w.kvs.push_back({"general.name", T_STRING, v});
        w.tensors.clear();
        EXPECT_TRUE(IsKind(parse_gguf(w.build(), kG), Outcome::Format)) << len;
        EXPECT_TRUE(IsFormatError(parse_gguf(w.build(), kG), kG, "string value")) << len;
    }
    // Tensor name length 2^64-1.
    {
        GgufWriter w = base_gguf();
        w.tensors[1].name = "x";
        Bytes b = w.build();
        const Bytes h = w.header();
        // Find the record of "x": its length field precedes it.
        const std::string needle("\x01\0\0\0\0\0\0\0x", 9);
        const auto it = std::search(b.begin(), b.begin() + static_cast<std::ptrdiff_t>(h.size()), needle.begin(), needle.end());
        ASSERT_NE(it, b.begin() + static_cast<std::ptrdiff_t>(h.size()));
        set_u64(b, static_cast<uint64_t>(it - b.begin()), kU64Max);
        EXPECT_TRUE(IsFormatError(parse_gguf(b, kG), kG, "tensor name length"));
    }
}

TEST(GgufHostile, ArrayCounts) {
    for (uint32_t et : {T_U8, T_U32, T_STRING, T_ARRAY, T_BOOL, T_F64}) {
        for (uint64_t count : {uint64_t{1} << 62, kU64Max, uint64_t{1} << 28}) {
            GgufWriter w;
            w.kv("a", T_ARRAY, v_array(et, count, Bytes(64, 0)));
            EXPECT_TRUE(IsFormatError(parse_gguf(w.build(), kG), kG, "exceeds the limit")) << et << " " << count;
        }
        // Under the cap but more items than bytes left.
        GgufWriter w;
        w.kv("a", T_ARRAY, v_array(et, 100000, Bytes(64, 0)));
        EXPECT_TRUE(IsFormatError(parse_gguf(w.build(), kG), kG, "cannot fit")) << et;
    }
    // A tighter caller limit applies.
    gguf::Limits lim;
    lim.max_array_items = 3;
    GgufWriter w;
    w.kv("a", T_ARRAY, v_array(T_U8, 4, Bytes{1, 2, 3, 4}));
    EXPECT_TRUE(IsFormatError(parse_gguf(cq::memory_source(w.build(), kG), lim), kG, "exceeds the limit of 3"));
    lim.max_array_items = 4;
    EXPECT_TRUE(IsKind(parse_gguf(cq::memory_source(w.build(), kG), lim), Outcome::Ok));
    gguf::Limits slim;
    slim.max_string_bytes = 4;
    GgufWriter s;
    s.str("general.name", "hello");
    EXPECT_TRUE(IsFormatError(parse_gguf(cq::memory_source(s.build(), kG), slim), kG, "exceeds the limit of 4"));
}

TEST(GgufHostile, NestedArrays) {
    // The default limit is 4 levels of arrays.
    GgufWriter ok;
    ok.kv("nest", T_ARRAY, v_nested(4));
    EXPECT_TRUE(IsKind(parse_gguf(ok.build(), kG), Outcome::Ok));
    for (uint32_t levels : {5u, 6u, 1000u, 100000u}) {
        GgufWriter w;
        w.kv("nest", T_ARRAY, v_nested(levels));
        EXPECT_TRUE(IsFormatError(parse_gguf(w.build(), kG), kG, "nested deeper")) << levels;
    }
    // An empty array of arrays, and an array whose element type is an array of strings.
    GgufWriter e;
    e.kv("empty", T_ARRAY, v_array(T_ARRAY, 0)).kv("strs", T_ARRAY, v_array(T_ARRAY, 1, v_array(T_STRING, 2, concat({v_str("a"), v_str("")}))));
    EXPECT_TRUE(IsKind(parse_gguf(e.build(), kG), Outcome::Ok));
}

TEST(GgufHostile, UnknownValueTypes) {
    for (uint32_t t : {13u, 14u, 0xffffffffu}) {
        GgufWriter w = base_gguf();
        w.kv("x", t, v_u32(0));
        EXPECT_TRUE(IsFormatError(parse_gguf(w.build(), kG), kG, "unknown metadata value type " + std::to_string(t))) << t;
        GgufWriter a = base_gguf();
        a.kv("x", T_ARRAY, v_array(t, 1, v_u32(0)));
        EXPECT_TRUE(IsFormatError(parse_gguf(a.build(), kG), kG, "unknown metadata value type")) << t;
    }
}

TEST(GgufHostile, BoolValues) {
    for (uint8_t v : {2, 0xff}) {
        GgufWriter w = base_gguf();
        w.kv("flag", T_BOOL, v_u8(v));
        EXPECT_TRUE(IsFormatError(parse_gguf(w.build(), kG), kG, "bool value " + std::to_string(v)));
        GgufWriter a = base_gguf();
        a.kv("flags", T_ARRAY, v_array(T_BOOL, 3, Bytes{0, 1, v}));
        EXPECT_TRUE(IsFormatError(parse_gguf(a.build(), kG), kG, "neither 0 nor 1"));
    }
    GgufWriter ok = base_gguf();
    ok.kv("flag", T_BOOL, v_u8(1)).kv("flags", T_ARRAY, v_array(T_BOOL, 2, Bytes{0, 1}));
    EXPECT_TRUE(IsKind(parse_gguf(ok.build(), kG), Outcome::Ok));
}

TEST(GgufHostile, DuplicateAndEmptyNames) {
    GgufWriter k = base_gguf();
    k.u32("llama.block_count", 2);
    EXPECT_TRUE(IsFormatError(parse_gguf(k.build(), kG), kG, "duplicate metadata key 'llama.block_count'"));
    GgufWriter t = base_gguf();
    t.tensors[2].name = "tok.weight";
    EXPECT_TRUE(IsFormatError(parse_gguf(t.build(), kG), kG, "duplicate tensor name 'tok.weight'"));
    GgufWriter ek = base_gguf();
    ek.u32("", 1);
    EXPECT_TRUE(IsFormatError(parse_gguf(ek.build(), kG), kG, "is empty"));
    GgufWriter et = base_gguf();
    et.tensors[0].name = "";
    EXPECT_TRUE(IsFormatError(parse_gguf(et.build(), kG), kG, "empty name"));
}

TEST(GgufHostile, TensorDims) {
    for (uint32_t n : {5u, 64u, 0xffffffffu}) {
        GgufWriter w = base_gguf();
        w.tensors[1].n_dims = n;
        EXPECT_TRUE(IsFormatError(parse_gguf(w.build(), kG), kG, std::to_string(n) + " dimensions")) << n;
    }
    // Products that overflow, and single dimensions past INT64_MAX.
    for (const auto& ne : std::vector<std::vector<uint64_t>>{{1ull << 32, 1ull << 32},
                                                             {1ull << 62, 2},
                                                             {1ull << 21, 1ull << 21, 1ull << 21},
                                                             {3, 1ull << 61},
                                                             {kU64Max},
                                                             {1ull << 63, 1}}) {
        GgufWriter w = base_gguf();
        w.tensors[1].ne = ne;
        EXPECT_TRUE(IsKind(parse_gguf(w.build(), kG), Outcome::Format)) << ne[0];
        const Outcome o = parse_gguf(w.build(), kG);
        EXPECT_TRUE(o.what.find("overflow") != std::string::npos || o.what.find("dimension") != std::string::npos ||
                    o.what.find("too large") != std::string::npos)
            << o.what;
    }
    // Big but representable: element count fits, bytes do not fit the file.
    GgufWriter big = base_gguf();
    big.tensors[2].ne = {1ull << 30, 1ull << 20};
    EXPECT_TRUE(IsKind(parse_gguf(big.build(uint64_t{4096}), kG), Outcome::Format));
}

TEST(GgufHostile, UnknownGgmlTypes) {
    for (uint32_t id : {4u, 5u, 31u, 32u, 33u, 36u, 40u, 200u, 0xffffffffu}) {
        GgufWriter w = base_gguf();
        w.tensors[0].type = id;
        w.tensors[0].nbytes = 384;
        EXPECT_TRUE(IsFormatError(parse_gguf(w.build(), kG), kG, "unknown ggml type id " + std::to_string(id))) << id;
    }
}

TEST(GgufHostile, RowNotWholeBlocks) {
    GgufWriter w = base_gguf();
    w.tensors[2].ne = {33, 2};  // q8_0 blocks hold 32
    w.tensors[2].nbytes = 68;
    EXPECT_TRUE(IsFormatError(parse_gguf(w.build(), kG), kG, "block size"));
    GgufWriter k = base_gguf();
    k.tensors[2].type = G_Q4_K;  // 64-wide rows, 256-element super-blocks
    k.tensors[2].nbytes = 144;
    EXPECT_TRUE(IsFormatError(parse_gguf(k.build(), kG), kG, "block size"));
    GgufWriter s = base_gguf();
    s.tensors[2].ne = {};  // a scalar q8_0
    s.tensors[2].nbytes = 34;
    EXPECT_TRUE(IsFormatError(parse_gguf(s.build(), kG), kG, "block size"));
}

TEST(GgufHostile, TensorOffsets) {
    // Not a multiple of the alignment.
    GgufWriter u = base_gguf();
    u.tensors[1].offset = 385;
    EXPECT_TRUE(IsFormatError(parse_gguf(u.build(), kG), kG, "not a multiple of the alignment"));
    // Swapped (out of order), overlapping (same offset twice), a gap, a first tensor not at 0.
    std::vector<uint64_t> offs;
    base_gguf().header(&offs);
    ASSERT_EQ(offs.size(), 3u);
    const std::vector<std::vector<uint64_t>> layouts = {
        {offs[1], offs[0], offs[2]}, {offs[0], offs[0], offs[2]}, {offs[0], offs[1], offs[2] + 32},
        {32, offs[1] + 32, offs[2] + 32}, {offs[0], offs[2], offs[1]}, {offs[0], offs[1], offs[1]}};
    for (const auto& layout : layouts) {
        GgufWriter w = base_gguf();
        for (size_t i = 0; i < 3; ++i) w.tensors[i].offset = layout[i];
        EXPECT_TRUE(IsFormatError(parse_gguf(w.build(), kG), kG, "tensors must follow each other"))
            << layout[0] << "," << layout[1] << "," << layout[2];
    }
    // Offsets near 2^64 must not wrap.
    GgufWriter h = base_gguf();
    h.tensors[2].offset = kU64Max - 31;
    EXPECT_TRUE(IsKind(parse_gguf(h.build(uint64_t{1024}), kG), Outcome::Format));
}

TEST(GgufHostile, TensorDataPastEnd) {
    const GgufWriter w = base_gguf();
    const Bytes full = w.build();
    const uint64_t data_at = (w.header().size() + 31) / 32 * 32;
    for (uint64_t cut : {data_at, data_at + 1, data_at + 383, data_at + 400, uint64_t(full.size() - 1)}) {
        EXPECT_TRUE(IsFormatError(parse_gguf(prefix(full, cut), kG), kG, "extends past the end", cut)) << cut;
    }
    // nbytes lying past the end through the dims of the last tensor.
    GgufWriter big = base_gguf();
    big.tensors[2].ne = {64, 1000};
    EXPECT_TRUE(IsFormatError(parse_gguf(big.build(full.size() - data_at), kG), kG, "extends past the end"));
}

TEST(GgufHostile, Alignment) {
    for (uint32_t a : {0u, 3u, 24u, 0x80000001u}) {
        GgufWriter w = base_gguf();
        w.kv("general.alignment", T_U32, v_u32(a));
        EXPECT_TRUE(IsFormatError(parse_gguf(w.build(), kG), kG, "power of two")) << a;
    }
    for (uint32_t t : {T_U64, T_I32, T_STRING}) {
        GgufWriter w = base_gguf();
        w.kv("general.alignment", t, t == T_STRING ? v_str("32") : t == T_U64 ? v_u64(32) : v_u32(32));
        EXPECT_TRUE(IsFormatError(parse_gguf(w.build(), kG), kG, "expected u32")) << t;
    }
    // A valid larger alignment is honoured; offsets that only satisfy 32 are then refused.
    GgufWriter ok = base_gguf();
    ok.alignment = 64;
    ok.kv("general.alignment", T_U32, v_u32(64));
    EXPECT_TRUE(IsKind(parse_gguf(ok.build(), kG), Outcome::Ok));
    GgufWriter bad = base_gguf();
    bad.kv("general.alignment", T_U32, v_u32(64));
    EXPECT_TRUE(IsFormatError(parse_gguf(bad.build(), kG), kG, "alignment"));
    // A huge power of two: the data section starts past the end of the file.
    GgufWriter huge = base_gguf();
    huge.kv("general.alignment", T_U32, v_u32(0x80000000u));
    EXPECT_TRUE(IsKind(parse_gguf(huge.build(), kG), Outcome::Format));
}

// A zero-byte tensor is legal, but its position must still lie inside the file: a header that ends
// before the (aligned) data section start must not yield a tensor offset past the end of the file.
TEST(GgufHostile, EmptyTensorOffsetInsideFile) {
    GgufWriter w;
    w.str("general.architecture", "llama").tensor("empty", {0});
    Bytes b = w.header();
    ASSERT_NE(b.size() % 32, 0u) << "the header should not end on the alignment for this case";
    // No padding, no data: the data section would start past EOF. parse_gguf() fails the outcome if
    // the parsed tensor's offset lies outside the file; refusing the file is fine too.
    const Outcome o = parse_gguf(b, kG);
    EXPECT_TRUE(o.kind == Outcome::Format || o.kind == Outcome::Ok) << describe(o) << " (header of " << b.size() << " bytes)";
    // With the padding present the empty tensor sits exactly at the end of the file: fine.
    while (b.size() % 32) b.push_back(0);
    EXPECT_TRUE(IsKind(parse_gguf(b, kG), Outcome::Ok));
}

// ---------------------------------------------------------------------------------------------
// GGUF fixtures: field boundaries found by walking the header independently of the reader.

struct GgufLayout {
    std::vector<uint64_t> fields;   // start of every header field (and of every array item)
    std::vector<uint64_t> records;  // start of the counts, each KV, each tensor info, and the header end
    std::vector<std::pair<uint64_t, uint64_t>> arrays;  // [begin, end) of each array's items
    uint64_t header_end = 0;
};

GgufLayout walk_gguf(const Bytes& b) {
    GgufLayout L;
    uint64_t pos = 0;
    auto need = [&](uint64_t n) {
        if (n > b.size() || pos > b.size() - n) throw std::runtime_error("walk_gguf: fixture is truncated");
    };
    auto field = [&](uint64_t n) {
        need(n);
        L.fields.push_back(pos);
        pos += n;
    };
    auto str = [&] {
        need(8);
        const uint64_t n = get_u64(b, pos);
        field(8);
        if (n) field(n);
    };
    std::function<void(uint32_t)> value = [&](uint32_t t) {
        switch (t) {
            case T_U8: case T_I8: case T_BOOL: field(1); break;
            case T_U16: case T_I16: field(2); break;
            case T_U32: case T_I32: case T_F32: field(4); break;
            case T_U64: case T_I64: case T_F64: field(8); break;
            case T_STRING: str(); break;
            case T_ARRAY: {
                need(12);
                const uint32_t et = get_u32(b, pos);
                field(4);
                const uint64_t n = get_u64(b, pos);
                field(8);
                const uint64_t begin = pos;
                for (uint64_t i = 0; i < n; ++i) value(et);
                L.arrays.emplace_back(begin, pos);
                break;
            }
            default: throw std::runtime_error("walk_gguf: unknown type");
        }
    };
    field(4);  // magic
    field(4);  // version
    L.records.push_back(pos);
    need(16);
    const uint64_t n_tensors = get_u64(b, pos);
    field(8);
    const uint64_t n_kv = get_u64(b, pos);
    field(8);
    for (uint64_t i = 0; i < n_kv; ++i) {
        L.records.push_back(pos);
        str();
        need(4);
        const uint32_t t = get_u32(b, pos);
        field(4);
        value(t);
    }
    for (uint64_t i = 0; i < n_tensors; ++i) {
        L.records.push_back(pos);
        str();
        need(4);
        const uint32_t nd = get_u32(b, pos);
        field(4);
        for (uint32_t d = 0; d < nd; ++d) field(8);
        field(4);  // type
        field(8);  // offset
    }
    L.header_end = pos;
    L.records.push_back(pos);
    L.fields.push_back(pos);
    return L;
}

const std::vector<std::string> kGgufFixtures = {
    "models/stories260K-gguf/stories260K.gguf",
    "tokenizers/llamacpp_vocab/ggml-vocab-llama-spm.gguf",
    "tokenizers/llamacpp_vocab/ggml-vocab-gpt-2.gguf",
    "tokenizers/llamacpp_vocab/ggml-vocab-bert-bge.gguf",
};
const std::vector<std::string> kSafetensorsFixtures = {
    "models/stories260K-hf/model.safetensors",
    "models/gpt2-tiny-stories/model.safetensors",
    "models/bert-tiny-sst2/model.safetensors",
    "models/vit-tiny-mnist/model.safetensors",
};

std::string param_name(const testing::TestParamInfo<std::string>& info) {
    std::string name;
    for (char c : info.param.substr(info.param.find('/') + 1)) name += std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
    return name;
}

// Fixture bytes, read once per file.
const Bytes& fixture_bytes(const std::string& rel) {
    static std::map<std::string, Bytes> cache;
    auto it = cache.find(rel);
    if (it == cache.end()) it = cache.emplace(rel, cq::test::read_bytes(cq::test::fixture(rel))).first;
    return it->second;
}

class GgufFixtureCorruption : public testing::TestWithParam<std::string> {
protected:
    void SetUp() override {
        if (!fs::exists(cq::test::fixture(GetParam()))) GTEST_SKIP() << "fixture missing: " << GetParam();
        name_ = fs::path(GetParam()).filename().string();
    }
    std::string name_;
};

TEST_P(GgufFixtureCorruption, WalkAgreesWithReader) {
    const Bytes& b = fixture_bytes(GetParam());
    const GgufLayout L = walk_gguf(b);
    const auto f = gguf::File::parse(cq::memory_source(b, name_));
    EXPECT_TRUE(touch(f));
    EXPECT_EQ(f.data_section_offset(), (L.header_end + f.alignment() - 1) / f.alignment() * f.alignment());
    ASSERT_EQ(L.records.size(), 1 + f.metadata().size() + f.tensors().size() + 1);
    for (size_t i = 0; i < f.metadata().size(); ++i) EXPECT_EQ(f.metadata()[i].file_offset, L.records[1 + i]);
    for (size_t i = 0; i < f.tensors().size(); ++i)
        EXPECT_EQ(f.tensors()[i].info_offset, L.records[1 + f.metadata().size() + i]);
}

TEST_P(GgufFixtureCorruption, TruncateAtHeaderBoundaries) {
    const Bytes& b = fixture_bytes(GetParam());
    const GgufLayout L = walk_gguf(b);
    std::set<uint64_t> cuts;
    auto around = [&](uint64_t p) {
        for (int64_t d = -1; d <= 1; ++d)
            if (static_cast<int64_t>(p) + d >= 0 && static_cast<uint64_t>(static_cast<int64_t>(p) + d) < b.size())
                cuts.insert(static_cast<uint64_t>(static_cast<int64_t>(p) + d));
    };
    for (uint64_t i = 0; i <= 24 && i < b.size(); ++i) cuts.insert(i);
    for (uint64_t r : L.records) around(r);
    // Every field outside arrays (±1), each array's start and end (±1); inside arrays (tokens,
    // scores, merges) a seeded sample. In the big vocabularies (150k items) each cut costs a parse of
    // everything before it, so there fields get no ±1 (records still do) and the sample is small.
    const bool big = b.size() > (256u << 10);
    auto in_array = [&](uint64_t p) {
        for (const auto& [begin, end] : L.arrays)
            if (p > begin && p < end) return true;
        return false;
    };
    std::vector<uint64_t> inside;
    for (uint64_t p : L.fields) {
        if (in_array(p)) inside.push_back(p);
        else if (big) cuts.insert(p);
        else around(p);
    }
    for (const auto& [begin, end] : L.arrays) {
        around(begin);
        around(end);
    }
    std::mt19937 rng(1234);
    std::shuffle(inside.begin(), inside.end(), rng);
    const size_t n_inside = big ? 20 : 200;
    for (size_t i = 0; i < inside.size() && i < n_inside; ++i) {
        cuts.insert(inside[i]);
        cuts.insert(inside[i] + 1);
        if (!big) cuts.insert(inside[i] - 1);
    }
    size_t checked = 0;
    for (uint64_t cut : cuts) {
        if (cut >= L.header_end && cut >= b.size()) continue;
        const Outcome o = parse_gguf(prefix(b, cut), name_);
        ASSERT_TRUE(IsFormatError(o, name_, "", cut)) << "truncated to " << cut << " of " << b.size() << " bytes";
        ++checked;
    }
    EXPECT_GT(checked, 30u);
    RecordProperty("truncations", static_cast<int>(checked));
}

TEST_P(GgufFixtureCorruption, TruncateInsideTensorData) {
    const Bytes& b = fixture_bytes(GetParam());
    const auto f = gguf::File::parse(cq::memory_source(b, name_));
    if (f.tensors().empty()) {
        // A vocabulary-only file: nothing past the header to cut.
        EXPECT_EQ(f.data_section_offset() >= b.size(), true);
        return;
    }
    const auto& first = f.tensors().front();
    const auto& last = f.tensors().back();
    const auto& mid = f.tensors()[f.tensors().size() / 2];
    for (uint64_t cut : {f.data_section_offset(), first.file_offset + 1, first.file_offset + first.nbytes / 2,
                         mid.file_offset + mid.nbytes - 1, last.file_offset, last.file_offset + last.nbytes - 1}) {
        const Outcome o = parse_gguf(prefix(b, cut), name_);
        EXPECT_TRUE(IsFormatError(o, name_, "extends past the end", cut)) << "truncated to " << cut;
    }
}

// Header bytes flipped at random (half of the positions aimed at field starts, where lengths and
// counts live). Either the file still parses, and then every tensor and value can be read, or the
// reader says why with a cq::Error.
TEST_P(GgufFixtureCorruption, RandomByteFlips) {
    Bytes b = fixture_bytes(GetParam());  // mutated in place, restored after each iteration
    const GgufLayout L = walk_gguf(b);
    const bool big = b.size() > (1u << 20) || L.fields.size() > 20000;
    const int iterations = L.fields.size() > 4000 ? (big ? 25 : 40) : 300;
    std::mt19937 rng(20240601);
    std::uniform_int_distribution<uint64_t> any_pos(0, L.header_end - 1);
    std::uniform_int_distribution<size_t> any_field(0, L.fields.size() - 1);
    std::uniform_int_distribution<int> n_flips(1, 8), byte(0, 255), near(0, 7);
    int parsed = 0, refused = 0;
    for (int it = 0; it < iterations; ++it) {
        std::vector<std::pair<uint64_t, uint8_t>> saved;
        std::string log;
        const int n = n_flips(rng);
        for (int k = 0; k < n; ++k) {
            uint64_t p = (k % 2 == 0) ? any_pos(rng) : std::min<uint64_t>(L.fields[any_field(rng)] + near(rng), L.header_end - 1);
            const uint8_t v = static_cast<uint8_t>(byte(rng));
            saved.emplace_back(p, b[p]);
            b[p] = v;
            log += " [" + std::to_string(p) + "]=" + std::to_string(v);
        }
        const Outcome o = parse_gguf(view_of(b, name_));
        EXPECT_TRUE(IsOkOrCqError(o)) << "iteration " << it << ", flips" << log;
        (o.kind == Outcome::Ok ? parsed : refused)++;
        for (auto r = saved.rbegin(); r != saved.rend(); ++r) b[r->first] = r->second;
    }
    EXPECT_GT(refused, 0);
    RecordProperty("parsed", parsed);
    RecordProperty("refused", refused);
}

TEST_P(GgufFixtureCorruption, EditsOfRealBytes) {
    const Bytes& orig = fixture_bytes(GetParam());
    const auto f = gguf::File::parse(cq::memory_source(orig, name_));
    auto edit = [&](const std::function<void(Bytes&)>& change) {
        Bytes b = orig;
        change(b);
        return parse_gguf(b, name_);
    };
    EXPECT_TRUE(IsFormatError(edit([](Bytes& b) { b[0] = 'g'; }), name_, "magic", 0));
    EXPECT_TRUE(IsFormatError(edit([](Bytes& b) { set_u32(b, 4, 0); }), name_, "version 0", 4));
    EXPECT_TRUE(IsFormatError(edit([](Bytes& b) { set_u32(b, 4, 4); }), name_, "version 4", 4));
    EXPECT_TRUE(IsKind(edit([](Bytes& b) { set_u32(b, 4, 1); }), Outcome::Unsupported));
    EXPECT_TRUE(IsKind(edit([](Bytes& b) { set_u32(b, 4, 0x03000000); }), Outcome::Unsupported, "big-endian"));
    EXPECT_TRUE(IsFormatError(edit([](Bytes& b) { set_u64(b, 8, uint64_t{1} << 63); }), name_, "tensor count", 8));
    EXPECT_TRUE(IsFormatError(edit([](Bytes& b) { set_u64(b, 16, uint64_t{1} << 63); }), name_, "metadata count", 16));
    // The first key's length, then its value type.
    const uint64_t kv0 = f.metadata()[0].file_offset;
    EXPECT_TRUE(IsFormatError(edit([&](Bytes& b) { set_u64(b, kv0, kU64Max); }), name_, "exceeds the limit", kv0));
    const uint64_t type0 = kv0 + 8 + f.metadata()[0].key.size();
    EXPECT_TRUE(IsFormatError(edit([&](Bytes& b) { set_u32(b, type0, 13); }), name_, "unknown metadata value type 13", type0));
    // The first array: count 2^62, element type 13, and a count one larger than written.
    for (const auto& kv : f.metadata()) {
        if (kv.value.type != gguf::ValueType::ARRAY) continue;
        const uint64_t at = kv.file_offset + 8 + kv.key.size() + 4;  // element type, then count
        EXPECT_TRUE(IsFormatError(edit([&](Bytes& b) { set_u64(b, at + 4, uint64_t{1} << 62); }), name_, "exceeds the limit", at + 4));
        EXPECT_TRUE(IsFormatError(edit([&](Bytes& b) { set_u32(b, at, 13); }), name_, "unknown metadata value type 13", at));
        EXPECT_TRUE(IsOkOrCqError(edit([&](Bytes& b) { set_u64(b, at + 4, get_u64(b, at + 4) + 1); })));
        EXPECT_TRUE(IsFormatError(edit([&](Bytes& b) { set_u64(b, at + 4, b.size()); }), name_, "cannot fit", at + 4));
        break;
    }
    // A key renamed to an earlier key of the same length.
    bool renamed = false;
    for (size_t i = 1; i < f.metadata().size() && !renamed; ++i)
        for (size_t j = 0; j < i && !renamed; ++j)
            if (f.metadata()[i].key.size() == f.metadata()[j].key.size()) {
                const auto& dup = f.metadata()[i];
                const std::string& key = f.metadata()[j].key;
                EXPECT_TRUE(IsFormatError(edit([&](Bytes& b) { std::copy(key.begin(), key.end(), b.begin() + dup.file_offset + 8); }),
                                          name_, "duplicate metadata key '" + key + "'", dup.file_offset));
                renamed = true;
            }
    EXPECT_TRUE(renamed);
    // A bool flipped to 2, where the file has one.
    for (const auto& kv : f.metadata())
        if (kv.value.type == gguf::ValueType::BOOL) {
            const uint64_t at = kv.file_offset + 8 + kv.key.size() + 4;
            EXPECT_TRUE(IsFormatError(edit([&](Bytes& b) { b[at] = 2; }), name_, "bool value 2", at));
        }
    if (f.tensors().size() < 3) return;
    // Tensor edits (stories260K: 48 f32 tensors).
    const auto& t0 = f.tensors()[0];
    const auto& t1 = f.tensors()[1];
    auto dims_at = [](const gguf::TensorInfo& t) { return t.info_offset + 8 + t.name.size(); };
    auto type_at = [&](const gguf::TensorInfo& t) { return dims_at(t) + 4 + 8 * t.shape.size(); };
    auto offset_at = [&](const gguf::TensorInfo& t) { return type_at(t) + 4; };
    EXPECT_TRUE(IsFormatError(edit([&](Bytes& b) { set_u32(b, dims_at(t0), 5); }), name_, "5 dimensions", dims_at(t0)));
    for (uint32_t id : {4u, 31u, 200u})
        EXPECT_TRUE(IsFormatError(edit([&](Bytes& b) { set_u32(b, type_at(t0), id); }), name_, "unknown ggml type id " + std::to_string(id),
                                  type_at(t0)));
    // q4_K needs rows of 256: stories260K's rows are 64 wide.
    EXPECT_TRUE(IsFormatError(edit([&](Bytes& b) { set_u32(b, type_at(t0), G_Q4_K); }), name_, "block size", type_at(t0)));
    // A dimension of 2^62 next to 512: the element count overflows.
    EXPECT_TRUE(IsFormatError(edit([&](Bytes& b) { set_u64(b, dims_at(t0) + 4, uint64_t{1} << 62); }), name_, "overflow"));
    EXPECT_TRUE(IsFormatError(edit([&](Bytes& b) { set_u64(b, dims_at(t0) + 4, kU64Max); }), name_, "dimension 0 is"));
    EXPECT_TRUE(IsFormatError(edit([&](Bytes& b) { set_u64(b, offset_at(t1), t1.data_offset + 1); }), name_, "alignment", offset_at(t1)));
    // Swap the offsets of the first two tensors.
    EXPECT_TRUE(IsFormatError(edit([&](Bytes& b) {
                                  set_u64(b, offset_at(t0), t1.data_offset);
                                  set_u64(b, offset_at(t1), t0.data_offset);
                              }),
                              name_, "tensors must follow each other"));
    // Overlap: the second tensor placed on top of the first.
    EXPECT_TRUE(IsFormatError(edit([&](Bytes& b) { set_u64(b, offset_at(t1), 0); }), name_, "tensors must follow each other"));
    // A duplicate tensor name (a name of the same length exists among the blk.N tensors).
    bool dup_done = false;
    for (size_t i = 1; i < f.tensors().size() && !dup_done; ++i)
        for (size_t j = 0; j < i && !dup_done; ++j)
            if (f.tensors()[i].name.size() == f.tensors()[j].name.size()) {
                const auto& ti = f.tensors()[i];
                const std::string& nm = f.tensors()[j].name;
                EXPECT_TRUE(IsFormatError(edit([&](Bytes& b) { std::copy(nm.begin(), nm.end(), b.begin() + ti.info_offset + 8); }),
                                          name_, "duplicate tensor name '" + nm + "'", ti.info_offset));
                dup_done = true;
            }
    EXPECT_TRUE(dup_done);
    // The last tensor grown past the end of the file (general.alignment cannot be added in place;
    // GgufHostile.Alignment covers it):
    const auto& tl = f.tensors().back();
    EXPECT_TRUE(IsFormatError(edit([&](Bytes& b) { set_u64(b, dims_at(tl) + 4, get_u64(b, dims_at(tl) + 4) * 2); }), name_,
                              "extends past the end"));
}

INSTANTIATE_TEST_SUITE_P(Fixtures, GgufFixtureCorruption, testing::ValuesIn(kGgufFixtures), param_name);

// The same corruptions seen through `cq info`'s entry point, from a real file on disk.
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

TEST(GgufHostile, OpenAndSummarizeFromDisk) {
    TempDir dir;
    GgufWriter w = base_gguf();
    w.tensors[1].offset = 385;
    const std::string path = dir.write("bad.gguf", w.build());
    EXPECT_TRUE(IsFormatError(run([&] { gguf::File::open(path); }), path, "alignment"));
    EXPECT_TRUE(IsFormatError(run([&] { cq::summarize_model(path); }), path, "alignment"));
    const std::string no_ext = dir.write("bad", w.build());
    EXPECT_TRUE(IsFormatError(run([&] { cq::summarize_model(no_ext); }), no_ext, "alignment"));
    const std::string empty = dir.write("empty.gguf", Bytes{});
    EXPECT_TRUE(IsFormatError(run([&] { gguf::File::open(empty); }), empty, "too short", 0));
    // Strings that are not UTF-8 are data, not errors; the JSON summary must survive them.
    GgufWriter odd = base_gguf();
    odd.str("general.name", std::string("\xff\xfe\x80 bad utf-8", 13));
    const std::string odd_path = dir.write("odd.gguf", odd.build());
    EXPECT_TRUE(IsOkOrCqError(run([&] {
        const auto s = cq::summarize_model(odd_path);
        (void)cq::summary_to_json(s, true, true).dump(-1, ' ', false, json::error_handler_t::replace);
    })));
}

// ---------------------------------------------------------------------------------------------
// safetensors: a writer, then one wrong field at a time.

size_t st_elem_size(const std::string& dtype) {
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
json st_header(const std::vector<StTensor>& ts, uint64_t* data_bytes = nullptr) {
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
Bytes st_file(const std::string& header_text, uint64_t data_bytes, std::optional<uint64_t> declared_len = std::nullopt) {
    Bytes b;
    put_u64(b, declared_len.value_or(header_text.size()));
    b.insert(b.end(), header_text.begin(), header_text.end());
    for (uint64_t i = 0; i < data_bytes; ++i) b.push_back(static_cast<uint8_t>(i * 13 + 5));
    return b;
}

const std::vector<StTensor> kStBase = {{"a.weight", "F32", {4, 3}}, {"a.bias", "BF16", {3}}, {"b.mask", "BOOL", {5}}};

Bytes st_base(uint64_t* data_bytes_out = nullptr) {
    uint64_t n = 0;
    const json h = st_header(kStBase, &n);
    if (data_bytes_out) *data_bytes_out = n;
    return st_file(h.dump(), n);
}

// The base header with one tensor entry edited.
Outcome st_with(const std::function<void(json&)>& change, std::optional<uint64_t> data_bytes = std::nullopt) {
    uint64_t n = 0;
    json h = st_header(kStBase, &n);
    change(h);
    return parse_st(st_file(h.dump(), data_bytes.value_or(n)), kS);
}

TEST(SafetensorsHostile, WriterMakesValidFiles) {
    const auto f = st::File::parse(cq::memory_source(st_base(), kS));
    ASSERT_EQ(f.tensors().size(), 3u);
    EXPECT_EQ(f.find_tensor("a.bias")->dtype, cq::DType::BF16);
    EXPECT_EQ(f.metadata().at("format"), "pt");
    EXPECT_TRUE(touch(f));
    // Empty header object and no data; zero-sized tensors; trailing spaces in the header.
    EXPECT_TRUE(IsKind(parse_st(st_file("{}", 0), kS), Outcome::Ok));
    EXPECT_TRUE(IsKind(parse_st(st_file(R"({"z":{"dtype":"F32","shape":[0,4],"data_offsets":[0,0]}})", 0), kS), Outcome::Ok));
    EXPECT_TRUE(IsKind(parse_st(st_file(st_header(kStBase).dump() + "        ", 59), kS), Outcome::Ok));
}

TEST(SafetensorsHostile, TruncatedLengthAndHeader) {
    uint64_t n = 0;
    const Bytes b = st_base(&n);
    const uint64_t header_len = get_u64(b, 0);
    for (uint64_t cut = 0; cut <= 8; ++cut)
        EXPECT_TRUE(IsFormatError(parse_st(prefix(b, cut), kS), kS, cut < 8 ? "too short" : "header length", 0)) << cut;
    for (uint64_t cut : {uint64_t{9}, uint64_t{10}, header_len / 2, header_len + 7, header_len + 8 - 1})
        EXPECT_TRUE(IsFormatError(parse_st(prefix(b, cut), kS), kS, "runs past the end", cut)) << cut;
    // Cut inside the data: the last tensor ends past the file.
    for (uint64_t cut : {8 + header_len, 8 + header_len + 1, 8 + header_len + n - 1})
        EXPECT_TRUE(IsFormatError(parse_st(prefix(b, cut), kS), kS, "past the end of the file")) << cut;
}

TEST(SafetensorsHostile, HeaderLength) {
    const std::string text = st_header(kStBase).dump();
    for (uint64_t len : {uint64_t{1} << 63, kU64Max, uint64_t{200} << 20})
        EXPECT_TRUE(IsFormatError(parse_st(st_file(text, 59, len), kS), kS, "exceeds the limit", 0)) << len;
    EXPECT_TRUE(IsFormatError(parse_st(st_file(text, 59, text.size() + 60), kS), kS, "runs past the end", 0));
    // Shorter than the text: the JSON ends early (or the data no longer matches).
    EXPECT_TRUE(IsKind(parse_st(st_file(text, 59, text.size() - 1), kS), Outcome::Format));
    EXPECT_TRUE(IsKind(parse_st(st_file(text, 59, 0), kS), Outcome::Format));
    EXPECT_TRUE(IsKind(parse_st(st_file(text, 59, 1), kS), Outcome::Format));
    // A caller's lower cap.
    st::Limits lim;
    lim.max_header_bytes = 16;
    EXPECT_TRUE(IsFormatError(parse_st(cq::memory_source(st_base(), kS), lim), kS, "exceeds the limit of 16"));
}

TEST(SafetensorsHostile, HeaderNotJsonObject) {
    const std::vector<std::pair<std::string, std::string>> cases = {
        {"{not json", "malformed JSON"},
        {"[1, 2, 3]", "not a JSON object"},
        {"\"string\"", "not a JSON object"},
        {"null", "not a JSON object"},
        {"{\"a\": 1", "malformed JSON"},
        {"{\"k\xff\xfe\": {}}", "malformed JSON"},                 // invalid UTF-8 in a key
        {"{\"k\": \"\xc3\x28\"}", "malformed JSON"},               // invalid 2-byte sequence in a value
        {"{\"k\": \"\\ud800\"}", "malformed JSON"},                // lone surrogate
        {std::string("{\"a\":\0}", 7), "malformed JSON"},          // NUL inside
        {"{} {}", "malformed JSON"},                                 // trailing garbage
        {"{\"a\": [1, 2,]}", "malformed JSON"},
    };
    for (const auto& [text, needle] : cases) {
        const Outcome o = parse_st(st_file(text, 0), kS);
        EXPECT_TRUE(IsFormatError(o, kS, needle, 8 + text.size())) << text.substr(0, 40);
    }
}

// Numbers too large for a double make nlohmann throw out_of_range (406), not parse_error: it must
// still come out as a FormatError.
TEST(SafetensorsHostile, NumberOverflowIsFormatError) {
    for (const std::string& text : {std::string("{\"__metadata__\": {\"a\": 1e999999}}"),
                                   "{\"a\": {\"dtype\": \"U8\", \"shape\": [" + std::string(400, '9') + "], \"data_offsets\": [0, 1]}}",
                                   std::string("{\"a\": -1e400}")}) {
        const Outcome o = parse_st(st_file(text, 1), kS);
        EXPECT_TRUE(IsFormatError(o, kS, "", 8 + text.size())) << text.substr(0, 60);
    }
}

TEST(SafetensorsHostile, DeepNesting) {
    const std::string deep_array(100000, '[');
    EXPECT_TRUE(IsFormatError(parse_st(st_file(deep_array, 0), kS), kS, "not a JSON object"));
    // Inside an object, closed and unclosed, arrays and objects.
    const std::string closed = "{\"a\":" + std::string(100000, '[') + std::string(100000, ']') + "}";
    EXPECT_TRUE(IsFormatError(parse_st(st_file(closed, 0), kS), kS, "nested deeper"));
    const std::string open = "{\"a\":" + std::string(100000, '[');
    EXPECT_TRUE(IsKind(parse_st(st_file(open, 0), kS), Outcome::Format));
    std::string objs = "{";
    for (int i = 0; i < 20000; ++i) objs += "\"k\":{";
    objs += std::string(20000, '}') + "}";
    EXPECT_TRUE(IsFormatError(parse_st(st_file(objs, 0), kS), kS, "nested deeper"));
    // Depth just within the limit (16) is accepted by the JSON layer, then refused as a bad entry.
    std::string ok = "{\"__metadata__\":{\"x\":" + std::string(10, '[') + std::string(10, ']') + "}}";
    EXPECT_TRUE(IsFormatError(parse_st(st_file(ok, 0), kS), kS, "__metadata__"));
}

TEST(SafetensorsHostile, DuplicateKeys) {
    const std::string text =
        R"({"x":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},"x":{"dtype":"U8","shape":[2],"data_offsets":[2,4]}})";
    EXPECT_TRUE(IsFormatError(parse_st(st_file(text, 4), kS), kS, "duplicate JSON key 'x'"));
    const std::string inner = R"({"x":{"dtype":"U8","dtype":"U8","shape":[2],"data_offsets":[0,2]}})";
    EXPECT_TRUE(IsFormatError(parse_st(st_file(inner, 2), kS), kS, "duplicate JSON key 'dtype'"));
    const std::string meta = R"({"__metadata__":{"a":"1"},"__metadata__":{"a":"2"}})";
    EXPECT_TRUE(IsFormatError(parse_st(st_file(meta, 0), kS), kS, "duplicate JSON key"));
    // The same key in two different objects is fine.
    const std::string ok = R"({"__metadata__":{"x":"1"},"x":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}})";
    EXPECT_TRUE(IsKind(parse_st(st_file(ok, 2), kS), Outcome::Ok));
}

TEST(SafetensorsHostile, Dtypes) {
    for (const std::string dt : {"F128", "f32", "", "Q4_0", "F8_E8M0", "C64"})
        EXPECT_TRUE(IsFormatError(st_with([&](json& h) { h["a.bias"]["dtype"] = dt; }), kS, "unknown dtype '" + dt + "'")) << dt;
    EXPECT_TRUE(IsFormatError(st_with([](json& h) { h["a.bias"]["dtype"] = 5; }), kS, "no dtype string"));
    EXPECT_TRUE(IsFormatError(st_with([](json& h) { h["a.bias"].erase("dtype"); }), kS, "no dtype string"));
}

TEST(SafetensorsHostile, Shapes) {
    const std::vector<std::pair<json, std::string>> cases = {
        {json::array({-1, 3}), "not a non-negative integer"},
        {json::array({4, 0.5}), "not a non-negative integer"},
        {json::array({4, 3.0}), "not a non-negative integer"},
        {json::array({"4", 3}), "not a non-negative integer"},
        {json::array({json::array({4}), 3}), "not a non-negative integer"},
        {json::array({nullptr}), "not a non-negative integer"},
        {json::array({uint64_t{1} << 32, uint64_t{1} << 32}), "too many elements"},
        {json::array({uint64_t{1} << 62, 2}), "too many elements"},
        {json::array({kU64Max}), "dimension of"},
        {json::array({uint64_t{1} << 63}), "dimension of"},
        {json::array({4, 4}), "needs 64 bytes"},
        {json::array({1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 12}), "17 dimensions"},
        {json::object(), "no shape array"},
        {"4x3", "no shape array"},
    };
    for (const auto& [shape, needle] : cases)
        EXPECT_TRUE(IsFormatError(st_with([&](json& h) { h["a.weight"]["shape"] = shape; }), kS, needle)) << shape.dump();
    EXPECT_TRUE(IsFormatError(st_with([](json& h) { h["a.weight"].erase("shape"); }), kS, "no shape array"));
}

TEST(SafetensorsHostile, DataOffsets) {
    // a.weight [0,48), a.bias [48,54), b.mask [54,59).
    const std::vector<std::pair<std::function<void(json&)>, std::string>> cases = {
        {[](json& h) { h["a.bias"]["data_offsets"] = {54, 48}; }, "begin 54 > end 48"},
        {[](json& h) { h["a.bias"]["data_offsets"] = {48, 56}; }, "needs 6 bytes but data_offsets span 8"},
        {[](json& h) { h["a.bias"]["data_offsets"] = {40, 46}; }, "overlaps"},
        {[](json& h) { h["b.mask"]["data_offsets"] = {0, 5}; }, "overlaps"},
        {[](json& h) {
             h["a.bias"]["data_offsets"] = {50, 56};
             h["b.mask"]["data_offsets"] = {56, 61};
         },
         "past the end of the file"},
        {[](json& h) { h["b.mask"]["data_offsets"] = {55, 60}; }, "past the end of the file"},
        {[](json& h) { h["b.mask"]["data_offsets"] = {kU64Max - 5, kU64Max}; }, "past the end of the file"},
        {[](json& h) { h["b.mask"]["data_offsets"] = {-5, 0}; }, "not a non-negative integer"},
        {[](json& h) { h["b.mask"]["data_offsets"] = {54.0, 59}; }, "not a non-negative integer"},
        {[](json& h) { h["b.mask"]["data_offsets"] = {54}; }, "data_offsets"},
        {[](json& h) { h["b.mask"]["data_offsets"] = {54, 59, 60}; }, "data_offsets"},
        {[](json& h) { h["b.mask"]["data_offsets"] = "54-59"; }, "data_offsets"},
        {[](json& h) { h["b.mask"].erase("data_offsets"); }, "data_offsets"},
        {[](json& h) { h["b.mask"] = json::array({1}); }, "not an object"},
        {[](json& h) { h["b.mask"] = 3; }, "not an object"},
    };
    for (size_t i = 0; i < cases.size(); ++i) EXPECT_TRUE(IsFormatError(st_with(cases[i].first), kS, cases[i].second)) << "case " << i;
    // A gap between tensors (data still fills the file).
    EXPECT_TRUE(IsFormatError(st_with([](json& h) { h["b.mask"]["data_offsets"] = {55, 60}; }, 60), kS, "gap of 1 bytes"));
    // Data the header does not describe at the end, or at the start.
    EXPECT_TRUE(IsFormatError(st_with([](json&) {}, 60), kS, "after the last tensor"));
    EXPECT_TRUE(IsFormatError(st_with([](json& h) { h.erase("a.weight"); }), kS, "gap of 48 bytes"));
    // Fewer data bytes than the header describes.
    EXPECT_TRUE(IsFormatError(st_with([](json&) {}, 58), kS, "past the end of the file"));
}

TEST(SafetensorsHostile, Metadata) {
    for (const json& bad : {json(1), json(true), json(nullptr), json::array({"a"}), json::object({{"k", json::array()}})}) {
        EXPECT_TRUE(IsFormatError(st_with([&](json& h) { h["__metadata__"]["bad"] = bad; }), kS, "__metadata__ value 'bad' is not a string"))
            << bad.dump();
    }
    EXPECT_TRUE(IsFormatError(st_with([](json& h) { h["__metadata__"] = "pt"; }), kS, "__metadata__ is not an object"));
    EXPECT_TRUE(IsFormatError(st_with([](json& h) { h["__metadata__"] = json::array(); }), kS, "__metadata__ is not an object"));
    EXPECT_TRUE(IsKind(st_with([](json& h) { h["__metadata__"] = json::object(); }), Outcome::Ok));
}

// safetensors fixtures: cut at every boundary of the length prefix, inside the header, inside data.
class SafetensorsFixtureCorruption : public testing::TestWithParam<std::string> {
protected:
    void SetUp() override {
        if (!fs::exists(cq::test::fixture(GetParam()))) GTEST_SKIP() << "fixture missing: " << GetParam();
        name_ = fs::path(GetParam()).parent_path().filename().string() + "/model.safetensors";
    }
    std::string name_;
};

TEST_P(SafetensorsFixtureCorruption, Truncate) {
    const Bytes& b = fixture_bytes(GetParam());
    ASSERT_TRUE(IsKind(parse_st(view_of(b, name_)), Outcome::Ok));
    const uint64_t n = get_u64(b, 0);
    std::set<uint64_t> header_cuts;
    for (uint64_t i = 0; i <= 12; ++i) header_cuts.insert(i);
    for (uint64_t i = 12; i < 8 + n; i += std::max<uint64_t>(1, n / 97)) header_cuts.insert(i);
    for (uint64_t i : {8 + n - 2, 8 + n - 1}) header_cuts.insert(i);
    for (uint64_t cut : header_cuts) {
        const Outcome o = parse_st(prefix(b, cut), name_);
        EXPECT_TRUE(IsFormatError(o, name_, "", cut)) << "truncated to " << cut;
    }
    // Inside the data. Past the first cuts, a view of the first `cut` bytes instead of a copy (the
    // files reach 29 MB): touch() still checks every tensor against the shorter size.
    const auto f = st::File::parse(view_of(b, name_));
    const auto& last = f.tensors().back();
    for (uint64_t cut : {8 + n, 8 + n + 1, last.file_offset, last.file_offset + last.nbytes - 1}) {
        const Outcome o = cut <= 8 + n + 1 ? parse_st(prefix(b, cut), name_)
                                           : parse_st(std::make_shared<ViewSource>(b.data(), cut, name_));
        EXPECT_TRUE(IsFormatError(o, name_, "past the end of the file")) << "truncated to " << cut;
        EXPECT_LE(o.offset, b.size()) << o.what;
    }
    // One byte too many at the end.
    Bytes longer = b;
    longer.push_back(0);
    EXPECT_TRUE(IsFormatError(parse_st(longer, name_), name_, "after the last tensor", longer.size()));
}

TEST_P(SafetensorsFixtureCorruption, EditsOfRealBytes) {
    Bytes b = fixture_bytes(GetParam());  // edited in place, header restored after each case
    const uint64_t n = get_u64(b, 0);
    const Bytes header = prefix(b, 8 + n);
    auto try_with = [&](const std::function<void(Bytes&)>& change) {
        change(b);
        const Outcome o = parse_st(view_of(b, name_));
        std::copy(header.begin(), header.end(), b.begin());
        return o;
    };
    EXPECT_TRUE(IsFormatError(try_with([&](Bytes& c) { set_u64(c, 0, uint64_t{1} << 63); }), name_, "exceeds the limit", 0));
    EXPECT_TRUE(IsFormatError(try_with([&](Bytes& c) { set_u64(c, 0, c.size()); }), name_, "runs past the end", 0));
    EXPECT_TRUE(IsKind(try_with([&](Bytes& c) { set_u64(c, 0, n + 1); }), Outcome::Format));
    EXPECT_TRUE(IsKind(try_with([&](Bytes& c) { set_u64(c, 0, n - 1); }), Outcome::Format));
    EXPECT_TRUE(IsFormatError(try_with([&](Bytes& c) { c[8] = '['; }), name_, "not a JSON object", 8));
    EXPECT_TRUE(IsFormatError(try_with([&](Bytes& c) { c[8 + n - 1] = 0xff; }), name_, "malformed JSON"));
    // Rename the dtype of the first "F32" to "F99", "dtype" to "dtypf".
    const std::string text(b.begin() + 8, b.begin() + 8 + static_cast<std::ptrdiff_t>(n));
    const size_t f32 = text.find("\"F32\"");
    ASSERT_NE(f32, std::string::npos);
    EXPECT_TRUE(IsFormatError(try_with([&](Bytes& c) { c[8 + f32 + 2] = '9'; c[8 + f32 + 3] = '9'; }), name_, "unknown dtype 'F99'"));
    const size_t dt = text.find("\"dtype\"");
    EXPECT_TRUE(IsFormatError(try_with([&](Bytes& c) { c[8 + dt + 5] = 'f'; }), name_, "no dtype string"));
    // Change one digit of the first data_offsets pair.
    const size_t offs = text.find("\"data_offsets\":[");
    ASSERT_NE(offs, std::string::npos);
    const size_t digit = offs + 16;
    EXPECT_TRUE(IsKind(try_with([&](Bytes& c) { c[8 + digit] = c[8 + digit] == '9' ? '8' : static_cast<uint8_t>(c[8 + digit] + 1); }),
                       Outcome::Format));
    EXPECT_TRUE(IsFormatError(try_with([&](Bytes& c) { c[8 + digit] = '-'; }), name_, ""));
}

TEST_P(SafetensorsFixtureCorruption, RandomByteFlips) {
    Bytes b = fixture_bytes(GetParam());  // mutated in place (no 29 MB copies), restored each time
    const uint64_t region = 8 + get_u64(b, 0);
    // Positions of the structural characters and digits, where a flip changes meaning the most.
    std::vector<uint64_t> hot;
    for (uint64_t i = 8; i < region; ++i)
        if (std::strchr("[]{}:,\"0123456789", b[i]) && b[i]) hot.push_back(i);
    std::mt19937 rng(777);
    std::uniform_int_distribution<uint64_t> any_pos(0, region - 1);
    std::uniform_int_distribution<size_t> any_hot(0, hot.size() - 1);
    std::uniform_int_distribution<int> n_flips(1, 8), byte(0, 255);
    const char* interesting = "[]{}:,\"0123456789-.e \\";
    int parsed = 0, refused = 0;
    for (int it = 0; it < 300; ++it) {
        std::vector<std::pair<uint64_t, uint8_t>> saved;
        std::string log;
        const int k = n_flips(rng);
        for (int j = 0; j < k; ++j) {
            const uint64_t p = (j % 2 == 0) ? any_pos(rng) : hot[any_hot(rng)];
            const uint8_t v = (j % 3 == 1) ? static_cast<uint8_t>(interesting[static_cast<size_t>(byte(rng)) % std::strlen(interesting)])
                                           : static_cast<uint8_t>(byte(rng));
            saved.emplace_back(p, b[p]);
            b[p] = v;
            log += " [" + std::to_string(p) + "]=" + std::to_string(v);
        }
        const Outcome o = parse_st(view_of(b, name_));
        EXPECT_TRUE(IsOkOrCqError(o)) << "iteration " << it << ", flips" << log;
        (o.kind == Outcome::Ok ? parsed : refused)++;
        for (auto r = saved.rbegin(); r != saved.rend(); ++r) b[r->first] = r->second;
    }
    EXPECT_GT(refused, 0);
    RecordProperty("parsed", parsed);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, SafetensorsFixtureCorruption, testing::ValuesIn(kSafetensorsFixtures),
                         [](const testing::TestParamInfo<std::string>& info) {
                             std::string name;
                             for (char c : fs::path(info.param).parent_path().filename().string())
                                 name += std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
                             return name;
                         });

TEST(SafetensorsHostile, OpenFromDisk) {
    TempDir dir;
    const std::string path = dir.write("bad.safetensors", st_file("{not json", 0));
    EXPECT_TRUE(IsFormatError(run([&] { st::File::open(path); }), path, "malformed JSON"));
    EXPECT_TRUE(IsFormatError(run([&] { st::Model::open(path); }), path, "malformed JSON"));
    EXPECT_TRUE(IsFormatError(run([&] { cq::summarize_model(path); }), path, "malformed JSON"));
    const std::string empty = dir.write("empty.safetensors", Bytes{});
    EXPECT_TRUE(IsFormatError(run([&] { st::File::open(empty); }), empty, "too short"));
    EXPECT_TRUE(IsKind(run([&] { st::File::open(dir.file("missing.safetensors")); }), Outcome::Io));
    EXPECT_TRUE(IsKind(run([&] { st::File::open(dir.path().string()); }), Outcome::Io));
}

// ---------------------------------------------------------------------------------------------
// Sharded models: the index must only name plain files next to it, and must agree with the shards.

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

TEST(ShardedHostile, ValidIndex) {
    ShardedDir d;
    const std::string idx = d.index({{"x", "a.safetensors"}, {"z", "c.safetensors"}});
    const auto m = st::Model::open(idx);
    EXPECT_EQ(m.shards().size(), 2u);
    EXPECT_EQ(m.tensor_count(), 3u);  // every tensor of the shards named: x, shared (a) and z (c)
    EXPECT_NE(m.find_tensor("z"), nullptr);
    EXPECT_EQ(st::Model::open(d.dir.path().string()).index_path(), idx);
}

TEST(ShardedHostile, PathsOutsideTheDirectory) {
    ShardedDir d;
    for (const std::string bad : {"../x.safetensors", "/etc/passwd", "..", ".", "", "sub/a.safetensors", "..\\a.safetensors",
                                  "./a.safetensors", "/tmp/a.safetensors"}) {
        const std::string idx = d.index({{"x", "a.safetensors"}, {"z", bad}});
        EXPECT_TRUE(IsFormatError(run([&] { st::Model::open(idx); }), idx, "not a plain file name")) << "'" << bad << "'";
    }
    // A NUL byte makes the checked name and the opened name differ ("..\0" opens ".."): refused one way or another.
    const std::string idx = d.index({{"x", "a.safetensors"}, {"z", std::string("..\0", 3)}});
    const Outcome o = run([&] { st::Model::open(idx); });
    EXPECT_TRUE(o.kind == Outcome::Format || o.kind == Outcome::Io) << describe(o);
    // (The message itself is cut at the NUL by what(); the file and kind are what matter here.)
    const std::string idx2 = d.index({{"x", std::string("a.safetensors\0/../../etc/passwd", 31)}});
    EXPECT_TRUE(IsFormatError(run([&] { st::Model::open(idx2); }), idx2, "weight_map entry 'x'"));
}

TEST(ShardedHostile, IndexDisagreesWithShards) {
    ShardedDir d;
    // A missing shard: IoError (or FormatError) naming it.
    {
        const std::string idx = d.index({{"x", "a.safetensors"}, {"q", "missing.safetensors"}});
        const Outcome o = run([&] { st::Model::open(idx); });
        EXPECT_TRUE(o.kind == Outcome::Io || o.kind == Outcome::Format) << describe(o);
        EXPECT_NE(o.what.find("missing.safetensors"), std::string::npos) << o.what;
    }
    // A shard without the tensor the index puts there.
    {
        const std::string idx = d.index({{"x", "a.safetensors"}, {"y", "c.safetensors"}});
        EXPECT_TRUE(IsFormatError(run([&] { st::Model::open(idx); }), idx, "no such tensor"));
    }
    // A tensor present in two shards.
    {
        const std::string idx = d.index({{"x", "a.safetensors"}, {"y", "b.safetensors"}});
        const Outcome o = run([&] { st::Model::open(idx); });
        EXPECT_TRUE(IsKind(o, Outcome::Format, "also appears in another shard"));
        EXPECT_TRUE(format_error_contract(o));
        EXPECT_NE(o.what.find("'shared'"), std::string::npos) << o.what;
    }
    // The index naming itself or a non-safetensors file as a shard.
    {
        const std::string idx = d.index({{"x", "model.safetensors.index.json"}});
        EXPECT_TRUE(IsKind(run([&] { st::Model::open(idx); }), Outcome::Format));
    }
    // A corrupt shard: the error names the shard.
    {
        const std::string shard = d.dir.write("bad.safetensors", st_file("{\"x\":1}", 0));
        const std::string idx = d.index({{"x", "bad.safetensors"}});
        EXPECT_TRUE(IsFormatError(run([&] { st::Model::open(idx); }), shard, "not an object"));
    }
}

TEST(ShardedHostile, MalformedIndex) {
    ShardedDir d;
    const std::vector<std::pair<std::string, std::string>> cases = {
        {"{", "malformed JSON"},
        {"[]", "weight_map"},
        {"{}", "weight_map"},
        {R"({"weight_map": []})", "weight_map"},
        {R"({"weight_map": {"x": 1}})", "not a file name"},
        {R"({"weight_map": {"x": null}})", "not a file name"},
        {R"({"weight_map": {"x": "a.safetensors", "x": "b.safetensors"}})", "duplicate JSON key"},
        {"{\"weight_map\": {\"x\": \"a\xff.safetensors\"}}", "malformed JSON"},
        {"{\"weight_map\":" + std::string(50000, '[') + std::string(50000, ']') + "}", "nested deeper"},
    };
    for (const auto& [text, needle] : cases) {
        const std::string idx = d.index_text(text);
        EXPECT_TRUE(IsFormatError(run([&] { st::Model::open(idx); }), idx, needle)) << text.substr(0, 60);
    }
    // An empty weight map is an empty model, not an error.
    const std::string idx = d.index_text(R"({"weight_map": {}})");
    EXPECT_TRUE(IsKind(run([&] { EXPECT_EQ(st::Model::open(idx).tensor_count(), 0u); }), Outcome::Ok));
}

// ---------------------------------------------------------------------------------------------
// HF model directories.

TEST(HfDirHostile, ConfigJson) {
    const std::vector<std::string> malformed = {"{", "{\"model_type\": }", "not json", "{\"a\": \"\xff\"}", ""};
    for (const auto& text : malformed) {
        TempDir dir;
        const std::string cfg = dir.write("config.json", text);
        dir.write("model.safetensors", st_base());
        const Outcome o = run([&] { cq::hf::open_model_dir(dir.path().string()); });
        EXPECT_TRUE(IsFormatError(o, cfg, "malformed JSON")) << text;
        EXPECT_NE(o.what.find("config.json"), std::string::npos) << o.what;
        EXPECT_TRUE(IsFormatError(run([&] { cq::summarize_model(dir.path().string()); }), cfg, "malformed JSON")) << text;
    }
    for (const std::string text : {"[1, 2]", "\"llama\"", "42", "null"}) {
        TempDir dir;
        const std::string cfg = dir.write("config.json", text);
        dir.write("model.safetensors", st_base());
        EXPECT_TRUE(IsFormatError(run([&] { cq::hf::open_model_dir(dir.path().string()); }), cfg, "not a JSON object")) << text;
    }
    // Odd types for the keys the summary reads.
    {
        TempDir dir;
        dir.write("config.json", R"({"model_type": 3, "architectures": "x", "hidden_size": [1,2], "id2label": 5, "_name_or_path": {}})");
        dir.write("model.safetensors", st_base());
        EXPECT_TRUE(IsKind(run([&] { cq::summarize_model(dir.path().string()); }), Outcome::Ok));
    }
}

TEST(ShardedHostile, NumberOverflowInIndex) {
    ShardedDir d;
    const std::string idx = d.index_text(R"({"metadata": {"total_size": 1e999}, "weight_map": {"x": "a.safetensors"}})");
    EXPECT_TRUE(IsFormatError(run([&] { st::Model::open(idx); }), idx, ""));
}

TEST(HfDirHostile, NumberOverflowInConfig) {
    TempDir dir;
    const std::string cfg = dir.write("config.json", R"({"model_type": "llama", "rope_theta": 1e999})");
    dir.write("model.safetensors", st_base());
    EXPECT_TRUE(IsFormatError(run([&] { cq::hf::open_model_dir(dir.path().string()); }), cfg, "config.json"));
}

// Deeply nested but valid JSON in config.json (no depth limit there): reading it must not overflow
// the stack, and neither must summarising it (`cq info`).
std::string deep_config() { return "{\"x\":" + std::string(100000, '[') + std::string(100000, ']') + "}"; }

TEST(HfDirHostile, DeeplyNestedConfigOpen) {
    TempDir dir;
    dir.write("config.json", deep_config());
    dir.write("model.safetensors", st_base());
    EXPECT_TRUE(IsOkOrCqError(run([&] { cq::hf::open_model_dir(dir.path().string()); })));
}

TEST(HfDirHostile, DeeplyNestedConfigSummary) {
    TempDir dir;
    dir.write("config.json", deep_config());
    dir.write("model.safetensors", st_base());
    EXPECT_TRUE(IsOkOrCqError(run([&] { cq::summarize_model(dir.path().string()); })));
}

TEST(HfDirHostile, GenerationConfigAndWeights) {
    {
        TempDir dir;
        dir.write("config.json", R"({"model_type": "llama"})");
        const std::string gen = dir.write("generation_config.json", "{\"bos\": ");
        dir.write("model.safetensors", st_base());
        EXPECT_TRUE(IsFormatError(run([&] { cq::hf::open_model_dir(dir.path().string()); }), gen, "malformed JSON"));
    }
    {
        TempDir dir;
        dir.write("config.json", R"({"model_type": "llama"})");
        const std::string w = dir.write("model.safetensors", prefix(st_base(), 20));
        EXPECT_TRUE(IsFormatError(run([&] { cq::hf::open_model_dir(dir.path().string()); }), w, "runs past the end"));
    }
}

TEST(HfDirHostile, MissingPieces) {
    {
        TempDir dir;
        dir.write("model.safetensors", st_base());
        EXPECT_TRUE(IsKind(run([&] { cq::hf::open_model_dir(dir.path().string()); }), Outcome::Io, "config.json"));
    }
    {
        TempDir dir;
        dir.write("config.json", R"({"model_type": "llama"})");
        dir.write("pytorch_model.bin", Bytes{0x80, 0x02});
        EXPECT_TRUE(IsKind(run([&] { cq::hf::open_model_dir(dir.path().string()); }), Outcome::Unsupported, "pytorch_model.bin"));
        EXPECT_TRUE(IsKind(run([&] { cq::summarize_model(dir.path().string()); }), Outcome::Unsupported));
    }
    {
        TempDir dir;
        dir.write("config.json", R"({"model_type": "llama"})");
        EXPECT_TRUE(IsKind(run([&] { cq::hf::open_model_dir(dir.path().string()); }), Outcome::Io));
    }
    {
        TempDir dir;
        EXPECT_TRUE(IsKind(run([&] { cq::hf::open_model_dir((dir.path() / "nope").string()); }), Outcome::Io));
    }
}

// ---------------------------------------------------------------------------------------------
// Inputs the fuzzers once failed on (tests/fuzz_findings/, see its README): each must now parse or be
// refused with a cq::Error. The name's prefix picks the reader.

std::vector<std::string> fuzz_findings() {
    std::vector<std::string> names;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(cq::test::tests_dir() + "/fuzz_findings", ec))
        if (e.is_regular_file() && e.path().extension() != ".md") names.push_back(e.path().filename().string());
    std::sort(names.begin(), names.end());
    return names;
}

class FuzzFindings : public testing::TestWithParam<std::string> {};

TEST_P(FuzzFindings, Replay) {
    const std::string name = GetParam();
    const Bytes b = cq::test::read_bytes(cq::test::tests_dir() + "/fuzz_findings/" + name);
    Outcome o;
    if (name.rfind("gguf-", 0) == 0) {
        o = parse_gguf(b, name);
    } else if (name.rfind("safetensors-", 0) == 0) {
        o = parse_st(b, name);
    } else if (name.rfind("index-", 0) == 0) {
        ShardedDir d;
        const std::string idx = d.dir.write("model.safetensors.index.json", b);
        o = run([&] { (void)st::Model::open(idx); });
    } else if (name.rfind("config-", 0) == 0) {
        TempDir dir;
        dir.write("config.json", b);
        dir.write("model.safetensors", st_base());
        o = run([&] {
            (void)cq::hf::open_model_dir(dir.path().string());
            (void)cq::summarize_model(dir.path().string());
        });
    } else {
        FAIL() << "tests/fuzz_findings/" << name << ": the name must start with gguf-, safetensors-, index- or config-";
    }
    EXPECT_TRUE(IsOkOrCqError(o)) << "tests/fuzz_findings/" << name;
}

INSTANTIATE_TEST_SUITE_P(Files, FuzzFindings, testing::ValuesIn(fuzz_findings()), [](const testing::TestParamInfo<std::string>& info) {
    std::string name;
    for (char c : info.param) name += std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
    return name;
});

}  // namespace
