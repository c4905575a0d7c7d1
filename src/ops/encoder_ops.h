// Forward ops of the encoder families that the decoders do not need: bidirectional attention over padded
// batches, the activations HF configs name, and row-parallel LayerNorm. Shapes are row-major f32.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "cq/tensor.h"

namespace cq::ops {

/// The `hidden_act` / `activation` values of HF encoder configs that cq implements.
enum class Activation { gelu_erf, gelu_tanh, relu, tanh, quick_gelu, silu };

/// "gelu" → gelu_erf, "gelu_new" / "gelu_pytorch_tanh" → gelu_tanh, "relu", "tanh", "quick_gelu" (CLIP: x·σ(1.702x)),
/// "silu" / "swish" → silu (x·σ(x), EfficientNet's); nullopt otherwise.
std::optional<Activation> activation_from_name(const std::string& name);

// x: [n] ← act(x), split across the thread pool.
void activate(Activation act, float* x, int64_t n);

// x: [n] ← σ(x) = 1 / (1 + e^−x), split across the thread pool (squeeze-and-excitation gates).
void sigmoid(float* x, int64_t n);

// Depthwise 2-D convolution (groups = channels) over NHWC images through the kernel table's depthwise_conv_f32:
// x: [N, H, W, C] → y: [N, OH, OW, C]; w: [k·k, C] tap-major; bias: [C] (null: none); zeros pad pad_top / pad_left
// before the first row / column and as many after the last as OH / OW need (OH = (H + pad_top + pad_bottom − k) /
// stride + 1). Output rows of all images are split across the thread pool; each output is the same fma sequence
// whatever the split, so every thread count gives the same bytes.
void depthwise_conv2d(const float* x, int64_t N, int64_t H, int64_t W, int64_t C, const float* w, int64_t k, int64_t stride,
                      int64_t pad_top, int64_t pad_left, const float* bias, float* y, int64_t OH, int64_t OW);

// x: [T, D] → y: [T, D], LayerNorm per row (w, b: [D] f32), rows split across the thread pool.
void layer_norm_rows(const float* x, int64_t T, int64_t D, const Tensor& w, const Tensor* b, float eps, float* y);

// x: [T, D] += r, then y: [T, D] = LN(x) per row (w, b: [D] f32; y may be x), rows split across the thread
// pool: the residual add and the LayerNorm in one pass.
void add_layer_norm_rows(float* x, const float* r, int64_t T, int64_t D, const Tensor& w, const Tensor* b, float eps, float* y);

// Multi-head attention where every query sees every unmasked key of its own sequence.
// q, k, v: [batch·seq, stride] (head h at column h·head_dim); key_mask: [batch, seq], 0 = padding (nullptr: none);
// out: [batch·seq, n_head·head_dim]. scores = q·kᵀ/√head_dim, softmax over the unmasked keys (as an additive
// finfo.min mask gives); a query whose keys are all masked averages all of them, so padding never yields NaN.
// Tasks are (sequence, head) pairs spread over the thread pool.
void attention_bidirectional(const float* q, const float* k, const float* v, int64_t stride, int64_t batch, int64_t seq,
                             int64_t n_head, int64_t head_dim, const int32_t* key_mask, float* out);
// The same in INT8 (the attention_u8s8 kernel: u8 queries and probabilities, s8 keys and values), for W8A8 encoders
// that chose it; within 2–3 % RMS of f32 per head (the probabilities' 8 bits), a model's accuracy measured by --eval.
void attention_bidirectional_int8(const float* q, const float* k, const float* v, int64_t stride, int64_t batch, int64_t seq,
                                  int64_t n_head, int64_t head_dim, const int32_t* key_mask, float* out);

// DeBERTa's disentangled terms added to q·kᵀ before the softmax. pos_k / pos_q: [n_rel, stride] (the relative
// embeddings through the key / query projection, head h at column h·head_dim; null: no c2p / p2c term); c2p_index /
// p2c_index: [seq, seq], for query i and key j the row of pos_k / pos_q: score(i, j) = q_i·k_j + q_i·pos_k[c2p(i,j)] +
// k_j·pos_q[p2c(i,j)], then × scale (1/√(head_dim·(1 + terms))).
struct RelativeTerms {
    const float* pos_k = nullptr;
    const float* pos_q = nullptr;
    int64_t n_rel = 0;
    const int32_t* c2p_index = nullptr;
    const int32_t* p2c_index = nullptr;
    float scale = 1.0f;
};
void attention_disentangled(const float* q, const float* k, const float* v, int64_t stride, int64_t batch, int64_t seq, int64_t n_head,
                            int64_t head_dim, const int32_t* key_mask, const RelativeTerms& rel, float* out);

// The same with a causal mask as well (CLIP's text tower): query t sees the unmasked keys 0..t of its sequence.
void attention_causal(const float* q, const float* k, const float* v, int64_t stride, int64_t batch, int64_t seq, int64_t n_head,
                      int64_t head_dim, const int32_t* key_mask, float* out);

}  // namespace cq::ops
