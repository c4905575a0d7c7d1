// GPTQ on LLaMA-7B-shaped layers (issue 14's speed goal: ≤ 5 s for a layer on 2 cores): the Hessian
// accumulation (XᵀX over seqs × tokens random-normal activations), the factorization of the damped H, and the
// whole gptq_quantize call (factorization + sweep), timed apart; plain weighted rounding's error too.
// Usage: bench_gptq [--threads N] [--type q4_K] [--seqs 128] [--tokens 512] [--seqs-per-call 4]
//                   [--shapes 11008x4096,4096x11008] [--act-order] [--json]
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "cq/cpu_features.h"
#include "cq/dtype.h"
#include "cq/gptq.h"
#include "cq/kernels.h"
#include "cq/thread_pool.h"
#include "cq/weighted_quant.h"
#include "quant/gptq_linalg.h"

namespace {

double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

// CPU seconds of every thread of the process: on a machine other jobs share, CPU time / threads estimates the wall
// time the same work takes on idle cores (wall time alone includes the time other jobs held the cores).
double cpu_now() {
    rusage u{};
    getrusage(RUSAGE_SELF, &u);
    return double(u.ru_utime.tv_sec + u.ru_stime.tv_sec) + 1e-6 * double(u.ru_utime.tv_usec + u.ru_stime.tv_usec);
}

// Standard normals by Box-Muller on a splitmix64 stream: the activations' values do not change the timings.
void fill_normal(float* x, int64_t n, uint64_t seed) {
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
    auto next = [&s] {
        uint64_t z = (s += 0x9E3779B97F4A7C15ull);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        return z ^ (z >> 31);
    };
    for (int64_t i = 0; i < n; i += 2) {
        const double u1 = (double(next() >> 11) + 1.0) * 0x1.0p-53, u2 = double(next() >> 11) * 0x1.0p-53;
        const double r = std::sqrt(-2.0 * std::log(u1));
        x[i] = float(r * std::cos(2 * M_PI * u2));
        if (i + 1 < n) x[i + 1] = float(r * std::sin(2 * M_PI * u2));
    }
}

struct Row {
    int64_t n_out, n_in, tokens;
    double hessian_s, factor_s, gptq_s, gptq_rtn_s, rtn_s, weighted_error, rtn_error;
    double hessian_cpu, factor_cpu, gptq_cpu, rtn_cpu;
};

}  // namespace

