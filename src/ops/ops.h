// The forward-pass ops the model families are built from. Each has plain shapes (comments give
// them), no model knowledge, and can later gain a backward. Activations are f32, row-major.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "cq/llm.h"

namespace cq::ops {

// x: [T, n_in] → y: [T, n_out] = x·Wᵀ + b. Weights f32 go straight to GEMM; f16/bf16 are widened in
// row tiles into `scratch` first (no whole-matrix copy). Then the layer's observers (if any) see x and y;
// row_mask (null: all rows real) marks padding rows with 0 for them.
void linear(const Linear& layer, const float* x, int64_t T, float* y, const int32_t* row_mask = nullptr);
// Shows x and y to the layer's observers; a no-op (one test) when none is attached.
inline void notify_observers(const Linear& layer, const float* x, const float* y, int64_t T, const int32_t* row_mask) {
    if (!layer.observers) return;
    for (const auto& entry : layer.observers->list) entry.second(LinearEvent{layer, x, y, T, row_mask});
}
// Builds the load-time weight layout the kernel table asks for: Q4_0 / Q8_0 in groups of 8 rows where
// the type's QuantKernels has a packed GEMM (gemm_packed); a no-op otherwise. Call once per layer after loading.
void pack_for_kernels(Linear& layer);
// The W8A8 path of `linear` (layer.int8 set): u8 activations × s8 weights, f32 out (linear_int8.cpp).
void linear_int8(const Linear& layer, const float* x, int64_t T, float* y, const int32_t* row_mask = nullptr);
// Several Linears of the same input x: y_i = linear(layers[i], x). W8A8 layers that quantize their input
// alike share one quantized copy and one parallel pass; any other mix runs layer by layer.
void linear_shared_input(std::span<const Linear* const> layers, const float* x, int64_t T, std::span<float* const> ys,
                         const int32_t* row_mask = nullptr);

// x, y: [T, D]; w: [D] f32. y = x / sqrt(mean(x²) + eps) · w. x == y allowed.
void rms_norm(const float* x, int64_t T, int64_t D, const Tensor& w, float eps, float* y);
// x, y: [T, D]; w, b: [D] f32. y = (x − mean) / sqrt(var + eps) · w + b. x == y allowed.
void layer_norm(const float* x, int64_t T, int64_t D, const Tensor& w, const Tensor* b, float eps, float* y);

// x: [T, row_stride] holding n_head heads of head_dim at the start of each row; rotates the first
// rope_dims of each head for positions pos0 .. pos0+T-1 (scaled by 1/scale).
void rope(float* x, int64_t T, int64_t row_stride, int64_t n_head, int64_t head_dim, int64_t rope_dims, int64_t pos0,
          float theta, float scale, RopePairing pairing);

// gate: [n] ← silu(gate) · up
void silu_mul(float* gate, const float* up, int64_t n);
// x: [n] ← GELU with the tanh approximation (GPT-2's gelu_new)
void gelu_tanh(float* x, int64_t n);
// y: [n] += x
void add(float* y, const float* x, int64_t n);

// table: [V, D] (f32/f16/bf16) → y: [ids.size(), D]. Throws InvalidArgument for an id outside [0, V).
void embedding(const Tensor& table, std::span<const int32_t> ids, float* y);

// Causal multi-head attention with grouped KV heads over the cache.
// q: [T, q_stride] (head h at column h·head_dim), cache K/V of `layer` for positions [0, n_past+T);
// out: [T, n_head·head_dim]. Query t sees keys 0 .. n_past+t.
void attention(const float* q, int64_t q_stride, KvCache& cache, int64_t layer, int64_t n_past, int64_t T, int64_t n_head,
               int64_t n_head_kv, int64_t head_dim, float* out);

// logits: [n] → log-softmax in place (max-subtracted, double accumulation).
void log_softmax(float* logits, int64_t n);

}  // namespace cq::ops
