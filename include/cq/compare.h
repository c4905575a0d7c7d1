// The same-run report: a compressed model measured against its original in one process — size,
// bits per weight, perplexity, KL-divergence / same-top-token against the original's logits, and
// prompt/generation speed of both. Encoders: accuracy, agreement, KL-divergence and latency of both on the
// same samples.
#pragma once

#include <optional>
#include <string>

#include "cq/classify.h"
#include "cq/eval.h"

namespace cq {

struct CompareOptions {
    int64_t n_ctx = 512;      // perplexity chunk length (capped at what the models allow)
    int64_t max_chunks = -1;  // -1: all
    bool bench = true;
    BenchOptions bench_options{128, 32, 3, 1};
};

struct ModelMeasurement {
    std::string path;
    uint64_t weight_bytes = 0;
    double bits_per_weight = 0;
    PerplexityResult perplexity;  // the candidate's carries .kld against the base
    std::optional<BenchResult> bench;
};

struct ComparisonReport {
    ModelMeasurement base, candidate;
};

ComparisonReport compare_models(const std::string& base_model, const std::string& candidate_model, const std::string& text,
                                const CompareOptions& options, const ProgressFn& progress = {});

struct EncoderCompareOptions {
    ClassifyOptions run;      // batch and max_len of the evaluation passes
    DataSelection selection;  // which samples of the data
    bool bench = true;
    int64_t bench_batch = 8, bench_seq = 128, bench_repetitions = 5;
};

struct EncoderComparisonReport {
    std::string data;  // the source the samples came from
    ClassificationResult base, candidate;
    PredictionAgreement agreement;
    std::optional<EncoderBenchResult> base_speed, candidate_speed;
};

/// Progress of a comparison in stages ("eval original", "bench", ...).
using StageProgressFn = std::function<void(const std::string& stage, int64_t done, int64_t total)>;

/// The same run for encoder classifiers: both models classify the same samples of `data` (TSV, MNIST idx,
/// image folder; read with the base model's labels), their predictions are compared, and both are timed.
EncoderComparisonReport compare_encoders(EncoderModel& base, EncoderModel& candidate, const std::string& data,
                                         const EncoderCompareOptions& options, const StageProgressFn& progress = {});

/// One Markdown table: model → bytes, bpw, PPL, ΔPPL, mean KLD, same-top %, pp/tg tokens/s and ratios.
std::string comparison_to_markdown(const ComparisonReport& r);

}  // namespace cq
