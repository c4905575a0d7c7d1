// DETR (DetrForObjectDetection with transformers' ResNet backbone) against transformers: three tiny random models that
// scripts/make_detr_references.py built and ran (tests/data/families/detr-*/reference.json): logits and pred_boxes within
// 1e-4, DetrImageProcessor.post_process_object_detection's detections equal, a padded batch with a pixel mask, the same
// bytes at 1 and 3 threads; the compression passes (layers, statistics, W8A8 dynamic / static, Q4_0 weights) against
// FP32 on MNIST digits tiled into canvases; configs cq does not run refused clearly.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>

#include <nlohmann/json.hpp>

#include "command_runner.h"
#include "cq/detr.h"
#include "cq/error.h"
#include "cq/layer_stats.h"
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

std::vector<double> flatten(const nlohmann::json& j) {
    std::vector<double> flat;
    const std::function<void(const nlohmann::json&)> walk = [&](const nlohmann::json& x) {
        if (x.is_array())
            for (const auto& e : x) walk(e);
        else
            flat.push_back(x.get<double>());
    };
    walk(j);
    return flat;
}

double max_abs_diff(const std::vector<float>& got, const nlohmann::json& expected) {
    const std::vector<double> flat = flatten(expected);
    EXPECT_EQ(flat.size(), got.size());
    double worst = 0;
    for (size_t i = 0; i < std::min(flat.size(), got.size()); ++i) worst = std::max(worst, std::abs(got[i] - flat[i]));
    return worst;
}

struct Reference {
    nlohmann::json j;
    int64_t batch = 0, height = 0, width = 0;
    std::vector<uint8_t> pixels;
};

Reference reference(const std::string& name) {
    Reference r;
    r.j = read_json(family_dir(name) + "/reference.json");
    r.height = r.j["height"].get<int64_t>();
    r.width = r.j["width"].get<int64_t>();
    for (const auto& image : r.j["pixels_hex"]) {
        const std::string hex = image.get<std::string>();
        for (size_t i = 0; i + 1 < hex.size(); i += 2) r.pixels.push_back(static_cast<uint8_t>(std::stoi(hex.substr(i, 2), nullptr, 16)));
        ++r.batch;
    }
    return r;
}

struct Outputs {
    std::vector<float> logits, boxes;
};

Outputs run(DetrModel& m, const Reference& r, const uint8_t* mask = nullptr) {
    const int64_t Q = m.config().num_queries, L = m.config().num_labels + 1;
    Outputs o{std::vector<float>(static_cast<size_t>(r.batch * Q * L)), std::vector<float>(static_cast<size_t>(r.batch * Q * 4))};
    m.forward(r.pixels.data(), r.batch, r.height, r.width, o.logits.data(), o.boxes.data(), mask);
    return o;
}

