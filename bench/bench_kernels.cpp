// Google Benchmark of every distinct kernel the tables of this CPU's ISA levels use: conversions
// (bytes/s), the u8·s8 dot (bytes/s, op/s) and float GEMM (FLOP/s) on shapes from BERT-base and LLaMA.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <random>
#include <set>
#include <string>
#include <type_traits>
#include <vector>

#include "cq/cpu_features.h"
#include "cq/kernels.h"
#include "kernels/kernel_decls.h"

namespace {

constexpr int64_t kConvertN = 4096 * 4096 / 16;  // 1 Mi values: a 4096² weight matrix in 16 slices

template <typename T>
std::vector<T> random_values(size_t n, uint32_t seed, T lo, T hi) {
    std::mt19937 rng(seed);
    std::vector<T> v(n);
    if constexpr (std::is_floating_point_v<T>) {
        std::uniform_real_distribution<T> d(lo, hi);
        for (auto& x : v) x = d(rng);
    } else {
        std::uniform_int_distribution<int> d(lo, hi);
        for (auto& x : v) x = T(d(rng));
    }
    return v;
}

// f16 or bf16 bit patterns of values uniform in [-4, 4].
std::vector<uint16_t> half_patterns(size_t n, bool bf16) {
    const std::vector<float> f = random_values<float>(n, 3, -4.0f, 4.0f);
    std::vector<uint16_t> h(n);
    for (size_t i = 0; i < n; ++i)
        h[i] = bf16 ? cq::kernels::f32_to_bf16_scalar(f[i]) : cq::kernels::f32_to_f16_scalar(f[i]);
    return h;
}

template <typename In, typename Out>
void bench_convert(benchmark::State& state, void (*fn)(const In*, Out*, int64_t), std::vector<In> x) {
    std::vector<Out> y(x.size());
    for (auto _ : state) {
        fn(x.data(), y.data(), int64_t(x.size()));
        benchmark::ClobberMemory();
    }
    state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(x.size() * (sizeof(In) + sizeof(Out))));
    state.counters["values/s"] = benchmark::Counter(double(state.iterations()) * double(x.size()), benchmark::Counter::kIsRate);
}

void bench_dot(benchmark::State& state, cq::DotU8S8Fn fn) {
    const int64_t n = state.range(0);
    const auto a = random_values<uint8_t>(size_t(n), 1, 0, 255);
    const auto b = random_values<int8_t>(size_t(n), 2, -128, 127);
    for (auto _ : state) benchmark::DoNotOptimize(fn(a.data(), b.data(), n));
    state.SetBytesProcessed(int64_t(state.iterations()) * 2 * n);
    state.counters["OP/s"] = benchmark::Counter(double(state.iterations()) * 2.0 * double(n), benchmark::Counter::kIsRate);
}

void bench_gemm(benchmark::State& state, cq::GemmF32Fn fn) {
    const int64_t m = state.range(0), n = state.range(1), k = state.range(2);
    const auto a = random_values<float>(size_t(m * k), 1, -1.0f, 1.0f);  // activations [m, k]
    const auto b = random_values<float>(size_t(n * k), 2, -1.0f, 1.0f);  // weights [n, k]
    std::vector<float> c(size_t(m * n));
    for (auto _ : state) {
        fn(m, n, k, a.data(), k, b.data(), k, c.data(), n);
        benchmark::ClobberMemory();
    }
    state.counters["FLOP/s"] = benchmark::Counter(double(state.iterations()) * 2.0 * double(m) * double(n) * double(k),
                                                  benchmark::Counter::kIsRate);
    state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(sizeof(float)) * (m * k + n * k + m * n));
}

// Registers each distinct kernel once, named after it ("gemm_f32__openblas/m:1024/n:768/k:768"). Rates use
// wall time, since OpenBLAS runs threads the main thread's CPU time does not count.
void register_all() {
    std::set<std::string> seen;
    auto first_time = [&](const char* name) { return seen.insert(name).second; };
    for (cq::IsaLevel level : cq::supported_isa_levels()) {
        const cq::KernelTable t = cq::make_kernel_table(level);
        if (first_time(t.convert_f16_f32.name))
            benchmark::RegisterBenchmark(t.convert_f16_f32.name, bench_convert<uint16_t, float>, t.convert_f16_f32.fn,
                                         half_patterns(kConvertN, false))->UseRealTime();
        if (first_time(t.convert_f32_f16.name))
            benchmark::RegisterBenchmark(t.convert_f32_f16.name, bench_convert<float, uint16_t>, t.convert_f32_f16.fn,
                                         random_values<float>(kConvertN, 4, -4.0f, 4.0f))->UseRealTime();
        if (first_time(t.convert_bf16_f32.name))
            benchmark::RegisterBenchmark(t.convert_bf16_f32.name, bench_convert<uint16_t, float>, t.convert_bf16_f32.fn,
                                         half_patterns(kConvertN, true))->UseRealTime();
        if (first_time(t.convert_f32_bf16.name))
            benchmark::RegisterBenchmark(t.convert_f32_bf16.name, bench_convert<float, uint16_t>, t.convert_f32_bf16.fn,
                                         random_values<float>(kConvertN, 5, -4.0f, 4.0f))->UseRealTime();
        if (first_time(t.dot_u8_s8.name))
            benchmark::RegisterBenchmark(t.dot_u8_s8.name, bench_dot, t.dot_u8_s8.fn)->Arg(768)->Arg(3072)->UseRealTime();  // BERT/LLaMA rows
        if (first_time(t.gemm_f32.name)) {
            auto* b = benchmark::RegisterBenchmark(t.gemm_f32.name, bench_gemm, t.gemm_f32.fn);
            b->ArgNames({"m", "n", "k"})->Unit(benchmark::kMillisecond)->UseRealTime();
            b->Args({128, 768, 768});  // BERT-base attention projection, 128 tokens
            if (t.gemm_f32.isa != cq::IsaLevel::ref) {  // seconds per call at the reference
                b->Args({1024, 768, 768});   // BERT-base attention projection, 1024 tokens
                b->Args({1024, 3072, 768});  // BERT-base FFN up
            }
            b->Args({1, 4096, 4096});   // LLaMA-7B attention projection, one decode step
            b->Args({1, 11008, 4096});  // LLaMA-7B FFN up, one decode step
        }
    }
}

}  // namespace

int main(int argc, char** argv) {
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
    benchmark::AddCustomContext("cq_detected_isa", std::string(cq::isa_level_name(cq::detected_isa_level())));
    benchmark::AddCustomContext("cpu", cq::cpu_features().brand);
    register_all();
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
