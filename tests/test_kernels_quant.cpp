// Quantized matrix products and activation quantizers: every variant this CPU runs against its reference
// twin (gemm within a derived bound, activation quantizers byte for byte) on awkward shapes with padded
// strides and guard pages; the reference against an independent dequantize-then-dot (in double) written
// from the layout comments of formats/blocks.h (IQ4_NL / IQ4_XS included), and against the formats' codecs; the AVX-512 VNNI kernels
// also through SIMDe where the CPU lacks them.
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

#include "kernel_levels.h"
#include "cq/cpu_features.h"
#include "cq/dtype.h"
#include "cq/kernels.h"
#include "formats/blocks.h"
#include "formats/formats.h"
#include "kernels/kernel_decls.h"

// Where SIMDe (Debian's libsimde-dev) is installed, the AVX-512 VNNI kernels are compiled a second time
// here, for AVX2, against SIMDe's AVX-512 intrinsics and under other names, so machines with AVX2 but no
// AVX-512 test their logic too (the real ones run below wherever the CPU has VNNI).
#if defined(__x86_64__) && defined(__GNUC__) && __has_include(<simde/x86/avx512.h>)
#define CQ_TEST_SIMDE_VNNI 1
#include <immintrin.h>
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")
#define SIMDE_ENABLE_NATIVE_ALIASES
#include <simde/x86/avx512.h>
#include <simde/x86/f16c.h>
#define gemm_q8_0_q8_0__avx512vnni gemm_q8_0_q8_0__simde_avx512vnni
#define gemm_q4_0_q8_0__avx512vnni gemm_q4_0_q8_0__simde_avx512vnni
#define gemm_q4_K_q8_K__avx512vnni gemm_q4_K_q8_K__simde_avx512vnni
#define gemm_q6_K_q8_K__avx512vnni gemm_q6_K_q8_K__simde_avx512vnni
#define gemm_q4_0x8_q8_0__avx512vnni gemm_q4_0x8_q8_0__simde_avx512vnni
#define gemm_q8_0x8_q8_0__avx512vnni gemm_q8_0x8_q8_0__simde_avx512vnni
#define gemm_q4_Kx8_q8_K__avx512vnni gemm_q4_Kx8_q8_K__simde_avx512vnni
#include "kernels/x86/avx512_vnni/quant_gemm_avx512vnni.cpp"
#undef gemm_q8_0_q8_0__avx512vnni
#undef gemm_q4_0_q8_0__avx512vnni
#undef gemm_q4_K_q8_K__avx512vnni
#undef gemm_q6_K_q8_K__avx512vnni
#undef gemm_q4_0x8_q8_0__avx512vnni
#undef gemm_q8_0x8_q8_0__avx512vnni
#undef gemm_q4_Kx8_q8_K__avx512vnni
#pragma GCC pop_options
#endif

