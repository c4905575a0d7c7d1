// AVX-512 VNNI INT8 W8A8 kernels: vpdpbusd straight on the packed panels (one zmm of 16 int32 sums per
// panel and row; tiles of up to 6 rows × 4 panels = 24 accumulators), and the u8 activation quantizers.
#include "kernels/x86/avx512_prelude.h"

#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <utility>

#include "cq/int8_gemm.h"
#include "kernels/int8_gemm_args.h"
#include "kernels/kernel_decls.h"

namespace cq::kernels {
namespace {

// ---- activation quantizers: the reference's float sequence, 16 values at a time ----

// 16 bytes to q, only the live ones. Whole vectors take a plain store: GCC folds a masked one into vpmovdb's memory
// form, which Zen 4 runs several times slower than the register form and a store.
inline void store_u8(uint8_t* q, __mmask16 live, __m128i bytes) {
    if (live == 0xFFFF) _mm_storeu_si128(reinterpret_cast<__m128i*>(q), bytes);
    else _mm_mask_storeu_epi8(q, live, bytes);
}

// x: [k] → q: [round_up(k, 4)] in [0, qmax], zero_point in the padding.
// Divide: x / factor (static, ONNX QuantizeLinear's arithmetic), else x · factor (per-token dynamic), as the reference.
template <bool Divide>
void quantize_row_u8(const float* x, int64_t k, float factor, int32_t zero_point, int32_t qmax, uint8_t* q) {
    const __m512 f = _mm512_set1_ps(factor), zp = _mm512_set1_ps(float(zero_point));
    const __m512 zero = _mm512_setzero_ps(), top = _mm512_set1_ps(float(qmax));
    for (int64_t i = 0; i < k; i += 16) {
        const __mmask16 live = k - i >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (k - i)) - 1);
        const __m512 x16 = _mm512_maskz_loadu_ps(live, x + i);
        __m512 v = Divide ? _mm512_div_ps(x16, f) : _mm512_mul_ps(x16, f);
        v = _mm512_roundscale_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        v = _mm512_min_ps(_mm512_max_ps(_mm512_add_ps(v, zp), zero), top);
        store_u8(q + i, live, _mm512_cvtepi32_epi8(_mm512_cvttps_epi32(v)));
    }
    for (int64_t i = k; i < round_up(k, kS8QuadInputs); ++i) q[i] = uint8_t(zero_point);
}

// ---- gemm ----

inline int32_t load_i32(const uint8_t* p) {
    int32_t v;
    std::memcpy(&v, p, sizeof(v));
    return v;
}

using GemmArgs = Int8GemmArgs;

// Rows [t0, t0 + MR) × panels [p0, p0 + NP) (w: panel p0): acc[r][p] = Σ over quads of vpdpbusd with the
// row's 4 activation bytes broadcast, then the epilogue, masked to the channels below n.
template <int MR, int NP>
void tile(const GemmArgs& g, const int8_t* w, int64_t t0, int64_t p0) {
    const uint8_t* a = g.a + t0 * g.lda;
    // The loops over r and p are unrolled whole, and the k loop walks two pointers: written with indexed
    // loads and a plain epilogue, GCC 12 kept a memory copy of every accumulator and stored all 24 on each
    // k step (24 zmm stores per 24 vpdpbusd: store-bound, about half the VNNI peak). The sums go through
    // memory once, after the loop.
    __m512i acc[MR][NP];
#pragma GCC unroll 16
    for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
        for (int p = 0; p < NP; ++p) acc[r][p] = _mm512_setzero_si512();
    const int8_t* wq = w;
    const uint8_t* aq = a;
    for (int64_t q = 0; q < g.kq; ++q, wq += 64, aq += 4) {
        __m512i wv[NP];
#pragma GCC unroll 4
        for (int p = 0; p < NP; ++p) wv[p] = _mm512_loadu_si512(wq + p * g.panel_bytes);
#pragma GCC unroll 16
        for (int r = 0; r < MR; ++r) {
            const __m512i av = _mm512_set1_epi32(load_i32(aq + r * g.lda));
#pragma GCC unroll 4
            for (int p = 0; p < NP; ++p) acc[r][p] = _mm512_dpbusd_epi32(acc[r][p], av, wv[p]);
        }
    }
    alignas(64) int32_t sums_of_tile[MR][NP][kS8PanelChannels];
#pragma GCC unroll 16
    for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
        for (int p = 0; p < NP; ++p) _mm512_store_si512(sums_of_tile[r][p], acc[r][p]);
    for (int p = 0; p < NP; ++p) {
        const int64_t i0 = (p0 + p) * kS8PanelChannels;
        const int64_t valid = g.n - i0 < kS8PanelChannels ? g.n - i0 : kS8PanelChannels;
        const __mmask16 live = __mmask16((1u << valid) - 1);
        const __m512i sums = _mm512_maskz_loadu_epi32(live, g.w_sums + i0);
        const __m512 scale = _mm512_maskz_loadu_ps(live, g.w_scale + i0);
        const __m512 bias = g.bias ? _mm512_maskz_loadu_ps(live, g.bias + i0) : _mm512_setzero_ps();
        for (int r = 0; r < MR; ++r) {
            const int64_t t = t0 + r;
            const __m512i zp = _mm512_set1_epi32(g.a_zero_point[t * g.a_param_stride]);
            const __m512i dot = _mm512_load_si512(sums_of_tile[r][p]);
            const __m512 f = _mm512_cvtepi32_ps(_mm512_sub_epi32(dot, _mm512_mullo_epi32(zp, sums)));
            const __m512 s = _mm512_mul_ps(_mm512_set1_ps(g.a_scale[t * g.a_param_stride]), scale);
            const __m512 v = g.bias ? _mm512_fmadd_ps(f, s, bias) : _mm512_mul_ps(f, s);
            _mm512_mask_storeu_ps(g.c + t * g.ldc + i0, live, v);
        }
    }
}

