// `cq bench MODEL`: prompt-processing and generation tokens/s (llama-bench style), Markdown or JSON.
#include <iostream>

#include "commands/commands.h"
#include "commands/format.h"
#include "cq/eval.h"

namespace cq::cli {

namespace {
struct Options {
    std::string model;
    BenchOptions bench;
    bool json = false;
};
}  // namespace

Runner register_bench(CLI::App& app) {
    auto o = std::make_shared<Options>();
    CLI::App* cmd = app.add_subcommand("bench", "Measure prompt processing and generation speed (tokens/s)");
    cmd->add_option("model", o->model, "A .gguf file or an HF model directory")->required();
    cmd->add_option("-p,--n-prompt", o->bench.n_prompt, "Prompt tokens processed as one batch (0: skip)")->default_val(512)->check(CLI::Range(0, 1 << 20));
    cmd->add_option("-n,--n-gen", o->bench.n_gen, "Tokens generated one at a time (0: skip)")->default_val(128)->check(CLI::Range(0, 1 << 20));
    cmd->add_option("-r,--repetitions", o->bench.repetitions, "Timed repetitions of each test")->default_val(5)->check(CLI::Range(1, 1000));
    cmd->add_option("--warmup", o->bench.warmup, "Untimed runs before the timed ones")->default_val(1)->check(CLI::Range(0, 100));
    cmd->add_flag("--json", o->json, "Print JSON instead of a Markdown table (default: off)");
    return [o]() -> int {
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
