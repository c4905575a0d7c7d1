// Static W8A8 of an imported ONNX model: calibration through the spine's Linear observers (the im2col patches of a
// Conv are its Linear's input), then the same per-channel int8 weights and u8 activations as encoder W8A8.
#include "cq/calibration.h"
#include "cq/classify.h"
#include "cq/error.h"
#include "cq/onnx_model.h"
#include "cq/w8a8.h"

namespace cq {

int64_t quantize_onnx_w8a8_static(OnnxModel& model, const std::string& data_path, const DataSelection& selection,
                                  const OnnxImageOptions& image, int64_t samples, int32_t method, double percentile) {
    DataSelection calib = selection;
    if (calib.count < 0 || calib.count > samples) calib.count = samples;
    calib::CalibrationStats stats;
    std::vector<ObserverId> ids;
    for (Linear* l : model.linears()) {
        const std::string name = l->name;
        const int64_t n_in = l->n_in();
        ids.push_back(model.observe(*l, [&stats, name, n_in](const LinearEvent& e) { stats.observe(name, e.x, e.rows * n_in); }));
    }
    try {
        classify_images_onnx(model, data_path, calib, image);
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

}  // namespace cq
