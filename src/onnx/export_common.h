// Pieces every family's ONNX graph is made of: a Linear as MatMul (+ Add), the norms, the activations, multi-head
// attention over [batch, heads, seq, head_dim] values, and writing a finished model (checker, external data,
// atomic files).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "cq/encoder.h"
#include "cq/model.h"
#include "cq/onnx.h"
#include "cq/w8a8.h"
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
    /// A W8A8 layer's bias as int32 in units of input scale × weight scale behind a DequantizeLinear (the qdq Conv).
    std::string int32_bias(const Linear& layer, const Int8Linear& q);
    /// DequantizeLinear(QuantizeLinear(x)) with the layer's static u8 scale and zero point, made once per (x, scale, zero
    /// point) and shared by the layers that read x so (an attention block's q, k, v).
    std::string quantized_input(const Linear& layer, const Int8Linear& q, const std::string& x);
    std::map<std::string, std::string> quantized_inputs{};  // (x, scale bits, zero point) → the DequantizeLinear's output
    /// xd (a DequantizeLinear's output) times the layer's s8 weights behind a per-channel DequantizeLinear (axis 1, zero
    /// points 0), then the float bias: the qdq and trt-qdq forms of a quantized Linear.
    std::string dequantized_matmul(const Linear& layer, const Int8Linear& q, const std::string& weight_scale, const std::string& xd);
    /// x as cq's kernels quantize a `type` layer's input (its activation type Q8_0 / Q8_1 / Q8_K, dequantized again), made
    /// once per (x, activation type); x itself for types whose input stays float (OnnxExportOptions::nbits_cq_activations).
    std::string cq_activations(const std::string& x, int64_t n_in, DType type);
    std::map<std::string, std::string> cq_activation_inputs{};
    /// `op` (ReduceMean, ReduceMax) over `axes`: the axes an attribute before opset 18, an input from it.
    std::string reduce(const std::string& op, const std::string& x, const std::vector<int64_t>& axes, bool keepdims);
    /// y = x / sqrt(mean(x²) + eps) · w over the last axis.
    std::string rms_norm(const std::string& x, const Norm& norm, const std::string& name, float eps);
    /// LayerNormalization over the last axis (bias optional).
    std::string layer_norm(const std::string& x, const Norm& norm, const std::string& name, float eps);
    std::string gelu_erf(const std::string& x);
    std::string gelu_tanh(const std::string& x);
    std::string silu(const std::string& x);
    /// x / ‖x‖₂ over the last axis, without an epsilon (transformers' CLIP embeddings).
    std::string l2_normalize(const std::string& x);
    /// [0, 1, …, n − 1] (int64) with n the size of `x`'s axis `axis` (a dynamic dimension).
    std::string positions(const std::string& x, int64_t axis);
    /// int64 attention_mask [B, S] (1 real, 0 padding) → [B, 1, 1, S]: 0 for real keys, the lowest float for padding
    /// (HF's extended attention mask).
    std::string additive_key_mask(const std::string& attention_mask);
    /// A convolution whose weight is the Linear `layer` ([out, (in_channels / group)·k·k] over NCHW patches, BatchNorm
    /// folded in, as cq's ConvUnit): x [N, in_channels, H, W] → [N, out, OH, OW]; pads {top, left, bottom, right} (no
    /// attribute when all zero). W8A8 layers lower as int8_linear lowers a MatMul: DynamicQuantizeLinear + ConvInteger
    /// (dynamic), Q/DQ around the Conv with an int32 bias (qdq) or symmetric s8 (trt-qdq).
    std::string conv(const Linear& layer, const std::string& x, int64_t in_channels, int64_t kernel, int64_t stride,
                     const std::vector<int64_t>& pads);
    /// An encoder block's multi-head self-attention, output projection included: x [B, S, hidden] → [B, S, hidden]
    /// with the heads the block keeps (HF pruned_heads); masks as attention().
    std::string self_attention(const EncoderBlock& b, int64_t hidden, int64_t n_head, const std::string& x, const std::string& additive_mask,
                               const std::string& bool_mask);
    /// A pre-LN block (ViT, DeiT, CLIP's towers): h = x + attn(LN₁(x)); h + ffn(LN₂(h)).
    std::string pre_ln_block(const EncoderBlock& b, const EncoderConfig& c, ops::Activation act, const std::string& x,
                             const std::string& additive_mask, const std::string& bool_mask);
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
