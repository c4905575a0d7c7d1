// RangeObserver's histogram: streaming, exact merging when R doubles, JSON form; minmax and percentile.
// Bin j covers [−R + j·w, −R + (j+1)·w) with w = 2R / bins; bins and R are powers of two, so x·(1/w) is
// exact and a value lands in the same bin whether it was binned before or after R grew.
#include <algorithm>
#include <bit>
#include <cmath>

#include "calib/range_observer_json.h"
#include "cq/calibration.h"
#include "cq/error.h"

namespace cq::calib {

namespace {

constexpr int64_t kMinBins = 256, kMaxBins = int64_t{1} << 20;

// The smallest power of two strictly above a (a > 0, finite).
double power_of_two_above(double a) {
    int e = 0;
    std::frexp(a, &e);  // a = m·2^e, m in [0.5, 1): 2^e > a ≥ 2^(e−1)
    return std::ldexp(1.0, e);
}

bool is_power_of_two(double r) {
    int e = 0;
    return std::isfinite(r) && r > 0 && std::frexp(r, &e) == 0.5;
}

}  // namespace

RangeObserver::RangeObserver(int64_t bins) {
    if (bins < kMinBins || bins > kMaxBins || !std::has_single_bit(static_cast<uint64_t>(bins)))
        throw InvalidArgument("[calib] histogram bins must be a power of two between " + std::to_string(kMinBins) +
                              " and " + std::to_string(kMaxBins) + ", got " + std::to_string(bins));
    counts_.assign(static_cast<size_t>(bins), 0);
}

void RangeObserver::grow_to(double half_range) {
    if (half_range <= half_range_) return;
    if (half_range_ == 0.0) {  // only zeros so far: they sit in bin bins/2 at every R
        half_range_ = half_range;
        return;
    }
    const int64_t n = bins();
    const int doublings = static_cast<int>(std::lround(std::log2(half_range / half_range_)));
    // After log2(n) doublings all mass sits in the two bins around zero, and further doublings keep it there.
    const int steps = std::min(doublings, std::countr_zero(static_cast<uint64_t>(n)) + 1);
    std::vector<int64_t> merged(counts_.size());
    for (int s = 0; s < steps; ++s) {
        // [−2R, 2R): old bin i lands in bin n/4 + i/2; n/2 is even, so the edges stay aligned.
        std::fill(merged.begin(), merged.end(), 0);
        for (int64_t i = 0; i < n; ++i) merged[n / 4 + i / 2] += counts_[i];
        counts_.swap(merged);
    }
    half_range_ = half_range;
}

void RangeObserver::observe(const float* x, int64_t n) {
    if (n < 0) throw InvalidArgument("[calib] observe: negative value count " + std::to_string(n));
    if (n == 0) return;
    // Pass 1 (vectorisable): extremes, and whether any value has the all-ones exponent of NaN/∞.
    float lo = x[0], hi = x[0];
    uint32_t non_finite = 0;
    for (int64_t i = 0; i < n; ++i) {
        const float v = x[i];
        lo = v < lo ? v : lo;
        hi = v > hi ? v : hi;
        non_finite |= (std::bit_cast<uint32_t>(v) & 0x7f800000u) == 0x7f800000u;
    }
    if (non_finite) {
        int64_t bad = 0;
        while (std::isfinite(x[bad])) ++bad;
        throw InvalidArgument("[calib] observed value " + std::to_string(bad) + " of " + std::to_string(n) + " is " +
                              (std::isnan(x[bad]) ? "NaN" : "infinite") + "; the activation overflowed");
    }
    const double amax = std::max(-static_cast<double>(lo), static_cast<double>(hi));
    if (amax >= half_range_ && amax > 0) grow_to(power_of_two_above(amax));
    min_ = count_ ? std::min(min_, lo) : lo;
    max_ = count_ ? std::max(max_, hi) : hi;
    count_ += n;

    const int64_t n_bins = bins();
    if (half_range_ == 0.0) {  // every value so far is zero
        counts_[n_bins / 2] += n;
        return;
    }
    // Pass 2: bin = floor((x + R)/w) = trunc(x·(n/2R) + n/2); x + R ≥ 0 because |x| < R.
    const double inv_w = static_cast<double>(n_bins) / (2.0 * half_range_), center = static_cast<double>(n_bins / 2);
    auto bin_of = [&](float v) { return std::min(static_cast<int64_t>(static_cast<double>(v) * inv_w + center), n_bins - 1); };
    int64_t* counts = counts_.data();
    if (n < 4 * n_bins) {
        for (int64_t i = 0; i < n; ++i) ++counts[bin_of(x[i])];
        return;
    }
    // Activations crowd into a few bins; four interleaved partial histograms keep consecutive
    // increments of one bin from waiting on each other.
    thread_local std::vector<uint32_t> partial;
    partial.assign(4 * static_cast<size_t>(n_bins), 0);
    uint32_t* h = partial.data();
    for (int64_t start = 0; start < n; start += int64_t{1} << 30) {  // uint32 partial counts never overflow
        const int64_t stop = std::min(n, start + (int64_t{1} << 30));
        int64_t i = start;
        for (; i + 4 <= stop; i += 4) {
            ++h[bin_of(x[i]) * 4];
            ++h[bin_of(x[i + 1]) * 4 + 1];
            ++h[bin_of(x[i + 2]) * 4 + 2];
            ++h[bin_of(x[i + 3]) * 4 + 3];
        }
        for (; i < stop; ++i) ++h[bin_of(x[i]) * 4];
        for (int64_t j = 0; j < n_bins; ++j) {
            counts[j] += int64_t{h[4 * j]} + h[4 * j + 1] + h[4 * j + 2] + h[4 * j + 3];
            h[4 * j] = h[4 * j + 1] = h[4 * j + 2] = h[4 * j + 3] = 0;
        }
    }
}

void RangeObserver::merge(const RangeObserver& other) {
    if (other.bins() != bins())
        throw InvalidArgument("[calib] cannot merge observers of " + std::to_string(other.bins()) + " and " +
                              std::to_string(bins()) + " bins");
    if (other.count_ == 0) return;
    RangeObserver theirs = other;
    const double r = std::max(half_range_, other.half_range_);
    grow_to(r);
    theirs.grow_to(r);
    for (size_t i = 0; i < counts_.size(); ++i) counts_[i] += theirs.counts_[i];
    min_ = count_ ? std::min(min_, other.min_) : other.min_;
    max_ = count_ ? std::max(max_, other.max_) : other.max_;
    count_ += other.count_;
}

Range RangeObserver::range(Method m, double percentile) const {
    if (count_ == 0) throw InvalidArgument("[calib] no values were observed, so there is no range to choose");
    if (min_ == 0.0f && max_ == 0.0f) return {0.0f, 0.0f};
    switch (m) {
        case Method::minmax: return {std::min(min_, 0.0f), std::max(max_, 0.0f)};
        case Method::percentile: return percentile_range(percentile);
        case Method::mse: return mse_range();
        case Method::entropy: return entropy_range();
    }
    throw InvalidArgument("[calib] unknown calibration method");
}

Range RangeObserver::percentile_range(double p) const {
    if (!(p > 50.0 && p <= 100.0))
        throw InvalidArgument("[calib] percentile must be in (50, 100], got " + std::to_string(p));
    const double w = 2.0 * half_range_ / static_cast<double>(bins());
    // The value below which `rank` of the count_ values lie, assuming values spread evenly in a bin.
    auto value_at = [&](double rank) {
        double cum = 0;
        for (size_t j = 0; j < counts_.size(); ++j) {
            const auto c = static_cast<double>(counts_[j]);
            if (c > 0 && cum + c >= rank)
                return -half_range_ + (static_cast<double>(j) + std::clamp((rank - cum) / c, 0.0, 1.0)) * w;
            cum += c;
        }
        return half_range_;
    };
    const double n = static_cast<double>(count_);
    const double lo = std::clamp(value_at((1.0 - p / 100.0) * n), static_cast<double>(min_), static_cast<double>(max_));
    const double hi = std::clamp(value_at(p / 100.0 * n), static_cast<double>(min_), static_cast<double>(max_));
    return {std::min(static_cast<float>(lo), 0.0f), std::max(static_cast<float>(hi), 0.0f)};
}

nlohmann::json RangeObserverJson::to_json(const RangeObserver& o) {
    // Sparse [bin, count] pairs: activations fill a small part of the bins, and a cache holds hundreds.
    nlohmann::json hist = nlohmann::json::array();
    for (size_t j = 0; j < o.counts_.size(); ++j)
        if (o.counts_[j]) hist.push_back({j, o.counts_[j]});
    nlohmann::json j = {{"bins", o.bins()}, {"half_range", o.half_range_}, {"count", o.count_}, {"histogram", hist}};
    if (o.count_) j["min"] = o.min_, j["max"] = o.max_;  // JSON has no ±∞ to stand for "none yet"
    return j;
}

RangeObserver RangeObserverJson::from_json(const nlohmann::json& j) {
    auto fail = [](const std::string& what) -> void { throw InvalidArgument("[calib] observer: " + what); };
    auto get_int = [&](const char* key) {
        if (!j.contains(key) || !j[key].is_number_integer()) fail(std::string("'") + key + "' must be an integer");
        return j[key].get<int64_t>();
    };
    auto get_number = [&](const char* key) {
        if (!j.contains(key) || !j[key].is_number()) fail(std::string("'") + key + "' must be a number");
        return j[key].get<double>();
    };
    if (!j.is_object()) fail("not a JSON object");
    RangeObserver o(get_int("bins"));  // validates the bin count
    o.half_range_ = get_number("half_range");
    o.count_ = get_int("count");
    if (o.count_ < 0) fail("negative count");
    if (o.half_range_ != 0.0 && !is_power_of_two(o.half_range_)) fail("'half_range' must be 0 or a power of two");
    if (!j.contains("histogram") || !j["histogram"].is_array()) fail("'histogram' must be an array");
    int64_t previous = -1, total = 0, first = -1, last = -1;
    for (const auto& e : j["histogram"]) {
        if (!e.is_array() || e.size() != 2 || !e[0].is_number_integer() || !e[1].is_number_integer())
            fail("histogram entries must be [bin, count] integer pairs");
        const auto bin = e[0].get<int64_t>(), c = e[1].get<int64_t>();
        if (bin <= previous || bin >= o.bins()) fail("histogram bins must increase and lie below 'bins'");
        if (c <= 0 || c > o.count_ - total) fail("histogram counts must be positive and sum to 'count'");
        o.counts_[bin] = c;
        total += c;
        previous = last = bin;
        if (first < 0) first = bin;
    }
    if (total != o.count_) fail("histogram counts sum to " + std::to_string(total) + ", not 'count' " + std::to_string(o.count_));
    if (o.count_ == 0) {
        if (o.half_range_ != 0.0) fail("an empty observer must have half_range 0");
        return o;
    }
    o.min_ = static_cast<float>(get_number("min"));
    o.max_ = static_cast<float>(get_number("max"));
    if (!(std::isfinite(o.min_) && std::isfinite(o.max_) && o.min_ <= o.max_)) fail("'min' and 'max' must be finite, min <= max");
    if (o.min_ != j["min"].get<double>() || o.max_ != j["max"].get<double>()) fail("'min' and 'max' must be float values");
    // The extremes must fall in the outermost non-empty bins, as observe() would have put them.
    auto bin_of = [&](float v) {
        if (o.half_range_ == 0.0) return o.bins() / 2;
        const double inv_w = static_cast<double>(o.bins()) / (2.0 * o.half_range_);
        return static_cast<int64_t>(static_cast<double>(v) * inv_w + static_cast<double>(o.bins() / 2));
    };
    const double amax = std::max(-static_cast<double>(o.min_), static_cast<double>(o.max_));
    if ((o.half_range_ == 0.0) != (amax == 0.0) || (amax > 0 && power_of_two_above(amax) != o.half_range_) ||
        bin_of(o.min_) != first || bin_of(o.max_) != last)
        fail("'min'/'max' disagree with 'half_range' and the histogram");
    return o;
}

std::string RangeObserver::to_json() const { return RangeObserverJson::to_json(*this).dump(); }

RangeObserver RangeObserver::from_json(std::string_view text) {
    nlohmann::json j;
    try {
        j = nlohmann::json::parse(text);
    } catch (const nlohmann::json::exception& e) {
        throw InvalidArgument(std::string("[calib] observer: not JSON: ") + e.what());
    }
    return RangeObserverJson::from_json(j);
}

}  // namespace cq::calib
