// `cq bench`: prompt processing (one batch of n_prompt tokens) and generation (n_gen single-token
// steps through the KV cache) in tokens/s, llama-bench style: warm-up, repetitions, median/min/max.
#include <algorithm>
#include <chrono>
#include <cstdio>

#include "cq/error.h"
#include "cq/eval.h"
#include "cq/kernels.h"
#include "cq/thread_pool.h"

namespace cq {

namespace {
BenchSeries summarize(std::string name, std::vector<double> tps) {
    BenchSeries s;
    s.test = std::move(name);
    s.tokens_per_second = tps;
    std::sort(tps.begin(), tps.end());
    s.min = tps.front();
    s.max = tps.back();
    const size_t n = tps.size();
    s.median = n % 2 ? tps[n / 2] : 0.5 * (tps[n / 2 - 1] + tps[n / 2]);
    return s;
}
}  // namespace

BenchResult bench_model(LanguageModel& model, const BenchOptions& o, const ProgressFn& progress) {
    if (o.repetitions < 1) throw InvalidArgument("[bench] --repetitions must be at least 1");
    if (o.n_prompt + o.n_gen > model.n_ctx() || o.n_prompt > model.n_ctx())
        throw InvalidArgument("[bench] " + std::to_string(o.n_prompt) + " prompt + " + std::to_string(o.n_gen) +
                              " generated tokens do not fit the context of " + std::to_string(model.n_ctx()));
    BenchResult r;
    r.model = model.path();
    r.isa = std::string(isa_level_name(kernel_table().level));
    r.blas = kernel_table().gemm_f32.name;
    r.threads = ThreadPool::global().size();
    r.weight_bytes = model.weight_bytes();
    const int64_t n_vocab = model.config().n_vocab;
    std::vector<float> logits(static_cast<size_t>(n_vocab));
    // Deterministic token ids spread over the vocabulary (what they are does not change the cost).
    std::vector<int32_t> prompt(static_cast<size_t>(std::max<int64_t>(o.n_prompt, 1)));
    for (size_t i = 0; i < prompt.size(); ++i) prompt[i] = static_cast<int32_t>((i * 2654435761u) % static_cast<uint64_t>(n_vocab));
    const int64_t total = (o.warmup + o.repetitions) * ((o.n_prompt > 0) + (o.n_gen > 0));
    int64_t done = 0;
    using clock = std::chrono::steady_clock;
    if (o.n_prompt > 0) {
        std::vector<double> tps;
        for (int64_t rep = 0; rep < o.warmup + o.repetitions; ++rep) {
            const auto t0 = clock::now();
            model.forward(prompt, 0, logits, false);
            const double s = std::chrono::duration<double>(clock::now() - t0).count();
            if (rep >= o.warmup) tps.push_back(static_cast<double>(o.n_prompt) / s);
            if (progress) progress(++done, total, static_cast<double>(o.n_prompt) / s);
        }
        r.series.push_back(summarize("pp" + std::to_string(o.n_prompt), tps));
    }
    if (o.n_gen > 0) {
        std::vector<double> tps;
        for (int64_t rep = 0; rep < o.warmup + o.repetitions; ++rep) {
            int32_t token = prompt[0];
            const auto t0 = clock::now();
            for (int64_t i = 0; i < o.n_gen; ++i) {
                const int32_t one[1] = {token};
                model.forward(one, i, logits, false);
                token = static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
            }
            const double s = std::chrono::duration<double>(clock::now() - t0).count();
            if (rep >= o.warmup) tps.push_back(static_cast<double>(o.n_gen) / s);
            if (progress) progress(++done, total, static_cast<double>(o.n_gen) / s);
        }
        r.series.push_back(summarize("tg" + std::to_string(o.n_gen), tps));
    }
    return r;
}

std::string bench_to_markdown(const BenchResult& r) {
    std::string out = "| model | weights MiB | isa | threads | test | t/s median | min | max |\n";
    out += "|---|---:|---|---:|---|---:|---:|---:|\n";
    const std::string name = r.model.substr(r.model.find_last_of('/') == std::string::npos ? 0 : r.model.find_last_of('/') + 1);
    for (const auto& s : r.series) {
        char line[512];
        std::snprintf(line, sizeof line, "| %s | %.2f | %s | %d | %s | %.2f | %.2f | %.2f |\n", name.c_str(),
                      static_cast<double>(r.weight_bytes) / (1024.0 * 1024.0), r.isa.c_str(), r.threads, s.test.c_str(), s.median,
                      s.min, s.max);
        out += line;
    }
    return out;
}

}  // namespace cq
