// Causal grouped-query attention over the KV cache. Prompt batches use two GEMMs per head
// (scores = Q·Kᵀ, out = P·V); single-token decoding runs heads in parallel with a GEMV for the scores and a
// plain loop for P·V, where GEMM call overhead would dominate.
#include <algorithm>
#include <cmath>

#include "cq/kernels.h"
#include "cq/thread_pool.h"
#include "ops/ops.h"

namespace cq::ops {

namespace {

// row: [n] raw scores of one query; entries ≥ n_valid are masked. row ← softmax(scale·row) over the valid
// ones (the kernel table's softmax), 0 beyond.
void softmax_causal(float* row, int64_t n_valid, int64_t n, float scale) {
    kernel_table().softmax_f32.fn(row, n_valid, scale);
    std::fill(row + n_valid, row + n, 0.0f);
}

constexpr int64_t kGemmMinTokens = 8;
constexpr int64_t kQueryBlock = 128;  // queries per GEMM block in prompt processing

}  // namespace

void attention(const float* q, int64_t q_stride, KvCache& cache, int64_t layer, int64_t n_past, int64_t T, int64_t n_head,
               int64_t n_head_kv, int64_t head_dim, float* out) {
    const int64_t n_kv = n_past + T;
    const int64_t kv_dim = n_head_kv * head_dim;
    const int64_t group = n_head / n_head_kv;
    const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
    const float* k_all = cache.k(layer, 0);
    const float* v_all = cache.v(layer, 0);
    const int64_t out_stride = n_head * head_dim;

    if (T >= kGemmMinTokens) {
        // Query blocks only multiply against the keys they can see, which skips the masked half of
        // a causal prompt.
        const KernelTable& kt = kernel_table();
        for (int64_t t0 = 0; t0 < T; t0 += kQueryBlock) {
            const int64_t tb = std::min(kQueryBlock, T - t0);
            const int64_t keys = n_past + t0 + tb;
            ThreadPool::global().parallel_for(n_head, [&](int64_t h0, int64_t h1) {
                thread_local std::vector<float> block;
                block.resize(static_cast<size_t>(tb * keys));
                for (int64_t h = h0; h < h1; ++h) {
                    const int64_t hk = h / group;
                    // scores: [tb, keys] = Q_h: [tb, head_dim] · K_hkᵀ
                    kt.gemm_f32.fn(tb, keys, head_dim, q + t0 * q_stride + h * head_dim, q_stride, k_all + hk * head_dim, kv_dim,
                                   block.data(), keys);
                    for (int64_t t = 0; t < tb; ++t) {
                        float* row = block.data() + t * keys;
                        softmax_causal(row, n_past + t0 + t + 1, keys, scale);
                    }
                    // out_h: [tb, head_dim] = P: [tb, keys] · V_hk: [keys, head_dim]
                    kt.gemm_f32_nn.fn(tb, head_dim, keys, block.data(), keys, v_all + hk * head_dim, kv_dim,
                                      out + t0 * out_stride + h * head_dim, out_stride);
                }
            });
        }
        return;
    }

    // Few queries: one task per (token, head). The scores are the kernel table's GEMV over the cached keys (rows kv_dim
    // apart): a dot product written as a plain loop stays one sequential chain (no reassociation), 4 cycles an element.
    const GemvF32Fn gemv = kernel_table().gemv_f32.fn;
    ThreadPool::global().parallel_for(T * n_head, [&](int64_t begin, int64_t end) {
        thread_local std::vector<float> row;
        row.resize(static_cast<size_t>(n_kv));
        for (int64_t task = begin; task < end; ++task) {
            const int64_t t = task / n_head, h = task % n_head, hk = h / group;
            const float* qh = q + t * q_stride + h * head_dim;
            const int64_t valid = n_past + t + 1;
            gemv(valid, head_dim, k_all + hk * head_dim, kv_dim, qh, row.data());
            softmax_causal(row.data(), valid, valid, scale);
            float* o = out + t * out_stride + h * head_dim;
            std::fill(o, o + head_dim, 0.0f);
            for (int64_t j = 0; j < valid; ++j) {
                const float p = row[j];
                const float* vj = v_all + j * kv_dim + hk * head_dim;
                for (int64_t d = 0; d < head_dim; ++d) o[d] += p * vj[d];
            }
        }
    });
}

}  // namespace cq::ops
