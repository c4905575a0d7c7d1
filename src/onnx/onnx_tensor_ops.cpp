// The ONNX interpreter's data-movement and shape operators (src/onnx/onnx_value.h), each to the ONNX specification;
// the attribute parsing lives in onnx_model.cpp. Loops are plain and single-threaded: these operators move data,
// the Linears (Conv / Gemm / MatMul) do the arithmetic through the kernel table.
#include "onnx/onnx_value.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <set>

#include "cq/error.h"
#include "onnx/onnx_ir.h"

namespace cq::onnx_interp {

void check_elements(int64_t n, const std::string& where) {
    if (n < 0 || n > kMaxElements)
        throw InvalidArgument("[onnx] " + where + ": a tensor of " + std::to_string(n) + " elements (more than cq's limit of 2^28, or a negative size)");
}

int64_t norm_axis(int64_t axis, size_t rank, const std::string& where) {
    const int64_t r = static_cast<int64_t>(rank);
    if (axis < -r || axis >= std::max<int64_t>(r, 1)) throw InvalidArgument("[onnx] " + where + ": axis " + std::to_string(axis) + " is out of range");
    return axis < 0 ? axis + r : axis;
}

std::vector<float> as_float(const Value& v) {
    if (!v.integer) return v.f;
    return std::vector<float>(v.i.begin(), v.i.end());
}

std::vector<int64_t> as_int(const Value& v) {
    if (v.integer) return v.i;
    std::vector<int64_t> out(v.f.size());
    for (size_t k = 0; k < v.f.size(); ++k) {
        const float x = v.f[k];
        // out-of-range and NaN casts are undefined in C++; ONNX leaves them implementation-defined, cq saturates
        out[k] = std::isnan(x) ? 0 : x >= 9.2e18f ? std::numeric_limits<int64_t>::max() : x <= -9.2e18f ? std::numeric_limits<int64_t>::min()
                                                                                                         : static_cast<int64_t>(x);
    }
    return out;
}

std::vector<int64_t> broadcast_shape(const std::vector<int64_t>& a, const std::vector<int64_t>& b, const std::string& where) {
    const size_t r = std::max(a.size(), b.size());
    std::vector<int64_t> out(r);
    for (size_t d = 0; d < r; ++d) {
        const int64_t x = d + a.size() >= r ? a[d + a.size() - r] : 1, y = d + b.size() >= r ? b[d + b.size() - r] : 1;
        if (x != y && x != 1 && y != 1)
            throw InvalidArgument("[onnx] " + where + ": shapes do not broadcast (dimension " + std::to_string(x) + " against " + std::to_string(y) + ")");
        out[d] = x == 1 ? y : x;
    }
    return out;
}

namespace {

// the product of dimensions [from, to) of s
int64_t product(const std::vector<int64_t>& s, size_t from, size_t to) {
    int64_t n = 1;
    for (size_t d = from; d < to; ++d) n *= s[d];
    return n;
}
int64_t product(const std::vector<int64_t>& s) { return product(s, 0, s.size()); }

// Strides of `in` (right-aligned to rank r) over an output of rank r: 0 along broadcast dimensions.
std::vector<int64_t> broadcast_strides(const std::vector<int64_t>& in, size_t r) {
    std::vector<int64_t> s(r, 0);
    int64_t k = 1;
    for (size_t j = 0; j < in.size(); ++j) {
        const size_t d = r - 1 - j, src = in.size() - 1 - j;
        s[d] = in[src] == 1 ? 0 : k;
        k *= in[src];
    }
    return s;
}

// Calls f(out_index, offset_0, offset_1, ...) for every element of `out`, the offsets following each input's strides.
template <size_t N, typename F>
void for_each_broadcast(const std::vector<int64_t>& out, const std::vector<int64_t>* const (&inputs)[N], F&& f) {
    const size_t r = out.size();
    const int64_t total = product(out);
    if (total == 0) return;
    std::vector<int64_t> strides[N];
    for (size_t k = 0; k < N; ++k) strides[k] = broadcast_strides(*inputs[k], r);
    const int64_t inner = r ? out[r - 1] : 1;
    int64_t inner_stride[N], offset[N] = {};
    for (size_t k = 0; k < N; ++k) inner_stride[k] = r ? strides[k][r - 1] : 0;
    std::vector<int64_t> idx(r, 0);
    for (int64_t base = 0; base < total; base += inner) {
        for (size_t k = 0; k < N; ++k) {
            offset[k] = 0;
            for (size_t d = 0; d + 1 < r; ++d) offset[k] += idx[d] * strides[k][d];
        }
        for (int64_t j = 0; j < inner; ++j) {
            int64_t o[N];
            for (size_t k = 0; k < N; ++k) o[k] = offset[k] + j * inner_stride[k];
            f(base + j, o);
        }
        for (int64_t d = static_cast<int64_t>(r) - 2; d >= 0; --d) {
            if (++idx[static_cast<size_t>(d)] < out[static_cast<size_t>(d)]) break;
            idx[static_cast<size_t>(d)] = 0;
        }
    }
}

template <typename T>
T apply(BinaryOp op, T a, T b) {
    switch (op) {
    case BinaryOp::add: return a + b;
    case BinaryOp::sub: return a - b;
    case BinaryOp::mul: return a * b;
    case BinaryOp::div: return a / b;
    case BinaryOp::pow: return static_cast<T>(std::pow(static_cast<double>(a), static_cast<double>(b)));
    case BinaryOp::equal: return a == b;
    case BinaryOp::less: return a < b;
    case BinaryOp::greater: return a > b;
    }
    return T{};
}

}  // namespace

Value binary(const Value& a, const Value& b, BinaryOp op, const std::string& where) {
    Value y;
    y.shape = broadcast_shape(a.shape, b.shape, where);
    const int64_t total = product(y.shape);
    check_elements(total, where);
    const bool compare = op == BinaryOp::equal || op == BinaryOp::less || op == BinaryOp::greater;
    const std::vector<int64_t>* const shapes[2] = {&a.shape, &b.shape};
    if (a.integer && b.integer) {
        y.integer = true;
        y.i.resize(static_cast<size_t>(total));
        for_each_broadcast(y.shape, shapes, [&](int64_t k, const int64_t* o) {
            const int64_t x = a.i[static_cast<size_t>(o[0])], z = b.i[static_cast<size_t>(o[1])];
            if (op == BinaryOp::div && (z == 0 || (z == -1 && x == std::numeric_limits<int64_t>::min())))
                throw InvalidArgument("[onnx] " + where + ": integer division by zero or overflowing");
            y.i[static_cast<size_t>(k)] = apply(op, x, z);
        });
        return y;
    }
    const std::vector<float> fa = as_float(a), fb = as_float(b);
    if (compare) {
        y.integer = true;
        y.i.resize(static_cast<size_t>(total));
        for_each_broadcast(y.shape, shapes, [&](int64_t k, const int64_t* o) {
            y.i[static_cast<size_t>(k)] = apply(op, fa[static_cast<size_t>(o[0])], fb[static_cast<size_t>(o[1])]) != 0.0f;
        });
        return y;
    }
    y.f.resize(static_cast<size_t>(total));
    if (a.shape == b.shape) {  // the common case (SiLU's x · sigmoid(x)): one flat loop
        for (int64_t k = 0; k < total; ++k) y.f[static_cast<size_t>(k)] = apply(op, fa[static_cast<size_t>(k)], fb[static_cast<size_t>(k)]);
        return y;
    }
    for_each_broadcast(y.shape, shapes, [&](int64_t k, const int64_t* o) {
        y.f[static_cast<size_t>(k)] = apply(op, fa[static_cast<size_t>(o[0])], fb[static_cast<size_t>(o[1])]);
    });
    return y;
}

Value where(const Value& cond, const Value& x, const Value& y, const std::string& where_) {
    if (x.integer != y.integer) throw InvalidArgument("[onnx] " + where_ + ": Where's two branches have different types");
    Value out;
    out.shape = broadcast_shape(broadcast_shape(cond.shape, x.shape, where_), y.shape, where_);
    const int64_t total = product(out.shape);
    check_elements(total, where_);
    const std::vector<int64_t> c = as_int(cond);
    const std::vector<int64_t>* const shapes[3] = {&cond.shape, &x.shape, &y.shape};
    out.integer = x.integer;
    if (out.integer) out.i.resize(static_cast<size_t>(total));
    else out.f.resize(static_cast<size_t>(total));
    for_each_broadcast(out.shape, shapes, [&](int64_t k, const int64_t* o) {
        const bool take_x = c[static_cast<size_t>(o[0])] != 0;
        if (out.integer) out.i[static_cast<size_t>(k)] = take_x ? x.i[static_cast<size_t>(o[1])] : y.i[static_cast<size_t>(o[2])];
        else out.f[static_cast<size_t>(k)] = take_x ? x.f[static_cast<size_t>(o[1])] : y.f[static_cast<size_t>(o[2])];
    });
    return out;
}

Value expand(const Value& x, const std::vector<int64_t>& shape, const std::string& where) {
    for (int64_t d : shape)
        if (d < 0) throw InvalidArgument("[onnx] " + where + ": Expand to a negative dimension");
    Value y;
    y.shape = broadcast_shape(x.shape, shape, where);
    const int64_t total = product(y.shape);
    check_elements(total, where);
    y.integer = x.integer;
    y.quant_type = x.quant_type;
    const std::vector<int64_t>* const shapes[1] = {&x.shape};
    if (y.integer) y.i.resize(static_cast<size_t>(total));
    else y.f.resize(static_cast<size_t>(total));
    for_each_broadcast(y.shape, shapes, [&](int64_t k, const int64_t* o) {
        if (y.integer) y.i[static_cast<size_t>(k)] = x.i[static_cast<size_t>(o[0])];
        else y.f[static_cast<size_t>(k)] = x.f[static_cast<size_t>(o[0])];
    });
    return y;
}

std::vector<Value> split(const Value& x, int64_t axis, const std::vector<int64_t>& sizes, const std::string& where) {
    const int64_t a = norm_axis(axis, x.shape.size(), where);
    const int64_t len = x.shape.empty() ? 0 : x.shape[static_cast<size_t>(a)];
    int64_t sum = 0;
    for (int64_t s : sizes) {
        if (s < 0) throw InvalidArgument("[onnx] " + where + ": a negative split size");
        sum += s;
    }
    if (sum != len)
        throw InvalidArgument("[onnx] " + where + ": split sizes add up to " + std::to_string(sum) + ", the axis has " + std::to_string(len));
    const int64_t outer = product(x.shape, 0, static_cast<size_t>(a)), inner = product(x.shape, static_cast<size_t>(a) + 1, x.shape.size());
    std::vector<Value> parts;
    int64_t at = 0;
    for (int64_t s : sizes) {
        Value p;
        p.shape = x.shape;
        p.shape[static_cast<size_t>(a)] = s;
        p.integer = x.integer;
        p.quant_type = x.quant_type;
        for (int64_t o = 0; o < outer; ++o) {
            const int64_t from = (o * len + at) * inner, n = s * inner;
            if (x.integer) p.i.insert(p.i.end(), x.i.begin() + from, x.i.begin() + from + n);
            else p.f.insert(p.f.end(), x.f.begin() + from, x.f.begin() + from + n);
        }
        at += s;
        parts.push_back(std::move(p));
    }
    return parts;
}

Value slice(const Value& x, const std::vector<int64_t>& starts, const std::vector<int64_t>& ends, std::vector<int64_t> axes,
            std::vector<int64_t> steps, const std::string& where) {
    const size_t r = x.shape.size();
    if (starts.size() != ends.size()) throw InvalidArgument("[onnx] " + where + ": starts and ends differ in length");
    if (axes.empty())
        for (size_t d = 0; d < starts.size(); ++d) axes.push_back(static_cast<int64_t>(d));
    if (steps.empty()) steps.assign(starts.size(), 1);
    if (axes.size() != starts.size() || steps.size() != starts.size())
        throw InvalidArgument("[onnx] " + where + ": axes / steps do not match starts in length");
    std::vector<int64_t> first(r, 0), step(r, 1), count = x.shape;
    std::set<int64_t> seen;
    for (size_t k = 0; k < axes.size(); ++k) {
        const int64_t a = norm_axis(axes[k], r, where);
        if (!seen.insert(a).second) throw InvalidArgument("[onnx] " + where + ": axis " + std::to_string(a) + " is sliced twice");
        const int64_t dim = x.shape[static_cast<size_t>(a)], s = steps[k];
        if (s == 0) throw InvalidArgument("[onnx] " + where + ": a step of 0");
        // the spec's clamping: negative values count from the end, then start / end are clamped to the axis
        int64_t b = starts[k], e = ends[k];
        if (b < 0) b += dim;
        if (e < 0) e += dim;
        if (s > 0) {
            b = std::clamp<int64_t>(b, 0, dim);
            e = std::clamp<int64_t>(e, 0, dim);
        } else {
            b = std::clamp<int64_t>(b, 0, dim - 1);
            e = std::clamp<int64_t>(e, -1, dim - 1);
        }
        const int64_t n = s > 0 ? (e > b ? (e - b + s - 1) / s : 0) : (b > e ? (b - e + (-s) - 1) / (-s) : 0);
        first[static_cast<size_t>(a)] = b;
        step[static_cast<size_t>(a)] = s;
        count[static_cast<size_t>(a)] = n;
    }
    Value y;
    y.shape = count;
    y.integer = x.integer;
    y.quant_type = x.quant_type;
    const int64_t total = product(count);
    check_elements(total, where);
    std::vector<int64_t> stride(r, 1);
    for (int64_t d = static_cast<int64_t>(r) - 2; d >= 0; --d) stride[static_cast<size_t>(d)] = stride[static_cast<size_t>(d + 1)] * x.shape[static_cast<size_t>(d + 1)];
    if (y.integer) y.i.resize(static_cast<size_t>(total));
    else y.f.resize(static_cast<size_t>(total));
    std::vector<int64_t> idx(r, 0);
    for (int64_t k = 0; k < total; ++k) {
        int64_t src = 0;
        for (size_t d = 0; d < r; ++d) src += (first[d] + idx[d] * step[d]) * stride[d];
        if (y.integer) y.i[static_cast<size_t>(k)] = x.i[static_cast<size_t>(src)];
        else y.f[static_cast<size_t>(k)] = x.f[static_cast<size_t>(src)];
        for (int64_t d = static_cast<int64_t>(r) - 1; d >= 0; --d) {
            if (++idx[static_cast<size_t>(d)] < count[static_cast<size_t>(d)]) break;
            idx[static_cast<size_t>(d)] = 0;
        }
    }
    return y;
}

Value gather(const Value& data, const Value& indices, int64_t axis, const std::string& where) {
    if (!indices.integer) throw InvalidArgument("[onnx] " + where + ": Gather's indices are not integers");
    if (data.shape.empty()) throw InvalidArgument("[onnx] " + where + ": Gather from a scalar");
    const int64_t a = norm_axis(axis, data.shape.size(), where);
    const int64_t dim = data.shape[static_cast<size_t>(a)];
    const int64_t outer = product(data.shape, 0, static_cast<size_t>(a)), inner = product(data.shape, static_cast<size_t>(a) + 1, data.shape.size());
    Value y;
    y.shape.assign(data.shape.begin(), data.shape.begin() + a);
    y.shape.insert(y.shape.end(), indices.shape.begin(), indices.shape.end());
    y.shape.insert(y.shape.end(), data.shape.begin() + a + 1, data.shape.end());
    y.integer = data.integer;
    y.quant_type = data.quant_type;
    check_elements(product(y.shape), where);
    const int64_t n_idx = static_cast<int64_t>(indices.i.size());
    for (int64_t o = 0; o < outer; ++o)
        for (int64_t k = 0; k < n_idx; ++k) {
            int64_t j = indices.i[static_cast<size_t>(k)];
            if (j < -dim || j >= dim)
                throw InvalidArgument("[onnx] " + where + ": index " + std::to_string(j) + " is outside an axis of " + std::to_string(dim));
            if (j < 0) j += dim;
            const int64_t from = (o * dim + j) * inner;
            if (data.integer) y.i.insert(y.i.end(), data.i.begin() + from, data.i.begin() + from + inner);
            else y.f.insert(y.f.end(), data.f.begin() + from, data.f.begin() + from + inner);
        }
    return y;
}

Value transpose(const Value& x, std::vector<int64_t> perm, const std::string& where) {
    const size_t r = x.shape.size();
    if (perm.empty())
        for (size_t d = 0; d < r; ++d) perm.push_back(static_cast<int64_t>(r - 1 - d));
    if (perm.size() != r) throw InvalidArgument("[onnx] " + where + ": perm has the wrong length");
    std::vector<int64_t> sorted = perm;
    std::sort(sorted.begin(), sorted.end());
    for (size_t d = 0; d < r; ++d)
        if (sorted[d] != static_cast<int64_t>(d)) throw InvalidArgument("[onnx] " + where + ": perm is not a permutation");
    std::vector<int64_t> in_stride(r, 1);
    for (int64_t d = static_cast<int64_t>(r) - 2; d >= 0; --d) in_stride[static_cast<size_t>(d)] = in_stride[static_cast<size_t>(d + 1)] * x.shape[static_cast<size_t>(d + 1)];
    Value y;
    y.integer = x.integer;
    y.quant_type = x.quant_type;
    y.shape.resize(r);
    std::vector<int64_t> stride(r);
    for (size_t d = 0; d < r; ++d) {
        y.shape[d] = x.shape[static_cast<size_t>(perm[d])];
        stride[d] = in_stride[static_cast<size_t>(perm[d])];
    }
    const int64_t total = x.numel();
    if (y.integer) y.i.resize(static_cast<size_t>(total));
    else y.f.resize(static_cast<size_t>(total));
    std::vector<int64_t> idx(r, 0);
    for (int64_t k = 0; k < total; ++k) {
        int64_t src = 0;
        for (size_t d = 0; d < r; ++d) src += idx[d] * stride[d];
        if (y.integer) y.i[static_cast<size_t>(k)] = x.i[static_cast<size_t>(src)];
        else y.f[static_cast<size_t>(k)] = x.f[static_cast<size_t>(src)];
        for (int64_t d = static_cast<int64_t>(r) - 1; d >= 0; --d) {
            if (++idx[static_cast<size_t>(d)] < y.shape[static_cast<size_t>(d)]) break;
            idx[static_cast<size_t>(d)] = 0;
        }
    }
    return y;
}

Value range(const Value& start, const Value& limit, const Value& delta, const std::string& where) {
    for (const Value* v : {&start, &limit, &delta})
        if (v->numel() != 1) throw InvalidArgument("[onnx] " + where + ": Range's start, limit and delta must be scalars");
    Value y;
    if (start.integer && limit.integer && delta.integer) {
        const int64_t s = start.i[0], l = limit.i[0], d = delta.i[0];
        if (d == 0) throw InvalidArgument("[onnx] " + where + ": Range with delta 0");
        const int64_t n = std::max<int64_t>(0, d > 0 ? (l - s + d - 1) / d : (s - l + (-d) - 1) / (-d));
        check_elements(n, where);
        y.integer = true;
        y.shape = {n};
        for (int64_t k = 0; k < n; ++k) y.i.push_back(s + k * d);
        return y;
    }
    const float s = as_float(start)[0], l = as_float(limit)[0], d = as_float(delta)[0];
    if (d == 0.0f || !std::isfinite(s) || !std::isfinite(l) || !std::isfinite(d))
        throw InvalidArgument("[onnx] " + where + ": Range with delta 0 or a non-finite bound");
    const double count = std::ceil((static_cast<double>(l) - s) / d);
    if (count > static_cast<double>(kMaxElements)) check_elements(kMaxElements + 1, where);
    const int64_t n = std::max<int64_t>(0, static_cast<int64_t>(count));
    y.shape = {n};
    for (int64_t k = 0; k < n; ++k) y.f.push_back(s + static_cast<float>(k) * d);
    return y;
}

Value cast(const Value& x, int32_t to, const std::string& where) {
    Value y;
    y.shape = x.shape;
    switch (to) {
    case onnx_ir::kFloat:
    case onnx_ir::kDouble:  // held as float: the interpreter computes in float throughout
        y.f = as_float(x);
        return y;
    case onnx_ir::kBool:
        y.integer = true;
        y.i.resize(static_cast<size_t>(x.numel()));
        for (size_t k = 0; k < y.i.size(); ++k) y.i[k] = x.integer ? x.i[k] != 0 : x.f[k] != 0.0f;
        return y;
    case onnx_ir::kInt64: case onnx_ir::kInt32: case onnx_ir::kInt16: case onnx_ir::kInt8:
    case onnx_ir::kUint64: case onnx_ir::kUint32: case onnx_ir::kUint16: case onnx_ir::kUint8: {
        y.integer = true;
        y.i = as_int(x);
        const int bits = to == onnx_ir::kInt8 || to == onnx_ir::kUint8 ? 8 : to == onnx_ir::kInt16 || to == onnx_ir::kUint16 ? 16
                         : to == onnx_ir::kInt32 || to == onnx_ir::kUint32 ? 32 : 64;
        const bool is_signed = to == onnx_ir::kInt8 || to == onnx_ir::kInt16 || to == onnx_ir::kInt32 || to == onnx_ir::kInt64;
        if (bits < 64)  // integer casts wrap as in C (two's complement), as ONNX Runtime's do
            for (int64_t& v : y.i) {
                const uint64_t m = (uint64_t{1} << bits) - 1, u = static_cast<uint64_t>(v) & m;
                v = is_signed && (u >> (bits - 1)) ? static_cast<int64_t>(u) - static_cast<int64_t>(m) - 1 : static_cast<int64_t>(u);
            }
        if (to == onnx_ir::kInt8 || to == onnx_ir::kUint8) y.quant_type = to;
        return y;
    }
    default:
        throw Unsupported("[onnx] " + where + ": Cast to data type " + std::to_string(to) +
                          " (cq casts to float, double, bool and the 8- to 64-bit integer types)");
    }
}

Value resize_nearest(const Value& x, std::vector<float> scales, const std::vector<int64_t>& sizes, const std::string& coordinate_mode,
                     const std::string& nearest_mode, const std::string& where) {
    const size_t r = x.shape.size();
    // tf_half_pixel_for_nearest (opset 11 only) and tf_crop_and_resize are not taken: ONNX Runtime 1.30 refuses the
    // first, and nothing here checks the second against a reference
    static const std::set<std::string> kModes = {"half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners", "asymmetric"};
    static const std::set<std::string> kRounding = {"round_prefer_floor", "round_prefer_ceil", "floor", "ceil"};
    if (!kModes.count(coordinate_mode))
        throw Unsupported("[onnx] " + where + ": coordinate_transformation_mode '" + coordinate_mode +
                          "' (cq resizes with half_pixel, half_pixel_symmetric, pytorch_half_pixel, align_corners and asymmetric)");
    if (!kRounding.count(nearest_mode)) throw Unsupported("[onnx] " + where + ": nearest_mode '" + nearest_mode + "'");
    if (r == 0) throw InvalidArgument("[onnx] " + where + ": Resize of a scalar");
    if (!sizes.empty() == !scales.empty()) throw InvalidArgument("[onnx] " + where + ": Resize needs exactly one of scales and sizes");
    if ((!sizes.empty() && sizes.size() != r) || (!scales.empty() && scales.size() != r))
        throw InvalidArgument("[onnx] " + where + ": " + std::to_string(std::max(sizes.size(), scales.size())) + " scales / sizes for a tensor of rank " +
                              std::to_string(r));
    std::vector<int64_t> out(r);
    for (size_t d = 0; d < r; ++d) {
        if (!sizes.empty()) {
            if (sizes[d] < 0) throw InvalidArgument("[onnx] " + where + ": a negative size");
            out[d] = sizes[d];
            scales.push_back(x.shape[d] > 0 ? static_cast<float>(sizes[d]) / static_cast<float>(x.shape[d]) : 1.0f);
        } else {
            if (!(scales[d] > 0.0f) || !std::isfinite(scales[d])) throw InvalidArgument("[onnx] " + where + ": scales must be positive");
            const double o = std::floor(static_cast<double>(x.shape[d]) * scales[d]);
            if (o > static_cast<double>(kMaxElements)) check_elements(kMaxElements + 1, where);
            out[d] = static_cast<int64_t>(o);
        }
    }
    check_elements(product(out), where);
    // per axis: the input index each output index reads
    std::vector<std::vector<int64_t>> src(r);
    for (size_t d = 0; d < r; ++d) {
        const int64_t in = x.shape[d], n = out[d];
        const float s = scales[d];
        src[d].resize(static_cast<size_t>(n));
        for (int64_t o = 0; o < n; ++o) {
            float c = 0;
            const float of = static_cast<float>(o);
            if (coordinate_mode == "half_pixel") c = (of + 0.5f) / s - 0.5f;
            else if (coordinate_mode == "half_pixel_symmetric") {
                const float adjustment = static_cast<float>(n) / (s * static_cast<float>(in));
                const float center = static_cast<float>(in) / 2.0f, offset = center * (1.0f - adjustment);
                c = offset + (of + 0.5f) / s - 0.5f;
            } else if (coordinate_mode == "pytorch_half_pixel") c = n > 1 ? (of + 0.5f) / s - 0.5f : 0.0f;
            else if (coordinate_mode == "align_corners") c = n == 1 ? 0.0f : of * static_cast<float>(in - 1) / static_cast<float>(n - 1);
            else c = of / s;  // asymmetric
            float i;
            if (nearest_mode == "floor") i = std::floor(c);
            else if (nearest_mode == "ceil") i = std::ceil(c);
            else if (c == std::floor(c) + 0.5f) i = nearest_mode == "round_prefer_floor" ? std::floor(c) : std::ceil(c);
            else i = std::round(c);
            src[d][static_cast<size_t>(o)] = std::clamp<int64_t>(static_cast<int64_t>(i), 0, std::max<int64_t>(in - 1, 0));
        }
    }
    Value y;
    y.shape = out;
    y.integer = x.integer;
    y.quant_type = x.quant_type;
    const int64_t total = product(out);
    if (y.integer) y.i.resize(static_cast<size_t>(total));
    else y.f.resize(static_cast<size_t>(total));
    std::vector<int64_t> stride(r, 1);
    for (int64_t d = static_cast<int64_t>(r) - 2; d >= 0; --d) stride[static_cast<size_t>(d)] = stride[static_cast<size_t>(d + 1)] * x.shape[static_cast<size_t>(d + 1)];
    std::vector<int64_t> idx(r, 0);
    for (int64_t k = 0; k < total; ++k) {
        int64_t from = 0;
        for (size_t d = 0; d < r; ++d) from += src[d][static_cast<size_t>(idx[d])] * stride[d];
        if (y.integer) y.i[static_cast<size_t>(k)] = x.i[static_cast<size_t>(from)];
        else y.f[static_cast<size_t>(k)] = x.f[static_cast<size_t>(from)];
        for (int64_t d = static_cast<int64_t>(r) - 1; d >= 0; --d) {
            if (++idx[static_cast<size_t>(d)] < out[static_cast<size_t>(d)]) break;
            idx[static_cast<size_t>(d)] = 0;
        }
    }
    return y;
}

}  // namespace cq::onnx_interp
