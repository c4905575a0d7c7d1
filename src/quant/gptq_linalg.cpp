// GPTQ's dense linear algebra (quant/gptq_linalg.h). The Cholesky factorization is right-looking and blocked:
// factor a diagonal block, solve the panel below it, subtract the panel's outer product from the trailing lower
// triangle tile by tile. Tiles and row groups are fixed sizes, each computed by one single-threaded call, so
// the factor is the same bits whatever the number of threads that share them out.
#include "quant/gptq_linalg.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "cq/kernels.h"
#include "cq/thread_pool.h"

#if defined(CQ_HAVE_OPENBLAS)
#include <cblas.h>
#endif

namespace cq::gptq_detail {
namespace {

constexpr int64_t kPanel = 128;      // columns factored per step (the rank of each trailing update)
constexpr int64_t kTile = 256;       // trailing-update tile edge
constexpr int64_t kSolveRows = 256;  // panel rows solved per call

// c: [m, n] −= a: [m, k] · b: [n, k]ᵀ (row strides lda, ldb, ldc).
void gemm_nt_subtract(int64_t m, int64_t n, int64_t k, const double* a, int64_t lda, const double* b, int64_t ldb, double* c,
                      int64_t ldc) {
#if defined(CQ_HAVE_OPENBLAS)
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, blasint(m), blasint(n), blasint(k), -1.0, a, blasint(lda), b,
                blasint(ldb), 1.0, c, blasint(ldc));
#else
    for (int64_t i = 0; i < m; ++i)
        for (int64_t j = 0; j < n; ++j) {
            double s = 0;
            for (int64_t p = 0; p < k; ++p) s += a[i * lda + p] * b[j * ldb + p];
            c[i * ldc + j] -= s;
        }
#endif
}

// Rows b: [m, kb] (row stride ldb) ← b · L⁻ᵀ for the lower-triangular l: [kb, kb] (row stride ldl): each row x
// solves x·Lᵀ = b by forward substitution.
void solve_rows_lower_transposed(int64_t m, int64_t kb, const double* l, int64_t ldl, double* b, int64_t ldb) {
#if defined(CQ_HAVE_OPENBLAS)
    cblas_dtrsm(CblasRowMajor, CblasRight, CblasLower, CblasTrans, CblasNonUnit, blasint(m), blasint(kb), 1.0, l, blasint(ldl), b,
                blasint(ldb));
#else
    for (int64_t i = 0; i < m; ++i) {
        double* x = b + i * ldb;
        for (int64_t j = 0; j < kb; ++j) {
            double s = x[j];
            for (int64_t p = 0; p < j; ++p) s -= x[p] * l[j * ldl + p];
            x[j] = s / l[j * ldl + j];
        }
    }
#endif
}

// Unblocked Cholesky of the kb × kb diagonal block at a (row stride lda). Returns -1 or the failing pivot.
int64_t factor_diagonal_block(double* a, int64_t kb, int64_t lda) {
    for (int64_t j = 0; j < kb; ++j) {
        double d = a[j * lda + j];
        for (int64_t p = 0; p < j; ++p) d -= a[j * lda + p] * a[j * lda + p];
        if (!(d > 0) || !std::isfinite(d)) return j;
        const double ljj = std::sqrt(d);
        a[j * lda + j] = ljj;
        for (int64_t i = j + 1; i < kb; ++i) {
            double s = a[i * lda + j];
            for (int64_t p = 0; p < j; ++p) s -= a[i * lda + p] * a[j * lda + p];
            a[i * lda + j] = s / ljj;
        }
    }
    return -1;
}

}  // namespace

int64_t cholesky_lower_in_place(double* A, int64_t n, ThreadPool& pool) {
    struct Tile {
        int64_t i0, j0;
    };
    std::vector<Tile> tiles;
    for (int64_t k0 = 0; k0 < n; k0 += kPanel) {
        const int64_t kb = std::min(kPanel, n - k0);
        double* diag = A + k0 * n + k0;
        if (const int64_t bad = factor_diagonal_block(diag, kb, n); bad >= 0) return k0 + bad;
        const int64_t rest0 = k0 + kb, n_rest = n - rest0;
        if (n_rest == 0) break;
        const int64_t n_groups = (n_rest + kSolveRows - 1) / kSolveRows;
        pool.parallel_for(n_groups, [&](int64_t g0, int64_t g1) {
            for (int64_t g = g0; g < g1; ++g) {
                const int64_t r0 = rest0 + g * kSolveRows, rows = std::min(kSolveRows, n - r0);
                solve_rows_lower_transposed(rows, kb, diag, n, A + r0 * n + k0, n);
            }
        });
        tiles.clear();
        for (int64_t i0 = rest0; i0 < n; i0 += kTile)
            for (int64_t j0 = rest0; j0 <= i0; j0 += kTile) tiles.push_back({i0, j0});
        pool.parallel_for(static_cast<int64_t>(tiles.size()), [&](int64_t t0, int64_t t1) {
            for (int64_t t = t0; t < t1; ++t) {
                const Tile& tl = tiles[static_cast<size_t>(t)];
                const int64_t mi = std::min(kTile, n - tl.i0), nj = std::min(kTile, n - tl.j0);
                gemm_nt_subtract(mi, nj, kb, A + tl.i0 * n + k0, n, A + tl.j0 * n + k0, n, A + tl.i0 * n + tl.j0, n);
            }
        });
    }
    return -1;
}

void gemm_nn(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b, int64_t ldb, float* c, int64_t ldc) {
    if (m <= 0 || n <= 0) return;
    if (k <= 0) {
        for (int64_t i = 0; i < m; ++i) std::fill(c + i * ldc, c + i * ldc + n, 0.0f);
        return;
    }
    kernel_table().gemm_f32_nn.fn(m, n, k, a, lda, b, ldb, c, ldc);
}

void gemm_nn(int64_t m, int64_t n, int64_t k, const double* a, int64_t lda, const double* b, int64_t ldb, double* c, int64_t ldc) {
    if (m <= 0 || n <= 0) return;
    if (k <= 0) {
        for (int64_t i = 0; i < m; ++i) std::fill(c + i * ldc, c + i * ldc + n, 0.0);
        return;
    }
#if defined(CQ_HAVE_OPENBLAS)
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, blasint(m), blasint(n), blasint(k), 1.0, a, blasint(std::max(lda, k)), b,
                blasint(std::max(ldb, n)), 0.0, c, blasint(std::max(ldc, n)));
#else
    for (int64_t i = 0; i < m; ++i) {
        double* ci = c + i * ldc;
        std::fill(ci, ci + n, 0.0);
        for (int64_t p = 0; p < k; ++p) {
            const double aip = a[i * lda + p];
            for (int64_t j = 0; j < n; ++j) ci[j] += aip * b[p * ldb + j];
        }
    }
#endif
}

}  // namespace cq::gptq_detail
