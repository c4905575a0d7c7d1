// The x86 quantized-GEMM tiles written once, for every 256-bit rung: included by quant_gemm_avx2.cpp and
// quant_gemm_avx512vnni.cpp (each compiled with its own flags) and parameterised by a Dot policy, the step
// that meets u8 weights with s8 activations:
//   Dot::first(u, s) / Dot::next(sum, u, s)  a running sum over 4-byte pieces (AVX2: vpmaddubsw into i16,
//                                            the caller keeps |Σ| < 2^15; VNNI: vpdpbusd into i32);
//   Dot::to_i32(sum)                         that sum as one i32 per dword lane;
//   Dot::madd_acc(acc, a16, b16)             acc + vpmaddwd(a16, b16) (VNNI: vpdpwssd);
//   Dot::pin(v)                              keeps a running sum in one register (an empty asm);
//   Dot::kOffsetQ8                           Q8_0 weights as w + 128 against a 128·Σa correction (VNNI),
//                                            else the vpsignb trick (AVX2);
//   Dot::kKRows                              weight rows per k-quant prompt tile (the register file).
//   Dot::kKDecodeRows                        weight rows per k-quant decode tile (1 token).
// Everything here has internal linkage: each ISA's copy stays in its own object, never merged across flags.
// Integer sums are exact, so every rung gives the same integers; float steps follow the reference twins.
#pragma once

#include <immintrin.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>
#include <utility>

#include "formats/blocks.h"
#include "kernels/x86/simd_x86.h"

namespace cq::kernels {
namespace {

using namespace cq::formats;

inline float h2f(uint16_t h) { return _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(h))); }
inline __m256i load32(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }
inline __m128i load16(const void* p) { return _mm_loadu_si128(static_cast<const __m128i*>(p)); }

// The 4 bytes at p in every dword lane (one vpbroadcastd from memory, no copy through the stack).
inline __m256i bcast4(const void* p) {
    int32_t v;
    std::memcpy(&v, p, sizeof(v));
    return _mm256_set1_epi32(v);
}

// 16 bytes of nibbles → 32 bytes: the low nibbles (elements 0..15), then the high ones (16..31).
inline __m256i nibbles32(const uint8_t* qs) {
    const __m256i x = _mm256_broadcastsi128_si256(load16(qs));  // the high half then shifts down by 4
    return _mm256_and_si256(_mm256_srlv_epi64(x, _mm256_setr_epi64x(0, 0, 4, 4)), _mm256_set1_epi8(0x0F));
}

// Σ of the 32 signed bytes at p, times `mult`, in every dword lane.
inline __m256i sum_bytes_times(const int8_t* p, int32_t mult) {
    __m256i s = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_set1_epi8(1), load32(p)), _mm256_set1_epi16(1));
    s = _mm256_hadd_epi32(s, s);
    s = _mm256_hadd_epi32(s, s);
    s = _mm256_add_epi32(s, _mm256_permute2x128_si256(s, s, 1));
    return _mm256_mullo_epi32(s, _mm256_set1_epi32(mult));
}

// Rows per chunk: a chunk of weights (~1 MiB) stays in the last-level cache while every token tile
// passes. Each tile decodes its activations once per chunk (the segments' fill), so chunks sized for L2
// (64 KiB) made that a tenth of a k = 3072 product; weights read from L3 cost less (a group's block
// serves 4 tokens). Measured on a 512-token prompt, 2 threads: +4..8 % for Q4_0, Q8_0 and Q4_K_M.
// A policy may set its own kChunkBytes (VNNI's k-quant tiles: 64 KiB measured 2 % faster for Q6_K).
inline int64_t row_chunk(int64_t m, int64_t n, size_t w_row_bytes, size_t chunk_bytes) {
    if (m <= 4) return n;
    const int64_t rows = std::max<int64_t>(8, int64_t(chunk_bytes / std::max<size_t>(w_row_bytes, 1)) & ~int64_t{7});
    return std::min(rows, n);
}
template <class Policy>
constexpr size_t chunk_bytes() {
    if constexpr (requires { Policy::kChunkBytes; }) return Policy::kChunkBytes;
    else return size_t{1} << 20;
}

// ---- drivers ----

using TileFn = void (*)(int64_t nb, const uint8_t* act, size_t arb, const uint8_t* w, size_t wrb, float* c,
                        int64_t ldc);

