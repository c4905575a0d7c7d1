// The ARM64 quantized matrix products of every ggml format (IQ4_NL / IQ4_XS: levels by tbl), written once over a 16-byte int8 dot step
// (Dot::step: Σ of 4 adjacent s8·s8 products into each int32 lane): plain NEON widens with smull + sadalp,
// the DotProd rung uses sdot. Weights are unpacked to s8 per block with NEON, the integer sums of a block
// (or sub-block) are exact, and the float steps across blocks are the reference's own, in its order — so
// every variant equals its reference twin bit for bit. Included by exactly one file per rung (each with
// its own -march), everything here has internal linkage so the rungs' copies never merge.
#pragma once

#if !defined(__aarch64__)
#error "quant_gemm_arm.h is for AArch64 builds only"
#endif

#include <arm_neon.h>

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "formats/blocks.h"
#include "kernels/arm/kernel_decls_arm.h"

namespace cq::kernels {
namespace {

using namespace cq::formats;

inline float h2f(f16_bits h) {
    __fp16 v;
    std::memcpy(&v, &h, sizeof(v));
    return float(v);
}

// Σ over 32 s8·s8 products: two 16-byte steps, one horizontal add.
template <class Dot>
inline int32_t dot32(int8x16_t w0, int8x16_t w1, const int8_t* a) {
    int32x4_t acc = Dot::step(vdupq_n_s32(0), w0, vld1q_s8(a));
    acc = Dot::step(acc, w1, vld1q_s8(a + 16));
    return vaddvq_s32(acc);
}
template <class Dot>
inline int32_t dot16(int8x16_t w, const int8_t* a) {
    return vaddvq_s32(Dot::step(vdupq_n_s32(0), w, vld1q_s8(a)));
}

// 16 bytes of 0x10 where bits first..first+15 of the little-endian u32 `bits` are set, else 0.
inline uint8x16_t bits_to_0x10(uint32_t bits, int first) {
    static const uint8_t kBit[16] = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
    const uint8x16_t v = vcombine_u8(vdup_n_u8(uint8_t(bits >> first)), vdup_n_u8(uint8_t(bits >> (first + 8))));
    return vandq_u8(vtstq_u8(v, vld1q_u8(kBit)), vdupq_n_u8(0x10));
}

// ---- legacy formats: 32-element blocks (dot over nb blocks of weights w · activations a) ----

template <class Dot>
float dot_q8_0(int64_t nb, const BlockQ8_0* w, const BlockQ8_0* a) {
    float s = 0.0f;
    for (int64_t b = 0; b < nb; ++b) {
        const int32_t sumi = dot32<Dot>(vld1q_s8(w[b].qs), vld1q_s8(w[b].qs + 16), a[b].qs);
        s += float(sumi) * (h2f(w[b].d) * h2f(a[b].d));
    }
    return s;
}

// Q4_0 / Q4_1 / Q5_0 / Q5_1: element j is the low nibble of qs[j], j + 16 the high one (Q5: | bit j of qh
// << 4), minus kBias; the formats with a min add m·s (s of the Q8_1 block).
template <class Dot, class W, class A, int kBias>
float dot_nibbles(int64_t nb, const W* w, const A* a) {
    float s = 0.0f;
    for (int64_t b = 0; b < nb; ++b) {
        const uint8x16_t q = vld1q_u8(w[b].qs);
        uint8x16_t lo = vandq_u8(q, vdupq_n_u8(0x0F)), hi = vshrq_n_u8(q, 4);
        if constexpr (requires { w[b].qh; }) {
            uint32_t qh;
            std::memcpy(&qh, w[b].qh, sizeof(qh));
            lo = vorrq_u8(lo, bits_to_0x10(qh, 0));
            hi = vorrq_u8(hi, bits_to_0x10(qh, 16));
        }
        const int8x16_t bias = vdupq_n_s8(int8_t(kBias));
        const int32_t sumi = dot32<Dot>(vsubq_s8(vreinterpretq_s8_u8(lo), bias), vsubq_s8(vreinterpretq_s8_u8(hi), bias), a[b].qs);
        if constexpr (requires { w[b].m; }) s += (h2f(w[b].d) * h2f(a[b].d)) * float(sumi) + h2f(w[b].m) * h2f(a[b].s);
        else s += float(sumi) * (h2f(w[b].d) * h2f(a[b].d));
    }
    return s;
}

// ---- k-quants: 256-element super-blocks against Q8_K ----

// Bit pair j (0..3) of each byte of qs[0..15] / qs[16..31] as s8 (Q2_K / Q3_K low bits).
inline int8x16_t pair_bits(uint8x16_t q, int j) {
    return vreinterpretq_s8_u8(vandq_u8(vshlq_u8(q, vdupq_n_s8(int8_t(-2 * j))), vdupq_n_u8(3)));
}

template <class Dot>
float dot_q2_K(int64_t nb, const BlockQ2_K* w, const BlockQ8_K* a) {
    float s = 0.0f;
    for (int64_t b = 0; b < nb; ++b) {
        int32_t summs = 0;
        for (int g = 0; g < 16; ++g) summs += (w[b].scales[g] >> 4) * a[b].bsums[g];
        int32_t isum = 0;
        for (int h = 0; h < 2; ++h) {
            const uint8x16_t q0 = vld1q_u8(w[b].qs + 32 * h), q1 = vld1q_u8(w[b].qs + 32 * h + 16);
            for (int j = 0; j < 4; ++j) {
                const int e = 128 * h + 32 * j;  // sub-blocks e/16 (elements l < 16) and e/16 + 1
                isum += (w[b].scales[e / 16] & 0x0F) * dot16<Dot>(pair_bits(q0, j), a[b].qs + e);
                isum += (w[b].scales[e / 16 + 1] & 0x0F) * dot16<Dot>(pair_bits(q1, j), a[b].qs + e + 16);
            }
        }
        s += a[b].d * h2f(w[b].d) * float(isum) - a[b].d * h2f(w[b].dmin) * float(summs);
    }
    return s;
}

template <class Dot>
float dot_q3_K(int64_t nb, const BlockQ3_K* w, const BlockQ8_K* a) {
    float s = 0.0f;
    for (int64_t b = 0; b < nb; ++b) {
        int sc[16];
        for (int i = 0; i < 16; ++i) {
            const int lo = i < 8 ? w[b].scales[i] & 0x0F : w[b].scales[i - 8] >> 4;
            const int hi = (w[b].scales[8 + i % 4] >> (2 * (i / 4))) & 3;
            sc[i] = (lo | (hi << 4)) - 32;
        }
        const uint8x16_t m0 = vld1q_u8(w[b].hmask), m1 = vld1q_u8(w[b].hmask + 16);
        int32_t isum = 0;
        for (int h = 0; h < 2; ++h) {
            const uint8x16_t q0 = vld1q_u8(w[b].qs + 32 * h), q1 = vld1q_u8(w[b].qs + 32 * h + 16);
            for (int j = 0; j < 4; ++j) {
                const int e = 128 * h + 32 * j;
                const uint8x16_t bit = vdupq_n_u8(uint8_t(1u << (4 * h + j)));
                // q − 4 where the high bit is clear: subtract (~mask & bit) != 0 ? 4 : 0
                const int8x16_t sub0 = vreinterpretq_s8_u8(vandq_u8(vceqq_u8(vandq_u8(m0, bit), vdupq_n_u8(0)), vdupq_n_u8(4)));
                const int8x16_t sub1 = vreinterpretq_s8_u8(vandq_u8(vceqq_u8(vandq_u8(m1, bit), vdupq_n_u8(0)), vdupq_n_u8(4)));
                isum += sc[e / 16] * dot16<Dot>(vsubq_s8(pair_bits(q0, j), sub0), a[b].qs + e);
                isum += sc[e / 16 + 1] * dot16<Dot>(vsubq_s8(pair_bits(q1, j), sub1), a[b].qs + e + 16);
            }
        }
        s += a[b].d * h2f(w[b].d) * float(isum);
    }
    return s;
}

// Q4_K / Q5_K (Q5: the fifth bit of element 32·sb + l in bit sb of qh[l]).
template <class Dot, class W>
float dot_q45_K(int64_t nb, const W* w, const BlockQ8_K* a) {
    float s = 0.0f;
    for (int64_t b = 0; b < nb; ++b) {
        int32_t isum = 0, summs = 0;
        for (int p = 0; p < 4; ++p) {  // 64-element chunks: sub-blocks 2p (low nibbles) and 2p + 1 (high)
            const uint8x16_t q0 = vld1q_u8(w[b].qs + 32 * p), q1 = vld1q_u8(w[b].qs + 32 * p + 16);
            uint8x16_t lo0 = vandq_u8(q0, vdupq_n_u8(0x0F)), lo1 = vandq_u8(q1, vdupq_n_u8(0x0F));
            uint8x16_t hi0 = vshrq_n_u8(q0, 4), hi1 = vshrq_n_u8(q1, 4);
            if constexpr (requires { w[b].qh; }) {
                const uint8x16_t h0 = vld1q_u8(w[b].qh), h1 = vld1q_u8(w[b].qh + 16);
                const uint8x16_t blo = vdupq_n_u8(uint8_t(1u << (2 * p))), bhi = vdupq_n_u8(uint8_t(1u << (2 * p + 1)));
                const uint8x16_t x10 = vdupq_n_u8(0x10);
                lo0 = vorrq_u8(lo0, vandq_u8(vtstq_u8(h0, blo), x10));
                lo1 = vorrq_u8(lo1, vandq_u8(vtstq_u8(h1, blo), x10));
                hi0 = vorrq_u8(hi0, vandq_u8(vtstq_u8(h0, bhi), x10));
                hi1 = vorrq_u8(hi1, vandq_u8(vtstq_u8(h1, bhi), x10));
            }
            for (int half = 0; half < 2; ++half) {
                const int sb = 2 * p + half;
                int sc, mn;
                scale_min_k4(sb, w[b].scales, sc, mn);
                summs += mn * (a[b].bsums[2 * sb] + a[b].bsums[2 * sb + 1]);
                const int8x16_t v0 = vreinterpretq_s8_u8(half ? hi0 : lo0), v1 = vreinterpretq_s8_u8(half ? hi1 : lo1);
                isum += sc * dot32<Dot>(v0, v1, a[b].qs + 32 * sb);
            }
        }
        s += a[b].d * h2f(w[b].d) * float(isum) - a[b].d * h2f(w[b].dmin) * float(summs);
    }
    return s;
}

template <class Dot>
float dot_q6_K(int64_t nb, const BlockQ6_K* w, const BlockQ8_K* a) {
    float s = 0.0f;
    for (int64_t b = 0; b < nb; ++b) {
        int32_t isum = 0;
        for (int h = 0; h < 2; ++h) {
            const uint8_t* ql = w[b].ql + 64 * h;
            const uint8_t* qh = w[b].qh + 32 * h;
            for (int half = 0; half < 2; ++half) {  // l in [16·half, 16·half + 16)
                const uint8x16_t hb = vld1q_u8(qh + 16 * half);
                const uint8x16_t la = vld1q_u8(ql + 16 * half), lb = vld1q_u8(ql + 32 + 16 * half);
                for (int j = 0; j < 4; ++j) {  // elements 128h + 32j + l
                    const uint8x16_t src = j & 1 ? lb : la;
                    const uint8x16_t lo = j < 2 ? vandq_u8(src, vdupq_n_u8(0x0F)) : vshrq_n_u8(src, 4);
                    const uint8x16_t hi = vshlq_n_u8(vandq_u8(vshlq_u8(hb, vdupq_n_s8(int8_t(-2 * j))), vdupq_n_u8(3)), 4);
                    const int8x16_t v = vsubq_s8(vreinterpretq_s8_u8(vorrq_u8(lo, hi)), vdupq_n_s8(32));
                    const int e = 128 * h + 32 * j + 16 * half;
                    isum += w[b].scales[e / 16] * dot16<Dot>(v, a[b].qs + e);
                }
            }
        }
        s += a[b].d * h2f(w[b].d) * float(isum);
    }
    return s;
}

// ---- non-linear 4-bit: each nibble indexes kIQ4NLValues (one tbl per 16 nibbles), levels |l| ≤ 127 ----

inline int8x16_t iq4_levels(int8x16_t table, uint8x16_t idx) { return vqtbl1q_s8(table, idx); }

// IQ4_NL × Q8_0: 32-element blocks in Q4_0's nibble order.
template <class Dot>
float dot_iq4_nl(int64_t nb, const BlockIQ4_NL* w, const BlockQ8_0* a) {
    const int8x16_t table = vld1q_s8(kIQ4NLValues);
    float s = 0.0f;
    for (int64_t b = 0; b < nb; ++b) {
        const uint8x16_t q = vld1q_u8(w[b].qs);
        const int32_t sumi =
                dot32<Dot>(iq4_levels(table, vandq_u8(q, vdupq_n_u8(0x0F))), iq4_levels(table, vshrq_n_u8(q, 4)), a[b].qs);
        s += float(sumi) * (h2f(w[b].d) * h2f(a[b].d));
    }
    return s;
}

// IQ4_XS × Q8_K: 8 sub-blocks of 32 per super-block, each its sum times its 6-bit scale − 32.
template <class Dot>
float dot_iq4_xs(int64_t nb, const BlockIQ4_XS* w, const BlockQ8_K* a) {
    const int8x16_t table = vld1q_s8(kIQ4NLValues);
    float s = 0.0f;
    for (int64_t b = 0; b < nb; ++b) {
        int32_t isum = 0;
        for (int ib = 0; ib < kQK_K / 32; ++ib) {
            const uint8x16_t q = vld1q_u8(w[b].qs + 16 * ib);
            const int32_t sub = dot32<Dot>(iq4_levels(table, vandq_u8(q, vdupq_n_u8(0x0F))), iq4_levels(table, vshrq_n_u8(q, 4)),
                                           a[b].qs + 32 * ib);
            isum += (iq4_xs_scale(w[b], ib) - 32) * sub;
        }
        s += (h2f(w[b].d) * a[b].d) * float(isum);
    }
    return s;
}

// act: [m] rows of Act blocks, w: [n] rows of W blocks → c: [m, n] (row stride ldc); one dot per (t, i).
template <class W, class Act, int kBlock, float (*Dot)(int64_t, const W*, const Act*)>
void gemm_rows(int64_t m, int64_t n, int64_t k, const void* act, size_t act_row_bytes, const void* w, size_t w_row_bytes,
               float* c, int64_t ldc) {
    const int64_t nb = k / kBlock;
    const auto* a8 = static_cast<const uint8_t*>(act);
    const auto* w8 = static_cast<const uint8_t*>(w);
    for (int64_t t = 0; t < m; ++t) {
        const auto* at = reinterpret_cast<const Act*>(a8 + size_t(t) * act_row_bytes);
        for (int64_t i = 0; i < n; ++i) c[t * ldc + i] = Dot(nb, reinterpret_cast<const W*>(w8 + size_t(i) * w_row_bytes), at);
    }
}

}  // namespace
}  // namespace cq::kernels

