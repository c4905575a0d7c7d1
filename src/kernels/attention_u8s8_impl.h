// The INT8 bidirectional attention of one (sequence, head) (AttentionU8S8Fn, cq/kernels.h), written once over an
// ISA's helpers: queries quantized per row (u8, the dynamic rule), keys per row and values per channel (s8,
// symmetric), both packed as gemm_u8s8 weights, so the two products are the rung's u8·s8 GEMM. Every rung computes
// the same bits: the helpers' per-element operations are the reference's (kernels/ref/attention_u8s8_ref.cpp).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "cq/int8_gemm.h"
#include "cq/kernels.h"
#include "kernels/kernel_decls.h"

namespace cq::kernels {

// Query rows per block: the scores and probabilities of one block stay in L1 / L2 (48 · seq floats).
inline constexpr int64_t kAttentionU8RowBlock = 48;

// The scratch of attention_u8s8 (attention_u8s8_scratch_bytes), carved in 64-byte aligned sections.
struct AttentionU8Scratch {
    int64_t hq, sp;  // head_dim and seq rounded up to quads
    uint8_t* q;      // [seq, hq] u8 queries
    float* q_scale;
    int32_t* q_zero;
    int8_t* k_packed;  // keys as the product's channels: packed_s8_bytes(seq, head_dim)
    int32_t* k_sums;
    float* k_scale;
    float* k_bias;     // [seq] 0, or −inf for a masked key
    int8_t* v_packed;  // values' channels over keys: packed_s8_bytes(head_dim, seq)
    float* v_scale;
    int32_t* zeros;  // n_zero zeros: the probabilities' zero points and the values' sums
    float* s;        // [row block, seq] scores
    uint8_t* p;      // [row block, sp] probability codes
    float* p_scale;  // [row block] 1 / Σ codes
    int64_t n_zero;

    // The sections' offsets from the base (section i at offsets[i]; offsets[13]: the whole size).
    static void layout(int64_t seq, int64_t head_dim, int64_t offsets[14]) {
        const int64_t hq = round_up(head_dim, 4), sp = round_up(seq, 4), block = std::min(seq, kAttentionU8RowBlock);
        const int64_t n_zero = std::max({seq, head_dim, block});
        const int64_t sizes[13] = {seq * hq, seq * 4, seq * 4, packed_s8_bytes(seq, head_dim), seq * 4, seq * 4, seq * 4,
                                   packed_s8_bytes(head_dim, seq), head_dim * 4, n_zero * 4, block * seq * 4, block * sp, block * 4};
        offsets[0] = 0;
        for (int i = 0; i < 13; ++i) offsets[i + 1] = offsets[i] + round_up(sizes[i], 64);
    }
    static int64_t bytes(int64_t seq, int64_t head_dim) {
        int64_t o[14];
        layout(seq, head_dim, o);
        return o[13];
    }

