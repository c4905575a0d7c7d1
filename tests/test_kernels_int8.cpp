// INT8 W8A8 kernels: the panel packing against its index formula; the reference gemm_u8s8 against an
// independent int64 triple loop on awkward shapes (per-row and per-tensor activation parameters, bias or
// none, padded strides, extreme values, a k where int16 sums would overflow); every variant this CPU runs
// (and the AVX-512 VNNI one through SIMDe) bit for bit against the reference, behind guard pages, and the
// gemm_u7s8 variants likewise on 7-bit activations; the u8 quantizers (8-bit and 7-bit) byte for byte
// against the reference, including ties, all-zero rows and huge values.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "cq/cpu_features.h"
#include "cq/int8_gemm.h"
#include "cq/kernels.h"
#include "guarded_buffer.h"
#include "kernels/kernel_decls.h"

// Where SIMDe (Debian's libsimde-dev) is installed, the AVX-512 VNNI kernels are compiled a second time
// here, for AVX2, against SIMDe's AVX-512 intrinsics and under other names (as in test_kernels_quant).
// SIMDe 0.7.4 lacks a few of the intrinsics they use; lane-by-lane stand-ins fill the gap.
#if defined(__x86_64__) && defined(__GNUC__) && __has_include(<simde/x86/avx512.h>)
#define CQ_TEST_SIMDE_VNNI 1
#include <immintrin.h>
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")
#define SIMDE_ENABLE_NATIVE_ALIASES
#include <simde/x86/avx512.h>
namespace cq_simde {
template <typename To, typename From>
To bits(const From& v) {
    static_assert(sizeof(To) == sizeof(From));
    To t;
    std::memcpy(&t, &v, sizeof(t));
    return t;
}
struct F16 { float v[16]; };
struct I16 { int32_t v[16]; };
inline simde__m512 cvtepi32_ps(simde__m512i x) {
    const auto i = bits<I16>(x);
    F16 f;
    for (int l = 0; l < 16; ++l) f.v[l] = float(i.v[l]);
    return bits<simde__m512>(f);
}
inline simde__m512i cvttps_epi32(simde__m512 x) {  // only called on values in [0, 255]
    const auto f = bits<F16>(x);
    I16 i;
    for (int l = 0; l < 16; ++l) i.v[l] = int32_t(f.v[l]);
    return bits<simde__m512i>(i);
}
inline simde__m512 maskz_loadu_ps(uint16_t k, const float* p) {
    F16 f{};
    for (int l = 0; l < 16; ++l)
        if (k >> l & 1) f.v[l] = p[l];
    return bits<simde__m512>(f);
}
inline simde__m512i maskz_loadu_epi32(uint16_t k, const int32_t* p) {
    I16 i{};
    for (int l = 0; l < 16; ++l)
        if (k >> l & 1) i.v[l] = p[l];
    return bits<simde__m512i>(i);
}
inline void mask_storeu_ps(float* p, uint16_t k, simde__m512 x) {
    const auto f = bits<F16>(x);
    for (int l = 0; l < 16; ++l)
        if (k >> l & 1) p[l] = f.v[l];
}
inline simde__m128i cvtepi32_epi8(simde__m512i x) {
    const auto i = bits<I16>(x);
    uint8_t b[16];
    for (int l = 0; l < 16; ++l) b[l] = uint8_t(i.v[l]);
    return bits<simde__m128i>(b);
}
inline void mask_storeu_epi8(void* p, uint16_t k, simde__m128i x) {
    const auto b = bits<std::array<uint8_t, 16>>(x);
    for (int l = 0; l < 16; ++l)
        if (k >> l & 1) static_cast<uint8_t*>(p)[l] = b[size_t(l)];
}
// SIMDe's portable fmadd is a*b+c, which GCC fuses only from -O2 (the sanitizer build is -O1): the hardware
// instruction rounds once, so the stand-in does too.
inline simde__m512 fmadd_ps(simde__m512 a, simde__m512 b, simde__m512 c) {
    const auto x = bits<F16>(a), y = bits<F16>(b), z = bits<F16>(c);
    F16 f;
    for (int l = 0; l < 16; ++l) f.v[l] = std::fma(x.v[l], y.v[l], z.v[l]);
    return bits<simde__m512>(f);
}
inline float reduce_min_ps(simde__m512 x) {
    const auto f = bits<F16>(x);
    return *std::min_element(f.v, f.v + 16);
}
inline float reduce_max_ps(simde__m512 x) {
    const auto f = bits<F16>(x);
    return *std::max_element(f.v, f.v + 16);
}
}  // namespace cq_simde
#define _mm512_cvtepi32_ps cq_simde::cvtepi32_ps
#define _mm512_cvttps_epi32 cq_simde::cvttps_epi32
#define _mm512_maskz_loadu_ps cq_simde::maskz_loadu_ps
#define _mm512_maskz_loadu_epi32 cq_simde::maskz_loadu_epi32
#define _mm512_mask_storeu_ps cq_simde::mask_storeu_ps
#define _mm512_cvtepi32_epi8 cq_simde::cvtepi32_epi8
#define _mm_mask_storeu_epi8 cq_simde::mask_storeu_epi8
#define _mm512_reduce_min_ps cq_simde::reduce_min_ps
#define _mm512_fmadd_ps cq_simde::fmadd_ps
#define _mm512_reduce_max_ps cq_simde::reduce_max_ps
#define gemm_u8s8_f32__avx512vnni gemm_u8s8_f32__simde_avx512vnni
#define quantize_rows_u8_dynamic__avx512vnni quantize_rows_u8_dynamic__simde_avx512vnni
#define quantize_rows_u8_static__avx512vnni quantize_rows_u8_static__simde_avx512vnni
#include "kernels/x86/avx512_vnni/gemm_u8s8_avx512vnni.cpp"
#undef gemm_u8s8_f32__avx512vnni
#undef quantize_rows_u8_dynamic__avx512vnni
#undef quantize_rows_u8_static__avx512vnni
#pragma GCC pop_options
#endif

