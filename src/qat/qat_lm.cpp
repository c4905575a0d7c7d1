// cq qat for decoders: the PTQ model's quantized Linears are trained as float masters seen through their own ggml
// codecs (STE), norms in f32, embeddings frozen; optionally against the full-precision model's logits (KL). The
// export writes each Linear as the codec's blocks of its master, which decode to exactly the values training used.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <map>

#include "cq/error.h"
#include "cq/llm.h"
#include "cq/qat.h"
#include "train/data_order.h"

namespace cq {

void export_ggml_weights(Model& model, const WeightFakeQuant& wfq, const std::vector<TrainParam>& params) {
    std::map<std::string, Linear*> by_name;
    for (Linear* l : model.linears()) by_name[l->name + ".weight"] = l;
    for (const auto& q : wfq.quantized()) {
        if (q.spec.kind != WeightQuantSpec::Kind::ggml) continue;
        const TrainParam& p = params[q.param];
        const auto it = by_name.find(p.name);
        if (it == by_name.end()) throw InvalidArgument("[qat] no Linear holds the trained parameter '" + p.name + "'");
        Tensor t = Tensor::zeros(p.shape, q.spec.type);
        const auto& traits = dtype_traits(q.spec.type);
        const int64_t row_bytes = p.shape[1] / static_cast<int64_t>(traits.block_size) * static_cast<int64_t>(traits.bytes_per_block);
        auto* dst = static_cast<uint8_t*>(t.mutable_data());
        for (int64_t row = 0; row < p.shape[0]; ++row) traits.from_float(q.master.data() + row * p.shape[1], dst + row * row_bytes, p.shape[1]);
        model.set_weight(*it->second, std::move(t), "qat");
    }
}

QatReport qat_lm(LanguageModel& ptq, LanguageModel* fp, const QatLmOptions& o,
                 const std::function<void(const FinetuneProgress&)>& progress) {
    if (o.steps < 1 || o.batch < 1) throw InvalidArgument("[qat] --steps and --batch must be ≥ 1");
    if (o.teacher && !fp) throw InvalidArgument("[qat] a teacher run needs the full-precision model");
    if (fp && fp->config().n_vocab != ptq.config().n_vocab) throw InvalidArgument("[qat] the teacher's vocabulary differs from the model's");
    if (fp && o.teacher && fp->n_ctx() < o.ctx) throw InvalidArgument("[qat] --ctx exceeds the teacher's context");
    // The PTQ file's types place the fake quantization: every Linear held in a ggml block format.
    std::map<std::string, WeightQuantSpec> specs;
    for (const Linear* l : ptq.linears()) {
        const DType t = l->weight.dtype();
        if (!dtype_traits(t).is_quantized || l->int8) continue;
        WeightQuantSpec s;
        s.kind = WeightQuantSpec::Kind::ggml, s.type = t;
        specs[l->name + ".weight"] = s;
    }
    if (specs.empty()) throw InvalidArgument("[qat] the model has no Linear in a ggml block format to train through");
    const TextWindows train_set = load_text_windows(ptq, o.data, o.ctx);

    LmTrainer trainer(ptq);
    std::vector<TrainParam>& params = trainer.params();
    apply_weight_decay_rules(params, default_weight_decay_rules());
    const bool tied = ptq.weights().output.weight.data() == ptq.weights().token_embd.data();
    WeightFakeQuant wfq(params, [&](const std::string& name) -> const WeightQuantSpec* {
        const auto it = specs.find(name);
        return it == specs.end() ? nullptr : &it->second;
    });
    // Embeddings stay as the file has them (a tied head trains with them: not possible here, so it is frozen too).
    std::vector<TrainParam> opt_params;
    for (const TrainParam& p : wfq.optimizer_params())
        if (p.name != "token_embd.weight" && p.name != "position_embd.weight") opt_params.push_back(p);
    OptimizerOptions oo;
    oo.weight_decay = 0.0f;
    Optimizer opt(opt_params, oo);
    LrSchedule sched = o.schedule;
    sched.total_steps = o.steps;
    if (o.warmup_fraction >= 0) sched.warmup_steps = static_cast<int64_t>(std::llround(o.warmup_fraction * static_cast<double>(o.steps)));

    std::vector<float> t_logits;
    if (o.teacher) {
        trainer.set_logit_loss([&](float* logits, const int32_t* targets, int64_t N, int64_t V) {
            return distill_logit_loss(logits, t_logits.data(), targets, N, V, o.loss, o.temperature);
        });
    }
    QatReport r;
    r.n_quantized = static_cast<int64_t>(wfq.quantized().size());
    FinetuneReport& fr = r.train;
    fr.n_windows = train_set.n_windows;
    const int64_t ctx = o.ctx, per_epoch = (train_set.n_windows + o.batch - 1) / o.batch;
    std::vector<int64_t> order;
    int64_t order_epoch = -1;
    std::vector<int32_t> in, tg;
    const int64_t V = ptq.config().n_vocab;
    const auto t_start = std::chrono::steady_clock::now();
    for (int64_t step = 0; step < o.steps; ++step) {
        const auto t0 = std::chrono::steady_clock::now();
        const int64_t epoch = step / per_epoch, in_epoch = step % per_epoch;
        if (epoch != order_epoch) order = train::epoch_order(train_set.n_windows, o.seed, epoch), order_epoch = epoch;
        const int64_t first = in_epoch * o.batch, b = std::min(o.batch, train_set.n_windows - first);
        in.resize(static_cast<size_t>(b * ctx)), tg.resize(in.size());
        for (int64_t i = 0; i < b; ++i) train_set.window(order[static_cast<size_t>(first + i)], in.data() + i * ctx, tg.data() + i * ctx);
        if (o.teacher) {
            t_logits.resize(static_cast<size_t>(b * ctx * V));
            for (int64_t i = 0; i < b; ++i)
                fp->forward({in.data() + i * ctx, static_cast<size_t>(ctx)}, 0, {t_logits.data() + i * ctx * V, static_cast<size_t>(ctx * V)}, true);
        }
        wfq.apply();
        trainer.zero_grad();
        const double loss = trainer.forward_backward(in, tg, b, ctx);
        wfq.backward();
        const double gnorm = clip_grad_norm(opt_params, o.clip);
        const float lr = sched.at(step);
        opt.step(opt_params, lr);
        fr.loss_curve.push_back(loss);
        fr.step_seconds.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
        fr.tokens += b * ctx;
        if (progress) progress({step + 1, o.steps, loss, lr, static_cast<double>(b * ctx) / fr.step_seconds.back(), gnorm});
    }
    fr.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
    fr.steps = o.steps;
    fr.tokens_per_s = static_cast<double>(fr.tokens) / std::max(fr.seconds, 1e-9);
    trainer.set_logit_loss({});
    wfq.apply();  // the model now holds exactly the values the export encodes

    // Export: each trained Linear as its codec's blocks of the master; the embeddings as the file has them.
    if (!tied) ptq.weights().embeddings_modified_by.clear();
    export_ggml_weights(ptq, wfq, params);
    if (!o.output.empty()) {
        ptq.save(o.output);
        r.output = o.output;
    }
    fr.peak_rss_bytes = peak_rss_bytes();
    return r;
}

}  // namespace cq
