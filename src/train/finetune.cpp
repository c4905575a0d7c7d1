// cq finetune's library side: packed text windows, the seeded window order, the step loop (gradient
// accumulation, clipping, schedule, optimiser), evaluation before / during / after, and the report.
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <cmath>
#include <limits>
#include <numeric>
#include <optional>

#include "cq/atomic_file.h"
#include "cq/error.h"
#include "cq/mapped_file.h"
#include "cq/train.h"
#include "train/data_order.h"
#include "train/train_state.h"
#include "train/train_ops.h"

namespace cq {

void TextWindows::window(int64_t w, int32_t* inputs, int32_t* targets) const {
    const int32_t* src = tokens.data() + w * (ctx + 1);
    std::copy_n(src, ctx, inputs);
    std::copy_n(src + 1, ctx, targets);
    if (bos >= 0) inputs[0] = bos;
}

TextWindows load_text_windows(const LanguageModel& model, const std::string& path, int64_t ctx) {
    if (ctx < 2) throw InvalidArgument("[finetune] --ctx " + std::to_string(ctx) + " must be at least 2");
    const int64_t n_ctx_train = model.config().n_ctx_train;
    if (n_ctx_train > 0 && ctx > n_ctx_train)
        throw InvalidArgument("[finetune] --ctx " + std::to_string(ctx) + " exceeds the model's context of " + std::to_string(n_ctx_train));
    std::string text = read_text_file(path, 1ull << 31);
    if (!text.empty() && text.back() == '\n') text.pop_back();  // as llama.cpp's -f and cq perplexity do
    const Tokenizer& tok = model.tokenizer();
    TextWindows w;
    w.bos = tok.adds_bos() ? tok.bos_id() : -1;
    w.tokens = tok.encode(text, tok.adds_bos());
    w.ctx = ctx;
    w.n_windows = static_cast<int64_t>(w.tokens.size()) / (ctx + 1);
    if (w.n_windows < 1)
        throw InvalidArgument("[finetune] " + path + " has " + std::to_string(w.tokens.size()) + " tokens, fewer than one window of --ctx " +
                              std::to_string(ctx) + " + 1");
    return w;
}

namespace {

using train::epoch_order;
using train::load_state;
using train::RunShape;
using train::save_state;

}  // namespace

int64_t parse_checkpoint(const std::string& spec) {
    if (spec == "none") return 0;
    if (spec == "block") return 1;
    if (spec.rfind("every:", 0) == 0) {
        const std::string k = spec.substr(6);
        if (!k.empty() && k.size() <= 6 && k.find_first_not_of("0123456789") == std::string::npos && std::stoll(k) >= 1) return std::stoll(k);
    }
    throw InvalidArgument("[finetune] --checkpoint '" + spec + "' is not none, block or every:K (K ≥ 1: checkpoint blocks 0, K, 2K, …)");
}

uint64_t peak_rss_bytes() {
    rusage u{};
    getrusage(RUSAGE_SELF, &u);
    return static_cast<uint64_t>(u.ru_maxrss) * 1024;
}

namespace {

double eval_loss(LmTrainer& trainer, const TextWindows& data, int64_t batch, int64_t max_batches) {
    const int64_t ctx = data.ctx;
    int64_t n = data.n_windows;
    if (max_batches > 0) n = std::min(n, max_batches * batch);
    std::vector<int32_t> in(static_cast<size_t>(batch * ctx)), tg(in.size());
    double total = 0;
    int64_t counted = 0;
    for (int64_t w0 = 0; w0 < n; w0 += batch) {
        const int64_t b = std::min(batch, n - w0);
        for (int64_t i = 0; i < b; ++i) data.window(w0 + i, in.data() + i * ctx, tg.data() + i * ctx);
        total += trainer.loss({in.data(), static_cast<size_t>(b * ctx)}, {tg.data(), static_cast<size_t>(b * ctx)}, b, ctx) *
                 static_cast<double>(b * ctx);
        counted += b * ctx;
    }
    return total / static_cast<double>(counted);
}


}  // namespace

FinetuneReport finetune(LanguageModel& model, const FinetuneOptions& o,
                        const std::function<void(const FinetuneProgress&)>& progress) {
    const train::MatmulPrecision precision = train::parse_matmul_precision(o.precision);
    const bool fp16 = precision == train::MatmulPrecision::fp16_via_f32;
    const int64_t checkpoint_every = parse_checkpoint(o.checkpoint);
    if (o.batch < 1 || o.accumulate < 1) throw InvalidArgument("[finetune] --batch and --accumulate must be at least 1");
    if (o.steps < 0 || (o.steps == 0 && !(o.epochs > 0)))
        throw InvalidArgument("[finetune] give a positive --steps or --epochs");
    const bool lora = o.lora.rank > 0;
    const bool gguf_output = o.output.size() >= 5 && o.output.compare(o.output.size() - 5, 5, ".gguf") == 0;
    if (lora && o.lora_output != "merged" && o.lora_output != "adapter")
        throw InvalidArgument("[finetune] --lora-output '" + o.lora_output + "' is not merged or adapter");
    if (lora && o.lora_output == "adapter" && !o.output.empty() && !gguf_output)
        throw InvalidArgument("[finetune] --lora-output adapter writes a llama.cpp adapter GGUF: give -o a .gguf path, not " + o.output);
    const TextWindows data = load_text_windows(model, o.data, o.ctx);
    std::optional<TextWindows> eval;
    if (!o.eval_data.empty()) eval = load_text_windows(model, o.eval_data, o.ctx);

    LmTrainer trainer(model, o.lora);
    trainer.set_checkpoint_every(checkpoint_every);
    std::vector<TrainParam> params;  // the trained ones (frozen ones keep their values)
    for (const TrainParam& p : trainer.params()) {
        bool frozen = false;
        RuleTarget target;
        target.name = p.name;
        for (const std::string& pat : o.freeze) {
            RuleScope scope;
            scope.pattern = pat;
            frozen |= scope.matches(target);
        }
        if (!frozen) params.push_back(p);
    }
    apply_weight_decay_rules(params, o.decay_rules);
    Optimizer opt(params, o.optimizer);
    std::optional<DynamicLossScaler> scaler;
    if (fp16) scaler.emplace(o.loss_scaler);

    const int64_t per_step = o.batch * o.accumulate;
    const int64_t total_steps =
        o.steps > 0 ? o.steps : std::max<int64_t>(1, static_cast<int64_t>(std::ceil(o.epochs * static_cast<double>(data.n_windows) / static_cast<double>(per_step))));
    LrSchedule sched = o.schedule;
    sched.total_steps = total_steps;
    if (o.warmup_fraction >= 0) sched.warmup_steps = static_cast<int64_t>(std::llround(o.warmup_fraction * static_cast<double>(total_steps)));

    FinetuneReport r;
    r.n_windows = data.n_windows;
    if (eval) r.has_eval = true, r.eval_loss_before = eval_loss(trainer, *eval, o.batch, o.eval_batches);

    std::vector<int32_t> in(static_cast<size_t>(o.batch * o.ctx)), tg(in.size());
    std::vector<int64_t> order;
    int64_t order_epoch = -1;
    int64_t pos = 0;  // windows consumed so far (the data position a checkpoint keeps)
    int64_t first_step = 0;
    const RunShape shape{0, 0, 0, static_cast<uint64_t>(o.batch), static_cast<uint64_t>(o.ctx), static_cast<uint64_t>(o.accumulate),
                         o.seed, static_cast<uint64_t>(total_steps)};
    if (!o.resume_from.empty()) {
        const RunShape rs = load_state(o.resume_from, shape, params, opt, r.loss_curve, scaler ? &*scaler : nullptr);
        first_step = static_cast<int64_t>(rs.step), pos = static_cast<int64_t>(rs.pos);
    }
    const auto write_state = [&](int64_t steps_done) {
        RunShape rs = shape;
        rs.step = static_cast<uint64_t>(steps_done), rs.pos = static_cast<uint64_t>(pos), rs.opt_steps = static_cast<uint64_t>(opt.steps());
        save_state(o.state_path, rs, params, opt, r.loss_curve, scaler ? &*scaler : nullptr);
    };
    const auto t_start = std::chrono::steady_clock::now();
    const int64_t run_steps = o.stop_after > 0 ? std::min(o.stop_after, total_steps) : total_steps;
    for (int64_t step = first_step; step < run_steps; ++step) {
        const auto t0 = std::chrono::steady_clock::now();
        trainer.zero_grad();
        double loss = 0;
        for (int64_t a = 0; a < o.accumulate; ++a) {
            for (int64_t i = 0; i < o.batch; ++i, ++pos) {
                const int64_t epoch = pos / data.n_windows;
                if (epoch != order_epoch) order = epoch_order(data.n_windows, o.seed, epoch), order_epoch = epoch;
                data.window(order[static_cast<size_t>(pos % data.n_windows)], in.data() + i * o.ctx, tg.data() + i * o.ctx);
            }
            const float loss_scale = scaler ? scaler->scale() : 1.0f;
            const train::ScopedMatmulPrecision scope(precision);
            loss += trainer.forward_backward(in, tg, o.batch, o.ctx, loss_scale / static_cast<float>(o.accumulate)) /
                    static_cast<double>(o.accumulate);
        }
        const float lr = sched.at(step);
        double gnorm = 0;
        bool finite = true;
        if (scaler) {  // an overflowed step leaves the weights and the optimiser as they are
            finite = scaler->unscale_and_check(params);
            scaler->update(finite);
        }
        if (finite) {
            gnorm = clip_grad_norm(params, o.clip);
            opt.step(params, lr);
        } else {
            gnorm = std::numeric_limits<double>::infinity();
        }
        r.loss_curve.push_back(loss);
        r.step_seconds.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
        const double dt = r.step_seconds.back();
        if (eval && o.eval_every > 0 && (step + 1) % o.eval_every == 0 && step + 1 < run_steps)
            r.eval_curve.emplace_back(step + 1, eval_loss(trainer, *eval, o.batch, o.eval_batches));
        if (progress) progress({step + 1, total_steps, loss, lr, static_cast<double>(per_step * o.ctx) / dt, gnorm});
        if (!o.state_path.empty() && o.state_every > 0 && (step + 1) % o.state_every == 0 && step + 1 < run_steps) write_state(step + 1);
    }
    if (!o.state_path.empty()) write_state(std::max(run_steps, first_step));
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
    r.steps = run_steps;
    r.tokens = std::max<int64_t>(run_steps - first_step, 0) * per_step * o.ctx;
    r.tokens_per_s = static_cast<double>(r.tokens) / r.seconds;
    if (eval) {
        r.eval_loss_after = eval_loss(trainer, *eval, o.batch, o.eval_batches);
        r.eval_curve.emplace_back(run_steps, r.eval_loss_after);
    }
    r.peak_rss_bytes = peak_rss_bytes();  // training's peak (a merged HF output below makes a full f32 copy)
    for (const TrainParam& p : params) r.trained_parameters += p.numel;
    if (!o.output.empty()) {
        if (lora && o.lora_output == "adapter") {
            trainer.save_lora_gguf(o.output);
        } else {
            if (lora) trainer.merge_lora();
            if (gguf_output) {
                model.save(o.output);
            } else if (lora) {
                LmTrainer whole(model);  // every tensor as an f32 parameter with its HF name, for the writer
                save_hf_dir(model, whole.params(), o.output);
            } else {
                save_hf_dir(model, trainer.params(), o.output);
            }
        }
        r.output = o.output;
    }
    for (const TrainParam& p : trainer.params()) r.param_state_bytes += static_cast<uint64_t>(p.numel) * 8;  // value + grad
    for (const auto& st : opt.state()) r.param_state_bytes += st.size() * sizeof(float);
    r.activation_bytes = trainer.activation_bytes();
    r.precision = o.precision;
    if (scaler) r.skipped_steps = scaler->skipped_steps(), r.loss_scale = scaler->scale();
    return r;
}

}  // namespace cq
