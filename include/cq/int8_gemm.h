// INT8 W8A8 matrix products (u8 activations × s8 weights → f32): the packed weight layout the
// gemm_u8s8 kernels read, its packing and weight sums, and the activation quantization rule.
#pragma once

#include <cstdint>

namespace cq {

// Packed s8 weights, [n, k] stored [out, in]: output channels in panels of 16, inputs in quads of 4
// (one vpdpbusd: 16 int32 lanes, each summing 4 u8·s8 products). With kq = ceil(k / 4), the byte of
// channel c = 16·p + i and input 4·q + j sits at ((p·kq + q)·16 + i)·4 + j, so panel p is kq·64
// contiguous bytes and each quad of a panel is one 64-byte vector. Channels ≥ n and inputs ≥ k are 0.
inline constexpr int64_t kS8PanelChannels = 16;
inline constexpr int64_t kS8QuadInputs = 4;

/// x rounded up to a multiple of `multiple` (> 0), for x ≥ 0.
constexpr int64_t round_up(int64_t x, int64_t multiple) { return (x + multiple - 1) / multiple * multiple; }
/// Quads per packed row: ceil(k / 4).
constexpr int64_t s8_quads(int64_t k) { return round_up(k, kS8QuadInputs) / kS8QuadInputs; }
/// Bytes of the packed layout of [n, k] weights: round_up(n, 16) · round_up(k, 4).
constexpr int64_t packed_s8_bytes(int64_t n, int64_t k) {
    return round_up(n, kS8PanelChannels) * round_up(k, kS8QuadInputs);
}
/// Bytes one panel of 16 channels spans in the packed layout (the offset of panel p is p times this).
constexpr int64_t packed_s8_panel_bytes(int64_t k) { return kS8PanelChannels * round_up(k, kS8QuadInputs); }

/// w: [n, k] s8, row stride ldw → packed: packed_s8_bytes(n, k) bytes in the panel layout above.
void pack_s8_panels(const int8_t* w, int64_t n, int64_t k, int64_t ldw, int8_t* packed);
/// w: [n, k] s8, row stride ldw → sums[i] = Σ_k w[i][k], the zero-point compensation of the gemm.
void s8_row_sums(const int8_t* w, int64_t n, int64_t k, int64_t ldw, int32_t* sums);

// Activations: q = clamp(nearbyint(x · (1 / scale)) + zero_point, 0, qmax), rounding half to even, the
// clamp done in float (so values beyond int32 still saturate) — every quantizer variant computes exactly
// this, byte for byte. qmax is 255 (8-bit activations, gemm_u8s8) or 127 (7-bit: gemm_u7s8, whose AVX2
// kernel sums u8·s8 pairs with vpmaddubsw, exact only while 2·127·128 < 2^15); any value in [1, 255] works.
// Rows are padded with zero_point up to round_up(k, 4) for the gemm's quads.
inline constexpr int32_t kU8QMax = 255;
inline constexpr int32_t kU7QMax = 127;

/// The dynamic (per row, ONNX DynamicQuantizeLinear) rule for a row whose values span [lo, hi]
/// (lo ≤ 0 ≤ hi after widening the range to hold 0): scale = (hi − lo) / qmax,
/// zero_point = clamp(nearbyint(−lo / scale), 0, qmax); a zero or non-finite scale (all-zero row,
/// overflowing range) gives scale 1, zero_point 0. Inputs are expected finite.
void u8_quant_params_from_range(float lo, float hi, int32_t qmax, float* scale, int32_t* zero_point);

}  // namespace cq
