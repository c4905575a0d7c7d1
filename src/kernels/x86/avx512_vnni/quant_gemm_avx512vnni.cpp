// AVX-512 VNNI quantized matrix products: the AVX2 tiling on 256-bit vectors (AVX512VL gives 32 of
// them, so tiles are larger), with vpdpbusd / vpdpwssd in place of vpmaddubsw + vpmaddwd + add.
// Legacy formats: weights offset to unsigned bytes (Q8_0: w + 128; Q4_0: the nibble q = w + 8), and the
// accumulator of every (row, token) pair starts at −offset·Σa, computed once per token block.
// K-quants: vpmaddubsw (u8 quants × s8 activations, no saturation possible) then vpdpwssd with the scales.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
#include <immintrin.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <utility>

#include "formats/blocks.h"
#include "kernels/kernel_decls.h"

namespace cq::kernels {
namespace {

using namespace cq::formats;

inline float h2f(uint16_t h) { return _cvtsh_ss(h); }
inline __m256 bcast_h(uint16_t h) { return _mm256_set1_ps(_cvtsh_ss(h)); }
inline __m256i load32(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }
inline __m128i load16(const void* p) { return _mm_loadu_si128(static_cast<const __m128i*>(p)); }

inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

inline int64_t row_chunk(int64_t m, int64_t n, size_t w_row_bytes) {
    if (m <= 4) return n;
    const int64_t rows = std::max<int64_t>(8, int64_t(65536 / std::max<size_t>(w_row_bytes, 1)) & ~int64_t{7});
    return std::min(rows, n);
}

// ---- legacy formats ----

struct VQ8_0 {
    using W = BlockQ8_0;
    static constexpr int kOffset = 128;
    static __m256i u(const W& b) { return _mm256_xor_si256(load32(b.qs), _mm256_set1_epi8(char(0x80))); }
};
struct VQ4_0 {
    using W = BlockQ4_0;
    static constexpr int kOffset = 8;
    static __m256i u(const W& b) {
        const __m128i x = load16(b.qs);
        return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(x, 4), x), _mm256_set1_epi8(0x0F));
    }
};

// act: T rows of Q8_0 blocks, w: R rows of W blocks → c[t*ldc + r]
template <class L, int R, int T>
void legacy_tile(int64_t nb, const uint8_t* act, size_t arb, const uint8_t* w, size_t wrb, float* c, int64_t ldc) {
    using W = typename L::W;
    const W* wr[R];
    const BlockQ8_0* at[T];
    for (int r = 0; r < R; ++r) wr[r] = reinterpret_cast<const W*>(w + size_t(r) * wrb);
    for (int t = 0; t < T; ++t) at[t] = reinterpret_cast<const BlockQ8_0*>(act + size_t(t) * arb);
    const __m256i zero = _mm256_setzero_si256();
    const __m256i offset = _mm256_set1_epi8(char(L::kOffset));
    __m256 acc[R][T];
    for (int r = 0; r < R; ++r)
        for (int t = 0; t < T; ++t) acc[r][t] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; ++b) {
        __m256i u[R];
        __m256 dw[R];
        for (int r = 0; r < R; ++r) {
            u[r] = L::u(wr[r][b]);
            dw[r] = bcast_h(wr[r][b].d);
        }
        for (int t = 0; t < T; ++t) {
            const __m256i a = load32(at[t][b].qs);
            const __m256 da = bcast_h(at[t][b].d);
            const __m256i start = _mm256_sub_epi32(zero, _mm256_dpbusd_epi32(zero, offset, a));  // −offset·Σa
            for (int r = 0; r < R; ++r) {
                const __m256i p = _mm256_dpbusd_epi32(start, u[r], a);
                acc[r][t] = _mm256_fmadd_ps(_mm256_mul_ps(dw[r], da), _mm256_cvtepi32_ps(p), acc[r][t]);
            }
        }
    }
    for (int r = 0; r < R; ++r)
        for (int t = 0; t < T; ++t) c[t * ldc + r] = hsum(acc[r][t]);
}

// ---- k-quants (see quant_gemm_avx2.cpp for the decoder contract) ----

struct KQ4_K {
    using W = BlockQ4_K;
    static constexpr bool kMin = true, kCorr = false;
    const uint8_t* qs;
    __m256i s16, m16, corr16;
    float d, dmin;
    void init(const W& b) {
        uint32_t u[4];
        std::memcpy(u, b.scales, 12);
        u[3] = ((u[2] >> 4) & 0x0f0f0f0fu) | (((u[1] >> 6) & 0x03030303u) << 4);
        const uint32_t uaux = u[1] & 0x3f3f3f3fu;
        u[1] = (u[2] & 0x0f0f0f0fu) | (((u[0] >> 6) & 0x03030303u) << 4);
        u[2] = uaux;
        u[0] &= 0x3f3f3f3fu;
        const __m128i sm = _mm_set_epi32(int(u[3]), int(u[2]), int(u[1]), int(u[0]));  // scales 0..7, mins 0..7
        s16 = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(sm, sm));
        m16 = _mm256_cvtepu8_epi16(_mm_unpackhi_epi8(sm, sm));
        qs = b.qs;
        d = h2f(b.d);
        dmin = h2f(b.dmin);
    }
    template <int c>
    __m256i q() const {
        const __m256i v = load32(qs + 32 * (c / 2));
        return _mm256_and_si256(c % 2 ? _mm256_srli_epi16(v, 4) : v, _mm256_set1_epi8(0x0F));
    }
};

