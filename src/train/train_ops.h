// Forward/backward kernel pairs for training (llm.c style): each op's forward saves what its backward needs,
// each backward has a scalar `__ref` twin (the specification, tested against finite differences). Fast forms
// split work into fixed-size tasks, so every output's reduction order, and so every byte, is the same for any
// thread count. Activations are f32, row-major; N = rows (batch × tokens). Backward grads of parameters add (+=).
#pragma once

#include <cstdint>
#include <string>

#include "cq/llm.h"

namespace cq::train {

// ---- matmul precision (mixed-precision training) ----
// The number format of the matrix products' operands (Linear: x, w and dy; attention: q, k, v, p and their gradients;
// every product accumulated in f32), set per
// calling thread for a scope; weights, gradients and optimiser state stay f32 (the master copy) whatever it is.
//   f32:          as they are.
//   bf16:         rounded to bf16 (nearest even) and multiplied by the kernel table's gemm_bf16 / gemm_bf16_nn where
//                 it has a native kernel (AVX-512 BF16), else as bf16_via_f32 (the same numbers, f32 products).
//   bf16_via_f32: rounded to bf16, held as f32, through gemm_f32 / gemm_f32_nn.
//   fp16_via_f32: rounded to fp16 (|x| ≥ 65520 → ±inf, tiny values to subnormals / 0), held as f32, through the f32
//                 GEMMs: FP16 training emulated on CPUs without FP16 arithmetic (needs loss scaling; see
//                 DynamicLossScaler).
enum class MatmulPrecision { f32, bf16, bf16_via_f32, fp16_via_f32 };
MatmulPrecision matmul_precision();
class ScopedMatmulPrecision {
public:
    explicit ScopedMatmulPrecision(MatmulPrecision p);
    ~ScopedMatmulPrecision();
    ScopedMatmulPrecision(const ScopedMatmulPrecision&) = delete;
    ScopedMatmulPrecision& operator=(const ScopedMatmulPrecision&) = delete;

private:
    MatmulPrecision previous_;
};
// "fp32" | "bf16" | "fp16" (cq finetune's --precision) → f32 | bf16 | fp16_via_f32; InvalidArgument otherwise.
MatmulPrecision parse_matmul_precision(const std::string& name);
// x: [n] → y: [n] rounded to precision p's operand format and back to f32 (y may alias x); the scalar reference.
void round_operands__ref(MatmulPrecision p, const float* x, float* y, int64_t n);

// ---- Linear ----
// Under a matmul precision other than f32 (see above) the three products round their operands first.
// x: [N, I], w: [O, I], b: [O] or null → y: [N, O] = x·wᵀ + b
void linear_forward(const float* x, const float* w, const float* b, int64_t N, int64_t I, int64_t O, float* y);
// dy: [N, O] → dx: [N, I] (overwritten, or added to with accumulate_dx; skipped when null), dw: [O, I] +=,
// db: [O] += (skipped when null)
void linear_backward(const float* dy, const float* x, const float* w, int64_t N, int64_t I, int64_t O, float* dx,
                     bool accumulate_dx, float* dw, float* db);
void linear_forward__ref(const float* x, const float* w, const float* b, int64_t N, int64_t I, int64_t O, float* y);
void linear_backward__ref(const float* dy, const float* x, const float* w, int64_t N, int64_t I, int64_t O, float* dx,
                          bool accumulate_dx, float* dw, float* db);
// The twins under precision p: the f32 references on operands rounded by round_operands__ref (db from dy unrounded).
void linear_forward_rounded__ref(MatmulPrecision p, const float* x, const float* w, const float* b, int64_t N, int64_t I,
                                 int64_t O, float* y);
void linear_backward_rounded__ref(MatmulPrecision p, const float* dy, const float* x, const float* w, int64_t N, int64_t I,
                                  int64_t O, float* dx, bool accumulate_dx, float* dw, float* db);

// ---- RMSNorm ----
// x: [N, D], w: [D] → y: [N, D] = x·rstd·w, rstd: [N] = 1/sqrt(mean(x²) + eps)
void rmsnorm_forward(const float* x, const float* w, int64_t N, int64_t D, float eps, float* y, float* rstd);
// dy: [N, D] → dx: [N, D] +=, dw: [D] +=
void rmsnorm_backward(const float* dy, const float* x, const float* w, const float* rstd, int64_t N, int64_t D, float* dx,
                      float* dw);
void rmsnorm_forward__ref(const float* x, const float* w, int64_t N, int64_t D, float eps, float* y, float* rstd);
void rmsnorm_backward__ref(const float* dy, const float* x, const float* w, const float* rstd, int64_t N, int64_t D,
                           float* dx, float* dw);

// ---- LayerNorm ----
// x: [N, D], w, b: [D] (b may be null) → y: [N, D] = (x − mean)·rstd·w + b, mean, rstd: [N]
void layernorm_forward(const float* x, const float* w, const float* b, int64_t N, int64_t D, float eps, float* y,
                       float* mean, float* rstd);
// dy: [N, D] → dx: [N, D] +=, dw: [D] +=, db: [D] += (skipped when null)
void layernorm_backward(const float* dy, const float* x, const float* w, const float* mean, const float* rstd, int64_t N,
                        int64_t D, float* dx, float* dw, float* db);
void layernorm_forward__ref(const float* x, const float* w, const float* b, int64_t N, int64_t D, float eps, float* y,
                            float* mean, float* rstd);
void layernorm_backward__ref(const float* dy, const float* x, const float* w, const float* mean, const float* rstd,
                             int64_t N, int64_t D, float* dx, float* dw, float* db);

// ---- GELU (tanh approximation, GPT-2's gelu_new) ----
// x: [n] → y: [n] = 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))
void gelu_tanh_forward(const float* x, float* y, int64_t n);
// dy: [n] → dx: [n] (overwritten; may alias dy)
void gelu_tanh_backward(const float* dy, const float* x, float* dx, int64_t n);
void gelu_tanh_backward__ref(const float* dy, const float* x, float* dx, int64_t n);

// ---- RoPE ----
// The rotation angles of positions [0, T): cos, sin: [T, rope_dims/2], computed in double then rounded.
void rope_tables(int64_t T, int64_t rope_dims, float theta, float scale, float* cos_t, float* sin_t);
// x: [B·T, stride] with n_head heads of head_dim at the start of each row (position = row mod T); rotates
// the first rope_dims of each head in place. backward: dx ← Rᵀ·dx (the inverse rotation).
void rope_forward(float* x, int64_t B, int64_t T, int64_t stride, int64_t n_head, int64_t head_dim, int64_t rope_dims,
                  const float* cos_t, const float* sin_t, RopePairing pairing);
void rope_backward(float* dx, int64_t B, int64_t T, int64_t stride, int64_t n_head, int64_t head_dim, int64_t rope_dims,
                   const float* cos_t, const float* sin_t, RopePairing pairing);
void rope_backward__ref(float* dx, int64_t B, int64_t T, int64_t stride, int64_t n_head, int64_t head_dim,
                        int64_t rope_dims, const float* cos_t, const float* sin_t, RopePairing pairing);

// ---- grouped-query attention: causal, or bidirectional over a key mask ----
// Under a matmul precision other than f32 its six products round their operands first (softmax and its backward stay f32).
// q: [B·T, Hq·hd], k, v: [B·T, Hkv·hd] → p: [B, Hq, T, T] (softmax(q·kᵀ/√hd) over the keys a query sees, 0 elsewhere),
// out: [B·T, Hq·hd] = (p ∘ drop)·v. Query head h reads KV head h / (Hq/Hkv). key_mask: [B, T] (1: real token) makes
// it bidirectional over the real keys (null: causal); drop: [B, Hq, T, T] dropout multipliers on p (null: none).
void attention_forward(const float* q, const float* k, const float* v, int64_t B, int64_t T, int64_t Hq, int64_t Hkv,
                       int64_t hd, float* p, float* out, const int32_t* key_mask = nullptr, const float* drop = nullptr);
// dout: [B·T, Hq·hd] → dq: [B·T, Hq·hd], dk, dv: [B·T, Hkv·hd] (all overwritten)
void attention_backward(const float* dout, const float* q, const float* k, const float* v, const float* p, int64_t B,
                        int64_t T, int64_t Hq, int64_t Hkv, int64_t hd, float* dq, float* dk, float* dv,
                        const int32_t* key_mask = nullptr, const float* drop = nullptr);
void attention_forward__ref(const float* q, const float* k, const float* v, int64_t B, int64_t T, int64_t Hq,
                            int64_t Hkv, int64_t hd, float* p, float* out, const int32_t* key_mask = nullptr,
                            const float* drop = nullptr);
void attention_backward__ref(const float* dout, const float* q, const float* k, const float* v, const float* p,
                             int64_t B, int64_t T, int64_t Hq, int64_t Hkv, int64_t hd, float* dq, float* dk, float* dv,
                             const int32_t* key_mask = nullptr, const float* drop = nullptr);

// ---- GELU (erf, BERT's "gelu") and tanh ----
// x: [n] → y = 0.5·x·(1 + erf(x/√2)); backward dx = dy·(Φ(x) + x·φ(x)) (dx may alias dy)
void gelu_erf_forward(const float* x, float* y, int64_t n);
void gelu_erf_backward(const float* dy, const float* x, float* dx, int64_t n);
void gelu_erf_backward__ref(const float* dy, const float* x, float* dx, int64_t n);
// y = tanh(x) (y may alias x); backward from y: dx = dy·(1 − y²)
void tanh_forward(const float* x, float* y, int64_t n);
void tanh_backward(const float* dy, const float* y, float* dx, int64_t n);

// ---- dropout ----
// m: [n] = 1/(1−p) with probability 1−p, else 0, from a counter-based hash of (key, i): the same for any thread count
// and reproducible in the backward. y = x·m, dx = dy·m (elementwise; use mul_forward).
void dropout_mask(uint64_t key, float p, float* m, int64_t n);
// y: [n] = a·b (y may alias a)
void mul_forward(const float* a, const float* b, float* y, int64_t n);

// ---- SiLU·mul (SwiGLU) ----
// g, u: [n] → h: [n] = silu(g)·u
void swiglu_forward(const float* g, const float* u, float* h, int64_t n);
// dh: [n] → dg, du: [n] (overwritten)
void swiglu_backward(const float* dh, const float* g, const float* u, float* dg, float* du, int64_t n);
void swiglu_backward__ref(const float* dh, const float* g, const float* u, float* dg, float* du, int64_t n);

// ---- embedding ----
// table: [V, D], ids: [N] (in [0, V), checked by the caller) → y: [N, D]
void embedding_forward(const float* table, const int32_t* ids, int64_t N, int64_t D, float* y);
// dy: [N, D] → dtable: [V, D] += (rows added in token order)
void embedding_backward(const float* dy, const int32_t* ids, int64_t N, int64_t D, float* dtable);
void embedding_backward__ref(const float* dy, const int32_t* ids, int64_t N, int64_t D, float* dtable);

// ---- softmax cross-entropy ----
// logits: [N, V], targets: [N] (< 0: ignored) → probs: [N, V] (softmax; may alias logits), losses: [N]
// (−log p[target], 0 where ignored). Returns Σ losses (double).
double cross_entropy_forward(const float* logits, const int32_t* targets, int64_t N, int64_t V, float* probs,
                             float* losses);
// dlogits: [N, V] = (probs − onehot(target))·dloss (0 rows where ignored); dlogits may alias probs.
void cross_entropy_backward(const float* probs, const int32_t* targets, int64_t N, int64_t V, float dloss,
                            float* dlogits);
void cross_entropy_backward__ref(const float* probs, const int32_t* targets, int64_t N, int64_t V, float dloss,
                                 float* dlogits);

// y: [n] = a + b (y may alias a)
void add_forward(const float* a, const float* b, float* y, int64_t n);

}  // namespace cq::train
