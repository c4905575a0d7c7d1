// `cq eval MODEL --task classification --data FILE`: accuracy of an encoder classifier on a labelled
// TSV, MNIST idx files or an image folder; with --compare OTHER, the agreement and logits KL-divergence
// of the two models on the same samples, in the same run. An encoder–decoder (BART, T5, BLIP; its directory or cq's
// container): teacher-forced loss and perplexity on text pairs or (image, caption) pairs (commands/eval_seq2seq.cpp).
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <tuple>

#include "commands/commands.h"
#include "commands/eval_seq2seq.h"
#include "commands/format.h"
#include "commands/json_reports.h"
#include "cq/classify.h"
#include "cq/error.h"
#include "cq/calibration.h"
#include "cq/detr.h"
#include "cq/kernels.h"
#include "cq/onnx_model.h"
#include "cq/seq2seq.h"
#include "cq/yolo.h"

namespace cq::cli {

namespace {
struct Options {
    std::string model, task = "classification", data, compare, range;
    DataSelection selection;
    ClassifyOptions classify;
    bool json = false;
    float pixel_scale = 1.0f;
    std::string onnx_calib, calib_range, calib_method = "minmax";
    std::string classes, prompt = "a photo of a {}.";  // CLIP zero-shot
    bool w8a8_dynamic = false;                         // BART / T5 / BLIP: also W8A8 with dynamic activations
    int64_t generate = 0;                              // BLIP: greedy captions of at most this many new tokens
    int64_t calib_samples = 256;
    float threshold = 0.5f;                            // DETR: post-processing score threshold
    std::string canvas;                                // DETR: MNIST canvas HxW
    bool q4_weights = false;                           // DETR: also Q4_0 weight-only
    double iou = 0.7;                                  // YOLO (.onnx): NMS IoU threshold
    bool agnostic = false;                             // YOLO: NMS across classes
    int64_t show = 3;                                  // YOLO: images whose boxes are printed
};

std::string percent(double v) {
    char b[32];
    std::snprintf(b, sizeof b, "%.2f %%", 100.0 * v);
    return b;
}

// A DETR directory: detections on MNIST digits tiled onto canvases, FP32 and the requested quantized forms side by side.
int eval_detr(const Options& o) {
    auto model = DetrModel::load(o.model);
    int64_t height = kDetrMnistCanvasHeight, width = kDetrMnistCanvasWidth;
    if (!o.canvas.empty() && std::sscanf(o.canvas.c_str(), "%ldx%ld", &height, &width) != 2)
        throw InvalidArgument("--canvas '" + o.canvas + "' is not HEIGHTxWIDTH");
    const auto [first, count] = parse_sample_range(o.range, "--range");
    const int64_t channels = model->config().backbone.num_channels;
    const DetectionSet set = mnist_detection_set(o.data, o.selection.labels_path, first, count < 0 ? 64 : count, channels, height, width);
    DetrEvalOptions e;
    e.threshold = o.threshold;
    e.batch = o.classify.batch;
    e.w8a8_dynamic = o.w8a8_dynamic;
    e.q4_weights = o.q4_weights;
    std::optional<DetectionSet> calib;
    if (!o.onnx_calib.empty()) {
        const auto [c_first, c_count] = parse_sample_range(o.calib_range, "--calib-range");
        calib = mnist_detection_set(o.onnx_calib, "", c_first, c_count < 0 ? 32 : c_count, channels, height, width);
        e.calib = &*calib;
        const auto method = calib::parse_method(o.calib_method);
        if (!method) throw InvalidArgument("--calib-method '" + o.calib_method + "' is not one of minmax, percentile, mse, entropy");
        e.calib_method = *method;
    }
    const std::vector<DetrFormReport> forms = evaluate_detr(*model, set, e);
    if (o.json) {
        nlohmann::json j{{"model", o.model}, {"data", set.source}, {"task", "detection"}, {"threshold", o.threshold}, {"truth_boxes", set.truth.size()}};
        for (const DetrFormReport& f : forms)
            j["forms"].push_back({{"form", f.form}, {"linears_changed", f.linears_changed}, {"fallbacks", f.fallbacks}, {"weight_bytes", f.weight_bytes},
                                  {"seconds_per_batch", f.seconds_per_batch}, {"detections", f.detections}, {"map", f.truth.map},
                                  {"map50", f.truth.map50}, {"agreement_map", f.agreement.map}, {"agreement_map50", f.agreement.map50},
                                  {"max_abs_logit_diff", f.max_abs_logit_diff}, {"max_abs_box_diff", f.max_abs_box_diff}});
        print_json(j);
        return 0;
    }
    std::printf("%s on %s: %lld truth boxes, threshold %.3g, %s kernels\n", model->architecture().c_str(), set.source.c_str(),
                static_cast<long long>(set.truth.size()), o.threshold, std::string(isa_level_name(kernel_table().level)).c_str());
    std::vector<std::vector<std::string>> rows{
        {"form", "weight bytes", "ms / " + std::to_string(e.latency_batch) + " images", "detections", "mAP", "mAP50", "agreement mAP", "agreement mAP50", "max |Δlogit|", "max |Δbox|"}};
    char b[7][32];
    for (const DetrFormReport& f : forms) {
        std::snprintf(b[0], 32, "%.2f", 1e3 * f.seconds_per_batch);
        std::snprintf(b[1], 32, "%.4f", f.truth.map);
        std::snprintf(b[2], 32, "%.4f", f.truth.map50);
        std::snprintf(b[3], 32, "%.4f", f.agreement.map);
        std::snprintf(b[4], 32, "%.3g", f.max_abs_logit_diff);
        std::snprintf(b[5], 32, "%.3g", f.max_abs_box_diff);
        std::snprintf(b[6], 32, "%.4f", f.agreement.map50);
        rows.push_back({f.form, group_digits(f.weight_bytes), b[0], std::to_string(f.detections), b[1], b[2], b[3], b[6], b[4], b[5]});
    }
    print_table(rows, {false, true, true, true, true, true, true, true, true, true}, 2);
    for (const DetrFormReport& f : forms)
        if (!f.fallbacks.empty())  // --json lists each
            std::printf("  %s: %zu selected Linears kept f32, e.g. %s\n", f.form.c_str(), f.fallbacks.size(), f.fallbacks.front().c_str());
    return 0;
}

// An imported YOLOv8-style detector (.onnx): MNIST canvases, FP32 and the requested compressed forms side by side.
int eval_yolo(const Options& o, bool threshold_given) {
    YoloEvalOptions e;
    const auto [first, count] = parse_sample_range(o.range, "--range");
    e.first = first, e.count = count < 0 ? 32 : count;
    if (!o.canvas.empty() && std::sscanf(o.canvas.c_str(), "%ldx%ld", &e.height, &e.width) != 2)
        throw InvalidArgument("--canvas '" + o.canvas + "' is not HEIGHTxWIDTH");
    if (threshold_given) e.post.conf_threshold = o.threshold;  // else ultralytics predict's 0.25
    e.post.iou_threshold = o.iou;
    e.post.class_agnostic = o.agnostic;
    e.w8a8_dynamic = o.w8a8_dynamic;
    e.q4_weights = o.q4_weights;
    if (!o.onnx_calib.empty()) {
        e.calib_images = o.onnx_calib;
        const auto [c_first, c_count] = parse_sample_range(o.calib_range, "--calib-range");
        e.calib_first = o.calib_range.empty() ? std::max<int64_t>(1000, e.first + e.count) : c_first;
        e.calib_count = c_count < 0 ? 64 : c_count;
        const auto method = calib::parse_method(o.calib_method);
        if (!method) throw InvalidArgument("--calib-method '" + o.calib_method + "' is not one of minmax, percentile, mse, entropy");
        e.calib_method = static_cast<int32_t>(*method);
    }
    const YoloEvalReport r = evaluate_yolo_onnx(o.model, o.data, e);
    if (o.json) {
        nlohmann::json j{{"model", o.model}, {"data", o.data}, {"task", "detection"}, {"canvases", {e.first, e.first + e.count}},
                         {"height", r.height}, {"width", r.width}, {"conf_threshold", e.post.conf_threshold}, {"iou_threshold", e.post.iou_threshold},
                         {"output", {r.channels, r.anchors}}, {"linears", r.linears}};
        for (const YoloFormReport& f : r.forms)
            j["forms"].push_back({{"form", f.form}, {"linears_changed", f.linears_changed}, {"weight_bytes", f.weight_bytes}, {"ms_per_image", f.ms_per_image},
                                  {"detections", f.detections}, {"agreement_map", f.agreement.map}, {"agreement_map50", f.agreement.map50},
                                  {"max_abs_output_diff", f.max_abs_diff}});
        for (const Detection& d : r.fp32.detections)
            j["fp32_detections"].push_back({{"image", e.first + d.image}, {"label", d.label}, {"score", d.score}, {"box", {d.box.x0, d.box.y0, d.box.x1, d.box.y1}}});
        print_json(j);
        return 0;
    }
    std::printf("%s: YOLO detector on %lld MNIST canvases [%lld, %lld) of %s, %lldx%lld; output [%lld, %lld]; conf > %.3g, NMS IoU %.3g%s; %s kernels\n",
                o.model.c_str(), static_cast<long long>(e.count), static_cast<long long>(e.first), static_cast<long long>(e.first + e.count), o.data.c_str(),
                static_cast<long long>(r.height), static_cast<long long>(r.width), static_cast<long long>(r.channels), static_cast<long long>(r.anchors),
                e.post.conf_threshold, e.post.iou_threshold, e.post.class_agnostic ? " (class-agnostic)" : "", std::string(isa_level_name(kernel_table().level)).c_str());
    std::vector<std::vector<std::string>> rows{{"form", "Linears changed", "weight bytes", "ms / image", "detections", "agreement mAP", "mAP50", "max |Δoutput|"}};
    char b[4][32];
    for (const YoloFormReport& f : r.forms) {
        std::snprintf(b[0], 32, "%.3f", f.ms_per_image);
        std::snprintf(b[1], 32, "%.4f", f.agreement.map);
        std::snprintf(b[2], 32, "%.4f", f.agreement.map50);
        std::snprintf(b[3], 32, "%.3g", f.max_abs_diff);
        rows.push_back({f.form, std::to_string(f.linears_changed) + " / " + std::to_string(r.linears), group_digits(f.weight_bytes), b[0],
                        std::to_string(f.detections), b[1], b[2], b[3]});
    }
    print_table(rows, {false, true, true, true, true, true, true, true}, 2);
    for (int64_t image = 0, k = 0; image < std::min<int64_t>(o.show, e.count); ++image) {
        std::printf("  fp32 boxes of canvas %lld:", static_cast<long long>(e.first + image));
        int64_t n = 0;
        for (; k < static_cast<int64_t>(r.fp32.detections.size()) && r.fp32.detections[static_cast<size_t>(k)].image == image; ++k, ++n)
            if (n < 5) {
                const Detection& d = r.fp32.detections[static_cast<size_t>(k)];
                std::printf(" [class %d %.3f: %.1f %.1f %.1f %.1f]", d.label, d.score, d.box.x0, d.box.y0, d.box.x1, d.box.y1);
            }
        std::printf("%s (%lld)\n", n > 5 ? " ..." : "", static_cast<long long>(n));
    }
    return 0;
}
}  // namespace

Runner register_eval(CLI::App& app) {
    auto o = std::make_shared<Options>();
    CLI::App* cmd = app.add_subcommand("eval", "Evaluate an encoder classifier (accuracy; agreement with another model)");
    cmd->add_option("model", o->model, "An HF model directory, a cq W8A8 .gguf, or an .onnx image classifier (imported)")->required();
    cmd->add_option("--task", o->task, "What to evaluate: classification, or detect (a YOLO .onnx on MNIST canvases; DETR directories detect by themselves)")
        ->default_val("classification");
    cmd->add_option("--data", o->data, "Labelled data: a TSV with a header (text + label columns), MNIST images "
                                       "(*images-idx3*, raw or .gz, labels file alongside) or a folder of PNG/JPEG "
                                       "files in one subfolder per class; BART / T5: a TSV of source / target text pairs; "
                                       "BLIP: a TSV of image / caption pairs (docs/model_families.md)")->required();
    cmd->add_option("--labels", o->selection.labels_path, "MNIST labels file (default: derived from the images file's name)");
    cmd->add_option("--range", o->range, "Samples FIRST:END of the data, 0-based, END exclusive (default: all)");
    cmd->add_option("--compare", o->compare, "A second model evaluated on the same samples: prints agreement and mean KL-divergence (default: none)");
    cmd->add_option("-b,--batch", o->classify.batch, "Samples per forward pass")->default_val(32)->check(CLI::Range(1, 1 << 16));
    cmd->add_option("--max-len", o->classify.max_len, "Text: tokens per sample incl. special tokens")->default_val(128)->check(CLI::Range(3, 1 << 16));
    cmd->add_option("--classes", o->classes, "CLIP: zero-shot class names in label order, comma-separated (default: config.json's id2label)");
    cmd->add_option("--prompt", o->prompt, "CLIP: the prompt template, {} standing for the class name (default: 'a photo of a {}.')");
    cmd->add_option("--pixel-scale", o->pixel_scale, ".onnx models: input = pixel (0..255) × this (default: 1, raw pixels)");
    cmd->add_flag("--w8a8-dynamic", o->w8a8_dynamic, "BART / T5 / BLIP: also quantize to W8A8 with dynamic activations and report its loss beside FP32's (default: off)");
    cmd->add_option("--generate", o->generate, "BLIP: also greedy captions of at most N new tokens per image, FP32's and W8A8's (default: 0, none)");
    cmd->add_option("--w8a8-calib", o->onnx_calib, ".onnx models, BART / T5 (text pairs) and BLIP (image / caption pairs): also quantize to static W8A8 calibrated on these and "
                                                   "report FP32 vs INT8 accuracy, agreement and time (default: none)");
    cmd->add_option("--calib-range", o->calib_range, "--w8a8-calib samples FIRST:END (default: all; keep it apart from --range)");
    cmd->add_option("--calib-samples", o->calib_samples, "--w8a8-calib: at most this many samples (default: 256)");
    cmd->add_option("--calib-method", o->calib_method, "--w8a8-calib: minmax, percentile, mse or entropy (default: minmax)");
    cmd->add_option("--threshold", o->threshold, "DETR: post-processing score threshold (default: 0.5)");
    cmd->add_option("--canvas", o->canvas, "DETR: the MNIST canvas HEIGHTxWIDTH digits are tiled onto (default: 56x84); --range counts canvases");
    cmd->add_flag("--q4-weights", o->q4_weights, "DETR: also Q4_0 weight-only on the Linears whose rows allow it (default: off)");
    cmd->add_option("--iou", o->iou, "YOLO: NMS IoU threshold (default: 0.7, ultralytics'; 0.45 the older value)");
    cmd->add_flag("--agnostic", o->agnostic, "YOLO: NMS across classes (default: per class)");
    cmd->add_option("--show", o->show, "YOLO: canvases whose FP32 boxes are printed (default: 3)");
    cmd->add_flag("--json", o->json, "Print JSON instead of a table (default: off)");
    return [o, cmd]() -> int {
        if (o->task == "detect" && o->model.ends_with(".onnx")) return eval_yolo(*o, cmd->count("--threshold") > 0);
        // An encoder–decoder (BART, T5, BLIP: its HF directory or cq's container): teacher-forced loss on text or caption pairs.
        if (is_seq2seq_model(o->model))
            return run_eval_seq2seq({.model = o->model, .data = o->data, .range = o->range, .w8a8_dynamic = o->w8a8_dynamic, .calib = o->onnx_calib,
                                     .calib_range = o->calib_range, .calib_method = o->calib_method, .generate = o->generate, .json = o->json});
        // A DETR (its directory or cq's container): detections on MNIST canvases.
        if (is_detr_model(o->model)) return eval_detr(*o);
        if (o->task != "classification")
            throw InvalidArgument("--task '" + o->task + "' is not supported here (classification; detect takes a YOLO .onnx or a DETR directory)");
        std::tie(o->selection.first, o->selection.count) = parse_sample_range(o->range, "--range");
        if (o->model.size() > 5 && o->model.ends_with(".onnx")) {  // an imported ONNX classifier (cq/onnx_model.h)
            auto model = OnnxModel::load(o->model);
            const OnnxImageOptions image{o->pixel_scale, {}, {}, o->classify.batch};
            const ClassificationResult r = classify_images_onnx(*model, o->data, o->selection, image);
            std::optional<ClassificationResult> q;
            std::optional<PredictionAgreement> agree;
            if (!o->onnx_calib.empty()) {
                DataSelection cs;
                std::tie(cs.first, cs.count) = parse_sample_range(o->calib_range, "--calib-range");
                const auto method = calib::parse_method(o->calib_method);
                if (!method) throw InvalidArgument("--calib-method '" + o->calib_method + "' is not one of minmax, percentile, mse, entropy");
                quantize_onnx_w8a8_static(*model, o->onnx_calib, cs, image, o->calib_samples, static_cast<int32_t>(*method));
                q = classify_images_onnx(*model, o->data, o->selection, image);
                agree = compare_predictions(r, *q);
            }
            if (o->json) {
                nlohmann::json j{{"model", o->model}, {"data", o->data}, {"result", classification_to_json(r)}};
                if (q) j["w8a8_static"] = {{"result", classification_to_json(*q)}, {"agreement", agreement_to_json(*agree)}};
                print_json(j);
                return 0;
            }
            std::printf("onnx (imported) on %s (%lld samples)\n  fp32: accuracy %s, %lld/%lld correct, %.2f s\n", o->data.c_str(),
                        static_cast<long long>(r.samples), percent(r.accuracy).c_str(), static_cast<long long>(r.correct),
                        static_cast<long long>(r.samples), r.seconds);
            if (q)
                std::printf("  w8a8 static: accuracy %s, %lld/%lld correct, %.2f s; agreement with fp32 %s\n", percent(q->accuracy).c_str(),
                            static_cast<long long>(q->correct), static_cast<long long>(q->samples), q->seconds, percent(agree->agreement).c_str());
            return 0;
        }
        // CLIP classifies zero-shot: the class names (and prompt) come from the flags when given.
        const auto set_classes = [&](EncoderModel& m) {
            if (o->classes.empty() && o->prompt == "a photo of a {}.") return;
            if (!m.is_clip()) throw InvalidArgument("--classes / --prompt apply to CLIP models; " + m.config().architecture + " has its own head");
            std::vector<std::string> names;
            if (o->classes.empty()) names = m.config().labels;
            for (size_t b = 0; !o->classes.empty() && b <= o->classes.size();) {
                const size_t e = std::min(o->classes.find(',', b), o->classes.size());
                names.push_back(o->classes.substr(b, e - b));
                b = e + 1;
            }
            m.set_zero_shot_classes(std::move(names), o->prompt);
        };
        auto model = EncoderModel::load(o->model);
        set_classes(*model);
        const LabelledData data = load_labelled_data(o->data, *model, o->selection);
        const auto run = [&](EncoderModel& m, const std::string& label) {
            Progress progress(label, !o->json);
            auto r = classify_dataset(m, data, o->classify, [&](int64_t done, int64_t total, double) { progress.update(done, total, "samples"); });
            progress.finish();
            return r;
        };
        const ClassificationResult base = run(*model, "eval");
        std::optional<ClassificationResult> other;
        std::optional<PredictionAgreement> agreement;
        if (!o->compare.empty()) {
            auto second = EncoderModel::load(o->compare);
            set_classes(*second);
            if (second->config().num_labels != model->config().num_labels)
                throw InvalidArgument("--compare: " + o->compare + " has " + std::to_string(second->config().num_labels) +
                                      " classes, " + o->model + " has " + std::to_string(model->config().num_labels));
            other = run(*second, "compare");
            agreement = compare_predictions(base, *other);
        }
        const std::string isa(isa_level_name(kernel_table().level));
        if (o->json) {
            nlohmann::json j{{"model", o->model}, {"data", data.source}, {"isa", isa}, {"result", classification_to_json(base)}};
            if (other) {
                j["compare"] = {{"model", o->compare}, {"result", classification_to_json(*other)}, {"agreement", agreement_to_json(*agreement)}};
            }
            print_json(j);
            return 0;
        }
        std::printf("%s on %s (%lld samples, %s kernels)\n", model->config().architecture.c_str(), data.source.c_str(),
                    static_cast<long long>(base.samples), isa.c_str());
        std::vector<std::vector<std::string>> rows{{"model", "accuracy", "correct", "seconds"}};
        char secs[32];
        std::snprintf(secs, sizeof secs, "%.2f", base.seconds);
        rows.push_back({o->model, percent(base.accuracy), std::to_string(base.correct) + "/" + std::to_string(base.samples), secs});
        if (other) {
            std::snprintf(secs, sizeof secs, "%.2f", other->seconds);
            rows.push_back({o->compare, percent(other->accuracy), std::to_string(other->correct) + "/" + std::to_string(other->samples), secs});
        }
        print_table(rows, {false, true, true, true}, 2);
        if (agreement) {
            std::printf("\nagreement %s, mean KLD %.3g (max %.3g), max |Δlogit| %.3g\n", percent(agreement->agreement).c_str(),
                        agreement->mean_kld, agreement->max_kld, agreement->max_abs_logit_diff);
        }
        return 0;
    };
}

}  // namespace cq::cli
