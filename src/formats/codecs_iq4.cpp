// Codecs of the non-linear 4-bit formats IQ4_NL (blocks of 32) and IQ4_XS (super-blocks of 256 with 6-bit
// sub-block scales): ggml's quantize_row_iq4_nl_impl search, operation for operation, so the bytes equal
// llama-quantize's with and without an importance matrix. For these formats the reference codec is itself a
// search; the importance-weighted entry point (iq4_*_search with weights) is what src/quant/ calls.
#include <cmath>
#include <cstring>

#include "formats/codec_math.h"
#include "formats/formats.h"
#include "kernels/kernel_decls.h"

namespace cq::formats {
namespace {

using kernels::f16_to_f32_scalar;
using kernels::f32_to_f16_scalar;

constexpr float kGroupMaxEps = 1e-15f;  // below this a group counts as all zero (ggml's GROUP_MAX_EPS)
constexpr int kSub = 32;                // elements per scale in both formats

// Index of the level nearest to v (ties to the lower level), by bisection over the sorted levels.
int nearest_level(float v) {
    const int8_t* val = kIQ4NLValues;
    if (v <= val[0]) return 0;
    if (v >= val[15]) return 15;
    int lo = 0, hi = 15;
    while (hi - lo > 1) {
        const int mid = (lo + hi) / 2;
        if (v < val[mid]) hi = mid;
        else lo = mid;
    }
    return v - val[hi - 1] < val[hi] - v ? hi - 1 : hi;
}

// One super-block of n elements (32: IQ4_NL, 256: IQ4_XS). Per sub-block of 32: weights qw·√(σ² + x²) with an
// importance row (σ² = 2·mean x² of the super-block) or x² without; a first scale from the signed extreme
// (mapped to −127, or to +127 when ntry ≤ 0), then 2·ntry+1 scales (ntry + level 0)/max, keeping the best
// weighted least-squares fit. IQ4_XS then quantizes the sub-block scales to 6 bits against d = −max/32 and
// requantizes each sub-block with its stored scale; IQ4_NL stores its one scale and requantizes when ntry > 0.
// L keeps the levels between calls: ggml leaves an all-zero IQ4_NL block's levels as the previous block's.
struct SuperBlockOut {
    f16_bits* d;
    uint8_t* qs;
    uint16_t* scales_h;  // IQ4_XS only
    uint8_t* scales_l;   // IQ4_XS only
};
void quantize_iq4_super_block(int n, const float* x, const float* importance, int ntry, SuperBlockOut out, uint8_t* L) {
    float sigma2 = 0;
    for (int j = 0; j < n; ++j) sigma2 += x[j] * x[j];
    sigma2 *= 2.f / static_cast<float>(n);
    std::memset(out.qs, 0, static_cast<size_t>(n / 2));
    *out.d = f32_to_f16_scalar(0.f);

    float scales[kQK_K / kSub];
    float weight[kSub];
    float max_scale = 0, amax_scale = 0;
    for (int ib = 0; ib < n / kSub; ++ib) {
        const float* xb = x + ib * kSub;
        uint8_t* Lb = L + ib * kSub;
        if (importance) {
            const float* qw = importance + ib * kSub;
            for (int j = 0; j < kSub; ++j) weight[j] = qw[j] * std::sqrt(sigma2 + xb[j] * xb[j]);
        } else {
            for (int j = 0; j < kSub; ++j) weight[j] = xb[j] * xb[j];
        }
        const SignedMax m = signed_absmax(xb, kSub);
        if (m.amax < kGroupMaxEps) {
            scales[ib] = 0;
            continue;
        }
        const float level0 = kIQ4NLValues[0];
        float d = ntry > 0 ? -m.max / level0 : m.max / level0;
        float id = 1 / d;
        float sumqx = 0, sumq2 = 0;
        for (int j = 0; j < kSub; ++j) {
            const int l = nearest_level(id * xb[j]);
            Lb[j] = static_cast<uint8_t>(l);
            const float q = kIQ4NLValues[l];
            const float w = weight[j];
            sumqx += w * q * xb[j];
            sumq2 += w * q * q;
        }
        d = sumq2 > 0 ? sumqx / sumq2 : 0.f;
        float best = d * sumqx;
        for (int itry = -ntry; itry <= ntry; ++itry) {
            id = static_cast<float>(itry + kIQ4NLValues[0]) / m.max;
            sumqx = sumq2 = 0;
            for (int j = 0; j < kSub; ++j) {
                const float q = kIQ4NLValues[nearest_level(id * xb[j])];
                const float w = weight[j];
                sumqx += w * q * xb[j];
                sumq2 += w * q * q;
            }
            if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
                d = sumqx / sumq2;
                best = d * sumqx;
            }
        }
        scales[ib] = d;
        if (std::fabs(d) > amax_scale) {
            amax_scale = std::fabs(d);
            max_scale = d;
        }
    }

