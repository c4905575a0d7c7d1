// The CompressionPipeline: a recipe (YAML or JSON) lists stages — prune, distill, quantize, qat, export — run in order
// on a decoder LLM or an encoder classifier (chosen by the model's kind), each measured against the original (size;
// perplexity / KL-divergence or accuracy / agreement; speed) and checkpointed so that a killed run resumes after its last
// finished stage. Thin over the same passes as cq prune / distill / quantize / export.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "cq/prune.h"
#include "cq/quantize.h"

namespace cq {

/// How one quantize stage (or a ModelQuantizer) rounds weights: a preset or plain type, a method, extra rules.
struct QuantizationConfig {
    std::string type = "q8_0";                // preset name or plain type (cq quantize --type)
    std::string method;                       // "" (rtn, or imatrix/auto with calibration), rtn, imatrix, gptq, awq, awq+gptq, auto
    std::vector<std::string> tensor_types;    // "PATTERN=TYPE" rules after the preset
    bool keep_zeros = true;                   // pruned zeros stay exact zeros
};

/// Quantizes a model file with a QuantizationConfig (cq quantize's library call, named as the seed names it).
class ModelQuantizer {
public:
    explicit ModelQuantizer(QuantizationConfig config) : config_(std::move(config)) {}
    /// Writes `output` (GGUF) from `input` (GGUF or HF directory); calibration text for the calibrated methods.
    QuantizeReport quantize(const std::string& input, const std::string& output, const CalibrationOptions& calib = {}) const;
    const QuantizationConfig& config() const { return config_; }

private:
    QuantizationConfig config_;
};

enum class StageKind { prune, distill, quantize, qat, export_model };
/// "prune", "distill", "quantize", "qat", "export".
std::string stage_kind_name(StageKind k);

struct PruneStageConfig {
    std::string method = "magnitude";  // unstructured: magnitude | wanda | sparsegpt
    double sparsity = 0;               // unstructured fraction, or
    std::string pattern;               // N:M, or
    std::string structured;            // "heads=0.25,ffn=0.25[,layers=N]" (HF llama-family or encoder input)
    std::string scope = "layer";
};

/// Encoder classifiers' W8A8 quantize stage (type w8a8-static | w8a8-dynamic), as cq quantize --type w8a8-*.
struct EncoderQuantStageConfig {
    std::string calib_method = "percentile";  // static: minmax, percentile, mse, entropy
    double percentile = 99.99;
    std::string embeddings = "q8_0";          // word-embedding table: q8_0, q5_0, q4_0, f16, bf16, f32
    int64_t calib_samples = 256;              // static: at most this many calibration.data samples
    int32_t act_bits = 0;                     // 0 auto, 7, 8
    std::string attention = "f32";            // self-attention's products: f32 or int8 (AttentionPrecision)
};

struct DistillStageConfig {
    int64_t steps = 100;
    float lr = 3e-4f;
    int64_t batch = 8, ctx = 128;
    float temperature = 2.0f;
};

struct StageConfig {
    StageKind kind = StageKind::quantize;
    int64_t line = 0;  // in the recipe, for messages
    PruneStageConfig prune;
    DistillStageConfig distill;
    QuantizationConfig quantize;
    EncoderQuantStageConfig w8a8;       // quantize type w8a8-static / w8a8-dynamic (encoders)
    std::string export_format = "gguf";  // gguf; encoders also hf (the HF directory) and onnx
    std::string onnx_format = "qdq";     // export format onnx: fp32, dynamic, qdq, trt-qdq (cq export --format)
};

struct CompressionConfig {
    std::vector<StageConfig> stages;
    CalibrationOptions calib;      // calibration text for prune / distill / quantize (chunks of calib.n_ctx)
    std::string eval_text;         // measured after every stage (empty: size only)
    int64_t eval_ctx = 128, eval_chunks = -1;
    bool bench = true;
    BenchOptions bench_options{128, 32, 3, 1};
    // Encoder classifiers: labelled data (TSV, image folder …) instead of text.
    std::string calib_data;           // calibration.data: prune importance, distillation, static W8A8 calibration
    int64_t calib_samples = 512;      // calibration.samples: at most this many (prune importance)
    int64_t max_len = 128;            // calibration.max_len: tokens per text sample (also evaluation and distillation)
    std::string eval_data;            // evaluation.data: accuracy and agreement after every stage
    int64_t eval_samples = -1;        // evaluation.samples: the first N (−1: all)
    int64_t eval_max_len = 128;       // evaluation.max_len: tokens per text sample
    int64_t bench_batch = 8, bench_seq = 128;  // evaluation.bench_batch / bench_seq: batch latency (bench_options.repetitions runs)
    std::string recipe_path, recipe_text, recipe_sha256;
    std::map<std::string, int64_t> key_lines;  // "stages[1].prune.method" / "calibration.text" → its recipe line (given keys only)

