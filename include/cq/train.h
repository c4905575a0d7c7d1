// The training engine: gradients of a LanguageModel's own tensors (the spine's Linears, norms and embedding,
// made owned f32 in place, so Model::save writes what training changed), optimisers, learning-rate schedules,
// and cq finetune's loop (packed text windows, evaluation, progress, report).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "cq/classify.h"
#include "cq/llm.h"
#include "cq/rules.h"

namespace cq {

/// One trainable tensor: its values (the model's own f32 buffer), its gradient and the name it has in the
/// model's GGUF form ("blk.0.attn_q.weight") and in its HF form ("model.layers.0.self_attn.q_proj.weight").
struct TrainParam {
    std::string name, hf_name;
    std::vector<int64_t> shape;
    float* value = nullptr;
    float* grad = nullptr;
    int64_t numel = 0;
    bool decay = true;  // weight decay applies (decided by WeightDecayRule rules)
    bool hf_transposed = false;  // the HF file holds it [in, out] (GPT-2's Conv1D); `value` is [out, in]
    std::vector<int64_t> hf_shape;  // the HF file's shape where it differs with the same bytes (ViT's conv, CLS token)
};

/// A loss on the logits in place of cross-entropy on the targets (distillation, quantization-aware distillation):
/// given a batch's logits [N, V] (rows in batch order; a classifier's targets are its labels) it returns the summed
/// loss and the number of rows counted, and overwrites logits with ∂(summed loss)/∂logits. The trainer scales that
/// by grad_scale / counted, as it does cross-entropy's.
using LogitLoss = std::function<std::pair<double, int64_t>(float* logits, const int32_t* targets, int64_t N, int64_t V)>;

/// Losses on block outputs, added to the batch's loss (hidden-state distillation). Term i reads the output of block
/// blocks[i] (the residual stream after it; BERT: after its output LayerNorm, HF's hidden_states[blocks[i] + 1]). After
/// the forward the trainer calls fn(i, h, N, D, dh) with h: [N, D] (rows in batch order); fn returns term i, which adds
/// to the mean loss as it is, and writes dh = ∂term/∂h: [N, D], which the backward adds (times grad_scale) to that
/// block output's gradient. dh is null where no gradient is wanted (loss()). Parameters of the hook's own (a
/// projection) are the hook's to differentiate and update.
struct HiddenLoss {
    std::vector<int64_t> blocks;
    std::function<double(size_t i, const float* h, int64_t N, int64_t D, float* dh)> fn;
};

/// A transform of Linear inputs inside the training graph (fake quantization of activations for QAT). A Linear is
/// named by the index of its weight in params(). The Linear sees xq = forward(x); backward turns the gradient with
/// respect to xq into the gradient with respect to x (in place) and adds to the hook's own parameters' gradients.
class LinearInputHook {
public:
    virtual ~LinearInputHook() = default;
    virtual bool applies(int weight_param) const = 0;
    /// x, xq: [N, I]. training: false during evaluation (ranges stay as they are).
    virtual void forward(int weight_param, const float* x, int64_t N, int64_t I, float* xq, bool training) = 0;
    /// x: the input forward saw; dxq: [N, I] in, dx out.
    virtual void backward(int weight_param, const float* x, int64_t N, int64_t I, float* dxq) = 0;
};

/// Low-rank adapters (LoRA, Hu et al. 2021): each targeted Linear computes y = x·Wᵀ + b + (alpha/rank)·(x·Aᵀ)·Bᵀ with
/// A [rank, in] and B [out, rank] trained and the base W frozen in whatever format the model holds it (Q4_K included:
/// it is dequantized per use, never kept as f32). A starts as PEFT's kaiming-uniform (U(−1/√in, 1/√in), seeded), B at 0,
/// so training starts from the base model's outputs.
struct LoraOptions {
    int64_t rank = 0;   // 0: no adapters (the whole model trains)
    float alpha = 0;    // 0: alpha = rank (scale 1)
    // Globs over the Linears' canonical names ("blk.*.attn_q"); empty: every Linear inside the blocks.
    std::vector<std::string> targets;
    uint64_t seed = 1;
};

/// Gradients of a decoder LanguageModel (LLaMA family and GPT-2): forward with saved activations, then the backward of
/// every op in reverse. Construction makes each trainable tensor an owned f32 copy inside the model (Linears
/// through Model::set_weight, marked modified_by "finetune"), so the trained model is the model. With LoRA the model is
/// left as it is (every tensor frozen, read in its own format) and params() are the adapters only.
class LmTrainer {
public:
    /// Unsupported for families without a backward yet (names the family) or Linears held as W8A8 / [in, out].
    explicit LmTrainer(LanguageModel& model);
    /// lora.rank > 0: adapters on the targeted Linears, everything else frozen. InvalidArgument when no Linear matches
    /// the targets or the rank exceeds a target's smaller side.
    LmTrainer(LanguageModel& model, const LoraOptions& lora);
    ~LmTrainer();
    LmTrainer(const LmTrainer&) = delete;
    LmTrainer& operator=(const LmTrainer&) = delete;

