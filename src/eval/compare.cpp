// compare_models: base first (its logits saved to a temporary file), then the candidate scored
// against them; both benchmarked with the same settings in the same process.
#include "cq/compare.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>

#include "cq/error.h"

namespace cq {

namespace fs = std::filesystem;

namespace {

int64_t parameter_count(const LanguageModel& m) {
    const LlmConfig& c = m.config();
    int64_t n = m.weights().token_embd.numel();
    if (m.weights().pos_embd) n += m.weights().pos_embd->numel();
    for (const auto& b : m.weights().blocks)
        for (const Linear* l : {&b.wq, &b.wk, &b.wv, &b.wo, &b.wqkv, &b.ffn_gate, &b.ffn_up, &b.ffn_down})
            if (l->weight.data()) n += l->weight.numel();
    if (m.weights().output.weight.data() != m.weights().token_embd.data()) n += m.weights().output.weight.numel();
    (void)c;
    return n;
}

ModelMeasurement measure(const std::string& path, const std::string& text, const CompareOptions& o, const std::string& save,
                         const std::string& base, const ProgressFn& progress) {
    LoadOptions lo;
    lo.n_ctx = std::max(o.n_ctx, o.bench ? o.bench_options.n_prompt + o.bench_options.n_gen : 0);
    auto model = LanguageModel::load(path, lo);
    ModelMeasurement m;
    m.path = path;
    m.weight_bytes = model->weight_bytes();
    const int64_t params = parameter_count(*model);
    m.bits_per_weight = params ? 8.0 * static_cast<double>(m.weight_bytes) / static_cast<double>(params) : 0.0;
    PerplexityOptions po;
    po.n_ctx = o.n_ctx;
    po.max_chunks = o.max_chunks;
    po.save_logits = save;
    po.kld_base = base;
    m.perplexity = evaluate_perplexity(*model, text, po, progress);
    if (o.bench) m.bench = bench_model(*model, o.bench_options);
    return m;
}

double series_median(const std::optional<BenchResult>& b, char kind) {
    if (!b) return 0;
    for (const auto& s : b->series)
        if (s.test[0] == kind) return s.median;
    return 0;
}

}  // namespace

ComparisonReport compare_models(const std::string& base_model, const std::string& candidate_model, const std::string& text,
                                const CompareOptions& o, const ProgressFn& progress) {
    const fs::path logits = fs::temp_directory_path() / ("cq-base-logits-" + std::to_string(::getpid()) + ".bin");
    struct Cleanup {
        fs::path p;
        ~Cleanup() {
            std::error_code ec;
            fs::remove(p, ec);
        }
    } cleanup{logits};
    ComparisonReport r;
    r.base = measure(base_model, text, o, logits.string(), "", progress);
    r.candidate = measure(candidate_model, text, o, "", logits.string(), progress);
    return r;
}

std::string comparison_to_markdown(const ComparisonReport& r) {
    std::string out = "| model | weight MiB | bits/weight | PPL | ΔPPL | mean KLD | same top % | pp t/s | tg t/s |\n";
    out += "|---|---:|---:|---:|---:|---:|---:|---:|---:|\n";
    auto row = [&](const ModelMeasurement& m, bool candidate) {
        char line[640];
        const auto& p = m.perplexity;
        const std::string name = fs::path(m.path).filename().string();
        char kld[64] = "—", top[64] = "—", dppl[64] = "—";
        if (candidate && p.kld) {
            std::snprintf(kld, sizeof kld, "%.6f ± %.6f", p.kld->mean, p.kld->mean_err);
            std::snprintf(top, sizeof top, "%.2f ± %.2f", 100 * p.kld->same_top, 100 * p.kld->same_top_err);
            std::snprintf(dppl, sizeof dppl, "%+.4f", p.ppl - r.base.perplexity.ppl);
        }
        std::snprintf(line, sizeof line, "| %s | %.2f | %.3f | %.4f ± %.4f | %s | %s | %s | %.1f | %.1f |\n", name.c_str(),
                      static_cast<double>(m.weight_bytes) / (1024.0 * 1024.0), m.bits_per_weight, p.ppl, p.ppl_err, dppl, kld, top,
                      series_median(m.bench, 'p'), series_median(m.bench, 't'));
        out += line;
    };
    row(r.base, false);
    row(r.candidate, true);
    if (r.base.bench && r.candidate.bench) {
        char line[256];
        std::snprintf(line, sizeof line, "\nsize ÷%.2f, prompt processing ×%.2f, generation ×%.2f (same process, ISA %s, %d threads)\n",
                      static_cast<double>(r.base.weight_bytes) / static_cast<double>(r.candidate.weight_bytes),
                      series_median(r.candidate.bench, 'p') / series_median(r.base.bench, 'p'),
                      series_median(r.candidate.bench, 't') / series_median(r.base.bench, 't'), r.base.bench->isa.c_str(),
                      r.base.bench->threads);
        out += line;
    }
    return out;
}

EncoderComparisonReport compare_encoders(EncoderModel& base, EncoderModel& candidate, const std::string& data,
                                         const EncoderCompareOptions& options, const StageProgressFn& progress) {
    const auto stage = [&](const std::string& name) -> ProgressFn {
        if (!progress) return {};
        return [&progress, name](int64_t done, int64_t total, double) { progress(name, done, total); };
    };
    EncoderComparisonReport r;
    const LabelledData samples = load_labelled_data(data, base, options.selection);
    r.data = samples.source;
    r.base = classify_dataset(base, samples, options.run, stage("eval original"));
    r.candidate = classify_dataset(candidate, samples, options.run, stage("eval quantized"));
    r.agreement = compare_predictions(r.base, r.candidate);
    if (options.bench) {
        // A model with fewer learned positions than the default length is timed at its longest sequence.
        const int64_t seq = std::min(options.bench_seq, base.config().max_positions);
        r.base_speed = bench_encoder(base, options.bench_batch, seq, options.bench_repetitions, 1, stage("bench original"));
        r.candidate_speed = bench_encoder(candidate, options.bench_batch, seq, options.bench_repetitions, 1, stage("bench quantized"));
    }
    return r;
}

}  // namespace cq