    AttentionU8Scratch(int64_t seq, int64_t head_dim, uint8_t* base)
        : hq(round_up(head_dim, 4)), sp(round_up(seq, 4)), n_zero(std::max({seq, head_dim, std::min(seq, kAttentionU8RowBlock)})) {
        int64_t o[14];
        layout(seq, head_dim, o);
        q = base + o[0];
        q_scale = reinterpret_cast<float*>(base + o[1]);
        q_zero = reinterpret_cast<int32_t*>(base + o[2]);
        k_packed = reinterpret_cast<int8_t*>(base + o[3]);
        k_sums = reinterpret_cast<int32_t*>(base + o[4]);
        k_scale = reinterpret_cast<float*>(base + o[5]);
        k_bias = reinterpret_cast<float*>(base + o[6]);
        v_packed = reinterpret_cast<int8_t*>(base + o[7]);
        v_scale = reinterpret_cast<float*>(base + o[8]);
        zeros = reinterpret_cast<int32_t*>(base + o[9]);
        s = reinterpret_cast<float*>(base + o[10]);
        p = base + o[11];
        p_scale = reinterpret_cast<float*>(base + o[12]);
    }
};

// The scalar helpers: the specification of the quantizers and the softmax, which vector helpers match bit for bit.
struct ScalarAttentionU8Helpers {
    // |x| ≤ amax → its s8 code: nearbyint(x · (1 / scale)) clamped to ±127 (in float), scale = amax / 127, 1 for
    // amax 0 (or not finite).
    static float s8_scale(float amax) {
        const float s = amax / 127.0f;
        return s > 0.0f && std::isfinite(s) ? s : 1.0f;
    }
    static int8_t s8_code(float x, float inv_scale) {
        float c = std::nearbyint(x * inv_scale);
        c = c > -127.0f ? c : -127.0f;
        c = c < 127.0f ? c : 127.0f;
        return int8_t(c);
    }
    // Rows of x [n, k] (row stride ldx), each its own scale → packed as n channels of k inputs, sums [n], scale [n].
    static void quantize_pack_rows(const float* x, int64_t n, int64_t k, int64_t ldx, int8_t* packed, int32_t* sums, float* scale) {
        const int64_t kq = s8_quads(k);
        std::fill(packed, packed + packed_s8_bytes(n, k), int8_t(0));
        for (int64_t c = 0; c < n; ++c) {
            const float* row = x + c * ldx;
            float amax = 0.0f;
            for (int64_t i = 0; i < k; ++i) amax = std::max(amax, std::fabs(row[i]));
            scale[c] = s8_scale(amax);
            const float inv = 1.0f / scale[c];
            int8_t* panel = packed + c / kS8PanelChannels * kq * kS8PanelChannels * kS8QuadInputs;
            int32_t sum = 0;
            for (int64_t i = 0; i < k; ++i) {
                const int8_t code = s8_code(row[i], inv);
                panel[(i / kS8QuadInputs * kS8PanelChannels + c % kS8PanelChannels) * kS8QuadInputs + i % kS8QuadInputs] = code;
                sum += code;
            }
            sums[c] = sum;
        }
    }
    // Columns of x [n, k] (row stride ldx), each its own scale → packed as k channels of n inputs, scale [k].
    static void quantize_pack_columns(const float* x, int64_t n, int64_t k, int64_t ldx, int8_t* packed, float* scale) {
        const int64_t nq = s8_quads(n);
        std::fill(packed, packed + packed_s8_bytes(k, n), int8_t(0));
        for (int64_t c = 0; c < k; ++c) {
            float amax = 0.0f;
            for (int64_t r = 0; r < n; ++r) amax = std::max(amax, std::fabs(x[r * ldx + c]));
            scale[c] = s8_scale(amax);
            const float inv = 1.0f / scale[c];
            int8_t* panel = packed + c / kS8PanelChannels * nq * kS8PanelChannels * kS8QuadInputs;
            for (int64_t r = 0; r < n; ++r)
                panel[(r / kS8QuadInputs * kS8PanelChannels + c % kS8PanelChannels) * kS8QuadInputs + r % kS8QuadInputs] =
                    s8_code(x[r * ldx + c], inv);
        }
    }
    // Row i of s [rows, seq] → p [i, 0..round_up(seq, 4)) (zeros past seq): p_j = min(nearbyint(255 · e_j), 255),
    // e_j = exp_nonpositive(fma(s_j, scale, −scale · max s)); p_scale[i] = 1 / Σ p_j.
    static void softmax_rows_u8(const float* s, int64_t rows, int64_t seq, float scale, uint8_t* p, int64_t ldp, float* p_scale) {
        for (int64_t i = 0; i < rows; ++i) {
            const float* row = s + i * seq;
            uint8_t* out = p + i * ldp;
            float mx = -INFINITY;
            for (int64_t j = 0; j < seq; ++j) mx = std::max(mx, row[j]);
            const float shift = -scale * mx;
            int32_t sum = 0;
            for (int64_t j = 0; j < seq; ++j) {
                float c = std::nearbyint(exp_nonpositive_scalar(std::fma(row[j], scale, shift)) * 255.0f);
                c = c < 255.0f ? c : 255.0f;
                out[j] = uint8_t(c);
                sum += out[j];
            }
            for (int64_t j = seq; j < ldp; ++j) out[j] = 0;
            p_scale[i] = sum > 0 ? 1.0f / float(sum) : 0.0f;
        }
    }
};

// Isa: static helpers
//   quantize_rows_u8_dynamic (QuantizeRowsU8DynamicFn), gemm (GemmU8S8Fn),
//   quantize_pack_rows(x, n, k, ldx, packed, sums, scale): rows of x [n, k] → s8 per row, packed as n channels of k inputs,
//   quantize_pack_columns(x, n, k, ldx, packed, scale): columns of x [n, k] → s8 per column, packed as k channels of n inputs,
//   softmax_rows_u8(s, rows, seq, scale, p, ldp, p_scale): each row of s → its probability codes and 1 / Σ codes.
template <class Isa>
void attention_u8s8(int64_t seq, int64_t head_dim, const float* q, const float* k, const float* v, int64_t ld, const int32_t* key_mask,
                    float scale, float* out, int64_t ldo, uint8_t* scratch) {
    AttentionU8Scratch w(seq, head_dim, scratch);
    Isa::quantize_rows_u8_dynamic(q, seq, head_dim, ld, kU8QMax, w.q, w.hq, w.q_scale, w.q_zero);
    Isa::quantize_pack_rows(k, seq, head_dim, ld, w.k_packed, w.k_sums, w.k_scale);
    Isa::quantize_pack_columns(v, seq, head_dim, ld, w.v_packed, w.v_scale);
    std::fill(w.zeros, w.zeros + w.n_zero, 0);
    // a masked key's scores are −inf (through the product's bias); no valid key: every key counts
    const bool masked = key_mask && std::any_of(key_mask, key_mask + seq, [](int32_t m) { return m != 0; }) &&
                        std::any_of(key_mask, key_mask + seq, [](int32_t m) { return m == 0; });
    if (masked)
        for (int64_t j = 0; j < seq; ++j) w.k_bias[j] = key_mask[j] ? 0.0f : -INFINITY;
    for (int64_t i0 = 0; i0 < seq; i0 += kAttentionU8RowBlock) {
        const int64_t rows = std::min(kAttentionU8RowBlock, seq - i0);
        // scores: [rows, seq] = q_scale·k_scale·(Σ q·k − q_zero·Σ k) (+ the mask's −inf)
        Isa::gemm(rows, seq, head_dim, w.q + i0 * w.hq, w.hq, w.q_scale + i0, w.q_zero + i0, 1, w.k_packed, w.k_sums, w.k_scale,
                  masked ? w.k_bias : nullptr, w.s, seq);
        Isa::softmax_rows_u8(w.s, rows, seq, scale, w.p, w.sp, w.p_scale);
        // out: [rows, head_dim] = (Σ_j p_j·v_j) · v_scale / Σ_j p_j
        Isa::gemm(rows, head_dim, seq, w.p, w.sp, w.p_scale, w.zeros, 1, w.v_packed, w.zeros, w.v_scale, nullptr, out + i0 * ldo, ldo);
    }
}

}  // namespace cq::kernels
