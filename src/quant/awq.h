// AWQ (activation-aware weight quantization, Lin et al. 2023) for ggml types: per-input-channel scales s that
// the Linears sharing one input take as W·diag(s) while the op before them (a norm's weight, or the rows of the
// previous Linear) takes 1/s, so the file needs no extra op. The scales are searched per group, s = rms(x)^α,
// α on a grid, for the least output error tr(E H Eᵀ) of the group's Linears after quantization to their types.
#pragma once

#include <cstdint>
#include <vector>

#include "cq/dtype.h"
#include "quant/hessian.h"

namespace cq::quant {

/// One Linear of a group: its f32 weight [n_out, n_in] (n_in = the shared input width) and target type.
struct AwqLinear {
    const float* weight = nullptr;
    int64_t n_out = 0;
    DType type = DType::Q4_K;
};

struct AwqSearch {
    std::vector<float> scales;  // [n_in]; all 1 when α = 0 won
    double alpha = 0;
    // Σ tr(E H Eᵀ)/rows over the group, at the chosen α and at α = 0; on Linears of more than 256 rows, estimated
    // from every k-th row (times k)
    double error = 0, error_unscaled = 0;
};

/// Searches α ∈ {0, 1/grid, …, (grid−1)/grid}. Quantization is the importance-weighted search of each type with
/// importance = diag(H)/rows / s² (the scaled inputs' mean x²).
AwqSearch awq_search(const Hessian& H, const std::vector<AwqLinear>& group, int grid = 20);

/// Quantizes rows of w [n_out, n_in] to `type` with the weighted search (importance may be null) and returns
/// the dequantized values: what the file will hold.
std::vector<float> quantize_dequantize(DType type, const float* w, int64_t n_out, int64_t n_in, const float* importance);

}  // namespace cq::quant
