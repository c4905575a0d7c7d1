// profile_memory: a decoder LLM's analytic memory (weights by format, KV cache, workspace) reconciled with the
// process's resident set per phase. Peaks come from VmHWM, reset between phases through /proc/self/clear_refs.
#include "cq/memory_profile.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cctype>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#if defined(__GLIBC__)
#include <malloc.h>
#endif
#include <set>
#include <sstream>

#include "cq/error.h"
#ifndef CQ_MINIMAL
#include "cq/imatrix.h"
#include "cq/train.h"
#endif
#include "cq/kernels.h"
#include "cq/thread_pool.h"

namespace cq {

RssSample read_rss() {
    std::ifstream in("/proc/self/status");
    if (!in) throw IoError("[memory] cannot read /proc/self/status (resident-set figures need Linux's procfs)");
    RssSample s;
    std::string line;
    // Lines look like "VmRSS:\t   12345 kB".
    const auto value = [](const std::string& l) { return static_cast<uint64_t>(std::stoull(l.substr(l.find(':') + 1))) * 1024; };
    while (std::getline(in, line)) {
        if (line.rfind("VmRSS:", 0) == 0) s.rss = value(line);
        else if (line.rfind("VmHWM:", 0) == 0) s.peak = value(line);
        else if (line.rfind("RssAnon:", 0) == 0) s.rss_anon = value(line);
        else if (line.rfind("RssFile:", 0) == 0) s.rss_file = value(line);
    }
    if (s.rss == 0 || s.peak == 0) throw IoError("[memory] /proc/self/status has no VmRSS / VmHWM lines");
    return s;
}

RssByMapping read_rss_by_mapping(const std::string& model_path) {
    std::ifstream in("/proc/self/smaps");
    if (!in) throw IoError("[memory] cannot read /proc/self/smaps");
    std::error_code ec;
    const std::string model = std::filesystem::weakly_canonical(model_path, ec).string();
    const bool dir = std::filesystem::is_directory(model, ec);
    RssByMapping r;
    enum { none, model_file, other_file, anon } kind = none;
    std::string line;
    while (std::getline(in, line)) {
        // A mapping's header: "start-end perms offset dev inode [pathname]"; then "Key: value kB" lines.
        const size_t colon = line.find(':'), dash = line.find('-');
        if (dash != std::string::npos && (colon == std::string::npos || dash < colon) && std::isxdigit(static_cast<unsigned char>(line[0]))) {
            std::istringstream h(line);
            std::string range, perms, offset, dev, inode, path;
            h >> range >> perms >> offset >> dev >> inode;
            std::getline(h >> std::ws, path);
            if (!path.empty() && path[0] == '/' && (dir ? path.rfind(model + "/", 0) == 0 : path == model)) kind = model_file;
            else if (!path.empty() && path[0] == '/') kind = other_file;
            else kind = anon;
        } else if (line.rfind("Rss:", 0) == 0) {
            const uint64_t b = static_cast<uint64_t>(std::stoull(line.substr(4))) * 1024;
            (kind == model_file ? r.model_file : kind == other_file ? r.other_files : r.anonymous) += b;
        }
    }
    return r;
}

uint64_t allocator_free_bytes() {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33))
    return static_cast<uint64_t>(mallinfo2().fordblks);
#else
    return 0;
#endif
}

bool reset_peak_rss() {
    FILE* f = std::fopen("/proc/self/clear_refs", "w");
    if (!f) return false;
    const bool ok = std::fputs("5", f) >= 0;
    return std::fclose(f) == 0 && ok;
}

