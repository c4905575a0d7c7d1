// Float GEMM through oneDNN's sgemm, which picks its own kernels by CPU ISA (AVX-512 where the CPU has
// it) instead of by CPU model as OpenBLAS does: C = A·Bᵀ (weights [out, in]) and C = A·B.
// oneDNN is built on OpenMP here; cq's ops already split the work across cq's pool, so each calling
// thread limits its own OpenMP team to one thread (the nthreads ICV is per thread) before its first call.
#include <dnnl.h>

#include <algorithm>
#include <cstdint>

#include "kernels/kernel_decls.h"

extern "C" void omp_set_num_threads(int num_threads);

namespace cq::kernels {
namespace {

void single_threaded_here() {
    thread_local const bool done = (omp_set_num_threads(1), true);
    (void)done;
}

void zero(int64_t m, int64_t n, float* c, int64_t ldc) {
    for (int64_t i = 0; i < m; ++i) std::fill(c + i * ldc, c + i * ldc + n, 0.0f);
}

}  // namespace

// a: [m, k] (row stride lda), b: [n, k] (row stride ldb) → c: [m, n] (row stride ldc), overwritten.
void gemm_f32__dnnl(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b, int64_t ldb,
                    float* c, int64_t ldc) {
    if (m <= 0 || n <= 0) return;
    if (k <= 0) return zero(m, n, c, ldc);  // an empty sum
    single_threaded_here();
    // oneDNN checks strides even where a single row leaves them unused.
    dnnl_sgemm('N', 'T', m, n, k, 1.0f, a, std::max(lda, k), b, std::max(ldb, k), 0.0f, c, std::max(ldc, n));
}

// a: [m, k] (row stride lda), b: [k, n] (row stride ldb) → c: [m, n] (row stride ldc), overwritten.
void gemm_f32_nn__dnnl(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b, int64_t ldb,
                       float* c, int64_t ldc) {
    if (m <= 0 || n <= 0) return;
    if (k <= 0) return zero(m, n, c, ldc);
    single_threaded_here();
    dnnl_sgemm('N', 'N', m, n, k, 1.0f, a, std::max(lda, k), b, std::max(ldb, n), 0.0f, c, std::max(ldc, n));
}

}  // namespace cq::kernels
