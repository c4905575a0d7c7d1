// GPTQ into ggml block formats (cq/gptq.h). The damped Hessian is factored once as H = V·Vᵀ with V upper
// triangular (the Cholesky factor of H with its order reversed), because V⁻¹ is exactly the upper Cholesky
// factor U of H⁻¹ that GPTQ sweeps with, and the sweep can be written with V itself: the updated weight of column
// j is w_j + (Σ_{i<j} Δ_i·V_ij) / V_jj, where Δ_i = w_i − q_i are the final errors of the columns before it. So
// no inverse is formed (one n³/3 factorization instead of three), the lazy-batch update of a block of columns is
// one product Δ[:, :i1]·V[:i1, block], and ‖Δ·V‖² = tr(Δ H Δᵀ) gives the error for free.
// Rows are independent given V: they are swept in fixed groups of rows, so the bytes do not depend on threads.
#include "cq/gptq.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <numeric>
#include <string>

#include "cq/error.h"
#include "cq/kernels.h"
#include "cq/thread_pool.h"
#include "cq/weighted_quant.h"
#include "formats/fixed_grid.h"
#include "quant/zero_preserving.h"
#include "quant/gptq_internal.h"
#include "quant/gptq_linalg.h"
#include "quant/weighted_quant_block.h"

namespace cq {
namespace {

using formats::SubBlockGrid;
using gptq_detail::SweepProbe;

constexpr int64_t kRowGroup = 128;  // rows swept together (a fixed size, so results do not depend on threads)

std::string num(int64_t v) { return std::to_string(v); }
std::string num(double v) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%g", v);
    return buf;
}

// Everything the rows share.
struct Plan {
    DType type = DType::F32;
    int64_t n = 0;          // input channels (columns)
    int64_t grid_block = 0; // elements per format block (whose scales are chosen together)
    int64_t sub_block = 0;  // elements per (scale, min)
    int64_t lazy = 0;       // columns per lazy batch, a whole number of format blocks
    size_t block_bytes = 0, row_bytes = 0;
    bool act_order = false;
    bool keep_zeros = false;         // W's exact zeros are a pruning mask: they are quantized to exact 0 (masked GPTQ)
    std::vector<int64_t> perm;       // sweep position → column
    std::vector<uint8_t> dead;       // by column: H_jj = 0
    std::vector<double> damp_diff;   // by column: (damped H)_jj − H_jj
    std::vector<float> importance;   // by column
    double damp = 0;
    int64_t n_dead = 0;
};

// H (permuted to sweep order, damped) = V·Vᵀ, V: [n, n] upper triangular, zeros below the diagonal.
template <typename T>
struct Factor {
    std::vector<T> V;
    std::vector<T> diag, inv_diag;  // V_jj and 1 / V_jj
};

void validate(DType type, std::span<const float> W, int64_t n_out, int64_t n_in, std::span<const double> H,
              std::span<const float> importance, const GptqOptions& o) {
    const DTypeTraits& t = dtype_traits(type);
    if (!gptq_supports(type))
        throw InvalidArgument("[gptq] type " + std::string(t.name) +
                              " is not supported (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL, IQ4_XS)");
    if (n_out <= 0 || n_in <= 0) throw InvalidArgument("[gptq] W must have rows and columns (n_out " + num(n_out) + ", n_in " + num(n_in) + ")");
    if (n_in % t.block_size != 0)
        throw InvalidArgument("[gptq] n_in = " + num(n_in) + " is not a whole number of " + std::string(t.name) + " blocks of " +
                              num(int64_t(t.block_size)));
    if (static_cast<uint64_t>(W.size()) != static_cast<uint64_t>(n_out) * static_cast<uint64_t>(n_in))
        throw InvalidArgument("[gptq] W has " + num(int64_t(W.size())) + " values, not n_out · n_in = " + num(n_out) + " · " + num(n_in));
    if (static_cast<uint64_t>(H.size()) != static_cast<uint64_t>(n_in) * static_cast<uint64_t>(n_in))
        throw InvalidArgument("[gptq] H has " + num(int64_t(H.size())) + " values, not n_in² = " + num(n_in) + "²");
    if (!importance.empty() && static_cast<int64_t>(importance.size()) != n_in)
        throw InvalidArgument("[gptq] the importance row has " + num(int64_t(importance.size())) + " values, not n_in = " + num(n_in));
    if (!(o.damp >= 0) || !std::isfinite(o.damp)) throw InvalidArgument("[gptq] damp must be a finite value ≥ 0, not " + num(o.damp));
    if (o.block_size <= 0) throw InvalidArgument("[gptq] block_size must be positive, not " + num(o.block_size));
    for (int64_t r = 0; r < n_out; ++r)
        for (int64_t j = 0; j < n_in; ++j)
            if (!std::isfinite(W[static_cast<size_t>(r * n_in + j)]))
                throw InvalidArgument("[gptq] W has a non-finite value (" + num(double(W[static_cast<size_t>(r * n_in + j)])) + ") at row " +
                                      num(r) + ", column " + num(j));
    for (int64_t j = 0; j < static_cast<int64_t>(importance.size()); ++j)
        if (!std::isfinite(importance[static_cast<size_t>(j)]) || importance[static_cast<size_t>(j)] < 0)
            throw InvalidArgument("[gptq] importance[" + num(j) + "] = " + num(double(importance[static_cast<size_t>(j)])) +
                                  " is not a finite value ≥ 0");
    const double* h = H.data();
    for (int64_t i = 0; i < n_in; ++i) {
        const double hii = h[i * n_in + i];
        if (!std::isfinite(hii) || hii < 0)
            throw InvalidArgument("[gptq] H[" + num(i) + "][" + num(i) + "] = " + num(hii) + " (a diagonal entry of Σ xxᵀ must be finite and ≥ 0)");
    }
    // Symmetric to a relative 1e-6 of √(H_ii·H_jj), checked in tiles so both triangles are read cache-friendly.
    constexpr int64_t kT = 64;
    for (int64_t i0 = 0; i0 < n_in; i0 += kT)
        for (int64_t j0 = 0; j0 <= i0; j0 += kT)
            for (int64_t i = i0; i < std::min(n_in, i0 + kT); ++i)
                for (int64_t j = j0; j < std::min(i, j0 + kT); ++j) {
                    const double a = h[i * n_in + j], b = h[j * n_in + i];
                    if (!std::isfinite(a) || !std::isfinite(b))
                        throw InvalidArgument("[gptq] H[" + num(i) + "][" + num(j) + "] or its mirror is not finite");
                    if (std::fabs(a - b) > 1e-6 * std::sqrt(h[i * n_in + i] * h[j * n_in + j]) + 1e-300)
                        throw InvalidArgument("[gptq] H is not symmetric: H[" + num(i) + "][" + num(j) + "] = " + num(a) + " but H[" + num(j) +
                                              "][" + num(i) + "] = " + num(b));
                }
}

Plan make_plan(DType type, int64_t n, std::span<const double> H, std::span<const float> importance, const GptqOptions& o) {
    Plan p;
    const DTypeTraits& t = dtype_traits(type);
    p.type = type;
    p.n = n;
    p.grid_block = t.block_size;
    p.sub_block = formats::fixed_grid_sub_block(type);
    p.lazy = std::min(n, (std::max<int64_t>(o.block_size, 1) + p.grid_block - 1) / p.grid_block * p.grid_block);
    p.block_bytes = t.bytes_per_block;
    p.row_bytes = static_cast<size_t>(n / p.grid_block) * p.block_bytes;
    p.act_order = o.act_order;

    std::vector<double> diag(static_cast<size_t>(n));
    double live_sum = 0;
    for (int64_t j = 0; j < n; ++j) {
        diag[static_cast<size_t>(j)] = H[static_cast<size_t>(j * n + j)];
        if (diag[static_cast<size_t>(j)] > 0) live_sum += diag[static_cast<size_t>(j)];
    }
    p.dead.resize(static_cast<size_t>(n));
    for (int64_t j = 0; j < n; ++j) p.dead[static_cast<size_t>(j)] = diag[static_cast<size_t>(j)] == 0;
    p.n_dead = std::count(p.dead.begin(), p.dead.end(), uint8_t{1});
    const int64_t n_live = n - p.n_dead;
    // GPTQ's damping, a fraction of the mean diagonal; taken over the live channels (GPTQ counts a dead
    // channel's stand-in 1 too, which would make the damping depend on H's scale).
    const double mean_live = n_live > 0 ? live_sum / static_cast<double>(n_live) : 1.0;
    p.damp = o.damp * mean_live;
    p.damp_diff.resize(static_cast<size_t>(n));
    for (int64_t j = 0; j < n; ++j) p.damp_diff[static_cast<size_t>(j)] = p.dead[static_cast<size_t>(j)] ? 1.0 + p.damp : p.damp;

    p.importance.resize(static_cast<size_t>(n));
    if (!importance.empty()) std::copy(importance.begin(), importance.end(), p.importance.begin());
    else
        for (int64_t j = 0; j < n; ++j)
            p.importance[static_cast<size_t>(j)] = n_live > 0 ? static_cast<float>(diag[static_cast<size_t>(j)] / mean_live) : 1.0f;

    p.perm.resize(static_cast<size_t>(n));
    std::iota(p.perm.begin(), p.perm.end(), int64_t{0});
    if (o.act_order) {
        // Decreasing H_jj as damped (a dead channel's stand-in 1 included, as GPTQ sorts); ties by index.
        auto key = [&](int64_t j) { return p.dead[static_cast<size_t>(j)] ? 1.0 : diag[static_cast<size_t>(j)]; };
        std::stable_sort(p.perm.begin(), p.perm.end(), [&](int64_t a, int64_t b) { return key(a) > key(b); });
    }
    return p;
}

// Factors the damped, permuted H as V·Vᵀ: the Cholesky factor L of the reversed matrix (R·H·R = L·Lᵀ, R the
// order reversal) gives V = R·L·R.
template <typename T>
Factor<T> factor_hessian(const Plan& p, const double* H, ThreadPool& pool) {
    const int64_t n = p.n;
    std::vector<double> M(static_cast<size_t>(n * n));
    auto column_at = [&](int64_t a) { return p.perm[static_cast<size_t>(n - 1 - a)]; };  // reversed sweep position → column
    pool.parallel_for(n, [&](int64_t a0, int64_t a1) {
        for (int64_t a = a0; a < a1; ++a) {
            const int64_t ca = column_at(a);
            double* row = M.data() + a * n;
            const double* h = H + ca * n;  // row ca of H (symmetric, validated): read along it, not down a column
            for (int64_t b = 0; b < a; ++b) row[b] = h[column_at(b)];
            row[a] = (p.dead[static_cast<size_t>(ca)] ? 1.0 : H[ca * n + ca]) + p.damp;
        }
    });
    const int64_t bad = gptq_detail::cholesky_lower_in_place(M.data(), n, pool);
    if (bad >= 0)
        throw InvalidArgument("[gptq] H is not positive definite after damping (adding " + num(p.damp) +
                              " to its diagonal); the factorization failed at input channel " + num(column_at(bad)) +
                              "; raise damp or check H");
    Factor<T> f;
    f.V.assign(static_cast<size_t>(n * n), T(0));
    f.diag.resize(static_cast<size_t>(n));
    f.inv_diag.resize(static_cast<size_t>(n));
    pool.parallel_for(n, [&](int64_t i0, int64_t i1) {
        for (int64_t i = i0; i < i1; ++i) {
            T* v = f.V.data() + i * n;
            for (int64_t j = i; j < n; ++j) v[j] = static_cast<T>(M[static_cast<size_t>((n - 1 - i) * n + (n - 1 - j))]);
            f.diag[static_cast<size_t>(i)] = v[i];
            f.inv_diag[static_cast<size_t>(i)] = T(1) / v[i];
        }
    });
    return f;
}

// The level of g that decodes to exactly 0 (the constrained searches guarantee one); -1 (keep the search's level)
// when the step is 0, where every level has the same value.
int zero_level(const SubBlockGrid& g) {
    if (g.step == 0.0f) return -1;
    for (int L = 0; L < g.n_levels; ++L)
        if (formats::grid_value(g, L) == 0.0f) return L;
    return formats::nearest_grid_level(g, 0.0f);
}

// Chooses the grid of the format block starting at column col0 from its current values xb with the format's
// search, keeps the search's levels (the levels used where a sub-block's step is 0) and the sub-block grids.
// With a pruning mask (row_mask, by column; null: none) the block's masked values are taken as 0 and its grid is
// searched with an exact 0 level (quant/zero_preserving.h).
void choose_grid(const Plan& p, const float* xb, int64_t col0, float row_sigma2, uint8_t* row_out, uint8_t* row_levels,
                 SubBlockGrid* row_grids, const uint8_t* row_mask) {
    uint8_t* block = row_out + static_cast<size_t>(col0 / p.grid_block) * p.block_bytes;
    const uint8_t* mask = row_mask ? row_mask + col0 : nullptr;
    if (mask && std::any_of(mask, mask + p.grid_block, [](uint8_t m) { return m != 0; })) {
        float xm[256];
        for (int64_t i = 0; i < p.grid_block; ++i) xm[i] = mask[i] ? 0.0f : xb[i];
        if (quant::has_zero_preserving_search(p.type)) quant::quantize_block_keep_zeros(p.type, xm, mask, p.importance.data() + col0, block);
        else quantize_block_weighted(p.type, xm, block, p.importance.data() + col0, row_sigma2);
    } else {
        quantize_block_weighted(p.type, xb, block, p.importance.data() + col0, row_sigma2);
    }
    formats::read_block_levels(p.type, block, row_levels + col0);
    for (int64_t s = 0; s < p.grid_block / p.sub_block; ++s)
        row_grids[col0 / p.sub_block + s] = formats::sub_block_grid(p.type, block, static_cast<int>(s));
}

// The values GPTQ's column-by-column updates have given columns [j, j + G) when the sweep reaches column j:
// the weights w of the unswept columns minus Δ̃, where Δ̃ makes (Δ·V)_k = 0 for every k ≥ j given the swept
// columns' errors (the optimal compensation so far). With P_k = s[k − j] = Σ_{i<j} Δ_i·V_ik, V upper triangular
// makes that a forward substitution over the block alone: Δ̃_k = −(P_k + Σ_{j≤l<k} Δ̃_l·V_lk) / V_kk.
// (The left-looking value w + s / V_kk is only this once every column before k is swept.)
template <typename T>
void current_block_values(const Factor<T>& f, int64_t n, int64_t j, int64_t G, const T* w, const T* s, T* acc, float* xb) {
    std::copy(s, s + G, acc);
    for (int64_t u = 0; u < G; ++u) {
        const T delta = -acc[u] * f.inv_diag[static_cast<size_t>(j + u)];
        xb[u] = static_cast<float>(w[u] + acc[u] * f.inv_diag[static_cast<size_t>(j + u)]);
        const T* v = f.V.data() + (j + u) * n + j;
        for (int64_t t = u + 1; t < G; ++t) acc[t] += delta * v[t];
    }
}

// Sweeps rows [r0, r0 + m) of W into out (their blocks); returns their tr(Δ H Δᵀ).
template <typename T>
double sweep_rows(const Plan& p, const Factor<T>& f, const float* W, int64_t r0, int64_t m, uint8_t* out, float* values) {
    const int64_t n = p.n, n_sub = n / p.sub_block;
    std::vector<T> Wp(static_cast<size_t>(m * n));  // sweep order; column j holds w (0 if dead) until swept, then Δ = w − q
    std::vector<uint8_t> levels(static_cast<size_t>(m * n));  // column order
    std::vector<SubBlockGrid> grids(static_cast<size_t>(m * n_sub));
    std::vector<float> sigma2(static_cast<size_t>(m)), row(static_cast<size_t>(n));
    std::vector<uint8_t> mask(p.keep_zeros ? static_cast<size_t>(m * n) : 0);  // column order: 1 = pruned (W exactly 0)
    for (int64_t r = 0; r < m; ++r) {
        const float* w = W + (r0 + r) * n;
        if (p.keep_zeros)
            for (int64_t c = 0; c < n; ++c) mask[static_cast<size_t>(r * n + c)] = w[c] == 0.0f;
        for (int64_t c = 0; c < n; ++c) row[static_cast<size_t>(c)] = p.dead[static_cast<size_t>(c)] ? 0.0f : w[c];
        sigma2[static_cast<size_t>(r)] = row_mean_square(row.data(), n);
        T* wp = Wp.data() + r * n;
        for (int64_t j = 0; j < n; ++j) wp[j] = static_cast<T>(row[static_cast<size_t>(p.perm[static_cast<size_t>(j)])]);
        if (p.act_order)  // static groups: every block's grid from the weights before the sweep
            for (int64_t c0 = 0; c0 < n; c0 += p.grid_block)
                choose_grid(p, row.data() + c0, c0, sigma2[static_cast<size_t>(r)], out + r * p.row_bytes, levels.data() + r * n,
                            grids.data() + r * n_sub, p.keep_zeros ? mask.data() + r * n : nullptr);
    }

    std::vector<T> S(static_cast<size_t>(m * p.lazy));
    float xb[256];
    T acc[256];
    double e2 = 0, damp_term = 0;
    for (int64_t i1 = 0; i1 < n; i1 += p.lazy) {
        const int64_t bc = std::min(p.lazy, n - i1);
        // S[:, c] = Σ_{i<i1} Δ_i·V[i, i1 + c]: the lazy batch's share of every column swept before it.
        gptq_detail::gemm_nn(m, bc, i1, Wp.data(), n, f.V.data() + i1, n, S.data(), bc);
        for (int64_t r = 0; r < m; ++r) {
            T* s = S.data() + r * bc;
            T* w = Wp.data() + r * n + i1;
            uint8_t* row_levels = levels.data() + r * n;
            SubBlockGrid* row_grids = grids.data() + r * n_sub;
            for (int64_t c = 0; c < bc; ++c) {
                const int64_t j = i1 + c, col = p.perm[static_cast<size_t>(j)];
                if (!p.act_order && col % p.grid_block == 0) {
                    current_block_values(f, n, j, p.grid_block, w + c, s + c, acc, xb);
                    choose_grid(p, xb, col, sigma2[static_cast<size_t>(r)], out + r * p.row_bytes, row_levels, row_grids,
                                p.keep_zeros ? mask.data() + r * n : nullptr);
                }
                const SubBlockGrid& g = row_grids[col / p.sub_block];
                const T x = w[c] + s[c] * f.inv_diag[static_cast<size_t>(j)];
                // A pruned weight goes to the grid's exact 0 and its whole current value is compensated, as SparseGPT does.
                int level = p.keep_zeros && mask[static_cast<size_t>(r * n + col)] ? zero_level(g) : formats::nearest_grid_level(g, static_cast<float>(x));
                if (level < 0) level = row_levels[col];
                else row_levels[col] = static_cast<uint8_t>(level);
                const float q = formats::grid_value(g, level);
                if (values) values[(r0 + r) * n + col] = q;
                const T delta = w[c] - static_cast<T>(q);
                const T e = s[c] + delta * f.diag[static_cast<size_t>(j)];  // (Δ·V)_j
                e2 += static_cast<double>(e) * static_cast<double>(e);
                damp_term += p.damp_diff[static_cast<size_t>(col)] * static_cast<double>(delta) * static_cast<double>(delta);
                w[c] = delta;
                const T* v = f.V.data() + j * n + i1;
                for (int64_t t = c + 1; t < bc; ++t) s[t] += delta * v[t];
            }
        }
    }
    for (int64_t r = 0; r < m; ++r)
        for (int64_t c0 = 0; c0 < n; c0 += p.grid_block)
            formats::write_block_levels(p.type, out + r * p.row_bytes + static_cast<size_t>(c0 / p.grid_block) * p.block_bytes,
                                        levels.data() + r * n + c0);
    return e2 - damp_term;
}

// tr(Δ H Δᵀ) of plain weighted rounding for rows [r0, r0 + m): ‖Δ·V‖² less the damping's share.
template <typename T>
double rtn_error_rows(const Plan& p, const Factor<T>& f, const float* W, int64_t r0, int64_t m) {
    const int64_t n = p.n;
    const DTypeTraits& t = dtype_traits(p.type);
    std::vector<uint8_t> q(p.row_bytes);
    std::vector<float> deq(static_cast<size_t>(n));
    std::vector<T> D(static_cast<size_t>(m * n));
    double damp_term = 0;
    for (int64_t r = 0; r < m; ++r) {
        const float* w = W + (r0 + r) * n;
        quantize_row_weighted(p.type, w, q.data(), n, p.importance.data());
        t.to_float(q.data(), deq.data(), n);
        for (int64_t j = 0; j < n; ++j) {
            const int64_t col = p.perm[static_cast<size_t>(j)];
            const T d = static_cast<T>(w[col] - deq[static_cast<size_t>(col)]);
            D[static_cast<size_t>(r * n + j)] = d;
            damp_term += p.damp_diff[static_cast<size_t>(col)] * static_cast<double>(d) * static_cast<double>(d);
        }
    }
    std::vector<T> Y(static_cast<size_t>(m * p.lazy));
    double sum = 0;
    for (int64_t i1 = 0; i1 < n; i1 += p.lazy) {
        const int64_t bc = std::min(p.lazy, n - i1);
        gptq_detail::gemm_nn(m, bc, i1 + bc, D.data(), n, f.V.data() + i1, n, Y.data(), bc);
        for (int64_t k = 0; k < m * bc; ++k) sum += static_cast<double>(Y[static_cast<size_t>(k)]) * static_cast<double>(Y[static_cast<size_t>(k)]);
    }
    return sum - damp_term;
}

template <typename T>
GptqResult run(const Plan& p, const float* W, int64_t n_out, const double* H, const GptqOptions& o, ThreadPool& pool, std::vector<float>* values) {
    const Factor<T> f = factor_hessian<T>(p, H, pool);
    GptqResult res;
    res.blocks.resize(static_cast<size_t>(n_out) * p.row_bytes);
    res.damp_added = p.damp;
    res.dead_columns = p.n_dead;
    if (values) values->assign(static_cast<size_t>(n_out * p.n), 0.0f);
    const int64_t n_groups = (n_out + kRowGroup - 1) / kRowGroup;
    std::vector<double> err(static_cast<size_t>(n_groups)), rtn(static_cast<size_t>(n_groups));
    pool.parallel_for(n_groups, [&](int64_t g0, int64_t g1) {
        for (int64_t g = g0; g < g1; ++g) {
            const int64_t r0 = g * kRowGroup, m = std::min(kRowGroup, n_out - r0);
            err[static_cast<size_t>(g)] = sweep_rows<T>(p, f, W, r0, m, res.blocks.data() + static_cast<size_t>(r0) * p.row_bytes,
                                                        values ? values->data() : nullptr);
            if (o.compute_rtn_error) rtn[static_cast<size_t>(g)] = rtn_error_rows<T>(p, f, W, r0, m);
        }
    });
    for (double e : err) res.weighted_error += e;
    for (double e : rtn) res.rtn_error += e;
    return res;
}

}  // namespace

