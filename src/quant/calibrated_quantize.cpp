// The calibrated paths of cq quantize (quant/quantize_plan.h): calibration text cut into chunks (statistics, and
// a held-out tail that measures KL-divergence against the f32 model); automatic mixed precision (each tensor's
// sensitivity, then the least predicted KLD within the budget); and the block-by-block pass in which block l is
// calibrated on the outputs of the already-quantized blocks before it: Hessians of its Linears' inputs → AWQ
// scales folded into the op before each group → GPTQ (or the weighted search) per Linear → the block re-run with
// its quantized weights to feed the next. Only one block's activations (per chunk) and its Hessians are held.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <map>
#include <set>
#include <sstream>

#include "cq/error.h"
#include "cq/io/gguf_writer.h"
#include "cq/mapped_file.h"
#include "quant/awq.h"
#include "quant/block_calibration.h"
#include "quant/hessian.h"
#include "quant/mixed_precision.h"
#include "quant/quantize_plan.h"

namespace cq::quant {
namespace {

using Clock = std::chrono::steady_clock;

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
    auto model = load_for_calibration(input, o.calib);
    Calibration c = cut_calibration(*model, o.calib, mixed || method == QuantMethod::automatic, "quantize");
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
            auto candidate = mth == QuantMethod::gptq ? std::move(model) : load_for_calibration(input, o.calib);
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
    job.keep_zeros = o.keep_zeros;
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
        std::map<std::string, const Planned*> planned;
        for (size_t i = 0; i < plan.tensors.size(); ++i) {
            planned[plan.tensors[i].name] = &plan.tensors[i];
            std::string m = plan.tensors[i].measured + "; predicted ΔKLD";
            for (size_t k = 0; k < plan.tensors[i].types.size(); ++k)
                m += " " + std::string(dtype_name(plan.tensors[i].types[k])) + " " + fmt("%.2g", plan.tensors[i].cost[k]);
            measured[plan.tensors[i].name] = m;
        }
        for (auto& t : written.tensors)
            if (const auto it = measured.find(t.name); it != measured.end()) {
                t.measured = it->second;
                const Planned& pl = *planned.at(t.name);
                t.probe_type = std::string(dtype_name(pl.probe_type)), t.probe_dkld = pl.probe_dkld;
                for (size_t k = 0; k < pl.types.size(); ++k) t.predicted_dkld.emplace_back(std::string(dtype_name(pl.types[k])), pl.cost[k]);
            }
    }
    written.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    return written;
}

}  // namespace cq::quant
