// Plain NEON float GEMM / GEMV (gemm_f32: C = A·Bᵀ, gemm_f32_nn: C = A·B, gemv_f32: y = W·x), register-blocked
// with explicit fused multiply-adds (the build is -ffp-contract=off; these fuse on purpose). Each output's
// summation order is a function of k alone (kernels/arm/kernel_decls_arm.h), so tiles, edges and the ops' column
// splits give the same bits; against the double-accumulating references they are within eps·K·max|a|·max|b|.
#include "kernels/arm/kernel_decls_arm.h"

#if defined(__aarch64__)
#include <arm_neon.h>

#include <cmath>
#include <cstdint>

namespace cq::kernels {
namespace {

// Full unrolling of the tile loops lets GCC keep the accumulator arrays in registers (it leaves them on the stack otherwise).
#define CQ_UNROLL _Pragma("GCC unroll 16")

// ---- dot-product order (gemm_f32, gemv_f32): lane chains over p < k4, (l0 + l1) + (l2 + l3), fused tail ----

// One output from its lane chains and the k % 4 tail of rows x, y.
inline float finish_dot(float32x4_t acc, int64_t k4, int64_t k, const float* x, const float* y) {
    float s = vaddvq_f32(acc);  // faddp, faddp: (l0 + l1) + (l2 + l3)
    for (int64_t p = k4; p < k; ++p) s = std::fma(x[p], y[p], s);
    return s;
}

// a: [MR, k] (lda) · b: [NR, k] (ldb)ᵀ → c: [MR, NR] (ldc). MR × NR ≤ 16 accumulators, each one output's lanes.
template <int MR, int NR>
inline void dot_tile(int64_t k, const float* a, int64_t lda, const float* b, int64_t ldb, float* c, int64_t ldc) {
    float32x4_t acc[MR][NR];
    CQ_UNROLL
    for (int i = 0; i < MR; ++i)
        CQ_UNROLL
        for (int j = 0; j < NR; ++j) acc[i][j] = vdupq_n_f32(0.0f);
    const int64_t k4 = k & ~int64_t(3);
    for (int64_t p = 0; p < k4; p += 4) {
        float32x4_t av[MR], bv[NR];
        CQ_UNROLL
        for (int i = 0; i < MR; ++i) av[i] = vld1q_f32(a + i * lda + p);
        CQ_UNROLL
        for (int j = 0; j < NR; ++j) bv[j] = vld1q_f32(b + j * ldb + p);
        CQ_UNROLL
        for (int i = 0; i < MR; ++i)
            CQ_UNROLL
            for (int j = 0; j < NR; ++j) acc[i][j] = vfmaq_f32(acc[i][j], av[i], bv[j]);
    }
    CQ_UNROLL
    for (int i = 0; i < MR; ++i)
        CQ_UNROLL
        for (int j = 0; j < NR; ++j) c[i * ldc + j] = finish_dot(acc[i][j], k4, k, a + i * lda, b + j * ldb);
}

template <int MR>
void dot_rows(int64_t n, int64_t k, const float* a, int64_t lda, const float* b, int64_t ldb, float* c, int64_t ldc) {
    int64_t j = 0;
    for (; j + 4 <= n; j += 4) dot_tile<MR, 4>(k, a, lda, b + j * ldb, ldb, c + j, ldc);
    for (; j < n; ++j) dot_tile<MR, 1>(k, a, lda, b + j * ldb, ldb, c + j, ldc);
}

// ---- one fused chain per output (gemm_f32_nn): c[i][j] = fma(a[i][p], b[p][j], c[i][j]) for p = 0..k−1 ----

template <int L, int MR, int NV>
inline void nn_lane_step(float32x4_t (&acc)[MR][NV], const float32x4_t (&av)[MR], const float* b_row) {
    float32x4_t bv[NV];
    CQ_UNROLL
    for (int v = 0; v < NV; ++v) bv[v] = vld1q_f32(b_row + 4 * v);
    CQ_UNROLL
    for (int i = 0; i < MR; ++i)
        CQ_UNROLL
        for (int v = 0; v < NV; ++v) acc[i][v] = vfmaq_laneq_f32(acc[i][v], bv[v], av[i], L);
}

// a: [MR, k] (lda) · b: [k, 4·NV] (ldb) → c: [MR, 4·NV] (ldc); A is read 4 inputs at a time, one lane per B row.
template <int MR, int NV>
inline void nn_tile(int64_t k, const float* a, int64_t lda, const float* b, int64_t ldb, float* c, int64_t ldc) {
    float32x4_t acc[MR][NV];
    CQ_UNROLL
    for (int i = 0; i < MR; ++i)
        CQ_UNROLL
        for (int v = 0; v < NV; ++v) acc[i][v] = vdupq_n_f32(0.0f);
    const int64_t k4 = k & ~int64_t(3);
    int64_t p = 0;
    for (; p < k4; p += 4) {
        float32x4_t av[MR];
        CQ_UNROLL
        for (int i = 0; i < MR; ++i) av[i] = vld1q_f32(a + i * lda + p);
        nn_lane_step<0>(acc, av, b + p * ldb);
        nn_lane_step<1>(acc, av, b + (p + 1) * ldb);
        nn_lane_step<2>(acc, av, b + (p + 2) * ldb);
        nn_lane_step<3>(acc, av, b + (p + 3) * ldb);
    }
    for (; p < k; ++p)
        CQ_UNROLL
        for (int v = 0; v < NV; ++v) {
            const float32x4_t bv = vld1q_f32(b + p * ldb + 4 * v);
            CQ_UNROLL
            for (int i = 0; i < MR; ++i) acc[i][v] = vfmaq_n_f32(acc[i][v], bv, a[i * lda + p]);
        }
    CQ_UNROLL
    for (int i = 0; i < MR; ++i)
        CQ_UNROLL
        for (int v = 0; v < NV; ++v) vst1q_f32(c + i * ldc + 4 * v, acc[i][v]);
}

template <int MR>
void nn_rows(int64_t n, int64_t k, const float* a, int64_t lda, const float* b, int64_t ldb, float* c, int64_t ldc) {
    int64_t j = 0;
    for (; j + 8 <= n; j += 8) nn_tile<MR, 2>(k, a, lda, b + j, ldb, c + j, ldc);
    for (; j + 4 <= n; j += 4) nn_tile<MR, 1>(k, a, lda, b + j, ldb, c + j, ldc);
    for (; j < n; ++j)  // the last n % 4 columns: the same chain, one lane at a time
        CQ_UNROLL
        for (int i = 0; i < MR; ++i) {
            float s = 0.0f;
            for (int64_t p = 0; p < k; ++p) s = std::fma(a[i * lda + p], b[p * ldb + j], s);
            c[i * ldc + j] = s;
        }
}

#undef CQ_UNROLL
}  // namespace

// a: [m, k] (lda), b: [n, k] (ldb) → c: [m, n] (ldc) = a·bᵀ. 4×4 tiles of dot products (16 accumulators, 8 loads per
// 16 fmla); the 4 rows of A stay in cache while B's rows stream past.
void gemm_f32__neon(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b, int64_t ldb, float* c,
                    int64_t ldc) {
    int64_t i = 0;
    for (; i + 4 <= m; i += 4) dot_rows<4>(n, k, a + i * lda, lda, b, ldb, c + i * ldc, ldc);
    if (m - i >= 2) dot_rows<2>(n, k, a + i * lda, lda, b, ldb, c + i * ldc, ldc), i += 2;
    if (i < m) dot_rows<1>(n, k, a + i * lda, lda, b, ldb, c + i * ldc, ldc);
}

// a: [m, k] (lda), b: [k, n] (ldb) → c: [m, n] (ldc) = a·b. 8 rows × 8 columns (16 accumulators; per 4 inputs 8 loads
// of A, 8 of B, 64 fmla by lane).
void gemm_f32_nn__neon(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b, int64_t ldb,
                       float* c, int64_t ldc) {
    int64_t i = 0;
    for (; i + 8 <= m; i += 8) nn_rows<8>(n, k, a + i * lda, lda, b, ldb, c + i * ldc, ldc);
    if (m - i >= 4) nn_rows<4>(n, k, a + i * lda, lda, b, ldb, c + i * ldc, ldc), i += 4;
    if (m - i >= 2) nn_rows<2>(n, k, a + i * lda, lda, b, ldb, c + i * ldc, ldc), i += 2;
    if (i < m) nn_rows<1>(n, k, a + i * lda, lda, b, ldb, c + i * ldc, ldc);
}

// w: [n, k] (ldw), x: [k] → y: [n]. gemm_f32's order with x as A's one row: 8 rows of W at a time (8 independent
// chains hide the fmla latency), x loaded once per 4 inputs.
void gemv_f32__neon(int64_t n, int64_t k, const float* w, int64_t ldw, const float* x, float* y) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) dot_tile<1, 8>(k, x, 0, w + i * ldw, ldw, y + i, 0);
    for (; i + 4 <= n; i += 4) dot_tile<1, 4>(k, x, 0, w + i * ldw, ldw, y + i, 0);
    for (; i < n; ++i) dot_tile<1, 1>(k, x, 0, w + i * ldw, ldw, y + i, 0);
}

}  // namespace cq::kernels

#endif  // __aarch64__
