// The decoder-LLM GGUF writer (see llm_gguf_writer.h): one plan per file tensor — the rules' type with
// llama.cpp's fallbacks, the model's in-memory weight where a pass changed it (Linears, norms), or the
// file's own — then a streaming write, one tensor at a time, rows split across the thread pool. LanguageModel::save lives here
// because saving a decoder is this writer with no rules.

#include "quant/llm_gguf_writer.h"
#include "quant/finite_rows.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>

#include "cq/atomic_file.h"
#include "cq/error.h"
#include "cq/io/gguf_writer.h"
#include "cq/thread_pool.h"
#include "cq/w8a8.h"
#include "cq/weighted_quant.h"
#include "quant/zero_preserving.h"
#include "models/model_container.h"

namespace cq::quant {

namespace fs = std::filesystem;

namespace {

int64_t layer_of(const std::string& name) {
    if (name.rfind("blk.", 0) != 0) return -1;
    const size_t dot = name.find('.', 4);
    try {
        return std::stoll(name.substr(4, dot - 4));
    } catch (...) {
        return -1;
    }
}

}  // namespace

std::pair<DType, std::string> fit_row_type(DType type, int64_t row) {
    const auto fits = [&](DType t) { return row % static_cast<int64_t>(dtype_traits(t).block_size) == 0; };
    if (fits(type)) return {type, ""};
    DType next = DType::F16;
    std::string why = "rows of " + std::to_string(row) + " are not a multiple of " + std::string(dtype_name(type)) + "'s block of " +
                      std::to_string(dtype_traits(type).block_size);
    switch (type) {
        case DType::Q2_K:
        case DType::Q3_K: next = DType::Q4_0; break;  // llama-quant.cpp (peer build 80fb11a) demotes these to Q4_0
        case DType::IQ4_XS: next = DType::IQ4_NL; break;
        case DType::Q4_K: next = DType::Q5_0; break;
        case DType::Q5_K: next = DType::Q5_1; break;
        case DType::Q6_K: next = DType::Q8_0; break;
        default: break;
    }
    if (!fits(next)) next = DType::F16;
    return {next, why};
}

namespace {

// The model's changed Linears by the GGUF name of the tensor they replace. A tied head is the token
// embedding in the file, so a changed tied head replaces "token_embd.weight".
std::map<std::string, const Linear*> changed_linears(const LanguageModel& model, bool file_has_output) {
    std::map<std::string, const Linear*> out;
    for (const Linear* l : model.linears()) {
        if (l->modified_by.empty()) continue;
        // A W8A8 Linear's int8 form is [out, in] whatever the file's layout; a changed float or block weight stored
        // [in, out] (GPT-2's Conv1D) has no GGUF type.
        if (l->transposed && !l->int8)
            throw Unsupported("[save] '" + l->name + "' holds a layout GGUF has no type for (" + l->format() + ", [in, out])");
        const bool tied_head = l->role == LayerRole::lm_head && !file_has_output;
        out[(tied_head ? std::string("token_embd") : l->name) + ".weight"] = l;
    }
    return out;
}

// The model's changed vectors, written in f32 by their GGUF names: norms a pass changed (weight, bias), and the
// biases of changed Linears (training updates them with the weight).
std::map<std::string, const Tensor*> changed_vectors(const LanguageModel& model, const std::map<std::string, const Linear*>& linears) {
    std::map<std::string, const Tensor*> out;
    const auto add = [&](const Norm& n, const std::string& name) {
        if (n.modified_by.empty()) return;
        out[name + ".weight"] = &n.weight;
        if (n.bias) out[name + ".bias"] = &*n.bias;
    };
    const LlmWeights& w = model.weights();
    for (size_t l = 0; l < w.blocks.size(); ++l) {
        add(w.blocks[l].attn_norm, "blk." + std::to_string(l) + ".attn_norm");
        add(w.blocks[l].ffn_norm, "blk." + std::to_string(l) + ".ffn_norm");
    }
    add(w.output_norm, "output_norm");
    for (const auto& [name, l] : linears)
        if (l->bias) out[name.substr(0, name.size() - std::string(".weight").size()) + ".bias"] = &*l->bias;
    return out;
}

// The embedding tables a pass changed (LlmWeights::embeddings_modified_by), by GGUF name: their values come from the
// model, their types from the rules like any file tensor.
std::map<std::string, const Tensor*> changed_tables(const LanguageModel& model) {
    std::map<std::string, const Tensor*> out;
    const LlmWeights& w = model.weights();
    if (w.embeddings_modified_by.empty()) return out;
    out["token_embd.weight"] = &w.token_embd;
    if (w.pos_embd) out["position_embd.weight"] = &*w.pos_embd;
    return out;
}

// Whether a file tensor (or the model's changed table standing in for it) is pruned: its exact zeros are a mask.
bool tensor_looks_pruned(const SourceTensor& t, const Tensor* table) {
    if (table) {
        const std::vector<float> v = table->to_float();
        return looks_pruned(v.data(), static_cast<int64_t>(v.size()));
    }
    const auto& from = dtype_traits(t.dtype);
    if (!from.to_float || t.numel <= 0) return false;
    std::vector<uint8_t> scratch;
    const uint8_t* src = t.read(scratch);
    std::vector<float> v(static_cast<size_t>(t.numel));
    from.to_float(src, v.data(), t.numel);
    return looks_pruned(v.data(), t.numel);
}

}  // namespace

QuantizeReport write_llm_gguf(const LlmWriteJob& job, const std::string& output) {
    const ModelSource& in = *job.file;
    const int64_t gqa = in.n_head_kv > 0 ? in.n_head / in.n_head_kv : 1;
    const bool has_output = std::any_of(in.tensors.begin(), in.tensors.end(), [](const auto& t) { return t.name == "output.weight"; });
    std::map<std::string, const Linear*> changed;
    std::map<std::string, const Tensor*> norms, tables;
    if (job.model) changed = changed_linears(*job.model, has_output), norms = changed_vectors(*job.model, changed), tables = changed_tables(*job.model);
    // HF llama q/k rows are held in rotate_half order (the model runs them so); GGUF wants Meta's order.
    const bool hf_rope_rows = job.model && job.model->config().rope_pairing == RopePairing::half_split && in.arch == "llama";

    QuantizeReport r;
    r.file_bytes_in = in.file_bytes;
    std::vector<const Linear*> from_model(in.tensors.size(), nullptr);
    std::vector<const Tensor*> norm_from_model(in.tensors.size(), nullptr);
    std::vector<const Tensor*> table_from_model(in.tensors.size(), nullptr);
    size_t used = 0;
    for (size_t i = 0; i < in.tensors.size(); ++i) {
        const SourceTensor& t = in.tensors[i];
        TensorPlan p;
        p.name = t.name, p.shape = t.shape, p.from = t.dtype, p.numel = t.numel, p.bytes_in = t.nbytes;
        p.requested = p.chosen = t.kept;
        p.rule = "kept";
        if (const auto it = changed.find(t.name); it != changed.end()) {
            const Linear& l = *it->second;
            if (std::vector<int64_t>{l.n_out(), l.n_in()} != t.shape)
                throw Unsupported("[save] '" + l.name + "' is now [" + std::to_string(l.n_out()) + ", " + std::to_string(l.n_in()) +
                                  "] but the file's '" + t.name + "' is [" + std::to_string(t.shape.front()) + ", " + std::to_string(t.shape.back()) +
                                  "]; a reshaped layer cannot be written over the file's tensor");
            p.requested = p.chosen = l.int8 ? DType::I8 : l.weight.dtype();
            p.rule = "model: " + l.modified_by;
            from_model[i] = &l;
            ++used;
        } else if (const auto n = norms.find(t.name); n != norms.end()) {
            if (n->second->numel() != t.numel)
                throw Unsupported("[save] the changed norm '" + t.name + "' has " + std::to_string(n->second->numel()) + " values, the file's " +
                                  std::to_string(t.numel));
            p.requested = p.chosen = DType::F32;  // norms and biases are held (and written, as llama.cpp does) in f32
            p.rule = "model: changed " + std::string(t.name.size() > 5 && t.name.compare(t.name.size() - 5, 5, ".bias") == 0 ? "bias" : "norm");
            norm_from_model[i] = n->second;
        } else if (const auto e = tables.find(t.name); e != tables.end() && e->second->shape() != t.shape) {
            throw Unsupported("[save] the changed embedding '" + t.name + "' is " + e->second->shape_string() + ", the file's is not");
        } else if (e != tables.end() && !(job.rules && is_quantizable(t.name, t.shape))) {
            table_from_model[i] = e->second;
            p.from = p.requested = p.chosen = e->second->dtype();
            p.bytes_in = e->second->nbytes();
            p.rule = "model: " + job.model->weights().embeddings_modified_by;
        } else if (job.rules && is_quantizable(t.name, t.shape)) {
            if (e != tables.end()) table_from_model[i] = e->second, p.from = e->second->dtype(), p.bytes_in = e->second->nbytes();
            // A tied model's token embedding is its output head: "output.weight" rules apply to it.
            const RuleTarget target{t.name, layer_of(t.name), in.n_layer, gqa,
                                    !has_output && t.name == "token_embd.weight" ? "output.weight" : ""};
            if (const auto k = deciding_rule<QuantRule>(*job.rules, target); k >= 0) {
                p.requested = (*job.rules)[static_cast<size_t>(k)].type;
                p.rule = (*job.rules)[static_cast<size_t>(k)].text();
                auto [chosen, why] = fit_row_type(p.requested, t.shape.back());
                // A pruned tensor (exact zeros, quant/zero_preserving.h) needs a type whose grids hold an exact 0.
                if (job.keep_zeros && zero_preserving_type(chosen) != chosen && tensor_looks_pruned(in.tensors[i], table_from_model[i])) {
                    why = std::string(dtype_name(chosen)) + " has no exact 0 level for the pruned weights";
                    chosen = zero_preserving_type(chosen);
                }
                p.chosen = chosen;
                p.fallback = why;
                if (!why.empty()) ++r.fallbacks;
            }
        }
        const auto& traits = dtype_traits(p.chosen);
        if (!from_model[i] && !norm_from_model[i] && p.chosen != p.from && (!traits.from_float || !dtype_traits(p.from).to_float))
            throw Unsupported("[quantize] tensor '" + t.name + "': converting " + std::string(dtype_name(p.from)) + " to " +
                              std::string(traits.name) + " is not supported yet");
        p.bytes_out = *dtype_bytes(p.chosen, static_cast<uint64_t>(p.numel));
        r.tensor_bytes_in += p.bytes_in;
        r.tensor_bytes_out += p.bytes_out;
        r.parameters += p.numel;
        r.tensors_by_type[std::string(dtype_name(p.chosen))] += 1;
        r.tensors.push_back(std::move(p));
    }
    if (used != changed.size())
        for (const auto& entry : changed)
            if (std::none_of(in.tensors.begin(), in.tensors.end(), [&](const auto& t) { return t.name == entry.first; }))
                throw Unsupported("[save] '" + entry.second->name + "' was changed in memory but the file has no tensor '" + entry.first +
                                  "' to hold it");

    // A W8A8 Linear's scales beside its I8 weight, under the names cq's model container gives them
    // (models/model_container.h), in the file's q/k row order as the weight.
    std::vector<std::vector<uint8_t>> extra;  // the bytes of r.tensors[in.tensors.size() + j]
    int32_t act_qmax = 0;
    std::vector<const Int8Linear*> int8;
    for (size_t i = 0; i < in.tensors.size(); ++i) {
        const Linear* l = from_model[i];
        if (!l || !l->int8) continue;
        const Int8Linear& q = *l->int8;
        act_qmax = std::max(act_qmax, q.act_qmax);
        int8.push_back(&q);
        const std::string base = in.tensors[i].name.substr(0, in.tensors[i].name.size() - std::string(".weight").size());
        const auto add = [&](const std::string& name, DType type, std::vector<uint8_t> bytes) {
            TensorPlan p;
            p.name = name, p.numel = static_cast<int64_t>(bytes.size() / 4), p.shape = {p.numel};
            p.from = p.requested = p.chosen = type;
            p.rule = "model: " + l->modified_by;
            p.bytes_in = p.bytes_out = bytes.size();
            r.tensor_bytes_out += p.bytes_out;
            r.tensors_by_type[std::string(dtype_name(type))] += 1;
            r.tensors.push_back(std::move(p));
            extra.push_back(std::move(bytes));
        };
        std::vector<uint8_t> scales(q.weight_scale.size() * 4);
        std::memcpy(scales.data(), q.weight_scale.data(), scales.size());
        const bool qk = l->role == LayerRole::attn_q || l->role == LayerRole::attn_k;
        if (hf_rope_rows && qk) {
            std::vector<uint8_t> rows(scales.size());
            unpermute_head_rows(scales.data(), rows.data(), q.n_out, l->role == LayerRole::attn_q ? in.n_head : in.n_head_kv, 4);
            scales = std::move(rows);
        }
        add(base + ".weight_scale", DType::F32, std::move(scales));
        if (q.activations == ActivationQuant::static_per_tensor) {
            std::vector<uint8_t> s(4), z(4);
            std::memcpy(s.data(), &q.input.scale, 4);
            std::memcpy(z.data(), &q.input.zero_point, 4);
            add(base + ".input_scale", DType::F32, std::move(s));
            add(base + ".input_zero_point", DType::I32, std::move(z));
        }
    }

    gguf::Writer w(in.alignment);
    in.write_metadata(w);
    if (job.metadata) job.metadata(w);
    // the activation bits the int8 Linears were built for, which the loader needs for their zero points
    if (act_qmax > 0 && !w.has("cq.w8a8.activation_bits")) w.set_u32("cq.w8a8.activation_bits", act_qmax == 127 ? 7u : 8u);
    container::set_dynamic_granularity(w, int8);
    for (const auto& p : r.tensors) w.add_tensor(p.name, p.shape, p.chosen);
    r.bpw_in = r.parameters ? 8.0 * static_cast<double>(r.tensor_bytes_in) / static_cast<double>(r.parameters) : 0;
    r.bpw_out = r.parameters ? 8.0 * static_cast<double>(r.tensor_bytes_out) / static_cast<double>(r.parameters) : 0;
    if (job.dry_run) {
        r.file_bytes_out = w.file_size();
        return r;
    }

    AtomicFile out(output);
    ThreadPool& pool = ThreadPool::global();
    std::vector<uint8_t> scratch;
    w.write(out, [&](size_t i, std::vector<uint8_t>& buf) {
        const TensorPlan& p = r.tensors[i];
        if (i >= in.tensors.size()) {
            buf = extra[i - in.tensors.size()];
            if (job.progress) job.progress(static_cast<int64_t>(i + 1), static_cast<int64_t>(r.tensors.size()));
            return;
        }
        buf.resize(p.bytes_out);
        if (const Linear* l = from_model[i]) {
            const auto* src = static_cast<const uint8_t*>(l->int8 ? l->int8->weight.data() : l->weight.data());
            const bool q = l->role == LayerRole::attn_q, k = l->role == LayerRole::attn_k;
            if (hf_rope_rows && (q || k)) {
                const int64_t heads = q ? in.n_head : in.n_head_kv;
                unpermute_head_rows(src, buf.data(), l->n_out(), heads, *dtype_bytes(p.chosen, static_cast<uint64_t>(l->n_in())));
            } else {
                std::memcpy(buf.data(), src, p.bytes_out);
            }
        } else if (const Tensor* norm = norm_from_model[i]) {
            const std::vector<float> v = norm->to_float();
            std::memcpy(buf.data(), v.data(), p.bytes_out);
        } else {
            const uint8_t* src = table_from_model[i] ? static_cast<const uint8_t*>(table_from_model[i]->data()) : in.tensors[i].read(scratch);
            if (p.chosen == p.from) {
                std::copy_n(src, p.bytes_in, buf.data());
            } else {
                const int64_t row = p.shape.back(), n_rows = p.numel / std::max<int64_t>(row, 1);
                const auto& from = dtype_traits(p.from);
                const auto& to = dtype_traits(p.chosen);
                const uint64_t in_row = *dtype_bytes(p.from, static_cast<uint64_t>(row));
                const uint64_t out_row = *dtype_bytes(p.chosen, static_cast<uint64_t>(row));
                // llama-quantize runs each type's quantize_<type> (the weighted search where there is one, with the
                // tensor's imatrix entry or without), which for some types differs from the plain codec.
                const bool weighted = has_weighted_quantizer(p.chosen);
                const std::vector<float> importance = weighted && job.importance ? job.importance(p.name) : std::vector<float>{};
                if (!importance.empty() && static_cast<int64_t>(importance.size()) != row)
                    throw InvalidArgument("[quantize] the importance matrix has " + std::to_string(importance.size()) + " values for '" +
                                          p.name + "', whose rows have " + std::to_string(row));
                // A pruned tensor keeps its zeros: blocks where the type's search lost one are searched again with 0 held.
                bool pruned = false;
                if (job.keep_zeros && to.is_quantized) {
                    int64_t zeros = 0;
                    std::vector<float> x(static_cast<size_t>(row));
                    for (int64_t rr = 0; rr < n_rows; ++rr) {
                        from.to_float(src + rr * in_row, x.data(), row);
                        zeros += std::count(x.begin(), x.end(), 0.0f);
                    }
                    pruned = static_cast<double>(zeros) >= kPrunedZeroFraction * static_cast<double>(p.numel);
                }
                pool.parallel_for(n_rows, [&](int64_t r0, int64_t r1) {
                    std::vector<float> x(static_cast<size_t>(row));
                    for (int64_t rr = r0; rr < r1; ++rr) {
                        from.to_float(src + rr * in_row, x.data(), row);
                        require_finite_row(x.data(), row, p.name, rr);
                        const float* imp = importance.empty() ? nullptr : importance.data();
                        if (weighted) quantize_row_weighted(p.chosen, x.data(), buf.data() + rr * out_row, row, imp);
                        else to.from_float(x.data(), buf.data() + rr * out_row, row);
                        if (pruned) restore_row_zeros(p.chosen, x.data(), buf.data() + rr * out_row, row, imp);
                    }
                }, 16);
            }
        }
        if (job.progress) job.progress(static_cast<int64_t>(i + 1), static_cast<int64_t>(r.tensors.size()));
    });
    out.commit();
    r.file_bytes_out = fs::file_size(output);
    return r;
}

}  // namespace cq::quant

namespace cq {

namespace fs = std::filesystem;

void LanguageModel::save(const std::string& path, const SaveOptions& options) const {
    std::error_code ec;
    if (fs::exists(path, ec) && fs::equivalent(path_, path, ec))
        throw InvalidArgument("[save] " + path + " is the file this model was loaded from; cq never overwrites its input");
    const quant::ModelSource file = quant::open_model_source(path_);
    quant::LlmWriteJob job;
    job.file = &file;
    job.model = this;
    job.metadata = options.metadata;
    job.progress = options.progress;
    quant::write_llm_gguf(job, path);
}

}  // namespace cq
