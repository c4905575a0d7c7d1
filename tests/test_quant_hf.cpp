// cq quantize with an HF directory as input: the conversion is checked against files llama.cpp made
// (the official stories260K GGUF for tensor bytes, names and un-permuted q/k; llama.cpp's own GPT-2
// vocabulary GGUF for the BPE tokenizer keys), quantized outputs against quantizing that GGUF, the
// converted files' perplexity against the HF originals, and bad directories against clear errors.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "cq/error.h"
#include "cq/eval.h"
#include "cq/io/gguf.h"
#include "cq/io/safetensors.h"
#include "cq/llm.h"
#include "cq/quantize.h"
#include "test_support.h"

namespace cq {
namespace {

namespace fs = std::filesystem;
using test::TempDir;

const std::string kStoriesHf = "models/stories260K-hf";
const std::string kStoriesGguf = "models/stories260K-gguf/stories260K.gguf";
const std::string kGpt2Hf = "models/gpt2-tiny-stories";

std::vector<std::string> strings(const gguf::File& f, const std::string& key) {
    const gguf::Value* v = f.find(key);
    if (!v || !v->as_array()) return {};
    std::vector<std::string> out;
    for (const auto& item : v->as_array()->items) out.push_back(*item.as_string());
    return out;
}

std::vector<double> numbers(const gguf::File& f, const std::string& key) {
    const gguf::Value* v = f.find(key);
    if (!v || !v->as_array()) return {};
    std::vector<double> out;
    for (const auto& item : v->as_array()->items) out.push_back(*item.as_double());
    return out;
}

std::string quantize(const std::string& input, const std::string& output, const std::string& type) {
    QuantizeOptions o;
    o.type = type;
    quantize_model(input, output, o);
    return output;
}

// Every tensor of `a` is in `b` with the same shape, type and bytes, and the other way round.
void expect_same_tensors(const std::string& a_path, const std::string& b_path) {
    const gguf::File a = gguf::File::open(a_path), b = gguf::File::open(b_path);
    EXPECT_EQ(a.tensors().size(), b.tensors().size());
    for (const auto& t : a.tensors()) {
        const gguf::TensorInfo* u = b.find_tensor(t.name);
        ASSERT_NE(u, nullptr) << t.name << " is missing from " << b_path;
        EXPECT_EQ(t.shape, u->shape) << t.name;
        EXPECT_EQ(t.dtype, u->dtype) << t.name << ": " << dtype_name(t.dtype) << " vs " << dtype_name(u->dtype);
        ASSERT_EQ(t.nbytes, u->nbytes) << t.name;
        EXPECT_EQ(std::memcmp(a.tensor(t).data(), b.tensor(*u).data(), t.nbytes), 0) << t.name << ": bytes differ";
    }
}

std::string valid_text() {
    const auto bytes = test::read_bytes(test::fixture("data/tinystories_valid_subset.txt"));
    return std::string(bytes.begin(), bytes.end());
}

double perplexity(const std::string& model_path, int64_t n_ctx, int64_t chunks) {
    LoadOptions lo;
    lo.n_ctx = n_ctx;
    auto model = LanguageModel::load(model_path, lo);
    PerplexityOptions po;
    po.n_ctx = n_ctx;
    po.max_chunks = chunks;
    return evaluate_perplexity(*model, valid_text(), po).ppl;
}

// The official stories260K GGUF holds the llama2.c weights with llama.cpp's names and Meta's row order;
// the HF fixture holds the same weights (the README's cross-check: 38 tensors bit-identical, the 10 q/k
// ones permuted for rotate_half). So a plain F32 conversion must give every tensor byte for byte.
TEST(QuantHf, StoriesF32ConversionIsTheOfficialGgufByteForByte) {
    TempDir dir;
    const std::string out = quantize(test::fixture(kStoriesHf), dir.file("s.gguf"), "f32");
    expect_same_tensors(out, test::fixture(kStoriesGguf));
    // ... which needs the un-permutation: HF's own q/k bytes are not the GGUF's.
    const auto hf = safetensors::Model::open(test::fixture(kStoriesHf));
    const gguf::File official = gguf::File::open(test::fixture(kStoriesGguf));
    for (const char* qk : {"q", "k"}) {
        const Tensor a = hf.tensor(std::string("model.layers.0.self_attn.") + qk + "_proj.weight");
        const Tensor b = official.tensor(std::string("blk.0.attn_") + qk + ".weight");
        ASSERT_EQ(a.nbytes(), b.nbytes());
        EXPECT_NE(std::memcmp(a.data(), b.data(), a.nbytes()), 0) << qk;
    }

    const gguf::File f = gguf::File::open(out), ref = gguf::File::open(test::fixture(kStoriesGguf));
    EXPECT_EQ(f.architecture(), "llama");
    for (const char* key : {"llama.embedding_length", "llama.feed_forward_length", "llama.block_count", "llama.attention.head_count",
                            "llama.attention.head_count_kv", "llama.rope.dimension_count", "tokenizer.ggml.bos_token_id",
                            "tokenizer.ggml.eos_token_id"})
        EXPECT_EQ(f.get_int(key), ref.get_int(key)) << key;
    EXPECT_EQ(f.get_double("llama.attention.layer_norm_rms_epsilon"), ref.get_double("llama.attention.layer_norm_rms_epsilon"));
    // The fixture was converted from llama2.c (context 2048 by that converter's default); the HF config says 512.
    EXPECT_EQ(f.get_int("llama.context_length"), 512);
    EXPECT_EQ(f.get_string("tokenizer.ggml.model"), "llama");

    // Tokenizer: the same pieces; the same scores and types except for the three pieces that
    // tokenizer_config.json's added_tokens_decoder lists (<unk>, <s>, </s>, all "special"), which
    // convert_hf_to_gguf.py overrides to CONTROL with score -1000 (the fixture, converted from llama2.c's
    // tokenizer.bin, has score 0 and <unk> UNKNOWN).
    EXPECT_EQ(strings(f, "tokenizer.ggml.tokens"), strings(ref, "tokenizer.ggml.tokens"));
    const auto scores = numbers(f, "tokenizer.ggml.scores"), ref_scores = numbers(ref, "tokenizer.ggml.scores");
    const auto types = numbers(f, "tokenizer.ggml.token_type"), ref_types = numbers(ref, "tokenizer.ggml.token_type");
    ASSERT_EQ(scores.size(), 512u);
    ASSERT_EQ(ref_scores.size(), 512u);
    ASSERT_EQ(types.size(), 512u);
    for (size_t i = 0; i < 512; ++i) {
        if (i < 3) {
            EXPECT_EQ(scores[i], -1000.0) << i;
            EXPECT_EQ(types[i], 3.0) << i;  // CONTROL
        } else {
            EXPECT_EQ(scores[i], ref_scores[i]) << "token " << i;
            EXPECT_EQ(types[i], ref_types[i]) << "token " << i;
        }
    }
    ASSERT_NE(f.find("tokenizer.ggml.add_bos_token"), nullptr);
    EXPECT_TRUE(std::get<bool>(f.find("tokenizer.ggml.add_bos_token")->data));
    // Provenance: the directory's name and the hash over its weight file's digest.
    EXPECT_EQ(f.get_string("cq.quantize.source_file"), "stories260K-hf");
    EXPECT_EQ(f.get_string("cq.quantize.source_sha256")->size(), 64u);
}

// Quantizing the HF directory gives the same tensors as quantizing the official GGUF.
TEST(QuantHf, StoriesQuantizedFromHfEqualsQuantizedFromGguf) {
    TempDir dir;
    for (const std::string type : {"q8_0", "q4_0"}) {
        const std::string a = quantize(test::fixture(kStoriesHf), dir.file("hf-" + type + ".gguf"), type);
        const std::string b = quantize(test::fixture(kStoriesGguf), dir.file("gguf-" + type + ".gguf"), type);
        SCOPED_TRACE(type);
        expect_same_tensors(a, b);
    }
}

TEST(QuantHf, ConvertedStoriesHasTheHfPerplexity) {
    TempDir dir;
    const std::string out = quantize(test::fixture(kStoriesHf), dir.file("s.gguf"), "f32");
    const double hf = perplexity(test::fixture(kStoriesHf), 128, 4), converted = perplexity(out, 128, 4);
    EXPECT_NEAR(converted, hf, 1e-4 * hf);
}

// The GPT-2 tokenizer keys equal llama.cpp's own GPT-2 vocabulary GGUF (made by its converter from
// openai-community/gpt2, whose vocab.json and merges this model uses); the converted model scores as the
// HF original: F32 within 1e-4, Q8_0 within 1 %.
TEST(QuantHf, Gpt2ConversionMatchesLlamaCppVocabAndHfPerplexity) {
    TempDir dir;
    const std::string f32 = quantize(test::fixture(kGpt2Hf), dir.file("g.gguf"), "f32");
    const gguf::File f = gguf::File::open(f32);
    const gguf::File vocab = gguf::File::open(test::fixture("tokenizers/llamacpp_vocab/ggml-vocab-gpt-2.gguf"));
    EXPECT_EQ(f.architecture(), "gpt2");
    EXPECT_EQ(f.get_string("tokenizer.ggml.model"), vocab.get_string("tokenizer.ggml.model"));
    EXPECT_EQ(f.get_string("tokenizer.ggml.pre"), vocab.get_string("tokenizer.ggml.pre"));
    EXPECT_EQ(strings(f, "tokenizer.ggml.tokens"), strings(vocab, "tokenizer.ggml.tokens"));
    EXPECT_EQ(numbers(f, "tokenizer.ggml.token_type"), numbers(vocab, "tokenizer.ggml.token_type"));
    EXPECT_EQ(strings(f, "tokenizer.ggml.merges"), strings(vocab, "tokenizer.ggml.merges"));
    EXPECT_EQ(f.get_int("tokenizer.ggml.bos_token_id"), vocab.get_int("tokenizer.ggml.bos_token_id"));
    EXPECT_EQ(f.get_int("tokenizer.ggml.eos_token_id"), vocab.get_int("tokenizer.ggml.eos_token_id"));
    EXPECT_EQ(f.get_int("gpt2.context_length"), 256);
    EXPECT_EQ(f.get_int("gpt2.feed_forward_length"), 512);
    EXPECT_EQ(f.find_tensor("output.weight"), nullptr);  // tied: llama.cpp uses token_embd
    // Conv1D [in, out] → GGUF [out, in]
    EXPECT_EQ(f.find_tensor("blk.0.attn_qkv.weight")->shape, (std::vector<int64_t>{384, 128}));
    EXPECT_EQ(f.find_tensor("blk.0.ffn_down.weight")->shape, (std::vector<int64_t>{128, 512}));

    const double hf = perplexity(test::fixture(kGpt2Hf), 128, 4);
    EXPECT_NEAR(perplexity(f32, 128, 4), hf, 1e-4 * hf);
    const std::string q8 = quantize(test::fixture(kGpt2Hf), dir.file("g8.gguf"), "q8_0");
    EXPECT_NEAR(perplexity(q8, 128, 4), hf, 1e-2 * hf);
}

// A writable copy of the stories260K HF directory under `dir`.
std::string copy_stories(const TempDir& dir, const std::string& name) {
    const fs::path to = fs::path(dir.path()) / name;
    fs::create_directories(to);
    for (const auto& e : fs::directory_iterator(test::fixture(kStoriesHf))) {
        fs::copy_file(e.path(), to / e.path().filename());
        fs::permissions(to / e.path().filename(), fs::perms::owner_write, fs::perm_options::add);
    }
    return to.string();
}

// Rewrites the first `from` after `anchor` in a file's bytes with `to` (same length, so a safetensors
// header keeps its size and offsets).
void patch_file(const std::string& file, const std::string& anchor, const std::string& from, const std::string& to) {
    ASSERT_EQ(from.size(), to.size());
    auto bytes = test::read_bytes(file);
    auto it = std::search(bytes.begin(), bytes.end(), anchor.begin(), anchor.end());
    ASSERT_NE(it, bytes.end()) << anchor;
    it = std::search(it, bytes.end(), from.begin(), from.end());
    ASSERT_NE(it, bytes.end()) << from;
    std::copy(to.begin(), to.end(), it);
    std::ofstream(file, std::ios::binary | std::ios::trunc)
        .write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

void expect_error_naming(const std::string& input, const std::string& output, const std::vector<std::string>& words) {
    QuantizeOptions o;
    o.type = "q8_0";
    try {
        quantize_model(input, output, o);
        ADD_FAILURE() << input << " must be refused";
    } catch (const Error& e) {
        for (const auto& w : words) EXPECT_NE(std::string(e.what()).find(w), std::string::npos) << "'" << w << "' not in: " << e.what();
    }
    EXPECT_FALSE(fs::exists(output)) << "a partial output was left";
    for (const auto& e : fs::directory_iterator(fs::path(output).parent_path()))
        EXPECT_EQ(e.path().filename().string().find(".tmp."), std::string::npos) << e.path();
}

TEST(QuantHf, RefusesUnsupportedOrBrokenDirectories) {
    TempDir dir;
    const fs::path qwen = fs::path(dir.path()) / "qwen";
    fs::create_directories(qwen);
    std::ofstream(qwen / "config.json") << R"({"model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"]})";
    try {
        quantize(qwen.string(), dir.file("q.gguf"), "q8_0");
        ADD_FAILURE() << "qwen2 must be refused";
    } catch (const Unsupported& e) {
        EXPECT_NE(std::string(e.what()).find(qwen.string()), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find("'qwen2'"), std::string::npos) << e.what();
    }
    EXPECT_FALSE(fs::exists(dir.file("q.gguf")));

    // A missing tensor (renamed to a name no llama layer has): named, and no output.
    const std::string missing = copy_stories(dir, "missing");
    patch_file(missing + "/model.safetensors", "\"model.layers.3.mlp.up_proj.weight\"", "up_proj", "xx_proj");
    expect_error_naming(missing, dir.file("m.gguf"), {"model.layers.3.mlp.up_proj.weight", "missing"});

    // An unknown tensor (the optional lm_head renamed): named, and no output.
    const std::string unknown = copy_stories(dir, "unknown");
    patch_file(unknown + "/model.safetensors", "\"lm_head.weight\"", "lm_head", "lm_hexd");
    expect_error_naming(unknown, dir.file("u.gguf"), {"lm_hexd.weight", "model.safetensors"});

    // A dtype cq does not convert (F32 relabelled I32: same size, so the file stays valid).
    const std::string dtype = copy_stories(dir, "dtype");
    patch_file(dtype + "/model.safetensors", "\"model.norm.weight\"", "\"F32\"", "\"I32\"");
    expect_error_naming(dtype, dir.file("d.gguf"), {"model.norm.weight", "I32", "model.safetensors"});

    // A misshapen tensor: config.json's intermediate_size disagrees with the MLP weights.
    const std::string shape = copy_stories(dir, "shape");
    {
        std::ifstream in(shape + "/config.json");
        std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        const std::string from = "\"intermediate_size\": 172", to = "\"intermediate_size\": 176";
        text.replace(text.find(from), from.size(), to);
        std::ofstream(shape + "/config.json", std::ios::trunc) << text;
    }
    expect_error_naming(shape, dir.file("s.gguf"), {"model.layers.0.mlp.gate_proj.weight", "[172, 64]", "[176, 64]", "model.safetensors"});
}

}  // namespace
}  // namespace cq
