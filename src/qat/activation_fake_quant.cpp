// Activation fake quantization on Linear inputs (an EncoderTrainer LinearInputHook): u8 with a zero point as cq's
// W8A8 runtime quantizes (x·(1/s), nearbyint, + z, clamp to [0, qmax]); static per tensor from an EMA of batch ranges
// or learned with LSQ+ (scale and zero point), or dynamic per token (straight through).
#include <algorithm>
#include <cmath>

#include "cq/calibration.h"
#include "cq/error.h"
#include "cq/qat.h"

namespace cq {

ActivationFakeQuant::ActivationFakeQuant(ActQuantMode mode, int32_t qmax, std::function<bool(int)> selected, float ema_momentum)
    : mode_(mode), qmax_(qmax), selected_(std::move(selected)), momentum_(ema_momentum) {
    if (qmax < 1 || qmax > 255) throw InvalidArgument("[qat] activation qmax must be in [1, 255]");
}

bool ActivationFakeQuant::applies(int weight_param) const { return mode_ != ActQuantMode::none && selected_(weight_param); }

void ActivationFakeQuant::refresh(Site& s) const {
    const calib::U8Params u = calib::u8_params({s.lo, s.hi}, qmax_);
    s.scale = u.scale, s.zp = static_cast<float>(u.zero_point), s.log_scale = std::log(u.scale);
}

void ActivationFakeQuant::forward(int wp, const float* x, int64_t N, int64_t I, float* xq, bool training) {
    const int64_t n = N * I;
    if (mode_ == ActQuantMode::dynamic && !calibrating_) return qat::fake_quant_dynamic_per_token(x, N, I, qmax_, xq);
    Site& s = sites_[wp];
    float blo = 0.0f, bhi = 0.0f;
    if (calibrating_ || (training && mode_ == ActQuantMode::static_ema) || !s.started)
        for (int64_t i = 0; i < n; ++i) blo = std::min(blo, x[i]), bhi = std::max(bhi, x[i]);
    if (calibrating_) {
        s.lo = s.started ? std::min(s.lo, blo) : blo, s.hi = s.started ? std::max(s.hi, bhi) : bhi;
        s.started = true;
        refresh(s);
        std::copy_n(x, n, xq);
        return;
    }
    if (!s.started) {
        s.lo = blo, s.hi = bhi, s.started = true;
        refresh(s);
    } else if (training && mode_ == ActQuantMode::static_ema) {
        s.lo += momentum_ * (blo - s.lo), s.hi += momentum_ * (bhi - s.hi);
        refresh(s);
    }
    if (mode_ == ActQuantMode::static_learned) s.scale = std::exp(s.log_scale);
    s.mask.resize(static_cast<size_t>(n));
    qat::fake_quant_forward(x, n, n, &s.scale, &s.zp, 0, qmax_, xq, s.mask.data());
}

void ActivationFakeQuant::backward(int wp, const float* x, int64_t N, int64_t I, float* dxq) {
    if (mode_ == ActQuantMode::dynamic) return;  // per-token ranges cover every value: straight through
    Site& s = sites_.at(wp);
    const int64_t n = N * I;
    if (mode_ == ActQuantMode::static_ema) return qat::fake_quant_backward_ste(dxq, s.mask.data(), n, dxq);
    // LSQ+ for a per-tensor scale and zero point; LSQ's gradient scale with the layer's features as N.
    const float grad_factor = 1.0f / std::sqrt(static_cast<float>(I) * static_cast<float>(qmax_));
    float dscale = 0.0f;
    qat::fake_quant_backward_lsq(dxq, x, n, n, &s.scale, &s.zp, 0, qmax_, grad_factor, dxq, &dscale, &s.dzp);
    s.dscale += dscale, s.dlog_scale += dscale * s.scale;
}

std::vector<TrainParam> ActivationFakeQuant::params() {
    std::vector<TrainParam> out;
    if (mode_ != ActQuantMode::static_learned) return out;
    for (auto& [wp, s] : sites_) {
        for (int k = 0; k < 2; ++k) {
            TrainParam p;
            p.name = p.hf_name = "act_quant." + std::to_string(wp) + (k == 0 ? ".log_scale" : ".zero_point");
            p.shape = {1}, p.numel = 1, p.decay = false;
            p.value = k == 0 ? &s.log_scale : &s.zp;
            p.grad = k == 0 ? &s.dlog_scale : &s.dzp;
            out.push_back(p);
        }
    }
    return out;
}

void ActivationFakeQuant::zero_grad() {
    for (auto& [wp, s] : sites_) s.dscale = 0.0f, s.dzp = 0.0f, s.dlog_scale = 0.0f;
}

std::pair<float, int32_t> ActivationFakeQuant::input_params(int wp) const {
    const auto it = sites_.find(wp);
    if (it == sites_.end()) throw InvalidArgument("[qat] no activation range for Linear parameter " + std::to_string(wp));
    const Site& s = it->second;
    const float z = std::min(std::max(std::nearbyint(s.zp), 0.0f), static_cast<float>(qmax_));
    return {s.scale, static_cast<int32_t>(z)};
}

}  // namespace cq