// rows [0, n) of one token tile: full tiles of R rows, then single rows.
template <TileFn Full, int R, TileFn One>
void tile_rows(int64_t n, int64_t nb, const uint8_t* act, size_t arb, const uint8_t* w, size_t wrb, float* c,
               int64_t ldc) {
    int64_t i = 0;
    for (; i + R <= n; i += R) Full(nb, act, arb, w + size_t(i) * wrb, wrb, c + i, ldc);
    for (; i < n; ++i) One(nb, act, arb, w + size_t(i) * wrb, wrb, c + i, ldc);
}

// rows [0, n) of a tile of T = 1..4 tokens (index T): w and c start at row 0, act at the tile's first token.
using RowsFn = void (*)(int64_t n, int64_t nb, const uint8_t* act, size_t arb, const uint8_t* w, size_t wrb,
                        float* c, int64_t ldc);

// The shared loop: row chunks outside, token tiles of 4 (then the rest) inside.
inline void gemm_tiled(const RowsFn (&rows)[5], size_t chunk_bytes, int64_t block, int64_t m, int64_t n, int64_t k,
                       const void* act, size_t arb, const void* w, size_t wrb, float* c, int64_t ldc) {
    const int64_t nb = k / block;
    const auto* a8 = static_cast<const uint8_t*>(act);
    const auto* w8 = static_cast<const uint8_t*>(w);
    if (nb == 0) {  // empty sums
        for (int64_t t = 0; t < m; ++t) std::fill(c + t * ldc, c + t * ldc + n, 0.0f);
        return;
    }
    const int64_t nc = row_chunk(m, n, wrb, chunk_bytes);
    for (int64_t i0 = 0; i0 < n; i0 += nc) {
        const int64_t ni = std::min(nc, n - i0);
        int64_t t = 0;
        for (; t + 4 <= m; t += 4) rows[4](ni, nb, a8 + size_t(t) * arb, arb, w8 + size_t(i0) * wrb, wrb, c + t * ldc + i0, ldc);
        if (m - t > 0)
            rows[m - t](ni, nb, a8 + size_t(t) * arb, arb, w8 + size_t(i0) * wrb, wrb, c + t * ldc + i0, ldc);
    }
}

// The RowsFn table of a rows function template F<P, T> over a policy P, for T = 1..4 tokens.
#define CQ_ROWS_TABLE(F, P) {nullptr, &F<P, 1>, &F<P, 2>, &F<P, 3>, &F<P, 4>}

// The RowsFn of each token count for a template over T.
template <template <int> class Rows>
struct ByTokens {
    static constexpr RowsFn rows[5] = {nullptr, &Rows<1>::run, &Rows<2>::run, &Rows<3>::run, &Rows<4>::run};
};

// ---- k-quants on the file layout (256-element super-blocks against Q8_K) ----
// A decoder holds one weight super-block: q<c>() gives chunk c (elements 32c..32c+31) as unsigned bytes,
// s16 the scale of each 16-element group as i16. The integer sum Σ_g s16[g]·Σ q·a then gets, per group,
// − corr16[g]·bsum[g] (kCorr: the offset of signed quants) and the float term − dmin·Σ m16[g]·bsum[g] (kMin).

// Shift the single set bit `from` of each byte to bit `to` (16-bit shifts; the bit never leaves its byte).
template <int from, int to>
inline __m256i move_bit(__m256i x) {
    if constexpr (from < to) return _mm256_slli_epi16(x, to - from);
    else if constexpr (from > to) return _mm256_srli_epi16(x, from - to);
    else return x;
}

// What every decoder fills per super-block (corr16 only for kCorr, m16 and dmin only for kMin).
struct KState {
    __m256i s16, m16, corr16, sv;
    float d, dmin;
};

struct KQ2_K : KState {
    using W = BlockQ2_K;
    static constexpr bool kMin = true, kCorr = false, kOwnSv = false;
    const uint8_t* qs;
    void init(const W& b) {
        const __m128i raw = load16(b.scales);
        const __m128i lo = _mm_set1_epi8(0x0F);
        s16 = _mm256_cvtepu8_epi16(_mm_and_si128(raw, lo));
        m16 = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(raw, 4), lo));
        qs = b.qs;
        d = h2f(b.d);
        dmin = h2f(b.dmin);
    }
    template <int c>
    __m256i q() const {
        return _mm256_and_si256(_mm256_srli_epi16(load32(qs + 32 * (c / 4)), 2 * (c % 4)), _mm256_set1_epi8(3));
    }
};

