// CLIP (issue 20) against Hugging Face transformers: two tiny random CLIPModels from scripts/make_family_references.py
// (tests/data/families/clip-*), their tokenizer ids, text / image embeddings and logits_per_image to 1e-4 max abs, the
// zero-shot classifier, the same bytes at 1 and 3 threads, W8A8 / 4-bit weights, the container, and clear errors.
// Suites are named families_clip so that `ctest -R families` selects them.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>

#include <nlohmann/json.hpp>

#include "cq/classify.h"
#include "cq/encoder.h"
#include "cq/error.h"
#include "cq/quantize_encoder.h"
#include "cq/thread_pool.h"
#include "cq/w8a8.h"
#include "test_support.h"

namespace cq {
namespace {

namespace fs = std::filesystem;

std::string clip_dir(const std::string& name) { return test::tests_dir() + "/data/families/" + name; }

nlohmann::json read_json(const std::string& path) {
    std::ifstream in(path);
    return nlohmann::json::parse(in);
}

std::vector<double> flatten(const nlohmann::json& j) {
    std::vector<double> out;
    const std::function<void(const nlohmann::json&)> walk = [&](const nlohmann::json& x) {
        if (x.is_array())
            for (const auto& y : x) walk(y);
        else
            out.push_back(x.get<double>());
    };
    walk(j);
    return out;
}

double max_abs_diff(const std::vector<float>& got, const nlohmann::json& expected) {
    const std::vector<double> flat = flatten(expected);
    EXPECT_EQ(flat.size(), got.size());
    double worst = 0;
    for (size_t i = 0; i < std::min(flat.size(), got.size()); ++i) worst = std::max(worst, std::abs(got[i] - flat[i]));
    return worst;
}

std::vector<uint8_t> pixels_of(const nlohmann::json& ref) {
    std::vector<uint8_t> out;
    for (const auto& image : ref["pixels_u8"])
        for (const auto& v : image) out.push_back(static_cast<uint8_t>(v.get<int>()));
    return out;
}

std::vector<int32_t> ints(const nlohmann::json& rows) {
    std::vector<int32_t> out;
    for (const auto& row : rows)
        for (const auto& v : row) out.push_back(v.get<int32_t>());
    return out;
}

struct ClipOutputs {
    std::vector<float> text, image, logits;
};

ClipOutputs run_clip(EncoderModel& m, const nlohmann::json& ref) {
    const auto texts = ref["texts"].get<std::vector<std::string>>();
    const TextBatch batch = m.tokenize(texts, m.config().clip_text.max_positions);
    const std::vector<uint8_t> pixels = pixels_of(ref);
    const int64_t n_images = static_cast<int64_t>(ref["pixels_u8"].size()), E = m.config().clip_text.projection_dim;
    ClipOutputs o;
    o.text.resize(static_cast<size_t>(batch.batch * E));
    o.image.resize(static_cast<size_t>(n_images * E));
    o.logits.resize(static_cast<size_t>(n_images * batch.batch));
    m.text_embeddings(batch, o.text.data());
    m.image_embeddings(pixels.data(), n_images, o.image.data());
    m.clip_logits(pixels.data(), n_images, batch, o.logits.data());
    return o;
}

void expect_clip_matches(const std::string& name, int64_t vision_layers, int64_t text_layers) {
    const auto model = EncoderModel::load(clip_dir(name));
    const nlohmann::json ref = read_json(clip_dir(name) + "/reference.json");
    ASSERT_TRUE(model->is_clip());
    EXPECT_EQ(model->n_blocks(), vision_layers + text_layers);
    EXPECT_EQ(static_cast<int64_t>(model->linears().size()), 1 + 6 * (vision_layers + text_layers) + 2) << name;

    // Tokenizer: the padded batch and the checks (case, punctuation, contractions, digits, accents, whitespace, a
    // special token in the text, the empty text) as transformers' CLIPTokenizer gives them.
    const auto texts = ref["texts"].get<std::vector<std::string>>();
    const TextBatch batch = model->tokenize(texts, model->config().clip_text.max_positions);
    EXPECT_EQ(batch.ids, ints(ref["input_ids"])) << name;
    EXPECT_EQ(batch.mask, ints(ref["attention_mask"])) << name;
    const auto& checks = ref["tokenizer_checks"];
    for (size_t i = 0; i < checks["texts"].size(); ++i) {
        const std::string text = checks["texts"][i].get<std::string>();
        EXPECT_EQ(model->tokenizer()->encode(text, true), checks["input_ids"][i].get<std::vector<int32_t>>()) << name << ": '" << text << "'";
    }

    const ClipOutputs o = run_clip(*model, ref);
    const double text = max_abs_diff(o.text, ref["text_embeds"]), image = max_abs_diff(o.image, ref["image_embeds"]),
                 logits = max_abs_diff(o.logits, ref["logits_per_image"]);
    EXPECT_LT(text, 1e-4) << name;
    EXPECT_LT(image, 1e-4) << name;
    EXPECT_LT(logits, 1e-4) << name;
    std::printf("%s: max |Δ| vs transformers: text_embeds %.3g, image_embeds %.3g, logits_per_image %.3g\n", name.c_str(), text, image,
                logits);

    // Each text alone, unpadded, gives the embedding it had in the padded batch.
    const int64_t E = model->config().clip_text.projection_dim;
    for (size_t i = 0; i < texts.size(); ++i) {
        const TextBatch one = model->tokenize(std::span(&texts[i], 1), model->config().clip_text.max_positions);
        std::vector<float> e(static_cast<size_t>(E));
        model->text_embeddings(one, e.data());
        for (int64_t d = 0; d < E; ++d) EXPECT_NEAR(e[static_cast<size_t>(d)], o.text[i * static_cast<size_t>(E) + static_cast<size_t>(d)], 1e-5) << name;
    }

    ThreadPool::set_global_threads(1);
    const ClipOutputs one = run_clip(*model, ref);
    ThreadPool::set_global_threads(3);
    const ClipOutputs three = run_clip(*model, ref);
    ThreadPool::set_global_threads(0);
    EXPECT_EQ(one.logits, three.logits) << name;
    EXPECT_EQ(one.text, three.text) << name;
    EXPECT_EQ(one.image, three.image) << name;
}

TEST(families_clip, TinyMatchesTransformers) {
    // text: 32 wide, 2 heads, 2 layers, quick_gelu, eos_token_id the tokenizer's; vision: 32×32×3 in 8×8 patches, 40 wide,
    // 4 heads, 2 layers; projections to 24
    expect_clip_matches("clip-tiny-random", 2, 2);
}

TEST(families_clip, SecondConfigMatchesTransformers) {
    // text: 24 wide, 3 heads, 3 layers, exact GELU, eps 1e-6, legacy eos_token_id 2; vision: 28×28×1 in 7×7 patches,
    // 32 wide, 2 heads, 1 layer, tanh GELU; projections to 16
    expect_clip_matches("clip-mnist-random-b", 1, 3);
}

TEST(families_clip, ZeroShotClassifierIsLogitsPerImageOverClassPrompts) {
    // clip-mnist-random-b's reference texts are "a photo of a {label}." for its ten id2label names, so classify_images
    // (zero-shot over those prompts) must give transformers' logits_per_image.
    const auto model = EncoderModel::load(clip_dir("clip-mnist-random-b"));
    const nlohmann::json ref = read_json(clip_dir("clip-mnist-random-b") + "/reference.json");
    ASSERT_EQ(model->config().num_labels, 10);
    EXPECT_EQ(model->config().labels[3], "three");
    const std::vector<uint8_t> pixels = pixels_of(ref);
    const int64_t n = static_cast<int64_t>(ref["pixels_u8"].size());
    std::vector<float> logits(static_cast<size_t>(n * 10));
    model->classify_images(pixels.data(), n, logits.data());
    EXPECT_LT(max_abs_diff(logits, ref["logits_per_image"]), 1e-4);

    // Other classes and template: the prompts change, so do the logits.
    model->set_zero_shot_classes({"cat", "dog"}, "a blurry photo of a {}.");
    std::vector<float> two(static_cast<size_t>(n * 2));
    model->classify_images(pixels.data(), n, two.data());
    EXPECT_NE(two[0], logits[0]);
    EXPECT_THROW(model->set_zero_shot_classes({"cat"}, "no placeholder"), InvalidArgument);
    EXPECT_THROW(model->set_zero_shot_classes({}), InvalidArgument);

    // clip-tiny-random names no classes (HF's LABEL_i placeholders are not class names): a clear error.
    const auto tiny = EncoderModel::load(clip_dir("clip-tiny-random"));
    EXPECT_EQ(tiny->config().num_labels, 0);
    std::vector<uint8_t> image(32 * 32 * 3, 128);
    std::vector<float> out(8);
    try {
        tiny->classify_images(image.data(), 1, out.data());
        ADD_FAILURE() << "classify_images without class names did not throw";
    } catch (const InvalidArgument& e) {
        EXPECT_NE(std::string(e.what()).find("class names"), std::string::npos) << e.what();
    }
}

TEST(families_clip, LayersNameBothTowersAndTheProjections) {
    EXPECT_TRUE(is_encoder_model(clip_dir("clip-tiny-random")));  // the CLI (cq bench) routes CLIP to the encoder engine
    const auto model = EncoderModel::load(clip_dir("clip-tiny-random"));
    std::vector<std::string> names;
    for (const LayerInfo& l : model->layers()) names.push_back(l.name);
    for (const char* n : {"vision_model.embeddings.patch_embedding", "vision_model.pre_layrnorm", "vision_model.post_layernorm",
                          "vision_model.encoder.layers.1.self_attn.q_proj", "text_model.encoder.layers.1.mlp.fc2",
                          "text_model.final_layer_norm", "visual_projection", "text_projection",
                          "text_model.embeddings.token_embedding"})
        EXPECT_NE(std::find(names.begin(), names.end(), n), names.end()) << n;
    // text blocks are numbered after the vision blocks
    for (const Linear* l : model->linears())
        if (l->name.starts_with("text_model.encoder.layers.0.")) EXPECT_EQ(l->block, 2) << l->name;
}

TEST(families_clip, BadConfigsAndInputsAreClearErrors) {
    const auto expect_error = [](const std::function<void()>& f, const std::string& needle) {
        try {
            f();
            ADD_FAILURE() << "no error; expected one naming '" << needle << "'";
        } catch (const Error& e) {
            EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
        }
    };
    const auto edited = [](const test::TempDir& dir, const std::function<void(nlohmann::json&)>& edit) {
        const std::string src = clip_dir("clip-tiny-random");
        for (const auto& e : fs::directory_iterator(src)) fs::copy_file(e.path(), fs::path(dir.path()) / e.path().filename());
        nlohmann::json config = read_json(src + "/config.json");
        edit(config);
        std::ofstream(dir.file("config.json")) << config.dump(1);
        return dir.path();
    };
    {
        test::TempDir dir("cq_clip");
        const std::string p = edited(dir, [](nlohmann::json& c) { c["text_config"]["num_hidden_layers"] = 3; });
        expect_error([&] { EncoderModel::load(p); }, "text_model.encoder.layers.2.self_attn.q_proj.weight' is missing");
    }
    {
        test::TempDir dir("cq_clip");
        const std::string p = edited(dir, [](nlohmann::json& c) { c["projection_dim"] = 20; });
        expect_error([&] { EncoderModel::load(p); }, "text_projection.weight' has shape");
    }
    {
        test::TempDir dir("cq_clip");
        const std::string p = edited(dir, [](nlohmann::json& c) { c["vision_config"]["hidden_act"] = "softsign"; });
        expect_error([&] { EncoderModel::load(p); }, "vision_config activation 'softsign'");
    }
    {
        test::TempDir dir("cq_clip");
        const std::string p = edited(dir, [](nlohmann::json& c) { c["vision_config"]["patch_size"] = 5; });
        expect_error([&] { EncoderModel::load(p); }, "not a multiple of patch_size 5");
    }
    {
        test::TempDir dir("cq_clip");
        const std::string p = edited(dir, [](nlohmann::json&) {});
        fs::remove(dir.file("merges.txt"));
        expect_error([&] { EncoderModel::load(p); }, "merges.txt does not exist");
    }
    const auto model = EncoderModel::load(clip_dir("clip-tiny-random"));
    const std::vector<std::string> texts = {"a photo"};
    expect_error([&] { model->tokenize(texts, 17); }, "max_len 17");
    expect_error([&] { model->tokenize(texts, 16, texts); }, "not pairs");
    TextBatch bad = model->tokenize(texts, 16);
    bad.ids[1] = 100000;
    std::vector<float> e(24);
    EXPECT_THROW(model->text_embeddings(bad, e.data()), InvalidArgument);
    bad.mask.pop_back();
    expect_error([&] { model->text_embeddings(bad, e.data()); }, "batch·seq");
    std::vector<float> logits(8);
    expect_error([&] { model->classify(model->tokenize(texts, 16), logits.data()); }, "classify_images");
}

TEST(families_clip, W8A8AndFourBitWeightsAndTheContainer) {
    const std::string name = "clip-mnist-random-b";
    const nlohmann::json ref = read_json(clip_dir(name) + "/reference.json");
    const std::vector<uint8_t> pixels = pixels_of(ref);
    const int64_t n = static_cast<int64_t>(ref["pixels_u8"].size());
    const auto zero_shot = [&](EncoderModel& m) {
        std::vector<float> out(static_cast<size_t>(n * m.config().num_labels));
        m.classify_images(pixels.data(), n, out.data());
        return out;
    };
    {
        auto model = EncoderModel::load(clip_dir(name));
        int64_t int8 = 0;
        for (const auto& p : apply_w8a8(*model, default_w8a8_rules(), ActivationQuant::dynamic_per_token, nullptr, calib::Method::minmax, 100.0, 8))
            int8 += p.int8;
        EXPECT_EQ(int8, 6 * (1 + 3));  // every block Linear of both towers; patch conv and projections stay f32
        const std::vector<float> q = zero_shot(*model);
        const double change = max_abs_diff(q, ref["logits_per_image"]);
        std::printf("%s W8A8 dynamic: max |Δlogit| vs transformers FP32 %.4f\n", name.c_str(), change);
        EXPECT_GT(change, 0.0);
        // logits are exp(2) ≈ 7.4 × a cosine: 0.25 is a cosine error of 0.034 (measured: 0.12)
        EXPECT_LT(change, 0.25);
        test::TempDir dir("cq_clip");
        model->save(dir.file("clip.gguf"));
        const auto reloaded = EncoderModel::load(dir.file("clip.gguf"));
        EXPECT_EQ(zero_shot(*reloaded), q);
        EXPECT_EQ(reloaded->config().labels, model->config().labels);
    }
    {
        // 4-bit weight-only: Q4_0 on every block Linear whose rows are whole 32-blocks (the text tower's: 24 / 48 wide
        // are not, so here the vision tower's 32-wide inputs)
        auto model = EncoderModel::load(clip_dir(name));
        int64_t rewritten = 0;
        for (Linear* l : model->linears())
            if (l->block >= 0 && l->n_in() % 32 == 0) model->quantize_linear(*l, DType::Q4_0), ++rewritten;
        EXPECT_GT(rewritten, 0);
        const double change = max_abs_diff(zero_shot(*model), ref["logits_per_image"]);
        std::printf("%s Q4_0 weights (%lld Linears): max |Δlogit| vs transformers FP32 %.4f\n", name.c_str(), static_cast<long long>(rewritten), change);
        EXPECT_GT(change, 0.0);
        EXPECT_LT(change, 0.5);
    }
}

}  // namespace
}  // namespace cq
