// AVX2 quantized matrix products and activation quantizers. The products work on tiles of weight rows ×
// up to 4 tokens, so each weight block is decoded once per tile and each activation block loaded once per
// tile; integer sums via vpmaddubsw (u8 weights × s8 activations; signed Q8_0 weights through the sign
// trick), float accumulation across blocks as the reference does. Legacy formats reduce 4 rows into one
// vector per token (see legacy_quad); k-quants keep per-(row, token) integer sums over a super-block.
// Rows are walked in chunks that stay cache-resident while every token tile passes; the quantizers are
// byte-identical to the reference ones.
#include <immintrin.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>
#include <utility>

#include "formats/blocks.h"
#include "kernels/kernel_decls.h"

namespace cq::kernels {
namespace {

using namespace cq::formats;

inline float h2f(uint16_t h) { return _cvtsh_ss(h); }
inline __m256i load32(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }
inline __m128i load16(const void* p) { return _mm_loadu_si128(static_cast<const __m128i*>(p)); }

// The 4 bytes at p in every dword lane (one vpbroadcastd from memory, no copy through the stack).
inline __m256i bcast4(const void* p) {
    int32_t v;
    std::memcpy(&v, p, sizeof(v));
    return _mm256_set1_epi32(v);
}

inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

// 16 bytes of nibbles → 32 bytes: the low nibbles (elements 0..15), then the high ones (16..31).
inline __m256i nibbles32(const uint8_t* qs) {
    const __m256i x = _mm256_broadcastsi128_si256(load16(qs));  // the high half then shifts down by 4
    return _mm256_and_si256(_mm256_srlv_epi64(x, _mm256_setr_epi64x(0, 0, 4, 4)), _mm256_set1_epi8(0x0F));
}

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

// Rows per chunk: a chunk of weights (~1 MiB) stays in the last-level cache while every token tile
// passes. Each tile decodes its activations once per chunk (ActSeg::fill), so chunks sized for L2
// (64 KiB) made that a tenth of a k = 3072 product; weights read from L3 cost less (a group's block
// serves 4 tokens). Measured on a 512-token prompt, 2 threads: +4..8 % for Q4_0, Q8_0 and Q4_K_M.
inline int64_t row_chunk(int64_t m, int64_t n, size_t w_row_bytes) {
    if (m <= 4) return n;
    const int64_t rows = std::max<int64_t>(8, int64_t((size_t{1} << 20) / std::max<size_t>(w_row_bytes, 1)) & ~int64_t{7});
    return std::min(rows, n);
}

// ---- legacy formats (32-element blocks) ----
// q(): the 32 weights as bytes, unsigned (value = q − kBias) or, for kSigned, the signed values.

struct LQ8_0 {
    using W = BlockQ8_0;
    using A = BlockQ8_0;
    static constexpr bool kSigned = true, kMin = false;
    static constexpr int kBias = 0;
    static __m256i q(const W& b) { return load32(b.qs); }
};
struct LQ4_0 {
    using W = BlockQ4_0;
    using A = BlockQ8_0;
    static constexpr bool kSigned = false, kMin = false;
    static constexpr int kBias = 8;
    static __m256i q(const W& b) { return nibbles32(b.qs); }
};
struct LQ5_0 {
    using W = BlockQ5_0;
    using A = BlockQ8_0;
    static constexpr bool kSigned = false, kMin = false;
    static constexpr int kBias = 16;
    static __m256i q(const W& b) { return _mm256_or_si256(nibbles32(b.qs), bits_to_0x10(b.qh)); }
};
struct LQ4_1 {
    using W = BlockQ4_1;
    using A = BlockQ8_1;
    static constexpr bool kSigned = false, kMin = true;
    static constexpr int kBias = 0;
    static __m256i q(const W& b) { return nibbles32(b.qs); }
};
struct LQ5_1 {
    using W = BlockQ5_1;
    using A = BlockQ8_1;
    static constexpr bool kSigned = false, kMin = true;
    static constexpr int kBias = 0;
    static __m256i q(const W& b) { return _mm256_or_si256(nibbles32(b.qs), bits_to_0x10(b.qh)); }
};

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
    alignas(32) int32_t bias[T][L::kBias ? kSeg : 1];  // bias·Σa, for the 8-row tiles (q4_0_oct, decode q4_0x8_tile)
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

// The 8-row kernels prefetch the same block of the next group of rows (nb blocks on, past the hardware
// prefetcher's stream): measured 2× on Q8_0 decode from DRAM. Beyond the last group it is a harmless hint.
template <class Block>
inline void prefetch_block(const Block* p) {
#pragma GCC unroll 32
    for (size_t off = 0; off < sizeof(Block); off += 64) _mm_prefetch(reinterpret_cast<const char*>(p) + off, _MM_HINT_T0);
}

// The activation side of one token tile for the 8-row kernels, over a segment of blocks. Both kinds give
// piece j (bytes 4j..4j+3) of a block in all 8 dword lanes, the scale in all lanes and Q4_0's 8·Σa.
// ActSegExpanded stores them so: the prompt tiles (T ≥ 3) read them as plain loads. A broadcast from
// memory also takes a shuffle-pipe op on Zen, and those ops, 10 per block and token, bounded the loop
// (+24 % Q4_0, +42 % Q8_0 on a 512-token prompt); here they are paid once per segment and row chunk. Its
// 16-block segments keep 4 tokens at 20 KiB, inside L1 beside the weight blocks streaming through.
// ActSegBroadcast broadcasts from the Q8_0 blocks in the loop: decode (T ≤ 2) streams the weights once,
// and long segments keep that stream sequential (16-block segments cost a third of its speed).
template <int T>
struct ActSegExpanded {
    static constexpr int64_t kLen = 16;
    __m256i a[T][kLen][8];
    __m256i b8[T][kLen];  // 8·Σa
    __m256 dv[T][kLen];
    void fill(const BlockQ8_0* const* at, int64_t ns, bool with_bias) {
        const __m256i ones = _mm256_set1_epi16(1);
        for (int t = 0; t < T; ++t)
            for (int64_t b = 0; b < ns; ++b) {
                const BlockQ8_0& blk = at[t][b];
#pragma GCC unroll 8
                for (int j = 0; j < 8; ++j) a[t][b][j] = bcast4(blk.qs + 4 * j);
                dv[t][b] = _mm256_set1_ps(h2f(blk.d));
                if (with_bias) {
                    __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_set1_epi8(8), load32(blk.qs)), ones);
                    p = _mm256_hadd_epi32(p, p);
                    p = _mm256_hadd_epi32(p, p);  // [Σ lo ×4 | Σ hi ×4]
                    b8[t][b] = _mm256_add_epi32(p, _mm256_permute2x128_si256(p, p, 1));
                }
            }
    }
    __m256i piece(int t, int64_t b, int j) const { return a[t][b][j]; }
    __m256i bias(int t, int64_t b) const { return b8[t][b]; }
    __m256 d(int t, int64_t b) const { return dv[t][b]; }
};

