// `cq bench MODEL`: prompt-processing and generation tokens/s (llama-bench style) for LLMs; batch latency
// for encoder classifiers (HF directory or W8A8 container); --memory: the memory profile per phase. Markdown or JSON.
#include <cstdio>
#include <iostream>

#include "commands/commands.h"
#include "commands/format.h"
#include "commands/json_reports.h"
#include "cq/classify.h"
#include "cq/eval.h"
#include "cq/memory_profile.h"

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
};
}  // namespace

Runner register_bench(CLI::App& app) {
    auto o = std::make_shared<Options>();
    CLI::App* cmd = app.add_subcommand("bench", "Measure prompt processing and generation speed (tokens/s)");
    cmd->add_option("model", o->model, "A .gguf file or an HF model directory (LLM or encoder classifier)")->required();
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
    cmd->add_flag("--json", o->json, "Print JSON instead of a Markdown table (default: off)");
    return [o]() -> int {
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
