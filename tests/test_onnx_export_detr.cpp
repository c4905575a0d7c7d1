// cq's ONNX export of DETR (src/onnx/export_detr.cpp) against ONNX Runtime: ORT's outputs for the exported graph of each
// tiny DETR model on its reference images (tests/expected/onnx/families/detr-*.fp32.json, written by
// scripts/onnx_reference_detr with the graph's CRC-32) against cq's own forward, and against transformers' outputs
// (reference.json); the export is the same bytes at 1 and 3 threads, and its inputs and outputs are Optimum's names.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>

#include <nlohmann/json.hpp>

#include "cq/detr.h"
#include "cq/error.h"
#include "cq/onnx.h"
#include "cq/thread_pool.h"
#include "test_support.h"

namespace cq {
namespace {

std::string family_dir(const std::string& name) { return test::tests_dir() + "/data/families/" + name; }

nlohmann::json read_json(const std::string& path) {
    std::ifstream in(path);
    if (!in) throw IoError("cannot open " + path + " (run scripts/onnx_reference_detr)");
    return nlohmann::json::parse(in);
}

uint32_t file_crc(const std::string& path) {
    const auto bytes = test::read_bytes(path);
    return test::crc32(bytes.data(), bytes.size());
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

double max_abs_diff(const std::vector<double>& a, const std::vector<double>& b, const std::string& what) {
    EXPECT_EQ(a.size(), b.size()) << what;
    double worst = 0;
    for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) worst = std::max(worst, std::abs(a[i] - b[i]));
    return worst;
}

struct Images {
    int64_t batch = 0, height = 0, width = 0;
    std::vector<uint8_t> pixels;
};

Images reference_images(const nlohmann::json& ref) {
    Images r;
    r.height = ref["height"].get<int64_t>();
    r.width = ref["width"].get<int64_t>();
    for (const auto& image : ref["pixels_hex"]) {
        const std::string hex = image.get<std::string>();
        for (size_t i = 0; i + 1 < hex.size(); i += 2) r.pixels.push_back(static_cast<uint8_t>(std::stoi(hex.substr(i, 2), nullptr, 16)));
        ++r.batch;
    }
    return r;
}

void check_against_ort(const std::string& name) {
    const test::TempDir dir("cq_onnx_detr");
    const auto model = DetrModel::load(family_dir(name));
    const nlohmann::json ref = read_json(family_dir(name) + "/reference.json");
    const nlohmann::json ort = read_json(test::tests_dir() + "/expected/onnx/families/" + name + ".fp32.json");
    EXPECT_EQ(file_crc(family_dir(name) + "/reference.json"), ort["reference_crc32"].get<uint32_t>())
        << name << "/reference.json changed since ONNX Runtime ran: rerun scripts/onnx_reference_detr";

    const OnnxExportReport report = export_onnx(*model, dir.file("model.onnx"), {});
    ASSERT_EQ(report.files.size(), 1u);
    const OnnxExportFile& f = report.files[0];
    EXPECT_EQ(f.inputs, (std::vector<std::string>{"pixel_values"}));
    EXPECT_EQ(f.outputs, (std::vector<std::string>{"logits", "pred_boxes"}));
    EXPECT_EQ(file_crc(f.path), ort["graph_crc32"]["model.onnx"].get<uint32_t>())
        << name << ": the export differs from the graph ONNX Runtime ran: rerun scripts/onnx_reference_detr if the change is intended";

    const Images images = reference_images(ref);
    const int64_t Q = model->config().num_queries, L = model->config().num_labels + 1;
    std::vector<float> logits(static_cast<size_t>(images.batch * Q * L)), boxes(static_cast<size_t>(images.batch * Q * 4));
    model->forward(images.pixels.data(), images.batch, images.height, images.width, logits.data(), boxes.data());
    const nlohmann::json& out = ort["graphs"]["model.onnx"];
    EXPECT_EQ(flatten(out["logits"]["dims"]), (std::vector<double>{double(images.batch), double(Q), double(L)}));
    EXPECT_EQ(flatten(out["pred_boxes"]["dims"]), (std::vector<double>{double(images.batch), double(Q), 4.0}));
    const std::vector<double> ort_logits = flatten(out["logits"]["values"]), ort_boxes = flatten(out["pred_boxes"]["values"]);
    const double cq_logits = max_abs_diff(std::vector<double>(logits.begin(), logits.end()), ort_logits, name + " logits");
    const double cq_boxes = max_abs_diff(std::vector<double>(boxes.begin(), boxes.end()), ort_boxes, name + " boxes");
    const double hf_logits = max_abs_diff(flatten(ref["logits"]), ort_logits, name + " transformers logits");
    const double hf_boxes = max_abs_diff(flatten(ref["pred_boxes"]), ort_boxes, name + " transformers boxes");
    std::printf("%s: cq vs ORT max |Δlogit| %.3g, |Δbox| %.3g; ORT vs transformers %.3g, %.3g\n", name.c_str(), cq_logits, cq_boxes, hf_logits,
                hf_boxes);
    EXPECT_LE(cq_logits, 1e-4) << name;
    EXPECT_LE(cq_boxes, 1e-4) << name;
    EXPECT_LE(hf_logits, 1e-4) << name;
    EXPECT_LE(hf_boxes, 1e-4) << name;
}

TEST(OnnxExportDetr, SineTinyMatchesOrtAndTransformers) { check_against_ort("detr-tiny-random"); }
TEST(OnnxExportDetr, LearnedPositionsAuxiliaryLossMatchOrtAndTransformers) { check_against_ort("detr-mnist-random-b"); }
TEST(OnnxExportDetr, StagesAfterTheFeatureMapMatchOrtAndTransformers) { check_against_ort("detr-stages-random-c"); }

TEST(OnnxExportDetr, SameBytesForAnyThreadCount) {
    const test::TempDir dir("cq_onnx_detr");
    for (const char* name : {"detr-tiny-random", "detr-mnist-random-b"}) {
        const auto model = DetrModel::load(family_dir(name));
        ThreadPool::set_global_threads(1);
        export_onnx(*model, dir.file("one.onnx"), {});
        ThreadPool::set_global_threads(3);
        export_onnx(*model, dir.file("three.onnx"), {});
        ThreadPool::set_global_threads(0);
        EXPECT_EQ(test::read_bytes(dir.file("one.onnx")), test::read_bytes(dir.file("three.onnx"))) << name;
    }
}

}  // namespace
}  // namespace cq