int main(int argc, char** argv) {
    int threads = int(std::max(1u, std::thread::hardware_concurrency()));
    std::string type_name = "q4_K", shapes = "11008x4096,4096x11008";
    int64_t seqs = 128, tokens = 512, batch = 4;
    bool json = false, act_order = false;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "--threads" && i + 1 < argc) threads = std::max(1, std::atoi(argv[++i]));
        else if (a == "--type" && i + 1 < argc) type_name = argv[++i];
        else if (a == "--seqs" && i + 1 < argc) seqs = std::max(1, std::atoi(argv[++i]));
        else if (a == "--tokens" && i + 1 < argc) tokens = std::max(1, std::atoi(argv[++i]));
        else if (a == "--seqs-per-call" && i + 1 < argc) batch = std::max(1, std::atoi(argv[++i]));
        else if (a == "--shapes" && i + 1 < argc) shapes = argv[++i];
        else if (a == "--act-order") act_order = true;
        else if (a == "--json") json = true;
        else {
            std::fprintf(stderr, "usage: bench_gptq [--threads N] [--type q4_K] [--seqs 128] [--tokens 512] [--seqs-per-call 4] [--shapes 11008x4096,...] [--act-order] [--json]\n");
            return 2;
        }
    }
    const auto type = cq::dtype_from_name(type_name);
    if (!type || !cq::gptq_supports(*type)) {
        std::fprintf(stderr, "bench_gptq: type '%s' is not one GPTQ supports\n", type_name.c_str());
        return 2;
    }
    cq::ThreadPool pool(threads);
    std::vector<Row> rows;
    for (size_t pos = 0; pos < shapes.size();) {
        const size_t comma = std::min(shapes.find(',', pos), shapes.size());
        const std::string shape = shapes.substr(pos, comma - pos);
        pos = comma + 1;
        Row r{};
        if (std::sscanf(shape.c_str(), "%ldx%ld", &r.n_out, &r.n_in) != 2) {
            std::fprintf(stderr, "bench_gptq: shape '%s' is not OUTxIN\n", shape.c_str());
            return 2;
        }
        const int64_t n = r.n_in;
        r.tokens = seqs * tokens;
        std::vector<double> H(size_t(n * n), 0.0);
        // The calibration driver hands over a few sequences per call: each call adds its products to H in double,
        // which costs a pass over H, so fewer, larger calls are cheaper.
        const int64_t seqs_per_call = std::min<int64_t>(batch, seqs);
        std::vector<float> X(size_t(seqs_per_call * tokens * n));
        for (int64_t s = 0; s < seqs; s += seqs_per_call) {
            const int64_t n_tok = std::min(seqs_per_call, seqs - s) * tokens;
            pool.parallel_for(n_tok, [&](int64_t t0, int64_t t1) {
                fill_normal(X.data() + t0 * n, (t1 - t0) * n, uint64_t(s) * 1000003 + uint64_t(t0));
            });
            const double t = now(), c = cpu_now();
            cq::accumulate_hessian(H, std::span<const float>(X).first(size_t(n_tok * n)), n_tok, n, &pool);
            r.hessian_s += now() - t;
            r.hessian_cpu += cpu_now() - c;
        }
        {   // the factorization alone (gptq_quantize does it once inside): the damped H's Cholesky in double
            std::vector<double> M(H);
            double mean = 0;
            for (int64_t j = 0; j < n; ++j) mean += H[size_t(j * n + j)];
            for (int64_t j = 0; j < n; ++j) M[size_t(j * n + j)] += 0.01 * mean / double(n);
            const double t = now(), c = cpu_now();
            cq::gptq_detail::cholesky_lower_in_place(M.data(), n, pool);
            r.factor_s = now() - t;
            r.factor_cpu = cpu_now() - c;
        }
        std::vector<float> W(size_t(r.n_out * n));
        pool.parallel_for(r.n_out, [&](int64_t r0, int64_t r1) { fill_normal(W.data() + r0 * n, (r1 - r0) * n, 77 + uint64_t(r0)); });
        for (float& w : W) w *= 0.02f;
        {   // plain weighted rounding of the same weights (llama-quantize's work for this tensor), for scale
            const size_t row_bytes = *cq::dtype_bytes(*type, uint64_t(n));
            std::vector<uint8_t> q(size_t(r.n_out) * row_bytes);
            std::vector<float> imp(static_cast<size_t>(n), 0.0f);
            for (int64_t j = 0; j < n; ++j) imp[size_t(j)] = float(H[size_t(j * n + j)]);
            const double t = now(), c = cpu_now();
            pool.parallel_for(r.n_out, [&](int64_t r0, int64_t r1) {
                cq::quantize_rows_weighted(*type, W.data() + r0 * n, q.data() + size_t(r0) * row_bytes, r1 - r0, n, imp.data());
            });
            r.rtn_s = now() - t;
            r.rtn_cpu = cpu_now() - c;
        }
        cq::GptqOptions o;
        o.act_order = act_order;
        o.compute_rtn_error = false;
        double t = now(), c = cpu_now();
        const cq::GptqResult g = cq::gptq_quantize(*type, W, r.n_out, n, H, {}, o, &pool);
        r.gptq_s = now() - t;
        r.gptq_cpu = cpu_now() - c;
        o.compute_rtn_error = true;
        t = now();
        const cq::GptqResult g2 = cq::gptq_quantize(*type, W, r.n_out, n, H, {}, o, &pool);
        r.gptq_rtn_s = now() - t;
        r.weighted_error = g.weighted_error;
        r.rtn_error = g2.rtn_error;
        rows.push_back(r);
        if (!json)
            std::fprintf(stderr, "%ld×%ld done: hessian %.2f s, factor %.2f s, gptq %.2f s\n", r.n_out, r.n_in, r.hessian_s, r.factor_s, r.gptq_s);
    }
    const cq::CpuFeatures& f = cq::cpu_features();
    const char* gemm = cq::kernel_table().gemm_f32_nn.name;
    if (json) {
        std::printf("{\"cpu\": \"%s\", \"family\": %d, \"model\": %d, \"threads\": %d, \"type\": \"%s\", \"act_order\": %s, \"gemm_f32_nn\": \"%s\", \"layers\": [",
                    f.brand.c_str(), f.family, f.model, threads, type_name.c_str(), act_order ? "true" : "false", gemm);
        for (size_t i = 0; i < rows.size(); ++i) {
            const Row& r = rows[i];
            std::printf("%s\n  {\"n_out\": %ld, \"n_in\": %ld, \"tokens\": %ld, \"hessian_s\": %.3f, \"hessian_gflops\": %.1f, \"factor_s\": %.3f, "
                        "\"gptq_s\": %.3f, \"gptq_with_rtn_error_s\": %.3f, \"weighted_rounding_s\": %.3f, \"sweep_gflops\": %.1f, \"weighted_error\": %.6g, \"rtn_error\": %.6g, "
                        "\"cpu_s\": {\"hessian\": %.3f, \"factor\": %.3f, \"gptq\": %.3f, \"weighted_rounding\": %.3f}}",
                        i ? "," : "", r.n_out, r.n_in, r.tokens, r.hessian_s, double(r.tokens) * double(r.n_in) * double(r.n_in) / r.hessian_s * 1e-9,
                        r.factor_s, r.gptq_s, r.gptq_rtn_s, r.rtn_s, double(r.n_out) * double(r.n_in) * double(r.n_in) / (r.gptq_s - r.factor_s) * 1e-9,
                        r.weighted_error, r.rtn_error, r.hessian_cpu, r.factor_cpu, r.gptq_cpu, r.rtn_cpu);
        }
        std::printf("\n]}\n");
        return 0;
    }
    std::printf("cpu: %s, %d threads, %s, float GEMM %s%s\n\n", f.brand.c_str(), threads, type_name.c_str(), gemm, act_order ? ", act-order" : "");
    std::printf("Wall seconds, and in brackets CPU seconds / threads (the wall time on idle cores).\n\n");
    std::printf("| layer (out × in) | tokens | XᵀX | factor (in H) | gptq_quantize | + rtn error | weighted rounding alone | GPTQ / RTN error |\n|---|---:|---:|---:|---:|---:|---:|---:|\n");
    for (const Row& r : rows)
        std::printf("| %ld × %ld | %ld | %.2f s (%.2f) | %.2f s (%.2f) | %.2f s (%.2f) | %.2f s | %.2f s (%.2f) | %.3f |\n", r.n_out, r.n_in, r.tokens,
                    r.hessian_s, r.hessian_cpu / threads, r.factor_s, r.factor_cpu / threads, r.gptq_s, r.gptq_cpu / threads, r.gptq_rtn_s, r.rtn_s,
                    r.rtn_cpu / threads, r.weighted_error / r.rtn_error);
}
