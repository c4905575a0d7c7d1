// YOLOv8-style detectors through ONNX import (cq/onnx_model.h, cq/yolo.h) against ONNX Runtime and PyTorch
// (tests/data/yolo, scripts/make_yolo_onnx.py): raw outputs within 1e-4, the boxes after ultralytics' post-processing
// equal, two configs (64×64 fused, 96×128 with BatchNormalization nodes) and a dynamic-shape export at two sizes, the
// same bytes at 1 and 3 threads; every operator the import added on awkward cases against ORT; W8A8 and 4-bit
// weight-only against FP32; unsupported graphs refused naming the node.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>

#include <nlohmann/json.hpp>

#include "cq/calibration.h"
#include "cq/error.h"
#include "cq/onnx_model.h"
#include "cq/thread_pool.h"
#include "cq/yolo.h"
#include "command_runner.h"
#include "onnx/graph_builder.h"
#include "test_support.h"

namespace cq {
namespace {

using test::fixture;
using test::TempDir;

std::string data_dir() { return test::tests_dir() + "/data/yolo/"; }

nlohmann::json read_json(const std::string& path) {
    std::ifstream in(path);
    if (!in) throw IoError("cannot open " + path + " (run scripts/make_yolo_onnx.py)");
    return nlohmann::json::parse(in);
}

uint32_t crc32(const uint8_t* p, size_t n) {  // zlib's CRC-32, which the reference records for each canvas
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; ++i) {
        c ^= p[i];
        for (int k = 0; k < 8; ++k) c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1u)));
    }
    return c ^ 0xFFFFFFFFu;
}

double max_abs_diff(const float* a, const std::vector<double>& b) {
    double worst = 0;
    for (size_t i = 0; i < b.size(); ++i) worst = std::max(worst, std::fabs(a[i] - b[i]));
    return worst;
}

// ---- every operator the YOLO import added, on awkward cases, against ONNX Runtime ----

TEST(OnnxYolo, OperatorsMatchOnnxRuntimeOnAwkwardCases) {
    const nlohmann::json ref = read_json(data_dir() + "ops/ops.reference.json");
    ASSERT_GE(ref["cases"].size(), 15u);
    for (const auto& c : ref["cases"]) {
        const std::string name = c["name"];
        SCOPED_TRACE(name);
        auto model = OnnxModel::load(data_dir() + "ops/" + c["model"].get<std::string>());
        const auto x = c["input"].get<std::vector<float>>();
        const auto dims = c["dims"].get<std::vector<int64_t>>();
        const std::vector<float> y = model->run(x.data(), dims);
        const auto want = c["output"].get<std::vector<double>>();
        EXPECT_EQ(model->output_shape(), c["output_dims"].get<std::vector<int64_t>>());
        ASSERT_EQ(y.size(), want.size());
        // data movement and integer arithmetic are exact (the reference's 9 digits give the float back); Softmax and
        // Pow within float rounding
        const bool exact = name.find("softmax") == std::string::npos && name.find("pow") == std::string::npos;
        for (size_t i = 0; i < y.size(); ++i) {
            if (exact) ASSERT_EQ(y[i], static_cast<float>(want[i])) << "element " << i;
            else ASSERT_NEAR(y[i], want[i], 1e-6) << "element " << i;
        }
    }
}

// ---- the detectors ----

struct Detector {
    std::string name;
    size_t linears;  // Convs (BatchNormalization folded into its Conv)
};

void expect_same_boxes(const std::vector<Detection>& got, const nlohmann::json& want, const std::string& what) {
    ASSERT_EQ(got.size(), want.size()) << what;
    for (size_t k = 0; k < got.size(); ++k) {
        const auto& w = want[k];  // [label, score, x0, y0, x1, y1]
        EXPECT_EQ(got[k].label, w[0].get<int32_t>()) << what << " box " << k;
        EXPECT_NEAR(got[k].score, w[1].get<double>(), 1e-5) << what << " box " << k;
        const float corners[4] = {got[k].box.x0, got[k].box.y0, got[k].box.x1, got[k].box.y1};
        for (int j = 0; j < 4; ++j) EXPECT_NEAR(corners[j], w[2 + j].get<double>(), 1e-3) << what << " box " << k << " corner " << j;
    }
}