struct KQ3_K : KState {
    using W = BlockQ3_K;
    static constexpr bool kMin = false, kCorr = true, kOwnSv = false;
    const uint8_t* qs;
    __m256i hm;
    void init(const W& b) {
        uint32_t a[4];
        std::memcpy(a, b.scales, 12);
        const uint32_t tmp = a[2];
        a[2] = ((a[0] >> 4) & 0x0f0f0f0fu) | (((tmp >> 4) & 0x03030303u) << 4);
        a[3] = ((a[1] >> 4) & 0x0f0f0f0fu) | (((tmp >> 6) & 0x03030303u) << 4);
        a[0] = (a[0] & 0x0f0f0f0fu) | (((tmp >> 0) & 0x03030303u) << 4);
        a[1] = (a[1] & 0x0f0f0f0fu) | (((tmp >> 2) & 0x03030303u) << 4);
        const __m128i sc = _mm_sub_epi8(_mm_set_epi32(int(a[3]), int(a[2]), int(a[1]), int(a[0])), _mm_set1_epi8(32));
        s16 = _mm256_cvtepi8_epi16(sc);
        corr16 = _mm256_slli_epi16(s16, 2);  // value = u − 4
        hm = load32(b.hmask);
        qs = b.qs;
        d = h2f(b.d);
    }
    template <int c>
    __m256i q() const {  // u = low 2 bits | hmask bit c << 2, in [0, 7]
        const __m256i lo = _mm256_and_si256(_mm256_srli_epi16(load32(qs + 32 * (c / 4)), 2 * (c % 4)), _mm256_set1_epi8(3));
        const __m256i hb = move_bit<c, 2>(_mm256_and_si256(hm, _mm256_set1_epi8(char(1 << c))));
        return _mm256_or_si256(lo, hb);
    }
};

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

// Q4_K (kHigh false) and Q5_K (true): nibbles, plus Q5_K's fifth bit from qh.
template <class Block, bool kHigh>
struct KQ45_K : KState {
    using W = Block;
    static constexpr bool kMin = true, kCorr = false, kOwnSv = true;
    const uint8_t* qs;
    __m256i qh;
    void init(const W& b) {
        k4_scales(b.scales, sv, m16);
        if constexpr (kHigh) qh = load32(b.qh);
        qs = b.qs;
        d = h2f(b.d);
        dmin = h2f(b.dmin);
    }
    template <int c>
    __m256i q() const {
        const __m256i v = load32(qs + 32 * (c / 2));
        const __m256i lo = _mm256_and_si256(c % 2 ? _mm256_srli_epi16(v, 4) : v, _mm256_set1_epi8(0x0F));
        if constexpr (!kHigh) {
            return lo;
        } else {
            const __m256i hb = move_bit<c, 4>(_mm256_and_si256(qh, _mm256_set1_epi8(char(1 << c))));
            return _mm256_or_si256(lo, hb);
        }
    }
};
using KQ4_K = KQ45_K<BlockQ4_K, false>;
using KQ5_K = KQ45_K<BlockQ5_K, true>;

