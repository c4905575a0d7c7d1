// Knowledge distillation: the teacher runs inference (its own forward), the student trains through the training
// engine with its cross-entropy replaced by the distillation loss (LmTrainer / EncoderTrainer::set_logit_loss), so
// teacher and student only need the same output space, not the same shape. Hidden-state terms (hidden_distill.cpp)
// enter through set_hidden_loss; the teacher's block outputs come from its stage-by-stage forward or a block observer.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <optional>
#include <sstream>

#include "cq/distill.h"
#include "cq/encoder.h"
#include "cq/error.h"
#include "cq/llm.h"
#include "train/data_order.h"

namespace cq {

std::string DistillLoss::text() const {
    std::ostringstream o;
    o << "kl=" << kl << ",ce=" << ce;
    if (hidden > 0.0f) o << ",hidden=" << hidden;
    if (cos > 0.0f) o << ",cos=" << cos;
    return o.str();
}

DistillLoss parse_distill_loss(const std::string& spec) {
    DistillLoss l{0.0f, 0.0f};
    if (spec.empty() || spec.back() == ',') throw InvalidArgument("[distill] --loss '" + spec + "' is not NAME=WEIGHT,… (terms: kl, ce, hidden, cos)");
    std::stringstream in(spec);
    std::string term;
    while (std::getline(in, term, ',')) {
        const auto eq = term.find('=');
        if (eq == std::string::npos || eq == 0 || eq + 1 == term.size())
            throw InvalidArgument("[distill] --loss term '" + term + "' is not NAME=WEIGHT (in '" + spec + "'; terms: kl, ce, hidden, cos)");
        const std::string name = term.substr(0, eq), value = term.substr(eq + 1);
        float w = 0;
        try {
            size_t used = 0;
            w = std::stof(value, &used);
            if (used != value.size()) throw std::invalid_argument(value);
        } catch (const std::exception&) {
            throw InvalidArgument("[distill] --loss weight '" + value + "' of '" + name + "' is not a number");
        }
        if (!(w >= 0.0f) || !std::isfinite(w)) throw InvalidArgument("[distill] --loss weight of '" + name + "' must be finite and ≥ 0");
        if (name == "kl") l.kl = w;
        else if (name == "ce") l.ce = w;
        else if (name == "hidden") l.hidden = w;
        else if (name == "cos") l.cos = w;
        else throw InvalidArgument("[distill] unknown --loss term '" + name + "' (terms: kl, ce, hidden, cos)");
    }
    if (l.kl == 0.0f && l.ce == 0.0f && !l.has_hidden()) throw InvalidArgument("[distill] --loss '" + spec + "' gives every term weight 0");
    return l;
}

std::pair<double, int64_t> distill_logit_loss(float* student, const float* teacher, const int32_t* targets, int64_t N,
                                              int64_t V, const DistillLoss& loss, float temperature) {
    if (!(temperature > 0.0f)) throw InvalidArgument("[distill] the temperature must be > 0");
    if (loss.kl > 0.0f && !teacher) throw InvalidArgument("[distill] a KL term needs the teacher's logits");
    std::vector<double> ps(static_cast<size_t>(V)), pt(static_cast<size_t>(V)), p1(static_cast<size_t>(V));
    const double T = temperature;
    double total = 0;
    int64_t counted = 0;
    // softmax(z / t) in double, returning log Σ exp(z/t − max) + max for the log-probabilities
    const auto softmax = [&](const float* z, double t, std::vector<double>& p) {
        double m = -INFINITY;
        for (int64_t j = 0; j < V; ++j) m = std::max(m, z[j] / t);
        double sum = 0;
        for (int64_t j = 0; j < V; ++j) sum += (p[static_cast<size_t>(j)] = std::exp(z[j] / t - m));
        for (int64_t j = 0; j < V; ++j) p[static_cast<size_t>(j)] /= sum;
        return m + std::log(sum);
    };
    for (int64_t r = 0; r < N; ++r) {
        float* zs = student + r * V;
        const int32_t y = targets ? targets[r] : 0;
        if (y < 0) {
            std::fill_n(zs, V, 0.0f);
            continue;
        }
        if (loss.ce > 0.0f && y >= V) throw InvalidArgument("[distill] target " + std::to_string(y) + " is outside [0, " + std::to_string(V) + ")");
        ++counted;
        std::vector<double> g(static_cast<size_t>(V), 0.0);
        if (loss.kl > 0.0f) {
            const float* zt = teacher + r * V;
            const double lse_s = softmax(zs, T, ps), lse_t = softmax(zt, T, pt);
            double kl = 0;
            for (int64_t j = 0; j < V; ++j) {
                const double p = pt[static_cast<size_t>(j)];
                if (p > 0) kl += p * ((zt[j] / T - lse_t) - (zs[j] / T - lse_s));
                g[static_cast<size_t>(j)] += loss.kl * T * (ps[static_cast<size_t>(j)] - p);  // ∂(T²·KL)/∂z_s
            }
            total += loss.kl * T * T * kl;
        }
        if (loss.ce > 0.0f) {
            const double lse = softmax(zs, 1.0, p1);
            total += loss.ce * (lse - zs[y]);
            for (int64_t j = 0; j < V; ++j) g[static_cast<size_t>(j)] += loss.ce * (p1[static_cast<size_t>(j)] - (j == y ? 1.0 : 0.0));
        }
        for (int64_t j = 0; j < V; ++j) zs[j] = static_cast<float>(g[static_cast<size_t>(j)]);
    }
    return {total, counted};
}

namespace {

uint64_t weight_count(const Model& m) {
    uint64_t n = 0;
    for (const LayerInfo& l : m.layers()) {
        uint64_t e = 1;
        for (int64_t d : l.shape) e *= static_cast<uint64_t>(d);
        n += e;
    }
    return n;
}

int64_t total_steps_of(const DistillOptions& o, int64_t n_items) {
    if (o.batch < 1) throw InvalidArgument("[distill] --batch must be ≥ 1");
    if (o.steps < 0 || (o.steps == 0 && !(o.epochs > 0))) throw InvalidArgument("[distill] give a positive --steps or --epochs");
    const int64_t per_epoch = (n_items + o.batch - 1) / o.batch;
    return o.steps > 0 ? o.steps : std::max<int64_t>(1, static_cast<int64_t>(std::ceil(o.epochs * static_cast<double>(per_epoch))));
}

LrSchedule schedule_of(const DistillOptions& o, int64_t total_steps) {
    LrSchedule s = o.schedule;
    s.total_steps = total_steps;
    if (o.warmup_fraction >= 0) s.warmup_steps = static_cast<int64_t>(std::llround(o.warmup_fraction * static_cast<double>(total_steps)));
    return s;
}

// The hidden-state terms' map (none without a hidden / cos term).
std::vector<LayerPair> layer_map_of(const DistillOptions& o, int64_t student_layers, int64_t teacher_layers) {
    if (!o.loss.has_hidden()) {
        if (!o.layer_map.empty()) throw InvalidArgument("[distill] --layer-map needs a hidden or cos term in --loss");
        return {};
    }
    return o.layer_map.empty() ? default_layer_map(student_layers, teacher_layers, o.student_copied_from)
                               : parse_layer_map(o.layer_map, student_layers, teacher_layers);
}

// The student's parameters and the hidden-state projections: what the optimiser updates and clipping sees.
std::vector<TrainParam> trained_params(const std::vector<TrainParam>& student, HiddenDistill* hd) {
    std::vector<TrainParam> all = student;
    if (hd) all.insert(all.end(), hd->params().begin(), hd->params().end());
    return all;
}

// Teacher logits [b·ctx, V] of b windows, one sequence at a time through its own forward; with hidden-state terms
// (hd) the forward runs a stage at a time (embed → blocks → head, the same computation) and the mapped blocks'
// outputs go to hd->teacher_hidden(): [b·ctx, D] per pair.
void teacher_logits(LanguageModel& teacher, const int32_t* inputs, int64_t b, int64_t ctx, std::vector<float>& out, HiddenDistill* hd) {
    const int64_t V = teacher.config().n_vocab, D = teacher.config().n_embd, L = teacher.config().n_layer;
    out.resize(static_cast<size_t>(b * ctx * V));
    if (!hd) {
        for (int64_t i = 0; i < b; ++i)
            teacher.forward({inputs + i * ctx, static_cast<size_t>(ctx)}, 0, {out.data() + i * ctx * V, static_cast<size_t>(ctx * V)}, true);
        return;
    }
    const std::vector<LayerPair>& map = hd->map();
    for (auto& t : hd->teacher_hidden()) t.resize(static_cast<size_t>(b * ctx * D));
    std::vector<float> h(static_cast<size_t>(ctx * D));
    for (int64_t i = 0; i < b; ++i) {
        teacher.embed({inputs + i * ctx, static_cast<size_t>(ctx)}, 0, h.data());
        for (int64_t l = 0; l < L; ++l) {
            teacher.run_block(l, h.data(), ctx, 0);
            for (size_t j = 0; j < map.size(); ++j)
                if (map[j].teacher == l) std::copy(h.begin(), h.end(), hd->teacher_hidden()[j].begin() + i * ctx * D);
        }
        teacher.run_head(h.data(), ctx, out.data() + i * ctx * V);
    }
}

// Mean next-token cross-entropy of the teacher's own forward over the windows (as LmTrainer::loss computes it).
double teacher_eval_loss(LanguageModel& teacher, const TextWindows& data, int64_t batch, int64_t max_batches) {
    const int64_t ctx = data.ctx, V = teacher.config().n_vocab;
    int64_t n = data.n_windows;
    if (max_batches > 0) n = std::min(n, max_batches * batch);
    std::vector<int32_t> in(static_cast<size_t>(ctx)), tg(in.size());
    std::vector<float> logits(static_cast<size_t>(ctx * V));
    double total = 0;
    for (int64_t w = 0; w < n; ++w) {
        data.window(w, in.data(), tg.data());
        teacher.forward(in, 0, logits, true);
        for (int64_t t = 0; t < ctx; ++t) {
            const float* z = logits.data() + t * V;
            double m = -INFINITY, s = 0;
            for (int64_t j = 0; j < V; ++j) m = std::max(m, static_cast<double>(z[j]));
            for (int64_t j = 0; j < V; ++j) s += std::exp(z[j] - m);
            total += m + std::log(s) - z[tg[static_cast<size_t>(t)]];
        }
    }
    return total / static_cast<double>(n * ctx);
}

double student_eval_loss(LmTrainer& trainer, const TextWindows& data, int64_t batch, int64_t max_batches) {
    const int64_t ctx = data.ctx;
    int64_t n = data.n_windows;
    if (max_batches > 0) n = std::min(n, max_batches * batch);
    std::vector<int32_t> in(static_cast<size_t>(batch * ctx)), tg(in.size());
    double total = 0;
    for (int64_t w0 = 0; w0 < n; w0 += batch) {
        const int64_t b = std::min(batch, n - w0);
        for (int64_t i = 0; i < b; ++i) data.window(w0 + i, in.data() + i * ctx, tg.data() + i * ctx);
        total += trainer.loss({in.data(), static_cast<size_t>(b * ctx)}, {tg.data(), static_cast<size_t>(b * ctx)}, b, ctx) *
                 static_cast<double>(b * ctx);
    }
    return total / static_cast<double>(n * ctx);
}

}  // namespace

DistillReport distill_lm(LanguageModel& teacher, LanguageModel& student, const DistillOptions& o,
                         const std::function<void(const FinetuneProgress&)>& progress) {
    if (teacher.config().n_vocab != student.config().n_vocab)
        throw InvalidArgument("[distill] the teacher's vocabulary has " + std::to_string(teacher.config().n_vocab) +
                              " tokens, the student's " + std::to_string(student.config().n_vocab));
    if (teacher.n_ctx() < o.ctx)
        throw InvalidArgument("[distill] --ctx " + std::to_string(o.ctx) + " exceeds the teacher's context of " + std::to_string(teacher.n_ctx()));
    const TextWindows train_set = load_text_windows(student, o.data, o.ctx);
    std::optional<TextWindows> eval_set;
    if (!o.eval_data.empty()) eval_set = load_text_windows(student, o.eval_data, o.ctx);

    DistillReport r;
    r.teacher_params = weight_count(teacher);
    r.student_params = weight_count(student);
    std::optional<HiddenDistill> hd;
    if (const auto map = layer_map_of(o, student.config().n_layer, teacher.config().n_layer); !map.empty())
        hd.emplace(map, student.config().n_embd, teacher.config().n_embd, o.loss, o.seed);
    LmTrainer trainer(student);
    std::vector<TrainParam>& params = trainer.params();
    apply_weight_decay_rules(params, default_weight_decay_rules());
    std::vector<TrainParam> trained = trained_params(params, hd ? &*hd : nullptr);
    Optimizer opt(trained, o.optimizer);
    const int64_t total_steps = total_steps_of(o, train_set.n_windows);
    const LrSchedule sched = schedule_of(o, total_steps);
    if (eval_set) {
        r.has_eval = true;
        r.teacher_eval = teacher_eval_loss(teacher, *eval_set, o.batch, o.eval_batches);
        r.student_eval_before = student_eval_loss(trainer, *eval_set, o.batch, o.eval_batches);
    }

    std::vector<float> t_logits;
    const bool need_kl = o.loss.kl > 0.0f, need_teacher = need_kl || hd;
    trainer.set_logit_loss([&](float* logits, const int32_t* targets, int64_t N, int64_t V) {
        return distill_logit_loss(logits, need_kl ? t_logits.data() : nullptr, targets, N, V, o.loss, o.temperature);
    });
    if (hd) trainer.set_hidden_loss(hd->hook());
    const int64_t ctx = o.ctx, per_epoch = (train_set.n_windows + o.batch - 1) / o.batch;
    std::vector<int64_t> order;
    int64_t order_epoch = -1;
    std::vector<int32_t> in, tg;
    FinetuneReport& fr = r.train;
    fr.n_windows = train_set.n_windows;
    const auto t_start = std::chrono::steady_clock::now();
    for (int64_t step = 0; step < total_steps; ++step) {
        const auto t0 = std::chrono::steady_clock::now();
        const int64_t epoch = step / per_epoch, in_epoch = step % per_epoch;
        if (epoch != order_epoch) order = train::epoch_order(train_set.n_windows, o.seed, epoch), order_epoch = epoch;
        const int64_t first = in_epoch * o.batch, b = std::min(o.batch, train_set.n_windows - first);
        in.resize(static_cast<size_t>(b * ctx)), tg.resize(in.size());
        for (int64_t i = 0; i < b; ++i) train_set.window(order[static_cast<size_t>(first + i)], in.data() + i * ctx, tg.data() + i * ctx);
        if (need_teacher) teacher_logits(teacher, in.data(), b, ctx, t_logits, hd ? &*hd : nullptr);
        trainer.zero_grad();
        if (hd) hd->zero_grad();
        const double loss = trainer.forward_backward(in, tg, b, ctx);
        const double gnorm = clip_grad_norm(trained, o.clip);
        const float lr = sched.at(step);
        opt.step(trained, lr);
        fr.loss_curve.push_back(loss);
        fr.step_seconds.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
        fr.tokens += b * ctx;
        if (progress) progress({step + 1, total_steps, loss, lr, static_cast<double>(b * ctx) / fr.step_seconds.back(), gnorm});
    }
    fr.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
    fr.steps = total_steps;
    fr.tokens_per_s = static_cast<double>(fr.tokens) / std::max(fr.seconds, 1e-9);
    trainer.set_logit_loss({});
    trainer.set_hidden_loss({});
    if (eval_set) r.student_eval_after = student_eval_loss(trainer, *eval_set, o.batch, o.eval_batches);
    if (!o.output.empty()) {
        const bool gguf = o.output.size() >= 5 && o.output.compare(o.output.size() - 5, 5, ".gguf") == 0;
        if (gguf) student.save(o.output);
        else save_hf_dir(student, params, o.output);
        fr.output = o.output;
    }
    fr.peak_rss_bytes = peak_rss_bytes();
    return r;
}

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

double accuracy_of(EncoderModel& model, const LabelledData& d, int64_t max_len) {
    ClassifyOptions co;
    co.batch = 64, co.max_len = max_len;
    return classify_dataset(model, *d.text, co).accuracy;
}

}  // namespace

