// W8A8 for decoder LLMs: the rule-selected block Linears get per-channel int8 weights and u8 activations, static
// ranges observed while the model runs calibration text (llama-imatrix's chunking) or per token at run time.
// LanguageModel::save writes the result as GGUF with the int8 Linears as cq's containers hold them.
#include <algorithm>
#include <chrono>

#include "cq/error.h"
#include "cq/llm.h"
#include "cq/quantize.h"
#include "cq/w8a8.h"
#include "eval/text_chunks.h"

namespace cq {

std::vector<W8A8Rule> llm_default_w8a8_rules() { return {W8A8Rule{RuleScope{"*"}, false}, W8A8Rule{RuleScope{"blk.*"}, true}}; }

int64_t quantize_llm_w8a8(LanguageModel& model, const LlmW8A8Options& o, const std::function<void(int64_t, int64_t, double)>& progress) {
    const bool is_static = o.activations == ActivationQuant::static_per_tensor;
    if (o.activation_bits != 0 && o.activation_bits != 8 && o.activation_bits != 7)
        throw InvalidArgument("[w8a8] activations must be 8 or 7 bits (or 0: auto), not " + std::to_string(o.activation_bits));
    if (o.symmetric && !is_static) throw InvalidArgument("[w8a8] symmetric activations are a static mode (w8a8-static)");
    if (is_static && o.calib_text.empty()) throw InvalidArgument("[w8a8] static activation ranges need calibration text (--calib TEXT)");
    const int32_t bits = o.activation_bits != 0 ? o.activation_bits : o.activations == ActivationQuant::dynamic_per_token ? auto_activation_bits() : 8;
    const int32_t qmax = (1 << bits) - 1;
    std::vector<Linear*> chosen;
    for (Linear* l : model.linears()) {
        if (!w8a8_selects(o.rules, l->name)) continue;
        if (l->int8) throw InvalidArgument("[w8a8] " + l->name + " is already W8A8; quantize the float model");
        // a tied head is the token embedding's bytes, which the embedding lookup reads as floats
        if (l->role == LayerRole::lm_head && l->weight.data() == model.weights().token_embd.data())
            throw InvalidArgument("[w8a8] the rules select '" + l->name + "', which shares the token embedding's weights (a tied head); "
                                  "it stays float");
        chosen.push_back(l);
    }
    if (chosen.empty()) throw InvalidArgument("[w8a8] the rules select none of the model's Linears");
    std::vector<calib::RangeObserver> ranges(chosen.size());
    if (is_static) {
        std::vector<ObserverId> ids;
        for (size_t i = 0; i < chosen.size(); ++i)
            ids.push_back(model.observe(*chosen[i], [r = &ranges[i]](const LinearEvent& e) { r->observe(e.x, e.rows * e.layer.n_in()); }));
        try {
            run_text_chunks(model, o.calib_text, o.calib_ctx, o.calib_chunks, o.calib_ctx, "w8a8 calibration", progress);
        } catch (...) {
            for (const ObserverId id : ids) model.remove_observer(id);
            throw;
        }
        for (const ObserverId id : ids) model.remove_observer(id);
    }
    // every layer's int8 form first, then all of them at once: a layer that cannot be quantized leaves the model as it was
    std::vector<std::shared_ptr<Int8Linear>> forms;
    for (size_t i = 0; i < chosen.size(); ++i) {
        calib::U8Params p{1.0f, 0};
        if (is_static) {
            const calib::Range r = ranges[i].range(o.method, o.percentile);
            p = o.symmetric ? calib::u8_params_symmetric(r, qmax) : calib::u8_params(r, qmax);
        }
        forms.push_back(quantize_linear_w8a8(*chosen[i], o.activations, p, qmax));
    }
    for (size_t i = 0; i < chosen.size(); ++i) {
        chosen[i]->int8 = std::move(forms[i]);
        chosen[i]->modified_by = is_static ? "w8a8-static" : "w8a8-dynamic";
    }
    return static_cast<int64_t>(chosen.size());
}

QuantizeReport quantize_llm_w8a8_file(const std::string& input, const std::string& output, const LlmW8A8Options& q,
                                      const std::vector<std::string>& tensor_types, bool keep_zeros, const ProgressFn& progress,
                                      const ProgressFn& calibration) {
    const auto start = std::chrono::steady_clock::now();
    LoadOptions load;
    if (q.activations == ActivationQuant::static_per_tensor) load.n_ctx = q.calib_ctx;  // calibration chunks fill the cache
    auto model = LanguageModel::load(input, load);
    const int64_t n = quantize_llm_w8a8(*model, q, calibration);
    QuantizeOptions keep;  // every tensor the W8A8 pass did not change stays float
    keep.type = "f32";
    keep.tensor_types = tensor_types;
    keep.keep_zeros = keep_zeros;
    QuantizeReport r = quantize_model(*model, output, keep, progress);
    const bool is_static = q.activations == ActivationQuant::static_per_tensor;
    r.type = is_static ? "w8a8-static" : "w8a8-dynamic";
    r.method = is_static ? "w8a8 static, " + std::string(calib::method_name(q.method)) + " ranges" + (q.symmetric ? ", symmetric" : "")
               : q.activations == ActivationQuant::dynamic_per_tensor ? "w8a8 dynamic, per tensor"
                                                                      : "w8a8 dynamic, per token";
    std::string rules;
    for (const auto& rule : q.rules) rules += (rules.empty() ? "" : ", ") + rule.text();
    r.notes.push_back(std::to_string(n) + " Linears int8 (rules: " + rules + ")");
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    return r;
}

}  // namespace cq