struct KQ6_K : KState {
    using W = BlockQ6_K;
    static constexpr bool kMin = false, kCorr = true, kOwnSv = false;
    const uint8_t* ql;
    const uint8_t* qhp;
    void init(const W& b) {
        s16 = _mm256_cvtepi8_epi16(load16(b.scales));
        corr16 = _mm256_slli_epi16(s16, 5);  // value = q − 32
        ql = b.ql;
        qhp = b.qh;
        d = h2f(b.d);
    }
    template <int c>
    __m256i q() const {  // chunk c = 4h + j: low nibble of ql[64h + 32(j&1) + l] (j < 2) or high; qh bits 2j, 2j+1
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

// The decoders of this super-block of R rows (and, for the next tile of rows, a prefetch of the same block).
template <class K, int R>
inline void k_decode(K (&dec)[R], const typename K::W* const* wr, int64_t b, size_t wrb) {
    for (int r = 0; r < R; ++r) {
        const char* next = reinterpret_cast<const char*>(wr[r] + b) + R * wrb;  // this block, next row tile
        for (size_t off = 0; off < sizeof(typename K::W); off += 64) _mm_prefetch(next + off, _MM_HINT_T0);
        dec[r].init(wr[r][b]);
        if constexpr (!K::kOwnSv) dec[r].sv = scale_lanes(dec[r].s16);
    }
}

template <class Dot, class K, int R, int T, int c>
inline void k_chunk(const K* dec, const BlockQ8_K* const* at, int64_t b, __m256i (&sumi)[R][T]) {
    __m256i q[R], sc[R];
    for (int r = 0; r < R; ++r) {
        q[r] = dec[r].template q<c>();
        sc[r] = chunk_scales(dec[r].sv, c);
    }
    for (int t = 0; t < T; ++t) {
        const __m256i a = load32(at[t][b].qs + 32 * c);
        for (int r = 0; r < R; ++r) sumi[r][t] = Dot::madd_acc(sumi[r][t], sc[r], _mm256_maddubs_epi16(q[r], a));
    }
}

// R rows × T tokens of one k-quant, integer sums per (row, token) over each super-block.
template <class Dot, class K, int R, int T>
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
        k_decode<K, R>(dec, wr, b, wrb);
        __m256i sumi[R][T];
        for (int r = 0; r < R; ++r)
            for (int t = 0; t < T; ++t) sumi[r][t] = _mm256_setzero_si256();
        [&]<int... C>(std::integer_sequence<int, C...>) {
            (k_chunk<Dot, K, R, T, C>(dec, at, b, sumi), ...);
        }(std::make_integer_sequence<int, 8>{});
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

// K-quants per (row, token): Dot::kKDecodeRows rows × 1 token for decode, Dot::kKRows rows × T tokens for prompts.
template <class Dot, class K>
struct KQuant {
    static constexpr int R = Dot::kKRows;
    static constexpr size_t kChunkBytes = Dot::kKChunkBytes;
    static constexpr RowsFn rows[5] = {
        nullptr,
        &tile_rows<&k_tile<Dot, K, Dot::kKDecodeRows, 1>, Dot::kKDecodeRows, &k_tile<Dot, K, 1, 1>>,
        &tile_rows<&k_tile<Dot, K, R, 2>, R, &k_tile<Dot, K, 1, 2>>,
        &tile_rows<&k_tile<Dot, K, R, 3>, R, &k_tile<Dot, K, 1, 3>>,
        &tile_rows<&k_tile<Dot, K, R, 4>, R, &k_tile<Dot, K, 1, 4>>,
    };
};

// ---- 8-row interleaved layouts (formats::BlockQ4_0x8 / BlockQ8_0x8 / BlockQ4_Kx8) ----

// The 8-row kernels prefetch the same block of the next group of rows (nb blocks on, past the hardware
// prefetcher's stream): measured 2× on Q8_0 decode from DRAM. Beyond the last group it is a harmless hint.
template <class Block>
inline void prefetch_block(const Block* p) {
#pragma GCC unroll 32
    for (size_t off = 0; off < sizeof(Block); off += 64) _mm_prefetch(reinterpret_cast<const char*>(p) + off, _MM_HINT_T0);
}

// The activation side of one token tile for the 8-row kernels, over a segment of blocks. Both kinds give
// piece j (bytes 4j..4j+3) of a block in all 8 dword lanes, the scale in all lanes and the weight offset's
// correction bias·Σa (Q4_0: 8, VNNI's Q8_0: 128). ActSegExpanded stores them so: the prompt tiles (T ≥ 3)
// read them as plain loads. A broadcast from memory also takes a shuffle-pipe op on Zen, and those ops,
// 10 per block and token, bounded the loop (+24 % Q4_0, +42 % Q8_0 on a 512-token prompt, AVX2); here they
// are paid once per segment and row chunk. Its 16-block segments keep 4 tokens at 20 KiB, inside L1 beside
// the weight blocks streaming through. ActSegBroadcast broadcasts from the Q8_0 blocks in the loop: decode
// (T ≤ 2) streams the weights once, and long segments keep that stream sequential (16-block segments cost
// a third of its speed).
template <int T>
struct ActSegExpanded {
    static constexpr int64_t kLen = 16;
    __m256i a[T][kLen][8];
    __m256i bv[T][kLen];  // bias·Σa
    __m256 dv[T][kLen];
    void fill(const BlockQ8_0* const* at, int64_t ns, int32_t bias) {
        for (int t = 0; t < T; ++t)
            for (int64_t b = 0; b < ns; ++b) {
                const BlockQ8_0& blk = at[t][b];
#pragma GCC unroll 8
                for (int j = 0; j < 8; ++j) a[t][b][j] = bcast4(blk.qs + 4 * j);
                dv[t][b] = _mm256_set1_ps(h2f(blk.d));
                if (bias) bv[t][b] = sum_bytes_times(blk.qs, bias);
            }
    }
    __m256i piece(int t, int64_t b, int j) const { return a[t][b][j]; }
    __m256i bias(int t, int64_t b) const { return bv[t][b]; }
    __m256 d(int t, int64_t b) const { return dv[t][b]; }
};

template <int T>
struct ActSegBroadcast {
    static constexpr int64_t kLen = 128;
    const BlockQ8_0* at[T];
    alignas(32) float dv[T][kLen];
    alignas(32) int32_t bv[T][kLen];
    void fill(const BlockQ8_0* const* a, int64_t ns, int32_t bias) {
        for (int t = 0; t < T; ++t) {
            at[t] = a[t];
            for (int64_t b = 0; b < ns; ++b) {
                dv[t][b] = h2f(a[t][b].d);
                if (bias) bv[t][b] = _mm256_cvtsi256_si32(sum_bytes_times(a[t][b].qs, bias));
            }
        }
    }
    __m256i piece(int t, int64_t b, int j) const { return bcast4(at[t][b].qs + 4 * j); }
    __m256i bias(int t, int64_t b) const { return _mm256_set1_epi32(bv[t][b]); }
    __m256 d(int t, int64_t b) const { return _mm256_broadcast_ss(&dv[t][b]); }
};

// One block of 8 rows of unsigned quants against T tokens: q[j] holds piece j of the 8 rows (the same
// 4 bytes of each, rows in dword lanes), dw their 8 scales, seg the activations; acc[t] lanes are rows
// 0..7 and gain dw·da·(Σ q·a − bias·Σa). AVX2 needs |Σ of a lane's 8 pieces| < 2^15 (nibbles: 16·15·127).
template <class Dot, int T, class Seg>
__attribute__((always_inline)) inline void rows8_block(const __m256i (&q)[8], __m256 dw, const Seg& seg, int64_t b,
                                                       __m256 (&acc)[T]) {
    // the scales are read from memory in the token loop, so that q[8] and the T accumulators keep the 16
    // registers of AVX2 (otherwise GCC spills an accumulator, a store-load chain per FMA)
    alignas(32) float dw_mem[8];
    _mm256_store_ps(dw_mem, dw);
    asm volatile("" ::"m"(dw_mem));
#pragma GCC unroll 4
    for (int t = 0; t < T; ++t) {
        auto s = Dot::first(q[0], seg.piece(t, b, 0));
#pragma GCC unroll 8
        for (int j = 1; j < 8; ++j) s = Dot::pin(Dot::next(s, q[j], seg.piece(t, b, j)));
        const __m256i p = _mm256_sub_epi32(Dot::to_i32(s), seg.bias(t, b));
        acc[t] = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_load_ps(dw_mem), seg.d(t, b)), _mm256_cvtepi32_ps(p), acc[t]);
    }
}

