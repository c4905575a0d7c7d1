// AVX2 quantized matrix products. The 8-row packed tiles and the k-quant tiles are the shared x86 ones
// (kernels/x86/quant_tiles_x86.h) with vpmaddubsw / vpmaddwd as their dot step; the file-layout legacy
// tiles here reduce 4 rows into one vector per token (legacy_quad; Q4_0 first 8 rows at a time, transposed
// on the fly), and Q4_K / Q5_K quads do the same for k-quants. Integer sums via vpmaddubsw (u8 weights ×
// s8 activations; signed Q8_0 weights through the sign trick), float accumulation across blocks as the
// reference does. Rows are walked in chunks that stay cache-resident while every token tile passes.
#include <immintrin.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <utility>

#include "formats/blocks.h"
#include "kernels/kernel_decls.h"
#include "kernels/x86/quant_tiles_x86.h"

namespace cq::kernels {
namespace {

// The dot step of the shared tiles: vpmaddubsw into i16 running sums (callers keep |Σ| < 2^15), one
// vpmaddwd to i32; 16 vector registers.
struct DotAvx2 {
    static __m256i first(__m256i u, __m256i s) { return _mm256_maddubs_epi16(u, s); }
    static __m256i next(__m256i sum, __m256i u, __m256i s) { return _mm256_add_epi16(sum, _mm256_maddubs_epi16(u, s)); }
    static __m256i to_i32(__m256i sum) { return _mm256_madd_epi16(sum, _mm256_set1_epi16(1)); }
    static __m256i madd_acc(__m256i acc, __m256i a, __m256i b) { return _mm256_add_epi32(acc, _mm256_madd_epi16(a, b)); }
    // one running sum: GCC's reassociated tree needs registers we do not have
    static __m256i pin(__m256i v) {
        asm("" : "+x"(v));
        return v;
    }
    static constexpr size_t kKChunkBytes = size_t{1} << 20;  // row chunks of the file-layout k-quant tiles
    static constexpr bool kOffsetQ8 = false;
    static constexpr int kKRows = 1;  // Q6_K and friends: the integer accumulators of 1 row × 4 tokens fill the registers
    static constexpr int kKDecodeRows = 2;  // two rows per decode tile: the AVX2-only CPUs this rung was tuned on
};

// Byte j = 0x10 where bit j of the little-endian u32 at p is set, else 0.
inline __m256i bits_to_0x10(const uint8_t* p) {
    uint32_t v;
    std::memcpy(&v, p, sizeof(v));
    const __m256i shuf = _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101, 0);
    const __m256i bit = _mm256_set1_epi64x(int64_t(0x8040201008040201));
    __m256i x = _mm256_shuffle_epi8(_mm256_set1_epi32(int32_t(v)), shuf);
    x = _mm256_cmpeq_epi8(_mm256_and_si256(x, bit), bit);
    return _mm256_and_si256(x, _mm256_set1_epi8(0x10));
}

// ---- legacy formats (32-element blocks) ----
// q(): the 32 weights as bytes, unsigned (value = q − kBias) or, for kSigned, the signed values.

// Block W against activations A (Q8_0 or Q8_1, whose s gives the min term kMin); kBias: the unsigned
// quants' offset (value = q − kBias), Q8_0's signed bytes (kSigned) taken as they are; Q5's fifth bit in qh.
template <class Wt, class At, int Bias>
struct LQ {
    using W = Wt;
    using A = At;
    static constexpr bool kSigned = std::is_same_v<W, BlockQ8_0>, kMin = std::is_same_v<A, BlockQ8_1>;
    static constexpr int kBias = Bias;
    static __m256i q(const W& b) {
        if constexpr (kSigned) return load32(b.qs);
        else if constexpr (requires { b.qh; }) return _mm256_or_si256(nibbles32(b.qs), bits_to_0x10(b.qh));
        else return nibbles32(b.qs);
    }
};
using LQ8_0 = LQ<BlockQ8_0, BlockQ8_0, 0>;
using LQ4_0 = LQ<BlockQ4_0, BlockQ8_0, 8>;
using LQ5_0 = LQ<BlockQ5_0, BlockQ8_0, 16>;
using LQ4_1 = LQ<BlockQ4_1, BlockQ8_1, 0>;
using LQ5_1 = LQ<BlockQ5_1, BlockQ8_1, 0>;

// Legacy tiles are 4 rows (a quad) × T tokens. The integer sums of the 4 rows for one token are reduced
// horizontally into one vector with lanes [r0 r1 r2 r3 | r0 r1 r2 r3] (low half: elements 0..15, high half:
// 16..31), so one convert and one FMA serve 4 (row, token) pairs and a quad needs one accumulator per token.
// Unsigned formats reduce the vpmaddubsw i16 sums (|Σ of 8 products| ≤ 8·31·128 < 2^15) with vphaddw,
// signed Q8_0 reduces the i32 sums with vphaddd.

// The activation side of one token tile over a segment of at most kSeg blocks, decoded once (on the stack)
// for every quad that passes: scales as floats, the bias·Σa corrections laid out as the reduced sums
// (kBias), the Q8_1 sums (kMin).
constexpr int64_t kSeg = 128;

template <class L, int T>
struct ActSeg {
    using A = typename L::A;
    alignas(32) float d[T][kSeg];
    alignas(32) float s[T][L::kMin ? kSeg : 1];
    __m256i corr[T][L::kBias ? kSeg : 1];  // [Σ lo ×4 | Σ hi ×4]·bias
    alignas(32) int32_t bias[T][L::kBias ? kSeg : 1];  // bias·Σa, for q4_0_oct
    void fill(const A* const* at, int64_t ns) {
        const __m256i ones = _mm256_set1_epi16(1);
        for (int t = 0; t < T; ++t)
            for (int64_t b = 0; b < ns; ++b) {
                d[t][b] = h2f(at[t][b].d);
                if constexpr (L::kMin) s[t][b] = h2f(at[t][b].s);
                if constexpr (L::kBias != 0) {
                    const __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_set1_epi8(L::kBias), load32(at[t][b].qs)), ones);
                    const __m256i h = _mm256_hadd_epi32(p, p);
                    corr[t][b] = _mm256_hadd_epi32(h, h);
                    bias[t][b] = _mm256_extract_epi32(corr[t][b], 0) + _mm256_extract_epi32(corr[t][b], 4);
                }
            }
    }
};

