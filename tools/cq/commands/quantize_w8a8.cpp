// The encoder branch of `cq quantize` (W8A8 or weight-only block types): quantize, write the GGUF container, then,
// with --eval DATA, load the written file back and report accuracy, agreement, KL-divergence and speed against the
// original in the same run.
#include <cstdio>
#include <iostream>
#include <map>
#include <optional>
#include <tuple>

#include "commands/format.h"
#include "commands/json_reports.h"
#include "cq/report.h"
#include "commands/quantize_w8a8.h"
#include "cq/classify.h"
#include "cq/compare.h"
#include "cq/error.h"

namespace cq::cli {

namespace {

std::string fixed(double v, int digits) {
    char b[48];
    std::snprintf(b, sizeof b, "%.*f", digits, v);
    return b;
}

}  // namespace

void add_w8a8_options(CLI::App* cmd, W8A8CliOptions& o) {
    cmd->add_option("--calib", o.quant.calib_data, "Calibration data. LLMs: text (cut into --calib-ctx chunks as llama-imatrix does) for --method imatrix/gptq/awq/"
                    "awq+gptq/auto and --target-size/--target-bpw/--max-kld; w8a8-static: samples (same kinds of file as --eval: TSV, "
                    "MNIST idx, image folder; BART / T5: source / target text pairs; BLIP: image / caption pairs; decoder LLMs: text, in --calib-ctx "
                    "chunks, at most --calib-chunks). No default: cq never downloads "
                    "calibration data (default: none)");
    cmd->add_option("--calib-range", o.calib_range, "w8a8-static: samples FIRST:END of --calib to draw from (default: all)");
    cmd->add_option("--calib-samples", o.quant.calib_samples, "w8a8-static: how many samples calibrate")->default_val(256)->check(CLI::Range(1, 1 << 24));
    cmd->add_option("--calib-method", o.calib_method, "w8a8-static: activation range from minmax, percentile, mse or entropy")->default_val("percentile");
    cmd->add_option("--percentile", o.quant.percentile, "w8a8-static: the percentile of --calib-method percentile")->default_val(99.99)->check(CLI::Range(50.0, 100.0));
    cmd->add_option("--calib-cache", o.quant.calib_cache, "w8a8-static: statistics file, reused when it matches the model and samples, "
                                                          "written otherwise, so a sweep over methods runs the model once (default: none)");
    cmd->add_option("--layer", o.quant.layer_rules, "w8a8: PATTERN=int8|float rule over Linear names, after the default "
                                                    "('*=float', '*.layer.*=int8', '*.encoder.layers.*=int8': every Linear in the encoder blocks, CLIP's too; decoder LLMs: '*=float', "
                                                    "'blk.*=int8'); repeatable, later rules win (default: none)");
    cmd->add_option("--act-bits", o.act_bits, "w8a8: activation bits: 8; 7 (half the resolution, but the exact fast vpmaddubsw "
                                              "path on CPUs without AVX-512 VNNI); or auto: w8a8-static gets 8, w8a8-dynamic files "
                                              "record 'auto' and each CPU runs 8 with VNNI, 7 without")->default_val("auto")->check(CLI::IsMember({"auto", "7", "8"}));
    cmd->add_flag("--act-symmetric", o.act_symmetric, "w8a8-static, decoder LLMs: symmetric activation ranges (±amax, zero point at "
                                                       "mid-code): TensorRT's symmetric int8, which --format trt-qdq then exports code for code (default: off)");
    cmd->add_option("--act-granularity", o.act_granularity, "w8a8-dynamic, decoder LLMs: token (each token's own scale) or tensor (one "
                                                             "scale per call from the whole input's range, 8-bit: ONNX DynamicQuantizeLinear's "
                                                             "numbers, which --format dynamic then exports exactly)")
        ->default_val("token")->check(CLI::IsMember({"token", "tensor"}));
    cmd->add_option("--attention", o.attention, "w8a8, encoders: self-attention's products in f32, or int8 (u8 queries and "
                                                "probabilities, s8 keys and values: about 2x faster attention on AVX-512 VNNI, within 2-3 % "
                                                "of f32 per head; check accuracy with --eval)")
        ->default_val("f32")->check(CLI::IsMember({"f32", "int8"}));
    cmd->add_option("--embeddings", o.embedding_type, "w8a8: type of the word-embedding table (q8_0, q5_0, q4_0: rows dequantized as "
                                                      "tokens are looked up; f16, bf16; f32 = keep)")->default_val("q8_0");
    cmd->add_option("--eval-range", o.eval_range, "w8a8: samples FIRST:END of --eval (default: all)");
    cmd->add_option("--labels", o.eval_selection.labels_path, "w8a8: MNIST labels file for --eval (default: derived from the images file's name)");
    cmd->add_option("--batch", o.quant.run.batch, "w8a8: samples per forward pass in calibration and --eval")->default_val(32)->check(CLI::Range(1, 1 << 16));
    cmd->add_option("--max-len", o.quant.run.max_len, "w8a8: text tokens per sample incl. special tokens")->default_val(128)->check(CLI::Range(3, 1 << 16));
    cmd->add_option("--bench-batch", o.bench_batch, "w8a8 --eval speed test: sequences per batch")->default_val(8)->check(CLI::Range(1, 4096));
    cmd->add_option("--bench-seq", o.bench_seq, "w8a8 --eval speed test: tokens per sequence")->default_val(128)->check(CLI::Range(2, 1 << 16));
}

int run_quantize_w8a8(W8A8CliOptions& o, const std::string& input, const std::string& output, const std::string& type,
                      const std::string& eval_data, bool bench, int64_t bench_reps, bool json, const std::string& report_html) {
    if (o.act_symmetric) throw InvalidArgument("--act-symmetric applies to decoder LLMs' --type w8a8-static only");
    if (o.act_granularity != "token") throw InvalidArgument("--act-granularity tensor applies to decoder LLMs' --type w8a8-dynamic only");
    o.quant.activations = type == "w8a8-static" ? ActivationQuant::static_per_tensor : ActivationQuant::dynamic_per_token;
    if (!is_w8a8_type(type)) o.quant.weight_type = encoder_weight_only_type(type);
    const auto method = calib::parse_method(o.calib_method);
    if (!method) throw InvalidArgument("--calib-method '" + o.calib_method + "' is not one of minmax, percentile, mse, entropy");
    o.quant.method = *method;
    const auto embd = dtype_from_name(o.embedding_type);
    if (!embd || (*embd != DType::Q8_0 && *embd != DType::Q5_0 && *embd != DType::Q4_0 && *embd != DType::F16 && *embd != DType::F32 &&
                  *embd != DType::BF16))
        throw InvalidArgument("--embeddings '" + o.embedding_type + "' is not one of q8_0, q5_0, q4_0, f16, bf16, f32");
    o.quant.embedding_type = *embd;
    o.quant.activation_bits = o.act_bits == "auto" ? 0 : std::stoi(o.act_bits);
    o.quant.attention = *attention_precision_from_name(o.attention);
    std::tie(o.quant.calib_selection.first, o.quant.calib_selection.count) = parse_sample_range(o.calib_range, "--calib-range");
    std::tie(o.eval_selection.first, o.eval_selection.count) = parse_sample_range(o.eval_range, "--eval-range");

    Progress progress("quantize", !json);
    const EncoderQuantizeReport r = quantize_encoder(input, output, o.quant, [&](int64_t done, int64_t total, double) {
        progress.update(done, total, "calibration samples");
    });
    progress.finish();
    nlohmann::json j;
    int64_t int8_layers = 0;
    for (const auto& p : r.linears) int8_layers += p.int8;
    j["quantize"] = encoder_quantize_report_to_json(r);
    if (!json && o.quant.weight_type) {
        // Weight-only: how many Linears took which type (a fallback counts under the type it got).
        std::map<std::string, int64_t> by_type;
        int64_t fallbacks = 0;
        for (const auto& p : r.linears) ++by_type[p.weight_type], fallbacks += !p.fallback.empty();
        std::printf("%s → %s (%s weight-only, f32 activations), %.2f s\nLinear layers:", r.input.c_str(), r.output.c_str(), r.type.c_str(), r.seconds);
        for (const auto& [t, n] : by_type) std::printf(" %s %lld", t.c_str(), static_cast<long long>(n));
        std::printf("; %lld fell back (rows not whole blocks); word embeddings %s\n", static_cast<long long>(fallbacks), r.embeddings.c_str());
    } else if (!json) {
        std::printf("%s → %s (%s), %.2f s\n", r.input.c_str(), r.output.c_str(), r.type.c_str(), r.seconds);
        std::printf("%lld of %zu Linear layers int8", static_cast<long long>(int8_layers), r.linears.size());
        if (!r.method.empty())
            std::printf("; activations calibrated by %s on %lld samples%s", r.method.c_str(), static_cast<long long>(r.calib_samples),
                        r.calib_from_cache ? " (from the cache)" : "");
        std::printf("; %d-bit activations%s; %s attention; word embeddings %s\n", r.activation_bits,
                    r.activation_bits_auto ? (r.activation_bits == 8 ? " (auto: VNNI)" : " (auto: no VNNI here)") : "", r.attention.c_str(),
                    r.embeddings.c_str());
    }
    if (eval_data.empty()) {
        if (!json) {
            std::vector<std::vector<std::string>> rows{{"", "before", "after"}};
            rows.push_back({"file bytes", group_digits(r.file_bytes_in), group_digits(r.file_bytes_out)});
            rows.push_back({"size", "", "÷" + fixed(static_cast<double>(r.file_bytes_in) / static_cast<double>(std::max<uint64_t>(1, r.file_bytes_out)), 2)});
            print_table(rows, {false, true, true}, 2);
        }
        if (!report_html.empty()) write_html_report(std::vector<ReportInput>{{output + " (this run)", j.dump()}}, report_html);
        if (json) print_json(j);
        return 0;
    }
    // Same run: the original and the file just written, on the same samples.
    auto original = EncoderModel::load(input);
    auto quantized = EncoderModel::load(output);
    EncoderCompareOptions co;
    co.run = o.quant.run;
    co.selection = o.eval_selection;
    co.bench = bench;
    co.bench_batch = o.bench_batch, co.bench_seq = o.bench_seq, co.bench_repetitions = bench_reps;
    std::optional<Progress> bar;
    std::string bar_stage;
    const EncoderComparisonReport cmp = compare_encoders(*original, *quantized, eval_data, co, [&](const std::string& stage, int64_t done, int64_t total) {
        if (stage != bar_stage) {
            if (bar) bar->finish();
            bar.emplace(stage, !json);
            bar_stage = stage;
        }
        bar->update(done, total, "samples");
    });
    if (bar) bar->finish();
    const ClassificationResult& before = cmp.base;
    const ClassificationResult& after = cmp.candidate;
    const PredictionAgreement& agree = cmp.agreement;
    const std::optional<EncoderBenchResult>& speed_before = cmp.base_speed;
    const std::optional<EncoderBenchResult>& speed_after = cmp.candidate_speed;
    const std::string data_source = cmp.data;
    {
        j["eval"] = {{"data", data_source}, {"before", classification_to_json(before)}, {"after", classification_to_json(after)},
                     {"agreement", agreement_to_json(agree)}};
        if (bench) j["eval"]["speed"] = {{"before", encoder_bench_to_json(*speed_before)}, {"after", encoder_bench_to_json(*speed_after)},
                                         {"speedup", speed_before->median_ms / speed_after->median_ms}};
    }
    if (!report_html.empty()) write_html_report(std::vector<ReportInput>{{output + " (this run)", j.dump()}}, report_html);
    if (json) {
        print_json(j);
        return 0;
    }
    std::printf("\nSame-run comparison on %s (%lld samples):\n\n", data_source.c_str(), static_cast<long long>(before.samples));
    std::vector<std::vector<std::string>> rows{{"", "original", r.type, "change"}};
    rows.push_back({"file bytes", group_digits(r.file_bytes_in), group_digits(r.file_bytes_out),
                    "÷" + fixed(static_cast<double>(r.file_bytes_in) / static_cast<double>(std::max<uint64_t>(1, r.file_bytes_out)), 2)});
    rows.push_back({"accuracy", fixed(100.0 * before.accuracy, 2) + " %", fixed(100.0 * after.accuracy, 2) + " %",
                    fixed(100.0 * (after.accuracy - before.accuracy), 2) + " pt"});
    rows.push_back({"agreement", "", fixed(100.0 * agree.agreement, 2) + " %", ""});
    rows.push_back({"mean KLD", "", fixed(agree.mean_kld, 6), ""});
    rows.push_back({"max |Δlogit|", "", fixed(agree.max_abs_logit_diff, 4), ""});
    if (bench) {
        const std::string shape = std::to_string(o.bench_batch) + "×" + std::to_string(speed_before->seq);
        rows.push_back({"latency " + shape + " (ms)", fixed(speed_before->median_ms, 2), fixed(speed_after->median_ms, 2),
                        "×" + fixed(speed_before->median_ms / speed_after->median_ms, 2) + " faster"});
    }
    print_table(rows, {false, true, true, true}, 2);
    if (bench) std::printf("\n(%s kernels; latency = median of %lld runs)\n", speed_after->isa.c_str(), static_cast<long long>(bench_reps));
    return 0;
}

}  // namespace cq::cli
