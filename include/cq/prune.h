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

}  // namespace cq
