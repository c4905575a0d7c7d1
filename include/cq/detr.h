// DETR object detection (HF DetrForObjectDetection with transformers' own ResNet backbone) built from an HF directory:
// the backbone's convolutions (BatchNorm folded in) and every transformer projection are Linears the passes see, compute
// is f32 (or a pass's W8A8 / 4-bit form) through the kernel table, whole batches of same-sized images at once, with an
// optional pixel mask for padded batches. Post-processing (softmax, no-object dropped, threshold, cxcywh → corners at
// the image size) gives cq/detection.h's Detections; the MNIST tiles below give a small annotated set to score them on.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "cq/calibration.h"
#include "cq/detection.h"
#include "cq/encoder.h"
#include "cq/model.h"
#include "cq/w8a8.h"

namespace cq {

struct DetrConfig {
    std::string architecture = "DetrForObjectDetection";
    /// The ResNet backbone (backbone_config): stage_sizes / stage_depths of the stages that run, embedding_size,
    /// num_channels, bottleneck, downsample_in_first_stage / _in_bottleneck, hidden_act; and preprocessor_config.json's
    /// rescale_factor, image_mean, image_std.
    EncoderConfig backbone;
    /// Stages whose output feeds the transformer: the last entry of backbone_config's out_features (0: the stem's).
    int64_t backbone_stages = 0;
    int64_t d_model = 0, encoder_layers = 0, decoder_layers = 0, encoder_heads = 0, decoder_heads = 0, encoder_ffn = 0, decoder_ffn = 0;
    int64_t num_queries = 0, num_labels = 0;  // the class head has num_labels + 1 outputs, the last "no object"
    std::string activation = "relu";         // activation_function, in both stacks' FFNs
    bool learned_positions = false;           // position_embedding_type "learned" (row / column tables), else "sine"
    int64_t learned_position_rows = 50;       // DetrLearnedPositionEmbedding's tables: feature maps up to 50 × 50
    /// transformers (4.46) runs the decoder's LayerNorm after every decoder layer, not only the last, when auxiliary_loss
    /// is set: it changes the outputs, so it is read.
    bool auxiliary_loss = false;
    float layer_norm_eps = 1e-5f;             // nn.LayerNorm's default: DETR's config has no eps
    std::vector<std::string> labels;          // id2label in id order
};

class DetrModel : public Model {
public:
    DetrModel();
    ~DetrModel() override;
    /// Loads an HF directory (config.json, model.safetensors, preprocessor_config.json if present), or cq's DETR container
    /// (save: a GGUF of architecture "cq-detr" with those files embedded and the Linears as saved). Unsupported, naming the
    /// key, for what cq does not run: a timm backbone (use_timm_backbone), a backbone other than ResNet, dilation,
    /// DetrForSegmentation (masks), backbone_kwargs; FormatError for sizes that do not fit (odd d_model, heads that do not
    /// divide it, out_features naming no stage).
    static std::unique_ptr<DetrModel> load(const std::string& hf_dir);

    const DetrConfig& config() const { return config_; }
    ModelKind kind() const override { return ModelKind::vision; }
    const std::string& architecture() const override { return config_.architecture; }
    /// The backbone's residual blocks, then the encoder's layers, then the decoder's.
    int64_t n_blocks() const override;
    std::vector<LayerInfo> layers() const override;
    /// cq's DETR container (model_container.h): the directory's tensors with each Linear as it is now (W8A8: I8 weights
    /// and scales; weight-only: its block type), config / preprocessor embedded. Unsupported for a model loaded from a
    /// container (save from the directory).
    void save(const std::string& path, const SaveOptions& options = {}) const override;

