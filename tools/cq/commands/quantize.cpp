// `cq quantize IN OUT --type TYPE`: weight quantization with per-tensor rules, and the same-run report
// (size, bits per weight, types; with --eval TEXT also PPL, KLD and speed against the original).
#include <algorithm>
#include <cstdio>
#include <iostream>

#include "commands/commands.h"
#include "commands/format.h"
#include "commands/json_reports.h"
#include "commands/quantize_w8a8.h"
#include "cq/classify.h"
#include "cq/compare.h"
#include "cq/detr.h"
#include "cq/error.h"
#include "cq/llm.h"
#include "cq/w8a8.h"
#include "cq/quantize.h"
#include "cq/report.h"
#include "cq/seq2seq.h"

namespace cq::cli {

namespace {
struct Options {
    std::string input, output, eval_text;
    QuantizeOptions quant;
    CompareOptions compare;
    bool no_bench = false;
    bool no_keep_zeros = false;
    bool json = false;
    bool verbose = false;
    W8A8CliOptions w8a8;
    std::string method;
    std::string report;
};

void print_report(const QuantizeReport& r, bool verbose) {
    std::printf("%s → %s (%s, method %s), %.2f s\n", r.input.c_str(), r.output.c_str(), r.type.c_str(), r.method.c_str(), r.seconds);
    if (r.calibration)
        std::printf("calibration: %s (sha256 %.16s…), %lld chunks × %lld tokens\n", r.calibration->text_path.c_str(),
                    r.calibration->text_sha256.c_str(), static_cast<long long>(r.calibration->chunks), static_cast<long long>(r.calibration->n_ctx));
    for (const auto& [m, kld] : r.method_kld) std::printf("  method %-9s held-out KLD %.6f\n", m.c_str(), kld);
    if (r.predicted_kld >= 0) std::printf("mixed precision: predicted KLD %.6f", r.predicted_kld);
    if (r.calib_kld >= 0) std::printf("%sheld-out calibration KLD %.6f\n", r.predicted_kld >= 0 ? ", " : "", r.calib_kld);
    bool planned = false;
    for (const auto& t : r.tensors) planned |= !t.measured.empty();
    if (planned) {
        std::vector<std::vector<std::string>> rows{{"tensor", "type", "bytes", "decided by"}};
        for (const auto& t : r.tensors)
            if (!t.measured.empty()) rows.push_back({t.name, std::string(dtype_name(t.chosen)), group_digits(t.bytes_out), t.measured});
        print_table(rows, {false, false, true, false}, 2);
    }
    std::vector<std::vector<std::string>> rows{{"", "before", "after"}};
    rows.push_back({"file bytes", group_digits(r.file_bytes_in), group_digits(r.file_bytes_out)});
    rows.push_back({"tensor bytes", group_digits(r.tensor_bytes_in), group_digits(r.tensor_bytes_out)});
    char a[32], b[32];
    std::snprintf(a, sizeof a, "%.3f", r.bpw_in);
    std::snprintf(b, sizeof b, "%.3f", r.bpw_out);
    rows.push_back({"bits/weight", a, b});
    std::snprintf(a, sizeof a, "÷%.2f", r.tensor_bytes_out ? static_cast<double>(r.tensor_bytes_in) / static_cast<double>(r.tensor_bytes_out) : 0.0);
    rows.push_back({"size", "", a});
    print_table(rows, {false, true, true}, 2);
    std::printf("\ntensors by type:");
    for (const auto& [type, n] : r.tensors_by_type) std::printf(" %s %lld", type.c_str(), static_cast<long long>(n));
    std::printf("\n");
    if (r.fallbacks > 0 && verbose) {
        std::printf("%lld of %zu tensors fell back to another type:\n", static_cast<long long>(r.fallbacks), r.tensors.size());
        for (const auto& t : r.tensors)
            if (!t.fallback.empty())
                std::printf("  %s: %s → %s (%s)\n", t.name.c_str(), std::string(dtype_name(t.requested)).c_str(),
                            std::string(dtype_name(t.chosen)).c_str(), t.fallback.c_str());
    } else if (r.fallbacks > 0) {
        // One line: how many went from which type to which, in first-seen order; --verbose has each tensor and why.
        std::vector<std::pair<std::string, int64_t>> moves;
        for (const auto& t : r.tensors) {
            if (t.fallback.empty()) continue;
            const std::string move = std::string(dtype_name(t.requested)) + "→" + std::string(dtype_name(t.chosen));
            auto it = std::find_if(moves.begin(), moves.end(), [&](const auto& m) { return m.first == move; });
            if (it == moves.end()) moves.emplace_back(move, 1);
            else ++it->second;
        }
        std::printf("%lld of %zu tensors fell back to another type:", static_cast<long long>(r.fallbacks), r.tensors.size());
        for (size_t i = 0; i < moves.size(); ++i)
            std::printf("%s %s ×%lld", i ? "," : "", moves[i].first.c_str(), static_cast<long long>(moves[i].second));
        std::printf(" (--verbose lists each and why)\n");
    }
}

// A decoder LLM's --type w8a8-static | w8a8-dynamic: the options, then quantize_llm_w8a8_file.
QuantizeReport run_llm_w8a8(const Options& o, const ProgressFn& tensors) {
    LlmW8A8Options q;
    q.activations = o.quant.type == "w8a8-static"           ? ActivationQuant::static_per_tensor
                    : o.w8a8.act_granularity == "tensor" ? ActivationQuant::dynamic_per_tensor
                                                          : ActivationQuant::dynamic_per_token;
    if (o.w8a8.act_granularity != "token" && q.activations == ActivationQuant::static_per_tensor)
        throw InvalidArgument("--act-granularity applies to --type w8a8-dynamic (static activations have one calibrated scale per tensor)");
    q.calib_text = o.w8a8.quant.calib_data;
    if (!o.w8a8.calib_range.empty())
        throw InvalidArgument("--calib-range picks samples of encoder data; a decoder LLM's calibration text is cut by --calib-ctx / --calib-chunks");
    if (q.activations != ActivationQuant::static_per_tensor && !q.calib_text.empty())
        throw InvalidArgument("--calib: w8a8-dynamic quantizes activations at run time and needs no calibration text");
    q.calib_ctx = o.quant.calib.n_ctx;
    q.calib_chunks = o.quant.calib.max_chunks;
    const auto method = calib::parse_method(o.w8a8.calib_method);
    if (!method) throw InvalidArgument("--calib-method '" + o.w8a8.calib_method + "' is not one of minmax, percentile, mse, entropy");
    q.method = *method;
    q.percentile = o.w8a8.quant.percentile;
    q.symmetric = o.w8a8.act_symmetric;
    q.activation_bits = o.w8a8.act_bits == "auto" ? 0 : std::stoi(o.w8a8.act_bits);
    for (const auto& spec : o.w8a8.quant.layer_rules) q.rules.push_back(parse_w8a8_rule(spec));
    Progress calibration("calibrate", !o.json);
    bool calibrating = true;
    const ProgressFn writing = [&](int64_t done, int64_t total, double value) {
        if (calibrating) calibration.finish(), calibrating = false;
        tensors(done, total, value);
    };
    return quantize_llm_w8a8_file(o.input, o.output, q, o.quant.tensor_types, !o.no_keep_zeros, writing,
                                  [&](int64_t done, int64_t total, double) { calibration.update(done, total, "chunks"); });
}

}  // namespace

Runner register_quantize(CLI::App& app) {
    auto o = std::make_shared<Options>();
    CLI::App* cmd = app.add_subcommand("quantize", "Quantize a model's weights to GGUF, with per-tensor rules and a same-run report");
    cmd->add_option("input", o->input, "The model to quantize: a GGUF file or an HF directory (LLMs: llama, mistral, gpt2, converted as "
                                        "llama.cpp's convert_hf_to_gguf.py would; for w8a8-*, an HF encoder classifier directory or a decoder LLM; an encoder's directory "
                                        "with a block type (q4_0, q8_0, q4_K …) quantizes its block Linears weight-only into cq's container; an .onnx image model "
                                        "with --type w8a8-static --calib IMAGES is written back as an ONNX QDQ graph)")->required();
    cmd->add_option("output", o->output, "The GGUF file to write (atomically; never the input; an .onnx file for an .onnx input)")->required();
    std::string presets;
    for (const auto& p : quant_presets()) presets += "\n  " + p.name + ": " + p.description;
    presets += "\n  w8a8-dynamic: encoders and decoder LLMs: int8 weights per channel, int8 activations per token at run time"
               "\n  w8a8-static: encoders and decoder LLMs: int8 weights per channel, int8 activations per tensor from calibration "
               "(--calib; LLMs: text in --calib-ctx chunks, the blocks' Linears int8, the head float)";
    cmd->add_option("-t,--type", o->quant.type, "A preset or type:" + presets)->default_val("q8_0");
    cmd->add_option("--tensor-type", o->quant.tensor_types,
                    "PATTERN=TYPE rule applied after the preset (repeatable, later rules win; glob over tensor names), "
                    "e.g. 'blk.*.ffn_down.weight=q6_K' (default: none)");
    cmd->add_option("--imatrix", o->quant.imatrix_file, "LLMs: an importance matrix (llama-imatrix's GGUF or .dat, or cq imatrix's) for the "
                                                     "importance-weighted searches, as llama-quantize --imatrix (default: none)");
    cmd->add_option("--method", o->method, "LLMs: how weights are rounded: rtn (each type's codec), imatrix (importance-weighted "
                                           "searches; Σx² from --calib or --imatrix), gptq (error-compensating sweep on Hessians from "
                                           "--calib, block by block), awq (activation-aware scales folded into the norms, then the weighted "
                                           "searches), awq+gptq, auto (gptq and awq+gptq; the lower KL-divergence on held-out --calib chunks "
                                           "wins) (default: rtn; auto with --calib; imatrix with --imatrix)");
    cmd->add_option("--calib-ctx", o->quant.calib.n_ctx, "LLMs: tokens per --calib chunk")->default_val(512)->check(CLI::Range(2, 1 << 20));
    cmd->add_option("--calib-chunks", o->quant.calib.max_chunks, "LLMs: at most this many --calib chunks, the first ones (-1: all; 128 "
                                                                 "sequences is GPTQ's and AutoAWQ's usual amount)")->default_val(128);
    cmd->add_option("--target-size", o->quant.target_size, "LLMs: automatic mixed precision: each tensor's type chosen by its "
                                                           "measured sensitivity for the least predicted KL-divergence within this "
                                                           "many output bytes; needs --calib (default: off)");
    cmd->add_option("--target-bpw", o->quant.target_bpw, "LLMs: the same within this many bits per weight (tensor bytes · 8 / "
                                                         "parameters, as the report counts them) (default: off)");
    cmd->add_option("--max-kld", o->quant.max_kld, "LLMs: the same, the smallest plan whose predicted mean KL-divergence stays "
                                                   "under this (default: off)");
    cmd->add_option("--rules", o->quant.rules_file, "LLMs: replay a plan: PATTERN=TYPE lines (as --dump-rules writes them) applied "
                                                    "after the preset and before --tensor-type (default: none)");
    cmd->add_option("--dump-rules", o->quant.dump_rules_file, "LLMs: write the rules that decided every tensor (the mixed-precision "
                                                              "plan included) to this file (default: none)");
    cmd->add_option("--gptq-damp", o->quant.gptq_damp, "GPTQ: damping added to the Hessian's diagonal, as a fraction of its mean")
        ->default_val(0.01)->check(CLI::Range(0.0, 10.0));
    cmd->add_flag("--gptq-act-order", o->quant.gptq_act_order, "GPTQ: sweep columns by decreasing Hessian diagonal (default: off)");
    cmd->add_option("--eval", o->eval_text, "Also measure, in this run, the output against the input: LLMs: perplexity, "
                                            "KL-divergence and speed on this text; w8a8: accuracy, agreement, KL-divergence and "
                                            "speed on this labelled data (TSV, MNIST idx, image folder); BART / T5 / BLIP: the "
                                            "teacher-forced loss on text pairs or image / caption pairs (default: off)");
    cmd->add_option("-c,--ctx", o->compare.n_ctx, "Perplexity chunk length for --eval")->default_val(512);
    cmd->add_option("--chunks", o->compare.max_chunks, "At most this many chunks for --eval (-1: all)")->default_val(-1);
    cmd->add_option("--bench-prompt", o->compare.bench_options.n_prompt, "Prompt tokens for the --eval speed test")->default_val(128);
    cmd->add_option("--bench-gen", o->compare.bench_options.n_gen, "Generated tokens for the --eval speed test")->default_val(32);
    cmd->add_option("--bench-reps", o->compare.bench_options.repetitions, "Repetitions of the --eval speed test")->default_val(3);
    cmd->add_flag("--no-bench", o->no_bench, "Skip the speed part of --eval (default: off)");
    cmd->add_flag("--no-keep-zeros", o->no_keep_zeros, "LLMs: let pruned tensors' exact zeros (tensors at least 1 % zeros) round "
                                                       "off 0 as the types' own searches do (default: off: they stay exact zeros)");
    cmd->add_flag("--json", o->json, "Print JSON instead of tables (default: off)");
    cmd->add_flag("-v,--verbose", o->verbose, "List every tensor that fell back to another type, and why (default: off: one summary line)");
    cmd->add_option("--report", o->report, "Also write this run's HTML report (as cq report makes from the --json output) to this "
                                           "file (default: none)");
    add_w8a8_options(cmd, o->w8a8);
    return [o]() -> int {
        // Encoder–decoders (BART, T5, BLIP) and encoders (classifiers, vision and multimodal families) take W8A8 or
        // weight-only block types into cq's containers.
        if (o->w8a8.act_granularity != "token" && (o->quant.type != "w8a8-dynamic" || o->input.ends_with(".onnx") || is_seq2seq_model(o->input) ||
                                                   is_detr_model(o->input) || is_encoder_model(o->input)))
            throw InvalidArgument("--act-granularity tensor applies to decoder LLMs' --type w8a8-dynamic only");
        if (o->w8a8.act_symmetric && (o->quant.type != "w8a8-static" || o->input.ends_with(".onnx") || is_seq2seq_model(o->input) ||
                                      is_detr_model(o->input) || is_encoder_model(o->input)))
            throw InvalidArgument("--act-symmetric applies to decoder LLMs' --type w8a8-static only");
        if (o->w8a8.attention != "f32" && (!is_w8a8_type(o->quant.type) || !is_encoder_model(o->input) || o->input.ends_with(".onnx") ||
                                           is_seq2seq_model(o->input) || is_detr_model(o->input)))
            throw InvalidArgument("--attention int8 applies to encoders' --type w8a8-dynamic / w8a8-static only");
        if (o->input.ends_with(".onnx")) return run_quantize_onnx(o->w8a8, o->input, o->output, o->quant.type, o->eval_text, o->json);
        if (is_seq2seq_model(o->input)) return run_quantize_seq2seq(o->w8a8, o->input, o->output, o->quant.type, o->eval_text, o->json, o->report);
        if (is_detr_model(o->input)) return run_quantize_detr(o->w8a8, o->input, o->output, o->quant.type, o->json);
        const bool llm_w8a8 = is_w8a8_type(o->quant.type) && !is_encoder_model(o->input);
        if (!llm_w8a8 && (is_w8a8_type(o->quant.type) || (encoder_weight_only_type(o->quant.type) && is_encoder_model(o->input))))
            return run_quantize_w8a8(o->w8a8, o->input, o->output, o->quant.type, o->eval_text, !o->no_bench,
                                     o->compare.bench_options.repetitions, o->json, o->report);
        if (!o->w8a8.quant.calib_cache.empty()) throw InvalidArgument("--calib-cache applies to encoders' --type w8a8-static only");
        if (!llm_w8a8 && !o->w8a8.quant.layer_rules.empty()) throw InvalidArgument("--layer applies to --type w8a8-dynamic / w8a8-static only");
        o->quant.calib.text_path = o->w8a8.quant.calib_data;
        if (!o->method.empty()) o->quant.method = parse_quant_method(o->method);
        o->quant.eval_text = o->eval_text;
        o->quant.keep_zeros = !o->no_keep_zeros;
        std::unique_ptr<Progress> stage;
        std::string stage_name;
        o->quant.stage_progress = [&](const std::string& name, int64_t done, int64_t total) {
            if (name != stage_name) {
                if (stage) stage->finish();
                stage = std::make_unique<Progress>(name, !o->json);
                stage_name = name;
            }
            stage->update(done, total, "steps");
        };
        Progress progress("quantize", !o->json);
        const ProgressFn tensors = [&](int64_t done, int64_t total, double) {
            if (stage) stage->finish(), stage.reset();
            progress.update(done, total, "tensors");
        };
        const QuantizeReport r = llm_w8a8 ? run_llm_w8a8(*o, tensors) : quantize_model(o->input, o->output, o->quant, tensors);
        progress.finish();
        for (const auto& w : r.warnings)
            if (!o->json) std::fprintf(stderr, "warning: %s\n", w.c_str());
        nlohmann::json j;
        j["quantize"] = quantize_report_to_json(r);
        if (!o->json) print_report(r, o->verbose);
        if (!o->eval_text.empty()) {
            o->compare.bench = !o->no_bench;
            same_run_eval(o->input, o->output, o->eval_text, o->compare, o->json, j);
        }
        if (!o->report.empty()) write_html_report(std::vector<ReportInput>{{o->output + " (this run)", j.dump()}}, o->report);
        if (o->json) print_json(j);
        return 0;
    };
}

}  // namespace cq::cli
