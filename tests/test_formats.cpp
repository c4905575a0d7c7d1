// The quantized formats' reference codecs: hand-computed blocks per format (ramps, exact grids,
// all-zero and tiny rows, outliers, sign-dominant blocks), per-element error bounds derived from the
// stored scales, the dtype-table wiring, the activation pairing, and byte identity with llama.cpp:
// tests/expected/llamacpp_quant/stories260K.json (written by make_expected.py next to it) holds the
// crc32 of what llama-quantize wrote for stories260K and of what ggml_quantize_chunk wrote for real
// GPT-2 weights, plus the RMSE of llama.cpp's own dequantization.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cq/dtype.h"
#include "cq/kernels.h"
#include "cq/io/gguf.h"
#include "cq/io/safetensors.h"
#include "formats/formats.h"
#include "kernels/kernel_decls.h"
#include "test_support.h"

namespace {

using cq::DType;
using nlohmann::json;
namespace fmt = cq::formats;

constexpr std::array kCodecTypes = {DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q5_1, DType::Q8_0, DType::Q8_1,
                                    DType::Q2_K, DType::Q3_K, DType::Q4_K, DType::Q5_K, DType::Q6_K, DType::Q8_K};

std::string name_of(DType dt) { return std::string(cq::dtype_name(dt)); }

std::vector<uint8_t> quantize(DType dt, const float* x, size_t n) {
    const auto& t = cq::dtype_traits(dt);
    std::vector<uint8_t> out(n / t.block_size * t.bytes_per_block, 0xCD);
    t.from_float(x, out.data(), static_cast<int64_t>(n));
    return out;
}
std::vector<uint8_t> quantize(DType dt, const std::vector<float>& x) { return quantize(dt, x.data(), x.size()); }

std::vector<float> dequantize(DType dt, const std::vector<uint8_t>& q, size_t n) {
    std::vector<float> y(n);
    cq::dtype_traits(dt).to_float(q.data(), y.data(), static_cast<int64_t>(n));
    return y;
}

double rmse(const float* a, const float* b, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; ++i) {
        const double e = static_cast<double>(a[i]) - static_cast<double>(b[i]);
        s += e * e;
    }
    return std::sqrt(s / static_cast<double>(n));
}

// zlib's crc32 (reflected polynomial 0xEDB88320), as Python's zlib.crc32 computes it.
uint32_t crc32(const uint8_t* p, size_t n) {
    static const std::array<uint32_t, 256> table = [] {
        std::array<uint32_t, 256> t{};
        for (uint32_t i = 0; i < 256; ++i) {
            uint32_t c = i;
            for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
            t[i] = c;
        }
        return t;
    }();
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; ++i) c = table[(c ^ p[i]) & 0xFF] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

float h2f(uint16_t h) { return cq::kernels::f16_to_f32_scalar(h); }
uint16_t f2h(float f) { return cq::kernels::f32_to_f16_scalar(f); }

template <typename Block>
const Block& block(const std::vector<uint8_t>& q, size_t i = 0) {
    return *reinterpret_cast<const Block*>(q.data() + i * sizeof(Block));
}

uint32_t qh_bits(const uint8_t* qh) {
    return uint32_t(qh[0]) | (uint32_t(qh[1]) << 8) | (uint32_t(qh[2]) << 16) | (uint32_t(qh[3]) << 24);
}

std::vector<float> gaussian(size_t n, uint32_t seed, float sigma = 1.0f) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> nd(0.0f, sigma);
    std::vector<float> v(n);
    for (auto& x : v) x = nd(rng);
    return v;
}

// ---------------------------------------------------------------------------------------------
// Wiring