namespace {

namespace ck = cq::kernels;
using cq::round_up;

struct Variant {
    std::string name;
    cq::GemmU8S8Fn gemm;
    cq::QuantizeRowsU8DynamicFn dynamic;
    cq::QuantizeRowsU8StaticFn fixed;
};

// Every gemm_u7s8 variant other than the reference (whatever its name) that this CPU runs.
std::vector<Variant> u7_variants() {
    std::vector<Variant> out;
    std::set<std::string> seen{"gemm_u8s8_f32__ref"};
    for (cq::IsaLevel level : cq::supported_isa_levels()) {
        const auto t = cq::make_kernel_table(level);
        if (seen.insert(t.gemm_u7s8.name).second) out.push_back({t.gemm_u7s8.name, t.gemm_u7s8.fn, nullptr, nullptr});
    }
    return out;
}

// Every variant other than the reference: one per ISA level this CPU runs, plus SIMDe's AVX-512 VNNI.
std::vector<Variant> variants() {
    std::vector<Variant> out;
    std::set<std::string> seen{"gemm_u8s8_f32__ref"};
    for (cq::IsaLevel level : cq::supported_isa_levels()) {
        const auto t = cq::make_kernel_table(level);
        if (seen.insert(t.gemm_u8s8.name).second)
            out.push_back({t.gemm_u8s8.name, t.gemm_u8s8.fn, t.quantize_rows_u8_dynamic.fn, t.quantize_rows_u8_static.fn});
    }
#if defined(CQ_TEST_SIMDE_VNNI)
    out.push_back({"gemm_u8s8_f32__simde_avx512vnni", &ck::gemm_u8s8_f32__simde_avx512vnni,
                   &ck::quantize_rows_u8_dynamic__simde_avx512vnni, &ck::quantize_rows_u8_static__simde_avx512vnni});
#endif
    return out;
}

// One gemm problem: a [m, lda] u8, w [n, k] s8 and its packing, activation / weight parameters.
struct Problem {
    int64_t m, n, k, lda, ldc;
    bool per_row, with_bias;
    std::vector<uint8_t> a;
    std::vector<int8_t> w, packed;
    std::vector<int32_t> w_sums, a_zp;
    std::vector<float> w_scale, a_scale, bias;
};

enum class Fill { random, extreme_pos, extreme_neg };

// Activations (and their zero points) in [0, a_max]: 255, or 127 for the gemm_u7s8 kernels.
Problem make_problem(int64_t m, int64_t n, int64_t k, bool per_row, bool with_bias, Fill fill, uint32_t seed,
                     int32_t a_max = 255) {
    std::mt19937 rng(seed);
    Problem p{m, n, k, round_up(k, 4) + (seed % 2 ? 0 : 8), n + 3, per_row, with_bias, {}, {}, {}, {}, {}, {}, {}, {}};
    p.a.resize(size_t(m * p.lda));
    p.w.resize(size_t(n * k));
    for (auto& x : p.a) x = fill == Fill::random ? uint8_t(rng() % uint32_t(a_max + 1)) : uint8_t(a_max);
    if (fill == Fill::random)  // and the extremes
        for (size_t i = 0; i < p.a.size(); i += 5) p.a[i] = i % 2 ? uint8_t(a_max) : 0;
    for (auto& x : p.w) x = fill == Fill::random ? int8_t(rng()) : fill == Fill::extreme_pos ? 127 : -128;
    if (fill == Fill::random)  // sprinkle the extremes in
        for (size_t i = 0; i < p.w.size(); i += 7) p.w[i] = i % 2 ? -128 : 127;
    for (int64_t t = 0; t < m; ++t)  // bytes past round_up(k, 4) are not the kernel's to read: poison them
        for (int64_t x = round_up(k, 4); x < p.lda; ++x) p.a[size_t(t * p.lda + x)] = 0xAB;
    p.packed.resize(size_t(cq::packed_s8_bytes(n, k)));
    cq::pack_s8_panels(p.w.data(), n, k, k, p.packed.data());
    p.w_sums.resize(size_t(n));
    cq::s8_row_sums(p.w.data(), n, k, k, p.w_sums.data());
    std::uniform_real_distribution<float> scale(1e-3f, 2e-2f), b(-3.0f, 3.0f);
    for (int64_t i = 0; i < n; ++i) {
        p.w_scale.push_back(scale(rng));
        p.bias.push_back(b(rng));
    }
    for (int64_t t = 0; t < (per_row ? m : 1); ++t) {
        p.a_scale.push_back(scale(rng));
        p.a_zp.push_back(t == 0 ? a_max : int32_t(rng() % uint32_t(a_max + 1)));
    }
    return p;
}

// The kernel's output for p, from guard-page buffers (any read or write past an end faults).
std::vector<float> run(const Problem& p, cq::GemmU8S8Fn gemm) {
    cq::test::GuardedBuffer<uint8_t> a(p.a);
    cq::test::GuardedBuffer<int8_t> packed(p.packed);
    cq::test::GuardedBuffer<int32_t> w_sums(p.w_sums), a_zp(p.a_zp);
    cq::test::GuardedBuffer<float> w_scale(p.w_scale), bias(p.bias), a_scale(p.a_scale);
    cq::test::GuardedBuffer<float> c(std::vector<float>(size_t((p.m - 1) * p.ldc + p.n), -7.0f));
    gemm(p.m, p.n, p.k, a.data(), p.lda, a_scale.data(), a_zp.data(), p.per_row ? 1 : 0, packed.data(), w_sums.data(),
         w_scale.data(), p.with_bias ? bias.data() : nullptr, c.data(), p.ldc);
    return c.to_vector();
}

std::string shape(const Problem& p) {
    return "m=" + std::to_string(p.m) + " n=" + std::to_string(p.n) + " k=" + std::to_string(p.k) +
           (p.per_row ? " per-row" : " per-tensor") + (p.with_bias ? " bias" : " no-bias");
}

const int64_t kMs[] = {1, 3, 17, 64};
const int64_t kNs[] = {1, 15, 16, 17, 50};
const int64_t kKs[] = {1, 3, 4, 5, 63, 771};

std::vector<Problem> all_problems(int32_t a_max = 255) {
    std::vector<Problem> out;
    uint32_t seed = 1;
    for (int64_t m : kMs)
        for (int64_t n : kNs)
            for (int64_t k : kKs) {
                out.push_back(make_problem(m, n, k, seed % 2 == 0, seed % 3 != 0, Fill::random, seed, a_max));
                ++seed;
            }
    // k = 65536 at the extremes: |Σ a·w| = 255·128·65536 < 2^31, but far beyond any int16 partial sum
    out.push_back(make_problem(2, 17, 65536, true, true, Fill::extreme_neg, 1000, a_max));
    out.push_back(make_problem(3, 33, 65536, false, false, Fill::extreme_pos, 1001, a_max));
    out.push_back(make_problem(13, 40, 4099, true, true, Fill::random, 1002, a_max));
    // every row-tile and panel-pair remainder of the register-blocked kernels
    for (int64_t m : {5, 6, 7, 9, 12, 25})
        for (int64_t n : {31, 32, 33, 48, 64, 80})
            out.push_back(make_problem(m, n, 37 + 2 * m, m % 2 == 0, n % 3 != 0, Fill::random, uint32_t(2000 + m * n), a_max));
    return out;
}

TEST(Int8Pack, LayoutMatchesIndexFormula) {
    std::mt19937 rng(3);
    for (int64_t n : {1, 15, 16, 17, 50})
        for (int64_t k : {1, 3, 4, 5, 63}) {
            const int64_t ldw = k + 2, kq = (k + 3) / 4;
            std::vector<int8_t> w(static_cast<size_t>(n * ldw));
            for (auto& x : w) x = int8_t(rng());
            ASSERT_EQ(cq::packed_s8_bytes(n, k), (n + 15) / 16 * 16 * kq * 4);
            std::vector<int8_t> packed(size_t(cq::packed_s8_bytes(n, k)), 99);
            cq::pack_s8_panels(w.data(), n, k, ldw, packed.data());
            for (int64_t p = 0; p < (n + 15) / 16; ++p)
                for (int64_t q = 0; q < kq; ++q)
                    for (int64_t i = 0; i < 16; ++i)
                        for (int64_t j = 0; j < 4; ++j) {
                            const int64_t c = 16 * p + i, x = 4 * q + j;
                            const int8_t want = c < n && x < k ? w[size_t(c * ldw + x)] : 0;
                            ASSERT_EQ(packed[size_t(((p * kq + q) * 16 + i) * 4 + j)], want)
                                << "n=" << n << " k=" << k << " channel " << c << " input " << x;
                        }
            std::vector<int32_t> sums(static_cast<size_t>(n));
            cq::s8_row_sums(w.data(), n, k, ldw, sums.data());
            for (int64_t c = 0; c < n; ++c) {
                int64_t s = 0;
                for (int64_t x = 0; x < k; ++x) s += w[size_t(c * ldw + x)];
                ASSERT_EQ(sums[size_t(c)], s) << "n=" << n << " k=" << k << " channel " << c;
            }
        }
}

// The reference against a triple loop on the unpacked weights: integer part in int64 (the epilogue
// formula then matches bit for bit), and the float result within 2 roundings of the exact value in double.
TEST(GemmU8S8Ref, MatchesNaiveTripleLoop) {
    for (const Problem& p : all_problems()) {
        const auto c = run(p, &ck::gemm_u8s8_f32__ref);
        for (int64_t t = 0; t < p.m; ++t) {
            const size_t ap = size_t(p.per_row ? t : 0);
            for (int64_t i = 0; i < p.n; ++i) {
                int64_t acc = 0;
                for (int64_t x = 0; x < p.k; ++x)
                    acc += int64_t(p.a[size_t(t * p.lda + x)]) * p.w[size_t(i * p.k + x)];
                for (int64_t x = 0; x < p.k; ++x) acc -= int64_t(p.a_zp[ap]) * p.w[size_t(i * p.k + x)];
                const float s = p.a_scale[ap] * p.w_scale[size_t(i)];
                const float b = p.with_bias ? p.bias[size_t(i)] : 0.0f;
                const float want = p.with_bias ? std::fma(float(acc), s, b) : float(acc) * s;
                const float got = c[size_t(t * p.ldc + i)];
                ASSERT_EQ(got, want) << shape(p) << " at [" << t << "][" << i << "] acc=" << acc;
                const double exact = double(acc) * double(p.a_scale[ap]) * double(p.w_scale[size_t(i)]) + b;
                const double bound = 3 * std::numeric_limits<float>::epsilon() * (std::fabs(double(acc) * s) + std::fabs(b));
                ASSERT_LE(std::fabs(got - exact), bound) << shape(p) << " at [" << t << "][" << i << "]";
            }
            for (int64_t i = p.n; i < p.ldc && t + 1 < p.m; ++i)
                ASSERT_EQ(c[size_t(t * p.ldc + i)], -7.0f) << shape(p) << ": wrote the row padding at column " << i;
        }
    }
}

TEST(GemmU8S8, EveryVariantMatchesReferenceBitForBit) {
    const auto problems = all_problems();
#if defined(__x86_64__)
    ASSERT_GE(variants().size(), cq::cpu_supports(cq::IsaLevel::avx2) ? 1u : 0u) << "no vector variant reached";
#endif
    for (const Variant& v : variants()) {
        for (const Problem& p : problems) {
            const auto want = run(p, &ck::gemm_u8s8_f32__ref);
            const auto got = run(p, v.gemm);
            for (size_t e = 0; e < want.size(); ++e)
                ASSERT_EQ(std::memcmp(&got[e], &want[e], sizeof(float)), 0)
                    << v.name << " " << shape(p) << " at [" << e / size_t(p.ldc) << "][" << e % size_t(p.ldc)
                    << "]: " << got[e] << " vs " << want[e];
        }
    }
}

// 7-bit activations: where vpmaddubsw pairs reach 2·127·(−128) and 2·127·127 and k is large.
TEST(GemmU7S8, EveryVariantMatchesReferenceBitForBit) {
    const auto problems = all_problems(cq::kU7QMax);
#if defined(__x86_64__)
    ASSERT_GE(u7_variants().size(), cq::cpu_supports(cq::IsaLevel::avx2) ? 1u : 0u) << "no vector variant reached";
#endif
    for (const Variant& v : u7_variants()) {
        for (const Problem& p : problems) {
            const auto want = run(p, &ck::gemm_u8s8_f32__ref);
            const auto got = run(p, v.gemm);
            for (size_t e = 0; e < want.size(); ++e)
                ASSERT_EQ(std::memcmp(&got[e], &want[e], sizeof(float)), 0)
                    << v.name << " " << shape(p) << " at [" << e / size_t(p.ldc) << "][" << e % size_t(p.ldc)
                    << "]: " << got[e] << " vs " << want[e];
        }
    }
}

// ---- quantizers ----

struct Quantized {
    std::vector<uint8_t> q;
    std::vector<float> scale;
    std::vector<int32_t> zp;
};

Quantized quantize(cq::QuantizeRowsU8DynamicFn dynamic, cq::QuantizeRowsU8StaticFn fixed, const std::vector<float>& x,
                   int64_t m, int64_t k, int64_t ldx, float scale, int32_t zp, int32_t qmax) {
    const int64_t ldq = round_up(k, 4) + 5;
    cq::test::GuardedBuffer<float> xb(x);
    cq::test::GuardedBuffer<uint8_t> q(std::vector<uint8_t>(size_t((m - 1) * ldq + round_up(k, 4)), 0xCD));
    Quantized out;
    if (dynamic) {
        cq::test::GuardedBuffer<float> s(static_cast<size_t>(m));
        cq::test::GuardedBuffer<int32_t> z(static_cast<size_t>(m));
        dynamic(xb.data(), m, k, ldx, qmax, q.data(), ldq, s.data(), z.data());
        out.scale = s.to_vector();
        out.zp = z.to_vector();
    } else {
        fixed(xb.data(), m, k, ldx, scale, zp, qmax, q.data(), ldq);
    }
    out.q = q.to_vector();
    return out;
}

// Rows of every kind: Gaussian, positive only, negative only, all zero, huge, ties of the static scale.
std::vector<float> test_rows(int64_t m, int64_t k, int64_t ldx, uint32_t seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> g(0.0f, 2.0f);
    std::vector<float> x(static_cast<size_t>((m - 1) * ldx + k));
    for (int64_t t = 0; t < m; ++t)
        for (int64_t i = 0; i < k; ++i) {
            float& v = x[size_t(t * ldx + i)];
            switch (t % 6) {
                case 0: v = g(rng); break;
                case 1: v = std::fabs(g(rng)); break;
                case 2: v = -std::fabs(g(rng)); break;
                case 3: v = 0.0f; break;
                case 4: v = (i % 3 == 0 ? 1 : -1) * (i % 2 ? 3e38f : 1e30f); break;
                default: v = 0.25f * float(int(rng() % 2001) - 1000) + 0.125f; break;  // k/4 + 1/8: x·4 ties at .5
            }
        }
    return x;
}

TEST(QuantizeRowsU8, ReferenceFollowsTheRule) {
    for (const int32_t qmax : {cq::kU8QMax, cq::kU7QMax}) {
        SCOPED_TRACE("qmax " + std::to_string(qmax));
        const int64_t m = 12, k = 37, ldx = 41;
        const auto x = test_rows(m, k, ldx, 5);
        const auto d = quantize(&ck::quantize_rows_u8_dynamic__ref, nullptr, x, m, k, ldx, 0, 0, qmax);
        const int64_t ldq = round_up(k, 4) + 5;
        for (int64_t t = 0; t < m; ++t) {
            const float s = d.scale[size_t(t)];
            const int32_t z = d.zp[size_t(t)];
            ASSERT_TRUE(std::isfinite(s) && s > 0) << "row " << t;
            ASSERT_TRUE(z >= 0 && z <= qmax) << "row " << t;
            if (t % 6 == 3) {
                EXPECT_EQ(s, 1.0f);
                EXPECT_EQ(z, 0);
            }
            for (int64_t i = 0; i < round_up(k, 4); ++i) {
                const int q = d.q[size_t(t * ldq + i)];
                ASSERT_LE(q, qmax) << "row " << t << " at " << i;
                if (i >= k) {
                    ASSERT_EQ(q, z) << "row " << t << " padding " << i;
                    continue;
                }
                const double v = x[size_t(t * ldx + i)];
                if (t % 6 == 4) {  // a range beyond float: scale 1, so everything clamps
                    ASSERT_EQ(q, v > 0 ? qmax : 0) << "row " << t << " at " << i;
                    continue;
                }
                // inside the range every value is within half a step (plus the zero point's rounding)
                ASSERT_LE(std::fabs((q - z) * double(s) - v), double(s) * 1.0001) << "row " << t << " at " << i;
            }
        }
        // static, scale 0.25: x·4 = n + 0.5 rounds to even; huge values clamp to 0 / qmax
        const auto st = quantize(nullptr, &ck::quantize_rows_u8_static__ref, x, m, k, ldx, 0.25f, 100, qmax);
        for (int64_t t = 0; t < m; ++t)
            for (int64_t i = 0; i < k; ++i) {
                const double v = double(x[size_t(t * ldx + i)]) * 4.0;
                const double r = v - std::floor(v) == 0.5 ? (std::fmod(std::floor(v), 2.0) == 0 ? std::floor(v) : std::ceil(v))
                                                        : std::round(v);
                const double want = std::clamp(r + 100.0, 0.0, double(qmax));
                ASSERT_EQ(st.q[size_t(t * ldq + i)], int(want)) << "row " << t << " at " << i << " x=" << v / 4;
            }
    }
}

// Static quantization is ONNX QuantizeLinear's round(x / scale) (what ONNX Runtime computes for a QDQ graph), not
// round(x · (1 / scale)): the inputs below are the ones where the two products round to different integers.
TEST(QuantizeRowsU8, StaticDividesByTheScaleAsOnnxQuantizeLinear) {
    const float scale = 0.0137f, inv = 1.0f / scale;
    std::vector<float> x;
    for (int32_t i = -200000; i <= 200000 && x.size() < 64; ++i) {
        const float v = (static_cast<float>(i) + 0.5f) * scale;  // near the half steps, where the two can part
        if (std::nearbyint(v / scale) != std::nearbyint(v * inv) && std::fabs(v / scale) < 120.0f) x.push_back(v);
    }
    ASSERT_FALSE(x.empty());
    const int64_t k = static_cast<int64_t>(x.size());
    std::vector<uint8_t> q(static_cast<size_t>(round_up(k, 4)));
    ck::quantize_rows_u8_static__ref(x.data(), 1, k, k, scale, 128, cq::kU8QMax, q.data(), round_up(k, 4));
    for (int64_t i = 0; i < k; ++i)
        EXPECT_EQ(int(q[size_t(i)]), int(std::nearbyint(x[size_t(i)] / scale)) + 128) << "x=" << x[size_t(i)];
}

TEST(QuantizeRowsU8, EveryVariantMatchesReferenceByteForByte) {
    for (const Variant& v : variants())
        for (const int32_t qmax : {cq::kU8QMax, cq::kU7QMax})
            for (int64_t k : {1, 3, 4, 5, 15, 16, 17, 31, 32, 33, 63, 771}) {
                const int64_t m = 12, ldx = k + 3;
                const auto x = test_rows(m, k, ldx, uint32_t(k));
                const auto want = quantize(&ck::quantize_rows_u8_dynamic__ref, nullptr, x, m, k, ldx, 0, 0, qmax);
                const auto got = quantize(v.dynamic, nullptr, x, m, k, ldx, 0, 0, qmax);
                ASSERT_EQ(got.scale, want.scale) << v.name << " dynamic qmax=" << qmax << " k=" << k;
                ASSERT_EQ(got.zp, want.zp) << v.name << " dynamic qmax=" << qmax << " k=" << k;
                for (size_t e = 0; e < want.q.size(); ++e)
                    ASSERT_EQ(got.q[e], want.q[e]) << v.name << " dynamic qmax=" << qmax << " k=" << k << " at byte " << e;
                for (const auto& [scale, zp] : {std::pair{0.25f, 100}, std::pair{0.0137f, 0}, std::pair{3.0f, qmax}}) {
                    const auto ws = quantize(nullptr, &ck::quantize_rows_u8_static__ref, x, m, k, ldx, scale, zp, qmax);
                    const auto gs = quantize(nullptr, v.fixed, x, m, k, ldx, scale, zp, qmax);
                    for (size_t e = 0; e < ws.q.size(); ++e)
                        ASSERT_EQ(gs.q[e], ws.q[e]) << v.name << " static qmax=" << qmax << " scale=" << scale << " k=" << k
                                                    << " at byte " << e;
                }
            }
}

// Quantize → gemm end to end stays within the quantization error of the float product, with 8-bit
// activations through gemm_u8s8 and 7-bit ones through gemm_u7s8.
TEST(GemmU8S8, DynamicQuantizationApproximatesFloatProduct) {
    for (const int32_t qmax : {cq::kU8QMax, cq::kU7QMax}) {
        const int64_t m = 5, n = 20, k = 64;
        std::mt19937 rng(9);
        std::normal_distribution<float> g(0.0f, 1.0f);
        std::vector<float> x(static_cast<size_t>(m * k)), wf(size_t(n * k));
        for (auto& v : x) v = g(rng);
        for (auto& v : wf) v = g(rng);
        std::vector<int8_t> w(static_cast<size_t>(n * k));
        std::vector<float> w_scale(static_cast<size_t>(n));
        for (int64_t i = 0; i < n; ++i) {
            float amax = 0;
            for (int64_t j = 0; j < k; ++j) amax = std::max(amax, std::fabs(wf[size_t(i * k + j)]));
            w_scale[size_t(i)] = amax / 127;
            for (int64_t j = 0; j < k; ++j) w[size_t(i * k + j)] = int8_t(std::nearbyint(wf[size_t(i * k + j)] / w_scale[size_t(i)]));
        }
        std::vector<int8_t> packed(static_cast<size_t>(cq::packed_s8_bytes(n, k)));
        cq::pack_s8_panels(w.data(), n, k, k, packed.data());
        std::vector<int32_t> sums(static_cast<size_t>(n)), zp(static_cast<size_t>(m));
        cq::s8_row_sums(w.data(), n, k, k, sums.data());
        std::vector<uint8_t> q(static_cast<size_t>(m * k));
        std::vector<float> a_scale(static_cast<size_t>(m)), c(size_t(m * n));
        const auto& t = cq::kernel_table();
        t.quantize_rows_u8_dynamic.fn(x.data(), m, k, k, qmax, q.data(), k, a_scale.data(), zp.data());
        const auto& gemm = qmax == cq::kU8QMax ? t.gemm_u8s8 : t.gemm_u7s8;
        gemm.fn(m, n, k, q.data(), k, a_scale.data(), zp.data(), 1, packed.data(), sums.data(), w_scale.data(), nullptr,
                       c.data(), n);
        for (int64_t r = 0; r < m; ++r)
            for (int64_t i = 0; i < n; ++i) {
                double exact = 0, bound = 0;
                for (int64_t j = 0; j < k; ++j) {
                    exact += double(x[size_t(r * k + j)]) * wf[size_t(i * k + j)];
                    bound += std::fabs(x[size_t(r * k + j)]) * w_scale[size_t(i)] / 2 + std::fabs(wf[size_t(i * k + j)]) * a_scale[size_t(r)] / 2 +
                             a_scale[size_t(r)] * w_scale[size_t(i)] / 4;
                }
                ASSERT_NEAR(c[size_t(r * n + i)], exact, bound) << gemm.name << " at [" << r << "][" << i << "]";
            }
    }
}

TEST(GemmU8S8, ListedInKernelTable) {
    const auto listing = cq::list_kernels(cq::kernel_table());
    for (const char* op : {"gemm_u8s8", "gemm_u7s8", "quantize_rows_u8_dynamic", "quantize_rows_u8_static"})
        EXPECT_TRUE(std::any_of(listing.begin(), listing.end(), [&](const auto& l) { return l.op == op && !l.kernel.empty(); }))
            << op;
}

}  // namespace
