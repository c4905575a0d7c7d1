// SparseGPT (cq/prune.h): the damped Hessian is factored once (gptq_linalg's tiled Cholesky on the reversed matrix, as
// GPTQ does, H = V·Vᵀ with V upper triangular), U = V⁻¹ is the upper Cholesky factor of H⁻¹ (H⁻¹ = UᵀU), and each row
// is swept column by column: a pruned weight's error (w − 0)/U_jj is spread over the row's later columns along U's row j,
// within a block at once and to the columns after the block by one product (GPTQ's lazy batch). Masks are chosen on the
// current values by w²/U_jj² — the OBS saliency — per row, at each block's start (N:M: at each group's first column).
// Everything runs in double; rows go in fixed groups, so the bytes do not depend on the thread count.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>

#include "cq/error.h"
#include "cq/prune.h"
#include "cq/thread_pool.h"
#include "quant/gptq_linalg.h"

namespace cq {
namespace {

constexpr int64_t kRowGroup = 128;

std::string num(double v) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%g", v);
    return buf;
}

// Marks the k lowest of s[0..count) (ties to the lower index) in mask.
void mark_lowest(const double* s, int64_t count, int64_t k, uint8_t* mask, std::vector<int64_t>& idx) {
    if (k <= 0) return;
    idx.resize(static_cast<size_t>(count));
    std::iota(idx.begin(), idx.end(), int64_t{0});
    const auto less = [&](int64_t a, int64_t b) { return s[a] < s[b] || (s[a] == s[b] && a < b); };
    if (k < count) std::nth_element(idx.begin(), idx.begin() + k, idx.end(), less);
    for (int64_t i = 0; i < std::min(k, count); ++i) mask[idx[static_cast<size_t>(i)]] = 1;
}

}  // namespace

