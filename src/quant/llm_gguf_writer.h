// The one writer of decoder-LLM GGUF files: the file's tensors in its order (llama.cpp's names, layouts and
// metadata, via quant/model_source.h), each written as the rules decide (quantize), as the model holds it
// where a pass changed it in memory (Linear::modified_by), or as the file had it. cq quantize and
// LanguageModel::save are both this function.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "cq/llm.h"
#include "cq/quantize.h"
#include "quant/model_source.h"

namespace cq::quant {

struct LlmWriteJob {
    const ModelSource* file = nullptr;        // what the model was loaded from
    const LanguageModel* model = nullptr;     // null: the file alone; else its changed Linears override the file
    const std::vector<QuantRule>* rules = nullptr;  // null: no quantization (tensors keep their type)
    std::function<void(gguf::Writer&)> metadata;    // after the file's own metadata
    // The importance row (an imatrix entry: mean x² per input channel) of a tensor the rules quantize, by its GGUF
    // name; empty: none. Types with an importance-weighted search (cq/weighted_quant.h) use it.
    std::function<std::vector<float>(const std::string& name)> importance;
    std::function<void(int64_t done, int64_t total)> progress;
    // Tensors that look pruned (quant/zero_preserving.h) keep their exact zeros through quantization.
    bool keep_zeros = true;
    bool dry_run = false;  // plan and size only: file_bytes_out is the size the file would have; nothing is written
};

/// The type llama.cpp falls back to when rows of `row` values are not whole blocks of `type` (`type` itself when
/// they are), and why.
std::pair<DType, std::string> fit_row_type(DType type, int64_t row);

/// Plans every tensor, then writes `output` atomically. Returns the plan and sizes (report.type and
/// input fields are the caller's).
QuantizeReport write_llm_gguf(const LlmWriteJob& job, const std::string& output);

}  // namespace cq::quant
