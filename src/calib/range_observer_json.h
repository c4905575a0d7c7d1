// RangeObserver ⇄ JSON: the form each observer takes inside the calibration cache. Internal, so that
// the public header carries no JSON type; RangeObserver::to_json / from_json are this as text.
#pragma once

#include <nlohmann/json.hpp>

#include "cq/calibration.h"

namespace cq::calib {

struct RangeObserverJson {
    /// {"bins", "half_range", "count", "histogram": [[bin, count], …] (non-zero bins), "min", "max" (if count)}
    static nlohmann::json to_json(const RangeObserver& o);
    /// Exact inverse of to_json; InvalidArgument naming the bad field if the structure is inconsistent.
    static RangeObserver from_json(const nlohmann::json& j);
};

}  // namespace cq::calib
