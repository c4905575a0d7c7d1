// Automatic mixed precision for cq quantize --target-size / --target-bpw / --max-kld: every tensor the rules
// quantize (minus those --tensor-type pins) gets the type that minimises the predicted mean KL-divergence within
// the budget. Also the per-Linear helpers the calibrated pass shares: the rules' type of a tensor and one encoding.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "cq/quantize.h"
#include "quant/block_calibration.h"

namespace cq::gguf {
class Writer;
}

namespace cq::quant {

/// The type the rules give a tensor (after llama.cpp's row fallback), or nullopt when they keep it as it is.
std::optional<DType> rule_type(const std::vector<QuantRule>& rules, const LanguageModel& m, const std::string& name, int64_t row);
bool is_quantized_type(DType t);
/// A Linear's weight w [n_out, n_in] in `type`: GPTQ on gptq_H when given (and the type has a GPTQ grid), else the
/// type's importance-weighted search (importance empty: unweighted, as llama-quantize without an imatrix).
Tensor encode(DType type, const float* w, int64_t n_out, int64_t n_in, const std::vector<float>& imp, const Hessian* gptq_H,
              const QuantizeOptions& o, const std::string& name);
/// The Linears the calibrated pass quantizes, with their types (those the rules keep in a float type are left alone).
std::map<const Linear*, DType> linear_types(LanguageModel& m, const std::vector<QuantRule>& rules);

struct Planned {
    std::string name;        // GGUF tensor name
    Linear* linear = nullptr;  // null: the token embedding
    std::vector<DType> types;
    std::vector<uint64_t> bytes;
    std::vector<double> proxy;  // output error per type (Linears)
    std::vector<double> cost;   // predicted ΔKLD per type
    std::string measured;
    DType probe_type = DType::F32;
    double probe_dkld = -1;  // held-out ΔKLD with this tensor alone at probe_type
    std::vector<float> importance;  // mean x² of the Linear's inputs (empty: unweighted)
};

struct PlanResult {
    std::vector<QuantRule> rules;
    std::vector<Planned> tensors;
    std::vector<size_t> pick;
    double predicted_kld = 0;
};

/// Measures every planned tensor's sensitivity on `m` (the f32 original; left as it was) and solves for the budget
/// of `o`; `metadata` is what the written file will carry (the dry runs that size its header use it).
PlanResult make_plan(LanguageModel& m, Calibration& c, const std::vector<QuantRule>& base, const QuantPreset* preset, bool weighted,
                     const QuantizeOptions& o, const std::function<void(gguf::Writer&)>& metadata, const StageFn& stage);

}  // namespace cq::quant
