// cq stats: an observer on every Linear accumulates, per input channel, Σx² (in double, row by row in
// order, so the sums do not depend on the thread count) and max |x|, plus the output's moments, while
// the model runs on real data; decoder LLMs on text chunks, encoders / ViT on a labelled dataset.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>

#include "cq/detr.h"
#include "cq/encoder.h"
#include "cq/seq2seq.h"
#include "cq/error.h"
#include "cq/layer_stats.h"
#include "cq/llm.h"
#if !defined(CQ_MINIMAL)
#include "cq/onnx_model.h"
#include "cq/yolo.h"
#endif
#include "cq/mapped_file.h"
#include "eval/text_chunks.h"

namespace cq {

namespace {

struct Accumulator {
    std::vector<double> sum_sq;
    std::vector<float> absmax;
    int64_t rows = 0;
    double out_sum = 0, out_sum_sq = 0;
    float out_absmax = 0;
    int64_t out_values = 0;

    void add(const LinearEvent& e) {
        const int64_t n_in = e.layer.n_in(), n_out = e.layer.n_out();
        if (sum_sq.empty()) {
            sum_sq.assign(static_cast<size_t>(n_in), 0.0);
            absmax.assign(static_cast<size_t>(n_in), 0.0f);
        }
        for (int64_t r = 0; r < e.rows; ++r) {
            if (e.row_mask && e.row_mask[r] == 0) continue;
            const float* x = e.x + r * n_in;
            for (int64_t c = 0; c < n_in; ++c) {
                const double v = x[c];
                sum_sq[static_cast<size_t>(c)] += v * v;
                absmax[static_cast<size_t>(c)] = std::max(absmax[static_cast<size_t>(c)], std::abs(x[c]));
            }
            const float* y = e.y + r * n_out;
            for (int64_t c = 0; c < n_out; ++c) {
                out_sum += y[c];
                out_sum_sq += static_cast<double>(y[c]) * y[c];
                out_absmax = std::max(out_absmax, std::abs(y[c]));
            }
            out_values += n_out;
            ++rows;
        }
    }
};

#if !defined(CQ_MINIMAL)
// An imported ONNX model: an RGB input [N, 3, H, W] (a detector such as YOLO) runs on MNIST canvases (cq/yolo.h; the
// selection counts canvases, 32 by default; open sizes 64×64), any other image input on the images as cq eval does.
int64_t run_onnx_for_stats(OnnxModel& model, const std::string& data_path, const LayerStatsOptions& o) {
    const auto& s = model.input_shape();
    if (s.size() == 4 && (s[1] == 3 || s[1] < 0)) {
        const int64_t h = s[2] > 0 ? s[2] : 64, w = s[3] > 0 ? s[3] : 64;
        const DetectionImages images = mnist_detection_images(data_path, o.selection.first, o.selection.count < 0 ? 32 : o.selection.count, h, w,
                                                              o.selection.labels_path);
        std::vector<float> x(static_cast<size_t>(3 * h * w));
        for (int64_t n = 0; n < images.count; ++n) {
            for (size_t k = 0; k < x.size(); ++k) x[k] = static_cast<float>(images.pixels[static_cast<size_t>(n) * x.size() + k]) / 255.0f;
            model.run(x.data(), {1, 3, h, w});
        }
        return images.count;
    }
    OnnxImageOptions image;
    image.batch = o.run.batch;
    return classify_images_onnx(model, data_path, o.selection, image).samples;
}
#endif

LinearStats finish(const Linear& l, const Accumulator& a, int64_t top) {
    LinearStats s;
    s.name = l.name, s.source_name = l.source_name, s.role = l.role, s.block = l.block;
    s.n_in = l.n_in(), s.n_out = l.n_out(), s.format = l.format(), s.rows = a.rows;
    if (a.rows == 0) return s;
    const double n = static_cast<double>(a.rows);
    s.input_mean_square.resize(a.sum_sq.size());
    for (size_t c = 0; c < a.sum_sq.size(); ++c) s.input_mean_square[c] = a.sum_sq[c] / n;
    s.input_absmax = a.absmax;
    s.input_mean_square_all = std::accumulate(s.input_mean_square.begin(), s.input_mean_square.end(), 0.0) /
                              static_cast<double>(s.input_mean_square.size());
    s.input_absmax_all = *std::max_element(a.absmax.begin(), a.absmax.end());
    std::vector<int64_t> order(a.absmax.size());
    std::iota(order.begin(), order.end(), 0);
    const size_t k = std::min(order.size(), static_cast<size_t>(std::max<int64_t>(top, 0)));
    // Largest max |x| first; ties by channel index, so the listing is deterministic.
    std::partial_sort(order.begin(), order.begin() + static_cast<ptrdiff_t>(k), order.end(), [&](int64_t x, int64_t y) {
        const float ax = a.absmax[static_cast<size_t>(x)], ay = a.absmax[static_cast<size_t>(y)];
        return ax != ay ? ax > ay : x < y;
    });
    for (size_t i = 0; i < k; ++i) {
        const auto c = static_cast<size_t>(order[i]);
        s.outliers.push_back({order[i], a.absmax[c], s.input_mean_square[c]});
    }
    const double values = static_cast<double>(a.out_values);
    s.output_mean = a.out_sum / values;
    s.output_mean_square = a.out_sum_sq / values;
    s.output_absmax = a.out_absmax;
    return s;
}

}  // namespace

LayerStatsReport collect_layer_stats(Model& model, const std::string& data_path, const LayerStatsOptions& o, const ProgressFn& progress) {
    const auto t0 = std::chrono::steady_clock::now();
    LayerStatsReport r;
    r.model = model.path(), r.data = data_path, r.kind = model.kind();
    const std::vector<Linear*> linears = model.linears();
    std::vector<Accumulator> acc(linears.size());
    std::vector<ObserverId> ids;
    for (size_t i = 0; i < linears.size(); ++i)
        ids.push_back(model.observe(*linears[i], [a = &acc[i]](const LinearEvent& e) { a->add(e); }));
    try {
        if (auto* llm = dynamic_cast<LanguageModel*>(&model)) {
            r.units = run_text_chunks(*llm, data_path, o.n_ctx, o.max_chunks, 1, "stats", progress);
        } else if (auto* enc = dynamic_cast<EncoderModel*>(&model)) {
            const LabelledData data = load_labelled_data(data_path, *enc, o.selection);
            r.units = data.count();
            // Labels play no part in the statistics; a label outside the head would only trip the accuracy check.
            LabelledData unlabelled = data;
            if (unlabelled.text) for (auto& e : unlabelled.text->examples) e.label = 0;
            if (unlabelled.images) for (auto& l : unlabelled.images->labels) l = 0;
            classify_dataset(*enc, unlabelled, o.run, progress);
        } else if (auto* detr = dynamic_cast<DetrModel*>(&model)) {
            // a detector: MNIST digits tiled onto canvases (the selection counts canvases), forward passes in batches
            const int64_t count = o.selection.count < 0 ? 64 : o.selection.count;
            const DetectionSet set = mnist_detection_set(data_path, o.selection.labels_path, o.selection.first, count, detr->config().backbone.num_channels,
                                                         kDetrMnistCanvasHeight, kDetrMnistCanvasWidth);
            run_detr(*detr, set, 1.0f, o.run.batch);
            r.units = set.count;
#if !defined(CQ_MINIMAL)
        } else if (auto* onnx = dynamic_cast<OnnxModel*>(&model)) {
            r.units = run_onnx_for_stats(*onnx, data_path, o);
#endif
        } else if (auto* s2s = dynamic_cast<Seq2SeqModel*>(&model)) {
            // an encoder–decoder: teacher-forced passes over text pairs (source / target columns)
            const int64_t end = o.selection.count < 0 ? -1 : o.selection.first + o.selection.count;
            r.units = evaluate_pairs(*s2s, data_path, o.selection.first, end).pairs;
        } else {
            throw Unsupported("[stats] this kind of model has no data runner yet");
        }
    } catch (...) {
        for (const ObserverId id : ids) model.remove_observer(id);
        throw;
    }
    for (const ObserverId id : ids) model.remove_observer(id);
    for (size_t i = 0; i < linears.size(); ++i) r.linears.push_back(finish(*linears[i], acc[i], o.top_channels));
    r.tokens = r.linears.empty() ? 0 : r.linears.front().rows;
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return r;
}

}  // namespace cq
