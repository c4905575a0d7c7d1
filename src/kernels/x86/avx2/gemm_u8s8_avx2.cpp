// AVX2 INT8 W8A8 kernels, exact without VNNI: vpmaddubsw would saturate u8·s8 pairs at int16, so the
// gemm widens both sides to int16 (weights once per quad for all rows of a tile, activations by one
// byte shuffle of a 4-byte broadcast) and sums pairs with vpmaddwd; and the u8 activation quantizers.
#include <immintrin.h>

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

// ---- activation quantizers: the reference's float sequence, 32 values at a time ----

// x: [k] → q: [round_up(k, 4)] in [0, qmax], zero_point in the padding.
// Divide: x / factor (static, ONNX QuantizeLinear's arithmetic), else x · factor (per-token dynamic), as the reference.
template <bool Divide>
void quantize_row_u8(const float* x, int64_t k, float factor, int32_t zero_point, int32_t qmax, uint8_t* q) {
    const __m256 f = _mm256_set1_ps(factor), zp = _mm256_set1_ps(float(zero_point));
    const __m256 zero = _mm256_setzero_ps(), top = _mm256_set1_ps(float(qmax));
    auto quantize8 = [&](const float* p) {
        const __m256 x8 = _mm256_loadu_ps(p);
        __m256 v = _mm256_round_ps(Divide ? _mm256_div_ps(x8, f) : _mm256_mul_ps(x8, f), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        v = _mm256_min_ps(_mm256_max_ps(_mm256_add_ps(v, zp), zero), top);
        return _mm256_cvttps_epi32(v);
    };
    int64_t i = 0;
    for (; i + 32 <= k; i += 32) {
        const __m256i lo = _mm256_packs_epi32(quantize8(x + i), quantize8(x + i + 8));
        const __m256i hi = _mm256_packs_epi32(quantize8(x + i + 16), quantize8(x + i + 24));
        // the packs interleave 128-bit lanes: bytes arrive as dwords 0 4 1 5 2 6 3 7
        const __m256i bytes = _mm256_permutevar8x32_epi32(_mm256_packus_epi16(lo, hi), _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(q + i), bytes);
    }
    const float zpf = float(zero_point), topf = float(qmax);
    for (; i < k; ++i) {
        float v = std::nearbyint(Divide ? x[i] / factor : x[i] * factor) + zpf;
        v = v > 0.0f ? v : 0.0f;
        v = v < topf ? v : topf;
        q[i] = uint8_t(v);
    }
    for (; i < round_up(k, kS8QuadInputs); ++i) q[i] = uint8_t(zero_point);
}

// ---- gemm ----

inline uint32_t load_u32(const uint8_t* p) {
    uint32_t v;
    std::memcpy(&v, p, sizeof(v));
    return v;
}

using GemmArgs = Int8GemmArgs;

// Rows [t0, t0 + MR) × the 16 channels [i0, i0 + valid) of one panel w (kq quads of 64 bytes).
// acc[r][j] holds, for channels 4j..4j+3, two pair sums per channel (inputs 0,1 and 2,3 of each quad).
template <int MR>
void tile(const GemmArgs& g, const int8_t* w, int64_t t0, int64_t i0, int64_t valid) {
    // zero-extends the 4 bytes of each dword to 4 int16 (in both 128-bit lanes)
    const __m256i widen = _mm256_setr_epi8(0, -1, 1, -1, 2, -1, 3, -1, 0, -1, 1, -1, 2, -1, 3, -1,
                                           0, -1, 1, -1, 2, -1, 3, -1, 0, -1, 1, -1, 2, -1, 3, -1);
    const uint8_t* a = g.a + t0 * g.lda;
    __m256i acc[MR][4];
#pragma GCC unroll 16
    for (int r = 0; r < MR; ++r)
#pragma GCC unroll 16
        for (int j = 0; j < 4; ++j) acc[r][j] = _mm256_setzero_si256();
    for (int64_t q = 0; q < g.kq; ++q) {
        __m256i av[MR];
#pragma GCC unroll 16
        for (int r = 0; r < MR; ++r)
            av[r] = _mm256_shuffle_epi8(_mm256_set1_epi32(int32_t(load_u32(a + r * g.lda + 4 * q))), widen);
        const int8_t* wq = w + q * 64;
#pragma GCC unroll 16
        for (int j = 0; j < 4; ++j) {
            // channels 4j, 4j+1 | 4j+2, 4j+3, each as 4 int16 inputs
            const __m256i wv = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(wq + 16 * j)));
#pragma GCC unroll 16
            for (int r = 0; r < MR; ++r) acc[r][j] = _mm256_add_epi32(acc[r][j], _mm256_madd_epi16(wv, av[r]));
        }
    }
    // through memory, so that the accumulators are only ever indexed by constants (GCC keeps them in
    // registers only when every loop over them is unrolled, hence the pragmas)
    alignas(32) int32_t tot[MR][32];
#pragma GCC unroll 16
    for (int r = 0; r < MR; ++r)
