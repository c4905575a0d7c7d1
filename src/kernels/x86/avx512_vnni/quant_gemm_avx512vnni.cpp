// AVX-512 VNNI quantized matrix products: the shared x86 tiles (kernels/x86/quant_tiles_x86.h) on 256-bit
// vectors with vpdpbusd / vpdpwssd as their dot step (AVX512VL gives 32 registers, so k-quant tiles take 2
// rows), the 8-row packed layouts included (Q8_0 weights there as w + 128 against a 128·Σa correction).
// The file-layout legacy tiles here: weights offset to unsigned bytes (Q8_0: w + 128; Q4_0: the nibble
// q = w + 8), and the accumulator of every (row, token) pair starts at −offset·Σa, computed once per token
// block. K-quants: vpmaddubsw (u8 quants × s8 activations, no saturation possible) then vpdpwssd.
#include "kernels/x86/avx512_prelude.h"

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "formats/blocks.h"
#include "kernels/kernel_decls.h"
#include "kernels/x86/quant_tiles_x86.h"

namespace cq::kernels {
namespace {

// The dot step of the shared tiles: vpdpbusd straight into i32 (exact for any u8 × s8), vpdpwssd for
// i16 pairs; 32 vector registers.
struct DotVnni {
    static __m256i first(__m256i u, __m256i s) { return _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, s); }
    static __m256i next(__m256i sum, __m256i u, __m256i s) { return _mm256_dpbusd_epi32(sum, u, s); }
    static __m256i to_i32(__m256i sum) { return sum; }
    static __m256i madd_acc(__m256i acc, __m256i a, __m256i b) { return _mm256_dpwssd_epi32(acc, a, b); }
    static __m256i pin(__m256i v) {
        asm("" : "+v"(v));
        return v;
    }
    static constexpr size_t kKChunkBytes = size_t{64} << 10;  // row chunks of the file-layout k-quant tiles
    static constexpr bool kOffsetQ8 = true;
    static constexpr int kKRows = 2;
    static constexpr int kKDecodeRows = 1;  // one row per decode tile: on Zen 4 two interleaved rows ran Q6_K decode at 0.6x one row (bench_dispatch gemv_q6_K, 29 vs 48 GOP/s)
};

// ---- legacy formats ----

struct VQ8_0 {
    using W = BlockQ8_0;
    static constexpr int kOffset = 128;
    static __m256i u(const W& b) { return _mm256_xor_si256(load32(b.qs), _mm256_set1_epi8(char(0x80))); }
};
struct VQ4_0 {
    using W = BlockQ4_0;
    static constexpr int kOffset = 8;
    static __m256i u(const W& b) { return nibbles32(b.qs); }
};

// The activation side of one token tile over a segment of at most kSeg blocks, decoded once for every row
// tile that passes: scales as floats and the accumulator start −offset·Σa.
constexpr int64_t kSeg = 128;  // blocks per segment

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
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) wr[r] = reinterpret_cast<const W*>(w + size_t(r) * wrb);
    // Every loop over r and t is unrolled whole: GCC 12 otherwise keeps acc[][] in memory for the epilogue's
    // loop and stores all R·T accumulators on every block (the u8s8 GEMM's tile had the same problem).
    __m256 acc[R][T];
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r)
#pragma GCC unroll 8
        for (int t = 0; t < T; ++t) acc[r][t] = _mm256_setzero_ps();
    for (int64_t b = 0; b < ns; ++b) {
        __m256i u[R];
        __m256 dw[R];
#pragma GCC unroll 8
        for (int r = 0; r < R; ++r) {
            _mm_prefetch(reinterpret_cast<const char*>(wr[r] + b) + R * wrb, _MM_HINT_T0);  // next row tile
            u[r] = L::u(wr[r][b]);
            dw[r] = _mm256_cvtph_ps(_mm_set1_epi16(int16_t(wr[r][b].d)));
        }
#pragma GCC unroll 8
        for (int t = 0; t < T; ++t) {
            const __m256i a = load32(at[t][b].qs);
            const __m256 da = _mm256_broadcast_ss(&seg.d[t][b]);
#pragma GCC unroll 8
            for (int r = 0; r < R; ++r) {
                const __m256i p = _mm256_dpbusd_epi32(seg.start[t][b], u[r], a);
                acc[r][t] = _mm256_fmadd_ps(_mm256_mul_ps(dw[r], da), _mm256_cvtepi32_ps(p), acc[r][t]);
            }
        }
    }
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r)
#pragma GCC unroll 8
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


// Legacy tiles: 4 rows × T tokens.
template <class L>
struct Legacy {
    static constexpr RowsFn rows[5] = CQ_ROWS_TABLE(legacy_rows, L);
};
template <class K>
using KQuantVnni = KQuant<DotVnni, K>;

}  // namespace

CQ_DEFINE_GEMM_QUANT(q8_0, q8_0, avx512vnni, Legacy<VQ8_0>, kQK)
CQ_DEFINE_GEMM_QUANT(q4_0, q8_0, avx512vnni, Legacy<VQ4_0>, kQK)
CQ_DEFINE_GEMM_QUANT(q4_K, q8_K, avx512vnni, KQuantVnni<KQ4_K>, kQK_K)
CQ_DEFINE_GEMM_QUANT(q6_K, q8_K, avx512vnni, KQuantVnni<KQ6_K>, kQK_K)
CQ_DEFINE_GEMM_QUANT(q4_0x8, q8_0, avx512vnni, PackedQ4_0x8<DotVnni>, kQK)
CQ_DEFINE_GEMM_QUANT(q8_0x8, q8_0, avx512vnni, PackedQ8_0x8<DotVnni>, kQK)
CQ_DEFINE_GEMM_QUANT(q4_Kx8, q8_K, avx512vnni, PackedQ4_Kx8<DotVnni>, kQK_K)

}  // namespace cq::kernels
