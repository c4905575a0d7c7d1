// Reference codecs of the k-quants (Q2_K … Q6_K) and their activation blocks (Q8_K): ggml's
// quantize_row_*_ref search rules without an importance matrix, operation for operation (same
// f32 evaluation order, same nearest_int rounding), so the bytes equal llama-quantize's.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "formats/codec_math.h"
#include "formats/formats.h"
#include "kernels/kernel_decls.h"

namespace cq::formats {
namespace {

using kernels::f16_to_f32_scalar;
using kernels::f32_to_f16_scalar;

constexpr float kGroupMaxEps = 1e-15f;  // below this a group counts as all zero

// Symmetric search: L[i] ∈ [0, 2·nmax) with x ≈ scale·(L − nmax), weights x² (ggml's
// make_qx_quants with rmse_type 1): start from the signed extreme mapped to −nmax, then try
// 18 nearby scales, keep the one maximising (Σw·x·l)²/Σw·l², return its least-squares scale.
float make_qx_quants(int n, int nmax, const float* x, int8_t* L) {
    const float max = signed_absmax(x, n).max;
    if (std::fabs(max) < kGroupMaxEps) {
        std::fill(L, L + n, int8_t{0});
        return 0.0f;
    }
    auto level = [nmax](float v) { return std::max(-nmax, std::min(nmax - 1, nearest_int(v))); };
    float iscale = static_cast<float>(-nmax) / max;
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; ++i) {
        const int l = level(iscale * x[i]);
        L[i] = static_cast<int8_t>(l + nmax);
        const float w = x[i] * x[i];
        sumlx += w * x[i] * static_cast<float>(l);
        suml2 += w * static_cast<float>(l) * static_cast<float>(l);
    }
    float scale = suml2 != 0.0f ? sumlx / suml2 : 0.0f;
    float best = scale * sumlx;
    for (int is = -9; is <= 9; ++is) {
        if (is == 0) continue;
        iscale = -(static_cast<float>(nmax) + 0.1f * static_cast<float>(is)) / max;
        sumlx = suml2 = 0;
        for (int i = 0; i < n; ++i) {
            const int l = level(iscale * x[i]);
            const float w = x[i] * x[i];
            sumlx += w * x[i] * static_cast<float>(l);
            suml2 += w * static_cast<float>(l) * static_cast<float>(l);
        }
        if (suml2 > 0 && sumlx * sumlx > best * suml2) {
            for (int i = 0; i < n; ++i) L[i] = static_cast<int8_t>(nmax + level(iscale * x[i]));
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

// Q3_K's symmetric search (ggml's make_q3_quants with do_rmse): round at −nmax/max, then up to
// five passes of coordinate descent, each moving one L[i] to its best level under the current
// least-squares fit (weights x²) when that improves (Σw·x·l)²/Σw·l². L[i] ∈ [0, 2·nmax).
float make_q3_quants(int n, int nmax, const float* x, int8_t* L) {
    const float max = signed_absmax(x, n).max;
    if (std::fabs(max) < kGroupMaxEps) {
        std::fill(L, L + n, int8_t{0});
        return 0.0f;
    }
    const float iscale = static_cast<float>(-nmax) / max;
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; ++i) {
        const int l = std::max(-nmax, std::min(nmax - 1, nearest_int(iscale * x[i])));
        L[i] = static_cast<int8_t>(l);
        const float w = x[i] * x[i];
        sumlx += w * x[i] * static_cast<float>(l);
        suml2 += w * static_cast<float>(l) * static_cast<float>(l);
    }
    for (int itry = 0; itry < 5; ++itry) {
        int n_changed = 0;
        for (int i = 0; i < n; ++i) {
            const float w = x[i] * x[i];
            const float li = static_cast<float>(L[i]);
            float slx = sumlx - w * x[i] * li;
            if (slx > 0) {
                float sl2 = suml2 - w * li * li;
                int new_l = nearest_int(x[i] * sl2 / slx);
                new_l = std::max(-nmax, std::min(nmax - 1, new_l));
                if (new_l != L[i]) {
                    const float nl = static_cast<float>(new_l);
                    slx += w * x[i] * nl;
                    sl2 += w * nl * nl;
                    if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2) {
                        L[i] = static_cast<int8_t>(new_l);
                        sumlx = slx;
                        suml2 = sl2;
                        ++n_changed;
                    }
                }
            }
        }
        if (!n_changed) break;
    }
    for (int i = 0; i < n; ++i) L[i] = static_cast<int8_t>(L[i] + nmax);
    return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}


// Q4_K/Q5_K scale packing: sub-blocks 0-3 keep their 6-bit scale and min in the low 6 bits of
// bytes 0-3 and 4-7; sub-blocks 4-7 keep their low 4 bits in the nibbles of bytes 8-11 (scale low,
// min high) and their top 2 bits in bits 6-7 of bytes 0-3 (scale) and 4-7 (min).
inline void get_scale_min_k4(int j, const uint8_t* q, uint8_t& d, uint8_t& m) {
    if (j < 4) {
        d = q[j] & 63;
        m = q[j + 4] & 63;
    } else {
        d = static_cast<uint8_t>((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
        m = static_cast<uint8_t>((q[j + 4] >> 4) | ((q[j - 0] >> 6) << 4));
    }
}

inline void set_scale_min_k4(int j, uint8_t* q, uint8_t ls, uint8_t lm) {
    if (j < 4) {
        q[j] = ls;
        q[j + 4] = lm;
    } else {
        q[j + 4] = static_cast<uint8_t>((ls & 0xF) | ((lm & 0xF) << 4));
        q[j - 4] |= static_cast<uint8_t>((ls >> 4) << 6);
        q[j - 0] |= static_cast<uint8_t>((lm >> 4) << 6);
    }
}

// Q3_K's 6-bit signed-offset scales: low nibbles in bytes 0-7 (sub-block j < 8: low nibble of byte j,
// j ≥ 8: high nibble of byte j−8), top 2 bits in bits 2·(j/4) of byte 8 + j%4.
inline int q3_k_scale(const uint8_t* s, int j) {
    const int lo = j < 8 ? (s[j] & 0xF) : (s[j - 8] >> 4);
    const int hi = (s[8 + j % 4] >> (2 * (j / 4))) & 3;
    return (lo | (hi << 4)) - 32;
}

// 2-bit packing shared by Q2_K and Q3_K: per 128 elements, byte l holds l, l+32, l+64, l+96.
inline void pack_2bit(const uint8_t* L, uint8_t* qs) {
    for (int j = 0; j < kQK_K; j += 128)
        for (int l = 0; l < 32; ++l)
            qs[j / 4 + l] = static_cast<uint8_t>(L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) |
                                                 (L[j + l + 96] << 6));
}

// Element l of sub-block j of 16 in pack_2bit's layout: bits 2·((j/2) % 4) of qs[32·(j/8) + 16·(j % 2) + l].
inline int low_2bit(const uint8_t* qs, int j, int l) { return (qs[32 * (j / 8) + 16 * (j % 2) + l] >> (2 * ((j / 2) % 4))) & 3; }

// The asymmetric 32-element sub-block search shared by Q4_K (nmax 15) and Q5_K (nmax 31), plus the
// 6-bit scale/min quantization and the final requantization with the stored scales. L gets the levels.
template <typename Block>
void quantize_k4_like(const float* x, Block& y, uint8_t* L, int nmax, float rmin, int nstep) {
    float mins[kQK_K / 32];
    float scales[kQK_K / 32];
    float weights[32];
    uint8_t Laux[32];
    float max_scale = 0, max_min = 0;
    for (int j = 0; j < kQK_K / 32; ++j) {
        const float* xs = x + 32 * j;
        float sum_x2 = 0;
        for (int l = 0; l < 32; ++l) sum_x2 += xs[l] * xs[l];
        const float av_x = std::sqrt(sum_x2 / 32);
        for (int l = 0; l < 32; ++l) weights[l] = av_x + std::fabs(xs[l]);
        scales[j] = make_qkx2_quants(32, nmax, xs, weights, L + 32 * j, &mins[j], Laux, rmin, 0.1f, nstep, false);
        if (scales[j] > max_scale) max_scale = scales[j];
        if (mins[j] > max_min) max_min = mins[j];
    }
    const float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
    const float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
    for (int j = 0; j < kQK_K / 32; ++j) {
        // ggml stores nearest_int into a uint8_t before clamping; the values are in [0, 63] anyway.
        const uint8_t ls = std::min<uint8_t>(63, static_cast<uint8_t>(nearest_int(inv_scale * scales[j])));
        const uint8_t lm = std::min<uint8_t>(63, static_cast<uint8_t>(nearest_int(inv_min * mins[j])));
        set_scale_min_k4(j, y.scales, ls, lm);
    }
    y.d = f32_to_f16_scalar(max_scale / 63.f);
    y.dmin = f32_to_f16_scalar(max_min / 63.f);
    for (int j = 0; j < kQK_K / 32; ++j) {
        uint8_t sc, m;
        get_scale_min_k4(j, y.scales, sc, m);
        const float d = f16_to_f32_scalar(y.d) * static_cast<float>(sc);
        if (d == 0.0f) continue;
        const float dm = f16_to_f32_scalar(y.dmin) * static_cast<float>(m);
        for (int ii = 0; ii < 32; ++ii) {
            const int l = nearest_int((x[32 * j + ii] + dm) / d);
            L[32 * j + ii] = static_cast<uint8_t>(std::max(0, std::min(nmax, l)));
        }
    }
}

// Q4_K and Q5_K rows. The low 4 bits of element 64c + l (l < 32) go to the low nibble of qs[32c + l], of
// element 64c + 32 + l to its high nibble; Q5_K's bit 4 of the first is bit 2c of qh[l], of the second bit 2c + 1.
template <typename Block>
void quantize_row_k4_like(const float* x, void* vy, int64_t k, int nmax, float rmin, int nstep) {
    auto* y = static_cast<Block*>(vy);
    uint8_t L[kQK_K];
    for (int64_t i = 0; i < k / kQK_K; ++i, x += kQK_K) {
        quantize_k4_like(x, y[i], L, nmax, rmin, nstep);
        for (int c = 0; c < kQK_K / 64; ++c)
            for (int l = 0; l < 32; ++l) {
                const uint8_t lo = L[64 * c + l], hi = L[64 * c + 32 + l];
                y[i].qs[32 * c + l] = static_cast<uint8_t>((lo & 0xF) | ((hi & 0xF) << 4));
                if constexpr (requires(Block b) { b.qh; }) {
                    if (c == 0) y[i].qh[l] = 0;
                    y[i].qh[l] |= static_cast<uint8_t>(((lo >> 4) << (2 * c)) | ((hi >> 4) << (2 * c + 1)));
                }
            }
    }
}

// The asymmetric k-quants (Q2_K, Q4_K, Q5_K): sub-block j of kSub values is y = d·sc_j·q − dmin·m_j, with
// scale_min(block, j, sc_j, m_j) and quant(block, j, l) reading the format's packing.
template <typename Block, int kSub, typename ScaleMin, typename Quant>
void dequantize_row_asymmetric(const void* vx, float* y, int64_t k, ScaleMin scale_min, Quant quant) {
    const auto* x = static_cast<const Block*>(vx);
    for (int64_t i = 0; i < k / kQK_K; ++i) {
        const float d = f16_to_f32_scalar(x[i].d);
        const float min = f16_to_f32_scalar(x[i].dmin);
        for (int j = 0; j < kQK_K / kSub; ++j, y += kSub) {
            uint8_t sc, m;
            scale_min(x[i], j, sc, m);
            const float dj = d * static_cast<float>(sc), mj = min * static_cast<float>(m);
            for (int l = 0; l < kSub; ++l) y[l] = dj * static_cast<float>(quant(x[i], j, l)) - mj;
        }
    }
}

// Q4_K/Q5_K: the nibbles as quantize_row_k4_like packs them, plus Q5_K's bit j of qh[l].
template <typename Block>
void dequantize_row_k4_like(const void* x, float* y, int64_t k) {
    dequantize_row_asymmetric<Block, 32>(
        x, y, k, [](const Block& b, int j, uint8_t& sc, uint8_t& m) { get_scale_min_k4(j, b.scales, sc, m); },
        [](const Block& b, int j, int l) {
            int v = (b.qs[32 * (j / 2) + l] >> (4 * (j % 2))) & 0xF;
            if constexpr (requires { b.qh; }) v += ((b.qh[l] >> j) & 1) << 4;
            return v;
        });
}

// The symmetric sub-block fits of Q3_K and Q6_K: 16 sub-blocks of 16, each fitted by `fit` with levels
// [0, 2·nmax) into L; `max` is the signed scale of largest magnitude.
struct SubBlockScales {
    float scales[kQK_K / 16];
    float max;
};
SubBlockScales fit_sub_blocks(float (*fit)(int, int, const float*, int8_t*), int nmax, const float* x, int8_t* L) {
    SubBlockScales s;
    for (int j = 0; j < kQK_K / 16; ++j) s.scales[j] = fit(16, nmax, x + 16 * j, L + 16 * j);
    s.max = signed_absmax(s.scales, kQK_K / 16).max;
    return s;
}

// Requantizes one sub-block of 16 with its stored scale d: L = clamp(nearest_int(x/d), −nmax, nmax − 1) + nmax.
// A zero d keeps the search's levels.
void requantize_sub_block(const float* x, float d, int nmax, int8_t* L) {
    if (d == 0.0f) return;
    for (int ii = 0; ii < 16; ++ii)
        L[ii] = static_cast<int8_t>(std::max(-nmax, std::min(nmax - 1, nearest_int(x[ii] / d))) + nmax);
}

}  // namespace

// Q3_K levels L ∈ [0, 7] into the block: bit 2 to hmask (bit j/32 of byte j % 32), bits 0-1 by pack_2bit.
void pack_q3_K_levels(const int8_t* L, BlockQ3_K& y) {
    std::memset(y.hmask, 0, sizeof(y.hmask));
    uint8_t Lu[kQK_K];
    for (int j = 0; j < kQK_K; ++j) {
        int l = L[j];
        if (l > 3) {
            y.hmask[j % 32] |= static_cast<uint8_t>(1u << (j / 32));
            l -= 4;
        }
        Lu[j] = static_cast<uint8_t>(l);
    }
    pack_2bit(Lu, y.qs);
}

// Asymmetric search (ggml's make_qkx2_quants): x ≈ scale·L − the_min with L ∈ [0, nmax] and
// min = min(x, 0). Starts from the min/max grid, then tries nstep+1 grids (nmax + rmin + rdelta·is
// levels over the range) and for each fits scale and min by weighted least squares, keeping the fit
// with the smallest weighted error (|e| when use_mad, else e²). Returns scale; *the_min ≥ 0 (or −0).
float make_qkx2_quants(int n, int nmax, const float* x, const float* weights, uint8_t* L, float* the_min,
                       uint8_t* Laux, float rmin, float rdelta, int nstep, bool use_mad) {
    float min = x[0], max = x[0];
    float sum_w = weights[0];
    float sum_x = sum_w * x[0];
    for (int i = 1; i < n; ++i) {
        if (x[i] < min) min = x[i];
        if (x[i] > max) max = x[i];
        const float w = weights[i];
        sum_w += w;
        sum_x += w * x[i];
    }
    if (min > 0) min = 0;
    if (max == min) {
        for (int i = 0; i < n; ++i) L[i] = 0;
        *the_min = -min;
        return 0.0f;
    }
    auto err = [use_mad](float diff) { return use_mad ? std::fabs(diff) : diff * diff; };
    float iscale = static_cast<float>(nmax) / (max - min);
    float scale = 1 / iscale;
    float best_error = 0;
    for (int i = 0; i < n; ++i) {
        const int l = nearest_int(iscale * (x[i] - min));
        L[i] = static_cast<uint8_t>(std::max(0, std::min(nmax, l)));
        const float diff = scale * static_cast<float>(L[i]) + min - x[i];
        best_error += weights[i] * err(diff);
    }
    if (nstep < 1) {
        *the_min = -min;
        return scale;
    }
    for (int is = 0; is <= nstep; ++is) {
        iscale = (rmin + rdelta * static_cast<float>(is) + static_cast<float>(nmax)) / (max - min);
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (int i = 0; i < n; ++i) {
            const int l = std::max(0, std::min(nmax, nearest_int(iscale * (x[i] - min))));
            Laux[i] = static_cast<uint8_t>(l);
            const float w = weights[i];
            const float fl = static_cast<float>(l);
            sum_l += w * fl;
            sum_l2 += w * fl * fl;
            sum_xl += w * fl * x[i];
        }
        const float D = sum_w * sum_l2 - sum_l * sum_l;
        if (D > 0) {
            float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
            float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
            if (this_min > 0) {
                this_min = 0;
                this_scale = sum_xl / sum_l2;
            }
            float cur_error = 0;
            for (int i = 0; i < n; ++i) {
                const float diff = this_scale * static_cast<float>(Laux[i]) + this_min - x[i];
                cur_error += weights[i] * err(diff);
            }
            if (cur_error < best_error) {
                std::memcpy(L, Laux, static_cast<size_t>(n));
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    *the_min = -min;
    return scale;
}

// Q2_K: 16 sub-blocks of 16, each fitted asymmetrically with 4 levels (weights |x|, mean absolute
// error); scales and mins quantized to 4 bits against their maxima; quants recomputed with the
// stored values.
void quantize_row_q2_K_ref(const float* x, void* vy, int64_t k) {
    auto* y = static_cast<BlockQ2_K*>(vy);
    const int64_t nb = k / kQK_K;
    uint8_t L[kQK_K];
    uint8_t Laux[16];
    float weights[16];
    float mins[kQK_K / 16];
    float scales[kQK_K / 16];
    constexpr float q4scale = 15.f;
    for (int64_t i = 0; i < nb; ++i, x += kQK_K) {
        float max_scale = 0, max_min = 0;
        for (int j = 0; j < kQK_K / 16; ++j) {
            for (int l = 0; l < 16; ++l) weights[l] = std::fabs(x[16 * j + l]);
            scales[j] = make_qkx2_quants(16, 3, x + 16 * j, weights, L + 16 * j, &mins[j], Laux, -0.5f, 0.1f, 15, true);
            if (scales[j] > max_scale) max_scale = scales[j];
            if (mins[j] > max_min) max_min = mins[j];
        }
        if (max_scale > 0) {
            const float iscale = q4scale / max_scale;
            for (int j = 0; j < kQK_K / 16; ++j) y[i].scales[j] = static_cast<uint8_t>(nearest_int(iscale * scales[j]));
            y[i].d = f32_to_f16_scalar(max_scale / q4scale);
        } else {
            for (int j = 0; j < kQK_K / 16; ++j) y[i].scales[j] = 0;
            y[i].d = f32_to_f16_scalar(0.f);
        }
        if (max_min > 0) {
            const float iscale = q4scale / max_min;
            for (int j = 0; j < kQK_K / 16; ++j)
                y[i].scales[j] |= static_cast<uint8_t>(nearest_int(iscale * mins[j]) << 4);
            y[i].dmin = f32_to_f16_scalar(max_min / q4scale);
        } else {
            y[i].dmin = f32_to_f16_scalar(0.f);
        }
        for (int j = 0; j < kQK_K / 16; ++j) {
            const float d = f16_to_f32_scalar(y[i].d) * static_cast<float>(y[i].scales[j] & 0xF);
            if (d == 0.0f) continue;
            const float dm = f16_to_f32_scalar(y[i].dmin) * static_cast<float>(y[i].scales[j] >> 4);
            for (int ii = 0; ii < 16; ++ii) {
                const int l = nearest_int((x[16 * j + ii] + dm) / d);
                L[16 * j + ii] = static_cast<uint8_t>(std::max(0, std::min(3, l)));
            }
        }
        pack_2bit(L, y[i].qs);
    }
}

// Q3_K: 16 sub-blocks of 16, each fitted symmetrically with 8 levels; the signed scale of largest
// magnitude maps to −32 and the scales are stored as 6-bit (s + 32); quants recomputed with the stored
// scales; the high bit of (q + 4) goes to hmask.
void quantize_row_q3_K_ref(const float* x, void* vy, int64_t k) {
    auto* y = static_cast<BlockQ3_K*>(vy);
    int8_t L[kQK_K];
    for (int64_t i = 0; i < k / kQK_K; ++i, x += kQK_K) {
        const SubBlockScales fit = fit_sub_blocks(make_q3_quants, 4, x, L);
        std::memset(y[i].scales, 0, sizeof(y[i].scales));
        if (fit.max != 0.0f) {
            const float iscale = -32.f / fit.max;
            for (int j = 0; j < kQK_K / 16; ++j) {
                const int l = std::max(-32, std::min(31, static_cast<int>(static_cast<int8_t>(nearest_int(iscale * fit.scales[j]))))) + 32;
                if (j < 8)
                    y[i].scales[j] = static_cast<uint8_t>(l & 0xF);
                else
                    y[i].scales[j - 8] |= static_cast<uint8_t>((l & 0xF) << 4);
                y[i].scales[j % 4 + 8] |= static_cast<uint8_t>((l >> 4) << (2 * (j / 4)));
            }
            y[i].d = f32_to_f16_scalar(1 / iscale);
        } else {
            y[i].d = f32_to_f16_scalar(0.f);
        }
        for (int j = 0; j < kQK_K / 16; ++j)
            requantize_sub_block(x + 16 * j, f16_to_f32_scalar(y[i].d) * static_cast<float>(q3_k_scale(y[i].scales, j)), 4,
                                 L + 16 * j);
        pack_q3_K_levels(L, y[i]);
    }
}

// Q4_K: 8 sub-blocks of 32, asymmetric 16-level fits (weights rms + |x|), 6-bit scales and mins.
void quantize_row_q4_K_ref(const float* x, void* y, int64_t k) { quantize_row_k4_like<BlockQ4_K>(x, y, k, 15, -1.f, 20); }

// Q5_K: as Q4_K with 32 levels.
void quantize_row_q5_K_ref(const float* x, void* y, int64_t k) { quantize_row_k4_like<BlockQ5_K>(x, y, k, 31, -0.5f, 15); }

// Q6_K: 16 sub-blocks of 16, symmetric 64-level fits; the signed scale of largest magnitude maps to
// −128 and the scales are stored as int8 (≤ 127); quants recomputed with the stored scales.
void quantize_row_q6_K_ref(const float* x, void* vy, int64_t k) {
    auto* y = static_cast<BlockQ6_K*>(vy);
    int8_t L[kQK_K];
    for (int64_t i = 0; i < k / kQK_K; ++i, x += kQK_K) {
        const SubBlockScales fit = fit_sub_blocks(make_qx_quants, 32, x, L);
        if (std::fabs(fit.max) < kGroupMaxEps) {
            std::memset(&y[i], 0, sizeof(BlockQ6_K));
            y[i].d = f32_to_f16_scalar(0.f);
            continue;
        }
        const float iscale = -128.f / fit.max;
        y[i].d = f32_to_f16_scalar(1 / iscale);
        for (int ib = 0; ib < kQK_K / 16; ++ib)
            y[i].scales[ib] = static_cast<int8_t>(std::min(127, nearest_int(iscale * fit.scales[ib])));
        for (int j = 0; j < kQK_K / 16; ++j)
            requantize_sub_block(x + 16 * j, f16_to_f32_scalar(y[i].d) * static_cast<float>(y[i].scales[j]), 32, L + 16 * j);
        uint8_t* ql = y[i].ql;
        uint8_t* qh = y[i].qh;
        for (int j = 0; j < kQK_K; j += 128, ql += 64, qh += 32) {
            for (int l = 0; l < 32; ++l) {
                const int q1 = L[j + l + 0], q2 = L[j + l + 32], q3 = L[j + l + 64], q4 = L[j + l + 96];
                ql[l + 0] = static_cast<uint8_t>((q1 & 0xF) | ((q3 & 0xF) << 4));
                ql[l + 32] = static_cast<uint8_t>((q2 & 0xF) | ((q4 & 0xF) << 4));
                qh[l] = static_cast<uint8_t>((q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6));
            }
        }
    }
}

// Q8_K: d = max/−127 (f32) for the signed value of largest magnitude, q = nearest_int(x/d) ≤ 127,
// bsums = sums of 16 consecutive q. An all-zero block gets d = 0, q = 0, bsums = 0 (ggml leaves its
// bsums unwritten there).
void quantize_row_q8_K_ref(const float* x, void* vy, int64_t k) {
    auto* y = static_cast<BlockQ8_K*>(vy);
    const int64_t nb = k / kQK_K;
    for (int64_t i = 0; i < nb; ++i, x += kQK_K) {
        const float max = signed_absmax(x, kQK_K).max;
        if (max == 0.0f) {
            y[i].d = 0;
            std::memset(y[i].qs, 0, sizeof(y[i].qs));
            std::memset(y[i].bsums, 0, sizeof(y[i].bsums));
            continue;
        }
        const float iscale = -127.f / max;
        for (int j = 0; j < kQK_K; ++j) y[i].qs[j] = static_cast<int8_t>(std::min(127, nearest_int(iscale * x[j])));
        for (int j = 0; j < kQK_K / 16; ++j) {
            int sum = 0;
            for (int ii = 0; ii < 16; ++ii) sum += y[i].qs[j * 16 + ii];
            y[i].bsums[j] = static_cast<int16_t>(sum);
        }
        y[i].d = 1 / iscale;
    }
}

// Q2_K: sub-block j's scale in the low nibble of scales[j], its min in the high nibble.
void dequantize_row_q2_K_ref(const void* x, float* y, int64_t k) {
    dequantize_row_asymmetric<BlockQ2_K, 16>(
        x, y, k,
        [](const BlockQ2_K& b, int j, uint8_t& sc, uint8_t& m) {
            sc = b.scales[j] & 0xF;
            m = b.scales[j] >> 4;
        },
        [](const BlockQ2_K& b, int j, int l) { return low_2bit(b.qs, j, l); });
}

// Q3_K: q = the 2 low bits − 4 unless bit j/2 of hmask[16·(j % 2) + l] is set.
void dequantize_row_q3_K_ref(const void* vx, float* y, int64_t k) {
    const auto* x = static_cast<const BlockQ3_K*>(vx);
    for (int64_t i = 0; i < k / kQK_K; ++i) {
        const float d_all = f16_to_f32_scalar(x[i].d);
        for (int j = 0; j < kQK_K / 16; ++j, y += 16) {
            const float dl = d_all * static_cast<float>(q3_k_scale(x[i].scales, j));
            for (int l = 0; l < 16; ++l) {
                const bool high = (x[i].hmask[16 * (j % 2) + l] >> (j / 2)) & 1;
                y[l] = dl * static_cast<float>(low_2bit(x[i].qs, j, l) - (high ? 0 : 4));
            }
        }
    }
}

void dequantize_row_q4_K_ref(const void* x, float* y, int64_t k) { dequantize_row_k4_like<BlockQ4_K>(x, y, k); }
void dequantize_row_q5_K_ref(const void* x, float* y, int64_t k) { dequantize_row_k4_like<BlockQ5_K>(x, y, k); }

void dequantize_row_q6_K_ref(const void* vx, float* y, int64_t k) {
    const auto* x = static_cast<const BlockQ6_K*>(vx);
    const int64_t nb = k / kQK_K;
    for (int64_t i = 0; i < nb; ++i) {
        const float d = f16_to_f32_scalar(x[i].d);
        const uint8_t* ql = x[i].ql;
        const uint8_t* qh = x[i].qh;
        const int8_t* sc = x[i].scales;
        for (int n = 0; n < kQK_K; n += 128, y += 128, ql += 64, qh += 32, sc += 8) {
            for (int l = 0; l < 32; ++l) {
                const int is = l / 16;
                const int q1 = ((ql[l + 0] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
                const int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
                const int q3 = ((ql[l + 0] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                y[l + 0] = d * static_cast<float>(sc[is + 0]) * static_cast<float>(q1);
                y[l + 32] = d * static_cast<float>(sc[is + 2]) * static_cast<float>(q2);
                y[l + 64] = d * static_cast<float>(sc[is + 4]) * static_cast<float>(q3);
                y[l + 96] = d * static_cast<float>(sc[is + 6]) * static_cast<float>(q4);
            }
        }
    }
}

void dequantize_row_q8_K_ref(const void* vx, float* y, int64_t k) {
    const auto* x = static_cast<const BlockQ8_K*>(vx);
    const int64_t nb = k / kQK_K;
    for (int64_t i = 0; i < nb; ++i)
        for (int j = 0; j < kQK_K; ++j) *y++ = x[i].d * static_cast<float>(x[i].qs[j]);
}

}  // namespace cq::formats
