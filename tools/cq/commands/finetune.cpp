// `cq finetune MODEL --data FILE -o OUT`: trains a decoder LLM on packed text windows (cq::finetune) or a BERT classifier
// on a TSV (cq::finetune_classifier) and writes it; prints the loss curve, eval before / after, time and peak memory.
#include <cmath>
#include <cstdio>

#include "commands/commands.h"
#include "commands/format.h"
#include "cq/encoder.h"
#include "cq/error.h"
#include "cq/train.h"

namespace cq::cli {

namespace {
// Options whose defaults differ by family stay negative (unset) until the model's kind is known.
struct Options {
    std::string model;
    FinetuneOptions ft;
    std::string optimizer = "adamw", decay, init = "model";
    std::vector<std::string> decay_rules;
    int64_t warmup = -1, batch = -1, max_len = 64, seed = -1;
    std::string range, eval_range;
    double epochs = -1;
    float lr = -1, weight_decay = -1, dropout = 0.1f;
    bool json = false;
};

nlohmann::json report_json(const FinetuneReport& r) {
    nlohmann::json j{{"steps", r.steps}, {"tokens", r.tokens}, {"windows", r.n_windows}, {"seconds", r.seconds},
                     {"tokens_per_s", r.tokens_per_s}, {"peak_rss_bytes", r.peak_rss_bytes},
                     {"param_state_bytes", r.param_state_bytes}, {"activation_bytes", r.activation_bytes}, {"loss_curve", r.loss_curve},
                     {"step_seconds", r.step_seconds}, {"trained_parameters", r.trained_parameters}};
    if (r.has_eval) {
        j["eval"] = {{"loss_before", r.eval_loss_before}, {"loss_after", r.eval_loss_after},
                     {"ppl_before", std::exp(r.eval_loss_before)}, {"ppl_after", std::exp(r.eval_loss_after)}};
        nlohmann::json curve = nlohmann::json::array();
        for (const auto& [step, loss] : r.eval_curve) curve.push_back({{"step", step}, {"loss", loss}});
        j["eval"]["curve"] = curve;
    }
    if (r.has_accuracy) j["eval"] = {{"accuracy_before", r.eval_accuracy_before}, {"accuracy_after", r.eval_accuracy_after}};
    if (!r.output.empty()) j["output"] = r.output;
    j["precision"] = r.precision;
    if (r.precision == "fp16") j["loss_scale"] = {{"final", r.loss_scale}, {"skipped_steps", r.skipped_steps}};
    return j;
}

// "FIRST:END" → a selection (empty: everything).
DataSelection parse_range(const std::string& text, const std::string& option) {
    DataSelection s;
    if (text.empty()) return s;
    const auto colon = text.find(':');
    try {
        if (colon == std::string::npos) throw std::invalid_argument(text);
        s.first = std::stoll(text.substr(0, colon));
        const int64_t end = std::stoll(text.substr(colon + 1));
        if (s.first < 0 || end <= s.first) throw std::invalid_argument(text);
        s.count = end - s.first;
    } catch (const std::exception&) {
        throw InvalidArgument("[finetune] " + option + " '" + text + "' is not FIRST:END with 0 ≤ FIRST < END");
    }
    return s;
}

void print_text(const FinetuneReport& r) {
    std::printf("%lld steps, %s tokens in %.1f s (%.0f tokens/s), peak memory %s, %s parameters trained\n", static_cast<long long>(r.steps),
                group_digits(static_cast<uint64_t>(r.tokens)).c_str(), r.seconds, r.tokens_per_s, human_bytes(r.peak_rss_bytes).c_str(),
                group_digits(static_cast<uint64_t>(r.trained_parameters)).c_str());
    // The curve at ~10 evenly spaced steps (the JSON output has every step).
    const size_t n = r.loss_curve.size(), every = std::max<size_t>(1, n / 10);
    std::printf("training loss:");
    for (size_t i = 0; i < n; ++i)
        if (i % every == 0 || i + 1 == n) std::printf(" %zu:%.4f", i + 1, r.loss_curve[i]);
    std::printf("\n");
    if (r.has_eval) {
        std::printf("eval loss %.4f → %.4f, PPL %.4f → %.4f\n", r.eval_loss_before, r.eval_loss_after, std::exp(r.eval_loss_before),
                    std::exp(r.eval_loss_after));
    }
    if (r.precision == "fp16")
        std::printf("fp16 loss scale %g at the end, %lld overflowed steps skipped\n", r.loss_scale, static_cast<long long>(r.skipped_steps));
    if (r.has_accuracy) std::printf("eval accuracy %.2f %% → %.2f %%\n", 100 * r.eval_accuracy_before, 100 * r.eval_accuracy_after);
    if (!r.output.empty()) std::printf("wrote %s\n", r.output.c_str());
}
}  // namespace

Runner register_finetune(CLI::App& app) {
    auto o = std::make_shared<Options>();
    CLI::App* cmd = app.add_subcommand("finetune", "Train a model (f32 master weights; fp32, bf16 or fp16 matmuls): decoder LLMs (LLaMA family, GPT-2) on a text file "
                                                   "(packed windows of --ctx tokens), BERT classifiers on a TSV");
    cmd->add_option("model", o->model, "A .gguf file or an HF model directory")->required();
    cmd->add_option("--data", o->ft.data, "Training data: a text file (LLMs: tokenized whole, cut into windows of --ctx + 1 "
                                          "tokens) or a labelled TSV (classifiers)")->required();
    cmd->add_option("-o,--output", o->ft.output, "Write the trained model here: an HF directory (safetensors + config + "
                                                 "tokenizer; HF sources), or for LLMs a .gguf (keeps the file's token embedding, "
                                                 "so an untied one is frozen)");
    cmd->add_option("--steps", o->ft.steps, "Optimiser steps (default: from --epochs)")->check(CLI::Range(int64_t{1}, int64_t{1} << 40));
    cmd->add_option("--epochs", o->epochs, "Passes over the data when --steps is not given (default: LLMs 1, classifiers 2)");
    cmd->add_option("--lr", o->lr, "Peak learning rate (default: LLMs 1e-4, classifiers 1e-3)");
    cmd->add_option("--batch", o->batch, "Windows / examples per micro-batch (default: LLMs 8, classifiers 64)")->check(CLI::Range(1, 1 << 16));
    cmd->add_option("--accumulate", o->ft.accumulate, "Micro-batches per optimiser step (gradient accumulation; LLMs)")->default_val(1)
        ->check(CLI::Range(1, 1 << 16));
    cmd->add_option("--ctx", o->ft.ctx, "Tokens per window (LLMs)")->default_val(128)->check(CLI::Range(2, 1 << 20));
    cmd->add_option("--max-len", o->max_len, "Tokens per example, [CLS] and [SEP] included (classifiers)")->default_val(64)
        ->check(CLI::Range(2, 1 << 20));
    cmd->add_option("--range", o->range, "Classifiers: train on samples FIRST:END of --data (0-based, END exclusive)");
    cmd->add_option("--eval-range", o->eval_range, "Classifiers: evaluate samples FIRST:END of --eval");
    cmd->add_option("--init", o->init, "model: start from the file's weights; random: re-initialise (classifiers)")->default_val("model")
        ->check(CLI::IsMember({"model", "random"}));
    cmd->add_option("--dropout", o->dropout, "Dropout probability (classifiers)")->default_val(0.1f);
    cmd->add_option("--optimizer", o->optimizer, "adamw or sgd (momentum 0.9)")->default_val("adamw")->check(CLI::IsMember({"adamw", "sgd"}));
    cmd->add_option("--weight-decay", o->weight_decay, "Decoupled weight decay (default: LLMs 0, classifiers 0.01)");
    cmd->add_option("--decay-rule", o->decay_rules, "PATTERN=decay|none over parameter names, after the defaults (LLMs: *norm*, "
                                                    "*.bias, *embd* = none; classifiers: *.bias, *LayerNorm* = none); the last match decides");
    cmd->add_option("--warmup", o->warmup, "Warmup steps (default: LLMs 0, classifiers 6 % of the steps)");
    cmd->add_option("--schedule", o->decay, "Decay after warmup: cosine, linear or constant (default: LLMs cosine, classifiers linear)")
        ->check(CLI::IsMember({"cosine", "linear", "constant"}));
    cmd->add_option("--min-lr-ratio", o->ft.schedule.min_lr_ratio, "Final learning rate as a fraction of --lr")->default_val(0.0f);
    cmd->add_option("--clip", o->ft.clip, "Global gradient-norm clip (0: off)")->default_val(1.0);
    cmd->add_option("--precision", o->ft.precision, "Matmul operands: fp32; bf16 (BF16 products, f32 accumulation; AVX-512 BF16 "
                                                    "where the CPU has it); fp16 (LLMs: FP16 operands emulated, dynamic loss scaling, "
                                                    "overflowed steps skipped). Weights and optimiser state stay f32")
        ->default_val("fp32")->check(CLI::IsMember({"fp32", "bf16", "fp16"}));
    cmd->add_option("--loss-scale", o->ft.loss_scaler.init_scale, "fp16: initial loss scale")->default_val(65536.0f);
    cmd->add_option("--loss-scale-interval", o->ft.loss_scaler.growth_interval,
                    "fp16: finite steps in a row before the loss scale doubles (it halves on an overflow)")->default_val(2000)
        ->check(CLI::Range(int64_t{1}, int64_t{1} << 40));
    cmd->add_option("--checkpoint", o->ft.checkpoint, "Activation checkpointing (LLMs): none; block (keep each block's input, "
                                                      "recompute it in the backward); every:K (only blocks 0, K, 2K, … recomputed, "
                                                      "the others keep their activations: memory and time between none and block)")
        ->default_val("none");
    cmd->add_option("--seed", o->seed, "Data order (and classifiers' init and dropout): LLMs 0 keeps the file's order (default: LLMs 0, "
                                       "classifiers 1)");
    cmd->add_option("--eval", o->ft.eval_data, "Held-out data: LLMs loss / perplexity, classifiers accuracy, before and after");
    cmd->add_option("--eval-every", o->ft.eval_every, "Evaluate every N steps (0: before and after only; LLMs)")->default_val(0);
    cmd->add_option("--eval-batches", o->ft.eval_batches, "Evaluate at most N batches of the eval text (0: all; LLMs)")->default_val(0);
    cmd->add_option("--save-state", o->ft.state_path, "Write a resumable state (weights, optimiser state, step, data position) "
                                                      "here, atomically, at the end and every --save-every steps");
    cmd->add_option("--save-every", o->ft.state_every, "Steps between --save-state writes (0: at the end only)")->default_val(0);
    cmd->add_option("--resume", o->ft.resume_from, "Continue the run that wrote this --save-state file (same MODEL and options)");
    cmd->add_option("--lora", o->ft.lora.rank, "LLMs: train rank-R LoRA adapters on a frozen base that stays in its own format "
                                               "(Q4_K included, dequantized per use); 0: train the whole model")
        ->default_val(0)->check(CLI::Range(int64_t{0}, int64_t{1} << 20));
    cmd->add_option("--lora-alpha", o->ft.lora.alpha, "LoRA alpha: the adapters' output is scaled by alpha / R (0: alpha = R)")
        ->default_val(0.0f)->check(CLI::Range(0.0f, 1e6f));
    cmd->add_option("--lora-target", o->ft.lora.targets, "Globs over Linear names that get adapters, e.g. 'blk.*.attn_q' "
                                                         "(repeatable; default: every Linear inside the blocks)");
    cmd->add_option("--lora-output", o->ft.lora_output, "merged: -o gets the model with W + (alpha/R)·B·A in f32 in the adapted "
                                                        "Linears; adapter: -o (.gguf) gets a llama.cpp LoRA adapter (llama-cli --lora)")
        ->default_val("merged")->check(CLI::IsMember({"merged", "adapter"}));
    cmd->add_option("--lora-seed", o->ft.lora.seed, "Seed of the adapters' A initialisation (B starts at 0)")->default_val(1);
    cmd->add_flag("--json", o->json, "Print a JSON report instead of text (default: off)");
    return [o]() -> int {
        const auto on_progress = [](Progress& progress) {
            return [&progress](const FinetuneProgress& p) {
                char detail[160];
                std::snprintf(detail, sizeof detail, "steps, loss %.4f, lr %.2e, %.0f tokens/s, grad norm %.3f", p.loss, p.lr,
                              p.tokens_per_s, p.grad_norm);
                progress.update(p.step, p.total_steps, detail);
            };
        };
        const auto decay_of = [&](LrDecay fallback) {
            return o->decay.empty() ? fallback : o->decay == "linear" ? LrDecay::linear : o->decay == "constant" ? LrDecay::constant : LrDecay::cosine;
        };
        const OptimizerKind kind = o->optimizer == "sgd" ? OptimizerKind::sgd : OptimizerKind::adamw;
        FinetuneReport r;
        if (Model::load(o->model)->kind() != ModelKind::decoder) {
            auto model = EncoderModel::load(o->model);
            ClassifierFinetuneOptions ct;
            ct.data = o->ft.data, ct.eval_data = o->ft.eval_data, ct.output = o->ft.output, ct.steps = o->ft.steps;
            if (o->epochs > 0) ct.epochs = o->epochs;
            if (o->batch > 0) ct.batch = o->batch;
            if (o->lr > 0) ct.schedule.lr = o->lr;
            if (o->weight_decay >= 0) ct.optimizer.weight_decay = o->weight_decay;
            if (o->warmup >= 0) ct.schedule.warmup_steps = o->warmup, ct.warmup_fraction = -1.0f;
            if (o->seed >= 0) ct.seed = static_cast<uint64_t>(o->seed);
            ct.max_len = o->max_len, ct.dropout = o->dropout, ct.random_init = o->init == "random", ct.clip = o->ft.clip;
            ct.schedule.decay = decay_of(LrDecay::linear), ct.schedule.min_lr_ratio = o->ft.schedule.min_lr_ratio;
            ct.optimizer.kind = kind;
            ct.data_selection = parse_range(o->range, "--range"), ct.eval_selection = parse_range(o->eval_range, "--eval-range");
            for (const std::string& spec : o->decay_rules) ct.decay_rules.push_back(parse_weight_decay_rule(spec));
            ct.precision = o->ft.precision;
            ct.state_path = o->ft.state_path, ct.resume_from = o->ft.resume_from, ct.state_every = o->ft.state_every;
            if (o->ft.accumulate != 1) throw Unsupported("[finetune] --accumulate is supported for LLMs only so far");
            if (o->ft.lora.rank > 0) throw Unsupported("[finetune] --lora is supported for decoder LLMs only so far");
            if (o->ft.checkpoint != "none") throw Unsupported("[finetune] --checkpoint " + o->ft.checkpoint + " is not supported yet (none is)");
            Progress progress("finetune", !o->json);
            r = finetune_classifier(*model, ct, on_progress(progress));
            progress.finish();
        } else {
            if (o->init != "model") throw Unsupported("[finetune] --init random is supported for classifiers only");
            FinetuneOptions ft = o->ft;
            if (o->epochs > 0) ft.epochs = o->epochs;
            if (o->batch > 0) ft.batch = o->batch;
            ft.schedule.lr = o->lr > 0 ? o->lr : 1e-4f;
            ft.optimizer.weight_decay = o->weight_decay >= 0 ? o->weight_decay : 0.0f;
            if (o->seed >= 0) ft.seed = static_cast<uint64_t>(o->seed);
            ft.optimizer.kind = kind;
            ft.schedule.decay = decay_of(LrDecay::cosine);
            if (o->warmup >= 0) ft.schedule.warmup_steps = o->warmup;
            for (const std::string& spec : o->decay_rules) ft.decay_rules.push_back(parse_weight_decay_rule(spec));
            LoadOptions lo;
            lo.n_ctx = 16;  // training runs whole windows through its own buffers, not the KV cache
            lo.pack_for_kernels = false;
            auto model = LanguageModel::load(o->model, lo);
            // Model::save keeps the file's token (unless tied to the head) and position embeddings, so those are not
            // trained when the result is written as GGUF.
            const bool gguf = ft.output.size() >= 5 && ft.output.compare(ft.output.size() - 5, 5, ".gguf") == 0;
            if (gguf && model->weights().output.weight.data() != model->weights().token_embd.data())
                ft.freeze.push_back("token_embd.weight");
            if (gguf) ft.freeze.push_back("position_embd.weight");
            Progress progress("finetune", !o->json);
            r = finetune(*model, ft, on_progress(progress));
            progress.finish();
        }
        if (o->json) print_json(report_json(r));
        else print_text(r);
        return 0;
    };
}

}  // namespace cq::cli