template <class L, int T>
struct ActSegRef {  // the broadcasting accessors over T Q8_0 rows and the ActSeg of their scales
    const BlockQ8_0* at[T];
    const ActSeg<L, T>* s;
    __m256i piece(int t, int64_t b, int j) const { return bcast4(at[t][b].qs + 4 * j); }
    __m256i bias(int t, int64_t b) const { return _mm256_set1_epi32(s->bias[t][b]); }
    __m256 d(int t, int64_t b) const { return _mm256_broadcast_ss(&s->d[t][b]); }
};

template <class L, int T>
struct ActSegBroadcast : ActSegRef<L, T> {
    static constexpr int64_t kLen = kSeg;
    ActSeg<L, T> storage;  // scales (and Q4_0's 8·Σa) as scalars
    void fill(const BlockQ8_0* const* a, int64_t ns, bool) {
        for (int t = 0; t < T; ++t) this->at[t] = a[t];
        storage.fill(a, ns);
        this->s = &storage;
    }
};

// One Q4_0 block of 8 rows against T tokens (q4_0_oct and q4_0x8_tile): q holds the rows' nibbles as the
// packed layout has them (vector j: the same 4 bytes of the 8 rows; j < 4 low nibbles, j ≥ 4 high), dw
// their 8 scales, seg the activations (ActSegExpanded, or ActSegRef). The i16 sums of 8 products per
// row cannot overflow (16·15·127 < 2^15); acc[t] lanes are rows 0..7.
template <int T, class Seg>
__attribute__((always_inline)) inline void q4_rows8_block(const __m256i (&q)[8], __m256 dw, const Seg& seg, int64_t b,
                                                          __m256 (&acc)[T]) {
    const __m256i ones = _mm256_set1_epi16(1);
    // the scales are read from memory in the token loop, so that q[8], ones and the T accumulators keep
    // the 16 registers (otherwise GCC spills an accumulator, a store-load chain per FMA)
    alignas(32) float dw_mem[8];
    _mm256_store_ps(dw_mem, dw);
    asm volatile("" ::"m"(dw_mem));
#pragma GCC unroll 4
    for (int t = 0; t < T; ++t) {
        __m256i s = _mm256_maddubs_epi16(q[0], seg.piece(t, b, 0));
#pragma GCC unroll 8
        for (int j = 1; j < 8; ++j) {
            s = _mm256_add_epi16(s, _mm256_maddubs_epi16(q[j], seg.piece(t, b, j)));
            asm("" : "+x"(s));  // one running sum: GCC's reassociated tree needs registers we do not have
        }
        const __m256i p = _mm256_sub_epi32(_mm256_madd_epi16(s, ones), seg.bias(t, b));
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

// Q4_0, 8 rows × T tokens with the rows transposed on the fly: rows r and r+4 are loaded into the two
// 128-bit halves and a 4×4 dword transpose leaves x[j] = [bytes 4j..4j+3 of rows 0..3 | of rows 4..7], i.e.
// elements 4j..4j+3 (low nibbles) and 16+4j.. (high). A token's matching 4 bytes are one broadcast, so
// vpmaddubsw works on 8 rows at once and no horizontal reduction is needed: the 8 products per element
// pair sum in i16 (|Σ| ≤ 16·15·128 < 2^15), one vpmaddwd leaves one i32 per row, lanes [r0 .. r7].
template <int T>
void q4_0_oct(int64_t ns, const ActSegRef<LQ4_0, T>& seg, const uint8_t* w, size_t wrb, float* c, int64_t ldc,
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
        q4_rows8_block<T>(q, dw, seg, b, acc);
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
            ActSegRef<LQ4_0, T> view{{}, &seg};
            std::copy(at, at + T, view.at);
            for (; i + 8 <= n; i += 8) q4_0_oct<T>(ns, view, wb + size_t(i) * wrb, wrb, c + i, ldc, b0 > 0);
        }
        for (; i < n; i += 4)
            legacy_quad<L, T>(ns, at, seg, wb + size_t(i) * wrb, wrb, int(std::min<int64_t>(4, n - i)), c + i, ldc, b0 > 0);
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

// Q4_0 packed in groups of 8 rows (BlockQ4_0x8): vector j holds the same 4 bytes of the 8 rows (j < 4 the
// low nibbles, j ≥ 4 the high ones) and the 8 scales sit side by side, so there are no transposes and no
// horizontal sums. The i16 sums of 8 products per row cannot overflow (16·15·127 < 2^15); acc[t] lanes are
// rows 0..7. g: the group's first block of the segment (its next group starts nb blocks on); rows past
// `valid` are computed (padding rows are zeros) but not stored. acc starts from c when accumulating, so
// the blocks are summed in the reference's order across segments too.
template <int T, class Seg>
void q4_0x8_tile(int64_t ns, int64_t nb, const Seg& seg, const BlockQ4_0x8* g, float* c, int64_t ldc, int valid,
                 bool accumulate) {
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    __m256 acc[T];
    load_rows8<T>(acc, c, ldc, valid, accumulate);
    for (int64_t b = 0; b < ns; ++b) {
        const BlockQ4_0x8& blk = g[b];
        prefetch_block(&g[b + nb]);
        __m256i q[8];
#pragma GCC unroll 4
        for (int j = 0; j < 4; ++j) {
            const __m256i x = load32(blk.qs + 32 * j);
            q[j] = _mm256_and_si256(x, m4);
            q[j + 4] = _mm256_and_si256(_mm256_srli_epi16(x, 4), m4);
        }
        q4_rows8_block<T>(q, _mm256_cvtph_ps(load16(blk.d)), seg, b, acc);
    }
    store_rows8<T>(acc, c, ldc, valid, false);
}

// Q8_0 packed in groups of 8 rows (BlockQ8_0x8): piece j (elements 4j..4j+3) of the 8 rows is one vector,
// signed × signed through the sign trick (|w| · sign(a, w); |w| of −128 reads as the unsigned 128, and
// 2·128·127 < 2^15, so vpmaddubsw never saturates), then vpmaddwd gives one i32 per row: no horizontal
// reduction. |w| is taken once per block for all T tokens.
template <int T, class Seg>
void q8_0x8_tile(int64_t ns, int64_t nb, const Seg& seg, const BlockQ8_0x8* g, float* c, int64_t ldc, int valid,
                 bool accumulate) {
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 acc[T];
    load_rows8<T>(acc, c, ldc, valid, accumulate);
    for (int64_t b = 0; b < ns; ++b) {
        const BlockQ8_0x8& blk = g[b];
        prefetch_block(&g[b + nb]);
        alignas(32) float dw[8];
        _mm256_store_ps(dw, _mm256_cvtph_ps(load16(blk.d)));
        asm volatile("" ::"m"(dw));
        __m256i isum[T];
#pragma GCC unroll 4
        for (int t = 0; t < T; ++t) isum[t] = _mm256_setzero_si256();
#pragma GCC unroll 8
        for (int j = 0; j < 8; ++j) {
            const __m256i w = load32(blk.qs + 32 * j);
            const __m256i aw = _mm256_sign_epi8(w, w);
#pragma GCC unroll 4
            for (int t = 0; t < T; ++t) {
                isum[t] = _mm256_add_epi32(isum[t], _mm256_madd_epi16(_mm256_maddubs_epi16(aw, _mm256_sign_epi8(seg.piece(t, b, j), w)), ones));
                asm("" : "+x"(isum[t]));
            }
        }
#pragma GCC unroll 4
        for (int t = 0; t < T; ++t)
            acc[t] = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_load_ps(dw), seg.d(t, b)), _mm256_cvtepi32_ps(isum[t]), acc[t]);
    }
    store_rows8<T>(acc, c, ldc, valid, false);
}

