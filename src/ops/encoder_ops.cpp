// Encoder ops: bidirectional masked attention (the fused attention_f32 kernel, or two GEMMs and the softmax kernel,
// per (sequence, head)), HF activations (exact GELU through the kernel table) and row-parallel (residual +) LayerNorm.
#include "ops/encoder_ops.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "cq/kernels.h"
#include "cq/thread_pool.h"
#include "ops/ops.h"

namespace cq::ops {

namespace {
constexpr int64_t kMinElementsPerThread = 16384;  // below this, waking threads costs more than the work
constexpr int64_t kMinRowsPerThread = 16;
// Bidirectional attention runs the fused kernel (attention_f32) up to this many keys, whose transposed keys and
// score rows stay in L2; longer sequences (and rungs where it is only the scalar reference) run two GEMMs and
// the softmax kernel per (sequence, head).
constexpr int64_t kMaxFusedSeq = 1024;
}  // namespace

std::optional<Activation> activation_from_name(const std::string& name) {
    if (name == "gelu") return Activation::gelu_erf;
    if (name == "gelu_new" || name == "gelu_pytorch_tanh") return Activation::gelu_tanh;
    if (name == "relu") return Activation::relu;
    if (name == "tanh") return Activation::tanh;
    if (name == "quick_gelu") return Activation::quick_gelu;
    if (name == "silu" || name == "swish") return Activation::silu;
    return std::nullopt;
}

void activate(Activation act, float* x, int64_t n) {
    ThreadPool::global().parallel_for(
        n,
        [&](int64_t i0, int64_t i1) {
            float* p = x + i0;
            const int64_t m = i1 - i0;
            switch (act) {
                case Activation::gelu_erf: kernel_table().gelu_erf_f32.fn(p, p, m); break;
                case Activation::gelu_tanh: gelu_tanh(p, m); break;
                case Activation::relu:
                    for (int64_t i = 0; i < m; ++i) p[i] = std::max(p[i], 0.0f);
                    break;
                case Activation::tanh:
                    for (int64_t i = 0; i < m; ++i) p[i] = std::tanh(p[i]);
                    break;
                case Activation::quick_gelu:  // x·σ(1.702x), as transformers' QuickGELUActivation
                    for (int64_t i = 0; i < m; ++i) p[i] = p[i] / (1.0f + std::exp(-1.702f * p[i]));
                    break;
                case Activation::silu:  // x·σ(x), torch's SiLU (transformers' "swish" / "silu")
                    for (int64_t i = 0; i < m; ++i) p[i] = p[i] / (1.0f + std::exp(-p[i]));
                    break;
            }
        },
        kMinElementsPerThread);
}

void sigmoid(float* x, int64_t n) {
    ThreadPool::global().parallel_for(
        n,
        [&](int64_t i0, int64_t i1) {
            for (int64_t i = i0; i < i1; ++i) x[i] = 1.0f / (1.0f + std::exp(-x[i]));
        },
        kMinElementsPerThread);
}

void depthwise_conv2d(const float* x, int64_t N, int64_t H, int64_t W, int64_t C, const float* w, int64_t k, int64_t stride,
                      int64_t pad_top, int64_t pad_left, const float* bias, float* y, int64_t OH, int64_t OW) {
    const auto kernel = kernel_table().depthwise_conv_f32.fn;
    // Tasks are output rows r = n·OH + oy; a chunk may span images, each image's part is one kernel call.
    const int64_t row_work = std::max<int64_t>(1, OW * C * k * k);
    ThreadPool::global().parallel_for(
        N * OH,
        [&](int64_t r0, int64_t r1) {
            for (int64_t r = r0; r < r1;) {
                const int64_t n = r / OH, oy0 = r % OH, oy1 = std::min(OH, oy0 + (r1 - r));
                kernel(x + n * H * W * C, H, W, C, w, k, stride, pad_top, pad_left, bias, y + n * OH * OW * C, OW, oy0, oy1);
                r += oy1 - oy0;
            }
        },
        std::max<int64_t>(1, kMinElementsPerThread / row_work));
}

void layer_norm_rows(const float* x, int64_t T, int64_t D, const Tensor& w, const Tensor* b, float eps, float* y) {
    ThreadPool::global().parallel_for(
        T, [&](int64_t r0, int64_t r1) { layer_norm(x + r0 * D, r1 - r0, D, w, b, eps, y + r0 * D); },
        std::max<int64_t>(kMinRowsPerThread, kMinElementsPerThread / std::max<int64_t>(D, 1)));
}

void add_layer_norm_rows(float* x, const float* r, int64_t T, int64_t D, const Tensor& w, const Tensor* b, float eps, float* y) {
    ThreadPool::global().parallel_for(
        T,
        [&](int64_t r0, int64_t r1) {
            add(x + r0 * D, r + r0 * D, (r1 - r0) * D);
            layer_norm(x + r0 * D, r1 - r0, D, w, b, eps, y + r0 * D);
        },
        std::max<int64_t>(kMinRowsPerThread, kMinElementsPerThread / std::max<int64_t>(D, 1)));
}

namespace {
void attention(const float* q, const float* k, const float* v, int64_t stride, int64_t batch, int64_t seq, int64_t n_head,
               int64_t head_dim, const int32_t* key_mask, bool causal, const RelativeTerms* rel, float* out) {
    const KernelTable& kt = kernel_table();
    const float scale = rel ? rel->scale : 1.0f / std::sqrt(static_cast<float>(head_dim));
    const int64_t out_stride = n_head * head_dim;
    if (!causal && !rel && seq <= kMaxFusedSeq && (kt.attention_f32.isa != IsaLevel::ref || kt.level == IsaLevel::ref)) {
        // One fused kernel call per (sequence, head): no GEMM call overhead, the scores stay in L1.
        ThreadPool::global().parallel_for(batch * n_head, [&](int64_t task0, int64_t task1) {
            thread_local std::vector<float> scratch;
            scratch.resize(static_cast<size_t>(attention_f32_scratch_floats(seq, head_dim)));
            for (int64_t task = task0; task < task1; ++task) {
                const int64_t b = task / n_head, h = task % n_head;
                const int64_t base = b * seq * stride + h * head_dim;
                kt.attention_f32.fn(seq, head_dim, q + base, k + base, v + base, stride, key_mask ? key_mask + b * seq : nullptr, scale,
                                    out + b * seq * out_stride + h * head_dim, out_stride, scratch.data());
            }
        });
        return;
    }
    ThreadPool::global().parallel_for(batch * n_head, [&](int64_t task0, int64_t task1) {
        thread_local std::vector<float> scores, c2p, p2c;
        scores.resize(static_cast<size_t>(seq * seq));
        for (int64_t task = task0; task < task1; ++task) {
            const int64_t b = task / n_head, h = task % n_head;
            const int64_t base = b * seq * stride + h * head_dim;
            const int32_t* mask = key_mask ? key_mask + b * seq : nullptr;
            // no mask where every key is valid, nor where none is (those queries average all keys)
            const int64_t n_valid = mask ? std::count_if(mask, mask + seq, [](int32_t m) { return m != 0; }) : seq;
            if (n_valid == 0 || n_valid == seq) mask = nullptr;
            // scores: [seq, seq] = Q_bh: [seq, head_dim] · K_bhᵀ
            kt.gemm_f32.fn(seq, seq, head_dim, q + base, stride, k + base, stride, scores.data(), seq);
            if (rel) {
                // c2p: [seq, n_rel] = Q_bh · pos_K_hᵀ; p2c: [seq, n_rel] = K_bh · pos_Q_hᵀ; each score gathers its entry
                const int64_t R = rel->n_rel;
                if (rel->pos_k) {
                    c2p.resize(static_cast<size_t>(seq * R));
                    kt.gemm_f32.fn(seq, R, head_dim, q + base, stride, rel->pos_k + h * head_dim, stride, c2p.data(), R);
                }
                if (rel->pos_q) {
                    p2c.resize(static_cast<size_t>(seq * R));
                    kt.gemm_f32.fn(seq, R, head_dim, k + base, stride, rel->pos_q + h * head_dim, stride, p2c.data(), R);
                }
                for (int64_t i = 0; i < seq; ++i)
                    for (int64_t j = 0; j < seq; ++j) {
                        float& sc = scores[static_cast<size_t>(i * seq + j)];
                        if (rel->pos_k) sc += c2p[static_cast<size_t>(i * R + rel->c2p_index[i * seq + j])];
                        if (rel->pos_q) sc += p2c[static_cast<size_t>(j * R + rel->p2c_index[i * seq + j])];
                    }
            }
            for (int64_t t = 0; t < seq; ++t) {
                float* row = scores.data() + t * seq;
                // causal: keys after t get zero weight; a query none of whose keys 0..t is valid (left padding)
                // averages them all rather than giving NaN
                const int64_t n_keys = causal ? t + 1 : seq;
                if (causal) std::fill(row + n_keys, row + seq, -INFINITY);
                if (mask && std::any_of(mask, mask + n_keys, [](int32_t m) { return m != 0; }))
                    for (int64_t j = 0; j < n_keys; ++j)
                        if (!mask[j]) row[j] = -INFINITY;
                kt.softmax_f32.fn(row, seq, scale);
            }
            // out_bh: [seq, head_dim] = P: [seq, seq] · V_bh: [seq, head_dim]
            kt.gemm_f32_nn.fn(seq, head_dim, seq, scores.data(), seq, v + base, stride, out + b * seq * out_stride + h * head_dim,
                              out_stride);
        }
    });
}

}  // namespace

void attention_bidirectional(const float* q, const float* k, const float* v, int64_t stride, int64_t batch, int64_t seq,
                             int64_t n_head, int64_t head_dim, const int32_t* key_mask, float* out) {
    attention(q, k, v, stride, batch, seq, n_head, head_dim, key_mask, false, nullptr, out);
}

void attention_bidirectional_int8(const float* q, const float* k, const float* v, int64_t stride, int64_t batch, int64_t seq,
                                  int64_t n_head, int64_t head_dim, const int32_t* key_mask, float* out) {
    const KernelTable& kt = kernel_table();
    const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
    const int64_t out_stride = n_head * head_dim;
    ThreadPool::global().parallel_for(batch * n_head, [&](int64_t task0, int64_t task1) {
        thread_local std::vector<uint64_t> scratch;  // 8-byte units, 64-byte aligned below
        scratch.resize(static_cast<size_t>(attention_u8s8_scratch_bytes(seq, head_dim) + 64) / 8 + 1);
        auto* base = reinterpret_cast<uint8_t*>((reinterpret_cast<uintptr_t>(scratch.data()) + 63) / 64 * 64);
        for (int64_t task = task0; task < task1; ++task) {
            const int64_t b = task / n_head, h = task % n_head;
            const int64_t in_base = b * seq * stride + h * head_dim;
            kt.attention_u8s8.fn(seq, head_dim, q + in_base, k + in_base, v + in_base, stride, key_mask ? key_mask + b * seq : nullptr, scale,
                                 out + b * seq * out_stride + h * head_dim, out_stride, base);
        }
    });
}

void attention_disentangled(const float* q, const float* k, const float* v, int64_t stride, int64_t batch, int64_t seq, int64_t n_head,
                            int64_t head_dim, const int32_t* key_mask, const RelativeTerms& rel, float* out) {
    attention(q, k, v, stride, batch, seq, n_head, head_dim, key_mask, false, &rel, out);
}

void attention_causal(const float* q, const float* k, const float* v, int64_t stride, int64_t batch, int64_t seq, int64_t n_head,
                      int64_t head_dim, const int32_t* key_mask, float* out) {
    attention(q, k, v, stride, batch, seq, n_head, head_dim, key_mask, true, nullptr, out);
}

}  // namespace cq::ops
