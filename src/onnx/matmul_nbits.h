// ONNX Runtime's com.microsoft.MatMulNBits weights from cq's own quantized blocks, value for value: Q4_0 (4-bit,
// default zero point 8), Q8_0 (8-bit, default zero point 128), Q4_1 and Q4_K (4-bit, one float zero point per block
// of 32, since their offsets are not integers in q units). Each carries exactly the weights cq computes with.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "cq/model.h"

namespace cq::onnx_export {

struct NBitsWeights {
    int64_t n = 0, k = 0, bits = 4, block_size = 32;
    std::vector<uint8_t> packed;      // B: [n, k/block, block·bits/8], element 2i in the low nibble of byte i (4-bit)
    std::vector<float> scales;        // [n · k/block]
    std::vector<float> zero_points;   // [n · k/block] float zero points, or empty (the default 2^(bits−1))
};

/// The MatMulNBits form of a Linear's weight; nullopt when its type has no exact one (then it is written as a float MatMul).
std::optional<NBitsWeights> matmul_nbits_weights(const Linear& layer);

/// Reference decode of NBitsWeights to float [n, k] as ONNX Runtime defines it: (q − zero_point) · scale.
std::vector<float> dequantize_nbits(const NBitsWeights& w);

}  // namespace cq::onnx_export
