// The encoder–decoder branch of `cq quantize` (BART, T5, BLIP): quantize into cq's container, then, with --eval PAIRS
// (text pairs, or a captioner's (image, caption) pairs), load the written file back and report the teacher-forced loss and
// its time against the original in the same run.
#include <cstdio>

#include "commands/format.h"
#include "commands/json_reports.h"
#include "commands/quantize_w8a8.h"
#include "cq/error.h"
#include "cq/report.h"
#include "cq/seq2seq.h"

namespace cq::cli {

namespace {

std::string fixed(double v, int digits) {
    char b[48];
    std::snprintf(b, sizeof b, "%.*f", digits, v);
    return b;
}

nlohmann::json eval_json(const Seq2SeqEvalResult& e) {
    return {{"pairs", e.pairs}, {"tokens", e.tokens}, {"mean_nll", e.mean_nll}, {"perplexity", e.perplexity}, {"seconds", e.seconds}};
}

// The loss on the --eval pairs: text pairs, or (image, caption) pairs for a captioner (whose JSON adds the loss with the
// config's label smoothing, which transformers reports).
nlohmann::json evaluate(Seq2SeqModel& model, const std::string& data, int64_t first, int64_t end, Seq2SeqEvalResult& r) {
    if (!model.takes_images()) {
        r = evaluate_pairs(model, data, first, end);
        return eval_json(r);
    }
    double smoothed = 0;
    r = evaluate_captions(model, load_caption_pairs(model, data, first, end), &smoothed);
    nlohmann::json j = eval_json(r);
    j["loss"] = smoothed;
    return j;
}

}  // namespace

int run_quantize_seq2seq(W8A8CliOptions& o, const std::string& input, const std::string& output, const std::string& type,
                         const std::string& eval_data, bool json, const std::string& report_html) {
    Seq2SeqQuantizeOptions q;
    q.type = type;
    q.calib_tsv = o.quant.calib_data;
    const auto method = calib::parse_method(o.calib_method);
    if (!method) throw InvalidArgument("--calib-method '" + o.calib_method + "' is not one of minmax, percentile, mse, entropy");
    q.method = *method;
    q.percentile = o.quant.percentile;
    const auto [calib_first, calib_count] = parse_sample_range(o.calib_range, "--calib-range");
    q.calib_first = calib_first;
    q.calib_end = calib_count < 0 ? -1 : calib_first + calib_count;
    const auto [eval_first, eval_count] = parse_sample_range(o.eval_range, "--eval-range");

    Progress progress("quantize", !json);
    const Seq2SeqQuantizeReport r = quantize_seq2seq(input, output, q);
    progress.finish();
    nlohmann::json j;
    j["quantize"] = {{"input", r.input},     {"output", r.output},       {"type", r.type},
                     {"linears", r.linears}, {"quantized", r.quantized}, {"fallbacks", r.fallbacks},
                     {"file_bytes_in", r.file_bytes_in}, {"file_bytes_out", r.file_bytes_out}, {"seconds", r.seconds}};
    const double ratio = static_cast<double>(r.file_bytes_in) / static_cast<double>(std::max<uint64_t>(1, r.file_bytes_out));
    if (!json) {
        std::printf("%s → %s (%s), %.2f s\n%lld of %lld Linear layers quantized (the blocks'; lm_head and embeddings stay as they are)",
                    r.input.c_str(), r.output.c_str(), r.type.c_str(), r.seconds, static_cast<long long>(r.quantized), static_cast<long long>(r.linears));
        if (!r.fallbacks.empty()) std::printf("; %zu took another type or stayed f32 (rows not whole blocks)", r.fallbacks.size());
        std::printf("\n");
    }
    std::vector<std::vector<std::string>> rows{{"", "original", r.type, "change"}};
    rows.push_back({"file bytes", group_digits(r.file_bytes_in), group_digits(r.file_bytes_out), "÷" + fixed(ratio, 2)});
    if (!eval_data.empty()) {
        // Same run: the original and the file just written, on the same pairs.
        auto original = Seq2SeqModel::load(input);
        auto quantized = Seq2SeqModel::load(output);
        const int64_t end = eval_count < 0 ? -1 : eval_first + eval_count;
        Seq2SeqEvalResult before, after;
        j["eval"] = {{"data", eval_data}};
        j["eval"]["before"] = evaluate(*original, eval_data, eval_first, end, before);
        j["eval"]["after"] = evaluate(*quantized, eval_data, eval_first, end, after);
        rows.push_back({"mean NLL (nats/token)", fixed(before.mean_nll, 5), fixed(after.mean_nll, 5), fixed(after.mean_nll - before.mean_nll, 5)});
        rows.push_back({"perplexity", fixed(before.perplexity, 3), fixed(after.perplexity, 3), ""});
        if (const float eps = original->config().label_smoothing; original->takes_images() && eps > 0) {
            const double lb = j["eval"]["before"]["loss"].get<double>(), la = j["eval"]["after"]["loss"].get<double>();
            rows.push_back({"loss, label smoothing " + fixed(eps, 2), fixed(lb, 5), fixed(la, 5), fixed(la - lb, 5)});
        }
        rows.push_back({"eval time (s)", fixed(before.seconds, 3), fixed(after.seconds, 3),
                        "×" + fixed(before.seconds / std::max(after.seconds, 1e-9), 2) + " faster"});
        if (!json) std::printf("\nSame-run comparison on %s (%lld %spairs, %lld target tokens, teacher-forced):\n\n", eval_data.c_str(),
                               static_cast<long long>(before.pairs), original->takes_images() ? "(image, caption) " : "", static_cast<long long>(before.tokens));
    }
    if (!report_html.empty()) write_html_report(std::vector<ReportInput>{{output + " (this run)", j.dump()}}, report_html);
    if (json) print_json(j);
    else print_table(rows, {false, true, true, true}, 2);
    return 0;
}

}  // namespace cq::cli
