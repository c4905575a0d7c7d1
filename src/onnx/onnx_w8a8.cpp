// Static W8A8 of an imported ONNX model: calibration through the spine's Linear observers (the im2col patches of a
// Conv are its Linear's input), then the same per-channel int8 weights and u8 activations as encoder W8A8.
#include <algorithm>

#include "cq/calibration.h"
#include "cq/classify.h"
#include "cq/error.h"
#include "cq/onnx_model.h"
#include "cq/w8a8.h"

namespace cq {

namespace {
// Observes every Linear's input while `feed` runs the model, then quantizes each Linear with the range its inputs took.
template <class Feed>
int64_t calibrate_and_quantize(OnnxModel& model, Feed feed, int32_t method, double percentile) {
    calib::CalibrationStats stats;
    std::vector<ObserverId> ids;
    for (Linear* l : model.linears()) {
        const std::string name = l->name;
        const int64_t n_in = l->n_in();
        ids.push_back(model.observe(*l, [&stats, name, n_in](const LinearEvent& e) { stats.observe(name, e.x, e.rows * n_in); }));
    }
    try {
        feed();
    } catch (...) {
        for (ObserverId id : ids) model.remove_observer(id);
        throw;
    }
    for (ObserverId id : ids) model.remove_observer(id);
    int64_t quantized = 0;
    for (Linear* l : model.linears()) {
        const auto it = stats.observers.find(l->name);
        if (it == stats.observers.end()) throw InvalidArgument("[onnx] " + l->name + " saw no calibration data");
        const calib::Range r = it->second.range(static_cast<calib::Method>(method), percentile);
        l->int8 = quantize_linear_w8a8(*l, ActivationQuant::static_per_tensor, calib::u8_params(r, 255), 255);
        l->modified_by = "w8a8-static";
        ++quantized;
    }
    return quantized;
}
}  // namespace

int64_t quantize_onnx_w8a8_static(OnnxModel& model, const std::string& data_path, const DataSelection& selection,
                                  const OnnxImageOptions& image, int64_t samples, int32_t method, double percentile) {
    DataSelection calib = selection;
    if (calib.count < 0 || calib.count > samples) calib.count = samples;
    return calibrate_and_quantize(model, [&] { classify_images_onnx(model, data_path, calib, image); }, method, percentile);
}

int64_t quantize_onnx_w8a8_static(OnnxModel& model, const float* inputs, int64_t samples, int64_t batch, int32_t method,
                                  double percentile) {
    if (samples <= 0 || batch <= 0) throw InvalidArgument("[onnx] calibration needs at least one sample and a positive batch");
    int64_t per_sample = 1;
    for (size_t d = 1; d < model.input_shape().size(); ++d) per_sample *= model.input_shape()[d];
    return calibrate_and_quantize(model, [&] {
        for (int64_t b0 = 0; b0 < samples; b0 += batch) model.run(inputs + b0 * per_sample, std::min(batch, samples - b0));
    }, method, percentile);
}

}  // namespace cq
