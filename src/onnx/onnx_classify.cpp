// classify_images_onnx: MNIST idx files or an image folder through an imported ONNX classifier (cq eval MODEL.onnx).
#include <algorithm>
#include <chrono>
#include <filesystem>

#include "cq/classify.h"
#include "cq/datasets.h"
#include "cq/error.h"
#include "cq/cpu_features.h"
#include "cq/kernels.h"
#include "cq/onnx_model.h"

namespace cq {

OnnxImageInput onnx_image_input(const OnnxModel& model) {
    const auto& s = model.input_shape();
    if (s.size() != 4 || s[1] <= 0 || s[2] <= 0 || s[3] <= 0)
        throw Unsupported("[onnx] " + model.path() + ": input '" + model.input_name() + "' is not a fixed-size image batch [N, C, H, W] or [N, H, W, C]");
    // channels-last when the last dimension looks like channels and the second does not
    const bool nhwc = (s[3] == 1 || s[3] == 3) && !(s[1] == 1 || s[1] == 3);
    return nhwc ? OnnxImageInput{s[3], s[1], s[2], true} : OnnxImageInput{s[1], s[2], s[3], false};
}

ClassificationResult classify_images_onnx(OnnxModel& model, const std::string& data_path, const DataSelection& selection,
                                          const OnnxImageOptions& o) {
    namespace fs = std::filesystem;
    const auto t0 = std::chrono::steady_clock::now();
    const OnnxImageInput in = onnx_image_input(model);
    if (!o.mean.empty() && (static_cast<int64_t>(o.mean.size()) != in.channels || o.std.size() != o.mean.size()))
        throw InvalidArgument("[onnx] mean / std need one value per channel (" + std::to_string(in.channels) + ")");
    data::ImageDataset d;
    const std::string name = fs::path(data_path).filename().string();
    if (fs::is_directory(data_path)) {
        d = data::load_image_folder(data_path, in.channels, in.height, in.width);
    } else if (name.find("images-idx3") != std::string::npos) {
        std::string labels = selection.labels_path;
        if (labels.empty()) labels = (fs::path(data_path).parent_path() / std::string(name).replace(name.find("images-idx3"), 11, "labels-idx1")).string();
        d = data::load_mnist(data_path, labels, selection.first, selection.count);
    } else {
        throw InvalidArgument("[onnx] " + data_path + ": an imported model evaluates MNIST idx files or image folders");
    }
    if (d.channels != in.channels || d.height != in.height || d.width != in.width)
        throw InvalidArgument("[onnx] " + data_path + " holds " + std::to_string(d.channels) + "×" + std::to_string(d.height) + "×" +
                              std::to_string(d.width) + " images; the model takes " + std::to_string(in.channels) + "×" +
                              std::to_string(in.height) + "×" + std::to_string(in.width));
    const int64_t n = d.count(), plane = in.height * in.width, per = in.channels * plane;
    ClassificationResult r;
    r.samples = n;
    r.labels = d.labels;
    const int64_t batch = std::max<int64_t>(1, o.batch);
    std::vector<float> x;
    for (int64_t b0 = 0; b0 < n; b0 += batch) {
        const int64_t nb = std::min(batch, n - b0);
        x.assign(static_cast<size_t>(nb * per), 0.0f);
        for (int64_t i = 0; i < nb; ++i)
            for (int64_t c = 0; c < in.channels; ++c)
                for (int64_t p = 0; p < plane; ++p) {
                    float v = static_cast<float>(d.pixels[static_cast<size_t>((b0 + i) * per + c * plane + p)]) * o.pixel_scale;
                    if (!o.mean.empty()) v = (v - o.mean[static_cast<size_t>(c)]) / o.std[static_cast<size_t>(c)];
                    x[static_cast<size_t>(i * per + (in.nhwc ? p * in.channels + c : c * plane + p))] = v;
                }
        const std::vector<float> y = model.run(x.data(), nb);
        r.num_labels = model.outputs_per_sample();
        r.logits.insert(r.logits.end(), y.begin(), y.end());
    }
    for (int64_t i = 0; i < n; ++i) {
        const auto row = r.logits.begin() + i * r.num_labels;
        const int32_t p = static_cast<int32_t>(std::max_element(row, row + r.num_labels) - row);
        r.predictions.push_back(p);
        r.correct += p == r.labels[static_cast<size_t>(i)];
    }
    r.accuracy = n > 0 ? static_cast<double>(r.correct) / static_cast<double>(n) : 0.0;
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return r;
}

std::vector<EncoderBenchResult> bench_onnx(std::span<OnnxModel* const> models, int64_t batch, int64_t repetitions, int64_t warmup,
                                           const OnnxImageOptions& image) {
    if (models.empty() || batch < 1 || repetitions < 1 || warmup < 0) throw InvalidArgument("[bench] batch and repetitions must be at least 1");
    const OnnxImageInput in = onnx_image_input(*models[0]);
    const int64_t per = in.channels * in.height * in.width;
    std::vector<float> x(static_cast<size_t>(batch * per));
    for (size_t i = 0; i < x.size(); ++i) {  // a fixed pixel pattern (as bench_encoder's), scaled and normalised as eval does
        float v = static_cast<float>(static_cast<uint8_t>((i * 2654435761u) >> 24)) * image.pixel_scale;
        if (!image.mean.empty()) {
            const size_t c = in.nhwc ? i % static_cast<size_t>(in.channels) : (i / static_cast<size_t>(in.height * in.width)) % static_cast<size_t>(in.channels);
            v = (v - image.mean[c % image.mean.size()]) / image.std[c % image.std.size()];
        }
        x[i] = v;
    }
    std::vector<EncoderBenchResult> results(models.size());
    for (size_t m = 0; m < models.size(); ++m) {
        if (onnx_image_input(*models[m]).channels * onnx_image_input(*models[m]).height * onnx_image_input(*models[m]).width != per)
            throw InvalidArgument("[bench] the models take images of different sizes");
        results[m].batch = batch;
        results[m].repetitions = repetitions;
        results[m].isa = std::string(isa_level_name(kernel_table().level));
        for (int64_t i = 0; i < warmup; ++i) models[m]->run(x.data(), batch);
    }
    for (int64_t r = 0; r < repetitions; ++r)
        for (size_t m = 0; m < models.size(); ++m) {
            const auto t0 = std::chrono::steady_clock::now();
            models[m]->run(x.data(), batch);
            results[m].ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
        }
    for (auto& res : results) summarize_timings(res);
    return results;
}

}  // namespace cq