void expect_matches_transformers(const std::string& name, int64_t n_linears) {
    const auto model = DetrModel::load(family_dir(name));
    const Reference r = reference(name);
    EXPECT_EQ(static_cast<int64_t>(model->linears().size()), n_linears) << name;
    const Outputs o = run(*model, r);
    const double dl = max_abs_diff(o.logits, r.j["logits"]), db = max_abs_diff(o.boxes, r.j["pred_boxes"]);
    EXPECT_LE(dl, 1e-4) << name;
    EXPECT_LE(db, 1e-4) << name;
    std::printf("%s: max |Δlogit| %.3g, max |Δbox| %.3g vs transformers\n", name.c_str(), dl, db);

    // post_process_object_detection at the reference's threshold, boxes at the image's size: the same detections
    const float threshold = r.j["threshold"].get<float>();
    const std::vector<Detection> got = detr_post_process(o.logits.data(), o.boxes.data(), r.batch, model->config().num_queries,
                                                         model->config().num_labels + 1, r.height, r.width, threshold);
    size_t k = 0, expected_total = 0;
    const double box_tolerance = 1e-4 * static_cast<double>(std::max(r.height, r.width)) + 1e-5;  // 1e-4 of a normalised coordinate
    for (int64_t b = 0; b < r.batch; ++b) {
        const nlohmann::json& e = r.j["detections"][static_cast<size_t>(b)];
        expected_total += e["scores"].size();
        for (size_t i = 0; i < e["scores"].size(); ++i, ++k) {
            ASSERT_LT(k, got.size()) << name << ": cq found fewer detections";
            EXPECT_EQ(got[k].image, b) << name;
            EXPECT_EQ(got[k].label, e["labels"][i].get<int32_t>()) << name << " detection " << k;
            EXPECT_NEAR(got[k].score, e["scores"][i].get<double>(), 1e-5) << name << " detection " << k;
            const auto& box = e["boxes"][i];
            EXPECT_NEAR(got[k].box.x0, box[0].get<double>(), box_tolerance) << name << " detection " << k;
            EXPECT_NEAR(got[k].box.y0, box[1].get<double>(), box_tolerance) << name << " detection " << k;
            EXPECT_NEAR(got[k].box.x1, box[2].get<double>(), box_tolerance) << name << " detection " << k;
            EXPECT_NEAR(got[k].box.y1, box[3].get<double>(), box_tolerance) << name << " detection " << k;
        }
    }
    EXPECT_EQ(got.size(), expected_total) << name;
    EXPECT_GT(expected_total, 0u) << name;
    // detect() is forward + the same post-processing
    const std::vector<Detection> direct = model->detect(r.pixels.data(), r.batch, r.height, r.width, threshold);
    ASSERT_EQ(direct.size(), got.size());
    for (size_t i = 0; i < got.size(); ++i) EXPECT_EQ(std::memcmp(&direct[i].box, &got[i].box, sizeof(Box)), 0);

    // The same bytes whatever the thread count.
    ThreadPool::set_global_threads(1);
    const Outputs one = run(*model, r);
    ThreadPool::set_global_threads(3);
    const Outputs three = run(*model, r);
    ThreadPool::set_global_threads(0);
    EXPECT_EQ(one.logits, three.logits) << name;
    EXPECT_EQ(one.boxes, three.boxes) << name;
    EXPECT_EQ(one.logits, o.logits) << name;
}

// Linears: stem + each block's path convs and shortcut + input_projection + 6 per encoder layer + 10 per decoder layer +
// class head + 3 box layers.
TEST(families_detr, TinyMatchesTransformers) { expect_matches_transformers("detr-tiny-random", 1 + (3 + 1) * 2 + 1 + 6 * 2 + 10 * 2 + 1 + 3); }

TEST(families_detr, MnistShapedLearnedPositionsAuxiliaryLossMatchesTransformers) {
    // basic blocks 1 / 2 / 1 (2 convs each; shortcuts where the width or stride changes: stage 2's and 3's first blocks)
    expect_matches_transformers("detr-mnist-random-b", 1 + (2 * 4 + 2) + 1 + 6 * 1 + 10 * 3 + 1 + 3);
}

TEST(families_detr, StagesAfterTheFeatureMapAreNotRunAndMatchTransformers) {
    // out_features [stage1, stage2]: stage 3 is in the file but feeds nothing, so cq loads stages 1–2 only
    // (stage 1 keeps the stem's width 16 at stride 1: no shortcut)
    expect_matches_transformers("detr-stages-random-c", 1 + 3 * 2 + 1 + 1 + 6 * 3 + 10 * 1 + 1 + 3);
}

