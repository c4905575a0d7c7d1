// YOLOv8-style detectors imported from ONNX (cq/yolo.h): the head output's post-processing (ultralytics'
// non_max_suppression through cq's class-wise NMS), MNIST-digit detection images, detection runs and W8A8.
#include "cq/yolo.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <numeric>

#include "cq/calibration.h"
#include "cq/datasets.h"
#include "cq/error.h"
#include "cq/onnx_model.h"

namespace cq {

std::vector<Detection> yolo_postprocess(const float* output, int64_t channels, int64_t anchors, int64_t image, const YoloPostprocess& o) {
    if (channels < 5) throw InvalidArgument("[yolo] the output has " + std::to_string(channels) + " rows; a YOLOv8 head gives 4 box rows and ≥ 1 class");
    if (anchors < 0) throw InvalidArgument("[yolo] a negative anchor count");
    const int64_t nc = channels - 4;
    std::vector<Detection> candidates;
    for (int64_t a = 0; a < anchors; ++a) {
        // best class first (the first of equal scores, as torch's max), then the confidence test
        int32_t label = 0;
        float best = output[4 * anchors + a];
        for (int64_t c = 1; c < nc; ++c) {
            const float s = output[(4 + c) * anchors + a];
            if (s > best) best = s, label = static_cast<int32_t>(c);
        }
        if (!(best > o.conf_threshold)) continue;
        const float cx = output[a], cy = output[anchors + a], w = output[2 * anchors + a], h = output[3 * anchors + a];
        if (!std::isfinite(cx) || !std::isfinite(cy) || !(w >= 0) || !(h >= 0) || !std::isfinite(w) || !std::isfinite(h))
            throw InvalidArgument("[yolo] image " + std::to_string(image) + ", anchor " + std::to_string(a) + ": the box (" + std::to_string(cx) + ", " +
                                  std::to_string(cy) + ", " + std::to_string(w) + ", " + std::to_string(h) + ") is not finite or has a negative size");
        candidates.push_back(Detection{image, label, best, box_from_center(cx, cy, w, h)});
    }
    if (o.max_nms > 0 && static_cast<int64_t>(candidates.size()) > o.max_nms) {
        std::stable_sort(candidates.begin(), candidates.end(), [](const Detection& a, const Detection& b) { return a.score > b.score; });
        candidates.resize(static_cast<size_t>(o.max_nms));
    }
    return non_max_suppression(std::move(candidates), o.iou_threshold, o.max_det, o.class_agnostic);
}

DetectionImages mnist_detection_images(const std::string& images_path, int64_t first, int64_t count, int64_t height, int64_t width,
                                       const std::string& labels) {
    namespace fs = std::filesystem;
    if (first < 0 || count < 0) throw InvalidArgument("[yolo] canvases: first and count must be non-negative");
    if (height < 28 || width < 28 || height > 4096 || width > 4096)
        throw InvalidArgument("[yolo] canvases of " + std::to_string(height) + "×" + std::to_string(width) + " (each side 28 to 4096: the digits are 28×28)");
    std::string labels_path = labels;
    if (labels_path.empty()) {
        const std::string name = fs::path(images_path).filename().string();
        const size_t at = name.find("images-idx3");
        if (at == std::string::npos) throw InvalidArgument("[yolo] " + images_path + ": not an MNIST images file (*images-idx3*)");
        labels_path = (fs::path(images_path).parent_path() / std::string(name).replace(at, 11, "labels-idx1")).string();
    }
    const data::ImageDataset d = data::load_mnist(images_path, labels_path, 3 * first, 3 * count);
    if (d.count() != 3 * count)
        throw InvalidArgument("[yolo] " + images_path + " holds too few digits for canvases [" + std::to_string(first) + ", " + std::to_string(first + count) + ")");
    DetectionImages out;
    out.count = count, out.height = height, out.width = width;
    const int64_t plane = height * width;
    out.pixels.resize(static_cast<size_t>(count * 3 * plane));
    std::vector<int64_t> canvas(static_cast<size_t>(3 * plane));
    for (int64_t n = 0; n < count; ++n) {
        const int64_t index = first + n;
        for (int64_t c = 0; c < 3; ++c)
            for (int64_t y = 0; y < height; ++y)
                for (int64_t x = 0; x < width; ++x) canvas[static_cast<size_t>(c * plane + y * width + x)] = 40 + (x * 7 + y * 13 + c * 29 + index * 31) % 64;
        for (int64_t j = 0; j < 3; ++j) {
            const uint8_t* digit = d.pixels.data() + (n * 3 + j) * 784;
            int64_t s = 1 + (index + j) % 2;
            if (28 * s > std::min(height, width)) s = 1;
            const int64_t side = 28 * s;
            const int64_t y0 = (index * 19 + j * 41) % std::max<int64_t>(1, height - side + 1);
            const int64_t x0 = (index * 37 + j * 53) % std::max<int64_t>(1, width - side + 1);
            for (int64_t c = 0; c < 3; ++c) {
                const int64_t colour = 64 + ((index * 3 + j) * 50 + c * 85) % 192;
                for (int64_t y = 0; y < side; ++y)
                    for (int64_t x = 0; x < side; ++x) {
                        const int64_t v = digit[(y / s) * 28 + x / s];
                        int64_t& px = canvas[static_cast<size_t>(c * plane + (y0 + y) * width + x0 + x)];
                        px = (px * (255 - v) + colour * v + 127) / 255;
                    }
            }
            out.truth.push_back(GroundTruth{n, d.labels[static_cast<size_t>(n * 3 + j)],
                                            Box{static_cast<float>(x0), static_cast<float>(y0), static_cast<float>(x0 + side), static_cast<float>(y0 + side)}});
        }
        std::transform(canvas.begin(), canvas.end(), out.pixels.begin() + n * 3 * plane, [](int64_t v) { return static_cast<uint8_t>(v); });
    }
    return out;
}

DetectionRun detect_yolo_onnx(OnnxModel& model, const DetectionImages& images, const YoloPostprocess& options) {
    const auto& s = model.input_shape();
    if (s.size() != 4 || (s[1] > 0 && s[1] != 3))
        throw Unsupported("[yolo] " + model.path() + ": input '" + model.input_name() + "' is not an RGB image batch [N, 3, H, W]");
    if ((s[2] > 0 && s[2] != images.height) || (s[3] > 0 && s[3] != images.width))
        throw InvalidArgument("[yolo] " + model.path() + " takes " + std::to_string(s[2]) + "×" + std::to_string(s[3]) + " images, not " +
                              std::to_string(images.height) + "×" + std::to_string(images.width));
    DetectionRun r;
    r.images = images.count;
    const int64_t per = 3 * images.height * images.width;
    std::vector<float> x(static_cast<size_t>(per));
    double seconds = 0;
    for (int64_t n = 0; n < images.count; ++n) {
        const uint8_t* p = images.pixels.data() + n * per;
        for (int64_t k = 0; k < per; ++k) x[static_cast<size_t>(k)] = static_cast<float>(p[k]) / 255.0f;  // ultralytics: im /= 255
        const auto t0 = std::chrono::steady_clock::now();
        const std::vector<float> y = model.run(x.data(), {1, 3, images.height, images.width});
        seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        const auto& os = model.output_shape();
        if (os.size() != 3 || os[0] != 1)
            throw Unsupported("[yolo] " + model.path() + ": the first output is not [1, 4 + classes, anchors] (ultralytics' detection export)");
        if (n == 0) r.channels = os[1], r.anchors = os[2];
        if (os[1] != r.channels || os[2] != r.anchors) throw InvalidArgument("[yolo] the output's shape changed between images");
        r.outputs.insert(r.outputs.end(), y.begin(), y.end());
        std::vector<Detection> d = yolo_postprocess(y.data(), os[1], os[2], n, options);
        r.detections.insert(r.detections.end(), d.begin(), d.end());
    }
    r.seconds = seconds;
    return r;
}

bool is_dfl_expectation(const Linear& layer) {
    if (layer.int8 || layer.transposed || layer.weight.dtype() != DType::F32 || layer.n_out() != 1 || layer.n_in() < 2 || layer.bias) return false;
    const float* w = static_cast<const float*>(layer.weight.data());
    for (int64_t k = 0; k < layer.n_in(); ++k)
        if (w[k] != static_cast<float>(k)) return false;
    return true;
}

int64_t quantize_yolo_onnx_w8a8(OnnxModel& model, ActivationQuant activations, const DetectionImages* calibration, int32_t method,
                                double percentile, bool keep_dfl_float) {
    std::vector<Linear*> targets;
    for (Linear* l : model.linears())
        if (!(keep_dfl_float && is_dfl_expectation(*l))) targets.push_back(l);
    if (activations == ActivationQuant::dynamic_per_token) {
        for (Linear* l : targets) {
            l->int8 = quantize_linear_w8a8(*l, ActivationQuant::dynamic_per_token, {1.0f, 0}, 255);
            l->modified_by = "w8a8-dynamic";
        }
        return static_cast<int64_t>(targets.size());
    }
    if (!calibration || calibration->count == 0) throw InvalidArgument("[yolo] static W8A8 needs calibration images");
    calib::CalibrationStats stats;
    std::vector<ObserverId> ids;
    for (Linear* l : targets) {
        const std::string name = l->name;
        const int64_t n_in = l->n_in();
        ids.push_back(model.observe(*l, [&stats, name, n_in](const LinearEvent& e) { stats.observe(name, e.x, e.rows * n_in); }));
    }
    try {
        detect_yolo_onnx(model, *calibration, YoloPostprocess{});
    } catch (...) {
        for (ObserverId id : ids) model.remove_observer(id);
        throw;
    }
    for (ObserverId id : ids) model.remove_observer(id);
    for (Linear* l : targets) {
        const auto it = stats.observers.find(l->name);
        if (it == stats.observers.end()) throw InvalidArgument("[yolo] " + l->name + " saw no calibration data");
        const calib::Range r = it->second.range(static_cast<calib::Method>(method), percentile);
        l->int8 = quantize_linear_w8a8(*l, ActivationQuant::static_per_tensor, calib::u8_params(r, 255), 255);
        l->modified_by = "w8a8-static";
    }
    return static_cast<int64_t>(targets.size());
}

YoloEvalReport evaluate_yolo_onnx(const std::string& model_path, const std::string& mnist_images, const YoloEvalOptions& o) {
    auto model = OnnxModel::load(model_path);
    const auto& s = model->input_shape();
    YoloEvalReport r;
    r.height = o.height > 0 ? o.height : s.size() == 4 ? s[2] : -1;
    r.width = o.width > 0 ? o.width : s.size() == 4 ? s[3] : -1;
    if (r.height <= 0 || r.width <= 0)
        throw InvalidArgument("[yolo] " + model_path + " leaves the image size open: give one (cq eval --canvas HxW)");
    const bool same_file = o.calib_images == mnist_images;
    if (!o.calib_images.empty() && same_file && o.calib_first < o.first + o.count && o.first < o.calib_first + o.calib_count)
        throw InvalidArgument("[yolo] the calibration canvases [" + std::to_string(o.calib_first) + ", " + std::to_string(o.calib_first + o.calib_count) +
                              ") overlap the evaluated ones [" + std::to_string(o.first) + ", " + std::to_string(o.first + o.count) + ")");
    const DetectionImages images = mnist_detection_images(mnist_images, o.first, o.count, r.height, r.width);
    // one image first, untimed, so no form's time includes first-touch costs (thread pool start, page faults)
    DetectionImages warm_up = images;
    warm_up.count = std::min<int64_t>(1, images.count);
    warm_up.pixels.resize(static_cast<size_t>(warm_up.count * 3 * r.height * r.width));
    auto measure = [&](OnnxModel& m, const std::string& form, int64_t changed) {
        detect_yolo_onnx(m, warm_up, o.post);
        DetectionRun run = detect_yolo_onnx(m, images, o.post);
        YoloFormReport f;
        f.form = form;
        f.linears_changed = changed;
        for (const Linear* l : m.linears()) f.weight_bytes += l->bytes();
        f.ms_per_image = images.count > 0 ? 1e3 * run.seconds / static_cast<double>(images.count) : 0.0;
        f.detections = static_cast<int64_t>(run.detections.size());
        if (r.forms.empty()) {
            r.fp32 = std::move(run);
            r.channels = r.fp32.channels, r.anchors = r.fp32.anchors;
            f.agreement = detection_agreement(r.fp32.detections, r.fp32.detections);
        } else {
            for (size_t i = 0; i < r.fp32.outputs.size(); ++i)
                f.max_abs_diff = std::max(f.max_abs_diff, static_cast<double>(std::fabs(r.fp32.outputs[i] - run.outputs[i])));
            f.agreement = detection_agreement(r.fp32.detections, run.detections);
        }
        r.forms.push_back(std::move(f));
    };
    r.linears = static_cast<int64_t>(model->linears().size());
    measure(*model, "fp32", 0);
    if (o.w8a8_dynamic) {
        model = OnnxModel::load(model_path);
        const int64_t n = quantize_yolo_onnx_w8a8(*model, ActivationQuant::dynamic_per_token, nullptr, 0, o.percentile, o.keep_dfl_float);
        measure(*model, "w8a8-dynamic", n);
    }
    if (!o.calib_images.empty()) {
        const DetectionImages calibration = mnist_detection_images(o.calib_images, o.calib_first, o.calib_count, r.height, r.width);
        model = OnnxModel::load(model_path);
        const int64_t n = quantize_yolo_onnx_w8a8(*model, ActivationQuant::static_per_tensor, &calibration, o.calib_method, o.percentile, o.keep_dfl_float);
        measure(*model, "w8a8-static (" + std::string(calib::method_name(static_cast<calib::Method>(o.calib_method))) + ")", n);
    }
    if (o.q4_weights) {
        model = OnnxModel::load(model_path);
        int64_t n = 0;
        for (Linear* l : model->linears())
            if (l->n_in() % 32 == 0 && !(o.keep_dfl_float && is_dfl_expectation(*l))) model->quantize_linear(*l, DType::Q4_0, "q4_0"), ++n;
        measure(*model, "q4_0 weights", n);
    }
    return r;
}

}  // namespace cq
