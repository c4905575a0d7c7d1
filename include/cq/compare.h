// The same-run report: a compressed model measured against its original in one process — size,
// bits per weight, perplexity, KL-divergence / same-top-token against the original's logits, and
// prompt/generation speed of both.
#pragma once

#include <optional>
#include <string>

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

/// One Markdown table: model → bytes, bpw, PPL, ΔPPL, mean KLD, same-top %, pp/tg tokens/s and ratios.
std::string comparison_to_markdown(const ComparisonReport& r);

}  // namespace cq
