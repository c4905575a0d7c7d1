// The calibrated paths of cq quantize (quant/quantize_plan.h): calibration text cut into chunks (statistics, and
// a held-out tail that measures KL-divergence against the f32 model); automatic mixed precision (each tensor's
// sensitivity, then the least predicted KLD within the budget); and the block-by-block pass in which block l is
// calibrated on the outputs of the already-quantized blocks before it: Hessians of its Linears' inputs → AWQ
// scales folded into the op before each group → GPTQ (or the weighted search) per Linear → the block re-run with
// its quantized weights to feed the next. Only one block's activations (per chunk) and its Hessians are held.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "core/sha256.h"
#include "cq/error.h"
#include "cq/gptq.h"
#include "cq/imatrix.h"
#include "cq/io/gguf_writer.h"
#include "cq/mapped_file.h"
#include "cq/thread_pool.h"
#include "cq/weighted_quant.h"
#include "eval/text_chunks.h"
#include "ops/ops.h"
#include "quant/awq.h"
#include "quant/bit_allocation.h"
#include "quant/finite_rows.h"
#include "quant/hessian.h"
#include "quant/llm_gguf_writer.h"
#include "quant/quantize_plan.h"

namespace cq::quant {
namespace {

using Clock = std::chrono::steady_clock;
using StageFn = std::function<void(const std::string& stage, int64_t done, int64_t total)>;

// ---- calibration data ----

struct Calibration {
    std::vector<std::vector<int32_t>> stats;     // chunks the statistics come from
    std::vector<std::vector<int32_t>> held_out;  // chunks KL-divergence is measured on (never in `stats`)
    std::vector<std::vector<float>> ref_logprobs;  // the f32 model's log-probabilities on held_out, [T, V] each
    CalibrationReport report;
};

constexpr int64_t kHeldOutTokens = 2048;

// Chunks of the text; the last ⌈n/8⌉ (at most kHeldOutTokens tokens' worth) are held out when mixed precision or the automatic choice needs to
// measure, the rest feed the statistics.
Calibration cut_calibration(const LanguageModel& model, const QuantizeOptions& o, bool hold_out) {
    Calibration c;
    auto chunks = text_chunk_tokens(model, o.calib.text_path, o.calib.n_ctx, o.calib.max_chunks, 2 * o.calib.n_ctx, "quantize --calib");
    const size_t n = chunks.size();
    size_t held = 0;
    if (hold_out) {
        if (n < 2) throw InvalidArgument("[quantize] --calib " + o.calib.text_path + " gives one chunk of " + std::to_string(o.calib.n_ctx) +
                                         " tokens; measuring needs at least two (a longer text or a smaller --calib-ctx)");
        // An eighth of the chunks, at most kHeldOutTokens tokens: every sensitivity probe runs them once.
        held = std::clamp<size_t>((n + 7) / 8, 1, static_cast<size_t>(std::max<int64_t>(1, kHeldOutTokens / o.calib.n_ctx)));
    }
    c.held_out.assign(std::make_move_iterator(chunks.end() - static_cast<std::ptrdiff_t>(held)), std::make_move_iterator(chunks.end()));
    chunks.resize(n - held);
    c.stats = std::move(chunks);
    c.report.text_path = o.calib.text_path;
    c.report.text_sha256 = sha256_file(o.calib.text_path);
    c.report.chunks = static_cast<int64_t>(n);
    c.report.n_ctx = o.calib.n_ctx;
    c.report.tokens = static_cast<int64_t>(n) * o.calib.n_ctx;
    return c;
}

void log_softmax_rows(std::vector<float>& logits, int64_t T, int64_t V) {
    ThreadPool::global().parallel_for(T, [&](int64_t t0, int64_t t1) {
        for (int64_t t = t0; t < t1; ++t) ops::log_softmax(logits.data() + t * V, V);
    }, 16);
}

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

// Lines of the evaluation text that also occur in the calibration text (≥ 32 characters, so short common lines
// do not count).
int64_t overlapping_lines(const std::string& calib, const std::string& eval) {
    const auto lines = [](const std::string& path) {
        std::set<std::string> out;
        std::istringstream in(read_text_file(path, 1ull << 30));
        for (std::string line; std::getline(in, line);)
            if (line.size() >= 32) out.insert(line);
        return out;
    };
    const auto a = lines(calib), b = lines(eval);
    int64_t n = 0;
    for (const auto& line : b) n += a.count(line);
    return n;
}

// ---- the model's Linears and their types ----

bool own_head(const Linear& l) { return l.role == LayerRole::lm_head && (l.source_name == "output" || l.source_name == "lm_head"); }

std::vector<Linear*> block_linears(LanguageModel& m, int64_t l) {
    DecoderBlock& b = m.weights().blocks[static_cast<size_t>(l)];
    if (m.config().family == LlmFamily::llama) return {&b.wq, &b.wk, &b.wv, &b.wo, &b.ffn_gate, &b.ffn_up, &b.ffn_down};
    return {&b.wqkv, &b.wo, &b.ffn_up, &b.ffn_down};
}

// The type the rules give a tensor (after llama.cpp's row fallback), or nullopt when they keep it as it is.
std::optional<DType> rule_type(const std::vector<QuantRule>& rules, const LanguageModel& m, const std::string& name, int64_t row) {
    const LlmConfig& c = m.config();
    int64_t block = -1;
    if (name.rfind("blk.", 0) == 0) block = std::stoll(name.substr(4, name.find('.', 4) - 4));
    const RuleTarget target{name, block, c.n_layer, c.n_head_kv > 0 ? c.n_head / c.n_head_kv : 1, ""};
    const auto k = deciding_rule<QuantRule>(rules, target);
    if (k < 0) return std::nullopt;
    return fit_row_type(rules[static_cast<size_t>(k)].type, row).first;
}

bool is_quantized_type(DType t) { return t != DType::F32 && t != DType::F16 && t != DType::BF16; }

// A Linear's weight w [n_out, n_in] in `type`: GPTQ on gptq_H when given (and the type has a GPTQ grid), else the
// type's importance-weighted search (importance empty: unweighted, as llama-quantize without an imatrix).
Tensor encode(DType type, const float* w, int64_t n_out, int64_t n_in, const std::vector<float>& imp, const Hessian* gptq_H,
              const QuantizeOptions& o, const std::string& name) {
    for (int64_t r = 0; r < n_out; ++r) require_finite_row(w + r * n_in, n_in, name, r);
    Tensor t = Tensor::zeros({n_out, n_in}, type);
    auto* dst = static_cast<uint8_t*>(t.mutable_data());
    if (gptq_H && gptq_H->rows > 0 && gptq_supports(type)) {
        GptqOptions g;
        g.damp = o.gptq_damp;
        g.act_order = o.gptq_act_order;
        g.compute_rtn_error = false;
        const GptqResult r = gptq_quantize(type, std::span<const float>(w, static_cast<size_t>(n_out * n_in)), n_out, n_in, gptq_H->h, imp, g);
        std::memcpy(dst, r.blocks.data(), t.nbytes());
        return t;
    }
    if (has_weighted_quantizer(type)) {
        quantize_rows_weighted(type, w, dst, n_out, n_in, imp.empty() ? nullptr : imp.data());
        return t;
    }
    const auto& traits = dtype_traits(type);
    const uint64_t row_bytes = *dtype_bytes(type, static_cast<uint64_t>(n_in));
    for (int64_t r = 0; r < n_out; ++r) traits.from_float(w + r * n_in, dst + r * row_bytes, n_in);
    return t;
}

Tensor f32_tensor(const std::vector<float>& v, std::vector<int64_t> shape) {
    Tensor t = Tensor::zeros(std::move(shape), DType::F32);
    std::memcpy(t.mutable_data(), v.data(), v.size() * sizeof(float));
    return t;
}

// ---- block-by-block calibration ----

// Hidden states of every statistics chunk at the current block's input.
struct Stream {
    std::vector<std::vector<float>> hidden;
    int64_t T = 0;
};

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

// The Hessians of a block's four inputs: attention projections, attention output, MLP input, MLP output.
struct BlockStats {
    Hessian attn_in, attn_out, ffn_in, ffn_out;
    Hessian& of(const Linear& l) {
        switch (l.role) {
            case LayerRole::attn_q: case LayerRole::attn_k: case LayerRole::attn_v: case LayerRole::attn_qkv: return attn_in;
            case LayerRole::attn_out: return attn_out;
            case LayerRole::ffn_down: return ffn_out;
            default: return ffn_in;
        }
    }
};

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

// ---- AWQ ----

struct AwqGroup {
    std::vector<Linear*> linears;
    Hessian* stats = nullptr;
    Norm* norm = nullptr;          // the scales' inverse goes into this norm (weight, and bias for LayerNorm) …
    Linear* prev = nullptr;        // … or into these rows of the previous Linear (and its bias)
    int64_t prev_row0 = 0;
    std::string what;
};

void scale_norm(Norm& n, const std::vector<float>& s) {
    std::vector<float> w = n.weight.to_float();
    for (size_t j = 0; j < w.size(); ++j) w[j] /= s[j];
    n.weight = f32_tensor(w, {static_cast<int64_t>(w.size())});
    if (n.bias) {
        std::vector<float> b = n.bias->to_float();
        for (size_t j = 0; j < b.size(); ++j) b[j] /= s[j];
        n.bias = f32_tensor(b, {static_cast<int64_t>(b.size())});
    }
    n.modified_by = "awq";
}

std::vector<float> weight_of(const Linear& l) {
    if (l.transposed) throw Unsupported("[quantize] '" + l.name + "' is stored [in, out] (GPT-2 Conv1D); convert the model to GGUF first");
    return l.weight.to_float();
}

std::vector<AwqGroup> awq_groups(LanguageModel& m, int64_t l, BlockStats& st) {
    DecoderBlock& b = m.weights().blocks[static_cast<size_t>(l)];
    const LlmConfig& c = m.config();
    std::vector<AwqGroup> g;
    if (c.family == LlmFamily::llama) {
        g.push_back({{&b.wq, &b.wk, &b.wv}, &st.attn_in, &b.attn_norm, nullptr, 0, "attn_norm→q,k,v"});
        g.push_back({{&b.ffn_gate, &b.ffn_up}, &st.ffn_in, &b.ffn_norm, nullptr, 0, "ffn_norm→gate,up"});
        g.push_back({{&b.ffn_down}, &st.ffn_out, nullptr, &b.ffn_up, 0, "up→down"});
        // v→o only without grouped queries: with GQA one v row feeds several o columns, which would need equal scales.
        if (c.n_head == c.n_head_kv && !b.wv.bias) g.push_back({{&b.wo}, &st.attn_out, nullptr, &b.wv, 0, "v→o"});
    } else {
        g.push_back({{&b.wqkv}, &st.attn_in, &b.attn_norm, nullptr, 0, "attn_norm→qkv"});
        g.push_back({{&b.ffn_up}, &st.ffn_in, &b.ffn_norm, nullptr, 0, "ffn_norm→up"});
        g.push_back({{&b.wo}, &st.attn_out, nullptr, &b.wqkv, 2 * c.n_embd, "v→o"});
    }
    return g;
}

// Searches and folds the scales of every group of block l; the Hessians become those of the scaled inputs.
void apply_awq(LanguageModel& m, int64_t l, BlockStats& st, const std::map<const Linear*, DType>& types, std::vector<std::string>* notes) {
    for (AwqGroup& g : awq_groups(m, l, st)) {
        if (g.stats->rows == 0) continue;
        std::vector<std::vector<float>> w;
        std::vector<AwqLinear> group;
        bool all_quantized = true;
        for (Linear* lin : g.linears) {
            const auto it = types.find(lin);
            if (it == types.end()) { all_quantized = false; break; }
            w.push_back(weight_of(*lin));
        }
        if (!all_quantized) continue;
        for (size_t i = 0; i < g.linears.size(); ++i) group.push_back({w[i].data(), g.linears[i]->n_out(), types.at(g.linears[i])});
        const AwqSearch found = awq_search(*g.stats, group);
        if (notes) {
            char buf[160];
            std::snprintf(buf, sizeof buf, "blk.%lld %s: alpha %.2f, output error %.3g → %.3g", static_cast<long long>(l), g.what.c_str(), found.alpha,
                          found.error_unscaled, found.error);
            notes->push_back(buf);
        }
        if (found.alpha == 0) continue;
        const std::vector<float>& s = found.scales;
        const int64_t n = g.stats->n;
        for (size_t i = 0; i < g.linears.size(); ++i) {
            Linear& lin = *g.linears[i];
            for (int64_t r = 0; r < lin.n_out(); ++r)
                for (int64_t j = 0; j < n; ++j) w[i][static_cast<size_t>(r * n + j)] *= s[static_cast<size_t>(j)];
            m.set_weight(lin, f32_tensor(w[i], {lin.n_out(), n}), "awq");
        }
        if (g.norm) {
            scale_norm(*g.norm, s);
        } else {
            Linear& p = *g.prev;
            std::vector<float> pw = weight_of(p);
            const int64_t pin = p.n_in();
            for (int64_t j = 0; j < n; ++j)
                for (int64_t k = 0; k < pin; ++k) pw[static_cast<size_t>((g.prev_row0 + j) * pin + k)] /= s[static_cast<size_t>(j)];
            if (p.bias) {
                std::vector<float> pb = p.bias->to_float();
                for (int64_t j = 0; j < n; ++j) pb[static_cast<size_t>(g.prev_row0 + j)] /= s[static_cast<size_t>(j)];
                p.bias = f32_tensor(pb, {static_cast<int64_t>(pb.size())});
            }
            m.set_weight(p, f32_tensor(pw, {p.n_out(), pin}), "awq");
        }
        g.stats->scale_channels(s);
    }
}

// The Linears the calibrated pass quantizes, with their types (those the rules keep in a float type are left alone).
std::map<const Linear*, DType> linear_types(LanguageModel& m, const std::vector<QuantRule>& rules) {
    std::map<const Linear*, DType> out;
    for (Linear* l : m.linears()) {
        if (l->block < 0 && !own_head(*l)) continue;  // a tied head is the token embedding: the writer quantizes it
        const auto t = rule_type(rules, m, l->name + ".weight", l->n_in());
        if (t && is_quantized_type(*t)) out[l] = *t;
    }
    return out;
}

struct PassOptions {
    bool awq = false, gptq = false;
};

// The block-by-block pass (see the file comment). Leaves every quantized Linear in its type in `m`.
void calibrated_pass(LanguageModel& m, const Calibration& c, const std::vector<QuantRule>& rules, PassOptions p, const QuantizeOptions& o,
                     const StageFn& stage, std::vector<std::string>* notes) {
    const auto types = linear_types(m, rules);
    Stream s = embed_all(m, c.stats);
    const int64_t L = m.config().n_layer;
    const std::string name = std::string(p.awq ? (p.gptq ? "awq+gptq" : "awq") : (p.gptq ? "gptq" : "imatrix"));
    for (int64_t l = 0; l < L; ++l) {
        if (stage) stage(name + ": blocks", l, L + 1);
        BlockStats st;
        run_block(m, l, s, false, &st);
        if (p.awq) apply_awq(m, l, st, types, notes);
        for (Linear* lin : block_linears(m, l)) {
            const auto it = types.find(lin);
            if (it == types.end()) continue;
            const std::vector<float> w = weight_of(*lin);
            const Hessian& H = st.of(*lin);
            m.set_weight(*lin, encode(it->second, w.data(), lin->n_out(), lin->n_in(), H.importance(), p.gptq ? &H : nullptr, o, lin->name), name);
        }
        run_block(m, l, s, true, nullptr);
    }
    Linear& head = m.weights().output;
    if (const auto it = types.find(&head); it != types.end()) {
        const Hessian h = head_stats(m, head, s);
        const std::vector<float> w = weight_of(head);
        m.set_weight(head, encode(it->second, w.data(), head.n_out(), head.n_in(), h.importance(), p.gptq ? &h : nullptr, o, head.name), name);
    }
    if (stage) stage(name + ": blocks", L + 1, L + 1);
}

// ---- automatic mixed precision ----

// The types a tensor whose rows hold `row` values can take, smallest first.
std::vector<DType> candidate_types(int64_t row) {
    if (row % 256 == 0) return {DType::Q2_K, DType::Q3_K, DType::IQ4_XS, DType::Q4_K, DType::Q5_K, DType::Q6_K, DType::Q8_0};
    if (row % 32 == 0) return {DType::IQ4_NL, DType::Q4_1, DType::Q5_0, DType::Q5_1, DType::Q8_0};
    return {};
}

struct Planned {
    std::string name;        // GGUF tensor name
    Linear* linear = nullptr;  // null: the token embedding
    std::vector<DType> types;
    std::vector<uint64_t> bytes;
    std::vector<double> proxy;  // output error per type (Linears)
    std::vector<double> cost;   // predicted ΔKLD per type
    std::string measured;
    std::vector<float> importance;  // mean x² of the Linear's inputs (empty: unweighted)
};

std::string fmt(const char* f, double v) {
    char b[64];
    std::snprintf(b, sizeof b, f, v);
    return b;
}

// Sensitivity of every tensor the plan decides: per Linear, the output error tr(E H Eᵀ) of each type (f32 model,
// its own inputs), turned into ΔKLD by one measurement: the held-out KLD with that tensor alone at the probe type
// (the second smallest). The token embedding has no Hessian: its proxy is the rows' error weighted by token use.
void measure_sensitivity(LanguageModel& m, Calibration& c, std::vector<Planned>& plan, bool weighted, const StageFn& stage) {
    std::map<const Linear*, Planned*> by_linear;
    for (auto& p : plan)
        if (p.linear) by_linear[p.linear] = &p;
    const auto errors = [&](Planned& p, const Hessian& H) {
        const std::vector<float> w = weight_of(*p.linear);
        const std::vector<float> imp = H.importance();
        if (weighted) p.importance = imp;
        std::vector<float> e(w.size());
        for (DType t : p.types) {
            const std::vector<float> q = quantize_dequantize(t, w.data(), p.linear->n_out(), p.linear->n_in(), weighted ? imp.data() : nullptr);
            for (size_t i = 0; i < w.size(); ++i) e[i] = w[i] - q[i];
            p.proxy.push_back(output_error(H, e.data(), p.linear->n_out()));
        }
    };
    Stream s = embed_all(m, c.stats);
    const int64_t L = m.config().n_layer;
    for (int64_t l = 0; l < L; ++l) {
        if (stage) stage("sensitivity: output errors", l, L + 1);
        BlockStats st;
        run_block(m, l, s, true, &st);
        for (Linear* lin : block_linears(m, l))
            if (const auto it = by_linear.find(lin); it != by_linear.end()) errors(*it->second, st.of(*lin));
    }
    if (const auto it = by_linear.find(&m.weights().output); it != by_linear.end()) errors(*it->second, head_stats(m, m.weights().output, s));
    s.hidden.clear();

    // Probes block by block: the held-out inputs of block l (f32 model) are kept, so a probe in block l reruns only
    // blocks l… and the head.
    int64_t done = 0;
    const int64_t total = static_cast<int64_t>(plan.size());
    const auto probe_linear = [&](Planned& p, int64_t first, const Stream& ho) {
        if (stage) stage("sensitivity: held-out KLD", done++, total);
        const size_t probe = std::min<size_t>(1, p.types.size() - 1);
        const Tensor original = p.linear->weight;
        const std::vector<float> w = weight_of(*p.linear);
        // The probe is quantized as the proxies were (the same importance), so its output error is proxy[probe].
        m.set_weight(*p.linear, encode(p.types[probe], w.data(), p.linear->n_out(), p.linear->n_in(), p.importance, nullptr, {}, p.name), "probe");
        const double dkld = held_out_kld_from(m, c, first, ho);
        m.set_weight(*p.linear, original, "probe");
        p.linear->modified_by.clear();
        const double gain = p.proxy[probe] > 0 ? dkld / p.proxy[probe] : 0.0;
        for (double e : p.proxy) p.cost.push_back(gain * e);
        p.measured = "ΔKLD at " + std::string(dtype_name(p.types[probe])) + " " + fmt("%.3g", dkld) + " (measured), others by output error";
    };
    for (auto& p : plan) {
        if (p.linear) continue;
        // The token embedding's proxy: its rows' squared error weighted by how often calibration text uses each token.
        if (stage) stage("sensitivity: held-out KLD", done++, total);
        Tensor& table = m.weights().token_embd;
        const Tensor original = table;
        const int64_t V = original.dim(0), D = original.dim(1);
        std::vector<double> uses(static_cast<size_t>(V), 0.0);
        for (const auto& chunk : c.stats)
            for (const int32_t t : chunk) uses[static_cast<size_t>(t)] += 1;
        const std::vector<float> w = table.to_float();
        std::vector<Tensor> encoded;
        for (DType t : p.types) {
            encoded.push_back(encode(t, w.data(), V, D, {}, nullptr, {}, p.name));
            std::vector<float> q(w.size());
            dtype_traits(t).to_float(encoded.back().data(), q.data(), static_cast<int64_t>(w.size()));
            double e = 0;
            for (int64_t v = 0; v < V; ++v)
                for (int64_t d = 0; d < D; ++d) {
                    const double diff = static_cast<double>(w[static_cast<size_t>(v * D + d)]) - q[static_cast<size_t>(v * D + d)];
                    e += uses[static_cast<size_t>(v)] * diff * diff;
                }
            p.proxy.push_back(e);
        }
        const size_t probe = std::min<size_t>(1, p.types.size() - 1);
        table = encoded[probe];
        const double dkld = held_out_kld(m, c);
        table = original;
        const double gain = p.proxy[probe] > 0 ? dkld / p.proxy[probe] : 0.0;
        for (double e : p.proxy) p.cost.push_back(gain * e);
        p.measured = "ΔKLD at " + std::string(dtype_name(p.types[probe])) + " " + fmt("%.3g", dkld) + " (measured), others by token-weighted error";
    }
    Stream ho = embed_all(m, c.held_out);
    for (int64_t l = 0; l < L; ++l) {
        for (Linear* lin : block_linears(m, l))
            if (const auto it = by_linear.find(lin); it != by_linear.end()) probe_linear(*it->second, l, ho);
        run_block(m, l, ho, true, nullptr);
    }
    if (const auto it = by_linear.find(&m.weights().output); it != by_linear.end()) probe_linear(*it->second, L, ho);
    if (stage) stage("sensitivity: held-out KLD", total, total);
}


// The plan's tensors: every Linear the rules quantize and the token embedding (unless tied to the head), minus
// those a --tensor-type rule pins.
std::vector<Planned> plan_tensors(LanguageModel& m, const std::vector<QuantRule>& rules, const QuantizeOptions& o) {
    std::vector<QuantRule> user;
    for (const auto& spec : o.tensor_types) user.push_back(parse_tensor_type_rule(spec));
    const LlmConfig& c = m.config();
    const auto pinned = [&](const std::string& name) {
        int64_t block = -1;
        if (name.rfind("blk.", 0) == 0) block = std::stoll(name.substr(4, name.find('.', 4) - 4));
        return deciding_rule<QuantRule>(user, RuleTarget{name, block, c.n_layer, c.n_head_kv > 0 ? c.n_head / c.n_head_kv : 1, ""}) >= 0;
    };
    std::vector<Planned> plan;
    const auto add = [&](Linear* lin, const std::string& name, int64_t n_rows, int64_t row) {
        if (pinned(name)) return;
        const auto t = rule_type(rules, m, name, row);
        if (!t || !is_quantized_type(*t)) return;
        Planned p;
        p.name = name, p.linear = lin, p.types = candidate_types(row);
        if (p.types.empty()) return;
        for (DType type : p.types) p.bytes.push_back(*dtype_bytes(type, static_cast<uint64_t>(n_rows * row)));
        plan.push_back(std::move(p));
    };
    const bool tied = !own_head(m.weights().output);
    if (!tied) add(nullptr, "token_embd.weight", m.weights().token_embd.dim(0), m.weights().token_embd.dim(1));
    for (const auto& [lin, type] : linear_types(m, rules)) {
        (void)type;
        add(const_cast<Linear*>(lin), lin->name + ".weight", lin->n_out(), lin->n_in());
    }
    // Execution order (the map above is by address): blocks, then the head.
    std::stable_sort(plan.begin(), plan.end(), [](const Planned& a, const Planned& b) {
        const auto key = [](const Planned& p) { return p.linear ? (p.linear->block < 0 ? INT64_MAX : p.linear->block) : int64_t{-1}; };
        return key(a) < key(b);
    });
    return plan;
}

std::vector<QuantRule> with_plan(const std::vector<QuantRule>& base, const std::vector<Planned>& plan, const std::vector<size_t>& pick,
                                 const QuantizeOptions& o) {
    std::vector<QuantRule> rules = base;
    // The plan goes before the user's --tensor-type rules, which keep the last word.
    const size_t user = o.tensor_types.size();
    std::vector<QuantRule> tail(rules.end() - static_cast<std::ptrdiff_t>(user), rules.end());
    rules.resize(rules.size() - user);
    for (size_t i = 0; i < plan.size(); ++i) rules.push_back(parse_tensor_type_rule(plan[i].name + "=" + std::string(dtype_name(plan[i].types[pick[i]]))));
    rules.insert(rules.end(), tail.begin(), tail.end());
    return rules;
}

struct PlanResult {
    std::vector<QuantRule> rules;
    std::vector<Planned> tensors;
    std::vector<size_t> pick;
    double predicted_kld = 0;
};

PlanResult make_plan(LanguageModel& m, Calibration& c, const std::vector<QuantRule>& base, const QuantPreset* preset, bool weighted,
                     const QuantizeOptions& o, const std::function<void(gguf::Writer&)>& metadata, const StageFn& stage) {
    PlanResult r;
    r.tensors = plan_tensors(m, base, o);
    if (r.tensors.empty()) throw InvalidArgument("[quantize] no tensor is left for mixed precision to decide (the rules keep them all or --tensor-type pins them)");
    const auto dry = [&](const std::vector<size_t>& pick) {
        QuantizedWrite job;
        job.input = m.path(), job.preset = preset, job.rules = with_plan(base, r.tensors, pick, o), job.metadata = metadata, job.dry_run = true;
        return write_quantized(job, "", {});
    };
    const auto planned_bytes = [&](const std::vector<size_t>& pick) {
        uint64_t b = 0;
        for (size_t i = 0; i < pick.size(); ++i) b += r.tensors[i].bytes[pick[i]];
        return b;
    };
    // The budget first, so an impossible one is refused before anything is measured.
    const std::vector<size_t> least(r.tensors.size(), 0);
    const QuantizeReport base_size = dry(least);
    int64_t budget = 0;
    if (o.max_kld <= 0) {
        const uint64_t fixed_file = base_size.file_bytes_out - planned_bytes(least);
        const uint64_t fixed_tensors = base_size.tensor_bytes_out - planned_bytes(least);
        // Padding to the alignment may differ by type: leave each planned tensor its worst case.
        const uint64_t slack = 32 * r.tensors.size();
        if (o.target_size > 0) budget = static_cast<int64_t>(o.target_size) - static_cast<int64_t>(fixed_file) - static_cast<int64_t>(slack);
        else budget = static_cast<int64_t>(std::floor(o.target_bpw * static_cast<double>(base_size.parameters) / 8.0)) - static_cast<int64_t>(fixed_tensors);
        if (budget < static_cast<int64_t>(planned_bytes(least)))
            throw InvalidArgument("[quantize] " + (o.target_size > 0 ? "--target-size " + std::to_string(o.target_size) + " bytes" : "--target-bpw " + fmt("%g", o.target_bpw)) +
                                  " is below the smallest plan (" + std::to_string(base_size.file_bytes_out) + " bytes, " + fmt("%.3f", base_size.bpw_out) + " bits/weight)");
    }
    measure_sensitivity(m, c, r.tensors, weighted, stage);
    std::vector<TensorChoices> choices;
    for (const auto& p : r.tensors) {
        TensorChoices tc{p.name, {}};
        for (size_t k = 0; k < p.types.size(); ++k) tc.options.push_back({p.types[k], p.bytes[k], p.cost[k]});
        choices.push_back(std::move(tc));
    }
    if (o.max_kld > 0) {
        bool reached = false;
        r.pick = allocate_cost(choices, o.max_kld, &reached);
    } else {
        r.pick = allocate_bytes(choices, static_cast<uint64_t>(budget));
        // The header (the plan's rules are in it) can move by a few bytes: check the real size, shrink if over.
        for (int iter = 0; iter < 4 && o.target_size > 0; ++iter) {
            const uint64_t size = dry(r.pick).file_bytes_out;
            if (size <= o.target_size) break;
            budget -= static_cast<int64_t>(size - o.target_size);
            r.pick = allocate_bytes(choices, static_cast<uint64_t>(std::max<int64_t>(budget, static_cast<int64_t>(planned_bytes(least)))));
        }
    }
    r.rules = with_plan(base, r.tensors, r.pick, o);
    for (size_t i = 0; i < r.tensors.size(); ++i) r.predicted_kld += r.tensors[i].cost[r.pick[i]];
    return r;
}

std::unique_ptr<LanguageModel> load_for_calibration(const std::string& input, const QuantizeOptions& o) {
    LoadOptions lo;
    lo.n_ctx = o.calib.n_ctx;
    lo.micro_batch = o.calib.n_ctx;
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

}  // namespace

QuantizeReport quantize_calibrated(const std::string& input, const std::string& output, const QuantizeOptions& o, QuantMethod method,
                                   const ProgressFn& progress) {
    const auto t0 = Clock::now();
    // Every stage's wall time goes into the report; the caller's progress sees the stages as they run.
    std::vector<std::pair<std::string, double>> timings;
    auto stage_start = Clock::now();
    const StageFn stage = [&](const std::string& name, int64_t done, int64_t total) {
        if (timings.empty() || timings.back().first != name) {
            const auto now = Clock::now();
            if (!timings.empty()) timings.back().second = std::chrono::duration<double>(now - stage_start).count();
            timings.emplace_back(name, 0.0);
            stage_start = now;
        }
        if (o.stage_progress) o.stage_progress(name, done, total);
    };
    const bool mixed = o.target_size > 0 || o.target_bpw > 0 || o.max_kld > 0;
    auto model = load_for_calibration(input, o);
    Calibration c = cut_calibration(*model, o, mixed || method == QuantMethod::automatic);
    std::vector<std::string> warnings;
    if (!o.eval_text.empty())
        if (const int64_t n = overlapping_lines(o.calib.text_path, o.eval_text); n > 0)
            warnings.push_back(std::to_string(n) + " lines of the evaluation text " + o.eval_text + " also occur in the calibration text " +
                               o.calib.text_path + ": the evaluation is not independent of the calibration");
    if (!c.held_out.empty()) {
        if (stage) stage("reference logits", 0, 1);
        reference_logprobs(*model, c);
    }
    const QuantPreset* preset = nullptr;
    std::vector<QuantRule> rules = options_rules(o, &preset);
    std::string chosen = std::string(quant_method_name(method));
    const auto metadata = [&](gguf::Writer& w) {
        w.set_string("cq.quantize.method", chosen);
        w.set_string("cq.quantize.calib.file", c.report.text_path);
        w.set_string("cq.quantize.calib.sha256", c.report.text_sha256);
        w.set_u32("cq.quantize.calib.chunks", static_cast<uint32_t>(c.report.chunks));
        w.set_u32("cq.quantize.calib.ctx", static_cast<uint32_t>(c.report.n_ctx));
        w.set_u32("cq.quantize.calib.tokens", static_cast<uint32_t>(std::min<int64_t>(c.report.tokens, UINT32_MAX)));
        w.set_u32("cq.quantize.calib.held_out_chunks", static_cast<uint32_t>(c.held_out.size()));
    };

    PlanResult plan;
    if (mixed) {
        plan = make_plan(*model, c, rules, preset, method != QuantMethod::rtn, o, metadata, stage);
        rules = plan.rules;
    }
    if (!o.dump_rules_file.empty())
        write_rules_file(o.dump_rules_file, rules, "# cq quantize rules (type " + preset->name + (mixed ? ", mixed precision from --calib " + o.calib.text_path : "") +
                                                   "); later rules win. Replay: cq quantize IN OUT --type " + preset->name + " --rules THIS_FILE\n");

    QuantizeReport report;
    std::vector<std::string> notes;
    const auto run = [&](QuantMethod mth, LanguageModel& mdl, std::vector<std::string>* n) {
        if (mth == QuantMethod::rtn) return;  // the writer rounds each tensor with its codec
        PassOptions p;
        p.awq = mth == QuantMethod::awq || mth == QuantMethod::awq_gptq;
        p.gptq = mth == QuantMethod::gptq || mth == QuantMethod::awq_gptq;
        calibrated_pass(mdl, c, rules, p, o, stage, n);
    };
    if (method == QuantMethod::automatic) {
        // Each combination from the same f32 weights; the lowest held-out KLD wins.
        std::unique_ptr<LanguageModel> best;
        double best_kld = INFINITY;
        // GPTQ's grids are the imatrix-weighted searches, so plain imatrix rounding is not a candidate: it never won.
        for (QuantMethod mth : {QuantMethod::gptq, QuantMethod::awq_gptq}) {
            auto candidate = mth == QuantMethod::gptq ? std::move(model) : load_for_calibration(input, o);
            std::vector<std::string> n;
            run(mth, *candidate, &n);
            stage(std::string(quant_method_name(mth)) + ": held-out KLD", 0, 1);
            const double kld = held_out_kld(*candidate, c);
            report.method_kld[std::string(quant_method_name(mth))] = kld;
            if (kld < best_kld) best_kld = kld, best = std::move(candidate), chosen = std::string(quant_method_name(mth)), notes = std::move(n);
        }
        model = std::move(best);
        chosen = "auto: " + chosen;
    } else {
        run(method, *model, &notes);
    }
    if (!c.held_out.empty() && method != QuantMethod::automatic) {
        stage("held-out KLD", 0, 1);
        report.calib_kld = held_out_kld(*model, c);
    } else if (method == QuantMethod::automatic) {
        report.calib_kld = report.method_kld.at(chosen.substr(std::string("auto: ").size()));
    }

    stage("write", 0, 1);
    QuantizedWrite job;
    job.input = input, job.model = model.get(), job.preset = preset, job.rules = rules, job.metadata = metadata;
    QuantizeReport written = write_quantized(job, output, progress);
    timings.back().second = std::chrono::duration<double>(Clock::now() - stage_start).count();
    written.stage_seconds = timings;
    written.method = chosen;
    written.calibration = c.report;
    written.warnings = std::move(warnings);
    written.notes = std::move(notes);
    written.calib_kld = report.calib_kld;
    written.method_kld = report.method_kld;
    if (mixed) {
        written.predicted_kld = plan.predicted_kld;
        std::map<std::string, std::string> measured;
        for (size_t i = 0; i < plan.tensors.size(); ++i) {
            std::string m = plan.tensors[i].measured + "; predicted ΔKLD";
            for (size_t k = 0; k < plan.tensors[i].types.size(); ++k)
                m += " " + std::string(dtype_name(plan.tensors[i].types[k])) + " " + fmt("%.2g", plan.tensors[i].cost[k]);
            measured[plan.tensors[i].name] = m;
        }
        for (auto& t : written.tensors)
            if (const auto it = measured.find(t.name); it != measured.end()) t.measured = it->second;
    }
    written.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    return written;
}

}  // namespace cq::quant
