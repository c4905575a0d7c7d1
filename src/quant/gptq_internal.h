// What gptq_quantize does, with the two knobs tests need: the precision of the sweep (f32 in the library, f64
// to check its blocked algebra against a textbook implementation) and the values the sweep chose.
#pragma once

#include <vector>

#include "cq/gptq.h"

namespace cq::gptq_detail {

struct SweepProbe {
    bool double_sweep = false;          // sweep and factor products in double instead of f32
    std::vector<float>* values = nullptr;  // if set: [n_out, n_in] the quantized value the sweep gave each weight
};

GptqResult gptq_quantize_probed(DType type, std::span<const float> W, int64_t n_out, int64_t n_in, std::span<const double> H,
                                std::span<const float> importance, const GptqOptions& options, ThreadPool* pool,
                                const SweepProbe& probe);

}  // namespace cq::gptq_detail
