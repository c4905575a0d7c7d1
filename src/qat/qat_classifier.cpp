// cq qat for BERT classifiers: the W8A8 rules choose the Linears; their weights train through an integer grid
// (LSQ or STE) and their inputs through u8 fake quantization (static: calibrated min / max, then EMA or LSQ+; or
// dynamic per token), optionally against the float model's logits. W8A8 grids export to cq's W8A8 container with
// exactly the trained codes, scales and input ranges.
#include <algorithm>
#include <chrono>
#include <cmath>

#include "cq/datasets.h"
#include "cq/encoder.h"
#include "cq/error.h"
#include "cq/qat.h"
#include "cq/w8a8.h"
#include "train/data_order.h"

namespace cq {

namespace {

TextBatch batch_of(const EncoderModel& model, const data::TextDataset& d, std::span<const int64_t> rows, int64_t max_len,
                   std::vector<int32_t>& labels) {
    std::vector<std::string> texts, pairs;
    labels.clear();
    for (int64_t r : rows) {
        const data::TextExample& e = d.examples[static_cast<size_t>(r)];
        texts.push_back(e.text);
        if (!d.pair_column.empty()) pairs.push_back(e.text_pair);
        labels.push_back(e.label);
    }
    return model.tokenize(texts, max_len, pairs);
}

// Accuracy of the training graph as it stands (fake quantization included), in file order.
double graph_accuracy(EncoderTrainer& trainer, const EncoderModel& model, const data::TextDataset& d, int64_t max_len) {
    const int64_t n = static_cast<int64_t>(d.examples.size()), C = model.config().num_labels, batch = 64;
    std::vector<int64_t> rows;
    std::vector<int32_t> labels;
    std::vector<float> logits;
    int64_t correct = 0;
    for (int64_t r0 = 0; r0 < n; r0 += batch) {
        rows.clear();
        for (int64_t r = r0; r < std::min(n, r0 + batch); ++r) rows.push_back(r);
        const TextBatch b = batch_of(model, d, rows, max_len, labels);
        logits.resize(static_cast<size_t>(b.batch * C));
        trainer.loss(b, labels, logits.data());
        for (int64_t i = 0; i < b.batch; ++i) {
            const float* z = logits.data() + i * C;
            correct += std::max_element(z, z + C) - z == labels[static_cast<size_t>(i)];
        }
    }
    return static_cast<double>(correct) / static_cast<double>(n);
}

}  // namespace

bool qat_exports_w8a8(const QatClassifierOptions& o) {
    return o.weights.kind == WeightQuantSpec::Kind::integer && o.weights.bits == 8 && o.weights.symmetric &&
           o.weights.granularity == WeightQuantSpec::Granularity::channel &&
           (o.activations == ActQuantMode::static_learned || o.activations == ActQuantMode::static_ema || o.activations == ActQuantMode::dynamic);
}

QatClassifierReport qat_classifier(EncoderModel& model, EncoderModel* teacher, const QatClassifierOptions& o,
                                   const std::function<void(const FinetuneProgress&)>& progress) {
    if (model.is_vision()) throw Unsupported("[qat] classifier QAT takes text classifiers (BERT) so far");
    if (o.steps < 1 || o.batch < 1 || o.max_len < 2) throw InvalidArgument("[qat] --steps, --batch ≥ 1 and --max-len ≥ 2 are required");
    if (o.teacher && !teacher) throw InvalidArgument("[qat] a teacher run needs the float model");
    if (!o.output.empty() && !qat_exports_w8a8(o))
        throw Unsupported("[qat] " + o.weights.text() + " weights with " + act_quant_mode_name(o.activations) +
                          " activations have no cq runtime format to export to (int8-channel-sym weights with static or dynamic "
                          "activations do: W8A8); run without -o to measure");
    const LabelledData train_set = load_labelled_data(o.data, model, o.data_selection);
    if (!train_set.text || train_set.count() == 0) throw InvalidArgument("[qat] " + o.data + " holds no text examples");
    std::optional<LabelledData> eval_set;
    if (!o.eval_data.empty()) eval_set = load_labelled_data(o.eval_data, model, o.eval_selection);

    // Which Linears: the W8A8 rules over the Linear names (param name = Linear name + ".weight").
    std::map<std::string, bool> selected_linear;
    for (const Linear* l : model.linears()) selected_linear[l->name + ".weight"] = w8a8_selects(o.rules, l->name);
    EncoderTrainer trainer(model);
    std::vector<TrainParam>& params = trainer.params();
    const std::vector<WeightDecayRule> decay = {parse_weight_decay_rule("*.bias=none"), parse_weight_decay_rule("*LayerNorm*=none")};
    apply_weight_decay_rules(params, decay);
    std::vector<bool> is_selected(params.size(), false);
    for (size_t i = 0; i < params.size(); ++i) {
        const auto it = selected_linear.find(params[i].name);
        is_selected[i] = it != selected_linear.end() && it->second;
    }
    QatClassifierReport r;
    if (eval_set) r.has_eval = true, r.accuracy_fp = graph_accuracy(trainer, model, *eval_set->text, o.max_len);

    WeightFakeQuant wfq(params, [&](const std::string& name) -> const WeightQuantSpec* {
        const auto it = selected_linear.find(name);
        return it != selected_linear.end() && it->second ? &o.weights : nullptr;
    }, o.weight_grad);
    ActivationFakeQuant afq(o.activations, 255, [&](int wp) { return wp >= 0 && static_cast<size_t>(wp) < is_selected.size() && is_selected[static_cast<size_t>(wp)]; },
                            o.ema_momentum);
    trainer.set_linear_input_hook(&afq);
    wfq.apply();
    // PTQ start: static ranges = min / max of what each Linear sees on calibration batches of the training data.
    const int64_t n = train_set.count();
    std::vector<int64_t> rows;
    std::vector<int32_t> labels;
    if (o.activations == ActQuantMode::static_ema || o.activations == ActQuantMode::static_learned) {
        afq.set_calibrating(true);
        const int64_t samples = std::min(n, o.calib_samples);
        for (int64_t r0 = 0; r0 < samples; r0 += 64) {
            rows.clear();
            for (int64_t i = r0; i < std::min(samples, r0 + 64); ++i) rows.push_back(i);
            const TextBatch b = batch_of(model, *train_set.text, rows, o.max_len, labels);
            trainer.loss(b, labels);
        }
        afq.set_calibrating(false);
    }
    if (eval_set) r.accuracy_ptq = graph_accuracy(trainer, model, *eval_set->text, o.max_len);

    std::vector<TrainParam> opt_params = wfq.optimizer_params();
    for (const TrainParam& p : afq.params()) opt_params.push_back(p);
    Optimizer opt(opt_params, o.optimizer);
    LrSchedule sched = o.schedule;
    sched.total_steps = o.steps;
    if (o.warmup_fraction >= 0) sched.warmup_steps = static_cast<int64_t>(std::llround(o.warmup_fraction * static_cast<double>(o.steps)));
    const int64_t C = model.config().num_labels;
    std::vector<float> t_logits;
    if (o.teacher)
        trainer.set_logit_loss([&](float* logits, const int32_t* lab, int64_t N, int64_t V) {
            return distill_logit_loss(logits, t_logits.data(), lab, N, V, o.loss, o.temperature);
        });
    const int64_t per_epoch = (n + o.batch - 1) / o.batch;
    std::vector<int64_t> order;
    int64_t order_epoch = -1;
    FinetuneReport& fr = r.train;
    fr.n_windows = n;
    const auto t_start = std::chrono::steady_clock::now();
    for (int64_t step = 0; step < o.steps; ++step) {
        const auto t0 = std::chrono::steady_clock::now();
        const int64_t epoch = step / per_epoch, in_epoch = step % per_epoch;
        if (epoch != order_epoch) order = train::epoch_order(n, o.seed, epoch), order_epoch = epoch;
        rows.assign(order.begin() + in_epoch * o.batch, order.begin() + std::min(n, (in_epoch + 1) * o.batch));
        const TextBatch b = batch_of(model, *train_set.text, rows, o.max_len, labels);
        if (o.teacher) {
            t_logits.resize(static_cast<size_t>(b.batch * C));
            teacher->classify(b, t_logits.data());
        }
        wfq.apply();
        trainer.zero_grad();
        afq.zero_grad();
        const double loss = trainer.forward_backward(b, labels, o.dropout, o.seed * 1000003ull + static_cast<uint64_t>(step));
        wfq.backward();
        const double gnorm = clip_grad_norm(opt_params, o.clip);
        const float lr = sched.at(step);
        opt.step(opt_params, lr);
        fr.loss_curve.push_back(loss);
        fr.step_seconds.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
        fr.tokens += b.batch * b.seq;
        if (progress) progress({step + 1, o.steps, loss, lr, static_cast<double>(b.batch * b.seq) / fr.step_seconds.back(), gnorm});
    }
    fr.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
    fr.steps = o.steps;
    fr.tokens_per_s = static_cast<double>(fr.tokens) / std::max(fr.seconds, 1e-9);
    trainer.set_logit_loss({});
    wfq.apply();
    if (eval_set) r.accuracy_qat = graph_accuracy(trainer, model, *eval_set->text, o.max_len);
    r.n_quantized = static_cast<int64_t>(wfq.quantized().size());

    if (!o.output.empty()) {
        // W8A8: the trained codes and per-channel scales, the inputs' u8 scale / zero point as trained.
        std::map<std::string, Linear*> by_name;
        for (Linear* l : model.linears()) by_name[l->name + ".weight"] = l;
        for (const auto& q : wfq.quantized()) {
            const TrainParam& p = params[q.param];
            Linear& l = *by_name.at(p.name);
            auto w = std::make_shared<Int8Linear>();
            w->n_out = p.shape[0], w->n_in = p.shape[1];
            w->weight = Tensor::zeros({w->n_out, w->n_in}, DType::I8);
            const std::vector<int32_t> codes = wfq.codes(q);
            auto* dst = static_cast<int8_t*>(w->weight.mutable_data());
            for (size_t i = 0; i < codes.size(); ++i) dst[i] = static_cast<int8_t>(codes[i]);
            w->weight_scale = q.scale;
            if (l.bias) w->bias = l.bias->to_float();
            w->act_qmax = 255;
            if (o.activations == ActQuantMode::dynamic) {
                w->activations = ActivationQuant::dynamic_per_token;
            } else {
                w->activations = ActivationQuant::static_per_tensor;
                const auto [s, z] = afq.input_params(static_cast<int>(q.param));
                w->input = {s, z};
            }
            pack_int8_linear(*w);
            l.int8 = std::move(w);
        }
        model.save(o.output);
        r.output = o.output;
    }
    trainer.set_linear_input_hook(nullptr);
    fr.peak_rss_bytes = peak_rss_bytes();
    return r;
}

}  // namespace cq