void check_detector(const Detector& d) {
    const nlohmann::json ref = read_json(data_dir() + d.name + ".reference.json");
    auto model = OnnxModel::load(data_dir() + d.name + ".onnx");
    EXPECT_EQ(model->linears().size(), d.linears);
    YoloPostprocess post;
    post.conf_threshold = ref["conf_threshold"].get<float>();
    post.iou_threshold = ref["iou_threshold"].get<double>();
    double worst = 0, worst_torch = 0;
    size_t boxes = 0;
    for (const auto& c : ref["cases"]) {
        const int64_t h = c["height"], w = c["width"], index = c["canvas"];
        const std::string what = d.name + " " + std::to_string(h) + "x" + std::to_string(w) + " canvas " + std::to_string(index);
        const DetectionImages images = mnist_detection_images(fixture("data/t10k-images-idx3-ubyte.gz"), index, 1, h, w);
        ASSERT_EQ(crc32(images.pixels.data(), images.pixels.size()), c["canvas_crc32"].get<uint32_t>()) << what << ": not the canvas the reference ran";
        const DetectionRun run = detect_yolo_onnx(*model, images, post);
        const auto dims = c["output_dims"].get<std::vector<int64_t>>();
        EXPECT_EQ(run.channels, dims[0]) << what;
        EXPECT_EQ(run.anchors, dims[1]) << what;
        const auto ort = c["ort_output"].get<std::vector<double>>();
        ASSERT_EQ(run.outputs.size(), ort.size()) << what;
        const double diff = max_abs_diff(run.outputs.data(), ort);
        EXPECT_LE(diff, 1e-4) << what;
        worst = std::max(worst, diff);
        if (c.contains("torch_output")) worst_torch = std::max(worst_torch, max_abs_diff(run.outputs.data(), c["torch_output"].get<std::vector<double>>()));
        expect_same_boxes(run.detections, c["boxes"], what);
        boxes += run.detections.size();
    }
    std::printf("[yolo] %s: max |output - ORT| %.3g over %zu images (PyTorch: %.3g; PyTorch vs ORT %.3g), %zu boxes = the reference's\n", d.name.c_str(),
                worst, ref["cases"].size(), worst_torch, ref["torch_vs_ort_max_abs"].get<double>(), boxes);
}

TEST(OnnxYolo, FusedConfigMatchesOnnxRuntimeAndItsBoxes) { check_detector({"yolov8-tiny-a", 60}); }
TEST(OnnxYolo, UnfusedNonSquareConfigMatchesOnnxRuntimeAndItsBoxes) { check_detector({"yolov8-tiny-b", 64}); }
TEST(OnnxYolo, DynamicShapeExportMatchesOnnxRuntimeAtTwoSizes) { check_detector({"yolov8-tiny-a-dynamic", 60}); }

TEST(OnnxYolo, SameBytesAtOneAndThreeThreads) {
    for (const char* name : {"yolov8-tiny-a", "yolov8-tiny-b"}) {
        auto model = OnnxModel::load(data_dir() + name + ".onnx");
        const auto& s = model->input_shape();
        const DetectionImages images = mnist_detection_images(fixture("data/t10k-images-idx3-ubyte.gz"), 10, 2, s[2], s[3]);
        ThreadPool::set_global_threads(1);
        const DetectionRun one = detect_yolo_onnx(*model, images, {});
        ThreadPool::set_global_threads(3);
        const DetectionRun three = detect_yolo_onnx(*model, images, {});
        ThreadPool::set_global_threads(0);
        ASSERT_EQ(one.outputs.size(), three.outputs.size());
        EXPECT_EQ(std::memcmp(one.outputs.data(), three.outputs.data(), one.outputs.size() * sizeof(float)), 0) << name;
    }
}

