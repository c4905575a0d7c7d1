// Perplexity with llama.cpp's method, plus KL-divergence against reference log-probabilities saved
// by an earlier run (the comparison every compression result is judged by).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>

#include "cq/atomic_file.h"
#include "cq/error.h"
#include "cq/eval.h"
#include "cq/mapped_file.h"
#include "ops/ops.h"

namespace cq {

namespace {

// Saved log-probabilities: a 64-byte header, the evaluated tokens, then for every chunk the
// log-softmax rows of its scored positions. All little-endian.
constexpr char kLogitsMagic[8] = {'C', 'Q', 'L', 'O', 'G', 'P', 'R', '1'};
struct LogitsHeader {
    char magic[8];
    int64_t n_ctx, n_vocab, n_chunks, first, n_tokens;
    int64_t reserved[2];
};
static_assert(sizeof(LogitsHeader) == 64);

class LogitsReader {
public:
    LogitsReader(const std::string& path, int64_t n_ctx, int64_t n_vocab, int64_t n_chunks, int64_t first,
                 const std::vector<int32_t>& tokens)
        : src_(map_file(path)) {
        auto fail = [&](uint64_t at, const std::string& what) { throw FormatError("logits", path, at, what); };
        if (src_->size() < sizeof(LogitsHeader)) fail(0, "file is too short for a cq logits header");
        std::memcpy(&h_, src_->data(), sizeof h_);
        if (std::memcmp(h_.magic, kLogitsMagic, 8) != 0) fail(0, "not a cq logits file (saved with cq perplexity --save-logits)");
        if (h_.n_ctx != n_ctx || h_.n_vocab != n_vocab || h_.first != first)
            throw InvalidArgument("[kld] " + path + " was saved with --ctx " + std::to_string(h_.n_ctx) + " and a vocabulary of " +
                                  std::to_string(h_.n_vocab) + "; this run has --ctx " + std::to_string(n_ctx) + " and " +
                                  std::to_string(n_vocab));
        if (h_.n_chunks < n_chunks)
            throw InvalidArgument("[kld] " + path + " holds " + std::to_string(h_.n_chunks) + " chunks, this run needs " +
                                  std::to_string(n_chunks));
        const uint64_t n_tok = static_cast<uint64_t>(h_.n_chunks) * static_cast<uint64_t>(h_.n_ctx);
        const uint64_t rows = static_cast<uint64_t>(h_.n_chunks) * static_cast<uint64_t>(h_.n_ctx - 1 - h_.first);
        if (h_.n_ctx <= 0 || h_.n_vocab <= 0 || h_.n_chunks < 0 || h_.first < 0 || h_.first >= h_.n_ctx ||
            src_->size() != sizeof(LogitsHeader) + n_tok * 4 + rows * static_cast<uint64_t>(h_.n_vocab) * 4)
            fail(0, "header does not match the file size");
        const auto* saved = reinterpret_cast<const int32_t*>(src_->data() + sizeof(LogitsHeader));
        if (!std::equal(tokens.begin(), tokens.begin() + n_chunks * n_ctx, saved))
            throw InvalidArgument("[kld] " + path + " was computed on different tokens (another text or tokenizer)");
        rows_ = reinterpret_cast<const float*>(src_->data() + sizeof(LogitsHeader) + n_tok * 4);
    }
    // Log-probabilities of scored row `r` (chunk-major).
    const float* row(int64_t r) const { return rows_ + r * h_.n_vocab; }

private:
    std::shared_ptr<const ByteSource> src_;
    LogitsHeader h_{};
    const float* rows_ = nullptr;
};

double percentile(std::vector<double>& sorted, double p) {
    if (sorted.empty()) return 0;
    const double idx = p / 100.0 * static_cast<double>(sorted.size() - 1);
    const size_t lo = static_cast<size_t>(idx);
    const size_t hi = std::min(lo + 1, sorted.size() - 1);
    return sorted[lo] + (sorted[hi] - sorted[lo]) * (idx - static_cast<double>(lo));
}

double mean_err(double sum, double sum2, int64_t n, double* mean_out) {
    const double mean = sum / static_cast<double>(n);
    *mean_out = mean;
    const double var = sum2 / static_cast<double>(n) - mean * mean;
    return n > 1 && var > 0 ? std::sqrt(var / static_cast<double>(n - 1)) : 0.0;
}

}  // namespace

PerplexityResult evaluate_perplexity(LanguageModel& model, const std::string& text, const PerplexityOptions& o,
                                     const ProgressFn& progress) {
    const auto t0 = std::chrono::steady_clock::now();
    const Tokenizer& tok = model.tokenizer();
    const int64_t n_ctx = o.n_ctx, n_vocab = model.config().n_vocab;
    if (n_ctx < 4) throw InvalidArgument("[perplexity] --ctx " + std::to_string(n_ctx) + " is too small (at least 4)");
    if (n_ctx > model.n_ctx())
        throw InvalidArgument("[perplexity] --ctx " + std::to_string(n_ctx) + " is longer than this model allows (" +
                              std::to_string(model.n_ctx()) + " tokens)");
    const bool add_bos = tok.adds_bos();
    std::vector<int32_t> tokens = tok.encode(text, add_bos);
    PerplexityResult r;
    r.n_tokens = static_cast<int64_t>(tokens.size());
    r.n_ctx = n_ctx;
    if (r.n_tokens < 2 * n_ctx)
        throw InvalidArgument("[perplexity] the text has " + std::to_string(r.n_tokens) + " tokens; a context of " +
                              std::to_string(n_ctx) + " needs at least " + std::to_string(2 * n_ctx) + " (use a longer text or a smaller --ctx)");
    r.n_chunks = r.n_tokens / n_ctx;
    if (o.max_chunks > 0) r.n_chunks = std::min(r.n_chunks, o.max_chunks);
    const int64_t first = n_ctx / 2, per_chunk = n_ctx - 1 - first;

    std::unique_ptr<AtomicFile> save;
    if (!o.save_logits.empty()) {
        save = std::make_unique<AtomicFile>(o.save_logits);
        LogitsHeader h{};
        std::memcpy(h.magic, kLogitsMagic, 8);
        h.n_ctx = n_ctx, h.n_vocab = n_vocab, h.n_chunks = r.n_chunks, h.first = first, h.n_tokens = r.n_chunks * n_ctx;
        save->write(&h, sizeof h);
        save->write(tokens.data(), static_cast<size_t>(r.n_chunks * n_ctx) * 4);
    }
    std::unique_ptr<LogitsReader> base;
    if (!o.kld_base.empty()) base = std::make_unique<LogitsReader>(o.kld_base, n_ctx, n_vocab, r.n_chunks, first, tokens);

    std::vector<float> logits(static_cast<size_t>(n_ctx * n_vocab));
    std::vector<int32_t> chunk(static_cast<size_t>(n_ctx));
    double nll = 0, nll2 = 0;
    // KLD accumulators
    std::vector<double> klds, dps;
    double kl_sum = 0, kl_sum2 = 0, dp_sum = 0, dp_sum2 = 0, lr_sum = 0, lr_sum2 = 0, base_nll = 0;
    int64_t same_top = 0;

    for (int64_t c = 0; c < r.n_chunks; ++c) {
        std::copy_n(tokens.begin() + c * n_ctx, n_ctx, chunk.begin());
        if (add_bos) chunk[0] = tok.bos_id();
        model.forward(chunk, 0, logits, true);
        for (int64_t i = first; i < n_ctx - 1; ++i) {
            float* row = logits.data() + i * n_vocab;
            ops::log_softmax(row, n_vocab);
            const int32_t target = chunk[static_cast<size_t>(i + 1)];
            const double v = -static_cast<double>(row[target]);
            nll += v;
            nll2 += v * v;
            if (base) {
                const float* b = base->row(c * per_chunk + (i - first));
                double kl = 0;
                int64_t top_b = 0, top_n = 0;
                for (int64_t j = 0; j < n_vocab; ++j) {
                    const double pb = std::exp(static_cast<double>(b[j]));
                    kl += pb * (static_cast<double>(b[j]) - static_cast<double>(row[j]));
                    if (b[j] > b[top_b]) top_b = j;
                    if (row[j] > row[top_n]) top_n = j;
                }
                kl = std::max(kl, 0.0);  // rounding can make an exact match a hair negative
                klds.push_back(kl);
                kl_sum += kl, kl_sum2 += kl * kl;
                same_top += top_b == top_n;
                const double dp = std::exp(static_cast<double>(row[target])) - std::exp(static_cast<double>(b[target]));
                dps.push_back(dp);
                dp_sum += dp, dp_sum2 += dp * dp;
                const double lr = v + static_cast<double>(b[target]);  // ln p_base − ln p_this
                lr_sum += lr, lr_sum2 += lr * lr;
                base_nll -= static_cast<double>(b[target]);
            }
        }
        if (save) save->write(logits.data() + first * n_vocab, static_cast<size_t>(per_chunk * n_vocab) * 4);
        r.n_scored += per_chunk;
        r.chunk_ppl.push_back(std::exp(nll / static_cast<double>(r.n_scored)));
        if (progress) progress(c + 1, r.n_chunks, r.chunk_ppl.back());
    }
    double var_term = 0;
    r.mean_nll = nll / static_cast<double>(r.n_scored);
    r.ppl = std::exp(r.mean_nll);
    var_term = nll2 / static_cast<double>(r.n_scored) - r.mean_nll * r.mean_nll;
    r.ppl_err = var_term > 0 ? std::sqrt(var_term / static_cast<double>(r.n_scored - 1)) * r.ppl : 0.0;

    if (base) {
        KldResult k;
        k.n = static_cast<int64_t>(klds.size());
        k.mean_err = mean_err(kl_sum, kl_sum2, k.n, &k.mean);
        std::sort(klds.begin(), klds.end());
        k.min = klds.front(), k.max = klds.back(), k.median = percentile(klds, 50);
        for (double p : {99.9, 99.0, 95.0, 90.0, 10.0, 5.0, 1.0}) {
            char key[16];
            std::snprintf(key, sizeof key, "%g", p);
            k.percentiles[key] = percentile(klds, p);
        }
        k.same_top = static_cast<double>(same_top) / static_cast<double>(k.n);
        k.same_top_err = k.n > 1 ? std::sqrt(k.same_top * (1 - k.same_top) / static_cast<double>(k.n - 1)) : 0.0;
        k.mean_dp_err = mean_err(dp_sum, dp_sum2, k.n, &k.mean_dp);
        k.rms_dp = std::sqrt(dp_sum2 / static_cast<double>(k.n));
        std::sort(dps.begin(), dps.end());
        k.dp_percentiles["max"] = dps.back();
        for (double p : {99.9, 99.0, 95.0, 90.0, 75.0, 50.0, 25.0, 10.0, 5.0, 1.0, 0.1}) {
            char key[16];
            std::snprintf(key, sizeof key, "%g", p);
            k.dp_percentiles[key] = percentile(dps, p);
        }
        k.dp_percentiles["min"] = dps.front();
        k.base_ppl = std::exp(base_nll / static_cast<double>(k.n));
        k.ppl_ratio_err = mean_err(lr_sum, lr_sum2, k.n, &k.mean_ln_ratio);
        k.ppl_ratio = std::exp(k.mean_ln_ratio);
        k.ppl_ratio_err *= k.ppl_ratio;
        r.kld = k;
    }
    if (save) save->commit();
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return r;
}

}  // namespace cq
