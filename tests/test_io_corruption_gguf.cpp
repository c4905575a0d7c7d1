// Hostile GGUF files made with the small writer: one wrong field at a time (magic, version, counts,
// lengths, value types, tensor dims/types/offsets, alignment), in memory and through `cq info`'s entry point.
#include <gtest/gtest.h>

#include "io_corruption_support.h"

namespace {

using namespace cq::test::hostile;

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
        for (const auto& e : s.metadata) EXPECT_FALSE(json::parse(e.json).is_discarded()) << e.key;  // as `cq info --json` reads it
    })));
}

}  // namespace