    /// pixels: u8 [batch, num_channels, height, width], normalised inside as (u8·rescale − mean) / std per channel (no
    /// resize). pixel_mask (null: every pixel real): u8 [batch, height, width], 1 real / 0 padding, as DetrImageProcessor
    /// pads a batch: padding pixels are set to 0 after normalisation, the mask is brought to the feature map by
    /// nearest-neighbour sampling and masks the encoder's keys, the decoder's cross-attention keys and (sine) the
    /// position cumulative sums. logits: [batch, num_queries, num_labels + 1]; boxes: [batch, num_queries, 4] as
    /// (cx, cy, w, h) in [0, 1] of the image.
    void forward(const uint8_t* pixels, int64_t batch, int64_t height, int64_t width, float* logits, float* boxes,
                 const uint8_t* pixel_mask = nullptr);
    /// forward, then detr_post_process at the image's own size; images numbered from first_image.
    std::vector<Detection> detect(const uint8_t* pixels, int64_t batch, int64_t height, int64_t width, float threshold, int64_t first_image = 0);

    struct State;  // the weights (src/models/detr_internal.h)
    const State& state() const { return *s_; }  // for the ONNX graph writer (src/onnx/export_detr.cpp)

private:
    DetrConfig config_;
    std::unique_ptr<State> s_;
    void collect_linears(std::vector<Linear*>& out) override;
};

/// True for a DETR HF directory (model_type "detr") or cq's DETR container; false for anything else or unreadable.
bool is_detr_model(const std::string& path);

/// DetrImageProcessor.post_process_object_detection: per query, softmax over the classes, the most likely real class
/// (the last, "no object", left out) and its probability as the score; queries whose score exceeds `threshold` become
/// Detections with the box (cx ± w/2, cy ± h/2) scaled to width / height. logits: [batch, queries, classes + 1], boxes:
/// [batch, queries, 4]. Ordered by image, then query.
std::vector<Detection> detr_post_process(const float* logits, const float* boxes, int64_t batch, int64_t queries, int64_t classes_with_no_object,
                                         int64_t height, int64_t width, float threshold, int64_t first_image = 0);

/// DETR's default W8A8 selection: every Linear of the encoder and decoder layers and the backbone blocks' path convs;
/// the stem, the shortcuts, input_projection and both heads stay f32.
std::vector<W8A8Rule> detr_default_w8a8_rules();

/// Images with annotated objects: pixels u8 [count, channels, height, width] and their truth boxes (image = index).
struct DetectionSet {
    int64_t count = 0, channels = 0, height = 0, width = 0;
    std::vector<uint8_t> pixels;
    std::vector<GroundTruth> truth;
    std::string source;
};

/// The canvas `cq eval` / `cq stats` tile MNIST digits onto for DETR unless told otherwise: 2 × 3 digits, height × width.
inline constexpr int64_t kDetrMnistCanvasHeight = 56, kDetrMnistCanvasWidth = 84;

/// A detection set made from MNIST test digits (no training on them): each canvas (height × width, at least 28 × 28)
/// is a grid of 28 × 28 cells; images [first, first + count) each get 1 to the number of cells digits, drawn in order
/// from the idx file, in cells chosen by a fixed LCG (so the set is the same on every run), the grey value copied into
/// every channel. A digit's truth box is the tight box of its non-zero pixels (corners at pixel edges) and its label the
/// digit. labels_path "" derives the labels file from the images file's name.
DetectionSet mnist_detection_set(const std::string& images_path, const std::string& labels_path, int64_t first, int64_t count, int64_t channels,
                                 int64_t height, int64_t width);

/// The outputs of one DETR over a detection set, batch by batch.
struct DetrRun {
    std::vector<float> logits, boxes;    // [count, queries, classes + 1], [count, queries, 4]
    std::vector<Detection> detections;   // detr_post_process at `threshold`
    double seconds = 0;
};
DetrRun run_detr(DetrModel& model, const DetectionSet& set, float threshold, int64_t batch = 8);

/// W8A8 in memory on the Linears `rules` select: dynamic per-token activations, or (static_per_tensor) one input range per
/// Linear chosen by `method` from what it saw over `calib`'s images. Returns the Linears quantized. InvalidArgument for
/// static without calibration images.
int64_t quantize_detr_w8a8(DetrModel& model, ActivationQuant activations, const DetectionSet* calib = nullptr,
                           calib::Method method = calib::Method::minmax, double percentile = 99.99,
                           const std::vector<W8A8Rule>& rules = detr_default_w8a8_rules());

/// Weight-only quantization to `type` (e.g. Q4_0) of the Linears `rules` select whose rows are whole blocks of the type;
/// the others stay as they are, each listed in `fallbacks` with the reason.
struct DetrWeightQuantResult {
    int64_t quantized = 0;
    std::vector<std::string> fallbacks;  // "name: rows of 24 are not a multiple of q4_0's block of 32"
};
DetrWeightQuantResult quantize_detr_weights(DetrModel& model, DType type, const std::vector<W8A8Rule>& rules = detr_default_w8a8_rules());

/// `cq quantize` for DETR: load `input` (an HF directory), quantize as `type` says — "w8a8-dynamic", "w8a8-static"
/// (ranges by `method` from MNIST canvases: mnist_detection_set(calib_images, "", calib_first, calib_count, the model's
/// channels, canvas_height, canvas_width)), or a ggml block type ("q8_0", "q4_0": weight-only, rows not whole blocks stay f32 and
/// are listed) — on the Linears `rules` select, and save cq's DETR container to `output`.
struct DetrQuantizeOptions {
    std::string type;
    std::string calib_images;  // w8a8-static: an MNIST idx images file
    int64_t calib_first = 0, calib_count = 32;
    int64_t canvas_height = kDetrMnistCanvasHeight, canvas_width = kDetrMnistCanvasWidth;
    calib::Method method = calib::Method::minmax;
    double percentile = 99.99;
    std::vector<W8A8Rule> rules = detr_default_w8a8_rules();
};
struct DetrQuantizeReport {
    std::string input, output, type;
    int64_t linears = 0, quantized = 0;   // Linears in the model; rewritten
    std::vector<std::string> fallbacks;   // weight-only: "name: why"
    uint64_t file_bytes_in = 0, file_bytes_out = 0;  // the directory's weights file(s); the container written
    double seconds = 0;
};
/// InvalidArgument for an unknown type or w8a8-static without calibration images.
DetrQuantizeReport quantize_detr(const std::string& input, const std::string& output, const DetrQuantizeOptions& options);

/// One form of the model on a detection set, beside the FP32 run on the same images.
struct DetrFormReport {
    std::string form;               // "fp32", "w8a8 dynamic", "w8a8 static (minmax)", "q4_0 weights"
    int64_t linears_changed = 0;
    std::vector<std::string> fallbacks;
    uint64_t weight_bytes = 0;      // every layer's bytes as the model holds it (Linears in their current format)
    double seconds_per_batch = 0;   // median over the timed repeats, batch of `latency_batch` images
    int64_t detections = 0;
    DetectionScore truth;           // COCO mAP against the set's truth boxes
    DetectionScore agreement;       // detection_agreement: this form's detections against FP32's as truth (1 for FP32)
    double max_abs_logit_diff = 0, max_abs_box_diff = 0;  // against FP32
};
struct DetrEvalOptions {
    float threshold = 0.5f;        // post-processing score threshold
    int64_t batch = 8;
    bool w8a8_dynamic = false;
    const DetectionSet* calib = nullptr;  // non-null: also static W8A8 calibrated on these images
    calib::Method calib_method = calib::Method::minmax;
    double percentile = 99.99;
    bool q4_weights = false;       // also Q4_0 weight-only (in memory; rows that are not whole blocks stay f32)
    int64_t latency_batch = 8, latency_repeats = 5;
};
/// FP32, then each requested form (quantized in memory in turn, FP32 restored between), on `set`.
std::vector<DetrFormReport> evaluate_detr(DetrModel& model, const DetectionSet& set, const DetrEvalOptions& options);

}  // namespace cq
