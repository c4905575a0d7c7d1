// The encoder–decoder branch of `cq eval`: teacher-forced loss of BART / T5 on text pairs, or of a captioner (BLIP) on
// (image, caption) pairs with its greedy captions, FP32 and then W8A8 (dynamic, or static from calibration pairs) of the
// same model in memory on the same pairs.
#include "commands/eval_seq2seq.h"

#include <chrono>
#include <cstdio>
#include <optional>

#include "commands/format.h"
#include "commands/json_reports.h"
#include "cq/calibration.h"
#include "cq/error.h"
#include "cq/seq2seq.h"

namespace cq::cli {

namespace {

// The W8A8 form the options ask for, if any: (activations, method) after checking the method's name.
std::optional<std::pair<ActivationQuant, calib::Method>> requested_w8a8(const Seq2SeqEvalCliOptions& o) {
    if (!o.w8a8_dynamic && o.calib.empty()) return std::nullopt;
    const auto method = calib::parse_method(o.calib_method);
    if (!method) throw InvalidArgument("--calib-method '" + o.calib_method + "' is not one of minmax, percentile, mse, entropy");
    return std::pair{o.calib.empty() ? ActivationQuant::dynamic_per_token : ActivationQuant::static_per_tensor, *method};
}

std::string w8a8_label(const Seq2SeqEvalCliOptions& o, int64_t linears) {
    return std::string(o.calib.empty() ? "w8a8 dynamic" : "w8a8 static (" + o.calib_method + ")") + ", " + std::to_string(linears) + " Linears";
}

int eval_text_pairs(const Seq2SeqEvalCliOptions& o, Seq2SeqModel& model) {
    if (o.generate > 0) throw InvalidArgument("--generate applies to captioners (BLIP); " + model.architecture() + " is evaluated on text pairs");
    const auto [first, count] = parse_sample_range(o.range, "--range");
    const int64_t end = count < 0 ? -1 : first + count;
    const Seq2SeqEvalResult r = evaluate_pairs(model, o.data, first, end);
    // optionally the same pairs again after W8A8 in memory (dynamic, or static calibrated on --w8a8-calib pairs)
    std::optional<Seq2SeqEvalResult> q;
    std::string q_label;
    if (const auto w8a8 = requested_w8a8(o)) {
        const auto [c_first, c_count] = parse_sample_range(o.calib_range, "--calib-range");
        const int64_t n = quantize_seq2seq_w8a8(model, w8a8->first, o.calib, c_first, c_count < 0 ? -1 : c_first + c_count, w8a8->second);
        q_label = w8a8_label(o, n);
        q = evaluate_pairs(model, o.data, first, end);
    }
    if (o.json) {
        nlohmann::json j{{"model", o.model}, {"data", o.data}, {"task", "teacher-forced loss"}, {"pairs", r.pairs}, {"tokens", r.tokens},
                         {"mean_nll", r.mean_nll}, {"perplexity", r.perplexity}, {"seconds", r.seconds}};
        if (q) j["w8a8"] = {{"form", q_label}, {"mean_nll", q->mean_nll}, {"perplexity", q->perplexity}, {"seconds", q->seconds}};
        print_json(j);
    } else {
        std::printf("%s on %s: teacher-forced loss over %lld pairs (%lld target tokens)\n", model.architecture().c_str(), o.data.c_str(),
                    static_cast<long long>(r.pairs), static_cast<long long>(r.tokens));
        std::printf("  fp32: mean NLL %.6f nats/token, perplexity %.4f, %.3f s\n", r.mean_nll, r.perplexity, r.seconds);
        if (q) std::printf("  %s: mean NLL %.6f nats/token, perplexity %.4f, %.3f s\n", q_label.c_str(), q->mean_nll, q->perplexity, q->seconds);
    }
    return 0;
}

// One form's results on the caption pairs: the loss, and the greedy captions when asked for.
struct CaptionForm {
    Seq2SeqEvalResult loss;
    double smoothed = 0;  // the mean with the config's label smoothing (transformers' loss)
    std::vector<std::vector<int32_t>> captions;  // [DEC] + the generated ids (and [SEP] where it stopped)
    double caption_seconds = 0;
};

CaptionForm run_captioner(Seq2SeqModel& model, const std::vector<CaptionPair>& pairs, int64_t generate) {
    CaptionForm f;
    f.loss = evaluate_captions(model, pairs, &f.smoothed);
    if (generate > 0) {
        const auto t0 = std::chrono::steady_clock::now();
        for (const CaptionPair& p : pairs) f.captions.push_back(model.generate_caption(p.pixels.data(), {}, generate));
        f.caption_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    }
    return f;
}

// The caption's words: the ids after [DEC], without the [SEP] generation stopped at.
std::string caption_text(const Seq2SeqModel& model, const std::vector<int32_t>& ids) {
    std::span<const int32_t> body(ids);
    if (!body.empty()) body = body.subspan(1);
    if (!body.empty() && body.back() == model.config().eos_token_id) body = body.first(body.size() - 1);
    return model.tokenizer()->decode(body);
}

nlohmann::json form_json(const Seq2SeqModel& model, const CaptionForm& f, int64_t first) {
    nlohmann::json j{{"mean_nll", f.loss.mean_nll}, {"perplexity", f.loss.perplexity}, {"loss", f.smoothed}, {"seconds", f.loss.seconds}};
    if (!f.captions.empty()) {
        j["caption_seconds"] = f.caption_seconds;
        for (size_t i = 0; i < f.captions.size(); ++i)
            j["captions"].push_back({{"row", first + static_cast<int64_t>(i)}, {"ids", f.captions[i]}, {"text", caption_text(model, f.captions[i])}});
    }
    return j;
}

int eval_captions(const Seq2SeqEvalCliOptions& o, Seq2SeqModel& model) {
    if (o.generate < 0) throw InvalidArgument("--generate " + std::to_string(o.generate) + " is negative");
    const auto [first, count] = parse_sample_range(o.range, "--range");
    const std::vector<CaptionPair> pairs = load_caption_pairs(model, o.data, first, count < 0 ? -1 : first + count);
    const CaptionForm fp32 = run_captioner(model, pairs, o.generate);
    // optionally the same pairs again after W8A8 in memory (dynamic, or static calibrated on --w8a8-calib caption pairs)
    std::optional<CaptionForm> q;
    std::string q_label;
    int64_t same_captions = 0;
    if (const auto w8a8 = requested_w8a8(o)) {
        std::vector<CaptionPair> calib;
        if (!o.calib.empty()) {
            const auto [c_first, c_count] = parse_sample_range(o.calib_range, "--calib-range");
            calib = load_caption_pairs(model, o.calib, c_first, c_count < 0 ? -1 : c_first + c_count);
        }
        const int64_t n = quantize_captioner_w8a8(model, w8a8->first, calib, w8a8->second);
        q_label = w8a8_label(o, n);
        q = run_captioner(model, pairs, o.generate);
        for (size_t i = 0; i < q->captions.size(); ++i) same_captions += q->captions[i] == fp32.captions[i];
    }
    const float eps = model.config().label_smoothing;
    if (o.json) {
        nlohmann::json j{{"model", o.model}, {"data", o.data}, {"task", "caption loss"}, {"pairs", fp32.loss.pairs}, {"tokens", fp32.loss.tokens},
                         {"rows", {first, first + fp32.loss.pairs}}, {"label_smoothing", eps}};
        j.update(form_json(model, fp32, first));
        for (size_t i = 0; i < fp32.captions.size(); ++i) j["captions"][i]["reference"] = pairs[i].caption;
        if (q) {
            j["w8a8"] = form_json(model, *q, first);
            j["w8a8"]["form"] = q_label;
            if (o.generate > 0) j["w8a8"]["captions_equal_fp32"] = same_captions;
        }
        print_json(j);
        return 0;
    }
    std::printf("%s on %s: teacher-forced caption loss over %lld (image, caption) pairs, rows %lld–%lld (%lld caption tokens)\n",
                model.architecture().c_str(), o.data.c_str(), static_cast<long long>(fp32.loss.pairs), static_cast<long long>(first),
                static_cast<long long>(first + fp32.loss.pairs - 1), static_cast<long long>(fp32.loss.tokens));
    const auto line = [&](const std::string& label, const CaptionForm& f) {
        std::printf("  %s: mean NLL %.6f nats/token, perplexity %.4f", label.c_str(), f.loss.mean_nll, f.loss.perplexity);
        if (eps > 0) std::printf(", loss with label smoothing %.3g %.6f", eps, f.smoothed);
        std::printf(", %.3f s", f.loss.seconds);
        if (o.generate > 0) std::printf(" (captions %.3f s)", f.caption_seconds);
        std::printf("\n");
    };
    line("fp32", fp32);
    if (q) line(q_label, *q);
    if (o.generate > 0) {
        std::printf("\ngreedy captions (at most %lld new tokens)", static_cast<long long>(o.generate));
        if (q) std::printf(", %s equal to fp32's in %lld of %zu", q_label.c_str(), static_cast<long long>(same_captions), pairs.size());
        std::printf(":\n");
        for (size_t i = 0; i < pairs.size(); ++i) {
            std::printf("  row %lld  reference: %s\n           fp32:      %s\n", static_cast<long long>(first + static_cast<int64_t>(i)),
                        pairs[i].caption.c_str(), caption_text(model, fp32.captions[i]).c_str());
            if (q) std::printf("           w8a8:      %s\n", caption_text(model, q->captions[i]).c_str());
        }
    }
    return 0;
}

}  // namespace

int run_eval_seq2seq(const Seq2SeqEvalCliOptions& o) {
    auto model = Seq2SeqModel::load(o.model);
    return model->takes_images() ? eval_captions(o, *model) : eval_text_pairs(o, *model);
}

}  // namespace cq::cli
