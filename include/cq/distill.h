// Knowledge distillation on cq's training engine: a student (a LanguageModel or an encoder classifier) trained on a
// teacher's temperature-softened outputs (KL) plus, optionally, the data's own labels (cross-entropy). Teacher and
// student may differ in shape (layers, heads, widths): only their outputs (the vocabulary / the labels) must agree.
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
/// (a row whose target / label is < 0 is not counted).
struct DistillLoss {
    float kl = 1.0f;
    float ce = 0.0f;
    std::string text() const;  // "kl=1,ce=0.5"
};
/// "kl=1,ce=0.5" (terms in any order; a term not named weighs 0). InvalidArgument naming an unknown term, a bad
/// number, a negative weight or all-zero weights.
DistillLoss parse_distill_loss(const std::string& spec);

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
