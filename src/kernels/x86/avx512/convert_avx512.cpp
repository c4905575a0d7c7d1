// AVX-512 f16/bf16 <-> f32 conversion, bit-exact against the scalar reference (convert_ref.cpp);
// 16 values per step, the tail done with masked loads and stores (masked-off lanes never fault).
#include "kernels/x86/avx512_prelude.h"

#include <cstdint>

#include "kernels/kernel_decls.h"

namespace cq::kernels {

namespace {

constexpr int kRound = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;

// The first `r` lanes, 0 ≤ r < 16.
inline __mmask16 tail_mask(int64_t r) { return __mmask16((1u << r) - 1u); }

// x: [16] f32 bits → [16] bf16 bits in the low half of each 32-bit lane (RNE, NaN quieted).
inline __m512i f32_to_bf16_lanes(__m512i x) {
    const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(x, 16), _mm512_set1_epi32(1));
    const __m512i rounded = _mm512_srli_epi32(_mm512_add_epi32(x, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7FFF))), 16);
    const __m512i abs = _mm512_and_si512(x, _mm512_set1_epi32(0x7FFFFFFF));
    const __mmask16 is_nan = _mm512_cmpgt_epu32_mask(abs, _mm512_set1_epi32(0x7F800000));
    const __m512i nan = _mm512_or_si512(_mm512_srli_epi32(x, 16), _mm512_set1_epi32(0x0040));
    return _mm512_mask_blend_epi32(is_nan, rounded, nan);
}

}  // namespace

// x: [n] f16 bits → y: [n] f32
void convert_f16_f32__avx512(const uint16_t* x, float* y, int64_t n) {
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(y + i, _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + i))));
    if (i < n) {
        const __mmask16 m = tail_mask(n - i);
        _mm512_mask_storeu_ps(y + i, m, _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, x + i)));
    }
}

// x: [n] f32 → y: [n] f16 bits
void convert_f32_f16__avx512(const float* x, uint16_t* y, int64_t n) {
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(y + i), _mm512_cvtps_ph(_mm512_loadu_ps(x + i), kRound));
    if (i < n) {
        const __mmask16 m = tail_mask(n - i);
        _mm256_mask_storeu_epi16(y + i, m, _mm512_cvtps_ph(_mm512_maskz_loadu_ps(m, x + i), kRound));
    }
}

// x: [n] bf16 bits → y: [n] f32
void convert_bf16_f32__avx512(const uint16_t* x, float* y, int64_t n) {
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + i));
        _mm512_storeu_si512(y + i, _mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    }
    if (i < n) {
        const __mmask16 m = tail_mask(n - i);
        const __m256i h = _mm256_maskz_loadu_epi16(m, x + i);
        _mm512_mask_storeu_epi32(y + i, m, _mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    }
}

// x: [n] f32 → y: [n] bf16 bits
void convert_f32_bf16__avx512(const float* x, uint16_t* y, int64_t n) {
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m512i r = f32_to_bf16_lanes(_mm512_loadu_si512(x + i));
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(y + i), _mm512_cvtepi32_epi16(r));
    }
    if (i < n) {
        const __mmask16 m = tail_mask(n - i);
        const __m512i r = f32_to_bf16_lanes(_mm512_maskz_loadu_epi32(m, x + i));
        _mm512_mask_cvtepi32_storeu_epi16(y + i, m, r);
    }
}

}  // namespace cq::kernels
