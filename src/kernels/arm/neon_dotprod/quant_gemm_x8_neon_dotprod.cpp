// NEON DotProd GEMMs on cq's 8-row interleaved layouts (formats/blocks.h: BlockQ4_0x8, BlockQ8_0x8, built once at
// load): each 16-byte load holds the same 4 elements of 4 rows, so one sdot against the activation quad broadcast
// to every lane adds 4 products into each of 4 rows' lanes — no horizontal adds, one activation load per 8 rows.
// The per-row float steps are the reference's (s += float(sumi)·(d_w·d_a), lane by lane, in block order), so the
// results equal gemm_q4_0x8_q8_0__ref / gemm_q8_0x8_q8_0__ref (and the file-layout references) bit for bit.
#include "kernels/arm/packed_arm.h"

#if defined(__aarch64__)
#include <arm_neon.h>

#include <cstring>

#include "formats/blocks.h"

namespace cq::kernels {
namespace {

using namespace cq::formats;

// The 4 activation bytes at p in every 32-bit lane.
inline int8x16_t quad(const int8_t* p) {
    int32_t v;
    std::memcpy(&v, p, sizeof(v));
    return vreinterpretq_s8_s32(vdupq_n_s32(v));
}

// Rows 0-3 and 4-7 of a block's integer sums against activation block a (Q4_0: 4 pieces of 32 bytes, low nibbles
// elements 4jj.., high nibbles 16 + 4jj..; Q8_0: 8 pieces, elements 4j..).
// Two accumulators per half (low / high nibbles, even / odd pieces) so that no sdot waits on the one before.
inline void block_sums(const BlockQ4_0x8& w, const BlockQ8_0& a, int32x4_t& lo, int32x4_t& hi) {
    int32x4_t lo0 = vdupq_n_s32(0), lo1 = vdupq_n_s32(0), hi0 = vdupq_n_s32(0), hi1 = vdupq_n_s32(0);
    const uint8x16_t m4 = vdupq_n_u8(0x0F);
    const int8x16_t bias = vdupq_n_s8(8);
#pragma GCC unroll 4
    for (int jj = 0; jj < 4; ++jj) {
        const uint8x16_t q0 = vld1q_u8(w.qs + 32 * jj), q1 = vld1q_u8(w.qs + 32 * jj + 16);
        const int8x16_t a_lo = quad(a.qs + 4 * jj), a_hi = quad(a.qs + 16 + 4 * jj);
        lo0 = vdotq_s32(lo0, vsubq_s8(vreinterpretq_s8_u8(vandq_u8(q0, m4)), bias), a_lo);
        hi0 = vdotq_s32(hi0, vsubq_s8(vreinterpretq_s8_u8(vandq_u8(q1, m4)), bias), a_lo);
        lo1 = vdotq_s32(lo1, vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8(q0, 4)), bias), a_hi);
        hi1 = vdotq_s32(hi1, vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8(q1, 4)), bias), a_hi);
    }
    lo = vaddq_s32(lo0, lo1), hi = vaddq_s32(hi0, hi1);
}
inline void block_sums(const BlockQ8_0x8& w, const BlockQ8_0& a, int32x4_t& lo, int32x4_t& hi) {
    int32x4_t lo0 = vdupq_n_s32(0), lo1 = vdupq_n_s32(0), hi0 = vdupq_n_s32(0), hi1 = vdupq_n_s32(0);
#pragma GCC unroll 4
    for (int j = 0; j < 8; j += 2) {
        const int8x16_t a0 = quad(a.qs + 4 * j), a1 = quad(a.qs + 4 * j + 4);
        lo0 = vdotq_s32(lo0, vld1q_s8(w.qs + 32 * j), a0);
        hi0 = vdotq_s32(hi0, vld1q_s8(w.qs + 32 * j + 16), a0);
        lo1 = vdotq_s32(lo1, vld1q_s8(w.qs + 32 * j + 32), a1);
        hi1 = vdotq_s32(hi1, vld1q_s8(w.qs + 32 * j + 48), a1);
    }
    lo = vaddq_s32(lo0, lo1), hi = vaddq_s32(hi0, hi1);
}

// act: [m] rows of Q8_0 blocks; w: the 8-row groups of rows [0, n) (group g at nb·g blocks) → c: [m, n]
template <class B8>
void gemm_x8(int64_t m, int64_t n, int64_t k, const void* act, size_t arb, const void* w, float* c, int64_t ldc) {
    const int64_t nb = k / kQK;
    const auto* groups = static_cast<const B8*>(w);
    for (int64_t g = 0; g * 8 < n; ++g) {
        const B8* wg = groups + g * nb;
        const int64_t rows = n - 8 * g < 8 ? n - 8 * g : 8;
        for (int64_t t = 0; t < m; ++t) {
            const auto* a = reinterpret_cast<const BlockQ8_0*>(static_cast<const uint8_t*>(act) + size_t(t) * arb);
            float32x4_t s_lo = vdupq_n_f32(0.0f), s_hi = vdupq_n_f32(0.0f);
            for (int64_t b = 0; b < nb; ++b) {
                int32x4_t lo, hi;
                block_sums(wg[b], a[b], lo, hi);
                float16x8_t d16;
                std::memcpy(&d16, wg[b].d, sizeof(d16));
                __fp16 da16;
                std::memcpy(&da16, &a[b].d, sizeof(da16));
                const float32x4_t da = vdupq_n_f32(float(da16));
                // s += float(sumi) * (d_w * d_a), as the reference, each lane one row
                s_lo = vaddq_f32(s_lo, vmulq_f32(vcvtq_f32_s32(lo), vmulq_f32(vcvt_f32_f16(vget_low_f16(d16)), da)));
                s_hi = vaddq_f32(s_hi, vmulq_f32(vcvtq_f32_s32(hi), vmulq_f32(vcvt_high_f32_f16(d16), da)));
            }
            float out[8];
            vst1q_f32(out, s_lo);
            vst1q_f32(out + 4, s_hi);
            for (int64_t r = 0; r < rows; ++r) c[t * ldc + 8 * g + r] = out[r];
        }
    }
}

}  // namespace

void gemm_q4_0x8_q8_0__neon_dotprod(int64_t m, int64_t n, int64_t k, const void* act, size_t arb, const void* w, size_t,
                                    float* c, int64_t ldc) {
    gemm_x8<BlockQ4_0x8>(m, n, k, act, arb, w, c, ldc);
}
void gemm_q8_0x8_q8_0__neon_dotprod(int64_t m, int64_t n, int64_t k, const void* act, size_t arb, const void* w, size_t,
                                    float* c, int64_t ldc) {
    gemm_x8<BlockQ8_0x8>(m, n, k, act, arb, w, c, ldc);
}

}  // namespace cq::kernels

#endif  // __aarch64__
