// OnnxModel: an imported ONNX graph run in its node order (see cq/onnx_model.h). At load, nodes whose inputs are all
// constants are folded (so QDQ weights become float weights), Conv / Gemm / MatMul with constant weights become
// Linears, and a BatchNormalization right after a Conv is folded into it. At run time the other operators are plain
// loops over NCHW float tensors.
#include "cq/onnx_model.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <map>
#include <set>
#include <unordered_map>

#include "cq/error.h"
#include "cq/kernels.h"
#include "cq/thread_pool.h"
#include "cq/w8a8.h"
#include "onnx/conv2d.h"
#include "onnx/onnx_file.h"
#include "onnx/onnx_graph_state.h"
#include "onnx/onnx_value.h"
#include "onnx/onnx_validate.h"
#include "ops/ops.h"
#include "cq/tensor.h"

namespace cq {

namespace {

using onnx_interp::as_float;
using onnx_interp::BinaryOp;
using onnx_interp::check_elements;
using onnx_interp::norm_axis;
using onnx_interp::Value;
using ValueMap = std::unordered_map<std::string, Value>;

const std::set<std::string> kSupported = {
    "Conv", "BatchNormalization", "Relu", "LeakyRelu", "Clip", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "MaxPool",
    "AveragePool", "GlobalAveragePool", "Gemm", "MatMul", "Add", "Sub", "Mul", "Div", "Concat", "Reshape", "Flatten",
    "Transpose", "Softmax", "Dropout", "Identity", "Constant", "QuantizeLinear", "DequantizeLinear", "Squeeze", "Unsqueeze",
    "Split", "Slice", "Shape", "Gather", "Expand", "Cast", "Range", "ConstantOfShape", "Resize", "Equal", "Less", "Greater", "Where",
    "Pow"};

const onnx_ir::Attribute* find_attr(const onnx_ir::Node& n, const std::string& name) {
    for (const auto& a : n.attributes)
        if (a.name == name) return &a;
    return nullptr;
}
int64_t attr_i(const onnx_ir::Node& n, const std::string& name, int64_t dflt) {
    const auto* a = find_attr(n, name);
    return a ? a->i : dflt;
}
float attr_f(const onnx_ir::Node& n, const std::string& name, float dflt) {
    const auto* a = find_attr(n, name);
    return a ? a->f : dflt;
}
std::vector<int64_t> attr_ints(const onnx_ir::Node& n, const std::string& name, std::vector<int64_t> dflt) {
    const auto* a = find_attr(n, name);
    return a ? a->ints : dflt;
}
std::string attr_s(const onnx_ir::Node& n, const std::string& name) {
    const auto* a = find_attr(n, name);
    return a ? a->s : "";
}

Value from_tensor(const onnx_ir::Tensor& t, const std::string& where) {
    Value v;
    v.shape = t.dims;
    const auto count = checked_numel(t.dims);
    if (!count) throw FormatError("onnx", where, 0, "tensor '" + t.name + "' has a negative or overflowing shape");
    const int64_t n = *count, eb = onnx_export::element_bytes(t.data_type);
    if (eb > 0 && static_cast<uint64_t>(t.raw.size()) != static_cast<uint64_t>(n) * static_cast<uint64_t>(eb))
        throw FormatError("onnx", where, 0, "tensor '" + t.name + "' holds " + std::to_string(t.raw.size()) + " bytes, its shape needs " +
                                                std::to_string(n * eb));
    const char* p = t.raw.data();
    auto ints = [&](auto type_tag) {
        using T = decltype(type_tag);
        v.integer = true;
        v.i.resize(static_cast<size_t>(n));
        for (int64_t k = 0; k < n; ++k) {
            T x;
            std::memcpy(&x, p + k * static_cast<int64_t>(sizeof(T)), sizeof(T));
            v.i[static_cast<size_t>(k)] = static_cast<int64_t>(x);
        }
    };
    switch (t.data_type) {
    case onnx_ir::kFloat:  // an empty tensor has no bytes to copy (and memcpy must not see its null pointer)
        v.f.resize(static_cast<size_t>(n));
        if (n > 0) std::memcpy(v.f.data(), p, static_cast<size_t>(n) * 4);
        break;
    case onnx_ir::kInt64: ints(int64_t{}); break;
    case onnx_ir::kInt32: ints(int32_t{}); break;
    case onnx_ir::kInt8: ints(int8_t{}); v.quant_type = onnx_ir::kInt8; break;
    case onnx_ir::kUint8: ints(uint8_t{}); v.quant_type = onnx_ir::kUint8; break;
    case onnx_ir::kBool: ints(uint8_t{}); for (int64_t& b : v.i) b = b != 0; break;
    default: throw Unsupported("[onnx] " + where + ": tensor '" + t.name + "' has data type " + std::to_string(t.data_type) +
                               " (cq imports float, int64, int32, int8, uint8 and bool tensors)");
    }
    return v;
}

}  // namespace


namespace {

// The inputs of an operator that decide its output's shape (their values, not their shapes).
std::vector<size_t> shape_giving_inputs(const std::string& op, int64_t opset) {
    if (op == "Reshape" || op == "Expand") return {1};
    if (op == "Slice") return opset >= 10 ? std::vector<size_t>{1, 2, 3, 4} : std::vector<size_t>{};
    if (op == "Split" || op == "Squeeze" || op == "Unsqueeze") return {1};
    if (op == "Range") return {0, 1, 2};
    if (op == "ConstantOfShape") return {0};
    if (op == "Resize") return {1, 2, 3};
    return {};
}

}  // namespace

OnnxModel::OnnxModel() = default;
OnnxModel::~OnnxModel() = default;

std::string OnnxModel::supported_operators() {
    std::string s;
    for (const auto& op : kSupported) s += (s.empty() ? "" : ", ") + op;
    return s;
}

const std::string& OnnxModel::input_name() const { return state_->input_name; }
const std::vector<int64_t>& OnnxModel::input_shape() const { return state_->input_shape; }
const std::string& OnnxModel::output_name() const { return state_->output_name; }

void OnnxModel::collect_linears(std::vector<Linear*>& out) {
    for (auto& l : state_->linears) out.push_back(l.get());
}

std::vector<LayerInfo> OnnxModel::layers() const {
    std::vector<LayerInfo> out;
    for (const auto& l : state_->linears)
        out.push_back(LayerInfo{l->name, l->source_name, l->role, -1, {l->n_out(), l->n_in()}, l->format(), l->bytes(), true});
    return out;
}

void OnnxModel::save(const std::string&, const SaveOptions&) const {
    throw Unsupported("[onnx] an imported ONNX model cannot be saved as GGUF yet; use cq export to write ONNX");
}

namespace {

// A channels-last value ([N, C, H, W] laid out [N, H, W, C]) in the graph's own layout.
Value channels_first(const Value& x) {
    if (!x.channels_last) return x;
    Value y;
    y.shape = x.shape;
    y.f.resize(x.f.size());
    onnx_ops::nhwc_to_nchw(x.f.data(), x.shape[0], x.shape[2] * x.shape[3], x.shape[1], y.f.data());
    return y;
}

// Runs one node on values; shared by constant folding (load) and run().
struct Interpreter {
    OnnxGraphState& st;
    ValueMap& vals;