// The dynamic export is the fused network: at 64×64 it gives what the static export gives, and its shape arithmetic
// follows the input (the anchors of 96×64 are 12·8 + 6·4 + 3·2).
TEST(OnnxYolo, DynamicExportEqualsTheStaticOneAndFollowsTheInputSize) {
    auto fixed = OnnxModel::load(data_dir() + "yolov8-tiny-a.onnx");
    auto dynamic = OnnxModel::load(data_dir() + "yolov8-tiny-a-dynamic.onnx");
    EXPECT_EQ(dynamic->input_shape(), (std::vector<int64_t>{-1, 3, -1, -1}));
    const std::string mnist = fixture("data/t10k-images-idx3-ubyte.gz");
    const DetectionRun a = detect_yolo_onnx(*fixed, mnist_detection_images(mnist, 20, 2, 64, 64), {});
    const DetectionRun b = detect_yolo_onnx(*dynamic, mnist_detection_images(mnist, 20, 2, 64, 64), {});
    ASSERT_EQ(a.outputs.size(), b.outputs.size());
    double diff = 0;
    for (size_t i = 0; i < a.outputs.size(); ++i) diff = std::max(diff, static_cast<double>(std::fabs(a.outputs[i] - b.outputs[i])));
    EXPECT_LE(diff, 1e-4);
    const DetectionRun tall = detect_yolo_onnx(*dynamic, mnist_detection_images(mnist, 20, 1, 96, 64), {});
    EXPECT_EQ(tall.anchors, 12 * 8 + 6 * 4 + 3 * 2);
    // the shape arithmetic folded for 64×64 was redone for 96×64, and again for 64×64: the same bytes as before
    const DetectionRun again = detect_yolo_onnx(*dynamic, mnist_detection_images(mnist, 20, 2, 64, 64), {});
    ASSERT_EQ(again.outputs.size(), b.outputs.size());
    EXPECT_EQ(std::memcmp(again.outputs.data(), b.outputs.data(), b.outputs.size() * sizeof(float)), 0);
    // a static export refuses another size, naming it
    EXPECT_THROW(detect_yolo_onnx(*fixed, mnist_detection_images(mnist, 20, 1, 96, 64), {}), InvalidArgument);
}

// ---- post-processing on a hand-made output: the confidence test, one label per box, class-wise NMS ----

TEST(OnnxYolo, PostprocessKeepsTheBestClassAndSuppressesPerClass) {
    // 4 anchors, 2 classes: rows cx, cy, w, h, score0, score1
    const int64_t A = 4;
    const std::vector<float> out = {
        10, 11, 30, 50,     // cx
        10, 10, 30, 50,     // cy
        8, 8, 8, 8,         // w
        8, 8, 8, 8,         // h
        0.9f, 0.8f, 0.1f, 0.3f,  // class 0
        0.2f, 0.1f, 0.6f, 0.3f,  // class 1
    };
    YoloPostprocess p;
    std::vector<Detection> d = yolo_postprocess(out.data(), 6, A, 7, p);
    // anchor 1 overlaps anchor 0 (IoU 56/72 = 0.78 > 0.7, same class) and goes; anchor 3 ties 0.3 / 0.3 → class 0,
    // 0.3 > 0.25 kept; anchor 2 is class 1
    ASSERT_EQ(d.size(), 3u);
    EXPECT_EQ(d[0].label, 0);
    EXPECT_FLOAT_EQ(d[0].score, 0.9f);
    EXPECT_FLOAT_EQ(d[0].box.x0, 6.0f);
    EXPECT_FLOAT_EQ(d[0].box.y1, 14.0f);
    EXPECT_EQ(d[0].image, 7);
    EXPECT_EQ(d[1].label, 1);
    EXPECT_FLOAT_EQ(d[1].score, 0.6f);
    EXPECT_EQ(d[2].label, 0);
    EXPECT_FLOAT_EQ(d[2].score, 0.3f);
    p.iou_threshold = 0.8;  // the overlap no longer suppresses
    EXPECT_EQ(yolo_postprocess(out.data(), 6, A, 0, p).size(), 4u);
    p.conf_threshold = 0.3f;  // strictly greater: the 0.3 anchor goes
    EXPECT_EQ(yolo_postprocess(out.data(), 6, A, 0, p).size(), 3u);
    EXPECT_THROW(yolo_postprocess(out.data(), 4, A, 0, p), InvalidArgument);
}

// ---- compression passes on the detector ----

