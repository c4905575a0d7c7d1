// Every compiled f16/bf16 <-> f32 conversion kernel against its scalar reference, bit for bit, on
// every ISA level this CPU runs; plus closed-form checks of the reference itself.
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "kernel_levels.h"
#include "cq/cpu_features.h"
#include "cq/kernels.h"
#include "guarded_buffer.h"
#include "kernels/kernel_decls.h"

namespace {

namespace ck = cq::kernels;

using cq::test::GuardedBuffer;

uint32_t bits_of(float f) { return std::bit_cast<uint32_t>(f); }
uint32_t bits_of(uint16_t h) { return h; }
float f32_from_bits(uint32_t b) { return std::bit_cast<float>(b); }

std::string hex(uint32_t v, int width) {
    std::ostringstream s;
    s << "0x" << std::hex << std::uppercase;
    s.width(width);
    s.fill('0');
    s << v;
    return s.str();
}
std::string f32_hex(float f) { return hex(bits_of(f), 8); }

// Runs `fn` and the reference on `input` (in guarded buffers) and compares the outputs bit for bit.
template <typename In, typename Out>
::testing::AssertionResult same_as_ref(const char* kernel, void (*fn)(const In*, Out*, int64_t),
                                       void (*ref)(const In*, Out*, int64_t), const std::vector<In>& input) {
    const int64_t n = int64_t(input.size());
    GuardedBuffer<In> x(input);
    GuardedBuffer<Out> y(input.size());
    std::vector<Out> want(input.size());
    fn(x.data(), y.data(), n);
    ref(input.data(), want.data(), n);
    const std::vector<Out> got = y.to_vector();
    int64_t mismatches = 0, first = -1;
    for (int64_t i = 0; i < n; ++i)
        if (bits_of(got[i]) != bits_of(want[i]) && mismatches++ == 0) first = i;
    if (mismatches == 0) return ::testing::AssertionSuccess();
    const int in_w = int(2 * sizeof(In)), out_w = int(2 * sizeof(Out));
    return ::testing::AssertionFailure()
           << kernel << " n=" << n << ": " << mismatches << " mismatches; first at index " << first << ": input "
           << hex(bits_of(input[first]), in_w) << " gave " << hex(bits_of(got[first]), out_w) << ", reference "
           << hex(bits_of(want[first]), out_w);
}

std::vector<cq::IsaLevel> levels_of_this_arch() { return cq::test::isa_levels_of_this_arch(); }

std::vector<uint16_t> all_u16() {
    std::vector<uint16_t> v(65536);
    for (uint32_t i = 0; i < 65536; ++i) v[i] = uint16_t(i);
    return v;
}

// f32 inputs that exercise f32 → f16 rounding: edge cases, every f16 rounding midpoint and its
// neighbours, values spread over the f16 range, and random bit patterns.
std::vector<float> f16_rounding_cases(uint32_t seed) {
    std::vector<uint32_t> b = {
        0x00000000, 0x80000000, 0x00000001, 0x807FFFFF, 0x00800000,  // ±0, f32 subnormals, min normal
        0x3F800000, 0x3F801000, 0x3F803000, 0x3F801001, 0x3F800FFF,  // 1, 1+2^-11 (tie), 1+3·2^-11 (tie)
        0x477FE000, 0x477FEFFF, 0x477FF000, 0x477FF001, 0x47800000,  // 65504, just below/at/above 65520, 65536
        0x7F7FFFFF, 0xFF7FFFFF,                                      // ±max finite f32
        0x33800000, 0x33000000, 0x33000001, 0x32FFFFFF, 0x33C00000,  // 2^-24, 2^-25 (tie), around it, 3·2^-25
        0x387FC000, 0x387FE000, 0x38800000,                          // largest f16 subnormal, tie to 2^-14, 2^-14
        0x7F800000, 0xFF800000,                                      // ±inf
        0x7FC00000, 0xFFC00000, 0x7F800001, 0xFF800001, 0x7FBFFFFF,  // quiet and signalling NaNs
        0x7FFFFFFF, 0x7FC02000, 0x7FA00000, 0xFFD55555, 0x7F802000,  // NaN payloads
    };
    for (uint32_t h = 0; h < 0x7C00; ++h) {  // every finite positive f16 and the midpoint to the next
        const uint32_t lo = bits_of(ck::f16_to_f32_scalar(uint16_t(h)));
        const uint32_t hi = bits_of(ck::f16_to_f32_scalar(uint16_t(h + 1)));
        const uint32_t mid = bits_of((f32_from_bits(lo) + f32_from_bits(hi)) * 0.5f);  // exact
        for (uint32_t v : {mid - 1, mid, mid + 1}) {
            b.push_back(v);
            b.push_back(v | 0x80000000u);
        }
    }
    std::mt19937 rng(seed);
    std::uniform_int_distribution<uint32_t> any;
    std::uniform_int_distribution<uint32_t> exp_in_range(100, 145);  // f16 subnormals … overflow
    for (int i = 0; i < (1 << 18); ++i) {
        b.push_back(any(rng));
        b.push_back((any(rng) & 0x807FFFFFu) | (exp_in_range(rng) << 23));
    }
    std::vector<float> out(b.size());
    for (size_t i = 0; i < b.size(); ++i) out[i] = f32_from_bits(b[i]);
    return out;
}

// f32 inputs that exercise f32 → bf16 rounding: every bf16 pattern with interesting low halves, plus
// random bit patterns.
std::vector<float> bf16_rounding_cases(uint32_t seed) {
    std::vector<uint32_t> b = {0x7F7FFFFF, 0x7F7F7FFF, 0x7F7F8000, 0x7F7F8001, 0x00000001, 0x00008000,
                               0x00018000, 0x00008001, 0x7F800001, 0xFF810000, 0x7FC00000, 0x7F80FFFF};
    std::mt19937 rng(seed);
    std::uniform_int_distribution<uint32_t> any;
    for (uint32_t hi = 0; hi < 65536; ++hi)
        for (uint32_t lo : {0x0000u, 0x0001u, 0x7FFFu, 0x8000u, 0x8001u, 0xFFFFu, any(rng) & 0xFFFFu})
            b.push_back((hi << 16) | lo);
    for (int i = 0; i < (1 << 18); ++i) b.push_back(any(rng));
    std::vector<float> out(b.size());
    for (size_t i = 0; i < b.size(); ++i) out[i] = f32_from_bits(b[i]);
    return out;
}

// Lengths around every vector width and unroll (4, 8, 16, 32, 64) and their tails.
std::vector<size_t> tail_lengths() {
    std::vector<size_t> n;
    for (size_t i = 0; i <= 70; ++i) n.push_back(i);
    for (size_t i : {127, 128, 129, 255, 256, 257, 1000, 4097}) n.push_back(i);
    return n;
}

class ConvertKernels : public cq::test::KernelTableAtLevel {};

TEST_P(ConvertKernels, TableIsFilled) {
    EXPECT_EQ(table_.level, GetParam());
    for (const auto& k : cq::list_kernels(table_)) EXPECT_FALSE(k.kernel.empty()) << k.op;
    EXPECT_NE(table_.convert_f16_f32.fn, nullptr);
    EXPECT_NE(table_.convert_f32_f16.fn, nullptr);
    EXPECT_NE(table_.convert_bf16_f32.fn, nullptr);
    EXPECT_NE(table_.convert_f32_bf16.fn, nullptr);
}

TEST_P(ConvertKernels, F16ToF32AllPatterns) {
    const auto& k = table_.convert_f16_f32;
    EXPECT_TRUE(same_as_ref(k.name, k.fn, ck::convert_f16_f32__ref, all_u16()));
}

TEST_P(ConvertKernels, BF16ToF32AllPatterns) {
    const auto& k = table_.convert_bf16_f32;
    EXPECT_TRUE(same_as_ref(k.name, k.fn, ck::convert_bf16_f32__ref, all_u16()));
}

TEST_P(ConvertKernels, F32ToF16Rounding) {
    const auto& k = table_.convert_f32_f16;
    EXPECT_TRUE(same_as_ref(k.name, k.fn, ck::convert_f32_f16__ref, f16_rounding_cases(1234)));
}

TEST_P(ConvertKernels, F32ToBF16Rounding) {
    const auto& k = table_.convert_f32_bf16;
    EXPECT_TRUE(same_as_ref(k.name, k.fn, ck::convert_f32_bf16__ref, bf16_rounding_cases(5678)));
}

TEST_P(ConvertKernels, TailsAndGuardPages) {
    const std::vector<float> f32_pool = f16_rounding_cases(99);
    const std::vector<uint16_t> u16_pool = all_u16();
    std::mt19937 rng(42);
    for (size_t n : tail_lengths()) {
        const size_t f_at = std::uniform_int_distribution<size_t>(0, f32_pool.size() - n)(rng);
        const size_t h_at = std::uniform_int_distribution<size_t>(0, u16_pool.size() - n)(rng);
        const std::vector<float> f(f32_pool.begin() + f_at, f32_pool.begin() + f_at + n);
        const std::vector<uint16_t> h(u16_pool.begin() + h_at, u16_pool.begin() + h_at + n);
        EXPECT_TRUE(same_as_ref(table_.convert_f16_f32.name, table_.convert_f16_f32.fn, ck::convert_f16_f32__ref, h));
        EXPECT_TRUE(same_as_ref(table_.convert_bf16_f32.name, table_.convert_bf16_f32.fn, ck::convert_bf16_f32__ref, h));
        EXPECT_TRUE(same_as_ref(table_.convert_f32_f16.name, table_.convert_f32_f16.fn, ck::convert_f32_f16__ref, f));
        EXPECT_TRUE(same_as_ref(table_.convert_f32_bf16.name, table_.convert_f32_bf16.fn, ck::convert_f32_bf16__ref, f));
    }
}

std::vector<cq::IsaLevel> levels() { return levels_of_this_arch(); }
INSTANTIATE_TEST_SUITE_P(Isa, ConvertKernels, ::testing::ValuesIn(levels()),
                         [](const ::testing::TestParamInfo<cq::IsaLevel>& info) {
                             return std::string(cq::isa_level_name(info.param));
                         });

// ---- closed-form checks of the reference itself ----

TEST(ConvertReference, F16ToF32KnownValues) {
    EXPECT_EQ(ck::f16_to_f32_scalar(0x3C00), 1.0f);
    EXPECT_EQ(ck::f16_to_f32_scalar(0xC000), -2.0f);
    EXPECT_EQ(ck::f16_to_f32_scalar(0x7BFF), 65504.0f);
    EXPECT_EQ(ck::f16_to_f32_scalar(0x0001), std::ldexp(1.0f, -24));  // smallest subnormal
    EXPECT_EQ(ck::f16_to_f32_scalar(0x03FF), std::ldexp(1023.0f, -24));  // largest subnormal
    EXPECT_EQ(ck::f16_to_f32_scalar(0x0400), std::ldexp(1.0f, -14));  // smallest normal
    EXPECT_EQ(ck::f16_to_f32_scalar(0x3555), 0x555 * std::ldexp(1.0f, -12));
    EXPECT_EQ(f32_hex(ck::f16_to_f32_scalar(0x0000)), "0x00000000");
    EXPECT_EQ(f32_hex(ck::f16_to_f32_scalar(0x8000)), "0x80000000");
    EXPECT_EQ(f32_hex(ck::f16_to_f32_scalar(0x7C00)), "0x7F800000");
    EXPECT_EQ(f32_hex(ck::f16_to_f32_scalar(0xFC00)), "0xFF800000");
    EXPECT_EQ(f32_hex(ck::f16_to_f32_scalar(0x7E00)), "0x7FC00000");  // quiet NaN
    EXPECT_EQ(f32_hex(ck::f16_to_f32_scalar(0x7C01)), "0x7FC02000");  // signalling NaN comes out quiet
    EXPECT_EQ(f32_hex(ck::f16_to_f32_scalar(0xFDFF)), "0xFFFFE000");
}

TEST(ConvertReference, F32ToF16KnownValues) {
    auto h = [](uint32_t f_bits) { return hex(ck::f32_to_f16_scalar(f32_from_bits(f_bits)), 4); };
    EXPECT_EQ(hex(ck::f32_to_f16_scalar(1.0f), 4), "0x3C00");
    EXPECT_EQ(hex(ck::f32_to_f16_scalar(1.0f + std::ldexp(1.0f, -11)), 4), "0x3C00");      // tie → even (down)
    EXPECT_EQ(hex(ck::f32_to_f16_scalar(1.0f + 3 * std::ldexp(1.0f, -11)), 4), "0x3C02");  // tie → even (up)
    EXPECT_EQ(h(0x3F801001), "0x3C01");                                            // just above the tie
    EXPECT_EQ(hex(ck::f32_to_f16_scalar(65504.0f), 4), "0x7BFF");
    EXPECT_EQ(hex(ck::f32_to_f16_scalar(65519.0f), 4), "0x7BFF");
    EXPECT_EQ(hex(ck::f32_to_f16_scalar(65520.0f), 4), "0x7C00");  // the tie above max finite rounds to inf
    EXPECT_EQ(hex(ck::f32_to_f16_scalar(-1e10f), 4), "0xFC00");
    EXPECT_EQ(hex(ck::f32_to_f16_scalar(std::ldexp(1.0f, -24)), 4), "0x0001");
    EXPECT_EQ(hex(ck::f32_to_f16_scalar(std::ldexp(1.0f, -25)), 4), "0x0000");      // tie → even 0
    EXPECT_EQ(h(0x33000001), "0x0001");                                    // just above 2^-25
    EXPECT_EQ(hex(ck::f32_to_f16_scalar(3 * std::ldexp(1.0f, -25)), 4), "0x0002");  // tie 1|2 → 2
    EXPECT_EQ(hex(ck::f32_to_f16_scalar(std::ldexp(1.0f, -14) - std::ldexp(1.0f, -25)), 4), "0x0400");  // carry to normal
    EXPECT_EQ(h(0x00000001), "0x0000");  // f32 subnormal → 0
    EXPECT_EQ(h(0x80000001), "0x8000");
    EXPECT_EQ(h(0x80000000), "0x8000");
    EXPECT_EQ(h(0x7F800000), "0x7C00");
    EXPECT_EQ(h(0xFF800000), "0xFC00");
    EXPECT_EQ(h(0x7FC00000), "0x7E00");
    EXPECT_EQ(h(0x7F800001), "0x7E00");  // signalling NaN, payload below bit 13: quiet bit only
    EXPECT_EQ(h(0x7FFFFFFF), "0x7FFF");
    EXPECT_EQ(h(0xFF802000), "0xFE01");
}

TEST(ConvertReference, F16RoundTripsThroughF32) {
    for (uint32_t h = 0; h < 65536; ++h) {
        const bool nan = (h & 0x7C00) == 0x7C00 && (h & 0x3FF) != 0;
        if (nan) continue;
        ASSERT_EQ(ck::f32_to_f16_scalar(ck::f16_to_f32_scalar(uint16_t(h))), h) << "f16 " << hex(h, 4);
    }
}

#if defined(__aarch64__)
using CompilerHalf = __fp16;  // GCC 12 has no _Float16 in C++ on AArch64; __fp16 is the same IEEE binary16 (fcvt, RNE)
#define CQ_HAVE_COMPILER_HALF 1
#elif defined(__FLT16_MAX__)
using CompilerHalf = _Float16;
#define CQ_HAVE_COMPILER_HALF 1
#endif
#if defined(CQ_HAVE_COMPILER_HALF)
// The compiler's own half-precision conversion (round to nearest even) as an independent witness.
TEST(ConvertReference, F32ToF16MatchesCompilerFloat16) {
    for (float f : f16_rounding_cases(7)) {
        if (std::isnan(f)) continue;
        const CompilerHalf c = static_cast<CompilerHalf>(f);
        ASSERT_EQ(ck::f32_to_f16_scalar(f), std::bit_cast<uint16_t>(c)) << "f32 " << hex(bits_of(f), 8);
    }
}
#endif

TEST(ConvertReference, BF16KnownValues) {
    auto b = [](uint32_t f_bits) { return hex(ck::f32_to_bf16_scalar(f32_from_bits(f_bits)), 4); };
    EXPECT_EQ(hex(ck::f32_to_bf16_scalar(1.0f), 4), "0x3F80");
    EXPECT_EQ(ck::bf16_to_f32_scalar(0x3F80), 1.0f);
    EXPECT_EQ(ck::bf16_to_f32_scalar(0xC0A0), -5.0f);
    EXPECT_EQ(hex(ck::f32_to_bf16_scalar(1.0f + std::ldexp(1.0f, -8)), 4), "0x3F80");      // tie → even (down)
    EXPECT_EQ(hex(ck::f32_to_bf16_scalar(1.0f + 3 * std::ldexp(1.0f, -8)), 4), "0x3F82");  // tie → even (up)
    EXPECT_EQ(b(0x3F808001), "0x3F81");
    EXPECT_EQ(b(0x7F7FFFFF), "0x7F80");  // max finite f32 rounds to inf
    EXPECT_EQ(b(0x7F7F7FFF), "0x7F7F");
    EXPECT_EQ(b(0x7F7F8000), "0x7F80");  // tie, odd → up → inf
    EXPECT_EQ(b(0x7F800000), "0x7F80");
    EXPECT_EQ(b(0xFF800000), "0xFF80");
    EXPECT_EQ(b(0x00000001), "0x0000");  // subnormals round, never flush
    EXPECT_EQ(b(0x00008000), "0x0000");
    EXPECT_EQ(b(0x00018000), "0x0002");
    EXPECT_EQ(b(0x00008001), "0x0001");
    EXPECT_EQ(b(0x80010000), "0x8001");
    EXPECT_EQ(b(0x7F800001), "0x7FC0");  // signalling NaN whose payload lies in the low half: stays NaN
    EXPECT_EQ(b(0xFF810000), "0xFFC1");
    EXPECT_EQ(b(0x7FFFFFFF), "0x7FFF");  // NaN is not rounded (rounding would carry out of the exponent)
    EXPECT_EQ(f32_hex(ck::bf16_to_f32_scalar(0x7F81)), "0x7F810000");  // widening keeps any pattern
    for (uint32_t h = 0; h < 65536; ++h) {
        const bool nan = (h & 0x7F80) == 0x7F80 && (h & 0x7F) != 0;
        if (nan) continue;
        ASSERT_EQ(ck::f32_to_bf16_scalar(ck::bf16_to_f32_scalar(uint16_t(h))), h) << "bf16 " << hex(h, 4);
    }
}

// The process-wide table (the detected level, or CQ_ISA's) converts like the reference too.
TEST(ConvertKernelTable, ProcessTableMatchesReference) {
    const cq::KernelTable& t = cq::kernel_table();
    EXPECT_TRUE(same_as_ref(t.convert_f16_f32.name, t.convert_f16_f32.fn, ck::convert_f16_f32__ref, all_u16()));
    EXPECT_TRUE(same_as_ref(t.convert_f32_f16.name, t.convert_f32_f16.fn, ck::convert_f32_f16__ref, f16_rounding_cases(3)));
    EXPECT_TRUE(same_as_ref(t.convert_bf16_f32.name, t.convert_bf16_f32.fn, ck::convert_bf16_f32__ref, all_u16()));
    EXPECT_TRUE(same_as_ref(t.convert_f32_bf16.name, t.convert_f32_bf16.fn, ck::convert_f32_bf16__ref, bf16_rounding_cases(4)));
}

}  // namespace
