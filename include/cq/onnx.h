// ONNX export of the models cq runs: the same layers the spine walks (Model::linears()), written as an ONNX
// graph (opset 17) that ONNX Runtime runs. Decoders get a full-sequence graph and a decode graph with past
// key/values (ONNX Runtime GenAI / Optimum names); large models put their weights in an external data file.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

namespace cq {

class Model;

/// How Linears are written. fp32: MatMul over float weights (quantized weights dequantized). matmulnbits: ONNX
/// Runtime's com.microsoft.MatMulNBits carrying cq's own Q4_0 / Q4_1 / Q4_K (4-bit) and Q8_0 (8-bit) blocks of 32,
/// value for value (float zero points where the type is asymmetric); Linears of other types stay float MatMuls.
/// The int8 formats write the W8A8 Linears of a model cq quantized (cq quantize --type w8a8-static|w8a8-dynamic):
/// dynamic: DynamicQuantizeLinear + MatMulInteger (u8 × s8, per-tensor activations at run time); qdq: static
/// QuantizeLinear/DequantizeLinear around a Gemm with per-channel symmetric s8 weights, u8 activations with cq's
/// calibrated scale and zero point, and the bias as INT32 behind a DequantizeLinear (ONNX Runtime's QGemm fusion);
/// trt-qdq: TensorRT's explicit quantization (symmetric s8 activations and weights, zero points 0, Q/DQ on both
/// MatMul inputs, per-channel weights). Their float Linears stay float MatMuls.
enum class OnnxFormat { fp32, matmulnbits, dynamic, qdq, trt_qdq };

/// "fp32" / "matmulnbits" / "dynamic" / "qdq" / "trt-qdq" → OnnxFormat; InvalidArgument naming the value and the choices otherwise.
OnnxFormat onnx_format_from_name(const std::string& name);
const char* onnx_format_name(OnnxFormat format);

struct OnnxExportOptions {
    OnnxFormat format = OnnxFormat::fp32;
    int opset = 17;  // 17 or later
    /// Weights go to `<file>.data` (ONNX external data) when the initializers' bytes exceed this; protobuf's
    /// own limit for one message is 2 GiB, so the default keeps every file loadable.
    uint64_t external_data_threshold = (uint64_t{1} << 31) - (uint64_t{64} << 20);
    /// matmulnbits: MatMulNBits' accuracy_level (0: float activations; 4: int8 activations in blocks, as cq's and
    /// llama.cpp's quantized dot products do).
    int64_t nbits_accuracy_level = 4;
    /// matmulnbits: quantize each block-typed layer's input in the graph as cq's kernels do (Q8_0 blocks of 32 with fp16
    /// scales for the legacy types, Q8_K blocks of 256 for the k-quants) and run MatMulNBits at accuracy level 0 on those
    /// values, so ONNX Runtime computes cq's numbers, at float-activation speed.
    bool nbits_cq_activations = false;
    /// Decoders: also write the decode graph (past key/values in, present out) beside the main file.
    bool with_past = true;
    /// Called as graphs are built and written (stage name), for progress lines.
    std::function<void(const std::string& stage)> progress;
};

/// One file written by export_onnx.
struct OnnxExportFile {
    std::string path;           // the .onnx file
    std::string external_data;  // its external data file, or empty
    std::string graph;          // "model" (full sequence / classifier) or "decode" (with past key/values); encoder–decoders:
                                // "encoder", "decoder", "decoder_with_past"
    int64_t nodes = 0, initializers = 0;
    uint64_t weight_bytes = 0;  // bytes of initializer data
    std::vector<std::string> inputs, outputs;
    /// How many Linears each lowering got ("MatMul", "MatMulNBits 4-bit", ...).
    std::map<std::string, int64_t> linears;
};

struct OnnxExportReport {
    std::string architecture;
    OnnxFormat format = OnnxFormat::fp32;
    int opset = 17;
    std::vector<OnnxExportFile> files;
    /// Where the graph computes something other than what cq runs for this model (each a sentence).
    std::vector<std::string> notes;
};

/// Writes `model` as ONNX to `path` (atomically; the ONNX checker runs on every graph before it is written).
/// Decoders (LLaMA family, GPT-2): inputs input_ids, attention_mask, position_ids [batch, sequence] int64,
/// outputs logits [batch, sequence, vocab] and present.N.key / present.N.value [batch, kv_heads, total, head_dim];
/// the decode graph `<stem>_with_past.onnx` adds past_key_values.N.key / .value inputs. Text encoders (BERT, RoBERTa,
/// DistilBERT, DeBERTa v2/v3, LayoutLM): input_ids, bbox [batch, sequence, 4] (LayoutLM), attention_mask (and
/// token_type_ids where the model has token types) → logits [batch, labels] (LayoutLM token classifiers: [batch,
/// sequence, labels]; a bare BertModel: last_hidden_state [batch, sequence, hidden]). ViT, DeiT, ResNet, EfficientNet:
/// pixel_values [batch, C, H, W] (already normalised) → logits. CLIP: Optimum's joint graph (input_ids, pixel_values,
/// attention_mask → logits_per_image, logits_per_text, text_embeds, image_embeds) at `path`, and each tower alone at
/// `<stem>_text_model.onnx` / `<stem>_vision_model.onnx`. Encoder–decoders (T5, BART, BLIP captioning): `path` is a
/// directory (created if absent) that gets Optimum's encoder_model.onnx (input_ids, attention_mask → last_hidden_state;
/// BLIP: pixel_values → last_hidden_state), decoder_model.onnx (input_ids, encoder_attention_mask (not BLIP),
/// encoder_hidden_states → logits, present.N.decoder.* / present.N.encoder.*) and decoder_with_past_model.onnx
/// (past_key_values.N.decoder.* / .encoder.* in place of encoder_hidden_states); InvalidArgument for a path ending in
/// .onnx. Unsupported for a layer the format cannot express.
OnnxExportReport export_onnx(const Model& model, const std::string& path, const OnnxExportOptions& options = {});

/// Checks an ONNX file against TensorRT's rules for explicitly quantized graphs (see docs/onnx.md): every
/// QuantizeLinear/DequantizeLinear has an int8 zero point of 0 and positive finite scales; a MatMul / Gemm / Conv that
/// reads one data input through a DequantizeLinear reads both so (one with none runs in float); weights are int8 initializers quantized per tensor or per output
/// channel; activations per tensor, each DequantizeLinear fed by a QuantizeLinear of the same scale. Returns one line
/// per violation (naming the node); empty when the graph follows the rules.
std::vector<std::string> check_tensorrt_qdq(const std::string& path);

/// Where export_onnx writes the decode graph for `path`: "out/m.onnx" → "out/m_with_past.onnx".
std::string onnx_with_past_path(const std::string& path);

}  // namespace cq