// rows [0, n) of one token tile from their packed groups (w: group of row 0; wrb: one unpacked row's bytes,
// so a group of 8 rows is 8·wrb bytes), segment by segment.
template <class B8, int T>
void x8_rows(int64_t n, int64_t nb, const uint8_t* act, size_t arb, const uint8_t* w, size_t wrb, float* c, int64_t ldc) {
    constexpr bool kQ4 = std::is_same_v<B8, BlockQ4_0x8>;
    using Seg = std::conditional_t<(T >= 3), ActSegExpanded<T>, ActSegBroadcast<std::conditional_t<kQ4, LQ4_0, LQ8_0>, T>>;
    alignas(32) Seg seg;
    const auto* groups = reinterpret_cast<const B8*>(w);
    (void)wrb;  // == nb·sizeof(block): group i/8 starts nb·(i/8) packed blocks on
    for (int64_t b0 = 0; b0 < nb; b0 += Seg::kLen) {
        const int64_t ns = std::min(Seg::kLen, nb - b0);
        const BlockQ8_0* at[T];
        for (int t = 0; t < T; ++t) at[t] = reinterpret_cast<const BlockQ8_0*>(act + size_t(t) * arb) + b0;
        seg.fill(at, ns, kQ4);
        for (int64_t i = 0; i < n; i += 8) {
            const int valid = int(std::min<int64_t>(8, n - i));
            if constexpr (kQ4) q4_0x8_tile<T>(ns, nb, seg, groups + (i / 8) * nb + b0, c + i, ldc, valid, b0 > 0);
            else q8_0x8_tile<T>(ns, nb, seg, groups + (i / 8) * nb + b0, c + i, ldc, valid, b0 > 0);
        }
    }
}