TEST(Formats, TraitsTableUsesTheReferenceCodecs) {
    struct Row {
        DType dt;
        cq::ToFloatFn to;
        cq::FromFloatFn from;
    };
    const Row rows[] = {
        {DType::Q4_0, fmt::dequantize_row_q4_0_ref, fmt::quantize_row_q4_0_ref},
        {DType::Q4_1, fmt::dequantize_row_q4_1_ref, fmt::quantize_row_q4_1_ref},
        {DType::Q5_0, fmt::dequantize_row_q5_0_ref, fmt::quantize_row_q5_0_ref},
        {DType::Q5_1, fmt::dequantize_row_q5_1_ref, fmt::quantize_row_q5_1_ref},
        {DType::Q8_0, fmt::dequantize_row_q8_0_ref, fmt::quantize_row_q8_0_ref},
        {DType::Q8_1, fmt::dequantize_row_q8_1_ref, fmt::quantize_row_q8_1_ref},
        {DType::Q2_K, fmt::dequantize_row_q2_K_ref, fmt::quantize_row_q2_K_ref},
        {DType::Q3_K, fmt::dequantize_row_q3_K_ref, fmt::quantize_row_q3_K_ref},
        {DType::Q4_K, fmt::dequantize_row_q4_K_ref, fmt::quantize_row_q4_K_ref},
        {DType::Q5_K, fmt::dequantize_row_q5_K_ref, fmt::quantize_row_q5_K_ref},
        {DType::Q6_K, fmt::dequantize_row_q6_K_ref, fmt::quantize_row_q6_K_ref},
        {DType::Q8_K, fmt::dequantize_row_q8_K_ref, fmt::quantize_row_q8_K_ref},
    };
    for (const auto& r : rows) {
        const auto& t = cq::dtype_traits(r.dt);
        EXPECT_EQ(t.to_float, r.to) << name_of(r.dt);
        EXPECT_EQ(t.from_float, r.from) << name_of(r.dt);
    }
    // The block structs are the sizes the traits table (ggml's ggml-common.h) says.
    EXPECT_EQ(cq::dtype_traits(DType::Q4_0).bytes_per_block, sizeof(fmt::BlockQ4_0));
    EXPECT_EQ(cq::dtype_traits(DType::Q4_1).bytes_per_block, sizeof(fmt::BlockQ4_1));
    EXPECT_EQ(cq::dtype_traits(DType::Q5_0).bytes_per_block, sizeof(fmt::BlockQ5_0));
    EXPECT_EQ(cq::dtype_traits(DType::Q5_1).bytes_per_block, sizeof(fmt::BlockQ5_1));
    EXPECT_EQ(cq::dtype_traits(DType::Q8_0).bytes_per_block, sizeof(fmt::BlockQ8_0));
    EXPECT_EQ(cq::dtype_traits(DType::Q8_1).bytes_per_block, sizeof(fmt::BlockQ8_1));
    EXPECT_EQ(cq::dtype_traits(DType::Q2_K).bytes_per_block, sizeof(fmt::BlockQ2_K));
    EXPECT_EQ(cq::dtype_traits(DType::Q3_K).bytes_per_block, sizeof(fmt::BlockQ3_K));
    EXPECT_EQ(cq::dtype_traits(DType::Q4_K).bytes_per_block, sizeof(fmt::BlockQ4_K));
    EXPECT_EQ(cq::dtype_traits(DType::Q5_K).bytes_per_block, sizeof(fmt::BlockQ5_K));
    EXPECT_EQ(cq::dtype_traits(DType::Q6_K).bytes_per_block, sizeof(fmt::BlockQ6_K));
    EXPECT_EQ(cq::dtype_traits(DType::Q8_K).bytes_per_block, sizeof(fmt::BlockQ8_K));
}

TEST(Formats, ActivationTypeFollowsGgmlVecDotType) {
    const cq::KernelTable t = cq::make_kernel_table(cq::IsaLevel::ref);
    const auto act = [&](DType w) { return t.quant_kernels(w).act_type; };
    EXPECT_EQ(act(DType::Q4_0), DType::Q8_0);
    EXPECT_EQ(act(DType::Q5_0), DType::Q8_0);
    EXPECT_EQ(act(DType::Q8_0), DType::Q8_0);
    EXPECT_EQ(act(DType::Q4_1), DType::Q8_1);
    EXPECT_EQ(act(DType::Q5_1), DType::Q8_1);
    for (DType dt : {DType::Q2_K, DType::Q3_K, DType::Q4_K, DType::Q5_K, DType::Q6_K})
        EXPECT_EQ(act(dt), DType::Q8_K) << name_of(dt);
    EXPECT_EQ(act(DType::IQ4_NL), DType::Q8_0);
    EXPECT_EQ(act(DType::IQ4_XS), DType::Q8_K);
    // activation-only types pair with themselves and carry no product; the rest have no kernels
    for (DType dt : {DType::Q8_1, DType::Q8_K}) {
        EXPECT_EQ(act(dt), dt) << name_of(dt);
        EXPECT_EQ(t.quant_kernels(dt).gemm.fn, nullptr) << name_of(dt);
    }
    for (DType dt : {DType::F32, DType::IQ2_XXS, DType::I8, DType::U8})
        EXPECT_EQ(act(dt), DType::F32) << name_of(dt);
}

