// The calibration chunk loop shared by cq stats and cq imatrix (see text_chunks.h).
#include "eval/text_chunks.h"

#include <algorithm>
#include <vector>

#include "cq/error.h"
#include "cq/mapped_file.h"

namespace cq {

std::vector<std::vector<int32_t>> text_chunk_tokens(const LanguageModel& model, const std::string& path, int64_t n_ctx,
                                                    int64_t max_chunks, int64_t min_tokens, std::string_view op) {
    const std::string tag = "[" + std::string(op) + "] ";
    std::string text = read_text_file(path, 1ull << 30);
    if (!text.empty() && text.back() == '\n') text.pop_back();
    const Tokenizer& tok = model.tokenizer();
    if (n_ctx < 2 || n_ctx > model.n_ctx())
        throw InvalidArgument(tag + "--ctx " + std::to_string(n_ctx) + " must lie in [2, " + std::to_string(model.n_ctx()) + "] for this model");
    const bool add_bos = tok.adds_bos();
    const std::vector<int32_t> tokens = tok.encode(text, add_bos);
    const int64_t n_tokens = static_cast<int64_t>(tokens.size());
    if (n_tokens < std::max(min_tokens, n_ctx))
        throw InvalidArgument(tag + path + " has " + std::to_string(n_tokens) + " tokens, fewer than the " +
                              std::to_string(std::max(min_tokens, n_ctx)) + " that --ctx " + std::to_string(n_ctx) + " needs");
    int64_t n_chunks = n_tokens / n_ctx;
    if (max_chunks > 0) n_chunks = std::min(n_chunks, max_chunks);
    std::vector<std::vector<int32_t>> chunks(static_cast<size_t>(n_chunks));
    for (int64_t c = 0; c < n_chunks; ++c) {
        auto& chunk = chunks[static_cast<size_t>(c)];
        chunk.assign(tokens.begin() + c * n_ctx, tokens.begin() + (c + 1) * n_ctx);
        if (add_bos) chunk[0] = tok.bos_id();
    }
    return chunks;
}

int64_t run_text_chunks(LanguageModel& model, const std::string& path, int64_t n_ctx, int64_t max_chunks, int64_t min_tokens,
                        std::string_view op, const ProgressFn& progress) {
    const auto chunks = text_chunk_tokens(model, path, n_ctx, max_chunks, min_tokens, op);
    const int64_t n_chunks = static_cast<int64_t>(chunks.size());
    std::vector<float> logits(static_cast<size_t>(n_ctx * model.config().n_vocab));
    for (int64_t c = 0; c < n_chunks; ++c) {
        model.forward(chunks[static_cast<size_t>(c)], 0, logits, true);
        if (progress) progress(c + 1, n_chunks, 0.0);
    }
    return n_chunks;
}

}  // namespace cq
