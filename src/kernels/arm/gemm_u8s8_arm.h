// The ARM64 u8·s8 INT8 GEMM (GemmU8S8Fn) on cq's packed panels (cq/int8_gemm.h: 16 channels × quads of 4
// inputs, one 64-byte vector per quad), written once over a Step policy that adds the four u8·s8 products of
// each channel's quad into its int32 lane: sdot on activations shifted to s8 (DotProd) or widening multiplies
// (plain NEON, which keeps pair sums and folds them at the end); I8MM tiles with usmmla instead (neon_i8mm/). Two
// tokens share each weight load; accumulators stay in registers (named, not an array GCC would keep on the stack).
// Integer sums are exact, the epilogue is the reference's scalar one: every variant equals gemm_u8s8_f32__ref bit
// for bit. Included by one file per rung (own -march); internal linkage so the rungs' copies never merge.
#pragma once

#if !defined(__aarch64__)
#error "gemm_u8s8_arm.h is for AArch64 builds only"
#endif

#include <arm_neon.h>

#include <cmath>
#include <cstdint>
#include <cstring>

#include "cq/int8_gemm.h"

namespace cq::kernels {
namespace {

// The reference epilogue of one token × the `lanes` channels of a panel starting at channel i0; sums: the 16
// lane sums of the step (of a − Step::kOffset).
template <class Step>
inline void panel_epilogue(const int32_t* sums, int64_t lanes, int64_t i0, int32_t zp, float as, const int32_t* w_sums,
                           const float* w_scale, const float* bias, float* ct) {
    for (int64_t l = 0; l < lanes; ++l) {
        const int64_t i = i0 + l;
        // wrapping int32 arithmetic: the result fits (the reference's bound), the intermediate need not
        const int32_t acc = int32_t(uint32_t(sums[l]) + uint32_t((Step::kOffset - zp) * w_sums[i]));
        const float s = as * w_scale[i];
        ct[l] = bias ? std::fma(float(acc), s, bias[i]) : float(acc) * s;
    }
}

// a: [m, k] u8 (row stride lda) · packed w → c: [m, n] f32. Per panel of 16 channels, tokens in pairs: each
// quad's four 16-byte weight vectors serve both tokens, 8 accumulators in registers (channels 4v..4v+3).
template <class Step>
void gemm_u8s8_panels(int64_t m, int64_t n, int64_t k, const uint8_t* a, int64_t lda, const float* a_scale,
                      const int32_t* a_zero_point, int64_t a_param_stride, const int8_t* packed_w, const int32_t* w_sums,
                      const float* w_scale, const float* bias, float* c, int64_t ldc) {
    const int64_t kq = s8_quads(k);
    const auto quad = [](const uint8_t* p) {  // the 4 bytes at p in every 32-bit lane
        uint32_t v;
        std::memcpy(&v, p, sizeof(v));
        return vreinterpretq_u8_u32(vdupq_n_u32(v));
    };
    for (int64_t i0 = 0; i0 < n; i0 += kS8PanelChannels) {
        const int8_t* panel = packed_w + (i0 / kS8PanelChannels) * packed_s8_panel_bytes(k);
        const int64_t lanes = n - i0 < kS8PanelChannels ? n - i0 : kS8PanelChannels;
        int32_t sums[2][kS8PanelChannels];
        int64_t t = 0;
        for (; t + 2 <= m; t += 2) {
            const uint8_t* a0 = a + t * lda;
            const uint8_t* a1 = a0 + lda;
            typename Step::Acc x0 = Step::zero(), x1 = Step::zero(), x2 = Step::zero(), x3 = Step::zero();
            typename Step::Acc y0 = Step::zero(), y1 = Step::zero(), y2 = Step::zero(), y3 = Step::zero();
            for (int64_t q = 0; q < kq; ++q) {
                const int8_t* wq = panel + q * kS8PanelChannels * kS8QuadInputs;
                const int8x16_t w0 = vld1q_s8(wq), w1 = vld1q_s8(wq + 16), w2 = vld1q_s8(wq + 32), w3 = vld1q_s8(wq + 48);
                const uint8x16_t u = quad(a0 + q * kS8QuadInputs), v = quad(a1 + q * kS8QuadInputs);
                x0 = Step::step(x0, u, w0), x1 = Step::step(x1, u, w1), x2 = Step::step(x2, u, w2), x3 = Step::step(x3, u, w3);
                y0 = Step::step(y0, v, w0), y1 = Step::step(y1, v, w1), y2 = Step::step(y2, v, w2), y3 = Step::step(y3, v, w3);
            }
            vst1q_s32(sums[0], Step::finish(x0)), vst1q_s32(sums[0] + 4, Step::finish(x1));
            vst1q_s32(sums[0] + 8, Step::finish(x2)), vst1q_s32(sums[0] + 12, Step::finish(x3));
            vst1q_s32(sums[1], Step::finish(y0)), vst1q_s32(sums[1] + 4, Step::finish(y1));
            vst1q_s32(sums[1] + 8, Step::finish(y2)), vst1q_s32(sums[1] + 12, Step::finish(y3));
            for (int r = 0; r < 2; ++r)
                panel_epilogue<Step>(sums[r], lanes, i0, a_zero_point[(t + r) * a_param_stride], a_scale[(t + r) * a_param_stride],
                                     w_sums, w_scale, bias, c + (t + r) * ldc + i0);
        }
        if (t < m) {  // the odd token
            const uint8_t* a0 = a + t * lda;
            typename Step::Acc x0 = Step::zero(), x1 = Step::zero(), x2 = Step::zero(), x3 = Step::zero();
            for (int64_t q = 0; q < kq; ++q) {
                const int8_t* wq = panel + q * kS8PanelChannels * kS8QuadInputs;
                const uint8x16_t u = quad(a0 + q * kS8QuadInputs);
                x0 = Step::step(x0, u, vld1q_s8(wq)), x1 = Step::step(x1, u, vld1q_s8(wq + 16));
                x2 = Step::step(x2, u, vld1q_s8(wq + 32)), x3 = Step::step(x3, u, vld1q_s8(wq + 48));
            }
            vst1q_s32(sums[0], Step::finish(x0)), vst1q_s32(sums[0] + 4, Step::finish(x1));
            vst1q_s32(sums[0] + 8, Step::finish(x2)), vst1q_s32(sums[0] + 12, Step::finish(x3));
            panel_epilogue<Step>(sums[0], lanes, i0, a_zero_point[t * a_param_stride], a_scale[t * a_param_stride], w_sums, w_scale,
                                 bias, c + t * ldc + i0);
        }
    }
}

}  // namespace
}  // namespace cq::kernels
