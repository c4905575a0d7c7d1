// Method names, u8 parameters, and the calibration cache: named observers saved as one JSON file.
#include <algorithm>
#include <cmath>
#include <limits>

#include "calib/range_observer_json.h"
#include "core/json_file.h"
#include "core/name_table.h"
#include "cq/atomic_file.h"
#include "cq/calibration.h"
#include "cq/error.h"

namespace cq::calib {

namespace {

constexpr const char* kFormat = "cq-calibration";
constexpr int kVersion = 1;
// A cache of a few hundred sparse histograms is a few MB; this only refuses a wrong file.
constexpr uint64_t kMaxCacheBytes = 1ull << 30;

}  // namespace

namespace {
const std::pair<Method, std::string_view> kMethodNames[] = {
    {Method::minmax, "minmax"}, {Method::percentile, "percentile"}, {Method::mse, "mse"}, {Method::entropy, "entropy"}};
}  // namespace

std::optional<Method> parse_method(std::string_view name) { return value_in(kMethodNames, name); }
std::string_view method_name(Method m) { return name_in(kMethodNames, m, "unknown"); }

U8Params u8_params(Range r, int32_t qmax) {
    if (!(std::isfinite(r.lo) && std::isfinite(r.hi) && r.lo <= 0.0f && r.hi >= 0.0f))
        throw InvalidArgument("[calib] u8 range must be finite with lo <= 0 <= hi, got [" + std::to_string(r.lo) + ", " +
                              std::to_string(r.hi) + "]");
    if (qmax < 1 || qmax > 255) throw InvalidArgument("[calib] u8 qmax must be in [1, 255], got " + std::to_string(qmax));
    const float scale = (r.hi - r.lo) / static_cast<float>(qmax);
    if (!(scale >= std::numeric_limits<float>::min())) return {1.0f, 0};
    // From the range rather than the rounded scale, so that [−1, 1] gives exactly 127.5 → 128 (63.5 → 64).
    const double zp = std::nearbyint(-static_cast<double>(r.lo) * qmax / (static_cast<double>(r.hi) - r.lo));
    return {scale, static_cast<int32_t>(std::clamp(zp, 0.0, static_cast<double>(qmax)))};
}

U8Params u8_params_symmetric(Range r, int32_t qmax) {
    if (!(std::isfinite(r.lo) && std::isfinite(r.hi) && r.lo <= 0.0f && r.hi >= 0.0f))
        throw InvalidArgument("[calib] u8 range must be finite with lo <= 0 <= hi, got [" + std::to_string(r.lo) + ", " +
                              std::to_string(r.hi) + "]");
    if (qmax != 255 && qmax != 127) throw InvalidArgument("[calib] symmetric u8 activations need qmax 255 or 127, got " + std::to_string(qmax));
    const int32_t mid = (qmax + 1) / 2;  // the zero point: codes mid − k ↔ −k steps, as a signed code k would be
    const float amax = std::max(-r.lo, r.hi);
    const float scale = amax / static_cast<float>(mid - 1);
    if (!(scale >= std::numeric_limits<float>::min())) return {1.0f, mid};
    return {scale, mid};
}

void CalibrationStats::observe(const std::string& tensor, const float* x, int64_t n, int64_t bins) {
    auto it = observers.try_emplace(tensor, bins).first;
    try {
        it->second.observe(x, n);
    } catch (const InvalidArgument& e) {
        throw InvalidArgument(std::string(e.what()) + " (input of '" + tensor + "')");
    }
}

void CalibrationStats::save(const std::string& path) const {
    nlohmann::json j = {{"format", kFormat},         {"version", kVersion},
                        {"samples", samples},        {"model_fingerprint", model_fingerprint},
                        {"observers", nlohmann::json::object()}};
    for (const auto& [name, obs] : observers) j["observers"][name] = RangeObserverJson::to_json(obs);
    const std::string text = j.dump() + "\n";
    AtomicFile out(path);
    out.write(text.data(), text.size());
    out.commit();
}

CalibrationStats CalibrationStats::load(const std::string& path) {
    const nlohmann::json j = read_json_file(path, "calib", kMaxCacheBytes);
    auto fail = [&](const std::string& what) -> void {
        throw FormatError("calib", path, 0, "not a cq calibration cache: " + what);
    };
    if (!j.is_object() || !j.contains("format") || j["format"] != kFormat) fail("'format' is not \"cq-calibration\"");
    if (!j.contains("version") || j["version"] != kVersion)
        fail("'version' is not " + std::to_string(kVersion) + " (re-run calibration to rebuild it)");
    if (!j.contains("samples") || !j["samples"].is_number_integer() || j["samples"].get<int64_t>() < 0)
        fail("'samples' must be a non-negative integer");
    if (!j.contains("model_fingerprint") || !j["model_fingerprint"].is_string()) fail("'model_fingerprint' must be a string");
    if (!j.contains("observers") || !j["observers"].is_object()) fail("'observers' must be an object");
    CalibrationStats stats;
    stats.samples = j["samples"].get<int64_t>();
    stats.model_fingerprint = j["model_fingerprint"].get<std::string>();
    for (const auto& [name, value] : j["observers"].items()) {
        try {
            stats.observers.emplace(name, RangeObserverJson::from_json(value));
        } catch (const InvalidArgument& e) {
            fail("observer '" + name + "': " + e.what());
        } catch (const nlohmann::json::exception& e) {
            fail("observer '" + name + "': " + e.what());
        }
    }
    return stats;
}

}  // namespace cq::calib
