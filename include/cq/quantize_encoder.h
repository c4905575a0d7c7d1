// Quantization of encoder classifiers (BERT family, ViT, the vision and multimodal families): W8A8 (the plan: which
// Linears, which activation ranges; calibration over labelled samples with a reusable cache) or weight-only ggml block
// types (Q4_0, Q8_0, K-quants …), and the GGUF container cq loads back.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "cq/calibration.h"
#include "cq/classify.h"
#include "cq/encoder.h"
#include "cq/eval.h"
#include "cq/w8a8.h"

namespace cq {

struct EncoderQuantizeOptions {
    ActivationQuant activations = ActivationQuant::dynamic_per_token;
    // Set: weight-only quantization instead of W8A8. Each selected Linear's weight becomes this ggml block type (rows
    // that are not whole blocks take llama.cpp's fallback type, or stay f32 where none fits); activations stay f32.
    std::optional<DType> weight_type;
    // 8, or 7: half the resolution, but an exact fast path on CPUs without VNNI; 0 = auto: static files
    // get 8, dynamic ones record "auto" and each CPU runs auto_activation_bits() (7 without VNNI)
    int32_t activation_bits = 0;
    std::vector<std::string> layer_rules;  // "PATTERN=int8|float", applied after default_w8a8_rules()
    // The word-embedding table is a quarter or more of a BERT's bytes but only gathered, never multiplied:
    // it is stored in this type (Q8_0: 8.5 bits, rows dequantized as tokens are looked up; F32 keeps it).
    DType embedding_type = DType::Q8_0;
    // W8A8: the self-attention's products in f32, or in INT8 (AttentionPrecision; about twice as fast on VNNI CPUs,
    // within 2–3 % of f32 per head: check the model's accuracy with --eval). Refused for weight-only types.
    AttentionPrecision attention = AttentionPrecision::f32;
    // static mode
    calib::Method method = calib::Method::percentile;
    double percentile = 99.99;
    std::string calib_data;       // labelled data file (TSV / MNIST / folder); labels are not used
    DataSelection calib_selection;
    int64_t calib_samples = 256;  // at most this many samples from the selection
    std::string calib_cache;      // statistics file: read when it matches, else written
    ClassifyOptions run;          // batch and max_len of the calibration passes
};

struct EncoderLinearPlan {
    std::string name;
    int64_t n_out = 0, n_in = 0;
    bool int8 = false;
    std::string weight_type;     // weight-only: the type the weight got ("f32" where it stayed), else empty
    std::string fallback;        // weight-only: why weight_type is not the one asked for ("" if it is)
    std::string rule;            // the rule that decided
    calib::Range range{0, 0};    // static: the calibrated input range
    calib::U8Params input{1, 0};  // static: its scale / zero point
};

struct EncoderQuantizeReport {
    std::string input, output, type, input_sha256, method;
    std::vector<EncoderLinearPlan> linears;
    uint64_t file_bytes_in = 0, file_bytes_out = 0, tensor_bytes_in = 0, tensor_bytes_out = 0;
    int64_t calib_samples = 0;
    bool calib_from_cache = false;
    int32_t activation_bits = 8;     // what this run used
    bool activation_bits_auto = false;  // chosen for this CPU; the file records "auto" (0)
    std::string embeddings;  // what happened to the word embeddings ("Q8_0", "F32 (kept)", ...)
    std::string attention = "f32";  // the self-attention's precision the file records ("f32", "int8")
    double seconds = 0;
};

/// Collects the input distribution of every Linear the rules select over `samples` samples of `data`.
calib::CalibrationStats collect_calibration(EncoderModel& model, const LabelledData& data, int64_t samples,
                                            const ClassifyOptions& run, const std::vector<W8A8Rule>& rules,
                                            const ProgressFn& progress = {});

/// Replaces the selected Linears of `model` by their W8A8 form (in memory) and returns the plan.
/// Static mode needs `stats` holding every selected Linear (InvalidArgument naming a missing one).
std::vector<EncoderLinearPlan> apply_w8a8(EncoderModel& model, const std::vector<W8A8Rule>& rules, ActivationQuant activations,
                                          const calib::CalibrationStats* stats, calib::Method method, double percentile,
                                          int32_t activation_bits = 8);

/// Quantizes the HF directory `input` and writes the GGUF container `output` (atomically).
EncoderQuantizeReport quantize_encoder(const std::string& input, const std::string& output, const EncoderQuantizeOptions& options,
                                       const ProgressFn& progress = {});

/// Weight-only quantization in memory: each Linear the rules select ("int8" = quantize) gets `type`'s blocks (or
/// llama.cpp's fallback for its row length; f32 stays where no block type fits). Returns the plan.
std::vector<EncoderLinearPlan> apply_weight_only(EncoderModel& model, const std::vector<W8A8Rule>& rules, DType type);

/// Whether `type` names a W8A8 mode ("w8a8-dynamic", "w8a8-static").
bool is_w8a8_type(const std::string& type);
/// The ggml block type `type` names when it is one an encoder's Linears can be quantized to weight-only ("q4_0",
/// "q8_0", "q4_k", …; not f32/f16/bf16, which are not quantization, nor the importance-only IQ types).
std::optional<DType> encoder_weight_only_type(const std::string& type);

}  // namespace cq