void expect_padded_batch_matches(const std::string& name) {
    const auto model = DetrModel::load(family_dir(name));
    const Reference r = reference(name);
    const nlohmann::json& padded = r.j["padded"];
    std::vector<uint8_t> mask(static_cast<size_t>(r.batch * r.height * r.width), 0);
    for (int64_t b = 0; b < r.batch; ++b) {
        const int64_t rh = padded["real_sizes"][static_cast<size_t>(b)][0].get<int64_t>(), rw = padded["real_sizes"][static_cast<size_t>(b)][1].get<int64_t>();
        for (int64_t y = 0; y < rh; ++y)
            for (int64_t x = 0; x < rw; ++x) mask[static_cast<size_t>((b * r.height + y) * r.width + x)] = 1;
    }
    const Outputs o = run(*model, r, mask.data());
    const double dl = max_abs_diff(o.logits, padded["logits"]), db = max_abs_diff(o.boxes, padded["pred_boxes"]);
    EXPECT_LE(dl, 1e-4) << name;
    EXPECT_LE(db, 1e-4) << name;
    std::printf("%s, padded batch with a pixel mask: max |Δlogit| %.3g, max |Δbox| %.3g\n", name.c_str(), dl, db);
    // the mask matters: without it the outputs differ
    const Outputs unmasked = run(*model, r);
    EXPECT_GT(max_abs_diff(unmasked.logits, padded["logits"]), 1e-2) << name;
}

TEST(families_detr, PaddedBatchWithPixelMaskMatchesTransformersSine) { expect_padded_batch_matches("detr-tiny-random"); }
TEST(families_detr, PaddedBatchWithPixelMaskMatchesTransformersLearned) { expect_padded_batch_matches("detr-mnist-random-b"); }

TEST(families_detr, ConvolutionsAndProjectionsAreLinearsThePassesSee) {
    auto model = Model::load(family_dir("detr-tiny-random"));
    ASSERT_NE(dynamic_cast<DetrModel*>(model.get()), nullptr);
    EXPECT_EQ(model->architecture(), "DetrForObjectDetection");
    EXPECT_EQ(model->n_blocks(), 2 + 2 + 2);
    const std::vector<LayerInfo> layers = model->layers();
    const auto find = [&](const std::string& name) {
        return std::find_if(layers.begin(), layers.end(), [&](const LayerInfo& l) { return l.name == name; });
    };
    const auto stem = find("model.backbone.conv_encoder.model.embedder.embedder.convolution");
    ASSERT_NE(stem, layers.end());
    EXPECT_TRUE(stem->is_linear);
    EXPECT_EQ(stem->shape, (std::vector<int64_t>{8, 3 * 7 * 7}));
    const auto proj = find("model.input_projection");
    ASSERT_NE(proj, layers.end());
    EXPECT_EQ(proj->shape, (std::vector<int64_t>{32, 32}));
    const auto cross = find("model.decoder.layers.1.encoder_attn.k_proj");
    ASSERT_NE(cross, layers.end());
    EXPECT_EQ(cross->role, LayerRole::attn_k);
    EXPECT_EQ(cross->block, 2 + 2 + 1);
    EXPECT_NE(find("model.query_position_embeddings"), layers.end());
    EXPECT_NE(find("model.decoder.layernorm"), layers.end());
    const auto head = find("class_labels_classifier");
    ASSERT_NE(head, layers.end());
    EXPECT_EQ(head->shape, (std::vector<int64_t>{6, 32}));
}

// A detection set of MNIST test digits on `height` × `width` canvases.
DetectionSet mnist_set(int64_t first, int64_t count, int64_t channels, int64_t height, int64_t width) {
    return mnist_detection_set(test::fixture("data/t10k-images-idx3-ubyte.gz"), "", first, count, channels, height, width);
}

