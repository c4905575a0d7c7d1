// BF16 matrix products with FP32 accumulation through oneDNN's matmul primitive, whose brgemm kernels run
// vdpbf16ps on CPUs with AVX-512 BF16 (measured 2.2-2.3x its own f32 sgemm per core on Zen 4 at training
// shapes; a hand kernel would have to reach ~90 % of the bf16 peak to match it). Dispatch calls these only
// where the CPU has AVX-512 BF16. oneDNN runs on OpenMP; cq's ops already split the work across cq's pool,
// so each calling thread limits its own OpenMP team to one thread. A primitive is built once per shape and
// calling thread (training repeats a handful of shapes) and kept for the thread's life.
#include <oneapi/dnnl/dnnl.hpp>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <tuple>

#include "kernels/kernel_decls.h"

extern "C" void omp_set_num_threads(int num_threads);

namespace cq::kernels {
namespace {

using dnnl::memory;

struct ThreadMatmuls {
    dnnl::engine engine{dnnl::engine::kind::cpu, 0};
    dnnl::stream stream{engine};
    // (m, n, k, lda, ldb, ldc, 2·a transposed + b transposed) → the primitive for that shape.
    std::map<std::tuple<int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int>, dnnl::matmul> cache;
    ThreadMatmuls() { omp_set_num_threads(1); }
};

ThreadMatmuls& thread_matmuls() {
    thread_local ThreadMatmuls t;
    return t;
}

void zero(int64_t m, int64_t n, float* c, int64_t ldc) {
    for (int64_t i = 0; i < m; ++i) std::fill(c + i * ldc, c + i * ldc + n, 0.0f);
}

// c: [m, n] = A · B, where A: [m, k] is read from a as aᵀ ([k, m], row stride lda) when a_transposed, else as
// [m, k]; B: [k, n] from b as bᵀ ([n, k], row stride ldb) when b_transposed, else as [k, n] (row stride ldb).
void matmul_bf16(int64_t m, int64_t n, int64_t k, const uint16_t* a, int64_t lda, bool a_transposed, const uint16_t* b,
                 int64_t ldb, bool b_transposed, float* c, int64_t ldc) {
    if (m <= 0 || n <= 0) return;
    if (k <= 0) return zero(m, n, c, ldc);  // an empty sum
    ThreadMatmuls& t = thread_matmuls();
    const memory::desc a_md({m, k}, memory::data_type::bf16, a_transposed ? memory::dims{1, lda} : memory::dims{lda, 1});
    const memory::desc b_md({k, n}, memory::data_type::bf16, b_transposed ? memory::dims{1, ldb} : memory::dims{ldb, 1});
    const memory::desc c_md({m, n}, memory::data_type::f32, memory::dims{ldc, 1});
    try {
        auto key = std::make_tuple(m, n, k, lda, ldb, ldc, int(a_transposed) * 2 + int(b_transposed));
        auto it = t.cache.find(key);
        if (it == t.cache.end()) {
            const dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(a_md, b_md, c_md), t.engine);
            it = t.cache.emplace(key, dnnl::matmul(pd)).first;
        }
        memory a_mem(a_md, t.engine, const_cast<uint16_t*>(a));
        memory b_mem(b_md, t.engine, const_cast<uint16_t*>(b));
        memory c_mem(c_md, t.engine, c);
        it->second.execute(t.stream, {{DNNL_ARG_SRC, a_mem}, {DNNL_ARG_WEIGHTS, b_mem}, {DNNL_ARG_DST, c_mem}});
    } catch (const dnnl::error& e) {
        // Kernels do not throw: valid shapes on a CPU dispatch checked cannot fail, so this is a bug.
        std::fprintf(stderr, "cq: oneDNN bf16 matmul failed (m %lld, n %lld, k %lld): %s\n", (long long)m, (long long)n,
                     (long long)k, e.what());
        std::abort();
    }
}

}  // namespace

// a: [m, k] bf16 (row stride lda), b: [n, k] bf16 (row stride ldb) → c: [m, n] f32 (row stride ldc), overwritten.
void gemm_bf16__dnnl(int64_t m, int64_t n, int64_t k, const uint16_t* a, int64_t lda, const uint16_t* b, int64_t ldb,
                     float* c, int64_t ldc) {
    matmul_bf16(m, n, k, a, std::max(lda, k), false, b, std::max(ldb, k), true, c, std::max(ldc, n));
}

// a: [m, k] bf16 (row stride lda), b: [k, n] bf16 (row stride ldb) → c: [m, n] f32 (row stride ldc), overwritten.
void gemm_bf16_nn__dnnl(int64_t m, int64_t n, int64_t k, const uint16_t* a, int64_t lda, const uint16_t* b,
                        int64_t ldb, float* c, int64_t ldc) {
    matmul_bf16(m, n, k, a, std::max(lda, k), false, b, std::max(ldb, n), false, c, std::max(ldc, n));
}

// a: [k, m] bf16 (row stride lda), b: [k, n] bf16 (row stride ldb) → c: [m, n] = aᵀ·b f32 (row stride ldc), overwritten.
void gemm_bf16_tn__dnnl(int64_t m, int64_t n, int64_t k, const uint16_t* a, int64_t lda, const uint16_t* b,
                        int64_t ldb, float* c, int64_t ldc) {
    matmul_bf16(m, n, k, a, std::max(lda, m), true, b, std::max(ldb, n), false, c, std::max(ldc, n));
}

}  // namespace cq::kernels
