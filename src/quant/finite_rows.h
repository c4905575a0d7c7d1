// The one check every quantizing path runs on a row before encoding it: a NaN or Inf would poison a whole
// block's scale, so it is refused by place (tensor, row, column).
#pragma once

#include <cmath>
#include <cstdint>
#include <string>

#include "cq/error.h"

namespace cq::quant {

inline void require_finite_row(const float* row, int64_t n, const std::string& tensor, int64_t r) {
    for (int64_t j = 0; j < n; ++j)
        if (!std::isfinite(row[j]))
            throw InvalidArgument("[quantize] tensor '" + tensor + "' has a non-finite value (" + std::to_string(row[j]) + ") at row " +
                                  std::to_string(r) + ", column " + std::to_string(j) + "; refusing to quantize it");
}

}  // namespace cq::quant