// c[t·ldc + r] (+)= acc[t] lane r for the first `valid` of 8 rows.
template <int T>
inline void store_rows8(const __m256 (&acc)[T], float* c, int64_t ldc, int valid, bool accumulate) {
#pragma GCC unroll 4
    for (int t = 0; t < T; ++t) {
        float* ct = c + t * ldc;
        if (valid == 8) {
            _mm256_storeu_ps(ct, accumulate ? _mm256_add_ps(_mm256_loadu_ps(ct), acc[t]) : acc[t]);
        } else {
            alignas(32) float v[8];
            _mm256_store_ps(v, acc[t]);
            for (int r = 0; r < valid; ++r) ct[r] = accumulate ? ct[r] + v[r] : v[r];
        }
    }
}

// acc[t] = c[t·ldc + r] for the first `valid` of 8 rows (0 past them), or 0 when not accumulating.
template <int T>
inline void load_rows8(__m256 (&acc)[T], const float* c, int64_t ldc, int valid, bool accumulate) {
#pragma GCC unroll 4
    for (int t = 0; t < T; ++t) {
        if (!accumulate) acc[t] = _mm256_setzero_ps();
        else if (valid == 8) acc[t] = _mm256_loadu_ps(c + t * ldc);
        else {
            alignas(32) float v[8] = {};
            for (int r = 0; r < valid; ++r) v[r] = c[t * ldc + r];
            acc[t] = _mm256_load_ps(v);
        }
    }
}

