// Calibration for static INT8 activations: observers stream each Linear input into a bounded histogram,
// and a method (minmax, percentile, mse, entropy) turns it into one u8 scale/zero point per tensor.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace cq::calib {

enum class Method { minmax, percentile, mse, entropy };

/// "minmax", "percentile", "mse" or "entropy"; nothing for any other name.
std::optional<Method> parse_method(std::string_view name);
std::string_view method_name(Method m);

/// A clipping range; ranges returned by RangeObserver always have lo ≤ 0 ≤ hi (zero must be exact).
struct Range {
    float lo, hi;
};

/// Asymmetric u8 quantization: q = clamp(round(x / scale) + zero_point, 0, qmax) (qmax 255, or 127 for
/// 7-bit activations).
struct U8Params {
    float scale;
    int32_t zero_point;
};

/// scale = (hi − lo) / qmax, zero_point = clamp(nearbyint(−lo / scale), 0, qmax). A degenerate range
/// (hi == lo, or a scale below FLT_MIN) gives scale 1, zero point 0: every input was 0, and 0 stays 0.
/// InvalidArgument unless lo ≤ 0 ≤ hi and both are finite, and qmax is in [1, 255].
U8Params u8_params(Range r, int32_t qmax = 255);
/// Symmetric activations in u8 form: zero point (qmax + 1) / 2 (128; 64 for 7 bits) and scale max(−lo, hi) / (zero point − 1),
/// so code c stands for the signed code c − 128 of TensorRT's symmetric int8 (amax / 127, zero point 0) exactly. qmax 255 or 127.
U8Params u8_params_symmetric(Range r, int32_t qmax = 255);

/// Streams values into a histogram of a fixed number of bins over [−R, R]. R is always the smallest
/// power of two above max|x| (0 before any non-zero value), so it doubles as larger values arrive and
/// bin pairs merge exactly; the histogram then depends only on the values seen, not on their order or
/// chunking. Exact min, max and count are kept beside it.
class RangeObserver {
public:
    /// `bins` must be a power of two between 256 and 2^20 (fewer than 256 leaves the entropy method
    /// no 128-level candidates).
    explicit RangeObserver(int64_t bins = 2048);

    /// Adds n values. InvalidArgument (with the index) on NaN or infinity; nothing is added then.
    void observe(const float* x, int64_t n);
    /// Adds everything `other` saw; InvalidArgument if the bin counts differ.
    void merge(const RangeObserver& other);

    /// The clipping range chosen by `m` (`percentile` in (50, 100] is used by Method::percentile only).
    /// InvalidArgument if nothing was observed.
    Range range(Method m, double percentile = 99.99) const;

    int64_t count() const { return count_; }
    /// Smallest / largest value seen (0 before any).
    float min() const { return count_ ? min_ : 0.0f; }
    float max() const { return count_ ? max_ : 0.0f; }
    int64_t bins() const { return static_cast<int64_t>(counts_.size()); }
    /// R: the histogram covers [−R, R) in bins of width 2R / bins().
    double half_range() const { return half_range_; }
    const std::vector<int64_t>& histogram() const { return counts_; }

    /// The observer as compact JSON text (a sparse histogram), as the calibration cache stores it.
    std::string to_json() const;
    /// Exact inverse of to_json; InvalidArgument naming the bad field if the text is not JSON or its
    /// structure is inconsistent.
    static RangeObserver from_json(std::string_view text);

private:
    friend struct RangeObserverJson;  // the cache's JSON codec (src/calib/range_observer_json.h)

    void grow_to(double half_range);
    Range mse_range() const;
    Range entropy_range() const;
    Range percentile_range(double p) const;

    std::vector<int64_t> counts_;
    double half_range_ = 0.0;
    int64_t count_ = 0;
    float min_ = 0.0f, max_ = 0.0f;
};

/// TensorRT's entropy calibration on a histogram of |x| (bin k covers [k·w, (k+1)·w)): for each
/// candidate i in [levels, size] the reference P is bins [0, i) with the mass of bins ≥ i added to bin
/// i − 1; Q is bins [0, i) merged into `levels` groups (the last takes the remainder) and each group's
/// mass spread evenly over the bins of the group that are non-zero in P. Both get MXNet's smoothing
/// (ε = 1e-4 moved onto empty bins), then KL(P‖Q) with natural logs over normalised P and Q.
double entropy_divergence(std::span<const double> abs_hist, int64_t i, int64_t levels = 128);
/// The candidate i of least divergence (size when size < levels: nothing to clip); threshold = i·w.
int64_t entropy_threshold_bins(std::span<const double> abs_hist, int64_t levels = 128);

/// One observer per Linear input (by tensor name) and how many samples produced them: the
/// `--calib-cache`, so a sweep over methods runs the model once.
struct CalibrationStats {
    int64_t samples = 0;
    std::map<std::string, RangeObserver> observers;
    std::string model_fingerprint;

    /// Adds values to the observer of `tensor` (created with `bins` bins); errors name the tensor.
    void observe(const std::string& tensor, const float* x, int64_t n, int64_t bins = 2048);
    /// Writes JSON atomically (whole file or nothing). IoError on failure.
    void save(const std::string& path) const;
    /// FormatError naming the file (and the observer) when the JSON or its structure is wrong.
    static CalibrationStats load(const std::string& path);
};

}  // namespace cq::calib