    const Value& in(const onnx_ir::Node& n, size_t k) {
        if (k >= n.inputs.size() || n.inputs[k].empty())
            throw InvalidArgument("[onnx] node '" + n.name + "' (" + n.op_type + ") lacks input " + std::to_string(k));
        auto it = vals.find(n.inputs[k]);
        if (it != vals.end()) return it->second;
        auto c = st.constants.find(n.inputs[k]);
        if (c != st.constants.end()) return c->second;
        throw InvalidArgument("[onnx] node '" + n.name + "' reads '" + n.inputs[k] + "', which has no value");
    }
    // Input k by value: moved out of the run's values when node `index` is its last reader and reads it once (an
    // elementwise op or a reshape then reuses the buffer instead of copying it), copied otherwise.
    Value take(const onnx_ir::Node& n, size_t k, size_t index) {
        // (while constants are folded at load there is no release list yet, and nothing to take)
        if (k < n.inputs.size() && index < st.release_after.size() && std::count(n.inputs.begin(), n.inputs.end(), n.inputs[k]) == 1) {
            const auto& released = st.release_after[index];
            auto it = vals.find(n.inputs[k]);
            if (it != vals.end() && std::binary_search(released.begin(), released.end(), n.inputs[k])) return std::move(it->second);
        }
        return in(n, k);
    }
    // Whether a W8A8 Linear runs its static path (onnx_ops::conv2d_w8a8_static for a Conv): observers need float inputs.
    static bool static_w8a8(const Linear& l) { return l.int8 && l.int8->activations == ActivationQuant::static_per_tensor && !l.observers; }
    // Whether node `index` reads channels-last inputs (Value::channels_last) as they are; others get them converted.
    bool reads_channels_last(size_t index) const {
        const auto& n = st.model.graph.nodes[index];
        const std::string& op = n.op_type;
        if (op == "Relu" || op == "LeakyRelu" || op == "Sigmoid" || op == "Tanh" || op == "HardSigmoid" || op == "HardSwish" || op == "Clip" ||
            op == "MaxPool" || op == "AveragePool" || op == "GlobalAveragePool" || op == "Shape")
            return true;
        if (op == "Concat") return attr_i(n, "axis", 0) == 1 || attr_i(n, "axis", 0) == -3;  // the channels of a 4-D tensor
        if (op == "Add" || op == "Sub" || op == "Mul" || op == "Div") return per_channel_operand(n) >= 0;
        if (op == "Conv") {
            const auto li = st.node_linear.find(index);
            return li != st.node_linear.end() && static_w8a8(*st.linears[li->second]);
        }
        return false;
    }
    // For a binary node of a computed tensor and a constant that is one value per channel ([C, 1, 1] or [1, C, 1, 1]) or a
    // single value: the constant's input index; −1 otherwise.
    int per_channel_operand(const onnx_ir::Node& n) const {
        if (n.inputs.size() != 2) return -1;
        for (int k = 0; k < 2; ++k) {
            const auto c = st.constants.find(n.inputs[static_cast<size_t>(k)]);
            if (c == st.constants.end() || st.constants.count(n.inputs[static_cast<size_t>(1 - k)]) || c->second.integer) continue;
            const auto& sh = c->second.shape;
            const bool per_channel = (sh.size() == 3 && sh[1] == 1 && sh[2] == 1) || (sh.size() == 4 && sh[0] == 1 && sh[2] == 1 && sh[3] == 1);
            if (per_channel || (c->second.numel() == 1 && sh.size() <= 4)) return k;
        }
        return -1;
    }
    // Whether a value is best written channels-last: every node reading it reads that layout (graph outputs have none).
    bool write_channels_last(const std::string& name) const {
        const auto it = st.readers.find(name);
        return it != st.readers.end() && !it->second.empty() &&
               std::all_of(it->second.begin(), it->second.end(), [&](size_t r) { return reads_channels_last(r); });
    }
    // Whether Concat node `c`'s convs write its output in place in this run (OnnxGraphState::conv_into_concat).
    bool concat_in_place(size_t c) const {
        const auto it = st.concat_convs.find(c);
        if (it == st.concat_convs.end() || !reads_channels_last(c) || !write_channels_last(st.model.graph.nodes[c].outputs[0])) return false;
        return std::all_of(it->second.begin(), it->second.end(), [&](size_t k) { return static_w8a8(*st.linears[st.node_linear.at(k)]); });
    }
    // Converts the run's value `name` to the graph's own layout in place (no-op unless it is channels-last).
    void to_channels_first(const std::string& name) {
        auto it = vals.find(name);
        if (it != vals.end() && it->second.channels_last) it->second = channels_first(it->second);
    }
    bool has(const onnx_ir::Node& n, size_t k) const { return k < n.inputs.size() && !n.inputs[k].empty(); }
    // an input that must hold integers (shapes, axes, starts ...)
    std::vector<int64_t> integer_input(const onnx_ir::Node& n, size_t k, const std::string& where) {
        const Value& v = in(n, k);
        if (!v.integer) throw InvalidArgument("[onnx] " + where + ": input " + std::to_string(k) + " is not an integer tensor");
        return v.i;
    }

