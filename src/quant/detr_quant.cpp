// DETR's quantized forms, in memory: W8A8 (dynamic per-token activations, or static per-tensor ranges observed over
// calibration images) and weight-only blocks (Q4_0 …) on the Linears a rule list selects; rows that are not whole blocks
// of the weight type stay as they are and are reported; quantize_detr writes either into cq's DETR container.
#include <algorithm>
#include <chrono>
#include <filesystem>
#include <optional>

#include "cq/detr.h"
#include "cq/error.h"
#include "quant/container_quant_type.h"
#include "cq/io/gguf_writer.h"

namespace cq {

std::vector<W8A8Rule> detr_default_w8a8_rules() {
    // "*.layer.*": the backbone blocks' path convs (…layers.N.layer.M), not their shortcuts; the transformer's encoder and
    // decoder layers. The stem, input_projection and the heads are few FLOPs and feed every box: they stay f32.
    const auto rule = [](const char* pattern, bool int8) {
        W8A8Rule r;
        r.scope.pattern = pattern;
        r.int8 = int8;
        return r;
    };
    return {rule("*", false), rule("*.layer.*", true), rule("model.encoder.layers.*", true), rule("model.decoder.layers.*", true)};
}

int64_t quantize_detr_w8a8(DetrModel& model, ActivationQuant activations, const DetectionSet* calib, calib::Method method, double percentile,
                           const std::vector<W8A8Rule>& rules) {
    const bool is_static = activations == ActivationQuant::static_per_tensor;
    if (is_static && (!calib || calib->count == 0)) throw InvalidArgument("[w8a8] static activation ranges for DETR need calibration images");
    const int32_t qmax = (1 << auto_activation_bits()) - 1;
    std::vector<Linear*> chosen;
    for (Linear* l : model.linears())
        if (w8a8_selects(rules, l->name)) chosen.push_back(l);
    std::vector<calib::RangeObserver> ranges(chosen.size());
    if (is_static) {
        // every chosen Linear's inputs over the calibration images (FP32 forward passes), then one range each
        for (Linear* l : chosen) l->int8.reset();
        std::vector<ObserverId> ids;
        for (size_t i = 0; i < chosen.size(); ++i)
            ids.push_back(model.observe(*chosen[i], [r = &ranges[i]](const LinearEvent& e) { r->observe(e.x, e.rows * e.layer.n_in()); }));
        try {
            run_detr(model, *calib, 1.0f);
        } catch (...) {
            for (const ObserverId id : ids) model.remove_observer(id);
            throw;
        }
        for (const ObserverId id : ids) model.remove_observer(id);
    }
    for (size_t i = 0; i < chosen.size(); ++i) {
        const calib::U8Params p = is_static ? calib::u8_params(ranges[i].range(method, percentile), qmax) : calib::U8Params{1.0f, 0};
        chosen[i]->int8.reset();  // quantize the float weights, not a previous W8A8 form
        chosen[i]->int8 = quantize_linear_w8a8(*chosen[i], activations, p, qmax);
    }
    return static_cast<int64_t>(chosen.size());
}

DetrWeightQuantResult quantize_detr_weights(DetrModel& model, DType type, const std::vector<W8A8Rule>& rules) {
    const auto& traits = dtype_traits(type);
    DetrWeightQuantResult r;
    for (Linear* l : model.linears()) {
        if (!w8a8_selects(rules, l->name)) continue;
        if (l->n_in() % static_cast<int64_t>(traits.block_size) != 0) {
            r.fallbacks.push_back(l->name + ": rows of " + std::to_string(l->n_in()) + " are not a multiple of " + std::string(traits.name) +
                                  "'s block of " + std::to_string(traits.block_size));
            continue;
        }
        model.quantize_linear(*l, type, "quantize_detr_weights");
        ++r.quantized;
    }
    return r;
}

DetrQuantizeReport quantize_detr(const std::string& input, const std::string& output, const DetrQuantizeOptions& o) {
    namespace fs = std::filesystem;
    const auto start = std::chrono::steady_clock::now();
    std::error_code ec;
    if (!fs::is_directory(input, ec)) throw InvalidArgument("[quantize] DETR's quantization needs its HF directory as input; " + input + " is not one");
    DetrQuantizeReport r;
    r.input = input;
    r.output = output;
    r.type = o.type;
    const quant::ContainerQuantType kind = quant::parse_container_quant_type(o.type);
    const bool w8a8 = kind.w8a8;
    const std::optional<DType> block = kind.block;
    if (o.type == "w8a8-static" && (o.calib_images.empty() || o.calib_count < 1))
        throw InvalidArgument("[quantize] DETR's w8a8-static needs calibration images (--calib MNIST_IMAGES --calib-range A:B)");
    if (o.type != "w8a8-static" && !o.calib_images.empty()) throw InvalidArgument("[quantize] calibration images apply to w8a8-static only, not " + o.type);
    auto model = DetrModel::load(input);
    r.linears = static_cast<int64_t>(model->linears().size());
    if (w8a8) {
        const ActivationQuant act = o.type == "w8a8-static" ? ActivationQuant::static_per_tensor : ActivationQuant::dynamic_per_token;
        std::optional<DetectionSet> calib;
        if (act == ActivationQuant::static_per_tensor)
            calib = mnist_detection_set(o.calib_images, "", o.calib_first, o.calib_count, model->config().backbone.num_channels, o.canvas_height,
                                        o.canvas_width);
        r.quantized = quantize_detr_w8a8(*model, act, calib ? &*calib : nullptr, o.method, o.percentile, o.rules);
    } else {
        DetrWeightQuantResult q = quantize_detr_weights(*model, *block, o.rules);
        r.quantized = q.quantized;
        r.fallbacks = std::move(q.fallbacks);
    }
    SaveOptions save;
    save.metadata = [&](gguf::Writer& w) {
        w.set_string("cq.quantize.type", r.type);
        if (o.type == "w8a8-static")
            w.set_string("cq.quantize.calibration", std::string(calib::method_name(o.method)) + ", " + std::to_string(o.calib_count) + " canvases from " +
                                                        fs::path(o.calib_images).filename().string());
        w.set_string("cq.quantize.source_file", fs::path(input).filename().string());
    };
    model->save(output, save);
    for (const auto& e : fs::directory_iterator(input, ec))
        if (e.path().extension() == ".safetensors") r.file_bytes_in += fs::file_size(e.path(), ec);
    r.file_bytes_out = fs::file_size(output, ec);
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    return r;
}

}  // namespace cq
