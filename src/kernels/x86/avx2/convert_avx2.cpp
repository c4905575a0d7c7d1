// AVX2 + F16C f16/bf16 <-> f32 conversion, bit-exact against the scalar reference (convert_ref.cpp);
// 16 values per step, the tail finished with the reference's scalar helpers.
#include <immintrin.h>

#include <cstdint>

#include "kernels/kernel_decls.h"

namespace cq::kernels {

namespace {

// x: [8] f32 bits → [8] bf16 bits in the low half of each 32-bit lane (RNE, NaN quieted).
inline __m256i f32_to_bf16_lanes(__m256i x) {
    const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(x, 16), _mm256_set1_epi32(1));
    const __m256i rounded = _mm256_srli_epi32(_mm256_add_epi32(x, _mm256_add_epi32(lsb, _mm256_set1_epi32(0x7FFF))), 16);
    const __m256i abs = _mm256_and_si256(x, _mm256_set1_epi32(0x7FFFFFFF));
    const __m256i is_nan = _mm256_cmpgt_epi32(abs, _mm256_set1_epi32(0x7F800000));  // both sides ≥ 0
    const __m256i nan = _mm256_or_si256(_mm256_srli_epi32(x, 16), _mm256_set1_epi32(0x0040));
    return _mm256_blendv_epi8(rounded, nan, is_nan);
}

}  // namespace

// x: [n] f16 bits → y: [n] f32
void convert_f16_f32__avx2(const uint16_t* x, float* y, int64_t n) {
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m128i h0 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(x + i));
        const __m128i h1 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(x + i + 8));
        _mm256_storeu_ps(y + i, _mm256_cvtph_ps(h0));
        _mm256_storeu_ps(y + i + 8, _mm256_cvtph_ps(h1));
    }
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x + i))));
    for (; i < n; ++i) y[i] = f16_to_f32_scalar(x[i]);
}

// x: [n] f32 → y: [n] f16 bits
void convert_f32_f16__avx2(const float* x, uint16_t* y, int64_t n) {
    constexpr int kRound = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m128i h0 = _mm256_cvtps_ph(_mm256_loadu_ps(x + i), kRound);
        const __m128i h1 = _mm256_cvtps_ph(_mm256_loadu_ps(x + i + 8), kRound);
        _mm_storeu_si128(reinterpret_cast<__m128i*>(y + i), h0);
        _mm_storeu_si128(reinterpret_cast<__m128i*>(y + i + 8), h1);
    }
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128(reinterpret_cast<__m128i*>(y + i), _mm256_cvtps_ph(_mm256_loadu_ps(x + i), kRound));
    for (; i < n; ++i) y[i] = f32_to_f16_scalar(x[i]);
}

// x: [n] bf16 bits → y: [n] f32
void convert_bf16_f32__avx2(const uint16_t* x, float* y, int64_t n) {
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + i));
        const __m256i lo = _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm256_castsi256_si128(h)), 16);
        const __m256i hi = _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm256_extracti128_si256(h, 1)), 16);
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(y + i), lo);
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(y + i + 8), hi);
    }
    for (; i < n; ++i) y[i] = bf16_to_f32_scalar(x[i]);
}

// x: [n] f32 → y: [n] bf16 bits
void convert_f32_bf16__avx2(const float* x, uint16_t* y, int64_t n) {
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m256i lo = f32_to_bf16_lanes(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + i)));
        const __m256i hi = f32_to_bf16_lanes(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + i + 8)));
        // packus works per 128-bit lane: [lo0-3 hi0-3 | lo4-7 hi4-7] → reorder the 64-bit quarters.
        const __m256i packed = _mm256_permute4x64_epi64(_mm256_packus_epi32(lo, hi), 0xD8);
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(y + i), packed);
    }
    for (; i < n; ++i) y[i] = f32_to_bf16_scalar(x[i]);
}

}  // namespace cq::kernels
