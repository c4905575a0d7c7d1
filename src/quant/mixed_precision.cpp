// Automatic mixed precision (see mixed_precision.h): candidate types per tensor, their measured sensitivity, and
// the plan under the budget.
#include "quant/mixed_precision.h"
#include "quant/zero_preserving.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>

#include "cq/error.h"
#include "cq/gptq.h"
#include "cq/io/gguf_writer.h"
#include "cq/weighted_quant.h"
#include "quant/awq.h"
#include "quant/bit_allocation.h"
#include "quant/finite_rows.h"
#include "quant/llm_gguf_writer.h"
#include "quant/quantize_plan.h"

namespace cq::quant {

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
    // A pruned weight keeps its exact zeros (quant/zero_preserving.h): a type without a 0 level is replaced, and blocks
    // whose search lost a zero are searched again with 0 held.
    const bool pruned = o.keep_zeros && looks_pruned(w, n_out * n_in);
    if (pruned) type = zero_preserving_type(type);
    Tensor t = Tensor::zeros({n_out, n_in}, type);
    auto* dst = static_cast<uint8_t*>(t.mutable_data());
    if (gptq_H && gptq_H->rows > 0 && gptq_supports(type)) {
        GptqOptions g;
        g.damp = o.gptq_damp;
        g.act_order = o.gptq_act_order;
        g.compute_rtn_error = false;
        g.keep_zeros = o.keep_zeros;
        const GptqResult r = gptq_quantize(type, std::span<const float>(w, static_cast<size_t>(n_out * n_in)), n_out, n_in, gptq_H->h, imp, g);
        std::memcpy(dst, r.blocks.data(), t.nbytes());
        return t;
    }
    const auto& traits = dtype_traits(type);
    const uint64_t row_bytes = *dtype_bytes(type, static_cast<uint64_t>(n_in));
    if (has_weighted_quantizer(type)) quantize_rows_weighted(type, w, dst, n_out, n_in, imp.empty() ? nullptr : imp.data());
    else
        for (int64_t r = 0; r < n_out; ++r) traits.from_float(w + r * n_in, dst + r * row_bytes, n_in);
    if (pruned && traits.is_quantized)
        for (int64_t r = 0; r < n_out; ++r) restore_row_zeros(type, w + r * n_in, dst + r * row_bytes, n_in, imp.empty() ? nullptr : imp.data());
    return t;
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

namespace {

// The types a tensor whose rows hold `row` values can take, smallest first.
std::vector<DType> candidate_types(int64_t row) {
    if (row % 256 == 0) return {DType::Q2_K, DType::Q3_K, DType::IQ4_XS, DType::Q4_K, DType::Q5_K, DType::Q6_K, DType::Q8_0};
    if (row % 32 == 0) return {DType::IQ4_NL, DType::Q4_1, DType::Q5_0, DType::Q5_1, DType::Q8_0};
    return {};
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
        p.probe_type = p.types[probe], p.probe_dkld = dkld;
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
        p.probe_type = p.types[probe], p.probe_dkld = dkld;
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


}  // namespace

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

}  // namespace cq::quant
