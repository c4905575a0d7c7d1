// The `--json` renderings of the library's reports; keys and values as the CLI has always printed them.
#include "commands/json_reports.h"

#include <iostream>

#include "commands/format.h"

namespace cq::cli {

using nlohmann::json;

json summary_to_json(const ModelSummary& s, bool with_tensors, bool with_metadata) {
    json j;
    j["path"] = s.path;
    j["format"] = s.format;
    j["architecture"] = s.architecture;
    j["name"] = s.name;
    json hp = json::object();
    for (const auto& [k, v] : s.hyperparameters) hp[k] = v;
    j["hyperparameters"] = hp;
    j["tensor_count"] = s.tensor_count;
    j["parameter_count"] = s.parameter_count;
    j["tensor_bytes"] = s.tensor_bytes;
    j["file_bytes"] = s.file_bytes;
    j["bits_per_weight"] = s.bits_per_weight;
    json by = json::object();
    for (const auto& [dtype, bytes] : s.bytes_by_dtype) by[dtype] = {{"tensors", s.tensors_by_dtype.at(dtype)}, {"bytes", bytes}};
    j["dtypes"] = by;
    j["notes"] = s.notes;
    if (with_tensors) {
        json ts = json::array();
        for (const auto& t : s.tensors)
            ts.push_back({{"name", t.name}, {"shape", t.shape}, {"dtype", t.dtype}, {"bytes", t.nbytes}, {"offset", t.offset}, {"file", t.file}});
        j["tensors"] = ts;
    }
    if (with_metadata) {
        json md = json::object();
        for (const auto& e : s.metadata) md[e.key] = json::parse(e.json);
        j["metadata"] = md;
    }
    return j;
}

json perplexity_to_json(const PerplexityResult& r) {
    json j = {{"ppl", r.ppl},           {"ppl_err", r.ppl_err},   {"mean_nll", r.mean_nll}, {"n_tokens", r.n_tokens},
              {"n_chunks", r.n_chunks}, {"n_ctx", r.n_ctx},       {"n_scored", r.n_scored}, {"chunk_ppl", r.chunk_ppl},
              {"seconds", r.seconds}};
    if (r.kld) {
        const KldResult& k = *r.kld;
        j["kld"] = {{"n", k.n},
                    {"mean", k.mean},
                    {"mean_err", k.mean_err},
                    {"median", k.median},
                    {"max", k.max},
                    {"min", k.min},
                    {"percentiles", k.percentiles},
                    {"same_top", k.same_top},
                    {"same_top_err", k.same_top_err},
                    {"mean_dp", k.mean_dp},
                    {"mean_dp_err", k.mean_dp_err},
                    {"rms_dp", k.rms_dp},
                    {"dp_percentiles", k.dp_percentiles},
                    {"base_ppl", k.base_ppl},
                    {"ppl_ratio", k.ppl_ratio},
                    {"ppl_ratio_err", k.ppl_ratio_err},
                    {"mean_ln_ppl_ratio", k.mean_ln_ratio}};
    }
    return j;
}

json bench_to_json(const BenchResult& r) {
    json series = json::array();
    for (const auto& s : r.series)
        series.push_back({{"test", s.test}, {"tokens_per_second", s.tokens_per_second}, {"median", s.median}, {"min", s.min}, {"max", s.max}});
    return {{"model", r.model}, {"isa", r.isa},   {"gemm", r.blas}, {"threads", r.threads}, {"weight_bytes", r.weight_bytes},
            {"results", series}};
}

namespace {

double series_median(const std::optional<BenchResult>& b, char kind) {
    if (!b) return 0;
    for (const auto& s : b->series)
        if (s.test[0] == kind) return s.median;
    return 0;
}

}  // namespace

json comparison_to_json(const ComparisonReport& r) {
    auto one = [](const ModelMeasurement& m) {
        json j = {{"path", m.path}, {"weight_bytes", m.weight_bytes}, {"bits_per_weight", m.bits_per_weight},
                  {"perplexity", perplexity_to_json(m.perplexity)}};
        if (m.bench) j["bench"] = bench_to_json(*m.bench);
        return j;
    };
    json j = {{"base", one(r.base)}, {"candidate", one(r.candidate)}};
    j["size_ratio"] = r.candidate.weight_bytes ? static_cast<double>(r.base.weight_bytes) / static_cast<double>(r.candidate.weight_bytes) : 0.0;
    j["delta_ppl"] = r.candidate.perplexity.ppl - r.base.perplexity.ppl;
    if (r.base.bench && r.candidate.bench) {
        j["pp_speedup"] = series_median(r.candidate.bench, 'p') / series_median(r.base.bench, 'p');
        j["tg_speedup"] = series_median(r.candidate.bench, 't') / series_median(r.base.bench, 't');
    }
    return j;
}

json quantize_report_to_json(const QuantizeReport& r) {
    json tensors = json::array();
    for (const auto& p : r.tensors) {
        tensors.push_back({{"name", p.name}, {"shape", p.shape}, {"from", dtype_name(p.from)}, {"requested", dtype_name(p.requested)},
                           {"type", dtype_name(p.chosen)}, {"rule", p.rule}, {"fallback", p.fallback}, {"measured", p.measured},
                           {"bytes_in", p.bytes_in}, {"bytes_out", p.bytes_out}});
        if (p.probe_dkld >= 0) {
            json predicted = json::object();
            for (const auto& [type, dkld] : p.predicted_dkld) predicted[type] = dkld;
            tensors.back()["sensitivity"] = {{"probe_type", p.probe_type}, {"measured_dkld", p.probe_dkld}, {"predicted_dkld", predicted}};
        }
    }
    json j{{"input", r.input},
            {"output", r.output},
            {"type", r.type},
            {"input_sha256", r.input_sha256},
            {"file_bytes_in", r.file_bytes_in},
            {"file_bytes_out", r.file_bytes_out},
            {"tensor_bytes_in", r.tensor_bytes_in},
            {"tensor_bytes_out", r.tensor_bytes_out},
            {"parameters", r.parameters},
            {"bits_per_weight_in", r.bpw_in},
            {"bits_per_weight_out", r.bpw_out},
            {"compression_ratio", r.tensor_bytes_out ? static_cast<double>(r.tensor_bytes_in) / static_cast<double>(r.tensor_bytes_out) : 0.0},
            {"tensors_by_type", r.tensors_by_type},
            {"fallbacks", r.fallbacks},
            {"seconds", r.seconds},
            {"method", r.method},
            {"warnings", r.warnings},
            {"notes", r.notes},
            {"tensors", tensors}};
    if (r.calibration)
        j["calibration"] = {{"file", r.calibration->text_path}, {"sha256", r.calibration->text_sha256}, {"chunks", r.calibration->chunks},
                            {"ctx", r.calibration->n_ctx}, {"tokens", r.calibration->tokens}};
    if (r.predicted_kld >= 0) j["predicted_kld"] = r.predicted_kld;
    if (r.calib_kld >= 0) j["held_out_calibration_kld"] = r.calib_kld;
    if (!r.method_kld.empty()) j["method_held_out_kld"] = r.method_kld;
    if (!r.stage_seconds.empty()) {
        json stages = json::array();
        for (const auto& [name, sec] : r.stage_seconds) stages.push_back({{"stage", name}, {"seconds", sec}});
        j["stages"] = stages;
    }
    return j;
}

json encoder_quantize_report_to_json(const EncoderQuantizeReport& r) {
    json linears = json::array();
    for (const auto& p : r.linears) {
        json j{{"name", p.name}, {"shape", {p.n_out, p.n_in}}, {"int8", p.int8}, {"rule", p.rule}};
        if (!p.weight_type.empty()) j["weight_type"] = p.weight_type;
        if (!p.fallback.empty()) j["fallback"] = p.fallback;
        if (p.int8 && r.type == "w8a8-static")
            j["input"] = {{"lo", p.range.lo}, {"hi", p.range.hi}, {"scale", p.input.scale}, {"zero_point", p.input.zero_point}};
        linears.push_back(std::move(j));
    }
    json j{{"input", r.input},
           {"output", r.output},
           {"type", r.type},
           {"input_sha256", r.input_sha256},
           {"file_bytes_in", r.file_bytes_in},
           {"file_bytes_out", r.file_bytes_out},
           {"tensor_bytes_in", r.tensor_bytes_in},
           {"tensor_bytes_out", r.tensor_bytes_out},
           {"seconds", r.seconds},
           {"linears", linears}};
    j["word_embeddings"] = r.embeddings;
    j["activation_bits"] = r.activation_bits;
    j["activation_bits_auto"] = r.activation_bits_auto;
    j["attention"] = r.attention;
    if (r.type == "w8a8-static")
        j["calibration"] = {{"method", r.method}, {"samples", r.calib_samples}, {"from_cache", r.calib_from_cache}};
    return j;
}

json classification_to_json(const ClassificationResult& r) {
    return {{"samples", r.samples}, {"correct", r.correct}, {"accuracy", r.accuracy}, {"seconds", r.seconds}};
}

json agreement_to_json(const PredictionAgreement& a) {
    return {{"samples", a.samples}, {"agreement", a.agreement}, {"mean_kld", a.mean_kld}, {"max_kld", a.max_kld},
            {"max_abs_logit_diff", a.max_abs_logit_diff}};
}

json encoder_bench_to_json(const EncoderBenchResult& r) {
    return {{"batch", r.batch}, {"seq", r.seq}, {"repetitions", r.repetitions}, {"isa", r.isa}, {"ms", r.ms},
            {"median_ms", r.median_ms}, {"min_ms", r.min_ms}, {"max_ms", r.max_ms},
            {"tokens_per_s", r.median_ms > 0 ? static_cast<double>(r.batch * r.seq) / (r.median_ms / 1000.0) : 0.0}};
}

json memory_profile_to_json(const MemoryProfile& p) {
    json weights = json::array();
    for (const auto& f : p.weights) weights.push_back({{"format", f.format}, {"tensors", f.tensors}, {"bytes", f.bytes}});
    json phases = json::array();
    for (const auto& ph : p.phases)
        phases.push_back({{"phase", ph.name}, {"rss_before", ph.rss_before}, {"rss_after", ph.rss_after}, {"peak", ph.peak},
                          {"analytic", ph.analytic}, {"rss_anon_after", ph.anon_after},
                          {"rss_file_after", ph.file_after}, {"rss_model_file_after", ph.mapped_after.model_file},
                          {"rss_other_files_after", ph.mapped_after.other_files}, {"rss_anonymous_mappings_after", ph.mapped_after.anonymous},
                          {"allocator_free_after", ph.heap_free_after},
                          {"seconds", ph.seconds}});
    return {{"model", p.model},
            {"analytic", {{"weights", weights}, {"weight_bytes", p.weight_bytes}, {"packed_bytes", p.packed_bytes},
                          {"kv_cache", {{"bytes", p.kv_bytes}, {"n_layer", p.n_layer}, {"n_ctx", p.n_ctx}, {"n_head_kv", p.n_head_kv},
                                        {"head_dim", p.head_dim}, {"element_bytes", 4}}},
                          {"workspace_bytes", p.workspace_bytes}, {"calibration_stats_bytes", p.calib_stats_bytes},
                          {"training", {{"parameters", p.training.parameters}, {"values_bytes", p.training.values_bytes},
                                        {"gradient_bytes", p.training.grad_bytes}, {"optimizer_bytes", p.training.optimizer_bytes},
                                        {"activation_bytes", p.training.activation_bytes},
                                        {"released_packed_bytes", p.training.released_packed_bytes},
                                        {"released_mapped_bytes", p.training.released_mapped_bytes},
                                        {"batch", p.training.batch}, {"ctx", p.training.ctx}, {"checkpoint", p.training.checkpoint},
                                        {"total_bytes", p.training.total()}}},
                          {"total_bytes", p.analytic_total()}}},
            {"measured", {{"baseline_rss", p.baseline_rss}, {"startup_peak", p.startup_peak}, {"peak_rss", p.peak_rss},
                          {"final_rss", p.final_rss}, {"final_rss_anon", p.final_rss_anon}, {"final_rss_file", p.final_rss_file},
                          {"weights_resident", p.weights_resident},
                          {"baseline_by_mapping", {{"model_file", p.baseline_mapped.model_file}, {"other_files", p.baseline_mapped.other_files},
                                                   {"anonymous", p.baseline_mapped.anonymous}}},
                          {"peak_reset_per_phase", p.peak_reset}, {"phases", phases}}},
            {"bench", bench_to_json(p.bench)}};
}

void same_run_eval(const std::string& input, const std::string& output, const std::string& eval_text, CompareOptions compare,
                   bool json, nlohmann::json& j) {
    const std::string text = read_prompt_file(eval_text);
    Progress ev("eval", !json);
    const auto c = compare_models(input, output, text, compare, [&](int64_t done, int64_t total, double ppl) {
        ev.update(done, total, "chunks, PPL " + std::to_string(ppl));
    });
    ev.finish();
    j["eval"] = comparison_to_json(c);
    if (!json) std::cout << "\n" << comparison_to_markdown(c);
}

}  // namespace cq::cli
