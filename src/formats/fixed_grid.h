// A quantized block as a fixed grid: once a block's scales (and mins) are chosen, each sub-block is a set of
// levels; these helpers read that grid from the block's bytes, round a value to its nearest level, and write a
// block's levels back under the same scales (GPTQ's sweep chooses levels column by column on a fixed grid).
// Level values are evaluated exactly as the reference dequantizers evaluate them, so decoding the bytes gives
// the values a caller computed, bit for bit.
#pragma once

#include <cstdint>

#include "cq/dtype.h"

namespace cq::formats {

/// The levels of one sub-block: value(L) = step·(L − zero) − offset for the uniform grids, step·kIQ4NLValues[L]
/// for IQ4_NL / IQ4_XS (non_linear); L ∈ [0, n_levels).
struct SubBlockGrid {
    float step = 0.0f;
    float offset = 0.0f;
    int32_t zero = 0;
    int32_t n_levels = 0;
    bool non_linear = false;
};

/// Elements that share one (scale, min): 16 for Q2_K, Q3_K, Q6_K; 32 for the others.
/// 0 for types without fixed-grid helpers (has_fixed_grid false).
int fixed_grid_sub_block(DType type);
/// Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K … Q6_K, IQ4_NL, IQ4_XS.
bool has_fixed_grid(DType type);

/// The grid of sub-block `sub` (0 … block_size/sub_block − 1) of `block`.
SubBlockGrid sub_block_grid(DType type, const void* block, int sub);

/// The value of level L of the grid, computed as the type's reference dequantizer computes it.
inline float grid_value(const SubBlockGrid& g, int level);

/// The level nearest to x (the codecs' requantization rule: nearest_int((x + offset)/step) + zero, clamped;
/// IQ4: the nearest of the 16 values of x/step), or -1 when step is 0 (every level has the same value).
inline int nearest_grid_level(const SubBlockGrid& g, float x);

/// The index of the IQ4 level (kIQ4NLValues) nearest to v, ties to the lower one (codecs_iq4.cpp's rounding).
int nearest_iq4_level(float v);

/// All block_size levels of `block`, in element order.
void read_block_levels(DType type, const void* block, uint8_t* levels);
/// Overwrites the levels of `block` (block_size of them, element order, each < its grid's n_levels), keeping
/// its scales and mins.
void write_block_levels(DType type, void* block, const uint8_t* levels);

}  // namespace cq::formats

#include <algorithm>

#include "formats/blocks.h"
#include "formats/codec_math.h"

namespace cq::formats {

inline int nearest_grid_level(const SubBlockGrid& g, float x) {
    if (g.step == 0.0f) return -1;
    if (g.non_linear) return nearest_iq4_level(x * (1.0f / g.step));
    // nearest_int needs |v| < 2^22; a value that far off the grid clamps to an end level either way.
    const float v = std::clamp((x + g.offset) / g.step, -4194304.0f, 4194304.0f);
    return std::clamp(nearest_int(v) + g.zero, 0, g.n_levels - 1);
}

inline float grid_value(const SubBlockGrid& g, int level) {
    if (g.non_linear) return g.step * static_cast<float>(kIQ4NLValues[level]);
    return g.step * static_cast<float>(level - g.zero) - g.offset;
}

}  // namespace cq::formats