TEST(families_detr, MnistDetectionSetIsDeterministicWithTightBoxes) {
    const DetectionSet a = mnist_set(0, 12, 1, 56, 84), b = mnist_set(0, 12, 1, 56, 84);
    EXPECT_EQ(a.pixels, b.pixels);
    ASSERT_EQ(a.truth.size(), b.truth.size());
    EXPECT_GE(a.truth.size(), 12u);
    EXPECT_LE(a.truth.size(), 12u * 6u);
    for (const GroundTruth& t : a.truth) {
        ASSERT_GE(t.image, 0);
        ASSERT_LT(t.image, 12);
        EXPECT_GE(t.label, 0);
        EXPECT_LE(t.label, 9);
        // tight: a non-zero pixel on each edge row / column of the box, nothing outside it within the 28 × 28 cell
        const int64_t x0 = static_cast<int64_t>(t.box.x0), y0 = static_cast<int64_t>(t.box.y0), x1 = static_cast<int64_t>(t.box.x1),
                      y1 = static_cast<int64_t>(t.box.y1);
        const uint8_t* img = a.pixels.data() + t.image * 56 * 84;
        const auto any_in = [&](int64_t ya, int64_t yb, int64_t xa, int64_t xb) {
            for (int64_t y = ya; y < yb; ++y)
                for (int64_t x = xa; x < xb; ++x)
                    if (img[y * 84 + x]) return true;
            return false;
        };
        EXPECT_TRUE(any_in(y0, y0 + 1, x0, x1));
        EXPECT_TRUE(any_in(y1 - 1, y1, x0, x1));
        EXPECT_TRUE(any_in(y0, y1, x0, x0 + 1));
        EXPECT_TRUE(any_in(y0, y1, x1 - 1, x1));
        const int64_t cy = y0 / 28 * 28, cx = x0 / 28 * 28;
        EXPECT_FALSE(any_in(cy, y0, cx, cx + 28));
        EXPECT_FALSE(any_in(y1, cy + 28, cx, cx + 28));
    }
    // three channels: the grey value in each
    const DetectionSet rgb = mnist_set(0, 2, 3, 56, 84);
    for (int64_t i = 0; i < 56 * 84; ++i) {
        EXPECT_EQ(rgb.pixels[static_cast<size_t>(i)], a.pixels[static_cast<size_t>(i)]);
        EXPECT_EQ(rgb.pixels[static_cast<size_t>(2 * 56 * 84 + i)], a.pixels[static_cast<size_t>(i)]);
    }
    EXPECT_THROW(mnist_set(0, 1, 1, 20, 84), InvalidArgument);
}

TEST(families_detr, StatsObserveEveryLinearOnImages) {
    auto model = DetrModel::load(family_dir("detr-mnist-random-b"));
    LayerStatsOptions o;
    o.selection.count = 4;
    const LayerStatsReport r = collect_layer_stats(*model, test::fixture("data/t10k-images-idx3-ubyte.gz"), o);
    ASSERT_EQ(r.linears.size(), model->linears().size());
    EXPECT_EQ(r.units, 4);
    for (const LinearStats& s : r.linears) {
        EXPECT_GT(s.rows, 0) << s.name;
        // the decoder starts from zero queries: its first self-attention's values are projections of zeros
        if (s.name == "model.decoder.layers.0.self_attn.v_proj") EXPECT_EQ(s.input_absmax_all, 0);
        else EXPECT_GT(s.input_absmax_all, 0) << s.name;
    }
    // rows: the stem sees every output pixel of 4 canvases (56×84 → 28×42), the decoder's Linears 4 × 7 queries
    EXPECT_EQ(r.linears.front().rows, 4 * 28 * 42);
    const auto fc1 = std::find_if(r.linears.begin(), r.linears.end(), [](const LinearStats& s) { return s.name == "model.decoder.layers.2.fc1"; });
    ASSERT_NE(fc1, r.linears.end());
    EXPECT_EQ(fc1->rows, 4 * 7);
}

// ---- quantized forms against FP32 --------------------------------------------------------------------------------

struct Agreement {
    DetectionScore score;
    double max_logit = 0, max_box = 0;
    size_t detections = 0;
};

Agreement against(const DetrRun& base, const DetrRun& q) {
    Agreement a;
    a.score = detection_agreement(base.detections, q.detections);
    for (size_t i = 0; i < q.logits.size(); ++i) a.max_logit = std::max(a.max_logit, static_cast<double>(std::abs(q.logits[i] - base.logits[i])));
    for (size_t i = 0; i < q.boxes.size(); ++i) a.max_box = std::max(a.max_box, static_cast<double>(std::abs(q.boxes[i] - base.boxes[i])));
    a.detections = q.detections.size();
    return a;
}