// One group of 8 packed rows × T tokens over a segment's ns blocks. g: the group's first block of the
// segment (its next group starts nb blocks on); rows past `valid` are computed (padding rows are zeros)
// but not stored. acc starts from c when accumulating, so the blocks are summed in the reference's order
// across segments too. Q4_0 (BlockQ4_0x8): vector j holds the same 4 bytes of the 8 rows (j < 4 the low
// nibbles, j ≥ 4 the high ones), no transposes and no horizontal sums. Q8_0 (BlockQ8_0x8): piece j
// (elements 4j..4j+3) of the 8 rows is one vector; with kOffsetQ8 as w + 128 against 128·Σa, else signed
// × signed through the sign trick (|w| · sign(a, w); |w| of −128 reads as the unsigned 128, and
// 2·128·127 < 2^15, so vpmaddubsw never saturates), |w| taken once per block for all T tokens.
template <class Dot, class B8, int T, class Seg>
void x8_tile(int64_t ns, int64_t nb, const Seg& seg, const B8* g, float* c, int64_t ldc, int valid, bool accumulate) {
    __m256 acc[T];
    load_rows8<T>(acc, c, ldc, valid, accumulate);
    for (int64_t b = 0; b < ns; ++b) {
        const B8& blk = g[b];
        prefetch_block(&g[b + nb]);
        const __m256 dw = _mm256_cvtph_ps(load16(blk.d));
        if constexpr (std::is_same_v<B8, BlockQ4_0x8>) {
            const __m256i m4 = _mm256_set1_epi8(0x0F);
            __m256i q[8];
#pragma GCC unroll 4
            for (int j = 0; j < 4; ++j) {
                const __m256i x = load32(blk.qs + 32 * j);
                q[j] = _mm256_and_si256(x, m4);
                q[j + 4] = _mm256_and_si256(_mm256_srli_epi16(x, 4), m4);
            }
            rows8_block<Dot, T>(q, dw, seg, b, acc);
        } else if constexpr (Dot::kOffsetQ8) {
            __m256i q[8];
#pragma GCC unroll 8
            for (int j = 0; j < 8; ++j) q[j] = _mm256_xor_si256(load32(blk.qs + 32 * j), _mm256_set1_epi8(char(0x80)));
            rows8_block<Dot, T>(q, dw, seg, b, acc);
        } else {
            const __m256i ones = _mm256_set1_epi16(1);
            alignas(32) float dw_mem[8];
            _mm256_store_ps(dw_mem, dw);
            asm volatile("" ::"m"(dw_mem));
            __m256i isum[T];
#pragma GCC unroll 4
            for (int t = 0; t < T; ++t) isum[t] = _mm256_setzero_si256();
#pragma GCC unroll 8
            for (int j = 0; j < 8; ++j) {
                const __m256i w = load32(blk.qs + 32 * j);
                const __m256i aw = _mm256_sign_epi8(w, w);
#pragma GCC unroll 4
                for (int t = 0; t < T; ++t)
                    isum[t] = Dot::pin(_mm256_add_epi32(isum[t], _mm256_madd_epi16(_mm256_maddubs_epi16(aw, _mm256_sign_epi8(seg.piece(t, b, j), w)), ones)));
            }
#pragma GCC unroll 4
            for (int t = 0; t < T; ++t)
                acc[t] = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_load_ps(dw_mem), seg.d(t, b)), _mm256_cvtepi32_ps(isum[t]), acc[t]);
        }
    }
    store_rows8<T>(acc, c, ldc, valid, false);
}