// ---------------------------------------------------------------------------------------------
// Every codec: rows that are zero, ±0, or too small for an f16 scale decode to finite values, and
// all-zero rows decode to exactly zero (no 0/0 scale).

TEST(Formats, ZeroAndTinyRowsDecodeFinite) {
    constexpr size_t n = 512;
    for (DType dt : kCodecTypes) {
        std::vector<float> zeros(n, 0.0f), negzeros(n, -0.0f), tiny(n);
        for (size_t i = 0; i < n; ++i) tiny[i] = (i % 3 == 0 ? -1e-30f : 1e-31f) * float(i % 7);
        for (const auto* row : {&zeros, &negzeros}) {
            const auto y = dequantize(dt, quantize(dt, *row), n);
            for (size_t i = 0; i < n; ++i) ASSERT_EQ(y[i], 0.0f) << name_of(dt) << " element " << i;
        }
        const auto y = dequantize(dt, quantize(dt, tiny), n);
        for (size_t i = 0; i < n; ++i) {
            ASSERT_TRUE(std::isfinite(y[i])) << name_of(dt) << " tiny row, element " << i;
            ASSERT_LE(std::fabs(y[i]), 1e-29f) << name_of(dt) << " tiny row, element " << i;
        }
    }
}

TEST(Formats, ZeroBlocksStoreZeroScales) {
    const std::vector<float> zeros(256, 0.0f);
    const auto q40 = quantize(DType::Q4_0, zeros), q80 = quantize(DType::Q8_0, zeros);
    EXPECT_EQ(h2f(block<fmt::BlockQ4_0>(q40).d), 0.0f);  // −0: max/−8 with max = 0
    EXPECT_EQ(h2f(block<fmt::BlockQ8_0>(q80).d), 0.0f);
    const auto q2b = quantize(DType::Q2_K, zeros);
    const auto& q2 = block<fmt::BlockQ2_K>(q2b);
    EXPECT_EQ(q2.d, 0);
    EXPECT_EQ(q2.dmin, 0);
    const auto q3b = quantize(DType::Q3_K, zeros), q4b = quantize(DType::Q4_K, zeros);
    EXPECT_EQ(block<fmt::BlockQ3_K>(q3b).d, 0);
    const auto& q4 = block<fmt::BlockQ4_K>(q4b);
    EXPECT_EQ(q4.d, 0);
    EXPECT_EQ(q4.dmin, 0);
    const auto q6 = quantize(DType::Q6_K, zeros);  // ggml zeroes the whole block
    for (size_t i = 0; i < q6.size(); ++i) ASSERT_EQ(q6[i], 0) << "q6_K byte " << i;
    const auto q8k = quantize(DType::Q8_K, zeros);  // ggml leaves bsums unwritten; cq zeroes them
    for (size_t i = 0; i < q8k.size(); ++i) ASSERT_EQ(q8k[i], 0) << "q8_K byte " << i;
}

// ---------------------------------------------------------------------------------------------
// 32-element formats, hand-computed blocks.

TEST(FormatsLegacy, Q8_0RampAndRoundingHalfAwayFromZero) {
    std::vector<float> x(32);
    for (int j = 0; j < 32; ++j) x[j] = float(j - 16);  // amax 16 → d = 16/127
    const auto q = quantize(DType::Q8_0, x);
    const auto& b = block<fmt::BlockQ8_0>(q);
    EXPECT_EQ(b.d, f2h(16.0f / 127));
    EXPECT_EQ(b.qs[0], -127);
    EXPECT_EQ(b.qs[16], 0);
    EXPECT_EQ(b.qs[31], 119);  // 15·127/16 = 119.06
    EXPECT_EQ(b.qs[8], -64);   // −8·127/16 = −63.5 → −64 (away from zero)
    EXPECT_EQ(b.qs[24], 64);   // +63.5 → 64

    std::vector<float> h(32, 0.0f);  // amax 127 → d = 1 exactly: q = roundf(x)
    h[0] = 127.0f;
    h[1] = 2.5f;
    h[2] = -2.5f;
    h[3] = 0.5f;
    h[4] = -0.5f;
    h[5] = 3.5f;
    const auto hq = quantize(DType::Q8_0, h);
    const auto& hb = block<fmt::BlockQ8_0>(hq);
    EXPECT_EQ(h2f(hb.d), 1.0f);
    EXPECT_EQ(hb.qs[0], 127);
    EXPECT_EQ(hb.qs[1], 3);
    EXPECT_EQ(hb.qs[2], -3);
    EXPECT_EQ(hb.qs[3], 1);
    EXPECT_EQ(hb.qs[4], -1);
    EXPECT_EQ(hb.qs[5], 4);
}

