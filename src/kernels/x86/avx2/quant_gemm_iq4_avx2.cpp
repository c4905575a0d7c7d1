// AVX2 products of the non-linear 4-bit formats (IQ4_NL × Q8_0, IQ4_XS × Q8_K): the 16 levels looked up
// with vpshufb, signed × signed through vpsign + vpmaddubsw (|level| ≤ 127, so no pair saturates) and
// vpmaddwd. The integer sums are exact and the float steps those of the reference, so the results equal
// gemm_*__ref bit for bit.
#include <immintrin.h>

#include <cstddef>
#include <cstdint>

#include "formats/blocks.h"
#include "kernels/kernel_decls.h"
#include "kernels/x86/simd_x86.h"

namespace cq::kernels {
namespace {

using namespace cq::formats;

// The 32 levels of one 16-byte nibble group, in element order (low nibbles, then high nibbles).
inline __m256i levels32(const uint8_t* qs, __m128i table) {
    const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
    const __m128i mask = _mm_set1_epi8(0x0F);
    const __m128i lo = _mm_shuffle_epi8(table, _mm_and_si128(q, mask));
    const __m128i hi = _mm_shuffle_epi8(table, _mm_and_si128(_mm_srli_epi16(q, 4), mask));
    return _mm256_set_m128i(hi, lo);
}

// 32 int8 × 32 int8 → 8 int32 partial sums (exact).
inline __m256i dot_i8x32(__m256i w, __m256i a) {
    const __m256i prod16 = _mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(a, w));
    return _mm256_madd_epi16(prod16, _mm256_set1_epi16(1));
}

inline __m128i level_table() { return _mm_loadu_si128(reinterpret_cast<const __m128i*>(kIQ4NLValues)); }

float dot_iq4_nl(int64_t nb, const BlockIQ4_NL* w, const BlockQ8_0* a, __m128i table) {
    float s = 0.0f;
    for (int64_t b = 0; b < nb; ++b) {
        const __m256i av = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a[b].qs));
        const int32_t sumi = hsum_i32(dot_i8x32(levels32(w[b].qs, table), av));
        s += float(sumi) * (_cvtsh_ss(w[b].d) * _cvtsh_ss(a[b].d));
    }
    return s;
}

float dot_iq4_xs(int64_t nb, const BlockIQ4_XS* w, const BlockQ8_K* a, __m128i table) {
    float s = 0.0f;
    for (int64_t b = 0; b < nb; ++b) {
        __m256i acc = _mm256_setzero_si256();
        for (int ib = 0; ib < kQK_K / 32; ++ib) {
            const __m256i av = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a[b].qs + 32 * ib));
            const __m256i part = dot_i8x32(levels32(w[b].qs + 16 * ib, table), av);
            acc = _mm256_add_epi32(acc, _mm256_mullo_epi32(part, _mm256_set1_epi32(iq4_xs_scale(w[b], ib) - 32)));
        }
        s += (_cvtsh_ss(w[b].d) * a[b].d) * float(hsum_i32(acc));
    }
    return s;
}

template <typename W, typename Act, int kBlock, float (*Dot)(int64_t, const W*, const Act*, __m128i)>
void gemm(int64_t m, int64_t n, int64_t k, const void* act, size_t arb, const void* w, size_t wrb, float* c, int64_t ldc) {
    const __m128i table = level_table();
    const auto* a8 = static_cast<const uint8_t*>(act);
    const auto* w8 = static_cast<const uint8_t*>(w);
    for (int64_t i = 0; i < n; ++i) {
        const auto* wr = reinterpret_cast<const W*>(w8 + size_t(i) * wrb);
        for (int64_t t = 0; t < m; ++t)
            c[t * ldc + i] = Dot(k / kBlock, wr, reinterpret_cast<const Act*>(a8 + size_t(t) * arb), table);
    }
}

}  // namespace

CQ_DEFINE_IQ4_GEMMS(avx2)

}  // namespace cq::kernels