void print(const char* name, const char* form, const Agreement& a, size_t base_detections) {
    std::printf("%s %s: agreement mAP %.4f (mAP50 %.4f), max |Δlogit| %.3g, max |Δbox| %.3g, %zu detections (FP32 %zu)\n", name, form, a.score.map,
                a.score.map50, a.max_logit, a.max_box, a.detections, base_detections);
}

TEST(families_detr, W8A8DynamicAndStaticAndQ4WeightsAgreeWithFp32OnMnistCanvases) {
    struct Bound {
        const char* name;
        double dynamic_map, static_map, max_logit;
    };
    // Bounds from runs with 7-bit activations (AVX2 without VNNI, the weakest rung) with a margin; 8-bit ones do better.
    for (const Bound& bound : {Bound{"detr-stages-random-c", 0.9, 0.8, 1.5}, Bound{"detr-mnist-random-b", 0.5, 0.25, 6.0}}) {
        auto model = DetrModel::load(family_dir(bound.name));
        const int64_t channels = model->config().backbone.num_channels;
        const DetectionSet set = mnist_set(0, 32, channels, 56, 84), calib = mnist_set(1000, 32, channels, 56, 84);
        const DetrRun base = run_detr(*model, set, 0.5f);
        ASSERT_GT(base.detections.size(), 0u);
        EXPECT_NEAR(detection_agreement(base.detections, base.detections).map, 1.0, 1e-12);

        const int64_t n = quantize_detr_w8a8(*model, ActivationQuant::dynamic_per_token);
        // every encoder / decoder Linear and each backbone block's path convs; the stem, shortcuts, projection and heads stay f32
        int64_t expected = 0;
        for (const Linear* l : model->linears()) {
            const bool block_conv = l->name.find(".layer.") != std::string::npos;
            const bool transformer = l->name.starts_with("model.encoder.layers.") || l->name.starts_with("model.decoder.layers.");
            EXPECT_EQ(l->int8 != nullptr, block_conv || transformer) << l->name;
            expected += block_conv || transformer;
        }
        EXPECT_EQ(n, expected);
        const Agreement dynamic = against(base, run_detr(*model, set, 0.5f));
        print(bound.name, "W8A8 dynamic", dynamic, base.detections.size());
        EXPECT_GE(dynamic.score.map, bound.dynamic_map);
        EXPECT_GT(dynamic.max_logit, 0.0);  // it did change the arithmetic
        EXPECT_LE(dynamic.max_logit, bound.max_logit);

        quantize_detr_w8a8(*model, ActivationQuant::static_per_tensor, &calib, calib::Method::minmax);
        const Agreement fixed = against(base, run_detr(*model, set, 0.5f));
        print(bound.name, "W8A8 static (minmax, 32 other canvases)", fixed, base.detections.size());
        EXPECT_GE(fixed.score.map, bound.static_map);
        EXPECT_LE(fixed.max_logit, bound.max_logit);
        // the same bytes at 1 and 3 threads in the quantized form too
        ThreadPool::set_global_threads(1);
        const DetrRun one = run_detr(*model, set, 0.5f);
        ThreadPool::set_global_threads(3);
        const DetrRun three = run_detr(*model, set, 0.5f);
        ThreadPool::set_global_threads(0);
        EXPECT_EQ(one.logits, three.logits);
        EXPECT_THROW(quantize_detr_w8a8(*model, ActivationQuant::static_per_tensor), InvalidArgument);  // static without images
    }
}

