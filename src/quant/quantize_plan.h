// Internal pieces cq quantize's two paths share: the rules a QuantizeOptions names (preset, --rules plan,
// --tensor-type), and the one write of a quantized LLM GGUF with provenance (streamed from the file, or from a
// model that calibrated passes changed in memory).
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "cq/llm.h"
#include "cq/quantize.h"

namespace cq::gguf {
class Writer;
}

namespace cq::quant {

/// preset → rules_file lines → --tensor-type rules (later rules win). InvalidArgument for an unknown preset or
/// a bad rule (naming the file and line).
std::vector<QuantRule> options_rules(const QuantizeOptions& o, const QuantPreset** preset);
/// "PATTERN=TYPE" lines (blank lines and '#' comments skipped), as --dump-rules writes them.
std::vector<QuantRule> read_rules_file(const std::string& path);
void write_rules_file(const std::string& path, const std::vector<QuantRule>& rules, const std::string& header);

struct QuantizedWrite {
    std::string input;                      // the model's file (GGUF or HF directory)
    const LanguageModel* model = nullptr;   // its changed Linears / norms are written as held
    const QuantPreset* preset = nullptr;
    std::vector<QuantRule> rules;
    std::function<std::vector<float>(const std::string&)> importance;  // per tensor; may be empty
    std::function<void(gguf::Writer&)> metadata;                       // after cq.quantize.*
    bool keep_zeros = true;  // QuantizeOptions::keep_zeros
    bool dry_run = false;
};

/// Writes (or with dry_run sizes) the GGUF; fills the report's sizes, plan, input and sha fields.
QuantizeReport write_quantized(const QuantizedWrite& job, const std::string& output, const ProgressFn& progress);

/// The calibrated methods (GPTQ, AWQ, in-process imatrix) and automatic mixed precision: see quantize.h.
QuantizeReport quantize_calibrated(const std::string& input, const std::string& output, const QuantizeOptions& o,
                                   QuantMethod method, const ProgressFn& progress);

}  // namespace cq::quant
