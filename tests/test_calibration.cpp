// Calibration observers, each method checked against something computed independently here: closed
// forms, sorted-array percentiles, brute-force quantization error on the raw samples, a plain KL loop.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <random>

#include <nlohmann/json.hpp>

#include "cq/calibration.h"
#include "cq/error.h"
#include "test_support.h"

namespace cq::calib {
namespace {

std::vector<float> gaussian(size_t n, uint32_t seed, float sigma = 1.0f) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> d(0.0f, sigma);
    std::vector<float> v(n);
    for (auto& x : v) x = d(rng);
    return v;
}

std::vector<float> uniform(size_t n, uint32_t seed, float lo, float hi) {
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> d(lo, hi);
    std::vector<float> v(n);
    for (auto& x : v) x = d(rng);
    return v;
}

RangeObserver observed(const std::vector<float>& v) {
    RangeObserver o;
    o.observe(v.data(), static_cast<int64_t>(v.size()));
    return o;
}

// Mean squared error of u8 quantize→dequantize on the raw samples, written out from the definition.
double brute_force_error(const std::vector<float>& v, Range r) {
    const U8Params p = u8_params(r);
    double sum = 0;
    for (float x : v) {
        const double q = std::clamp(std::nearbyint(static_cast<double>(x) / p.scale) + p.zero_point, 0.0, 255.0);
        const double d = (q - p.zero_point) * p.scale;
        sum += (x - d) * (x - d);
    }
    return sum / static_cast<double>(v.size());
}

TEST(calibration, MethodNamesRoundTrip) {
    for (Method m : {Method::minmax, Method::percentile, Method::mse, Method::entropy})
        EXPECT_EQ(parse_method(method_name(m)), m);
    EXPECT_FALSE(parse_method("kl-divergence"));
    EXPECT_FALSE(parse_method(""));
}

TEST(calibration, U8ParamsClosedForms) {
    auto p = u8_params({-1.0f, 1.0f});
    EXPECT_FLOAT_EQ(p.scale, 2.0f / 255.0f);
    EXPECT_EQ(p.zero_point, 128);  // 127.5 rounds to even
    p = u8_params({0.0f, 6.0f});
    EXPECT_FLOAT_EQ(p.scale, 6.0f / 255.0f);
    EXPECT_EQ(p.zero_point, 0);
    p = u8_params({-2.55f, 0.0f});
    EXPECT_FLOAT_EQ(p.scale, 0.01f);
    EXPECT_EQ(p.zero_point, 255);
    p = u8_params({-1.0f, 3.0f});  // zp = round(1 / (4/255)) = round(63.75)
    EXPECT_EQ(p.zero_point, 64);
    p = u8_params({0.0f, 0.0f});  // degenerate: documented as scale 1, zero point 0
    EXPECT_EQ(p.scale, 1.0f);
    EXPECT_EQ(p.zero_point, 0);
    EXPECT_THROW(u8_params({0.5f, 1.0f}), InvalidArgument);
    EXPECT_THROW(u8_params({-1.0f, NAN}), InvalidArgument);
}

// 7-bit activations (qmax 127): the same rule over [0, 127].
TEST(calibration, U8ParamsSevenBit) {
    auto p = u8_params({-1.0f, 1.0f}, 127);
    EXPECT_EQ(p.scale, 2.0f / 127.0f);
    EXPECT_EQ(p.zero_point, 64);  // 63.5 rounds to even
    p = u8_params({-1.27f, 0.0f}, 127);
    EXPECT_FLOAT_EQ(p.scale, 0.01f);
    EXPECT_EQ(p.zero_point, 127);
    p = u8_params({0.0f, 6.0f}, 127);
    EXPECT_EQ(p.zero_point, 0);
    p = u8_params({0.0f, 0.0f}, 127);
    EXPECT_EQ(p.scale, 1.0f);
    EXPECT_EQ(p.zero_point, 0);
    EXPECT_EQ(u8_params({-1.0f, 3.0f}, 255).zero_point, u8_params({-1.0f, 3.0f}).zero_point);
    EXPECT_THROW(u8_params({-1.0f, 1.0f}, 0), InvalidArgument);
    EXPECT_THROW(u8_params({-1.0f, 1.0f}, 256), InvalidArgument);
}

TEST(calibration, MinmaxIsExactAndIncludesZero) {
    const std::vector<float> mixed = {-3.5f, 2.0f, 0.25f, 7.75f};
    const Range r = observed(mixed).range(Method::minmax);
    EXPECT_EQ(r.lo, -3.5f);
    EXPECT_EQ(r.hi, 7.75f);
    const Range pos = observed({1.0f, 2.0f, 3.0f}).range(Method::minmax);
    EXPECT_EQ(pos.lo, 0.0f);
    EXPECT_EQ(pos.hi, 3.0f);
    const Range neg = observed({-5.0f, -1.0f}).range(Method::minmax);
    EXPECT_EQ(neg.lo, -5.0f);
    EXPECT_EQ(neg.hi, 0.0f);
    const RangeObserver zeros = observed(std::vector<float>(100, 0.0f));
    for (Method m : {Method::minmax, Method::percentile, Method::mse, Method::entropy}) {
        const Range z = zeros.range(m);
        EXPECT_EQ(z.lo, 0.0f);
        EXPECT_EQ(z.hi, 0.0f);
    }
    EXPECT_THROW(RangeObserver().range(Method::minmax), InvalidArgument);
}

TEST(calibration, DoublingKeepsCountAndExtremes) {
    RangeObserver o;
    int64_t seen = 0;
    for (float scale : {0.0f, 1.0f, 3.0f, 100.0f, 1e4f}) {
        const auto v = uniform(1000, 7, -scale, scale);
        o.observe(v.data(), 1000);
        seen += 1000;
        int64_t total = 0;
        for (auto c : o.histogram()) total += c;
        EXPECT_EQ(total, seen) << "after scale " << scale;
        EXPECT_EQ(o.count(), seen);
        EXPECT_EQ(o.bins(), 2048);
    }
    // R is the smallest power of two above max|x| (< 1e4) = 16384.
    EXPECT_EQ(o.half_range(), 16384.0);
    const auto v = uniform(1000, 7, -1e4f, 1e4f);
    EXPECT_EQ(o.max(), std::max(*std::max_element(v.begin(), v.end()), 3.0f));
    EXPECT_LE(o.min(), *std::min_element(v.begin(), v.end()));
    EXPECT_THROW(RangeObserver(1000), InvalidArgument);
}

TEST(calibration, ChunkingAndOrderDoNotMatter) {
    // Values whose magnitude spans several doublings, so chunks arriving in other orders grow R differently.
    auto v = gaussian(100000, 11);
    for (size_t i = 0; i < v.size(); ++i) v[i] *= static_cast<float>(1 + i / 10000);
    v[123] = 0.0f, v[456] = -0.0f, v[789] = 1.0f;  // an exact edge and zeros
    const RangeObserver whole = observed(v);
    std::vector<int> order(100);
    for (int c = 0; c < 100; ++c) order[c] = c;
    for (uint32_t seed : {1u, 2u, 3u}) {
        std::shuffle(order.begin(), order.end(), std::mt19937(seed));
        RangeObserver chunked, left, right;
        for (int c : order) chunked.observe(v.data() + c * 1000, 1000);
        for (int c : order) (c % 2 ? left : right).observe(v.data() + c * 1000, 1000);
        left.merge(right);
        for (const RangeObserver* o : {&chunked, &left}) {
            EXPECT_EQ(o->count(), whole.count());
            EXPECT_EQ(o->min(), whole.min());
            EXPECT_EQ(o->max(), whole.max());
            ASSERT_EQ(o->half_range(), whole.half_range());
            EXPECT_EQ(o->histogram(), whole.histogram()) << "seed " << seed;
            for (Method m : {Method::minmax, Method::percentile, Method::mse, Method::entropy}) {
                EXPECT_EQ(o->range(m).lo, whole.range(m).lo) << method_name(m);
                EXPECT_EQ(o->range(m).hi, whole.range(m).hi) << method_name(m);
            }
        }
    }
}

TEST(calibration, PercentileWithinOneBinOfSortedArray) {
    auto v = uniform(200000, 5, -3.0f, 5.0f);
    const RangeObserver o = observed(v);
    const double w = 2 * o.half_range() / static_cast<double>(o.bins());
    std::sort(v.begin(), v.end());
    for (double p : {99.0, 99.9, 99.99}) {
        const Range r = o.range(Method::percentile, p);
        const double n = static_cast<double>(v.size());
        const float exact_hi = v[static_cast<size_t>(std::ceil(p / 100 * n)) - 1];
        const float exact_lo = v[static_cast<size_t>(std::ceil((1 - p / 100) * n)) - 1];
        EXPECT_NEAR(r.hi, exact_hi, w) << p;
        EXPECT_NEAR(r.lo, exact_lo, w) << p;
    }
    const Range all = o.range(Method::percentile, 100.0);
    EXPECT_EQ(all.lo, v.front());
    EXPECT_EQ(all.hi, v.back());
    EXPECT_THROW(o.range(Method::percentile, 30.0), InvalidArgument);
}

TEST(calibration, MseClipsRareHugeOutliers) {
    // 10^6 N(0,1) and 3 outliers: clipping them costs less than coarse steps for everything else
    // (minmax: step 350/255, ~0.16 per value).
    auto v = gaussian(1000000, 3);
    v[10] = 100.0f, v[20] = 200.0f, v[30] = -150.0f;
    const RangeObserver o = observed(v);
    const Range mm = o.range(Method::minmax), mse = o.range(Method::mse);
    EXPECT_LT(mse.hi, 0.5f * mm.hi);
    EXPECT_GT(mse.lo, 0.5f * mm.lo);
    EXPECT_GT(mse.hi, 3.0f);  // the bulk is kept
    EXPECT_LT(mse.lo, -3.0f);
    const double e_mse = brute_force_error(v, mse);
    EXPECT_LT(e_mse, 0.5 * brute_force_error(v, mm)) << "mse range [" << mse.lo << ", " << mse.hi << "]";
    // And no hand-picked range does better (up to the histogram model's approximation).
    for (Range r : {Range{-4, 4}, Range{-5, 5}, Range{-10, 10}, Range{-20, 20}, Range{-20, 80}, Range{-50, 100}})
        EXPECT_LE(e_mse, 1.02 * brute_force_error(v, r)) << "[" << r.lo << ", " << r.hi << "]";
}

TEST(calibration, MseOnUniformDataIsNearMinmax) {
    const auto v = uniform(200000, 9, -1.0f, 1.0f);
    const RangeObserver o = observed(v);
    const Range mm = o.range(Method::minmax), mse = o.range(Method::mse);
    EXPECT_NEAR(mse.lo, mm.lo, 0.02);
    EXPECT_NEAR(mse.hi, mm.hi, 0.02);
    EXPECT_LE(brute_force_error(v, mse), brute_force_error(v, mm) * 1.01);
}

// KL(P‖Q) for one candidate, straight from the description: bin by bin, with each bin's group found by
// division and group statistics recomputed for every bin.
double brute_force_kl(const std::vector<double>& h, int64_t i, int64_t levels) {
    const int64_t n = static_cast<int64_t>(h.size()), merged = i / levels;
    auto group = [&](int64_t k) { return std::min(k / merged, levels - 1); };
    std::vector<double> p(i), q(i);
    for (int64_t k = 0; k < n; ++k) p[std::min(k, i - 1)] += h[k];
    for (int64_t k = 0; k < i; ++k) {
        if (p[k] == 0) continue;
        double mass = 0, nonzero = 0;
        for (int64_t m = 0; m < i; ++m)
            if (group(m) == group(k)) mass += h[m], nonzero += p[m] != 0;
        q[k] = mass / nonzero;
    }
    for (auto* d : {&p, &q}) {  // ε = 1e-4 onto empty bins, taken evenly from the rest
        double zeros = 0;
        for (double x : *d) zeros += x == 0;
        const double take = 1e-4 * zeros / (static_cast<double>(i) - zeros);
        for (double& x : *d) x = x == 0 ? 1e-4 : x - take;
    }
    double sp = 0, sq = 0, kl = 0;
    for (int64_t k = 0; k < i; ++k) sp += p[k], sq += q[k];
    for (int64_t k = 0; k < i; ++k) kl += p[k] / sp * std::log(p[k] / sp * sq / q[k]);
    return kl;
}

TEST(calibration, EntropyDivergenceMatchesBruteForce) {
    std::mt19937 rng(17);
    std::vector<double> h(24);
    for (int64_t k = 0; k < 24; ++k) h[k] = k % 5 == 3 ? 0 : static_cast<double>(rng() % 1000 / (1 + k));
    h[23] = 7;
    constexpr int64_t kLevels = 4;
    int64_t best = 0;
    double best_kl = INFINITY;
    for (int64_t i = kLevels; i <= 24; ++i) {
        const double kl = brute_force_kl(h, i, kLevels);
        EXPECT_NEAR(entropy_divergence(h, i, kLevels), kl, 1e-12 + 1e-9 * kl) << "i = " << i;
        if (kl < best_kl) best_kl = kl, best = i;
    }
    EXPECT_EQ(entropy_threshold_bins(h, kLevels), best);
    EXPECT_THROW(entropy_divergence(h, 3, kLevels), InvalidArgument);
}

TEST(calibration, EntropyThresholdIgnoresOutliers) {
    auto v = gaussian(1000000, 21);
    for (int k = 0; k < 20; ++k) v[k * 1000] = k % 2 ? 50.0f : -48.0f;
    const RangeObserver o = observed(v);
    const Range r = o.range(Method::entropy);
    EXPECT_LT(r.hi, 0.5f * o.max());
    EXPECT_GT(r.lo, 0.5f * o.min());
    EXPECT_GT(r.hi, 2.0f);  // the bulk itself is kept
    EXPECT_LT(r.lo, -2.0f);
}

TEST(calibration, JsonRoundTripIsExact) {
    auto v = gaussian(50000, 23, 3.0f);
    v[0] = 1e-30f, v[1] = -7.123456789f;
    const RangeObserver o = observed(v);
    const RangeObserver back = RangeObserver::from_json(o.to_json());
    EXPECT_EQ(back.to_json(), o.to_json());
    EXPECT_EQ(back.histogram(), o.histogram());
    EXPECT_EQ(back.min(), o.min());
    EXPECT_EQ(back.max(), o.max());
    EXPECT_EQ(back.half_range(), o.half_range());
    for (Method m : {Method::minmax, Method::percentile, Method::mse, Method::entropy})
        EXPECT_EQ(back.range(m).hi, o.range(m).hi) << method_name(m);
    const RangeObserver empty = RangeObserver::from_json(RangeObserver(256).to_json());
    EXPECT_EQ(empty.count(), 0);
    EXPECT_EQ(empty.bins(), 256);

    test::TempDir dir;
    CalibrationStats stats;
    stats.samples = 32;
    stats.model_fingerprint = "sha256:abc";
    stats.observe("encoder.layer.0.attention.self.query", v.data(), 1000);
    stats.observe("classifier", v.data() + 1000, 500);
    stats.save(dir.file("calib.json"));
    const auto loaded = CalibrationStats::load(dir.file("calib.json"));
    EXPECT_EQ(loaded.samples, 32);
    EXPECT_EQ(loaded.model_fingerprint, "sha256:abc");
    ASSERT_EQ(loaded.observers.size(), 2u);
    for (const auto& [name, obs] : stats.observers) EXPECT_EQ(loaded.observers.at(name).to_json(), obs.to_json()) << name;
}

TEST(calibration, CorruptCacheIsAFormatError) {
    test::TempDir dir;
    CalibrationStats stats;
    const auto v = gaussian(1000, 29);
    stats.observe("fc1", v.data(), 1000);
    stats.save(dir.file("good.json"));
    std::ifstream in(dir.file("good.json"));
    const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());