DistillReport distill_classifier(EncoderModel& teacher, EncoderModel& student, const DistillOptions& o,
                                 const std::function<void(const FinetuneProgress&)>& progress) {
    if (teacher.is_vision() || student.is_vision()) throw Unsupported("[distill] classifier distillation takes text classifiers (BERT)");
    if (teacher.config().num_labels != student.config().num_labels)
        throw InvalidArgument("[distill] the teacher has " + std::to_string(teacher.config().num_labels) + " labels, the student " +
                              std::to_string(student.config().num_labels));
    if (o.max_len < 2) throw InvalidArgument("[distill] --max-len must be ≥ 2");
    const LabelledData train_set = load_labelled_data(o.data, student, o.data_selection);
    if (!train_set.text || train_set.count() == 0) throw InvalidArgument("[distill] " + o.data + " holds no text examples");
    std::optional<LabelledData> eval_set;
    if (!o.eval_data.empty()) eval_set = load_labelled_data(o.eval_data, student, o.eval_selection);

    DistillReport r;
    r.eval_is_accuracy = true;
    r.teacher_params = weight_count(teacher);
    r.student_params = weight_count(student);
    if (eval_set) {
        r.has_eval = true;
        r.teacher_eval = accuracy_of(teacher, *eval_set, o.max_len);
        r.student_eval_before = accuracy_of(student, *eval_set, o.max_len);
    }
    std::optional<HiddenDistill> hd;
    if (const auto map = layer_map_of(o, student.config().n_layer, teacher.config().n_layer); !map.empty())
        hd.emplace(map, student.config().hidden, teacher.config().hidden, o.loss, o.seed);
    EncoderTrainer trainer(student);
    std::vector<TrainParam>& params = trainer.params();
    const std::vector<WeightDecayRule> decay = {parse_weight_decay_rule("*.bias=none"), parse_weight_decay_rule("*LayerNorm*=none")};
    apply_weight_decay_rules(params, decay);
    std::vector<TrainParam> trained = trained_params(params, hd ? &*hd : nullptr);
    Optimizer opt(trained, o.optimizer);
    const int64_t n = train_set.count();
    const int64_t total_steps = total_steps_of(o, n), per_epoch = (n + o.batch - 1) / o.batch;
    const LrSchedule sched = schedule_of(o, total_steps);

    const int64_t C = student.config().num_labels;
    std::vector<float> t_logits;
    const bool need_kl = o.loss.kl > 0.0f, need_teacher = need_kl || hd;
    trainer.set_logit_loss([&](float* logits, const int32_t* labels, int64_t N, int64_t V) {
        return distill_logit_loss(logits, need_kl ? t_logits.data() : nullptr, labels, N, V, o.loss, o.temperature);
    });
    // The teacher's mapped block outputs, as its own forward shows them to a block observer.
    struct Observer {
        EncoderModel& m;
        ObserverId id = 0;
        ~Observer() {
            if (id) m.remove_observer(id);
        }
    } observer{teacher};
    if (hd) {
        trainer.set_hidden_loss(hd->hook());
        observer.id = teacher.observe_blocks([&hd](const BlockEvent& e) {
            for (size_t j = 0; j < hd->map().size(); ++j)
                if (hd->map()[j].teacher == e.block) hd->teacher_hidden()[j].assign(e.hidden, e.hidden + e.rows * e.width);
        });
    }
    std::vector<int64_t> order, rows;
    std::vector<int32_t> labels;
    int64_t order_epoch = -1;
    FinetuneReport& fr = r.train;
    fr.n_windows = n;
    const auto t_start = std::chrono::steady_clock::now();
    for (int64_t step = 0; step < total_steps; ++step) {
        const auto t0 = std::chrono::steady_clock::now();
        const int64_t epoch = step / per_epoch, in_epoch = step % per_epoch;
        if (epoch != order_epoch) order = train::epoch_order(n, o.seed, epoch), order_epoch = epoch;
        rows.assign(order.begin() + in_epoch * o.batch, order.begin() + std::min(n, (in_epoch + 1) * o.batch));
        const TextBatch b = batch_of(student, *train_set.text, rows, o.max_len, labels);
        if (need_teacher) {
            // The teacher tokenizes the same texts itself (its vocabulary may differ in principle; here it is shared).
            const TextBatch tb = batch_of(teacher, *train_set.text, rows, o.max_len, labels);
            if (hd && (tb.batch != b.batch || tb.seq != b.seq))
                throw InvalidArgument("[distill] hidden-state terms need the teacher and the student to tokenize alike (a batch of " +
                                      std::to_string(tb.batch) + " × " + std::to_string(tb.seq) + " tokens against " +
                                      std::to_string(b.batch) + " × " + std::to_string(b.seq) + ")");
            t_logits.resize(static_cast<size_t>(tb.batch * C));
            teacher.classify(tb, t_logits.data());
            if (hd) hd->set_row_mask(b.mask);  // padding rows do not count
        }
        trainer.zero_grad();
        if (hd) hd->zero_grad();
        const double loss = trainer.forward_backward(b, labels, o.dropout, o.seed * 1000003ull + static_cast<uint64_t>(step));
        const double gnorm = clip_grad_norm(trained, o.clip);
        const float lr = sched.at(step);
        opt.step(trained, lr);
        fr.loss_curve.push_back(loss);
        fr.step_seconds.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
        fr.tokens += b.batch * b.seq;
        if (progress) progress({step + 1, total_steps, loss, lr, static_cast<double>(b.batch * b.seq) / fr.step_seconds.back(), gnorm});
    }
    fr.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
    fr.steps = total_steps;
    fr.tokens_per_s = static_cast<double>(fr.tokens) / std::max(fr.seconds, 1e-9);
    trainer.set_logit_loss({});
    trainer.set_hidden_loss({});
    if (eval_set) r.student_eval_after = accuracy_of(student, *eval_set, o.max_len);
    if (!o.output.empty()) {
        save_hf_dir(student, params, o.output);
        fr.output = o.output;
    }
    fr.peak_rss_bytes = peak_rss_bytes();
    return r;
}

}  // namespace cq