// rows [0, n) of one token tile from their packed groups (w: group of row 0; a group of 8 rows is 8·wrb
// bytes, wrb one unpacked row's), segment by segment.
template <class Dot, class B8>
struct X8Rows {
    template <int T>
    struct Tokens {
        static void run(int64_t n, int64_t nb, const uint8_t* act, size_t arb, const uint8_t* w, size_t, float* c, int64_t ldc) {
            constexpr bool kQ4 = std::is_same_v<B8, BlockQ4_0x8>;
            constexpr int32_t kBias = kQ4 ? 8 : (Dot::kOffsetQ8 ? 128 : 0);
            using Seg = std::conditional_t<(T >= 3), ActSegExpanded<T>, ActSegBroadcast<T>>;
            alignas(32) Seg seg;
            const auto* groups = reinterpret_cast<const B8*>(w);
            for (int64_t b0 = 0; b0 < nb; b0 += Seg::kLen) {
                const int64_t ns = std::min(Seg::kLen, nb - b0);
                const BlockQ8_0* at[T];
                for (int t = 0; t < T; ++t) at[t] = reinterpret_cast<const BlockQ8_0*>(act + size_t(t) * arb) + b0;
                seg.fill(at, ns, kBias);
                for (int64_t i = 0; i < n; i += 8)
                    x8_tile<Dot, B8, T>(ns, nb, seg, groups + (i / 8) * nb + b0, c + i, ldc, int(std::min<int64_t>(8, n - i)), b0 > 0);
            }
        }
    };
};

// The Q8_K side of a Q4_Kx8 token tile, as ActSegExpanded / ActSegBroadcast are for Q8_0: piece(t, b, x)
// is bytes 4x..4x+3 of super-block b in all lanes, pair(t, b, p) the 16-element sums of sub-blocks 2p and
// 2p+1 as one i16 pair per lane, da the scale. Prompt tiles store them for 2 super-blocks (4 tokens:
// 17 KiB); decode tiles broadcast in the loop over the whole row.
template <int T>
struct KSegExpanded {
    static constexpr int64_t kLen = 2;
    __m256i a[T][kLen][64];
    __m256i pairs[T][kLen][4];
    __m256 dv[T][kLen];
    void fill(const BlockQ8_K* const* at, int64_t ns) {
        for (int t = 0; t < T; ++t)
            for (int64_t b = 0; b < ns; ++b) {
                const BlockQ8_K& blk = at[t][b];
#pragma GCC unroll 8
                for (int x = 0; x < 64; ++x) a[t][b][x] = bcast4(blk.qs + 4 * x);
#pragma GCC unroll 4
                for (int p = 0; p < 4; ++p) pairs[t][b][p] = bsum_pair(blk, p);
                dv[t][b] = _mm256_set1_ps(blk.d);
            }
    }
    static __m256i bsum_pair(const BlockQ8_K& a, int p) {
        const int32_t lo = a.bsums[4 * p] + a.bsums[4 * p + 1], hi = a.bsums[4 * p + 2] + a.bsums[4 * p + 3];
        return _mm256_set1_epi32(int32_t(uint32_t(uint16_t(lo)) | uint32_t(hi) << 16));
    }
    __m256i piece(int t, int64_t b, int x) const { return a[t][b][x]; }
    __m256i pair(int t, int64_t b, int p) const { return pairs[t][b][p]; }
    __m256 da(int t, int64_t b) const { return dv[t][b]; }
};

template <int T>
struct KSegBroadcast {
    static constexpr int64_t kLen = std::numeric_limits<int64_t>::max();
    const BlockQ8_K* at[T];
    void fill(const BlockQ8_K* const* a, int64_t) {
        for (int t = 0; t < T; ++t) at[t] = a[t];
    }
    __m256i piece(int t, int64_t b, int x) const { return bcast4(at[t][b].qs + 4 * x); }
    __m256i pair(int t, int64_t b, int p) const { return KSegExpanded<T>::bsum_pair(at[t][b], p); }
    __m256 da(int t, int64_t b) const { return _mm256_set1_ps(at[t][b].d); }
};