    /// tokens, targets: [B, T] row-major (targets < 0 are ignored). Runs forward and backward, adds
    /// grad_scale · ∂(mean loss)/∂θ to every gradient, returns the mean loss over the counted targets.
    /// InvalidArgument for wrong sizes, T beyond the model's context, or ids outside the vocabulary.
    double forward_backward(std::span<const int32_t> tokens, std::span<const int32_t> targets, int64_t B, int64_t T,
                            float grad_scale = 1.0f);
    /// The mean loss only (no gradients, activations not kept): evaluation.
    double loss(std::span<const int32_t> tokens, std::span<const int32_t> targets, int64_t B, int64_t T);

    std::vector<TrainParam>& params() { return params_; }
    void zero_grad();
    /// Activation checkpointing per block: keep only each block's input, recompute the block in the backward
    /// (same gradients, bit for bit; ~1 block of activations instead of all). Set before the first batch.
    void set_checkpointing(bool on);
    /// Checkpoint every k-th block (blocks 0, k, 2k, …; k = 1 is set_checkpointing(true), 0 none): those keep only their
    /// input and are recomputed in the backward, the others keep their activations, so memory and recompute time
    /// fall between none and every block. Same gradient bytes for any k. Set before the first batch.
    void set_checkpoint_every(int64_t k);
    /// Bytes held for activations at the largest batch seen so far.
    uint64_t activation_bytes() const;
    /// Replaces cross-entropy by `loss` in forward_backward and loss (empty: cross-entropy again).
    void set_logit_loss(LogitLoss loss);
    /// Adds hidden-state terms to forward_backward and loss (empty fn: none). InvalidArgument for a block outside
    /// [0, n_layer).
    void set_hidden_loss(HiddenLoss loss);

    /// One trained adapter pair: params()[a] is A [rank, in], params()[b] is B [out, rank].
    struct LoraLayer {
        Linear* layer;
        int a, b;
        float scale;  // alpha / rank
    };
    const std::vector<LoraLayer>& lora_layers() const { return lora_layers_; }
    float lora_alpha() const { return lora_alpha_; }
    /// Writes W + scale·B·A into each adapted Linear as f32 (Model::set_weight, modified_by "finetune-lora"); the
    /// trainer must not run after this.
    void merge_lora();
    /// Writes the adapters as a llama.cpp LoRA adapter GGUF (general.type "adapter", adapter.type "lora",
    /// adapter.lora.alpha; "<weight>.lora_a" [rank, in] and ".lora_b" [out, rank] in f32), atomically.
    void save_lora_gguf(const std::string& path) const;

private:
    struct State;
    std::vector<LoraLayer> lora_layers_;
    float lora_alpha_ = 0;
    const float* linear_weight(int w, std::vector<float>& scratch) const;
    void linear_forward(int w, int b, const float* x, int64_t N, int64_t I, int64_t O, float* y);
    void linear_backward(int w, int b, const float* dy, const float* x, int64_t N, int64_t I, int64_t O, float* dx,
                         bool accumulate_dx);
    void block_forward(int64_t l, int64_t slot);
    double hidden_terms(bool gradient);
    std::pair<double, int64_t> run_forward(std::span<const int32_t> tokens, std::span<const int32_t> targets, int64_t B,
                                           int64_t T);
    std::unique_ptr<State> s_;
    std::vector<TrainParam> params_;
};

/// Applies a LoRA adapter GGUF (llama.cpp's form, as LmTrainer::save_lora_gguf writes it) to `model`: each adapted
/// Linear becomes W + scale·(alpha/rank)·B·A in f32 (alpha 0 or absent: scale alone, as llama.cpp does). Returns the
/// number of Linears changed. InvalidArgument naming the file and tensor for another architecture, a tensor with no
/// Linear, a lone or misshapen lora_a / lora_b, or a non-finite value; the model is unchanged then.
int64_t apply_lora_adapter(LanguageModel& model, const std::string& path, float scale = 1.0f);

class EncoderModel;
struct TextBatch;

/// Gradients of a BERT sequence classifier (post-LN blocks, attention over the padding mask, GELU (erf), tanh pooler
/// on [CLS], classifier) or a ViT image classifier (patch embedding, CLS token, pre-LN blocks), BERT with HF's dropout sites, over the model's own tensors made owned f32 in place (as LmTrainer).
class EncoderTrainer {
public:
    /// Unsupported for other encoder families (names it).
    explicit EncoderTrainer(EncoderModel& model);
    ~EncoderTrainer();
    EncoderTrainer(const EncoderTrainer&) = delete;
    EncoderTrainer& operator=(const EncoderTrainer&) = delete;