namespace {

using namespace cq::formats;
using cq::DType;
namespace ck = cq::kernels;

// n bytes whose last one ends right before a PROT_NONE page, so reads past the end fault at once.
class GuardedBytes {
public:
    explicit GuardedBytes(size_t n) : n_(n) {
        const size_t page = size_t(sysconf(_SC_PAGESIZE));
        const size_t data_pages = (n + page - 1) / page;
        mapped_ = (data_pages + 1) * page;
        void* p = mmap(nullptr, mapped_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) throw std::runtime_error("GuardedBytes: mmap failed");
        base_ = static_cast<uint8_t*>(p);
        if (mprotect(base_ + data_pages * page, page, PROT_NONE) != 0) throw std::runtime_error("GuardedBytes: mprotect failed");
        data_ = base_ + data_pages * page - n;
    }
    GuardedBytes(const GuardedBytes&) = delete;
    GuardedBytes& operator=(const GuardedBytes&) = delete;
    ~GuardedBytes() { munmap(base_, mapped_); }
    uint8_t* data() { return data_; }
    size_t size() const { return n_; }

private:
    size_t n_, mapped_ = 0;
    uint8_t* base_ = nullptr;
    uint8_t* data_ = nullptr;
};

float h2f(f16_bits h) { return ck::f16_to_f32_scalar(h); }
f16_bits f2h(float f) { return ck::f32_to_f16_scalar(f); }

// ---- an independent decoder: block → values w and |scale part| + |min part| (for the error bound) ----

void dq_q8_0(const uint8_t* p, double* w, double* wabs) {
    const auto& b = *reinterpret_cast<const BlockQ8_0*>(p);
    for (int j = 0; j < 32; ++j) wabs[j] = std::fabs(w[j] = double(h2f(b.d)) * b.qs[j]);
}
int nibble(const uint8_t* qs, int j) { return j < 16 ? qs[j] & 0x0F : qs[j - 16] >> 4; }
int bit(const uint8_t* bytes, int j) { return (bytes[j / 8] >> (j % 8)) & 1; }
void dq_q4_0(const uint8_t* p, double* w, double* wabs) {
    const auto& b = *reinterpret_cast<const BlockQ4_0*>(p);
    for (int j = 0; j < 32; ++j) wabs[j] = std::fabs(w[j] = double(h2f(b.d)) * (nibble(b.qs, j) - 8));
}
void dq_q4_1(const uint8_t* p, double* w, double* wabs) {
    const auto& b = *reinterpret_cast<const BlockQ4_1*>(p);
    for (int j = 0; j < 32; ++j) {
        const double s = double(h2f(b.d)) * nibble(b.qs, j), m = h2f(b.m);
        w[j] = s + m;
        wabs[j] = std::fabs(s) + std::fabs(m);
    }
}
void dq_q5_0(const uint8_t* p, double* w, double* wabs) {
    const auto& b = *reinterpret_cast<const BlockQ5_0*>(p);
    for (int j = 0; j < 32; ++j) wabs[j] = std::fabs(w[j] = double(h2f(b.d)) * ((nibble(b.qs, j) | bit(b.qh, j) << 4) - 16));
}
void dq_q5_1(const uint8_t* p, double* w, double* wabs) {
    const auto& b = *reinterpret_cast<const BlockQ5_1*>(p);
    for (int j = 0; j < 32; ++j) {
        const double s = double(h2f(b.d)) * (nibble(b.qs, j) | bit(b.qh, j) << 4), m = h2f(b.m);
        w[j] = s + m;
        wabs[j] = std::fabs(s) + std::fabs(m);
    }
}
// Q2_K / Q3_K low bits: element e sits in byte 32·(e/128) + e%32 at bit pair (e%128)/32.
int q2_bits(const uint8_t* qs, int e) { return (qs[32 * (e / 128) + e % 32] >> (2 * ((e % 128) / 32))) & 3; }
void dq_q2_K(const uint8_t* p, double* w, double* wabs) {
    const auto& b = *reinterpret_cast<const BlockQ2_K*>(p);
    for (int e = 0; e < 256; ++e) {
        const double s = double(h2f(b.d)) * (b.scales[e / 16] & 0x0F) * q2_bits(b.qs, e);
        const double m = double(h2f(b.dmin)) * (b.scales[e / 16] >> 4);
        w[e] = s - m;
        wabs[e] = std::fabs(s) + std::fabs(m);
    }
}
// Q3_K's 16 6-bit scales: low 4 bits in bytes 0..7 (scale i < 8: low nibble of byte i; i ≥ 8: high nibble
// of byte i−8), high 2 bits in bytes 8..11 (scale i: bits 2·(i/4) of byte 8 + i%4); value − 32.
int q3_scale(const uint8_t* s, int i) {
    const int lo = i < 8 ? s[i] & 0x0F : s[i - 8] >> 4;
    return (lo | ((s[8 + i % 4] >> (2 * (i / 4))) & 3) << 4) - 32;
}
void dq_q3_K(const uint8_t* p, double* w, double* wabs) {
    const auto& b = *reinterpret_cast<const BlockQ3_K*>(p);
    for (int e = 0; e < 256; ++e) {
        const int q = q2_bits(b.qs, e) - (bit(b.hmask, 8 * (e % 32) + e / 32) ? 0 : 4);  // hmask[l] bit k ↔ l + 32k
        wabs[e] = std::fabs(w[e] = double(h2f(b.d)) * q3_scale(b.scales, e / 16) * q);
    }
}
// Q4_K / Q5_K 6-bit scale and min of sub-block j (ggml's get_scale_min_k4).
void k4_scale_min(const uint8_t* s, int j, int& sc, int& mn) {
    sc = j < 4 ? s[j] & 63 : (s[j + 4] & 0x0F) | ((s[j - 4] >> 6) << 4);
    mn = j < 4 ? s[j + 4] & 63 : (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
}
void dq_q45_K(const uint8_t* scales, f16_bits d, f16_bits dmin, const uint8_t* qs, const uint8_t* qh, double* w,
              double* wabs) {
    for (int e = 0; e < 256; ++e) {
        int sc, mn;
        k4_scale_min(scales, e / 32, sc, mn);
        const uint8_t byte = qs[32 * (e / 64) + e % 32];
        int q = (e / 32) % 2 ? byte >> 4 : byte & 0x0F;
        if (qh) q |= ((qh[e % 32] >> (e / 32)) & 1) << 4;
        const double s = double(h2f(d)) * sc * q, m = double(h2f(dmin)) * mn;
        w[e] = s - m;
        wabs[e] = std::fabs(s) + std::fabs(m);
    }
}
void dq_q4_K(const uint8_t* p, double* w, double* wabs) {
    const auto& b = *reinterpret_cast<const BlockQ4_K*>(p);
    dq_q45_K(b.scales, b.d, b.dmin, b.qs, nullptr, w, wabs);
}
void dq_q5_K(const uint8_t* p, double* w, double* wabs) {
    const auto& b = *reinterpret_cast<const BlockQ5_K*>(p);
    dq_q45_K(b.scales, b.d, b.dmin, b.qs, b.qh, w, wabs);
}
void dq_q6_K(const uint8_t* p, double* w, double* wabs) {
    const auto& b = *reinterpret_cast<const BlockQ6_K*>(p);
    for (int e = 0; e < 256; ++e) {
        const int h = e / 128, j = (e % 128) / 32, l = e % 32;
        const uint8_t lbyte = b.ql[64 * h + 32 * (j % 2) + l];
        const int q = (j < 2 ? lbyte & 0x0F : lbyte >> 4) | ((b.qh[32 * h + l] >> (2 * j)) & 3) << 4;
        wabs[e] = std::fabs(w[e] = double(h2f(b.d)) * b.scales[e / 16] * (q - 32));
    }
}

// IQ4_NL / IQ4_XS: each 4-bit index picks one of 16 fixed levels (ggml's kvalues_iq4nl), written out here.
constexpr int kIq4Levels[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};
void dq_iq4_nl(const uint8_t* p, double* w, double* wabs) {
    const auto& b = *reinterpret_cast<const BlockIQ4_NL*>(p);
    for (int j = 0; j < 32; ++j) wabs[j] = std::fabs(w[j] = double(h2f(b.d)) * kIq4Levels[nibble(b.qs, j)]);
}
// IQ4_XS sub-block s (32 elements): 6-bit scale = nibble s%2 of scales_l[s/2] | bits 2s..2s+1 of scales_h << 4, minus 32.
void dq_iq4_xs(const uint8_t* p, double* w, double* wabs) {
    const auto& b = *reinterpret_cast<const BlockIQ4_XS*>(p);
    for (int e = 0; e < 256; ++e) {
        const int s = e / 32;
        const int ls = ((b.scales_l[s / 2] >> (4 * (s % 2))) & 0x0F) | (((b.scales_h >> (2 * s)) & 3) << 4);
        wabs[e] = std::fabs(w[e] = double(h2f(b.d)) * (ls - 32) * kIq4Levels[nibble(b.qs + 16 * s, e % 32)]);
    }
}

// ---- random valid blocks: random quant bytes, scales of a realistic size ----

float rand_scale(std::mt19937& rng, float lo, float hi, bool any_sign) {
    float v = std::uniform_real_distribution<float>(lo, hi)(rng);
    if (any_sign && (rng() & 1)) v = -v;
    return v;
}
void fill_random(uint8_t* p, size_t n, std::mt19937& rng) {
    for (size_t i = 0; i < n; ++i) p[i] = uint8_t(rng());
}

struct Format {
    DType type, act;
    int block;
    void (*dequant)(const uint8_t*, double*, double*);
    void (*randomize)(uint8_t*, std::mt19937&);
};

template <typename B>
B& as(uint8_t* p) {
    return *reinterpret_cast<B*>(p);
}

const Format kFormats[] = {
    {DType::Q8_0, DType::Q8_0, 32, dq_q8_0,
     [](uint8_t* p, std::mt19937& rng) {
         auto& b = as<BlockQ8_0>(p);
         for (auto& q : b.qs) q = int8_t(int(rng() % 255) - 127);  // [-127, 127], as the codec writes
         b.d = f2h(rand_scale(rng, 1e-3f, 2e-2f, true));
     }},
    {DType::Q4_0, DType::Q8_0, 32, dq_q4_0,
     [](uint8_t* p, std::mt19937& rng) {
         fill_random(p, sizeof(BlockQ4_0), rng);
         as<BlockQ4_0>(p).d = f2h(rand_scale(rng, 1e-3f, 2e-2f, true));
     }},
    {DType::Q4_1, DType::Q8_1, 32, dq_q4_1,
     [](uint8_t* p, std::mt19937& rng) {
         fill_random(p, sizeof(BlockQ4_1), rng);
         as<BlockQ4_1>(p).d = f2h(rand_scale(rng, 1e-3f, 2e-2f, false));
         as<BlockQ4_1>(p).m = f2h(rand_scale(rng, 0.0f, 0.2f, true));
     }},
    {DType::Q5_0, DType::Q8_0, 32, dq_q5_0,
     [](uint8_t* p, std::mt19937& rng) {
         fill_random(p, sizeof(BlockQ5_0), rng);
         as<BlockQ5_0>(p).d = f2h(rand_scale(rng, 1e-3f, 2e-2f, true));
     }},
    {DType::Q5_1, DType::Q8_1, 32, dq_q5_1,
     [](uint8_t* p, std::mt19937& rng) {
         fill_random(p, sizeof(BlockQ5_1), rng);
         as<BlockQ5_1>(p).d = f2h(rand_scale(rng, 1e-3f, 2e-2f, false));
         as<BlockQ5_1>(p).m = f2h(rand_scale(rng, 0.0f, 0.2f, true));
     }},
    {DType::Q2_K, DType::Q8_K, 256, dq_q2_K,
     [](uint8_t* p, std::mt19937& rng) {
         fill_random(p, sizeof(BlockQ2_K), rng);
         as<BlockQ2_K>(p).d = f2h(rand_scale(rng, 1e-4f, 4e-3f, false));
         as<BlockQ2_K>(p).dmin = f2h(rand_scale(rng, 1e-4f, 4e-3f, false));
     }},
    {DType::Q3_K, DType::Q8_K, 256, dq_q3_K,
     [](uint8_t* p, std::mt19937& rng) {
         fill_random(p, sizeof(BlockQ3_K), rng);
         as<BlockQ3_K>(p).d = f2h(rand_scale(rng, 1e-4f, 4e-3f, true));
     }},
    {DType::Q4_K, DType::Q8_K, 256, dq_q4_K,
     [](uint8_t* p, std::mt19937& rng) {
         fill_random(p, sizeof(BlockQ4_K), rng);
         as<BlockQ4_K>(p).d = f2h(rand_scale(rng, 1e-4f, 4e-3f, false));
         as<BlockQ4_K>(p).dmin = f2h(rand_scale(rng, 1e-4f, 4e-3f, false));
     }},
    {DType::Q5_K, DType::Q8_K, 256, dq_q5_K,
     [](uint8_t* p, std::mt19937& rng) {
         fill_random(p, sizeof(BlockQ5_K), rng);
         as<BlockQ5_K>(p).d = f2h(rand_scale(rng, 1e-4f, 4e-3f, false));
         as<BlockQ5_K>(p).dmin = f2h(rand_scale(rng, 1e-4f, 4e-3f, false));
     }},
    {DType::Q6_K, DType::Q8_K, 256, dq_q6_K,
     [](uint8_t* p, std::mt19937& rng) {
         fill_random(p, sizeof(BlockQ6_K), rng);
         as<BlockQ6_K>(p).d = f2h(rand_scale(rng, 1e-4f, 4e-3f, true));
     }},
    {DType::IQ4_NL, DType::Q8_0, 32, dq_iq4_nl,
     [](uint8_t* p, std::mt19937& rng) {
         fill_random(p, sizeof(BlockIQ4_NL), rng);
         as<BlockIQ4_NL>(p).d = f2h(rand_scale(rng, 1e-5f, 2e-4f, true));
     }},
    {DType::IQ4_XS, DType::Q8_K, 256, dq_iq4_xs,
     [](uint8_t* p, std::mt19937& rng) {
         fill_random(p, sizeof(BlockIQ4_XS), rng);
         as<BlockIQ4_XS>(p).d = f2h(rand_scale(rng, 1e-6f, 1e-5f, true));
     }},
};

size_t block_bytes(DType t) { return cq::dtype_traits(t).bytes_per_block; }
std::string name(DType t) { return std::string(cq::dtype_name(t)); }

// Activation block → values (qs·d) and, for Q8_1, the stored s (for the reference's own rounding slack).
void dequant_act(DType act, const uint8_t* p, double* x, double* s) {
    if (act == DType::Q8_K) {
        const auto& b = *reinterpret_cast<const BlockQ8_K*>(p);
        for (int j = 0; j < 256; ++j) x[j] = double(b.d) * b.qs[j];
        return;
    }
    const int8_t* qs = act == DType::Q8_0 ? reinterpret_cast<const BlockQ8_0*>(p)->qs : reinterpret_cast<const BlockQ8_1*>(p)->qs;
    const double d = h2f(act == DType::Q8_0 ? reinterpret_cast<const BlockQ8_0*>(p)->d : reinterpret_cast<const BlockQ8_1*>(p)->d);
    for (int j = 0; j < 32; ++j) x[j] = d * qs[j];
    if (s) *s = h2f(reinterpret_cast<const BlockQ8_1*>(p)->s);
}

// Random activations: uniform in [-1, 1] with a few outliers, so block scales differ.
std::vector<float> random_activations(size_t n, std::mt19937& rng) {
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    std::vector<float> x(n);
    for (auto& v : x) v = u(rng) * ((rng() % 61 == 0) ? 8.0f : 1.0f);
    return x;
}

struct Problem {
    const Format* f;
    int64_t m, n, k;
    size_t arb, wrb;  // row strides in bytes (padded)
    int64_t ldc;
};

std::string shape_str(const Problem& p) {
    std::ostringstream s;
    s << name(p.f->type) << " m=" << p.m << " n=" << p.n << " k=" << p.k << " act_row_bytes=" << p.arb
      << " w_row_bytes=" << p.wrb << " ldc=" << p.ldc;
    return s.str();
}

// Runs the reference and `kernel` on one problem (weights from `fill_w`), checks the kernel against the
// reference within eps·(2·nb + 16)·Σ|w parts|·|x| per output, the row padding of c untouched, and
// (check_spec) the reference against a double dequantize-then-dot within the same bound.
template <typename FillW>
::testing::AssertionResult check_problem(const cq::Kernel<cq::GemmQuantFn>& kernel, cq::GemmQuantFn ref,
                                         cq::QuantizeRowFn quantize_act, const Problem& p, FillW fill_w,
                                         std::mt19937& rng, bool check_spec) {
    const Format& f = *p.f;
    const int64_t nb = p.k / f.block;
    const size_t wb = block_bytes(f.type), ab = block_bytes(f.act);
    GuardedBytes w(size_t(p.n - 1) * p.wrb + size_t(nb) * wb), a(size_t(p.m - 1) * p.arb + size_t(nb) * ab);
    std::memset(w.data(), 0xA5, w.size());
    std::memset(a.data(), 0x5A, a.size());
    for (int64_t i = 0; i < p.n; ++i) fill_w(w.data() + size_t(i) * p.wrb, nb, rng);
    for (int64_t t = 0; t < p.m; ++t) {
        const auto x = random_activations(size_t(p.k), rng);
        quantize_act(x.data(), a.data() + size_t(t) * p.arb, p.k);
    }
    const float sentinel = -1234.5f;
    std::vector<float> want(size_t(p.m * p.ldc), sentinel), got(want);
    ref(p.m, p.n, p.k, a.data(), p.arb, w.data(), p.wrb, want.data(), p.ldc);
    kernel.fn(p.m, p.n, p.k, a.data(), p.arb, w.data(), p.wrb, got.data(), p.ldc);

    std::vector<double> wv(size_t(p.n * p.k)), wabs(wv.size()), xv(size_t(p.m * p.k)), s1(size_t(p.m * nb));
    for (int64_t i = 0; i < p.n; ++i)
        for (int64_t b = 0; b < nb; ++b)
            f.dequant(w.data() + size_t(i) * p.wrb + size_t(b) * wb, &wv[size_t(i * p.k + b * f.block)],
                      &wabs[size_t(i * p.k + b * f.block)]);
    for (int64_t t = 0; t < p.m; ++t)
        for (int64_t b = 0; b < nb; ++b)
            dequant_act(f.act, a.data() + size_t(t) * p.arb + size_t(b) * ab, &xv[size_t(t * p.k + b * f.block)],
                        &s1[size_t(t * nb + b)]);
    const double eps = std::numeric_limits<float>::epsilon();
    for (int64_t t = 0; t < p.m; ++t) {
        for (int64_t i = 0; i < p.n; ++i) {
            double exact = 0.0, bound = 0.0, slack = 0.0;
            for (int64_t j = 0; j < p.k; ++j) {
                exact += wv[size_t(i * p.k + j)] * xv[size_t(t * p.k + j)];
                bound += wabs[size_t(i * p.k + j)] * std::fabs(xv[size_t(t * p.k + j)]);
            }
            if (f.act == DType::Q8_1)  // the reference uses s = f16(d·Σq): m·s is off by up to |m·s|·2^-10
                for (int64_t b = 0; b < nb; ++b) {
                    const uint8_t* blk = w.data() + size_t(i) * p.wrb + size_t(b) * wb;
                    const double m = h2f(f.type == DType::Q4_1 ? reinterpret_cast<const BlockQ4_1*>(blk)->m
                                                               : reinterpret_cast<const BlockQ5_1*>(blk)->m);
                    slack += std::fabs(m * s1[size_t(t * nb + b)]) * std::ldexp(1.0, -10);
                }
            const double tol = eps * double(2 * nb + 16) * bound;
            const size_t idx = size_t(t * p.ldc + i);
            if (!(std::fabs(double(got[idx]) - double(want[idx])) <= tol))
                return ::testing::AssertionFailure() << kernel.name << " " << shape_str(p) << ": c[" << t << "," << i
                                                     << "] = " << got[idx] << ", reference " << want[idx]
                                                     << ", tolerance " << tol;
            if (check_spec && !(std::fabs(double(want[idx]) - exact) <= tol + slack))
                return ::testing::AssertionFailure() << "reference gemm_" << name(f.type) << " " << shape_str(p)
                                                     << ": c[" << t << "," << i << "] = " << want[idx]
                                                     << ", dequantize-then-dot " << exact << ", tolerance " << tol + slack;
        }
        for (int64_t i = p.n; i < p.ldc; ++i)
            if (got[size_t(t * p.ldc + i)] != sentinel)
                return ::testing::AssertionFailure() << kernel.name << " " << shape_str(p) << ": wrote row padding c["
                                                     << t << "," << i << "]";
    }
    return ::testing::AssertionSuccess();
}

std::vector<cq::IsaLevel> levels_of_this_arch() { return cq::test::isa_levels_of_this_arch(); }

class QuantKernelsAtLevel : public cq::test::KernelTableAtLevel {
protected:
    void SetUp() override {
        KernelTableAtLevel::SetUp();
        ref_ = cq::make_kernel_table(cq::IsaLevel::ref);
    }
    const cq::Kernel<cq::GemmQuantFn>& gemm(DType t) const { return table_.quant[size_t(t)].gemm; }
    cq::KernelTable ref_;
};

auto random_rows(const Format& f) {
    return [&f](uint8_t* row, int64_t nb, std::mt19937& rng) {
        for (int64_t b = 0; b < nb; ++b) f.randomize(row + size_t(b) * block_bytes(f.type), rng);
    };
}

TEST_P(QuantKernelsAtLevel, EveryFormatHasAGemmAndItsActivationQuantizer) {
    for (const Format& f : kFormats) {
        EXPECT_NE(gemm(f.type).fn, nullptr) << name(f.type);
        EXPECT_NE(table_.quant[size_t(f.act)].quantize_act.fn, nullptr) << name(f.act);
    }
}

TEST_P(QuantKernelsAtLevel, GemmMatchesReferenceOnAwkwardShapes) {
    const bool at_ref = GetParam() == cq::IsaLevel::ref;  // the reference itself is checked against the spec here
    std::mt19937 rng(1234);
    for (const Format& f : kFormats) {
        const auto& kernel = gemm(f.type);
        if (!kernel.fn) continue;
        const auto ref = ref_.quant[size_t(f.type)].gemm.fn;
        const auto qa = ref_.quant[size_t(f.act)].quantize_act.fn;
        const size_t wb = block_bytes(f.type), ab = block_bytes(f.act);
        for (int64_t m : {1, 2, 3, 4, 5, 8, 17})
            for (int64_t n : {1, 3, 4, 7, 8, 12, 16, 33})  // 8 and 12: Q4_0's 8-row tiles, alone and with a quad
                for (int64_t blocks : {1, 2, 3, 8}) {
                    const int64_t k = blocks * f.block;
                    const bool padded = (m + n + blocks) % 2 == 1;
                    const Problem p{&f, m, n, k, size_t(blocks) * ab + (padded ? ab : 0),
                                    size_t(blocks) * wb + (padded ? 2 * wb : 0), n + (padded ? 3 : 0)};
                    ASSERT_TRUE(check_problem(kernel, ref, qa, p, random_rows(f), rng, at_ref));
                }
        // Enough rows, tokens and blocks that the fast kernels walk several row chunks (~1 MiB of weights
        // each: 2.5 MiB here), token tiles and k segments (legacy: 261 blocks; K-quants: 16 super-blocks).
        const int64_t k = f.block == 32 ? 261 * 32 : 16 * 256;
        // The reference and the ARM kernels walk no row chunks (and the ARM ones run under emulation in CI).
        const bool chunked = !at_ref && int(GetParam()) < int(cq::IsaLevel::neon);
        const int64_t n_big = chunked ? int64_t((size_t{5} << 19) / (size_t(k / f.block) * wb)) | 1 : 37;
        const Problem big{&f, 9, n_big, k, size_t(k / f.block) * ab, size_t(k / f.block) * wb, n_big + 3};
        ASSERT_TRUE(check_problem(kernel, ref, qa, big, random_rows(f), rng, at_ref));
    }
}

// Q4_0, Q8_0 and Q4_K packed in groups of 8 rows (QuantKernels::pack_rows). check_problem hands a kernel strided
// rows, so the packed kernels run behind an adapter that packs them first (into a buffer that ends at a
// guard page); the reference twins must equal the plain references exactly.
cq::GemmQuantFn g_packed_kernel = nullptr;
DType g_packed_type = DType::Q4_0;
void packed_x8_adapter(int64_t m, int64_t n, int64_t k, const void* act, size_t arb, const void* w, size_t wrb, float* c,
                       int64_t ldc) {
    static const cq::KernelTable ref = cq::make_kernel_table(cq::IsaLevel::ref);
    const cq::QuantKernels& q = ref.quant[size_t(g_packed_type)];
    GuardedBytes packed(q.packed_bytes(n, k));
    q.pack_rows(w, wrb, n, k, packed.data());
    g_packed_kernel(m, n, k, act, arb, packed.data(), q.packed_row_bytes(k), c, ldc);
}

TEST_P(QuantKernelsAtLevel, PackedRowsMatchReferenceOnAwkwardShapes) {
    const bool at_ref = GetParam() == cq::IsaLevel::ref;
    const struct {
        DType type;
        cq::GemmQuantFn ref_twin;
        const char* name;
    } packed_formats[] = {{DType::Q4_0, ck::gemm_q4_0x8_q8_0__ref, "gemm_q4_0x8_q8_0__ref"},
                          {DType::Q8_0, ck::gemm_q8_0x8_q8_0__ref, "gemm_q8_0x8_q8_0__ref"},
                          {DType::Q4_K, ck::gemm_q4_Kx8_q8_K__ref, "gemm_q4_Kx8_q8_K__ref"}};
    int tested = 0;
    for (const auto& pf : packed_formats) {
        const Format& f = *std::find_if(std::begin(kFormats), std::end(kFormats), [&](const Format& x) { return x.type == pf.type; });
        const cq::Kernel<cq::GemmQuantFn> packed = at_ref ? cq::Kernel<cq::GemmQuantFn>{pf.ref_twin, pf.name}
                                                          : table_.quant[size_t(pf.type)].gemm_packed;
        if (!packed.fn) continue;
        ++tested;
        g_packed_kernel = packed.fn;
        g_packed_type = pf.type;
        const cq::Kernel<cq::GemmQuantFn> adapter{packed_x8_adapter, packed.name, packed.isa};
        const auto ref = ref_.quant[size_t(pf.type)].gemm.fn;
        const auto qa = ref_.quant[size_t(f.act)].quantize_act.fn;
        const size_t wb = block_bytes(pf.type), ab = block_bytes(f.act);
        std::mt19937 rng(4321);
        for (int64_t m : {1, 2, 3, 4, 5, 9})
            for (int64_t n : {1, 7, 8, 9, 16, 23})
                for (int64_t blocks : {1, 3, 8}) {
                    const bool padded = (m + n + blocks) % 2 == 1;
                    const Problem p{&f, m, n, blocks * f.block, size_t(blocks) * ab + (padded ? ab : 0),
                                    size_t(blocks) * wb + (padded ? 2 * wb : 0), n + (padded ? 3 : 0)};
                    ASSERT_TRUE(check_problem(adapter, ref, qa, p, random_rows(f), rng, false));
                }
        // several row chunks (2.5 MiB of weights), token tiles and k segments
        const int64_t big_blocks = f.block == 32 ? 261 : 16;
        const int64_t n_big = int64_t((size_t{5} << 19) / (size_t(big_blocks) * wb)) | 1;
        const Problem big{&f, 9, n_big, big_blocks * f.block, size_t(big_blocks) * ab, size_t(big_blocks) * wb, n_big + 2};
        ASSERT_TRUE(check_problem(adapter, ref, qa, big, random_rows(f), rng, false));
        // Q8_0 weights of −128 (a file may hold them; ggml's quantizer never writes them): exact too
        if (pf.type == DType::Q8_0) {
            const auto extreme = [&](uint8_t* row, int64_t nb, std::mt19937& g) {
                random_rows(f)(row, nb, g);
                for (int64_t b = 0; b < nb; ++b) std::memset(row + size_t(b) * wb + 2, 0x80, 32);
            };
            const Problem p{&f, 5, 19, 4 * 32, 4 * ab, 4 * wb, 19};
            ASSERT_TRUE(check_problem(adapter, ref, qa, p, extreme, rng, false));
        }
        if (!at_ref) continue;
        // the reference twin: bit for bit the plain reference
        for (int64_t n : {5, 8, 19}) {
            const int64_t m = 3, k = 7 * f.block;
            const cq::QuantKernels& q = ref_.quant[size_t(pf.type)];
            std::vector<uint8_t> w(size_t(n) * 7 * wb), a(size_t(m) * 7 * ab), packed_w(q.packed_bytes(n, k));
            for (int64_t i = 0; i < n; ++i) random_rows(f)(w.data() + size_t(i) * 7 * wb, 7, rng);
            for (int64_t t = 0; t < m; ++t) qa(random_activations(size_t(k), rng).data(), a.data() + size_t(t) * 7 * ab, k);
            q.pack_rows(w.data(), 7 * wb, n, k, packed_w.data());
            std::vector<float> want(size_t(m * n)), got(want.size());
            ref(m, n, k, a.data(), 7 * ab, w.data(), 7 * wb, want.data(), n);
            pf.ref_twin(m, n, k, a.data(), 7 * ab, packed_w.data(), 7 * wb, got.data(), n);
            for (size_t i = 0; i < want.size(); ++i) ASSERT_EQ(got[i], want[i]) << pf.name << " n=" << n << " at " << i;
        }
    }
    if (tested == 0) GTEST_SKIP() << "no packed kernels at " << cq::isa_level_name(GetParam());
}

TEST_P(QuantKernelsAtLevel, EmptyKGivesZeros) {
    const uint8_t dummy[16] = {};
    for (const Format& f : kFormats) {
        const auto& kernel = gemm(f.type);
        if (!kernel.fn) continue;
        const int64_t m = 5, n = 6, ldc = 8;
        std::vector<float> c(size_t(m * ldc), 7.0f);
        kernel.fn(m, n, 0, dummy, 0, dummy, 0, c.data(), ldc);
        for (int64_t t = 0; t < m; ++t)
            for (int64_t i = 0; i < ldc; ++i)
                ASSERT_EQ(c[size_t(t * ldc + i)], i < n ? 0.0f : 7.0f) << kernel.name << " k=0 at " << t << "," << i;
    }
}

#if defined(__aarch64__)
// The ARM kernels keep the reference's bits (exact integer sums, its float steps in its order; docs/edge.md): every
// format, IQ4 included, equal bit for bit on awkward shapes with padded strides, not just within the bound above.
TEST_P(QuantKernelsAtLevel, ArmGemmsEqualTheReferenceBitForBit) {
    if (GetParam() == cq::IsaLevel::ref) GTEST_SKIP() << "the reference itself";
    std::mt19937 rng(4321);
    for (const Format& f : kFormats) {
        const auto& kernel = gemm(f.type);
        const auto ref = ref_.quant[size_t(f.type)].gemm.fn;
        const auto qa = ref_.quant[size_t(f.act)].quantize_act.fn;
        ASSERT_NE(kernel.fn, nullptr) << name(f.type);
        EXPECT_STRNE(kernel.name, ref_.quant[size_t(f.type)].gemm.name) << name(f.type) << ": no ARM kernel at this rung";
        const size_t wb = block_bytes(f.type), ab = block_bytes(f.act);
        for (const auto& [m, n, blocks] : {std::tuple<int64_t, int64_t, int64_t>{1, 1, 1}, {3, 7, 2}, {5, 17, 3}, {2, 9, 9}}) {
            const int64_t k = blocks * f.block, ldc = n + 2;
            const size_t arb = size_t(blocks) * ab + ab, wrb = size_t(blocks) * wb + wb;
            GuardedBytes w(size_t(n - 1) * wrb + size_t(blocks) * wb), a(size_t(m - 1) * arb + size_t(blocks) * ab);
            for (int64_t i = 0; i < n; ++i) random_rows(f)(w.data() + size_t(i) * wrb, blocks, rng);
            for (int64_t t = 0; t < m; ++t) qa(random_activations(size_t(k), rng).data(), a.data() + size_t(t) * arb, k);
            std::vector<float> want(size_t(m * ldc), 7.0f), got(want);
            ref(m, n, k, a.data(), arb, w.data(), wrb, want.data(), ldc);
            kernel.fn(m, n, k, a.data(), arb, w.data(), wrb, got.data(), ldc);
            ASSERT_EQ(std::memcmp(got.data(), want.data(), got.size() * sizeof(float)), 0)
                    << kernel.name << " m=" << m << " n=" << n << " k=" << k;
        }
    }
}
#endif

// Weights quantized from floats by the format's reference codec, where one is registered.
TEST_P(QuantKernelsAtLevel, GemmMatchesReferenceOnCodecWeights) {
    std::mt19937 rng(99);
    int tested = 0;
    for (const Format& f : kFormats) {
        const auto& kernel = gemm(f.type);
        const auto from_float = cq::dtype_traits(f.type).from_float;
        if (!kernel.fn || !from_float) continue;
        const auto fill = [&](uint8_t* row, int64_t nb, std::mt19937& g) {
            const auto x = random_activations(size_t(nb * f.block), g);
            from_float(x.data(), row, nb * f.block);
        };
        for (int64_t m : {1, 4, 7})
            for (int64_t n : {1, 5, 16}) {
                const int64_t k = 4 * 256;
                const Problem p{&f, m, n, k, size_t(k / f.block) * block_bytes(f.act), size_t(k / f.block) * block_bytes(f.type), n};
                ASSERT_TRUE(check_problem(kernel, ref_.quant[size_t(f.type)].gemm.fn,
                                          ref_.quant[size_t(f.act)].quantize_act.fn, p, fill, rng, true));
            }
        ++tested;
    }
    if (tested == 0) GTEST_SKIP() << "no reference codecs registered yet";
}

#if defined(CQ_TEST_SIMDE_VNNI)
TEST(QuantKernelsSimde, Avx512VnniKernelsMatchReference) {
    if (!cq::cpu_supports(cq::IsaLevel::avx2)) GTEST_SKIP() << "the SIMDe build of the VNNI kernels needs AVX2";
    const cq::KernelTable ref = cq::make_kernel_table(cq::IsaLevel::ref);
    const struct {
        DType type;
        cq::GemmQuantFn fn;
        const char* name;
    } kernels[] = {
        {DType::Q8_0, ck::gemm_q8_0_q8_0__simde_avx512vnni, "gemm_q8_0_q8_0__avx512vnni (SIMDe)"},
        {DType::Q4_0, ck::gemm_q4_0_q8_0__simde_avx512vnni, "gemm_q4_0_q8_0__avx512vnni (SIMDe)"},
        {DType::Q4_K, ck::gemm_q4_K_q8_K__simde_avx512vnni, "gemm_q4_K_q8_K__avx512vnni (SIMDe)"},
        {DType::Q6_K, ck::gemm_q6_K_q8_K__simde_avx512vnni, "gemm_q6_K_q8_K__avx512vnni (SIMDe)"},
    };
    std::mt19937 rng(77);
    for (const auto& kd : kernels) {
        const Format* fp = nullptr;
        for (const Format& f : kFormats)
            if (f.type == kd.type) fp = &f;
        ASSERT_NE(fp, nullptr);
        const Format& f = *fp;
        const cq::Kernel<cq::GemmQuantFn> kernel{kd.fn, kd.name, cq::IsaLevel::avx512_vnni};
        const auto rf = ref.quant[size_t(f.type)].gemm.fn;
        const auto qa = ref.quant[size_t(f.act)].quantize_act.fn;
        const size_t wb = block_bytes(f.type), ab = block_bytes(f.act);
        for (int64_t m : {1, 2, 3, 4, 5, 17})
            for (int64_t n : {1, 3, 4, 7, 33})
                for (int64_t blocks : {1, 3, 8}) {
                    const int64_t k = blocks * f.block;
                    const bool padded = (m + n + blocks) % 2 == 1;
                    const Problem p{&f, m, n, k, size_t(blocks) * ab + (padded ? ab : 0),
                                    size_t(blocks) * wb + (padded ? 2 * wb : 0), n + (padded ? 3 : 0)};
                    ASSERT_TRUE(check_problem(kernel, rf, qa, p, random_rows(f), rng, false));
                }
        const int64_t k = f.block == 32 ? 261 * 32 : 16 * 256;
        const Problem big{&f, 9, 37, k, size_t(k / f.block) * ab, size_t(k / f.block) * wb, 40};
        ASSERT_TRUE(check_problem(kernel, rf, qa, big, random_rows(f), rng, false));
    }
}

// The packed VNNI kernels through SIMDe, behind the packing adapter: awkward shapes and several row chunks.
TEST(QuantKernelsSimde, Avx512VnniPackedKernelsMatchReference) {
    if (!cq::cpu_supports(cq::IsaLevel::avx2)) GTEST_SKIP() << "the SIMDe build of the VNNI kernels needs AVX2";
    const cq::KernelTable ref = cq::make_kernel_table(cq::IsaLevel::ref);
    const struct {
        DType type;
        cq::GemmQuantFn fn;
        const char* name;
    } kernels[] = {
        {DType::Q4_0, ck::gemm_q4_0x8_q8_0__simde_avx512vnni, "gemm_q4_0x8_q8_0__avx512vnni (SIMDe)"},
        {DType::Q8_0, ck::gemm_q8_0x8_q8_0__simde_avx512vnni, "gemm_q8_0x8_q8_0__avx512vnni (SIMDe)"},
        {DType::Q4_K, ck::gemm_q4_Kx8_q8_K__simde_avx512vnni, "gemm_q4_Kx8_q8_K__avx512vnni (SIMDe)"},
    };
    std::mt19937 rng(78);
    for (const auto& kd : kernels) {
        const Format& f = *std::find_if(std::begin(kFormats), std::end(kFormats), [&](const Format& x) { return x.type == kd.type; });
        g_packed_kernel = kd.fn;
        g_packed_type = kd.type;
        const cq::Kernel<cq::GemmQuantFn> adapter{packed_x8_adapter, kd.name, cq::IsaLevel::avx512_vnni};
        const auto rf = ref.quant[size_t(f.type)].gemm.fn;
        const auto qa = ref.quant[size_t(f.act)].quantize_act.fn;
        const size_t wb = block_bytes(f.type), ab = block_bytes(f.act);
        for (int64_t m : {1, 2, 3, 4, 5, 9})
            for (int64_t n : {1, 7, 8, 9, 23})
                for (int64_t blocks : {1, 3, 8}) {
                    const bool padded = (m + n + blocks) % 2 == 1;
                    const Problem p{&f, m, n, blocks * f.block, size_t(blocks) * ab + (padded ? ab : 0),
                                    size_t(blocks) * wb + (padded ? 2 * wb : 0), n + (padded ? 3 : 0)};
                    ASSERT_TRUE(check_problem(adapter, rf, qa, p, random_rows(f), rng, false));
                }
        const int64_t big_blocks = f.block == 32 ? 261 : 16;
        const int64_t n_big = int64_t((size_t{5} << 19) / (size_t(big_blocks) * wb)) | 1;
        const Problem big{&f, 9, n_big, big_blocks * f.block, size_t(big_blocks) * ab, size_t(big_blocks) * wb, n_big + 2};
        ASSERT_TRUE(check_problem(adapter, rf, qa, big, random_rows(f), rng, false));
    }
}
#endif

// ---- activation quantizers ----

// Inputs that probe the rounding rules: random values, an all-zero block, exact halves (amax = 127, so
// d = 1 and x·(1/d) = n + 0.5), a negative extreme first, and ± the same extreme (the first one wins).
std::vector<float> activation_probe(int64_t k, int block, std::mt19937& rng) {
    std::vector<float> x = random_activations(size_t(k), rng);
    const int64_t nb = k / block;
    for (int64_t b = 0; b < nb; ++b) {
        float* v = x.data() + b * block;
        switch (b % 5) {
            case 0: std::fill(v, v + block, 0.0f); break;
            case 1:
                v[0] = 127.0f;
                for (int j = 1; j < block; ++j) v[j] = float(j % 200 - 100) + 0.5f;
                break;
            case 2:
                v[3] = -127.0f;
                v[block - 1] = 127.0f;
                for (int j = 4; j < block - 1; ++j) v[j] = float(j % 120) - 60.5f;
                break;
            case 3: v[block / 2] = 50.0f; v[block / 3] = -50.0f; break;
            default: break;
        }
    }
    return x;
}

TEST_P(QuantKernelsAtLevel, ActivationQuantizersAreByteIdenticalToReference) {
    std::mt19937 rng(5);
    for (DType act : {DType::Q8_0, DType::Q8_1, DType::Q8_K}) {
        const auto& kernel = table_.quant[size_t(act)].quantize_act;
        ASSERT_NE(kernel.fn, nullptr) << name(act);
        const int block = act == DType::Q8_K ? 256 : 32;
        for (int64_t blocks : {1, 2, 3, 5, 8, 33}) {
            const int64_t k = blocks * block;
            const auto x = activation_probe(k, block, rng);
            const size_t bytes = size_t(blocks) * block_bytes(act);
            GuardedBytes got(bytes);
            std::vector<uint8_t> want(bytes);
            ref_.quant[size_t(act)].quantize_act.fn(x.data(), want.data(), k);
            std::vector<float> xin(x);  // the kernel reads exactly k floats
            kernel.fn(xin.data(), got.data(), k);
            for (size_t i = 0; i < bytes; ++i)
                ASSERT_EQ(got.data()[i], want[i]) << kernel.name << " k=" << k << ": byte " << i << " (block "
                                                  << i / block_bytes(act) << ", offset " << i % block_bytes(act) << ")";
        }
    }
}

// The kernel table's reference activation quantizers against the formats' codecs, where registered.
TEST(QuantReference, ActivationQuantizersMatchFormatCodecs) {
    std::mt19937 rng(8);
    const cq::KernelTable ref = cq::make_kernel_table(cq::IsaLevel::ref);
    int tested = 0;
    for (DType act : {DType::Q8_0, DType::Q8_1, DType::Q8_K}) {
        const auto from_float = cq::dtype_traits(act).from_float;
        if (!from_float) continue;
        const int block = act == DType::Q8_K ? 256 : 32;
        const int64_t k = 10 * block;
        const auto x = activation_probe(k, block, rng);
        std::vector<uint8_t> want(size_t(10) * block_bytes(act)), got(want.size());
        from_float(x.data(), want.data(), k);
        ref.quant[size_t(act)].quantize_act.fn(x.data(), got.data(), k);
        for (size_t i = 0; i < want.size(); ++i)
            ASSERT_EQ(got[i], want[i]) << ref.quant[size_t(act)].quantize_act.name << " against the " << name(act)
                                       << " codec: byte " << i;
        ++tested;
    }
    if (tested == 0) GTEST_SKIP() << "no activation codecs registered yet";
}

INSTANTIATE_TEST_SUITE_P(, QuantKernelsAtLevel, ::testing::ValuesIn(levels_of_this_arch()),
                         [](const auto& info) { return std::string(cq::isa_level_name(info.param)); });

// ---- reference closed forms ----

TEST(QuantReference, ActivationQuantizersFollowGgmlRules) {
    // Q8_0: d = max|x|/127, q = roundf(x/d): halves away from zero.
    std::vector<float> x(32, 0.0f);
    x[0] = 127.0f, x[1] = 2.5f, x[2] = -2.5f, x[3] = 0.49999997f, x[4] = -126.5f;
    BlockQ8_0 q0;
    quantize_row_q8_0_ref(x.data(), &q0, 32);
    EXPECT_EQ(h2f(q0.d), 1.0f);
    EXPECT_EQ(q0.qs[0], 127);
    EXPECT_EQ(q0.qs[1], 3);
    EXPECT_EQ(q0.qs[2], -3);
    EXPECT_EQ(q0.qs[3], 0);
    EXPECT_EQ(q0.qs[4], -127);
    // Q8_1: s = d·Σq.
    BlockQ8_1 q1;
    quantize_row_q8_1_ref(x.data(), &q1, 32);
    EXPECT_EQ(h2f(q1.s), float(127 + 3 - 3 + 0 - 127));
    // Q8_K: scale −127/max with max the first value of largest magnitude; ties to even; bsums.
    std::vector<float> y(256, 0.0f);
    y[0] = -127.0f, y[1] = 127.0f, y[2] = 2.5f, y[3] = 3.5f, y[17] = -1.0f;
    BlockQ8_K qk;
    quantize_row_q8_K_ref(y.data(), &qk, 256);
    EXPECT_EQ(qk.d, 1.0f);  // max = −127 comes first: iscale = −127/max = 1
    EXPECT_EQ(qk.qs[0], -127);
    EXPECT_EQ(qk.qs[1], 127);
    EXPECT_EQ(qk.qs[2], 2);
    EXPECT_EQ(qk.qs[3], 4);
    EXPECT_EQ(qk.bsums[0], -127 + 127 + 2 + 4);
    EXPECT_EQ(qk.bsums[1], -1);
}

TEST(QuantReference, Q4_0TimesQ8_0ClosedForm) {
    // One block: w = (q − 8)·d with q = 9 everywhere (w = d = 0.5), a = 1·1 everywhere → 32·0.5.
    BlockQ4_0 w;
    w.d = f2h(0.5f);
    std::memset(w.qs, 0x99, sizeof(w.qs));
    BlockQ8_0 a;
    a.d = f2h(1.0f);
    std::memset(a.qs, 1, sizeof(a.qs));
    float c = 0.0f;
    ck::gemm_q4_0_q8_0__ref(1, 1, 32, &a, sizeof(a), &w, sizeof(w), &c, 1);
    EXPECT_EQ(c, 16.0f);
}

// The test's own decoder against the formats' dequantizers, where they are registered: both read blocks.h.
TEST(QuantReference, TestDecoderAgreesWithFormatCodecs) {
    std::mt19937 rng(3);
    int tested = 0;
    for (const Format& f : kFormats) {
        const auto to_float = cq::dtype_traits(f.type).to_float;
        if (!to_float) continue;
        std::vector<uint8_t> blk(block_bytes(f.type));
        std::vector<float> got(size_t(f.block));
        std::vector<double> want(size_t(f.block)), wabs(size_t(f.block));
        for (int rep = 0; rep < 20; ++rep) {
            f.randomize(blk.data(), rng);
            to_float(blk.data(), got.data(), f.block);
            f.dequant(blk.data(), want.data(), wabs.data());
            for (int j = 0; j < f.block; ++j)
                ASSERT_NEAR(got[size_t(j)], want[size_t(j)], 1e-6 * wabs[size_t(j)] + 1e-30)
                    << name(f.type) << " element " << j;
        }
        ++tested;
    }
    if (tested == 0) GTEST_SKIP() << "no format codecs registered yet";
}

}  // namespace