TEST(FormatsLegacy, Q8_1StoresTheScaledSum) {
    std::vector<float> x(64);
    for (int j = 0; j < 64; ++j) x[j] = float(j % 32) * 0.25f - 3.0f;
    const auto q = quantize(DType::Q8_1, x);
    for (int i = 0; i < 2; ++i) {
        const auto& b = block<fmt::BlockQ8_1>(q, i);
        int sum = 0;
        for (int j = 0; j < 32; ++j) sum += b.qs[j];
        EXPECT_EQ(b.d, f2h(4.75f / 127));
        EXPECT_EQ(b.s, f2h(float(sum) * (4.75f / 127))) << "block " << i;
    }
    // Q8_1's quants are Q8_0's.
    const auto q0 = quantize(DType::Q8_0, x);
    for (int j = 0; j < 32; ++j) EXPECT_EQ(block<fmt::BlockQ8_1>(q).qs[j], block<fmt::BlockQ8_0>(q0).qs[j]);
}

TEST(FormatsLegacy, Q4_0RampMapsTheSignedExtremeToZero) {
    std::vector<float> x(32);
    for (int j = 0; j < 32; ++j) x[j] = float(j - 16);  // max = −16 → d = 2, q = trunc(x/2 + 8.5)
    const auto q = quantize(DType::Q4_0, x);
    const auto& b = block<fmt::BlockQ4_0>(q);
    EXPECT_EQ(h2f(b.d), 2.0f);
    EXPECT_EQ(b.qs[0], 0x80);   // element 0: q 0; element 16 (x = 0): q 8
    EXPECT_EQ(b.qs[15], 0xF8);  // element 15 (x = −1): 8; element 31 (x = 15): 16 → clamped to 15
    const auto y = dequantize(DType::Q4_0, q, 32);
    for (int j = 0; j < 32; ++j) EXPECT_LE(std::fabs(y[j] - x[j]), 1.0f) << "element " << j;  // d/2
    EXPECT_EQ(y[0], -16.0f);
    EXPECT_EQ(y[31], 14.0f);

    // Positive-dominant: d = 16/−8 = −2, so the maximum again maps to level 0.
    for (int j = 0; j < 32; ++j) x[j] = float(16 - j);
    const auto qp = quantize(DType::Q4_0, x);
    EXPECT_EQ(h2f(block<fmt::BlockQ4_0>(qp).d), -2.0f);
    EXPECT_EQ(block<fmt::BlockQ4_0>(qp).qs[0] & 0x0F, 0);
    EXPECT_EQ(dequantize(DType::Q4_0, qp, 32)[0], 16.0f);
}

TEST(FormatsLegacy, Q4_0ClampsTheOppositeExtremeToFifteen) {
    std::vector<float> x(32, 0.0f);
    x[0] = -16.0f;  // first of the largest magnitude: d = 2
    x[1] = 16.0f;   // 16/2 + 8.5 = 16.5 → 16 → 15: decodes to 14, the one case with error d
    const auto q = quantize(DType::Q4_0, x);
    EXPECT_EQ(block<fmt::BlockQ4_0>(q).qs[1] & 0x0F, 15);
    EXPECT_EQ(dequantize(DType::Q4_0, q, 32)[1], 14.0f);
}

TEST(FormatsLegacy, Q4_1ExactGridWithOffset) {
    std::vector<float> x(32);
    for (int j = 0; j < 32; ++j) x[j] = float((j * 7) % 16) + 3.0f;  // min 3, max 18 → d = 1, m = 3
    const auto q = quantize(DType::Q4_1, x);
    const auto& b = block<fmt::BlockQ4_1>(q);
    EXPECT_EQ(h2f(b.d), 1.0f);
    EXPECT_EQ(h2f(b.m), 3.0f);
    EXPECT_EQ(dequantize(DType::Q4_1, q, 32), x);
}