// ---- k-quants (256-element super-blocks against Q8_K) ----
// A decoder holds one weight super-block: q(c) gives chunk c (elements 32c..32c+31) as unsigned bytes,
// s16 the scale of each 16-element group as i16. The integer sum Σ_g s16[g]·Σ q·a then gets, per group,
// − corr16[g]·bsum[g] (kCorr: the offset of signed quants) and the float term − dmin·Σ m16[g]·bsum[g] (kMin).

// Shift the single set bit `from` of each byte to bit `to` (16-bit shifts; the bit never leaves its byte).
template <int from, int to>
inline __m256i move_bit(__m256i x) {
    if constexpr (from < to) return _mm256_slli_epi16(x, to - from);
    else if constexpr (from > to) return _mm256_srli_epi16(x, from - to);
    else return x;
}

struct KQ2_K {
    using W = BlockQ2_K;
    static constexpr bool kMin = true, kCorr = false, kOwnSv = false;
    const uint8_t* qs;
    __m256i s16, m16, corr16, sv;
    float d, dmin;
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

struct KQ3_K {
    using W = BlockQ3_K;
    static constexpr bool kMin = false, kCorr = true, kOwnSv = false;
    const uint8_t* qs;
    __m256i s16, m16, corr16, sv, hm;
    float d, dmin;
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

struct KQ5_K {
    using W = BlockQ5_K;
    static constexpr bool kMin = true, kCorr = false, kOwnSv = true;
    const uint8_t* qs;
    __m256i s16, m16, corr16, sv, qh;
    float d, dmin;
    void init(const W& b) {
        k4_scales(b.scales, sv, m16);
        qh = load32(b.qh);
        qs = b.qs;
        d = h2f(b.d);
        dmin = h2f(b.dmin);
    }
    template <int c>
    __m256i q() const {
        const __m256i v = load32(qs + 32 * (c / 2));
        const __m256i lo = _mm256_and_si256(c % 2 ? _mm256_srli_epi16(v, 4) : v, _mm256_set1_epi8(0x0F));
        return _mm256_or_si256(lo, move_bit<c, 4>(_mm256_and_si256(qh, _mm256_set1_epi8(char(1 << c)))));
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

template <class K, int R, int T, int c>
inline void k_chunk(const K* dec, const BlockQ8_K* const* at, int64_t b, __m256i (&sumi)[R][T]) {
    __m256i q[R], sc[R];
    for (int r = 0; r < R; ++r) {
        q[r] = dec[r].template q<c>();
        sc[r] = chunk_scales(dec[r].sv, c);
    }
    for (int t = 0; t < T; ++t) {
        const __m256i a = load32(at[t][b].qs + 32 * c);
        for (int r = 0; r < R; ++r)
            sumi[r][t] = _mm256_add_epi32(sumi[r][t], _mm256_madd_epi16(sc[r], _mm256_maddubs_epi16(q[r], a)));
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
        for (int r = 0; r < 4; ++r) {
            const char* next = reinterpret_cast<const char*>(wr[r] + b) + 4 * wrb;  // this block, next quad
            for (size_t off = 0; off < sizeof(W); off += 64) _mm_prefetch(next + off, _MM_HINT_T0);
            dec[r].init(wr[r][b]);
            if constexpr (!K::kOwnSv) dec[r].sv = scale_lanes(dec[r].s16);
        }
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

using RowsFn = void (*)(int64_t n, int64_t nb, const uint8_t* act, size_t arb, const uint8_t* w, size_t wrb,
                        float* c, int64_t ldc);

// The shared loop: row chunks outside, token tiles of `tile` (≤ 4, then the rest) inside.
inline void gemm_tiled(const RowsFn (&rows)[5], int tile, int64_t block, int64_t m, int64_t n, int64_t k, const void* act,
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
        for (; t + tile <= m; t += tile) rows[tile](ni, nb, a8 + size_t(t) * arb, arb, w8 + size_t(i0) * wrb, wrb, c + t * ldc + i0, ldc);
        if (m - t > 0)
            rows[m - t](ni, nb, a8 + size_t(t) * arb, arb, w8 + size_t(i0) * wrb, wrb, c + t * ldc + i0, ldc);
    }
}

// Legacy tiles: quads of rows × T tokens.
template <class L>
struct Legacy {
    static constexpr RowsFn rows[5] = {nullptr, &legacy_rows<L, 1>, &legacy_rows<L, 2>, &legacy_rows<L, 3>,
                                       &legacy_rows<L, 4>};
    static constexpr int kTile = 4;
};

// Q4_K packed in groups of 8 rows (BlockQ4_Kx8) × T tokens. Per sub-block, the 8 vectors of the 8 rows'
// nibbles against T tokens as Q4_0's blocks (i16 sums: 8·2·15·127 < 2^15), then one vpmaddwd with the 8
// rows' scales (i16 pairs [sc, sc]) adds sc·Σ to each row's i32 total; the mins meet the activations'
// 16-element sums (bsums, paired per sub-block) through 4 vpmaddwd per token. No horizontal reductions.
// The Q8_K side of a Q4_Kx8 token tile, as ActSegExpanded / ActSegBroadcast are for the legacy tiles:
// piece(t, b, x) is bytes 4x..4x+3 of super-block b in all lanes, pair(t, b, p) the 16-element sums of
// sub-blocks 2p and 2p+1 as one i16 pair per lane, da the scale. Prompt tiles store them for 2
// super-blocks (4 tokens: 17 KiB); decode tiles broadcast in the loop over the whole row.
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

template <int T>
void q4_Kx8_rows(int64_t n, int64_t nb, const uint8_t* act, size_t arb, const uint8_t* w, size_t wrb, float* c, int64_t ldc) {
    (void)wrb;  // group i/8 starts nb·(i/8) packed super-blocks on
    using Seg = std::conditional_t<(T >= 3), KSegExpanded<T>, KSegBroadcast<T>>;
    alignas(32) Seg seg;
    const auto* groups = reinterpret_cast<const BlockQ4_Kx8*>(w);
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
                        for (int jj = 1; jj < 8; ++jj) {
                            s = _mm256_add_epi16(s, _mm256_maddubs_epi16(q[jj], seg.piece(t, b, 8 * sb + jj)));
                            asm("" : "+x"(s));  // one running sum: GCC's reassociated tree needs registers we do not have
                        }
                        isum[t] = _mm256_add_epi32(isum[t], _mm256_madd_epi16(s, sc));
                    }
                }
                const __m256 dv = _mm256_cvtph_ps(load16(blk.d)), mv = _mm256_cvtph_ps(load16(blk.dmin));
#pragma GCC unroll 4
                for (int t = 0; t < T; ++t) {
                    __m256i msum = _mm256_setzero_si256();
#pragma GCC unroll 4
                    for (int p = 0; p < 4; ++p) msum = _mm256_add_epi32(msum, _mm256_madd_epi16(load32(blk.mins[p]), seg.pair(t, b, p)));
                    const __m256 da = seg.da(t, b);
                    acc[t] = _mm256_fmadd_ps(_mm256_mul_ps(dv, da), _mm256_cvtepi32_ps(isum[t]), acc[t]);
                    acc[t] = _mm256_fnmadd_ps(_mm256_mul_ps(mv, da), _mm256_cvtepi32_ps(msum), acc[t]);
                }
            }
            store_rows8<T>(acc, c + i, ldc, valid, false);
        }
    }
}