namespace {

// Calls fn(tensor, linear) for every tensor a decoder holds; `linear` is the Linear whose weight it is (else nullptr).
template <class Fn>
void for_each_weight(const LlmWeights& w, Fn&& fn) {
    const auto norm = [&](const Norm& n) {
        fn(n.weight, nullptr);
        if (n.bias) fn(*n.bias, nullptr);
    };
    const auto linear = [&](const Linear& l) {
        fn(l.weight, &l);
        if (l.bias) fn(*l.bias, nullptr);
    };
    fn(w.token_embd, nullptr);
    if (w.pos_embd) fn(*w.pos_embd, nullptr);
    for (const DecoderBlock& b : w.blocks) {
        norm(b.attn_norm), norm(b.ffn_norm);
        for (const Linear* l : {&b.wq, &b.wk, &b.wv, &b.wo, &b.wqkv, &b.ffn_gate, &b.ffn_up, &b.ffn_down}) linear(*l);
    }
    norm(w.output_norm);
    linear(w.output);
}

void add_tensor(std::map<std::string, FormatBytes>& by, std::set<const void*>& seen, const Tensor& t) {
    if (t.numel() == 0 || !seen.insert(t.data()).second) return;  // tied tables (output = token_embd) count once
    FormatBytes& f = by[std::string(dtype_name(t.dtype()))];
    f.format = std::string(dtype_name(t.dtype()));
    f.tensors += 1;
    f.bytes += t.nbytes();
}

}  // namespace

