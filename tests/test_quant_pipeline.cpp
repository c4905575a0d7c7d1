// cq quantize end to end on stories260K: the type plan matches llama-quantize's (fallback counts
// from ../shared/peers/README.md), quantized files evaluate to llama.cpp's perplexities on the
// peers' eval text (0.1 %), provenance is recorded, rules override presets, bad input is refused.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "cq/error.h"
#include "cq/eval.h"
#include "cq/io/gguf.h"
#include "cq/io/gguf_writer.h"
#include "cq/quantize.h"
#include "test_support.h"

namespace cq {
namespace {

namespace fs = std::filesystem;

using test::TempDir;

const std::string kStories = "models/stories260K-gguf/stories260K.gguf";

std::string peers_eval_text() {
    const auto bytes = test::read_bytes(test::fixtures_dir() + "/../peers/eval_text.txt");
    std::string text(bytes.begin(), bytes.end());
    if (!text.empty() && text.back() == '\n') text.pop_back();
    return text;
}

nlohmann::json llamacpp_presets() {
    std::ifstream in(test::tests_dir() + "/expected/llamacpp_presets/stories260K.json");
    return nlohmann::json::parse(in)["presets"];
}

// Every preset gives each tensor the type llama-quantize gave it, and the tensor bytes are identical
// (on stories260K every quantized tensor ends up in a legacy format or F16, via the fallbacks).
TEST(QuantPipeline, SameTypesAndBytesAsLlamaQuantize) {
    TempDir dir;
    const nlohmann::json presets = llamacpp_presets();
    for (const auto& [preset, expected] : presets.items()) {
        QuantizeOptions o;
        o.type = preset;
        const std::string out = dir.file(preset + ".gguf");
        const auto r = quantize_model(test::fixture(kStories), out, o);
        EXPECT_EQ(r.tensor_bytes_out, expected["tensor_bytes"].get<uint64_t>()) << preset;
        const gguf::File f = gguf::File::open(out);
        for (const auto& t : f.tensors()) {
            EXPECT_EQ(std::string(dtype_name(t.dtype)), expected["types"][t.name].get<std::string>()) << preset << " " << t.name;
            EXPECT_EQ(test::crc32(f.tensor(t).data(), t.nbytes), expected["crc32"][t.name].get<uint32_t>())
                << preset << " " << t.name << " (" << dtype_name(t.dtype) << ") bytes differ from llama-quantize's";
        }
        EXPECT_EQ(f.get_string("cq.quantize.source_sha256"), "270cba1bd5109f42d03350f60406024560464db173c0e387d91f0426d3bd256d");
        EXPECT_EQ(f.get_string("cq.quantize.type"), preset);
    }
}

struct Case {
    std::string type;
    double llamacpp_ppl;  // llama-perplexity -c 128 -b 128 -t 2 on peers/eval_text.txt, llama.cpp 80fb11ac, its own file
    double tolerance;     // relative
};

TEST(QuantPipeline, PerplexityOfQuantizedFilesMatchesLlamaCpp) {
    TempDir dir;
    // Open numerics gaps, kept visible: Q4_0 is 0.19 % off (cq 3.9634) although the files are
    // byte-identical and llama.cpp scores both the same; Q4_K_M (on stories260K: Q5_0/Q8_0/F16 tensors)
    // is 0.07 % off with the AVX2 kernels but 0.15 % with CQ_ISA=ref. Q8_0 agrees within 0.03 %.
    const Case cases[] = {{"q8_0", 3.6434, 1e-3}, {"q4_0", 3.9559, 3e-3}, {"q4_k_m", 3.7127, 2e-3}};
    const std::string text = peers_eval_text();
    for (const auto& c : cases) {
        QuantizeOptions o;
        o.type = c.type;
        const std::string out = dir.file(c.type + ".gguf");
        quantize_model(test::fixture(kStories), out, o);
        LoadOptions lo;
        lo.n_ctx = 128;
        auto model = LanguageModel::load(out, lo);
        PerplexityOptions po;
        po.n_ctx = 128;
        const auto p = evaluate_perplexity(*model, text, po);
        EXPECT_NEAR(p.ppl, c.llamacpp_ppl, c.tolerance * c.llamacpp_ppl) << c.type;
    }
}

TEST(QuantPipeline, LaterRulesWinAndOutputIsDeterministic) {
    TempDir dir;
    QuantizeOptions o;
    o.type = "q4_0";
    o.tensor_types = {"blk.*.attn_q.weight=q8_0", "blk.0.attn_q.weight=f16"};
    const auto r = quantize_model(test::fixture(kStories), dir.file("a.gguf"), o);
    for (const auto& t : r.tensors) {
        if (t.name == "blk.0.attn_q.weight") EXPECT_EQ(t.chosen, DType::F16);
        else if (t.name.find("attn_q.weight") != std::string::npos) EXPECT_EQ(t.chosen, DType::Q8_0) << t.name;
        else if (t.name.find("norm") != std::string::npos) EXPECT_EQ(t.chosen, DType::F32) << t.name;
    }
    quantize_model(test::fixture(kStories), dir.file("b.gguf"), o);
    EXPECT_EQ(test::read_bytes(dir.file("a.gguf")), test::read_bytes(dir.file("b.gguf")));
}

TEST(QuantPipeline, RefusesBadInput) {
    TempDir dir;
    QuantizeOptions o;
    o.type = "q4_0";
    EXPECT_THROW(quantize_model(test::fixture(kStories), test::fixture(kStories), o), InvalidArgument);
    o.type = "q3_x";
    EXPECT_THROW(quantize_model(test::fixture(kStories), dir.file("x.gguf"), o), InvalidArgument);
    o.type = "q4_0";
    o.tensor_types = {"no-equals-sign"};
    EXPECT_THROW(quantize_model(test::fixture(kStories), dir.file("x.gguf"), o), InvalidArgument);
    EXPECT_FALSE(fs::exists(dir.file("x.gguf")));

    // A tensor with a NaN is refused by name, an all-zero one quantizes to zeros (no NaN scales).
    gguf::Writer w;
    w.set_string("general.architecture", "llama");
    w.add_tensor("blk.0.attn_q.weight", {2, 32}, DType::F32);
    w.add_tensor("blk.0.attn_k.weight", {2, 32}, DType::F32);
    {
        AtomicFile f(dir.file("in.gguf"));
        w.write(f, [](size_t i, std::vector<uint8_t>& buf) {
            std::vector<float> v(64, 0.0f);
            if (i == 1) v[40] = std::nanf("");
            buf.assign(reinterpret_cast<uint8_t*>(v.data()), reinterpret_cast<uint8_t*>(v.data() + 64));
        });
        f.commit();
    }
    o.tensor_types.clear();
    try {
        quantize_model(dir.file("in.gguf"), dir.file("out.gguf"), o);
        FAIL() << "a NaN weight must be refused";
    } catch (const InvalidArgument& e) {
        EXPECT_NE(std::string(e.what()).find("blk.0.attn_k.weight"), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find("row 1"), std::string::npos) << e.what();
    }
    EXPECT_FALSE(fs::exists(dir.file("out.gguf")));
    o.tensor_types = {"blk.0.attn_k.weight=f32"};  // keep the NaN tensor as it is
    quantize_model(dir.file("in.gguf"), dir.file("out.gguf"), o);
    const gguf::File q = gguf::File::open(dir.file("out.gguf"));
    const auto zeros = q.tensor("blk.0.attn_q.weight").to_float();
    for (float v : zeros) EXPECT_EQ(v, 0.0f);
}

}  // namespace
}  // namespace cq
