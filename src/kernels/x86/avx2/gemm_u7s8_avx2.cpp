// AVX2 INT8 W8A8 gemm for 7-bit activations (every a ≤ 127): vpmaddubsw multiplies u8·s8 and adds pairs
// to int16, exact since |a0·w0 + a1·w1| ≤ 2·127·128 = 32512 < 2^15, then vpmaddwd with ones sums the two
// pairs of a quad into int32 — twice the products per instruction of the widening u8s8 kernel.
#include <immintrin.h>

#include <array>
#include <cstdint>
#include <cstring>
#include <utility>

#include "cq/int8_gemm.h"
#include "kernels/int8_gemm_args.h"
#include "kernels/kernel_decls.h"

namespace cq::kernels {
namespace {

inline int32_t load_i32(const uint8_t* p) {
    int32_t v;
    std::memcpy(&v, p, sizeof(v));
    return v;
}

// 6 rows × 1 panel: 12 accumulators + weights, broadcast and ones fill the 16 ymm registers.
constexpr int kTileRows = 6;
constexpr int kTilePanels = 1;
constexpr int kGroups = 2 * kTilePanels;  // groups of 8 channels: one ymm of int32 sums each

using GemmArgs = Int8GemmArgs;  // w_sums / w_scale / bias: those of the tile's channels, zero past n

// Rows [t0, t0 + MR) × panels [p0, p0 + NP) (w: panel p0; i0 its first channel, valid channels below n).
// Quad q of a panel is 64 bytes: channels 0–7 × 4 inputs, then 8–15; with the row's 4 bytes broadcast,
// vpmaddubsw + vpmaddwd(ones) gives one int32 per channel: acc[r][g] holds channels 8g..8g+7 in order.
template <int MR, int NP>
void tile(const GemmArgs& g, const int8_t* w, int64_t t0, int64_t i0, int64_t valid) {
    constexpr int G = 2 * NP;
    const __m256i ones = _mm256_set1_epi16(1);
    const uint8_t* a = g.a + t0 * g.lda;
    __m256i acc[MR][G];
#pragma GCC unroll 16
    for (int r = 0; r < MR; ++r)
#pragma GCC unroll 16
        for (int j = 0; j < G; ++j) acc[r][j] = _mm256_setzero_si256();
    for (int64_t q = 0; q < g.kq; ++q) {
        __m256i wv[G];
#pragma GCC unroll 16
        for (int j = 0; j < G; ++j)
            wv[j] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + (j / 2) * g.panel_bytes + q * 64 + (j % 2) * 32));
#pragma GCC unroll 16
        for (int r = 0; r < MR; ++r) {
            const __m256i av = _mm256_set1_epi32(load_i32(a + r * g.lda + 4 * q));
#pragma GCC unroll 16
            for (int j = 0; j < G; ++j)
                acc[r][j] = _mm256_add_epi32(acc[r][j], _mm256_madd_epi16(_mm256_maddubs_epi16(av, wv[j]), ones));
        }
    }
    // through memory, so that the accumulators are only ever indexed by constants (GCC keeps them in
    // registers only when every loop over them is unrolled, hence the pragmas)
    alignas(32) int32_t tot[MR][8 * G];
#pragma GCC unroll 16
    for (int r = 0; r < MR; ++r)
#pragma GCC unroll 16
        for (int j = 0; j < G; ++j) _mm256_store_si256(reinterpret_cast<__m256i*>(&tot[r][8 * j]), acc[r][j]);
    for (int r = 0; r < MR; ++r) {
        const int64_t t = t0 + r;
        const __m256i zp = _mm256_set1_epi32(g.a_zero_point[t * g.a_param_stride]);
        const __m256 as = _mm256_set1_ps(g.a_scale[t * g.a_param_stride]);
        float* ct = g.c + t * g.ldc + i0;
        alignas(32) float out[8 * G];
        for (int j = 0; j < G; ++j) {
            const __m256i s = _mm256_sub_epi32(_mm256_load_si256(reinterpret_cast<const __m256i*>(&tot[r][8 * j])), _mm256_mullo_epi32(zp, _mm256_load_si256(reinterpret_cast<const __m256i*>(g.w_sums + 8 * j))));
            const __m256 f = _mm256_cvtepi32_ps(s);
            const __m256 sc = _mm256_mul_ps(as, _mm256_load_ps(g.w_scale + 8 * j));
            const __m256 v = g.bias ? _mm256_fmadd_ps(f, sc, _mm256_load_ps(g.bias + 8 * j)) : _mm256_mul_ps(f, sc);
            if (valid == 8 * G)
                _mm256_storeu_ps(ct + 8 * j, v);
            else
                _mm256_store_ps(out + 8 * j, v);
        }
        if (valid < 8 * G) std::memcpy(ct, out, size_t(valid) * sizeof(float));
    }
}

using TileFn = void (*)(const GemmArgs&, const int8_t*, int64_t, int64_t, int64_t);
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

// a: [m, k] u8 (≤ 127) · packed w: [n, k] s8 → c: [m, n] f32; kTilePanels panels at a time (16·k bytes
// of weights each, in L1/L2) against every row, kTileRows rows per tile.
void gemm_u7s8_f32__avx2(int64_t m, int64_t n, int64_t k, const uint8_t* a, int64_t lda, const float* a_scale,
                         const int32_t* a_zero_point, int64_t a_param_stride, const int8_t* packed_w,
                         const int32_t* w_sums, const float* w_scale, const float* bias, float* c, int64_t ldc) {
    alignas(32) int32_t sums[8 * kGroups];
    alignas(32) float scale[8 * kGroups], bias_tile[8 * kGroups];
    GemmArgs g{s8_quads(k), lda, packed_s8_panel_bytes(k), a, a_scale, a_zero_point, a_param_stride,
               sums, scale, bias ? bias_tile : nullptr, c, ldc, n};
    const int64_t n_panels = (n + kS8PanelChannels - 1) / kS8PanelChannels;
    for (int64_t p = 0; p < n_panels; p += kTilePanels) {
        const int64_t np = n_panels - p < kTilePanels ? n_panels - p : kTilePanels;
        const int64_t i0 = p * kS8PanelChannels;
        const int64_t valid = n - i0 < np * kS8PanelChannels ? n - i0 : np * kS8PanelChannels;
        for (int64_t i = 0; i < 8 * kGroups; ++i) {  // a partial last panel reads only its valid channels
            sums[i] = i < valid ? w_sums[i0 + i] : 0;
            scale[i] = i < valid ? w_scale[i0 + i] : 0.0f;
            bias_tile[i] = i < valid && bias ? bias[i0 + i] : 0.0f;
        }
        const int8_t* w = packed_w + p * g.panel_bytes;
        const auto& tiles = kTiles[size_t(np - 1)];
        int64_t t = 0;
        for (; t + kTileRows <= m; t += kTileRows) tiles[kTileRows - 1](g, w, t, i0, valid);
        if (t < m) tiles[size_t(m - t - 1)](g, w, t, i0, valid);
    }
}

}  // namespace cq::kernels
