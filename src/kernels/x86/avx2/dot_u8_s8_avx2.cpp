// AVX2 u8·s8 dot product, exact: bytes widen to int16 and vpmaddwd sums pairs into int32 (no
// vpmaddubsw, which saturates at int16); 32 pairs per step, the tail in scalar.
#include <immintrin.h>

#include <cstdint>

#include "kernels/kernel_decls.h"

namespace cq::kernels {

namespace {

// 16 u8·s8 products summed pairwise into 8 int32 lanes.
inline __m256i madd16(const uint8_t* a, const int8_t* b) {
    const __m256i a16 = _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(a)));
    const __m256i b16 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b)));
    return _mm256_madd_epi16(a16, b16);
}

}  // namespace

// a: [n] u8, b: [n] s8 → Σ a[i]·b[i]
int32_t dot_u8_s8__avx2(const uint8_t* a, const int8_t* b, int64_t n) {
    __m256i acc0 = _mm256_setzero_si256();
    __m256i acc1 = _mm256_setzero_si256();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        acc0 = _mm256_add_epi32(acc0, madd16(a + i, b + i));
        acc1 = _mm256_add_epi32(acc1, madd16(a + i + 16, b + i + 16));
    }
    if (i + 16 <= n) {
        acc0 = _mm256_add_epi32(acc0, madd16(a + i, b + i));
        i += 16;
    }
    const __m256i acc = _mm256_add_epi32(acc0, acc1);
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(acc), _mm256_extracti128_si256(acc, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
    int32_t sum = _mm_cvtsi128_si32(s);
    for (; i < n; ++i) sum += int32_t(a[i]) * int32_t(b[i]);
    return sum;
}

}  // namespace cq::kernels
