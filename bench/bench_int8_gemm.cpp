// Google Benchmark of the INT8 W8A8 matrix products (gemm_u8s8, and gemm_u7s8 on 7-bit activations) of
// every ISA level this CPU runs, next to the float gemm on the same BERT-base shapes (m = 1024 tokens;
// single-threaded, as the ops call them): GOP/s = 2·m·n·k per second; the u8 activation quantizers
// (GB/s of f32 read); and this core's FP32 / INT8 peaks (peak_*), for fractions of peak from one run.
#include <benchmark/benchmark.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include <cstdint>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "cq/cpu_features.h"
#include "cq/int8_gemm.h"
#include "cq/kernels.h"

namespace {

std::vector<float> random_floats(size_t n, uint32_t seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> d(0.0f, 1.0f);
    std::vector<float> v(n);
    for (auto& x : v) x = d(rng);
    return v;
}

void set_gops(benchmark::State& state, int64_t m, int64_t n, int64_t k) {
    state.counters["GOP/s"] = benchmark::Counter(double(state.iterations()) * 2.0 * double(m) * double(n) * double(k) / 1e9,
                                                 benchmark::Counter::kIsRate);
}

// Activations in [0, a_max]: 255 for gemm_u8s8, 127 for gemm_u7s8.
void bench_gemm_u8s8(benchmark::State& state, cq::GemmU8S8Fn gemm, int32_t a_max) {
    const int64_t m = state.range(0), n = state.range(1), k = state.range(2), lda = cq::round_up(k, 4);
    std::mt19937 rng(1);
    std::vector<uint8_t> a(size_t(m * lda));
    std::vector<int8_t> w(size_t(n * k)), packed(size_t(cq::packed_s8_bytes(n, k)));
    for (auto& x : a) x = uint8_t(rng() % uint32_t(a_max + 1));
    for (auto& x : w) x = int8_t(rng());
    cq::pack_s8_panels(w.data(), n, k, k, packed.data());
    std::vector<int32_t> w_sums(static_cast<size_t>(n)), a_zp(static_cast<size_t>(m), (a_max + 1) / 2);
    cq::s8_row_sums(w.data(), n, k, k, w_sums.data());
    std::vector<float> w_scale(size_t(n), 0.01f), bias(size_t(n), 0.5f), a_scale(size_t(m), 0.02f), c(size_t(m * n));
    for (auto _ : state) {
        gemm(m, n, k, a.data(), lda, a_scale.data(), a_zp.data(), 1, packed.data(), w_sums.data(), w_scale.data(),
             bias.data(), c.data(), n);
        benchmark::ClobberMemory();
    }
    set_gops(state, m, n, k);
}

void bench_gemm_f32(benchmark::State& state, cq::GemmF32Fn fn) {
    const int64_t m = state.range(0), n = state.range(1), k = state.range(2);
    const auto a = random_floats(size_t(m * k), 1), b = random_floats(size_t(n * k), 2);
    std::vector<float> c(size_t(m * n));
    for (auto _ : state) {
        fn(m, n, k, a.data(), k, b.data(), k, c.data(), n);
        benchmark::ClobberMemory();
    }
    set_gops(state, m, n, k);
}

void bench_quantize_dynamic(benchmark::State& state, cq::QuantizeRowsU8DynamicFn fn) {
    const int64_t m = state.range(0), k = state.range(1);
    const auto x = random_floats(size_t(m * k), 3);
    std::vector<uint8_t> q(size_t(m * k));
    std::vector<float> scale(static_cast<size_t>(m));
    std::vector<int32_t> zp(static_cast<size_t>(m));
    for (auto _ : state) {
        fn(x.data(), m, k, k, cq::kU8QMax, q.data(), k, scale.data(), zp.data());
        benchmark::ClobberMemory();
    }
    state.counters["GB/s_in"] = benchmark::Counter(double(state.iterations()) * 4.0 * double(m * k) / 1e9, benchmark::Counter::kIsRate);
}

#if defined(__x86_64__)
// This core's peaks, measured in the same run as the kernels so a GEMM's fraction of peak is read off
// one table: independent accumulator chains of the inner-loop instructions (12 FP32, 8 INT8), no memory
// traffic.
// FP32: vfmadd231ps ymm (16 FLOP each). INT8 without VNNI: the exact 7-bit triple of gemm_u7s8
// (vpmaddubsw + vpmaddwd with ones + vpaddd: 32 multiply-adds = 64 OP). With VNNI: vpdpbusd zmm (128 OP).
constexpr int kChains = 12;
__attribute__((target("avx2,fma"))) void peak_fp32_avx2(benchmark::State& state) {
    __m256 acc[kChains];
    for (int i = 0; i < kChains; ++i) acc[i] = _mm256_set1_ps(float(i));
    const __m256 b = _mm256_set1_ps(1.0000001f), c = _mm256_set1_ps(1e-7f);
    const int64_t iters = 1 << 20;
    for (auto _ : state) {
        for (int64_t k = 0; k < iters; ++k)
            for (int i = 0; i < kChains; ++i) acc[i] = _mm256_fmadd_ps(acc[i], b, c);
        for (int i = 0; i < kChains; ++i) benchmark::DoNotOptimize(acc[i]);
    }
    state.counters["GOP/s"] = benchmark::Counter(double(state.iterations()) * double(iters) * kChains * 16, benchmark::Counter::kIsRate);
}
// Written in assembly: from intrinsics GCC either hoists the loop-invariant multiplies (the probe then
// times vpaddd alone) or keeps the accumulators in memory. 8 independent accumulators (ymm0..7), each
// fed by vpmaddubsw + vpmaddwd(ones) from 2 activation × 2 weight registers: a GEMM's register tile.
__attribute__((target("avx2"))) void peak_int8_u7s8_avx2(benchmark::State& state) {
    const int64_t iters = 1 << 20;
    for (auto _ : state) {
        int64_t n = iters;
        asm volatile(
                "vpxor %%ymm0, %%ymm0, %%ymm0\n\t"
                "vmovdqa %%ymm0, %%ymm1\n\tvmovdqa %%ymm0, %%ymm2\n\tvmovdqa %%ymm0, %%ymm3\n\t"
                "vmovdqa %%ymm0, %%ymm4\n\tvmovdqa %%ymm0, %%ymm5\n\tvmovdqa %%ymm0, %%ymm6\n\tvmovdqa %%ymm0, %%ymm7\n\t"
                "vpcmpeqw %%ymm11, %%ymm11, %%ymm11\n\tvpsrlw $15, %%ymm11, %%ymm11\n\t"  // ones
                "vpaddw %%ymm11, %%ymm11, %%ymm12\n\tvpaddw %%ymm12, %%ymm11, %%ymm13\n\t"
                "vpsllw $3, %%ymm11, %%ymm14\n\tvpsllw $2, %%ymm11, %%ymm15\n\t"
                "1:\n\t"
                "vpmaddubsw %%ymm14, %%ymm12, %%ymm8\n\t"
                "vpmaddwd %%ymm11, %%ymm8, %%ymm8\n\t"
                "vpaddd %%ymm8, %%ymm0, %%ymm0\n\t"
                "vpmaddubsw %%ymm15, %%ymm12, %%ymm9\n\t"
                "vpmaddwd %%ymm11, %%ymm9, %%ymm9\n\t"
                "vpaddd %%ymm9, %%ymm1, %%ymm1\n\t"
                "vpmaddubsw %%ymm14, %%ymm13, %%ymm10\n\t"
                "vpmaddwd %%ymm11, %%ymm10, %%ymm10\n\t"
                "vpaddd %%ymm10, %%ymm2, %%ymm2\n\t"
                "vpmaddubsw %%ymm15, %%ymm13, %%ymm8\n\t"
                "vpmaddwd %%ymm11, %%ymm8, %%ymm8\n\t"
                "vpaddd %%ymm8, %%ymm3, %%ymm3\n\t"
                "vpmaddubsw %%ymm14, %%ymm12, %%ymm9\n\t"
                "vpmaddwd %%ymm11, %%ymm9, %%ymm9\n\t"
                "vpaddd %%ymm9, %%ymm4, %%ymm4\n\t"
                "vpmaddubsw %%ymm15, %%ymm12, %%ymm10\n\t"
                "vpmaddwd %%ymm11, %%ymm10, %%ymm10\n\t"
                "vpaddd %%ymm10, %%ymm5, %%ymm5\n\t"
                "vpmaddubsw %%ymm14, %%ymm13, %%ymm8\n\t"
                "vpmaddwd %%ymm11, %%ymm8, %%ymm8\n\t"
                "vpaddd %%ymm8, %%ymm6, %%ymm6\n\t"
                "vpmaddubsw %%ymm15, %%ymm13, %%ymm9\n\t"
                "vpmaddwd %%ymm11, %%ymm9, %%ymm9\n\t"
                "vpaddd %%ymm9, %%ymm7, %%ymm7\n\t"
                "dec %0\n\t"
                "jnz 1b\n\t"
                : "+r"(n)
                :
                : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11",
                  "xmm12", "xmm13", "xmm14", "xmm15", "cc");
    }
    state.counters["GOP/s"] = benchmark::Counter(double(state.iterations()) * double(iters) * 8 * 64, benchmark::Counter::kIsRate);
}
__attribute__((target("avx512f,avx512bw,avx512vnni"))) void peak_int8_vnni_avx512(benchmark::State& state) {
    __m512i acc[kChains];
    for (int i = 0; i < kChains; ++i) acc[i] = _mm512_set1_epi32(i);
    const __m512i a = _mm512_set1_epi8(3), w = _mm512_set1_epi8(-5);
    const int64_t iters = 1 << 20;
    for (auto _ : state) {
        for (int64_t k = 0; k < iters; ++k)
            for (int i = 0; i < kChains; ++i) acc[i] = _mm512_dpbusd_epi32(acc[i], a, w);
        for (int i = 0; i < kChains; ++i) benchmark::DoNotOptimize(acc[i]);
    }
    state.counters["GOP/s"] = benchmark::Counter(double(state.iterations()) * double(iters) * kChains * 128, benchmark::Counter::kIsRate);
}

void register_peaks() {
    if (cq::cpu_supports(cq::IsaLevel::avx2)) {
        benchmark::RegisterBenchmark("peak_fp32_fma_avx2", peak_fp32_avx2)->Unit(benchmark::kMillisecond);
        benchmark::RegisterBenchmark("peak_int8_u7s8_avx2", peak_int8_u7s8_avx2)->Unit(benchmark::kMillisecond);
    }
    if (cq::cpu_supports(cq::IsaLevel::avx512_vnni))
        benchmark::RegisterBenchmark("peak_int8_vpdpbusd_avx512", peak_int8_vnni_avx512)->Unit(benchmark::kMillisecond);
}
#else
void register_peaks() {}
#endif

// BERT-base at 1024 tokens: attention projections, FFN up, FFN down. The scalar reference gets the first only.
void bert_args(benchmark::internal::Benchmark* b, bool reference) {
    b->ArgNames({"m", "n", "k"})->Unit(benchmark::kMillisecond);
    b->Args({1024, 768, 768});
    if (reference) return;
    b->Args({1024, 3072, 768});
    b->Args({1024, 768, 3072});
}

void register_all() {
    std::set<std::string> seen;
    auto first_time = [&](const std::string& name) { return seen.insert(name).second; };
    for (cq::IsaLevel level : cq::supported_isa_levels()) {
        const cq::KernelTable t = cq::make_kernel_table(level);
        const bool reference = level == cq::IsaLevel::ref;
        if (first_time(t.gemm_u8s8.name))
            bert_args(benchmark::RegisterBenchmark(t.gemm_u8s8.name, bench_gemm_u8s8, t.gemm_u8s8.fn, cq::kU8QMax), reference);
        if (first_time(t.gemm_u7s8.name))  // a level that reuses its u8s8 kernel is measured above
            bert_args(benchmark::RegisterBenchmark(t.gemm_u7s8.name, bench_gemm_u8s8, t.gemm_u7s8.fn, cq::kU7QMax), reference);
        if (first_time(t.quantize_rows_u8_dynamic.name))
            benchmark::RegisterBenchmark(t.quantize_rows_u8_dynamic.name, bench_quantize_dynamic, t.quantize_rows_u8_dynamic.fn)
                ->Args({1024, 768});
        if (first_time(t.gemm_f32.name)) bert_args(benchmark::RegisterBenchmark(t.gemm_f32.name, bench_gemm_f32, t.gemm_f32.fn), reference);
    }
}

}  // namespace

int main(int argc, char** argv) {
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
    (void)cq::kernel_table();  // sets OpenBLAS to one thread: every kernel here runs on one core
    benchmark::AddCustomContext("cq_detected_isa", std::string(cq::isa_level_name(cq::detected_isa_level())));
    benchmark::AddCustomContext("cpu", cq::cpu_features().brand);
    register_peaks();
    register_all();
    benchmark::RunSpecifiedBenchmarks();
}
