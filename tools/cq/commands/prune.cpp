// `cq prune MODEL -o OUT.gguf --method magnitude|wanda|sparsegpt (--sparsity S | --pattern N:M)`: unstructured or N:M
// pruning of a decoder LLM, and the same-run report (sparsity per tensor, size; with --eval TEXT PPL/KLD against the input).
// `cq prune ENCODER_DIR -o OUT_DIR --structured heads=F,ffn=F --calib DATA.tsv`: structured pruning of an encoder classifier.
#include <cstdio>
#include <iostream>

#include "commands/commands.h"
#include "commands/format.h"
#include "commands/json_reports.h"
#include "cq/compare.h"
#include "cq/error.h"
#include "cq/prune.h"
#include "cq/prune_encoder.h"

namespace cq::cli {

namespace {
struct Options {
    std::string input, output, eval_text, method = "magnitude", pattern, scope = "layer", structured, hf_out;
    RecoveryOptions recovery;
    double sparsity = 0;
    PruneOptions prune;
    CompareOptions compare;
    EncoderPruneOptions encoder;
    bool no_bench = false, json = false, no_sequential = false;
};

std::string pct(double v) {
    char b[32];
    std::snprintf(b, sizeof b, "%.2f%%", 100.0 * v);
    return b;
}

void print_report(const PruneReport& r) {
    std::printf("%s → %s (%s, %s, scope %s), %.2f s\n", r.input.c_str(), r.output.c_str(), r.method.c_str(), r.target.c_str(), r.scope.c_str(), r.seconds);
    if (r.calibration)
        std::printf("calibration: %s (sha256 %.16s…), %lld chunks × %lld tokens\n", r.calibration->text_path.c_str(),
                    r.calibration->text_sha256.c_str(), static_cast<long long>(r.calibration->chunks), static_cast<long long>(r.calibration->n_ctx));
    // The output error tr(EHEᵀ)/tr(WHWᵀ) on the calibration inputs exists only where calibration text was given.
    const bool errors = !r.tensors.empty() && r.tensors.front().rel_error >= 0;
    std::vector<std::vector<std::string>> rows{{"tensor", "shape", "zeros", "sparsity"}};
    if (errors) rows[0].push_back("rel. output error");
    for (const auto& t : r.tensors) {
        rows.push_back({t.name, std::to_string(t.n_out) + "×" + std::to_string(t.n_in), group_digits(static_cast<uint64_t>(t.zeros)), pct(t.sparsity)});
        if (errors) {
            char e[32];
            std::snprintf(e, sizeof e, "%.4f", t.rel_error);
            rows.back().push_back(e);
        }
    }
    print_table(rows, {false, true, true, true, true}, 2);
    std::printf("pruned tensors: %s of %s weights zero (%s); all Linears: %s\n", group_digits(static_cast<uint64_t>(r.zeros)).c_str(),
                group_digits(static_cast<uint64_t>(r.pruned_params)).c_str(),
                pct(r.pruned_params ? static_cast<double>(r.zeros) / static_cast<double>(r.pruned_params) : 0.0).c_str(),
                pct(r.model_params ? static_cast<double>(r.zeros) / static_cast<double>(r.model_params) : 0.0).c_str());
    std::printf("file bytes: %s → %s (pruned weights are stored as f32 zeros: sparsity saves space once quantized or packed)\n",
                group_digits(r.file_bytes_in).c_str(), group_digits(r.file_bytes_out).c_str());
}

void print_structured(const StructuredFileReport& f) {
    const StructuredReport& r = f.prune;
    std::printf("%s → %s (structured %s), %.2f s\n", r.input.c_str(), f.gguf.c_str(), r.target.c_str(), r.seconds);
    if (r.calibration)
        std::printf("calibration: %s (sha256 %.16s…), %lld chunks × %lld tokens\n", r.calibration->text_path.c_str(),
                    r.calibration->text_sha256.c_str(), static_cast<long long>(r.calibration->chunks), static_cast<long long>(r.calibration->n_ctx));
    std::vector<std::vector<std::string>> rows{{"block", "→", "influence", "KV groups kept", "FFN kept"}};
    for (const auto& b : r.blocks) {
        std::string groups;
        for (int64_t g : b.kept_groups) groups += (groups.empty() ? "" : ",") + std::to_string(g);
        char infl[32];
        std::snprintf(infl, sizeof infl, "%.4f", b.influence);
        rows.push_back({std::to_string(b.block), b.new_index < 0 ? "removed" : std::to_string(b.new_index), infl, groups,
                        std::to_string(b.ffn_kept) + "/" + std::to_string(r.n_ff_in)});
    }
    print_table(rows, {true, true, true, false, true}, 2);
    std::printf("heads %lld → %lld, KV heads %lld → %lld, FFN %lld → %lld, blocks %lld → %lld; parameters %s → %s (%.1f%%)\n",
                (long long)r.n_head_in, (long long)r.n_head_out, (long long)r.n_head_kv_in, (long long)r.n_head_kv_out, (long long)r.n_ff_in,
                (long long)r.n_ff_out, (long long)r.n_layer_in, (long long)r.n_layer_out, group_digits(static_cast<uint64_t>(r.params_in)).c_str(),
                group_digits(static_cast<uint64_t>(r.params_out)).c_str(), 100.0 * double(r.params_out) / double(r.params_in));
    if (f.recovery)
        std::printf("recovery: %lld distillation steps, loss %.4f → %.4f, %.1f s\n", (long long)f.recovery->steps, f.recovery->loss_first,
                    f.recovery->loss_last, f.recovery->seconds);
    std::printf("GGUF (f32): %s bytes%s\n", group_digits(f.gguf_bytes).c_str(), f.hf_dir.empty() ? "" : ("; HF directory " + f.hf_dir).c_str());
}

nlohmann::json structured_to_json(const StructuredFileReport& f) {
    const StructuredReport& r = f.prune;
    nlohmann::json j{{"input", r.input}, {"output", f.gguf}, {"hf_dir", f.hf_dir}, {"target", r.target}, {"seconds", r.seconds},
                     {"n_head", {r.n_head_in, r.n_head_out}}, {"n_head_kv", {r.n_head_kv_in, r.n_head_kv_out}}, {"n_ff", {r.n_ff_in, r.n_ff_out}},
                     {"n_layer", {r.n_layer_in, r.n_layer_out}}, {"params", {r.params_in, r.params_out}}, {"gguf_bytes", f.gguf_bytes}};
    nlohmann::json bs = nlohmann::json::array();
    for (const auto& b : r.blocks)
        bs.push_back({{"block", b.block}, {"new_index", b.new_index}, {"influence", b.influence}, {"kept_groups", b.kept_groups},
                      {"group_scores", b.group_scores}, {"ffn_kept", b.ffn_kept}});
    j["blocks"] = bs;
    if (r.calibration) j["calibration"] = {{"file", r.calibration->text_path}, {"sha256", r.calibration->text_sha256}, {"chunks", r.calibration->chunks}};
    if (f.recovery) j["recovery"] = {{"steps", f.recovery->steps}, {"loss_first", f.recovery->loss_first}, {"loss_last", f.recovery->loss_last}, {"seconds", f.recovery->seconds}};
    return j;
}

nlohmann::json report_to_json(const PruneReport& r) {
    nlohmann::json j;
    j["input"] = r.input, j["output"] = r.output, j["method"] = r.method, j["target"] = r.target, j["scope"] = r.scope;
    j["seconds"] = r.seconds, j["zeros"] = r.zeros, j["pruned_params"] = r.pruned_params, j["model_params"] = r.model_params;
    j["file_bytes_in"] = r.file_bytes_in, j["file_bytes_out"] = r.file_bytes_out;
    if (r.calibration)
        j["calibration"] = {{"file", r.calibration->text_path}, {"sha256", r.calibration->text_sha256}, {"chunks", r.calibration->chunks},
                            {"ctx", r.calibration->n_ctx}, {"tokens", r.calibration->tokens}};
    nlohmann::json ts = nlohmann::json::array();
    for (const auto& t : r.tensors) {
        nlohmann::json x{{"name", t.name}, {"shape", {t.n_out, t.n_in}}, {"zeros", t.zeros}, {"sparsity", t.sparsity}};
        if (t.rel_error >= 0) x["rel_output_error"] = t.rel_error;
        ts.push_back(x);
    }
    j["tensors"] = ts;
    return j;
}
void print_encoder(const EncoderPruneReport& r) {
    std::printf("%s → %s (structured %s), %.2f s\n", r.input.c_str(), r.output.c_str(), r.target.c_str(), r.seconds);
    std::printf("calibration: %s, %lld samples, %lld tokens\n", r.calib_data.c_str(), static_cast<long long>(r.calib_samples),
                static_cast<long long>(r.calib_tokens));
    std::printf("heads per block %lld → %lld, FFN %lld → %lld; parameters %s → %s; model.safetensors %s → %s bytes\n",
                static_cast<long long>(r.n_head_in), static_cast<long long>(r.n_head_out), static_cast<long long>(r.n_ff_in),
                static_cast<long long>(r.n_ff_out), group_digits(static_cast<uint64_t>(r.params_in)).c_str(),
                group_digits(static_cast<uint64_t>(r.params_out)).c_str(), group_digits(r.bytes_in).c_str(), group_digits(r.bytes_out).c_str());
    std::vector<std::vector<std::string>> rows{{"block", "heads kept", "head scores", "FFN kept"}};
    for (const auto& b : r.blocks) {
        std::string kept, scores;
        for (int64_t h : b.heads_kept) kept += (kept.empty() ? "" : ",") + std::to_string(h);
        for (double s : b.head_scores) {
            char t[32];
            std::snprintf(t, sizeof t, "%s%.3g", scores.empty() ? "" : " ", s);
            scores += t;
        }
        rows.push_back({std::to_string(b.block), kept, scores, std::to_string(b.ffn_kept)});
    }
    print_table(rows, {true, false, false, true}, 2);
    if (r.recovery)
        std::printf("recovery: %lld distillation steps, %.1f s, loss %.4f → %.4f\n", static_cast<long long>(r.recovery->steps), r.recovery->seconds,
                    r.recovery->loss_first, r.recovery->loss_last);
}

nlohmann::json encoder_to_json(const EncoderPruneReport& r) {
    nlohmann::json j = {{"input", r.input}, {"output", r.output}, {"target", r.target}, {"calib", r.calib_data},
                        {"calib_samples", r.calib_samples}, {"calib_tokens", r.calib_tokens}, {"n_head_in", r.n_head_in},
                        {"n_head_out", r.n_head_out}, {"n_ff_in", r.n_ff_in}, {"n_ff_out", r.n_ff_out}, {"params_in", r.params_in},
                        {"params_out", r.params_out}, {"bytes_in", r.bytes_in}, {"bytes_out", r.bytes_out}, {"seconds", r.seconds}};
    for (const auto& b : r.blocks) j["blocks"].push_back({{"block", b.block}, {"heads_kept", b.heads_kept}, {"head_scores", b.head_scores}, {"ffn_kept", b.ffn_kept}});
    if (r.recovery)
        j["recovery"] = {{"steps", r.recovery->steps}, {"seconds", r.recovery->seconds}, {"loss_first", r.recovery->loss_first},
                         {"loss_last", r.recovery->loss_last}};
    return j;
}

}  // namespace

Runner register_prune(CLI::App& app) {
    auto o = std::make_shared<Options>();
    CLI::App* cmd = app.add_subcommand("prune", "Prune a decoder LLM's block Linears (unstructured, N:M, or structured: heads, FFN neurons, "
                                                "blocks) and write GGUF");
    cmd->add_option("input", o->input, "The model: a GGUF file or an HF directory (llama family; with --structured also an encoder "
                                        "classifier: BERT, RoBERTa, DistilBERT, ViT, DeiT)")->required();
    cmd->add_option("-o,--output", o->output, "The GGUF file to write (atomically; never the input); --structured on an encoder: the "
                                              "HF directory to write")->required();
    cmd->add_option("--method", o->method, "magnitude (|w|), wanda (|w|·‖x‖ per output row), sparsegpt (OBS updates from the Hessian)")
        ->default_val("magnitude");
    cmd->add_option("--sparsity", o->sparsity, "Fraction of each comparison group's weights set to zero, in (0, 1)");
    cmd->add_option("--pattern", o->pattern, "N:M: keep N of every M consecutive weights of a row (2:4, 4:8)");
    cmd->add_option("--scope", o->scope, "magnitude: compare weights within each layer, row, or over all pruned layers (global)")->default_val("layer");
    cmd->add_option("--calib", o->prune.calib.text_path, "wanda/sparsegpt: calibration text (cut into BOS-first chunks as llama-imatrix does); magnitude: only to report output errors; "
                                                         "--structured on an encoder: labelled data (TSV, image folder), labels unused (required; default: none)");
    cmd->add_option("--calib-samples", o->encoder.calib_samples, "--structured on an encoder: at most this many --calib samples (the first ones)")
        ->default_val(512)->check(CLI::Range(int64_t{1}, int64_t{1} << 40));
    cmd->add_option("--max-len", o->encoder.run.max_len, "--structured on an encoder: text tokens per calibration / recovery sample incl. "
                                                        "special tokens")->default_val(128)->check(CLI::Range(3, 1 << 16));
    cmd->add_option("--calib-ctx", o->prune.calib.n_ctx, "Tokens per --calib chunk")->default_val(512)->check(CLI::Range(2, 1 << 20));
    cmd->add_option("--calib-chunks", o->prune.calib.max_chunks, "At most this many --calib chunks (-1: all)")->default_val(-1);
    cmd->add_option("--damp", o->prune.sparsegpt.damp, "sparsegpt: damping added to the Hessian's diagonal, a fraction of its mean")->default_val(0.01);
    cmd->add_option("--block-size", o->prune.sparsegpt.block_size, "sparsegpt: columns per lazy batch and mask block")->default_val(128);
    cmd->add_flag("--no-sequential", o->no_sequential, "wanda/sparsegpt: measure every Linear of a block on the dense block's inputs, as the "
                                                       "reference code does, instead of each group on the outputs of the groups already pruned "
                                                       "(default: off)");
    cmd->add_option("--structured", o->structured, "Structured pruning of an HF llama-family directory: heads=F (fraction of KV groups, "
                                                   "each with its query heads), ffn=F (FFN neurons), layers=N (whole blocks), e.g. "
                                                   "heads=0.25,ffn=0.25; importance from --calib activations; writes a smaller f32 GGUF. "
                                                   "On an encoder classifier: heads=F (fraction of each block's attention heads), ffn=F "
                                                   "(FFN neurons, kept count a multiple of 16); writes a smaller HF directory with "
                                                   "pruned_heads / intermediate_size as transformers expects (default: off)");
    cmd->add_option("--hf-out", o->hf_out, "--structured: also keep the smaller HF directory here (default: none)");
    cmd->add_option("--recover", o->recovery.steps, "--structured: distil the pruned model from the input for this many steps on "
                                                    "--calib text (default: 0, none)")->default_val(0);
    cmd->add_option("--recover-lr", o->recovery.distill.schedule.lr, "--recover: peak learning rate (cosine decay)")->default_val(1e-3);
    cmd->add_option("--recover-batch", o->recovery.distill.batch, "--recover: sequences (encoders: examples) per step")->default_val(8);
    cmd->add_option("--recover-ctx", o->recovery.distill.ctx, "--recover: tokens per sequence")->default_val(128);
    cmd->add_option("--eval", o->eval_text, "Also measure, in this run, the output against the input: perplexity, KL-divergence, speed");
    cmd->add_option("-c,--ctx", o->compare.n_ctx, "Perplexity chunk length for --eval")->default_val(512);
    cmd->add_option("--chunks", o->compare.max_chunks, "At most this many chunks for --eval (-1: all)")->default_val(-1);
    cmd->add_flag("--no-bench", o->no_bench, "Skip the speed part of --eval (default: off)");
    cmd->add_flag("--json", o->json, "Print JSON instead of tables (default: off)");
    return [o]() -> int {
        if (!o->structured.empty() && is_prunable_encoder_dir(o->input)) {
            if (!o->pattern.empty() || o->sparsity != 0) throw InvalidArgument("[prune] --structured does not combine with --sparsity / --pattern");
            if (!o->hf_out.empty()) throw InvalidArgument("[prune] --hf-out: an encoder's output (-o) is already an HF directory");
            EncoderPruneOptions& eo = o->encoder;
            eo.target = StructuredTarget::parse(o->structured, "[prune]");
            eo.calib_data = o->prune.calib.text_path;
            eo.recover_steps = o->recovery.steps;
            eo.recover = o->recovery.distill;
            eo.recover.batch = o->recovery.distill.batch;
            eo.recover.max_len = eo.run.max_len;
            const EncoderPruneReport r = prune_encoder_structured(o->input, o->output, eo);
            if (o->json) print_json(nlohmann::json{{"prune", encoder_to_json(r)}});
            else print_encoder(r);
            return 0;
        }
        if (!o->structured.empty()) {
            if (!o->pattern.empty() || o->sparsity != 0) throw InvalidArgument("[prune] --structured does not combine with --sparsity / --pattern");
            StructuredOptions so;
            so.target = StructuredTarget::parse(o->structured, "[prune]");
            so.calib = o->prune.calib;
            std::unique_ptr<Progress> stage;
            std::string stage_name;
            so.stage_progress = [&](const std::string& name, int64_t done, int64_t total) {
                if (name != stage_name) {
                    if (stage) stage->finish();
                    stage = std::make_unique<Progress>(name, !o->json);
                    stage_name = name;
                }
                stage->update(done, total, "blocks");
            };
            const StructuredFileReport r = prune_structured_file(o->input, o->output, o->hf_out, so, o->recovery);
            if (stage) stage->finish(), stage.reset();
            nlohmann::json j;
            if (o->json) j["prune"] = structured_to_json(r);
            else print_structured(r);
            if (!o->eval_text.empty()) {
                o->compare.bench = !o->no_bench;
                same_run_eval(o->input, o->output, o->eval_text, o->compare, o->json, j);
            }
            if (o->json) print_json(j);
            return 0;
        }
        if (o->recovery.steps != 0 || !o->hf_out.empty()) throw InvalidArgument("[prune] --recover and --hf-out apply to --structured only");
        o->prune.method = parse_prune_method(o->method);
        o->prune.scope = parse_prune_scope(o->scope);
        o->prune.sequential = !o->no_sequential;
        if (!o->pattern.empty() && o->sparsity != 0) throw InvalidArgument("[prune] give either --sparsity or --pattern, not both");
        if (!o->pattern.empty()) o->prune.target = SparsityTarget::parse_pattern(o->pattern, "prune");
        else if (o->sparsity == 0) throw InvalidArgument("[prune] give --sparsity S (in (0, 1)) or --pattern N:M");
        else o->prune.target.sparsity = o->sparsity;
        std::unique_ptr<Progress> stage;
        std::string stage_name;
        o->prune.stage_progress = [&](const std::string& name, int64_t done, int64_t total) {
            if (name != stage_name) {
                if (stage) stage->finish();
                stage = std::make_unique<Progress>(name, !o->json);
                stage_name = name;
            }
            stage->update(done, total, "steps");
        };
        const PruneReport r = prune_model_file(o->input, o->output, o->prune);
        if (stage) stage->finish(), stage.reset();
        nlohmann::json j;
        if (o->json) j["prune"] = report_to_json(r);
        else print_report(r);
        if (!o->eval_text.empty()) {
            o->compare.bench = !o->no_bench;
            same_run_eval(o->input, o->output, o->eval_text, o->compare, o->json, j);
        }
        if (o->json) print_json(j);
        return 0;
    };
}

}  // namespace cq::cli
