// The ONNX interpreter's tensors (cq/onnx_model.h) and its data-movement and shape operators, each to the ONNX
// specification: Split, Slice, Gather, Expand, Where, Resize (nearest), Range, Cast and broadcasting binary ops.
// Float tensors hold floats; integer and bool tensors (shapes, indices, masks, quantized codes) hold int64 values.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace cq::onnx_interp {

struct Value {
    std::vector<int64_t> shape;
    std::vector<float> f;        // float tensors
    std::vector<int64_t> i;      // integer and bool tensors
    bool integer = false;
    int32_t quant_type = 0;      // QuantizeLinear's output type (uint8 / int8) while stored as codes
    // A 4-D float tensor whose shape is [N, C, H, W] as the graph sees it but whose data is laid out [N, H, W, C]: what
    // the W8A8 convs read and write. Only operators that read this layout see it; the interpreter converts it for others.
    bool channels_last = false;
    int64_t numel() const {
        int64_t n = 1;
        for (int64_t d : shape) n *= d;
        return n;
    }
};

/// Tensors the interpreter makes are bounded, so a hostile shape is an error rather than an allocation failure.
constexpr int64_t kMaxElements = int64_t{1} << 28;
void check_elements(int64_t n, const std::string& where);
/// A possibly negative axis of a tensor of rank `rank`, made non-negative; InvalidArgument when out of range.
int64_t norm_axis(int64_t axis, size_t rank, const std::string& where);
/// The values as floats (integers converted).
std::vector<float> as_float(const Value& v);
/// The values as integers (floats truncated toward zero, as Cast does).
std::vector<int64_t> as_int(const Value& v);

/// numpy / ONNX multidirectional broadcasting of two shapes; InvalidArgument when they do not broadcast.
std::vector<int64_t> broadcast_shape(const std::vector<int64_t>& a, const std::vector<int64_t>& b, const std::string& where);

enum class BinaryOp { add, sub, mul, div, equal, less, greater, pow };
/// Elementwise a op b with broadcasting. Two integer tensors give an integer result (Div truncates toward zero, as
/// ONNX Runtime does; division by zero is an error), comparisons give a bool (0 / 1) tensor, otherwise floats.
Value binary(const Value& a, const Value& b, BinaryOp op, const std::string& where);
/// Where(cond, x, y) with broadcasting over all three.
Value where(const Value& cond, const Value& x, const Value& y, const std::string& where);
/// Expand: x broadcast to broadcast_shape(x.shape, shape).
Value expand(const Value& x, const std::vector<int64_t>& shape, const std::string& where);

/// Split along `axis` into parts of the given sizes (they must add up to the axis length).
std::vector<Value> split(const Value& x, int64_t axis, const std::vector<int64_t>& sizes, const std::string& where);
/// Slice (opset 10+ semantics): per listed axis, start / end clamped as the spec says (negative values count from the
/// end; for negative steps start ≤ dim−1 and end ≥ −1), step ≠ 0. Axes may be negative but not repeated.
Value slice(const Value& x, const std::vector<int64_t>& starts, const std::vector<int64_t>& ends, std::vector<int64_t> axes,
            std::vector<int64_t> steps, const std::string& where);
/// Gather along `axis`: output shape data.shape[:axis] + indices.shape + data.shape[axis+1:]; negative indices count
/// from the end; an index outside [−dim, dim) is an error.
Value gather(const Value& data, const Value& indices, int64_t axis, const std::string& where);
/// Transpose by `perm` (empty: reversed axes).
Value transpose(const Value& x, std::vector<int64_t> perm, const std::string& where);
/// Range(start, limit, delta): max(ceil((limit − start) / delta), 0) values start + k·delta; integer when all three are.
Value range(const Value& start, const Value& limit, const Value& delta, const std::string& where);
/// Cast to an ONNX data type: float / double (held as float), int8 … int64, uint8 … uint64, bool. Unsupported otherwise.
Value cast(const Value& x, int32_t to, const std::string& where);

/// Resize in nearest mode: output size per axis from `scales` (floor(in · scale)) or `sizes`; each output index maps
/// back through `coordinate_transformation_mode` (half_pixel, half_pixel_symmetric, pytorch_half_pixel,
/// align_corners, asymmetric) and is rounded by `nearest_mode` (round_prefer_floor,
/// round_prefer_ceil, floor, ceil), then clamped to the input.
Value resize_nearest(const Value& x, std::vector<float> scales, const std::vector<int64_t>& sizes, const std::string& coordinate_mode,
                     const std::string& nearest_mode, const std::string& where);

}  // namespace cq::onnx_interp