struct PackedQ4_Kx8 {
    static constexpr RowsFn rows[5] = {nullptr, &q4_Kx8_rows<1>, &q4_Kx8_rows<2>, &q4_Kx8_rows<3>, &q4_Kx8_rows<4>};
    static constexpr int kTile = 4;
};

// 8-row interleaved layouts (Q4_0, Q8_0) × T tokens.
template <class B8>
struct Packed8 {
    static constexpr RowsFn rows[5] = {nullptr, &x8_rows<B8, 1>, &x8_rows<B8, 2>, &x8_rows<B8, 3>, &x8_rows<B8, 4>};
    static constexpr int kTile = 4;
};
using PackedQ4_0x8 = Packed8<BlockQ4_0x8>;
using PackedQ8_0x8 = Packed8<BlockQ8_0x8>;

// K-quant quads × T tokens, for quants below 32 (Q4_K, Q5_K: measured faster for decode, even for prompts;
// Q2_K and Q3_K measured no faster and keep the per-row tiles).
template <class K>
struct KQuad {
    static constexpr RowsFn rows[5] = {nullptr, &kq_rows<K, 1>, &kq_rows<K, 2>, &kq_rows<K, 3>, &kq_rows<K, 4>};
    static constexpr int kTile = 4;
};

// Q6_K (quants up to 63): 2 rows × 1 token (decode), else 1 row × T tokens (the integer accumulators fill the registers).
template <class K>
struct KQuant {
    static constexpr RowsFn rows[5] = {
        nullptr,
        &tile_rows<&k_tile<K, 2, 1>, 2, &k_tile<K, 1, 1>>,
        &tile_rows<&k_tile<K, 1, 2>, 1, &k_tile<K, 1, 2>>,
        &tile_rows<&k_tile<K, 1, 3>, 1, &k_tile<K, 1, 3>>,
        &tile_rows<&k_tile<K, 1, 4>, 1, &k_tile<K, 1, 4>>,
    };
    static constexpr int kTile = 4;
};

