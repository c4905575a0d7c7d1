// The quantized formats cq implements: reference codecs (the specification, ggml's reference rules
// so files are byte-identical to llama-quantize without an importance matrix) and which activation
// type each weight format's matrix product pairs with.
#pragma once

#include <cstdint>
#include <optional>

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

/// Whether `type` has an 8-row interleaved layout (Q4_0 → BlockQ4_0x8, Q8_0 → BlockQ8_0x8, Q4_K → BlockQ4_Kx8).
bool has_x8_layout(DType type);
/// Rows [0, n) of `type` (row stride row_bytes, k a whole number of blocks) → ceil(n/8) groups of k/32
/// interleaved blocks in `out`; the rows that pad the last group are zeros (scale 0, value 0).
void pack_rows_x8(DType type, const void* rows, size_t row_bytes, int64_t n, int64_t k, void* out);
/// Bytes pack_rows_x8 writes: the n rows rounded up to 8 (Q4_K: 156 bytes per row and super-block).
size_t packed_x8_bytes(DType type, int64_t n, int64_t k);

/// The activation type a weight format's matrix product uses (ggml's vec_dot_type):
/// Q4_0/Q5_0/Q8_0 → Q8_0, Q4_1/Q5_1 → Q8_1, k-quants → Q8_K; nullopt for formats without kernels.
std::optional<DType> activation_type(DType weights);

}  // namespace cq::formats