    if (n > kSub) {
        *out.scales_h = 0;
        const float d = -max_scale / 32;
        *out.d = f32_to_f16_scalar(d);
        const float id = d != 0.0f ? 1 / d : 0.f;
        for (int ib = 0; ib < n / kSub; ++ib) {
            int l = nearest_int(id * scales[ib]);
            l = l < -32 ? -32 : l > 31 ? 31 : l;
            const float dl = d * static_cast<float>(l);
            const float idl = dl != 0.0f ? 1 / dl : 0.f;
            for (int j = 0; j < kSub; ++j) L[ib * kSub + j] = static_cast<uint8_t>(nearest_level(idl * x[ib * kSub + j]));
            l += 32;
            const uint8_t lo = static_cast<uint8_t>(l & 0xF), hi = static_cast<uint8_t>(l >> 4);
            if (ib % 2 == 0) out.scales_l[ib / 2] = lo;
            else out.scales_l[ib / 2] |= static_cast<uint8_t>(lo << 4);
            *out.scales_h = static_cast<uint16_t>(*out.scales_h | (hi << (2 * (ib % 8))));
        }
    } else {
        *out.d = f32_to_f16_scalar(scales[0]);
        if (ntry > 0) {
            const float id = scales[0] != 0.0f ? 1 / scales[0] : 0.f;
            for (int j = 0; j < n; ++j) L[j] = static_cast<uint8_t>(nearest_level(id * x[j]));
        }
    }
    for (int i = 0; i < n / kSub; ++i)
        for (int j = 0; j < 16; ++j) out.qs[16 * i + j] = static_cast<uint8_t>(L[kSub * i + j] | (L[kSub * i + 16 + j] << 4));
}

}  // namespace

void quantize_row_iq4_nl_search(const float* x, void* vy, int64_t k, const float* importance, int ntry) {
    auto* y = static_cast<BlockIQ4_NL*>(vy);
    uint8_t L[kQK] = {};
    for (int64_t i = 0; i < k / kQK; ++i)
        quantize_iq4_super_block(kQK, x + i * kQK, importance ? importance + i * kQK : nullptr, ntry,
                                 {&y[i].d, y[i].qs, nullptr, nullptr}, L);
}

void quantize_row_iq4_xs_search(const float* x, void* vy, int64_t k, const float* importance, int ntry) {
    auto* y = static_cast<BlockIQ4_XS*>(vy);
    uint8_t L[kQK_K] = {};
    for (int64_t i = 0; i < k / kQK_K; ++i)
        quantize_iq4_super_block(kQK_K, x + i * kQK_K, importance ? importance + i * kQK_K : nullptr, ntry,
                                 {&y[i].d, y[i].qs, &y[i].scales_h, y[i].scales_l}, L);
}

// ggml's quantize_row_iq4_nl_ref: the first scale only (ntry −1), no requantization.
void quantize_row_iq4_nl_ref(const float* x, void* y, int64_t k) { quantize_row_iq4_nl_search(x, y, k, nullptr, -1); }
// ggml's quantize_row_iq4_xs_ref is the full search (ntry 7) without weights.
void quantize_row_iq4_xs_ref(const float* x, void* y, int64_t k) { quantize_row_iq4_xs_search(x, y, k, nullptr, 7); }

void dequantize_row_iq4_nl_ref(const void* vx, float* y, int64_t k) {
    const auto* x = static_cast<const BlockIQ4_NL*>(vx);
    for (int64_t i = 0; i < k / kQK; ++i, y += kQK) {
        const float d = f16_to_f32_scalar(x[i].d);
        for (int j = 0; j < kQK / 2; ++j) {
            y[j] = d * static_cast<float>(kIQ4NLValues[x[i].qs[j] & 0xF]);
            y[j + kQK / 2] = d * static_cast<float>(kIQ4NLValues[x[i].qs[j] >> 4]);
        }
    }
}

void dequantize_row_iq4_xs_ref(const void* vx, float* y, int64_t k) {
    const auto* x = static_cast<const BlockIQ4_XS*>(vx);
    for (int64_t i = 0; i < k / kQK_K; ++i) {
        const float d = f16_to_f32_scalar(x[i].d);
        for (int ib = 0; ib < kQK_K / kSub; ++ib, y += kSub) {
            const float dl = d * static_cast<float>(iq4_xs_scale(x[i], ib) - 32);
            const uint8_t* qs = x[i].qs + 16 * ib;
            for (int j = 0; j < 16; ++j) {
                y[j] = dl * static_cast<float>(kIQ4NLValues[qs[j] & 0xF]);
                y[j + 16] = dl * static_cast<float>(kIQ4NLValues[qs[j] >> 4]);
            }
        }
    }
}

}  // namespace cq::formats