TEST(OnnxYolo, W8A8AndFourBitWeightsStayCloseToFp32) {
    const std::string mnist = fixture("data/t10k-images-idx3-ubyte.gz");
    const DetectionImages eval = mnist_detection_images(mnist, 0, 16, 64, 64);
    const DetectionImages calib = mnist_detection_images(mnist, 1000, 32, 64, 64);
    auto model = OnnxModel::load(data_dir() + "yolov8-tiny-a.onnx");
    const DetectionRun fp32 = detect_yolo_onnx(*model, eval, {});
    ASSERT_GT(fp32.detections.size(), 50u);
    auto measure = [&](const char* form) {
        const DetectionRun q = detect_yolo_onnx(*model, eval, {});
        double diff = 0;
        for (size_t i = 0; i < q.outputs.size(); ++i) diff = std::max(diff, static_cast<double>(std::fabs(q.outputs[i] - fp32.outputs[i])));
        const DetectionScore a = detection_agreement(fp32.detections, q.detections);
        std::printf("[yolo] yolov8-tiny-a %s on 16 canvases: max |Δoutput| %.3g, agreement with FP32 mAP %.3f (mAP50 %.3f), %zu boxes (FP32 %zu)\n", form,
                    diff, a.map, a.map50, q.detections.size(), fp32.detections.size());
        return a;
    };
    EXPECT_EQ(quantize_yolo_onnx_w8a8(*model, ActivationQuant::dynamic_per_token, nullptr, 0), 59);  // all but the DFL conv
    for (const Linear* l : model->linears()) EXPECT_EQ(l->int8 != nullptr, !is_dfl_expectation(*l)) << l->name;
    EXPECT_GE(measure("W8A8 dynamic").map, 0.6);
    model = OnnxModel::load(data_dir() + "yolov8-tiny-a.onnx");
    EXPECT_EQ(quantize_yolo_onnx_w8a8(*model, ActivationQuant::static_per_tensor, &calib, static_cast<int32_t>(calib::Method::minmax)), 59);
    EXPECT_GE(measure("W8A8 static (minmax, 32 other canvases)").map, 0.5);
    // 4-bit weight-only where a row is whole Q4_0 blocks (C·k·k a multiple of 32)
    model = OnnxModel::load(data_dir() + "yolov8-tiny-a.onnx");
    int64_t q4 = 0;
    for (Linear* l : model->linears())
        if (l->n_in() % 32 == 0) model->quantize_linear(*l, DType::Q4_0), ++q4;
    EXPECT_EQ(q4, 2);  // at these widths only the two 3×3 convs over 32 channels (K = 288); the rest stay f32
    std::printf("[yolo] Q4_0 on %lld of %zu Linears\n", static_cast<long long>(q4), model->linears().size());
    EXPECT_GE(measure("Q4_0 weight-only").map, 0.3);
}

// evaluate_yolo_onnx (cq eval --task detect): the report's forms, counts and sizes follow from the model, and
// calibration canvases that overlap the evaluated ones are refused
TEST(OnnxYolo, EvaluationReportsFormsSizesAndAgreement) {
    const std::string mnist = fixture("data/t10k-images-idx3-ubyte.gz");
    YoloEvalOptions o;
    o.count = 4;
    o.w8a8_dynamic = true;
    o.calib_images = mnist;
    o.calib_first = 100, o.calib_count = 8;
    o.q4_weights = true;
    const YoloEvalReport r = evaluate_yolo_onnx(data_dir() + "yolov8-tiny-b.onnx", mnist, o);
    EXPECT_EQ(r.linears, 64);
    EXPECT_EQ(r.fp32.images, 4);
    EXPECT_EQ(r.anchors, 12 * 16 + 6 * 8 + 3 * 4);
    ASSERT_EQ(r.forms.size(), 4u);
    EXPECT_EQ(r.forms[0].form, "fp32");
    EXPECT_DOUBLE_EQ(r.forms[0].agreement.map, r.forms[0].detections ? 1.0 : 0.0);
    EXPECT_EQ(r.forms[1].linears_changed, 63);  // all but the DFL conv
    EXPECT_EQ(r.forms[2].form, "w8a8-static (minmax)");
    EXPECT_EQ(r.forms[2].linears_changed, 63);
    // f32 weights → int8 weights + one f32 scale per output channel (biases stay f32)
    EXPECT_LT(static_cast<double>(r.forms[1].weight_bytes), 0.4 * static_cast<double>(r.forms[0].weight_bytes));
    EXPECT_GT(r.forms[1].max_abs_diff, 0.0);
    EXPECT_EQ(r.forms[3].linears_changed, 0);  // no row of this config is whole 32-blocks (C·k·k: 27, 36, 72, 108, …)
    EXPECT_EQ(r.forms[3].weight_bytes, r.forms[0].weight_bytes);
    o.calib_first = 2;
    EXPECT_THROW(evaluate_yolo_onnx(data_dir() + "yolov8-tiny-b.onnx", mnist, o), InvalidArgument);
    // a dynamic export needs the image size
    YoloEvalOptions d;
    d.count = 2;
    EXPECT_THROW(evaluate_yolo_onnx(data_dir() + "yolov8-tiny-a-dynamic.onnx", mnist, d), InvalidArgument);
    d.height = 64, d.width = 96;
    EXPECT_EQ(evaluate_yolo_onnx(data_dir() + "yolov8-tiny-a-dynamic.onnx", mnist, d).anchors, 8 * 12 + 4 * 6 + 2 * 3);
}

