// The model-level pruning pass (cq/prune.h): every Linear inside the transformer blocks, block by block. Block l runs on
// the hidden states the already-pruned blocks 0…l−1 produce for each calibration chunk; observers collect its Linears'
// input statistics (Wanda: Σx² per channel; SparseGPT: the Hessian Σxxᵀ, as GPTQ's pass does), its Linears are pruned,
// and the block is re-run with its pruned weights to feed the next. Only one block's activations per chunk are held.
// The stream, the Hessians and the chunking are quant/block_calibration.h's, shared with the calibrated quantizers.
// Magnitude needs no data. The head and the embeddings stay dense, as in the Wanda and SparseGPT papers.
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>

#include "cq/error.h"
#include "cq/io/gguf_writer.h"
#include "cq/prune.h"
#include "quant/block_calibration.h"

namespace cq {
namespace {

void validate(const PruneOptions& o) {
    o.target.validate("prune");
    if (o.method != PruneMethod::magnitude && o.calib.text_path.empty())
        throw InvalidArgument("[prune] --method " + std::string(prune_method_name(o.method)) + " needs calibration text (--calib TEXT)");
    if (o.method != PruneMethod::magnitude && o.scope != PruneScope::layer && o.scope != PruneScope::row)
        throw InvalidArgument("[prune] --scope " + std::string(prune_scope_name(o.scope)) + " applies to --method magnitude only (" +
                              std::string(prune_method_name(o.method)) + " compares weights within each output row)");
    if (o.method == PruneMethod::sparsegpt) {
        if (!(o.sparsegpt.damp >= 0)) throw InvalidArgument("[prune] damp must be ≥ 0");
        if (o.sparsegpt.block_size <= 0) throw InvalidArgument("[prune] the SparseGPT block size must be positive");
    }
}

void check_linears(LanguageModel& m, const PruneOptions& o) {
    for (int64_t l = 0; l < m.config().n_layer; ++l)
        for (const Linear* lin : quant::block_linears(m, l)) {
            if (lin->transposed)
                throw Unsupported("[prune] '" + lin->name + "' is stored [in, out] (a GPT-2 HF directory): convert it to GGUF first (cq quantize IN F32.gguf --type f32)");
            if (o.target.is_nm() && lin->n_in() % o.target.m != 0)
                throw InvalidArgument("[prune] '" + lin->name + "' has rows of " + std::to_string(lin->n_in()) + " weights, not a whole number of " +
                                      o.target.describe() + " groups");
        }
}

PrunedTensor count(const Linear& lin, const std::vector<float>& w) {
    PrunedTensor t;
    t.name = lin.name + ".weight";
    t.n_out = lin.n_out(), t.n_in = lin.n_in();
    for (float v : w) t.zeros += v == 0.0f;
    t.sparsity = static_cast<double>(t.zeros) / static_cast<double>(w.size());
    return t;
}

std::string by(const PruneOptions& o) { return "prune:" + std::string(prune_method_name(o.method)); }

void prune_magnitude(LanguageModel& m, const PruneOptions& o, PruneReport& r) {
    std::vector<Linear*> lins;
    for (int64_t l = 0; l < m.config().n_layer; ++l)
        for (Linear* lin : quant::block_linears(m, l)) lins.push_back(lin);
    const auto abs_of = [](std::vector<float> w) {
        for (float& v : w) v = std::fabs(v);
        return w;
    };
    if (o.scope == PruneScope::global && !o.target.is_nm()) {
        // One threshold over every pruned Linear: their |w| side by side in one comparison group.
        std::vector<float> all;
        for (Linear* lin : lins) {
            const auto a = abs_of(lin->weight.to_float());
            all.insert(all.end(), a.begin(), a.end());
        }
        const auto mask = prune_mask(all, 1, static_cast<int64_t>(all.size()), o.target, false);
        all.clear();
        size_t off = 0;
        for (Linear* lin : lins) {
            std::vector<float> w = lin->weight.to_float();
            for (size_t i = 0; i < w.size(); ++i)
                if (mask[off + i]) w[i] = 0.0f;
            off += w.size();
            r.tensors.push_back(count(*lin, w));
            m.set_weight(*lin, quant::f32_tensor(w, {lin->n_out(), lin->n_in()}), by(o));
        }
        return;
    }
    for (size_t i = 0; i < lins.size(); ++i) {
        Linear* lin = lins[i];
        if (o.stage_progress) o.stage_progress("prune: layers", static_cast<int64_t>(i), static_cast<int64_t>(lins.size()));
        std::vector<float> w = lin->weight.to_float();
        const auto mask = prune_mask(abs_of(w), lin->n_out(), lin->n_in(), o.target, o.scope == PruneScope::row);
        for (size_t k = 0; k < w.size(); ++k)
            if (mask[k]) w[k] = 0.0f;
        r.tensors.push_back(count(*lin, w));
        m.set_weight(*lin, quant::f32_tensor(w, {lin->n_out(), lin->n_in()}), by(o));
    }
}

void prune_calibrated(LanguageModel& m, const PruneOptions& o, PruneReport& r) {
    const quant::Calibration c = quant::cut_calibration(m, o.calib, false, "prune");
    r.calibration = c.report;
    quant::Stream s = quant::embed_all(m, c.stats);
    const int64_t L = m.config().n_layer;
    const bool sgpt = o.method == PruneMethod::sparsegpt;
    for (int64_t l = 0; l < L; ++l) {
        if (o.stage_progress) o.stage_progress("prune: blocks", l, L);
        // The Hessians of the block's four inputs (SparseGPT's; Wanda's ‖X_j‖₂ is √H_jj, and both report tr(EHEᵀ)).
        // Sequential: one group of Linears (those reading one input) at a time, each measured on the inputs the
        // block's already-pruned groups give it; otherwise every input is measured once on the dense block.
        const std::vector<Linear*> lins = quant::block_linears(m, l);
        quant::BlockStats stats;
        quant::BlockStats slots;  // only its addresses: which input a Linear reads
        for (size_t i = 0; i < lins.size(); ++i) {
            const bool first_of_group = i == 0 || &slots.of(*lins[i]) != &slots.of(*lins[i - 1]);
            if (i == 0 || (o.sequential && first_of_group)) {
                stats = quant::BlockStats{};
                quant::run_block(m, l, s, false, &stats);
            }
            Linear* lin = lins[i];
            const quant::Hessian& H = stats.of(*lin);
            const std::vector<float> w = lin->weight.to_float();
            const int64_t n_out = lin->n_out(), n_in = lin->n_in();
            std::vector<float> out;
            if (sgpt) {
                out = std::move(sparsegpt_prune(w, n_out, n_in, H.h, o.target, o.sparsegpt).weights);
            } else if (o.method == PruneMethod::magnitude) {
                // Magnitude needs no data; given calibration text it runs here only so its output errors are reported.
                std::vector<float> a(w.size());
                for (size_t k = 0; k < w.size(); ++k) a[k] = std::fabs(w[k]);
                const auto mask = prune_mask(a, n_out, n_in, o.target, o.scope == PruneScope::row);
                out = w;
                for (size_t k = 0; k < out.size(); ++k)
                    if (mask[k]) out[k] = 0.0f;
            } else {
                std::vector<float> norms(static_cast<size_t>(n_in), 0.0f);
                for (int64_t j = 0; j < n_in && H.n == n_in; ++j) norms[static_cast<size_t>(j)] = static_cast<float>(std::sqrt(H.h[static_cast<size_t>(j * n_in + j)]));
                const auto mask = prune_mask(wanda_scores(w, n_out, n_in, norms), n_out, n_in, o.target, true);
                out = w;
                for (size_t k = 0; k < out.size(); ++k)
                    if (mask[k]) out[k] = 0.0f;
            }
            double rel = -1;
            if (H.rows > 0) {
                std::vector<float> e(w.size());
                for (size_t k = 0; k < w.size(); ++k) e[k] = w[k] - out[k];
                const double dense = quant::output_error(H, w.data(), n_out);
                rel = dense > 0 ? quant::output_error(H, e.data(), n_out) / dense : 0.0;
            }
            PrunedTensor t = count(*lin, out);
            t.rel_error = rel;
            r.tensors.push_back(t);
            m.set_weight(*lin, quant::f32_tensor(out, {n_out, n_in}), by(o));
        }
        quant::run_block(m, l, s, true, nullptr);
    }
    if (o.stage_progress) o.stage_progress("prune: blocks", L, L);
}

uint64_t path_bytes(const std::string& path) {
    namespace fs = std::filesystem;
    std::error_code ec;
    if (fs::is_regular_file(path, ec)) return fs::file_size(path, ec);
    uint64_t n = 0;
    if (fs::is_directory(path, ec))
        for (const auto& e : fs::directory_iterator(path, ec))
            if (e.is_regular_file(ec)) n += e.file_size(ec);
    return n;
}

}  // namespace

PruneReport prune_model(LanguageModel& m, const PruneOptions& o) {
    const auto t0 = std::chrono::steady_clock::now();
    validate(o);
    check_linears(m, o);
    PruneReport r;
    r.input = m.path();
    r.method = std::string(prune_method_name(o.method));
    r.target = o.target.describe();
    r.scope = o.method == PruneMethod::magnitude && !o.target.is_nm() ? std::string(prune_scope_name(o.scope)) : "row";
    // Magnitude with calibration text (and not global) goes through the block pass too, for its output errors.
    if (o.method == PruneMethod::magnitude && (o.calib.text_path.empty() || o.scope == PruneScope::global)) prune_magnitude(m, o, r);
    else prune_calibrated(m, o, r);
    for (const auto& t : r.tensors) r.zeros += t.zeros, r.pruned_params += t.n_out * t.n_in;
    for (const Linear* l : static_cast<const LanguageModel&>(m).linears()) r.model_params += l->n_out() * l->n_in();
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return r;
}

PruneReport prune_model_file(const std::string& input, const std::string& output, const PruneOptions& o) {
    validate(o);  // before anything is loaded or written
    if (output.empty()) throw InvalidArgument("[prune] no output path (-o OUT.gguf)");
    std::error_code ec1, ec2;
    const auto in_path = std::filesystem::weakly_canonical(input, ec1), out_path = std::filesystem::weakly_canonical(output, ec2);
    if (!ec1 && !ec2 && in_path == out_path)
        throw InvalidArgument("[prune] the output " + output + " is the input");
    auto m = quant::load_for_calibration(input, o.calib);
    PruneReport r = prune_model(*m, o);
    SaveOptions so;
    so.metadata = [&](gguf::Writer& w) {
        w.set_string("cq.prune.method", r.method);
        w.set_string("cq.prune.target", r.target);
        w.set_string("cq.prune.scope", r.scope);
        if (r.calibration) {
            w.set_string("cq.prune.calib.file", r.calibration->text_path);
            w.set_string("cq.prune.calib.sha256", r.calibration->text_sha256);
            w.set_u32("cq.prune.calib.chunks", static_cast<uint32_t>(r.calibration->chunks));
            w.set_u32("cq.prune.calib.ctx", static_cast<uint32_t>(r.calibration->n_ctx));
        }
    };
    m->save(output, so);
    r.input = input, r.output = output;
    r.file_bytes_in = path_bytes(input);
    r.file_bytes_out = path_bytes(output);
    return r;
}

}  // namespace cq