#pragma GCC unroll 16
        for (int j = 0; j < 4; ++j) _mm256_store_si256(reinterpret_cast<__m256i*>(&tot[r][8 * j]), acc[r][j]);
    alignas(32) int32_t sums[16];
    alignas(32) float scale[16], bias[16];
    for (int64_t i = 0; i < 16; ++i) {  // the partial last panel reads only its valid channels
        sums[i] = i < valid ? g.w_sums[i0 + i] : 0;
        scale[i] = i < valid ? g.w_scale[i0 + i] : 0.0f;
        bias[i] = i < valid && g.bias ? g.bias[i0 + i] : 0.0f;
    }
    // hadd leaves channels in dword order 0 1 4 5 | 2 3 6 7 (per group of 8)
    const __m256i order = _mm256_setr_epi32(0, 1, 4, 5, 2, 3, 6, 7);
    for (int r = 0; r < MR; ++r) {
        const int64_t t = t0 + r;
        const __m256i zp = _mm256_set1_epi32(g.a_zero_point[t * g.a_param_stride]);
        const __m256 as = _mm256_set1_ps(g.a_scale[t * g.a_param_stride]);
        float* ct = g.c + t * g.ldc + i0;
        alignas(32) float out[16];
        for (int h = 0; h < 2; ++h) {
            const __m256i lo = _mm256_load_si256(reinterpret_cast<const __m256i*>(&tot[r][16 * h]));
            const __m256i hi = _mm256_load_si256(reinterpret_cast<const __m256i*>(&tot[r][16 * h + 8]));
            __m256i s = _mm256_permutevar8x32_epi32(_mm256_hadd_epi32(lo, hi), order);
            s = _mm256_sub_epi32(s, _mm256_mullo_epi32(zp, _mm256_load_si256(reinterpret_cast<const __m256i*>(sums + 8 * h))));
            const __m256 f = _mm256_cvtepi32_ps(s);
            const __m256 sc = _mm256_mul_ps(as, _mm256_load_ps(scale + 8 * h));
            const __m256 v = g.bias ? _mm256_fmadd_ps(f, sc, _mm256_load_ps(bias + 8 * h)) : _mm256_mul_ps(f, sc);
            if (valid == 16)
                _mm256_storeu_ps(ct + 8 * h, v);
            else
                _mm256_store_ps(out + 8 * h, v);
        }
        if (valid < 16) std::memcpy(ct, out, size_t(valid) * sizeof(float));
    }
}

constexpr int kTileRows = 2;  // 8 accumulators: 3 rows (12) spill with the weights, broadcasts and products
using TileFn = void (*)(const GemmArgs&, const int8_t*, int64_t, int64_t, int64_t);
template <int... R>
constexpr std::array<TileFn, sizeof...(R)> tiles_by_rows(std::integer_sequence<int, R...>) {
    return {&tile<R + 1>...};
}
constexpr auto kTiles = tiles_by_rows(std::make_integer_sequence<int, kTileRows>());

}  // namespace

// x: [m, k] → q: [m, round_up(k, 4)], scale / zero_point: [m]
void quantize_rows_u8_dynamic__avx2(const float* x, int64_t m, int64_t k, int64_t ldx, int32_t qmax, uint8_t* q,
                                    int64_t ldq, float* scale, int32_t* zero_point) {
    for (int64_t t = 0; t < m; ++t) {
        const float* row = x + t * ldx;
        __m256 vlo = _mm256_setzero_ps(), vhi = _mm256_setzero_ps();
        int64_t i = 0;
        for (; i + 8 <= k; i += 8) {
            const __m256 v = _mm256_loadu_ps(row + i);
            vlo = _mm256_min_ps(vlo, v);
            vhi = _mm256_max_ps(vhi, v);
        }
        alignas(32) float l8[8], h8[8];
        _mm256_store_ps(l8, vlo);
        _mm256_store_ps(h8, vhi);
        float lo = 0.0f, hi = 0.0f;
        for (int j = 0; j < 8; ++j) {
            lo = l8[j] < lo ? l8[j] : lo;
            hi = h8[j] > hi ? h8[j] : hi;
        }
        for (; i < k; ++i) {
            lo = row[i] < lo ? row[i] : lo;
            hi = row[i] > hi ? row[i] : hi;
        }
        u8_quant_params_from_range(lo, hi, qmax, &scale[t], &zero_point[t]);
        quantize_row_u8<false>(row, k, 1.0f / scale[t], zero_point[t], qmax, q + t * ldq);
    }
}

// x: [m, k] → q: [m, round_up(k, 4)]
void quantize_rows_u8_static__avx2(const float* x, int64_t m, int64_t k, int64_t ldx, float scale, int32_t zero_point,
                                   int32_t qmax, uint8_t* q, int64_t ldq) {
    for (int64_t t = 0; t < m; ++t) quantize_row_u8<true>(x + t * ldx, k, scale, zero_point, qmax, q + t * ldq);
}

// a: [m, k] u8 · packed w: [n, k] s8 → c: [m, n] f32; one panel at a time, all rows through it (the
// panel, 16·k bytes, stays in L1/L2 while the activations stream).
void gemm_u8s8_f32__avx2(int64_t m, int64_t n, int64_t k, const uint8_t* a, int64_t lda, const float* a_scale,
                         const int32_t* a_zero_point, int64_t a_param_stride, const int8_t* packed_w,
                         const int32_t* w_sums, const float* w_scale, const float* bias, float* c, int64_t ldc) {
    const GemmArgs g{s8_quads(k), lda, 0, a, a_scale, a_zero_point, a_param_stride, w_sums, w_scale, bias, c, ldc, n};
    const int64_t panel_bytes = packed_s8_panel_bytes(k);
    for (int64_t i0 = 0; i0 < n; i0 += kS8PanelChannels) {
        const int8_t* w = packed_w + (i0 / kS8PanelChannels) * panel_bytes;
        const int64_t valid = n - i0 < kS8PanelChannels ? n - i0 : kS8PanelChannels;
        int64_t t = 0;
        for (; t + kTileRows <= m; t += kTileRows) tile<kTileRows>(g, w, t, i0, valid);
        if (t < m) kTiles[size_t(m - t - 1)](g, w, t, i0, valid);
    }
}

}  // namespace cq::kernels
