// DETR on a detection set: MNIST digits tiled onto canvases as a small annotated set, batched runs with post-processing,
// and the report `cq eval` prints: each form's (FP32, W8A8 dynamic / static, 4-bit weights) size, latency, COCO mAP against
// the truth boxes and against FP32's detections, and its largest logit / box difference from FP32.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>

#include "cq/datasets.h"
#include "cq/detr.h"
#include "cq/error.h"

namespace cq {

namespace {

constexpr int64_t kDigit = 28;  // MNIST's side

// A fixed 64-bit LCG (Knuth's MMIX constants): the same cells on every run and platform.
struct Lcg {
    uint64_t state;
    uint32_t next() {
        state = state * 6364136223846793005ULL + 1442695040888963407ULL;
        return static_cast<uint32_t>(state >> 33);
    }
};

uint64_t weight_bytes(const DetrModel& model) {
    uint64_t total = 0;
    for (const LayerInfo& l : model.layers()) total += l.bytes;
    return total;
}

double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
    double m = 0;
    for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::abs(static_cast<double>(a[i]) - b[i]));
    return m;
}

// Median seconds of one forward pass over the set's first `batch` images.
double time_batch(DetrModel& model, const DetectionSet& set, int64_t batch, int64_t repeats) {
    const int64_t n = std::min(batch, set.count);
    const int64_t Q = model.config().num_queries, L = model.config().num_labels + 1;
    std::vector<float> logits(static_cast<size_t>(n * Q * L)), boxes(static_cast<size_t>(n * Q * 4));
    model.forward(set.pixels.data(), n, set.height, set.width, logits.data(), boxes.data());  // warm-up
    std::vector<double> times;
    for (int64_t r = 0; r < std::max<int64_t>(repeats, 1); ++r) {
        const auto t0 = std::chrono::steady_clock::now();
        model.forward(set.pixels.data(), n, set.height, set.width, logits.data(), boxes.data());
        times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    std::sort(times.begin(), times.end());
    return times[times.size() / 2];
}

}  // namespace

DetectionSet mnist_detection_set(const std::string& images_path, const std::string& labels_path, int64_t first, int64_t count, int64_t channels,
                                 int64_t height, int64_t width) {
    if (height < kDigit || width < kDigit)
        throw InvalidArgument("[detr] an MNIST detection canvas must be at least 28 × 28 (got " + std::to_string(height) + " × " + std::to_string(width) + ")");
    if (channels < 1 || count < 1 || first < 0) throw InvalidArgument("[detr] an MNIST detection set needs channels ≥ 1, count ≥ 1 and first ≥ 0");
    const int64_t rows = height / kDigit, cols = width / kDigit, cells = rows * cols;
    std::string labels = labels_path;
    if (labels.empty()) {
        std::string name = std::filesystem::path(images_path).filename().string();
        const auto at = name.find("images-idx3");
        if (at == std::string::npos) throw InvalidArgument("[detr] cannot derive the labels file of " + images_path + "; name it");
        name.replace(at, 11, "labels-idx1");
        labels = (std::filesystem::path(images_path).parent_path() / name).string();
    }
#if defined(CQ_MINIMAL)
    (void)labels;
    throw Unsupported("[detr] " + images_path + ": MNIST idx files need the full cq build (gzip; this is the CQ_MINIMAL runtime)");
#else
    // Digits are taken in file order from first · cells on, enough for every canvas to be full.
    const data::ImageDataset digits = data::load_mnist(images_path, labels, first * cells, count * cells);
    DetectionSet set;
    set.count = count, set.channels = channels, set.height = height, set.width = width;
    set.source = images_path + " (canvases " + std::to_string(first) + ".." + std::to_string(first + count) + ", " + std::to_string(height) + "×" +
                 std::to_string(width) + ", up to " + std::to_string(cells) + " digits each)";
    set.pixels.assign(static_cast<size_t>(count * channels * height * width), 0);
    int64_t next_digit = 0;
    for (int64_t i = 0; i < count; ++i) {
        Lcg rng{static_cast<uint64_t>(first + i) * 0x9E3779B97F4A7C15ULL + 1};
        // 1..cells digits in distinct cells: a partial Fisher–Yates shuffle of the cell indices
        const int64_t n = 1 + static_cast<int64_t>(rng.next() % static_cast<uint32_t>(cells));
        std::vector<int64_t> order(static_cast<size_t>(cells));
        for (int64_t c = 0; c < cells; ++c) order[static_cast<size_t>(c)] = c;
        for (int64_t k = 0; k < n; ++k) std::swap(order[static_cast<size_t>(k)], order[static_cast<size_t>(k + rng.next() % static_cast<uint32_t>(cells - k))]);
        uint8_t* canvas = set.pixels.data() + i * channels * height * width;
        for (int64_t k = 0; k < n; ++k, ++next_digit) {
            const int64_t cell = order[static_cast<size_t>(k)], oy = (cell / cols) * kDigit, ox = (cell % cols) * kDigit;
            const uint8_t* digit = digits.pixels.data() + next_digit * kDigit * kDigit;
            int64_t x0 = kDigit, y0 = kDigit, x1 = -1, y1 = -1;
            for (int64_t y = 0; y < kDigit; ++y)
                for (int64_t x = 0; x < kDigit; ++x) {
                    const uint8_t v = digit[y * kDigit + x];
                    if (!v) continue;
                    x0 = std::min(x0, x), y0 = std::min(y0, y), x1 = std::max(x1, x), y1 = std::max(y1, y);
                    for (int64_t ch = 0; ch < channels; ++ch) canvas[(ch * height + oy + y) * width + ox + x] = v;
                }
            if (x1 < 0) continue;  // a blank digit has no box
            set.truth.push_back(GroundTruth{i, digits.labels[static_cast<size_t>(next_digit)],
                                            Box{static_cast<float>(ox + x0), static_cast<float>(oy + y0), static_cast<float>(ox + x1 + 1),
                                                static_cast<float>(oy + y1 + 1)}});
        }
        next_digit += cells - n;  // each canvas owns `cells` digits of the file, used or not
    }
    return set;
#endif
}

