// ONNX import: an .onnx image model (a classifier such as mnist-8 or SqueezeNet, FP32 or QDQ; a YOLOv8-style detector)
// loaded into the model spine.
// Conv, Gemm and MatMul with constant weights become Linears (a Conv as a Linear over im2col patches), so compression
// passes see and rewrite them like any other model's; the rest of the graph runs as a small interpreter in the
// file's node order. Unknown operators are refused at load, naming the node and the op.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "cq/model.h"

namespace cq {

namespace onnx_ir {
struct Model;
}
struct OnnxGraphState;

/// What OnnxModel::write_qdq wrote.
struct OnnxQdqReport {
    std::string path;
    int64_t opset = 0;
    int64_t quantized = 0;         // Conv / Gemm / MatMul nodes written with Q/DQ inputs
    int64_t float_linears = 0;     // Linears left in float
    int64_t bias_adds_folded = 0;  // per-channel Adds after a quantized Conv / Gemm written as its int32 bias
    int64_t concat_inputs_quantized = 0;  // Concat inputs given the Q/DQ of the quantized Linears the Concat feeds
    int64_t nodes = 0, initializers = 0;
    uint64_t weight_bytes = 0, file_bytes = 0;
};

class OnnxModel : public Model {
public:
    ~OnnxModel() override;
    /// Loads an .onnx file (external data beside it). FormatError for a malformed file, Unsupported naming the first
    /// node whose operator cq cannot run.
    static std::unique_ptr<OnnxModel> load(const std::string& path);
    /// The same from bytes in memory (no external data); `name` appears in errors.
    static std::unique_ptr<OnnxModel> from_bytes(const void* data, size_t size, const std::string& name);

    ModelKind kind() const override { return ModelKind::vision; }
    const std::string& architecture() const override { return architecture_; }
    int64_t n_blocks() const override { return 0; }
    std::vector<LayerInfo> layers() const override;
    void save(const std::string& path, const SaveOptions& options = {}) const override;

    /// Writes the model after static W8A8 (quantize_onnx_w8a8_static) as an ONNX QDQ graph at opset ≥ 13, atomically: the
    /// file's nodes with each quantized Conv / Gemm / MatMul fed by QuantizeLinear → DequantizeLinear (cq's u8 scale / zero
    /// point), its int8 weights (per output channel, zero point 0) and int32 bias (input scale × weight scale) behind
    /// DequantizeLinear; BatchNorms folded as cq runs them. InvalidArgument when no Linear is static W8A8 or `path` is
    /// the input file.
    OnnxQdqReport write_qdq(const std::string& path) const;

    /// The graph's one float input: its name and shape, −1 for each dimension the file leaves open (dynamic axes).
    const std::string& input_name() const;
    const std::vector<int64_t>& input_shape() const;
    /// The graph's first output's name.
    const std::string& output_name() const;

    /// Runs `batch` inputs (each input_shape() without the batch dimension, float, in the file's layout) and returns the
    /// first output, flattened: [batch, outputs_per_sample]. InvalidArgument when a shape does not fit.
    std::vector<float> run(const float* input, int64_t batch);
    /// The same for an input of any shape the graph allows (its symbolic dimensions given: a detector exported with
    /// dynamic height / width runs at other image sizes). shape[0] is the batch.
    std::vector<float> run(const float* input, const std::vector<int64_t>& shape);
    /// Elements per sample of the last run()'s output.
    int64_t outputs_per_sample() const { return outputs_per_sample_; }
    /// The last run()'s output shape, batch first.
    const std::vector<int64_t>& output_shape() const { return output_shape_; }