// ---- activation quantizers ----

inline __m256 abs_ps(__m256 v) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), v); }

inline float hmax(__m256 v) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}

// roundf: to nearest, halves away from zero (exact for |v| < 2^23).
inline __m256 round_half_away(__m256 v) {
    const __m256 t = _mm256_round_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    const __m256 frac = abs_ps(_mm256_sub_ps(v, t));
    const __m256 one = _mm256_or_ps(_mm256_and_ps(v, _mm256_set1_ps(-0.0f)), _mm256_set1_ps(1.0f));
    return _mm256_add_ps(t, _mm256_and_ps(_mm256_cmp_ps(frac, _mm256_set1_ps(0.5f), _CMP_GE_OQ), one));
}

// 4 × 8 int32 (elements in order) → 32 int8, saturating.
inline __m256i pack_i32x32(__m256i i0, __m256i i1, __m256i i2, __m256i i3) {
    const __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(i0, i1), _mm256_packs_epi32(i2, i3));
    return _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

inline int32_t hsum_i32(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm_cvtsi128_si32(s);
}

// x: [32] → qs, returns d (as the reference: d = max|x|/127, q = roundf(x·(1/d))); *sum = Σ q.
inline float quantize_q8_32(const float* x, int8_t* qs, int32_t* sum) {
    __m256 v[4];
    for (int i = 0; i < 4; ++i) v[i] = _mm256_loadu_ps(x + 8 * i);
    const float amax = hmax(_mm256_max_ps(_mm256_max_ps(abs_ps(v[0]), abs_ps(v[1])), _mm256_max_ps(abs_ps(v[2]), abs_ps(v[3]))));
    const float d = amax / 127.0f;
    const __m256 id = _mm256_set1_ps(d != 0.0f ? 1.0f / d : 0.0f);
    __m256i q[4];
    for (int i = 0; i < 4; ++i) q[i] = _mm256_cvttps_epi32(round_half_away(_mm256_mul_ps(v[i], id)));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(qs), pack_i32x32(q[0], q[1], q[2], q[3]));
    if (sum) *sum = hsum_i32(_mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3])));
    return d;
}

}  // namespace