bool gptq_supports(DType type) {
    const DTypeTraits& t = dtype_traits(type);
    return formats::has_fixed_grid(type) && t.from_float && t.to_float && t.block_size <= 256;
}

namespace gptq_detail {

GptqResult gptq_quantize_probed(DType type, std::span<const float> W, int64_t n_out, int64_t n_in, std::span<const double> H,
                                std::span<const float> importance, const GptqOptions& options, ThreadPool* pool,
                                const SweepProbe& probe) {
    validate(type, W, n_out, n_in, H, importance, options);
    (void)kernel_table();  // sets OpenBLAS to one thread per call before the factorization's first call into it
    ThreadPool& tp = pool ? *pool : ThreadPool::global();
    Plan plan = make_plan(type, n_in, H, importance, options);
    plan.keep_zeros = options.keep_zeros && quant::looks_pruned(W.data(), n_out * n_in);
    if (probe.double_sweep) return run<double>(plan, W.data(), n_out, H.data(), options, tp, probe.values);
    return run<float>(plan, W.data(), n_out, H.data(), options, tp, probe.values);
}

}  // namespace gptq_detail

GptqResult gptq_quantize(DType type, std::span<const float> W, int64_t n_out, int64_t n_in, std::span<const double> H,
                         std::span<const float> importance, const GptqOptions& options, ThreadPool* pool) {
    return gptq_detail::gptq_quantize_probed(type, W, n_out, n_in, H, importance, options, pool, {});
}

