// llama.cpp's calibration chunking of a text file (llama-imatrix, and cq stats after it): the whole text
// tokenized with BOS, cut into non-overlapping chunks of n_ctx tokens, the first token of each replaced by BOS,
// each chunk one forward pass with every position's logits (so every Linear sees every token).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "cq/eval.h"
#include "cq/llm.h"

namespace cq {

/// The chunks themselves: the text of `text_path` tokenized as run_text_chunks does, cut into at most max_chunks
/// (−1: all) chunks of n_ctx tokens, each starting with BOS where the tokenizer adds one. Same errors.
std::vector<std::vector<int32_t>> text_chunk_tokens(const LanguageModel& model, const std::string& text_path, int64_t n_ctx,
                                                    int64_t max_chunks, int64_t min_tokens, std::string_view op);

/// Runs `model` over the chunks of `text_path` (one trailing newline dropped, as llama.cpp's -f does) for the
/// observers attached to it. At most max_chunks (−1: all) chunks; InvalidArgument naming `op` when n_ctx is
/// outside [2, the model's context] or the text holds fewer than min_tokens tokens. Returns the chunks run.
int64_t run_text_chunks(LanguageModel& model, const std::string& text_path, int64_t n_ctx, int64_t max_chunks,
                        int64_t min_tokens, std::string_view op, const ProgressFn& progress);

}  // namespace cq
