// NEON I8MM INT8 W8A8 GEMM: usmmla (u8 activations × s8 weights, one 2×8 · 8×2 tile per instruction, 32
// products into a 2×2 int32 block) on token pairs, usdot for an odd last token. The shared panel layout
// (cq/int8_gemm.h: 16 channels × quads of 4 inputs) is regrouped in registers: zip1/zip2 of two consecutive
// quads' 16-byte vectors gives the 8 inputs of two channels, usmmla's 8×2 operand. Integer sums are exact and
// the epilogue is the reference's, so the result equals gemm_u8s8_f32__ref bit for bit. Only called where
// getauxval reports i8mm.
#include "kernels/kernel_decls.h"

#if defined(__aarch64__)
#include "kernels/arm/gemm_u8s8_arm.h"

namespace cq::kernels {
namespace {

struct NoOffset {  // panel_epilogue's Step: usmmla / usdot take u8 activations as they are
    static constexpr int32_t kOffset = 0;
};

// The 4 bytes at p, zero-extended to 8 (the odd last quad of a row: the bytes past it are not ours to read).
inline uint8x8_t quad_lo(const uint8_t* p) {
    uint32_t v;
    std::memcpy(&v, p, sizeof(v));
    return vcreate_u8(uint64_t(v));
}

// kPairs token pairs (rows[r], r < 2·kPairs) × one 16-channel panel → sums[r][16]. x<j> / y<j>: pair 0 / 1 ×
// channels 2j, 2j + 1, as usmmla lays its 2×2 block out ([t·c, t·c', t'·c, t'·c']); named, not an array, so GCC
// keeps all 16 in registers.
template <int kPairs>
inline void panel_pairs(const uint8_t* const* rows, const int8_t* panel, int64_t kq, int32_t (*sums)[kS8PanelChannels]) {
    const int32x4_t z = vdupq_n_s32(0);
    int32x4_t x0 = z, x1 = z, x2 = z, x3 = z, x4 = z, x5 = z, x6 = z, x7 = z;
    int32x4_t y0 = z, y1 = z, y2 = z, y3 = z, y4 = z, y5 = z, y6 = z, y7 = z;
    // 8 inputs of both pairs (u: pair 0, v: pair 1) against quad q's (wq) and quad q + 1's (wn) 64 weight bytes
#define CQ_USMMLA_CHANNELS(j0, j1, off)                                                                     \
    {                                                                                                       \
        const int32x4_t w0 = vreinterpretq_s32_s8(vld1q_s8(wq + off)), w1 = wn(off);                        \
        const int8x16_t b0 = vreinterpretq_s8_s32(vzip1q_s32(w0, w1)), b1 = vreinterpretq_s8_s32(vzip2q_s32(w0, w1)); \
        x##j0 = vusmmlaq_s32(x##j0, u, b0), x##j1 = vusmmlaq_s32(x##j1, u, b1);                          \
        if constexpr (kPairs == 2) y##j0 = vusmmlaq_s32(y##j0, v, b0), y##j1 = vusmmlaq_s32(y##j1, v, b1); \
    }
#define CQ_USMMLA_STEP                     \
    CQ_USMMLA_CHANNELS(0, 1, 0)            \
    CQ_USMMLA_CHANNELS(2, 3, 16)           \
    CQ_USMMLA_CHANNELS(4, 5, 32)           \
    CQ_USMMLA_CHANNELS(6, 7, 48)
    constexpr int64_t kQuadBytes = kS8PanelChannels * kS8QuadInputs;
    const int64_t kq2 = kq / 2 * 2;
    for (int64_t q = 0; q < kq2; q += 2) {  // inputs 4q .. 4q + 7
        const int8_t* wq = panel + q * kQuadBytes;
        const auto wn = [wq](int off) { return vreinterpretq_s32_s8(vld1q_s8(wq + kQuadBytes + off)); };
        const uint8x16_t u = vcombine_u8(vld1_u8(rows[0] + q * kS8QuadInputs), vld1_u8(rows[1] + q * kS8QuadInputs));
        uint8x16_t v = u;
        if constexpr (kPairs == 2) v = vcombine_u8(vld1_u8(rows[2] + q * kS8QuadInputs), vld1_u8(rows[3] + q * kS8QuadInputs));
        CQ_USMMLA_STEP
    }
    if (kq2 < kq) {  // the odd last quad, against zero weights in quad q + 1's place
        const int8_t* wq = panel + kq2 * kQuadBytes;
        const auto wn = [](int) { return vdupq_n_s32(0); };
        const uint8x16_t u = vcombine_u8(quad_lo(rows[0] + kq2 * kS8QuadInputs), quad_lo(rows[1] + kq2 * kS8QuadInputs));
        uint8x16_t v = u;
        if constexpr (kPairs == 2) v = vcombine_u8(quad_lo(rows[2] + kq2 * kS8QuadInputs), quad_lo(rows[3] + kq2 * kS8QuadInputs));
        CQ_USMMLA_STEP
    }
#undef CQ_USMMLA_STEP
#undef CQ_USMMLA_CHANNELS
    // [t·c, t·c', t'·c, t'·c'] blocks of channels (2j, 2j + 1) and (2j + 2, 2j + 3) → 4 channels of t, of t'
    const auto store = [](int32_t* t0, int32_t* t1, int32x4_t lo, int32x4_t hi) {
        const int64x2_t l = vreinterpretq_s64_s32(lo), h = vreinterpretq_s64_s32(hi);
        vst1q_s32(t0, vreinterpretq_s32_s64(vzip1q_s64(l, h)));
        vst1q_s32(t1, vreinterpretq_s32_s64(vzip2q_s64(l, h)));
    };
    store(sums[0], sums[1], x0, x1), store(sums[0] + 4, sums[1] + 4, x2, x3);
    store(sums[0] + 8, sums[1] + 8, x4, x5), store(sums[0] + 12, sums[1] + 12, x6, x7);
    if constexpr (kPairs == 2) {
        store(sums[2], sums[3], y0, y1), store(sums[2] + 4, sums[3] + 4, y2, y3);
        store(sums[2] + 8, sums[3] + 8, y4, y5), store(sums[2] + 12, sums[3] + 12, y6, y7);
    }
}

// One token × one panel with usdot (4 products into each channel's lane): half of usmmla's tile would be wasted.
inline void panel_single(const uint8_t* row, const int8_t* panel, int64_t kq, int32_t* sums) {
    int32x4_t x0 = vdupq_n_s32(0), x1 = x0, x2 = x0, x3 = x0;
    for (int64_t q = 0; q < kq; ++q) {
        const int8_t* wq = panel + q * kS8PanelChannels * kS8QuadInputs;
        uint32_t v;
        std::memcpy(&v, row + q * kS8QuadInputs, sizeof(v));
        const uint8x16_t u = vreinterpretq_u8_u32(vdupq_n_u32(v));
        x0 = vusdotq_s32(x0, u, vld1q_s8(wq)), x1 = vusdotq_s32(x1, u, vld1q_s8(wq + 16));
        x2 = vusdotq_s32(x2, u, vld1q_s8(wq + 32)), x3 = vusdotq_s32(x3, u, vld1q_s8(wq + 48));
    }
    vst1q_s32(sums, x0), vst1q_s32(sums + 4, x1), vst1q_s32(sums + 8, x2), vst1q_s32(sums + 12, x3);
}

}  // namespace

// a: [m, k] u8 · packed w: [n, k] s8 → c: [m, n] f32. Per panel: tokens in fours (16 accumulators), then a pair,
// then a single token.
void gemm_u8s8_f32__neon_i8mm(int64_t m, int64_t n, int64_t k, const uint8_t* a, int64_t lda, const float* a_scale,
                              const int32_t* a_zero_point, int64_t a_param_stride, const int8_t* packed_w,
                              const int32_t* w_sums, const float* w_scale, const float* bias, float* c, int64_t ldc) {
    const int64_t kq = s8_quads(k);
    int32_t sums[4][kS8PanelChannels];
    for (int64_t i0 = 0; i0 < n; i0 += kS8PanelChannels) {
        const int8_t* panel = packed_w + (i0 / kS8PanelChannels) * packed_s8_panel_bytes(k);
        const int64_t lanes = n - i0 < kS8PanelChannels ? n - i0 : kS8PanelChannels;
        int64_t t = 0;
        const auto epilogue = [&](int64_t tokens) {
            for (int64_t r = 0; r < tokens; ++r)
                panel_epilogue<NoOffset>(sums[r], lanes, i0, a_zero_point[(t + r) * a_param_stride],
                                         a_scale[(t + r) * a_param_stride], w_sums, w_scale, bias, c + (t + r) * ldc + i0);
        };
        for (; t + 4 <= m; t += 4) {
            const uint8_t* rows[4] = {a + t * lda, a + (t + 1) * lda, a + (t + 2) * lda, a + (t + 3) * lda};
            panel_pairs<2>(rows, panel, kq, sums);
            epilogue(4);
        }
        if (t + 2 <= m) {
            const uint8_t* rows[2] = {a + t * lda, a + (t + 1) * lda};
            panel_pairs<1>(rows, panel, kq, sums);
            epilogue(2);
            t += 2;
        }
        if (t < m) {
            panel_single(a + t * lda, panel, kq, sums[0]);
            epilogue(1);
        }
    }
}

}  // namespace cq::kernels

#endif  // __aarch64__
