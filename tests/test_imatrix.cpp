// Importance matrices and the weighted codecs against llama.cpp (tests/expected/imatrix/, made by
// make_reference.py from llama-imatrix, llama-quantize --imatrix and ggml_quantize_chunk): cq's collection on
// llama-256d-stories equals llama-imatrix's (with f32 attention) to 1e-4, the weighted searches give llama.cpp's bytes, both file
// formats read, write and combine as llama-imatrix's do, and corrupt files give one FormatError.
#include <gtest/gtest.h>

#include <sys/wait.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <random>
#include <set>

#include <nlohmann/json.hpp>

#include "core/sha256.h"
#include "cq/dtype.h"
#include "cq/error.h"
#include "cq/imatrix.h"
#include "cq/io/gguf.h"
#include "cq/io/gguf_writer.h"
#include "cq/model.h"
#include "cq/weighted_quant.h"
#include "test_support.h"

namespace cq {
namespace {

const std::string kModel = "models/llama-256d-stories";
const std::string kCalib = "data/stories_calib.txt";

std::string ref_dir() { return test::tests_dir() + "/expected/imatrix"; }
nlohmann::json reference() {
    std::ifstream in(ref_dir() + "/reference.json");
    return nlohmann::json::parse(in);
}
std::string llama_imatrix_gguf() { return ref_dir() + "/" + reference()["imatrix_gguf"].get<std::string>(); }
std::string llama_imatrix_dat() { return ref_dir() + "/" + reference()["imatrix_dat"].get<std::string>(); }

std::string sha256_hex(const void* data, size_t n) {
    Sha256 h;
    h.update(data, n);
    return h.hex();
}

std::vector<float> weight_values(const Linear& l) {
    if (l.weight.dtype() == DType::F32) return std::vector<float>(l.weight.values<float>().begin(), l.weight.values<float>().end());
    return l.weight.to_float();
}

// ---- weighted codecs ----

// make_reference.py's splitmix64 stream and synthetic rows (values with outliers, a zero run, skewed importance).
struct SplitMix {
    uint64_t s;
    uint64_t next() {
        s += 0x9E3779B97F4A7C15ull;
        uint64_t z = s;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        return z ^ (z >> 31);
    }
    double uniform() { return double(next() >> 11) * (1.0 / 9007199254740992.0); }
};
struct SynthRows {
    int64_t rows, n_per_row;
    std::vector<float> x, importance;
};
SynthRows synth_rows(const nlohmann::json& spec) {
    SynthRows s{spec["rows"], spec["n_per_row"], {}, {}};
    SplitMix st{spec["seed"].get<uint64_t>()};
    for (int64_t r = 0; r < s.rows; ++r)
        for (int64_t j = 0; j < s.n_per_row; ++j) {
            double v = (st.uniform() * 2 - 1) * 0.05;
            if (st.next() % 37 == 0) v *= 8;
            s.x.push_back(r == 1 && j < 64 ? 0.0f : static_cast<float>(v));
        }
    for (int64_t j = 0; j < s.n_per_row; ++j) {
        const double u = st.uniform();
        s.importance.push_back(static_cast<float>(1e-3 + 10 * u * u * u * u));
    }
    return s;
}

TEST(WeightedQuant, EqualsGgmlQuantizeChunkOnSyntheticRows) {
    const nlohmann::json spec = reference()["ggml_quantize_chunk"];
    const SynthRows s = synth_rows(spec);
    int checked = 0;
    for (const auto& [name, want] : spec["types"].items()) {
        const DType t = *dtype_from_name(name);
        ASSERT_TRUE(has_weighted_quantizer(t)) << name;
        std::vector<uint8_t> out(*dtype_bytes(t, uint64_t(s.x.size())));
        for (const char* label : {"weighted", "unweighted"}) {
            const float* imp = std::string(label) == "weighted" ? s.importance.data() : nullptr;
            std::fill(out.begin(), out.end(), uint8_t{0xCD});
            EXPECT_EQ(quantize_rows_weighted(t, s.x.data(), out.data(), s.rows, s.n_per_row, imp), out.size());
            EXPECT_EQ(sha256_hex(out.data(), out.size()), want[label].get<std::string>()) << name << " " << label;
            ++checked;
        }
    }
    EXPECT_EQ(checked, 22);
}

int run_cli(const std::string& args, std::string* out = nullptr);

// Every Linear llama-quantize --pure --imatrix wrote for each type, from the same f32 weights and llama.cpp's imatrix.
// The weights come from the F32 GGUF the reference was made from (cq's converter, as make_reference.py ran it):
// its attn_q / attn_k rows are permuted for llama.cpp's RoPE, unlike the HF file's.
TEST(WeightedQuant, EqualsLlamaQuantizeWithItsImatrixOnLlama256d) {
    const nlohmann::json ref = reference()["llama_quantize"];
    const Imatrix im = read_imatrix(llama_imatrix_gguf());
    test::TempDir dir;
    std::string log;
    ASSERT_EQ(run_cli("quantize '" + test::fixture(kModel) + "' " + dir.file("f32.gguf") + " --type f32", &log), 0) << log;
    auto model = Model::load(dir.file("f32.gguf"));
    for (const auto& [qtype, tensors] : ref.items()) {
        int matched = 0, weighted = 0;
        for (const Linear* l : model->linears()) {
            const std::string name = l->name + ".weight";
            if (!tensors.contains(name)) continue;
            const DType t = *dtype_from_name(tensors[name]["type"].get<std::string>());
            const std::vector<float> w = weight_values(*l);
            const std::vector<float> imp = im.importance(name);
            std::vector<uint8_t> out(*dtype_bytes(t, uint64_t(w.size())));
            quantize_rows_weighted(t, w.data(), out.data(), l->n_out(), l->n_in(), imp.empty() ? nullptr : imp.data());
            EXPECT_EQ(sha256_hex(out.data(), out.size()), tensors[name]["sha256"].get<std::string>())
                << qtype << " " << name << " as " << dtype_name(t) << (imp.empty() ? " (no imatrix entry)" : "");
            ++matched;
            weighted += !imp.empty();
        }
        EXPECT_EQ(matched, 43) << qtype;   // 6 blocks × 7 Linears + the head
        EXPECT_EQ(weighted, 42) << qtype;  // the head has no entry (llama-imatrix skips output.weight)
    }
}

// Independent of llama.cpp: on rows with skewed importance the weighted search lowers the importance-weighted
// error against the unweighted codec (summed over rows), and every decoded value stays near its input.
TEST(WeightedQuant, LowersWeightedErrorAndStaysWithinFormatBounds) {
    std::mt19937 rng(7);
    std::normal_distribution<float> nd(0.0f, 0.02f);
    const int64_t rows = 32, n = 512;
    std::vector<float> x(static_cast<size_t>(rows * n)), imp(static_cast<size_t>(n));
    for (auto& v : x) v = nd(rng) * ((rng() % 29 == 0) ? 6.0f : 1.0f);
    for (auto& v : imp) v = std::pow(10.0f, std::uniform_real_distribution<float>(-3.0f, 2.0f)(rng));
    for (DType t : {DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q5_1, DType::Q2_K, DType::Q3_K, DType::Q4_K, DType::Q5_K,
                    DType::Q6_K, DType::IQ4_NL, DType::IQ4_XS}) {
        const DTypeTraits& tr = dtype_traits(t);
        std::vector<uint8_t> qw(*dtype_bytes(t, x.size())), qu(qw.size());
        quantize_rows_weighted(t, x.data(), qw.data(), rows, n, imp.data());
        quantize_rows_weighted(t, x.data(), qu.data(), rows, n, nullptr);
        std::vector<float> dw(x.size()), du(x.size());
        tr.to_float(qw.data(), dw.data(), int64_t(x.size()));
        tr.to_float(qu.data(), du.data(), int64_t(x.size()));
        double err_w = 0, err_u = 0;
        for (size_t i = 0; i < x.size(); ++i) {
            const double iw = imp[i % size_t(n)];
            err_w += iw * (dw[i] - x[i]) * (dw[i] - x[i]);
            err_u += iw * (du[i] - x[i]) * (du[i] - x[i]);
        }
        EXPECT_LT(err_w, err_u) << dtype_name(t);
        // Each decoded value lies within the block's range widened by one quantization step (max |x| / levels · 2).
        const int64_t block = tr.block_size;
        for (size_t b = 0; b < x.size() / size_t(block); ++b) {
            float amax = 0;
            for (int64_t j = 0; j < block; ++j) amax = std::max(amax, std::fabs(x[b * size_t(block) + size_t(j)]));
            for (int64_t j = 0; j < block; ++j) {
                const size_t i = b * size_t(block) + size_t(j);
                ASSERT_TRUE(std::isfinite(dw[i])) << dtype_name(t) << " at " << i;
                ASSERT_LE(std::fabs(dw[i]), 2.0f * amax + 1e-6f) << dtype_name(t) << " at " << i << ", x " << x[i];
            }
        }
    }
}

TEST(WeightedQuant, RejectsRowsThatAreNotWholeBlocks) {
    std::vector<float> x(100, 1.0f);
    std::vector<uint8_t> out(1024);
    EXPECT_THROW(quantize_row_weighted(DType::Q4_K, x.data(), out.data(), 100, nullptr), InvalidArgument);
    EXPECT_THROW(quantize_row_weighted(DType::IQ2_XXS, x.data(), out.data(), 256, nullptr), InvalidArgument);
}

// ---- collection ----

void expect_close_imatrix(const Imatrix& got, const Imatrix& want, double rel) {
    ASSERT_EQ(got.entries.size(), want.entries.size());
    for (const auto& [name, w] : want.entries) {
        ASSERT_TRUE(got.entries.count(name)) << name;
        const ImatrixEntry& g = got.entries.at(name);
        EXPECT_EQ(g.counts, w.counts) << name;
        ASSERT_EQ(g.sums.size(), w.sums.size()) << name;
        for (size_t j = 0; j < w.sums.size(); ++j)
            ASSERT_LE(std::fabs(double(g.sums[j]) - double(w.sums[j])), rel * std::fabs(double(w.sums[j])) + 1e-30)
                << name << " channel " << j << ": cq " << g.sums[j] << ", llama.cpp " << w.sums[j];
    }
}

TEST(ImatrixCollect, EqualsLlamaImatrixOnLlama256dAtCtx128) {
    const nlohmann::json ref = reference();
    auto model = Model::load(test::fixture(kModel));
    ImatrixOptions o;
    o.n_ctx = ref["ctx"];
    o.max_chunks = ref["chunks"];
    const Imatrix got = compute_imatrix(*model, test::fixture(kCalib), o);
    const Imatrix want = read_imatrix(llama_imatrix_gguf());
    EXPECT_EQ(got.chunk_count, want.chunk_count);
    EXPECT_EQ(got.chunk_size, want.chunk_size);
    EXPECT_EQ(got.entries.count("output.weight"), 0u);  // llama-imatrix skips the head unless --process-output
    expect_close_imatrix(got, want, 1e-4);
    // llama-imatrix with its defaults runs flash attention on f16 K/V: attn_output's input (and ffn_down's after
    // it) moves by up to ~7e-4 relative; the block inputs stay within 1e-4.
    expect_close_imatrix(got, read_imatrix(ref_dir() + "/" + ref["imatrix_default_gguf"].get<std::string>()), 2e-3);
    // --process-output adds the head (its own tensor here), with every token counted.
    o.process_output = true;
    const Imatrix with_head = compute_imatrix(*model, test::fixture(kCalib), o);
    ASSERT_EQ(with_head.entries.count("output.weight"), 1u);
    EXPECT_EQ(with_head.entries.at("output.weight").counts, want.entries.begin()->second.counts);
}

TEST(ImatrixCollect, RejectsTextShorterThanTwoChunksAndEncoders) {
    test::TempDir dir;
    const std::string text = dir.write("short.txt", "Once upon a time there was a cat.\n");
    auto model = Model::load(test::fixture(kModel));
    ImatrixOptions o;
    o.n_ctx = 128;
    EXPECT_THROW(compute_imatrix(*model, text, o), InvalidArgument);
}

// ---- file formats ----

TEST(ImatrixFiles, LegacyDatReadsAsTheSameImportanceAsGguf) {
    const Imatrix g = read_imatrix(llama_imatrix_gguf());
    const Imatrix d = read_imatrix(llama_imatrix_dat());
    EXPECT_FALSE(g.legacy);
    EXPECT_TRUE(d.legacy);
    EXPECT_EQ(d.chunk_count, g.chunk_count);
    ASSERT_EQ(d.entries.size(), g.entries.size());
    ASSERT_EQ(g.datasets.size(), 1u);
    EXPECT_NE(g.datasets[0].find("stories_calib.txt"), std::string::npos);
    for (const auto& [name, e] : g.entries) {
        const auto a = g.importance(name), b = d.importance(name);
        ASSERT_EQ(a.size(), b.size()) << name;
        for (size_t j = 0; j < a.size(); ++j) ASSERT_NEAR(a[j], b[j], 1e-6 * std::fabs(a[j])) << name << " " << j;
    }
}

TEST(ImatrixFiles, WriteThenReadRoundTripsBothFormats) {
    test::TempDir dir;
    const Imatrix g = read_imatrix(llama_imatrix_gguf());
    write_imatrix(g, dir.file("a.gguf"), ImatrixFormat::gguf);
    const Imatrix back = read_imatrix(dir.file("a.gguf"));
    EXPECT_EQ(back.datasets, g.datasets);
    EXPECT_EQ(back.chunk_count, g.chunk_count);
    EXPECT_EQ(back.chunk_size, g.chunk_size);
    expect_close_imatrix(back, g, 0.0);
    // .dat as llama-imatrix writes it: the same bytes as its own .dat of the same statistics
    write_imatrix(g, dir.file("a.dat"), ImatrixFormat::dat);
    EXPECT_EQ(test::read_bytes(dir.file("a.dat")), test::read_bytes(llama_imatrix_dat()));
    EXPECT_THROW(write_imatrix(read_imatrix(llama_imatrix_dat()), dir.file("b.gguf"), ImatrixFormat::gguf), InvalidArgument);
}

TEST(ImatrixFiles, CombiningAddsSumsAndCountsLikeLlamaImatrix) {
    const Imatrix g = read_imatrix(llama_imatrix_gguf());
    const Imatrix two = combine_imatrix_files({llama_imatrix_gguf(), llama_imatrix_dat()}, g.chunk_size);
    EXPECT_EQ(two.chunk_count, 2 * g.chunk_count);
    EXPECT_EQ(two.datasets.size(), 2u);
    for (const auto& [name, e] : g.entries) {
        const ImatrixEntry& c = two.entries.at(name);
        EXPECT_EQ(c.counts[0], 2 * e.counts[0]) << name;
        for (size_t j = 0; j < e.sums.size(); ++j) ASSERT_NEAR(c.sums[j], 2 * e.sums[j], 1e-5 * std::fabs(e.sums[j])) << name;
    }
    EXPECT_THROW(combine_imatrix_files({llama_imatrix_dat()}, 0), InvalidArgument);  // a .dat needs the chunk size
}

// ---- hostile files: one FormatError naming the file, never a crash ----

std::vector<uint8_t> le32(int32_t v) {
    std::vector<uint8_t> b(4);
    std::memcpy(b.data(), &v, 4);
    return b;
}
std::vector<uint8_t> cat(std::initializer_list<std::vector<uint8_t>> parts) {
    std::vector<uint8_t> out;
    for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
    return out;
}
std::vector<uint8_t> str(const std::string& s) { return {s.begin(), s.end()}; }

void expect_format_error(const std::vector<uint8_t>& bytes, const std::string& label, const std::string& fragment) {
    try {
        parse_imatrix(memory_source(bytes, label));
        ADD_FAILURE() << label << ": parsed without error";
    } catch (const FormatError& e) {
        const std::string what = e.what();
        EXPECT_NE(what.find(label), std::string::npos) << what;
        EXPECT_NE(what.find(fragment), std::string::npos) << label << ": " << what;
    }
}

TEST(ImatrixFiles, CorruptDatFilesGiveOneFormatError) {
    const auto one = [](float v) { std::vector<uint8_t> b(4); std::memcpy(b.data(), &v, 4); return b; };
    const auto entry = [&](const std::string& name, int32_t ncall, int32_t nval, std::vector<uint8_t> vals) {
        return cat({le32(int32_t(name.size())), str(name), le32(ncall), le32(nval), vals});
    };
    expect_format_error({}, "empty.dat", "file ends inside the entry count");
    expect_format_error(le32(0), "zero.dat", "entry count 0");
    expect_format_error(le32(-5), "negative.dat", "entry count -5");
    expect_format_error(cat({le32(1), le32(1 << 30)}), "name_len.dat", "name length");
    expect_format_error(cat({le32(1), le32(40), str("abc")}), "short_name.dat", "extends past the end");
    expect_format_error(cat({le32(1), le32(3), str("a\0b"), le32(1), le32(1), one(1)}), "nul.dat", "NUL byte");
    expect_format_error(cat({le32(1), entry("w", 1, -2, {})}), "nval.dat", "-2 values");
    expect_format_error(cat({le32(1), entry("w", 1, 1 << 29, one(1))}), "nval_big.dat", "extends past the end");
    expect_format_error(cat({le32(1), entry("w", 1, 1, one(NAN))}), "nan.dat", "non-finite");
    expect_format_error(cat({le32(2), entry("w", 1, 1, one(1)), entry("w", 1, 1, one(2))}), "dup.dat", "repeats the name");
    expect_format_error(cat({le32(1), entry("w", 1, 1, one(1)), le32(3), le32(99), str("x")}), "dataset.dat", "dataset name");
    expect_format_error(cat({le32(1), entry("w", 1, 1, one(1)), le32(3), le32(1), str("xy")}), "trailing.dat", "unexpected bytes");
    // every truncation of llama.cpp's own .dat file: parsed or one FormatError
    const std::vector<uint8_t> good = test::read_bytes(llama_imatrix_dat());
    for (size_t n = 0; n < good.size(); n += 7) {
        try {
            parse_imatrix(memory_source(std::vector<uint8_t>(good.begin(), good.begin() + long(n)), "cut.dat"));
        } catch (const FormatError&) {
        }
    }
}

std::vector<uint8_t> gguf_with(const std::function<void(gguf::Writer&)>& add, const std::vector<std::vector<uint8_t>>& data) {
    test::TempDir dir;
    gguf::Writer w;
    add(w);
    AtomicFile out(dir.file("x.gguf"));
    w.write(out, [&](size_t i, std::vector<uint8_t>& buf) { buf = data.at(i); });
    out.commit();
    return test::read_bytes(dir.file("x.gguf"));
}

TEST(ImatrixFiles, CorruptGgufFilesGiveOneFormatError) {
    const auto floats = [](std::vector<float> v) { std::vector<uint8_t> b(v.size() * 4); std::memcpy(b.data(), v.data(), b.size()); return b; };
    expect_format_error(gguf_with([](gguf::Writer& w) { w.add_tensor("a.in_sum2", {1, 4}, DType::F32); }, {floats({1, 2, 3, 4})}),
                        "nocounts.gguf", "sums but no counts");
    expect_format_error(gguf_with([](gguf::Writer& w) { w.add_tensor("a.counts", {1, 1}, DType::F32); }, {floats({1})}),
                        "nosums.gguf", "counts but no sums");
    expect_format_error(gguf_with([](gguf::Writer& w) { w.add_tensor("a.weight", {1, 4}, DType::F32); }, {floats({1, 2, 3, 4})}),
                        "other.gguf", "not an imatrix file");
    expect_format_error(gguf_with([](gguf::Writer& w) { w.set_string("general.type", "imatrix"); }, {}), "empty.gguf", "no tensors");
    expect_format_error(gguf_with([](gguf::Writer& w) {
                            w.add_tensor("a.in_sum2", {1, 4}, DType::F32);
                            w.add_tensor("a.counts", {1, 2}, DType::F16);
                        },
                        {floats({1, 2, 3, 4}), std::vector<uint8_t>(4)}),
                        "f16.gguf", "not f32");
    expect_format_error(gguf_with([](gguf::Writer& w) {
                            w.add_tensor("a.in_sum2", {1, 5}, DType::F32);
                            w.add_tensor("a.counts", {2, 1}, DType::F32);
                        },
                        {floats({1, 2, 3, 4, 5}), floats({1, 1})}),
                        "rows.gguf", "not a whole row");
    expect_format_error(gguf_with([](gguf::Writer& w) {
                            w.add_tensor("a.in_sum2", {1, 2}, DType::F32);
                            w.add_tensor("a.counts", {1, 1}, DType::F32);
                        },
                        {floats({1, 2}), floats({-3})}),
                        "negcount.gguf", "count");
    expect_format_error(gguf_with([](gguf::Writer& w) {
                            w.set_u32("imatrix.datasets", 3);
                            w.add_tensor("a.in_sum2", {1, 2}, DType::F32);
                            w.add_tensor("a.counts", {1, 1}, DType::F32);
                        },
                        {floats({1, 2}), floats({3})}),
                        "datasets.gguf", "imatrix.datasets");
    // truncations and flipped bytes of llama.cpp's own file: parsed or one FormatError
    const std::vector<uint8_t> good = test::read_bytes(llama_imatrix_gguf());
    for (size_t n = 0; n < good.size(); n += good.size() / 97 + 1) {
        try {
            parse_imatrix(memory_source(std::vector<uint8_t>(good.begin(), good.begin() + long(n)), "cut.gguf"));
        } catch (const FormatError&) {
        }
    }
    std::mt19937 rng(3);
    for (int i = 0; i < 300; ++i) {
        std::vector<uint8_t> bad = good;
        bad[rng() % 2048 % bad.size()] ^= uint8_t(1u << (rng() % 8));
        try {
            parse_imatrix(memory_source(bad, "flipped.gguf"));
        } catch (const FormatError&) {
        }
    }
}

// ---- the CLI ----

int run_cli(const std::string& args, std::string* out) {
    FILE* p = ::popen((std::string(CQ_CLI_PATH) + " " + args + " 2>&1").c_str(), "r");
    std::string text;
    char buf[4096];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) text.append(buf, n);
    const int status = ::pclose(p);
    if (out) *out = text;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

TEST(ImatrixCli, HelpListsEveryOptionWithItsDefault) {
    std::string help;
    ASSERT_EQ(run_cli("imatrix --help", &help), 0);
    for (const char* opt : {"-f,--file", "--ctx", "--chunks", "-o,--output", "--output-format", "--in-file", "--process-output", "--json"})
        EXPECT_NE(help.find(opt), std::string::npos) << opt << "\n" << help;
    EXPECT_NE(help.find("(default: 512)"), std::string::npos) << help;
    EXPECT_NE(help.find("(default: imatrix.gguf)"), std::string::npos) << help;
}

// cq quantize --imatrix with llama.cpp's own imatrix file writes, for every type with a weighted search, the bytes
// llama-quantize --pure --imatrix wrote (reference.json), through the whole command: rules, writer, threads.
TEST(QuantizeCli, ImatrixFileGivesLlamaQuantizesBytesForEveryWeightedType) {
    const nlohmann::json ref = reference()["llama_quantize"];
    test::TempDir dir;
    std::string log;
    const std::string f32 = dir.file("f32.gguf");
    ASSERT_EQ(run_cli("quantize '" + test::fixture(kModel) + "' " + f32 + " --type f32", &log), 0) << log;
    for (const auto& [qtype, tensors] : ref.items()) {
        const std::string type_name = std::string(dtype_name(*dtype_from_name(qtype)));
        const std::string out = dir.file(qtype + ".gguf");
        ASSERT_EQ(run_cli("quantize " + f32 + " " + out + " --type f32 --tensor-type '*.weight=" + type_name + "' --imatrix " + llama_imatrix_gguf() + " --json",
                          &log),
                  0)
            << log;
        const gguf::File file = gguf::File::open(out);
        EXPECT_EQ(file.get_string("quantize.imatrix.file").value_or(""), llama_imatrix_gguf());
        int matched = 0;
        for (const auto& info : file.tensors()) {
            if (!tensors.contains(info.name) || info.shape.size() != 2) continue;
            EXPECT_EQ(std::string(dtype_name(info.dtype)), tensors[info.name]["type"].get<std::string>()) << qtype << " " << info.name;
            const Tensor t = file.tensor(info);
            EXPECT_EQ(sha256_hex(t.data(), t.nbytes()), tensors[info.name]["sha256"].get<std::string>()) << qtype << " " << info.name;
            ++matched;
        }
        EXPECT_EQ(matched, 44) << qtype;  // 6 blocks × 7 Linears, the head and the token embedding
    }
}

// A wrong-sized imatrix entry is refused by name, and the output is not left behind.
TEST(QuantizeCli, ImatrixOfAnotherModelIsRefused) {
    test::TempDir dir;
    Imatrix other;
    other.chunk_size = 16;
    other.entries["blk.0.attn_q.weight"] = ImatrixEntry{std::vector<float>(100, 1.0f), {4}};
    write_imatrix(other, dir.file("other.gguf"), ImatrixFormat::gguf);
    std::string log;
    EXPECT_NE(run_cli("quantize '" + test::fixture(kModel) + "' " + dir.file("out.gguf") + " --type q4_k_m --imatrix " + dir.file("other.gguf"), &log), 0);
    EXPECT_NE(log.find("blk.0.attn_q.weight"), std::string::npos) << log;
    EXPECT_FALSE(std::ifstream(dir.file("out.gguf")).good());
}

TEST(ImatrixCli, CollectsWritesBothFormatsAndCombines) {
    test::TempDir dir;
    const std::string base = "imatrix '" + test::fixture(kModel) + "' -f '" + test::fixture(kCalib) + "' --ctx 64 --chunks 3";
    std::string out;
    ASSERT_EQ(run_cli(base + " -o " + dir.file("a.gguf") + " --json", &out), 0) << out;
    const auto j = nlohmann::json::parse(out);
    EXPECT_EQ(j["chunk_count"], 3);
    EXPECT_EQ(j["entries"].size(), 42u);
    ASSERT_EQ(run_cli(base + " -o " + dir.file("a.dat") + " --output-format dat", &out), 0) << out;
    const Imatrix g = read_imatrix(dir.file("a.gguf"));
    EXPECT_EQ(g.entries.at("blk.0.attn_q.weight").counts, std::vector<int64_t>{3 * 64});
    ASSERT_EQ(run_cli("imatrix --ctx 64 --in-file " + dir.file("a.gguf") + " --in-file " + dir.file("a.dat") + " -o " + dir.file("c.gguf"), &out), 0)
        << out;
    const Imatrix c = read_imatrix(dir.file("c.gguf"));
    EXPECT_EQ(c.chunk_count, 6);
    EXPECT_EQ(c.entries.at("blk.5.ffn_down.weight").counts, std::vector<int64_t>{6 * 64});
    EXPECT_EQ(run_cli("imatrix --ctx 64 --in-file " + dir.file("missing.gguf"), &out), 1) << out;
    EXPECT_EQ(run_cli("imatrix", &out), 2) << out;
}

}  // namespace
}  // namespace cq
