// `cq run MODEL -p PROMPT -n N`: generate text (greedy by default; temperature/top-k/top-p with --seed).
#include <cstdio>
#include <iostream>

#include "commands/commands.h"
#include "commands/format.h"
#include "cq/eval.h"

namespace cq::cli {

namespace {
struct Options {
    std::string model, prompt, prompt_file;
    int64_t n_predict = 64;
    int64_t n_ctx = 0;
    SamplingOptions sampling;
    bool json = false;
};
}  // namespace

Runner register_run(CLI::App& app) {
    auto o = std::make_shared<Options>();
    CLI::App* cmd = app.add_subcommand("run", "Generate text from a prompt");
    cmd->add_option("model", o->model, "A .gguf file or an HF model directory")->required();
    auto* p = cmd->add_option("-p,--prompt", o->prompt, "The prompt text");
    auto* f = cmd->add_option("-f,--file", o->prompt_file, "Read the prompt from this file");
    p->excludes(f);
    cmd->add_option("-n,--n-predict", o->n_predict, "Tokens to generate (stops early at end-of-sequence)")->default_val(64)->check(CLI::Range(0, 1 << 20));
    cmd->add_option("-c,--ctx", o->n_ctx, "Context length (0: the model's, capped at 4096)")->default_val(0);
    cmd->add_option("--temp", o->sampling.temperature, "Sampling temperature; 0 is greedy")->default_val(0.0f)->check(CLI::Range(0.0f, 100.0f));
    cmd->add_option("--top-k", o->sampling.top_k, "Keep the k most likely tokens (0: off; only when --temp > 0)")->default_val(40)->check(CLI::Range(0, 1 << 24));
    cmd->add_option("--top-p", o->sampling.top_p, "Keep the smallest set with this much probability (1: off; only when --temp > 0)")
        ->default_val(0.95f)
        ->check(CLI::Range(0.0f, 1.0f));
    cmd->add_option("--seed", o->sampling.seed, "Random seed for sampling")->default_val(0);
    cmd->add_flag("--json", o->json, "Print JSON (prompt and generated ids, text, timings) instead of streaming text (default: off)");
    return [o]() -> int {
        if (o->prompt.empty() && o->prompt_file.empty()) throw CLI::RequiredError("run needs --prompt or --file");
        const std::string prompt = o->prompt_file.empty() ? o->prompt : read_prompt_file(o->prompt_file);
        LoadOptions lo;
        lo.n_ctx = o->n_ctx;
        auto model = LanguageModel::load(o->model, lo);
        if (!o->json) std::cout << prompt << std::flush;
        const auto r = generate(*model, prompt, o->n_predict, o->sampling, [&](const std::string& piece) {
            if (!o->json) std::cout << piece << std::flush;
        });
        if (o->json) {
            print_json({{"prompt", prompt},
                        {"prompt_tokens", r.prompt_tokens},
                        {"tokens", r.tokens},
                        {"text", r.text},
                        {"prompt_seconds", r.prompt_seconds},
                        {"generation_seconds", r.generation_seconds},
                        {"generation_tokens_per_second", r.generation_seconds > 0 ? static_cast<double>(r.tokens.size()) / r.generation_seconds : 0.0}});
        } else {
            std::cout << '\n';
            std::fprintf(stderr, "[run] %zu prompt tokens in %.3f s, %zu generated in %.3f s (%.1f tokens/s)\n", r.prompt_tokens.size(),
                         r.prompt_seconds, r.tokens.size(), r.generation_seconds,
                         r.generation_seconds > 0 ? static_cast<double>(r.tokens.size()) / r.generation_seconds : 0.0);
        }
        return 0;
    };
}

}  // namespace cq::cli
