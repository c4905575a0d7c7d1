// Multiple-choice knapsack by dynamic programming over byte units (see bit_allocation.h). The unit is the
// smallest that keeps the table at most kMaxUnits wide; each option's size is rounded up to whole units, so
// the chosen plan's true size never exceeds the budget (it may leave up to one unit per tensor unused).
#include "quant/bit_allocation.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "cq/error.h"

namespace cq::quant {
namespace {

constexpr uint64_t kMaxUnits = 1u << 18;
constexpr double kInf = std::numeric_limits<double>::infinity();

uint64_t min_bytes(const std::vector<TensorChoices>& tensors) {
    uint64_t total = 0;
    for (const auto& t : tensors) {
        if (t.options.empty()) throw InvalidArgument("[mixed precision] tensor '" + t.name + "' has no type to choose from");
        uint64_t m = UINT64_MAX;
        for (const auto& o : t.options) m = std::min(m, o.bytes);
        total += m;
    }
    return total;
}

// best[u]: least Σ cost of the first i tensors within u units; choice[i][u]: the option that reached it.
std::vector<size_t> solve(const std::vector<TensorChoices>& tensors, uint64_t budget, double* total_cost) {
    const uint64_t unit = std::max<uint64_t>(1, (budget + kMaxUnits - 1) / kMaxUnits);
    const size_t width = static_cast<size_t>(budget / unit) + 1;
    std::vector<double> best(width, 0.0), next(width);
    std::vector<std::vector<uint16_t>> choice(tensors.size(), std::vector<uint16_t>(width, 0));
    for (size_t i = 0; i < tensors.size(); ++i) {
        std::fill(next.begin(), next.end(), kInf);
        for (size_t k = 0; k < tensors[i].options.size(); ++k) {
            const auto& o = tensors[i].options[k];
            const uint64_t units = (o.bytes + unit - 1) / unit;
            if (units >= width) continue;
            for (size_t u = static_cast<size_t>(units); u < width; ++u) {
                const double c = best[u - units] + o.cost;
                if (c < next[u]) next[u] = c, choice[i][u] = static_cast<uint16_t>(k);
            }
        }
        best.swap(next);
    }
    *total_cost = best[width - 1];
    std::vector<size_t> pick(tensors.size(), 0);
    if (!std::isfinite(*total_cost)) return pick;
    size_t u = width - 1;
    for (size_t i = tensors.size(); i-- > 0;) {
        const size_t k = choice[i][u];
        pick[i] = k;
        u -= static_cast<size_t>((tensors[i].options[k].bytes + unit - 1) / unit);
    }
    return pick;
}

}  // namespace

std::vector<size_t> allocate_bytes(const std::vector<TensorChoices>& tensors, uint64_t budget) {
    const uint64_t least = min_bytes(tensors);
    if (least > budget)
        throw InvalidArgument("[mixed precision] the budget of " + std::to_string(budget) + " bytes for the quantized tensors is below the " +
                              std::to_string(least) + " bytes of their smallest types");
    double cost = 0;
    std::vector<size_t> pick = solve(tensors, budget, &cost);
    if (!std::isfinite(cost)) {
        // Rounding to units lost the last few bytes: the smallest plan still fits.
        for (size_t i = 0; i < tensors.size(); ++i) {
            const auto& o = tensors[i].options;
            pick[i] = static_cast<size_t>(std::min_element(o.begin(), o.end(), [](const TensorOption& a, const TensorOption& b) { return a.bytes < b.bytes; }) - o.begin());
        }
    }
    return pick;
}

std::vector<size_t> allocate_cost(const std::vector<TensorChoices>& tensors, double max_cost, bool* reached) {
    uint64_t lo = min_bytes(tensors), hi = 0;
    for (const auto& t : tensors) {
        uint64_t m = 0;
        for (const auto& o : t.options) m = std::max(m, o.bytes);
        hi += m;
    }
    double cost = 0;
    std::vector<size_t> best = solve(tensors, hi, &cost);
    if (reached) *reached = cost <= max_cost;
    if (cost > max_cost) return best;
    // The least budget whose optimum meets max_cost (the optimum only falls as the budget grows).
    for (int iter = 0; iter < 40 && lo < hi; ++iter) {
        const uint64_t mid = lo + (hi - lo) / 2;
        double c = 0;
        std::vector<size_t> pick = solve(tensors, mid, &c);
        if (c <= max_cost) hi = mid, best = std::move(pick);
        else lo = mid + 1;
    }
    return best;
}

}  // namespace cq::quant
