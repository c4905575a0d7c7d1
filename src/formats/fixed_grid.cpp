// Fixed-grid access to ggml's block formats (formats/fixed_grid.h): each format's sub-block scales, mins and
// level packing read and written with the layouts of formats/blocks.h, values as the reference dequantizers
// (codecs_*.cpp) compute them.
#include "formats/fixed_grid.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "formats/codec_math.h"
#include "formats/formats.h"
#include "kernels/kernel_decls.h"

namespace cq::formats {
namespace {

using kernels::f16_to_f32_scalar;

SubBlockGrid uniform(float step, float offset, int zero, int n_levels) { return {step, offset, zero, n_levels, false}; }

// ---- the 32-element formats: element j's low 4 bits in qs[j % 16] (low nibble j < 16), bit 4 in bit j of qh ----

void read_legacy(const uint8_t* qs, const uint8_t* qh, uint8_t* L) {
    uint32_t high = 0;
    if (qh) std::memcpy(&high, qh, 4);
    for (int j = 0; j < kQK / 2; ++j) {
        L[j] = static_cast<uint8_t>((qs[j] & 0x0F) | (((high >> j) & 1u) << 4));
        L[j + kQK / 2] = static_cast<uint8_t>((qs[j] >> 4) | (((high >> (j + kQK / 2)) & 1u) << 4));
    }
}

void write_legacy(const uint8_t* L, uint8_t* qs, uint8_t* qh) {
    uint32_t high = 0;
    for (int j = 0; j < kQK / 2; ++j) {
        qs[j] = static_cast<uint8_t>((L[j] & 0x0F) | ((L[j + kQK / 2] & 0x0F) << 4));
        high |= ((L[j] >> 4) & 1u) << j;
        high |= ((L[j + kQK / 2] >> 4) & 1u) << (j + kQK / 2);
    }
    if (qh) std::memcpy(qh, &high, 4);
}

// ---- k-quants ----

// 2 bits per element (Q2_K, Q3_K): per 128 elements, byte l holds elements l, l+32, l+64, l+96.
void read_2bit(const uint8_t* qs, uint8_t* L) {
    for (int j = 0; j < kQK_K; j += 128)
        for (int l = 0; l < 32; ++l)
            for (int k = 0; k < 4; ++k) L[j + l + 32 * k] = static_cast<uint8_t>((qs[j / 4 + l] >> (2 * k)) & 3);
}
void write_2bit(const uint8_t* L, uint8_t* qs) {
    for (int j = 0; j < kQK_K; j += 128)
        for (int l = 0; l < 32; ++l)
            qs[j / 4 + l] = static_cast<uint8_t>((L[j + l] & 3) | ((L[j + l + 32] & 3) << 2) | ((L[j + l + 64] & 3) << 4) |
                                                 ((L[j + l + 96] & 3) << 6));
}

// Q4_K / Q5_K: element 64c + l (l < 32) in the low nibble of qs[32c + l], 64c + 32 + l in its high nibble;
// Q5_K's bit 4 of them in bits 2c and 2c + 1 of qh[l].
void read_k4_like(const uint8_t* qs, const uint8_t* qh, uint8_t* L) {
    for (int c = 0; c < kQK_K / 64; ++c)
        for (int l = 0; l < 32; ++l) {
            int lo = qs[32 * c + l] & 0xF, hi = qs[32 * c + l] >> 4;
            if (qh) {
                lo |= ((qh[l] >> (2 * c)) & 1) << 4;
                hi |= ((qh[l] >> (2 * c + 1)) & 1) << 4;
            }
            L[64 * c + l] = static_cast<uint8_t>(lo);
            L[64 * c + 32 + l] = static_cast<uint8_t>(hi);
        }
}
void write_k4_like(const uint8_t* L, uint8_t* qs, uint8_t* qh) {
    if (qh) std::memset(qh, 0, kQK_K / 8);
    for (int c = 0; c < kQK_K / 64; ++c)
        for (int l = 0; l < 32; ++l) {
            const uint8_t lo = L[64 * c + l], hi = L[64 * c + 32 + l];
            qs[32 * c + l] = static_cast<uint8_t>((lo & 0xF) | ((hi & 0xF) << 4));
            if (qh) qh[l] |= static_cast<uint8_t>((((lo >> 4) & 1) << (2 * c)) | (((hi >> 4) & 1) << (2 * c + 1)));
        }
}

// Q6_K: per 128-element half h, ql[64h + l] = elements 128h + l (low nibble) and 128h + 64 + l (high),
// ql[64h + 32 + l] = 128h + 32 + l and 128h + 96 + l; qh[32h + l] = top 2 bits of 128h + l + 32k in bits 2k.
void read_q6_K(const BlockQ6_K& b, uint8_t* L) {
    for (int h = 0; h < 2; ++h)
        for (int l = 0; l < 32; ++l) {
            const uint8_t* ql = b.ql + 64 * h;
            const uint8_t qh = b.qh[32 * h + l];
            uint8_t* Lh = L + 128 * h;
            Lh[l] = static_cast<uint8_t>((ql[l] & 0xF) | (((qh >> 0) & 3) << 4));
            Lh[l + 32] = static_cast<uint8_t>((ql[l + 32] & 0xF) | (((qh >> 2) & 3) << 4));
            Lh[l + 64] = static_cast<uint8_t>((ql[l] >> 4) | (((qh >> 4) & 3) << 4));
            Lh[l + 96] = static_cast<uint8_t>((ql[l + 32] >> 4) | (((qh >> 6) & 3) << 4));
        }
}
void write_q6_K(const uint8_t* L, BlockQ6_K& b) {
    for (int h = 0; h < 2; ++h)
        for (int l = 0; l < 32; ++l) {
            const uint8_t* Lh = L + 128 * h;
            const int q1 = Lh[l], q2 = Lh[l + 32], q3 = Lh[l + 64], q4 = Lh[l + 96];
            b.ql[64 * h + l] = static_cast<uint8_t>((q1 & 0xF) | ((q3 & 0xF) << 4));
            b.ql[64 * h + 32 + l] = static_cast<uint8_t>((q2 & 0xF) | ((q4 & 0xF) << 4));
            b.qh[32 * h + l] = static_cast<uint8_t>((q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6));
        }
}

// Q3_K's 6-bit scale of sub-block j (stored offset by 32), as codecs_kquants.cpp reads it.
int q3_K_scale(const uint8_t* s, int j) {
    const int lo = j < 8 ? (s[j] & 0xF) : (s[j - 8] >> 4);
    const int hi = (s[8 + j % 4] >> (2 * (j / 4))) & 3;
    return (lo | (hi << 4)) - 32;
}

// IQ4: 16-byte groups, low nibble = element j, high nibble = element j + 16 of each 32.
void read_iq4(const uint8_t* qs, int n, uint8_t* L) {
    for (int i = 0; i < n / 32; ++i)
        for (int j = 0; j < 16; ++j) {
            L[32 * i + j] = qs[16 * i + j] & 0xF;
            L[32 * i + 16 + j] = qs[16 * i + j] >> 4;
        }
}
void write_iq4(const uint8_t* L, int n, uint8_t* qs) {
    for (int i = 0; i < n / 32; ++i)
        for (int j = 0; j < 16; ++j) qs[16 * i + j] = static_cast<uint8_t>((L[32 * i + j] & 0xF) | ((L[32 * i + 16 + j] & 0xF) << 4));
}

}  // namespace

bool has_fixed_grid(DType type) { return fixed_grid_sub_block(type) != 0; }

int fixed_grid_sub_block(DType type) {
    switch (type) {
        case DType::Q4_0: case DType::Q4_1: case DType::Q5_0: case DType::Q5_1: case DType::Q8_0:
        case DType::Q4_K: case DType::Q5_K: case DType::IQ4_NL: case DType::IQ4_XS:
            return 32;
        case DType::Q2_K: case DType::Q3_K: case DType::Q6_K:
            return 16;
        default:
            return 0;
    }
}

SubBlockGrid sub_block_grid(DType type, const void* block, int sub) {
    switch (type) {
        case DType::Q4_0: return uniform(f16_to_f32_scalar(static_cast<const BlockQ4_0*>(block)->d), 0.0f, 8, 16);
        case DType::Q5_0: return uniform(f16_to_f32_scalar(static_cast<const BlockQ5_0*>(block)->d), 0.0f, 16, 32);
        case DType::Q4_1: {
            const auto* b = static_cast<const BlockQ4_1*>(block);  // q·d + m = d·q − (−m)
            return uniform(f16_to_f32_scalar(b->d), -f16_to_f32_scalar(b->m), 0, 16);
        }
        case DType::Q5_1: {
            const auto* b = static_cast<const BlockQ5_1*>(block);
            return uniform(f16_to_f32_scalar(b->d), -f16_to_f32_scalar(b->m), 0, 32);
        }
        case DType::Q8_0: return uniform(f16_to_f32_scalar(static_cast<const BlockQ8_0*>(block)->d), 0.0f, 127, 255);
        case DType::Q2_K: {
            const auto* b = static_cast<const BlockQ2_K*>(block);
            return uniform(f16_to_f32_scalar(b->d) * static_cast<float>(b->scales[sub] & 0xF),
                           f16_to_f32_scalar(b->dmin) * static_cast<float>(b->scales[sub] >> 4), 0, 4);
        }
        case DType::Q3_K: {
            const auto* b = static_cast<const BlockQ3_K*>(block);
            return uniform(f16_to_f32_scalar(b->d) * static_cast<float>(q3_K_scale(b->scales, sub)), 0.0f, 4, 8);
        }
        case DType::Q4_K:
        case DType::Q5_K: {
            // Q4_K and Q5_K share d, dmin and scales at the same offsets.
            const auto* b = static_cast<const BlockQ4_K*>(block);
            int sc, m;
            scale_min_k4(sub, b->scales, sc, m);
            return uniform(f16_to_f32_scalar(b->d) * static_cast<float>(sc), f16_to_f32_scalar(b->dmin) * static_cast<float>(m), 0,
                           type == DType::Q4_K ? 16 : 32);
        }
        case DType::Q6_K: {
            const auto* b = static_cast<const BlockQ6_K*>(block);
            return uniform(f16_to_f32_scalar(b->d) * static_cast<float>(b->scales[sub]), 0.0f, 32, 64);
        }
        case DType::IQ4_NL: return {f16_to_f32_scalar(static_cast<const BlockIQ4_NL*>(block)->d), 0.0f, 0, 16, true};
        case DType::IQ4_XS: {
            const auto* b = static_cast<const BlockIQ4_XS*>(block);
            return {f16_to_f32_scalar(b->d) * static_cast<float>(iq4_xs_scale(*b, sub) - 32), 0.0f, 0, 16, true};
        }
        default: return {};
    }
}

int nearest_iq4_level(float v) {
    const int8_t* val = kIQ4NLValues;
    if (v <= val[0]) return 0;
    if (v >= val[15]) return 15;
    int lo = 0, hi = 15;
    while (hi - lo > 1) {
        const int mid = (lo + hi) / 2;
        if (v < val[mid]) hi = mid;
        else lo = mid;
    }
    return v - val[hi - 1] < val[hi] - v ? hi - 1 : hi;
}

void read_block_levels(DType type, const void* block, uint8_t* L) {
    switch (type) {
        case DType::Q4_0: return read_legacy(static_cast<const BlockQ4_0*>(block)->qs, nullptr, L);
        case DType::Q4_1: return read_legacy(static_cast<const BlockQ4_1*>(block)->qs, nullptr, L);
        case DType::Q5_0: return read_legacy(static_cast<const BlockQ5_0*>(block)->qs, static_cast<const BlockQ5_0*>(block)->qh, L);
        case DType::Q5_1: return read_legacy(static_cast<const BlockQ5_1*>(block)->qs, static_cast<const BlockQ5_1*>(block)->qh, L);
        case DType::Q8_0: {
            const auto* b = static_cast<const BlockQ8_0*>(block);
            // The reference rule keeps |q| ≤ 127; a -128 from elsewhere reads as level 0's neighbour, clamped.
            for (int j = 0; j < kQK; ++j) L[j] = static_cast<uint8_t>(std::max(0, b->qs[j] + 127));
            return;
        }
        case DType::Q2_K: return read_2bit(static_cast<const BlockQ2_K*>(block)->qs, L);
        case DType::Q3_K: {
            const auto* b = static_cast<const BlockQ3_K*>(block);
            read_2bit(b->qs, L);
            for (int j = 0; j < kQK_K; ++j)
                if ((b->hmask[j % 32] >> (j / 32)) & 1) L[j] = static_cast<uint8_t>(L[j] + 4);
            return;
        }
        case DType::Q4_K: return read_k4_like(static_cast<const BlockQ4_K*>(block)->qs, nullptr, L);
        case DType::Q5_K: return read_k4_like(static_cast<const BlockQ5_K*>(block)->qs, static_cast<const BlockQ5_K*>(block)->qh, L);
        case DType::Q6_K: return read_q6_K(*static_cast<const BlockQ6_K*>(block), L);
        case DType::IQ4_NL: return read_iq4(static_cast<const BlockIQ4_NL*>(block)->qs, kQK, L);
        case DType::IQ4_XS: return read_iq4(static_cast<const BlockIQ4_XS*>(block)->qs, kQK_K, L);
        default: return;
    }
}

void write_block_levels(DType type, void* block, const uint8_t* L) {
    switch (type) {
        case DType::Q4_0: return write_legacy(L, static_cast<BlockQ4_0*>(block)->qs, nullptr);
        case DType::Q4_1: return write_legacy(L, static_cast<BlockQ4_1*>(block)->qs, nullptr);
        case DType::Q5_0: return write_legacy(L, static_cast<BlockQ5_0*>(block)->qs, static_cast<BlockQ5_0*>(block)->qh);
        case DType::Q5_1: return write_legacy(L, static_cast<BlockQ5_1*>(block)->qs, static_cast<BlockQ5_1*>(block)->qh);
        case DType::Q8_0: {
            auto* b = static_cast<BlockQ8_0*>(block);
            for (int j = 0; j < kQK; ++j) b->qs[j] = static_cast<int8_t>(static_cast<int>(L[j]) - 127);
            return;
        }
        case DType::Q2_K: return write_2bit(L, static_cast<BlockQ2_K*>(block)->qs);
        case DType::Q3_K: {
            int8_t Ls[kQK_K];
            for (int j = 0; j < kQK_K; ++j) Ls[j] = static_cast<int8_t>(L[j]);
            return pack_q3_K_levels(Ls, *static_cast<BlockQ3_K*>(block));
        }
        case DType::Q4_K: return write_k4_like(L, static_cast<BlockQ4_K*>(block)->qs, nullptr);
        case DType::Q5_K: return write_k4_like(L, static_cast<BlockQ5_K*>(block)->qs, static_cast<BlockQ5_K*>(block)->qh);
        case DType::Q6_K: return write_q6_K(L, *static_cast<BlockQ6_K*>(block));
        case DType::IQ4_NL: return write_iq4(L, kQK, static_cast<BlockIQ4_NL*>(block)->qs);
        case DType::IQ4_XS: return write_iq4(L, kQK_K, static_cast<BlockIQ4_XS*>(block)->qs);
        default: return;
    }
}

}  // namespace cq::formats