    auto expect_format_error = [&](const std::string& name, const std::string& content, const std::string& needle) {
        const std::string path = dir.write(name, content);
        try {
            CalibrationStats::load(path);
            ADD_FAILURE() << name << ": no FormatError";
        } catch (const FormatError& e) {
            EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
            EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
        }
    };
    expect_format_error("cut.json", text.substr(0, text.size() / 2), "JSON");
    auto j = nlohmann::json::parse(text);
    auto edit = [&](auto fn) {
        auto copy = j;
        fn(copy);
        return copy.dump();
    };
    expect_format_error("version.json", edit([](auto& c) { c["version"] = 99; }), "version");
    expect_format_error("count.json", edit([](auto& c) { c["observers"]["fc1"]["count"] = 999; }), "'fc1'");
    expect_format_error("bins.json", edit([](auto& c) { c["observers"]["fc1"]["bins"] = 1000; }), "'fc1'");
    expect_format_error("range.json", edit([](auto& c) { c["observers"]["fc1"]["half_range"] = 3.0; }), "'fc1'");
    expect_format_error("max.json", edit([](auto& c) { c["observers"]["fc1"]["max"] = 1e6; }), "'fc1'");
    expect_format_error("type.json", edit([](auto& c) { c["observers"]["fc1"]["histogram"] = "x"; }), "'fc1'");
    expect_format_error("list.json", "[1, 2, 3]", "format");
}

