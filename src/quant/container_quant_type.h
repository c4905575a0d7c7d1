// The `--type` of a quantization into one of cq's containers (encoder–decoders, DETR): W8A8 with dynamic or static
// activations, or a ggml block type for weight-only quantization. One parser, so every family reads it alike.
#pragma once

#include <optional>
#include <string>

#include "cq/dtype.h"
#include "cq/error.h"

namespace cq::quant {

struct ContainerQuantType {
    bool w8a8 = false, is_static = false;  // W8A8, and with calibrated (static) activation ranges
    std::optional<DType> block;             // weight-only: the block type
};

inline ContainerQuantType parse_container_quant_type(const std::string& type) {
    ContainerQuantType t;
    t.w8a8 = type == "w8a8-dynamic" || type == "w8a8-static";
    t.is_static = type == "w8a8-static";
    if (!t.w8a8) t.block = dtype_from_name(type);
    if (!t.w8a8 && (!t.block || !dtype_traits(*t.block).is_quantized || !dtype_traits(*t.block).from_float))
        throw InvalidArgument("[quantize] type '" + type + "' is not w8a8-dynamic, w8a8-static or a block type (q4_0, q8_0, q4_K …)");
    return t;
}

}  // namespace cq::quant
