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

inline float h2f(uint16_t h) { return _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(h))); }
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
        const __m256i x = _mm256_broadcastsi128_si256(load16(b.qs));  // the high half then shifts down by 4
        return _mm256_and_si256(_mm256_srlv_epi64(x, _mm256_setr_epi64x(0, 0, 4, 4)), _mm256_set1_epi8(0x0F));
    }
};

// The activation side of one token tile over a segment of at most kSeg blocks, decoded once for every row
// tile that passes: scales as floats and the accumulator start −offset·Σa.
constexpr int64_t kSeg = 128;

template <class L, int T>
struct ActSeg {
    alignas(32) float d[T][kSeg];
    __m256i start[T][kSeg];
    void fill(const BlockQ8_0* const* at, int64_t ns) {
        const __m256i zero = _mm256_setzero_si256(), offset = _mm256_set1_epi8(char(L::kOffset));
        for (int t = 0; t < T; ++t)
            for (int64_t b = 0; b < ns; ++b) {
                d[t][b] = h2f(at[t][b].d);
                start[t][b] = _mm256_sub_epi32(zero, _mm256_dpbusd_epi32(zero, offset, load32(at[t][b].qs)));
            }
    }
};

// at: T token rows and w: R weight rows (stride wrb), both from the segment's first block; ns blocks.
// c[t*ldc + r] = (accumulate ? c : 0) + Σ over the segment.
template <class L, int R, int T>
void legacy_tile(int64_t ns, const BlockQ8_0* const* at, const ActSeg<L, T>& seg, const uint8_t* w, size_t wrb,
                 float* c, int64_t ldc, bool accumulate) {
    using W = typename L::W;
    const W* wr[R];
    for (int r = 0; r < R; ++r) wr[r] = reinterpret_cast<const W*>(w + size_t(r) * wrb);
    __m256 acc[R][T];
    for (int r = 0; r < R; ++r)
        for (int t = 0; t < T; ++t) acc[r][t] = _mm256_setzero_ps();
    for (int64_t b = 0; b < ns; ++b) {
        __m256i u[R];
        __m256 dw[R];
        for (int r = 0; r < R; ++r) {
            _mm_prefetch(reinterpret_cast<const char*>(wr[r] + b) + R * wrb, _MM_HINT_T0);  // next row tile
            u[r] = L::u(wr[r][b]);
            dw[r] = _mm256_cvtph_ps(_mm_set1_epi16(int16_t(wr[r][b].d)));
        }
        for (int t = 0; t < T; ++t) {
            const __m256i a = load32(at[t][b].qs);
            const __m256 da = _mm256_broadcast_ss(&seg.d[t][b]);
            for (int r = 0; r < R; ++r) {
                const __m256i p = _mm256_dpbusd_epi32(seg.start[t][b], u[r], a);
                acc[r][t] = _mm256_fmadd_ps(_mm256_mul_ps(dw[r], da), _mm256_cvtepi32_ps(p), acc[r][t]);
            }
        }
    }
    for (int r = 0; r < R; ++r)
        for (int t = 0; t < T; ++t) {
            const float v = hsum(acc[r][t]);
            c[t * ldc + r] = accumulate ? c[t * ldc + r] + v : v;
        }
}

// rows [0, n) of one token tile, segment by segment: tiles of 4 rows, then single rows.
template <class L, int T>
void legacy_rows(int64_t n, int64_t nb, const uint8_t* act, size_t arb, const uint8_t* w, size_t wrb, float* c,
                 int64_t ldc) {
    constexpr int R = 4;
    ActSeg<L, T> seg;
    for (int64_t b0 = 0; b0 < nb; b0 += kSeg) {
        const int64_t ns = std::min(kSeg, nb - b0);
        const BlockQ8_0* at[T];
        for (int t = 0; t < T; ++t) at[t] = reinterpret_cast<const BlockQ8_0*>(act + size_t(t) * arb) + b0;
        seg.fill(at, ns);
        const uint8_t* wb = w + size_t(b0) * sizeof(typename L::W);
        int64_t i = 0;
        for (; i + R <= n; i += R) legacy_tile<L, R, T>(ns, at, seg, wb + size_t(i) * wrb, wrb, c + i, ldc, b0 > 0);
        for (; i < n; ++i) legacy_tile<L, 1, T>(ns, at, seg, wb + size_t(i) * wrb, wrb, c + i, ldc, b0 > 0);
    }
}

