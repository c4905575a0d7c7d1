// INT8 attention on AVX2 (attention_u8s8): the keys' and values' s8 quantizers and the softmax to u8 codes in 8 lanes
// (tails through the scalar helpers, whose operations the lanes repeat), around the AVX2 u8·s8 GEMM and row quantizer,
// which give the reference's bits.
#include <immintrin.h>

#include <cmath>
#include <cstdint>
#include <cstring>

#include "kernels/attention_u8s8_impl.h"
#include "kernels/x86/simd_x86.h"

namespace cq::kernels {
namespace {

using Scalar = ScalarAttentionU8Helpers;

// codes of x · inv (8 lanes): nearbyint, clamped to ±127 in float, as int32
inline __m256i s8_codes(__m256 x, __m256 inv) {
    __m256 c = _mm256_round_ps(_mm256_mul_ps(x, inv), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    c = _mm256_min_ps(_mm256_max_ps(c, _mm256_set1_ps(-127.0f)), _mm256_set1_ps(127.0f));
    return _mm256_cvttps_epi32(c);
}
// 16 int32 codes in [−127, 255] → 16 bytes (as their low bytes: s8 codes, or u8 codes ≤ 255)
inline __m128i bytes_of(__m256i lo, __m256i hi) {
    const __m256i w = _mm256_packs_epi32(lo, hi);  // 16-bit, lanes interleaved by 128-bit half
    const __m128i w16_lo = _mm256_castsi256_si128(w), w16_hi = _mm256_extracti128_si256(w, 1);
    // w16_lo: lo[0..3], hi[0..3]; w16_hi: lo[4..7], hi[4..7] → bytes lo[0..7], hi[0..7]
    const __m128i a = _mm_unpacklo_epi64(w16_lo, w16_hi), b = _mm_unpackhi_epi64(w16_lo, w16_hi);
    // s8 codes saturate exactly (±127); u8 codes ≤ 255 go through unsigned saturation
    return _mm_packus_epi16(_mm_and_si128(a, _mm_set1_epi16(0xFF)), _mm_and_si128(b, _mm_set1_epi16(0xFF)));
}

struct Avx2Helpers {
    static constexpr auto quantize_rows_u8_dynamic = &quantize_rows_u8_dynamic__avx2;
    static constexpr auto gemm = &gemm_u8s8_f32__avx2;

    static void quantize_pack_rows(const float* x, int64_t n, int64_t k, int64_t ldx, int8_t* packed, int32_t* sums, float* scale) {
        const int64_t kq = s8_quads(k), k16 = k / 16 * 16;
        std::memset(packed, 0, size_t(packed_s8_bytes(n, k)));
        for (int64_t c = 0; c < n; ++c) {
            const float* row = x + c * ldx;
            __m256 amax = _mm256_setzero_ps();
            int64_t i = 0;
            for (; i + 8 <= k; i += 8) amax = _mm256_max_ps(amax, abs_ps(_mm256_loadu_ps(row + i)));
            float m = hmax(amax);
            for (; i < k; ++i) m = std::max(m, std::fabs(row[i]));
            scale[c] = Scalar::s8_scale(m);
            const float inv_scalar = 1.0f / scale[c];
            const __m256 inv = _mm256_set1_ps(inv_scalar);
            int8_t* panel = packed + c / kS8PanelChannels * kq * kS8PanelChannels * kS8QuadInputs;
            int32_t* quads = reinterpret_cast<int32_t*>(panel) + c % kS8PanelChannels;
            __m256i sum = _mm256_setzero_si256();
            for (i = 0; i < k16; i += 16) {
                const __m256i lo = s8_codes(_mm256_loadu_ps(row + i), inv), hi = s8_codes(_mm256_loadu_ps(row + i + 8), inv);
                sum = _mm256_add_epi32(sum, _mm256_add_epi32(lo, hi));
                alignas(16) int32_t q4[4];
                _mm_store_si128(reinterpret_cast<__m128i*>(q4), bytes_of(lo, hi));
                for (int64_t q = 0; q < 4; ++q) quads[(i / 4 + q) * kS8PanelChannels] = q4[q];
            }
            int32_t total = hsum_i32(sum);
            for (; i < k; ++i) {
                const int8_t code = Scalar::s8_code(row[i], inv_scalar);
                panel[(i / kS8QuadInputs * kS8PanelChannels + c % kS8PanelChannels) * kS8QuadInputs + i % kS8QuadInputs] = code;
                total += code;
            }
            sums[c] = total;
        }
    }

    static void quantize_pack_columns(const float* x, int64_t n, int64_t k, int64_t ldx, int8_t* packed, float* scale) {
        const int64_t nq = s8_quads(n), k16 = k / 16 * 16;
        // whole groups of 16 channels in lanes; the last partial group (and the zero padding) as the scalar helper writes it
        if (k16 < k) {
            std::memset(packed + k16 / kS8PanelChannels * nq * kS8PanelChannels * kS8QuadInputs, 0,
                        size_t(packed_s8_bytes(k, n) - k16 * nq * kS8QuadInputs));
            for (int64_t c = k16; c < k; ++c) {
                float amax = 0.0f;
                for (int64_t r = 0; r < n; ++r) amax = std::max(amax, std::fabs(x[r * ldx + c]));
                scale[c] = Scalar::s8_scale(amax);
                const float inv = 1.0f / scale[c];
                int8_t* panel = packed + c / kS8PanelChannels * nq * kS8PanelChannels * kS8QuadInputs;
                for (int64_t r = 0; r < n; ++r)
                    panel[(r / kS8QuadInputs * kS8PanelChannels + c % kS8PanelChannels) * kS8QuadInputs + r % kS8QuadInputs] =
                        Scalar::s8_code(x[r * ldx + c], inv);
            }
        }
        for (int64_t c0 = 0; c0 < k16; c0 += 16) {
            __m256 amax0 = _mm256_setzero_ps(), amax1 = _mm256_setzero_ps();
            for (int64_t r = 0; r < n; ++r) {
                amax0 = _mm256_max_ps(amax0, abs_ps(_mm256_loadu_ps(x + r * ldx + c0)));
                amax1 = _mm256_max_ps(amax1, abs_ps(_mm256_loadu_ps(x + r * ldx + c0 + 8)));
            }
            alignas(32) float am[16];
            _mm256_store_ps(am, amax0);
            _mm256_store_ps(am + 8, amax1);
            alignas(32) float inv[16];
            for (int j = 0; j < 16; ++j) {
                scale[c0 + j] = Scalar::s8_scale(am[j]);
                inv[j] = 1.0f / scale[c0 + j];
            }
            const __m256 inv0 = _mm256_load_ps(inv), inv1 = _mm256_load_ps(inv + 8);
            __m128i* panel = reinterpret_cast<__m128i*>(packed + c0 / kS8PanelChannels * nq * kS8PanelChannels * kS8QuadInputs);
            for (int64_t r0 = 0; r0 < n; r0 += 4) {
                // four keys' codes of 16 channels, interleaved into one 64-byte quad
                __m128i rows[4];
                for (int64_t j = 0; j < 4; ++j) {
                    const float* xr = x + (r0 + j) * ldx + c0;
                    rows[j] = r0 + j < n ? bytes_of(s8_codes(_mm256_loadu_ps(xr), inv0), s8_codes(_mm256_loadu_ps(xr + 8), inv1)) : _mm_setzero_si128();
                }
                interleave_quad(rows, panel + r0 / 4 * 4);
            }
        }
    }

    static void softmax_rows_u8(const float* s, int64_t rows, int64_t seq, float scale, uint8_t* p, int64_t ldp, float* p_scale) {
        const __m256 vs = _mm256_set1_ps(scale), top = _mm256_set1_ps(255.0f);
        const int64_t s16 = seq / 16 * 16;
        for (int64_t i = 0; i < rows; ++i) {
            const float* row = s + i * seq;
            uint8_t* out = p + i * ldp;
            __m256 mx = _mm256_set1_ps(-INFINITY);
            int64_t j = 0;
            for (; j + 8 <= seq; j += 8) mx = _mm256_max_ps(mx, _mm256_loadu_ps(row + j));
            float m = hmax(mx);
            for (; j < seq; ++j) m = std::max(m, row[j]);
            const float shift_scalar = -scale * m;
            const __m256 shift = _mm256_set1_ps(shift_scalar);
            __m256i sum = _mm256_setzero_si256();
            const auto codes8 = [&](int64_t at) {
                const __m256 e = exp8(_mm256_fmadd_ps(_mm256_loadu_ps(row + at), vs, shift));
                const __m256 c = _mm256_min_ps(_mm256_round_ps(_mm256_mul_ps(e, top), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC), top);
                return _mm256_cvttps_epi32(c);
            };
            for (j = 0; j < s16; j += 16) {
                const __m256i lo = codes8(j), hi = codes8(j + 8);
                sum = _mm256_add_epi32(sum, _mm256_add_epi32(lo, hi));
                _mm_storeu_si128(reinterpret_cast<__m128i*>(out + j), bytes_of(lo, hi));
            }
            int32_t total = hsum_i32(sum);
            for (; j < seq; ++j) {
                float c = std::nearbyint(exp_nonpositive_scalar(std::fma(row[j], scale, shift_scalar)) * 255.0f);
                c = c < 255.0f ? c : 255.0f;
                out[j] = uint8_t(c);
                total += out[j];
            }
            for (j = seq; j < ldp; ++j) out[j] = 0;
            p_scale[i] = total > 0 ? 1.0f / float(total) : 0.0f;
        }
    }
};

}  // namespace

void attention_u8s8__avx2(int64_t seq, int64_t head_dim, const float* q, const float* k, const float* v, int64_t ld,
                          const int32_t* key_mask, float scale, float* out, int64_t ldo, uint8_t* scratch) {
    attention_u8s8<Avx2Helpers>(seq, head_dim, q, k, v, ld, key_mask, scale, out, ldo, scratch);
}

}  // namespace cq::kernels
