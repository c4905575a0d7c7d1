// Scalar reference products of the non-linear 4-bit formats: IQ4_NL × Q8_0 and IQ4_XS × Q8_K (ggml's
// vec_dot_iq4_nl_q8_0 / vec_dot_iq4_xs_q8_K): exact integer sums of level × activation per block (IQ4_XS:
// per super-block, each sub-block's sum times its scale − 32), one float step per block. The specification
// the vector variants are tested against.
#include <cstddef>
#include <cstdint>

#include "formats/blocks.h"
#include "kernels/kernel_decls.h"

namespace cq::kernels {
namespace {

using namespace cq::formats;

// Σ level(q) · a over the 32 elements of one 16-byte nibble group (low nibble = element j, high = j + 16).
int32_t nibble_level_dot(const uint8_t* qs, const int8_t* a) {
    int32_t s = 0;
    for (int j = 0; j < 16; ++j) s += kIQ4NLValues[qs[j] & 0x0F] * a[j] + kIQ4NLValues[qs[j] >> 4] * a[j + 16];
    return s;
}

float dot_iq4_nl(int64_t nb, const BlockIQ4_NL* w, const BlockQ8_0* a) {
    float s = 0.0f;
    for (int64_t b = 0; b < nb; ++b)
        s += float(nibble_level_dot(w[b].qs, a[b].qs)) * (f16_to_f32_scalar(w[b].d) * f16_to_f32_scalar(a[b].d));
    return s;
}

float dot_iq4_xs(int64_t nb, const BlockIQ4_XS* w, const BlockQ8_K* a) {
    float s = 0.0f;
    for (int64_t b = 0; b < nb; ++b) {
        int32_t isum = 0;  // |isum| ≤ 8 · 32 · 32·127·127: fits
        for (int ib = 0; ib < kQK_K / 32; ++ib)
            isum += (iq4_xs_scale(w[b], ib) - 32) * nibble_level_dot(w[b].qs + 16 * ib, a[b].qs + 32 * ib);
        s += (f16_to_f32_scalar(w[b].d) * a[b].d) * float(isum);
    }
    return s;
}

// act: [m] rows of Act blocks, w: [n] rows of W blocks → c: [m, n] (row stride ldc)
template <typename W, typename Act, int kBlock, float (*Dot)(int64_t, const W*, const Act*)>
void gemm(int64_t m, int64_t n, int64_t k, const void* act, size_t arb, const void* w, size_t wrb, float* c, int64_t ldc) {
    const auto* a8 = static_cast<const uint8_t*>(act);
    const auto* w8 = static_cast<const uint8_t*>(w);
    for (int64_t t = 0; t < m; ++t)
        for (int64_t i = 0; i < n; ++i)
            c[t * ldc + i] = Dot(k / kBlock, reinterpret_cast<const W*>(w8 + size_t(i) * wrb),
                                 reinterpret_cast<const Act*>(a8 + size_t(t) * arb));
}

}  // namespace

CQ_DEFINE_IQ4_GEMMS(ref)

}  // namespace cq::kernels
