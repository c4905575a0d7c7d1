// Weight fake quantization around an unchanged trainer: masters outside the model, fake_quant(master) inside it, and
// the trainer's gradients (with respect to the quantized weights) carried back to the masters by STE or LSQ.
#include <algorithm>
#include <cmath>

#include "cq/error.h"
#include "cq/qat.h"

namespace cq {

namespace {

// Elements per scale of a [rows, cols] tensor under `spec` (integer grids).
int64_t group_of(const WeightQuantSpec& spec, const TrainParam& p) {
    const int64_t cols = p.shape.empty() ? p.numel : p.shape.back();
    switch (spec.granularity) {
        case WeightQuantSpec::Granularity::tensor: return p.numel;
        case WeightQuantSpec::Granularity::channel: return cols;
        case WeightQuantSpec::Granularity::group:
            if (cols % spec.group != 0)
                throw InvalidArgument("[qat] '" + p.name + "' has rows of " + std::to_string(cols) + ", not a multiple of the group size " +
                                      std::to_string(spec.group) + " (" + spec.text() + ")");
            return spec.group;
    }
    return cols;
}

// Grid parameters from the values themselves (round to nearest over the full range).
void grid_from_range(const WeightQuantSpec& spec, const float* w, int64_t n, int64_t group, float* scale, float* zp) {
    for (int64_t g0 = 0, p = 0; g0 < n; g0 += group, ++p) {
        float lo = 0.0f, hi = 0.0f;
        for (int64_t i = g0; i < std::min(n, g0 + group); ++i) lo = std::min(lo, w[i]), hi = std::max(hi, w[i]);
        if (spec.symmetric) {
            const float m = std::max(-lo, hi);
            scale[p] = m > 0.0f ? m / static_cast<float>(spec.qmax()) : 1.0f;
            zp[p] = 0.0f;
        } else {
            const float s = (hi - lo) / static_cast<float>(spec.qmax());
            scale[p] = s > 0.0f ? s : 1.0f;
            zp[p] = s > 0.0f ? std::min(std::max(std::nearbyint(-lo / s), 0.0f), static_cast<float>(spec.qmax())) : 0.0f;
        }
    }
}

}  // namespace

WeightFakeQuant::WeightFakeQuant(std::vector<TrainParam>& params,
                                 const std::function<const WeightQuantSpec*(const std::string&)>& spec_of, WeightGrad grad)
    : params_(&params), grad_(grad) {
    size_t n_q = 0;
    for (const TrainParam& p : params) n_q += spec_of(p.name) != nullptr;
    q_.reserve(n_q);  // opt_params_ point into these buffers: they must never move
    for (size_t i = 0; i < params.size(); ++i) {
        TrainParam& p = params[i];
        const WeightQuantSpec* spec = spec_of(p.name);
        if (!spec) {
            opt_params_.push_back(p);
            continue;
        }
        if (p.shape.size() != 2) throw InvalidArgument("[qat] '" + p.name + "' is not a matrix; only Linear weights are fake-quantized");
        Quantized q;
        q.param = i;
        q.spec = *spec;
        q.master.assign(p.value, p.value + p.numel);
        q.grad.assign(static_cast<size_t>(p.numel), 0.0f);
        if (spec->kind == WeightQuantSpec::Kind::integer) {
            const int64_t group = group_of(*spec, p), n_groups = (p.numel + group - 1) / group;
            q.scale.resize(static_cast<size_t>(n_groups)), q.zero_point.resize(static_cast<size_t>(n_groups));
            q.dscale.assign(static_cast<size_t>(n_groups), 0.0f);
            grid_from_range(*spec, q.master.data(), p.numel, group, q.scale.data(), q.zero_point.data());
            q.mask.resize(static_cast<size_t>(p.numel));
        } else {
            const auto& t = dtype_traits(spec->type);
            if (p.shape[1] % static_cast<int64_t>(t.block_size) != 0)
                throw InvalidArgument("[qat] '" + p.name + "' has rows of " + std::to_string(p.shape[1]) + ", not whole " +
                                      std::string(t.name) + " blocks");
        }
        q_.push_back(std::move(q));
        Quantized& back = q_.back();
        TrainParam m = p;
        m.value = back.master.data(), m.grad = back.grad.data();
        opt_params_.push_back(m);
        if (grad_ == WeightGrad::lsq && spec->kind == WeightQuantSpec::Kind::integer) {
            back.log_scale.resize(back.scale.size()), back.dlog_scale.assign(back.scale.size(), 0.0f);
            for (size_t g = 0; g < back.scale.size(); ++g) back.log_scale[g] = std::log(back.scale[g]);
            TrainParam s;
            s.name = s.hf_name = p.name + ".qat_log_scale";
            s.shape = {static_cast<int64_t>(back.scale.size())};
            s.numel = s.shape[0], s.value = back.log_scale.data(), s.grad = back.dlog_scale.data(), s.decay = false;
            opt_params_.push_back(s);
        }
    }
}

WeightFakeQuant::~WeightFakeQuant() = default;

void WeightFakeQuant::apply() {
    for (Quantized& q : q_) {
        TrainParam& p = (*params_)[q.param];
        if (q.spec.kind == WeightQuantSpec::Kind::ggml) {
            qat::fake_quant_ggml(q.spec.type, q.master.data(), p.shape[0], p.shape[1], p.value);
            continue;
        }
        const int64_t group = group_of(q.spec, p);
        // STE on a round-to-nearest grid: the grid follows the masters; LSQ: the learned scales.
        if (grad_ == WeightGrad::ste) grid_from_range(q.spec, q.master.data(), p.numel, group, q.scale.data(), q.zero_point.data());
        else
            for (size_t g = 0; g < q.scale.size(); ++g) q.scale[g] = std::exp(q.log_scale[g]);
        qat::fake_quant_forward(q.master.data(), p.numel, group, q.scale.data(), q.zero_point.data(), q.spec.qmin(), q.spec.qmax(),
                                p.value, q.mask.data());
    }
}

void WeightFakeQuant::backward() {
    for (Quantized& q : q_) {
        const TrainParam& p = (*params_)[q.param];
        if (q.spec.kind == WeightQuantSpec::Kind::ggml) {  // the codec's rounding passes gradients straight through
            std::copy_n(p.grad, p.numel, q.grad.data());
            continue;
        }
        if (grad_ == WeightGrad::ste) {
            qat::fake_quant_backward_ste(p.grad, q.mask.data(), p.numel, q.grad.data());
            continue;
        }
        const int64_t group = group_of(q.spec, p);
        std::fill(q.dscale.begin(), q.dscale.end(), 0.0f);
        const float grad_factor = 1.0f / std::sqrt(static_cast<float>(group) * static_cast<float>(q.spec.qmax()));
        qat::fake_quant_backward_lsq(p.grad, q.master.data(), p.numel, group, q.scale.data(), q.zero_point.data(), q.spec.qmin(),
                                     q.spec.qmax(), grad_factor, q.grad.data(), q.dscale.data(), nullptr);
        for (size_t g = 0; g < q.scale.size(); ++g) q.dlog_scale[g] = q.dscale[g] * q.scale[g];
    }
}

void WeightFakeQuant::zero_grad() {
    for (Quantized& q : q_) {
        std::fill(q.grad.begin(), q.grad.end(), 0.0f);
        std::fill(q.dscale.begin(), q.dscale.end(), 0.0f);
        std::fill(q.dlog_scale.begin(), q.dlog_scale.end(), 0.0f);
    }
}

std::vector<int32_t> WeightFakeQuant::codes(const Quantized& q) const {
    if (q.spec.kind != WeightQuantSpec::Kind::integer) throw InvalidArgument("[qat] codes exist for integer grids only");
    const TrainParam& p = (*params_)[q.param];
    const int64_t group = group_of(q.spec, p);
    std::vector<int32_t> out(static_cast<size_t>(p.numel));
    for (int64_t i = 0; i < p.numel; ++i) {
        const int64_t g = i / group;
        const float z = std::min(std::max(std::nearbyint(q.zero_point[static_cast<size_t>(g)]), static_cast<float>(q.spec.qmin())),
                                 static_cast<float>(q.spec.qmax()));
        const float v = z + std::nearbyint(q.master[static_cast<size_t>(i)] * (1.0f / q.scale[static_cast<size_t>(g)]));
        out[static_cast<size_t>(i)] = static_cast<int32_t>(std::min(std::max(v, static_cast<float>(q.spec.qmin())), static_cast<float>(q.spec.qmax())));
    }
    return out;
}

}  // namespace cq
