// Scalar reference INT8 W8A8 kernels: the u8 activation quantizers (dynamic per row, static per tensor,
// to [0, qmax]) and the u8·s8 matrix product on packed weights with its f32 epilogue — the specification
// the vector variants (gemm_u8s8 and gemm_u7s8 alike) match bit for bit.
#include <cmath>
#include <cstdint>

#include "cq/int8_gemm.h"
#include "kernels/kernel_decls.h"

namespace cq {

void u8_quant_params_from_range(float lo, float hi, int32_t qmax, float* scale, int32_t* zero_point) {
    const float top = float(qmax);
    const float s = (hi - lo) / top;
    if (!(s > 0.0f) || !std::isfinite(s)) {  // all-zero row (or a range beyond float): any scale is exact
        *scale = 1.0f;
        *zero_point = 0;
        return;
    }
    const float z = std::nearbyint(-lo / s);
    *scale = s;
    *zero_point = int32_t(z < 0.0f ? 0.0f : z > top ? top : z);
}

namespace kernels {
namespace {

// x: [k] → q: [round_up(k, 4)] in [0, qmax]; the comparisons are written as maxps / minps compute them. `factor` multiplies
// (per-token dynamic: 1 / scale), or with Divide divides (static: ONNX QuantizeLinear's x / scale, so that a calibrated
// tensor gets the codes ONNX Runtime's QuantizeLinear gives it; x · (1 / scale) can round the other way at a tie).
template <bool Divide>
void quantize_row_u8(const float* x, int64_t k, float factor, int32_t zero_point, int32_t qmax, uint8_t* q) {
    const float zp = float(zero_point), top = float(qmax);
    for (int64_t i = 0; i < k; ++i) {
        float v = std::nearbyint(Divide ? x[i] / factor : x[i] * factor) + zp;
        v = v > 0.0f ? v : 0.0f;
        v = v < top ? v : top;
        q[i] = uint8_t(v);
    }
    for (int64_t i = k; i < round_up(k, kS8QuadInputs); ++i) q[i] = uint8_t(zero_point);
}

}  // namespace

// x: [m, k] → q: [m, round_up(k, 4)], scale / zero_point: [m]
void quantize_rows_u8_dynamic__ref(const float* x, int64_t m, int64_t k, int64_t ldx, int32_t qmax, uint8_t* q,
                                   int64_t ldq, float* scale, int32_t* zero_point) {
    for (int64_t t = 0; t < m; ++t) {
        const float* row = x + t * ldx;
        float lo = 0.0f, hi = 0.0f;
        for (int64_t i = 0; i < k; ++i) {
            lo = row[i] < lo ? row[i] : lo;
            hi = row[i] > hi ? row[i] : hi;
        }
        u8_quant_params_from_range(lo, hi, qmax, &scale[t], &zero_point[t]);
        quantize_row_u8<false>(row, k, 1.0f / scale[t], zero_point[t], qmax, q + t * ldq);
    }
}

// x: [m, k] → q: [m, round_up(k, 4)]
void quantize_rows_u8_static__ref(const float* x, int64_t m, int64_t k, int64_t ldx, float scale, int32_t zero_point,
                                  int32_t qmax, uint8_t* q, int64_t ldq) {
    for (int64_t t = 0; t < m; ++t) quantize_row_u8<true>(x + t * ldx, k, scale, zero_point, qmax, q + t * ldq);
}

// a: [m, k] u8 · packed w: [n, k] s8 → c: [m, n] f32
void gemm_u8s8_f32__ref(int64_t m, int64_t n, int64_t k, const uint8_t* a, int64_t lda, const float* a_scale,
                        const int32_t* a_zero_point, int64_t a_param_stride, const int8_t* packed_w,
                        const int32_t* w_sums, const float* w_scale, const float* bias, float* c, int64_t ldc) {
    const int64_t kq = s8_quads(k);
    for (int64_t t = 0; t < m; ++t) {
        const uint8_t* at = a + t * lda;
        for (int64_t i = 0; i < n; ++i) {
            const int8_t* panel = packed_w + (i / kS8PanelChannels) * packed_s8_panel_bytes(k);
            const int64_t lane = i % kS8PanelChannels;
            // |Σ| ≤ 255·128·65536 < 2^31 and likewise the zero-point term and their difference: no overflow.
            int32_t acc = 0;
            for (int64_t q = 0; q < kq; ++q)
                for (int64_t j = 0; j < kS8QuadInputs; ++j)
                    acc += int32_t(at[q * kS8QuadInputs + j]) * int32_t(panel[(q * kS8PanelChannels + lane) * kS8QuadInputs + j]);
            acc -= a_zero_point[t * a_param_stride] * w_sums[i];
            const float s = a_scale[t * a_param_stride] * w_scale[i];
            c[t * ldc + i] = bias ? std::fma(float(acc), s, bias[i]) : float(acc) * s;
        }
    }
}

}  // namespace kernels
}  // namespace cq
