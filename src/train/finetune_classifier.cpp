// cq finetune for BERT text classifiers: TSV examples in seeded per-epoch order, padded batches, dropout, AdamW with
// warmup + decay and clipping; accuracy before and after through the model's own forward (EncoderModel::classify).
#include <algorithm>
#include <chrono>
#include <cmath>

#include "cq/datasets.h"
#include "cq/encoder.h"
#include "cq/error.h"
#include "cq/train.h"
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

double accuracy(EncoderModel& model, const data::TextDataset& d, int64_t batch, int64_t max_len) {
    const int64_t n = static_cast<int64_t>(d.examples.size()), C = model.config().num_labels;
    std::vector<int64_t> rows;
    std::vector<int32_t> labels;
    int64_t right = 0;
    for (int64_t i0 = 0; i0 < n; i0 += batch) {
        rows.clear();
        for (int64_t i = i0; i < std::min(n, i0 + batch); ++i) rows.push_back(i);
        const TextBatch b = batch_of(model, d, rows, max_len, labels);
        std::vector<float> logits(static_cast<size_t>(b.batch * C));
        model.classify(b, logits.data());
        for (int64_t r = 0; r < b.batch; ++r) {
            const float* l = logits.data() + r * C;
            right += std::max_element(l, l + C) - l == labels[static_cast<size_t>(r)];
        }
    }
    return static_cast<double>(right) / static_cast<double>(n);
}

}  // namespace

FinetuneReport finetune_classifier(EncoderModel& model, const ClassifierFinetuneOptions& o,
                                   const std::function<void(const FinetuneProgress&)>& progress) {
    if (o.batch < 1 || o.max_len < 2) throw InvalidArgument("[finetune] --batch must be ≥ 1 and --max-len ≥ 2");
    if (o.steps < 0 || (o.steps == 0 && !(o.epochs > 0))) throw InvalidArgument("[finetune] give a positive --steps or --epochs");
    const data::TextDataset train_set = data::load_text_tsv(o.data, model.config().labels);
    if (train_set.examples.empty()) throw InvalidArgument("[finetune] " + o.data + " holds no examples");
    std::optional<data::TextDataset> eval_set;
    if (!o.eval_data.empty()) eval_set = data::load_text_tsv(o.eval_data, model.config().labels);

    EncoderTrainer trainer(model);
    if (o.random_init) trainer.reinitialize(o.seed);
    std::vector<TrainParam>& params = trainer.params();
    apply_weight_decay_rules(params, o.decay_rules);
    Optimizer opt(params, o.optimizer);

    const int64_t n = static_cast<int64_t>(train_set.examples.size());
    const int64_t per_epoch = (n + o.batch - 1) / o.batch;
    const int64_t total_steps =
        o.steps > 0 ? o.steps : std::max<int64_t>(1, static_cast<int64_t>(std::ceil(o.epochs * static_cast<double>(per_epoch))));
    LrSchedule sched = o.schedule;
    sched.total_steps = total_steps;
    if (o.warmup_fraction >= 0) sched.warmup_steps = static_cast<int64_t>(std::llround(o.warmup_fraction * static_cast<double>(total_steps)));

    FinetuneReport r;
    r.n_windows = n;
    if (eval_set) r.has_accuracy = true, r.eval_accuracy_before = accuracy(model, *eval_set, 64, o.max_len);

    std::vector<int64_t> order, rows;
    std::vector<int32_t> labels;
    int64_t order_epoch = -1;
    const int64_t run_steps = o.stop_after > 0 ? std::min(o.stop_after, total_steps) : total_steps;
    const auto t_start = std::chrono::steady_clock::now();
    for (int64_t step = 0; step < run_steps; ++step) {
        const auto t0 = std::chrono::steady_clock::now();
        // Each epoch is whole batches of its own order; the last one may be short (as a DataLoader without drop_last).
        const int64_t epoch = step / per_epoch, in_epoch = step % per_epoch;
        if (epoch != order_epoch) order = train::epoch_order(n, o.seed, epoch), order_epoch = epoch;
        rows.assign(order.begin() + in_epoch * o.batch, order.begin() + std::min(n, (in_epoch + 1) * o.batch));
        const TextBatch b = batch_of(model, train_set, rows, o.max_len, labels);
        trainer.zero_grad();
        const double loss = trainer.forward_backward(b, labels, o.dropout, o.seed * 1000003ull + static_cast<uint64_t>(step));
        const double gnorm = clip_grad_norm(params, o.clip);
        const float lr = sched.at(step);
        opt.step(params, lr);
        r.loss_curve.push_back(loss);
        r.step_seconds.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
        r.tokens += b.batch * b.seq;
        if (progress) progress({step + 1, total_steps, loss, lr, static_cast<double>(b.batch * b.seq) / r.step_seconds.back(), gnorm});
    }
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
    r.steps = run_steps;
    r.tokens_per_s = static_cast<double>(r.tokens) / r.seconds;
    if (eval_set) r.eval_accuracy_after = accuracy(model, *eval_set, 64, o.max_len);
    if (!o.output.empty()) {
        save_hf_dir(model, params, o.output);
        r.output = o.output;
    }
    r.peak_rss_bytes = peak_rss_bytes();
    return r;
}

}  // namespace cq