struct KQ6_K {
    using W = BlockQ6_K;
    static constexpr bool kMin = false, kCorr = true;
    const uint8_t* ql;
    const uint8_t* qhp;
    __m256i s16, m16, corr16;
    float d, dmin;
    void init(const W& b) {
        s16 = _mm256_cvtepi8_epi16(load16(b.scales));
        corr16 = _mm256_slli_epi16(s16, 5);  // value = q − 32
        ql = b.ql;
        qhp = b.qh;
        d = h2f(b.d);
    }
    template <int c>
    __m256i q() const {
        constexpr int h = c / 4, j = c % 4;
        const __m256i lv = load32(ql + 64 * h + 32 * (j & 1));
        const __m256i lo = _mm256_and_si256(j < 2 ? lv : _mm256_srli_epi16(lv, 4), _mm256_set1_epi8(0x0F));
        const __m256i hv = load32(qhp + 32 * h);
        __m256i hi;
        if constexpr (j == 0) hi = _mm256_slli_epi16(hv, 4);
        else if constexpr (j == 1) hi = _mm256_slli_epi16(hv, 2);
        else if constexpr (j == 2) hi = hv;
        else hi = _mm256_srli_epi16(hv, 2);
        return _mm256_or_si256(lo, _mm256_and_si256(hi, _mm256_set1_epi8(0x30)));
    }
};

inline __m256i chunk_scales(__m256i s16, int c) {
    const __m256i pair = _mm256_permutevar8x32_epi32(s16, _mm256_set1_epi32(c));
    const __m256i spread = _mm256_setr_epi8(0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1,  //
                                            2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3);
    return _mm256_shuffle_epi8(pair, spread);
}

template <class K, int R, int T, int c>
inline void k_chunk(const K* dec, const BlockQ8_K* const* at, int64_t b, __m256i (&sumi)[R][T]) {
    __m256i q[R], sc[R];
    for (int r = 0; r < R; ++r) {
        q[r] = dec[r].template q<c>();
        sc[r] = chunk_scales(dec[r].s16, c);
    }
    for (int t = 0; t < T; ++t) {
        const __m256i a = load32(at[t][b].qs + 32 * c);
        for (int r = 0; r < R; ++r) sumi[r][t] = _mm256_dpwssd_epi32(sumi[r][t], sc[r], _mm256_maddubs_epi16(q[r], a));
    }
}

template <class K, int R, int T, int... C>
inline void k_chunks(const K* dec, const BlockQ8_K* const* at, int64_t b, __m256i (&sumi)[R][T],
                     std::integer_sequence<int, C...>) {
    (k_chunk<K, R, T, C>(dec, at, b, sumi), ...);
}

template <class K, int R, int T>
void k_tile(int64_t nb, const uint8_t* act, size_t arb, const uint8_t* w, size_t wrb, float* c, int64_t ldc) {
    using W = typename K::W;
    const W* wr[R];
    const BlockQ8_K* at[T];
    for (int r = 0; r < R; ++r) wr[r] = reinterpret_cast<const W*>(w + size_t(r) * wrb);
    for (int t = 0; t < T; ++t) at[t] = reinterpret_cast<const BlockQ8_K*>(act + size_t(t) * arb);
    __m256 acc[R][T];
    for (int r = 0; r < R; ++r)
        for (int t = 0; t < T; ++t) acc[r][t] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; ++b) {
        K dec[R];
        for (int r = 0; r < R; ++r) dec[r].init(wr[r][b]);
        __m256i sumi[R][T];
        for (int r = 0; r < R; ++r)
            for (int t = 0; t < T; ++t) sumi[r][t] = _mm256_setzero_si256();
        k_chunks<K, R, T>(dec, at, b, sumi, std::make_integer_sequence<int, 8>{});
        for (int t = 0; t < T; ++t) {
            const __m256i bs = load32(at[t][b].bsums);
            const float da = at[t][b].d;
            for (int r = 0; r < R; ++r) {
                __m256i s = sumi[r][t];
                if constexpr (K::kCorr) s = _mm256_sub_epi32(s, _mm256_madd_epi16(dec[r].corr16, bs));
                acc[r][t] = _mm256_fmadd_ps(_mm256_set1_ps(dec[r].d * da), _mm256_cvtepi32_ps(s), acc[r][t]);
                if constexpr (K::kMin)
                    acc[r][t] = _mm256_fmadd_ps(_mm256_set1_ps(-dec[r].dmin * da),
                                                _mm256_cvtepi32_ps(_mm256_madd_epi16(dec[r].m16, bs)), acc[r][t]);
            }
        }
    }
    for (int r = 0; r < R; ++r)
        for (int t = 0; t < T; ++t) c[t * ldc + r] = hsum(acc[r][t]);
}

