// GPTQ (Frantar et al. 2022) into ggml block formats: a Linear's weight W is quantized column by column, each
// column's rounding error spread over the columns not yet quantized through the inverse of the layer's input
// Hessian H = Σ xxᵀ, so that tr((W−Q) H (W−Q)ᵀ) — the layer's output error on its calibration inputs — is small.
// Each block's scales and mins come from the format's own (importance-weighted) search, so the output is plain
// ggml blocks of the type, which llama.cpp and every cq kernel run. Pure functions over arrays.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "cq/dtype.h"

namespace cq {

class ThreadPool;

struct GptqOptions {
    double damp = 0.01;          // added to diag(H): this fraction of the mean of diag(H)
    bool act_order = false;      // sweep columns by decreasing diag(H); every block's grid is then chosen up front ("static groups")
    int64_t block_size = 128;    // columns per lazy batch (rounded up to a whole number of the format's blocks)
    bool compute_rtn_error = true;  // also evaluate plain weighted rounding's error (as costly as the sweep's products)
    /// When at least 1 % of W is exactly 0 (a pruned weight), those zeros are a mask: each is quantized to an exact 0
    /// level (grids searched with one, formats with a min included) and its value compensated like any error.
    bool keep_zeros = true;
};

struct GptqResult {
    std::vector<uint8_t> blocks;   // n_out rows of `type`, ggml layout (row r at r · row bytes)
    double weighted_error = 0;     // tr((W−Q) H (W−Q)ᵀ) with the undamped H
    double rtn_error = 0;          // the same for quantize_rows_weighted(type, W, importance) (0 unless computed)
    double damp_added = 0;         // the value added to each diagonal entry of H
    int64_t dead_columns = 0;      // input channels with H_jj = 0 (W's column treated as 0; H_jj as 1)
};

/// Quantizes W: [n_out, n_in] (row-major f32, a Linear's weight) to `type` with GPTQ, given the Hessian
/// H: [n_in, n_in] (symmetric, Σ xxᵀ over calibration tokens, any scale). `importance` [n_in] (mean x² per input
/// channel, an imatrix row) weighs the format's scale searches; empty: diag(H) / mean(diag(H)).
/// Supported: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL, IQ4_XS. Rows are split over
/// `pool` (null: the global pool); the bytes are the same for any thread count.
/// InvalidArgument (naming what) for an unsupported type, n_in not a whole number of blocks, sizes that do not
/// match, non-finite or negative-diagonal inputs, an asymmetric H, or an H not positive definite after damping.
GptqResult gptq_quantize(DType type, std::span<const float> W, int64_t n_out, int64_t n_in, std::span<const double> H,
                         std::span<const float> importance, const GptqOptions& options = {}, ThreadPool* pool = nullptr);

/// True for the types gptq_quantize supports.
bool gptq_supports(DType type);

/// H += XᵀX for X: [n_tokens, n_in] (row-major f32, one Linear's inputs); H: [n_in, n_in] double, both
/// triangles written. Products in f32 over the call's tokens, added to H in double; the sums do not depend on
/// the thread count. The calibration driver calls it per batch.
void accumulate_hessian(std::span<double> H, std::span<const float> X, int64_t n_tokens, int64_t n_in,
                        ThreadPool* pool = nullptr);

}  // namespace cq