// These random models are sensitive (sharp attention), so W8A8's distance from FP32 is judged against what the same
// model does when only its weights move by at most half an int8 step (max|row| / 254, f32 arithmetic throughout): a
// broken int8 path would land far outside that.
TEST(families_detr, W8A8MovesTheOutputsNoMoreThanHalfStepWeightNoiseDoes) {
    for (const char* name : {"detr-tiny-random", "detr-mnist-random-b"}) {
        auto model = DetrModel::load(family_dir(name));
        const DetectionSet set = mnist_set(0, 16, model->config().backbone.num_channels, 56, 84);
        const DetrRun base = run_detr(*model, set, 0.5f);
        quantize_detr_w8a8(*model, ActivationQuant::dynamic_per_token);
        const Agreement w8a8 = against(base, run_detr(*model, set, 0.5f));
        for (Linear* l : model->linears()) l->int8.reset();
        uint64_t state = 12345;  // a fixed LCG: the same noise on every platform
        const auto uniform = [&state] {
            state = state * 6364136223846793005ULL + 1442695040888963407ULL;
            return static_cast<float>(state >> 40) / static_cast<float>(1 << 24) - 0.5f;  // [-0.5, 0.5)
        };
        for (Linear* l : model->linears()) {
            if (!w8a8_selects(detr_default_w8a8_rules(), l->name)) continue;
            std::vector<float> w = l->weight.to_float();
            const int64_t n_in = l->n_in();
            for (int64_t r = 0; r < l->n_out(); ++r) {
                float m = 0;
                for (int64_t c = 0; c < n_in; ++c) m = std::max(m, std::abs(w[static_cast<size_t>(r * n_in + c)]));
                for (int64_t c = 0; c < n_in; ++c) w[static_cast<size_t>(r * n_in + c)] += uniform() * m / 127.0f;
            }
            Tensor t = Tensor::zeros({l->n_out(), n_in}, DType::F32);
            std::copy(w.begin(), w.end(), static_cast<float*>(t.mutable_data()));
            model->set_weight(*l, t, "half-step noise");
        }
        const Agreement noise = against(base, run_detr(*model, set, 0.5f));
        print(name, "W8A8 dynamic", w8a8, base.detections.size());
        print(name, "f32 weights + half an int8 step of noise", noise, base.detections.size());
        EXPECT_LE(w8a8.max_logit, 3.0 * noise.max_logit) << name;
        EXPECT_LE(w8a8.max_box, 3.0 * noise.max_box) << name;
    }
}

TEST(families_detr, Q4WeightsWhereRowsAreWholeBlocksAndTheRestNamed) {
    auto model = DetrModel::load(family_dir("detr-tiny-random"));
    const DetectionSet set = mnist_set(0, 16, 3, 56, 84);
    const DetrRun base = run_detr(*model, set, 0.5f);
    const DetrWeightQuantResult q = quantize_detr_weights(*model, DType::Q4_0);
    // d_model 32: every encoder / decoder Linear (inputs of 32 or 64); the backbone's path convs (inputs 8, 36, 4, 16, 72, 8)
    // are not whole 32-blocks
    EXPECT_EQ(q.quantized, 6 * 2 + 10 * 2);
    EXPECT_EQ(q.fallbacks.size(), 6u);
    for (const std::string& f : q.fallbacks) EXPECT_NE(f.find("not a multiple of q4_0's block of 32"), std::string::npos) << f;
    EXPECT_EQ(model->find_linear("model.decoder.layers.1.fc2")->format(), "q4_0");
    const Agreement a = against(base, run_detr(*model, set, 0.5f));
    print("detr-tiny-random", "Q4_0 weights", a, base.detections.size());
    // 4-bit weights move this model far (its attention is sharp: q / k drawn at 0.8, scores of ±10 that a 4-bit error of
    // ~10 % per weight reorders): the outputs change but stay valid boxes
    EXPECT_GT(a.max_logit, 0.0);
    EXPECT_LE(a.max_logit, 8.0);
    for (const Detection& d : run_detr(*model, set, 0.5f).detections) EXPECT_LE(d.box.x0, d.box.x1);
}

