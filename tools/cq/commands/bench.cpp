// `cq bench MODEL`: prompt-processing and generation tokens/s (llama-bench style) for LLMs; batch latency
// for encoder classifiers (HF directory or W8A8 container) and imported ONNX image models (with --w8a8-calib, FP32 and
// static W8A8 timed in turn in one run); --memory: the memory profile per phase. Markdown or JSON.
#include <cstdio>
#include <iostream>

#include "commands/commands.h"
#include "commands/format.h"
#include "commands/json_reports.h"
#include "cq/classify.h"
#include "cq/eval.h"
#include "cq/calibration.h"
#include "cq/error.h"
#include "cq/memory_profile.h"
#include "cq/onnx_model.h"

namespace cq::cli {

namespace {
struct Options {
    std::string model;
    BenchOptions bench;
    int64_t batch = 8, seq = 128;
    bool json = false;
    bool memory = false;
    int64_t n_ctx = 0;
    std::string calib;
    int64_t calib_ctx = 128, calib_chunks = 4;
    int64_t train_batch = 0, train_ctx = 128;
    std::string train_checkpoint = "none";
    std::string w8a8_calib, calib_range, calib_method = "minmax";  // .onnx models
    int64_t calib_samples = 256;
    float pixel_scale = 1.0f;
};

// An imported ONNX image model: FP32, and its static W8A8 copy when --w8a8-calib is given, timed in turn.
int bench_onnx_model(const Options& o) {
    auto fp32 = OnnxModel::load(o.model);
    std::vector<OnnxModel*> models{fp32.get()};
    std::unique_ptr<OnnxModel> int8;
    int64_t quantized = 0;
    const OnnxImageOptions image{o.pixel_scale, {}, {}, o.batch};
    if (!o.w8a8_calib.empty()) {
        DataSelection cs;
        std::tie(cs.first, cs.count) = parse_sample_range(o.calib_range, "--calib-range");
        const auto method = calib::parse_method(o.calib_method);
        if (!method) throw InvalidArgument("--calib-method '" + o.calib_method + "' is not one of minmax, percentile, mse, entropy");
        int8 = OnnxModel::load(o.model);
        quantized = quantize_onnx_w8a8_static(*int8, o.w8a8_calib, cs, image, o.calib_samples, static_cast<int32_t>(*method));
        models.push_back(int8.get());
    }
    const std::vector<EncoderBenchResult> rs = bench_onnx(models, o.batch, o.bench.repetitions, o.bench.warmup, image);
    nlohmann::json runs = nlohmann::json::array();
    std::string table = "| model | form | isa | batch | median ms | min ms | max ms | images/s | speed vs fp32 |\n|---|---|---|---:|---:|---:|---:|---:|---:|\n";
    for (size_t i = 0; i < rs.size(); ++i) {
        const EncoderBenchResult& r = rs[i];
        const double speed = r.median_ms > 0 ? rs[0].median_ms / r.median_ms : 0.0, per_s = r.median_ms > 0 ? r.batch / (r.median_ms / 1000.0) : 0.0;
        nlohmann::json j{{"form", i == 0 ? "fp32" : "w8a8-static"}, {"batch", r.batch}, {"repetitions", r.repetitions}, {"isa", r.isa},
                         {"ms", r.ms}, {"median_ms", r.median_ms}, {"min_ms", r.min_ms}, {"max_ms", r.max_ms}, {"images_per_s", per_s},
                         {"speed_vs_fp32", speed}};
        if (i > 0) j["linears_quantized"] = quantized, j["calib_method"] = o.calib_method;
        runs.push_back(j);
        char line[512];
        std::snprintf(line, sizeof line, "| %s | %s | %s | %lld | %.3f | %.3f | %.3f | %.1f | %.2f× |\n", o.model.c_str(), i == 0 ? "fp32" : "w8a8-static",
                      r.isa.c_str(), static_cast<long long>(r.batch), r.median_ms, r.min_ms, r.max_ms, per_s, speed);
        table += line;
    }
    if (o.json) print_json({{"model", o.model}, {"runs", runs}});
    else std::cout << table;
    return 0;
}
}  // namespace

Runner register_bench(CLI::App& app) {
    auto o = std::make_shared<Options>();
    CLI::App* cmd = app.add_subcommand("bench", "Measure prompt processing and generation speed (tokens/s)");
    cmd->add_option("model", o->model, "A .gguf file, an HF model directory (LLM or encoder classifier) or an .onnx image model")->required();
    cmd->add_option("-p,--n-prompt", o->bench.n_prompt, "Prompt tokens processed as one batch (0: skip)")->default_val(512)->check(CLI::Range(0, 1 << 20));
    cmd->add_option("-n,--n-gen", o->bench.n_gen, "Tokens generated one at a time (0: skip)")->default_val(128)->check(CLI::Range(0, 1 << 20));
    cmd->add_option("-r,--repetitions", o->bench.repetitions, "Timed repetitions of each test")->default_val(5)->check(CLI::Range(1, 1000));
    cmd->add_option("--warmup", o->bench.warmup, "Untimed runs before the timed ones")->default_val(1)->check(CLI::Range(0, 100));
    cmd->add_option("-b,--batch", o->batch, "Encoders: sequences (or images) per forward pass")->default_val(8)->check(CLI::Range(1, 4096));
    cmd->add_option("-s,--seq", o->seq, "Encoders: tokens per sequence (no padding)")->default_val(128)->check(CLI::Range(2, 1 << 16));
    cmd->add_flag("--memory", o->memory, "LLMs: profile memory instead of timing repetitions: weights by format, KV cache and workspace "
                                         "(analytic) beside the measured RSS and its peak in each phase (load, one prompt of -p tokens, "
                                         "-n generated tokens; --calib and --train-batch add phases) (default: off)");
    cmd->add_option("--ctx", o->n_ctx, "LLMs with --memory: the KV cache length (0: -p + -n)")->default_val(0)->check(CLI::Range(0, 1 << 20));
    cmd->add_option("--calib", o->calib, "LLMs with --memory: add a calibration phase, importance statistics (as cq imatrix) over "
                                         "chunks of this text (default: none)");
    cmd->add_option("--calib-ctx", o->calib_ctx, "Tokens per --calib chunk (at most the KV cache length)")->default_val(128)->check(CLI::Range(2, 1 << 20));
    cmd->add_option("--calib-chunks", o->calib_chunks, "--calib chunks used (-1: all)")->default_val(4);
    cmd->add_option("--train-batch", o->train_batch, "LLMs with --memory: add a training-step phase last: the trainable tensors as f32, "
                                                     "their gradients, AdamW's moments and one forward + backward + update over this many "
                                                     "windows (0: none)")->default_val(0)->check(CLI::Range(0, 1 << 16));
    cmd->add_option("--train-ctx", o->train_ctx, "Tokens per --train-batch window (at most the model's trained context)")->default_val(128)->check(CLI::Range(2, 1 << 20));
    cmd->add_option("--train-checkpoint", o->train_checkpoint, "Activation checkpointing in the training step, as cq finetune --checkpoint: "
                                                               "none, block or every:K")->default_val("none");
    cmd->add_option("--w8a8-calib", o->w8a8_calib, ".onnx image models: also time a static W8A8 copy calibrated on these images (MNIST "
                                                    "idx or an image folder; default: FP32 only)");
    cmd->add_option("--calib-range", o->calib_range, "--w8a8-calib samples FIRST:END (default: all)");
    cmd->add_option("--calib-samples", o->calib_samples, "--w8a8-calib: at most this many samples")->default_val(256)->check(CLI::Range(1, 1 << 20));
    cmd->add_option("--calib-method", o->calib_method, "--w8a8-calib: minmax, percentile, mse or entropy")->default_val("minmax");
    cmd->add_option("--pixel-scale", o->pixel_scale, ".onnx models: input = pixel (0..255) × this (1: raw pixels)")->default_val(1.0f);
    cmd->add_flag("--json", o->json, "Print JSON instead of a Markdown table (default: off)");
    return [o]() -> int {
        if (o->model.size() > 5 && o->model.ends_with(".onnx")) {
            if (o->memory) throw InvalidArgument("--memory profiles LLMs; " + o->model + " is an ONNX model");
            return bench_onnx_model(*o);
        }
        if (!o->w8a8_calib.empty()) throw InvalidArgument("--w8a8-calib is for .onnx image models; " + o->model + " is not one");
        if (o->memory) {
            // Measured first, before anything else in this process allocates: the baseline is the bare process.
            MemoryProfileOptions mo;
            mo.n_prompt = o->bench.n_prompt, mo.n_gen = o->bench.n_gen, mo.n_ctx = o->n_ctx;
            mo.calib_text = o->calib, mo.calib_ctx = o->calib_ctx, mo.calib_chunks = o->calib_chunks;
            mo.train_batch = o->train_batch, mo.train_ctx = o->train_ctx, mo.train_checkpoint = o->train_checkpoint;
            const MemoryProfile p = profile_memory(o->model, mo);
            if (o->json) print_json(memory_profile_to_json(p));
            else std::cout << memory_profile_to_markdown(p);
            return 0;
        }
        if (is_encoder_model(o->model)) {
            auto model = EncoderModel::load(o->model);
            Progress progress("bench", !o->json);
            const auto r = bench_encoder(*model, o->batch, o->seq, o->bench.repetitions, o->bench.warmup, [&](int64_t done, int64_t total, double ms) {
                progress.update(done, total, "runs, last " + std::to_string(static_cast<int64_t>(ms)) + " ms");
            });
            progress.finish();
            nlohmann::json j = encoder_bench_to_json(r);
            j["model"] = o->model;
            if (o->json) print_json(j);
            else {
                char line[512];
                std::snprintf(line, sizeof line, "| %s | %s | %lld × %lld | %.2f | %.2f | %.2f | %.1f |\n", o->model.c_str(), r.isa.c_str(),
                              static_cast<long long>(r.batch), static_cast<long long>(r.seq), r.median_ms, r.min_ms, r.max_ms,
                              j["tokens_per_s"].get<double>());
                std::cout << "| model | isa | batch × seq | median ms | min ms | max ms | tokens/s |\n|---|---|---:|---:|---:|---:|---:|\n" << line;
            }
            return 0;
        }
        LoadOptions lo;
        lo.n_ctx = o->bench.n_prompt + o->bench.n_gen;
        auto model = LanguageModel::load(o->model, lo);
        Progress progress("bench", !o->json);
        const auto r = bench_model(*model, o->bench, [&](int64_t done, int64_t total, double tps) {
            progress.update(done, total, "runs, last " + std::to_string(static_cast<int64_t>(tps)) + " t/s");
        });
        progress.finish();
        if (o->json) print_json(bench_to_json(r));
        else std::cout << bench_to_markdown(r);
        return 0;
    };
}

}  // namespace cq::cli
