// Which activation type each weight format's matrix product quantizes its input to (ggml's
// vec_dot_type), so kernels and the runtime agree on the pairing.
#include "formats/formats.h"

namespace cq::formats {

std::optional<DType> activation_type(DType weights) {
    switch (weights) {
        case DType::Q4_0:
        case DType::Q5_0:
        case DType::Q8_0:
            return DType::Q8_0;
        case DType::Q4_1:
        case DType::Q5_1:
            return DType::Q8_1;
        case DType::Q2_K:
        case DType::Q3_K:
        case DType::Q4_K:
        case DType::Q5_K:
        case DType::Q6_K:
            return DType::Q8_K;
        default:
            return std::nullopt;
    }
}

}  // namespace cq::formats
