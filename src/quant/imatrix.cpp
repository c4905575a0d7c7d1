// cq imatrix: llama-imatrix's collection through the model spine. An observer on every block Linear (and the
// output head with process_output, unless it is tied to the token embedding, whose weight llama.cpp names
// token_embd.weight and never collects) adds, per input channel, x² of every row of every chunk, and counts the
// rows. llama-imatrix requests every position's logits, so every token of every chunk reaches every Linear,
// the last block's FFN and the head included. Sums are added in f32, row by row in token order, as llama-imatrix
// adds them: over a whole calibration text (123k tokens at ctx 128) double sums would differ from its values by
// up to 3e-4 relative, f32 ones by 2.5e-5. The order does not depend on the thread count.
#include "cq/imatrix.h"

#include <algorithm>

#include "cq/error.h"
#include "cq/llm.h"
#include "eval/text_chunks.h"

namespace cq {
namespace {

struct Accumulator {
    std::vector<float> sum_sq;
    int64_t rows = 0;

    void add(const LinearEvent& e) {
        const int64_t n_in = e.layer.n_in();
        if (sum_sq.empty()) sum_sq.assign(static_cast<size_t>(n_in), 0.0f);
        for (int64_t r = 0; r < e.rows; ++r) {
            if (e.row_mask && e.row_mask[r] == 0) continue;
            const float* x = e.x + r * n_in;
            for (int64_t c = 0; c < n_in; ++c) sum_sq[static_cast<size_t>(c)] += x[c] * x[c];
            ++rows;
        }
    }
};

// The llama.cpp weight name whose activations llama-imatrix collects for this Linear, or "" if it collects none.
std::string collected_weight_name(const Linear& l, bool process_output) {
    if (l.block >= 0 && l.name.rfind("blk.", 0) == 0) return l.name + ".weight";
    // The head: its own tensor is "output" (GGUF) or "lm_head" (HF); a tied head runs on the token embedding.
    const bool own_head = l.role == LayerRole::lm_head && (l.source_name == "output" || l.source_name == "lm_head");
    if (process_output && own_head) return "output.weight";
    return "";
}

}  // namespace

Imatrix compute_imatrix(Model& model, const std::string& text_path, const ImatrixOptions& o, const ProgressFn& progress) {
    if (o.n_ctx < 1 || o.n_ctx > INT32_MAX) throw InvalidArgument("[imatrix] --ctx " + std::to_string(o.n_ctx) + " must be positive");
    Imatrix m = combine_imatrix_files(o.in_files, static_cast<int32_t>(o.n_ctx));
    if (text_path.empty()) {
        if (o.in_files.empty()) throw InvalidArgument("[imatrix] give a calibration text (-f) or imatrix files to combine (--in-file)");
        return m;
    }
    auto* llm = dynamic_cast<LanguageModel*>(&model);
    if (!llm) throw Unsupported("[imatrix] importance matrices are collected for decoder LLMs; this model is an encoder");

    std::vector<Linear*> collected;
    std::vector<std::string> names;
    for (Linear* l : model.linears()) {
        std::string name = collected_weight_name(*l, o.process_output);
        if (name.empty()) continue;
        collected.push_back(l);
        names.push_back(std::move(name));
    }
    std::vector<Accumulator> acc(collected.size());
    std::vector<ObserverId> ids;
    for (size_t i = 0; i < collected.size(); ++i)
        ids.push_back(model.observe(*collected[i], [a = &acc[i]](const LinearEvent& e) { a->add(e); }));
    try {
        // llama-imatrix needs two chunks' worth of tokens.
        run_text_chunks(*llm, text_path, o.n_ctx, o.max_chunks, 2 * o.n_ctx, "imatrix", progress);
    } catch (...) {
        for (const ObserverId id : ids) model.remove_observer(id);
        throw;
    }
    for (const ObserverId id : ids) model.remove_observer(id);

    Imatrix run;
    run.chunk_size = m.chunk_size;
    run.datasets = {text_path};
    for (size_t i = 0; i < collected.size(); ++i) {
        if (acc[i].rows == 0) continue;
        ImatrixEntry e;
        e.sums.assign(acc[i].sum_sq.begin(), acc[i].sum_sq.end());
        e.counts = {acc[i].rows};
        run.entries.emplace(names[i], std::move(e));
    }
    merge_imatrix(m, run);
    return m;
}

}  // namespace cq
