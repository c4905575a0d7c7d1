// One block of a row through the importance-weighted search of src/quant/weighted_quant.cpp, for callers that
// choose a block's scales on values that change while the row is processed (GPTQ's sweep). Same bytes as the
// row search gives that block when row_sigma2 is the row's mean square.
#pragma once

#include <cstdint>

#include "cq/dtype.h"

namespace cq {

/// Mean of x² over x: [n] in f32, summed in index order: the σ² the legacy formats' searches (Q4_0, Q4_1, Q5_0,
/// Q5_1) take from the whole row.
float row_mean_square(const float* x, int64_t n);

/// Quantizes one block x: [block_size of `type`] to `out` as quantize_row_weighted does for that block of a row:
/// importance [block_size] (null: the type's reference codec, except IQ4_NL's 7-step search), row_sigma2 the row's
/// row_mean_square (read by the legacy formats only; the others take their statistics from the block).
/// No validation: `type` must have a codec (a caller validates once per tensor).
void quantize_block_weighted(DType type, const float* x, void* out, const float* importance, float row_sigma2);

}  // namespace cq