#ifdef CQ_CLI_PATH
// The CLI: cq info --layers lists the Convs as Linears, cq stats sees their inputs on canvases, cq eval --task detect
// reports the forms (its FP32 boxes those of the library's run).
TEST(OnnxYolo, CliInfoStatsAndEvalOnTheDetector) {
    const std::string cq = CQ_CLI_PATH, model = data_dir() + "yolov8-tiny-b.onnx", mnist = fixture("data/t10k-images-idx3-ubyte.gz");
    auto json_of = [&](const std::string& args) {
        const auto r = test::run_command(cq + " " + args + " --json");
        EXPECT_EQ(r.exit_code, 0) << args << "\n" << r.err;
        return r.exit_code == 0 ? nlohmann::json::parse(r.out) : nlohmann::json::object();
    };
    const nlohmann::json info = json_of("info " + model + " --layers");
    EXPECT_EQ(info.value("format", ""), "onnx");
    EXPECT_EQ(info["layers"].value("linears", 0), 64);
    const nlohmann::json stats = json_of("stats " + model + " --data " + mnist + " --range 0:2");
    ASSERT_EQ(stats["linears"].size(), 64u);
    EXPECT_EQ(stats["linears"][0]["rows"], 2 * 48 * 64);  // the first conv's output pixels (stride 2) of two canvases
    const nlohmann::json eval = json_of("eval " + model + " --task detect --data " + mnist + " --range 3:6 --w8a8-dynamic");
    ASSERT_EQ(eval["forms"].size(), 2u);
    EXPECT_EQ(eval["forms"][1]["form"], "w8a8-dynamic");
    EXPECT_EQ(eval["forms"][1]["linears_changed"], 63);
    // canvases 3, 4, 5 are the reference's: the same boxes
    const nlohmann::json ref = read_json(data_dir() + "yolov8-tiny-b.reference.json");
    size_t want = 0;
    for (const auto& c : ref["cases"]) want += c["boxes"].size();
    EXPECT_EQ(eval["fp32_detections"].size(), want);
    const auto bad = test::run_command(cq + " eval " + data_dir() + "yolov8-tiny-a-dynamic.onnx --task detect --data " + mnist);
    EXPECT_NE(bad.exit_code, 0);
    EXPECT_NE(bad.err.find("--canvas"), std::string::npos) << bad.err;
}
#endif

// ---- unsupported or hostile graphs: one clear error naming the node ----

std::string one_op_graph(const TempDir& dir, const std::string& file, const std::string& op, std::vector<onnx_ir::Attribute> attrs,
                         const std::function<std::vector<std::string>(onnx_export::GraphBuilder&)>& extra_inputs, int64_t opset = 17) {
    onnx_ir::Model m;
    m.opsets.emplace_back("", opset);
    onnx_export::GraphBuilder g(m.graph);
    g.input("x", onnx_ir::kFloat, {1, 2, 4, 4});
    std::vector<std::string> inputs = extra_inputs(g);
    if (inputs.empty() || inputs[0] != "-") inputs.insert(inputs.begin(), "x");  // "-": the op does not read x
    else inputs.erase(inputs.begin());
    g.op_to(op, inputs, "y", std::move(attrs));
    g.output("y", onnx_ir::kFloat, {1});
    std::string bytes, error;
    EXPECT_TRUE(onnx_ir::serialize(m, bytes, error)) << error;
    return dir.write(file, bytes);
}

