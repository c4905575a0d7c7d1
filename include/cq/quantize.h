// Weight quantization of a whole model: which tensor gets which format is decided by ordered rules
// (glob pattern [+ layer selector] → type, later rules win); presets are named rule lists in the
// spirit of llama.cpp's mixes. Tensors stream from the input mapping (or a model a pass changed in memory)
// to an atomic GGUF output.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "cq/dtype.h"
#include "cq/eval.h"
#include "cq/rules.h"

namespace cq {

/// A rule of the one rule engine (cq/rules.h) whose action is a weight type.
struct QuantRule {
    RuleScope scope;  // over GGUF tensor names; blocks by the N in "blk.N."
    DType type;
    std::string text() const;  // "blk.*.ffn_down.weight[more_bits]=q6_K"
};

struct QuantPreset {
    std::string name;  // "q4_k_m"
    std::string description;
    uint32_t llama_ftype;  // general.file_type as llama.cpp numbers it
    std::vector<QuantRule> rules;
};

/// The named presets (plain types such as q4_0 are presets too).
const std::vector<QuantPreset>& quant_presets();
const QuantPreset* find_preset(const std::string& name);
/// "PATTERN=TYPE" → a rule for all layers. InvalidArgument naming the bad spec.
QuantRule parse_tensor_type_rule(const std::string& spec);

struct QuantizeOptions {
    std::string type = "q8_0";              // preset name or plain type
    std::vector<std::string> tensor_types;  // extra "PATTERN=TYPE" rules, applied after the preset
};

struct TensorPlan {
    std::string name;
    std::vector<int64_t> shape;
    DType from = DType::F32, requested = DType::F32, chosen = DType::F32;
    std::string rule;      // the rule that decided, or "kept" for tensors that are never quantized
    std::string fallback;  // why `chosen` differs from `requested` ("" if it does not)
    uint64_t bytes_in = 0, bytes_out = 0;
    int64_t numel = 0;
};

struct QuantizeReport {
    std::string input, output, type, input_sha256;
    std::vector<TensorPlan> tensors;
    uint64_t file_bytes_in = 0, file_bytes_out = 0;
    uint64_t tensor_bytes_in = 0, tensor_bytes_out = 0;
    int64_t parameters = 0;
    double bpw_in = 0, bpw_out = 0;
    std::map<std::string, int64_t> tensors_by_type;
    int64_t fallbacks = 0;
    double seconds = 0;
};

/// Plans and writes the quantized model. IN: a GGUF file, or an HF LLM directory (llama / mistral / gpt2),
/// converted as llama.cpp's convert_hf_to_gguf.py would; OUT: a GGUF file (never the input).
QuantizeReport quantize_model(const std::string& input, const std::string& output, const QuantizeOptions& options,
                              const ProgressFn& progress = {});

class LanguageModel;
/// The same, for a model that passes have changed in memory (GPTQ, AWQ, quantize_linear, ...): each Linear
/// they changed (Linear::modified_by) is written as the model holds it and reported with the pass's name;
/// every other tensor is read from the model's file and quantized by the rules.
QuantizeReport quantize_model(const LanguageModel& model, const std::string& output, const QuantizeOptions& options,
                              const ProgressFn& progress = {});

}  // namespace cq
