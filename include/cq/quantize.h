// Weight quantization of a whole model: which tensor gets which format is decided by ordered rules
// (glob pattern [+ layer selector] → type, later rules win); presets are named rule lists in the
// spirit of llama.cpp's mixes. Tensors stream from the input mapping (or a model a pass changed in memory)
// to an atomic GGUF output.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string_view>
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

/// How weights are rounded to their types. rtn: each type's own codec (llama-quantize without an imatrix);
/// imatrix: the importance-weighted searches with Σx² from calibration text (or --imatrix FILE); gptq: GPTQ's
/// error-compensating column sweep on calibrated Hessians, block by block; awq: activation-aware per-channel scales
/// folded into the preceding norm / Linear, then the weighted searches; awq_gptq: both; automatic: gptq or
/// awq_gptq, whichever has the lower KL-divergence on held-out calibration chunks.
enum class QuantMethod { rtn, imatrix, gptq, awq, awq_gptq, automatic };
std::string_view quant_method_name(QuantMethod m);
/// The method called `name` ("rtn", "imatrix", "gptq", "awq", "awq+gptq", "auto"); InvalidArgument naming the choices.
QuantMethod parse_quant_method(const std::string& name);

/// Calibration text for the calibrated methods, cut as llama-imatrix cuts it (BOS-first chunks of n_ctx tokens).
struct CalibrationOptions {
    std::string text_path;    // empty: none (the methods that need it refuse to run)
    int64_t n_ctx = 512;      // tokens per chunk
    int64_t max_chunks = 128;  // -1: every whole chunk; 128 sequences is GPTQ's and AutoAWQ's usual amount
};

struct QuantizeOptions {
    std::string type = "q8_0";              // preset name or plain type
    std::vector<std::string> tensor_types;  // extra "PATTERN=TYPE" rules, applied after the preset
    std::string imatrix_file;               // an importance matrix (llama-imatrix's GGUF or .dat, or cq imatrix's)
    std::optional<QuantMethod> method;      // unset: rtn, or with calibration text: automatic (budget) / imatrix
    CalibrationOptions calib;
    // Automatic mixed precision: per-tensor types chosen by measured sensitivity under a budget (at most one of
    // the first two), or the smallest plan whose predicted KL-divergence stays under max_kld.
    uint64_t target_size = 0;   // bytes of the output file
    double target_bpw = 0;      // bits per weight over the quantized tensors' parameters, as the report counts them
    double max_kld = 0;
    std::string rules_file;       // replay a plan: rules ("PATTERN=TYPE" lines) instead of measuring
    std::string dump_rules_file;  // write the plan's rules to this file
    double gptq_damp = 0.01;      // GPTQ: damping, a fraction of the mean Hessian diagonal
    bool gptq_act_order = false;  // GPTQ: columns in order of decreasing Hessian diagonal
    // Pruned tensors (at least 1 % exact zeros) keep their zeros: blocks of types with a min are searched with an exact 0
    // level, IQ4_NL / IQ4_XS become Q4_0, and GPTQ holds masked weights at 0 (docs/pruning.md).
    bool keep_zeros = true;
    std::string eval_text;        // only to warn when the evaluation text overlaps the calibration text
    // Progress of the calibrated stages ("gptq: blocks", "sensitivity: held-out KLD", ...); the write reports
    // through quantize_model's ProgressFn.
    std::function<void(const std::string& stage, int64_t done, int64_t total)> stage_progress;
};

struct TensorPlan {
    std::string name;
    std::vector<int64_t> shape;
    DType from = DType::F32, requested = DType::F32, chosen = DType::F32;
    std::string rule;      // the rule that decided, or "kept" for tensors that are never quantized
    std::string fallback;  // why `chosen` differs from `requested` ("" if it does not)
    std::string measured;  // mixed precision: the measurement behind the choice ("ΔKLD q3_K 2.1e-4, q4_K 6.0e-5, …")
    // Mixed precision, as numbers: the probe type and the held-out ΔKLD measured with this tensor alone at it (−1: not
    // probed), and the predicted ΔKLD of every candidate type (what the plan chose from).
    std::string probe_type;
    double probe_dkld = -1;
    std::vector<std::pair<std::string, double>> predicted_dkld;
    uint64_t bytes_in = 0, bytes_out = 0;
    int64_t numel = 0;
};

/// What calibration saw (also written into the file's provenance).
struct CalibrationReport {
    std::string text_path, text_sha256;
    int64_t chunks = 0, tokens = 0, n_ctx = 0;
};

struct QuantizeReport {
    std::string input, output, type, input_sha256;
    std::string method = "rtn";
    std::optional<CalibrationReport> calibration;
    std::vector<std::string> warnings;  // e.g. the evaluation text overlaps the calibration text
    std::vector<std::string> notes;     // what the passes decided (AWQ: each group's α and output error)
    double predicted_kld = -1;  // mixed precision: the plan's predicted mean KLD on calibration text (−1: no plan)
    double calib_kld = -1;      // the written model's mean KLD on held-out calibration chunks (−1: not measured)
    std::map<std::string, double> method_kld;  // automatic: each method tried → its held-out KLD
    std::vector<std::pair<std::string, double>> stage_seconds;  // calibrated paths: wall time of each stage, in order
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

struct LlmW8A8Options;
/// `cq quantize LLM OUT.gguf --type w8a8-*`: loads `input` (GGUF or HF directory), quantize_llm_w8a8 (cq/w8a8.h;
/// `calibration` reports its chunks), then writes OUT with the int8 Linears (I8 weights and their scales) and every other
/// tensor in f32, or as `tensor_types` rules say. report.type is "w8a8-static" / "w8a8-dynamic", report.method says how.
QuantizeReport quantize_llm_w8a8_file(const std::string& input, const std::string& output, const LlmW8A8Options& options,
                                      const std::vector<std::string>& tensor_types = {}, bool keep_zeros = true,
                                      const ProgressFn& progress = {}, const ProgressFn& calibration = {});

}  // namespace cq