// at: T token rows, w: `rows` (1..4) weight rows of stride wrb, both from the segment's first block; a
// short quad repeats row 0. c[t*ldc + r] = (accumulate ? c : 0) + Σ over the segment's ns blocks.
template <class L, int T>
void legacy_quad(int64_t ns, const typename L::A* const* at, const ActSeg<L, T>& seg, const uint8_t* w, size_t wrb,
                 int rows, float* c, int64_t ldc, bool accumulate) {
    using W = typename L::W;
    const W* wr[4];
    for (int r = 0; r < 4; ++r) wr[r] = reinterpret_cast<const W*>(w + size_t(r < rows ? r : 0) * wrb);
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 acc[T];
#pragma GCC unroll 4
    for (int t = 0; t < T; ++t) acc[t] = _mm256_setzero_ps();
    for (int64_t b = 0; b < ns; ++b) {
        __m256i q[4];
#pragma GCC unroll 4
        for (int r = 0; r < 4; ++r) {
            // the same block of the next quad: streams that short need a hand to stay ahead
            _mm_prefetch(reinterpret_cast<const char*>(wr[r] + b) + 4 * wrb, _MM_HINT_T0);
            q[r] = L::q(wr[r][b]);
        }
        // Scales and mins are read from memory in the token loop (and Q8_0's |w| recomputed there), so
        // the T accumulators stay in registers: GCC otherwise spills them, a store-load chain per FMA.
        alignas(32) float dw4[8], mw4[8];
        const __m128 dw = _mm_cvtph_ps(_mm_setr_epi16(int16_t(wr[0][b].d), int16_t(wr[1][b].d), int16_t(wr[2][b].d),
                                                      int16_t(wr[3][b].d), 0, 0, 0, 0));
        _mm256_store_ps(dw4, _mm256_set_m128(dw, dw));
        if constexpr (L::kMin)  // [m0 m1 m2 m3 | 0 0 0 0]
            _mm256_store_ps(mw4, _mm256_zextps128_ps256(_mm_cvtph_ps(_mm_setr_epi16(int16_t(wr[0][b].m), int16_t(wr[1][b].m),
                                                                                  int16_t(wr[2][b].m), int16_t(wr[3][b].m), 0, 0, 0, 0))));
        asm volatile("" ::"m"(dw4), "m"(mw4));
#pragma GCC unroll 4
        for (int t = 0; t < T; ++t) {
            const __m256i a = load32(at[t][b].qs);
            __m256i p;
            if constexpr (L::kSigned) {
                __m256i pr[4];
#pragma GCC unroll 4
                for (int r = 0; r < 4; ++r)
                    pr[r] = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_sign_epi8(q[r], q[r]), _mm256_sign_epi8(a, q[r])), ones);
                p = _mm256_hadd_epi32(_mm256_hadd_epi32(pr[0], pr[1]), _mm256_hadd_epi32(pr[2], pr[3]));
            } else {
                __m256i m[4];
#pragma GCC unroll 4
                for (int r = 0; r < 4; ++r) m[r] = _mm256_maddubs_epi16(q[r], a);
                p = _mm256_madd_epi16(_mm256_hadd_epi16(_mm256_hadd_epi16(m[0], m[1]), _mm256_hadd_epi16(m[2], m[3])), ones);
                if constexpr (L::kBias != 0) p = _mm256_sub_epi32(p, seg.corr[t][b]);
            }
            acc[t] = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_load_ps(dw4), _mm256_broadcast_ss(&seg.d[t][b])), _mm256_cvtepi32_ps(p), acc[t]);
            if constexpr (L::kMin) acc[t] = _mm256_fmadd_ps(_mm256_load_ps(mw4), _mm256_broadcast_ss(&seg.s[t][b]), acc[t]);
        }
    }