// ---- k-quants (see quant_gemm_avx2.cpp for the decoder contract) ----

// Q4_K / Q5_K: the 12 bytes of 6-bit scales and mins → sv (the chunk-scale vector chunk_scales reads: the
// 8 scales as i16 in both halves) and m16 (the min of each 16-element group). Bytes 12..15 of the load
// belong to the block's quants and are masked off.
inline void k4_scales(const uint8_t* scales, __m256i& sv, __m256i& m16) {
    const __m128i v = load16(scales);
    const __m128i a = _mm_shuffle_epi8(v, _mm_setr_epi8(0, 1, 2, 3, 8, 9, 10, 11, 4, 5, 6, 7, 8, 9, 10, 11));
    const __m128i b = _mm_shuffle_epi8(v, _mm_setr_epi8(-1, -1, -1, -1, 0, 1, 2, 3, -1, -1, -1, -1, 4, 5, 6, 7));
    const __m128i lo = _mm_and_si128(a, _mm_setr_epi8(63, 63, 63, 63, 15, 15, 15, 15, 63, 63, 63, 63, 0, 0, 0, 0));
    const __m128i mid = _mm_and_si128(_mm_srli_epi16(a, 4), _mm_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 15, 15, 15, 15));
    const __m128i hi = _mm_and_si128(_mm_srli_epi16(b, 2), _mm_setr_epi8(0, 0, 0, 0, 48, 48, 48, 48, 0, 0, 0, 0, 48, 48, 48, 48));
    const __m128i sm = _mm_or_si128(_mm_or_si128(lo, mid), hi);  // scales 0..7, mins 0..7
    sv = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(sm));
    m16 = _mm256_cvtepu8_epi16(_mm_unpackhi_epi8(sm, sm));
}

struct KQ4_K {
    using W = BlockQ4_K;
    static constexpr bool kMin = true, kCorr = false, kOwnSv = true;
    const uint8_t* qs;
    __m256i s16, m16, corr16, sv;
    float d, dmin;
    void init(const W& b) {
        k4_scales(b.scales, sv, m16);
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
    static constexpr bool kMin = false, kCorr = true, kOwnSv = false;
    const uint8_t* ql;
    const uint8_t* qhp;
    __m256i s16, m16, corr16, sv;
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

// The 16 group scales (i16, in order) rearranged so one in-lane shuffle gives a chunk's scales: the low
// 128 bits hold groups 0, 2, …, 14 and the high 128 bits groups 1, 3, …, 15.
inline __m256i scale_lanes(__m256i s16) {
    const __m256i split = _mm256_setr_epi8(0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15,  //
                                           0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15);
    return _mm256_permute4x64_epi64(_mm256_shuffle_epi8(s16, split), 0xD8);
}

// i16 scales of chunk c (elements 32c..32c+31): group 2c in the low 128 bits, 2c+1 in the high ones.
inline __m256i chunk_scales(__m256i sv, int c) {
    return _mm256_shuffle_epi8(sv, _mm256_set1_epi16(int16_t((2 * c + 1) << 8 | 2 * c)));
}

template <class K, int R, int T, int c>
inline void k_chunk(const K* dec, const BlockQ8_K* const* at, int64_t b, __m256i (&sumi)[R][T]) {
    __m256i q[R], sc[R];
    for (int r = 0; r < R; ++r) {
        q[r] = dec[r].template q<c>();
        sc[r] = chunk_scales(dec[r].sv, c);
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
        for (int r = 0; r < R; ++r) {
            const char* next = reinterpret_cast<const char*>(wr[r] + b) + R * wrb;  // this block, next row tile
            for (size_t off = 0; off < sizeof(W); off += 64) _mm_prefetch(next + off, _MM_HINT_T0);
            dec[r].init(wr[r][b]);
            if constexpr (!K::kOwnSv) dec[r].sv = scale_lanes(dec[r].s16);
        }
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
    if (nb == 0) {  // empty sums
        for (int64_t t = 0; t < m; ++t) std::fill(c + t * ldc, c + t * ldc + n, 0.0f);
        return;
    }
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
    static constexpr RowsFn rows[5] = {nullptr, &legacy_rows<L, 1>, &legacy_rows<L, 2>, &legacy_rows<L, 3>,
                                       &legacy_rows<L, 4>};
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
