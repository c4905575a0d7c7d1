// Google Benchmark of the INT8 W8A8 matrix products (gemm_u8s8, and gemm_u7s8 on 7-bit activations) of
// every ISA level this CPU runs, next to the float gemm on the same BERT-base shapes (m = 1024 tokens;
// single-threaded, as the ops call them): GOP/s = 2·m·n·k per second and %peak, its share of this core's
// INT8 (or, for the float gemm, FP32) peak measured at start-up (bench/peak_probes.h, printed in the
// context); the u8 activation quantizers in GB/s of f32 read.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "cq/cpu_features.h"
#include "cq/int8_gemm.h"
#include "cq/kernels.h"
#include "peak_probes.h"

namespace {

std::vector<float> random_floats(size_t n, uint32_t seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> d(0.0f, 1.0f);
    std::vector<float> v(n);
    for (auto& x : v) x = d(rng);
    return v;
}

cq::bench::CorePeaks g_peaks;  // measured once in main, before the benchmarks

// GOP/s and its percentage of `peak` (GOP/s; 0: unknown).
void set_gops(benchmark::State& state, int64_t m, int64_t n, int64_t k, double peak) {
    const double gop = double(state.iterations()) * 2.0 * double(m) * double(n) * double(k) / 1e9;
    state.counters["GOP/s"] = benchmark::Counter(gop, benchmark::Counter::kIsRate);
    if (peak > 0) state.counters["%peak"] = benchmark::Counter(gop * 100.0 / peak, benchmark::Counter::kIsRate);
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
    set_gops(state, m, n, k, g_peaks.int8_gops);
}

void bench_gemm_f32(benchmark::State& state, cq::GemmF32Fn fn) {
    const int64_t m = state.range(0), n = state.range(1), k = state.range(2);
    const auto a = random_floats(size_t(m * k), 1), b = random_floats(size_t(n * k), 2);
    std::vector<float> c(size_t(m * n));
    for (auto _ : state) {
        fn(m, n, k, a.data(), k, b.data(), k, c.data(), n);
        benchmark::ClobberMemory();
    }
    set_gops(state, m, n, k, g_peaks.fp32_gflops);
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


// BERT-base at 1024 tokens: attention projections, FFN up, FFN down; then BERT-tiny's (hidden 128, FFN 512), whose
// short k makes the per-tile epilogue count. The scalar reference gets the first only.
void bert_args(benchmark::internal::Benchmark* b, bool reference) {
    b->ArgNames({"m", "n", "k"})->Unit(benchmark::kMillisecond);
    b->Args({1024, 768, 768});
    if (reference) return;
    b->Args({1024, 3072, 768});
    b->Args({1024, 768, 3072});
    b->Args({1024, 128, 128});
    b->Args({1024, 512, 128});
    b->Args({1024, 128, 512});
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
    g_peaks = cq::bench::measure_core_peaks();
    benchmark::AddCustomContext("peak_int8_GOPs", std::to_string(g_peaks.int8_gops) + " (" + g_peaks.int8_probe + ", one core)");
    benchmark::AddCustomContext("peak_fp32_GFLOPs", std::to_string(g_peaks.fp32_gflops) + " (" + g_peaks.fp32_probe + ", one core)");
    register_all();
    benchmark::RunSpecifiedBenchmarks();
}