// Q4_K packed in groups of 8 rows (BlockQ4_Kx8) × T tokens. Per sub-block, the 8 vectors of the 8 rows'
// nibbles against T tokens as Q4_0's blocks (i16 sums: 8·2·15·127 < 2^15), then one vpmaddwd with the 8
// rows' scales (i16 pairs [sc, sc]) adds sc·Σ to each row's i32 total; the mins meet the activations'
// 16-element sums (bsums, paired per sub-block) through 4 vpmaddwd per token. No horizontal reductions.
template <class Dot>
struct Q4_Kx8Rows {
    template <int T>
    struct Tokens {
        static void run(int64_t n, int64_t nb, const uint8_t* act, size_t arb, const uint8_t* w, size_t, float* c, int64_t ldc) {
            using Seg = std::conditional_t<(T >= 3), KSegExpanded<T>, KSegBroadcast<T>>;
            alignas(32) Seg seg;
            const auto* groups = reinterpret_cast<const BlockQ4_Kx8*>(w);  // group i/8 starts nb·(i/8) super-blocks on
            const __m256i m4 = _mm256_set1_epi8(0x0F);
            for (int64_t b0 = 0; b0 < nb; b0 += std::min(Seg::kLen, nb)) {
                const int64_t ns = std::min(Seg::kLen, nb - b0);
                const BlockQ8_K* at[T];
                for (int t = 0; t < T; ++t) at[t] = reinterpret_cast<const BlockQ8_K*>(act + size_t(t) * arb) + b0;
                seg.fill(at, ns);
                for (int64_t i = 0; i < n; i += 8) {
                    const BlockQ4_Kx8* g = groups + (i / 8) * nb + b0;
                    const int valid = int(std::min<int64_t>(8, n - i));
                    __m256 acc[T];
                    load_rows8<T>(acc, c + i, ldc, valid, b0 > 0);
                    for (int64_t b = 0; b < ns; ++b) {
                        const BlockQ4_Kx8& blk = g[b];
                        prefetch_block(&g[b + nb]);
                        __m256i isum[T];
#pragma GCC unroll 4
                        for (int t = 0; t < T; ++t) isum[t] = _mm256_setzero_si256();
                        for (int sb = 0; sb < 8; ++sb) {
                            const uint8_t* qs = blk.qs + 256 * (sb / 2);
                            __m256i q[8];
#pragma GCC unroll 8
                            for (int jj = 0; jj < 8; ++jj) {
                                const __m256i v = load32(qs + 32 * jj);
                                q[jj] = _mm256_and_si256(sb % 2 ? _mm256_srli_epi16(v, 4) : v, m4);
                            }
                            const __m256i sc32 = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(blk.scales[sb])));
                            const __m256i sc = _mm256_or_si256(sc32, _mm256_slli_epi32(sc32, 16));
#pragma GCC unroll 4
                            for (int t = 0; t < T; ++t) {
                                __m256i s = _mm256_maddubs_epi16(q[0], seg.piece(t, b, 8 * sb));
#pragma GCC unroll 8
                                for (int jj = 1; jj < 8; ++jj)
                                    s = Dot::pin(_mm256_add_epi16(s, _mm256_maddubs_epi16(q[jj], seg.piece(t, b, 8 * sb + jj))));
                                isum[t] = Dot::madd_acc(isum[t], s, sc);
                            }
                        }
                        const __m256 dv = _mm256_cvtph_ps(load16(blk.d)), mv = _mm256_cvtph_ps(load16(blk.dmin));
#pragma GCC unroll 4
                        for (int t = 0; t < T; ++t) {
                            __m256i msum = _mm256_setzero_si256();
#pragma GCC unroll 4
                            for (int p = 0; p < 4; ++p) msum = Dot::madd_acc(msum, load32(blk.mins[p]), seg.pair(t, b, p));
                            const __m256 da = seg.da(t, b);
                            acc[t] = _mm256_fmadd_ps(_mm256_mul_ps(dv, da), _mm256_cvtepi32_ps(isum[t]), acc[t]);
                            acc[t] = _mm256_fnmadd_ps(_mm256_mul_ps(mv, da), _mm256_cvtepi32_ps(msum), acc[t]);
                        }
                    }
                    store_rows8<T>(acc, c + i, ldc, valid, false);
                }
            }
        }
    };
};

template <class Dot>
using PackedQ4_0x8 = ByTokens<X8Rows<Dot, BlockQ4_0x8>::template Tokens>;
template <class Dot>
using PackedQ8_0x8 = ByTokens<X8Rows<Dot, BlockQ8_0x8>::template Tokens>;
template <class Dot>
using PackedQ4_Kx8 = ByTokens<Q4_Kx8Rows<Dot>::template Tokens>;

}  // namespace
}  // namespace cq::kernels

// gemm_<wt>_<at>__<isa> over a policy's RowsFn table (blocks of `block` elements).
#define CQ_DEFINE_GEMM_QUANT(wt, at, isa, Policy, block)                                                         \
    void gemm_##wt##_##at##__##isa(int64_t m, int64_t n, int64_t k, const void* act, size_t act_row_bytes,      \
                                   const void* w, size_t w_row_bytes, float* c, int64_t ldc) {                  \
        gemm_tiled(Policy::rows, chunk_bytes<Policy>(), block, m, n, k, act, act_row_bytes, w, w_row_bytes, c, ldc); \
    }