// ---- drivers (as in quant_gemm_avx2.cpp) ----

using TileFn = void (*)(int64_t nb, const uint8_t* act, size_t arb, const uint8_t* w, size_t wrb, float* c,
                        int64_t ldc);

template <TileFn Full, int R, TileFn One>
void tile_rows(int64_t n, int64_t nb, const uint8_t* act, size_t arb, const uint8_t* w, size_t wrb, float* c,
               int64_t ldc) {
    int64_t i = 0;
    for (; i + R <= n; i += R) Full(nb, act, arb, w + size_t(i) * wrb, wrb, c + i, ldc);
    for (; i < n; ++i) One(nb, act, arb, w + size_t(i) * wrb, wrb, c + i, ldc);
}

using RowsFn = void (*)(int64_t n, int64_t nb, const uint8_t* act, size_t arb, const uint8_t* w, size_t wrb,
                        float* c, int64_t ldc);

inline void gemm_tiled(const RowsFn (&rows)[5], int64_t block, int64_t m, int64_t n, int64_t k, const void* act,
                       size_t arb, const void* w, size_t wrb, float* c, int64_t ldc) {
    const int64_t nb = k / block;
    const auto* a8 = static_cast<const uint8_t*>(act);
    const auto* w8 = static_cast<const uint8_t*>(w);
    const int64_t nc = row_chunk(m, n, wrb);
    for (int64_t i0 = 0; i0 < n; i0 += nc) {
        const int64_t ni = std::min(nc, n - i0);
        int64_t t = 0;
        for (; t + 4 <= m; t += 4) rows[4](ni, nb, a8 + size_t(t) * arb, arb, w8 + size_t(i0) * wrb, wrb, c + t * ldc + i0, ldc);
        if (m - t > 0)
            rows[m - t](ni, nb, a8 + size_t(t) * arb, arb, w8 + size_t(i0) * wrb, wrb, c + t * ldc + i0, ldc);
    }
}

// Legacy tiles: 4 rows × T tokens.
template <class L>
struct Legacy {
    static constexpr RowsFn rows[5] = {
        nullptr,
        &tile_rows<&legacy_tile<L, 4, 1>, 4, &legacy_tile<L, 1, 1>>,
        &tile_rows<&legacy_tile<L, 4, 2>, 4, &legacy_tile<L, 1, 2>>,
        &tile_rows<&legacy_tile<L, 4, 3>, 4, &legacy_tile<L, 1, 3>>,
        &tile_rows<&legacy_tile<L, 4, 4>, 4, &legacy_tile<L, 1, 4>>,
    };
};

// K-quant tiles: 2 rows × T tokens.
template <class K>
struct KQuant {
    static constexpr RowsFn rows[5] = {
        nullptr,
        &tile_rows<&k_tile<K, 2, 1>, 2, &k_tile<K, 1, 1>>,
        &tile_rows<&k_tile<K, 2, 2>, 2, &k_tile<K, 1, 2>>,
        &tile_rows<&k_tile<K, 2, 3>, 2, &k_tile<K, 1, 3>>,
        &tile_rows<&k_tile<K, 2, 4>, 2, &k_tile<K, 1, 4>>,
    };
};

}  // namespace

#define CQ_GEMM_QUANT_VNNI(wt, at, Policy, block)                                                              \
    void gemm_##wt##_##at##__avx512vnni(int64_t m, int64_t n, int64_t k, const void* act,                      \
                                        size_t act_row_bytes, const void* w, size_t w_row_bytes, float* c,    \
                                        int64_t ldc) {                                                         \
        gemm_tiled(Policy::rows, block, m, n, k, act, act_row_bytes, w, w_row_bytes, c, ldc);                  \
    }

CQ_GEMM_QUANT_VNNI(q8_0, q8_0, Legacy<VQ8_0>, kQK)
CQ_GEMM_QUANT_VNNI(q4_0, q8_0, Legacy<VQ4_0>, kQK)
CQ_GEMM_QUANT_VNNI(q4_K, q8_K, KQuant<KQ4_K>, kQK_K)
CQ_GEMM_QUANT_VNNI(q6_K, q8_K, KQuant<KQ6_K>, kQK_K)
#undef CQ_GEMM_QUANT_VNNI

}  // namespace cq::kernels
