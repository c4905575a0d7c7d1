// cq finetune's resumable training state (weights, optimiser state, step, data position, loss curve and, for fp16 runs,
// the loss scaler), written atomically and checked on load against the run that resumes it.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "cq/train.h"

namespace cq::train {

// The run a state file belongs to (batch, ctx, accumulate, seed and total_steps must match to resume) and where it was.
struct RunShape {
    uint64_t step, pos, opt_steps, batch, ctx, accumulate, seed, total_steps;
};

void save_state(const std::string& path, const RunShape& rs, std::span<const TrainParam> params, Optimizer& opt,
                const std::vector<double>& curve, const DynamicLossScaler* scaler);
// Restores what save_state wrote into params / opt / curve (and scaler, which an fp16 file must have and others must
// not); InvalidArgument when it belongs to another run, FormatError when it is damaged.
RunShape load_state(const std::string& path, const RunShape& want, std::span<TrainParam> params, Optimizer& opt,
                    std::vector<double>& curve, DynamicLossScaler* scaler);

}  // namespace cq::train