TEST(families_detr, EvaluateReportsEveryFormAndPutsFp32Back) {
    auto model = DetrModel::load(family_dir("detr-stages-random-c"));
    const DetectionSet set = mnist_set(0, 8, 3, 56, 84), calib = mnist_set(500, 8, 3, 56, 84);
    DetrEvalOptions o;
    o.w8a8_dynamic = o.q4_weights = true;
    o.calib = &calib;
    o.latency_repeats = 1;
    const std::vector<DetrFormReport> forms = evaluate_detr(*model, set, o);
    ASSERT_EQ(forms.size(), 4u);
    EXPECT_EQ(forms[0].form, "fp32");
    EXPECT_NEAR(forms[0].agreement.map, 1.0, 1e-12);
    EXPECT_EQ(forms[0].max_abs_logit_diff, 0.0);
    EXPECT_EQ(forms[1].form, "w8a8 dynamic");
    EXPECT_EQ(forms[2].form, "w8a8 static (minmax)");
    EXPECT_LT(forms[1].weight_bytes, forms[0].weight_bytes);
    EXPECT_EQ(forms[3].form, "q4_0 weights");
    EXPECT_GT(forms[0].truth.n_truth, 0);
    for (const DetrFormReport& f : forms) EXPECT_GT(f.seconds_per_batch, 0.0) << f.form;
    // afterwards the model is FP32 again: the same outputs as before
    const DetrRun again = run_detr(*model, set, o.threshold);
    for (const Linear* l : model->linears()) {
        EXPECT_EQ(l->int8, nullptr) << l->name;
        EXPECT_EQ(l->format(), "f32") << l->name;
    }
    EXPECT_EQ(static_cast<int64_t>(again.detections.size()), forms[0].detections);
}

TEST(families_detr, CliEvalPrintsDetectionsAndAgreement) {
    const std::string M = test::fixture("data/t10k-images-idx3-ubyte.gz");
    const test::RunResult r = test::run_command(std::string(CQ_CLI_PATH) + " eval " + family_dir("detr-mnist-random-b") + " --data " + M +
                                                " --range 0:8 --w8a8-dynamic --json");
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const nlohmann::json j = nlohmann::json::parse(r.out);
    EXPECT_EQ(j["task"], "detection");
    ASSERT_EQ(j["forms"].size(), 2u);
    EXPECT_NEAR(j["forms"][0]["agreement_map"].get<double>(), 1.0, 1e-12);
    EXPECT_EQ(j["forms"][1]["form"], "w8a8 dynamic");
    EXPECT_GT(j["forms"][1]["max_abs_logit_diff"].get<double>(), 0.0);
    const test::RunResult info = test::run_command(std::string(CQ_CLI_PATH) + " info " + family_dir("detr-mnist-random-b") + " --layers");
    ASSERT_EQ(info.exit_code, 0) << info.err;
    EXPECT_NE(info.out.find("model.decoder.layers.2.encoder_attn.k_proj"), std::string::npos);
    EXPECT_NE(info.out.find("model.backbone.conv_encoder.model.embedder.embedder.convolution"), std::string::npos);
}

// ---- configs cq does not run ---------------------------------------------------------------------------------------

std::string copy_with_config(const std::string& src, const test::TempDir& dir, const std::function<void(nlohmann::json&)>& edit) {
    for (const auto& e : fs::directory_iterator(src)) fs::copy_file(e.path(), fs::path(dir.path()) / e.path().filename());
    nlohmann::json config = read_json(src + "/config.json");
    edit(config);
    std::ofstream(dir.file("config.json")) << config.dump(1);
    return dir.path();
}

template <class E>
void expect_config_error(const std::function<void(nlohmann::json&)>& edit, std::initializer_list<const char*> phrases) {
    const test::TempDir dir("cq_detr");
    const std::string path = copy_with_config(family_dir("detr-tiny-random"), dir, edit);
    try {
        (void)DetrModel::load(path);
        ADD_FAILURE() << "no error for the edited config";
    } catch (const E& e) {
        const std::string what = e.what();
        for (const char* p : phrases) EXPECT_NE(what.find(p), std::string::npos) << what << "\n  lacks: " << p;
    } catch (const std::exception& e) {
        ADD_FAILURE() << "wrong error type: " << e.what();
    }
}

