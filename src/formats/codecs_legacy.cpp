// Reference codecs of the 32-element formats (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1): ggml's
// quantize_row_*_ref rules operation for operation, so the bytes equal llama-quantize's (no imatrix).
// Scales are computed in f32 and only stored as f16 (round to nearest even); the quants use the f32 scale.
#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>

#include "formats/formats.h"
#include "kernels/kernel_decls.h"

namespace cq::formats {
namespace {

using kernels::f16_to_f32_scalar;
using kernels::f32_to_f16_scalar;

// The value of largest magnitude, sign kept (the first one on ties), and that magnitude.
void signed_absmax(const float* x, int n, float& max, float& amax) {
    amax = 0.0f;
    max = 0.0f;
    for (int j = 0; j < n; ++j) {
        const float a = std::fabs(x[j]);
        if (amax < a) {
            amax = a;
            max = x[j];
        }
    }
}

void min_max(const float* x, int n, float& min, float& max) {
    min = FLT_MAX;
    max = -FLT_MAX;
    for (int j = 0; j < n; ++j) {
        if (x[j] < min) min = x[j];
        if (x[j] > max) max = x[j];
    }
}

// ggml truncates toward zero through a narrow integer cast; for the in-range values these codecs
// produce that is the same as truncating through int.
inline int trunc_int(float v) { return static_cast<int>(v); }

}  // namespace

// Q4_0: d = max/−8 where max is the signed value of largest magnitude, so that value maps to q = 0
// exactly and the opposite extreme to q = 16, clamped to 15.
void quantize_row_q4_0_ref(const float* x, void* vy, int64_t k) {
    auto* y = static_cast<BlockQ4_0*>(vy);
    const int64_t nb = k / kQK;
    for (int64_t i = 0; i < nb; ++i, x += kQK) {
        float max, amax;
        signed_absmax(x, kQK, max, amax);
        const float d = max / -8;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = f32_to_f16_scalar(d);
        for (int j = 0; j < kQK / 2; ++j) {
            const int q0 = std::min(15, trunc_int(x[j] * id + 8.5f));
            const int q1 = std::min(15, trunc_int(x[j + kQK / 2] * id + 8.5f));
            y[i].qs[j] = static_cast<uint8_t>(q0 | (q1 << 4));
        }
    }
}

// Q4_1: d = (max − min)/15, m = min.
void quantize_row_q4_1_ref(const float* x, void* vy, int64_t k) {
    auto* y = static_cast<BlockQ4_1*>(vy);
    const int64_t nb = k / kQK;
    for (int64_t i = 0; i < nb; ++i, x += kQK) {
        float min, max;
        min_max(x, kQK, min, max);
        const float d = (max - min) / 15;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = f32_to_f16_scalar(d);
        y[i].m = f32_to_f16_scalar(min);
        for (int j = 0; j < kQK / 2; ++j) {
            const int q0 = std::min(15, trunc_int((x[j] - min) * id + 0.5f));
            const int q1 = std::min(15, trunc_int((x[j + kQK / 2] - min) * id + 0.5f));
            y[i].qs[j] = static_cast<uint8_t>(q0 | (q1 << 4));
        }
    }
}

// Q5_0: as Q4_0 with 32 levels: d = max/−16, q clamped to 31, bit 4 of q[j] goes to bit j of qh.
void quantize_row_q5_0_ref(const float* x, void* vy, int64_t k) {
    auto* y = static_cast<BlockQ5_0*>(vy);
    const int64_t nb = k / kQK;
    for (int64_t i = 0; i < nb; ++i, x += kQK) {
        float max, amax;
        signed_absmax(x, kQK, max, amax);
        const float d = max / -16;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = f32_to_f16_scalar(d);
        uint32_t qh = 0;
        for (int j = 0; j < kQK / 2; ++j) {
            const uint32_t q0 = static_cast<uint32_t>(std::min(31, trunc_int(x[j] * id + 16.5f)));
            const uint32_t q1 = static_cast<uint32_t>(std::min(31, trunc_int(x[j + kQK / 2] * id + 16.5f)));
            y[i].qs[j] = static_cast<uint8_t>((q0 & 0x0F) | ((q1 & 0x0F) << 4));
            qh |= ((q0 >> 4) & 1u) << j;
            qh |= ((q1 >> 4) & 1u) << (j + kQK / 2);
        }
        for (int b = 0; b < 4; ++b) y[i].qh[b] = static_cast<uint8_t>(qh >> (8 * b));
    }
}

// Q5_1: as Q4_1 with 32 levels: d = (max − min)/31. Like ggml, no clamp: (x − min)·id ≤ 31 + ulp.
void quantize_row_q5_1_ref(const float* x, void* vy, int64_t k) {
    auto* y = static_cast<BlockQ5_1*>(vy);
    const int64_t nb = k / kQK;
    for (int64_t i = 0; i < nb; ++i, x += kQK) {
        float min, max;
        min_max(x, kQK, min, max);
        const float d = (max - min) / 31;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = f32_to_f16_scalar(d);
        y[i].m = f32_to_f16_scalar(min);
        uint32_t qh = 0;
        for (int j = 0; j < kQK / 2; ++j) {
            const uint32_t q0 = static_cast<uint8_t>(trunc_int((x[j] - min) * id + 0.5f));
            const uint32_t q1 = static_cast<uint8_t>(trunc_int((x[j + kQK / 2] - min) * id + 0.5f));
            y[i].qs[j] = static_cast<uint8_t>((q0 & 0x0F) | ((q1 & 0x0F) << 4));
            qh |= ((q0 >> 4) & 1u) << j;
            qh |= ((q1 >> 4) & 1u) << (j + kQK / 2);
        }
        for (int b = 0; b < 4; ++b) y[i].qh[b] = static_cast<uint8_t>(qh >> (8 * b));
    }
}

// Q8_0: d = amax/127, q = round half away from zero (roundf) of x/d.
void quantize_row_q8_0_ref(const float* x, void* vy, int64_t k) {
    auto* y = static_cast<BlockQ8_0*>(vy);
    const int64_t nb = k / kQK;
    for (int64_t i = 0; i < nb; ++i, x += kQK) {
        float amax = 0.0f;
        for (int j = 0; j < kQK; ++j) amax = std::max(amax, std::fabs(x[j]));
        const float d = amax / 127;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = f32_to_f16_scalar(d);
        for (int j = 0; j < kQK; ++j) y[i].qs[j] = static_cast<int8_t>(std::round(x[j] * id));
    }
}

// Q8_1: Q8_0's rule plus s = f16(d·Σq) (the f32 d, not the stored f16 one).
void quantize_row_q8_1_ref(const float* x, void* vy, int64_t k) {
    auto* y = static_cast<BlockQ8_1*>(vy);
    const int64_t nb = k / kQK;
    for (int64_t i = 0; i < nb; ++i, x += kQK) {
        float amax = 0.0f;
        for (int j = 0; j < kQK; ++j) amax = std::max(amax, std::fabs(x[j]));
        const float d = amax / 127;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = f32_to_f16_scalar(d);
        int sum = 0;
        for (int j = 0; j < kQK; ++j) {
            y[i].qs[j] = static_cast<int8_t>(std::round(x[j] * id));
            sum += y[i].qs[j];
        }
        y[i].s = f32_to_f16_scalar(static_cast<float>(sum) * d);
    }
}

void dequantize_row_q4_0_ref(const void* vx, float* y, int64_t k) {
    const auto* x = static_cast<const BlockQ4_0*>(vx);
    const int64_t nb = k / kQK;
    for (int64_t i = 0; i < nb; ++i, y += kQK) {
        const float d = f16_to_f32_scalar(x[i].d);
        for (int j = 0; j < kQK / 2; ++j) {
            y[j] = static_cast<float>((x[i].qs[j] & 0x0F) - 8) * d;
            y[j + kQK / 2] = static_cast<float>((x[i].qs[j] >> 4) - 8) * d;
        }
    }
}

void dequantize_row_q4_1_ref(const void* vx, float* y, int64_t k) {
    const auto* x = static_cast<const BlockQ4_1*>(vx);
    const int64_t nb = k / kQK;
    for (int64_t i = 0; i < nb; ++i, y += kQK) {
        const float d = f16_to_f32_scalar(x[i].d);
        const float m = f16_to_f32_scalar(x[i].m);
        for (int j = 0; j < kQK / 2; ++j) {
            y[j] = static_cast<float>(x[i].qs[j] & 0x0F) * d + m;
            y[j + kQK / 2] = static_cast<float>(x[i].qs[j] >> 4) * d + m;
        }
    }
}

namespace {
inline uint32_t load_qh(const uint8_t* qh) {
    return uint32_t(qh[0]) | (uint32_t(qh[1]) << 8) | (uint32_t(qh[2]) << 16) | (uint32_t(qh[3]) << 24);
}
}  // namespace

void dequantize_row_q5_0_ref(const void* vx, float* y, int64_t k) {
    const auto* x = static_cast<const BlockQ5_0*>(vx);
    const int64_t nb = k / kQK;
    for (int64_t i = 0; i < nb; ++i, y += kQK) {
        const float d = f16_to_f32_scalar(x[i].d);
        const uint32_t qh = load_qh(x[i].qh);
        for (int j = 0; j < kQK / 2; ++j) {
            const int q0 = int((x[i].qs[j] & 0x0F) | (((qh >> j) & 1u) << 4));
            const int q1 = int((x[i].qs[j] >> 4) | (((qh >> (j + kQK / 2)) & 1u) << 4));
            y[j] = static_cast<float>(q0 - 16) * d;
            y[j + kQK / 2] = static_cast<float>(q1 - 16) * d;
        }
    }
}

void dequantize_row_q5_1_ref(const void* vx, float* y, int64_t k) {
    const auto* x = static_cast<const BlockQ5_1*>(vx);
    const int64_t nb = k / kQK;
    for (int64_t i = 0; i < nb; ++i, y += kQK) {
        const float d = f16_to_f32_scalar(x[i].d);
        const float m = f16_to_f32_scalar(x[i].m);
        const uint32_t qh = load_qh(x[i].qh);
        for (int j = 0; j < kQK / 2; ++j) {
            const int q0 = int((x[i].qs[j] & 0x0F) | (((qh >> j) & 1u) << 4));
            const int q1 = int((x[i].qs[j] >> 4) | (((qh >> (j + kQK / 2)) & 1u) << 4));
            y[j] = static_cast<float>(q0) * d + m;
            y[j + kQK / 2] = static_cast<float>(q1) * d + m;
        }
    }
}

void dequantize_row_q8_0_ref(const void* vx, float* y, int64_t k) {
    const auto* x = static_cast<const BlockQ8_0*>(vx);
    const int64_t nb = k / kQK;
    for (int64_t i = 0; i < nb; ++i, y += kQK) {
        const float d = f16_to_f32_scalar(x[i].d);
        for (int j = 0; j < kQK; ++j) y[j] = static_cast<float>(x[i].qs[j]) * d;
    }
}

void dequantize_row_q8_1_ref(const void* vx, float* y, int64_t k) {
    const auto* x = static_cast<const BlockQ8_1*>(vx);
    const int64_t nb = k / kQK;
    for (int64_t i = 0; i < nb; ++i, y += kQK) {
        const float d = f16_to_f32_scalar(x[i].d);
        for (int j = 0; j < kQK; ++j) y[j] = static_cast<float>(x[i].qs[j]) * d;
    }
}

}  // namespace cq::formats