MemoryProfile profile_memory(const std::string& path, const MemoryProfileOptions& o) {
    if (o.n_prompt < 1 || o.n_gen < 0) throw InvalidArgument("[memory] the prompt needs at least one token and n_gen ≥ 0");
    MemoryProfile p;
    p.model = path;
    const RssSample start = read_rss();
    p.baseline_rss = start.rss;
    p.baseline_mapped = read_rss_by_mapping(path);
    p.startup_peak = start.peak;
    using clock = std::chrono::steady_clock;
    // A phase: reset the peak (if allowed), run, read the peak and the RSS after.
    const auto phase = [&](const std::string& name, const auto& body) {
        MemoryPhase ph;
        ph.name = name;
        p.peak_reset = o.reset_peaks && reset_peak_rss();
        ph.rss_before = read_rss().rss;
        const auto t0 = clock::now();
        body();
        ph.seconds = std::chrono::duration<double>(clock::now() - t0).count();
        const RssSample after = read_rss();
        ph.rss_after = after.rss;
        ph.anon_after = after.rss_anon, ph.file_after = after.rss_file;
        ph.mapped_after = read_rss_by_mapping(path);
        ph.heap_free_after = allocator_free_bytes();
        ph.peak = after.peak;
        p.peak_rss = std::max(p.peak_rss, ph.peak);
        p.phases.push_back(ph);
        return &p.phases.back();
    };
    p.peak_rss = p.startup_peak;

    LoadOptions lo;
    lo.n_ctx = o.n_ctx > 0 ? o.n_ctx : o.n_prompt + o.n_gen;
    if (o.n_prompt + o.n_gen > lo.n_ctx)
        throw InvalidArgument("[memory] " + std::to_string(o.n_prompt) + " prompt + " + std::to_string(o.n_gen) +
                              " generated tokens do not fit a context of " + std::to_string(lo.n_ctx));
    std::unique_ptr<LanguageModel> model;
    phase("load", [&] { model = LanguageModel::load(path, lo); });
    const LlmConfig& c = model->config();
    const LlmWeights& w = model->weights();
    // Weights by format, from the tensors the model holds.
    std::map<std::string, FormatBytes> by;
    std::set<const void*> seen;
    for_each_weight(w, [&](const Tensor& t, const Linear* l) {
        add_tensor(by, seen, t);
        if (l && l->x8) p.packed_bytes += l->x8->size();
    });
    for (auto& [name, f] : by) {
        p.weights.push_back(f);
        p.weight_bytes += f.bytes;
    }
    p.n_layer = c.n_layer, p.n_ctx = model->n_ctx(), p.n_head_kv = c.n_head_kv, p.head_dim = c.head_dim;
    p.kv_bytes = 2ull * static_cast<uint64_t>(p.n_layer * p.n_ctx * p.n_head_kv * p.head_dim) * sizeof(float);
    if (p.kv_bytes != model->kv_cache_bytes())
        throw Error("[memory] the KV cache holds " + std::to_string(model->kv_cache_bytes()) + " bytes, not the " +
                    std::to_string(p.kv_bytes) + " its shape gives");
    p.phases.back().analytic = p.weight_bytes + p.packed_bytes + p.kv_bytes + model->workspace_bytes();

    p.bench.model = path;
    p.bench.isa = std::string(isa_level_name(kernel_table().level));
    p.bench.blas = kernel_table().gemm_f32.name;
    p.bench.threads = ThreadPool::global().size();
    p.bench.weight_bytes = model->weight_bytes();
    const int64_t n_vocab = c.n_vocab;
    std::vector<int32_t> prompt(static_cast<size_t>(o.n_prompt));
    for (size_t i = 0; i < prompt.size(); ++i) prompt[i] = static_cast<int32_t>((i * 2654435761u) % static_cast<uint64_t>(n_vocab));
    std::vector<float> logits;
    uint64_t workspace = model->workspace_bytes();
    const auto grown = [&] {
        const uint64_t now = model->workspace_bytes() + logits.capacity() * sizeof(float);
        const uint64_t g = now - std::min(now, workspace);
        workspace = std::max(workspace, now);
        return g;
    };
    const auto series = [](const std::string& name, double tps) {
        BenchSeries s;
        s.test = name, s.tokens_per_second = {tps}, s.median = s.min = s.max = tps;
        return s;
    };
    MemoryPhase* ph = phase("prompt", [&] {
        logits.assign(static_cast<size_t>(n_vocab), 0.0f);
        model->forward(prompt, 0, logits, false);
    });
    ph->analytic = grown();
    // One cold run each (first touch of the weights included), not bench's warmed-up median.
    p.bench.series.push_back(series("pp" + std::to_string(o.n_prompt) + " (one cold run)", static_cast<double>(o.n_prompt) / ph->seconds));
    if (o.n_gen > 0) {
        ph = phase("generation", [&] {
            int32_t token = static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
            for (int64_t i = 0; i < o.n_gen; ++i) {
                const int32_t one[1] = {token};
                model->forward(one, o.n_prompt + i, logits, false);
                token = static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
            }
        });
        ph->analytic = grown();
        p.bench.series.push_back(series("tg" + std::to_string(o.n_gen) + " (one cold run)", static_cast<double>(o.n_gen) / ph->seconds));
    }
    if (!o.calib_text.empty()) {
#ifdef CQ_MINIMAL
        throw Unsupported("[memory] the calibration phase needs the importance statistics, which the minimal runtime leaves out");
#else
        if (o.calib_ctx > model->n_ctx())
            throw InvalidArgument("[memory] calibration chunks of " + std::to_string(o.calib_ctx) + " tokens do not fit a context of " +
                                  std::to_string(model->n_ctx()));
        ImatrixOptions io;
        io.n_ctx = o.calib_ctx, io.max_chunks = o.calib_chunks;
        uint64_t stats = 0;
        ph = phase("calibration", [&] {
            const Imatrix m = compute_imatrix(*model, o.calib_text, io);
            for (const auto& [name, e] : m.entries) stats += e.sums.size() * sizeof(float) + e.counts.size() * sizeof(int64_t);
        });
        // What the pass holds besides the statistics: the text, read whole, and the logits of one chunk (all positions).
        // Tokenizing the whole text at once also takes the tokenizer's working memory, which no formula here gives.
        std::error_code ec;
        const uint64_t text_bytes = std::filesystem::file_size(o.calib_text, ec);
        ph->analytic = stats + (ec ? 0 : text_bytes) + static_cast<uint64_t>(o.calib_ctx * c.n_vocab) * sizeof(float) + grown();
        p.calib_stats_bytes = stats;
#endif
    }
#ifndef CQ_MINIMAL
    // Held until the profile is taken, so the phase's RSS after includes them (declared after the model: released first).
    std::unique_ptr<LmTrainer> trainer;
    std::unique_ptr<Optimizer> optimizer;
#endif
    if (o.train_batch > 0) {
#ifdef CQ_MINIMAL
        throw Unsupported("[memory] the training-step phase needs the training engine, which the minimal runtime leaves out");
#else
        if (o.train_ctx < 2) throw InvalidArgument("[memory] a training window needs at least 2 tokens, not " + std::to_string(o.train_ctx));
        const int64_t checkpoint_every = parse_checkpoint(o.train_checkpoint);
        TrainingMemory& t = p.training;
        t.batch = o.train_batch, t.ctx = o.train_ctx, t.checkpoint = o.train_checkpoint;
        const auto packed_now = [&] {
            uint64_t b = 0;
            for_each_weight(w, [&](const Tensor&, const Linear* l) { b += l && l->x8 ? l->x8->size() : 0; });
            return b;
        };
        // The model's weights still read from its file's mapping, whose pages are resident (a packed Linear's were handed
        // back at load). When training has made every tensor an owned copy, the model drops the mapping with them.
        const auto mapped_now = [&] {
            uint64_t b = 0;
            std::set<const void*> counted;
            for_each_weight(w, [&](const Tensor& x, const Linear* l) {
                if (x.numel() > 0 && !x.is_owned() && counted.insert(x.data()).second && !(l && l->x8)) b += x.nbytes();
            });
            return b;
        };
        const auto any_mapped = [&] {
            bool any = false;
            for_each_weight(w, [&](const Tensor& x, const Linear*) { any = any || (x.numel() > 0 && !x.is_owned()); });
            return any;
        };
        const uint64_t packed_before = packed_now(), mapped_before = mapped_now();
        const size_t n = static_cast<size_t>(o.train_batch * o.train_ctx);
        std::vector<int32_t> tokens(n), targets(n);
        for (size_t i = 0; i < n; ++i) {
            tokens[i] = static_cast<int32_t>((i * 2654435761u + 7) % static_cast<uint64_t>(n_vocab));
            targets[i] = static_cast<int32_t>(((i + 1) * 2654435761u + 7) % static_cast<uint64_t>(n_vocab));
        }
        ph = phase("training step", [&] {
            trainer = std::make_unique<LmTrainer>(*model);
            trainer->set_checkpoint_every(checkpoint_every);
            optimizer = std::make_unique<Optimizer>(trainer->params(), OptimizerOptions{});
            trainer->forward_backward(tokens, targets, o.train_batch, o.train_ctx);
            optimizer->step(trainer->params(), 1e-4f);
        });
        for (const TrainParam& tp : trainer->params()) t.parameters += tp.numel;
        t.values_bytes = t.grad_bytes = static_cast<uint64_t>(t.parameters) * sizeof(float);
        for (const auto& st : optimizer->state()) t.optimizer_bytes += st.size() * sizeof(float);
        t.activation_bytes = trainer->activation_bytes();
        t.released_packed_bytes = packed_before - std::min(packed_before, packed_now());
        t.released_mapped_bytes = any_mapped() ? 0 : mapped_before;
        // Tokens and targets of the batch besides what the trainer holds.
        ph->analytic = t.total() + 2 * n * sizeof(int32_t);
        p.bench.series.push_back(series("training step, " + std::to_string(o.train_batch) + " × " + std::to_string(o.train_ctx) +
                                            " tokens (one cold run)",
                                        static_cast<double>(n) / ph->seconds));
#endif
    }
    p.workspace_bytes = workspace;
    const RssSample end = read_rss();
    p.final_rss = end.rss, p.final_rss_anon = end.rss_anon, p.final_rss_file = end.rss_file;
    p.weights_resident = p.phases.back().mapped_after.model_file;
    return p;
}

