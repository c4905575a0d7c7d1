// The seeded example order of a training epoch, shared by the LM and classifier loops: file order for seed 0,
// else a Fisher–Yates shuffle driven by splitmix64(seed, epoch), so a run is reproducible bit for bit.
#pragma once

#include <cstdint>
#include <numeric>
#include <utility>
#include <vector>

namespace cq::train {

inline uint64_t splitmix64(uint64_t& x) {
    uint64_t z = (x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

inline std::vector<int64_t> epoch_order(int64_t n, uint64_t seed, int64_t epoch) {
    std::vector<int64_t> order(static_cast<size_t>(n));
    std::iota(order.begin(), order.end(), 0);
    if (seed == 0) return order;
    uint64_t state = seed * 0x100000001b3ull + static_cast<uint64_t>(epoch);
    for (int64_t i = n - 1; i > 0; --i) std::swap(order[static_cast<size_t>(i)], order[splitmix64(state) % static_cast<uint64_t>(i + 1)]);
    return order;
}

}  // namespace cq::train
