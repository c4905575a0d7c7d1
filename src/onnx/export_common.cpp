// The layer-level pieces of cq's ONNX graphs and the file writer (see export_common.h).
#include "onnx/export_common.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>


#include "cq/atomic_file.h"
#include "cq/error.h"
#include "cq/kernels.h"
#include "cq/w8a8.h"
#include "onnx/matmul_nbits.h"
#include "onnx/onnx_validate.h"

namespace cq::onnx_export {

std::vector<float> tensor_f32(const Tensor& t) { return t.to_float(); }

std::vector<float> linear_weight_f32(const Linear& layer) {
    const int64_t n_out = layer.n_out(), n_in = layer.n_in();
    std::vector<float> w(static_cast<size_t>(n_out * n_in));
    if (layer.int8) {
        const Int8Linear& q = *layer.int8;
        const auto* wq = static_cast<const int8_t*>(q.weight.data());
        for (int64_t o = 0; o < n_out; ++o)
            for (int64_t i = 0; i < n_in; ++i)
                w[static_cast<size_t>(o * n_in + i)] = static_cast<float>(wq[o * n_in + i]) * q.weight_scale[static_cast<size_t>(o)];
        return w;
    }
    std::vector<float> raw = layer.weight.to_float();
    if (!layer.transposed) return raw;
    // GPT-2 Conv1D: stored [in, out]
    for (int64_t i = 0; i < n_in; ++i)
        for (int64_t o = 0; o < n_out; ++o) w[static_cast<size_t>(o * n_in + i)] = raw[static_cast<size_t>(i * n_out + o)];
    return w;
}

namespace {
std::vector<float> linear_bias_f32(const Linear& layer) {
    if (layer.int8) return layer.int8->bias;
    if (layer.bias) return layer.bias->to_float();
    return {};
}
}  // namespace

std::string Emitter::linear(const Linear& layer, const std::string& x_in) {
    const int64_t n_out = layer.n_out(), n_in = layer.n_in();
    // the input as cq's kernels see it: quantized to the weight type's activation blocks (nbits_cq_activations)
    const bool emulate = options.format == OnnxFormat::matmulnbits && options.nbits_cq_activations && !layer.int8 &&
                         dtype_traits(layer.weight.dtype()).is_quantized;
    const std::string x = emulate ? cq_activations(x_in, n_in, layer.weight.dtype()) : x_in;
    if (options.format == OnnxFormat::matmulnbits)
        if (auto nb = matmul_nbits_weights(layer)) {
            const int64_t kb = nb->k / nb->block_size;
            std::vector<std::string> in{x,
                                        g.typed(layer.name + ".weight_q", onnx_ir::kUint8, {nb->n, kb, nb->block_size * nb->bits / 8},
                                                nb->packed.data(), nb->packed.size()),
                                        g.f32(layer.name + ".weight_scales", {nb->n * kb}, nb->scales)};
            if (!nb->zero_points.empty()) in.push_back(g.f32(layer.name + ".weight_zero_points", {nb->n * kb}, nb->zero_points));
            std::string y = g.op("MatMulNBits", in,
                                 {attr("K", nb->k), attr("N", nb->n), attr("bits", nb->bits), attr("block_size", nb->block_size),
                                  attr("accuracy_level", options.nbits_cq_activations ? int64_t{0} : options.nbits_accuracy_level)},
                                 "com.microsoft");
            ++lowered["MatMulNBits " + std::to_string(nb->bits) + "-bit" + (nb->zero_points.empty() ? "" : " (zero points)") +
                      (x != x_in ? " on cq's activation blocks" : "")];
            const std::vector<float> b = linear_bias_f32(layer);
            if (!b.empty()) y = g.op("Add", {y, g.f32(layer.name + ".bias", {n_out}, b)});
            return y;
        }
    if (layer.int8 && (options.format == OnnxFormat::dynamic || options.format == OnnxFormat::qdq || options.format == OnnxFormat::trt_qdq))
        return int8_linear(layer, x);
    ++lowered[x != x_in ? "MatMul on cq's activation blocks" : "MatMul"];
    const std::vector<float> w = linear_weight_f32(layer);
    // MatMul's B is [n_in, n_out]: the transpose of the Linear's [n_out, n_in]
    std::vector<float> wt(w.size());
    for (int64_t o = 0; o < n_out; ++o)
        for (int64_t i = 0; i < n_in; ++i) wt[static_cast<size_t>(i * n_out + o)] = w[static_cast<size_t>(o * n_in + i)];
    const std::string wname = g.f32(layer.name + ".weight", {n_in, n_out}, wt);
    std::string y = g.op("MatMul", {x, wname});
    const std::vector<float> b = linear_bias_f32(layer);
    if (!b.empty()) y = g.op("Add", {y, g.f32(layer.name + ".bias", {n_out}, b)});
    return y;
}

namespace {
// TensorRT's symmetric s8 input scale for a static W8A8 input: the calibrated u8 range [s·(0 − zp), s·(qmax − zp)] widened
// to ±amax (amax / 127), or, for 8-bit codes already symmetric (zero point 128, calib::u8_params_symmetric), s itself, so
// that the s8 code is the u8 code − 128 and the graph computes exactly what cq runs.
float trt_input_scale(const Int8Linear& q) {
    if (q.act_qmax == 255 && q.input.zero_point == 128) return q.input.scale;
    const float lo = q.input.scale * static_cast<float>(0 - q.input.zero_point);
    const float hi = q.input.scale * static_cast<float>(q.act_qmax - q.input.zero_point);
    const float amax = std::max(std::fabs(lo), std::fabs(hi));
    return amax > 0 ? amax / 127.0f : 1.0f;
}

// q: [n_out, n_in] int8 → [n_in, n_out] (MatMul's B)
std::vector<int8_t> transpose_s8(const Int8Linear& q) {
    const auto* w = static_cast<const int8_t*>(q.weight.data());
    std::vector<int8_t> t(static_cast<size_t>(q.n_out * q.n_in));
    for (int64_t o = 0; o < q.n_out; ++o)
        for (int64_t i = 0; i < q.n_in; ++i) t[static_cast<size_t>(i * q.n_out + o)] = w[o * q.n_in + i];
    return t;
}
}  // namespace

std::string Emitter::int32_bias(const Linear& layer, const Int8Linear& q) {
    // bias as int32 in units of input scale × weight scale (ONNX Runtime's QDQ convention)
    const int64_t N = q.n_out;
    std::vector<int32_t> bq(static_cast<size_t>(N));
    std::vector<float> bs(static_cast<size_t>(N));
    for (int64_t n = 0; n < N; ++n) {
        bs[static_cast<size_t>(n)] = q.input.scale * q.weight_scale[static_cast<size_t>(n)];
        const double v = std::nearbyint(static_cast<double>(q.bias[static_cast<size_t>(n)]) / bs[static_cast<size_t>(n)]);
        bq[static_cast<size_t>(n)] = static_cast<int32_t>(std::clamp(v, -2147483647.0, 2147483647.0));
    }
    const std::string b = g.typed(layer.name + ".bias_quantized", onnx_ir::kInt32, {N}, bq.data(), bq.size() * 4);
    return g.op("DequantizeLinear", {b, g.f32(layer.name + ".bias_scale", {N}, bs)}, {attr("axis", int64_t{0})});
}

std::string Emitter::int8_linear(const Linear& layer, const std::string& x) {
    const Int8Linear& q = *layer.int8;
    const int64_t N = q.n_out, K = q.n_in;
    const std::string ws = g.f32(layer.name + ".weight_scale", {N}, q.weight_scale);
    if (options.format == OnnxFormat::dynamic) {
        // ONNX Runtime's own dynamic pattern (fused to DynamicQuantizeMatMul): u8 activations per tensor at run time
        const auto xq = g.ops("DynamicQuantizeLinear", {x}, 3);
        const std::vector<int8_t> wt = transpose_s8(q);
        const std::string w = g.typed(layer.name + ".weight_quantized", onnx_ir::kInt8, {K, N}, wt.data(), wt.size());
        const std::string acc = g.op("MatMulInteger", {xq[0], w, xq[2]});
        const std::string scale = g.op("Mul", {xq[1], ws});
        std::string y = g.op("Mul", {g.op("Cast", {acc}, {attr("to", int64_t{onnx_ir::kFloat})}), scale});
        if (!q.bias.empty()) y = g.op("Add", {y, g.f32(layer.name + ".bias", {N}, q.bias)});
        // exact for a model that quantizes per tensor (--act-granularity tensor); a per-token model's activations get ORT's
        // per-tensor scale here, which the report says
        ++lowered[q.activations == ActivationQuant::dynamic_per_token ? "DynamicQuantizeLinear + MatMulInteger (per tensor; the model: per token)"
                                                                       : "DynamicQuantizeLinear + MatMulInteger"];
        return y;
    }
    if (q.activations != ActivationQuant::static_per_tensor)
        throw InvalidArgument("[onnx] --format " + std::string(onnx_format_name(options.format)) + ": " + layer.name +
                              " quantizes its input at run time (W8A8 dynamic); static Q/DQ needs a model quantized with "
                              "--type w8a8-static --calib DATA");
    if (options.format == OnnxFormat::trt_qdq) {
        // symmetric s8: the calibrated u8 range [s·(0 − zp), s·(qmax − zp)] widened to ±amax, zero point 0
        const float sx = trt_input_scale(q);
        const int8_t zero = 0;
        const std::string s = g.scalar_f32(sx), z = g.typed(layer.name + ".input_zero_point", onnx_ir::kInt8, {}, &zero, 1);
        const std::string xd = g.op("DequantizeLinear", {g.op("QuantizeLinear", {x, s, z}), s, z});
        ++lowered["Q/DQ MatMul (TensorRT)"];
        return dequantized_matmul(layer, q, ws, xd);
    }
    // qdq: DequantizeLinear(QuantizeLinear(x)) and the per-channel weight's DequantizeLinear into a MatMul, then the float
    // bias: ONNX Runtime fuses the three into MatMulIntegerToFloat (bias included), with the float bias cq adds rather
    // than one rounded to int32 (the 2-D Gemm form, which ORT runs as QGemm; on the BERT-base twin the two forms were
    // within run-to-run noise of each other). Layers reading the same value with the same scale (q, k, v) share one
    // QuantizeLinear: ORT gives each MatMul its own copy of the DequantizeLinear, but quantizes the input once.
    const std::string xd = quantized_input(layer, q, x);
    ++lowered["Q/DQ MatMul"];
    return dequantized_matmul(layer, q, ws, xd);
}

std::string Emitter::dequantized_matmul(const Linear& layer, const Int8Linear& q, const std::string& weight_scale,
                                        const std::string& xd) {
    const int64_t N = q.n_out, K = q.n_in;
    const std::vector<int8_t> wt = transpose_s8(q), wz(static_cast<size_t>(N), 0);
    const std::string w = g.typed(layer.name + ".weight_quantized", onnx_ir::kInt8, {K, N}, wt.data(), wt.size());
    const std::string wzp = g.typed(layer.name + ".weight_zero_point", onnx_ir::kInt8, {N}, wz.data(), wz.size());
    std::string y = g.op("MatMul", {xd, g.op("DequantizeLinear", {w, weight_scale, wzp}, {attr("axis", int64_t{1})})});
    if (!q.bias.empty()) y = g.op("Add", {y, g.f32(layer.name + ".bias", {N}, q.bias)});
    return y;
}

std::string Emitter::quantized_input(const Linear& layer, const Int8Linear& q, const std::string& x) {
    const uint8_t zp = static_cast<uint8_t>(q.input.zero_point);
    uint32_t scale_bits;
    std::memcpy(&scale_bits, &q.input.scale, sizeof(scale_bits));
    const std::string key = x + "|" + std::to_string(scale_bits) + "|" + std::to_string(zp);
    if (const auto it = quantized_inputs.find(key); it != quantized_inputs.end()) return it->second;
    const std::string s = g.f32(layer.name + ".input_scale", {}, std::span<const float>(&q.input.scale, 1));
    const std::string z = g.typed(layer.name + ".input_zero_point", onnx_ir::kUint8, {}, &zp, 1);
    const std::string xd = g.op("DequantizeLinear", {g.op("QuantizeLinear", {x, s, z}), s, z});
    quantized_inputs.emplace(key, xd);
    return xd;
}

std::string Emitter::conv(const Linear& layer, const std::string& x, int64_t in_channels, int64_t kernel, int64_t stride,
                          const std::vector<int64_t>& pads) {
    const int64_t M = layer.n_out(), K = layer.n_in();
    if (K != in_channels * kernel * kernel)
        throw InvalidArgument("[onnx] " + layer.name + ": a " + std::to_string(kernel) + "×" + std::to_string(kernel) + " convolution over " +
                              std::to_string(in_channels) + " channels needs " + std::to_string(in_channels * kernel * kernel) +
                              " inputs per output, the layer has " + std::to_string(K));
    std::vector<onnx_ir::Attribute> attrs{attr("kernel_shape", std::vector<int64_t>{kernel, kernel}), attr("strides", std::vector<int64_t>{stride, stride})};
    if (std::any_of(pads.begin(), pads.end(), [](int64_t p) { return p != 0; })) attrs.push_back(attr("pads", pads));
    const std::vector<int64_t> wshape{M, in_channels, kernel, kernel};  // the Linear's [M, C·k·k] rows, (c, ky, kx) order
    const bool int8 = layer.int8 && (options.format == OnnxFormat::dynamic || options.format == OnnxFormat::qdq || options.format == OnnxFormat::trt_qdq);
    if (!int8) {
        std::vector<std::string> in{x, g.f32(layer.name + ".weight", wshape, linear_weight_f32(layer))};
        const std::vector<float> b = linear_bias_f32(layer);
        if (!b.empty()) in.push_back(g.f32(layer.name + ".bias", {M}, b));
        ++lowered["Conv"];
        return g.op("Conv", in, attrs);
    }
    const Int8Linear& q = *layer.int8;
    const std::string ws = g.f32(layer.name + ".weight_scale", {M}, q.weight_scale);
    const std::string w = g.typed(layer.name + ".weight_quantized", onnx_ir::kInt8, wshape, q.weight.data(), static_cast<size_t>(M * K));
    if (options.format == OnnxFormat::dynamic) {
        // ONNX Runtime's dynamic pattern for Conv: u8 activations per tensor at run time, ConvInteger, then both scales
        const auto xq = g.ops("DynamicQuantizeLinear", {x}, 3);
        const std::string acc = g.op("ConvInteger", {xq[0], w, xq[2]}, attrs);
        const std::string scale = g.op("Reshape", {g.op("Mul", {xq[1], ws}), g.const_i64({M, 1, 1})});
        std::string y = g.op("Mul", {g.op("Cast", {acc}, {attr("to", int64_t{onnx_ir::kFloat})}), scale});
        if (!q.bias.empty()) y = g.op("Add", {y, g.f32(layer.name + ".bias", {M, 1, 1}, q.bias)});
        ++lowered["DynamicQuantizeLinear + ConvInteger"];
        return y;
    }
    if (q.activations != ActivationQuant::static_per_tensor)
        throw InvalidArgument("[onnx] --format " + std::string(onnx_format_name(options.format)) + ": " + layer.name +
                              " quantizes its input at run time (W8A8 dynamic); static Q/DQ needs a model quantized with "
                              "--type w8a8-static --calib DATA");
    const std::vector<int8_t> wz(static_cast<size_t>(M), 0);
    const std::string wzp = g.typed(layer.name + ".weight_zero_point", onnx_ir::kInt8, {M}, wz.data(), wz.size());
    const std::string wd = g.op("DequantizeLinear", {w, ws, wzp}, {attr("axis", int64_t{0})});
    if (options.format == OnnxFormat::trt_qdq) {
        // symmetric s8 activations: the calibrated range widened to ±amax, zero point 0 (as int8_linear)
        const float sx = trt_input_scale(q);
        const int8_t zero = 0;
        const std::string s = g.scalar_f32(sx), z = g.typed(layer.name + ".input_zero_point", onnx_ir::kInt8, {}, &zero, 1);
        std::vector<std::string> in{g.op("DequantizeLinear", {g.op("QuantizeLinear", {x, s, z}), s, z}), wd};
        if (!q.bias.empty()) in.push_back(g.f32(layer.name + ".bias", {M}, q.bias));
        ++lowered["Q/DQ Conv (TensorRT)"];
        return g.op("Conv", in, attrs);
    }
    // qdq: u8 activations with cq's calibrated scale / zero point, the bias as int32 (ONNX Runtime fuses it to QLinearConv)
    const uint8_t zp = static_cast<uint8_t>(q.input.zero_point);
    const std::string s = g.f32(layer.name + ".input_scale", {}, std::span<const float>(&q.input.scale, 1));
    const std::string z = g.typed(layer.name + ".input_zero_point", onnx_ir::kUint8, {}, &zp, 1);
    std::vector<std::string> in{g.op("DequantizeLinear", {g.op("QuantizeLinear", {x, s, z}), s, z}), wd};
    if (!q.bias.empty()) in.push_back(int32_bias(layer, q));
    ++lowered["Q/DQ Conv (int32 bias)"];
    return g.op("Conv", in, attrs);
}

std::string Emitter::reduce(const std::string& op, const std::string& x, const std::vector<int64_t>& axes, bool keepdims) {
    // opset 18 moved the Reduce ops' axes from an attribute to an input
    if (options.opset >= 18) return g.op(op, {x, g.const_i64(axes)}, {attr("keepdims", int64_t{keepdims})});
    return g.op(op, {x}, {attr("axes", axes), attr("keepdims", int64_t{keepdims})});
}

std::string Emitter::cq_activations(const std::string& x, int64_t n_in, DType type) {
    const DType act = kernel_table().quant_kernels(type).act_type;
    const bool q8_0 = act == DType::Q8_0 || act == DType::Q8_1, q8_k = act == DType::Q8_K;
    const int64_t block = q8_k ? 256 : 32;
    if (!(q8_0 || q8_k) || n_in % block != 0) return x;
    const std::string key = x + "|" + std::string(dtype_name(act));
    if (const auto it = cq_activation_inputs.find(key); it != cq_activation_inputs.end()) return it->second;
    // [..., n_in] → [..., n_in / block, block], the blocks cq quantizes
    const std::string prefix = g.op("Shape", {x}, {attr("end", int64_t{-1})});
    const std::string xb = g.op("Reshape", {x, g.op("Concat", {prefix, g.const_i64({n_in / block, block})}, {attr("axis", int64_t{0})})});
    const std::string zero = g.scalar_f32(0.0f);
    std::string xq;
    if (q8_0) {
        // formats/codecs_legacy.cpp quantize_q8: d = max|x| / 127, q = roundf(x · (1 / d)) (halves away from zero: the
        // whole part, one step out where the fraction is ≥ ½), times d as the block stores it (fp16)
        const std::string d = g.op("Div", {reduce("ReduceMax", g.op("Abs", {xb}), {-1}, true), g.scalar_f32(127.0f)});
        const std::string id = g.op("Where", {g.op("Equal", {d, zero}), zero, g.op("Div", {g.scalar_f32(1.0f), d})});
        const std::string v = g.op("Mul", {xb, id});
        const std::string a = g.op("Abs", {v}), whole = g.op("Floor", {a});
        const std::string up = g.op("Cast", {g.op("GreaterOrEqual", {g.op("Sub", {a, whole}), g.scalar_f32(0.5f)})},
                                    {attr("to", int64_t{onnx_ir::kFloat})});
        const std::string q = g.op("Mul", {g.op("Sign", {v}), g.op("Add", {whole, up})});
        const std::string d16 = g.op("Cast", {g.op("Cast", {d}, {attr("to", int64_t{onnx_ir::kFloat16})})}, {attr("to", int64_t{onnx_ir::kFloat})});
        xq = g.op("Mul", {q, d16});
    } else {
        // codecs_kquants.cpp quantize_row_q8_K: max = the block's first value of largest |x|, iscale = −127 / max,
        // q = min(127, nearest_int(iscale · x)) (halves to even), d = 1 / iscale in f32; a block of zeros stays zero
        const std::string at = g.op("ArgMax", {g.op("Abs", {xb})}, {attr("axis", int64_t{-1}), attr("keepdims", int64_t{1})});
        const std::string max = g.op("GatherElements", {xb, at}, {attr("axis", int64_t{-1})});
        const std::string is_zero = g.op("Equal", {max, zero});
        const std::string iscale = g.op("Div", {g.scalar_f32(-127.0f), g.op("Where", {is_zero, g.scalar_f32(1.0f), max})});
        const std::string q = g.op("Min", {g.op("Round", {g.op("Mul", {iscale, xb})}), g.scalar_f32(127.0f)});
        xq = g.op("Where", {is_zero, zero, g.op("Mul", {q, g.op("Div", {g.scalar_f32(1.0f), iscale})})});
    }
    const std::string out = g.op("Reshape", {xq, g.op("Concat", {prefix, g.const_i64({n_in})}, {attr("axis", int64_t{0})})});
    cq_activation_inputs.emplace(key, out);
    return out;
}

std::string Emitter::rms_norm(const std::string& x, const Norm& norm, const std::string& name, float eps) {
    const std::vector<float> w = tensor_f32(norm.weight);
    const std::string sq = g.op("Mul", {x, x});
    const std::string mean = reduce("ReduceMean", sq, {-1}, true);
    const std::string rms = g.op("Sqrt", {g.op("Add", {mean, g.scalar_f32(eps)})});
    const std::string inv = g.op("Reciprocal", {rms});
    return g.op("Mul", {g.op("Mul", {x, inv}), g.f32(name + ".weight", {static_cast<int64_t>(w.size())}, w)});
}

std::string Emitter::layer_norm(const std::string& x, const Norm& norm, const std::string& name, float eps) {
    const std::vector<float> w = tensor_f32(norm.weight);
    const int64_t D = static_cast<int64_t>(w.size());
    std::vector<std::string> in{x, g.f32(name + ".weight", {D}, w)};
    if (norm.bias) in.push_back(g.f32(name + ".bias", {D}, norm.bias->to_float()));
    return g.op("LayerNormalization", in, {attr("axis", int64_t{-1}), attr("epsilon", eps)});
}

std::string Emitter::gelu_erf(const std::string& x) {
    // 0.5·x·(1 + erf(x/√2)) in the node order PyTorch exports (Div, Erf, Add, Mul, Mul), which ONNX Runtime's GeluFusion
    // recognises (opset 17 has no Gelu op)
    const std::string e = g.op("Erf", {g.op("Div", {x, g.scalar_f32(1.4142135381698608f)})});
    return g.op("Mul", {g.op("Mul", {x, g.op("Add", {e, g.scalar_f32(1.0f)})}), g.scalar_f32(0.5f)});
}

std::string Emitter::gelu_tanh(const std::string& x) {
    // 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))
    const std::string x3 = g.op("Mul", {g.op("Mul", {x, x}), x});
    const std::string inner = g.op("Add", {x, g.op("Mul", {x3, g.scalar_f32(0.044715f)})});
    const std::string t = g.op("Tanh", {g.op("Mul", {inner, g.scalar_f32(0.7978845608028654f)})});
    return g.op("Mul", {g.op("Mul", {x, g.scalar_f32(0.5f)}), g.op("Add", {t, g.scalar_f32(1.0f)})});
}

std::string Emitter::silu(const std::string& x) { return g.op("Mul", {x, g.op("Sigmoid", {x})}); }

std::string Emitter::quick_gelu(const std::string& x) { return g.op("Mul", {x, g.op("Sigmoid", {g.op("Mul", {x, g.scalar_f32(1.702f)})})}); }

std::string Emitter::activation(ops::Activation act, const std::string& x) {
    switch (act) {
    case ops::Activation::gelu_erf: return gelu_erf(x);
    case ops::Activation::gelu_tanh: return gelu_tanh(x);
    case ops::Activation::relu: return g.op("Relu", {x});
    case ops::Activation::tanh: return g.op("Tanh", {x});
    case ops::Activation::quick_gelu: return quick_gelu(x);
    case ops::Activation::silu: return silu(x);
    }
    throw Unsupported("[onnx] an activation cq has no ONNX form for");
}

std::string Emitter::l2_normalize(const std::string& x) {
    return g.op("Div", {x, g.op("ReduceL2", {x}, {attr("axes", std::vector<int64_t>{-1}), attr("keepdims", int64_t{1})})});
}

std::string Emitter::positions(const std::string& x, int64_t axis) {
    const std::string n = g.op("Shape", {x}, {attr("start", axis), attr("end", axis + 1)});
    return g.op("Range", {g.scalar_i64(0), g.op("Squeeze", {n, g.const_i64({0})}), g.scalar_i64(1)});
}

std::string Emitter::additive_key_mask(const std::string& attention_mask) {
    const std::string m = g.op("Cast", {attention_mask}, {attr("to", int64_t{onnx_ir::kFloat})});
    return g.op("Unsqueeze", {g.op("Mul", {g.op("Sub", {g.scalar_f32(1.0f), m}), g.scalar_f32(std::numeric_limits<float>::lowest())}),
                              g.const_i64({1, 2})});
}

std::string Emitter::self_attention(const EncoderBlock& b, int64_t hidden, int64_t n_head, const std::string& x,
                                    const std::string& additive_mask, const std::string& bool_mask) {
    const int64_t hd = hidden / n_head, H = b.n_head > 0 ? b.n_head : n_head;  // H: heads the block keeps
    const std::string q = split_heads(linear(b.q, x), H, hd);
    const std::string k = split_heads(linear(b.k, x), H, hd);
    const std::string v = split_heads(linear(b.v, x), H, hd);
    return linear(b.attn_out, merge_heads(attention(q, k, v, hd, additive_mask, bool_mask), H, hd));
}

std::string Emitter::pre_ln_block(const EncoderBlock& b, const EncoderConfig& c, ops::Activation act, const std::string& x,
                                  const std::string& additive_mask, const std::string& bool_mask) {
    const std::string xn = layer_norm(x, b.attn_norm, b.attn_norm.name, c.norm_eps);
    const std::string h = g.op("Add", {x, self_attention(b, c.hidden, c.n_head, xn, additive_mask, bool_mask)});
    const std::string hn = layer_norm(h, b.ffn_norm, b.ffn_norm.name, c.norm_eps);
    const std::string f = activation(act, linear(b.ffn_in, hn));
    return g.op("Add", {h, linear(b.ffn_out, f)});
}

std::string Emitter::split_heads(const std::string& x, int64_t heads, int64_t head_dim) {
    const std::string r = g.op("Reshape", {x, g.const_i64({0, 0, heads, head_dim})});
    return g.op("Transpose", {r}, {attr("perm", std::vector<int64_t>{0, 2, 1, 3})});
}

std::string Emitter::merge_heads(const std::string& x, int64_t heads, int64_t head_dim) {
    const std::string t = g.op("Transpose", {x}, {attr("perm", std::vector<int64_t>{0, 2, 1, 3})});
    return g.op("Reshape", {t, g.const_i64({0, 0, heads * head_dim})});
}

std::string Emitter::attention(const std::string& q, const std::string& k, const std::string& v, int64_t head_dim,
                               const std::string& additive_mask, const std::string& bool_mask) {
    return attention_scaled(q, k, v, 1.0f / std::sqrt(static_cast<float>(head_dim)), additive_mask, bool_mask);
}

std::string Emitter::attention_scaled(const std::string& q, const std::string& k, const std::string& v, float scale,
                                      const std::string& additive_mask, const std::string& bool_mask) {
    const std::string kt = g.op("Transpose", {k}, {attr("perm", std::vector<int64_t>{0, 1, 3, 2})});
    std::string scores = g.op("MatMul", {q, kt});
    if (scale != 1.0f) scores = g.op("Mul", {scores, g.scalar_f32(scale)});
    if (!additive_mask.empty()) scores = g.op("Add", {scores, additive_mask});
    if (!bool_mask.empty()) scores = g.op("Where", {bool_mask, scores, g.scalar_f32(std::numeric_limits<float>::lowest())});
    const std::string probs = g.op("Softmax", {scores}, {attr("axis", int64_t{-1})});
    return g.op("MatMul", {probs, v});
}

onnx_ir::Model new_model(const OnnxExportOptions& options, const std::string& graph_name, const std::string& doc) {
    if (options.opset < 17) throw InvalidArgument("[onnx] opset " + std::to_string(options.opset) + " is below 17, the oldest cq writes");
    onnx_ir::Model m;
    m.ir_version = 8;  // opset 17's IR version (ONNX 1.12)
    m.producer_name = "cq";
#ifdef CQ_VERSION
    m.producer_version = CQ_VERSION;
#endif
    m.doc_string = doc;
    m.opsets.emplace_back("", options.opset);
    if (options.format == OnnxFormat::matmulnbits) m.opsets.emplace_back("com.microsoft", 1);
    m.graph.name = graph_name;
    return m;
}

namespace {

uint64_t initializer_bytes(const onnx_ir::Graph& g) {
    uint64_t n = 0;
    for (const auto& t : g.initializers) n += t.raw.size();
    return n;
}

// Moves every initializer of ≥ 1 KiB into `data` (64-byte aligned offsets), leaving ONNX external-data references.
void move_to_external(onnx_ir::Graph& g, const std::string& location, std::string& data) {
    for (auto& t : g.initializers) {
        if (t.raw.size() < 1024) continue;
        while (data.size() % 64) data.push_back('\0');
        const uint64_t offset = data.size(), length = t.raw.size();
        data += t.raw;
        t.raw.clear();
        t.raw.shrink_to_fit();
        t.external_data = {{"location", location}, {"offset", std::to_string(offset)}, {"length", std::to_string(length)}};
    }
}

}  // namespace

void write_model(onnx_ir::Model& model, const std::string& path, const OnnxExportOptions& options, OnnxExportFile& file) {
    // A graph cq built that does not hold together is cq's bug: the same checks the importer applies to files.
    validate_graph(model, path);
    const onnx_ir::Graph& g = model.graph;
    file.path = path;
    file.nodes = static_cast<int64_t>(g.nodes.size());
    file.initializers = static_cast<int64_t>(g.initializers.size());
    file.weight_bytes = initializer_bytes(g);
    for (const auto& i : g.inputs) file.inputs.push_back(i.name);
    for (const auto& o : g.outputs) file.outputs.push_back(o.name);

    std::string data;
    if (file.weight_bytes > options.external_data_threshold) {
        file.external_data = path + ".data";
        move_to_external(model.graph, std::filesystem::path(file.external_data).filename().string(), data);
    }
    std::string bytes, error;
    if (!onnx_ir::serialize(model, bytes, error)) throw Error("[onnx] could not write '" + path + "': " + error);
    AtomicFile out(path);
    out.write(bytes.data(), bytes.size());
    if (!file.external_data.empty()) {
        AtomicFile side(file.external_data);
        side.write(data.data(), data.size());
        side.commit();
    }
    out.commit();
}

}  // namespace cq::onnx_export