TEST(calibration, MemoryStaysBounded) {
    RangeObserver o;
    std::vector<float> chunk(1000);
    for (int64_t c = 0; c < 1000; ++c) {
        for (int64_t i = 0; i < 1000; ++i) {  // |x| grows from 1 to e^80 ≈ 5.5e34 over 10^6 values
            const int64_t k = c * 1000 + i;
            chunk[i] = static_cast<float>((k % 2 ? -1.0 : 1.0) * std::exp(static_cast<double>(k) * 8e-5));
        }
        o.observe(chunk.data(), 1000);
        ASSERT_EQ(o.histogram().size(), 2048u);
    }
    EXPECT_EQ(o.count(), 1000000);
    int64_t total = 0;
    for (auto c : o.histogram()) total += c;
    EXPECT_EQ(total, 1000000);
    EXPECT_LT(o.to_json().size(), 64u * 1024u);
}

TEST(calibration, NonFiniteValuesNameTheTensor) {
    CalibrationStats stats;
    std::vector<float> v = {1.0f, 2.0f, NAN, 3.0f};
    try {
        stats.observe("blk.3.ffn_up", v.data(), 4);
        ADD_FAILURE() << "no InvalidArgument";
    } catch (const InvalidArgument& e) {
        EXPECT_NE(std::string(e.what()).find("blk.3.ffn_up"), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find("NaN"), std::string::npos) << e.what();
    }
    EXPECT_EQ(stats.observers.at("blk.3.ffn_up").count(), 0);  // nothing half-added
    v[2] = INFINITY;
    EXPECT_THROW(stats.observe("x", v.data(), 4), InvalidArgument);
}

}  // namespace
}  // namespace cq::calib
