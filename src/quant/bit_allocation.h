// Automatic mixed precision's solver: one type per tensor from measured (size, predicted cost) options, the
// least total cost within a byte budget, or the fewest bytes within a cost budget. Exact up to a byte
// granularity (sizes are rounded up to it, so a plan never exceeds its budget) by dynamic programming.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "cq/dtype.h"

namespace cq::quant {

struct TensorOption {
    DType type = DType::F32;
    uint64_t bytes = 0;
    double cost = 0;  // predicted increase of the mean KL-divergence when this tensor alone takes this type
};

struct TensorChoices {
    std::string name;
    std::vector<TensorOption> options;  // any order; at least one
};

/// Index into each tensor's options: minimal Σ cost with Σ bytes ≤ budget. InvalidArgument naming the smallest
/// reachable size when even the cheapest options do not fit.
std::vector<size_t> allocate_bytes(const std::vector<TensorChoices>& tensors, uint64_t budget);

/// Index into each tensor's options: the fewest Σ bytes with Σ cost ≤ max_cost (the most accurate plan when none
/// reaches it, and `reached` false).
std::vector<size_t> allocate_cost(const std::vector<TensorChoices>& tensors, double max_cost, bool* reached = nullptr);

}  // namespace cq::quant