    void run(size_t index, const onnx_ir::Node& n);
};

// Waking another thread costs tens of microseconds on a busy or virtual machine: pooling splits only past this many
// window reads per thread.
constexpr int64_t kMinParallelWork = int64_t{1} << 16;

void pool2d(const Value& x, Value& y, const onnx_ir::Node& n, bool is_max, const std::string& where) {
    if (x.shape.size() != 4) throw Unsupported("[onnx] " + where + ": only 2-D pooling of NCHW tensors");
    const auto k = attr_ints(n, "kernel_shape", {});
    if (k.size() != 2) throw InvalidArgument("[onnx] " + where + ": kernel_shape must have 2 values");
    const auto s = attr_ints(n, "strides", {1, 1});
    const auto p = attr_ints(n, "pads", {0, 0, 0, 0});
    const std::string ap = attr_s(n, "auto_pad");
    if (!ap.empty() && ap != "NOTSET" && ap != "VALID") throw Unsupported("[onnx] " + where + ": auto_pad " + ap);
    for (int64_t dil : attr_ints(n, "dilations", {1, 1}))
        if (dil != 1) throw Unsupported("[onnx] " + where + ": pooling with dilations other than 1");
    if (s.size() != 2 || p.size() != 4 || k[0] < 1 || k[1] < 1 || s[0] < 1 || s[1] < 1 || *std::min_element(p.begin(), p.end()) < 0)
        throw InvalidArgument("[onnx] " + where + ": kernel, strides and pads must be positive (pads ≥ 0), 2 / 2 / 4 values");
    const bool ceil_mode = attr_i(n, "ceil_mode", 0) != 0, count_pad = attr_i(n, "count_include_pad", 0) != 0;
    const int64_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3];
    auto out_dim = [&](int64_t in, int64_t kk, int64_t ss, int64_t p0, int64_t p1) {
        const double v = static_cast<double>(in + p0 + p1 - kk) / static_cast<double>(ss);
        return static_cast<int64_t>(ceil_mode ? std::ceil(v) : std::floor(v)) + 1;
    };
    const int64_t OH = out_dim(H, k[0], s[0], p[0], p[2]), OW = out_dim(W, k[1], s[1], p[1], p[3]);
    if (OH <= 0 || OW <= 0) throw InvalidArgument("[onnx] " + where + ": the pooling window does not fit the input");
    check_elements(N * C * OH * OW, where);
    y.shape = {N, C, OH, OW};
    y.f.assign(static_cast<size_t>(N * C * OH * OW), 0.0f);
    const float* xf = x.f.data();
    float* yf = y.f.data();
    const int64_t k0 = k[0], k1 = k[1], s0 = s[0], s1 = s[1], p0 = p[0], p1 = p[1], p2 = p[2], p3 = p[3];
    if (x.channels_last) {
        // channels-last in and out: each window cell is a run of C values, reduced channel by channel in the same cell
        // order as below (so the same results)
        y.channels_last = true;
        ThreadPool::global().parallel_for(N * OH, [=](int64_t r0, int64_t r1) {
            std::vector<double> sum(is_max ? 0 : static_cast<size_t>(C));
            for (int64_t r = r0; r < r1; ++r) {
                const int64_t nn = r / OH, oy = r % OH;
                for (int64_t ox = 0; ox < OW; ++ox) {
                    const int64_t y0 = oy * s0 - p0, x0 = ox * s1 - p1;
                    const int64_t ky0 = std::max<int64_t>(0, -y0), ky1 = std::min(k0, H - y0), kx0 = std::max<int64_t>(0, -x0), kx1 = std::min(k1, W - x0);
                    float* out = yf + ((nn * OH + oy) * OW + ox) * C;
                    if (is_max) std::fill(out, out + C, -std::numeric_limits<float>::infinity());
                    else std::fill(sum.begin(), sum.end(), 0.0);
                    for (int64_t ky = ky0; ky < ky1; ++ky)
                        for (int64_t kx = kx0; kx < kx1; ++kx) {
                            const float* cell = xf + ((nn * H + y0 + ky) * W + x0 + kx) * C;
                            if (is_max)
                                for (int64_t c = 0; c < C; ++c) out[c] = std::max(out[c], cell[c]);
                            else
                                for (int64_t c = 0; c < C; ++c) sum[static_cast<size_t>(c)] += cell[c];
                        }
                    if (!is_max) {
                        int64_t count = std::max<int64_t>(0, ky1 - ky0) * std::max<int64_t>(0, kx1 - kx0);
                        if (count_pad) count = std::max<int64_t>(0, std::min(k0, H + p2 - y0)) * std::max<int64_t>(0, std::min(k1, W + p3 - x0));
                        for (int64_t c = 0; c < C; ++c) out[c] = static_cast<float>(sum[static_cast<size_t>(c)] / static_cast<double>(std::max<int64_t>(count, 1)));
                    }
                }
            }
        }, std::max<int64_t>(1, kMinParallelWork / std::max<int64_t>(OW * C * k0 * k1, 1)));
        return;
    }
    // planes in parallel (each output written by one thread: the same bytes at any thread count)
    ThreadPool::global().parallel_for(N * C, [=](int64_t nc0, int64_t nc1) {
        for (int64_t nc = nc0; nc < nc1; ++nc)
            for (int64_t oy = 0; oy < OH; ++oy)
                for (int64_t ox = 0; ox < OW; ++ox) {
                    // the window clipped to the image; the padding cells only count for count_include_pad averages
                    const int64_t y0 = oy * s0 - p0, x0 = ox * s1 - p1;
                    const int64_t ky0 = std::max<int64_t>(0, -y0), ky1 = std::min(k0, H - y0), kx0 = std::max<int64_t>(0, -x0), kx1 = std::min(k1, W - x0);
                    float best = -std::numeric_limits<float>::infinity();
                    double sum = 0;
                    int64_t count = 0;
                    for (int64_t ky = ky0; ky < ky1; ++ky) {
                        const float* line = xf + (nc * H + y0 + ky) * W + x0;
                        for (int64_t kx = kx0; kx < kx1; ++kx) {
                            if (is_max) best = std::max(best, line[kx]);
                            else sum += line[kx];
                        }
                    }
                    if (!is_max) {
                        count = std::max<int64_t>(0, ky1 - ky0) * std::max<int64_t>(0, kx1 - kx0);
                        if (count_pad)
                            count = std::max<int64_t>(0, std::min(k0, H + p2 - y0)) * std::max<int64_t>(0, std::min(k1, W + p3 - x0));
                    }
                    yf[(nc * OH + oy) * OW + ox] = is_max ? best : static_cast<float>(sum / static_cast<double>(std::max<int64_t>(count, 1)));
                }
    }, std::max<int64_t>(1, kMinParallelWork / std::max<int64_t>(OH * OW * k0 * k1, 1)));
}

void Interpreter::run(size_t index, const onnx_ir::Node& n) {
    const std::string where = "node " + std::to_string(index) + " '" + n.name + "' (" + n.op_type + ")";
    const std::string& op = n.op_type;
    if (!reads_channels_last(index))
        for (const auto& name : n.inputs) to_channels_first(name);
    Value y;
    auto unary = [&](auto f) {  // a template, not std::function: it runs once per element
        y = take(n, 0, index);
        if (y.integer) y.f = as_float(y), y.i.clear(), y.integer = false;
        y.quant_type = 0;
        for (float& v : y.f) v = f(v);
    };
    if (op == "Conv" || op == "Gemm" || op == "MatMul") {
        const auto li = st.node_linear.find(index);
        if (li == st.node_linear.end())
            throw Unsupported("[onnx] " + where + ": only constant weights are supported (the weight input is computed at run time)");
        const Linear& layer = *st.linears[li->second];
        const Value& x = in(n, 0);
        if (op == "Conv") {
            if (x.shape.size() != 4) throw Unsupported("[onnx] " + where + ": only 2-D convolutions of NCHW tensors");
            const auto k = attr_ints(n, "kernel_shape", {});
            const auto s = attr_ints(n, "strides", {1, 1}), d = attr_ints(n, "dilations", {1, 1});
            auto p = attr_ints(n, "pads", {0, 0, 0, 0});
            const int64_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3], M = layer.n_out();
            const int64_t kh = k.size() == 2 ? k[0] : 0, kw = k.size() == 2 ? k[1] : 0;
            if (k.size() != 2 || s.size() != 2 || d.size() != 2 || p.size() != 4 || kh < 1 || kw < 1 || s[0] < 1 || s[1] < 1 || d[0] < 1 ||
                d[1] < 1 || *std::min_element(p.begin(), p.end()) < 0 || p[0] > (1 << 16) || p[1] > (1 << 16) || p[2] > (1 << 16) || p[3] > (1 << 16))
                throw InvalidArgument("[onnx] " + where + ": kernel_shape, strides, dilations (2 values ≥ 1) and pads (4 values ≥ 0) are malformed");
            if (C * kh * kw != layer.n_in()) throw InvalidArgument("[onnx] " + where + ": input has " + std::to_string(C) + " channels, the weight expects " + std::to_string(layer.n_in() / std::max<int64_t>(kh * kw, 1)));
            const std::string ap = attr_s(n, "auto_pad");
            if (ap == "SAME_UPPER" || ap == "SAME_LOWER") {
                for (int a = 0; a < 2; ++a) {
                    const int64_t in_d = a == 0 ? H : W, out_d = (in_d + s[static_cast<size_t>(a)] - 1) / s[static_cast<size_t>(a)];
                    const int64_t total = std::max<int64_t>(0, (out_d - 1) * s[static_cast<size_t>(a)] + (k[static_cast<size_t>(a)] - 1) * d[static_cast<size_t>(a)] + 1 - in_d);
                    p[static_cast<size_t>(a)] = ap == "SAME_UPPER" ? total / 2 : total - total / 2;
                    p[static_cast<size_t>(a + 2)] = total - p[static_cast<size_t>(a)];
                }
            }
            const int64_t OH = (H + p[0] + p[2] - d[0] * (kh - 1) - 1) / s[0] + 1, OW = (W + p[1] + p[3] - d[1] * (kw - 1) - 1) / s[1] + 1;
            if (OH <= 0 || OW <= 0) throw InvalidArgument("[onnx] " + where + ": the kernel does not fit the input");
            const int64_t rows = N * OH * OW;
            check_elements(rows * layer.n_in(), where);
            check_elements(rows * M, where);
            std::vector<float> converted;
            const float* xf = x.f.data();
            if (x.integer) converted = as_float(x), xf = converted.data();
            const auto relu = st.conv_relu.find(index);
            const bool fused_relu = relu != st.conv_relu.end();
            if (static_w8a8(layer)) {
                // static W8A8 from codes gathered pixel-major (onnx/conv2d.h), with the weight re-ordered to match once; the
                // output stays channels-last when every reader takes that layout (the next W8A8 conv, a pool, a Relu ...)
                auto& pm = st.pixel_major[index];
                if (pm.from != layer.int8) pm = {layer.int8, onnx_ops::pixel_major_weight(*layer.int8, C, kh, kw)};
                const auto slice = st.conv_into_concat.find(index);
                if (slice != st.conv_into_concat.end() && concat_in_place(slice->second.concat)) {
                    // this conv's channels of the Concat's channels-last output, written where they belong
                    const auto& concat = st.model.graph.nodes[slice->second.concat];
                    int64_t total = 0;
                    for (size_t k : st.concat_convs.at(slice->second.concat)) total += st.linears[st.node_linear.at(k)]->n_out();
                    Value& target = vals[concat.outputs[0]];
                    if (target.shape.empty()) {
                        check_elements(rows * total, where);
                        target.shape = {N, total, OH, OW};
                        target.channels_last = true;
                        target.f.resize(static_cast<size_t>(rows * total));
                    } else if (target.shape != std::vector<int64_t>{N, total, OH, OW}) {
                        throw InvalidArgument("[onnx] node '" + concat.name + "' (Concat): shapes differ off the axis");
                    }
                    onnx_ops::conv2d_w8a8_static(xf, x.channels_last, N, C, H, W, *pm.weight, kh, kw, s.data(), p.data(), d.data(), OH, OW,
                                                 target.f.data() + slice->second.channel, true, fused_relu, total);
                    return;
                }
                y.shape = {N, M, OH, OW};
                y.f.resize(static_cast<size_t>(rows * M));
                y.channels_last = write_channels_last(fused_relu ? st.model.graph.nodes[relu->second].outputs[0] : n.outputs[0]);
                onnx_ops::conv2d_w8a8_static(xf, x.channels_last, N, C, H, W, *pm.weight, kh, kw, s.data(), p.data(), d.data(), OH, OW,
                                             y.f.data(), y.channels_last, fused_relu);
            } else {
                y.shape = {N, M, OH, OW};
                y.f.resize(static_cast<size_t>(rows * M));
                // scratch reused across nodes and runs: fresh multi-megabyte vectors per Conv cost more in page faults than the GEMM
                thread_local std::vector<float> patches, out;
                patches.resize(static_cast<size_t>(rows * layer.n_in()));
                out.resize(static_cast<size_t>(rows * M));
                onnx_ops::im2col(xf, N, C, H, W, kh, kw, s.data(), p.data(), d.data(), OH, OW, patches.data());
                ops::linear(layer, patches.data(), rows, out.data());
                onnx_ops::nhwc_to_nchw(out.data(), N, OH * OW, M, y.f.data(), fused_relu);
            }
            if (fused_relu) {  // the Relu's output, which the run then skips
                vals[st.model.graph.nodes[relu->second].outputs[0]] = std::move(y);
                return;
            }
        } else {
            const int64_t K = layer.n_in();
            if (x.shape.empty() || x.shape.back() != K)
                throw InvalidArgument("[onnx] " + where + ": input's last dimension is not " + std::to_string(K));
            const int64_t rows = x.numel() / K;
            const std::vector<float> xf = as_float(x);
            y.shape = x.shape;
            y.shape.back() = layer.n_out();
            y.f.resize(static_cast<size_t>(rows * layer.n_out()));
            ops::linear(layer, xf.data(), rows, y.f.data());
        }
    } else if (op == "Add" || op == "Sub" || op == "Mul" || op == "Div" || op == "Pow" || op == "Equal" || op == "Less" || op == "Greater") {
        const BinaryOp b = op == "Add" ? BinaryOp::add : op == "Sub" ? BinaryOp::sub : op == "Mul" ? BinaryOp::mul : op == "Div" ? BinaryOp::div
                           : op == "Pow" ? BinaryOp::pow : op == "Equal" ? BinaryOp::equal : op == "Less" ? BinaryOp::less : BinaryOp::greater;
        const int ck = op == "Add" || op == "Sub" || op == "Mul" || op == "Div" ? per_channel_operand(n) : -1;
        const Value* xt = ck >= 0 ? &in(n, static_cast<size_t>(1 - ck)) : nullptr;
        if (xt && xt->channels_last && (in(n, static_cast<size_t>(ck)).numel() == 1 || in(n, static_cast<size_t>(ck)).numel() == xt->shape[1])) {
            // a channels-last tensor and one value per channel (or one value): the same float operations, pixel by pixel
            const std::vector<float> c = as_float(in(n, static_cast<size_t>(ck)));
            const int64_t C = xt->shape[1], step = c.size() == 1 ? 0 : 1;
            y = take(n, static_cast<size_t>(1 - ck), index);
            auto per_pixel = [&](auto f) {  // a template: the operation is inlined into the loop
                for (size_t px = 0; px < y.f.size(); px += static_cast<size_t>(C))
                    for (int64_t ch = 0; ch < C; ++ch) y.f[px + static_cast<size_t>(ch)] = f(y.f[px + static_cast<size_t>(ch)], c[static_cast<size_t>(ch * step)]);
            };
            if (b == BinaryOp::add) per_pixel([](float v, float k) { return v + k; });
            else if (b == BinaryOp::mul) per_pixel([](float v, float k) { return v * k; });
            else if (b == BinaryOp::sub && ck == 1) per_pixel([](float v, float k) { return v - k; });
            else if (b == BinaryOp::sub) per_pixel([](float v, float k) { return k - v; });
            else if (ck == 1) per_pixel([](float v, float k) { return v / k; });
            else per_pixel([](float v, float k) { return k / v; });
        } else {
            if (xt) to_channels_first(n.inputs[static_cast<size_t>(1 - ck)]);  // a constant that is not per channel after all
            y = onnx_interp::binary(in(n, 0), in(n, 1), b, where);
        }
    } else if (op == "Relu") {
        unary([](float v) { return v > 0.0f ? v : 0.0f; });
    } else if (op == "LeakyRelu") {
        const float alpha = attr_f(n, "alpha", 0.01f);
        unary([alpha](float v) { return v >= 0.0f ? v : alpha * v; });
    } else if (op == "Sigmoid") {
        unary([](float v) { return 1.0f / (1.0f + std::exp(-v)); });
    } else if (op == "Tanh") {
        unary([](float v) { return std::tanh(v); });
    } else if (op == "HardSigmoid") {
        const float a = attr_f(n, "alpha", 0.2f), b = attr_f(n, "beta", 0.5f);
        unary([a, b](float v) { return std::clamp(a * v + b, 0.0f, 1.0f); });
    } else if (op == "HardSwish") {
        unary([](float v) { return v * std::clamp(v / 6.0f + 0.5f, 0.0f, 1.0f); });
    } else if (op == "Clip") {
        float lo = -std::numeric_limits<float>::infinity(), hi = std::numeric_limits<float>::infinity();
        if (st.opset < 11) lo = attr_f(n, "min", lo), hi = attr_f(n, "max", hi);
        if (has(n, 1)) lo = as_float(in(n, 1)).at(0);
        if (has(n, 2)) hi = as_float(in(n, 2)).at(0);
        unary([lo, hi](float v) { return std::min(std::max(v, lo), hi); });
    } else if (op == "MaxPool" || op == "AveragePool") {
        if (n.outputs.size() > 1 && !n.outputs[1].empty()) throw Unsupported("[onnx] " + where + ": MaxPool's Indices output");
        pool2d(in(n, 0), y, n, op == "MaxPool", where);
    } else if (op == "GlobalAveragePool") {
        const Value& x = in(n, 0);
        if (x.shape.size() < 3) throw InvalidArgument("[onnx] " + where + ": input has fewer than 3 dimensions");
        const int64_t NC = x.shape[0] * x.shape[1], HW = x.numel() / std::max<int64_t>(NC, 1);
        y.shape = x.shape;
        for (size_t d = 2; d < y.shape.size(); ++d) y.shape[d] = 1;
        y.f.resize(static_cast<size_t>(NC));
        if (x.channels_last) {  // [N, HW, C]: the same per-channel sums in the same pixel order; [N, C, 1, 1] is either layout
            const int64_t C = x.shape[1];
            std::vector<double> sum(static_cast<size_t>(C));
            for (int64_t b = 0; b < x.shape[0]; ++b) {
                std::fill(sum.begin(), sum.end(), 0.0);
                for (int64_t k = 0; k < HW; ++k)
                    for (int64_t c = 0; c < C; ++c) sum[static_cast<size_t>(c)] += x.f[static_cast<size_t>((b * HW + k) * C + c)];
                for (int64_t c = 0; c < C; ++c) y.f[static_cast<size_t>(b * C + c)] = static_cast<float>(sum[static_cast<size_t>(c)] / static_cast<double>(HW));
            }
        } else {
            for (int64_t c = 0; c < NC; ++c) {
                double sum = 0;
                for (int64_t k = 0; k < HW; ++k) sum += x.f[static_cast<size_t>(c * HW + k)];
                y.f[static_cast<size_t>(c)] = static_cast<float>(sum / static_cast<double>(HW));
            }
        }
    } else if (op == "BatchNormalization") {
        const Value& x = in(n, 0);
        const auto sc = as_float(in(n, 1)), bi = as_float(in(n, 2)), mean = as_float(in(n, 3)), var = as_float(in(n, 4));
        const float eps = attr_f(n, "epsilon", 1e-5f);
        if (x.shape.size() < 2 || static_cast<int64_t>(sc.size()) != x.shape[1]) throw InvalidArgument("[onnx] " + where + ": channel count mismatch");
        const int64_t C = x.shape[1], inner = x.numel() / (x.shape[0] * C);
        y.shape = x.shape;
        y.f = as_float(x);
        for (int64_t k = 0; k < x.numel(); ++k) {
            const size_t c = static_cast<size_t>((k / inner) % C);
            y.f[static_cast<size_t>(k)] = (y.f[static_cast<size_t>(k)] - mean[c]) / std::sqrt(var[c] + eps) * sc[c] + bi[c];
        }
    } else if (op == "Concat") {
        if (concat_in_place(index)) {  // its convs wrote the output already
            if (!vals.count(n.outputs[0])) throw InvalidArgument("[onnx] " + where + ": its inputs were not computed");
            return;
        }
        // channels-last inputs stay so when all of them are (the channel axis of 4-D tensors, checked below)
        bool channels_last = true;
        for (size_t k = 0; k < n.inputs.size(); ++k) channels_last = channels_last && in(n, k).channels_last;
        if (!channels_last)
            for (const auto& name : n.inputs) to_channels_first(name);
        const Value& first = in(n, 0);
        if (first.shape.empty()) throw InvalidArgument("[onnx] " + where + ": cannot concatenate scalars");
        const int64_t axis = norm_axis(attr_i(n, "axis", 0), first.shape.size(), where);
        y.shape = first.shape;
        y.shape[static_cast<size_t>(axis)] = 0;
        y.integer = first.integer;
        std::vector<const Value*> parts;
        for (size_t k = 0; k < n.inputs.size(); ++k) {
            const Value& v = in(n, k);
            if (v.shape.size() != first.shape.size() || v.integer != first.integer) throw InvalidArgument("[onnx] " + where + ": inputs of different rank or type");
            for (size_t d = 0; d < v.shape.size(); ++d)
                if (static_cast<int64_t>(d) != axis && v.shape[d] != first.shape[d]) throw InvalidArgument("[onnx] " + where + ": shapes differ off the axis");
            y.shape[static_cast<size_t>(axis)] += v.shape[static_cast<size_t>(axis)];
            parts.push_back(&v);
        }
        int64_t outer = 1;
        for (int64_t d = 0; d < axis; ++d) outer *= first.shape[static_cast<size_t>(d)];
        size_t total = 0;
        for (const Value* v : parts) total += v->integer ? v->i.size() : v->f.size();
        if (channels_last) {  // [N, HW, C_i] parts: each pixel's channels, part after part
            if (axis != 1) throw InvalidArgument("[onnx] " + where + ": channels-last inputs concatenated off the channel axis");
            y.channels_last = true;
            y.f.resize(total);
            const int64_t HW = first.shape[2] * first.shape[3], Ct = y.shape[1];
            int64_t c0 = 0;
            for (const Value* v : parts) {
                const int64_t Ci = v->shape[1];
                for (int64_t px = 0; px < first.shape[0] * HW; ++px)
                    std::copy_n(v->f.data() + px * Ci, Ci, y.f.data() + px * Ct + c0);
                c0 += Ci;
            }
        } else {
            if (first.integer) y.i.reserve(total);
            else y.f.reserve(total);
            for (int64_t o = 0; o < outer; ++o)
                for (const Value* v : parts) {
                    const int64_t chunk = v->numel() / std::max<int64_t>(outer, 1);
                    if (v->integer) y.i.insert(y.i.end(), v->i.begin() + o * chunk, v->i.begin() + (o + 1) * chunk);
                    else y.f.insert(y.f.end(), v->f.begin() + o * chunk, v->f.begin() + (o + 1) * chunk);
                }
        }
    } else if (op == "Reshape" || op == "Flatten" || op == "Squeeze" || op == "Unsqueeze" || op == "Dropout" || op == "Identity") {
        y = take(n, 0, index);
        const int64_t total = y.numel();
        if (op == "Reshape") {
            const Value& s = in(n, 1);
            if (!s.integer) throw InvalidArgument("[onnx] " + where + ": shape is not an integer tensor");
            std::vector<int64_t> shape = s.i;
            int64_t known = 1, unknown = -1;
            const bool allow_zero = attr_i(n, "allowzero", 0) != 0;  // opset 14: a 0 is a zero-sized dimension, not "copy"
            for (size_t d = 0; d < shape.size(); ++d) {
                if (shape[d] == 0 && !allow_zero && d < y.shape.size()) shape[d] = y.shape[d];
                if (shape[d] == -1) {
                    if (unknown >= 0) throw InvalidArgument("[onnx] " + where + ": more than one -1 in the shape");
                    unknown = static_cast<int64_t>(d);
                } else if (shape[d] < 0) {
                    throw InvalidArgument("[onnx] " + where + ": negative dimension in the shape");
                } else {
                    known *= shape[d];
                }
            }
            if (unknown >= 0) shape[static_cast<size_t>(unknown)] = known > 0 ? total / known : 0;
            if (!checked_numel(shape)) throw InvalidArgument("[onnx] " + where + ": the shape overflows");
            y.shape = shape;
        } else if (op == "Flatten") {
            const int64_t axis = norm_axis(attr_i(n, "axis", 1), y.shape.size() + 1, where);
            int64_t outer = 1;
            for (int64_t d = 0; d < axis; ++d) outer *= y.shape[static_cast<size_t>(d)];
            y.shape = {outer, outer > 0 ? total / outer : 0};
        } else if (op == "Squeeze" || op == "Unsqueeze") {
            std::vector<int64_t> axes = attr_ints(n, "axes", {});
            if (has(n, 1)) axes = in(n, 1).i;
            if (op == "Squeeze") {
                std::vector<int64_t> shape;
                for (size_t d = 0; d < y.shape.size(); ++d) {
                    const bool listed = axes.empty() ? y.shape[d] == 1
                                                     : std::any_of(axes.begin(), axes.end(), [&](int64_t a) { return norm_axis(a, y.shape.size(), where) == static_cast<int64_t>(d); });
                    if (!listed) shape.push_back(y.shape[d]);
                }
                y.shape = shape;
            } else {
                const size_t rank = y.shape.size() + axes.size();
                std::vector<int64_t> shape;
                std::set<int64_t> at;
                for (int64_t a : axes) at.insert(norm_axis(a, rank, where));
                if (at.size() != axes.size()) throw InvalidArgument("[onnx] " + where + ": repeated axes");
                for (size_t d = 0, k = 0; d < rank; ++d) shape.push_back(at.count(static_cast<int64_t>(d)) ? 1 : y.shape.at(k++));
                y.shape = shape;
            }
        }
        if (y.numel() != total) throw InvalidArgument("[onnx] " + where + ": the new shape holds a different number of elements");
    } else if (op == "Transpose") {
        const auto perm = attr_ints(n, "perm", {});
        const Value& x = in(n, 0);
        if (perm == std::vector<int64_t>{0, 3, 1, 2} && x.shape.size() == 4 && !x.integer && !x.channels_last && !n.outputs.empty() &&
            write_channels_last(n.outputs[0])) {
            // NHWC data read as NCHW by channels-last readers: the same bytes, relabelled
            const std::vector<int64_t> shape = {x.shape[0], x.shape[3], x.shape[1], x.shape[2]};
            y = take(n, 0, index);  // may move x's buffer out
            y.shape = shape;
            y.channels_last = true;
        } else {
            y = onnx_interp::transpose(x, perm, where);
        }
    } else if (op == "Softmax") {
        const Value& x = in(n, 0);
        const int64_t axis = norm_axis(attr_i(n, "axis", st.opset < 13 ? 1 : -1), x.shape.size(), where);
        // opset < 13 softmaxes the flattened [.., axis:] block; 13+ one axis (the same where axis is the last)
        int64_t inner = 1, len = x.shape[static_cast<size_t>(axis)];
        for (size_t d = static_cast<size_t>(axis) + 1; d < x.shape.size(); ++d) inner *= x.shape[d];
        if (st.opset < 13) len *= inner, inner = 1;
        y.shape = x.shape;
        y.f = as_float(x);
        const int64_t outer = x.numel() / std::max<int64_t>(len * inner, 1);
        for (int64_t o = 0; o < outer; ++o)
            for (int64_t k = 0; k < inner; ++k) {
                float* base = y.f.data() + o * len * inner + k;
                float mx = -std::numeric_limits<float>::infinity();
                for (int64_t j = 0; j < len; ++j) mx = std::max(mx, base[j * inner]);
                double sum = 0;
                for (int64_t j = 0; j < len; ++j) sum += std::exp(static_cast<double>(base[j * inner] - mx));
                for (int64_t j = 0; j < len; ++j) base[j * inner] = static_cast<float>(std::exp(static_cast<double>(base[j * inner] - mx)) / sum);
            }
    } else if (op == "QuantizeLinear" || op == "DequantizeLinear") {
        const Value& x = in(n, 0);
        const std::vector<float> scale = as_float(in(n, 1));
        std::vector<int64_t> zp;
        int32_t qtype = onnx_ir::kUint8;
        if (has(n, 2)) {
            zp = in(n, 2).i;
            qtype = in(n, 2).quant_type ? in(n, 2).quant_type : onnx_ir::kInt32;
        }
        if (op == "DequantizeLinear" && x.quant_type) qtype = x.quant_type;
        const int64_t axis = scale.size() > 1 ? norm_axis(attr_i(n, "axis", 1), x.shape.size(), where) : 0;
        int64_t inner = 1;
        for (size_t d = static_cast<size_t>(axis) + 1; d < x.shape.size() && scale.size() > 1; ++d) inner *= x.shape[d];
        const int64_t channels = scale.size() > 1 ? x.shape[static_cast<size_t>(axis)] : 1;
        if (static_cast<int64_t>(scale.size()) != channels || (!zp.empty() && zp.size() != scale.size()))
            throw InvalidArgument("[onnx] " + where + ": " + std::to_string(scale.size()) + " scales for " + std::to_string(channels) + " channels");
        y.shape = x.shape;
        const std::vector<float> xf = as_float(x);
        const float lo = qtype == onnx_ir::kInt8 ? -128.0f : 0.0f, hi = qtype == onnx_ir::kInt8 ? 127.0f : 255.0f;
        if (op == "QuantizeLinear") {
            y.integer = true;
            y.quant_type = qtype;
            y.i.resize(xf.size());
            for (size_t k = 0; k < xf.size(); ++k) {
                const size_t c = channels > 1 ? static_cast<size_t>((static_cast<int64_t>(k) / inner) % channels) : 0;
                const float q = std::nearbyint(xf[k] / scale[c]) + static_cast<float>(zp.empty() ? 0 : zp[c]);
                y.i[k] = static_cast<int64_t>(std::clamp(q, lo, hi));
            }
        } else {
            y.f.resize(xf.size());
            for (size_t k = 0; k < xf.size(); ++k) {
                const size_t c = channels > 1 ? static_cast<size_t>((static_cast<int64_t>(k) / inner) % channels) : 0;
                y.f[k] = (xf[k] - static_cast<float>(zp.empty() ? 0 : zp[c])) * scale[c];
            }
        }
    } else if (op == "Constant") {
        if (const auto* a = find_attr(n, "value"); a && a->t) {
            y = from_tensor(*a->t, where);
        } else if (const auto* v = find_attr(n, "value_float")) {
            y.f = {v->f};
        } else if (const auto* v = find_attr(n, "value_floats")) {
            y.shape = {static_cast<int64_t>(v->floats.size())};
            y.f = v->floats;
        } else if (const auto* v = find_attr(n, "value_int")) {
            y.integer = true;
            y.i = {v->i};
        } else if (const auto* v = find_attr(n, "value_ints")) {
            y.integer = true;
            y.shape = {static_cast<int64_t>(v->ints.size())};
            y.i = v->ints;
        } else {
            throw Unsupported("[onnx] " + where + ": a Constant without a tensor, float(s) or int(s) value (sparse and string constants are not imported)");
        }
    } else if (op == "Split") {
        const Value& x = in(n, 0);
        const int64_t axis = norm_axis(attr_i(n, "axis", 0), x.shape.size(), where);
        const int64_t len = x.shape[static_cast<size_t>(axis)], parts = static_cast<int64_t>(n.outputs.size());
        std::vector<int64_t> sizes = st.opset < 13 ? attr_ints(n, "split", {}) : std::vector<int64_t>{};
        if (has(n, 1)) sizes = integer_input(n, 1, where);
        if (sizes.empty()) {
            // equal parts; opset 18's num_outputs lets the last one be smaller (ceil(len / parts) each)
            const int64_t num = attr_i(n, "num_outputs", parts);
            if (num != parts) throw InvalidArgument("[onnx] " + where + ": num_outputs " + std::to_string(num) + " but " + std::to_string(parts) + " outputs");
            const int64_t chunk = st.opset >= 18 ? (len + parts - 1) / parts : len / parts;
            if (st.opset < 18 && len % parts != 0)
                throw InvalidArgument("[onnx] " + where + ": an axis of " + std::to_string(len) + " does not split into " + std::to_string(parts) + " equal parts");
            for (int64_t k = 0, left = len; k < parts; ++k, left -= chunk) sizes.push_back(std::min(chunk, left));
        }
        if (static_cast<int64_t>(sizes.size()) != parts)
            throw InvalidArgument("[onnx] " + where + ": " + std::to_string(sizes.size()) + " split sizes for " + std::to_string(parts) + " outputs");
        std::vector<Value> out = onnx_interp::split(x, axis, sizes, where);
        for (size_t k = 0; k < out.size(); ++k)
            if (!n.outputs[k].empty()) vals[n.outputs[k]] = std::move(out[k]);
        return;
    } else if (op == "Slice") {
        const Value& x = in(n, 0);
        if (st.opset < 10) {
            y = onnx_interp::slice(x, attr_ints(n, "starts", {}), attr_ints(n, "ends", {}), attr_ints(n, "axes", {}), {}, where);
        } else {
            y = onnx_interp::slice(x, integer_input(n, 1, where), integer_input(n, 2, where), has(n, 3) ? integer_input(n, 3, where) : std::vector<int64_t>{},
                                   has(n, 4) ? integer_input(n, 4, where) : std::vector<int64_t>{}, where);
        }
    } else if (op == "Shape") {
        const Value& x = in(n, 0);
        // opset 15's start / end: a slice of the shape, clamped to the rank
        const int64_t r = static_cast<int64_t>(x.shape.size());
        int64_t b = attr_i(n, "start", 0), e = attr_i(n, "end", r);
        if (b < 0) b += r;
        if (e < 0) e += r;
        b = std::clamp<int64_t>(b, 0, r);
        e = std::clamp<int64_t>(e, 0, r);
        y.integer = true;
        if (e > b) y.i.assign(x.shape.begin() + b, x.shape.begin() + e);
        y.shape = {static_cast<int64_t>(y.i.size())};
    } else if (op == "Gather") {
        y = onnx_interp::gather(in(n, 0), in(n, 1), attr_i(n, "axis", 0), where);
    } else if (op == "Expand") {
        y = onnx_interp::expand(in(n, 0), integer_input(n, 1, where), where);
    } else if (op == "Cast") {
        const auto* to = find_attr(n, "to");
        if (!to) throw InvalidArgument("[onnx] " + where + ": Cast without 'to'");
        y = onnx_interp::cast(in(n, 0), static_cast<int32_t>(to->i), where);
    } else if (op == "Range") {
        y = onnx_interp::range(in(n, 0), in(n, 1), in(n, 2), where);
    } else if (op == "ConstantOfShape") {
        const std::vector<int64_t> shape = integer_input(n, 0, where);
        for (int64_t d : shape)
            if (d < 0) throw InvalidArgument("[onnx] " + where + ": a negative dimension");
        const auto count = checked_numel(shape);
        if (!count) throw InvalidArgument("[onnx] " + where + ": the shape overflows");
        check_elements(*count, where);
        Value fill;
        fill.f = {0.0f};
        if (const auto* a = find_attr(n, "value"); a && a->t) fill = from_tensor(*a->t, where);
        if (fill.numel() != 1) throw InvalidArgument("[onnx] " + where + ": ConstantOfShape's value must hold one element");
        y.shape = shape;
        y.integer = fill.integer;
        y.quant_type = fill.quant_type;
        if (y.integer) y.i.assign(static_cast<size_t>(*count), fill.i[0]);
        else y.f.assign(static_cast<size_t>(*count), fill.f[0]);
    } else if (op == "Where") {
        y = onnx_interp::where(in(n, 0), in(n, 1), in(n, 2), where);
    } else if (op == "Resize") {
        if (st.opset < 11) throw Unsupported("[onnx] " + where + ": Resize before opset 11 (cq follows opset 11's inputs X, roi, scales, sizes)");
        const std::string mode = attr_s(n, "mode").empty() ? "nearest" : attr_s(n, "mode");
        if (mode != "nearest") throw Unsupported("[onnx] " + where + ": Resize mode '" + mode + "' (cq resizes in nearest mode)");
        const std::string coord = attr_s(n, "coordinate_transformation_mode").empty() ? "half_pixel" : attr_s(n, "coordinate_transformation_mode");
        const std::string rounding = attr_s(n, "nearest_mode").empty() ? "round_prefer_floor" : attr_s(n, "nearest_mode");
        if (attr_i(n, "antialias", 0) != 0) throw Unsupported("[onnx] " + where + ": Resize with antialias");
        if (find_attr(n, "axes")) throw Unsupported("[onnx] " + where + ": Resize with axes (opset 18)");
        const std::string policy = attr_s(n, "keep_aspect_ratio_policy");
        if (!policy.empty() && policy != "stretch") throw Unsupported("[onnx] " + where + ": keep_aspect_ratio_policy '" + policy + "'");
        std::vector<float> scales;
        std::vector<int64_t> sizes;
        if (has(n, 2)) scales = as_float(in(n, 2));  // an empty scales tensor means "use sizes"
        if (has(n, 3)) sizes = integer_input(n, 3, where);
        y = onnx_interp::resize_nearest(in(n, 0), scales, sizes, coord, rounding, where);
    } else {
        throw Unsupported("[onnx] " + where + ": operator '" + op + "' is not supported (cq imports: " + OnnxModel::supported_operators() + ")");
    }
    if (n.outputs.empty()) return;
    vals[n.outputs[0]] = std::move(y);
}

}  // namespace

