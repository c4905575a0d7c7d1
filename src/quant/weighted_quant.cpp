// Importance-weighted quantization (the quality-search tier of the formats, CONVENTIONS "three tiers"):
// llama.cpp's quantize_q4_0 … quantize_q6_K and quantize_iq4_nl / _xs with quant_weights, operation for
// operation (same f32 evaluation order, nearest_int rounding and f16 round trips), so the blocks equal
// llama-quantize --imatrix's. The searches only choose values; the blocks are the reference formats
// (src/formats/blocks.h) and decode with the reference codecs. Without an importance row each type does
// what llama-quantize does without an imatrix: the reference codec, except IQ4_NL (its 7-step search).
#include "cq/weighted_quant.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

#include "cq/error.h"
#include "quant/weighted_quant_block.h"
#include "formats/codec_math.h"
#include "formats/formats.h"
#include "kernels/kernel_decls.h"

namespace cq {
namespace {

using namespace formats;
using kernels::f16_to_f32_scalar;
using kernels::f32_to_f16_scalar;

constexpr float kGroupMaxEps = 1e-15f;  // ggml's GROUP_MAX_EPS: below it a group is all zero

// ---- the searches (ggml-quants.c helpers), weights always given ----

// Symmetric fit x ≈ scale·(L − nmax), L ∈ [0, 2·nmax): round at −nmax/max, then 18 nearby scales, keeping the
// one maximising (Σw·x·l)²/Σw·l²; returns that least-squares scale (ggml's make_qx_quants, rmse_type 1, qw).
float make_qx_quants_w(int n, int nmax, const float* x, int8_t* L, const float* w) {
    const SignedMax m = signed_absmax(x, n);
    if (m.amax < kGroupMaxEps) {
        std::fill(L, L + n, int8_t{0});
        return 0.f;
    }
    auto level = [nmax](float v) { return std::max(-nmax, std::min(nmax - 1, nearest_int(v))); };
    float iscale = static_cast<float>(-nmax) / m.max;
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; ++i) {
        const int l = level(iscale * x[i]);
        L[i] = static_cast<int8_t>(l + nmax);
        sumlx += w[i] * x[i] * static_cast<float>(l);
        suml2 += w[i] * static_cast<float>(l) * static_cast<float>(l);
    }
    float scale = suml2 != 0.0f ? sumlx / suml2 : 0.0f;
    float best = scale * sumlx;
    for (int is = -9; is <= 9; ++is) {
        if (is == 0) continue;
        iscale = -(static_cast<float>(nmax) + 0.1f * static_cast<float>(is)) / m.max;
        sumlx = suml2 = 0;
        for (int i = 0; i < n; ++i) {
            const int l = level(iscale * x[i]);
            sumlx += w[i] * x[i] * static_cast<float>(l);
            suml2 += w[i] * static_cast<float>(l) * static_cast<float>(l);
        }
        if (suml2 > 0 && sumlx * sumlx > best * suml2) {
            for (int i = 0; i < n; ++i) L[i] = static_cast<int8_t>(nmax + level(iscale * x[i]));
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

// Asymmetric fit x ≈ scale·L − the_min with weights: ggml's make_qkx3_quants with use_mad false is the same
// search as the reference codecs' make_qkx2_quants (formats/formats.h) for nstep ≥ 1.
float make_qkx3_quants_w(int n, int nmax, const float* x, const float* w, uint8_t* L, float* the_min, uint8_t* Laux,
                         float rmin, float rdelta, int nstep) {
    return formats::make_qkx2_quants(n, nmax, x, w, L, the_min, Laux, rmin, rdelta, nstep, false);
}

// ggml's make_qkx3_quants (use_mad false, weights given) for kLanes independent groups at once: lane s performs
// exactly the operations of the one-group search (formats::make_qkx2_quants) on its own values, in the same order,
// so each lane's result is the same bits; the lanes' add chains overlap and vectorize instead of each waiting on
// its own adds' latency. x, weights, L: [kLanes][kN]; scales, the_mins: [kLanes].
template <int kLanes, int kN>
void make_qkx3_quants_lanes(int nmax, const float* x, const float* weights, uint8_t* L, float* scales, float* the_mins, float rmin,
                            float rdelta, int nstep) {
    alignas(64) float xt[kN][kLanes], wt[kN][kLanes];
    alignas(64) float Lt[kN][kLanes], Laux[kN][kLanes];
    alignas(64) float min[kLanes], max[kLanes], sum_w[kLanes], sum_x[kLanes], scale[kLanes], best[kLanes];
    for (int i = 0; i < kN; ++i)
        for (int s = 0; s < kLanes; ++s) {
            xt[i][s] = x[s * kN + i];
            wt[i][s] = weights[s * kN + i];
        }
    for (int s = 0; s < kLanes; ++s) {
        min[s] = max[s] = xt[0][s];
        sum_w[s] = wt[0][s];
        sum_x[s] = sum_w[s] * xt[0][s];
    }
    for (int i = 1; i < kN; ++i)
        for (int s = 0; s < kLanes; ++s) {
            const float v = xt[i][s], w = wt[i][s];
            min[s] = v < min[s] ? v : min[s];
            max[s] = v > max[s] ? v : max[s];
            sum_w[s] += w;
            sum_x[s] += w * v;
        }
    // nearest_int(v) clamped to [0, nmax], as a float: clamping first rounds to the same level, and adding and
    // subtracting 1.5·2²³ rounds to nearest even exactly as nearest_int does (|v| < 2²²), all in float lanes.
    const float top = static_cast<float>(nmax);
    auto level = [top](float v) {
        float c = v > 0.0f ? v : 0.0f;  // value selects (not std::min/max references), so the lane loops vectorize
        c = c < top ? c : top;
        return (c + 12582912.0f) - 12582912.0f;
    };
    bool flat[kLanes];
    alignas(64) float iscale[kLanes];
    for (int s = 0; s < kLanes; ++s) {
        min[s] = min[s] > 0 ? 0.0f : min[s];
        flat[s] = max[s] == min[s];
        iscale[s] = static_cast<float>(nmax) / (max[s] - min[s]);
        scale[s] = 1 / iscale[s];
        best[s] = 0;
    }
    for (int i = 0; i < kN; ++i)
        for (int s = 0; s < kLanes; ++s) {
            const float l = level(iscale[s] * (xt[i][s] - min[s]));
            Lt[i][s] = l;
            const float diff = scale[s] * l + min[s] - xt[i][s];
            best[s] += wt[i][s] * (diff * diff);
        }
    for (int is = 0; is <= nstep; ++is) {
        alignas(64) float sum_l[kLanes] = {}, sum_l2[kLanes] = {}, sum_xl[kLanes] = {}, cur[kLanes] = {};
        alignas(64) float this_scale[kLanes], this_min[kLanes];
        bool take[kLanes];
        for (int s = 0; s < kLanes; ++s) iscale[s] = (rmin + rdelta * static_cast<float>(is) + static_cast<float>(nmax)) / (max[s] - min[s]);
        for (int i = 0; i < kN; ++i)
            for (int s = 0; s < kLanes; ++s) {
                const float fl = level(iscale[s] * (xt[i][s] - min[s]));
                Laux[i][s] = fl;
                const float w = wt[i][s];
                sum_l[s] += w * fl;
                sum_l2[s] += w * fl * fl;
                sum_xl[s] += w * fl * xt[i][s];
            }
        bool valid[kLanes];
        for (int s = 0; s < kLanes; ++s) {
            const float D = sum_w[s] * sum_l2[s] - sum_l[s] * sum_l[s];
            valid[s] = D > 0 && !flat[s];
            const float ts = (sum_w[s] * sum_xl[s] - sum_x[s] * sum_l[s]) / D;
            const float tm = (sum_l2[s] * sum_x[s] - sum_l[s] * sum_xl[s]) / D;
            const float ts_no_min = sum_xl[s] / sum_l2[s];
            this_scale[s] = tm > 0 ? ts_no_min : ts;
            this_min[s] = tm > 0 ? 0.0f : tm;
        }
        for (int i = 0; i < kN; ++i)
            for (int s = 0; s < kLanes; ++s) {
                const float diff = this_scale[s] * Laux[i][s] + this_min[s] - xt[i][s];
                cur[s] += wt[i][s] * (diff * diff);
            }
        bool any = false;
        for (int s = 0; s < kLanes; ++s) {
            take[s] = valid[s] && cur[s] < best[s];
            any |= take[s];
            if (take[s]) {
                best[s] = cur[s];
                scale[s] = this_scale[s];
                min[s] = this_min[s];
            }
        }
        if (any)
            for (int i = 0; i < kN; ++i)
                for (int s = 0; s < kLanes; ++s) Lt[i][s] = take[s] ? Laux[i][s] : Lt[i][s];
    }
    for (int s = 0; s < kLanes; ++s) {
        for (int i = 0; i < kN; ++i) L[s * kN + i] = flat[s] ? 0 : static_cast<uint8_t>(Lt[i][s]);
        scales[s] = flat[s] ? 0.0f : scale[s];
        the_mins[s] = -min[s];
    }
}

// Non-negative values x (sub-block scales or mins) onto L ∈ [0, nmax]: best of 9 grids by weighted squared
// error, then up to five passes of coordinate descent on (Σw·x·l)²/Σw·l² (ggml's make_qp_quants).
float make_qp_quants(int n, int nmax, const float* x, uint8_t* L, const float* w) {
    float max = 0;
    for (int i = 0; i < n; ++i) max = std::max(max, x[i]);
    if (max < kGroupMaxEps) {
        std::memset(L, 0, static_cast<size_t>(n));
        return 0.f;
    }
    float iscale = static_cast<float>(nmax) / max;
    for (int i = 0; i < n; ++i) L[i] = static_cast<uint8_t>(nearest_int(iscale * x[i]));
    const float scale = 1 / iscale;
    float best_mse = 0;
    for (int i = 0; i < n; ++i) {
        const float diff = x[i] - scale * static_cast<float>(L[i]);
        best_mse += w[i] * diff * diff;
    }
    for (int is = -4; is <= 4; ++is) {
        if (is == 0) continue;
        const float iscale_is = (0.1f * static_cast<float>(is) + static_cast<float>(nmax)) / max;
        const float scale_is = 1 / iscale_is;
        float mse = 0;
        for (int i = 0; i < n; ++i) {
            const int l = std::min(nmax, nearest_int(iscale_is * x[i]));
            const float diff = x[i] - scale_is * static_cast<float>(l);
            mse += w[i] * diff * diff;
        }
        if (mse < best_mse) {
            best_mse = mse;
            iscale = iscale_is;
        }
    }
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; ++i) {
        const int l = std::min(nmax, nearest_int(iscale * x[i]));
        L[i] = static_cast<uint8_t>(l);
        sumlx += w[i] * x[i] * static_cast<float>(l);
        suml2 += w[i] * static_cast<float>(l) * static_cast<float>(l);
    }
    for (int itry = 0; itry < 5; ++itry) {
        int n_changed = 0;
        for (int i = 0; i < n; ++i) {
            const float li = static_cast<float>(L[i]);
            float slx = sumlx - w[i] * x[i] * li;
            float sl2 = suml2 - w[i] * li * li;
            if (slx > 0 && sl2 > 0) {
                const int new_l = std::min(nmax, nearest_int(x[i] * sl2 / slx));
                if (new_l != L[i]) {
                    const float nl = static_cast<float>(new_l);
                    slx += w[i] * x[i] * nl;
                    sl2 += w[i] * nl * nl;
                    if (slx * slx * suml2 > sumlx * sumlx * sl2) {
                        L[i] = static_cast<uint8_t>(new_l);
                        sumlx = slx;
                        suml2 = sl2;
                        ++n_changed;
                    }
                }
            }
        }
        if (!n_changed) break;
    }
    return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

// Importance weights of `n` values: qw·√(σ² + x²), the rule every weighted codec shares.
// Returns Σw (summed in index order, as the k-quant searches sum it themselves).
float importance_weights(const float* x, const float* qw, float sigma2, int n, float* w) {
    float sum = 0;
    for (int j = 0; j < n; ++j) {
        w[j] = qw[j] * std::sqrt(sigma2 + x[j] * x[j]);
        sum += w[j];
    }
    return sum;
}

float sum_squares(const float* x, int64_t n) {
    float s = 0;
    for (int64_t j = 0; j < n; ++j) s += x[j] * x[j];
    return s;
}

// ---- legacy formats (blocks of 32), σ² = mean x² over the whole row ----

void pack_legacy(const uint8_t* L, uint8_t* qs, uint8_t* qh) {
    uint32_t high = 0;
    for (int j = 0; j < kQK / 2; ++j) {
        qs[j] = static_cast<uint8_t>((L[j] & 0x0F) | ((L[j + kQK / 2] & 0x0F) << 4));
        high |= ((L[j] & 0x10u) >> 4) << j;
        high |= ((L[j + kQK / 2] & 0x10u) >> 4) << (j + kQK / 2);
    }
    if (qh) std::memcpy(qh, &high, 4);
}

// Q4_0 / Q5_0: symmetric make_qx_quants with 2·nmax levels; one block xb: [32] with its importance qw and the
// row's σ² (mean x² over the whole row).
template <typename Block, int kNmax>
void quantize_block_symmetric_w(const float* xb, const float* qw, float sigma2, Block& y) {
    float w[kQK];
    int8_t L[kQK];
    importance_weights(xb, qw, sigma2, kQK, w);
    y.d = f32_to_f16_scalar(make_qx_quants_w(kQK, kNmax, xb, L, w));
    uint8_t Lu[kQK];
    for (int j = 0; j < kQK; ++j) Lu[j] = static_cast<uint8_t>(L[j]);
    if constexpr (requires { y.qh; }) pack_legacy(Lu, y.qs, y.qh);
    else pack_legacy(Lu, y.qs, nullptr);
}

template <typename Block, int kNmax>
void quantize_row_symmetric_w(const float* x, void* vy, int64_t n, const float* qw) {
    auto* y = static_cast<Block*>(vy);
    const float sigma2 = sum_squares(x, n) / static_cast<float>(n);
    for (int64_t ib = 0; ib < n / kQK; ++ib) quantize_block_symmetric_w<Block, kNmax>(x + kQK * ib, qw + kQK * ib, sigma2, y[ib]);
}

// Q4_1 / Q5_1: asymmetric make_qkx3_quants, d and m = −min stored as f16; one block as above.
template <typename Block, int kNmax>
void quantize_block_affine_w(const float* xb, const float* qw, float sigma2, Block& y) {
    float w[kQK];
    uint8_t L[kQK], Laux[kQK];
    importance_weights(xb, qw, sigma2, kQK, w);
    float min;
    const float d = make_qkx3_quants_w(kQK, kNmax, xb, w, L, &min, Laux, -0.9f, 0.05f, 36);
    y.d = f32_to_f16_scalar(d);
    y.m = f32_to_f16_scalar(-min);
    if constexpr (requires { y.qh; }) pack_legacy(L, y.qs, y.qh);
    else pack_legacy(L, y.qs, nullptr);
}

template <typename Block, int kNmax>
void quantize_row_affine_w(const float* x, void* vy, int64_t n, const float* qw) {
    auto* y = static_cast<Block*>(vy);
    const float sigma2 = sum_squares(x, n) / static_cast<float>(n);
    for (int64_t ib = 0; ib < n / kQK; ++ib) quantize_block_affine_w<Block, kNmax>(x + kQK * ib, qw + kQK * ib, sigma2, y[ib]);
}

// ---- k-quants (super-blocks of 256) ----

// 2 bits per element: per 128 elements, byte l holds l, l+32, l+64, l+96 (Q2_K, Q3_K).
void pack_2bit(const uint8_t* L, uint8_t* qs) {
    for (int j = 0; j < kQK_K; j += 128)
        for (int l = 0; l < 32; ++l)
            qs[j / 4 + l] = static_cast<uint8_t>(L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) | (L[j + l + 96] << 6));
}

// Q2_K: 16 sub-blocks of 16 fitted asymmetrically (σ² = mean x² of the super-block), their scales and mins
// to 4 bits by make_qp_quants weighted by each sub-block's total weight, then requantized.
void quantize_row_q2_K_w(const float* x, void* vy, int64_t n, const float* qw) {
    auto* y = static_cast<BlockQ2_K*>(vy);
    uint8_t L[kQK_K], Ls[16], Lm[16];
    float mins[16], scales[16], sw[16], w_all[kQK_K];
    for (int64_t i = 0; i < n / kQK_K; ++i, x += kQK_K) {
        const float sigma2 = sum_squares(x, kQK_K) / kQK_K;
        for (int j = 0; j < 16; ++j) {
            float* w = w_all + 16 * j;
            importance_weights(x + 16 * j, qw + kQK_K * i + 16 * j, sigma2, 16, w);
            sw[j] = 0;
            for (int l = 0; l < 16; ++l) sw[j] += w[l];
        }
        make_qkx3_quants_lanes<16, 16>(3, x, w_all, L, scales, mins, -0.9f, 0.05f, 36);
        y[i].d = f32_to_f16_scalar(make_qp_quants(16, 15, scales, Ls, sw));
        y[i].dmin = f32_to_f16_scalar(make_qp_quants(16, 15, mins, Lm, sw));
        const float dm = f16_to_f32_scalar(y[i].d), mm = f16_to_f32_scalar(y[i].dmin);
        for (int j = 0; j < 16; ++j) y[i].scales[j] = static_cast<uint8_t>(Ls[j] | (Lm[j] << 4));
        for (int j = 0; j < 16; ++j) {
            const float d = dm * static_cast<float>(y[i].scales[j] & 0xF);
            if (d == 0.0f) continue;
            const float m = mm * static_cast<float>(y[i].scales[j] >> 4);
            for (int ii = 0; ii < 16; ++ii)
                L[16 * j + ii] = static_cast<uint8_t>(std::max(0, std::min(3, nearest_int((x[16 * j + ii] + m) / d))));
        }
        pack_2bit(L, y[i].qs);
    }
}

// Q3_K: 16 symmetric sub-block fits (σ² = 2·mean x²), the 16 scales themselves fitted by make_qx_quants with
// 64 levels weighted by the sub-blocks' total weights, then requantized; high bit to hmask.
void quantize_row_q3_K_w(const float* x, void* vy, int64_t n, const float* qw) {
    auto* y = static_cast<BlockQ3_K*>(vy);
    int8_t L[kQK_K], Ls[16];
    float scales[16], w[16], sw[16];
    for (int64_t i = 0; i < n / kQK_K; ++i, x += kQK_K) {
        const float sigma2 = 2 * sum_squares(x, kQK_K) / kQK_K;
        for (int j = 0; j < 16; ++j) {
            sw[j] = importance_weights(x + 16 * j, qw + kQK_K * i + 16 * j, sigma2, 16, w);
            scales[j] = make_qx_quants_w(16, 4, x + 16 * j, L + 16 * j, w);
        }
        std::memset(y[i].scales, 0, sizeof(y[i].scales));
        const float d_block = make_qx_quants_w(16, 32, scales, Ls, sw);
        for (int j = 0; j < 16; ++j) {
            const int l = Ls[j];
            if (j < 8) y[i].scales[j] = static_cast<uint8_t>(l & 0xF);
            else y[i].scales[j - 8] |= static_cast<uint8_t>((l & 0xF) << 4);
            y[i].scales[j % 4 + 8] |= static_cast<uint8_t>((l >> 4) << (2 * (j / 4)));
        }
        y[i].d = f32_to_f16_scalar(d_block);
        for (int j = 0; j < 16; ++j) {
            const int lo = j < 8 ? y[i].scales[j] & 0xF : y[i].scales[j - 8] >> 4;
            const int sc = (lo | (((y[i].scales[8 + j % 4] >> (2 * (j / 4))) & 3) << 4)) - 32;
            const float d = f16_to_f32_scalar(y[i].d) * static_cast<float>(sc);
            if (d == 0.0f) continue;
            for (int ii = 0; ii < 16; ++ii)
                L[16 * j + ii] = static_cast<int8_t>(std::max(-4, std::min(3, nearest_int(x[16 * j + ii] / d))) + 4);
        }
        formats::pack_q3_K_levels(L, y[i]);
    }
}

// Q4_K / Q5_K: 8 asymmetric sub-block fits of 32 (σ² = 2·mean x²), 6-bit scales and mins by make_qp_quants
// weighted by the sub-blocks' total weights, requantized with the stored values (ggml's get_scale_min_k4).
template <typename Block, int kNmax>
void quantize_row_k4_like_w(const float* x, void* vy, int64_t n, const float* qw) {
    auto* y = static_cast<Block*>(vy);
    uint8_t L[kQK_K], Ls[8], Lm[8];
    float w_all[kQK_K], sw[8], mins[8], scales[8];
    for (int64_t i = 0; i < n / kQK_K; ++i, x += kQK_K) {
        const float sigma2 = 2 * sum_squares(x, kQK_K) / kQK_K;
        for (int j = 0; j < 8; ++j) sw[j] = importance_weights(x + 32 * j, qw + kQK_K * i + 32 * j, sigma2, 32, w_all + 32 * j);
        make_qkx3_quants_lanes<8, 32>(kNmax, x, w_all, L, scales, mins, -0.9f, 0.05f, 36);
        const float d_block = make_qp_quants(8, 63, scales, Ls, sw);
        const float m_block = make_qp_quants(8, 63, mins, Lm, sw);
        for (int j = 0; j < 8; ++j) {
            // ggml clamps Q5_K's stored scale and min to 63 and not Q4_K's (make_qp_quants keeps them ≤ 63 anyway).
            uint8_t ls = Ls[j], lm = Lm[j];
            if constexpr (kNmax == 31) ls = std::min<uint8_t>(63, ls), lm = std::min<uint8_t>(63, lm);
            if (j < 4) {
                y[i].scales[j] = ls;
                y[i].scales[j + 4] = lm;
            } else {
                y[i].scales[j + 4] = static_cast<uint8_t>((ls & 0xF) | ((lm & 0xF) << 4));
                y[i].scales[j - 4] |= static_cast<uint8_t>((ls >> 4) << 6);
                y[i].scales[j] |= static_cast<uint8_t>((lm >> 4) << 6);
            }
        }
        y[i].d = f32_to_f16_scalar(d_block);
        y[i].dmin = f32_to_f16_scalar(m_block);
        for (int j = 0; j < 8; ++j) {
            int sc, m;
            scale_min_k4(j, y[i].scales, sc, m);
            const float d = f16_to_f32_scalar(y[i].d) * static_cast<float>(sc);
            if (d == 0.0f) continue;
            const float dm = f16_to_f32_scalar(y[i].dmin) * static_cast<float>(m);
            for (int ii = 0; ii < 32; ++ii)
                L[32 * j + ii] = static_cast<uint8_t>(std::max(0, std::min(kNmax, nearest_int((x[32 * j + ii] + dm) / d))));
        }
        for (int c = 0; c < kQK_K / 64; ++c)
            for (int l = 0; l < 32; ++l) {
                const uint8_t lo = L[64 * c + l], hi = L[64 * c + 32 + l];
                y[i].qs[32 * c + l] = static_cast<uint8_t>((lo & 0xF) | ((hi & 0xF) << 4));
                if constexpr (requires { y[i].qh; }) {
                    if (c == 0) y[i].qh[l] = 0;
                    y[i].qh[l] |= static_cast<uint8_t>(((lo >> 4) << (2 * c)) | ((hi >> 4) << (2 * c + 1)));
                }
            }
    }
}

// Q6_K: the reference scheme with each sub-block's symmetric fit weighted by the importance row directly.
void quantize_row_q6_K_w(const float* x, void* vy, int64_t n, const float* qw) {
    auto* y = static_cast<BlockQ6_K*>(vy);
    int8_t L[kQK_K];
    float scales[16];
    for (int64_t i = 0; i < n / kQK_K; ++i, x += kQK_K) {
        float max_scale = 0, max_abs_scale = 0;
        for (int ib = 0; ib < 16; ++ib) {
            scales[ib] = make_qx_quants_w(16, 32, x + 16 * ib, L + 16 * ib, qw + kQK_K * i + 16 * ib);
            if (std::fabs(scales[ib]) > max_abs_scale) {
                max_abs_scale = std::fabs(scales[ib]);
                max_scale = scales[ib];
            }
        }
        if (max_abs_scale < kGroupMaxEps) {
            std::memset(&y[i], 0, sizeof(BlockQ6_K));
            y[i].d = f32_to_f16_scalar(0.f);
            continue;
        }
        const float iscale = -128.f / max_scale;
        y[i].d = f32_to_f16_scalar(1 / iscale);
        for (int ib = 0; ib < 16; ++ib) y[i].scales[ib] = static_cast<int8_t>(std::min(127, nearest_int(iscale * scales[ib])));
        for (int j = 0; j < 16; ++j) {
            const float d = f16_to_f32_scalar(y[i].d) * static_cast<float>(y[i].scales[j]);
            if (d == 0.0f) continue;
            for (int ii = 0; ii < 16; ++ii)
                L[16 * j + ii] = static_cast<int8_t>(std::max(-32, std::min(31, nearest_int(x[16 * j + ii] / d))) + 32);
        }
        uint8_t* ql = y[i].ql;
        uint8_t* qh = y[i].qh;
        for (int j = 0; j < kQK_K; j += 128, ql += 64, qh += 32)
            for (int l = 0; l < 32; ++l) {
                const int q1 = L[j + l], q2 = L[j + l + 32], q3 = L[j + l + 64], q4 = L[j + l + 96];
                ql[l] = static_cast<uint8_t>((q1 & 0xF) | ((q3 & 0xF) << 4));
                ql[l + 32] = static_cast<uint8_t>((q2 & 0xF) | ((q4 & 0xF) << 4));
                qh[l] = static_cast<uint8_t>((q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6));
            }
    }
}

using WeightedRowFn = void (*)(const float* x, void* y, int64_t n, const float* importance);

void iq4_nl_w(const float* x, void* y, int64_t n, const float* qw) { quantize_row_iq4_nl_search(x, y, n, qw, 7); }
void iq4_xs_w(const float* x, void* y, int64_t n, const float* qw) { quantize_row_iq4_xs_search(x, y, n, qw, 7); }

// The weighted search of `type`, null for types whose llama.cpp quantizer ignores importance.
WeightedRowFn weighted_fn(DType type) {
    switch (type) {
        case DType::Q4_0: return &quantize_row_symmetric_w<BlockQ4_0, 8>;
        case DType::Q5_0: return &quantize_row_symmetric_w<BlockQ5_0, 16>;
        case DType::Q4_1: return &quantize_row_affine_w<BlockQ4_1, 15>;
        case DType::Q5_1: return &quantize_row_affine_w<BlockQ5_1, 31>;
        case DType::Q2_K: return &quantize_row_q2_K_w;
        case DType::Q3_K: return &quantize_row_q3_K_w;
        case DType::Q4_K: return &quantize_row_k4_like_w<BlockQ4_K, 15>;
        case DType::Q5_K: return &quantize_row_k4_like_w<BlockQ5_K, 31>;
        case DType::Q6_K: return &quantize_row_q6_K_w;
        case DType::IQ4_NL: return &iq4_nl_w;
        case DType::IQ4_XS: return &iq4_xs_w;
        default: return nullptr;
    }
}

}  // namespace

float row_mean_square(const float* x, int64_t n) { return sum_squares(x, n) / static_cast<float>(n); }

void quantize_block_weighted(DType type, const float* x, void* out, const float* importance, float row_sigma2) {
    const DTypeTraits& t = dtype_traits(type);
    const WeightedRowFn fn = weighted_fn(type);
    // Without importance every type's rule is per block (the reference codecs; IQ4_NL's search), as in quantize_row_weighted.
    if (!fn || (!importance && type != DType::IQ4_NL)) return t.from_float(x, out, t.block_size);
    switch (type) {
        case DType::Q4_0: return quantize_block_symmetric_w<BlockQ4_0, 8>(x, importance, row_sigma2, *static_cast<BlockQ4_0*>(out));
        case DType::Q5_0: return quantize_block_symmetric_w<BlockQ5_0, 16>(x, importance, row_sigma2, *static_cast<BlockQ5_0*>(out));
        case DType::Q4_1: return quantize_block_affine_w<BlockQ4_1, 15>(x, importance, row_sigma2, *static_cast<BlockQ4_1*>(out));
        case DType::Q5_1: return quantize_block_affine_w<BlockQ5_1, 31>(x, importance, row_sigma2, *static_cast<BlockQ5_1*>(out));
        default: break;
    }
    // The other searches take their statistics from the block itself, so a one-block row is that block's search.
    fn(x, out, t.block_size, importance);
}

bool has_weighted_quantizer(DType type) { return weighted_fn(type) != nullptr; }

void quantize_row_weighted(DType type, const float* x, void* out, int64_t n_per_row, const float* importance) {
    const DTypeTraits& t = dtype_traits(type);
    if (!t.from_float)
        throw InvalidArgument("[quantize] type " + std::string(t.name) + " has no quantizer");
    if (n_per_row <= 0 || n_per_row % t.block_size != 0)
        throw InvalidArgument("[quantize] a row of " + std::to_string(n_per_row) + " values is not a whole number of " +
                              std::string(t.name) + " blocks of " + std::to_string(t.block_size));
    const WeightedRowFn fn = weighted_fn(type);
    // llama-quantize without an imatrix: the reference codecs, except IQ4_NL whose quantize_iq4_nl searches 7 steps.
    if (fn && (importance || type == DType::IQ4_NL)) fn(x, out, n_per_row, importance);
    else t.from_float(x, out, n_per_row);
}

size_t quantize_rows_weighted(DType type, const float* x, void* out, int64_t n_rows, int64_t n_per_row,
                              const float* importance) {
    const auto row_bytes = dtype_bytes(type, static_cast<uint64_t>(std::max<int64_t>(n_per_row, 0)));
    if (!row_bytes) throw InvalidArgument("[quantize] a row of " + std::to_string(n_per_row) + " values does not fit " +
                                          std::string(dtype_name(type)) + " blocks");
    auto* o = static_cast<uint8_t*>(out);
    for (int64_t r = 0; r < n_rows; ++r) quantize_row_weighted(type, x + r * n_per_row, o + static_cast<size_t>(r) * *row_bytes, n_per_row, importance);
    return static_cast<size_t>(n_rows) * *row_bytes;
}

}  // namespace cq
