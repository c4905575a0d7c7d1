// Unstructured and N:M pruning of decoder LLMs: magnitude, Wanda (|W|·‖X_j‖₂) and SparseGPT (OBS updates from the
// input Hessian, blocked as GPTQ is), run block by block on calibration text. Pruned weights are exact zeros.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "cq/distill.h"
#include "cq/llm.h"
#include "cq/quantize.h"

namespace cq {

class ThreadPool;

enum class PruneMethod { magnitude, wanda, sparsegpt };
/// "magnitude", "wanda", "sparsegpt".
std::string_view prune_method_name(PruneMethod m);
/// The method called `name`; InvalidArgument naming the choices otherwise.
PruneMethod parse_prune_method(std::string_view name);

/// Which weights compete for removal (magnitude only; Wanda and SparseGPT always compare within an output row).
enum class PruneScope { layer, row, global };
std::string_view prune_scope_name(PruneScope s);
PruneScope parse_prune_scope(std::string_view name);

/// How much goes: a fraction of each comparison group (unstructured), or N:M — N weights kept in every M consecutive
/// weights of a row (2:4 keeps 2 of every 4).
struct SparsityTarget {
    double sparsity = 0;         // in (0, 1) when n = m = 0
    int64_t n = 0, m = 0;        // N:M when m > 0 (0 < n < m)
    bool is_nm() const { return m > 0; }
    /// "50%" or "2:4".
    std::string describe() const;
    /// InvalidArgument (naming `op` and the value) unless exactly one of the two forms is given and valid.
    void validate(std::string_view op) const;
    /// Parses "N:M"; InvalidArgument naming `op` for anything else.
    static SparsityTarget parse_pattern(std::string_view text, std::string_view op);
};

/// The pruning mask (1 = pruned) of scores [n_out, n_in] row-major: within each comparison group (a row, or the whole
/// matrix when per_row is false; N:M: each M consecutive entries of a row) the round(S·size) (N:M: M − N) lowest scores,
/// ties to the lower index.
std::vector<uint8_t> prune_mask(std::span<const float> scores, int64_t n_out, int64_t n_in, const SparsityTarget& target, bool per_row);

/// Wanda's scores |W_ij| · ‖X_j‖₂ for W: [n_out, n_in] and input_norms [n_in] (the l2 norm of each input channel over
/// the calibration tokens).
std::vector<float> wanda_scores(std::span<const float> W, int64_t n_out, int64_t n_in, std::span<const float> input_norms);

struct SparseGptOptions {
    double damp = 0.01;        // added to diag(H): this fraction of the mean of diag(H)
    int64_t block_size = 128;  // columns per lazy batch; an unstructured mask is re-chosen at each batch's start
};

struct SparseGptResult {
    std::vector<float> weights;   // [n_out, n_in], pruned entries exactly 0
    double error = 0;             // tr((W−Ŵ) H (W−Ŵ)ᵀ) with the undamped H
};

/// SparseGPT (Frantar & Alistarh 2023) on W: [n_out, n_in] given H: [n_in, n_in] = Σ xxᵀ (symmetric). Columns are swept
/// in blocks; at each block's start a row's remaining budget (round(S·n_in) in all) is chosen among its columns not yet
/// swept by w²/U_jj² on their current values (U: H⁻¹'s upper Cholesky factor) and the block's share fixed (N:M: within each
/// group, at its first column), and each pruned weight's error is spread over the row's later columns through H⁻¹'s Cholesky factor.
/// Rows go in fixed groups, so the bytes are the same for any thread count. InvalidArgument for sizes that do not
/// match, non-finite values, a bad target or an H not positive definite after damping.
SparseGptResult sparsegpt_prune(std::span<const float> W, int64_t n_out, int64_t n_in, std::span<const double> H,
                                const SparsityTarget& target, const SparseGptOptions& options = {}, ThreadPool* pool = nullptr);

struct PruneOptions {
    PruneMethod method = PruneMethod::magnitude;
    SparsityTarget target;
    PruneScope scope = PruneScope::layer;  // magnitude only
    CalibrationOptions calib;              // wanda / sparsegpt: required; magnitude: optional, only to report output errors
    SparseGptOptions sparsegpt;
    /// wanda / sparsegpt: within a block, each group of Linears that read one input (q k v | o | gate up | down) is
    /// measured on the outputs of the block's groups already pruned (one more block run per group); false: every input
    /// is measured once on the dense block, as the SparseGPT and Wanda reference code do. On by default: on held-out
    /// calibration text it lowered SparseGPT 2:4's ΔPPL by 7 % (docs/pruning.md).
    bool sequential = true;
    /// Progress of the stages ("prune: blocks").
    std::function<void(const std::string& stage, int64_t done, int64_t total)> stage_progress;
};

struct PrunedTensor {
    std::string name;          // "blk.0.attn_q.weight"
    int64_t n_out = 0, n_in = 0;
    int64_t zeros = 0;         // exact zeros in the written weight (counted after pruning)
    double sparsity = 0;       // zeros / (n_out · n_in)
    double rel_error = -1;     // calibrated methods: tr(EHEᵀ) / tr(WHWᵀ) on the block's calibration inputs (E = W − Ŵ); −1 otherwise
};

struct PruneReport {
    std::string input, output, method, target, scope;
    std::vector<PrunedTensor> tensors;  // every pruned Linear, in execution order
    int64_t zeros = 0, pruned_params = 0, model_params = 0;  // model_params: every Linear's weights (head included)
    uint64_t file_bytes_in = 0, file_bytes_out = 0;
    std::optional<CalibrationReport> calibration;
    double seconds = 0;
};

/// Prunes every Linear inside the transformer blocks of `model` in place (the head and the embeddings stay dense),
/// block by block: block l's inputs are the outputs of the already-pruned blocks before it. Each pruned Linear is set
/// to an f32 weight with modified_by "prune:<method>". InvalidArgument for bad options (naming them), a missing
/// calibration text for wanda / sparsegpt, or a row length that N:M does not divide.
PruneReport prune_model(LanguageModel& model, const PruneOptions& options);

/// Loads `input` (GGUF or HF directory), prunes it and writes `output` as GGUF atomically (nothing is written when
/// anything fails), with the method, target and calibration text's hash in the file's metadata.
PruneReport prune_model_file(const std::string& input, const std::string& output, const PruneOptions& options);

/// Structured pruning (physically smaller models): what goes from every block, the same amount in each.
struct StructuredTarget {
    double heads = 0;     // fraction of each block's KV groups removed, each with its query heads (GQA kept intact)
    double ffn = 0;       // fraction of each block's FFN neurons removed
    int64_t layers = 0;   // whole blocks removed
    /// "heads=0.25,ffn=0.25,layers=1" (any subset, any order); InvalidArgument naming `op`, the item and the rule.
    static StructuredTarget parse(std::string_view text, std::string_view op);
    std::string describe() const;
};

struct StructuredOptions {
    StructuredTarget target;
    CalibrationOptions calib;  // required: importance comes from the calibration activations
    /// Kept FFN neurons are rounded to a multiple of this (32: every legacy ggml block fits the ffn_down rows).
    int64_t ffn_multiple = 32;
    std::function<void(const std::string& stage, int64_t done, int64_t total)> stage_progress;
};

/// One block of the input model and what stayed of it.
struct StructuredBlock {
    int64_t block = 0;           // index in the input
    int64_t new_index = -1;      // index in the output (−1: removed)
    double influence = 0;        // mean 1 − cos(block input, block output) over calibration tokens (depth's score)
    std::vector<int64_t> kept_groups;   // KV groups kept (increasing)
    std::vector<double> group_scores;   // every group's importance: Σ over its query heads of ‖W_o[:, head] · o_head‖²
    int64_t ffn_kept = 0;
};

struct StructuredReport {
    std::string input, output, target;
    int64_t n_head_in = 0, n_head_out = 0, n_head_kv_in = 0, n_head_kv_out = 0;
    int64_t n_ff_in = 0, n_ff_out = 0, n_layer_in = 0, n_layer_out = 0;
    int64_t params_in = 0, params_out = 0;  // every tensor's elements
    uint64_t bytes_in = 0, bytes_out = 0;   // of model.safetensors
    std::vector<StructuredBlock> blocks;
    std::optional<CalibrationReport> calibration;
    double seconds = 0;
};

/// Recovery after pruning: a short distillation of the pruned student from the unpruned teacher (cq/distill.h).
struct RecoveryOptions {
    int64_t steps = 0;        // 0: no recovery
    DistillOptions distill;   // data: the calibration text when empty; steps / output are set by the caller
};

struct RecoveryReport {
    int64_t steps = 0;
    double seconds = 0;
    double loss_first = 0, loss_last = 0;  // the distillation loss at the first and last step
};

/// Distils the student at `student_path` (GGUF or HF directory) from `teacher_path` for options.steps steps on
/// options.distill.data and writes `output` (.gguf or an HF directory, never either input).
RecoveryReport recover_by_distillation(const std::string& teacher_path, const std::string& student_path, const std::string& output,
                                       const RecoveryOptions& options);

/// Structured pruning of an HF LLaMA-family directory (llama / mistral / qwen2 layouts) into a smaller HF directory
/// `output_dir` (config.json updated, model.safetensors in f32, tokenizer files copied; written atomically file by file).
/// Importance from calibration activations, block by block on the dense model: a KV group's is the summed squared output
/// its query heads add to the residual (tr(W_o,h H_hh W_o,hᵀ), H the o_proj input's Hessian); an FFN neuron's is
/// H_ii·‖W_down[:, i]‖² (H the down_proj input's); a block's is its influence 1 − cos(in, out) (ShortGPT), lowest removed.
/// InvalidArgument for a bad target, no calibration text, or a model that is not an HF llama-family directory.
StructuredReport prune_structured(const std::string& input_dir, const std::string& output_dir, const StructuredOptions& options);

struct StructuredFileReport {
    StructuredReport prune;
    std::optional<RecoveryReport> recovery;
    std::string gguf, hf_dir;
    uint64_t gguf_bytes = 0;
};

/// prune_structured, then (recovery.steps > 0) distillation from the input, then the result as an f32 GGUF `output_gguf`
/// converted as convert_hf_to_gguf.py converts an HF directory (llama.cpp loads it). hf_dir: where the HF directory is
/// kept (empty: a temporary directory beside the GGUF, removed at the end).
StructuredFileReport prune_structured_file(const std::string& input_dir, const std::string& output_gguf, const std::string& hf_dir,
                                           const StructuredOptions& options, const RecoveryOptions& recovery = {});

}  // namespace cq
