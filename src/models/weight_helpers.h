// Small helpers the model loaders share: a shape as text for error messages, and a tensor widened to
// f32 (for norms and biases, which are small and read on every token).
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "cq/tensor.h"

namespace cq::models {

/// {2, 3} → "[2, 3]", as Tensor::shape_string() prints a tensor's own shape.
inline std::string shape_str(const std::vector<int64_t>& s) {
    std::string out = "[";
    for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
    return out + "]";
}

/// `t` itself if f32, else an owned f32 copy.
inline Tensor to_f32(const Tensor& t) {
    if (t.dtype() == DType::F32) return t;
    Tensor out = Tensor::zeros(t.shape(), DType::F32);
    const auto v = t.to_float();
    std::copy(v.begin(), v.end(), static_cast<float*>(out.mutable_data()));
    return out;
}

}  // namespace cq::models
