// `cq prune MODEL -o OUT.gguf --method magnitude|wanda|sparsegpt (--sparsity S | --pattern N:M)`: unstructured or N:M
// pruning of a decoder LLM, and the same-run report (sparsity per tensor, size; with --eval TEXT PPL/KLD against the input).
#include <cstdio>
#include <iostream>

#include "commands/commands.h"
#include "commands/format.h"
#include "commands/json_reports.h"
#include "cq/compare.h"
#include "cq/error.h"
#include "cq/prune.h"

namespace cq::cli {

namespace {
struct Options {
    std::string input, output, eval_text, method = "magnitude", pattern, scope = "layer";
    double sparsity = 0;
    PruneOptions prune;
    CompareOptions compare;
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
}  // namespace

Runner register_prune(CLI::App& app) {
    auto o = std::make_shared<Options>();
    CLI::App* cmd = app.add_subcommand("prune", "Prune a decoder LLM's block Linears (unstructured or N:M) and write GGUF");
    cmd->add_option("input", o->input, "The model: a GGUF file or an HF directory (llama family)")->required();
    cmd->add_option("-o,--output", o->output, "The GGUF file to write (atomically; never the input)")->required();
    cmd->add_option("--method", o->method, "magnitude (|w|), wanda (|w|·‖x‖ per output row), sparsegpt (OBS updates from the Hessian)")
        ->default_val("magnitude");
    cmd->add_option("--sparsity", o->sparsity, "Fraction of each comparison group's weights set to zero, in (0, 1)");
    cmd->add_option("--pattern", o->pattern, "N:M: keep N of every M consecutive weights of a row (2:4, 4:8)");
    cmd->add_option("--scope", o->scope, "magnitude: compare weights within each layer, row, or over all pruned layers (global)")->default_val("layer");
    cmd->add_option("--calib", o->prune.calib.text_path, "wanda/sparsegpt: calibration text (cut into BOS-first chunks as llama-imatrix does); magnitude: only to report output errors");
    cmd->add_option("--calib-ctx", o->prune.calib.n_ctx, "Tokens per --calib chunk")->default_val(512)->check(CLI::Range(2, 1 << 20));
    cmd->add_option("--calib-chunks", o->prune.calib.max_chunks, "At most this many --calib chunks (-1: all)")->default_val(-1);
    cmd->add_option("--damp", o->prune.sparsegpt.damp, "sparsegpt: damping added to the Hessian's diagonal, a fraction of its mean")->default_val(0.01);
    cmd->add_option("--block-size", o->prune.sparsegpt.block_size, "sparsegpt: columns per lazy batch and mask block")->default_val(128);
    cmd->add_flag("--no-sequential", o->no_sequential, "wanda/sparsegpt: measure every Linear of a block on the dense block's inputs, as the "
                                                       "reference code does, instead of each group on the outputs of the groups already pruned "
                                                       "(default: off)");
    cmd->add_option("--eval", o->eval_text, "Also measure, in this run, the output against the input: perplexity, KL-divergence, speed");
    cmd->add_option("-c,--ctx", o->compare.n_ctx, "Perplexity chunk length for --eval")->default_val(512);
    cmd->add_option("--chunks", o->compare.max_chunks, "At most this many chunks for --eval (-1: all)")->default_val(-1);
    cmd->add_flag("--no-bench", o->no_bench, "Skip the speed part of --eval (default: off)");
    cmd->add_flag("--json", o->json, "Print JSON instead of tables (default: off)");
    return [o]() -> int {
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
