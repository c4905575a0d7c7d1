// cq finetune for encoder classifiers (BERT on a TSV, ViT on MNIST / image folders): examples in seeded per-epoch order,
// padded text batches with dropout, AdamW with warmup + decay and clipping; accuracy before and after through the
// model's own forward (classify_dataset, as cq eval).
#include <algorithm>
#include <chrono>
#include <cmath>

#include "cq/classify.h"
#include "cq/datasets.h"
#include "cq/encoder.h"
#include "cq/error.h"
#include "cq/train.h"
#include "train/data_order.h"
#include "train/train_ops.h"
#include "train/train_state.h"

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

double accuracy(EncoderModel& model, const LabelledData& d, int64_t max_len) {
    ClassifyOptions co;
    co.batch = 64, co.max_len = max_len;
    return d.text ? classify_dataset(model, *d.text, co).accuracy : classify_dataset(model, *d.images, co).accuracy;
}

}  // namespace

FinetuneReport finetune_classifier(EncoderModel& model, const ClassifierFinetuneOptions& o,
                                   const std::function<void(const FinetuneProgress&)>& progress) {
    if (o.batch < 1 || o.max_len < 2) throw InvalidArgument("[finetune] --batch must be ≥ 1 and --max-len ≥ 2");
    if (o.steps < 0 || (o.steps == 0 && !(o.epochs > 0))) throw InvalidArgument("[finetune] give a positive --steps or --epochs");
    // A TSV, MNIST idx files or an image folder, as cq eval reads them.
    const LabelledData train_set = load_labelled_data(o.data, model, o.data_selection);
    if (train_set.count() == 0) throw InvalidArgument("[finetune] " + o.data + " holds no examples");
    if (model.is_vision() != train_set.images.has_value())
        throw InvalidArgument("[finetune] " + o.data + " holds " + (train_set.images ? "images" : "texts") + " but " +
                              model.config().architecture + " classifies " + (model.is_vision() ? "images" : "texts"));
    std::optional<LabelledData> eval_set;
    if (!o.eval_data.empty()) eval_set = load_labelled_data(o.eval_data, model, o.eval_selection);

    EncoderTrainer trainer(model);
    if (o.random_init) trainer.reinitialize(o.seed);
    std::vector<TrainParam>& params = trainer.params();
    apply_weight_decay_rules(params, o.decay_rules);
    Optimizer opt(params, o.optimizer);

    const int64_t n = train_set.count();
    const int64_t per_epoch = (n + o.batch - 1) / o.batch;
    const int64_t total_steps =
        o.steps > 0 ? o.steps : std::max<int64_t>(1, static_cast<int64_t>(std::ceil(o.epochs * static_cast<double>(per_epoch))));
    LrSchedule sched = o.schedule;
    sched.total_steps = total_steps;
    if (o.warmup_fraction >= 0) sched.warmup_steps = static_cast<int64_t>(std::llround(o.warmup_fraction * static_cast<double>(total_steps)));

    FinetuneReport r;
    r.n_windows = n;
    if (eval_set) r.has_accuracy = true, r.eval_accuracy_before = accuracy(model, *eval_set, o.max_len);

    std::vector<int64_t> order, rows;
    std::vector<int32_t> labels;
    std::vector<uint8_t> pixels;
    int64_t order_epoch = -1;
    const int64_t run_steps = o.stop_after > 0 ? std::min(o.stop_after, total_steps) : total_steps;
    const train::MatmulPrecision precision = train::parse_matmul_precision(o.precision);
    if (precision == train::MatmulPrecision::fp16_via_f32)
        throw Unsupported("[finetune] --precision fp16 (with loss scaling) is supported for LLMs only so far; classifiers take fp32 or bf16");
    r.precision = o.precision;
    // The state file's run shape: max_len in the ctx field, the data position is step · batch.
    const train::RunShape shape{0, 0, 0, static_cast<uint64_t>(o.batch), static_cast<uint64_t>(o.max_len), 1, o.seed,
                                static_cast<uint64_t>(total_steps)};
    int64_t first_step = 0;
    if (!o.resume_from.empty()) first_step = static_cast<int64_t>(train::load_state(o.resume_from, shape, params, opt, r.loss_curve, nullptr).step);
    const auto write_state = [&](int64_t steps_done) {
        train::RunShape rs = shape;
        rs.step = static_cast<uint64_t>(steps_done), rs.pos = static_cast<uint64_t>(steps_done * o.batch);
        rs.opt_steps = static_cast<uint64_t>(opt.steps());
        train::save_state(o.state_path, rs, params, opt, r.loss_curve, nullptr);
    };
    const auto t_start = std::chrono::steady_clock::now();
    for (int64_t step = first_step; step < run_steps; ++step) {
        const auto t0 = std::chrono::steady_clock::now();
        // Each epoch is whole batches of its own order; the last one may be short (as a DataLoader without drop_last).
        const int64_t epoch = step / per_epoch, in_epoch = step % per_epoch;
        if (epoch != order_epoch) order = train::epoch_order(n, o.seed, epoch), order_epoch = epoch;
        rows.assign(order.begin() + in_epoch * o.batch, order.begin() + std::min(n, (in_epoch + 1) * o.batch));
        trainer.zero_grad();
        double loss = 0;
        int64_t tokens = 0;
        const train::ScopedMatmulPrecision scope(precision);
        if (train_set.text) {
            const TextBatch b = batch_of(model, *train_set.text, rows, o.max_len, labels);
            loss = trainer.forward_backward(b, labels, o.dropout, o.seed * 1000003ull + static_cast<uint64_t>(step));
            tokens = b.batch * b.seq;
        } else {  // ViT: no dropout in the backward yet (the fixture's config has none)
            const data::ImageDataset& im = *train_set.images;
            const int64_t bytes = im.channels * im.height * im.width;
            pixels.resize(rows.size() * static_cast<size_t>(bytes));
            labels.clear();
            for (size_t i = 0; i < rows.size(); ++i) {
                std::copy_n(im.pixels.begin() + rows[i] * bytes, bytes, pixels.begin() + static_cast<int64_t>(i) * bytes);
                labels.push_back(im.labels[static_cast<size_t>(rows[i])]);
            }
            loss = trainer.forward_backward_images(pixels.data(), static_cast<int64_t>(rows.size()), labels);
            tokens = static_cast<int64_t>(rows.size());  // images
        }
        const double gnorm = clip_grad_norm(params, o.clip);
        const float lr = sched.at(step);
        opt.step(params, lr);
        r.loss_curve.push_back(loss);
        r.step_seconds.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
        r.tokens += tokens;
        if (progress) progress({step + 1, total_steps, loss, lr, static_cast<double>(tokens) / r.step_seconds.back(), gnorm});
        if (!o.state_path.empty() && o.state_every > 0 && (step + 1) % o.state_every == 0 && step + 1 < run_steps) write_state(step + 1);
    }
    if (!o.state_path.empty()) write_state(std::max(run_steps, first_step));
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
    r.steps = run_steps;
    r.tokens_per_s = static_cast<double>(r.tokens) / r.seconds;
    if (eval_set) r.eval_accuracy_after = accuracy(model, *eval_set, o.max_len);
    if (!o.output.empty()) {
        save_hf_dir(model, params, o.output);
        r.output = o.output;
    }
    r.peak_rss_bytes = peak_rss_bytes();
    return r;
}

}  // namespace cq