    /// The supported operators, for messages and docs.
    static std::string supported_operators();

private:
    OnnxModel();
    static std::unique_ptr<OnnxModel> from_ir(onnx_ir::Model ir, const std::string& path);
    void collect_linears(std::vector<Linear*>& out) override;
    std::string architecture_ = "onnx";
    std::unique_ptr<OnnxGraphState> state_;
    int64_t outputs_per_sample_ = 0;
    std::vector<int64_t> output_shape_;
};

/// How images become the imported model's float input: value = pixel · scale (per channel: (pixel · scale − mean) / std
/// when mean / std are given), laid out NCHW or NHWC as the model's input shape says.
struct OnnxImageOptions {
    float pixel_scale = 1.0f;  // 1: raw 0..255 values (the ONNX model zoo's MNIST); 1/255: [0, 1]
    std::vector<float> mean, std;
    int64_t batch = 32;
};

/// The image geometry the model's input asks for: {channels, height, width, nhwc}. Unsupported unless the input is a
/// fixed 4-D image tensor.
struct OnnxImageInput {
    int64_t channels = 0, height = 0, width = 0;
    bool nhwc = false;
};
OnnxImageInput onnx_image_input(const OnnxModel& model);

/// Classifies labelled images (MNIST idx or an image folder, cq/classify.h's DataSelection) with an imported model:
/// accuracy, per-sample predictions and outputs. The result's `logits` are the model's first output (probabilities
/// where the graph ends in a Softmax).
struct ClassificationResult;
struct DataSelection;
ClassificationResult classify_images_onnx(OnnxModel& model, const std::string& data_path, const DataSelection& selection,
                                          const OnnxImageOptions& options);

/// Latency of imported models on the same `batch` fixed pseudo-random images (pixels 0..255 through `image`'s scale and
/// normalisation, in the model's layout): `warmup` untimed runs each, then `repetitions` rounds that time every model
/// once in turn, so that all see the same load (e.g. a model and its W8A8 copy). One result per model; `seq` is 0.
struct EncoderBenchResult;
std::vector<EncoderBenchResult> bench_onnx(std::span<OnnxModel* const> models, int64_t batch, int64_t repetitions, int64_t warmup,
                                           const OnnxImageOptions& image);

/// Static W8A8 for an imported model: every Linear (Conv, Gemm, MatMul) gets per-output-channel symmetric int8
/// weights and a u8 input scale / zero point from the ranges its inputs took on `samples` calibration images
/// (data_path / selection as classify_images_onnx; calib::Method as cq quantize --type w8a8-static). In memory: the
/// model then runs through the u8×s8 kernels. Returns the number of Linears quantized.
int64_t quantize_onnx_w8a8_static(OnnxModel& model, const std::string& data_path, const DataSelection& selection,
                                  const OnnxImageOptions& image, int64_t samples, int32_t method, double percentile = 99.99);
/// The same calibrated on `samples` float inputs already in the model's layout (input_shape() without its batch
/// dimension each), run `batch` at a time: for models whose data is not an image folder or MNIST.
int64_t quantize_onnx_w8a8_static(OnnxModel& model, const float* inputs, int64_t samples, int64_t batch, int32_t method,
                                  double percentile = 99.99);

namespace onnx_ops {
/// Direct 2-D convolution in double, the reference twin of the im2col + GEMM path. x: [N, C, H, W];
/// w: [M, C/group, kh, kw]; b: [M] or null; pads: top, left, bottom, right. y: [N, M, OH, OW].
void conv2d_ref(const float* x, int64_t N, int64_t C, int64_t H, int64_t W, const float* w, int64_t M, int64_t kh, int64_t kw,
                const float* b, int64_t group, const int64_t stride[2], const int64_t pads[4], const int64_t dilation[2], float* y,
                int64_t OH, int64_t OW);
/// The same through im2col and the kernel table's f32 GEMM (group 1).
void conv2d_im2col(const float* x, int64_t N, int64_t C, int64_t H, int64_t W, const float* w, int64_t M, int64_t kh, int64_t kw,
                   const float* b, const int64_t stride[2], const int64_t pads[4], const int64_t dilation[2], float* y, int64_t OH,
                   int64_t OW);
}  // namespace onnx_ops

}  // namespace cq
