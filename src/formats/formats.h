// The quantized formats cq implements: reference codecs (the specification, ggml's reference rules
// so files are byte-identical to llama-quantize without an importance matrix; the Q8_0 / Q8_1 / Q8_K
// ones are also the kernel table's reference activation quantizers) and the load-time 8-row layouts.
// Which activation type each weight type pairs with is the kernel table's (cq::QuantKernels::act_type).
#pragma once

#include <cstdint>
#include <cstddef>

#include "cq/dtype.h"
#include "formats/blocks.h"

namespace cq::formats {

// x: [k] f32 → y: k/block blocks. k must be a whole number of blocks.
void quantize_row_q4_0_ref(const float* x, void* y, int64_t k);
void quantize_row_q4_1_ref(const float* x, void* y, int64_t k);
void quantize_row_q5_0_ref(const float* x, void* y, int64_t k);
void quantize_row_q5_1_ref(const float* x, void* y, int64_t k);
void quantize_row_q8_0_ref(const float* x, void* y, int64_t k);
void quantize_row_q8_1_ref(const float* x, void* y, int64_t k);
void quantize_row_q2_K_ref(const float* x, void* y, int64_t k);
void quantize_row_q3_K_ref(const float* x, void* y, int64_t k);
void quantize_row_q4_K_ref(const float* x, void* y, int64_t k);
void quantize_row_q5_K_ref(const float* x, void* y, int64_t k);
void quantize_row_q6_K_ref(const float* x, void* y, int64_t k);
void quantize_row_q8_K_ref(const float* x, void* y, int64_t k);
void quantize_row_iq4_nl_ref(const float* x, void* y, int64_t k);  // ggml's ref: first scale only
void quantize_row_iq4_xs_ref(const float* x, void* y, int64_t k);  // ggml's ref: the full search, unweighted
// IQ4_NL / IQ4_XS search (ggml's quantize_row_iq4_nl_impl): importance [k] (null: weights x²), ntry scales
// tried each side of the first (llama-quantize uses 7 with or without an importance matrix).
void quantize_row_iq4_nl_search(const float* x, void* y, int64_t k, const float* importance, int ntry);
void quantize_row_iq4_xs_search(const float* x, void* y, int64_t k, const float* importance, int ntry);

// x: k/block blocks → y: [k] f32.
void dequantize_row_q4_0_ref(const void* x, float* y, int64_t k);
void dequantize_row_q4_1_ref(const void* x, float* y, int64_t k);
void dequantize_row_q5_0_ref(const void* x, float* y, int64_t k);
void dequantize_row_q5_1_ref(const void* x, float* y, int64_t k);
void dequantize_row_q8_0_ref(const void* x, float* y, int64_t k);
void dequantize_row_q8_1_ref(const void* x, float* y, int64_t k);
void dequantize_row_q2_K_ref(const void* x, float* y, int64_t k);
void dequantize_row_q3_K_ref(const void* x, float* y, int64_t k);
void dequantize_row_q4_K_ref(const void* x, float* y, int64_t k);
void dequantize_row_q5_K_ref(const void* x, float* y, int64_t k);
void dequantize_row_q6_K_ref(const void* x, float* y, int64_t k);
void dequantize_row_q8_K_ref(const void* x, float* y, int64_t k);
void dequantize_row_iq4_nl_ref(const void* x, float* y, int64_t k);
void dequantize_row_iq4_xs_ref(const void* x, float* y, int64_t k);

// The 8-row interleaved layouts (BlockQ4_0x8, BlockQ8_0x8, BlockQ4_Kx8; the kernel table's
// QuantKernels::pack_rows): rows [0, n) (row stride row_bytes, k a whole number of blocks) → ceil(n/8)
// groups of interleaved blocks in `out`; the rows that pad the last group are zeros (scale 0, value 0).
void pack_rows_q4_0x8(const void* rows, size_t row_bytes, int64_t n, int64_t k, void* out);
void pack_rows_q8_0x8(const void* rows, size_t row_bytes, int64_t n, int64_t k, void* out);
void pack_rows_q4_Kx8(const void* rows, size_t row_bytes, int64_t n, int64_t k, void* out);
// Bytes they write: the n rows rounded up to 8 (Q4_K: 156 bytes per row and super-block).
size_t packed_bytes_q4_0x8(int64_t n, int64_t k);
size_t packed_bytes_q8_0x8(int64_t n, int64_t k);
size_t packed_bytes_q4_Kx8(int64_t n, int64_t k);

/// Asymmetric search (ggml's make_qkx2_quants; with use_mad false also its make_qkx3_quants): x ≈ scale·L −
/// the_min, L ∈ [0, nmax], fitted by weighted least squares over nstep+1 grids. Returns scale.
float make_qkx2_quants(int n, int nmax, const float* x, const float* weights, uint8_t* L, float* the_min, uint8_t* Laux, float rmin,
                       float rdelta, int nstep, bool use_mad);

/// Q3_K levels L ∈ [0, 7] (256) into a block's hmask and 2-bit qs.
void pack_q3_K_levels(const int8_t* L, BlockQ3_K& y);

}  // namespace cq::formats