// x: [k] → k/32 Q8_0 blocks, byte-identical to quantize_row_q8_0__ref
void quantize_row_q8_0__avx2(const float* x, void* y, int64_t k) {
    auto* out = static_cast<BlockQ8_0*>(y);
    for (int64_t b = 0; b < k / kQK; ++b) out[b].d = _cvtss_sh(quantize_q8_32(x + b * kQK, out[b].qs, nullptr), _MM_FROUND_TO_NEAREST_INT);
}

// x: [k] → k/32 Q8_1 blocks, byte-identical to quantize_row_q8_1__ref
void quantize_row_q8_1__avx2(const float* x, void* y, int64_t k) {
    auto* out = static_cast<BlockQ8_1*>(y);
    for (int64_t b = 0; b < k / kQK; ++b) {
        int32_t sum = 0;
        const float d = quantize_q8_32(x + b * kQK, out[b].qs, &sum);
        out[b].d = _cvtss_sh(d, _MM_FROUND_TO_NEAREST_INT);
        out[b].s = _cvtss_sh(float(sum) * d, _MM_FROUND_TO_NEAREST_INT);
    }
}

// x: [k] → k/256 Q8_K blocks, byte-identical to quantize_row_q8_K__ref
void quantize_row_q8_K__avx2(const float* x, void* y, int64_t k) {
    auto* out = static_cast<BlockQ8_K*>(y);
    for (int64_t b = 0; b < k / kQK_K; ++b, x += kQK_K) {
        BlockQ8_K& blk = out[b];
        __m256 mx = _mm256_setzero_ps();
        for (int i = 0; i < 32; ++i) mx = _mm256_max_ps(mx, abs_ps(_mm256_loadu_ps(x + 8 * i)));
        const float amax = hmax(mx);
        if (amax == 0.0f) {
            blk.d = 0.0f;
            std::memset(blk.qs, 0, sizeof(blk.qs));
            std::memset(blk.bsums, 0, sizeof(blk.bsums));
            continue;
        }
        float max = amax;  // the first value of largest magnitude, with its sign
        const __m256 am = _mm256_set1_ps(amax);
        for (int i = 0; i < 32; ++i) {
            const int mask = _mm256_movemask_ps(_mm256_cmp_ps(abs_ps(_mm256_loadu_ps(x + 8 * i)), am, _CMP_EQ_OQ));
            if (mask) {
                max = x[8 * i + __builtin_ctz(unsigned(mask))];
                break;
            }
        }
        const float iscale = -127.0f / max;
        const __m256 is = _mm256_set1_ps(iscale);
        __m128i sums[4];
        for (int g = 0; g < 8; ++g) {  // 32 values → 32 bytes and two group sums
            __m256i q[4];
            for (int i = 0; i < 4; ++i)
                q[i] = _mm256_cvttps_epi32(_mm256_round_ps(_mm256_mul_ps(_mm256_loadu_ps(x + 32 * g + 8 * i), is),
                                                           _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
            const __m256i packed = pack_i32x32(q[0], q[1], q[2], q[3]);
            _mm256_storeu_si256(reinterpret_cast<__m256i*>(blk.qs + 32 * g), packed);
            // group sums from the saturated bytes, as the reference sums its stored qs
            const __m256i b16 = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_set1_epi8(1), packed), _mm256_set1_epi16(1));
            // b16: lanes 0-3 = group 2g, lanes 4-7 = group 2g+1 (each lane the sum of 4 bytes)
            const __m128i lo = _mm256_castsi256_si128(b16), hi = _mm256_extracti128_si256(b16, 1);
            const __m128i s2 = _mm_hadd_epi32(lo, hi);     // [g0a, g0b, g1a, g1b]
            const __m128i s1 = _mm_hadd_epi32(s2, s2);     // [g0, g1, g0, g1]
            if (g % 2 == 0) sums[g / 2] = s1;
            else sums[g / 2] = _mm_unpacklo_epi64(sums[g / 2], s1);  // [g0, g1, g2, g3] of this pair
        }
        _mm_storeu_si128(reinterpret_cast<__m128i*>(blk.bsums), _mm_packs_epi32(sums[0], sums[1]));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(blk.bsums + 8), _mm_packs_epi32(sums[2], sums[3]));
        blk.d = 1.0f / iscale;
    }
}

