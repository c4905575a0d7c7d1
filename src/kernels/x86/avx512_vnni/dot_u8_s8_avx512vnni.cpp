// AVX-512 VNNI u8·s8 dot product: vpdpbusd sums four u8·s8 products per int32 lane without
// saturation, so the result is exact; 128 pairs per step, the tail through a masked load.
#include "kernels/x86/avx512_prelude.h"

#include <cstdint>

#include "kernels/kernel_decls.h"

namespace cq::kernels {

// a: [n] u8, b: [n] s8 → Σ a[i]·b[i]
int32_t dot_u8_s8__avx512vnni(const uint8_t* a, const int8_t* b, int64_t n) {
    __m512i acc0 = _mm512_setzero_si512();
    __m512i acc1 = _mm512_setzero_si512();
    int64_t i = 0;
    for (; i + 128 <= n; i += 128) {
        acc0 = _mm512_dpbusd_epi32(acc0, _mm512_loadu_si512(a + i), _mm512_loadu_si512(b + i));
        acc1 = _mm512_dpbusd_epi32(acc1, _mm512_loadu_si512(a + i + 64), _mm512_loadu_si512(b + i + 64));
    }
    if (i + 64 <= n) {
        acc0 = _mm512_dpbusd_epi32(acc0, _mm512_loadu_si512(a + i), _mm512_loadu_si512(b + i));
        i += 64;
    }
    if (i < n) {  // 1..63 left; masked-off bytes load as 0 and never fault
        const __mmask64 m = (uint64_t(1) << (n - i)) - 1;
        acc1 = _mm512_dpbusd_epi32(acc1, _mm512_maskz_loadu_epi8(m, a + i), _mm512_maskz_loadu_epi8(m, b + i));
    }
    return _mm512_reduce_add_epi32(_mm512_add_epi32(acc0, acc1));
}

}  // namespace cq::kernels