// 6 rows × 4 panels: 24 accumulators, 4 weight vectors and one broadcast in 29 of the 32 registers, 10 loads per
// 24 vpdpbusd. Measured on Zen 4 (CPU time, BERT-base products): 5-9 % faster than 12 × 2 (14 loads per 24), and
// 8 × 3 and 4 × 4 in between.
constexpr int kTileRows = 6;
constexpr int kTilePanels = 4;
using TileFn = void (*)(const GemmArgs&, const int8_t*, int64_t, int64_t);
template <int NP, int... R>
constexpr std::array<TileFn, sizeof...(R)> tiles_by_rows(std::integer_sequence<int, R...>) {
    return {&tile<R + 1, NP>...};
}
template <int... P>
constexpr std::array<std::array<TileFn, kTileRows>, sizeof...(P)> tiles_by_panels(std::integer_sequence<int, P...>) {
    return {tiles_by_rows<P + 1>(std::make_integer_sequence<int, kTileRows>())...};
}
// [panels − 1][rows − 1]
constexpr auto kTiles = tiles_by_panels(std::make_integer_sequence<int, kTilePanels>());

}  // namespace

// x: [m, k] → q: [m, round_up(k, 4)], scale / zero_point: [m]
void quantize_rows_u8_dynamic__avx512vnni(const float* x, int64_t m, int64_t k, int64_t ldx, int32_t qmax, uint8_t* q,
                                          int64_t ldq, float* scale, int32_t* zero_point) {
    for (int64_t t = 0; t < m; ++t) {
        const float* row = x + t * ldx;
        // masked-off lanes load 0, which the range holds anyway
        __m512 vlo = _mm512_setzero_ps(), vhi = _mm512_setzero_ps();
        for (int64_t i = 0; i < k; i += 16) {
            const __mmask16 live = k - i >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (k - i)) - 1);
            const __m512 v = _mm512_maskz_loadu_ps(live, row + i);
            vlo = _mm512_min_ps(vlo, v);
            vhi = _mm512_max_ps(vhi, v);
        }
        u8_quant_params_from_range(_mm512_reduce_min_ps(vlo), _mm512_reduce_max_ps(vhi), qmax, &scale[t], &zero_point[t]);
        quantize_row_u8<false>(row, k, 1.0f / scale[t], zero_point[t], qmax, q + t * ldq);
    }
}

// x: [m, k] → q: [m, round_up(k, 4)]
void quantize_rows_u8_static__avx512vnni(const float* x, int64_t m, int64_t k, int64_t ldx, float scale,
                                         int32_t zero_point, int32_t qmax, uint8_t* q, int64_t ldq) {
    for (int64_t t = 0; t < m; ++t) quantize_row_u8<true>(x + t * ldx, k, scale, zero_point, qmax, q + t * ldq);
}

// a: [m, k] u8 · packed w: [n, k] s8 → c: [m, n] f32; four panels at a time (64·k bytes of weights, held
// in L2) against every row, 6 rows per tile.
void gemm_u8s8_f32__avx512vnni(int64_t m, int64_t n, int64_t k, const uint8_t* a, int64_t lda, const float* a_scale,
                               const int32_t* a_zero_point, int64_t a_param_stride, const int8_t* packed_w,
                               const int32_t* w_sums, const float* w_scale, const float* bias, float* c, int64_t ldc) {
    const GemmArgs g{s8_quads(k), lda, packed_s8_panel_bytes(k), a, a_scale, a_zero_point, a_param_stride,
                     w_sums, w_scale, bias, c, ldc, n};
    const int64_t n_panels = (n + kS8PanelChannels - 1) / kS8PanelChannels;
    for (int64_t p = 0; p < n_panels; p += kTilePanels) {
        const int64_t np = n_panels - p < kTilePanels ? n_panels - p : kTilePanels;
        const int8_t* w = packed_w + p * g.panel_bytes;
        const auto& tiles = kTiles[size_t(np - 1)];
        int64_t t = 0;
        for (; t + kTileRows <= m; t += kTileRows) tiles[kTileRows - 1](g, w, t, p);
        if (t < m) tiles[size_t(m - t - 1)](g, w, t, p);
    }
}

}  // namespace cq::kernels
