// Knowledge distillation on cq's training engine: a student (a LanguageModel or an encoder classifier) trained on a
// teacher's temperature-softened outputs (KL) plus, optionally, the data's own labels (cross-entropy) and the teacher's
// block outputs (MSE / cosine on mapped blocks, projected where widths differ). Teacher and student may differ in shape
// (layers, heads, widths): only their outputs (the vocabulary / the labels) must agree.
// Also the DistilBERT-style student built from a teacher's own layers.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "cq/classify.h"
#include "cq/train.h"

namespace cq {

class LanguageModel;
class EncoderModel;

/// Weights of the loss terms: kl · T² · KL(softmax(z_t/T) ‖ softmax(z_s/T)) + ce · CE(z_s, label), per counted row
/// (a row whose target / label is < 0 is not counted), plus the hidden-state terms on mapped block outputs, averaged
/// over the mapped pairs: hidden · mean over counted tokens and teacher-width elements of (P·h_s − h_t)² (TinyBERT's
/// MSE) and cos · mean over counted tokens of 1 − cos(P·h_s, h_t) (DistilBERT's cosine loss); P is a learned
/// projection where the widths differ, else the identity.
struct DistillLoss {
    float kl = 1.0f;
    float ce = 0.0f;
    float hidden = 0.0f;
    float cos = 0.0f;
    bool has_hidden() const { return hidden > 0.0f || cos > 0.0f; }
    std::string text() const;  // "kl=1,ce=0.5" (hidden / cos where > 0)
};
/// "kl=1,ce=0.5,hidden=0.1,cos=1" (terms in any order; a term not named weighs 0). InvalidArgument naming an unknown
/// term, a bad number, a negative weight or all-zero weights.
DistillLoss parse_distill_loss(const std::string& spec);

/// One hidden-state pair: the student block's output is pulled towards the teacher block's output.
struct LayerPair {
    int64_t student = 0, teacher = 0;
    bool operator==(const LayerPair&) const = default;
};
/// "S0:T0,S1:T1,…" (block indices, 0-based). InvalidArgument naming --layer-map for bad syntax or a block outside
/// [0, n_layers) of its model.
std::vector<LayerPair> parse_layer_map(const std::string& spec, int64_t student_layers, int64_t teacher_layers);
/// The map used when none is given: each student block i → copied_from[i] (the teacher block a student built with
/// write_student_from_teacher started as), or without copied_from evenly spaced, i → round((i + 1)·Lt / Ls) − 1.
std::vector<LayerPair> default_layer_map(int64_t student_layers, int64_t teacher_layers, const std::vector<int64_t>& copied_from = {});

/// One pair's hidden-state terms on N rows: p = h_s·Wᵀ (W: [Dt, Ds]; null: p = h_s, Ds = Dt), returning
/// mse · Σ_counted Σ_j (p − h_t)² / (n·Dt) + cos · Σ_counted (1 − cos(p, h_t)) / n with n the counted rows (row_mask[r]
/// ≠ 0; null: all). dhs (null: not wanted): [N, Ds] ← ∂/∂h_s (0 on uncounted rows); dW (with dhs, W set): += ∂/∂W.
/// In double; cos(p, t) = p·t / max(‖p‖·‖t‖, 1e-12).
double hidden_pair_loss(const float* hs, const float* ht, const int32_t* row_mask, int64_t N, int64_t Ds, int64_t Dt,
                        const float* W, float mse, float cos, float* dhs, float* dW);

/// The hidden-state terms of a distillation run: the map, the teacher's block outputs for the current batch and a
/// projection per pair where the widths differ ([Dt, Ds], initialised U(±1/√Ds) from the seed, trained with the
/// student). hook() is what the student's trainer takes (LmTrainer / EncoderTrainer::set_hidden_loss).
class HiddenDistill {
public:
    HiddenDistill(std::vector<LayerPair> map, int64_t student_width, int64_t teacher_width, const DistillLoss& loss, uint64_t seed);
    const std::vector<LayerPair>& map() const { return map_; }
    /// Per pair: the teacher's block output for the batch, [N, Dt], filled by the caller before each step.
    std::vector<std::vector<float>>& teacher_hidden() { return teacher_; }
    /// The rows that count (BERT: the attention mask; empty: all).
    void set_row_mask(std::vector<int32_t> mask) { mask_ = std::move(mask); }
    /// The projections (empty where the widths agree), as parameters for the optimiser; zero_grad clears theirs.
    std::vector<TrainParam>& params() { return params_; }
    void zero_grad();
    HiddenLoss hook();

private:
    std::vector<LayerPair> map_;
    int64_t ds_, dt_;
    DistillLoss loss_;
    std::vector<std::vector<float>> teacher_, weights_, grads_;
    std::vector<int32_t> mask_;
    std::vector<TrainParam> params_;
};

/// The loss on one batch of logits. student: [N, V] logits in, ∂(summed loss)/∂logits out; teacher: [N, V] logits
/// (may be null when loss.kl == 0); targets: [N] (< 0: the row is not counted). Returns (summed loss, counted rows).
/// Softmaxes in double: the gradient is T·(p_s − p_t)·kl + (softmax(z_s) − onehot)·ce.
std::pair<double, int64_t> distill_logit_loss(float* student, const float* teacher, const int32_t* targets, int64_t N,
                                              int64_t V, const DistillLoss& loss, float temperature);

struct DistillOptions {
    std::string data, eval_data;  // LM: text files (training / evaluation); classifiers: labelled data (TSV …)
    std::string output;           // LM: .gguf or an HF directory; classifiers: an HF directory; empty: not written
    DataSelection data_selection, eval_selection;  // classifiers: sample ranges
    DistillLoss loss;
    float temperature = 2.0f;
    std::string layer_map;                  // hidden terms: "S:T,…" (parse_layer_map); empty: default_layer_map
    std::vector<int64_t> student_copied_from;  // the teacher block each student block was copied from (StudentSpec::layers)
    int64_t steps = 0;    // optimiser steps; 0: from epochs
    double epochs = 1.0;
    int64_t batch = 8;    // sequences (LM) or examples (classifiers) per step
    int64_t ctx = 128;    // LM window
    int64_t max_len = 64; // classifiers: tokens per example
    float dropout = 0.1f; // classifiers: the student's dropout
    uint64_t seed = 1;    // 0: file order; else a seeded shuffle per epoch
    LrSchedule schedule{1e-3f, 0, 1, LrDecay::cosine, 0.0f};
    float warmup_fraction = 0.05f;
    OptimizerOptions optimizer{OptimizerKind::adamw, 0.9f, 0.999f, 1e-8f, 0.9f, 0.0f};
    double clip = 1.0;
    int64_t eval_batches = 0;  // LM: 0 = the whole eval file
};

struct DistillReport {
    FinetuneReport train;  // the student's loss curve, timing, memory
    // Evaluation (when eval_data is set): LM mean cross-entropy (PPL = exp) or classifier accuracy.
    bool has_eval = false;
    double teacher_eval = 0, student_eval_before = 0, student_eval_after = 0;
    bool eval_is_accuracy = false;
    uint64_t teacher_params = 0, student_params = 0;
};

/// Trains `student` in place on options.data with `teacher`'s logits (teacher: inference only). Same vocabulary
/// required (InvalidArgument otherwise); any depth / width. progress (may be empty) after every step.
DistillReport distill_lm(LanguageModel& teacher, LanguageModel& student, const DistillOptions& options,
                         const std::function<void(const FinetuneProgress&)>& progress = {});
/// The same for BERT sequence classifiers on labelled text (same num_labels required).
DistillReport distill_classifier(EncoderModel& teacher, EncoderModel& student, const DistillOptions& options,
                                 const std::function<void(const FinetuneProgress&)>& progress = {});

/// A student made of some of the teacher's blocks, in order (DistilBERT's initialisation): "layers=0,2" or
/// "depth=0.5" (every other block, evenly spaced, first block kept).
struct StudentSpec {
    std::vector<int64_t> layers;
};
/// InvalidArgument for an unknown form, an empty or unsorted list, or a layer ≥ n_layers.
StudentSpec parse_student_spec(const std::string& spec, int64_t n_layers);
/// Writes an HF directory holding the teacher's (an HF directory) embeddings, head and the chosen blocks renumbered
/// 0, 1, …, with config.json's layer count changed and the tokenizer files copied. Atomic per file.
void write_student_from_teacher(const std::string& teacher_dir, const StudentSpec& spec, const std::string& out_dir);

}  // namespace cq
