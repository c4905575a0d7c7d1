// Classification evaluation of encoder models: accuracy over a labelled text or image dataset, and the
// agreement / KL-divergence of two models' predictions on the same samples (how a compressed model is
// judged against its original), plus batch latency for `cq bench`.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "cq/datasets.h"
#include "cq/encoder.h"
#include "cq/eval.h"

namespace cq {

/// Whether `path` holds an encoder classifier: an HF directory whose config.json has model_type bert,
/// roberta, distilbert or vit, or a cq W8A8 container (.gguf of architecture "cq-encoder").
bool is_encoder_model(const std::string& path);

struct ClassifyOptions {
    int64_t batch = 32;     // samples per forward pass
    int64_t max_len = 128;  // text: tokens per sample incl. [CLS]/[SEP] (longer texts are truncated)
};

struct ClassificationResult {
    int64_t samples = 0, num_labels = 0, correct = 0;
    double accuracy = 0, seconds = 0;
    std::vector<int32_t> predictions;  // [samples]
    std::vector<int32_t> labels;       // [samples]
    std::vector<float> logits;         // [samples, num_labels]
};

/// Runs the model over every sample in batches. InvalidArgument if a label lies outside the model's
/// head (the data does not match the task) or the model's kind (text/vision) differs from the data's.
ClassificationResult classify_dataset(EncoderModel& model, const data::TextDataset& data, const ClassifyOptions& options,
                                      const ProgressFn& progress = {});
ClassificationResult classify_dataset(EncoderModel& model, const data::ImageDataset& data, const ClassifyOptions& options,
                                      const ProgressFn& progress = {});

/// A labelled dataset of either kind, with the samples [first, first + count) of its source selected.
struct LabelledData {
    std::optional<data::TextDataset> text;
    std::optional<data::ImageDataset> images;
    std::string source;  // what was loaded, for reports
    int64_t count() const;
};

struct DataSelection {
    int64_t first = 0;        // first sample (0-based, in file order)
    int64_t count = -1;       // samples from `first` (−1: to the end)
    std::string labels_path;  // MNIST: the idx1 labels file ("" = derived from the images file's name)
};

/// Picks the reader from `path`: a directory → image folder (one subfolder per class); an idx3 file
/// (MNIST, raw or .gz) → images with the matching idx1 labels; anything else → a TSV with a header.
/// Labels given as names are mapped through the model's id2label. InvalidArgument for a selection
/// outside the data.
LabelledData load_labelled_data(const std::string& path, const EncoderModel& model, const DataSelection& selection);
ClassificationResult classify_dataset(EncoderModel& model, const LabelledData& data, const ClassifyOptions& options,
                                      const ProgressFn& progress = {});

struct PredictionAgreement {
    int64_t samples = 0;
    double agreement = 0;           // fraction of samples with the same argmax
    double mean_kld = 0, max_kld = 0;  // KL(base ‖ other) of the softmaxed logits, nats
    double max_abs_logit_diff = 0;
};
/// Same samples in the same order required (InvalidArgument otherwise).
PredictionAgreement compare_predictions(const ClassificationResult& base, const ClassificationResult& other);

struct EncoderBenchResult {
    int64_t batch = 0, seq = 0, repetitions = 0;
    std::vector<double> ms;  // each timed forward pass
    double median_ms = 0, min_ms = 0, max_ms = 0;
    std::string isa;
};
/// Times forward passes of `batch` × `seq` tokens (text: a fixed pseudo-random id pattern, no padding;
/// vision: `batch` fixed images, seq ignored).
EncoderBenchResult bench_encoder(EncoderModel& model, int64_t batch, int64_t seq, int64_t repetitions, int64_t warmup,
                                 const ProgressFn& progress = {});
/// Fills median / min / max from r.ms (no-op when empty).
void summarize_timings(EncoderBenchResult& r);

}  // namespace cq