TEST(families_detr, UnsupportedConfigsAreRefusedClearly) {
    expect_config_error<Unsupported>([](nlohmann::json& c) { c["use_timm_backbone"] = true; }, {"use_timm_backbone", "config.json"});
    expect_config_error<Unsupported>([](nlohmann::json& c) { c.erase("use_timm_backbone"); }, {"use_timm_backbone"});
    expect_config_error<Unsupported>([](nlohmann::json& c) { c["backbone_config"]["model_type"] = "convnext"; }, {"convnext", "resnet"});
    expect_config_error<Unsupported>([](nlohmann::json& c) { c["dilation"] = true; }, {"'dilation'"});
    expect_config_error<Unsupported>([](nlohmann::json& c) { c["architectures"] = {"DetrForSegmentation"}; }, {"DetrForSegmentation", "mask"});
    expect_config_error<Unsupported>([](nlohmann::json& c) { c["backbone_kwargs"] = {{"out_indices", {1, 2}}}; }, {"'backbone_kwargs'"});
    expect_config_error<Unsupported>([](nlohmann::json& c) { c["position_embedding_type"] = "rope"; }, {"position_embedding_type", "rope"});
    expect_config_error<Unsupported>([](nlohmann::json& c) { c["activation_function"] = "mish"; }, {"activation_function", "mish"});
    expect_config_error<Unsupported>([](nlohmann::json& c) { c["backbone_config"]["layer_type"] = "preactivation"; }, {"layer_type"});
    expect_config_error<FormatError>([](nlohmann::json& c) { c["backbone_config"]["out_features"] = {"stage7"}; }, {"'out_features'", "stage7"});
    expect_config_error<FormatError>([](nlohmann::json& c) { c["decoder_attention_heads"] = 5; }, {"'decoder_attention_heads'", "d_model 32"});
    expect_config_error<FormatError>([](nlohmann::json& c) { c["backbone_config"]["depths"] = {1}; }, {"'hidden_sizes'", "'depths'"});
    // sizes the file does not hold: the tensor and the weights file are named
    expect_config_error<FormatError>([](nlohmann::json& c) { c["decoder_layers"] = 3; }, {"'model.decoder.layers.2.self_attn.q_proj.weight' is missing", "model.safetensors"});
    expect_config_error<FormatError>([](nlohmann::json& c) { c["num_queries"] = 12; }, {"model.query_position_embeddings.weight"});
}

TEST(families_detr, BadInputsAreClearErrors) {
    auto model = DetrModel::load(family_dir("detr-mnist-random-b"));
    std::vector<uint8_t> pixels(static_cast<size_t>(1 * 1 * 28 * 28 * 80), 0);
    std::vector<float> logits(7 * 11), boxes(7 * 4);
    // learned position tables cover 50 × 50 feature positions; 28 × 2240 pixels give a 1 × 70 map
    try {
        model->forward(pixels.data(), 1, 28, 28 * 80, logits.data(), boxes.data());
        ADD_FAILURE() << "no error for a feature map wider than the learned tables";
    } catch (const InvalidArgument& e) {
        EXPECT_NE(std::string(e.what()).find("learned position tables"), std::string::npos) << e.what();
    }
    EXPECT_THROW(model->forward(pixels.data(), 0, 28, 28, logits.data(), boxes.data()), InvalidArgument);
    EXPECT_THROW(model->forward(nullptr, 1, 28, 28, logits.data(), boxes.data()), InvalidArgument);
    EXPECT_THROW(run_detr(*model, mnist_set(0, 1, 3, 56, 84), 0.5f), InvalidArgument);  // three channels into a one-channel model
}

TEST(families_detr, AuxiliaryLossIsReadBecauseItChangesTheOutputs) {
    // transformers 4.46 normalises every decoder layer's output when auxiliary_loss is set; the same weights without it
    // give other logits
    const test::TempDir dir("cq_detr");
    const std::string path = copy_with_config(family_dir("detr-mnist-random-b"), dir, [](nlohmann::json& c) { c["auxiliary_loss"] = false; });
    auto model = DetrModel::load(path);
    const Reference r = reference("detr-mnist-random-b");
    EXPECT_GT(max_abs_diff(run(*model, r).logits, r.j["logits"]), 1e-2);
}

}  // namespace
}  // namespace cq
