// `cq perplexity MODEL -f TEXT`: llama.cpp's perplexity; --save-logits / --kld-base for KL-divergence.
#include <cstdio>
#include <iostream>

#include "commands/commands.h"
#include "commands/format.h"
#include "commands/json_reports.h"
#include "cq/eval.h"
#include "cq/train.h"

namespace cq::cli {

namespace {
struct Options {
    std::string model, text_file, lora;
    float lora_scale = 1.0f;
    PerplexityOptions eval;
    bool json = false;
};

std::string fmt(const char* f, double v) {
    char buf[64];
    std::snprintf(buf, sizeof buf, f, v);
    return buf;
}

void print_text(const PerplexityResult& r) {
    std::printf("chunks %lld × %lld tokens (%lld tokens in the text), %lld scored, %.2f s\n", static_cast<long long>(r.n_chunks),
                static_cast<long long>(r.n_ctx), static_cast<long long>(r.n_tokens), static_cast<long long>(r.n_scored), r.seconds);
    std::printf("PPL = %.4f +/- %.5f\n", r.ppl, r.ppl_err);
    if (!r.kld) return;
    const KldResult& k = *r.kld;
    std::vector<std::vector<std::string>> rows{
        {"base PPL", fmt("%.4f", k.base_ppl)},
        {"PPL ratio (this/base)", fmt("%.6f", k.ppl_ratio) + " ± " + fmt("%.6f", k.ppl_ratio_err)},
        {"mean ln(PPL ratio)", fmt("%.6f", k.mean_ln_ratio)},
        {"mean KLD", fmt("%.6f", k.mean) + " ± " + fmt("%.6f", k.mean_err)},
        {"max KLD", fmt("%.6f", k.max)},
        {"99.9% KLD", fmt("%.6f", k.percentiles.at("99.9"))},
        {"99.0% KLD", fmt("%.6f", k.percentiles.at("99"))},
        {"median KLD", fmt("%.6f", k.median)},
        {"min KLD", fmt("%.6f", k.min)},
        {"same top token", fmt("%.3f", 100 * k.same_top) + " ± " + fmt("%.3f", 100 * k.same_top_err) + " %"},
        {"mean Δp", fmt("%.3f", 100 * k.mean_dp) + " ± " + fmt("%.3f", 100 * k.mean_dp_err) + " %"},
        {"RMS Δp", fmt("%.3f", 100 * k.rms_dp) + " %"},
        {"max Δp", fmt("%.3f", 100 * k.dp_percentiles.at("max")) + " %"},
        {"99% Δp", fmt("%.3f", 100 * k.dp_percentiles.at("99")) + " %"},
        {"median Δp", fmt("%.3f", 100 * k.dp_percentiles.at("50")) + " %"},
        {"1% Δp", fmt("%.3f", 100 * k.dp_percentiles.at("1")) + " %"},
        {"min Δp", fmt("%.3f", 100 * k.dp_percentiles.at("min")) + " %"},
    };
    std::printf("\nKL-divergence against the base logits (%lld positions)\n", static_cast<long long>(k.n));
    print_table(rows, {false, true}, 2);
}
}  // namespace

Runner register_perplexity(CLI::App& app) {
    auto o = std::make_shared<Options>();
    CLI::App* cmd = app.add_subcommand("perplexity", "Perplexity of a model on a text with llama.cpp's method (non-overlapping "
                                                     "chunks, BOS first, second half of each chunk scored)");
    cmd->add_option("model", o->model, "A .gguf file or an HF model directory")->required();
    cmd->add_option("-f,--file", o->text_file, "The text to evaluate (one trailing newline is dropped, as llama.cpp does)")->required();
    cmd->add_option("-c,--ctx", o->eval.n_ctx, "Tokens per chunk")->default_val(512)->check(CLI::Range(4, 1 << 20));
    cmd->add_option("--chunks", o->eval.max_chunks, "Evaluate at most this many chunks (-1: all)")->default_val(-1);
    cmd->add_option("--save-logits", o->eval.save_logits, "Save the scored positions' log-probabilities here, to compare "
                                                          "later runs against (default: off)");
    cmd->add_option("--kld-base", o->eval.kld_base, "Report KL-divergence, same-top-token and Δp against logits saved with "
                                                    "--save-logits (default: off)");
    cmd->add_option("--lora", o->lora, "Merge this LoRA adapter GGUF (llama.cpp's form; cq finetune --lora-output adapter) "
                                       "into the model first (adapted Linears become f32)");
    cmd->add_option("--lora-scale", o->lora_scale, "Scale of the --lora adapter (as llama.cpp's --lora-scaled)")->default_val(1.0f);
    cmd->add_flag("--json", o->json, "Print JSON instead of text (default: off)");
    return [o]() -> int {
        LoadOptions lo;
        lo.n_ctx = o->eval.n_ctx;
        auto model = LanguageModel::load(o->model, lo);
        if (!o->lora.empty()) apply_lora_adapter(*model, o->lora, o->lora_scale);
        const std::string text = read_prompt_file(o->text_file);
        Progress progress("perplexity", !o->json);
        const auto r = evaluate_perplexity(*model, text, o->eval, [&](int64_t done, int64_t total, double ppl) {
            progress.update(done, total, "chunks, PPL " + fmt("%.4f", ppl));
        });
        progress.finish();
        if (o->json) print_json(perplexity_to_json(r));
        else print_text(r);
        return 0;
    };
}

}  // namespace cq::cli
