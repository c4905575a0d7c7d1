// INT8 weights × INT8 activations (W8A8) for the Linear layers of encoder models: weights int8 per output
// channel (symmetric), activations u8 with a zero point, either per token at run time (dynamic) or one
// scale / zero point per tensor from calibration (static). Which Linears are quantized is a rule list.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "cq/calibration.h"
#include "cq/rules.h"
#include "cq/tensor.h"

namespace cq {

struct Linear;

/// How a W8A8 Linear quantizes its input: per token at run time (each row its own scale / zero point: cq's default for
/// dynamic), one calibrated scale / zero point (static), or one scale / zero point per call from the whole input's
/// min / max at run time, as ONNX's DynamicQuantizeLinear defines it (8-bit only: what ONNX Runtime's dynamic graphs run).
enum class ActivationQuant { dynamic_per_token, static_per_tensor, dynamic_per_tensor };

/// DynamicQuantizeLinear's u8 parameters for an input whose smallest / largest values are lo / hi, computed in float as
/// ONNX Runtime computes them: the range widened to hold 0, scale (hi − lo) / 255 (1 when hi == lo), zero point
/// 0 − lo / scale clamped to [0, 255] and rounded half to even.
calib::U8Params dynamic_quantize_linear_params(float lo, float hi);

/// The W8A8 form of one Linear, ready for the u8×s8 kernels. `weight` is what a file stores
/// ([n_out, n_in] row-major int8); `packed` is the kernels' panel layout built from it at load.
/// `act_qmax` is the activations' top code: 255 = 8-bit; 127 = 7-bit, half the resolution but the exact
/// vpmaddubsw fast path (gemm_u7s8) on AVX2 CPUs without VNNI (PyTorch/FBGEMM's reduce_range).
struct Int8Linear {
    int64_t n_out = 0, n_in = 0;
    Tensor weight;                     // I8 [n_out, n_in] (owned or borrowed from a mapped file)
    std::vector<float> weight_scale;   // [n_out]: w ≈ weight · weight_scale
    std::vector<float> bias;           // [n_out] or empty
    ActivationQuant activations = ActivationQuant::dynamic_per_token;
    calib::U8Params input{1.0f, 0};    // static only: x ≈ (q − zero_point) · scale
    int32_t act_qmax = 255;            // activations quantized to [0, act_qmax]: 255 or 127
    std::shared_ptr<int8_t> packed;    // kernel panel layout (64-byte aligned)
    std::vector<int32_t> weight_sums;  // [n_out] Σ_k weight: the zero-point compensation
};

/// The activation bits dynamic W8A8 uses on this process's kernel table when a file or option says
/// "auto": 8 where the u8×s8 product is exact at full speed (AVX-512 VNNI's vpdpbusd), else 7, whose
/// vpmaddubsw path is exact and twice as fast as widening to 16 bits (FBGEMM's reduce_range on such CPUs).
int32_t auto_activation_bits();

/// Builds the kernel layout of `q` (packed panels and weight sums) from q.weight.
void pack_int8_linear(Int8Linear& q);

/// Quantizes a float Linear (f32/f16/bf16 weight [out, in]): per output channel scale = max|w| / 127,
/// w_q = nearbyint(w / scale) in [−127, 127]; an all-zero row gets scale 1. `input` is used in static mode
/// (its zero point must be ≤ act_qmax, as calib::u8_params(range, act_qmax) gives); act_qmax is 255 or 127.
std::shared_ptr<Int8Linear> quantize_linear_w8a8(const Linear& layer, ActivationQuant activations,
                                                 calib::U8Params input = {1.0f, 0}, int32_t act_qmax = 255);

/// A rule of the one rule engine (cq/rules.h) whose action is W8A8: Linears in its scope are quantized
/// (`int8`) or kept in float; later rules win.
struct W8A8Rule {
    RuleScope scope;  // over Linear names
    bool int8 = true;
    std::string text() const;  // "*.layer.*=int8"
};

/// "PATTERN=int8|float" → a rule. InvalidArgument naming the bad spec.
W8A8Rule parse_w8a8_rule(const std::string& spec);
/// The default: every Linear inside the encoder blocks; embeddings, pooler and classifier stay float.
std::vector<W8A8Rule> default_w8a8_rules();
/// Whether the rules quantize the Linear called `name` (no rule matching → float).
bool w8a8_selects(const std::vector<W8A8Rule>& rules, const std::string& name);
/// The text of the rule that decides `target` ("(none)" when none does), for reports.
std::string w8a8_deciding_rule(const std::vector<W8A8Rule>& rules, const RuleTarget& target);

class LanguageModel;

/// The decoder LLMs' default: every Linear of the blocks ("blk.N.*"); the output head stays float (one layer, and the
/// logits are what every metric reads).
std::vector<W8A8Rule> llm_default_w8a8_rules();

/// W8A8 of a decoder LLM (LLaMA family, GPT-2).
struct LlmW8A8Options {
    ActivationQuant activations = ActivationQuant::static_per_tensor;
    std::string calib_text;      // static: the text whose chunks calibrate (llama-imatrix's chunking, cq/eval.h)
    int64_t calib_ctx = 512;     // tokens per calibration chunk
    int64_t calib_chunks = 128;  // at most this many chunks, the first ones (-1: all)
    calib::Method method = calib::Method::percentile;
    double percentile = 99.99;
    bool symmetric = false;       // static: calib::u8_params_symmetric (TensorRT's symmetric int8, which trt-qdq exports exactly)
    int32_t activation_bits = 0;  // 8 or 7; 0: this CPU's choice (auto_activation_bits) for dynamic per token, else 8
    std::vector<W8A8Rule> rules = llm_default_w8a8_rules();
};

/// Quantizes the Linears `options.rules` select: per-channel int8 weights (f32/f16/bf16 or any block type, dequantized
/// first), and for static activations one u8 scale / zero point per Linear input from what it saw while the model ran
/// the calibration chunks. Returns how many Linears were quantized. InvalidArgument for static without text, bad bits,
/// or rules that select nothing.
int64_t quantize_llm_w8a8(LanguageModel& model, const LlmW8A8Options& options, const std::function<void(int64_t, int64_t, double)>& progress = {});

}  // namespace cq