TEST(FormatsLegacy, Q5_0RampIsExactAndFillsQh) {
    std::vector<float> x(32);
    for (int j = 0; j < 32; ++j) x[j] = float(j - 16);  // max = −16 → d = 1, q = x + 16
    const auto q = quantize(DType::Q5_0, x);
    const auto& b = block<fmt::BlockQ5_0>(q);
    EXPECT_EQ(h2f(b.d), 1.0f);
    EXPECT_EQ(qh_bits(b.qh), 0xFFFF0000u);  // q ≥ 16 exactly for elements 16..31
    EXPECT_EQ(b.qs[0], 0x00);               // q 0 and q 16 (low nibble 0)
    EXPECT_EQ(b.qs[5], 0x55);               // q 5 and q 21
    EXPECT_EQ(dequantize(DType::Q5_0, q, 32), x);
}

TEST(FormatsLegacy, Q5_1ExactGridNegativeMin) {
    std::vector<float> x(32);
    for (int j = 0; j < 32; ++j) x[j] = float(j) * 0.25f - 2.0f;  // min −2, max 5.75 → d = 0.25
    const auto q = quantize(DType::Q5_1, x);
    const auto& b = block<fmt::BlockQ5_1>(q);
    EXPECT_EQ(h2f(b.d), 0.25f);
    EXPECT_EQ(h2f(b.m), -2.0f);
    EXPECT_EQ(qh_bits(b.qh), 0xFFFF0000u);
    EXPECT_EQ(dequantize(DType::Q5_1, q, 32), x);
}

// Per-element error of the 32-element formats on Gaussian rows with outliers and sign-dominant
// blocks: ≤ d/2 from rounding plus what storing d (and m) as f16 costs (relative 2^-11 each, times
// the largest level); Q4_0 and Q5_0 may lose one more step where the clamp to 15/31 bites.
TEST(FormatsLegacy, ErrorWithinHalfAStepOfTheStoredScale) {
    constexpr size_t n = 32 * 64;
    auto x = gaussian(n, 7);
    for (size_t i = 0; i < n; i += 97) x[i] *= 200.0f;               // outliers
    for (size_t i = 32 * 10; i < 32 * 12; ++i) x[i] = -std::fabs(x[i]) - 1.0f;  // negative-only blocks
    for (size_t i = 32 * 20; i < 32 * 21; ++i) x[i] = std::fabs(x[i]) + 5.0f;   // positive, away from 0
    const float f16_rel = 1.0f / 2048;
    struct Case {
        DType dt;
        int nmax;        // largest |level| (about the zero point for symmetric formats)
        bool symmetric;
        int clamp_top;   // the top level a symmetric format clamps to (15, 31, or 0 for none)
    };
    for (const Case c : {Case{DType::Q8_0, 127, true, 0}, Case{DType::Q4_0, 8, true, 15}, Case{DType::Q5_0, 16, true, 31},
                         Case{DType::Q4_1, 15, false, 0}, Case{DType::Q5_1, 31, false, 0}}) {
        const auto q = quantize(c.dt, x);
        const auto y = dequantize(c.dt, q, n);
        const size_t bpb = cq::dtype_traits(c.dt).bytes_per_block;
        for (size_t blk = 0; blk < n / 32; ++blk) {
            uint16_t dbits, mbits = 0;
            std::memcpy(&dbits, q.data() + blk * bpb, 2);
            if (!c.symmetric) std::memcpy(&mbits, q.data() + blk * bpb + 2, 2);
            const float d = std::fabs(h2f(dbits)), m = std::fabs(h2f(mbits));
            float amax = 0;
            for (size_t j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[blk * 32 + j]));
            for (size_t j = 0; j < 32; ++j) {
                const size_t i = blk * 32 + j;
                const float err = std::fabs(y[i] - x[i]);
                // d·(0.5 + nmax·2^-11) with 10% slack for the f32 scale vs its f16 copy.
                float bound = d * (0.5f + float(c.nmax) * f16_rel * 1.1f) + m * f16_rel + amax * 1e-6f;
                if (c.clamp_top && err > bound) bound += d;  // only the clamped opposite extreme
                ASSERT_LE(err, bound) << name_of(c.dt) << " block " << blk << " element " << j << " x " << x[i]
                                      << " y " << y[i] << " d " << d;
            }
        }
    }
}

