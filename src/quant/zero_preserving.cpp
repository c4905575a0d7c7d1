// Zero-preserving block searches for the formats with a min (Q4_1, Q5_1, Q2_K, Q4_K, Q5_K): a pruned tensor's exact
// zeros decode to exact zeros. Each sub-block is an affine grid step·(L − zero); the search fits (step, zero) per
// sub-block by weighted least squares, then encodes the scales so that level `zero` decodes to exactly 0.0f as the
// reference dequantizer evaluates it (see zero_preserving.h for the encodings).

#include "quant/zero_preserving.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "cq/error.h"
#include "cq/weighted_quant.h"
#include "formats/blocks.h"
#include "formats/codec_math.h"
#include "formats/fixed_grid.h"
#include "kernels/kernel_decls.h"
#include "quant/weighted_quant_block.h"

namespace cq::quant {

namespace {

using formats::nearest_int;
using kernels::f16_to_f32_scalar;
using kernels::f32_to_f16_scalar;

constexpr double kInf = std::numeric_limits<double>::infinity();

// The layout facts the search needs: sub-block length, largest level, largest scale / min code (K-quants).
struct MinFormat {
    int block = 0, sub = 0, nmax = 0, scmax = 0, mmax = 0;
    bool super = false;  // K-quant: 6- or 4-bit sub-block scales under f16 d / dmin
};

MinFormat min_format(DType type) {
    switch (type) {
        case DType::Q4_1: return {32, 32, 15, 0, 0, false};
        case DType::Q5_1: return {32, 32, 31, 0, 0, false};
        case DType::Q2_K: return {256, 16, 3, 15, 15, true};
        case DType::Q4_K: return {256, 32, 15, 63, 63, true};
        case DType::Q5_K: return {256, 32, 31, 63, 63, true};
        default: return {};
    }
}

// Weighted squared error of one sub-block on the grid value(L) = a·L − b (a, b as the dequantizer computes them),
// levels nearest to x/a + zero, clamped; masked entries sit at `zero` and cost nothing (their decode is exactly 0).
double grid_error(const float* x, const float* w, const uint8_t* mask, int n, int nmax, float a, float b, int zero,
                  uint8_t* levels = nullptr) {
    double err = 0;
    const float ia = a > 0 ? 1.0f / a : 0.0f;
    for (int i = 0; i < n; ++i) {
        int L = zero;
        if (!mask[i] && a > 0) L = std::clamp(nearest_int(std::clamp(x[i] * ia, -4.0e6f, 4.0e6f)) + zero, 0, nmax);
        if (levels) levels[i] = static_cast<uint8_t>(L);
        if (mask[i]) continue;
        const float v = a * static_cast<float>(L) - b;
        const double d = static_cast<double>(x[i]) - v;
        err += static_cast<double>(w[i]) * d * d;
    }
    return err;
}

// For each zero level z ∈ [0, nmax], the best continuous step of the sub-block (grid step·(L − z)) and its error:
// steps from the range that level z must cover, shrunk a little (clipping the extremes), each refined once by
// least squares on its rounding.
void fit_steps(const float* x, const float* w, const uint8_t* mask, int n, int nmax, std::vector<float>& step, std::vector<double>& err) {
    step.assign(static_cast<size_t>(nmax + 1), 0.0f);
    err.assign(static_cast<size_t>(nmax + 1), kInf);
    float mn = 0, mx = 0;
    for (int i = 0; i < n; ++i)
        if (!mask[i]) mn = std::min(mn, x[i]), mx = std::max(mx, x[i]);
    if (mn == 0 && mx == 0) {  // nothing but zeros: any grid with a zero level holds the block exactly
        std::fill(err.begin(), err.end(), 0.0);
        return;
    }
    std::vector<uint8_t> L(static_cast<size_t>(n));
    for (int z = 0; z <= nmax; ++z) {
        const double up = z < nmax ? mx / static_cast<double>(nmax - z) : (mx > 0 ? kInf : 0);
        const double down = z > 0 ? -mn / static_cast<double>(z) : (mn < 0 ? kInf : 0);
        const double s0 = std::max(up, down);
        if (!std::isfinite(s0) || s0 <= 0) continue;
        for (const double f : {1.0, 0.95, 0.9, 0.85, 0.8, 0.7}) {
            float s = static_cast<float>(s0 * f);
            double e = grid_error(x, w, mask, n, nmax, s, s * static_cast<float>(z), z, L.data());
            // Least squares for the step given the levels: s* = Σ w·x·(L − z) / Σ w·(L − z)².
            double num = 0, den = 0;
            for (int i = 0; i < n; ++i) {
                if (mask[i]) continue;
                const double q = static_cast<double>(L[static_cast<size_t>(i)]) - z;
                num += w[i] * x[i] * q, den += w[i] * q * q;
            }
            if (den > 0 && num > 0) {
                const float s2 = static_cast<float>(num / den);
                const double e2 = grid_error(x, w, mask, n, nmax, s2, s2 * static_cast<float>(z), z);
                if (e2 < e) e = e2, s = s2;
            }
            if (e < err[static_cast<size_t>(z)]) err[static_cast<size_t>(z)] = e, step[static_cast<size_t>(z)] = s;
        }
    }
}

std::vector<float> search_weights(const float* x, const float* importance, int n) {
    double ss = 0;
    for (int i = 0; i < n; ++i) ss += static_cast<double>(x[i]) * x[i];
    const float rms = static_cast<float>(std::sqrt(ss / n));
    std::vector<float> w(static_cast<size_t>(n));
    for (int i = 0; i < n; ++i) w[static_cast<size_t>(i)] = (importance ? importance[i] : 1.0f) * (rms + std::fabs(x[i]));
    if (std::all_of(w.begin(), w.end(), [](float v) { return !(v > 0); })) std::fill(w.begin(), w.end(), 1.0f);
    return w;
}

// Q4_1 / Q5_1: x = q·d + m. With m = −z·d exactly representable in f16, q = z decodes to z·d − z·d = 0 (with or
// without a fused multiply-add). d is moved to the nearest f16 for which z·d is itself an f16.
void block_legacy_min(DType type, const MinFormat& f, const float* x, const uint8_t* mask, const float* importance, void* out) {
    const std::vector<float> w = search_weights(x, importance, f.block);
    std::vector<float> step;
    std::vector<double> err;
    fit_steps(x, w.data(), mask, f.block, f.nmax, step, err);
    double best = kInf;
    uint16_t best_d = 0, best_m = 0;
    std::vector<uint8_t> L(static_cast<size_t>(f.block)), best_L(static_cast<size_t>(f.block), 0);
    for (int z = 0; z <= f.nmax; ++z) {
        if (!std::isfinite(err[static_cast<size_t>(z)])) continue;
        const float s = step[static_cast<size_t>(z)];
        const uint16_t h = f32_to_f16_scalar(s);
        for (int k = 0; k <= 64; ++k) {
            bool found = false;
            for (const int sign : {1, -1}) {
                const int bits = static_cast<int>(h) + sign * k;
                if (bits < 0 || bits >= 0x7C00 || (k == 0 && sign < 0)) continue;
                const float d = f16_to_f32_scalar(static_cast<uint16_t>(bits));
                const float zd = static_cast<float>(z) * d;
                const uint16_t m = f32_to_f16_scalar(-zd);
                if (f16_to_f32_scalar(m) != -zd) continue;
                const double e = grid_error(x, w.data(), mask, f.block, f.nmax, d, zd, z, L.data());
                if (e < best) best = e, best_d = static_cast<uint16_t>(bits), best_m = m, best_L = L;
                found = true;
            }
            if (found) break;
        }
    }
    std::memset(out, 0, dtype_traits(type).bytes_per_block);
    if (type == DType::Q4_1) {
        static_cast<formats::BlockQ4_1*>(out)->d = best_d;
        static_cast<formats::BlockQ4_1*>(out)->m = best_m;
    } else {
        static_cast<formats::BlockQ5_1*>(out)->d = best_d;
        static_cast<formats::BlockQ5_1*>(out)->m = best_m;
    }
    formats::write_block_levels(type, out, best_L.data());  // all zeros (with d = m = 0) when nothing fitted
}

void set_scale_min_k4(int j, uint8_t* q, int ls, int lm) {
    if (j < 4) {
        q[j] = static_cast<uint8_t>((q[j] & 0xC0) | ls);
        q[j + 4] = static_cast<uint8_t>((q[j + 4] & 0xC0) | lm);
    } else {
        q[j + 4] = static_cast<uint8_t>((ls & 0xF) | ((lm & 0xF) << 4));
        q[j - 4] = static_cast<uint8_t>(q[j - 4] | ((ls >> 4) << 6));
        q[j] = static_cast<uint8_t>(q[j] | ((lm >> 4) << 6));
    }
}

// Q2_K / Q4_K / Q5_K: x = d·sc_j·q − dmin·m_j. With dmin = d·2^e and m_j = sc_j·z_j / 2^e both products equal
// d·sc_j·z_j exactly (≤ 21 significant bits), so q = z_j decodes to 0. e trades the mins' range for freedom in
// (sc_j, z_j); each e and two global steps d are tried and the lowest total error kept.
void block_k_min(DType type, const MinFormat& f, const float* x, const uint8_t* mask, const float* importance, void* out) {
    const int n_sub = f.block / f.sub;
    const std::vector<float> w = search_weights(x, importance, f.block);
    std::vector<std::vector<float>> steps(static_cast<size_t>(n_sub));
    std::vector<std::vector<double>> errs(static_cast<size_t>(n_sub));
    float smax = 0;
    for (int j = 0; j < n_sub; ++j) {
        fit_steps(x + j * f.sub, w.data() + j * f.sub, mask + j * f.sub, f.sub, f.nmax, steps[static_cast<size_t>(j)], errs[static_cast<size_t>(j)]);
        // d follows each sub-block's best fit (its lowest-error zero level), not every level's step: a far zero level
        // needs a large step that would leave the good fits only a few scale codes.
        const auto& e = errs[static_cast<size_t>(j)];
        const size_t zbest = static_cast<size_t>(std::min_element(e.begin(), e.end()) - e.begin());
        if (std::isfinite(e[zbest])) smax = std::max(smax, steps[static_cast<size_t>(j)][zbest]);
    }
    struct Choice { int sc = 0, m = 0; };
    double best = kInf;
    uint16_t best_d = 0, best_dmin = 0;
    std::vector<Choice> best_c(static_cast<size_t>(n_sub));
    std::vector<uint8_t> best_L(static_cast<size_t>(f.block), 0), L(static_cast<size_t>(f.sub));
    std::vector<Choice> cur(static_cast<size_t>(n_sub));
    std::vector<uint8_t> cur_L(static_cast<size_t>(f.block));
    if (smax > 0) {
        for (int e = 0; e <= 4; ++e) {
            // The largest fit takes scale code `top`: a smaller top leaves (sc, z) pairs with sc·z divisible by 2^e.
            for (const float top_fraction : {1.0f, 0.9f, 0.8f, 0.7f, 0.6f, 0.5f, 0.4f, 0.3f, 0.2f}) {
                const float top = std::max(1.0f, std::round(top_fraction * static_cast<float>(f.scmax)));
                const uint16_t dh = f32_to_f16_scalar(smax / top);
                const float d = f16_to_f32_scalar(dh);
                if (!(d > 0) || !std::isfinite(d)) continue;
                const float dmin = std::ldexp(d, e);
                const uint16_t mh = f32_to_f16_scalar(dmin);
                if (f16_to_f32_scalar(mh) != dmin) continue;
                double total = 0;
                for (int j = 0; j < n_sub && total < best; ++j) {
                    const float* xs = x + j * f.sub;
                    const float* ws = w.data() + j * f.sub;
                    const uint8_t* ms = mask + j * f.sub;
                    double bj = kInf;
                    Choice cj;
                    for (int z = 0; z <= f.nmax; ++z) {
                        const double fitted = errs[static_cast<size_t>(j)][static_cast<size_t>(z)];
                        if (!std::isfinite(fitted)) continue;
                        const float base = steps[static_cast<size_t>(j)][static_cast<size_t>(z)] / d;
                        const int hi = std::min(f.scmax, static_cast<int>(std::ceil(std::min(base, 1e4f))) + 1);
                        const int lo = std::max(0, std::min(hi, static_cast<int>(std::floor(base))) - 2);
                        for (int sc = lo; sc <= hi; ++sc) {
                            const int prod = sc * z;
                            if (prod % (1 << e) != 0 || (prod >> e) > f.mmax) continue;
                            const int m = prod >> e;
                            const float a = d * static_cast<float>(sc), b = dmin * static_cast<float>(m);
                            const double ej = grid_error(xs, ws, ms, f.sub, f.nmax, a, b, z, L.data());
                            if (ej < bj) {
                                bj = ej, cj = {sc, m};
                                std::copy(L.begin(), L.end(), cur_L.begin() + j * f.sub);
                            }
                        }
                    }
                    if (!std::isfinite(bj)) {  // no admissible (sc, z): sc = 0 decodes the whole sub-block to 0
                        bj = grid_error(xs, ws, ms, f.sub, f.nmax, 0.0f, 0.0f, 0, L.data());
                        cj = {0, 0};
                        std::copy(L.begin(), L.end(), cur_L.begin() + j * f.sub);
                    }
                    cur[static_cast<size_t>(j)] = cj;
                    total += bj;
                }
                if (total < best) best = total, best_d = dh, best_dmin = mh, best_c = cur, best_L = cur_L;
            }
        }
    }
    std::memset(out, 0, dtype_traits(type).bytes_per_block);
    if (type == DType::Q2_K) {
        auto& b = *static_cast<formats::BlockQ2_K*>(out);
        b.d = best_d, b.dmin = best_dmin;
        for (int j = 0; j < n_sub; ++j)
            b.scales[j] = static_cast<uint8_t>(best_c[static_cast<size_t>(j)].sc | (best_c[static_cast<size_t>(j)].m << 4));
    } else {
        uint8_t* scales = type == DType::Q4_K ? static_cast<formats::BlockQ4_K*>(out)->scales : static_cast<formats::BlockQ5_K*>(out)->scales;
        if (type == DType::Q4_K) static_cast<formats::BlockQ4_K*>(out)->d = best_d, static_cast<formats::BlockQ4_K*>(out)->dmin = best_dmin;
        else static_cast<formats::BlockQ5_K*>(out)->d = best_d, static_cast<formats::BlockQ5_K*>(out)->dmin = best_dmin;
        for (int j = 0; j < n_sub; ++j) set_scale_min_k4(j, scales, best_c[static_cast<size_t>(j)].sc, best_c[static_cast<size_t>(j)].m);
    }
    formats::write_block_levels(type, out, best_L.data());
}

}  // namespace

bool looks_pruned(const float* w, int64_t n) {
    if (n <= 0) return false;
    int64_t zeros = 0;
    for (int64_t i = 0; i < n; ++i) zeros += w[i] == 0.0f;
    return static_cast<double>(zeros) >= kPrunedZeroFraction * static_cast<double>(n);
}

bool has_zero_preserving_search(DType type) { return min_format(type).block > 0; }

DType zero_preserving_type(DType type) {
    return type == DType::IQ4_NL || type == DType::IQ4_XS ? DType::Q4_0 : type;
}

void quantize_block_keep_zeros(DType type, const float* x, const uint8_t* mask, const float* importance, void* out) {
    const MinFormat f = min_format(type);
    const DTypeTraits& t = dtype_traits(type);
    std::vector<float> xz(x, x + t.block_size);
    for (uint32_t i = 0; i < t.block_size; ++i)
        if (mask[i]) xz[i] = 0.0f;
    if (f.block == 0) {
        if (zero_preserving_type(type) != type || !t.from_float)
            throw Unsupported("[quantize] type " + std::string(t.name) + " has no exact 0 level; a pruned tensor needs " +
                              std::string(dtype_name(zero_preserving_type(type))) + " instead");
        quantize_block_weighted(type, xz.data(), out, importance, row_mean_square(xz.data(), t.block_size));
        return;
    }
    if (f.super) block_k_min(type, f, xz.data(), mask, importance, out);
    else block_legacy_min(type, f, xz.data(), mask, importance, out);
}

int64_t count_lost_zeros(DType type, const float* x, const void* q, int64_t n) {
    std::vector<float> y(static_cast<size_t>(n));
    dtype_traits(type).to_float(q, y.data(), n);
    int64_t lost = 0;
    for (int64_t i = 0; i < n; ++i) lost += x[i] == 0.0f && y[static_cast<size_t>(i)] != 0.0f;
    return lost;
}

int64_t restore_row_zeros(DType type, const float* x, void* out, int64_t n, const float* importance) {
    const DTypeTraits& t = dtype_traits(type);
    if (!t.is_quantized || !t.to_float) return 0;
    const int64_t bs = t.block_size;
    std::vector<float> y(static_cast<size_t>(bs));
    std::vector<uint8_t> mask(static_cast<size_t>(bs));
    int64_t redone = 0;
    for (int64_t b = 0; b < n / bs; ++b) {
        const float* xb = x + b * bs;
        uint8_t* qb = static_cast<uint8_t*>(out) + b * t.bytes_per_block;
        bool any = false;
        for (int64_t i = 0; i < bs; ++i) any |= (mask[static_cast<size_t>(i)] = xb[i] == 0.0f) != 0;
        if (!any) continue;
        t.to_float(qb, y.data(), bs);
        bool lost = false;
        for (int64_t i = 0; i < bs; ++i) lost |= mask[static_cast<size_t>(i)] && y[static_cast<size_t>(i)] != 0.0f;
        if (!lost) continue;
        quantize_block_keep_zeros(type, xb, mask.data(), importance ? importance + b * bs : nullptr, qb);
        ++redone;
    }
    return redone;
}

}  // namespace cq::quant
