// What the calibrated passes (GPTQ, AWQ, in-process imatrix, mixed precision; pruning) share: calibration text cut
// into statistics chunks and a held-out tail whose f32 log-probabilities measure KL-divergence; the residual stream
// of every chunk at one block's input (Stream), advanced block by block with LanguageModel::run_block while
// observers sum the Hessians of the block's four inputs (BlockStats). Memory: one block's activations.
#pragma once

#include <cstdint>
#include <cstdio>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "cq/llm.h"
#include "cq/quantize.h"
#include "quant/hessian.h"

namespace cq::quant {

using StageFn = std::function<void(const std::string& stage, int64_t done, int64_t total)>;

struct Calibration {
    std::vector<std::vector<int32_t>> stats;     // chunks the statistics come from
    std::vector<std::vector<int32_t>> held_out;  // chunks KL-divergence is measured on (never in `stats`)
    std::vector<std::vector<float>> ref_logprobs;  // the f32 model's log-probabilities on held_out, [T, V] each
    CalibrationReport report;
};

/// Chunks of calib.text_path (text_chunk_tokens); with hold_out the last ⌈n/8⌉ (at most 2048 tokens' worth, at least
/// one) are held out and the rest feed the statistics. `op` names the command in errors.
Calibration cut_calibration(const LanguageModel& model, const CalibrationOptions& calib, bool hold_out, std::string_view op);
/// Fills c.ref_logprobs: the model's log-probabilities on the held-out chunks (run it while it is the f32 original).
void reference_logprobs(LanguageModel& m, Calibration& c);
/// Σ over one chunk's positions of KL(reference ‖ model), from the model's logits lp [T, V] (made log-probabilities).
double chunk_kld(std::vector<float>& lp, const float* ref, int64_t T, int64_t V);
/// Mean KL(reference ‖ model) per held-out token.
double held_out_kld(LanguageModel& m, const Calibration& c);

/// The head has its own tensor (not tied to the token embedding).
bool own_head(const Linear& l);
/// Block l's Linears in execution order (llama: q k v o gate up down; gpt2: qkv o up down).
std::vector<Linear*> block_linears(LanguageModel& m, int64_t l);
Tensor f32_tensor(const std::vector<float>& v, std::vector<int64_t> shape);
/// The weight as floats [n_out, n_in].
std::vector<float> weight_of(const Linear& l);
/// Loads a decoder to calibrate: context and micro-batch of the calibration chunks; GPT-2 HF Conv1D weights transposed
/// to [out, in] once (as the file's values: modified_by stays empty).
std::unique_ptr<LanguageModel> load_for_calibration(const std::string& input, const CalibrationOptions& calib);

// Hidden states of every statistics chunk at the current block's input.
struct Stream {
    std::vector<std::vector<float>> hidden;
    int64_t T = 0;
};

/// embed() of every chunk: the stream at block 0's input.
Stream embed_all(LanguageModel& m, const std::vector<std::vector<int32_t>>& chunks);

// The Hessians of a block's four inputs: attention projections, attention output, MLP input, MLP output.
struct BlockStats {
    Hessian attn_in, attn_out, ffn_in, ffn_out;
    Hessian& of(const Linear& l) {
        switch (l.role) {
            case LayerRole::attn_q: case LayerRole::attn_k: case LayerRole::attn_v: case LayerRole::attn_qkv: return attn_in;
            case LayerRole::attn_out: return attn_out;
            case LayerRole::ffn_down: return ffn_out;
            default: return ffn_in;
        }
    }
};

/// Runs block l over every chunk of s (advance: in place, so the stream moves on; else on a copy), summing the
/// Hessian of each of its inputs into stats (may be null).
void run_block(LanguageModel& m, int64_t l, Stream& s, bool advance, BlockStats* stats);
/// held_out_kld when only blocks ≥ first (and the head) differ from the model whose block-`first` held-out inputs s
/// holds: the forward resumes there.
double held_out_kld_from(LanguageModel& m, const Calibration& c, int64_t first, const Stream& s);
/// The head's input statistics (the final norm's output) over every chunk of s.
Hessian head_stats(LanguageModel& m, Linear& head, Stream& s);

inline std::string fmt(const char* f, double v) {
    char b[64];
    std::snprintf(b, sizeof b, f, v);
    return b;
}

}  // namespace cq::quant