TEST(FormatsLegacy, OutlierZeroesTheRestOfItsBlock) {
    std::vector<float> x(32, 0.01f);
    x[7] = 1000.0f;  // Q8_0: d = 7.87, so 0.01 rounds to level 0; Q4_1: min 0.01, d = 66.7
    const auto y8 = dequantize(DType::Q8_0, quantize(DType::Q8_0, x), 32);
    for (int j = 0; j < 32; ++j) {
        if (j == 7) continue;
        EXPECT_EQ(y8[j], 0.0f) << "q8_0 element " << j;
    }
    EXPECT_NEAR(y8[7], 1000.0f, 1000.0f / 2048 * 1.01f);
    const auto y41 = dequantize(DType::Q4_1, quantize(DType::Q4_1, x), 32);
    for (int j = 0; j < 32; ++j) {
        if (j == 7) continue;
        EXPECT_NEAR(y41[j], 0.01f, 1e-5f) << "q4_1 element " << j;  // level 0 is the min
    }
}

// ---------------------------------------------------------------------------------------------
// k-quants: data already on each format's grid must come back exactly (or within the f16 rounding of
// the super-block scale), for both signs.

TEST(FormatsKQuants, Q8_KIntegerRowIsExactWithBlockSums) {
    std::vector<float> x(512);
    for (int j = 0; j < 512; ++j) x[j] = float((j % 255) - 127);  // first of largest |x|: −127 → d = 1
    const auto q = quantize(DType::Q8_K, x);
    const auto& b = block<fmt::BlockQ8_K>(q);
    EXPECT_EQ(b.d, 1.0f);
    EXPECT_EQ(b.bsums[0], -1912);  // Σ_{j<16} (j − 127)
    for (int blk = 0; blk < 2; ++blk)
        for (int g = 0; g < 16; ++g) {
            int s = 0;
            for (int l = 0; l < 16; ++l) s += block<fmt::BlockQ8_K>(q, blk).qs[g * 16 + l];
            EXPECT_EQ(block<fmt::BlockQ8_K>(q, blk).bsums[g], s) << "block " << blk << " group " << g;
        }
    EXPECT_EQ(dequantize(DType::Q8_K, q, 512), x);
    // Positive-dominant: the maximum maps to −127·d with d < 0; 127 is the clamp for the other side.
    std::vector<float> p(256, 1.0f);
    p[3] = 254.0f;
    const auto pq = quantize(DType::Q8_K, p);
    const auto& bp = block<fmt::BlockQ8_K>(pq);
    EXPECT_EQ(bp.d, -2.0f);
    EXPECT_EQ(bp.qs[3], -127);
    EXPECT_EQ(bp.qs[0], 0);  // 1/−2 = −0.5 → nearest even 0
}

TEST(FormatsKQuants, Q6_KGridIsExact) {
    std::vector<float> x(256);
    for (int j = 0; j < 256; ++j) x[j] = float(-32 + 4 * (j % 16));  // every group of 16: −32 … 28
    const auto q = quantize(DType::Q6_K, x);
    const auto& b = block<fmt::BlockQ6_K>(q);
    EXPECT_EQ(h2f(b.d), -1.0f / 128);
    for (int i = 0; i < 16; ++i) EXPECT_EQ(b.scales[i], -128) << "scale " << i;
    EXPECT_EQ(dequantize(DType::Q6_K, q, 256), x);
}

TEST(FormatsKQuants, Q3_KGridIsExact) {
    std::vector<float> x(256);
    for (int j = 0; j < 256; ++j) x[j] = float((j % 8) - 4);  // −4 … 3
    const auto q = quantize(DType::Q3_K, x);
    const auto& b = block<fmt::BlockQ3_K>(q);
    EXPECT_EQ(h2f(b.d), -1.0f / 32);  // every sub-block scale is stored as level 0 (−32)
    for (int i = 0; i < 12; ++i) EXPECT_EQ(b.scales[i], 0) << "scale byte " << i;
    EXPECT_EQ(dequantize(DType::Q3_K, q, 256), x);
    // x = q − 4·!hbit: elements with x ≥ 0 carry the high bit; element l + 32k is bit k of hmask[l].
    for (int j = 0; j < 256; ++j)
        EXPECT_EQ((b.hmask[j % 32] >> (j / 32)) & 1, x[j] >= 0 ? 1 : 0) << "element " << j;
}

