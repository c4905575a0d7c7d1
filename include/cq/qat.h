// Quantization-aware training: fake quantization inside cq's training graph (weights per tensor / channel / group
// INT2–8, symmetric or asymmetric, or any ggml block format as a round trip through the format's own codec;
// activations static per tensor or dynamic per token as cq's W8A8 runtime quantizes them), its gradients (STE, LSQ
// with its gradient scale, learned ranges for activations), and cq qat's pipeline (PTQ start, training with an
// optional full-precision teacher, export of the real quantized file whose values equal the fake-quantized ones).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "cq/distill.h"
#include "cq/dtype.h"
#include "cq/rules.h"
#include "cq/train.h"
#include "cq/w8a8.h"

namespace cq {

namespace qat {

// ---- the fake-quantization ops (x: [n] row-major; element i uses parameter i / group) ----

/// y = (clamp(nearbyint(x·(1/s)) + z, qmin, qmax) − z)·s with z = nearbyint(zero_point) clamped to [qmin, qmax], as
/// torch.fake_quantize_per_{tensor,channel}_affine (and its learnable form) compute it; mask (may be null) = 1 where
/// nearbyint(x/s) + z lies in [qmin, qmax] (the STE's pass-through set).
void fake_quant_forward(const float* x, int64_t n, int64_t group, const float* scale, const float* zero_point, int32_t qmin,
                        int32_t qmax, float* y, uint8_t* mask);
/// Straight-through estimator: dx = dy inside the range, 0 where clipped.
void fake_quant_backward_ste(const float* dy, const uint8_t* mask, int64_t n, float* dx);
/// LSQ / LSQ+ (Esser et al. 2020; Bhalgat et al. 2020): dx as the STE; per parameter
/// dscale += grad_factor·Σ dy·((y − x)/s inside, qmin − z below, qmax − z above) and
/// dzero_point += grad_factor·Σ dy·(0 inside, −s outside) (dzero_point may be null). grad_factor: LSQ's
/// 1/√(elements per scale · qmax). dx may alias dy.
void fake_quant_backward_lsq(const float* dy, const float* x, int64_t n, int64_t group, const float* scale,
                             const float* zero_point, int32_t qmin, int32_t qmax, float grad_factor, float* dx, float* dscale,
                             float* dzero_point);
/// Scalar twins of the two ops above (double arithmetic where it sums), the specification the fast forms are tested on.
void fake_quant_forward__ref(const float* x, int64_t n, int64_t group, const float* scale, const float* zero_point,
                             int32_t qmin, int32_t qmax, float* y, uint8_t* mask);
void fake_quant_backward_lsq__ref(const float* dy, const float* x, int64_t n, int64_t group, const float* scale,
                                  const float* zero_point, int32_t qmin, int32_t qmax, float grad_factor, float* dx,
                                  float* dscale, float* dzero_point);

/// cq's dynamic W8A8 activations, fake: per row, the range [min(0, min x), max(0, max x)] → u8 scale and zero point
/// (u8_quant_params_from_range), q = clamp(nearbyint(x·(1/s)) + z, 0, qmax), y = (q − z)·s. x, y: [rows, cols].
void fake_quant_dynamic_per_token(const float* x, int64_t rows, int64_t cols, int32_t qmax, float* y);

/// A row-major [rows, cols] tensor through a ggml format's codec and back: y = to_float(from_float(x)).
/// InvalidArgument when cols is not a whole number of the format's blocks or the format has no codec.
void fake_quant_ggml(DType type, const float* x, int64_t rows, int64_t cols, float* y);

}  // namespace qat

/// How a weight is fake-quantized: integers on a grid (bits, per tensor / output channel / group of columns,
/// symmetric: [−(2^(b−1)−1), 2^(b−1)−1], z = 0, s = max|w|/qmax; asymmetric: [0, 2^b − 1], s = (max − min)/qmax with
/// min ≤ 0 ≤ max), or a ggml block format through its codec.
struct WeightQuantSpec {
    enum class Kind { integer, ggml } kind = Kind::integer;
    enum class Granularity { tensor, channel, group } granularity = Granularity::channel;
    int32_t bits = 8;
    bool symmetric = true;
    int64_t group = 32;
    DType type = DType::F32;  // ggml
    int32_t qmin() const { return symmetric ? -((1 << (bits - 1)) - 1) : 0; }
    int32_t qmax() const { return symmetric ? (1 << (bits - 1)) - 1 : (1 << bits) - 1; }
    std::string text() const;  // "int4-g32-sym", "q4_0"
};
/// "int8" (per channel, symmetric), "int4-g32", "int4-g64-asym", "int8-tensor", "int4-channel-asym", or a ggml type
/// name ("q4_0", "q3_K"). InvalidArgument naming the spec otherwise.
WeightQuantSpec parse_weight_quant_spec(const std::string& spec);

/// How Linear inputs are fake-quantized (u8 with a zero point, as cq's W8A8 runtime): none, static per tensor
/// (range from an exponential moving average of batch min / max, or learned with LSQ+ from a calibrated start),
/// or dynamic per token.
enum class ActQuantMode { none, static_ema, static_learned, dynamic };
std::string act_quant_mode_name(ActQuantMode m);
/// "none", "static" (= learned), "static-ema", "static-learned", "dynamic". InvalidArgument otherwise.
ActQuantMode parse_act_quant_mode(const std::string& text);

/// A rule placing weight fake quantization: Linears (by name) in scope get `spec`, or stay float when !quantize.
struct QatRule {
    RuleScope scope;
    bool quantize = true;
    WeightQuantSpec spec;
};
/// "PATTERN=SPEC" or "PATTERN=float". InvalidArgument otherwise.
QatRule parse_qat_rule(const std::string& rule);

enum class WeightGrad { ste, lsq };

/// Weight fake quantization over a trainer's parameters: each chosen parameter keeps a float master copy; before a
/// step the model's tensor is set to fake_quant(master) (so the unchanged trainer runs the quantized model), after the
/// backward the gradient is carried to the master copy (STE, or LSQ which also learns the integer grids' scales, as
/// log(scale) for the optimiser: ∂/∂log s = s·∂/∂s).
/// optimizer_params() lists what an Optimizer updates: masters, learned scales, and every other parameter as it is.
class WeightFakeQuant {
public:
    /// spec_of(name) → the spec of the trainer parameter called `name` (nullptr: not quantized).
    WeightFakeQuant(std::vector<TrainParam>& params, const std::function<const WeightQuantSpec*(const std::string&)>& spec_of,
                    WeightGrad grad = WeightGrad::ste);
    ~WeightFakeQuant();
    /// Writes fake_quant(master) into the model's tensors.
    void apply();
    /// After forward_backward: master gradients (and scale gradients) from the model tensors' gradients.
    void backward();
    void zero_grad();
    std::vector<TrainParam>& optimizer_params() { return opt_params_; }
    /// Chosen parameters, their specs, masters and (integer grids) scales / zero points per group.
    struct Quantized {
        size_t param;  // index into the trainer's params
        WeightQuantSpec spec;
        std::vector<float> master, scale, zero_point, grad, dscale;
        // LSQ: the optimiser learns log(scale) (a step of Adam's size is then a relative change; the scale stays > 0)
        std::vector<float> log_scale, dlog_scale;
        std::vector<uint8_t> mask;
    };
    const std::vector<Quantized>& quantized() const { return q_; }
    /// The integer codes of parameter q (integer grids): round(clamp(...)) as the forward took them, [numel] (int32).
    std::vector<int32_t> codes(const Quantized& q) const;

private:
    std::vector<TrainParam>* params_;
    std::vector<Quantized> q_;
    std::vector<TrainParam> opt_params_;
    WeightGrad grad_;
};

/// Activation fake quantization on an EncoderTrainer's Linear inputs (a LinearInputHook). Static modes keep a u8
/// range per Linear; `calibrate` sets it from observed batches first (min / max of what the Linear saw).
class ActivationFakeQuant : public LinearInputHook {
public:
    /// selected(weight param index) → whether that Linear's input is quantized.
    ActivationFakeQuant(ActQuantMode mode, int32_t qmax, std::function<bool(int)> selected, float ema_momentum = 0.01f);
    bool applies(int weight_param) const override;
    void forward(int weight_param, const float* x, int64_t N, int64_t I, float* xq, bool training) override;
    void backward(int weight_param, const float* x, int64_t N, int64_t I, float* dxq) override;
    /// While on, forward only widens each Linear's [lo, hi] to what it sees and passes x through (calibration).
    void set_calibrating(bool on) { calibrating_ = on; }
    /// Learned mode: scale / zero point of every Linear as trainable parameters (valid until the next forward adds one).
    std::vector<TrainParam> params();
    void zero_grad();
    /// The u8 scale / zero point the Linear's input is quantized with now (static modes).
    std::pair<float, int32_t> input_params(int weight_param) const;

private:
    struct Site {
        float lo = 0, hi = 0;      // observed range (calibration, EMA)
        float scale = 1, zp = 0;   // learned (LSQ+) or from the range
        float dscale = 0, dzp = 0;
        float log_scale = 0, dlog_scale = 0;  // learned mode: the optimiser's view of the scale
        bool started = false;
        std::vector<uint8_t> mask;
    };
    void refresh(Site& s) const;
    ActQuantMode mode_;
    int32_t qmax_;
    std::function<bool(int)> selected_;
    float momentum_;
    bool calibrating_ = false;
    std::map<int, Site> sites_;
};

/// Replaces each Linear `wfq` fake-quantizes with a ggml type by that codec's blocks of its master (marked "qat"): the
/// blocks decode to exactly the values apply() gave the model. params: the trainer's parameters wfq was built on.
void export_ggml_weights(Model& model, const WeightFakeQuant& wfq, const std::vector<TrainParam>& params);

/// cq qat for decoders: start from a PTQ file (its Linears' ggml types place the fake quantization), train the
/// Linears' masters and the norms with STE through their own codecs (embeddings frozen), optionally against the
/// full-precision teacher's logits, and write the GGUF whose blocks are exactly the trained model's fake-quantized
/// values.
struct QatLmOptions {
    std::string data, output;
    int64_t steps = 100, batch = 8, ctx = 128;
    uint64_t seed = 1;
    LrSchedule schedule{1e-4f, 0, 1, LrDecay::cosine, 0.0f};
    float warmup_fraction = 0.05f;
    double clip = 1.0;
    bool teacher = true;       // KL to the full-precision model's logits
    DistillLoss loss{1.0f, 0.0f};
    float temperature = 1.0f;
};
struct QatReport {
    FinetuneReport train;
    int64_t n_quantized = 0;  // fake-quantized tensors
    std::string output;
};
/// ptq: the PTQ model (loaded from the quantized GGUF; trained in place), fp: the full-precision model (teacher).
QatReport qat_lm(LanguageModel& ptq, LanguageModel* fp, const QatLmOptions& options,
                 const std::function<void(const FinetuneProgress&)>& progress = {});

/// cq qat for BERT classifiers: the W8A8 rules choose the Linears, whose weights train through `weights` (an integer
/// grid, LSQ or STE) and whose inputs through `activations`; static ranges start from min / max over calib_samples
/// training examples (the PTQ start). With int8-channel-sym weights and static or dynamic activations the result is
/// written as cq's W8A8 container holding exactly the trained codes, scales and input ranges.
struct QatClassifierOptions {
    std::string data, eval_data, output;
    DataSelection data_selection, eval_selection;
    WeightQuantSpec weights;  // default int8 per channel, symmetric (W8A8's grid)
    ActQuantMode activations = ActQuantMode::static_learned;
    WeightGrad weight_grad = WeightGrad::lsq;
    std::vector<W8A8Rule> rules = default_w8a8_rules();
    int64_t steps = 200, batch = 32, max_len = 64, calib_samples = 256;
    uint64_t seed = 1;
    LrSchedule schedule{1e-4f, 0, 1, LrDecay::linear, 0.0f};
    float warmup_fraction = 0.06f;
    OptimizerOptions optimizer{OptimizerKind::adamw, 0.9f, 0.999f, 1e-8f, 0.9f, 0.0f};
    float dropout = 0.1f, ema_momentum = 0.01f;
    double clip = 1.0;
    bool teacher = true;
    DistillLoss loss{1.0f, 0.5f};
    float temperature = 1.0f;
};
struct QatClassifierReport {
    FinetuneReport train;
    bool has_eval = false;
    double accuracy_fp = 0, accuracy_ptq = 0, accuracy_qat = 0;  // the training graph's (fake quantization included)
    int64_t n_quantized = 0;
    std::string output;
};
/// Whether options describe a grid cq's W8A8 runtime runs (so -o can be written).
bool qat_exports_w8a8(const QatClassifierOptions& options);
/// Trains `model` in place; teacher: the float model (used when options.teacher).
QatClassifierReport qat_classifier(EncoderModel& model, EncoderModel* teacher, const QatClassifierOptions& options,
                                   const std::function<void(const FinetuneProgress&)>& progress = {});

}  // namespace cq