template <typename E>
void expect_error_naming(const std::string& path, const std::vector<float>& x, const std::string& needle) {
    try {
        auto model = OnnxModel::load(path);
        model->run(x.data(), std::vector<int64_t>{1, 2, 4, 4});
        FAIL() << path << " accepted";
    } catch (const E& e) {
        const std::string msg = e.what();
        EXPECT_NE(msg.find(needle), std::string::npos) << msg;
        EXPECT_NE(msg.find("node 0"), std::string::npos) << msg;
    }
}

TEST(OnnxYolo, UnsupportedAndHostileGraphsNameTheNode) {
    using onnx_export::attr;
    TempDir dir;
    const std::vector<float> x(32, 0.5f);
    auto none = [](onnx_export::GraphBuilder&) { return std::vector<std::string>{}; };
    expect_error_naming<Unsupported>(one_op_graph(dir, "cubic.onnx", "Resize", {attr("mode", std::string("cubic"))},
                                                  [](onnx_export::GraphBuilder& g) {
                                                      return std::vector<std::string>{"", g.f32("scales", {4}, std::vector<float>{1, 1, 2, 2})};
                                                  }),
                                     x, "cubic");
    expect_error_naming<Unsupported>(one_op_graph(dir, "crop.onnx", "Resize", {attr("coordinate_transformation_mode", std::string("tf_crop_and_resize"))},
                                                  [](onnx_export::GraphBuilder& g) {
                                                      return std::vector<std::string>{"", g.f32("scales", {4}, std::vector<float>{1, 1, 2, 2})};
                                                  }),
                                     x, "tf_crop_and_resize");
    expect_error_naming<InvalidArgument>(one_op_graph(dir, "gather.onnx", "Gather", {attr("axis", int64_t{3})},
                                                      [](onnx_export::GraphBuilder& g) { return std::vector<std::string>{g.const_i64({0, 4})}; }),
                                         x, "index 4");
    expect_error_naming<InvalidArgument>(one_op_graph(dir, "split.onnx", "Split", {attr("axis", int64_t{1})},
                                                      [](onnx_export::GraphBuilder& g) { return std::vector<std::string>{g.const_i64({1, 2})}; }),
                                         x, "split sizes");
    expect_error_naming<InvalidArgument>(one_op_graph(dir, "slice.onnx", "Slice", {},
                                                      [](onnx_export::GraphBuilder& g) {
                                                          return std::vector<std::string>{g.const_i64({0}), g.const_i64({2}), g.const_i64({1}), g.const_i64({0})};
                                                      }),
                                         x, "step of 0");
    expect_error_naming<Unsupported>(one_op_graph(dir, "cast.onnx", "Cast", {attr("to", int64_t{onnx_ir::kString})}, none), x, "Cast to data type 8");
    expect_error_naming<InvalidArgument>(one_op_graph(dir, "expand.onnx", "Expand", {},
                                                      [](onnx_export::GraphBuilder& g) { return std::vector<std::string>{g.const_i64({1, 3, 4, 4})}; }),
                                         x, "do not broadcast");
    expect_error_naming<Unsupported>(one_op_graph(dir, "resize10.onnx", "Resize", {},
                                                  [](onnx_export::GraphBuilder& g) {
                                                      return std::vector<std::string>{g.f32("scales", {4}, std::vector<float>{1, 1, 2, 2})};
                                                  }, 10),
                                     x, "opset 11");
    // a Range whose length would pass cq's tensor limit
    expect_error_naming<InvalidArgument>(one_op_graph(dir, "range.onnx", "Range", {},
                                                      [](onnx_export::GraphBuilder& g) {
                                                          return std::vector<std::string>{"-", g.scalar_f32(0.0f), g.scalar_f32(1e12f), g.scalar_f32(1.0f)};
                                                      }),
                                         x, "2^28");
    // a truncated detector
    const auto bytes = test::read_bytes(data_dir() + "yolov8-tiny-a.onnx");
    EXPECT_THROW(OnnxModel::load(dir.write("cut.onnx", std::string(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(bytes.size() / 3)))), FormatError);
}

}  // namespace
}  // namespace cq
