// Structured pruning of encoder classifiers (BERT family, ViT): attention heads and FFN neurons removed, the same count
// in every block, by importance measured on calibration activations; the result is a smaller HF directory that
// transformers loads (config.json's pruned_heads and intermediate_size, as PreTrainedModel.prune_heads leaves them).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "cq/classify.h"
#include "cq/distill.h"
#include "cq/prune.h"

namespace cq {

struct EncoderPruneOptions {
    StructuredTarget target;        // heads: fraction of each block's heads; ffn: of its FFN neurons (layers: refused)
    std::string calib_data;         // labelled data (TSV / image folder); required, labels are not used
    DataSelection calib_selection;  // which samples of calib_data
    int64_t calib_samples = 512;    // at most this many samples
    ClassifyOptions run;            // batch / max_len of the calibration passes
    int64_t ffn_multiple = 16;      // kept FFN neurons rounded to a multiple of this (int8 GEMM tiles)
    /// Recovery: distillation of the pruned model from the input before it is written (0 steps: none).
    /// recover.data: calib_data when empty; recover.output is set by the call.
    int64_t recover_steps = 0;
    DistillOptions recover;
};

struct EncoderPrunedBlock {
    int64_t block = 0;
    std::vector<int64_t> heads_kept;      // in the input's numbering of the original heads (increasing)
    std::vector<double> head_scores;      // the input's heads, in its order: Σ_tokens ‖W_o[:, h]·ctx_h‖²
    int64_t ffn_kept = 0;
    std::vector<int64_t> ffn_neurons;     // the kept FFN neurons (increasing)
};

struct EncoderPruneReport {
    std::string input, output, target, calib_data;
    int64_t n_head_in = 0, n_head_out = 0;  // per block (uniform)
    int64_t n_ff_in = 0, n_ff_out = 0;
    int64_t calib_samples = 0, calib_tokens = 0;
    int64_t params_in = 0, params_out = 0;  // every tensor's elements
    uint64_t bytes_in = 0, bytes_out = 0;   // model.safetensors
    std::vector<EncoderPrunedBlock> blocks;
    std::optional<RecoveryReport> recovery;
    double seconds = 0;
};

/// Structured pruning of an HF encoder classifier directory (BERT, RoBERTa, DistilBERT, ViT, DeiT) into `output_dir`.
/// Importance, on calibration samples through the dense model: head h's is Σ over real tokens of ‖W_o[:, h]·ctx_h‖² (the
/// squared output it adds to the residual stream, ctx_h its attention output); FFN neuron i's is Σ a_i²·‖W_out[:, i]‖²
/// (a_i its activation). The round(F·heads) lowest-scoring heads and the lowest neurons (kept count rounded to
/// ffn_multiple) go from every block. Output: model.safetensors (f32) with q/k/v rows and the attention output's columns of
/// the removed heads and the FFN rows / columns of the removed neurons cut out; config.json with pruned_heads
/// {"layer": [heads]} merged into any the input had, intermediate_size (DistilBERT: hidden_dim) and cq_structured_prune;
/// the tokenizer / preprocessor files copied. InvalidArgument for a bad target (naming --structured), no calibration data
/// or an output that is the input; Unsupported for other models.
EncoderPruneReport prune_encoder_structured(const std::string& input_dir, const std::string& output_dir, const EncoderPruneOptions& options);

/// Distils the encoder classifier `student_dir` (an HF directory, pruned or not) from `teacher_dir` for options.steps
/// steps on options.data (distill_classifier on the student as it is: the trainer takes per-block head counts) and writes
/// the result, pruned as the student was (config.json's pruned_heads, sliced shapes), to `output_dir` (options.output is
/// ignored). InvalidArgument for 0 steps, no data or an
/// output that is an input.
RecoveryReport recover_encoder_by_distillation(const std::string& teacher_dir, const std::string& student_dir, const std::string& output_dir,
                                               const DistillOptions& options);

/// Writes a pruned encoder directory back in the input's full shape: the removed heads' q/k/v rows and attention-output
/// columns as zeros, pruned_heads moved to cq_structured_prune.pruned_heads (the FFN stays as it is). The same function as
/// the pruned model (its zero heads add exactly 0, and get exactly zero gradients): the reference twin the pruned
/// trainer's gradients are checked against (tests/test_train_pruned_encoder.cpp).
void expand_pruned_encoder(const std::string& pruned_dir, const std::string& output_dir);

/// Whether `dir` is an HF directory of an encoder family prune_encoder_structured takes (by config.json's model_type).
bool is_prunable_encoder_dir(const std::string& dir);

}  // namespace cq