    /// Re-initialises every parameter as HF's BertPreTrainedModel does (N(0, 0.02) weights and embeddings, the padding
    /// row 0, biases 0, LayerNorm 1 / 0) from a seeded generator.
    void reinitialize(uint64_t seed);
    /// labels: [batch]. Dropout p (0: none) with masks keyed by dropout_key. Adds grad_scale · ∂(mean loss)/∂θ to the
    /// gradients; returns the mean loss. InvalidArgument for inconsistent batches or labels outside [0, num_labels).
    double forward_backward(const TextBatch& batch, std::span<const int32_t> labels, float dropout, uint64_t dropout_key,
                            float grad_scale = 1.0f);
    /// The mean loss without dropout or gradients; logits (optional): [batch, num_labels].
    double loss(const TextBatch& batch, std::span<const int32_t> labels, float* logits = nullptr);
    /// ViT: pixels [batch, C, H, W] u8 (normalized as the model's preprocessor says), labels [batch]; no dropout.
    double forward_backward_images(const uint8_t* pixels, int64_t batch, std::span<const int32_t> labels, float grad_scale = 1.0f);
    double loss_images(const uint8_t* pixels, int64_t batch, std::span<const int32_t> labels, float* logits = nullptr);
    std::vector<TrainParam>& params() { return params_; }
    void zero_grad();
    uint64_t activation_bytes() const;
    /// Replaces cross-entropy on the labels by `loss` (BERT text batches; empty: cross-entropy again).
    void set_logit_loss(LogitLoss loss);
    /// Adds hidden-state terms (BERT text batches; empty fn: none). InvalidArgument for a block outside [0, n_layer).
    void set_hidden_loss(HiddenLoss loss);
    /// Transforms the inputs of the Linears `hook` applies to (BERT text batches; null: none). Not owned.
    void set_linear_input_hook(LinearInputHook* hook);

private:
    struct State;
    double run(const TextBatch& batch, std::span<const int32_t> labels, float dropout, uint64_t key, bool backward,
               float grad_scale, float* logits_out);
    double run_vit(const uint8_t* pixels, int64_t batch, std::span<const int32_t> labels, bool backward, float grad_scale,
                   float* logits_out);
    std::unique_ptr<State> s_;
    std::vector<TrainParam> params_;
};

/// A per-parameter weight-decay decision as data: "PATTERN=decay" or "PATTERN=none" (glob over the GGUF
/// name; the last matching rule decides, no match: decay).
struct WeightDecayRule {
    RuleScope scope;
    bool decay = true;
};
/// Norms, biases and embeddings are not decayed: "*norm*=none", "*.bias=none", "*embd*=none".
std::vector<WeightDecayRule> default_weight_decay_rules();
/// Parses "PATTERN=decay|none". InvalidArgument otherwise.
WeightDecayRule parse_weight_decay_rule(const std::string& spec);
/// Sets TrainParam::decay from the rules.
void apply_weight_decay_rules(std::span<TrainParam> params, std::span<const WeightDecayRule> rules);

enum class OptimizerKind { adamw, sgd };
struct OptimizerOptions {
    OptimizerKind kind = OptimizerKind::adamw;
    float beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f;  // AdamW
    float momentum = 0.9f;                           // SGD (PyTorch's form: buf = μ·buf + g; p −= lr·buf)
    float weight_decay = 0.0f;                       // decoupled (AdamW: p ·= 1 − lr·wd); SGD adds wd·p to g
};

/// AdamW (as torch.optim.AdamW) or SGD with momentum over a fixed list of parameters; state is f32 per element.
class Optimizer {
public:
    Optimizer(std::span<const TrainParam> params, const OptimizerOptions& options);
    /// One update with learning rate lr from the current gradients.
    void step(std::span<TrainParam> params, float lr);
    int64_t steps() const { return t_; }
    /// The state as flat arrays (AdamW: m then v per parameter; SGD: the momentum buffers), for checkpoints.
    std::vector<std::vector<float>>& state() { return state_; }
    void set_steps(int64_t t) { t_ = t; }

private:
    OptimizerOptions o_;
    int64_t t_ = 0;
    std::vector<std::vector<float>> state_;
};

enum class LrDecay { constant, linear, cosine };
/// lr(step) for the optimiser step that follows `step` completed ones: linear warmup from 0 over warmup steps
/// (as HF's schedulers: lr·step/warmup), then decay to min_lr_ratio·lr at total_steps.
struct LrSchedule {
    float lr = 1e-3f;
    int64_t warmup_steps = 0, total_steps = 1;
    LrDecay decay = LrDecay::cosine;
    float min_lr_ratio = 0.0f;
    float at(int64_t step) const;
};

/// The global L2 norm of all gradients (double sum, parameters in order); if it exceeds max_norm > 0, scales
/// every gradient by max_norm / (norm + 1e-6) as torch.nn.utils.clip_grad_norm_ does. Returns the norm before.
double clip_grad_norm(std::span<TrainParam> params, double max_norm);

/// FP16 training's dynamic loss scaling (torch.cuda.amp.GradScaler's rule): the backward runs on the loss times
/// scale(), so small gradients survive fp16's range; unscale_and_check divides the gradients by the scale and says
/// whether every one is finite; update(finite) halves the scale after an overflow (the caller skips that step's
/// update) and multiplies it by growth_factor after growth_interval finite steps in a row.
struct LossScalerOptions {
    float init_scale = 65536.0f;
    float growth_factor = 2.0f, backoff_factor = 0.5f;
    int64_t growth_interval = 2000;
};
class DynamicLossScaler {
public:
    explicit DynamicLossScaler(const LossScalerOptions& options = {});
    float scale() const { return scale_; }
    /// Gradients ← gradients / scale(); false if any is inf or NaN (they are left unscaled then).
    bool unscale_and_check(std::span<TrainParam> params) const;
    void update(bool finite);
    int64_t skipped_steps() const { return skipped_; }
    int64_t finite_in_a_row() const { return good_; }
    /// Restores a saved state (resume).
    void restore(float scale, int64_t finite_in_a_row, int64_t skipped);

private:
    LossScalerOptions o_;
    float scale_;
    int64_t good_ = 0, skipped_ = 0;
};

/// A text file as training windows: the text tokenized whole (the tokenizer's BOS first if it adds one), cut
/// into consecutive windows of ctx + 1 tokens; a window's first token is BOS where the tokenizer adds one.
/// Inputs are a window's first ctx tokens, targets its last ctx.
struct TextWindows {
    std::vector<int32_t> tokens;  // the whole text
    int64_t ctx = 0, n_windows = 0;
    int32_t bos = -1;
    /// Writes window w's inputs and targets (ctx each).
    void window(int64_t w, int32_t* inputs, int32_t* targets) const;
};
/// InvalidArgument naming the file when it holds fewer than one window.
TextWindows load_text_windows(const LanguageModel& model, const std::string& path, int64_t ctx);

/// Writes the model as an HF directory: model.safetensors holding `params` (f32, HF names, atomically) and the source
/// directory's config / tokenizer files. Unsupported unless the model was loaded from an HF directory.
void save_hf_dir(const Model& model, std::span<const TrainParam> params, const std::string& dir);

struct FinetuneOptions {
    // output: a .gguf file (Model::save: changed Linears and norms, the file's token embedding), or otherwise an HF
    // directory (save_hf_dir: every parameter); empty: not written
    std::string data, eval_data, output;
    int64_t steps = 0;       // optimiser steps; 0: from epochs
    int64_t stop_after = 0;  // > 0: run only the first stop_after steps of that schedule
    double epochs = 1.0;     // used when steps == 0
    int64_t batch = 8, ctx = 128, accumulate = 1;
    uint64_t seed = 0;       // 0: windows in file order; else a seeded shuffle per epoch
    LrSchedule schedule;     // total_steps is filled in from steps / epochs
    float warmup_fraction = -1.0f;  // ≥ 0: warmup_steps = fraction · total steps
    OptimizerOptions optimizer;
    std::vector<WeightDecayRule> decay_rules = default_weight_decay_rules();
    std::vector<std::string> freeze;  // globs over parameter names kept as they are
    // Resumable training state (weights, optimiser state, step, data position, loss curve), written atomically to
    // state_path every state_every steps (0: at the end only); resume_from continues such a run bit for bit.
    std::string state_path, resume_from;
    int64_t state_every = 0;
    double clip = 1.0;       // ≤ 0: no clipping
    int64_t eval_every = 0;  // 0: evaluate before and after only
    int64_t eval_batches = 0;  // 0: the whole eval file
    // Matmul operand precision (weights, gradients and optimiser state stay f32): fp32; bf16 (BF16 products with f32
    // accumulation, vdpbf16ps where the CPU has AVX-512 BF16); fp16 (FP16 operands emulated on the f32 products, with
    // dynamic loss scaling: steps whose gradients overflow are skipped).
    std::string precision = "fp32";
    LossScalerOptions loss_scaler;  // fp16 only
    std::string checkpoint = "none";  // none, block (every block recomputed) or every:K (blocks 0, K, 2K, …)
    // LoRA (lora.rank > 0): only the adapters train, the base stays in its own format. lora_output: "merged" writes
    // the model with W + scale·B·A (f32) in the adapted Linears to `output`; "adapter" writes a llama.cpp LoRA
    // adapter GGUF to `output` (.gguf only).
    LoraOptions lora;
    std::string lora_output = "merged";
};

struct FinetuneProgress {
    int64_t step, total_steps;
    double loss, lr, tokens_per_s, grad_norm;
};

/// --checkpoint: "none" → 0, "block" → 1, "every:K" → K (LmTrainer::set_checkpoint_every); InvalidArgument otherwise.
int64_t parse_checkpoint(const std::string& spec);

/// Peak resident memory of this process so far.
uint64_t peak_rss_bytes();

struct FinetuneReport {
    std::vector<double> loss_curve;  // training loss per optimiser step
    std::vector<double> step_seconds;  // wall time of each step (forward, backward, clip, update)
    std::vector<std::pair<int64_t, double>> eval_curve;  // (step, eval loss)
    double eval_loss_before = 0, eval_loss_after = 0;  // NaN-free only when eval_data is set
    bool has_eval = false;
    double eval_accuracy_before = 0, eval_accuracy_after = 0;  // classifiers
    bool has_accuracy = false;
    int64_t steps = 0, tokens = 0, n_windows = 0;
    int64_t trained_parameters = 0;  // elements the optimiser updated (LoRA: the adapters only)
    double seconds = 0, tokens_per_s = 0;
    uint64_t peak_rss_bytes = 0;
    uint64_t param_state_bytes = 0;   // weights + gradients + optimiser state (f32)
    uint64_t activation_bytes = 0;    // the trainer's activation buffers at the end
    std::string output;
    std::string precision = "fp32";
    int64_t skipped_steps = 0;  // fp16: steps whose gradients overflowed (no update)
    double loss_scale = 0;      // fp16: the loss scale at the end
};

/// Fine-tunes `model` in place on options.data and writes options.output (when set). progress (may be empty)
/// is called after every step.
FinetuneReport finetune(LanguageModel& model, const FinetuneOptions& options,
                        const std::function<void(const FinetuneProgress&)>& progress = {});

}  // namespace cq

