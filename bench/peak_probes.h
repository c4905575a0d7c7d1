// This machine's compute peaks (FP32 FMA, BF16 dot, INT8 dot) and read bandwidth, measured with
// register-only instruction streams and one streaming sum, so benchmarks can state "% of peak" against
// numbers taken in the same run on the same (possibly loaded) machine. Header-only: each bench includes it.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <thread>
#include <vector>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "cq/cpu_features.h"

namespace cq::bench {

/// One probe: what it measures, its unit ("GFLOP/s", "GOP/s", "GB/s") and a function that runs it for
/// about `seconds` on the calling thread and returns its rate.
struct PeakProbe {
    std::string name;  // e.g. "fp32_fma_zmm"
    std::string what;  // e.g. "vfmadd231ps zmm, 12 independent chains"
    std::string unit;
    std::function<double(double seconds)> run;
};

inline double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Repeats `block` (which performs `ops_per_block` operations) until `seconds` passed; returns ops/s / 1e9.
template <typename Block>
double rate_for(double seconds, double ops_per_block, Block&& block) {
    block();  // warm-up: wakes the vector units to their full width
    int64_t blocks = 0;
    const auto t0 = std::chrono::steady_clock::now();
    double elapsed = 0;
    do {
        block();
        ++blocks;
    } while ((elapsed = seconds_since(t0)) < seconds);
    return double(blocks) * ops_per_block / elapsed / 1e9;
}

#if defined(__x86_64__)
constexpr int kProbeChains = 12;             // independent accumulators: ≥ latency × pipes of every probe
constexpr int64_t kProbeIters = 1 << 16;     // loop trips per timed block

// Each block runs kProbeIters trips over kProbeChains accumulators kept in registers (loaded from and
// stored back to `state`, so the work cannot be optimised away); a probe times repeated blocks.
#define CQ_PEAK_BLOCK(name, isa, vec, setup, step)                                        \
    __attribute__((target(isa))) inline void name(void* state) {                         \
        vec acc[kProbeChains];                                                            \
        std::memcpy(acc, state, sizeof acc);                                              \
        setup;                                                                            \
        for (int64_t k = 0; k < kProbeIters; ++k)                                         \
            for (int i = 0; i < kProbeChains; ++i) acc[i] = step;                         \
        std::memcpy(state, acc, sizeof acc);                                              \
    }
CQ_PEAK_BLOCK(block_fp32_fma_ymm, "avx2,fma", __m256,
              const __m256 b = _mm256_set1_ps(1.0000001f); const __m256 c = _mm256_set1_ps(1e-7f),
              _mm256_fmadd_ps(acc[i], b, c))
CQ_PEAK_BLOCK(block_fp32_fma_zmm, "avx512f", __m512,
              const __m512 b = _mm512_set1_ps(1.0000001f); const __m512 c = _mm512_set1_ps(1e-7f),
              _mm512_fmadd_ps(acc[i], b, c))
// vdpbf16ps zmm: 16 lanes × 2 bf16 products, each a multiply and an add (64 FLOP).
CQ_PEAK_BLOCK(block_bf16_dot_zmm, "avx512f,avx512bf16", __m512,
              const __m512bh b = (__m512bh)_mm512_set1_epi16(0x3f80); const __m512bh c = (__m512bh)_mm512_set1_epi16(0x3400),
              _mm512_dpbf16_ps(acc[i], b, c))
// vpdpbusd: 4 u8·s8 products summed into each 32-bit lane (2 OP per product).
CQ_PEAK_BLOCK(block_int8_vpdpbusd_zmm, "avx512f,avx512bw,avx512vnni", __m512i,
              const __m512i a = _mm512_set1_epi8(3); const __m512i w = _mm512_set1_epi8(-5),
              _mm512_dpbusd_epi32(acc[i], a, w))
CQ_PEAK_BLOCK(block_int8_vpdpbusd_ymm, "avx512f,avx512vl,avx512bw,avx512vnni", __m256i, const __m256i a = _mm256_set1_epi8(3); const __m256i w = _mm256_set1_epi8(-5),
              _mm256_dpbusd_epi32(acc[i], a, w))
#undef CQ_PEAK_BLOCK

// Times `block` on a zeroed 64-byte-per-chain state; ops_per_trip: operations of one trip over all chains.
inline double probe_block(double seconds, void (*block)(void*), double ops_per_trip) {
    alignas(64) unsigned char state[kProbeChains * 64] = {};
    return rate_for(seconds, double(kProbeIters) * ops_per_trip, [&] {
        block(state);
        asm volatile("" : : "r"(state) : "memory");
    });
}
inline double probe_fp32_fma_ymm(double s) { return probe_block(s, block_fp32_fma_ymm, kProbeChains * 16); }
inline double probe_fp32_fma_zmm(double s) { return probe_block(s, block_fp32_fma_zmm, kProbeChains * 32); }
inline double probe_bf16_dot_zmm(double s) { return probe_block(s, block_bf16_dot_zmm, kProbeChains * 64); }
inline double probe_int8_vpdpbusd_zmm(double s) { return probe_block(s, block_int8_vpdpbusd_zmm, kProbeChains * 128); }
inline double probe_int8_vpdpbusd_ymm(double s) { return probe_block(s, block_int8_vpdpbusd_ymm, kProbeChains * 64); }
// The AVX2 INT8 step (vpmaddubsw, vpmaddwd with ones, vpaddd: 32 u8·s8 products = 64 OP per ymm), in
// assembly because from intrinsics GCC hoists the loop-invariant multiplies. 8 accumulators (ymm0..7),
// each fed from 2 activation × 2 weight registers, as in a GEMM's register tile.
inline double probe_int8_vpmaddubsw_ymm(double seconds) {
    return rate_for(seconds, double(kProbeIters) * 8 * 64, [] {
        int64_t n = kProbeIters;
        asm volatile(
                "vpxor %%ymm0, %%ymm0, %%ymm0\n\t"
                "vmovdqa %%ymm0, %%ymm1\n\tvmovdqa %%ymm0, %%ymm2\n\tvmovdqa %%ymm0, %%ymm3\n\t"
                "vmovdqa %%ymm0, %%ymm4\n\tvmovdqa %%ymm0, %%ymm5\n\tvmovdqa %%ymm0, %%ymm6\n\tvmovdqa %%ymm0, %%ymm7\n\t"
                "vpcmpeqw %%ymm11, %%ymm11, %%ymm11\n\tvpsrlw $15, %%ymm11, %%ymm11\n\t"  // ones
                "vpaddw %%ymm11, %%ymm11, %%ymm12\n\tvpaddw %%ymm12, %%ymm11, %%ymm13\n\t"
                "vpsllw $3, %%ymm11, %%ymm14\n\tvpsllw $2, %%ymm11, %%ymm15\n\t"
                "1:\n\t"
                "vpmaddubsw %%ymm14, %%ymm12, %%ymm8\n\tvpmaddwd %%ymm11, %%ymm8, %%ymm8\n\tvpaddd %%ymm8, %%ymm0, %%ymm0\n\t"
                "vpmaddubsw %%ymm15, %%ymm12, %%ymm9\n\tvpmaddwd %%ymm11, %%ymm9, %%ymm9\n\tvpaddd %%ymm9, %%ymm1, %%ymm1\n\t"
                "vpmaddubsw %%ymm14, %%ymm13, %%ymm10\n\tvpmaddwd %%ymm11, %%ymm10, %%ymm10\n\tvpaddd %%ymm10, %%ymm2, %%ymm2\n\t"
                "vpmaddubsw %%ymm15, %%ymm13, %%ymm8\n\tvpmaddwd %%ymm11, %%ymm8, %%ymm8\n\tvpaddd %%ymm8, %%ymm3, %%ymm3\n\t"
                "vpmaddubsw %%ymm14, %%ymm12, %%ymm9\n\tvpmaddwd %%ymm11, %%ymm9, %%ymm9\n\tvpaddd %%ymm9, %%ymm4, %%ymm4\n\t"
                "vpmaddubsw %%ymm15, %%ymm12, %%ymm10\n\tvpmaddwd %%ymm11, %%ymm10, %%ymm10\n\tvpaddd %%ymm10, %%ymm5, %%ymm5\n\t"
                "vpmaddubsw %%ymm14, %%ymm13, %%ymm8\n\tvpmaddwd %%ymm11, %%ymm8, %%ymm8\n\tvpaddd %%ymm8, %%ymm6, %%ymm6\n\t"
                "vpmaddubsw %%ymm15, %%ymm13, %%ymm9\n\tvpmaddwd %%ymm11, %%ymm9, %%ymm9\n\tvpaddd %%ymm9, %%ymm7, %%ymm7\n\t"
                "dec %0\n\t"
                "jnz 1b\n\t"
                : "+r"(n)
                :
                : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11",
                  "xmm12", "xmm13", "xmm14", "xmm15", "cc");
    });
}
#endif

// Streaming read of a buffer larger than any cache (4 independent sums so the adds do not bound it).
inline double probe_read_bandwidth(double seconds, size_t bytes) {
    const size_t n = bytes / sizeof(uint64_t);
    std::vector<uint64_t> buf(n);
    for (size_t i = 0; i < n; ++i) buf[i] = i;  // touch every page before timing
    return rate_for(seconds, double(n * sizeof(uint64_t)), [&] {
        uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
        for (size_t i = 0; i + 4 <= n; i += 4) {
            s0 += buf[i];
            s1 += buf[i + 1];
            s2 += buf[i + 2];
            s3 += buf[i + 3];
        }
        asm volatile("" : : "r"(s0 + s1 + s2 + s3));
    });
}

/// The probes this CPU can run: FP32 FMA (ymm, and zmm with AVX-512), BF16 dot (AVX-512 BF16), INT8
/// dot (the AVX2 vpmaddubsw step; vpdpbusd ymm/zmm with VNNI), and read bandwidth over `bw_bytes`.
inline std::vector<PeakProbe> peak_probes(size_t bw_bytes = size_t(1) << 29) {
    std::vector<PeakProbe> out;
#if defined(__x86_64__)
    const CpuFeatures& f = cpu_features();
    if (cpu_supports(IsaLevel::avx2)) {
        out.push_back({"fp32_fma_ymm", "vfmadd231ps ymm (16 FLOP)", "GFLOP/s", probe_fp32_fma_ymm});
        out.push_back({"int8_vpmaddubsw_ymm", "vpmaddubsw+vpmaddwd+vpaddd ymm (64 OP)", "GOP/s", probe_int8_vpmaddubsw_ymm});
    }
    if (cpu_supports(IsaLevel::avx512)) out.push_back({"fp32_fma_zmm", "vfmadd231ps zmm (32 FLOP)", "GFLOP/s", probe_fp32_fma_zmm});
    if (cpu_supports(IsaLevel::avx512) && f.avx512_bf16)
        out.push_back({"bf16_dot_zmm", "vdpbf16ps zmm (64 FLOP)", "GFLOP/s", probe_bf16_dot_zmm});
    if (cpu_supports(IsaLevel::avx512_vnni)) {
        out.push_back({"int8_vpdpbusd_ymm", "vpdpbusd ymm (64 OP)", "GOP/s", probe_int8_vpdpbusd_ymm});
        out.push_back({"int8_vpdpbusd_zmm", "vpdpbusd zmm (128 OP)", "GOP/s", probe_int8_vpdpbusd_zmm});
    }
#endif
    out.push_back({"read_bandwidth", "streaming sum over " + std::to_string(bw_bytes >> 20) + " MiB", "GB/s",
                   [bw_bytes](double s) { return probe_read_bandwidth(s, bw_bytes); }});
    return out;
}

/// Runs `probe` on `threads` threads at once and returns the sum of their rates (all cores' peak).
inline double run_on_threads(const PeakProbe& probe, int threads, double seconds) {
    if (threads <= 1) return probe.run(seconds);
    std::vector<double> rates(size_t(threads), 0.0);
    std::vector<std::thread> pool;
    for (int i = 0; i < threads; ++i) pool.emplace_back([&, i] { rates[size_t(i)] = probe.run(seconds); });
    for (auto& t : pool) t.join();
    double sum = 0;
    for (double r : rates) sum += r;
    return sum;
}

/// One core's peaks, for "% of peak": the best FP32 rate, the best INT8 rate and read bandwidth
/// (0 where the probe does not exist on this CPU).
struct CorePeaks {
    double fp32_gflops = 0, bf16_gflops = 0, int8_gops = 0, int8_vpmaddubsw_gops = 0, read_gbs = 0;
    std::string int8_probe, fp32_probe;
};
inline CorePeaks measure_core_peaks(double seconds = 0.2) {
    CorePeaks p;
    for (const PeakProbe& probe : peak_probes(size_t(1) << 28)) {
        const double r = probe.run(seconds);
        if (probe.name.rfind("fp32_", 0) == 0 && r > p.fp32_gflops) p.fp32_gflops = r, p.fp32_probe = probe.name;
        if (probe.name.rfind("bf16_", 0) == 0) p.bf16_gflops = std::max(p.bf16_gflops, r);
        if (probe.name.rfind("int8_", 0) == 0 && r > p.int8_gops) p.int8_gops = r, p.int8_probe = probe.name;
        if (probe.name == "int8_vpmaddubsw_ymm") p.int8_vpmaddubsw_gops = r;
        if (probe.name == "read_bandwidth") p.read_gbs = r;
    }
    return p;
}

}  // namespace cq::bench
