// The block-by-block calibration machinery the calibrated passes share (see block_calibration.h).
#include "quant/block_calibration.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <set>

#include "core/sha256.h"
#include "cq/error.h"
#include "cq/thread_pool.h"
#include "eval/text_chunks.h"
#include "ops/ops.h"

namespace cq::quant {



constexpr int64_t kHeldOutTokens = 2048;

// Chunks of the text; the last ⌈n/8⌉ (at most kHeldOutTokens tokens' worth) are held out when mixed precision or the automatic choice needs to
// measure, the rest feed the statistics.
Calibration cut_calibration(const LanguageModel& model, const CalibrationOptions& calib, bool hold_out, std::string_view op) {
    Calibration c;
    auto chunks = text_chunk_tokens(model, calib.text_path, calib.n_ctx, calib.max_chunks, 2 * calib.n_ctx, op);
    const size_t n = chunks.size();
    size_t held = 0;
    if (hold_out) {
        if (n < 2) throw InvalidArgument("[" + std::string(op) + "] --calib " + calib.text_path + " gives one chunk of " + std::to_string(calib.n_ctx) +
                                         " tokens; measuring needs at least two (a longer text or a smaller --calib-ctx)");
        // An eighth of the chunks, at most kHeldOutTokens tokens: every sensitivity probe runs them once.
        held = std::clamp<size_t>((n + 7) / 8, 1, static_cast<size_t>(std::max<int64_t>(1, kHeldOutTokens / calib.n_ctx)));
    }
    c.held_out.assign(std::make_move_iterator(chunks.end() - static_cast<std::ptrdiff_t>(held)), std::make_move_iterator(chunks.end()));
    chunks.resize(n - held);
    c.stats = std::move(chunks);
    c.report.text_path = calib.text_path;
    c.report.text_sha256 = sha256_file(calib.text_path);
    c.report.chunks = static_cast<int64_t>(n);
    c.report.n_ctx = calib.n_ctx;
    c.report.tokens = static_cast<int64_t>(n) * calib.n_ctx;
    return c;
}

namespace {
void log_softmax_rows(std::vector<float>& logits, int64_t T, int64_t V) {
    ThreadPool::global().parallel_for(T, [&](int64_t t0, int64_t t1) {
        for (int64_t t = t0; t < t1; ++t) ops::log_softmax(logits.data() + t * V, V);
    }, 16);
}

}  // namespace

void reference_logprobs(LanguageModel& m, Calibration& c) {
    const int64_t V = m.config().n_vocab;
    for (const auto& chunk : c.held_out) {
        const int64_t T = static_cast<int64_t>(chunk.size());
        std::vector<float> lp(static_cast<size_t>(T * V));
        m.forward(chunk, 0, lp, true);
        log_softmax_rows(lp, T, V);
        c.ref_logprobs.push_back(std::move(lp));
    }
}

// Σ over the positions of one chunk of KL(reference ‖ model), from the model's logits [T, V] (made log-probabilities
// in place). Per-position sums are added in position order: the same value for any thread count.
double chunk_kld(std::vector<float>& lp, const float* ref, int64_t T, int64_t V) {
    log_softmax_rows(lp, T, V);
    std::vector<double> per(static_cast<size_t>(T));
    ThreadPool::global().parallel_for(T, [&](int64_t t0, int64_t t1) {
        for (int64_t t = t0; t < t1; ++t) {
            double s = 0;
            for (int64_t v = 0; v < V; ++v) {
                const double r = ref[t * V + v];
                s += std::exp(r) * (r - static_cast<double>(lp[static_cast<size_t>(t * V + v)]));
            }
            per[static_cast<size_t>(t)] = s;
        }
    }, 16);
    double total = 0;
    for (const double s : per) total += s;
    return total;
}

// Mean KL(reference ‖ model) per held-out token.
double held_out_kld(LanguageModel& m, const Calibration& c) {
    const int64_t V = m.config().n_vocab;
    double total = 0;
    int64_t count = 0;
    std::vector<float> lp;
    for (size_t k = 0; k < c.held_out.size(); ++k) {
        const int64_t T = static_cast<int64_t>(c.held_out[k].size());
        lp.resize(static_cast<size_t>(T * V));
        m.forward(c.held_out[k], 0, lp, true);
        total += chunk_kld(lp, c.ref_logprobs[k].data(), T, V);
        count += T;
    }
    return count ? total / static_cast<double>(count) : 0.0;
}

bool own_head(const Linear& l) { return l.role == LayerRole::lm_head && (l.source_name == "output" || l.source_name == "lm_head"); }

std::vector<Linear*> block_linears(LanguageModel& m, int64_t l) {
    DecoderBlock& b = m.weights().blocks[static_cast<size_t>(l)];
    if (m.config().family == LlmFamily::llama) return {&b.wq, &b.wk, &b.wv, &b.wo, &b.ffn_gate, &b.ffn_up, &b.ffn_down};
    return {&b.wqkv, &b.wo, &b.ffn_up, &b.ffn_down};
}

Tensor f32_tensor(const std::vector<float>& v, std::vector<int64_t> shape) {
    Tensor t = Tensor::zeros(std::move(shape), DType::F32);
    std::memcpy(t.mutable_data(), v.data(), v.size() * sizeof(float));
    return t;
}



Stream embed_all(LanguageModel& m, const std::vector<std::vector<int32_t>>& chunks) {
    Stream s;
    s.T = chunks.empty() ? 0 : static_cast<int64_t>(chunks[0].size());
    for (const auto& chunk : chunks) {
        std::vector<float> h(static_cast<size_t>(s.T * m.config().n_embd));
        m.embed(chunk, 0, h.data());
        s.hidden.push_back(std::move(h));
    }
    return s;
}


// Runs block l over every chunk (advance: in place, so the stream moves on; else on a copy) while accumulating the
// Hessian of each of its inputs (one Linear per input observed).
void run_block(LanguageModel& m, int64_t l, Stream& s, bool advance, BlockStats* stats) {
    std::vector<ObserverId> ids;
    if (stats) {
        std::set<Hessian*> seen;
        for (Linear* lin : block_linears(m, l)) {
            Hessian* h = &stats->of(*lin);
            if (!seen.insert(h).second) continue;
            ids.push_back(m.observe(*lin, [h](const LinearEvent& e) { h->add(e.x, e.rows, e.layer.n_in(), e.row_mask); }));
        }
    }
    std::vector<float> copy;
    try {
        for (auto& h : s.hidden) {
            float* x = h.data();
            if (!advance) copy = h, x = copy.data();
            m.run_block(l, x, s.T, 0);
        }
    } catch (...) {
        for (const ObserverId id : ids) m.remove_observer(id);
        throw;
    }
    for (const ObserverId id : ids) m.remove_observer(id);
}

// held_out_kld when only blocks ≥ `first` (and the head) differ from the model whose block-`first` inputs `s` holds:
// the forward resumes there instead of at the embedding.
double held_out_kld_from(LanguageModel& m, const Calibration& c, int64_t first, const Stream& s) {
    const int64_t V = m.config().n_vocab;
    double total = 0;
    int64_t count = 0;
    std::vector<float> x, lp(static_cast<size_t>(s.T * V));
    for (size_t k = 0; k < s.hidden.size(); ++k) {
        x = s.hidden[k];
        for (int64_t l = first; l < m.config().n_layer; ++l) m.run_block(l, x.data(), s.T, 0);
        m.run_head(x.data(), s.T, lp.data());
        total += chunk_kld(lp, c.ref_logprobs[k].data(), s.T, V);
        count += s.T;
    }
    return count ? total / static_cast<double>(count) : 0.0;
}

// The head's input statistics: the final norm's output over every chunk.
Hessian head_stats(LanguageModel& m, Linear& head, Stream& s) {
    Hessian h;
    const ObserverId id = m.observe(head, [&h](const LinearEvent& e) { h.add(e.x, e.rows, e.layer.n_in(), e.row_mask); });
    std::vector<float> logits(static_cast<size_t>(s.T * m.config().n_vocab));
    try {
        for (auto& x : s.hidden) m.run_head(x.data(), s.T, logits.data());
    } catch (...) {
        m.remove_observer(id);
        throw;
    }
    m.remove_observer(id);
    return h;
}

std::vector<float> weight_of(const Linear& l) {
    if (l.transposed) throw Unsupported("[quantize] '" + l.name + "' is stored [in, out] (GPT-2 Conv1D); convert the model to GGUF first");
    return l.weight.to_float();
}

std::unique_ptr<LanguageModel> load_for_calibration(const std::string& input, const CalibrationOptions& calib) {
    LoadOptions lo;
    lo.n_ctx = calib.n_ctx;
    lo.micro_batch = calib.n_ctx;
    auto m = LanguageModel::load(input, lo);
    // GPT-2's HF Conv1D weights are [in, out]; the passes (and GGUF) want [out, in]: transpose them once, as the
    // file's own values (not a change: the writer still takes an untouched one from the file).
    for (Linear* l : m->linears()) {
        if (!l->transposed) continue;
        const std::vector<float> w = l->weight.to_float();
        const int64_t n_in = l->n_in(), n_out = l->n_out();
        std::vector<float> t(w.size());
        for (int64_t i = 0; i < n_in; ++i)
            for (int64_t o = 0; o < n_out; ++o) t[static_cast<size_t>(o * n_in + i)] = w[static_cast<size_t>(i * n_out + o)];
        m->set_weight(*l, f32_tensor(t, {n_out, n_in}), "transpose");
        l->modified_by.clear();
    }
    return m;
}

}  // namespace cq::quant