    /// Parses a recipe (YAML, or JSON — parsed as the YAML it also is). Relative paths are taken from the recipe's
    /// folder. InvalidArgument "recipe FILE:LINE: key 'K': why" for the first problem (unknown stage or key, bad value).
    static CompressionConfig parse(const std::string& text, const std::string& path_for_messages);
    static CompressionConfig from_file(const std::string& path);
};

/// One stage's output and its measurement against the original model.
struct StageResult {
    std::string name;      // "original", "1-prune", …
    std::string model;     // the stage's output (file or HF directory)
    uint64_t bytes = 0;    // on disk
    double ppl = 0, ppl_err = 0, kld = -1, same_top = -1;  // ppl 0: not measured
    // Encoder classifiers: accuracy on the evaluation data (−1: not measured), agreement of the predictions with the
    // original's and the mean KL-divergence of their softmaxes; batch latency (ms, median) beside the original's.
    double accuracy = -1, agreement = -1, mean_kld = -1;
    double latency_ms = 0, base_latency_ms = 0;
    int64_t eval_samples = 0;
    double prompt_tps = 0, gen_tps = 0;                     // this model, measured beside the original in the same run
    double base_prompt_tps = 0, base_gen_tps = 0;
    double seconds = 0;    // the stage's own work
    bool resumed = false;  // finished by an earlier run (its numbers are that run's)
    std::vector<std::string> notes;
};

struct CompressionReport {
    std::string input, output_dir, final_model;
    bool encoder = false;  // an encoder classifier: accuracy / latency columns instead of PPL / tokens/s
    std::string recipe_sha256, calib_sha256;
    StageResult original;
    std::vector<StageResult> stages;
    std::string markdown() const;
    std::string json() const;  // the same, as a JSON document
};

/// Runs a CompressionConfig. Output folder: stages/NN-kind/ (each stage's model), state.json (the finished stages,
/// rewritten atomically after each), provenance.json (recipe, its sha256, the calibration text's sha256), report.md,
/// report.json, and the final model (model.gguf, model/ for an HF directory, model.onnx). An encoder classifier (by
/// is_encoder_model) runs structured prune, distill (from the original), W8A8 quantize and export; every recipe key is
/// checked against the model's kind before anything is written (InvalidArgument naming the recipe line and the key).
class CompressionPipeline {
public:
    explicit CompressionPipeline(CompressionConfig config) : config_(std::move(config)) {}
    /// resume: continue the run in `output_dir` after its last finished stage (same recipe and input required);
    /// otherwise `output_dir` must not hold a pipeline run already.
    CompressionReport run(const std::string& model, const std::string& output_dir, bool resume = false,
                          const std::function<void(const std::string& stage, int64_t done, int64_t total)>& progress = {});
    const CompressionConfig& config() const { return config_; }

private:
    CompressionConfig config_;
};

}  // namespace cq
