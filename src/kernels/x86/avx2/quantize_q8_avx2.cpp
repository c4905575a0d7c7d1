// AVX2 activation quantizers (Q8_0, Q8_1, Q8_K), byte-identical to the reference codecs
// (formats/codecs_legacy.cpp, formats/codecs_kquants.cpp): the same float operations, 8 lanes at a time.
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "formats/blocks.h"
#include "kernels/kernel_decls.h"
#include "kernels/x86/simd_x86.h"

namespace cq::kernels {
namespace {

using namespace cq::formats;

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

}  // namespace cq::kernels