#pragma GCC unroll 4
    for (int t = 0; t < T; ++t) {
        alignas(16) float v[4];
        _mm_store_ps(v, _mm_add_ps(_mm256_castps256_ps128(acc[t]), _mm256_extractf128_ps(acc[t], 1)));
        for (int r = 0; r < rows; ++r) c[t * ldc + r] = accumulate ? c[t * ldc + r] + v[r] : v[r];
    }
}

// The broadcasting accessors over T Q8_0 rows and the ActSeg of their scales, for q4_0_oct.
template <int T>
struct ActSegRef {
    const BlockQ8_0* at[T];
    const ActSeg<LQ4_0, T>* s;
    __m256i piece(int t, int64_t b, int j) const { return bcast4(at[t][b].qs + 4 * j); }
    __m256i bias(int t, int64_t b) const { return _mm256_set1_epi32(s->bias[t][b]); }
    __m256 d(int t, int64_t b) const { return _mm256_broadcast_ss(&s->d[t][b]); }
};

// Q4_0, 8 rows × T tokens with the rows transposed on the fly: rows r and r+4 are loaded into the two
// 128-bit halves and a 4×4 dword transpose leaves x[j] = [bytes 4j..4j+3 of rows 0..3 | of rows 4..7], i.e.
// elements 4j..4j+3 (low nibbles) and 16+4j.. (high). A token's matching 4 bytes are one broadcast, so
// vpmaddubsw works on 8 rows at once and no horizontal reduction is needed: the 8 products per element
// pair sum in i16 (|Σ| ≤ 16·15·128 < 2^15), one vpmaddwd leaves one i32 per row, lanes [r0 .. r7].
template <int T>
void q4_0_oct(int64_t ns, const ActSegRef<T>& seg, const uint8_t* w, size_t wrb, float* c, int64_t ldc,
              bool accumulate) {
    const BlockQ4_0* wr[8];
    for (int r = 0; r < 8; ++r) wr[r] = reinterpret_cast<const BlockQ4_0*>(w + size_t(r) * wrb);
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    __m256 acc[T];
#pragma GCC unroll 4
    for (int t = 0; t < T; ++t) acc[t] = _mm256_setzero_ps();
    for (int64_t b = 0; b < ns; ++b) {
        __m256i v[4];
        for (int r = 0; r < 4; ++r) {
            // the same block of the next 8 rows: streams that short need a hand to stay ahead
            _mm_prefetch(reinterpret_cast<const char*>(wr[r] + b) + 8 * wrb, _MM_HINT_T0);
            _mm_prefetch(reinterpret_cast<const char*>(wr[r + 4] + b) + 8 * wrb, _MM_HINT_T0);
            v[r] = _mm256_inserti128_si256(_mm256_castsi128_si256(load16(wr[r][b].qs)), load16(wr[r + 4][b].qs), 1);
        }
        const __m256i u0 = _mm256_unpacklo_epi32(v[0], v[1]), u1 = _mm256_unpackhi_epi32(v[0], v[1]);
        const __m256i u2 = _mm256_unpacklo_epi32(v[2], v[3]), u3 = _mm256_unpackhi_epi32(v[2], v[3]);
        const __m256i x[4] = {_mm256_unpacklo_epi64(u0, u2), _mm256_unpackhi_epi64(u0, u2), _mm256_unpacklo_epi64(u1, u3),
                              _mm256_unpackhi_epi64(u1, u3)};
        __m256i q[8];
        for (int j = 0; j < 4; ++j) {
            q[j] = _mm256_and_si256(x[j], m4);
            q[j + 4] = _mm256_and_si256(_mm256_srli_epi16(x[j], 4), m4);
        }
        const __m256 dw = _mm256_cvtph_ps(_mm_setr_epi16(int16_t(wr[0][b].d), int16_t(wr[1][b].d), int16_t(wr[2][b].d),
                                                         int16_t(wr[3][b].d), int16_t(wr[4][b].d), int16_t(wr[5][b].d),
                                                         int16_t(wr[6][b].d), int16_t(wr[7][b].d)));
        rows8_block<DotAvx2, T>(q, dw, seg, b, acc);
    }
    store_rows8<T>(acc, c, ldc, 8, accumulate);
}

