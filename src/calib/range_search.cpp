// The searching methods: MSE (least expected u8 quantize→dequantize error, clipping included) and
// entropy (TensorRT's KL threshold), both computed from the histogram alone.
#include <algorithm>
#include <cmath>
#include <limits>

#include "cq/calibration.h"
#include "cq/error.h"

namespace cq::calib {

namespace {

// Expected squared error of u8 quantization over the histogram, each bin's mass spread evenly over the
// part of the bin inside [min, max]. Values inside the representable range cost scale²/12 (rounding);
// values outside cost their squared distance to the range (clipping), integrated exactly. Sums run
// from each end inwards, so a small tail is not lost against the bulk; each candidate costs O(1).
class QuantErrorModel {
public:
    QuantErrorModel(const std::vector<int64_t>& counts, double half_range, double min, double max)
        : n_(static_cast<int64_t>(counts.size())), r_(half_range), w_(2 * half_range / n_) {
        a_.resize(n_), b_.resize(n_), c_.resize(n_);
        below_.assign(n_ + 1, {}), above_.assign(n_ + 1, {});
        for (int64_t j = 0; j < n_; ++j) {
            c_[j] = static_cast<double>(counts[j]);
            a_[j] = std::max(edge(j), min), b_[j] = std::min(edge(j + 1), max);
            if (c_[j] == 0 || b_[j] < a_[j]) a_[j] = b_[j] = edge(j);
        }
        for (int64_t j = 0; j < n_; ++j) below_[j + 1] = below_[j] + moments(j);  // bins < j+1
        for (int64_t j = n_ - 1; j >= 0; --j) above_[j] = above_[j + 1] + moments(j);  // bins ≥ j
        total_ = below_[n_].n;
    }

    /// Expected squared error per value of quantizing with u8_params({lo, hi}).
    double error(double lo, double hi) const {
        const U8Params p = u8_params({static_cast<float>(lo), static_cast<float>(hi)});
        const double s = p.scale, qlo = -p.zero_point * s, qhi = (255 - p.zero_point) * s;
        const Tail up = clip(qhi, true), down = clip(qlo, false);
        const double inside = std::max(total_ - up.n - down.n, 0.0);
        return (up.err + down.err + inside * s * s / 12.0) / total_;
    }

    double bin_width() const { return w_; }

private:
    struct Moments {  // Σ count, Σ count·E[v], Σ count·E[v²]
        double n = 0, m1 = 0, m2 = 0;
        Moments operator+(const Moments& o) const { return {n + o.n, m1 + o.m1, m2 + o.m2}; }
    };
    struct Tail {
        double n = 0, err = 0;
    };

    double edge(int64_t j) const { return -r_ + static_cast<double>(j) * w_; }
    Moments moments(int64_t j) const {
        const double a = a_[j], b = b_[j], c = c_[j];
        return {c, c * (a + b) / 2, c * (a * a + a * b + b * b) / 3};
    }
    int64_t bin_of(double v) const {
        return std::clamp(static_cast<int64_t>(std::floor((v + r_) / w_)), int64_t{0}, n_ - 1);
    }
    // Σ count·(v − t)² over full bins from Moments, with t the clipping bound.
    static double squared_distance(const Moments& m, double t) {
        return std::max(m.m2 - 2 * t * m.m1 + t * t * m.n, 0.0);
    }

    // The values beyond the clipping bound t (above it when `upper`, else below it): their count and
    // Σ count·(v − t)². Whole bins come from the running sums; bin k, which holds t, contributes its part
    // [x0, x1] beyond t, at distances near..far from t.
    Tail clip(double t, bool upper) const {
        const int64_t k = bin_of(t);
        const Moments& whole = upper ? above_[k + 1] : below_[k];
        Tail tail{whole.n, squared_distance(whole, t)};
        const double a = a_[k], b = b_[k], c = c_[k];
        if (c == 0 || (upper ? b <= t : a >= t)) return tail;
        if (b == a) {
            tail.n += c, tail.err += c * (a - t) * (a - t);
            return tail;
        }
        const double x0 = upper ? std::max(a, t) : a, x1 = upper ? b : std::min(b, t);
        const double near = upper ? x0 - t : t - x1, far = upper ? x1 - t : t - x0;
        tail.n += c * (x1 - x0) / (b - a);
        tail.err += c / (b - a) * (std::pow(far, 3) - std::pow(near, 3)) / 3;
        return tail;
    }