namespace {
std::string mib(uint64_t b) {
    char s[32];
    std::snprintf(s, sizeof s, "%.2f", static_cast<double>(b) / (1024.0 * 1024.0));
    return s;
}
std::string signed_mib(int64_t b) {
    char s[32];
    std::snprintf(s, sizeof s, "%+.2f", static_cast<double>(b) / (1024.0 * 1024.0));
    return s;
}
}  // namespace

std::string memory_profile_to_markdown(const MemoryProfile& p) {
    std::ostringstream out;
    out << "Memory of " << p.model << " (MiB)\n\n| analytic | MiB |\n|---|---:|\n";
    for (const auto& f : p.weights) out << "| weights " << f.format << " (" << f.tensors << " tensors) | " << mib(f.bytes) << " |\n";
    if (p.packed_bytes) out << "| packed copies for the GEMM kernels | " << mib(p.packed_bytes) << " |\n";
    out << "| KV cache (" << p.n_layer << " layers × " << p.n_ctx << " ctx × " << p.n_head_kv << " kv heads × " << p.head_dim
        << " × 2 × f32) | " << mib(p.kv_bytes) << " |\n";
    out << "| activations / workspace | " << mib(p.workspace_bytes) << " |\n";
    out << "| **total** | **" << mib(p.analytic_total()) << "** |\n\n";
    if (p.training.parameters > 0) {
        const TrainingMemory& t = p.training;
        out << "| training step (" << t.batch << " × " << t.ctx << " tokens, checkpoint " << t.checkpoint << ", " << t.parameters
            << " parameters) | MiB |\n|---|---:|\n";
        out << "| f32 trainable tensors | " << mib(t.values_bytes) << " |\n| gradients | " << mib(t.grad_bytes) << " |\n";
        out << "| AdamW moments | " << mib(t.optimizer_bytes) << " |\n| activations saved for the backward | " << mib(t.activation_bytes) << " |\n";
        if (t.released_packed_bytes) out << "| packed copies released | −" << mib(t.released_packed_bytes) << " |\n";
        if (t.released_mapped_bytes) out << "| the model file's weight pages, unmapped (every tensor is now a copy) | −" << mib(t.released_mapped_bytes) << " |\n";
        out << "| **total** | **" << mib(t.total()) << "** |\n\n";
    }
    out << "| phase | RSS before | RSS after | Δ RSS | analytic Δ | anon after | of which allocator-free | model file after | libraries after | peak"
        << (p.peak_reset ? " (own)" : " (so far)") << " | s |\n";
    out << "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n";
    for (const auto& ph : p.phases) {
        char s[32];
        std::snprintf(s, sizeof s, "%.3f", ph.seconds);
        out << "| " << ph.name << " | " << mib(ph.rss_before) << " | " << mib(ph.rss_after) << " | "
            << signed_mib(static_cast<int64_t>(ph.rss_after) - static_cast<int64_t>(ph.rss_before)) << " | " << mib(ph.analytic) << " | "
            << mib(ph.mapped_after.anonymous) << " | " << mib(ph.heap_free_after) << " | " << mib(ph.mapped_after.model_file) << " | " << mib(ph.mapped_after.other_files) << " | "
            << mib(ph.peak) << " | " << s << " |\n";
    }
    // Reconciled by what is mapped: the model file against the weights, anonymous memory against what the profile
    // allocates (KV cache, workspace, packed copies), libraries against nothing (their code pages in at first use).
    const RssByMapping& a = p.baseline_mapped;
    const RssByMapping& z = p.phases.back().mapped_after;
    const auto grew = [](uint64_t to, uint64_t from) { return static_cast<int64_t>(to) - static_cast<int64_t>(from); };
    out << "\n| since before load | measured | analytic |\n|---|---:|---:|\n";
    const TrainingMemory& t = p.training;
    const bool unmapped = t.released_mapped_bytes > 0;
    if (unmapped) {
        out << "| model file resident | " << signed_mib(grew(z.model_file, a.model_file)) << " | 0.00 (unmapped: training made every tensor an f32 copy) |\n";
    } else {
        out << "| model file resident | " << signed_mib(grew(z.model_file, a.model_file)) << " | " << mib(p.weight_bytes) << " (weights"
            << (p.packed_bytes ? ", less the packed tensors' pages handed back" : "") << ") |\n";
    }
    const uint64_t anon_analytic = p.kv_bytes + p.workspace_bytes + p.packed_bytes +
                                   (t.parameters > 0 ? t.values_bytes + t.grad_bytes + t.optimizer_bytes + t.activation_bytes : 0);
    out << "| anonymous | " << signed_mib(grew(z.anonymous, a.anonymous)) << " | " << mib(anon_analytic - t.released_packed_bytes)
        << " (KV cache + workspace" << (p.packed_bytes ? " + packed copies" : "")
        << (t.parameters > 0 ? " + the training step's f32 tensors, gradients, AdamW moments and activations" : "")
        << "; the rest: BLAS buffers, thread stacks, allocator) |\n";
    out << "| libraries and executable | " << signed_mib(grew(z.other_files, a.other_files)) << " | — (code paged in at first use) |\n";
    out << "| freed, kept by the allocator | " << mib(p.phases.back().heap_free_after) << " | — (part of anonymous: no live object holds it) |\n";
    out << "\nbaseline RSS " << mib(p.baseline_rss) << ", peak RSS " << mib(p.peak_rss) << ", final RSS " << mib(p.final_rss)
        << " (anonymous " << mib(p.final_rss_anon) << ", file-backed " << mib(p.final_rss_file) << "); baseline + analytic "
        << mib(p.baseline_rss + p.analytic_total()) << "\n";
    return out.str();
}

}  // namespace cq