std::unique_ptr<OnnxModel> OnnxModel::load(const std::string& path) { return from_ir(onnx_export::read_onnx_file(path), path); }

std::unique_ptr<OnnxModel> OnnxModel::from_bytes(const void* data, size_t size, const std::string& name) {
    return from_ir(onnx_export::read_onnx_bytes(data, size, name), name);
}

std::unique_ptr<OnnxModel> OnnxModel::from_ir(onnx_ir::Model ir, const std::string& path) {
    std::unique_ptr<OnnxModel> m(new OnnxModel());
    m->path_ = path;
    auto st = std::make_unique<OnnxGraphState>();
    st->path = path;
    st->model = std::move(ir);
    st->opset = onnx_export::default_opset(st->model, path);
    const onnx_ir::Graph& g = st->model.graph;
    for (size_t k = 0; k < g.nodes.size(); ++k) {
        const auto& n = g.nodes[k];
        if ((!n.domain.empty() && n.domain != "ai.onnx") || !kSupported.count(n.op_type))
            throw Unsupported("[onnx] " + path + ": node " + std::to_string(k) + " '" + n.name + "' has operator '" +
                              (n.domain.empty() ? "" : n.domain + ".") + n.op_type + "', which cq does not import (it imports: " +
                              supported_operators() + ")");
        if (n.outputs.empty()) throw FormatError("onnx", path, 0, "node " + std::to_string(k) + " '" + n.name + "' has no output");
    }
    for (const auto& t : g.initializers) st->constants[t.name] = from_tensor(t, path);
    for (const auto& v : g.inputs) {
        if (st->constants.count(v.name)) continue;
        if (!st->input_name.empty()) throw Unsupported("[onnx] " + path + ": the graph has more than one input ('" + st->input_name + "', '" + v.name + "')");
        if (v.elem_type != onnx_ir::kFloat) throw Unsupported("[onnx] " + path + ": input '" + v.name + "' is not float");
        st->input_name = v.name;
        for (const auto& d : v.shape) {  // -1: symbolic (a dynamic axis), given by run()'s shape
            if (d.value == 0 || d.value > (int64_t{1} << 24)) throw FormatError("onnx", path, 0, "input '" + v.name + "' has dimension " + std::to_string(d.value));
            st->input_shape.push_back(d.value);
        }
    }
    if (st->input_name.empty()) throw Unsupported("[onnx] " + path + ": the graph has no float input");
    if (g.outputs.empty()) throw FormatError("onnx", path, 0, "the graph has no output");
    st->output_name = g.outputs[0].name;

    // constant folding: nodes whose inputs are all constants (QDQ weights, shape arithmetic)
    ValueMap none;
    for (size_t k = 0; k < g.nodes.size(); ++k) {
        const auto& n = g.nodes[k];
        const bool all_const = std::all_of(n.inputs.begin(), n.inputs.end(), [&](const std::string& i) { return i.empty() || st->constants.count(i); });
        if (!all_const || n.op_type == "Conv" || n.op_type == "Gemm" || n.op_type == "MatMul") continue;
        ValueMap out;
        Interpreter{*st, out}.run(k, n);
        for (auto& [name, v] : out) st->constants[name] = std::move(v);
        st->skip.insert(k);
    }
    // consumers, for BatchNormalization folding
    std::map<std::string, int> uses;
    for (const auto& n : g.nodes)
        for (const auto& i : n.inputs) ++uses[i];
    for (const auto& o : g.outputs) ++uses[o.name];
    std::map<std::string, size_t> producer;
    for (size_t k = 0; k < g.nodes.size(); ++k)
        for (const auto& o : g.nodes[k].outputs) producer[o] = k;

    // Linears from Conv / Gemm / MatMul with constant weights
    for (size_t k = 0; k < g.nodes.size(); ++k) {
        auto& n = st->model.graph.nodes[k];
        if (n.op_type != "Conv" && n.op_type != "Gemm" && n.op_type != "MatMul") continue;
        const std::string where = path + ": node " + std::to_string(k) + " '" + n.name + "' (" + n.op_type + ")";
        if (n.inputs.size() < 2 || !st->constants.count(n.inputs[1])) continue;  // run time weights: refused when run
        const Value& wv = st->constants.at(n.inputs[1]);
        std::vector<float> w = as_float(wv), bias;
        if (n.inputs.size() > 2 && !n.inputs[2].empty()) {
            if (!st->constants.count(n.inputs[2])) throw Unsupported("[onnx] " + where + ": the bias is computed at run time");
            bias = as_float(st->constants.at(n.inputs[2]));
        }
        int64_t n_out = 0, n_in = 0;
        std::vector<float> wl;  // [n_out, n_in]
        if (n.op_type == "Conv") {
            if (wv.shape.size() != 4) throw Unsupported("[onnx] " + where + ": only 2-D convolutions");
            if (attr_i(n, "group", 1) != 1) throw Unsupported("[onnx] " + where + ": grouped / depthwise convolution (group " + std::to_string(attr_i(n, "group", 1)) + ")");
            n_out = wv.shape[0];
            n_in = wv.shape[1] * wv.shape[2] * wv.shape[3];
            wl = w;
        } else {
            if (wv.shape.size() != 2) throw Unsupported("[onnx] " + where + ": only 2-D weights");
            const bool trans_b = n.op_type == "Gemm" && attr_i(n, "transB", 0) != 0;
            if (n.op_type == "Gemm" && attr_i(n, "transA", 0) != 0) throw Unsupported("[onnx] " + where + ": transA");
            n_in = trans_b ? wv.shape[1] : wv.shape[0];
            n_out = trans_b ? wv.shape[0] : wv.shape[1];
            wl.resize(w.size());
            for (int64_t o = 0; o < n_out; ++o)
                for (int64_t i = 0; i < n_in; ++i)
                    wl[static_cast<size_t>(o * n_in + i)] = trans_b ? w[static_cast<size_t>(o * n_in + i)] : w[static_cast<size_t>(i * n_out + o)];
            if (n.op_type == "Gemm") {
                const float alpha = attr_f(n, "alpha", 1.0f), beta = attr_f(n, "beta", 1.0f);
                for (float& v : wl) v *= alpha;
                for (float& v : bias) v *= beta;
            }
        }
        if (!bias.empty() && static_cast<int64_t>(bias.size()) != n_out) {
            if (bias.size() == 1) bias.assign(static_cast<size_t>(n_out), bias[0]);
            else throw Unsupported("[onnx] " + where + ": bias of " + std::to_string(bias.size()) + " values for " + std::to_string(n_out) + " outputs");
        }
        // a BatchNormalization that is the conv's only consumer folds into it: w·γ/σ, (b − μ)·γ/σ + β
        if (n.op_type == "Conv" && uses[n.outputs[0]] == 1) {
            for (size_t j = k + 1; j < g.nodes.size(); ++j) {
                const auto& bn = g.nodes[j];
                if (bn.op_type != "BatchNormalization" || bn.inputs.empty() || bn.inputs[0] != n.outputs[0]) continue;
                if (bn.inputs.size() < 5 || !std::all_of(bn.inputs.begin() + 1, bn.inputs.begin() + 5, [&](const std::string& i) { return st->constants.count(i) > 0; }))
                    break;
                const auto sc = as_float(st->constants.at(bn.inputs[1])), be = as_float(st->constants.at(bn.inputs[2]));
                const auto mu = as_float(st->constants.at(bn.inputs[3])), var = as_float(st->constants.at(bn.inputs[4]));
                if (static_cast<int64_t>(sc.size()) != n_out) break;
                const float eps = attr_f(bn, "epsilon", 1e-5f);
                if (bias.empty()) bias.assign(static_cast<size_t>(n_out), 0.0f);
                for (int64_t o = 0; o < n_out; ++o) {
                    const float f = sc[static_cast<size_t>(o)] / std::sqrt(var[static_cast<size_t>(o)] + eps);
                    for (int64_t i = 0; i < n_in; ++i) wl[static_cast<size_t>(o * n_in + i)] *= f;
                    bias[static_cast<size_t>(o)] = (bias[static_cast<size_t>(o)] - mu[static_cast<size_t>(o)]) * f + be[static_cast<size_t>(o)];
                }
                n.outputs[0] = bn.outputs[0];
                st->skip.insert(j);
                break;
            }
        }
        auto layer = std::make_unique<Linear>();
        layer->weight = Tensor::zeros({n_out, n_in}, DType::F32);
        std::memcpy(layer->weight.mutable_data(), wl.data(), wl.size() * 4);
        if (!bias.empty()) {
            layer->bias = Tensor::zeros({n_out}, DType::F32);
            std::memcpy(layer->bias->mutable_data(), bias.data(), bias.size() * 4);
        }
        layer->name = n.name.empty() ? n.op_type + "_" + std::to_string(k) : n.name;
        layer->source_name = n.inputs[1];
        layer->role = LayerRole::other;
        st->node_linear[k] = st->linears.size();
        st->linears.push_back(std::move(layer));
    }
    // shape arithmetic: which nodes compute from shapes only, and whether any tensor's shape depends on data
    {
        std::set<std::string> shape_values;
        for (size_t k = 0; k < g.nodes.size(); ++k) {
            const auto& n = g.nodes[k];
            if (st->skip.count(k) || st->node_linear.count(k)) continue;
            const bool from_shapes = n.op_type == "Shape" ||
                                     (!n.inputs.empty() && std::all_of(n.inputs.begin(), n.inputs.end(), [&](const std::string& i) {
                                          return i.empty() || st->constants.count(i) || shape_values.count(i);
                                      }));
            if (!from_shapes) continue;
            st->shape_nodes.insert(k);
            for (const auto& o : n.outputs) shape_values.insert(o);
        }
        st->shape_folding = !st->shape_nodes.empty();
        for (size_t k = 0; k < g.nodes.size() && st->shape_folding; ++k) {
            const auto& n = g.nodes[k];
            if (st->skip.count(k)) continue;
            for (size_t i : shape_giving_inputs(n.op_type, st->opset))
                if (i < n.inputs.size() && !n.inputs[i].empty() && !st->constants.count(n.inputs[i]) && !shape_values.count(n.inputs[i]))
                    st->shape_folding = false;
        }
    }
    for (const auto& [k, li] : st->node_linear) {
        const auto& n = g.nodes[k];
        if (n.op_type != "Conv" || st->skip.count(k) || n.outputs.empty() || uses[n.outputs[0]] != 1) continue;
        for (size_t j = k + 1; j < g.nodes.size(); ++j) {
            const auto& r = g.nodes[j];
            if (std::find(r.inputs.begin(), r.inputs.end(), n.outputs[0]) == r.inputs.end()) continue;
            if (r.op_type == "Relu" && !st->skip.count(j) && !r.outputs.empty()) st->conv_relu[k] = j, st->relu_in_conv.insert(j);
            break;
        }
    }
    // the last reader of each computed value (graph outputs and shape arithmetic are kept)
    {
        std::unordered_map<std::string, size_t> last_reader;
        for (size_t k = 0; k < g.nodes.size(); ++k)
            if (!st->skip.count(k))
                for (const auto& i : g.nodes[k].inputs)
                    if (!i.empty() && !st->constants.count(i)) {
                        last_reader[i] = k;
                        auto& r = st->readers[i];
                        if (r.empty() || r.back() != k) r.push_back(k);
                    }
        std::set<std::string> keep;
        for (const auto& o : g.outputs) keep.insert(o.name);
        for (size_t k : st->shape_nodes)
            for (const auto& o : g.nodes[k].outputs) keep.insert(o);
        st->release_after.resize(g.nodes.size());
        for (const auto& [name, k] : last_reader)
            if (!keep.count(name)) st->release_after[k].push_back(name);
        for (auto& names : st->release_after) std::sort(names.begin(), names.end());
        // Concats that their convs can fill in place (OnnxGraphState::conv_into_concat)
        std::map<std::string, size_t> conv_of;  // a Conv's output value, or its fused Relu's → the Conv
        for (const auto& [k, li] : st->node_linear)
            if (g.nodes[k].op_type == "Conv" && !g.nodes[k].outputs.empty()) {
                const auto relu = st->conv_relu.find(k);
                conv_of[relu != st->conv_relu.end() ? g.nodes[relu->second].outputs[0] : g.nodes[k].outputs[0]] = k;
            }
        for (size_t c = 0; c < g.nodes.size(); ++c) {
            const auto& n = g.nodes[c];
            if (n.op_type != "Concat" || st->skip.count(c) || n.inputs.size() < 2 || n.outputs.size() != 1 || keep.count(n.outputs[0])) continue;
            const int64_t axis = attr_i(n, "axis", 0);
            if (axis != 1 && axis != -3) continue;
            std::vector<size_t> convs;
            int64_t channel = 0;
            std::vector<int64_t> firsts;
            for (const auto& i : n.inputs) {
                const auto it = conv_of.find(i);
                const auto r = st->readers.find(i);
                if (it == conv_of.end() || keep.count(i) || r == st->readers.end() || r->second.size() != 1 ||
                    std::count(n.inputs.begin(), n.inputs.end(), i) != 1)
                    break;
                convs.push_back(it->second);
                firsts.push_back(channel);
                channel += st->linears[st->node_linear.at(it->second)]->n_out();
            }
            if (convs.size() != n.inputs.size()) continue;
            st->concat_convs[c] = convs;
            for (size_t i = 0; i < convs.size(); ++i) st->conv_into_concat[convs[i]] = {c, firsts[i]};
        }
    }
    m->state_ = std::move(st);
    if (m->pack_for_kernels_)
        for (auto& l : m->state_->linears) ops::pack_for_kernels(*l);
    return m;
}