#define CQ_GEMM_QUANT_AVX2(wt, at, Policy, block)                                                              \
    void gemm_##wt##_##at##__avx2(int64_t m, int64_t n, int64_t k, const void* act, size_t act_row_bytes,      \
                                  const void* w, size_t w_row_bytes, float* c, int64_t ldc) {                  \
        gemm_tiled(Policy::rows, Policy::kTile, block, m, n, k, act, act_row_bytes, w, w_row_bytes, c, ldc);                  \
    }

CQ_GEMM_QUANT_AVX2(q8_0, q8_0, Legacy<LQ8_0>, kQK)
CQ_GEMM_QUANT_AVX2(q4_0, q8_0, Legacy<LQ4_0>, kQK)
CQ_GEMM_QUANT_AVX2(q4_0x8, q8_0, PackedQ4_0x8, kQK)
CQ_GEMM_QUANT_AVX2(q8_0x8, q8_0, PackedQ8_0x8, kQK)
CQ_GEMM_QUANT_AVX2(q4_Kx8, q8_K, PackedQ4_Kx8, kQK_K)
CQ_GEMM_QUANT_AVX2(q5_0, q8_0, Legacy<LQ5_0>, kQK)
CQ_GEMM_QUANT_AVX2(q4_1, q8_1, Legacy<LQ4_1>, kQK)
CQ_GEMM_QUANT_AVX2(q5_1, q8_1, Legacy<LQ5_1>, kQK)
CQ_GEMM_QUANT_AVX2(q2_K, q8_K, KQuant<KQ2_K>, kQK_K)
CQ_GEMM_QUANT_AVX2(q3_K, q8_K, KQuant<KQ3_K>, kQK_K)
CQ_GEMM_QUANT_AVX2(q4_K, q8_K, KQuad<KQ4_K>, kQK_K)
CQ_GEMM_QUANT_AVX2(q5_K, q8_K, KQuad<KQ5_K>, kQK_K)
CQ_GEMM_QUANT_AVX2(q6_K, q8_K, KQuant<KQ6_K>, kQK_K)
#undef CQ_GEMM_QUANT_AVX2

}  // namespace cq::kernels
