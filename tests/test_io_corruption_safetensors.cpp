// Hostile safetensors files: single-field edits made with the small writer (header length, JSON, dtypes,
// shapes, data offsets, metadata), then truncation, edits and random byte flips of the real fixtures.
#include <gtest/gtest.h>

#include "io_corruption_support.h"

namespace {

using namespace cq::test::hostile;

// ---------------------------------------------------------------------------------------------
// safetensors: one wrong field at a time.

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

}  // namespace
