// INT8 attention on AVX-512 VNNI (attention_u8s8): the keys' and values' s8 quantizers write the packed panels
// directly (values: four keys' codes of 16 channels interleaved into one 64-byte quad), the softmax to u8 codes runs
// in 16 lanes, and both products are the VNNI u8·s8 GEMM — each step the scalar helpers' operations, so the bits.
#include "kernels/x86/avx512_prelude.h"

#include <cmath>
#include <cstdint>
#include <cstring>

#include "kernels/attention_u8s8_impl.h"
#include "kernels/x86/simd_x86.h"

namespace cq::kernels {
namespace {

inline __mmask16 lanes(int64_t left) { return left >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << left) - 1u); }

// codes of x · inv (16 lanes): nearbyint, clamped to ±127 in float, as int32
inline __m512i s8_codes(__m512 x, __m512 inv) {
    __m512 c = _mm512_roundscale_ps(_mm512_mul_ps(x, inv), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    c = _mm512_min_ps(_mm512_max_ps(c, _mm512_set1_ps(-127.0f)), _mm512_set1_ps(127.0f));
    return _mm512_cvttps_epi32(c);
}

struct VnniHelpers {
    static constexpr auto quantize_rows_u8_dynamic = &quantize_rows_u8_dynamic__avx512vnni;
    static constexpr auto gemm = &gemm_u8s8_f32__avx512vnni;

    static void quantize_pack_rows(const float* x, int64_t n, int64_t k, int64_t ldx, int8_t* packed, int32_t* sums, float* scale) {
        const int64_t kq = s8_quads(k);
        std::memset(packed, 0, size_t(packed_s8_bytes(n, k)));
        const __m512 sign = _mm512_castsi512_ps(_mm512_set1_epi32(0x7FFFFFFF));
        for (int64_t c = 0; c < n; ++c) {
            const float* row = x + c * ldx;
            __m512 amax = _mm512_setzero_ps();
            for (int64_t i = 0; i < k; i += 16) amax = _mm512_max_ps(amax, _mm512_and_ps(_mm512_maskz_loadu_ps(lanes(k - i), row + i), sign));
            scale[c] = ScalarAttentionU8Helpers::s8_scale(_mm512_reduce_max_ps(amax));
            const __m512 inv = _mm512_set1_ps(1.0f / scale[c]);
            // input quad q of channel c sits at int32 (q·16 + c % 16) of the channel's panel
            int32_t* panel = reinterpret_cast<int32_t*>(packed + c / kS8PanelChannels * kq * kS8PanelChannels * kS8QuadInputs) + c % kS8PanelChannels;
            __m512i sum = _mm512_setzero_si512();
            for (int64_t i = 0; i < k; i += 16) {
                const __m512i codes = s8_codes(_mm512_maskz_loadu_ps(lanes(k - i), row + i), inv);
                sum = _mm512_add_epi32(sum, codes);
                alignas(16) int32_t quads[4];
                _mm_store_si128(reinterpret_cast<__m128i*>(quads), _mm512_cvtepi32_epi8(codes));
                const int64_t q0 = i / 4, nq = kq - q0 < 4 ? kq - q0 : 4;
                for (int64_t q = 0; q < nq; ++q) panel[(q0 + q) * kS8PanelChannels] = quads[q];
            }
            sums[c] = _mm512_reduce_add_epi32(sum);
        }
    }

    static void quantize_pack_columns(const float* x, int64_t n, int64_t k, int64_t ldx, int8_t* packed, float* scale) {
        const int64_t nq = s8_quads(n);
        const __m512 sign = _mm512_castsi512_ps(_mm512_set1_epi32(0x7FFFFFFF));
        for (int64_t c0 = 0; c0 < k; c0 += 16) {
            const __mmask16 live = lanes(k - c0);
            __m512 amax = _mm512_setzero_ps();
            for (int64_t r = 0; r < n; ++r) amax = _mm512_max_ps(amax, _mm512_and_ps(_mm512_maskz_loadu_ps(live, x + r * ldx + c0), sign));
            // s8_scale in 16 lanes: amax / 127, 1 where that is not positive and finite
            __m512 s = _mm512_div_ps(amax, _mm512_set1_ps(127.0f));
            const __mmask16 usable = _mm512_cmp_ps_mask(s, _mm512_setzero_ps(), _CMP_GT_OQ) &
                                     _mm512_cmp_ps_mask(s, _mm512_set1_ps(INFINITY), _CMP_LT_OQ);
            s = _mm512_mask_blend_ps(usable, _mm512_set1_ps(1.0f), s);
            _mm512_mask_storeu_ps(scale + c0, live, s);
            const __m512 inv = _mm512_div_ps(_mm512_set1_ps(1.0f), s);
            __m128i* panel = reinterpret_cast<__m128i*>(packed + c0 / kS8PanelChannels * nq * kS8PanelChannels * kS8QuadInputs);
            for (int64_t r0 = 0; r0 < n; r0 += 4) {
                // four keys' codes of 16 channels, interleaved into one 64-byte quad
                __m128i rows[4];
                for (int64_t j = 0; j < 4; ++j)
                    rows[j] = r0 + j < n ? _mm512_cvtepi32_epi8(s8_codes(_mm512_maskz_loadu_ps(live, x + (r0 + j) * ldx + c0), inv))
                                         : _mm_setzero_si128();
                interleave_quad(rows, panel + r0 / 4 * 4);
            }
        }
    }

    static void softmax_rows_u8(const float* s, int64_t rows, int64_t seq, float scale, uint8_t* p, int64_t ldp, float* p_scale) {
        const __m512 vs = _mm512_set1_ps(scale), ninf = _mm512_set1_ps(-INFINITY);
        // Each row's max first (for all rows, so their reductions overlap), then each row's exps, codes and sum.
        float shifts[kAttentionU8RowBlock];
        for (int64_t i = 0; i < rows; ++i) {
            const float* row = s + i * seq;
            __m512 mx = ninf;
            for (int64_t j = 0; j < seq; j += 16) mx = _mm512_max_ps(mx, _mm512_mask_loadu_ps(ninf, lanes(seq - j), row + j));
            shifts[i] = -scale * _mm512_reduce_max_ps(mx);
        }
        for (int64_t i = 0; i < rows; ++i) {
            const float* row = s + i * seq;
            uint8_t* out = p + i * ldp;
            const __m512 shift = _mm512_set1_ps(shifts[i]);
            __m512i sum = _mm512_setzero_si512();
            for (int64_t j = 0; j < seq; j += 16) {
                const __mmask16 live = lanes(seq - j);
                const __m512 e = exp_nonpositive16(_mm512_fmadd_ps(_mm512_maskz_loadu_ps(live, row + j), vs, shift));
                __m512 c = _mm512_roundscale_ps(_mm512_mul_ps(e, _mm512_set1_ps(255.0f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
                c = _mm512_min_ps(c, _mm512_set1_ps(255.0f));
                const __m512i codes = _mm512_maskz_cvttps_epi32(live, c);
                sum = _mm512_add_epi32(sum, codes);
                const __m128i bytes = _mm512_cvtepi32_epi8(codes);
                // whole vectors: a plain store (a masked one becomes vpmovdb's memory form, several times slower on Zen 4)
                if (live == 0xFFFF) _mm_storeu_si128(reinterpret_cast<__m128i*>(out + j), bytes);
                else _mm_mask_storeu_epi8(out + j, live, bytes);
            }
            for (int64_t j = seq; j < ldp; ++j) out[j] = 0;
            const int32_t total = _mm512_reduce_add_epi32(sum);
            p_scale[i] = total > 0 ? 1.0f / float(total) : 0.0f;
        }
    }
};

}  // namespace

void attention_u8s8__avx512vnni(int64_t seq, int64_t head_dim, const float* q, const float* k, const float* v, int64_t ld,
                                const int32_t* key_mask, float scale, float* out, int64_t ldo, uint8_t* scratch) {
    attention_u8s8<VnniHelpers>(seq, head_dim, q, k, v, ld, key_mask, scale, out, ldo, scratch);
}

}  // namespace cq::kernels
