// Optimisers (AdamW and SGD with momentum, in torch.optim's arithmetic order), learning-rate schedules,
// global gradient-norm clipping and the weight-decay rules. Per-element updates split over fixed tiles.
#include <cmath>
#include <numbers>

#include "cq/error.h"
#include "cq/thread_pool.h"
#include "cq/train.h"

namespace cq {

namespace {
constexpr int64_t kTile = 1 << 14;

template <typename F>
void for_elements(int64_t n, F fn) {
    ThreadPool::global().parallel_for((n + kTile - 1) / kTile, [&](int64_t t0, int64_t t1) {
        for (int64_t t = t0; t < t1; ++t) fn(t * kTile, std::min(n, (t + 1) * kTile));
    });
}
}  // namespace

std::vector<WeightDecayRule> default_weight_decay_rules() {
    return {parse_weight_decay_rule("*norm*=none"), parse_weight_decay_rule("*.bias=none"), parse_weight_decay_rule("*embd*=none")};
}

WeightDecayRule parse_weight_decay_rule(const std::string& spec) {
    const auto [pattern, action] = split_rule_spec(spec, "--decay-rule", "PATTERN=decay|none");
    WeightDecayRule r;
    r.scope.pattern = pattern;
    if (action == "decay") r.decay = true;
    else if (action == "none") r.decay = false;
    else throw InvalidArgument("[train] weight-decay rule '" + spec + "': the action must be 'decay' or 'none', not '" + action + "'");
    return r;
}

void apply_weight_decay_rules(std::span<TrainParam> params, std::span<const WeightDecayRule> rules) {
    for (TrainParam& p : params) {
        RuleTarget target;
        target.name = p.name;
        const auto k = deciding_rule<WeightDecayRule>(rules, target);
        p.decay = k < 0 || rules[static_cast<size_t>(k)].decay;
    }
}

Optimizer::Optimizer(std::span<const TrainParam> params, const OptimizerOptions& options) : o_(options) {
    if (!(options.beta1 >= 0 && options.beta1 < 1) || !(options.beta2 >= 0 && options.beta2 < 1) || !(options.eps > 0))
        throw InvalidArgument("[train] AdamW needs betas in [0, 1) and eps > 0");
    const int per_param = o_.kind == OptimizerKind::adamw ? 2 : 1;
    for (const TrainParam& p : params)
        for (int i = 0; i < per_param; ++i) state_.emplace_back(static_cast<size_t>(p.numel), 0.0f);
}

void Optimizer::step(std::span<TrainParam> params, float lr) {
    ++t_;
    const int per_param = o_.kind == OptimizerKind::adamw ? 2 : 1;
    if (state_.size() != params.size() * static_cast<size_t>(per_param))
        throw InvalidArgument("[train] the optimiser was built for " + std::to_string(state_.size() / per_param) + " parameters, got " +
                              std::to_string(params.size()));
    for (size_t i = 0; i < params.size(); ++i) {
        TrainParam& p = params[i];
        const float wd = p.decay ? o_.weight_decay : 0.0f;
        if (o_.kind == OptimizerKind::adamw) {
            float* m = state_[2 * i].data();
            float* v = state_[2 * i + 1].data();
            const float b1 = o_.beta1, b2 = o_.beta2, eps = o_.eps;
            // torch.optim.AdamW (single-tensor): p·(1 − lr·wd); m, v; p −= (lr / bc1) · m / (√v / √bc2 + eps)
            const double bc1 = 1.0 - std::pow(static_cast<double>(b1), static_cast<double>(t_));
            const double bc2 = 1.0 - std::pow(static_cast<double>(b2), static_cast<double>(t_));
            const float step_size = static_cast<float>(lr / bc1);
            const float bc2_sqrt = static_cast<float>(std::sqrt(bc2));
            const float decay = 1.0f - lr * wd;
            float* w = p.value;
            const float* g = p.grad;
            for_elements(p.numel, [&](int64_t a, int64_t b) {
                for (int64_t j = a; j < b; ++j) {
                    if (wd != 0.0f) w[j] *= decay;
                    m[j] = m[j] * b1 + g[j] * (1.0f - b1);
                    v[j] = v[j] * b2 + (1.0f - b2) * g[j] * g[j];
                    const float denom = std::sqrt(v[j]) / bc2_sqrt + eps;
                    w[j] += -step_size * (m[j] / denom);
                }
            });
        } else {
            float* buf = state_[i].data();
            float* w = p.value;
            const float* g = p.grad;
            const float mu = o_.momentum;
            const bool first = t_ == 1;
            // torch.optim.SGD: g += wd·p; buf = g (first step) or μ·buf + g; p −= lr·buf
            for_elements(p.numel, [&](int64_t a, int64_t b) {
                for (int64_t j = a; j < b; ++j) {
                    const float gj = g[j] + wd * w[j];
                    buf[j] = (mu == 0.0f || first) ? gj : mu * buf[j] + gj;
                    w[j] -= lr * buf[j];
                }
            });
        }
    }
}

float LrSchedule::at(int64_t step) const {
    if (warmup_steps > 0 && step < warmup_steps) return lr * static_cast<float>(step) / static_cast<float>(warmup_steps);
    if (decay == LrDecay::constant || total_steps <= warmup_steps) return lr;
    const double progress = std::min(1.0, static_cast<double>(step - warmup_steps) / static_cast<double>(total_steps - warmup_steps));
    const double f = decay == LrDecay::linear ? 1.0 - progress : 0.5 * (1.0 + std::cos(std::numbers::pi * progress));
    return static_cast<float>(lr * (min_lr_ratio + (1.0 - min_lr_ratio) * f));
}

double clip_grad_norm(std::span<TrainParam> params, double max_norm) {
    double ss = 0;
    for (const TrainParam& p : params) {
        double s = 0;
        for (int64_t j = 0; j < p.numel; ++j) s += static_cast<double>(p.grad[j]) * p.grad[j];
        ss += s;
    }
    const double norm = std::sqrt(ss);
    if (max_norm > 0 && norm > max_norm) {
        const float coef = static_cast<float>(max_norm / (norm + 1e-6));
        for (TrainParam& p : params)
            for_elements(p.numel, [&](int64_t a, int64_t b) {
                for (int64_t j = a; j < b; ++j) p.grad[j] *= coef;
            });
    }
    return norm;
}

}  // namespace cq
