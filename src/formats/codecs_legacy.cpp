// Reference codecs of the 32-element formats (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1): ggml's
// quantize_row_*_ref rules operation for operation, so the bytes equal llama-quantize's (no imatrix).
// Scales are computed in f32 and only stored as f16 (round to nearest even); the quants use the f32 scale.
#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>

#include "formats/codec_math.h"
#include "formats/formats.h"
#include "kernels/kernel_decls.h"

namespace cq::formats {
namespace {

using kernels::f16_to_f32_scalar;
using kernels::f32_to_f16_scalar;

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

// Formats with a minimum (Q4_1, Q5_1) have a member m; the symmetric ones (Q4_0, Q5_0) do not.
template <class Block>
constexpr bool kAffine = requires(Block b) { b.m; };

// Symmetric (Q4_0, Q5_0): d = max/−2^(bits−1) where max is the signed value of largest magnitude, so
// that value maps to q = 0 exactly and the opposite extreme to q = 2^bits, clamped to 2^bits − 1.
template <int Bits>
float quantize_symmetric(const float* x, int* q) {
    constexpr int kHalf = 1 << (Bits - 1);
    const float d = signed_absmax(x, kQK).max / -kHalf;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    for (int j = 0; j < kQK; ++j) q[j] = std::min(2 * kHalf - 1, trunc_int(x[j] * id + (kHalf + 0.5f)));
    return d;
}

// Affine (Q4_1, Q5_1): d = (max − min)/(2^bits − 1), m = min, q = trunc((x − min)·id + ½). ggml clamps
// Q4_1's q to 15 and not Q5_1's, but (x − min)·id ≤ 2^bits − 1 + ulp, so the clamp never acts.
template <int Bits>
float quantize_affine(const float* x, float& min, int* q) {
    constexpr int kMaxQ = (1 << Bits) - 1;
    float max;
    min_max(x, kQK, min, max);
    const float d = (max - min) / kMaxQ;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    for (int j = 0; j < kQK; ++j) q[j] = std::min(kMaxQ, trunc_int((x[j] - min) * id + 0.5f));
    return d;
}

// Low 4 bits: element j in the low nibble of byte j, element j + 16 in its high nibble.
void pack_nibbles(const int* q, uint8_t* qs) {
    for (int j = 0; j < kQK / 2; ++j) qs[j] = static_cast<uint8_t>((q[j] & 0x0F) | ((q[j + kQK / 2] & 0x0F) << 4));
}
void unpack_nibbles(const uint8_t* qs, int* q) {
    for (int j = 0; j < kQK / 2; ++j) {
        q[j] = qs[j] & 0x0F;
        q[j + kQK / 2] = qs[j] >> 4;
    }
}

// Bit 4 of element j is bit j of qh, a little-endian u32.
void pack_high_bits(const int* q, uint8_t* qh) {
    uint32_t bits = 0;
    for (int j = 0; j < kQK; ++j) bits |= ((static_cast<uint32_t>(q[j]) >> 4) & 1u) << j;
    for (int b = 0; b < 4; ++b) qh[b] = static_cast<uint8_t>(bits >> (8 * b));
}
void unpack_high_bits(const uint8_t* qh, int* q) {
    const uint32_t bits = uint32_t(qh[0]) | (uint32_t(qh[1]) << 8) | (uint32_t(qh[2]) << 16) | (uint32_t(qh[3]) << 24);
    for (int j = 0; j < kQK; ++j) q[j] |= static_cast<int>((bits >> j) & 1u) << 4;
}

// The 4- and 5-bit formats: the scale rule (symmetric or affine) and the bit count are all that differ.
template <class Block, int Bits>
void quantize_row_q4_q5(const float* x, void* vy, int64_t k) {
    auto* y = static_cast<Block*>(vy);
    int q[kQK];
    for (int64_t i = 0; i < k / kQK; ++i, x += kQK) {
        if constexpr (kAffine<Block>) {
            float min;
            y[i].d = f32_to_f16_scalar(quantize_affine<Bits>(x, min, q));
            y[i].m = f32_to_f16_scalar(min);
        } else {
            y[i].d = f32_to_f16_scalar(quantize_symmetric<Bits>(x, q));
        }
        pack_nibbles(q, y[i].qs);
        if constexpr (Bits == 5) pack_high_bits(q, y[i].qh);
    }
}

// Symmetric: y = (q − 2^(bits−1))·d; affine: y = q·d + m.
template <class Block, int Bits>
void dequantize_row_q4_q5(const void* vx, float* y, int64_t k) {
    const auto* x = static_cast<const Block*>(vx);
    int q[kQK];
    for (int64_t i = 0; i < k / kQK; ++i, y += kQK) {
        unpack_nibbles(x[i].qs, q);
        if constexpr (Bits == 5) unpack_high_bits(x[i].qh, q);
        const float d = f16_to_f32_scalar(x[i].d);
        if constexpr (kAffine<Block>) {
            const float m = f16_to_f32_scalar(x[i].m);
            for (int j = 0; j < kQK; ++j) y[j] = static_cast<float>(q[j]) * d + m;
        } else {
            for (int j = 0; j < kQK; ++j) y[j] = static_cast<float>(q[j] - (1 << (Bits - 1))) * d;
        }
    }
}

// Q8_0's rule: d = amax/127, q = round half away from zero (roundf) of x/d. Returns the f32 d.
float quantize_q8(const float* x, int8_t* qs) {
    float amax = 0.0f;
    for (int j = 0; j < kQK; ++j) amax = std::max(amax, std::fabs(x[j]));
    const float d = amax / 127;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    for (int j = 0; j < kQK; ++j) qs[j] = static_cast<int8_t>(std::round(x[j] * id));
    return d;
}

template <class Block>
void dequantize_row_q8(const void* vx, float* y, int64_t k) {
    const auto* x = static_cast<const Block*>(vx);
    for (int64_t i = 0; i < k / kQK; ++i, y += kQK) {
        const float d = f16_to_f32_scalar(x[i].d);
        for (int j = 0; j < kQK; ++j) y[j] = static_cast<float>(x[i].qs[j]) * d;
    }
}

}  // namespace

void quantize_row_q4_0_ref(const float* x, void* y, int64_t k) { quantize_row_q4_q5<BlockQ4_0, 4>(x, y, k); }
void quantize_row_q4_1_ref(const float* x, void* y, int64_t k) { quantize_row_q4_q5<BlockQ4_1, 4>(x, y, k); }
void quantize_row_q5_0_ref(const float* x, void* y, int64_t k) { quantize_row_q4_q5<BlockQ5_0, 5>(x, y, k); }
void quantize_row_q5_1_ref(const float* x, void* y, int64_t k) { quantize_row_q4_q5<BlockQ5_1, 5>(x, y, k); }

void quantize_row_q8_0_ref(const float* x, void* vy, int64_t k) {
    auto* y = static_cast<BlockQ8_0*>(vy);
    for (int64_t i = 0; i < k / kQK; ++i, x += kQK) y[i].d = f32_to_f16_scalar(quantize_q8(x, y[i].qs));
}

// Q8_1: Q8_0's rule plus s = f16(d·Σq) (the f32 d, not the stored f16 one).
void quantize_row_q8_1_ref(const float* x, void* vy, int64_t k) {
    auto* y = static_cast<BlockQ8_1*>(vy);
    for (int64_t i = 0; i < k / kQK; ++i, x += kQK) {
        const float d = quantize_q8(x, y[i].qs);
        y[i].d = f32_to_f16_scalar(d);
        int sum = 0;
        for (int j = 0; j < kQK; ++j) sum += y[i].qs[j];
        y[i].s = f32_to_f16_scalar(static_cast<float>(sum) * d);
    }
}

void dequantize_row_q4_0_ref(const void* x, float* y, int64_t k) { dequantize_row_q4_q5<BlockQ4_0, 4>(x, y, k); }
void dequantize_row_q4_1_ref(const void* x, float* y, int64_t k) { dequantize_row_q4_q5<BlockQ4_1, 4>(x, y, k); }
void dequantize_row_q5_0_ref(const void* x, float* y, int64_t k) { dequantize_row_q4_q5<BlockQ5_0, 5>(x, y, k); }
void dequantize_row_q5_1_ref(const void* x, float* y, int64_t k) { dequantize_row_q4_q5<BlockQ5_1, 5>(x, y, k); }
void dequantize_row_q8_0_ref(const void* x, float* y, int64_t k) { dequantize_row_q8<BlockQ8_0>(x, y, k); }
void dequantize_row_q8_1_ref(const void* x, float* y, int64_t k) { dequantize_row_q8<BlockQ8_1>(x, y, k); }

}  // namespace cq::formats
