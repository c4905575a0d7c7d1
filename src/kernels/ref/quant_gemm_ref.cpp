// Scalar reference quantized matrix products (ggml's vec_dot rules: integer sums inside a block or
// sub-block, float across blocks); their activation quantizers are the formats' Q8_0 / Q8_1 / Q8_K codecs.
// The specification every vector variant is tested against; one dot product per (token, row).
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "formats/blocks.h"
#include "kernels/kernel_decls.h"

namespace cq::kernels {
namespace {

using namespace cq::formats;

inline float h2f(f16_bits h) { return f16_to_f32_scalar(h); }

// ---- legacy formats: 32-element blocks ----

// nb blocks of weights w · activations a
float dot_q8_0(int64_t nb, const BlockQ8_0* w, const BlockQ8_0* a) {
    float s = 0.0f;
    for (int64_t b = 0; b < nb; ++b) {
        int32_t sumi = 0;
        for (int j = 0; j < kQK; ++j) sumi += int32_t(w[b].qs[j]) * int32_t(a[b].qs[j]);
        s += float(sumi) * (h2f(w[b].d) * h2f(a[b].d));
    }
    return s;
}

inline uint32_t load_qh(const uint8_t* qh) {
    uint32_t v;
    std::memcpy(&v, qh, sizeof(v));
    return v;
}

// Q4_0 / Q4_1 / Q5_0 / Q5_1: element j is the low nibble of qs[j], element j + 16 the high one (Q5: | bit
// j of qh << 4), minus kBias; the formats with a min add m·s (s of the Q8_1 block).
template <typename W, typename A, int kBias>
float dot_nibbles(int64_t nb, const W* w, const A* a) {
    float s = 0.0f;
    for (int64_t b = 0; b < nb; ++b) {
        uint32_t qh = 0;
        if constexpr (requires { w[b].qh; }) qh = load_qh(w[b].qh);
        int32_t sumi = 0;
        for (int j = 0; j < kQK / 2; ++j) {
            const int h0 = int((qh >> j) << 4) & 0x10, h1 = int(qh >> (j + 12)) & 0x10;
            const int v0 = ((w[b].qs[j] & 0x0F) | h0) - kBias, v1 = ((w[b].qs[j] >> 4) | h1) - kBias;
            sumi += v0 * a[b].qs[j] + v1 * a[b].qs[j + kQK / 2];
        }
        if constexpr (requires { w[b].m; }) s += (h2f(w[b].d) * h2f(a[b].d)) * float(sumi) + h2f(w[b].m) * h2f(a[b].s);
        else s += float(sumi) * (h2f(w[b].d) * h2f(a[b].d));
    }
    return s;
}
constexpr auto dot_q4_0 = &dot_nibbles<BlockQ4_0, BlockQ8_0, 8>;
constexpr auto dot_q4_1 = &dot_nibbles<BlockQ4_1, BlockQ8_1, 0>;
constexpr auto dot_q5_0 = &dot_nibbles<BlockQ5_0, BlockQ8_0, 16>;
constexpr auto dot_q5_1 = &dot_nibbles<BlockQ5_1, BlockQ8_1, 0>;

// ---- k-quants: 256-element super-blocks against Q8_K ----

float dot_q2_K(int64_t nb, const BlockQ2_K* w, const BlockQ8_K* a) {
    float s = 0.0f;
    for (int64_t b = 0; b < nb; ++b) {
        int32_t summs = 0;
        for (int g = 0; g < 16; ++g) summs += (w[b].scales[g] >> 4) * a[b].bsums[g];
        int32_t isum = 0;
        for (int e = 0; e < kQK_K; ++e) {
            const int h = e / 128, j = (e % 128) / 32, l = e % 32;
            const int q = (w[b].qs[32 * h + l] >> (2 * j)) & 3;
            isum += (w[b].scales[e / 16] & 0x0F) * q * a[b].qs[e];
        }
        s += a[b].d * h2f(w[b].d) * float(isum) - a[b].d * h2f(w[b].dmin) * float(summs);
    }
    return s;
}

// The 16 6-bit scales of a Q3_K block, minus 32.
void q3_K_scales(const uint8_t* p, int* sc) {
    for (int i = 0; i < 16; ++i) {
        const int lo = i < 8 ? p[i] & 0x0F : p[i - 8] >> 4;
        const int hi = (p[8 + i % 4] >> (2 * (i / 4))) & 3;
        sc[i] = (lo | (hi << 4)) - 32;
    }
}

float dot_q3_K(int64_t nb, const BlockQ3_K* w, const BlockQ8_K* a) {
    float s = 0.0f;
    for (int64_t b = 0; b < nb; ++b) {
        int sc[16];
        q3_K_scales(w[b].scales, sc);
        int32_t isum = 0;
        for (int e = 0; e < kQK_K; ++e) {
            const int h = e / 128, j = (e % 128) / 32, l = e % 32;
            const int lo = (w[b].qs[32 * h + l] >> (2 * j)) & 3;
            const int hbit = (w[b].hmask[l] >> (4 * h + j)) & 1;
            isum += sc[e / 16] * (lo - (hbit ? 0 : 4)) * a[b].qs[e];
        }
        s += a[b].d * h2f(w[b].d) * float(isum);
    }
    return s;
}


// Q4_K / Q5_K (Q5: the fifth bit of element 32·sb + l in bit sb of qh[l]).
template <typename W>
float dot_q45_K(int64_t nb, const W* w, const BlockQ8_K* a) {
    float s = 0.0f;
    for (int64_t b = 0; b < nb; ++b) {
        int32_t isum = 0, summs = 0;
        for (int sb = 0; sb < 8; ++sb) {
            int sc, mn;
            scale_min_k4(sb, w[b].scales, sc, mn);
            summs += mn * (a[b].bsums[2 * sb] + a[b].bsums[2 * sb + 1]);
            const uint8_t* q = w[b].qs + 32 * (sb / 2);
            int32_t sub = 0;
            for (int l = 0; l < 32; ++l) {
                int v = (sb & 1) ? q[l] >> 4 : q[l] & 0x0F;
                if constexpr (requires { w[b].qh; }) v |= ((w[b].qh[l] >> sb) & 1) << 4;
                sub += v * a[b].qs[32 * sb + l];
            }
            isum += sc * sub;
        }
        s += a[b].d * h2f(w[b].d) * float(isum) - a[b].d * h2f(w[b].dmin) * float(summs);
    }
    return s;
}
constexpr auto dot_q4_K = &dot_q45_K<BlockQ4_K>;
constexpr auto dot_q5_K = &dot_q45_K<BlockQ5_K>;

float dot_q6_K(int64_t nb, const BlockQ6_K* w, const BlockQ8_K* a) {
    float s = 0.0f;
    for (int64_t b = 0; b < nb; ++b) {
        int32_t isum = 0;
        for (int e = 0; e < kQK_K; ++e) {
            const int h = e / 128, j = (e % 128) / 32, l = e % 32;
            const uint8_t ql = w[b].ql[64 * h + 32 * (j & 1) + l];
            const int lo = j < 2 ? ql & 0x0F : ql >> 4;
            const int hi = (w[b].qh[32 * h + l] >> (2 * j)) & 3;
            isum += w[b].scales[e / 16] * ((lo | (hi << 4)) - 32) * a[b].qs[e];
        }
        s += a[b].d * h2f(w[b].d) * float(isum);
    }
    return s;
}

// act: [m] rows of Act blocks, w: [n] rows of W blocks → c: [m, n] (row stride ldc)
template <typename W, typename Act, int kBlock, float (*Dot)(int64_t, const W*, const Act*)>
void gemm_ref(int64_t m, int64_t n, int64_t k, const void* act, size_t act_row_bytes, const void* w,
              size_t w_row_bytes, float* c, int64_t ldc) {
    const int64_t nb = k / kBlock;
    const auto* a8 = static_cast<const uint8_t*>(act);
    const auto* w8 = static_cast<const uint8_t*>(w);
    for (int64_t t = 0; t < m; ++t)
        for (int64_t i = 0; i < n; ++i)
            c[t * ldc + i] = Dot(nb, reinterpret_cast<const W*>(w8 + size_t(i) * w_row_bytes),
                                 reinterpret_cast<const Act*>(a8 + size_t(t) * act_row_bytes));
}

// A GEMM over the 8-row packed groups (w_row_bytes unused: group i/8 starts nb·(i/8) blocks on), with
// dot(g, r, a, nb) the dot product of row r of the group g with the activation row a.
template <typename B8, typename Act, int kBlock, class RowDot>
void gemm_x8_ref(int64_t m, int64_t n, int64_t k, const void* act, size_t arb, const void* w, float* c, int64_t ldc,
                 RowDot dot) {
    const int64_t nb = k / kBlock;
    const auto* groups = static_cast<const B8*>(w);
    for (int64_t t = 0; t < m; ++t) {
        const auto* a = reinterpret_cast<const Act*>(static_cast<const uint8_t*>(act) + size_t(t) * arb);
        for (int64_t i = 0; i < n; ++i) c[t * ldc + i] = dot(groups + (i / 8) * nb, int(i % 8), a, nb);
    }
}

}  // namespace

#define CQ_GEMM_REF(wt, at, W, A, block)                                                                         \
    void gemm_##wt##_##at##__ref(int64_t m, int64_t n, int64_t k, const void* act, size_t arb, const void* w, \
                                 size_t wrb, float* c, int64_t ldc) {                                          \
        gemm_ref<W, A, block, dot_##wt>(m, n, k, act, arb, w, wrb, c, ldc);                                  \
    }