// rows [0, n) of one token tile, segment by segment, a quad at a time (Q4_0: 8 rows at a time first).
template <class L, int T>
void legacy_rows(int64_t n, int64_t nb, const uint8_t* act, size_t arb, const uint8_t* w, size_t wrb, float* c,
                 int64_t ldc) {
    using A = typename L::A;
    ActSeg<L, T> seg;
    for (int64_t b0 = 0; b0 < nb; b0 += kSeg) {
        const int64_t ns = std::min(kSeg, nb - b0);
        const A* at[T];
        for (int t = 0; t < T; ++t) at[t] = reinterpret_cast<const A*>(act + size_t(t) * arb) + b0;
        seg.fill(at, ns);
        const uint8_t* wb = w + size_t(b0) * sizeof(typename L::W);
        int64_t i = 0;
        if constexpr (std::is_same_v<L, LQ4_0>) {
            ActSegRef<T> view{{}, &seg};
            std::copy(at, at + T, view.at);
            for (; i + 8 <= n; i += 8) q4_0_oct<T>(ns, view, wb + size_t(i) * wrb, wrb, c + i, ldc, b0 > 0);
        }
        for (; i < n; i += 4)
            legacy_quad<L, T>(ns, at, seg, wb + size_t(i) * wrb, wrb, int(std::min<int64_t>(4, n - i)), c + i, ldc, b0 > 0);
    }
}

// K-quant quads (formats whose quants stay below 32, so a sum of 8 vpmaddubsw products fits in i16): the 4
// rows' products for one token are reduced with two vphaddw into [r0 r0 r1 r1 r2 r2 r3 r3] per 128-bit half,
// then one vpmaddwd applies the 4 rows' chunk scales, leaving [r0 r1 r2 r3 | r0 r1 r2 r3] (low half: elements
// 0..15 of each chunk, high half: 16..31); one integer accumulator per token, one convert + FMA per 4 pairs.

// 4 rows' i32 vectors → [r0 r1 r2 r3 | r0 r1 r2 r3] partial sums (each half sums to a row's total over both).
inline __m256i reduce4_i32(__m256i x0, __m256i x1, __m256i x2, __m256i x3) {
    return _mm256_hadd_epi32(_mm256_hadd_epi32(x0, x1), _mm256_hadd_epi32(x2, x3));
}

