// GPTQ into ggml blocks (cq/gptq.h), checked against independent computations: plain weighted rounding when H
// is diagonal (nothing to compensate), a textbook column-by-column GPTQ in double (explicit H⁻¹, its upper
// Cholesky factor, full updates) on awkward shapes, the reference dequantizers for every byte written, and
// tr(ΔHΔᵀ) recomputed in double from the decoded weights; thread-count invariance and input errors.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "cq/dtype.h"
#include "cq/error.h"
#include "cq/gptq.h"
#include "cq/thread_pool.h"
#include "cq/weighted_quant.h"
#include "formats/fixed_grid.h"
#include "quant/gptq_internal.h"
#include "quant/weighted_quant_block.h"

namespace cq {
namespace {

const DType kTypes[] = {DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q5_1, DType::Q8_0, DType::Q2_K,
                        DType::Q3_K, DType::Q4_K, DType::Q5_K, DType::Q6_K, DType::IQ4_NL, DType::IQ4_XS};

bool is_k_quant(DType t) { return dtype_traits(t).block_size == 256; }
std::string name(DType t) { return std::string(dtype_name(t)); }

std::vector<float> normal_values(size_t n, uint64_t seed, float sigma = 1.0f) {
    std::mt19937_64 rng(seed);
    std::normal_distribution<float> dist(0.0f, sigma);
    std::vector<float> v(n);
    for (float& x : v) x = dist(rng);
    return v;
}

// Calibration inputs with correlated channels, as a Linear's inputs have: an AR(1) chain across channels
// (neighbours correlate 0.9), channel scales spread over 30×, a few outlier channels.
std::vector<double> correlated_hessian(int64_t n, int64_t n_tokens, uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::normal_distribution<double> z(0.0, 1.0);
    std::uniform_real_distribution<double> u(0.0, 1.0);
    std::vector<double> scale(static_cast<size_t>(n));
    for (auto& s : scale) s = std::exp(std::log(30.0) * u(rng)) * (u(rng) < 0.02 ? 10.0 : 1.0);
    std::vector<double> H(static_cast<size_t>(n * n), 0.0), x(static_cast<size_t>(n));
    for (int64_t t = 0; t < n_tokens; ++t) {
        double prev = z(rng);
        for (int64_t c = 0; c < n; ++c) {
            prev = 0.9 * prev + std::sqrt(1 - 0.81) * z(rng);
            x[static_cast<size_t>(c)] = prev * scale[static_cast<size_t>(c)];
        }
        for (int64_t i = 0; i < n; ++i)
            for (int64_t j = 0; j <= i; ++j) H[static_cast<size_t>(i * n + j)] += x[static_cast<size_t>(i)] * x[static_cast<size_t>(j)];
    }
    for (int64_t i = 0; i < n; ++i)
        for (int64_t j = 0; j < i; ++j) H[static_cast<size_t>(j * n + i)] = H[static_cast<size_t>(i * n + j)];
    return H;
}

std::vector<float> dequantize(DType type, const std::vector<uint8_t>& blocks, int64_t n_out, int64_t n_in) {
    const DTypeTraits& t = dtype_traits(type);
    const size_t row_bytes = static_cast<size_t>(n_in / t.block_size) * t.bytes_per_block;
    std::vector<float> out(static_cast<size_t>(n_out * n_in));
    for (int64_t r = 0; r < n_out; ++r) t.to_float(blocks.data() + r * row_bytes, out.data() + r * n_in, n_in);
    return out;
}

// tr((W − Q) H (W − Q)ᵀ) in double.
double weighted_error(const std::vector<float>& W, const std::vector<float>& Q, const std::vector<double>& H, int64_t n_out, int64_t n) {
    double total = 0;
    std::vector<double> d(static_cast<size_t>(n));
    for (int64_t r = 0; r < n_out; ++r) {
        for (int64_t j = 0; j < n; ++j) d[static_cast<size_t>(j)] = double(W[static_cast<size_t>(r * n + j)]) - double(Q[static_cast<size_t>(r * n + j)]);
        for (int64_t i = 0; i < n; ++i) {
            double s = 0;
            for (int64_t j = 0; j < n; ++j) s += H[static_cast<size_t>(i * n + j)] * d[static_cast<size_t>(j)];
            total += d[static_cast<size_t>(i)] * s;
        }
    }
    return total;
}

std::vector<uint8_t> rtn_blocks(DType type, const std::vector<float>& W, int64_t n_out, int64_t n, const std::vector<float>& importance) {
    const DTypeTraits& t = dtype_traits(type);
    std::vector<uint8_t> out(static_cast<size_t>(n_out * (n / t.block_size)) * t.bytes_per_block);
    quantize_rows_weighted(type, W.data(), out.data(), n_out, n, importance.data());
    return out;
}

// ---- the fixed-grid helpers against the reference dequantizers ----

TEST(FixedGrid, LevelsAndGridsDecodeAsTheReferenceDequantizer) {
    for (DType type : kTypes) {
        const DTypeTraits& t = dtype_traits(type);
        const int64_t n = 1024;
        const auto x = normal_values(n, 7 + static_cast<uint64_t>(type), 0.05f);
        const auto imp = normal_values(n, 8, 1.0f);
        std::vector<float> importance(imp.size());
        for (size_t i = 0; i < imp.size(); ++i) importance[i] = std::fabs(imp[i]) + 0.1f;
        std::vector<uint8_t> blocks(static_cast<size_t>(n / t.block_size) * t.bytes_per_block);
        quantize_row_weighted(type, x.data(), blocks.data(), n, importance.data());
        std::vector<float> ref(static_cast<size_t>(n));
        t.to_float(blocks.data(), ref.data(), n);
        const int sub = formats::fixed_grid_sub_block(type);
        for (int64_t b = 0; b < n / t.block_size; ++b) {
            uint8_t* block = blocks.data() + b * t.bytes_per_block;
            std::vector<uint8_t> L(t.block_size), copy(block, block + t.bytes_per_block);
            formats::read_block_levels(type, block, L.data());
            for (uint32_t e = 0; e < t.block_size; ++e) {
                const formats::SubBlockGrid g = formats::sub_block_grid(type, block, static_cast<int>(e / sub));
                ASSERT_LT(L[e], g.n_levels) << name(type);
                const float v = formats::grid_value(g, L[e]);
                ASSERT_EQ(std::memcmp(&v, &ref[static_cast<size_t>(b * t.block_size + e)], 4), 0)
                        << name(type) << " block " << b << " element " << e << ": " << v << " vs " << ref[static_cast<size_t>(b * t.block_size + e)];
            }
            formats::write_block_levels(type, block, L.data());
            ASSERT_EQ(std::memcmp(block, copy.data(), t.bytes_per_block), 0) << name(type) << " block " << b << ": levels did not write back";
        }
    }
}

// ---- (a) a diagonal H leaves nothing to compensate: GPTQ is the format's weighted rounding ----

TEST(Gptq, DiagonalHessianIsWeightedRounding) {
    const int64_t n_out = 5, n = 512;
    const auto W = normal_values(static_cast<size_t>(n_out * n), 11, 0.02f);
    std::vector<double> H(static_cast<size_t>(n * n), 0.0);
    const auto h = normal_values(static_cast<size_t>(n), 12);
    std::vector<float> importance(static_cast<size_t>(n));
    for (int64_t j = 0; j < n; ++j) {
        H[static_cast<size_t>(j * n + j)] = 0.5 + std::fabs(double(h[static_cast<size_t>(j)]));
        importance[static_cast<size_t>(j)] = 0.2f + std::fabs(h[static_cast<size_t>((j * 7) % n)]);
    }
    for (DType type : kTypes) {
        const DTypeTraits& t = dtype_traits(type);
        const GptqResult g = gptq_quantize(type, W, n_out, n, H, importance);
        const auto rtn = rtn_blocks(type, W, n_out, n, importance);
        ASSERT_EQ(g.blocks.size(), rtn.size());
        // The k-quant searches end by rounding each weight to its nearest level under the stored scales, as the
        // sweep does: the same bytes.
        if (is_k_quant(type) && type != DType::IQ4_XS) {
            EXPECT_EQ(g.blocks, rtn) << name(type);
        }
        // Every type: the same grids; each weight at least as close to its level as plain rounding put it (the
        // legacy searches keep the levels of their best trial scale, not the nearest under the stored f16 one).
        const auto qg = dequantize(type, g.blocks, n_out, n), qr = dequantize(type, rtn, n_out, n);
        const int sub = formats::fixed_grid_sub_block(type);
        int64_t differ = 0;
        for (int64_t r = 0; r < n_out; ++r)
            for (int64_t j = 0; j < n; ++j) {
                const size_t k = static_cast<size_t>(r * n + j);
                const size_t off = static_cast<size_t>(r * (n / t.block_size) + j / t.block_size) * t.bytes_per_block;
                const int s = static_cast<int>((j % t.block_size) / sub);
                const auto ga = formats::sub_block_grid(type, g.blocks.data() + off, s), gb = formats::sub_block_grid(type, rtn.data() + off, s);
                ASSERT_TRUE(ga.step == gb.step && ga.offset == gb.offset) << name(type) << " row " << r << " column " << j;
                ASSERT_LE(std::fabs(W[k] - qg[k]), std::fabs(W[k] - qr[k]) * (1 + 1e-6f)) << name(type) << " row " << r << " column " << j;
                differ += qg[k] != qr[k];
            }
        std::printf("%-7s diagonal H: %lld of %lld weights on a nearer level than weighted rounding's\n", name(type).c_str(),
                    static_cast<long long>(differ), static_cast<long long>(n_out * n));
        if (is_k_quant(type) && type != DType::IQ4_XS) EXPECT_EQ(differ, 0) << name(type);
        else EXPECT_LE(differ, n_out * n / 50) << name(type);  // measured 3–13 of 2560 (Q8_0's roundf, f32 vs f16 scales)
        // Act-order changes nothing when no error moves; the default importance is diag(H) / mean(diag(H)).
        GptqOptions ao;
        ao.act_order = true;
        EXPECT_EQ(gptq_quantize(type, W, n_out, n, H, importance, ao).blocks, g.blocks) << name(type);
        double mean = 0;
        for (int64_t j = 0; j < n; ++j) mean += H[static_cast<size_t>(j * n + j)];
        mean /= double(n);
        std::vector<float> diag_importance(static_cast<size_t>(n));
        for (int64_t j = 0; j < n; ++j) diag_importance[static_cast<size_t>(j)] = float(H[static_cast<size_t>(j * n + j)] / mean);
        EXPECT_EQ(gptq_quantize(type, W, n_out, n, H, {}).blocks, gptq_quantize(type, W, n_out, n, H, diag_importance).blocks) << name(type);
    }
}

// ---- (b) + (c) correlated inputs: lower output error than rounding, every byte decodes to the sweep's value ----

TEST(Gptq, BeatsWeightedRoundingOnCorrelatedInputsAndDecodesToTheSweep) {
    const int64_t n_out = 48, n = 512;
    const auto H = correlated_hessian(n, 1536, 21);
    const auto W = normal_values(static_cast<size_t>(n_out * n), 22, 0.02f);
    std::vector<float> importance(static_cast<size_t>(n));
    for (int64_t j = 0; j < n; ++j) importance[static_cast<size_t>(j)] = float(H[static_cast<size_t>(j * n + j)] / 1536.0);
    for (bool act_order : {false, true})
        for (DType type : kTypes) {
            GptqOptions o;
            o.act_order = act_order;
            std::vector<float> values;
            gptq_detail::SweepProbe probe;
            probe.values = &values;
            const GptqResult g = gptq_detail::gptq_quantize_probed(type, W, n_out, n, H, importance, o, nullptr, probe);
            const auto q = dequantize(type, g.blocks, n_out, n);
            ASSERT_EQ(values.size(), q.size());
            for (size_t k = 0; k < q.size(); ++k)
                ASSERT_EQ(std::memcmp(&values[k], &q[k], 4), 0) << name(type) << " element " << k << ": sweep " << values[k] << ", decoded " << q[k];
            const double e_gptq = weighted_error(W, q, H, n_out, n);
            const double e_rtn = weighted_error(W, dequantize(type, rtn_blocks(type, W, n_out, n, importance), n_out, n), H, n_out, n);
            // The result's errors: the same quantities through ‖ΔV‖² in f32 products.
            EXPECT_NEAR(g.weighted_error, e_gptq, 2e-3 * e_gptq) << name(type);
            EXPECT_NEAR(g.rtn_error, e_rtn, 2e-3 * e_rtn) << name(type);
            const double ratio = e_gptq / e_rtn;
            std::printf("%-7s act_order %d: tr(ΔHΔᵀ) GPTQ %.4g, weighted rounding %.4g, ratio %.3f\n", name(type).c_str(), act_order, e_gptq, e_rtn, ratio);
            // Measured 0.21–0.37 without act-order and 0.11–0.24 with it (seeds as above); asserted with room to spare.
            EXPECT_LT(ratio, act_order ? 0.4 : 0.6) << name(type) << " act_order " << act_order;
        }
}

// ---- (d) the blocked sweep equals a textbook GPTQ in double ----

// Frantar et al.'s Algorithm 1 without blocks: H⁻¹ by Gauss-Jordan, its upper Cholesky factor U, then per
// column: round to the grid, scale the error by U_jj, subtract err·U[j, j+1:] from every later column. Grids
// from the format's search on the current values when the sweep reaches a block (act-order: before the sweep).
// H's side of the textbook algorithm: the sweep order and U, upper triangular with H⁻¹ = Uᵀ·U (damped H).
struct TextbookFactor {
    std::vector<int64_t> perm;
    std::vector<bool> dead;
    std::vector<double> U;
};
TextbookFactor textbook_factor(int64_t n, const std::vector<double>& H, double damp_fraction, bool act_order) {
    TextbookFactor f;
    f.dead.resize(static_cast<size_t>(n));
    double live = 0;
    int64_t n_live = 0;
    for (int64_t j = 0; j < n; ++j) {
        const double h = H[static_cast<size_t>(j * n + j)];
        f.dead[static_cast<size_t>(j)] = h == 0;
        if (h > 0) live += h, ++n_live;
    }
    const double damp = damp_fraction * live / double(n_live);
    f.perm.resize(static_cast<size_t>(n));
    for (int64_t j = 0; j < n; ++j) f.perm[static_cast<size_t>(j)] = j;
    auto key = [&](int64_t j) { return f.dead[static_cast<size_t>(j)] ? 1.0 : H[static_cast<size_t>(j * n + j)]; };
    if (act_order) std::stable_sort(f.perm.begin(), f.perm.end(), [&](int64_t a, int64_t b) { return key(a) > key(b); });
    const auto& perm = f.perm;
    // A = damped H in sweep order | I, reduced to I | H⁻¹ (Gauss-Jordan; positive definite: no pivoting needed).
    std::vector<double> A(static_cast<size_t>(n * 2 * n), 0.0);
    for (int64_t i = 0; i < n; ++i) {
        for (int64_t j = 0; j < n; ++j) A[static_cast<size_t>(i * 2 * n + j)] = H[static_cast<size_t>(perm[i] * n + perm[j])];
        A[static_cast<size_t>(i * 2 * n + i)] = (f.dead[static_cast<size_t>(perm[i])] ? 1.0 : H[static_cast<size_t>(perm[i] * n + perm[i])]) + damp;
        A[static_cast<size_t>(i * 2 * n + n + i)] = 1;
    }
    for (int64_t c = 0; c < n; ++c) {
        const double p = A[static_cast<size_t>(c * 2 * n + c)];
        for (int64_t k = 0; k < 2 * n; ++k) A[static_cast<size_t>(c * 2 * n + k)] /= p;
        for (int64_t i = 0; i < n; ++i) {
            if (i == c) continue;
            const double m = A[static_cast<size_t>(i * 2 * n + c)];
            if (m == 0) continue;
            for (int64_t k = 0; k < 2 * n; ++k) A[static_cast<size_t>(i * 2 * n + k)] -= m * A[static_cast<size_t>(c * 2 * n + k)];
        }
    }
    // U = Lᵀ for the lower Cholesky factor L of H⁻¹.
    f.U.assign(static_cast<size_t>(n * n), 0.0);
    auto& U = f.U;
    auto hinv = [&](int64_t i, int64_t j) { return A[static_cast<size_t>(i * 2 * n + n + j)]; };
    for (int64_t j = 0; j < n; ++j) {
        double d = hinv(j, j);
        for (int64_t k = 0; k < j; ++k) d -= U[static_cast<size_t>(k * n + j)] * U[static_cast<size_t>(k * n + j)];
        const double ujj = std::sqrt(d);
        U[static_cast<size_t>(j * n + j)] = ujj;
        for (int64_t i = j + 1; i < n; ++i) {
            double s = hinv(i, j);
            for (int64_t k = 0; k < j; ++k) s -= U[static_cast<size_t>(k * n + i)] * U[static_cast<size_t>(k * n + j)];
            U[static_cast<size_t>(j * n + i)] = s / ujj;
        }
    }
    return f;
}

// Frantar et al.'s Algorithm 1 without blocks: per column, round to the grid, scale the error by U_jj, subtract
// err·U[j, j+1:] from every later column at once. Grids from the format's search on the current values when the
// sweep reaches a block (act-order: from the weights before the sweep).
struct Textbook {
    std::vector<uint8_t> blocks;
    std::vector<float> values;
};
Textbook textbook_gptq(DType type, const std::vector<float>& W, int64_t n_out, int64_t n, const TextbookFactor& f,
                       const std::vector<float>& importance, bool act_order) {
    const DTypeTraits& t = dtype_traits(type);
    const int64_t G = t.block_size, sub = formats::fixed_grid_sub_block(type);
    const size_t row_bytes = static_cast<size_t>(n / G) * t.bytes_per_block;
    const auto& U = f.U;
    Textbook out;
    out.blocks.resize(static_cast<size_t>(n_out) * row_bytes);
    out.values.resize(static_cast<size_t>(n_out * n));
    std::vector<float> row(static_cast<size_t>(n)), xb(static_cast<size_t>(G));
    std::vector<double> w(static_cast<size_t>(n));
    std::vector<uint8_t> L(static_cast<size_t>(n));
    std::vector<formats::SubBlockGrid> grids(static_cast<size_t>(n / sub));
    for (int64_t r = 0; r < n_out; ++r) {
        uint8_t* orow = out.blocks.data() + r * row_bytes;
        for (int64_t c = 0; c < n; ++c) row[static_cast<size_t>(c)] = f.dead[static_cast<size_t>(c)] ? 0.0f : W[static_cast<size_t>(r * n + c)];
        const float sigma2 = row_mean_square(row.data(), n);
        auto choose = [&](const float* x, int64_t c0) {
            uint8_t* block = orow + (c0 / G) * t.bytes_per_block;
            quantize_block_weighted(type, x, block, importance.data() + c0, sigma2);
            formats::read_block_levels(type, block, L.data() + c0);
            for (int64_t s = 0; s < G / sub; ++s) grids[static_cast<size_t>(c0 / sub + s)] = formats::sub_block_grid(type, block, int(s));
        };
        if (act_order)
            for (int64_t c0 = 0; c0 < n; c0 += G) choose(row.data() + c0, c0);
        for (int64_t j = 0; j < n; ++j) w[static_cast<size_t>(j)] = row[static_cast<size_t>(f.perm[static_cast<size_t>(j)])];
        for (int64_t j = 0; j < n; ++j) {
            const int64_t col = f.perm[static_cast<size_t>(j)];
            if (!act_order && col % G == 0) {
                for (int64_t k = 0; k < G; ++k) xb[static_cast<size_t>(k)] = float(w[static_cast<size_t>(j + k)]);
                choose(xb.data(), col);
            }
            const auto& g = grids[static_cast<size_t>(col / sub)];
            int level = formats::nearest_grid_level(g, float(w[static_cast<size_t>(j)]));
            if (level < 0) level = L[static_cast<size_t>(col)];
            L[static_cast<size_t>(col)] = uint8_t(level);
            const float q = formats::grid_value(g, level);
            out.values[static_cast<size_t>(r * n + col)] = q;
            const double err = (w[static_cast<size_t>(j)] - q) / U[static_cast<size_t>(j * n + j)];
            for (int64_t k = j + 1; k < n; ++k) w[static_cast<size_t>(k)] -= err * U[static_cast<size_t>(j * n + k)];
        }
        for (int64_t c0 = 0; c0 < n; c0 += G) formats::write_block_levels(type, orow + (c0 / G) * t.bytes_per_block, L.data() + c0);
    }
    return out;
}

TEST(Gptq, BlockedSweepEqualsTextbookGptq) {
    const int64_t n_out = 131;  // odd, and more than one group of 128 rows
    for (bool k_quants : {false, true}) {
        // Shapes the types allow: 256·k + a non-multiple of 256 for the 32-element formats; lazy batches that do
        // not divide n_in; two dead input channels.
        const int64_t n = k_quants ? 768 : 608, block_size = k_quants ? 384 : 96;
        auto H = correlated_hessian(n, 900, 31 + n);
        for (int64_t dead : {int64_t{5}, n - 40})
            for (int64_t j = 0; j < n; ++j) H[static_cast<size_t>(dead * n + j)] = H[static_cast<size_t>(j * n + dead)] = 0;
        const auto W = normal_values(static_cast<size_t>(n_out * n), 32, 0.02f);
        std::vector<float> importance(static_cast<size_t>(n));
        for (int64_t j = 0; j < n; ++j) importance[static_cast<size_t>(j)] = float(H[static_cast<size_t>(j * n + j)] / 900.0) + 1e-3f;
        for (bool act_order : {false, true}) {
            GptqOptions o;
            o.act_order = act_order;
            o.block_size = block_size;
            o.damp = 0.02;
            const TextbookFactor factor = textbook_factor(n, H, o.damp, act_order);
            for (DType type : kTypes) {
                if (is_k_quant(type) != k_quants) continue;
                const Textbook ref = textbook_gptq(type, W, n_out, n, factor, importance, act_order);
                std::vector<float> v64, v32;
                gptq_detail::SweepProbe p64;
                p64.double_sweep = true;
                p64.values = &v64;
                const GptqResult g64 = gptq_detail::gptq_quantize_probed(type, W, n_out, n, H, importance, o, nullptr, p64);
                // In double the two orders of arithmetic agree to ~1e-13: every level and scale the same.
                EXPECT_EQ(g64.blocks, ref.blocks) << name(type) << " act_order " << act_order;
                EXPECT_EQ(v64, ref.values) << name(type) << " act_order " << act_order;
                // In f32 (the library's sweep) a weight within ~1e-6 of a rounding boundary, or a block's scale search
                // near a tie, may go the other way and move the rest of its row a little: most levels agree, and
                // the error is the same to 1 %.
                gptq_detail::SweepProbe p32;
                p32.values = &v32;
                const GptqResult g32 = gptq_detail::gptq_quantize_probed(type, W, n_out, n, H, importance, o, nullptr, p32);
                int64_t differ = 0;
                for (size_t i = 0; i < v32.size(); ++i) differ += v32[i] != ref.values[i];
                EXPECT_LE(differ, int64_t(v32.size() / 25)) << name(type) << " act_order " << act_order;
                EXPECT_NEAR(g32.weighted_error, g64.weighted_error, 0.01 * g64.weighted_error) << name(type);
                std::printf("%-7s act_order %d: f32 sweep levels differing from the textbook's: %lld of %zu\n", name(type).c_str(), act_order,
                            static_cast<long long>(differ), v32.size());
            }
        }
    }
}

// ---- (e) the same bytes for any number of threads ----

TEST(Gptq, SameBytesForAnyThreadCount) {
    const int64_t n_out = 300, n = 512;
    const auto H = correlated_hessian(n, 700, 41);
    const auto W = normal_values(static_cast<size_t>(n_out * n), 42, 0.02f);
    for (DType type : {DType::Q4_0, DType::Q4_K, DType::Q6_K, DType::IQ4_XS})
        for (bool act_order : {false, true}) {
            GptqOptions o;
            o.act_order = act_order;
            ThreadPool p1(1), p2(2), p3(3);
            const GptqResult a = gptq_quantize(type, W, n_out, n, H, {}, o, &p1);
            const GptqResult b = gptq_quantize(type, W, n_out, n, H, {}, o, &p2);
            const GptqResult c = gptq_quantize(type, W, n_out, n, H, {}, o, &p3);
            EXPECT_EQ(a.blocks, b.blocks) << name(type);
            EXPECT_EQ(a.blocks, c.blocks) << name(type);
            EXPECT_EQ(a.weighted_error, b.weighted_error);
            EXPECT_EQ(a.weighted_error, c.weighted_error);
            EXPECT_EQ(a.rtn_error, c.rtn_error);
        }
}

// ---- the Hessian accumulator ----

TEST(Gptq, AccumulateHessianIsXtXForAnyThreadCount) {
    const int64_t n_tokens = 2500, n = 300;  // two token slices, a partial tile
    const auto X = normal_values(static_cast<size_t>(n_tokens * n), 51);
    std::vector<double> ref(static_cast<size_t>(n * n), 0.0);
    for (int64_t t = 0; t < n_tokens; ++t)
        for (int64_t i = 0; i < n; ++i)
            for (int64_t j = 0; j < n; ++j)
                ref[static_cast<size_t>(i * n + j)] += double(X[static_cast<size_t>(t * n + i)]) * double(X[static_cast<size_t>(t * n + j)]);
    ThreadPool p1(1), p3(3);
    std::vector<double> a(ref.size(), 0.0), b(ref.size(), 0.0);
    accumulate_hessian(a, X, n_tokens, n, &p1);
    accumulate_hessian(b, X, n_tokens, n, &p3);
    EXPECT_EQ(a, b);
    for (int64_t i = 0; i < n; ++i)
        for (int64_t j = 0; j < n; ++j) {
            const size_t k = static_cast<size_t>(i * n + j);
            ASSERT_EQ(a[k], a[static_cast<size_t>(j * n + i)]) << i << "," << j;
            // f32 products over ≤ 2048 tokens: |error| ≤ ~eps · tokens · max |x_i x_j|, far below this bound.
            ASSERT_NEAR(a[k], ref[k], 1e-4 * std::sqrt(ref[static_cast<size_t>(i * n + i)] * ref[static_cast<size_t>(j * n + j)])) << i << "," << j;
        }
    // Two calls add up.
    std::vector<double> c(ref.size(), 0.0);
    accumulate_hessian(c, std::span<const float>(X).first(static_cast<size_t>(1000 * n)), 1000, n, &p1);
    accumulate_hessian(c, std::span<const float>(X).subspan(static_cast<size_t>(1000 * n)), n_tokens - 1000, n, &p1);
    for (size_t k = 0; k < c.size(); ++k) ASSERT_NEAR(c[k], ref[k], 1e-4 * std::sqrt(ref[(k / n) * n + k / n] * ref[(k % n) * n + k % n]));
}

// ---- (f) bad input: one InvalidArgument naming what ----

void expect_error(const std::function<void()>& f, const std::string& fragment) {
    try {
        f();
        ADD_FAILURE() << "no error; expected one mentioning '" << fragment << "'";
    } catch (const InvalidArgument& e) {
        EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
    }
}

TEST(Gptq, BadInputNamesWhat) {
    const int64_t n_out = 3, n = 256;
    auto W = normal_values(static_cast<size_t>(n_out * n), 61, 0.02f);
    std::vector<double> H(static_cast<size_t>(n * n), 0.0);
    for (int64_t j = 0; j < n; ++j) H[static_cast<size_t>(j * n + j)] = 1;
    expect_error([&] { gptq_quantize(DType::Q4_K, std::span<const float>(W).first(3 * 128), 3, 128, std::span<const double>(H).first(128 * 128), {}); },
                 "n_in = 128 is not a whole number of q4_K blocks of 256");
    expect_error([&] { gptq_quantize(DType::F16, W, n_out, n, H, {}); }, "type f16 is not supported");
    expect_error([&] { gptq_quantize(DType::Q4_0, W, n_out, n, std::span<const double>(H).first(n * n - 1), {}); }, "H has 65535 values, not n_in² = 256²");
    expect_error([&] { gptq_quantize(DType::Q4_0, std::span<const float>(W).first(W.size() - 1), n_out, n, H, {}); }, "W has 767 values");
    expect_error([&] { gptq_quantize(DType::Q4_0, W, n_out, n, H, std::vector<float>(10, 1.0f)); }, "importance row has 10 values");
    auto bad_w = W;
    bad_w[static_cast<size_t>(1 * n + 3)] = std::nanf("");
    expect_error([&] { gptq_quantize(DType::Q4_0, bad_w, n_out, n, H, {}); }, "W has a non-finite value (nan) at row 1, column 3");
    bad_w[static_cast<size_t>(1 * n + 3)] = INFINITY;
    expect_error([&] { gptq_quantize(DType::Q4_0, bad_w, n_out, n, H, {}); }, "at row 1, column 3");
    auto asym = H;
    asym[static_cast<size_t>(2 * n + 7)] = 0.5;
    expect_error([&] { gptq_quantize(DType::Q4_0, W, n_out, n, asym, {}); }, "H is not symmetric: H[7][2]");
    auto neg = H;
    neg[static_cast<size_t>(4 * n + 4)] = -1;
    expect_error([&] { gptq_quantize(DType::Q4_0, W, n_out, n, neg, {}); }, "H[4][4] = -1");
    // Indefinite: channels 0 and 1 correlate beyond what any data gives (|H_01| > √(H_00·H_11)), more than 1 % damping mends.
    auto indefinite = H;
    indefinite[1] = indefinite[static_cast<size_t>(n)] = 1.5;
    expect_error([&] { gptq_quantize(DType::Q4_0, W, n_out, n, indefinite, {}); }, "not positive definite after damping");
    GptqOptions o;
    o.damp = -1;
    expect_error([&] { gptq_quantize(DType::Q4_0, W, n_out, n, H, {}, o); }, "damp must be");
    o = {};
    o.block_size = 0;
    expect_error([&] { gptq_quantize(DType::Q4_0, W, n_out, n, H, {}, o); }, "block_size must be positive");
    auto nan_h = H;
    nan_h[static_cast<size_t>(9 * n + 3)] = NAN;
    expect_error([&] { gptq_quantize(DType::Q4_0, W, n_out, n, nan_h, {}); }, "H[9][3] or its mirror is not finite");
}

}  // namespace
}  // namespace cq
