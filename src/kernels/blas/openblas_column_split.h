// The column block the OpenBLAS wrappers go through, so that a product's bits do not depend on how the ops split
// its columns between threads.
#pragma once
#include <cstdint>

namespace cq::kernels {

// OpenBLAS chooses kernels, edge tiles and small-matrix paths by the CPU it recognises at load and by the call's
// size, so one call on n columns and two calls on a split of them can round differently: measured on an Emerald
// Rapids Xeon with its Haswell, Zen, SkylakeX and (what 0.3.21 picks there, not knowing the CPU) Prescott kernels,
// at m 37 / n 1000 / k 300 and m 64 / n 768 / k 3072. The ops split columns at multiples of 64, one slice per
// thread; the wrappers take every slice in fixed blocks of 64 from its start, so any split makes the same calls,
// and the same bits for any thread count. The cost is A repacked once per 64 columns.
inline constexpr int64_t kOpenblasColumnBlock = 64;

}  // namespace cq::kernels