// Asymmetric k-quants on their level grid (0 … 2^bits − 1 per sub-block, shifted by −shift): the
// only error is the f16 rounding of d (and dmin), relative 2^-11 of the largest value.
TEST(FormatsKQuants, AsymmetricGridsAreExactUpToF16Scales) {
    struct Case {
        DType dt;
        int levels;
    };
    for (const Case c : {Case{DType::Q2_K, 4}, Case{DType::Q4_K, 16}, Case{DType::Q5_K, 32}}) {
        for (float shift : {0.0f, float(c.levels - 1)}) {  // non-negative, then non-positive data
            std::vector<float> x(512);
            for (int j = 0; j < 512; ++j) x[j] = float((j * 5) % c.levels) - shift;
            const auto y = dequantize(c.dt, quantize(c.dt, x), 512);
            const float tol = 2.0f * float(c.levels - 1) / 2048 + 1e-6f;  // level·|Δd| + |Δdmin|
            for (int j = 0; j < 512; ++j)
                ASSERT_NEAR(y[j], x[j], tol) << name_of(c.dt) << " shift " << shift << " element " << j;
        }
    }
}

TEST(FormatsKQuants, ConstantSubBlocksKeepTheirValue) {
    // 8 constant sub-blocks of 32 at 1, 1.125, …, 1.875: each sub-block scale is ≥ 8/15 of the largest,
    // so storing it with 6 bits (Q3_K: levels of 1/32) costs at most 0.5/(32·8/15) < 3%, Q2_K's
    // 4-bit ratios (8+k)/15 are exact, and the rest is f16 rounding.
    std::vector<float> x(256);
    for (int j = 0; j < 256; ++j) x[j] = 1.0f + float(j / 32) * 0.125f;
    for (DType dt : {DType::Q2_K, DType::Q3_K, DType::Q4_K, DType::Q5_K, DType::Q6_K, DType::Q8_K}) {
        const auto y = dequantize(dt, quantize(dt, x), 256);
        for (int j = 0; j < 256; ++j) {
            ASSERT_TRUE(std::isfinite(y[j])) << name_of(dt) << " element " << j;
            ASSERT_NEAR(y[j], x[j], 0.03f * x[j]) << name_of(dt) << " element " << j;
        }
    }
}

// The search must beat plain round-to-nearest with each sub-block's own extreme at the same bits and
// group size, even with f32 (unquantized) scales on the baseline's side: asymmetric min/max for
// Q2_K/Q4_K/Q5_K, signed-max symmetric (levels −2^(b−1) … 2^(b−1) − 1) for Q3_K/Q6_K.
double baseline_rtn_rmse(const std::vector<float>& x, int group, int bits, bool asymmetric) {
    double s = 0;
    for (size_t g = 0; g < x.size(); g += group) {
        float mn = x[g], mx = x[g], smax = 0, amax = 0;
        for (int i = 0; i < group; ++i) {
            const float v = x[g + i];
            mn = std::min(mn, v);
            mx = std::max(mx, v);
            if (std::fabs(v) > amax) {
                amax = std::fabs(v);
                smax = v;
            }
        }
        for (int i = 0; i < group; ++i) {
            const float v = x[g + i];
            float y;
            if (asymmetric) {
                const float sc = (mx - mn) / float((1 << bits) - 1);
                y = sc > 0 ? std::round((v - mn) / sc) * sc + mn : v;
            } else {
                const int h = 1 << (bits - 1);
                const float sc = smax / float(-h);
                y = sc != 0 ? std::clamp(std::round(v / sc), float(-h), float(h - 1)) * sc : 0.0f;
            }
            s += double(v - y) * double(v - y);
        }
    }
    return std::sqrt(s / double(x.size()));
}

