// Text generation: the prompt as one batch, then one token at a time through the KV cache, greedy or
// sampled (temperature → top-k → top-p) with a seeded, platform-independent generator.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>

#include "cq/error.h"
#include "cq/eval.h"

namespace cq {

namespace {
// splitmix64: tiny, fast, and the same sequence on every platform and standard library.
uint64_t next_random(uint64_t& state) {
    uint64_t z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
double next_uniform(uint64_t& state) { return static_cast<double>(next_random(state) >> 11) * 0x1.0p-53; }
}  // namespace

int32_t sample_token(const float* logits, int64_t n_vocab, const SamplingOptions& o, uint64_t& rng_state) {
    if (o.temperature <= 0.0f) return static_cast<int32_t>(std::max_element(logits, logits + n_vocab) - logits);
    std::vector<int32_t> ids(static_cast<size_t>(n_vocab));
    std::iota(ids.begin(), ids.end(), 0);
    auto by_logit = [&](int32_t a, int32_t b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); };
    size_t keep = ids.size();
    if (o.top_k > 0 && static_cast<size_t>(o.top_k) < keep) {
        keep = static_cast<size_t>(o.top_k);
        std::partial_sort(ids.begin(), ids.begin() + static_cast<std::ptrdiff_t>(keep), ids.end(), by_logit);
    } else {
        std::sort(ids.begin(), ids.end(), by_logit);
    }
    std::vector<double> p(keep);
    const double mx = logits[ids[0]];
    double sum = 0;
    for (size_t i = 0; i < keep; ++i) sum += p[i] = std::exp((logits[ids[i]] - mx) / o.temperature);
    if (o.top_p < 1.0f) {
        double cum = 0;
        size_t cut = keep;
        for (size_t i = 0; i < keep; ++i) {
            cum += p[i] / sum;
            if (cum >= o.top_p) {
                cut = i + 1;
                break;
            }
        }
        keep = cut;
        sum = std::accumulate(p.begin(), p.begin() + static_cast<std::ptrdiff_t>(keep), 0.0);
    }
    const double u = next_uniform(rng_state) * sum;
    double cum = 0;
    for (size_t i = 0; i < keep; ++i) {
        cum += p[i];
        if (u < cum) return ids[i];
    }
    return ids[keep - 1];
}

GenerationResult generate(LanguageModel& model, const std::string& prompt, int64_t n_predict, const SamplingOptions& o,
                          const std::function<void(const std::string&)>& on_token) {
    if (n_predict < 0) throw InvalidArgument("[run] the number of tokens to generate must not be negative");
    const Tokenizer& tok = model.tokenizer();
    GenerationResult r;
    r.prompt_tokens = tok.encode(prompt, tok.adds_bos());
    if (r.prompt_tokens.empty()) throw InvalidArgument("[run] the prompt is empty and the model adds no BOS token");
    const int64_t n_prompt = static_cast<int64_t>(r.prompt_tokens.size());
    if (n_prompt + n_predict > model.n_ctx())
        throw InvalidArgument("[run] " + std::to_string(n_prompt) + " prompt tokens + " + std::to_string(n_predict) +
                              " to generate exceed the context of " + std::to_string(model.n_ctx()) + " tokens");
    const int64_t n_vocab = model.config().n_vocab;
    std::vector<float> logits(static_cast<size_t>(n_vocab));
    uint64_t rng = o.seed;
    auto t0 = std::chrono::steady_clock::now();
    model.forward(r.prompt_tokens, 0, logits, false);
    auto t1 = std::chrono::steady_clock::now();
    r.prompt_seconds = std::chrono::duration<double>(t1 - t0).count();
    int64_t pos = n_prompt;
    for (int64_t i = 0; i < n_predict; ++i) {
        const int32_t next = sample_token(logits.data(), n_vocab, o, rng);
        if (next == tok.eos_id()) break;
        r.tokens.push_back(next);
        const std::string piece = tok.token_to_text(next);
        r.text += piece;
        if (on_token) on_token(piece);
        if (i + 1 == n_predict) break;
        const int32_t one[1] = {next};
        model.forward(one, pos++, logits, false);
    }
    r.generation_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count();
    return r;
}

}  // namespace cq