SparseGptResult sparsegpt_prune(std::span<const float> W, int64_t n_out, int64_t n_in, std::span<const double> H,
                                const SparsityTarget& target, const SparseGptOptions& o, ThreadPool* pool_arg) {
    target.validate("sparsegpt");
    const int64_t n = n_in;
    if (n_out <= 0 || n_in <= 0 || static_cast<int64_t>(W.size()) != n_out * n_in)
        throw InvalidArgument("[sparsegpt] W holds " + std::to_string(W.size()) + " values, not n_out · n_in = " + std::to_string(n_out) + " · " +
                              std::to_string(n_in));
    if (static_cast<int64_t>(H.size()) != n * n)
        throw InvalidArgument("[sparsegpt] H holds " + std::to_string(H.size()) + " values, not n_in² = " + std::to_string(n) + "²");
    if (!(o.damp >= 0) || !std::isfinite(o.damp)) throw InvalidArgument("[sparsegpt] damp must be a finite value ≥ 0, not " + num(o.damp));
    if (o.block_size <= 0) throw InvalidArgument("[sparsegpt] block_size must be positive, not " + std::to_string(o.block_size));
    if (target.is_nm() && n % target.m != 0)
        throw InvalidArgument("[sparsegpt] rows of " + std::to_string(n) + " weights are not a whole number of " + target.describe() + " groups");
    for (size_t i = 0; i < W.size(); ++i)
        if (!std::isfinite(W[i]))
            throw InvalidArgument("[sparsegpt] W has a non-finite value at row " + std::to_string(static_cast<int64_t>(i) / n) + ", column " +
                                  std::to_string(static_cast<int64_t>(i) % n));
    double live_sum = 0;
    int64_t n_live = 0;
    std::vector<uint8_t> dead(static_cast<size_t>(n));
    for (int64_t j = 0; j < n; ++j) {
        const double d = H[static_cast<size_t>(j * n + j)];
        if (!std::isfinite(d) || d < 0) throw InvalidArgument("[sparsegpt] H[" + std::to_string(j) + "][" + std::to_string(j) + "] = " + num(d) + " is not a finite value ≥ 0");
        dead[static_cast<size_t>(j)] = d == 0;
        if (d > 0) live_sum += d, ++n_live;
    }
    for (double v : H)
        if (!std::isfinite(v)) throw InvalidArgument("[sparsegpt] H has a non-finite entry");
    ThreadPool& pool = pool_arg ? *pool_arg : ThreadPool::global();
    // GPTQ's damping: a fraction of the mean live diagonal; a dead channel (never active) stands in as 1.
    const double damp = o.damp * (n_live > 0 ? live_sum / static_cast<double>(n_live) : 1.0);

    // Reversed, damped H (lower triangle) → its Cholesky factor L; V = R·L·R is upper triangular with H = V·Vᵀ.
    std::vector<double> M(static_cast<size_t>(n * n), 0.0);
    for (int64_t a = 0; a < n; ++a) {
        const int64_t ca = n - 1 - a;
        for (int64_t b = 0; b < a; ++b) M[static_cast<size_t>(a * n + b)] = H[static_cast<size_t>(ca * n + (n - 1 - b))];
        M[static_cast<size_t>(a * n + a)] = (dead[static_cast<size_t>(ca)] ? 1.0 : H[static_cast<size_t>(ca * n + ca)]) + damp;
    }
    const int64_t bad = gptq_detail::cholesky_lower_in_place(M.data(), n, pool);
    if (bad >= 0)
        throw InvalidArgument("[sparsegpt] H is not positive definite after damping (adding " + num(damp) + " to its diagonal); the factorization failed at input channel " +
                              std::to_string(n - 1 - bad) + "; raise damp or check H");
    const auto V = [&](int64_t i, int64_t j) { return M[static_cast<size_t>((n - 1 - i) * n + (n - 1 - j))]; };
    // U = V⁻¹ by back substitution, one column per task (column k of U solves V·u = e_k); stored transposed first so
    // each task writes its own row.
    std::vector<double> Ut(static_cast<size_t>(n * n), 0.0), Vr(static_cast<size_t>(n * n), 0.0);
    pool.parallel_for(n, [&](int64_t i0, int64_t i1) {
        for (int64_t i = i0; i < i1; ++i)
            for (int64_t j = i; j < n; ++j) Vr[static_cast<size_t>(i * n + j)] = V(i, j);
    });
    pool.parallel_for(n, [&](int64_t k0, int64_t k1) {
        for (int64_t k = k0; k < k1; ++k) {
            double* u = Ut.data() + k * n;
            u[k] = 1.0 / Vr[static_cast<size_t>(k * n + k)];
            for (int64_t i = k - 1; i >= 0; --i) {
                const double* v = Vr.data() + i * n;
                double s = 0;
                for (int64_t j = i + 1; j <= k; ++j) s += v[j] * u[j];
                u[i] = -s / v[i];
            }
        }
    });
    std::vector<double> U(static_cast<size_t>(n * n), 0.0);
    for (int64_t k = 0; k < n; ++k)
        for (int64_t i = 0; i <= k; ++i) U[static_cast<size_t>(i * n + k)] = Ut[static_cast<size_t>(k * n + i)];
    Ut.clear(), Ut.shrink_to_fit(), Vr.clear(), Vr.shrink_to_fit();
    std::vector<double> inv_d2(static_cast<size_t>(n));  // 1 / U_jj² = V_jj²: the saliency's weight
    for (int64_t j = 0; j < n; ++j) inv_d2[static_cast<size_t>(j)] = 1.0 / (U[static_cast<size_t>(j * n + j)] * U[static_cast<size_t>(j * n + j)]);

    int64_t B = std::min(n, o.block_size);
    if (target.is_nm()) B = std::min(n, (B + target.m - 1) / target.m * target.m);

    SparseGptResult result;
    result.weights.resize(W.size());
    const int64_t n_groups = (n_out + kRowGroup - 1) / kRowGroup;
    std::vector<double> group_error(static_cast<size_t>(n_groups), 0.0);
    pool.parallel_for(n_groups, [&](int64_t g0, int64_t g1) {
        std::vector<double> Wg, Err, T, s;
        std::vector<uint8_t> mask, tail;
        std::vector<int64_t> idx, pruned;
        const int64_t k_row = target.is_nm() ? 0 : std::llround(target.sparsity * static_cast<double>(n));
        for (int64_t g = g0; g < g1; ++g) {
            const int64_t r0 = g * kRowGroup, rows = std::min(kRowGroup, n_out - r0);
            Wg.assign(W.begin() + r0 * n, W.begin() + (r0 + rows) * n);
            mask.assign(static_cast<size_t>(rows * n), 0);
            Err.assign(static_cast<size_t>(rows * B), 0.0);
            pruned.assign(static_cast<size_t>(rows), 0);
            for (int64_t i1 = 0; i1 < n; i1 += B) {
                const int64_t i2 = std::min(n, i1 + B), cnt = i2 - i1;
                if (!target.is_nm()) {
                    // The row's remaining budget is chosen among all its columns not yet swept (their values carry
                    // every earlier block's updates) and the part that falls in this block is kept: adaptive like
                    // SparseGPT's per-block masks, without forcing the same sparsity on every block of columns.
                    s.resize(static_cast<size_t>(n - i1));
                    tail.resize(static_cast<size_t>(n - i1));
                    for (int64_t r = 0; r < rows; ++r) {
                        const int64_t left = k_row - pruned[static_cast<size_t>(r)];
                        for (int64_t j = i1; j < n; ++j) {
                            const double w = Wg[static_cast<size_t>(r * n + j)];
                            s[static_cast<size_t>(j - i1)] = w * w * inv_d2[static_cast<size_t>(j)];
                        }
                        std::fill(tail.begin(), tail.end(), uint8_t{0});
                        mark_lowest(s.data(), n - i1, left, tail.data(), idx);
                        for (int64_t j = i1; j < i2; ++j) {
                            mask[static_cast<size_t>(r * n + j)] = tail[static_cast<size_t>(j - i1)];
                            pruned[static_cast<size_t>(r)] += tail[static_cast<size_t>(j - i1)];
                        }
                    }
                }
                for (int64_t i = i1; i < i2; ++i) {
                    if (target.is_nm() && i % target.m == 0) {
                        s.resize(static_cast<size_t>(target.m));
                        for (int64_t r = 0; r < rows; ++r) {
                            for (int64_t j = 0; j < target.m; ++j) {
                                const double w = Wg[static_cast<size_t>(r * n + i + j)];
                                s[static_cast<size_t>(j)] = w * w * inv_d2[static_cast<size_t>(i + j)];
                            }
                            mark_lowest(s.data(), target.m, target.m - target.n, mask.data() + r * n + i, idx);
                        }
                    }
                    const double* u = U.data() + i * n;
                    for (int64_t r = 0; r < rows; ++r) {
                        double* w = Wg.data() + r * n;
                        if (!mask[static_cast<size_t>(r * n + i)]) {
                            Err[static_cast<size_t>(r * B + (i - i1))] = 0;
                            continue;
                        }
                        const double err = w[i] / u[i];
                        w[i] = 0.0;
                        Err[static_cast<size_t>(r * B + (i - i1))] = err;
                        for (int64_t j = i + 1; j < i2; ++j) w[j] -= err * u[j];
                    }
                }
                if (i2 < n) {
                    // The block's errors reach the later columns in one product: Wg[:, i2:] −= Err · U[i1:i2, i2:].
                    T.resize(static_cast<size_t>(rows * (n - i2)));
                    gptq_detail::gemm_nn(rows, n - i2, cnt, Err.data(), B, U.data() + i1 * n + i2, n, T.data(), n - i2);
                    for (int64_t r = 0; r < rows; ++r)
                        for (int64_t j = i2; j < n; ++j) Wg[static_cast<size_t>(r * n + j)] -= T[static_cast<size_t>(r * (n - i2) + (j - i2))];
                }
            }
            // Out, and the error tr(E H Eᵀ) of these rows with the undamped H.
            double e_sum = 0;
            std::vector<double> e(static_cast<size_t>(n));
            for (int64_t r = 0; r < rows; ++r) {
                float* out = result.weights.data() + (r0 + r) * n;
                for (int64_t j = 0; j < n; ++j) {
                    out[j] = mask[static_cast<size_t>(r * n + j)] ? 0.0f : static_cast<float>(Wg[static_cast<size_t>(r * n + j)]);
                    e[static_cast<size_t>(j)] = static_cast<double>(W[static_cast<size_t>((r0 + r) * n + j)]) - out[j];
                }
                for (int64_t a = 0; a < n; ++a) {
                    if (e[static_cast<size_t>(a)] == 0) continue;
                    const double* h = H.data() + a * n;
                    double t = 0;
                    for (int64_t b = 0; b < n; ++b) t += h[b] * e[static_cast<size_t>(b)];
                    e_sum += e[static_cast<size_t>(a)] * t;
                }
            }
            group_error[static_cast<size_t>(g)] = e_sum;
        }
    });
    for (double v : group_error) result.error += v;
    return result;
}

}  // namespace cq