namespace cq {

/// cq finetune for an encoder classifier: BERT on a GLUE-style TSV (ViT on MNIST / image folders, no dropout), seeded shuffles per epoch, batches padded to their
/// longest example (≤ max_len tokens), dropout, AdamW with warmup + linear decay, clipping; accuracy on eval_data
/// (through EncoderModel::classify, the model's own forward) before and after.
struct ClassifierFinetuneOptions {
    std::string data, eval_data, output;  // data: a TSV, MNIST idx3 images or an image folder; output: an HF directory
    DataSelection data_selection, eval_selection;  // sample ranges of each
    int64_t steps = 0;                    // 0: from epochs
    double epochs = 2.0;
    int64_t batch = 64, max_len = 64;
    uint64_t seed = 1;
    bool random_init = false;
    float dropout = 0.1f;
    LrSchedule schedule{1e-3f, 0, 1, LrDecay::linear, 0.0f};
    float warmup_fraction = 0.06f;  // ≥ 0: warmup_steps = fraction · total steps
    OptimizerOptions optimizer{OptimizerKind::adamw, 0.9f, 0.999f, 1e-8f, 0.9f, 0.01f};
    std::vector<WeightDecayRule> decay_rules = {parse_weight_decay_rule("*.bias=none"), parse_weight_decay_rule("*LayerNorm*=none")};
    double clip = 1.0;
    int64_t stop_after = 0;  // > 0: run only the first stop_after steps of the schedule
    std::string precision = "fp32";  // fp32 or bf16 (as FinetuneOptions::precision)
    // Resumable state, as FinetuneOptions (the data position is the step: each epoch's order comes from the seed).
    std::string state_path, resume_from;
    int64_t state_every = 0;
};
FinetuneReport finetune_classifier(EncoderModel& model, const ClassifierFinetuneOptions& options,
                                   const std::function<void(const FinetuneProgress&)>& progress = {});

}  // namespace cq
