// Dynamic loss scaling for FP16 training (torch.cuda.amp.GradScaler's rule): unscale and check the gradients, skip
// the step and back off on inf / NaN, grow the scale after a run of finite steps.
#include <cmath>

#include "cq/error.h"
#include "cq/train.h"

namespace cq {

DynamicLossScaler::DynamicLossScaler(const LossScalerOptions& options) : o_(options), scale_(options.init_scale) {
    if (!(o_.init_scale > 0) || !std::isfinite(o_.init_scale) || !(o_.growth_factor > 1) || !(o_.backoff_factor > 0 && o_.backoff_factor < 1) ||
        o_.growth_interval < 1)
        throw InvalidArgument("[train] loss scaling needs a finite initial scale > 0, growth factor > 1, backoff in (0, 1) and a growth "
                              "interval ≥ 1");
}

bool DynamicLossScaler::unscale_and_check(std::span<TrainParam> params) const {
    for (const TrainParam& p : params)
        for (int64_t j = 0; j < p.numel; ++j)
            if (!std::isfinite(p.grad[j])) return false;
    const float inv = 1.0f / scale_;
    for (TrainParam& p : params)
        for (int64_t j = 0; j < p.numel; ++j) p.grad[j] *= inv;
    return true;
}

void DynamicLossScaler::update(bool finite) {
    if (!finite) {
        scale_ *= o_.backoff_factor;
        good_ = 0;
        ++skipped_;
        return;
    }
    if (++good_ >= o_.growth_interval) {
        const float grown = scale_ * o_.growth_factor;
        if (std::isfinite(grown)) scale_ = grown;
        good_ = 0;
    }
}

void DynamicLossScaler::restore(float scale, int64_t finite_in_a_row, int64_t skipped) {
    if (!(scale > 0) || !std::isfinite(scale) || finite_in_a_row < 0 || skipped < 0)
        throw InvalidArgument("[train] a saved loss scale of " + std::to_string(scale) + " is not a positive finite number");
    scale_ = scale, good_ = finite_in_a_row, skipped_ = skipped;
}

}  // namespace cq