CQ_GEMM_REF(q8_0, q8_0, BlockQ8_0, BlockQ8_0, kQK)
CQ_GEMM_REF(q4_0, q8_0, BlockQ4_0, BlockQ8_0, kQK)
CQ_GEMM_REF(q4_1, q8_1, BlockQ4_1, BlockQ8_1, kQK)
CQ_GEMM_REF(q5_0, q8_0, BlockQ5_0, BlockQ8_0, kQK)
CQ_GEMM_REF(q5_1, q8_1, BlockQ5_1, BlockQ8_1, kQK)
CQ_GEMM_REF(q2_K, q8_K, BlockQ2_K, BlockQ8_K, kQK_K)
CQ_GEMM_REF(q3_K, q8_K, BlockQ3_K, BlockQ8_K, kQK_K)
CQ_GEMM_REF(q4_K, q8_K, BlockQ4_K, BlockQ8_K, kQK_K)
CQ_GEMM_REF(q5_K, q8_K, BlockQ5_K, BlockQ8_K, kQK_K)
CQ_GEMM_REF(q6_K, q8_K, BlockQ6_K, BlockQ8_K, kQK_K)
#undef CQ_GEMM_REF

namespace {

// Element j of row r in an 8-row Q4_0 / Q8_0 block (formats/blocks.h: piece j/4 of the 8 rows side by side;
// Q4_0's elements 16.. are the high nibbles of 0..15's bytes).
template <typename B8>
int x8_value(const B8& blk, int r, int j) {
    if constexpr (std::is_same_v<B8, BlockQ8_0x8>) return blk.qs[32 * (j / 4) + 4 * r + j % 4];
    const int jj = j % 16;
    const uint8_t q = blk.qs[32 * (jj / 4) + 4 * r + jj % 4];
    return (j < 16 ? q & 0x0F : q >> 4) - 8;
}

// Q4_0 / Q8_0 in groups of 8 rows (BlockQ4_0x8 / BlockQ8_0x8): the same integer sums and float steps as
// gemm_q4_0_q8_0__ref / gemm_q8_0_q8_0__ref, so the results are identical.
template <typename B8>
void gemm_x8_legacy_ref(int64_t m, int64_t n, int64_t k, const void* act, size_t arb, const void* w, float* c, int64_t ldc) {
    gemm_x8_ref<B8, BlockQ8_0, kQK>(m, n, k, act, arb, w, c, ldc, [](const B8* g, int r, const BlockQ8_0* a, int64_t nb) {
        float s = 0.0f;
        for (int64_t b = 0; b < nb; ++b) {
            int32_t sumi = 0;
            for (int j = 0; j < kQK; ++j) sumi += x8_value(g[b], r, j) * int32_t(a[b].qs[j]);
            s += float(sumi) * (h2f(g[b].d[r]) * h2f(a[b].d));
        }
        return s;
    });
}

}  // namespace