template <class K, int T>
void kq_quad(int64_t nb, const BlockQ8_K* const* at, const uint8_t* w, size_t wrb, int rows, float* c, int64_t ldc) {
    using W = typename K::W;
    const W* wr[4];
    for (int r = 0; r < 4; ++r) wr[r] = reinterpret_cast<const W*>(w + size_t(r < rows ? r : 0) * wrb);
    __m256 acc[T];
    for (int t = 0; t < T; ++t) acc[t] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; ++b) {
        K dec[4];
        k_decode<K, 4>(dec, wr, b, wrb);
        // Chunk scales of the 4 rows, interleaved: sq[c/2] holds, per half, [s0 s1 s2 s3] of chunk c (even c
        // in i16 0..3, odd c in 4..7).
        const __m256i u01l = _mm256_unpacklo_epi16(dec[0].sv, dec[1].sv), u01h = _mm256_unpackhi_epi16(dec[0].sv, dec[1].sv);
        const __m256i u23l = _mm256_unpacklo_epi16(dec[2].sv, dec[3].sv), u23h = _mm256_unpackhi_epi16(dec[2].sv, dec[3].sv);
        const __m256i sq[4] = {_mm256_unpacklo_epi32(u01l, u23l), _mm256_unpackhi_epi32(u01l, u23l),
                               _mm256_unpacklo_epi32(u01h, u23h), _mm256_unpackhi_epi32(u01h, u23h)};
        const __m256i pick[2] = {_mm256_setr_epi8(0, 1, 0, 1, 2, 3, 2, 3, 4, 5, 4, 5, 6, 7, 6, 7,  //
                                                  0, 1, 0, 1, 2, 3, 2, 3, 4, 5, 4, 5, 6, 7, 6, 7),
                                 _mm256_setr_epi8(8, 9, 8, 9, 10, 11, 10, 11, 12, 13, 12, 13, 14, 15, 14, 15,  //
                                                  8, 9, 8, 9, 10, 11, 10, 11, 12, 13, 12, 13, 14, 15, 14, 15)};
        __m256i sumi[T];
        for (int t = 0; t < T; ++t) sumi[t] = _mm256_setzero_si256();
        [&]<int... C>(std::integer_sequence<int, C...>) {
            ([&] {
                constexpr int ch = C;
                const __m256i q0 = dec[0].template q<ch>(), q1 = dec[1].template q<ch>();
                const __m256i q2 = dec[2].template q<ch>(), q3 = dec[3].template q<ch>();
                const __m256i sc = _mm256_shuffle_epi8(sq[ch / 2], pick[ch % 2]);
                for (int t = 0; t < T; ++t) {
                    const __m256i a = load32(at[t][b].qs + 32 * ch);
                    const __m256i h = _mm256_hadd_epi16(_mm256_hadd_epi16(_mm256_maddubs_epi16(q0, a), _mm256_maddubs_epi16(q1, a)),
                                                        _mm256_hadd_epi16(_mm256_maddubs_epi16(q2, a), _mm256_maddubs_epi16(q3, a)));
                    sumi[t] = _mm256_add_epi32(sumi[t], _mm256_madd_epi16(sc, h));
                }
            }(), ...);
        }(std::make_integer_sequence<int, 8>{});
        const __m128 d4h = _mm_setr_ps(dec[0].d, dec[1].d, dec[2].d, dec[3].d);
        const __m256 d4 = _mm256_set_m128(d4h, d4h);
        __m256 m4 = _mm256_setzero_ps();
        if constexpr (K::kMin) {
            const __m128 m4h = _mm_setr_ps(-dec[0].dmin, -dec[1].dmin, -dec[2].dmin, -dec[3].dmin);
            m4 = _mm256_set_m128(m4h, m4h);
        }
        for (int t = 0; t < T; ++t) {
            const __m256i bs = load32(at[t][b].bsums);
            const __m256 da = _mm256_broadcast_ss(&at[t][b].d);
            __m256i s = sumi[t];
            if constexpr (K::kCorr)
                s = _mm256_sub_epi32(s, reduce4_i32(_mm256_madd_epi16(dec[0].corr16, bs), _mm256_madd_epi16(dec[1].corr16, bs),
                                                    _mm256_madd_epi16(dec[2].corr16, bs), _mm256_madd_epi16(dec[3].corr16, bs)));
            acc[t] = _mm256_fmadd_ps(_mm256_mul_ps(d4, da), _mm256_cvtepi32_ps(s), acc[t]);
            if constexpr (K::kMin) {
                const __m256i mn = reduce4_i32(_mm256_madd_epi16(dec[0].m16, bs), _mm256_madd_epi16(dec[1].m16, bs),
                                               _mm256_madd_epi16(dec[2].m16, bs), _mm256_madd_epi16(dec[3].m16, bs));
                acc[t] = _mm256_fmadd_ps(_mm256_mul_ps(m4, da), _mm256_cvtepi32_ps(mn), acc[t]);
            }
        }
    }
    for (int t = 0; t < T; ++t) {
        alignas(16) float v[4];
        _mm_store_ps(v, _mm_add_ps(_mm256_castps256_ps128(acc[t]), _mm256_extractf128_ps(acc[t], 1)));
        for (int r = 0; r < rows; ++r) c[t * ldc + r] = v[r];
    }
}