std::vector<float> OnnxModel::run(const float* input, int64_t batch) {
    OnnxGraphState& st = *state_;
    if (batch <= 0) throw InvalidArgument("[onnx] batch must be positive");
    std::vector<int64_t> shape = st.input_shape;
    if (shape.empty()) throw Unsupported("[onnx] " + st.path + ": the input has no dimensions");
    for (size_t d = 1; d < shape.size(); ++d)
        if (shape[d] <= 0)
            throw Unsupported("[onnx] " + st.path + ": input dimension " + std::to_string(d) + " is symbolic (pass the whole input shape to run)");
    if (shape[0] > 0 && shape[0] != batch && shape[0] != 1)
        throw InvalidArgument("[onnx] " + st.path + ": the model takes batches of " + std::to_string(shape[0]));
    shape[0] = batch;
    return run(input, shape);
}

std::vector<float> OnnxModel::run(const float* input, const std::vector<int64_t>& shape) {
    OnnxGraphState& st = *state_;
    if (shape.size() != st.input_shape.size() || shape.empty())
        throw InvalidArgument("[onnx] " + st.path + ": input '" + st.input_name + "' has rank " + std::to_string(st.input_shape.size()) + ", not " +
                              std::to_string(shape.size()));
    for (size_t d = 0; d < shape.size(); ++d) {
        if (shape[d] <= 0 || shape[d] > (int64_t{1} << 24)) throw InvalidArgument("[onnx] " + st.path + ": input dimension " + std::to_string(d) + " must be positive");
        // a fixed batch of 1 takes any batch, run sample by sample; other fixed dimensions must match
        if (st.input_shape[d] > 0 && st.input_shape[d] != shape[d] && !(d == 0 && st.input_shape[d] == 1))
            throw InvalidArgument("[onnx] " + st.path + ": input dimension " + std::to_string(d) + " is " + std::to_string(st.input_shape[d]) +
                                  " in the graph, not " + std::to_string(shape[d]));
    }
    const int64_t batch = shape[0];
    int64_t per_sample = 1;
    for (size_t d = 1; d < shape.size(); ++d) per_sample *= shape[d];
    onnx_interp::check_elements(per_sample, st.path + " input");
    onnx_interp::check_elements(batch * per_sample, st.path + " input");
    const int64_t step = st.input_shape[0] == 1 ? 1 : batch;
    Value x;
    x.shape = shape;
    x.shape[0] = step;
    ValueMap vals;
    std::vector<float> out;
    for (int64_t b0 = 0; b0 < batch; b0 += step) {
        vals.clear();
        x.f.assign(input + b0 * per_sample, input + (b0 + step) * per_sample);
        vals[st.input_name] = x;
        Interpreter interp{st, vals};
        const auto& nodes = st.model.graph.nodes;
        const bool folded = st.shape_folding && st.folded_for == x.shape;
        if (folded) vals.insert(st.shape_values.begin(), st.shape_values.end());
        for (size_t k = 0; k < nodes.size(); ++k) {
            if (!st.skip.count(k) && !st.relu_in_conv.count(k) && !(folded && st.shape_nodes.count(k))) interp.run(k, nodes[k]);
            for (const auto& name : st.release_after[k]) vals.erase(name);
        }
        if (st.shape_folding && !folded) {
            st.shape_values.clear();
            for (size_t k : st.shape_nodes)
                for (const auto& o : nodes[k].outputs)
                    if (auto it = vals.find(o); it != vals.end()) st.shape_values[o] = it->second;
            st.folded_for = x.shape;
        }
        auto it = vals.find(st.output_name);
        const Value* y = it != vals.end() ? &it->second : nullptr;
        if (!y) {
            auto c = st.constants.find(st.output_name);
            if (c == st.constants.end()) throw InvalidArgument("[onnx] " + st.path + ": output '" + st.output_name + "' was not computed");
            y = &c->second;
        }
        const std::vector<float> yf = as_float(y->channels_last ? channels_first(*y) : *y);
        out.insert(out.end(), yf.begin(), yf.end());
        output_shape_ = y->shape;
    }
    outputs_per_sample_ = static_cast<int64_t>(out.size()) / batch;
    // the output's leading dimension counts the samples when the graph ran them one at a time
    if (step != batch && !output_shape_.empty() && output_shape_[0] == step) output_shape_[0] = batch;
    return out;
}

}  // namespace cq
