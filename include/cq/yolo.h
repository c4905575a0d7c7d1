// YOLOv8-style detectors imported from ONNX (cq/onnx_model.h): ultralytics' post-processing of the raw head output,
// detection images made from MNIST digits (no COCO images here), running a detector over them, and its W8A8.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "cq/detection.h"
#include "cq/w8a8.h"

namespace cq {

class OnnxModel;

/// ultralytics' ops.non_max_suppression for one label per box: a box is a candidate when its best class score
/// exceeds conf_threshold; at most max_nms candidates (highest scores) go to class-wise NMS (class_agnostic: across
/// classes), which keeps at most max_det.
struct YoloPostprocess {
    float conf_threshold = 0.25f;  // ultralytics predict's default (its val uses 0.001)
    double iou_threshold = 0.7;    // predict's and val's default; 0.45 is the older YOLOv5 value
    int64_t max_det = 300;
    int64_t max_nms = 30000;
    bool class_agnostic = false;
};

/// Decodes one image's raw output [4 + nc, anchors] (rows: cx, cy, w, h in input pixels, then nc class scores after
/// the sigmoid; ultralytics' export layout) into detections of image `image`, boxes as corners. InvalidArgument when
/// channels < 5.
std::vector<Detection> yolo_postprocess(const float* output, int64_t channels, int64_t anchors, int64_t image, const YoloPostprocess& options);

/// Detection test images: canvases [count, 3, height, width] (u8, RGB planes), each three MNIST digits (28×28 or
/// 56×56) tinted and blended onto a textured background at positions that follow from the canvas index; `truth`
/// holds each digit's square and label. Canvas i uses digits 3i, 3i+1, 3i+2 of the file, so canvases [first,
/// first + count) of one file never share digits with another range. scripts/make_yolo_onnx.py (mnist_canvas) makes
/// the same bytes.
struct DetectionImages {
    int64_t count = 0, height = 0, width = 0;
    std::vector<uint8_t> pixels;
    std::vector<GroundTruth> truth;  // image = canvas index - first
};
/// Canvases [first, first + count) from an MNIST idx3 images file (labels from the idx1 file beside it, or `labels`).
DetectionImages mnist_detection_images(const std::string& images_path, int64_t first, int64_t count, int64_t height, int64_t width,
                                       const std::string& labels = "");

/// A detector's raw outputs and post-processed boxes on a set of images.
struct DetectionRun {
    std::vector<Detection> detections;  // by image, then descending score
    std::vector<float> outputs;         // [images, channels, anchors]
    int64_t images = 0, channels = 0, anchors = 0;
    double seconds = 0;  // the forward passes (not the post-processing)
};

/// Runs an imported YOLOv8-style detector on `images` (pixels / 255, NCHW, one image per forward pass) and
/// post-processes each output. The input must be [N, 3, H, W] with H, W fixed to the images' size or left open.
DetectionRun detect_yolo_onnx(OnnxModel& model, const DetectionImages& images, const YoloPostprocess& options);

/// W8A8 of an imported detector: per-output-channel int8 weights on every Conv / Gemm / MatMul Linear except
/// (keep_dfl_float) the DFL expectation conv (1×1, one output, weights 0, 1, … reg_max − 1: a fixed operator, not a
/// learned layer); activations u8 per token at run time (dynamic) or per tensor from the ranges seen on
/// `calibration` (static, calib::Method). Returns the number of Linears quantized.
int64_t quantize_yolo_onnx_w8a8(OnnxModel& model, ActivationQuant activations, const DetectionImages* calibration, int32_t method,
                                double percentile = 99.99, bool keep_dfl_float = true);

/// Whether a Linear is YOLOv8's DFL expectation conv (weights exactly 0, 1, …, n − 1 in one output row).
struct Linear;
bool is_dfl_expectation(const Linear& layer);

/// `cq eval MODEL.onnx --task detect`: an imported detector on MNIST canvases, FP32 and the requested compressed
/// forms side by side (each from a fresh load of the file), every form's boxes scored against FP32's.
struct YoloEvalOptions {
    int64_t first = 0, count = 32;  // canvases [first, first + count)
    int64_t height = 0, width = 0;  // 0: the model's input size (needed where the graph leaves it open)
    YoloPostprocess post;
    bool w8a8_dynamic = false;
    std::string calib_images;       // non-empty: also W8A8 static, calibrated on canvases of this MNIST file
    int64_t calib_first = 1000, calib_count = 64;  // apart from the evaluated canvases when the file is the same
    int32_t calib_method = 0;       // calib::Method
    double percentile = 99.99;
    bool q4_weights = false;        // also Q4_0 weight-only on the Linears whose rows are whole 32-blocks
    bool keep_dfl_float = true;
};
struct YoloFormReport {
    std::string form;                  // "fp32", "w8a8-dynamic", "w8a8-static (minmax)", "q4_0 weights"
    int64_t linears_changed = 0;
    uint64_t weight_bytes = 0;         // the Linears' weights, biases and scales in memory
    double ms_per_image = 0;           // forward passes only
    int64_t detections = 0;
    DetectionScore agreement;          // this form's boxes scored with FP32's as the truth
    double max_abs_diff = 0;           // max |this form − FP32| over the raw outputs
};
struct YoloEvalReport {
    int64_t height = 0, width = 0, linears = 0, channels = 0, anchors = 0;
    DetectionRun fp32;
    std::vector<YoloFormReport> forms;  // fp32 first
};
YoloEvalReport evaluate_yolo_onnx(const std::string& model_path, const std::string& mnist_images, const YoloEvalOptions& options);

}  // namespace cq