// The twelve GemmQuantFn entry points of one rung (ten in kernel_decls.h, the IQ4 two in arm/kernel_decls_arm.h) (ISA: the name suffix), over its Dot step.
#define CQ_DEFINE_ARM_QUANT_GEMMS(ISA, Dot)                                                                               \
    namespace cq::kernels {                                                                                               \
    void gemm_q8_0_q8_0__##ISA(int64_t m, int64_t n, int64_t k, const void* a, size_t arb, const void* w, size_t wrb,      \
                               float* c, int64_t ldc) {                                                                   \
        gemm_rows<BlockQ8_0, BlockQ8_0, kQK, dot_q8_0<Dot>>(m, n, k, a, arb, w, wrb, c, ldc);                             \
    }                                                                                                                     \
    void gemm_q4_0_q8_0__##ISA(int64_t m, int64_t n, int64_t k, const void* a, size_t arb, const void* w, size_t wrb,      \
                               float* c, int64_t ldc) {                                                                   \
        gemm_rows<BlockQ4_0, BlockQ8_0, kQK, dot_nibbles<Dot, BlockQ4_0, BlockQ8_0, 8>>(m, n, k, a, arb, w, wrb, c, ldc); \
    }                                                                                                                     \
    void gemm_q4_1_q8_1__##ISA(int64_t m, int64_t n, int64_t k, const void* a, size_t arb, const void* w, size_t wrb,      \
                               float* c, int64_t ldc) {                                                                   \
        gemm_rows<BlockQ4_1, BlockQ8_1, kQK, dot_nibbles<Dot, BlockQ4_1, BlockQ8_1, 0>>(m, n, k, a, arb, w, wrb, c, ldc); \
    }                                                                                                                     \
    void gemm_q5_0_q8_0__##ISA(int64_t m, int64_t n, int64_t k, const void* a, size_t arb, const void* w, size_t wrb,      \
                               float* c, int64_t ldc) {                                                                   \
        gemm_rows<BlockQ5_0, BlockQ8_0, kQK, dot_nibbles<Dot, BlockQ5_0, BlockQ8_0, 16>>(m, n, k, a, arb, w, wrb, c, ldc); \
    }                                                                                                                     \
    void gemm_q5_1_q8_1__##ISA(int64_t m, int64_t n, int64_t k, const void* a, size_t arb, const void* w, size_t wrb,      \
                               float* c, int64_t ldc) {                                                                   \
        gemm_rows<BlockQ5_1, BlockQ8_1, kQK, dot_nibbles<Dot, BlockQ5_1, BlockQ8_1, 0>>(m, n, k, a, arb, w, wrb, c, ldc); \
    }                                                                                                                     \
    void gemm_q2_K_q8_K__##ISA(int64_t m, int64_t n, int64_t k, const void* a, size_t arb, const void* w, size_t wrb,      \
                               float* c, int64_t ldc) {                                                                   \
        gemm_rows<BlockQ2_K, BlockQ8_K, kQK_K, dot_q2_K<Dot>>(m, n, k, a, arb, w, wrb, c, ldc);                           \
    }                                                                                                                     \
    void gemm_q3_K_q8_K__##ISA(int64_t m, int64_t n, int64_t k, const void* a, size_t arb, const void* w, size_t wrb,      \
                               float* c, int64_t ldc) {                                                                   \
        gemm_rows<BlockQ3_K, BlockQ8_K, kQK_K, dot_q3_K<Dot>>(m, n, k, a, arb, w, wrb, c, ldc);                           \
    }                                                                                                                     \
    void gemm_q4_K_q8_K__##ISA(int64_t m, int64_t n, int64_t k, const void* a, size_t arb, const void* w, size_t wrb,      \
                               float* c, int64_t ldc) {                                                                   \
        gemm_rows<BlockQ4_K, BlockQ8_K, kQK_K, dot_q45_K<Dot, BlockQ4_K>>(m, n, k, a, arb, w, wrb, c, ldc);               \
    }                                                                                                                     \
    void gemm_q5_K_q8_K__##ISA(int64_t m, int64_t n, int64_t k, const void* a, size_t arb, const void* w, size_t wrb,      \
                               float* c, int64_t ldc) {                                                                   \
        gemm_rows<BlockQ5_K, BlockQ8_K, kQK_K, dot_q45_K<Dot, BlockQ5_K>>(m, n, k, a, arb, w, wrb, c, ldc);               \
    }                                                                                                                     \
    void gemm_q6_K_q8_K__##ISA(int64_t m, int64_t n, int64_t k, const void* a, size_t arb, const void* w, size_t wrb,      \
                               float* c, int64_t ldc) {                                                                   \
        gemm_rows<BlockQ6_K, BlockQ8_K, kQK_K, dot_q6_K<Dot>>(m, n, k, a, arb, w, wrb, c, ldc);                           \
    }                                                                                                                     \
    void gemm_iq4_nl_q8_0__##ISA(int64_t m, int64_t n, int64_t k, const void* a, size_t arb, const void* w, size_t wrb,    \
                                 float* c, int64_t ldc) {                                                                 \
        gemm_rows<BlockIQ4_NL, BlockQ8_0, kQK, dot_iq4_nl<Dot>>(m, n, k, a, arb, w, wrb, c, ldc);                         \
    }                                                                                                                     \
    void gemm_iq4_xs_q8_K__##ISA(int64_t m, int64_t n, int64_t k, const void* a, size_t arb, const void* w, size_t wrb,    \
                                 float* c, int64_t ldc) {                                                                 \
        gemm_rows<BlockIQ4_XS, BlockQ8_K, kQK_K, dot_iq4_xs<Dot>>(m, n, k, a, arb, w, wrb, c, ldc);                       \
    }                                                                                                                     \
    }