// rows [0, n) of one token tile, a quad at a time.
template <class K, int T>
void kq_rows(int64_t n, int64_t nb, const uint8_t* act, size_t arb, const uint8_t* w, size_t wrb, float* c, int64_t ldc) {
    const BlockQ8_K* at[T];
    for (int t = 0; t < T; ++t) at[t] = reinterpret_cast<const BlockQ8_K*>(act + size_t(t) * arb);
    for (int64_t i = 0; i < n; i += 4)
        kq_quad<K, T>(nb, at, w + size_t(i) * wrb, wrb, int(std::min<int64_t>(4, n - i)), c + i, ldc);
}

// Legacy tiles: quads of rows × T tokens.
template <class L>
struct Legacy {
    static constexpr RowsFn rows[5] = CQ_ROWS_TABLE(legacy_rows, L);
};

// K-quant quads × T tokens, for quants below 32 (Q4_K, Q5_K: measured faster for decode, even for prompts;
// Q2_K and Q3_K measured no faster and keep the per-row tiles).
template <class K>
struct KQuad {
    static constexpr RowsFn rows[5] = CQ_ROWS_TABLE(kq_rows, K);
};
template <class K>
using KQuantAvx2 = KQuant<DotAvx2, K>;

}  // namespace

CQ_DEFINE_GEMM_QUANT(q8_0, q8_0, avx2, Legacy<LQ8_0>, kQK)
CQ_DEFINE_GEMM_QUANT(q4_0, q8_0, avx2, Legacy<LQ4_0>, kQK)
CQ_DEFINE_GEMM_QUANT(q5_0, q8_0, avx2, Legacy<LQ5_0>, kQK)
CQ_DEFINE_GEMM_QUANT(q4_1, q8_1, avx2, Legacy<LQ4_1>, kQK)
CQ_DEFINE_GEMM_QUANT(q5_1, q8_1, avx2, Legacy<LQ5_1>, kQK)
CQ_DEFINE_GEMM_QUANT(q2_K, q8_K, avx2, KQuantAvx2<KQ2_K>, kQK_K)
CQ_DEFINE_GEMM_QUANT(q3_K, q8_K, avx2, KQuantAvx2<KQ3_K>, kQK_K)
CQ_DEFINE_GEMM_QUANT(q4_K, q8_K, avx2, KQuad<KQ4_K>, kQK_K)
CQ_DEFINE_GEMM_QUANT(q5_K, q8_K, avx2, KQuad<KQ5_K>, kQK_K)
CQ_DEFINE_GEMM_QUANT(q6_K, q8_K, avx2, KQuantAvx2<KQ6_K>, kQK_K)
CQ_DEFINE_GEMM_QUANT(q4_0x8, q8_0, avx2, PackedQ4_0x8<DotAvx2>, kQK)
CQ_DEFINE_GEMM_QUANT(q8_0x8, q8_0, avx2, PackedQ8_0x8<DotAvx2>, kQK)
CQ_DEFINE_GEMM_QUANT(q4_Kx8, q8_K, avx2, PackedQ4_Kx8<DotAvx2>, kQK_K)

}  // namespace cq::kernels
