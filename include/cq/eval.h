// Quality and speed measurements of language models: perplexity with llama.cpp's method, KL-divergence
// against saved reference logits (what llama.cpp's --kl-divergence reports), generation, and bench.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "cq/llm.h"

namespace cq {

/// Called after each unit of work (done, total, running value); used for progress display.
using ProgressFn = std::function<void(int64_t done, int64_t total, double value)>;

struct PerplexityOptions {
    int64_t n_ctx = 512;       // tokens per chunk
    int64_t max_chunks = -1;   // -1: every whole chunk in the text
    std::string save_logits;   // write the scored positions' log-probabilities here
    std::string kld_base;      // compare against logits saved earlier
};

struct KldResult {
    int64_t n = 0;                  // scored positions
    double mean = 0, mean_err = 0;  // KL(base ‖ this), nats
    double median = 0, max = 0, min = 0;
    std::map<std::string, double> percentiles;  // "99.9", "99", "95", "90", "10", "5", "1"
    double same_top = 0, same_top_err = 0;      // fraction where both argmaxes agree
    double mean_dp = 0, mean_dp_err = 0, rms_dp = 0;  // Δp of the correct token (this − base)
    std::map<std::string, double> dp_percentiles;      // "max", "99.9", …, "min"
    double base_ppl = 0, ppl_ratio = 0, ppl_ratio_err = 0;
    double mean_ln_ratio = 0;  // mean ln(PPL(this) / PPL(base))
};

struct PerplexityResult {
    double ppl = 0, ppl_err = 0;  // PPL and its standard error
    double mean_nll = 0;
    int64_t n_tokens = 0;         // tokens in the text (with BOS)
    int64_t n_chunks = 0, n_ctx = 0, n_scored = 0;
    std::vector<double> chunk_ppl;  // running PPL after each chunk
    std::optional<KldResult> kld;
    double seconds = 0;
};

/// Tokenizes `text` (BOS first when the model adds one), cuts it into non-overlapping chunks of
/// n_ctx tokens, replaces the first token of each chunk by BOS, and scores the second half of each
/// chunk — llama.cpp's llama-perplexity method. InvalidArgument if the text has fewer than 2·n_ctx tokens.
PerplexityResult evaluate_perplexity(LanguageModel& model, const std::string& text, const PerplexityOptions& options,
                                     const ProgressFn& progress = {});

struct SamplingOptions {
    float temperature = 0.0f;  // 0: greedy
    int32_t top_k = 40;        // 0: off
    float top_p = 0.95f;       // 1: off
    uint64_t seed = 0;
};

struct GenerationResult {
    std::vector<int32_t> prompt_tokens;
    std::vector<int32_t> tokens;  // generated
    std::string text;             // generated text
    double prompt_seconds = 0, generation_seconds = 0;
};

/// Generates up to `n_predict` tokens after `prompt` (stops at EOS); `on_token` receives each piece of text.
GenerationResult generate(LanguageModel& model, const std::string& prompt, int64_t n_predict, const SamplingOptions& options,
                          const std::function<void(const std::string&)>& on_token = {});

/// Picks the next token from logits [n_vocab]: argmax when temperature is 0, else temperature,
/// top-k, top-p sampling driven by `rng_state` (a deterministic 64-bit generator state).
int32_t sample_token(const float* logits, int64_t n_vocab, const SamplingOptions& options, uint64_t& rng_state);

struct BenchOptions {
    int64_t n_prompt = 512;   // pp: tokens processed as one batch
    int64_t n_gen = 128;      // tg: tokens generated one at a time
    int64_t repetitions = 5;
    int64_t warmup = 1;
};

struct BenchSeries {
    std::string test;               // "pp512", "tg128"
    std::vector<double> tokens_per_second;
    double median = 0, min = 0, max = 0;
};

struct BenchResult {
    std::string model, isa, blas;
    int threads = 0;
    uint64_t weight_bytes = 0;
    int64_t n_params = 0;
    std::vector<BenchSeries> series;
};

BenchResult bench_model(LanguageModel& model, const BenchOptions& options, const ProgressFn& progress = {});
std::string bench_to_markdown(const BenchResult& r);

}  // namespace cq