void gemm_q4_0x8_q8_0__ref(int64_t m, int64_t n, int64_t k, const void* act, size_t arb, const void* w, size_t,
                           float* c, int64_t ldc) {
    gemm_x8_legacy_ref<BlockQ4_0x8>(m, n, k, act, arb, w, c, ldc);
}
void gemm_q8_0x8_q8_0__ref(int64_t m, int64_t n, int64_t k, const void* act, size_t arb, const void* w, size_t,
                           float* c, int64_t ldc) {
    gemm_x8_legacy_ref<BlockQ8_0x8>(m, n, k, act, arb, w, c, ldc);
}
// Q4_K in groups of 8 rows (BlockQ4_Kx8): as gemm_q4_K_q8_K__ref.
void gemm_q4_Kx8_q8_K__ref(int64_t m, int64_t n, int64_t k, const void* act, size_t arb, const void* w, size_t,
                           float* c, int64_t ldc) {
    gemm_x8_ref<BlockQ4_Kx8, BlockQ8_K, kQK_K>(m, n, k, act, arb, w, c, ldc, [](const BlockQ4_Kx8* g, int r, const BlockQ8_K* a, int64_t nb) {
        float s = 0.0f;
        for (int64_t b = 0; b < nb; ++b) {
            int32_t isum = 0, summs = 0;
            for (int sb = 0; sb < 8; ++sb) {
                summs += g[b].mins[sb / 2][r][sb % 2] * (a[b].bsums[2 * sb] + a[b].bsums[2 * sb + 1]);
                int32_t sub = 0;
                for (int l = 0; l < 32; ++l) {
                    const uint8_t q = g[b].qs[256 * (sb / 2) + 32 * (l / 4) + 4 * r + l % 4];
                    sub += ((sb & 1) ? q >> 4 : q & 0x0F) * a[b].qs[32 * sb + l];
                }
                isum += g[b].scales[sb][r] * sub;
            }
            s += a[b].d * h2f(g[b].d[r]) * float(isum) - a[b].d * h2f(g[b].dmin[r]) * float(summs);
        }
        return s;
    });
}

}  // namespace cq::kernels