DetrRun run_detr(DetrModel& model, const DetectionSet& set, float threshold, int64_t batch) {
    if (batch < 1) throw InvalidArgument("[detr] the batch must be at least 1");
    if (set.channels != model.config().backbone.num_channels)
        throw InvalidArgument("[detr] the detection set has " + std::to_string(set.channels) + " channels; the model takes " +
                              std::to_string(model.config().backbone.num_channels));
    const int64_t Q = model.config().num_queries, L = model.config().num_labels + 1, image = set.channels * set.height * set.width;
    DetrRun r;
    r.logits.resize(static_cast<size_t>(set.count * Q * L));
    r.boxes.resize(static_cast<size_t>(set.count * Q * 4));
    const auto t0 = std::chrono::steady_clock::now();
    for (int64_t b0 = 0; b0 < set.count; b0 += batch) {
        const int64_t n = std::min(batch, set.count - b0);
        model.forward(set.pixels.data() + b0 * image, n, set.height, set.width, r.logits.data() + b0 * Q * L, r.boxes.data() + b0 * Q * 4);
    }
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    r.detections = detr_post_process(r.logits.data(), r.boxes.data(), set.count, Q, L, set.height, set.width, threshold);
    return r;
}

std::vector<DetrFormReport> evaluate_detr(DetrModel& model, const DetectionSet& set, const DetrEvalOptions& o) {
    std::vector<DetrFormReport> out;
    // A container that holds quantized Linears (cq quantize's output) is measured as it is: its float weights are gone,
    // so there is no FP32 to compare with or to quantize again from.
    bool loaded_quantized = false;
    for (const Linear* l : model.linears()) loaded_quantized = loaded_quantized || l->int8 || dtype_traits(l->weight.dtype()).is_quantized;
    if (loaded_quantized && (o.w8a8_dynamic || o.calib || o.q4_weights))
        throw InvalidArgument("[detr] " + model.path() + " already holds quantized Linears; other forms are quantized from its HF directory "
                              "(evaluate that with --w8a8-dynamic / --w8a8-calib / --q4-weights)");
    const DetrRun base = run_detr(model, set, o.threshold, o.batch);
    const auto report = [&](const std::string& form, const DetrRun& r) {
        DetrFormReport f;
        f.form = form;
        f.weight_bytes = weight_bytes(model);
        f.seconds_per_batch = time_batch(model, set, o.latency_batch, o.latency_repeats);
        f.detections = static_cast<int64_t>(r.detections.size());
        f.truth = score_detections(r.detections, set.truth);
        f.agreement = detection_agreement(base.detections, r.detections);
        f.max_abs_logit_diff = max_abs_diff(base.logits, r.logits);
        f.max_abs_box_diff = max_abs_diff(base.boxes, r.boxes);
        return f;
    };
    out.push_back(report(loaded_quantized ? "as loaded (quantized)" : "fp32", base));
    std::vector<Linear*> linears = model.linears();
    const auto drop_int8 = [&] {
        for (Linear* l : linears) l->int8.reset();
    };
    if (o.w8a8_dynamic) {
        DetrFormReport f;
        const int64_t n = quantize_detr_w8a8(model, ActivationQuant::dynamic_per_token);
        f = report("w8a8 dynamic", run_detr(model, set, o.threshold, o.batch));
        f.linears_changed = n;
        out.push_back(std::move(f));
        drop_int8();
    }
    if (o.calib) {
        const int64_t n = quantize_detr_w8a8(model, ActivationQuant::static_per_tensor, o.calib, o.calib_method, o.percentile);
        DetrFormReport f = report("w8a8 static (" + std::string(calib::method_name(o.calib_method)) + ")", run_detr(model, set, o.threshold, o.batch));
        f.linears_changed = n;
        out.push_back(std::move(f));
        drop_int8();
    }
    if (o.q4_weights) {
        // keep the float weights to put back afterwards (the Tensors are shared, not copied)
        std::vector<Tensor> saved;
        for (Linear* l : linears) saved.push_back(l->weight);
        const DetrWeightQuantResult q = quantize_detr_weights(model, DType::Q4_0);
        DetrFormReport f = report("q4_0 weights", run_detr(model, set, o.threshold, o.batch));
        f.linears_changed = q.quantized;
        f.fallbacks = q.fallbacks;
        out.push_back(std::move(f));
        for (size_t i = 0; i < linears.size(); ++i)
            if (linears[i]->weight.dtype() != saved[i].dtype()) model.set_weight(*linears[i], saved[i], "");
    }
    return out;
}

}  // namespace cq