void accumulate_hessian(std::span<double> H, std::span<const float> X, int64_t n_tokens, int64_t n_in, ThreadPool* pool) {
    if (n_in <= 0 || n_tokens < 0) throw InvalidArgument("[gptq] accumulate_hessian needs n_in > 0 and n_tokens ≥ 0 (got " + num(n_in) + ", " + num(n_tokens) + ")");
    if (static_cast<uint64_t>(H.size()) != static_cast<uint64_t>(n_in) * static_cast<uint64_t>(n_in))
        throw InvalidArgument("[gptq] H has " + num(int64_t(H.size())) + " values, not n_in² = " + num(n_in) + "²");
    if (static_cast<uint64_t>(X.size()) != static_cast<uint64_t>(n_tokens) * static_cast<uint64_t>(n_in))
        throw InvalidArgument("[gptq] X has " + num(int64_t(X.size())) + " values, not n_tokens · n_in = " + num(n_tokens) + " · " + num(n_in));
    ThreadPool& tp = pool ? *pool : ThreadPool::global();
    const KernelTable& kt = kernel_table();
    constexpr int64_t kTokens = 2048;  // tokens per product: the transposed slice is n_in · 8 KiB
    constexpr int64_t kTile = 256;
    struct Tile {
        int64_t i0, j0;
    };
    std::vector<Tile> tiles;
    for (int64_t i0 = 0; i0 < n_in; i0 += kTile)
        for (int64_t j0 = 0; j0 <= i0; j0 += kTile) tiles.push_back({i0, j0});
    std::vector<float> Xt;
    for (int64_t t0 = 0; t0 < n_tokens; t0 += kTokens) {
        const int64_t tc = std::min(kTokens, n_tokens - t0);
        Xt.resize(static_cast<size_t>(n_in * tc));
        // Xt: [n_in, tc] = X[t0 : t0 + tc]ᵀ, so each tile is one C = A·Bᵀ product over contiguous rows.
        tp.parallel_for((n_in + 63) / 64, [&](int64_t b0, int64_t b1) {
            for (int64_t c0 = b0 * 64; c0 < std::min(n_in, b1 * 64); c0 += 64)
                for (int64_t t = 0; t < tc; ++t) {
                    const float* x = X.data() + (t0 + t) * n_in;
                    for (int64_t c = c0; c < std::min(n_in, c0 + 64); ++c) Xt[static_cast<size_t>(c * tc + t)] = x[c];
                }
        });
        tp.parallel_for(static_cast<int64_t>(tiles.size()), [&](int64_t k0, int64_t k1) {
            std::vector<float> C(static_cast<size_t>(kTile * kTile));
            for (int64_t k = k0; k < k1; ++k) {
                const Tile tl = tiles[static_cast<size_t>(k)];
                const int64_t mi = std::min(kTile, n_in - tl.i0), nj = std::min(kTile, n_in - tl.j0);
                kt.gemm_f32.fn(mi, nj, tc, Xt.data() + tl.i0 * tc, tc, Xt.data() + tl.j0 * tc, tc, C.data(), nj);
                // The tile into H[i0.., j0..] and its transpose into H[j0.., i0..], each along H's rows (C is in
                // cache; H's rows are not). A diagonal tile adds its lower half to both sides, so H stays exactly
                // symmetric.
                const bool diagonal = tl.i0 == tl.j0;
                for (int64_t a = 0; a < mi; ++a) {
                    double* h = H.data() + (tl.i0 + a) * n_in + tl.j0;
                    const float* c = C.data() + a * nj;
                    for (int64_t b = 0; b < (diagonal ? a + 1 : nj); ++b) h[b] += c[b];
                }
                for (int64_t b = 0; b < nj; ++b) {
                    double* h = H.data() + (tl.j0 + b) * n_in + tl.i0;
                    for (int64_t a = diagonal ? b + 1 : 0; a < mi; ++a) h[a] += C[static_cast<size_t>(a * nj + b)];
                }
            }
        });
    }
}

}  // namespace cq
