// EfficientNet (EfficientNetForImageClassification) against transformers: two tiny random configs that
// scripts/make_family_references.py built (tests/data/families/efficientnet-*), logits within 1e-5, the same bytes at 1 and
// 3 threads, the layer listing (1×1 / stem / top / squeeze-excite convs as Linears, depthwise convs as their own kind),
// W8A8 dynamic and static against FP32 on MNIST, the W8A8 container, and errors that name the key and the file.
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
#include "test_support.h"

namespace cq {
namespace {

namespace fs = std::filesystem;

std::string family_dir(const std::string& name) { return test::tests_dir() + "/data/families/" + name; }

nlohmann::json read_json(const std::string& path) {
    std::ifstream in(path);
    return nlohmann::json::parse(in);
}

// reference.json's u8 images through classify_images.
std::vector<float> reference_logits(EncoderModel& model, const nlohmann::json& ref) {
    std::vector<uint8_t> pixels;
    for (const auto& image : ref["pixels_u8"])
        for (const auto& v : image) pixels.push_back(static_cast<uint8_t>(v.get<int>()));
    const int64_t batch = static_cast<int64_t>(ref["pixels_u8"].size());
    std::vector<float> logits(static_cast<size_t>(batch * model.config().num_labels));
    model.classify_images(pixels.data(), batch, logits.data());
    return logits;
}

double max_abs_diff(const std::vector<float>& got, const nlohmann::json& expected) {
    std::vector<double> flat;
    for (const auto& row : expected)
        for (const auto& v : row) flat.push_back(v.get<double>());
    EXPECT_EQ(flat.size(), got.size());
    double worst = 0;
    for (size_t i = 0; i < std::min(flat.size(), got.size()); ++i) worst = std::max(worst, std::abs(double(got[i]) - flat[i]));
    return worst;
}

// A copy of an HF directory with `edit` applied to its config.json.
std::string copy_with_config(const std::string& src, const test::TempDir& dir, const std::function<void(nlohmann::json&)>& edit) {
    for (const auto& e : fs::directory_iterator(src)) fs::copy_file(e.path(), fs::path(dir.path()) / e.path().filename());
    nlohmann::json config = read_json(src + "/config.json");
    edit(config);
    std::ofstream(fs::path(dir.path()) / "config.json") << config.dump(1);
    return dir.path();
}

void expect_matches(const std::string& name, int64_t n_blocks, int64_t n_linears) {
    const auto model = EncoderModel::load(family_dir(name));
    const nlohmann::json ref = read_json(family_dir(name) + "/reference.json");
    ASSERT_TRUE(model->is_vision());
    EXPECT_EQ(model->config().architecture, "EfficientNetForImageClassification");
    EXPECT_EQ(static_cast<int64_t>(model->weights().mbconv_units.size()), n_blocks) << name;
    EXPECT_EQ(static_cast<int64_t>(model->linears().size()), n_linears) << name;
    const std::vector<float> logits = reference_logits(*model, ref);
    const double worst = max_abs_diff(logits, ref["logits"]);
    EXPECT_LE(worst, 1e-5) << name;
    std::printf("%s: max |Δlogit| vs transformers %.3g\n", name.c_str(), worst);
    ThreadPool::set_global_threads(1);
    const std::vector<float> one = reference_logits(*model, ref);
    ThreadPool::set_global_threads(3);
    const std::vector<float> three = reference_logits(*model, ref);
    ThreadPool::set_global_threads(0);
    EXPECT_EQ(one, three) << name << ": 1 and 3 threads differ";
}

TEST(families_efficientnet, TinyMatchesTransformers) {
    // width 0.25 / divisor 4: stem 8; stages 1 + 2 + 1 blocks (expansion 1 / 6 / 4); stem, (SE 2 + project), 2 × (expand,
    // SE 2, project), (expand, SE 2, project), top, classifier
    expect_matches("efficientnet-tiny-random", 4, 1 + 3 + 4 + 4 + 4 + 1 + 1);
}

TEST(families_efficientnet, SecondConfigMatchesTransformers) {
    // depth 1.5: ⌈1.5⌉, ⌈1.5⌉, ⌈3⌉ = 2, 2, 3 blocks; the first stage has no expansion
    expect_matches("efficientnet-mnist-random-b", 7, 1 + 2 * 3 + 2 * 4 + 3 * 4 + 1 + 1);
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
    const std::vector<float> quantized = reference_logits(*model, ref);
    const double change = max_abs_diff(quantized, ref["logits"]);
    std::printf("efficientnet-tiny-random W8A8 dynamic: max |Δlogit| vs transformers FP32 %.4f\n", change);
    EXPECT_LT(change, 0.1);
    test::TempDir dir("cq_efficientnet");
    model->save(dir.file("en.gguf"));
    const auto reloaded = EncoderModel::load(dir.file("en.gguf"));
    EXPECT_EQ(reference_logits(*reloaded, ref), quantized);
}

// Loading `edit`ed config.json must throw E with every piece of `needles` in its message.
template <typename E>
void expect_config_error(const std::function<void(nlohmann::json&)>& edit, std::vector<std::string> needles) {
    test::TempDir dir("cq_efficientnet");
    const std::string path = copy_with_config(family_dir("efficientnet-tiny-random"), dir, edit);
    try {
        EncoderModel::load(path);
        ADD_FAILURE() << "loaded";
    } catch (const E& e) {
        needles.push_back("config.json");
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
    test::TempDir dir("cq_efficientnet");
    const std::string path = copy_with_config(family_dir("efficientnet-tiny-random"), dir, [](nlohmann::json& c) { c["num_block_repeats"] = {1, 2, 2}; });
    try {
        EncoderModel::load(path);
        ADD_FAILURE() << "loaded";
    } catch (const FormatError& e) {
        EXPECT_NE(std::string(e.what()).find("'efficientnet.encoder.blocks.4.expansion.expand_conv.weight' is missing"), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find("model.safetensors"), std::string::npos) << e.what();
    }
}

}  // namespace
}  // namespace cq
