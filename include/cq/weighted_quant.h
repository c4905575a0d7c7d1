// Importance-weighted row quantization: llama.cpp's quantize_<type>(…, quant_weights) searches, which use
// an importance row (an imatrix entry: mean x² per input channel) to choose scales and levels. The output is
// plain ggml blocks of `type` (any reader and kernel runs them); the bytes equal llama-quantize's.
#pragma once

#include <cstddef>
#include <cstdint>

#include "cq/dtype.h"

namespace cq {

/// True when llama.cpp's quantizer for `type` reads an importance row: Q4_0, Q4_1, Q5_0, Q5_1, Q2_K, Q3_K,
/// Q4_K, Q5_K, Q6_K, IQ4_NL, IQ4_XS. Other types with a codec ignore it (as llama.cpp's do).
bool has_weighted_quantizer(DType type);

/// Quantizes one row x: [n_per_row] to `out` (n_per_row / block_size blocks) as llama-quantize does for a
/// tensor of `type` with `importance` [n_per_row] (null: llama-quantize without an imatrix, which for
/// IQ4_NL differs from the type's from_float). Some searches use statistics of the whole row, so call it
/// row by row. InvalidArgument if `type` has no codec or n_per_row is not a whole number of blocks.
void quantize_row_weighted(DType type, const float* x, void* out, int64_t n_per_row, const float* importance);

/// n_rows rows of x: [n_rows, n_per_row] (row-major), each with the same importance row; returns the bytes
/// written (n_rows · row size).
size_t quantize_rows_weighted(DType type, const float* x, void* out, int64_t n_rows, int64_t n_per_row,
                              const float* importance);

}  // namespace cq
