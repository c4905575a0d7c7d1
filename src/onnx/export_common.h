// Pieces every family's ONNX graph is made of: a Linear as MatMul (+ Add), the norms, the activations, multi-head
// attention over [batch, heads, seq, head_dim] values, and writing a finished model (checker, external data,
// atomic files).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "cq/model.h"
#include "cq/onnx.h"
#include "onnx/graph_builder.h"
#include "ops/encoder_ops.h"

namespace cq::onnx_export {

/// The float values of a weight as the model holds it (dequantized where it is a quantized format or W8A8 int8).
std::vector<float> linear_weight_f32(const Linear& layer);  // [n_out, n_in]
std::vector<float> tensor_f32(const Tensor& t);

/// Emits one family's graph into a builder.
struct Emitter {
    GraphBuilder& g;
    const OnnxExportOptions& options;
    std::map<std::string, int64_t> lowered;  // Linears per lowering, for the report

    /// x: [..., n_in] → [..., n_out] = x·Wᵀ + b, named after the layer.
    std::string linear(const Linear& layer, const std::string& x);
    /// A W8A8 Linear in the int8 formats (dynamic / qdq / trt-qdq).
    std::string int8_linear(const Linear& layer, const std::string& x);
    /// y = x / sqrt(mean(x²) + eps) · w over the last axis.
    std::string rms_norm(const std::string& x, const Norm& norm, const std::string& name, float eps);
    /// LayerNormalization over the last axis (bias optional).
    std::string layer_norm(const std::string& x, const Norm& norm, const std::string& name, float eps);
    std::string gelu_erf(const std::string& x);
    std::string gelu_tanh(const std::string& x);
    std::string silu(const std::string& x);
    /// x·σ(1.702x) (transformers' QuickGELUActivation).
    std::string quick_gelu(const std::string& x);
    /// The activation cq's forward applies (ops::activate), as ONNX ops.
    std::string activation(ops::Activation act, const std::string& x);
    /// [B, T, heads·hd] → [B, heads, T, hd]
    std::string split_heads(const std::string& x, int64_t heads, int64_t head_dim);
    /// [B, heads, T, hd] → [B, T, heads·hd]
    std::string merge_heads(const std::string& x, int64_t heads, int64_t head_dim);
    /// softmax(q·kᵀ/√hd + mask) · v. q: [B, H, T, hd]; k, v: [B, H, L, hd]; `additive_mask` broadcast to
    /// [B, H, T, L] (empty: none) or `bool_mask` (true = attend; masked scores become the lowest float).
    std::string attention(const std::string& q, const std::string& k, const std::string& v, int64_t head_dim,
                          const std::string& additive_mask, const std::string& bool_mask);
    /// As attention, the scores scaled by `scale` (no Mul when it is 1: T5 folds the scale into its weights).
    std::string attention_scaled(const std::string& q, const std::string& k, const std::string& v, float scale,
                                 const std::string& additive_mask, const std::string& bool_mask);
};

/// A finished graph: checked with ONNX's checker, then written atomically to `path`, its initializers moved to
/// `path + ".data"` when their bytes exceed options.external_data_threshold. Fills `file`.
void write_model(onnx_ir::Model& model, const std::string& path, const OnnxExportOptions& options, OnnxExportFile& file);

/// A ModelProto with the opset imports, producer and doc string set; the graph is named `graph_name`.
onnx_ir::Model new_model(const OnnxExportOptions& options, const std::string& graph_name, const std::string& doc);

}  // namespace cq::onnx_export
