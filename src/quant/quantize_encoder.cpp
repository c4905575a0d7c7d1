// Quantization of encoder classifiers: W8A8 (calibration by streamed histograms, cached; the per-Linear plan) or
// weight-only ggml blocks, and the GGUF container: the HF tensors with each quantized Linear's weight as I8 plus its
// scales (W8A8) or in its block type (weight-only), and the model's config / tokenizer / preprocessor files embedded
// so the file alone can be loaded again.

#include <chrono>
#include <cmath>
#include <cstring>
#include <functional>
#include <map>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "core/sha256.h"
#include "cq/atomic_file.h"
#include "cq/error.h"
#include "cq/io/gguf.h"
#include "cq/io/gguf_writer.h"
#include "io/hf/hf_model.h"
#include "cq/quantize_encoder.h"
#include "quant/llm_gguf_writer.h"

namespace cq {

namespace fs = std::filesystem;

namespace {

std::vector<W8A8Rule> plan_rules(const std::vector<std::string>& extra) {
    std::vector<W8A8Rule> rules = default_w8a8_rules();
    for (const auto& spec : extra) rules.push_back(parse_w8a8_rule(spec));
    return rules;
}

// What identifies a calibration run: the model's weights and the samples it saw.
std::string calibration_fingerprint(const std::string& weights_sha, const EncoderQuantizeOptions& o) {
    std::ostringstream s;
    s << "weights " << weights_sha << "; data " << fs::path(o.calib_data).filename().string() << " [" << o.calib_selection.first
      << ", " << o.calib_selection.count << "); samples " << o.calib_samples << "; max_len " << o.run.max_len;
    return s.str();
}

}  // namespace

bool is_w8a8_type(const std::string& type) { return type == "w8a8-dynamic" || type == "w8a8-static"; }

std::optional<DType> encoder_weight_only_type(const std::string& type) {
    const auto t = dtype_from_name(type);
    if (!t) return std::nullopt;
    const DTypeTraits& traits = dtype_traits(*t);
    if (!traits.is_quantized || !traits.from_float || !traits.to_float) return std::nullopt;
    return t;
}

std::vector<EncoderLinearPlan> apply_weight_only(EncoderModel& model, const std::vector<W8A8Rule>& rules, DType type) {
    if (!encoder_weight_only_type(std::string(dtype_name(type))))
        throw InvalidArgument("[quantize] " + std::string(dtype_name(type)) + " is not a block type cq can quantize weights to");
    std::vector<EncoderLinearPlan> plan;
    for (Linear* l : model.linears()) {
        if (l->role == LayerRole::patch_embed) continue;  // a convolution over pixels: kept f32, as for W8A8
        EncoderLinearPlan p;
        p.name = l->name;
        p.n_out = l->n_out();
        p.n_in = l->n_in();
        p.rule = w8a8_deciding_rule(rules, RuleTarget{l->name});
        p.weight_type = "f32";
        if (w8a8_selects(rules, l->name)) {
            if (l->int8) throw InvalidArgument("[quantize] " + l->name + " is already W8A8; weight-only quantization starts from float weights");
            const auto [fit, why] = quant::fit_row_type(type, p.n_in);
            p.fallback = why;
            // A fallback to a float type is no quantization: the weight stays as the model holds it.
            if (dtype_traits(fit).is_quantized && dtype_traits(fit).from_float) {
                model.quantize_linear(*l, fit, "quantize");
                p.weight_type = std::string(dtype_name(fit));
            } else if (p.fallback.empty()) {
                p.fallback = "rows of " + std::to_string(p.n_in) + " fit no block type";
            }
        }
        plan.push_back(std::move(p));
    }
    return plan;
}

calib::CalibrationStats collect_calibration(EncoderModel& model, const LabelledData& data, int64_t samples,
                                            const ClassifyOptions& run, const std::vector<W8A8Rule>& rules,
                                            const ProgressFn& progress) {
    if (samples < 1) throw InvalidArgument("[calibrate] --calib-samples must be at least 1");
    const int64_t available = data.count();
    if (available < samples)
        throw InvalidArgument("[calibrate] " + data.source + " holds " + std::to_string(available) + " samples, fewer than the " +
                              std::to_string(samples) + " asked for calibration");
    calib::CalibrationStats stats;
    std::vector<ObserverId> attached;
    for (Linear* l : model.linears()) {
        if (!w8a8_selects(rules, l->name)) continue;
        calib::RangeObserver& range = stats.observers.emplace(l->name, calib::RangeObserver()).first->second;
        // Every row, padding included: the kernels quantize padded rows too.
        attached.push_back(model.observe(*l, [&range](const LinearEvent& e) { range.observe(e.x, e.rows * e.layer.n_in()); }));
    }
    const auto detach = [&] {
        for (const ObserverId id : attached) model.remove_observer(id);
    };
    LabelledData subset = data;
    if (subset.text) subset.text->examples.resize(static_cast<size_t>(samples));
    if (subset.images) {
        auto& im = *subset.images;
        im.pixels.resize(static_cast<size_t>(samples * im.channels * im.height * im.width));
        im.labels.resize(static_cast<size_t>(samples));
    }
    // Labels do not matter for calibration; any out-of-range label would only trip the accuracy check.
    if (subset.text) for (auto& e : subset.text->examples) e.label = 0;
    if (subset.images) for (auto& l : subset.images->labels) l = 0;
    try {
        classify_dataset(model, subset, run, progress);
    } catch (...) {
        detach();
        throw;
    }
    detach();
    stats.samples = samples;
    return stats;
}

std::vector<EncoderLinearPlan> apply_w8a8(EncoderModel& model, const std::vector<W8A8Rule>& rules, ActivationQuant activations,
                                          const calib::CalibrationStats* stats, calib::Method method, double percentile,
                                          int32_t activation_bits) {
    if (activation_bits != 8 && activation_bits != 7) throw InvalidArgument("[w8a8] activations must be 8 or 7 bits, not " + std::to_string(activation_bits));
    const int32_t qmax = (1 << activation_bits) - 1;
    std::vector<EncoderLinearPlan> plan;
    for (Linear* l : model.linears()) {
        if (l->role == LayerRole::patch_embed) continue;  // a convolution: kept f32, as PyTorch's dynamic quantization keeps it
        EncoderLinearPlan p;
        p.name = l->name;
        p.n_out = l->n_out();
        p.n_in = l->n_in();
        p.int8 = w8a8_selects(rules, l->name);
        p.rule = w8a8_deciding_rule(rules, RuleTarget{l->name});
        if (p.int8) {
            if (activations == ActivationQuant::static_per_tensor) {
                if (!stats) throw InvalidArgument("[w8a8] static activation quantization needs calibration statistics");
                const auto it = stats->observers.find(l->name);
                if (it == stats->observers.end() || it->second.count() == 0)
                    throw InvalidArgument("[w8a8] the calibration statistics hold nothing for " + l->name +
                                          " (a cache made with other rules or for another model?)");
                p.range = it->second.range(method, percentile);
                p.input = calib::u8_params(p.range, qmax);
            }
            l->int8 = quantize_linear_w8a8(*l, activations, p.input, qmax);
        }
        plan.push_back(std::move(p));
    }
    return plan;
}

EncoderQuantizeReport quantize_encoder(const std::string& input, const std::string& output, const EncoderQuantizeOptions& o,
                                       const ProgressFn& progress) {
    const auto start = std::chrono::steady_clock::now();
    std::error_code ec;
    if (!fs::is_directory(input, ec)) throw InvalidArgument("[quantize] an encoder's quantization needs its HF model directory as input; " + input + " is not one");
    if (fs::exists(output, ec) && fs::equivalent(input, output, ec)) throw InvalidArgument("[quantize] the output would overwrite the input");
    EncoderQuantizeReport r;
    r.input = input;
    r.output = output;
    const bool is_static = o.activations == ActivationQuant::static_per_tensor;
    const bool weight_only = o.weight_type.has_value();
    r.type = weight_only ? std::string(dtype_name(*o.weight_type)) : is_static ? "w8a8-static" : "w8a8-dynamic";
    if (weight_only && is_static) throw InvalidArgument("[quantize] weight-only " + r.type + " has no static activation ranges");
    if (weight_only && (!o.calib_data.empty() || !o.calib_cache.empty()))
        throw InvalidArgument("[quantize] " + r.type + " for an encoder is weight-only: calibration data applies to w8a8-static only");
    if (o.activation_bits != 0 && o.activation_bits != 8 && o.activation_bits != 7)
        throw InvalidArgument("[w8a8] activations must be 8 or 7 bits (or 0: auto), not " + std::to_string(o.activation_bits));
    r.activation_bits_auto = o.activation_bits == 0 && !is_static;
    r.activation_bits = o.activation_bits != 0 ? o.activation_bits : is_static ? 8 : auto_activation_bits();
    if (weight_only) r.activation_bits = 32, r.activation_bits_auto = false;  // activations stay f32
    if (weight_only && o.attention != AttentionPrecision::f32)
        throw InvalidArgument("[quantize] INT8 attention is a W8A8 choice; weight-only " + r.type + " keeps f32 activations and attention");
    const std::vector<W8A8Rule> rules = plan_rules(o.layer_rules);

    const hf::ModelDir dir = hf::open_model_dir(input);
    auto model = EncoderModel::load(input);
    {
        Sha256 h;
        for (const auto* t : dir.weights.tensors()) {
            const Tensor x = dir.weights.tensor(t->name);
            h.update(t->name.data(), t->name.size());
            h.update(x.data(), x.nbytes());
        }
        r.input_sha256 = h.hex();
    }

    calib::CalibrationStats stats;
    if (is_static) {
        r.method = std::string(calib::method_name(o.method));
        if (o.method == calib::Method::percentile) r.method += " " + std::to_string(o.percentile);
        const std::string fingerprint = calibration_fingerprint(r.input_sha256, o);
        if (!o.calib_cache.empty() && fs::exists(o.calib_cache, ec)) {
            stats = calib::CalibrationStats::load(o.calib_cache);
            if (stats.model_fingerprint != fingerprint)
                throw InvalidArgument("[calibrate] " + o.calib_cache + " was made for another model or other samples (" +
                                      stats.model_fingerprint + "; this run: " + fingerprint + "); delete it or name another file");
            r.calib_from_cache = true;
        } else {
            if (o.calib_data.empty()) throw InvalidArgument("[quantize] w8a8-static needs calibration data (--calib FILE) or a --calib-cache");
            const LabelledData calib_data = load_labelled_data(o.calib_data, *model, o.calib_selection);
            stats = collect_calibration(*model, calib_data, o.calib_samples, o.run, rules, progress);
            stats.model_fingerprint = fingerprint;
            if (!o.calib_cache.empty()) stats.save(o.calib_cache);
        }
        r.calib_samples = stats.samples;
    }
    if (weight_only) r.linears = apply_weight_only(*model, rules, *o.weight_type);
    else r.linears = apply_w8a8(*model, rules, o.activations, is_static ? &stats : nullptr, o.method, o.percentile, r.activation_bits);
    if (o.attention == AttentionPrecision::int8) {
        // Only the families whose self-attention runs EncoderPass::self_attention (bidirectional, no relative terms).
        const EncoderFamily f = model->config().family;
        if (f == EncoderFamily::deberta_v2 || f == EncoderFamily::resnet || f == EncoderFamily::efficientnet)
            throw InvalidArgument("[quantize] INT8 attention covers BERT-style and ViT-style self-attention; " + model->config().architecture +
                                  " has " + (f == EncoderFamily::deberta_v2 ? "DeBERTa's disentangled attention" : "no attention"));
        model->weights().attention = AttentionPrecision::int8;
    }
    r.attention = std::string(attention_precision_name(model->weights().attention));

    // The word embeddings: only gathered, never multiplied, so they take a compact type (a pass over the model).
    Tensor& words = model->weights().word_embd;
    // (CLIP's text token embedding stays as the file has it: the container rewrites only *word_embeddings.)
    if (!model->is_vision() || model->is_clip()) r.embeddings = std::string(dtype_name(words.dtype())) + " (kept)";
    if (!model->is_vision() && o.embedding_type != words.dtype()) {
        const DType to = o.embedding_type;
        const int64_t rows = words.dim(0), cols = words.dim(1);
        const auto row_bytes = dtype_bytes(to, static_cast<uint64_t>(cols));
        if (!row_bytes || !dtype_traits(to).from_float) {
            r.embeddings += ": rows of " + std::to_string(cols) + " do not fit " + std::string(dtype_name(to)) + " blocks";
        } else {
            const std::vector<float> v = words.to_float();
            for (const float f : v)
                if (!std::isfinite(f)) throw InvalidArgument("[quantize] the word embeddings of " + input + " hold NaN or Inf");
            Tensor q = Tensor::zeros({rows, cols}, to);
            auto* dst = static_cast<uint8_t*>(q.mutable_data());
            for (int64_t i = 0; i < rows; ++i) dtype_traits(to).from_float(v.data() + i * cols, dst + static_cast<uint64_t>(i) * *row_bytes, cols);
            words = std::move(q);
            r.embeddings = std::string(dtype_name(to));
        }
    }

    // Load → passes → write: the container is the model as the passes left it.
    SaveOptions save;
    save.metadata = [&](gguf::Writer& w) {
        w.set_string("cq.quantize.type", r.type);
        std::vector<std::string> rule_texts;
        for (const auto& rule : rules) rule_texts.push_back(rule.text());
        w.set_string_array("cq.quantize.rules", rule_texts);
        // 0: "auto", resolved by each CPU that loads the file, so the bytes do not depend on this one
        if (!weight_only) w.set_u32("cq.w8a8.activation_bits", static_cast<uint32_t>(r.activation_bits_auto ? 0 : r.activation_bits));
        if (is_static) w.set_string("cq.quantize.calibration", r.method + ", " + std::to_string(r.calib_samples) + " samples");
        w.set_string("cq.quantize.source_file", fs::path(input).filename().string());
        w.set_string("cq.quantize.source_sha256", r.input_sha256);
    };
    model->save(output, save);
    for (const auto* t : dir.weights.tensors()) r.tensor_bytes_in += t->nbytes;
    {
        const gguf::File written = gguf::File::open(output);
        for (const auto& t : written.tensors()) r.tensor_bytes_out += t.nbytes;
    }
    for (const auto& s : dir.weights.shards()) r.file_bytes_in += fs::file_size(s.path(), ec);
    r.file_bytes_out = fs::file_size(output, ec);
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    return r;
}

}  // namespace cq
