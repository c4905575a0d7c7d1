// Google Benchmark of the quantized matrix products and activation quantizers of every ISA level this
// CPU runs, next to the float gemv/gemm on the same shapes (single-threaded, as the ops call them):
// m = 1 (decode) reports GB/s of weights read, m = 128 / 512 (prompt) GOP/s (2·m·n·k); %peak_bw and
// %peak_op are their shares of this core's read bandwidth and INT8 (FP32 for the float kernels) peak,
// measured at start-up (bench/peak_probes.h, printed in the context).
#include <benchmark/benchmark.h>

#include <cstdint>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "cq/cpu_features.h"
#include "cq/dtype.h"
#include "cq/kernels.h"
#include "peak_probes.h"

namespace {

using cq::DType;

cq::bench::CorePeaks g_peaks;  // measured once in main, before the benchmarks

// GB/s of weights, GOP/s, and their shares of the read bandwidth and of `op_peak` (GOP/s).
void set_rates(benchmark::State& state, double weight_bytes, double ops, double op_peak) {
    const double iters = double(state.iterations());
    state.counters["GB/s_w"] = benchmark::Counter(iters * weight_bytes / 1e9, benchmark::Counter::kIsRate);
    state.counters["GOP/s"] = benchmark::Counter(iters * ops / 1e9, benchmark::Counter::kIsRate);
    if (g_peaks.read_gbs > 0)
        state.counters["%peak_bw"] = benchmark::Counter(iters * weight_bytes / 1e9 * 100.0 / g_peaks.read_gbs, benchmark::Counter::kIsRate);
    if (op_peak > 0) state.counters["%peak_op"] = benchmark::Counter(iters * ops / 1e9 * 100.0 / op_peak, benchmark::Counter::kIsRate);
}

constexpr DType kWeightTypes[] = {DType::Q8_0, DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q5_1,
                                  DType::Q2_K, DType::Q3_K, DType::Q4_K, DType::Q5_K, DType::Q6_K};

std::vector<float> random_floats(size_t n, uint32_t seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> d(0.0f, 1.0f);
    std::vector<float> v(n);
    for (auto& x : v) x = d(rng);
    return v;
}

// n rows of k values of `type`: Gaussian floats through the format's codec where one is registered, else
// random bytes below 0x40 (so every f16 scale field is a small finite number).
std::vector<uint8_t> random_weights(DType type, int64_t n, int64_t k) {
    const auto& tr = cq::dtype_traits(type);
    const size_t row_bytes = size_t(k / tr.block_size) * tr.bytes_per_block;
    std::vector<uint8_t> w(row_bytes * size_t(n));
    if (tr.from_float) {
        for (int64_t i = 0; i < n; ++i) {
            const auto x = random_floats(size_t(k), uint32_t(i));
            tr.from_float(x.data(), w.data() + size_t(i) * row_bytes, k);
        }
    } else {
        std::mt19937 rng(1);
        for (auto& b : w) b = uint8_t(rng() & 0x3F);  // small bytes: f16 fields are small normal numbers or 0
    }
    return w;
}

// packed: weights re-laid out in groups of 8 rows as the model loader does (QuantKernels::pack_rows), outside the timed loop.
void bench_gemm_quant(benchmark::State& state, DType type, cq::QuantKernels q, bool packed) {
    const int64_t m = state.range(0), n = state.range(1), k = state.range(2);
    const auto gemm = packed ? q.gemm_packed.fn : q.gemm.fn;
    const auto quantize = q.quantize_act.fn;
    const auto& at = cq::dtype_traits(q.act_type);
    const auto& wt = cq::dtype_traits(type);
    const size_t arb = size_t(k / at.block_size) * at.bytes_per_block;
    size_t wrb = size_t(k / wt.block_size) * wt.bytes_per_block;
    auto w = random_weights(type, n, k);
    if (packed) {
        std::vector<uint8_t> p(q.packed_bytes(n, k));
        q.pack_rows(w.data(), wrb, n, k, p.data());
        w = std::move(p);
        wrb = q.packed_row_bytes(k);  // a packed row's share of its group
    }
    const auto x = random_floats(size_t(m * k), 7);
    std::vector<uint8_t> a(arb * size_t(m));
    for (int64_t t = 0; t < m; ++t) quantize(x.data() + t * k, a.data() + size_t(t) * arb, k);
    std::vector<float> c(size_t(m * n));
    for (auto _ : state) {
        gemm(m, n, k, a.data(), arb, w.data(), wrb, c.data(), n);
        benchmark::ClobberMemory();
    }
    set_rates(state, double(w.size()), 2.0 * double(m) * double(n) * double(k), g_peaks.int8_gops);
}

void bench_quantize(benchmark::State& state, cq::QuantizeRowFn fn, DType act) {
    const int64_t k = state.range(0);
    const auto& at = cq::dtype_traits(act);
    const auto x = random_floats(size_t(k), 3);
    std::vector<uint8_t> y(size_t(k / at.block_size) * at.bytes_per_block);
    for (auto _ : state) {
        fn(x.data(), y.data(), k);
        benchmark::ClobberMemory();
    }
    state.counters["GB/s_in"] = benchmark::Counter(double(state.iterations()) * 4.0 * double(k) / 1e9, benchmark::Counter::kIsRate);
}

void bench_gemv_f32(benchmark::State& state, cq::GemvF32Fn fn) {
    const int64_t n = state.range(1), k = state.range(2);
    const auto w = random_floats(size_t(n * k), 1), x = random_floats(size_t(k), 2);
    std::vector<float> y(static_cast<size_t>(n));
    for (auto _ : state) {
        fn(n, k, w.data(), k, x.data(), y.data());
        benchmark::ClobberMemory();
    }
    set_rates(state, 4.0 * double(n * k), 2.0 * double(n * k), g_peaks.fp32_gflops);
}

void bench_gemm_f32(benchmark::State& state, cq::GemmF32Fn fn) {
    const int64_t m = state.range(0), n = state.range(1), k = state.range(2);
    const auto a = random_floats(size_t(m * k), 1), b = random_floats(size_t(n * k), 2);
    std::vector<float> c(size_t(m * n));
    for (auto _ : state) {
        fn(m, n, k, a.data(), k, b.data(), k, c.data(), n);
        benchmark::ClobberMemory();
    }
    set_rates(state, 4.0 * double(n * k), 2.0 * double(m) * double(n) * double(k), g_peaks.fp32_gflops);
}

// Decode shapes (m = 1): BERT-base / GPT-2 projection and FFN, and a LLaMA-7B projection that no cache holds.
void decode_args(benchmark::internal::Benchmark* b) {
    b->ArgNames({"m", "n", "k"});
    b->Args({1, 768, 768});
    b->Args({1, 3072, 768});
    b->Args({1, 4096, 4096});
}
// Prompt shapes: 128 and 512 tokens through the same projections.
void prompt_args(benchmark::internal::Benchmark* b, bool reference) {
    b->ArgNames({"m", "n", "k"})->Unit(benchmark::kMillisecond);
    b->Args({128, 768, 768});
    if (reference) return;  // the scalar reference takes seconds per call beyond this
    b->Args({512, 768, 768});
    b->Args({128, 3072, 768});
    b->Args({512, 3072, 768});
}

void register_all() {
    std::set<std::string> seen;
    auto first_time = [&](const std::string& name) { return seen.insert(name).second; };
    for (cq::IsaLevel level : cq::supported_isa_levels()) {
        const cq::KernelTable t = cq::make_kernel_table(level);
        const bool reference = level == cq::IsaLevel::ref;
        for (DType act : {DType::Q8_0, DType::Q8_1, DType::Q8_K}) {
            const auto& q = t.quant_kernels(act).quantize_act;
            if (q.fn && first_time(q.name)) benchmark::RegisterBenchmark(q.name, bench_quantize, q.fn, act)->Arg(4096);
        }
        for (DType type : kWeightTypes) {
            const cq::QuantKernels& q = t.quant_kernels(type);
            if (!q.gemm.fn || !q.quantize_act.fn) continue;
            if (first_time(q.gemm.name)) {
                decode_args(benchmark::RegisterBenchmark(q.gemm.name, bench_gemm_quant, type, q, false));
                prompt_args(benchmark::RegisterBenchmark(q.gemm.name, bench_gemm_quant, type, q, false), reference);
            }
            // packed: weights re-laid out as the model loader does (QuantKernels::pack_rows)
            if (q.runs_packed() && first_time(q.gemm_packed.name)) {
                decode_args(benchmark::RegisterBenchmark(q.gemm_packed.name, bench_gemm_quant, type, q, true));
                prompt_args(benchmark::RegisterBenchmark(q.gemm_packed.name, bench_gemm_quant, type, q, true), reference);
            }
        }
        if (first_time(t.gemv_f32.name)) decode_args(benchmark::RegisterBenchmark(t.gemv_f32.name, bench_gemv_f32, t.gemv_f32.fn));
        if (first_time(t.gemm_f32.name))
            prompt_args(benchmark::RegisterBenchmark(t.gemm_f32.name, bench_gemm_f32, t.gemm_f32.fn), reference);
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
    benchmark::AddCustomContext("peak_read_GBs", std::to_string(g_peaks.read_gbs) + " (one core)");
    register_all();
    benchmark::RunSpecifiedBenchmarks();
}
