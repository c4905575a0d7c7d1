// Corrupted real GGUF fixtures: the header walked independently of the reader, then truncation at every
// field boundary, cuts inside tensor data, seeded random byte flips and single-field edits of real bytes.
#include <gtest/gtest.h>

#include "io_corruption_support.h"

namespace {

using namespace cq::test::hostile;

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

}  // namespace