TEST(FormatsKQuants, SearchBeatsRoundToNearestOnGaussianRows) {
    struct Case {
        DType dt;
        int group, bits;
        bool asymmetric;
    };
    for (int n : {768, 3072}) {
        const auto x = gaussian(size_t(n) * 8, 1000 + n);  // 8 rows
        for (const Case c : {Case{DType::Q2_K, 16, 2, true}, Case{DType::Q3_K, 16, 3, false},
                             Case{DType::Q4_K, 32, 4, true}, Case{DType::Q5_K, 32, 5, true},
                             Case{DType::Q6_K, 16, 6, false}}) {
            const auto y = dequantize(c.dt, quantize(c.dt, x), x.size());
            const double ours = rmse(x.data(), y.data(), x.size());
            const double base = baseline_rtn_rmse(x, c.group, c.bits, c.asymmetric);
            EXPECT_LT(ours, base) << name_of(c.dt) << " rows of " << n;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// llama.cpp

const json& llama_expected() {
    static const json doc = [] {
        std::ifstream in(cq::test::tests_dir() + "/expected/llamacpp_quant/stories260K.json");
        if (!in) return json();
        return json::parse(in, nullptr, /*allow_exceptions=*/false);
    }();
    return doc;
}

class LlamaQuantize : public ::testing::TestWithParam<std::string> {};

// Every tensor of llama-quantize's output for this type (no imatrix, --pure): cq's codec for the type
// llama.cpp chose gives the same bytes (crc32 and size); 1-D tensors stay f32, rows no block divides
// fall back to f16 (cq's f32→f16 conversion, round to nearest even, like ggml's).
TEST_P(LlamaQuantize, StoriesTensorsAreByteIdentical) {
    const json& doc = llama_expected();
    ASSERT_TRUE(doc.is_object()) << "tests/expected/llamacpp_quant/stories260K.json is missing or invalid";
    const json& run = doc.at("llama_quantize").at(GetParam());
    const auto file = cq::gguf::File::open(cq::test::fixture(doc.at("source").get<std::string>()));
    int compared = 0;
    for (const json& rec : run.at("tensors")) {
        const std::string name = rec.at("name");
        const std::string type = rec.at("type");
        SCOPED_TRACE(GetParam() + ": tensor " + name + " as " + type);
        const cq::Tensor src = file.tensor(name);
        ASSERT_EQ(src.dtype(), DType::F32);
        const auto dt = cq::dtype_from_name(type);
        ASSERT_TRUE(dt.has_value());
        ASSERT_TRUE(cq::dtype_traits(*dt).from_float) << "cq has no codec for " << type;
        const size_t n = static_cast<size_t>(src.numel());
        const auto* x = static_cast<const float*>(src.data());
        const auto q = quantize(*dt, x, n);
        EXPECT_EQ(q.size(), rec.at("nbytes").get<size_t>());
        EXPECT_EQ(crc32(q.data(), q.size()), rec.at("crc32").get<uint32_t>());
        if (rec.contains("rmse")) {
            const auto y = dequantize(*dt, q, n);
            EXPECT_LE(rmse(y.data(), x, n), rec.at("rmse").get<double>() * (1 + 1e-6));
        }
        ++compared;
    }
    EXPECT_GT(compared, 0);
}

INSTANTIATE_TEST_SUITE_P(Types, LlamaQuantize,
                         ::testing::Values("Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q2_K", "Q3_K", "Q4_K_M",
                                           "Q5_K_M", "Q6_K"));

// Real GPT-2 weights through ggml_quantize_chunk (llama-quantize's entry point), for every type
// including the k-quants stories260K cannot exercise: same bytes, and RMSE no worse than llama.cpp's.
TEST(LlamaQuantizeChunk, Gpt2TinyWeightsAreByteIdentical) {
    const json& doc = llama_expected();
    ASSERT_TRUE(doc.is_object()) << "tests/expected/llamacpp_quant/stories260K.json is missing or invalid";
    const json& part = doc.at("ggml_quantize_chunk");
    const auto file = cq::safetensors::File::open(cq::test::fixture(part.at("source").get<std::string>()));
    int compared = 0;
    for (const json& t : part.at("tensors")) {
        const std::string name = t.at("name");
        const cq::Tensor src = file.tensor(name);
        ASSERT_EQ(src.dtype(), DType::F32) << name;
        const auto* bytes = static_cast<const uint8_t*>(src.data());
        ASSERT_EQ(crc32(bytes, src.nbytes()), t.at("source").at("crc32").get<uint32_t>()) << name << ": fixture changed";
        const size_t n = static_cast<size_t>(src.numel());
        const auto* x = static_cast<const float*>(src.data());
        for (const auto& [type, rec] : t.at("types").items()) {
            SCOPED_TRACE(name + " as " + type);
            const auto dt = cq::dtype_from_name(type);
            ASSERT_TRUE(dt.has_value());
            const auto q = quantize(*dt, x, n);
            EXPECT_EQ(q.size(), rec.at("nbytes").get<size_t>());
            EXPECT_EQ(crc32(q.data(), q.size()), rec.at("crc32").get<uint32_t>());
            const auto y = dequantize(*dt, q, n);
            EXPECT_LE(rmse(y.data(), x, n), rec.at("rmse").get<double>() * (1 + 1e-6));
            ++compared;
        }
    }
    EXPECT_GE(compared, 30);
}

}  // namespace
