// ggml's quantized block layouts, byte for byte (ggml-common.h), so GGUF files cq writes load in
// llama.cpp and vice versa. Each struct gives bits per weight, the dequantization formula and the
// order of elements inside the bytes; static_asserts pin the sizes. f16 fields are IEEE half bits.
#pragma once

#include <cstdint>

namespace cq::formats {

using f16_bits = uint16_t;

inline constexpr int kQK = 32;    // elements per block of the legacy formats
inline constexpr int kQK_K = 256; // elements per super-block of the k-quants
inline constexpr int kKScaleSize = 12;

// Q4_0 — 4.5 bpw. x[j] = (q[j] − 8)·d. qs[j] low nibble = element j, high nibble = element j+16.
struct BlockQ4_0 {
    f16_bits d;
    uint8_t qs[kQK / 2];
};
static_assert(sizeof(BlockQ4_0) == 18);

// Q4_0 in groups of 8 rows — cq's in-memory layout for the interleaved Q4_0 kernels (never in a file).
// Block b of rows 8g..8g+7: their 8 scales, then qs[32·jj + 4·r + i] = byte 4·jj + i of row r's qs
// (jj, i in 0..3), so one 32-byte load holds the same 4 bytes (elements 4jj..4jj+3 in the low nibbles,
// 16+4jj.. in the high ones) of all 8 rows. Same 4.5 bpw as Q4_0: a group of nb blocks is 8 rows' bytes.
struct BlockQ4_0x8 {
    f16_bits d[8];
    uint8_t qs[8 * kQK / 2];
};
static_assert(sizeof(BlockQ4_0x8) == 8 * sizeof(BlockQ4_0));

// Q4_1 — 5 bpw. x[j] = q[j]·d + m. Nibble order as Q4_0.
struct BlockQ4_1 {
    f16_bits d, m;
    uint8_t qs[kQK / 2];
};
static_assert(sizeof(BlockQ4_1) == 20);

// Q5_0 — 5.5 bpw. x[j] = (q[j] − 16)·d with q[j] = nibble (as Q4_0) | bit j of qh (little-endian u32) << 4.
struct BlockQ5_0 {
    f16_bits d;
    uint8_t qh[4];
    uint8_t qs[kQK / 2];
};
static_assert(sizeof(BlockQ5_0) == 22);

// Q5_1 — 6 bpw. x[j] = q[j]·d + m, q[j] built as in Q5_0.
struct BlockQ5_1 {
    f16_bits d, m;
    uint8_t qh[4];
    uint8_t qs[kQK / 2];
};
static_assert(sizeof(BlockQ5_1) == 24);

// Q8_0 — 8.5 bpw. x[j] = qs[j]·d.
struct BlockQ8_0 {
    f16_bits d;
    int8_t qs[kQK];
};
static_assert(sizeof(BlockQ8_0) == 34);

// Q8_0 in groups of 8 rows — like BlockQ4_0x8: the 8 scales, then qs[32·j + 4·r + i] = qs[4·j + i] of
// row r (j in 0..7, i in 0..3), so one 32-byte load holds elements 4j..4j+3 of all 8 rows.
struct BlockQ8_0x8 {
    f16_bits d[8];
    int8_t qs[8 * kQK];
};
static_assert(sizeof(BlockQ8_0x8) == 8 * sizeof(BlockQ8_0));

// Q8_1 — activations paired with Q4_1/Q5_1: x[j] = qs[j]·d; s = d·Σ qs[j] (f16).
struct BlockQ8_1 {
    f16_bits d, s;
    int8_t qs[kQK];
};
static_assert(sizeof(BlockQ8_1) == 36);

// Q2_K — 2.625 bpw. 16 sub-blocks of 16: scales[i] low nibble = scale, high nibble = min;
// x = d·scale·q − dmin·min, q 2-bit. qs: for each 128-element half, byte l holds elements
// l, l+32, l+64, l+96 of that half in bit pairs 0-1, 2-3, 4-5, 6-7.
struct BlockQ2_K {
    uint8_t scales[kQK_K / 16];
    uint8_t qs[kQK_K / 4];
    f16_bits d, dmin;
};
static_assert(sizeof(BlockQ2_K) == 84);

// Q3_K — 3.4375 bpw. 16 sub-blocks of 16 (sub-block j = elements 16j … 16j+15);
// x = d·(scale_j − 32)·(q − 4·!hbit): q's low 2 bits in qs (layout as Q2_K), its high bit in hmask
// (bit k of hmask[l] belongs to element l + 32k). The 6-bit scale_j: low 4 bits in the low nibble of
// scales[j] (j < 8) or the high nibble of scales[j − 8] (j ≥ 8), top 2 bits in bits 2·(j/4)+1:2·(j/4)
// of scales[8 + j%4].
struct BlockQ3_K {
    uint8_t hmask[kQK_K / 8];
    uint8_t qs[kQK_K / 4];
    uint8_t scales[12];
    f16_bits d;
};
static_assert(sizeof(BlockQ3_K) == 110);

// Q4_K — 4.5 bpw. 8 sub-blocks of 32 with 6-bit scale and min packed in scales[12];
// x = d·scale_j·q − dmin·min_j. qs: each 64-element chunk is 32 bytes, low nibbles first 32 elements,
// high nibbles the next 32. Packing (ggml's get_scale_min_k4), j < 4: scale_j = scales[j] & 63,
// min_j = scales[j+4] & 63; j ≥ 4: scale_j = (scales[j+4] & 15) | (scales[j−4] >> 6) << 4,
// min_j = (scales[j+4] >> 4) | (scales[j] >> 6) << 4.
struct BlockQ4_K {
    f16_bits d, dmin;
    uint8_t scales[kKScaleSize];
    uint8_t qs[kQK_K / 2];
};
static_assert(sizeof(BlockQ4_K) == 144);

// Scale and min of sub-block j (of 8) of a Q4_K / Q5_K block: the packing described above.
inline void scale_min_k4(int j, const uint8_t* scales, int& sc, int& mn) {
    if (j < 4) {
        sc = scales[j] & 63;
        mn = scales[j + 4] & 63;
    } else {
        sc = (scales[j + 4] & 0x0F) | ((scales[j - 4] >> 6) << 4);
        mn = (scales[j + 4] >> 4) | ((scales[j] >> 6) << 4);
    }
}

// Q4_K in groups of 8 rows — cq's in-memory layout for the interleaved Q4_K kernels (never in a file).
// The 8 rows' d and dmin; their sub-block scales decoded, scales[sb][r]; their mins as i16 pairs of
// sub-blocks, mins[p][r] = {min of sub-block 2p, of 2p+1}; qs[256·p + 32·jj + 4·r + i] = qs[32·p + 4·jj + i]
// of row r (p, the 64-element chunk, in 0..3; jj in 0..7): one 32-byte load holds elements 4jj..4jj+3
// of sub-block 2p (low nibbles) and 2p+1 (high) of all 8 rows. 156 bytes per row and super-block.
struct BlockQ4_Kx8 {
    f16_bits d[8], dmin[8];
    uint8_t scales[8][8];
    int16_t mins[4][8][2];
    uint8_t qs[8 * kQK_K / 2];
};
static_assert(sizeof(BlockQ4_Kx8) == 8 * 156);

// Q5_K — 5.5 bpw. As Q4_K (scales, nibble order) plus a fifth bit per element in qh: element
// 64c + l (l < 32) has it in bit 2c of qh[l], element 64c + 32 + l in bit 2c+1.
struct BlockQ5_K {
    f16_bits d, dmin;
    uint8_t scales[kKScaleSize];
    uint8_t qh[kQK_K / 8];
    uint8_t qs[kQK_K / 2];
};
static_assert(sizeof(BlockQ5_K) == 176);

// Q6_K — 6.5625 bpw. x = d·scales[i]·(q − 32) for element e in sub-block i = e/16 (signed 8-bit
// scales). Per 128-element half h, with l < 32: ql[64h+l] holds elements 128h+l (low nibble) and
// 128h+64+l (high), ql[64h+32+l] holds 128h+32+l and 128h+96+l; qh[32h+l] holds the top 2 bits of
// elements 128h+l, +32, +64, +96 in bit pairs 0-1, 2-3, 4-5, 6-7.
struct BlockQ6_K {
    uint8_t ql[kQK_K / 2];
    uint8_t qh[kQK_K / 4];
    int8_t scales[kQK_K / 16];
    f16_bits d;
};
static_assert(sizeof(BlockQ6_K) == 210);

// IQ4_NL — 4.5 bpw, non-linear. x[j] = d·kIQ4NLValues[q[j]] with q 4-bit; nibble order as Q4_0 (qs[j] low
// nibble = element j, high nibble = element j+16). Products pair with Q8_0.
struct BlockIQ4_NL {
    f16_bits d;
    uint8_t qs[kQK / 2];
};
static_assert(sizeof(BlockIQ4_NL) == 18);

// IQ4_XS — 4.25 bpw. 8 sub-blocks of 32, each x[j] = d·(ls − 32)·kIQ4NLValues[q[j]] with a 6-bit ls: its low 4
// bits in nibble (ib % 2) of scales_l[ib / 2], its top 2 bits in bits 2·ib, 2·ib+1 of scales_h (little-endian u16).
// Sub-block ib's 16 bytes qs[16·ib …]: low nibble = element 32·ib + j, high nibble = element 32·ib + 16 + j.
// Products pair with Q8_K.
struct BlockIQ4_XS {
    f16_bits d;
    uint16_t scales_h;
    uint8_t scales_l[kQK_K / 64];
    uint8_t qs[kQK_K / 2];
};
static_assert(sizeof(BlockIQ4_XS) == 136);

// The 16 levels of IQ4_NL / IQ4_XS (ggml's kvalues_iq4nl), ascending.
inline constexpr int8_t kIQ4NLValues[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

// The 6-bit scale (0..63, stored offset by 32) of sub-block ib of an IQ4_XS block.
inline int iq4_xs_scale(const BlockIQ4_XS& b, int ib) {
    return ((b.scales_l[ib / 2] >> (4 * (ib % 2))) & 0xF) | (((b.scales_h >> (2 * ib)) & 3) << 4);
}

// Q8_K — activations paired with the k-quants (never stored in files): x = qs·d (f32 d);
// bsums[i] = Σ qs over group i of 16.
struct BlockQ8_K {
    float d;
    int8_t qs[kQK_K];
    int16_t bsums[kQK_K / 16];
};
static_assert(sizeof(BlockQ8_K) == 292);

}  // namespace cq::formats