    int64_t n_;
    double r_, w_, total_ = 0;
    std::vector<double> a_, b_, c_;
    std::vector<Moments> below_, above_;
};

// MXNet's _smooth_distribution: ε moved onto empty bins, taken evenly from the others.
bool smooth(std::vector<double>& p) {
    constexpr double kEps = 1e-4;
    const auto zeros = static_cast<double>(std::count(p.begin(), p.end(), 0.0));
    const double nonzeros = static_cast<double>(p.size()) - zeros;
    if (nonzeros == 0) return false;
    const double take = kEps * zeros / nonzeros;
    for (double& v : p) v = v == 0 ? kEps : v - take;
    return std::all_of(p.begin(), p.end(), [](double v) { return v > 0; });
}

}  // namespace

Range RangeObserver::mse_range() const {
    const double lo0 = std::min(min_, 0.0f), hi0 = std::max(max_, 0.0f);
    const QuantErrorModel model(counts_, half_range_, min_, max_);
    const double w = model.bin_width();

    // Candidate ends: the bin edges strictly inside (lo0, 0) and (0, hi0), plus lo0 and hi0 themselves.
    std::vector<double> los = {lo0}, his = {hi0};
    for (int64_t j = 0; j <= bins(); ++j) {
        const double e = -half_range_ + static_cast<double>(j) * w;
        if (e > lo0 && e < 0) los.push_back(e);
        if (e > 0 && e < hi0) his.push_back(e);
    }
    double best_lo = lo0, best_hi = hi0, best = model.error(lo0, hi0);
    auto consider = [&](double lo, double hi) {
        if (lo == 0 && hi == 0) return false;
        const double e = model.error(lo, hi);
        if (e < best) {
            best = e, best_lo = lo, best_hi = hi;
            return true;
        }
        return false;
    };
    // 1. Shrink both ends together, keeping the asymmetry of the data.
    constexpr int kJointSteps = 1024;
    for (int t = 1; t < kJointSteps; ++t) consider(lo0 * t / kJointSteps, hi0 * t / kJointSteps);
    // 2. Then each end alone over every bin edge, alternating until neither moves.
    for (int round = 0; round < 16; ++round) {
        bool moved = false;
        for (double h : his) moved |= consider(best_lo, h);
        for (double l : los) moved |= consider(l, best_hi);
        if (!moved) break;
    }
    // 3. Below the histogram's resolution: 1/16-bin steps within two bins of each end.
    for (int round = 0; round < 4; ++round) {
        bool moved = false;
        const double lo = best_lo, hi = best_hi;
        for (int k = -32; k <= 32; ++k) {
            if (hi0 > 0) moved |= consider(lo, std::clamp(hi + k * w / 16, w / 16, hi0));
            if (lo0 < 0) moved |= consider(std::clamp(lo + k * w / 16, lo0, -w / 16), best_hi);
        }
        if (!moved) break;
    }
    return {static_cast<float>(std::min(best_lo, 0.0)), static_cast<float>(std::max(best_hi, 0.0))};
}

double entropy_divergence(std::span<const double> hist, int64_t i, int64_t levels) {
    const auto n = static_cast<int64_t>(hist.size());
    if (levels < 1 || i < levels || i > n)
        throw InvalidArgument("[calib] entropy candidate " + std::to_string(i) + " is outside [" +
                              std::to_string(levels) + ", " + std::to_string(n) + "]");
    std::vector<double> p(hist.begin(), hist.begin() + i), q(i, 0.0);
    for (int64_t k = i; k < n; ++k) p[i - 1] += hist[k];  // outliers clip to the threshold
    const int64_t merged = i / levels;
    for (int64_t g = 0; g < levels; ++g) {
        const int64_t start = g * merged, stop = g == levels - 1 ? i : start + merged;
        double mass = 0;
        int64_t nonzero = 0;
        for (int64_t k = start; k < stop; ++k) mass += hist[k], nonzero += p[k] != 0;
        if (nonzero)
            for (int64_t k = start; k < stop; ++k)
                if (p[k] != 0) q[k] = mass / static_cast<double>(nonzero);
    }
    if (!smooth(p) || !smooth(q)) return std::numeric_limits<double>::infinity();
    double sp = 0, sq = 0;
    for (int64_t k = 0; k < i; ++k) sp += p[k], sq += q[k];
    double kl = 0;
    for (int64_t k = 0; k < i; ++k) kl += p[k] / sp * std::log((p[k] / sp) / (q[k] / sq));
    return kl;
}

int64_t entropy_threshold_bins(std::span<const double> hist, int64_t levels) {
    const auto n = static_cast<int64_t>(hist.size());
    if (n <= levels) return n;
    int64_t best_i = n;
    double best = std::numeric_limits<double>::infinity();
    for (int64_t i = levels; i <= n; ++i) {
        const double kl = entropy_divergence(hist, i, levels);
        if (kl < best) best = kl, best_i = i;
    }
    return best_i;
}

Range RangeObserver::entropy_range() const {
    // |x| histogram: bin k gathers [k·w, (k+1)·w) from both signs; the edges coincide since 0 is an edge.
    const int64_t half = bins() / 2;
    std::vector<double> abs_hist(half);
    int64_t used = 0;
    for (int64_t k = 0; k < half; ++k) {
        abs_hist[k] = static_cast<double>(counts_[half + k] + counts_[half - 1 - k]);
        if (abs_hist[k] != 0) used = k + 1;
    }
    abs_hist.resize(used);  // candidates past the largest |x| would only clip nothing more coarsely
    const double w = half_range_ / static_cast<double>(half);
    const double t = static_cast<double>(entropy_threshold_bins(abs_hist)) * w;
    const double lo = std::max(static_cast<double>(min_), -t), hi = std::min(static_cast<double>(max_), t);
    return {std::min(static_cast<float>(lo), 0.0f), std::max(static_cast<float>(hi), 0.0f)};
}

}  // namespace cq::calib
