// The ONNX branch of `cq quantize`: an imported .onnx model (cq/onnx_model.h) calibrated for static W8A8 and written
// back as an ONNX QDQ graph, with the file sizes and, with --eval, cq's FP32 against cq's W8A8 on labelled images.
#include <cstdio>
#include <filesystem>
#include <optional>

#include "commands/format.h"
#include "commands/json_reports.h"
#include "commands/quantize_w8a8.h"
#include "cq/classify.h"
#include "cq/error.h"
#include "cq/onnx_model.h"

namespace cq::cli {

namespace {
std::string percent(double v) {
    char b[32];
    std::snprintf(b, sizeof b, "%.2f %%", 100.0 * v);
    return b;
}
}  // namespace

int run_quantize_onnx(W8A8CliOptions& o, const std::string& input, const std::string& output, const std::string& type,
                      const std::string& eval_data, bool json) {
    if (type != "w8a8-static")
        throw InvalidArgument("--type '" + type + "': an .onnx model is quantized with --type w8a8-static (written as a QDQ graph)");
    if (o.quant.calib_data.empty()) throw InvalidArgument("--type w8a8-static on an .onnx model needs --calib IMAGES (MNIST idx or an image folder)");
    if (!output.ends_with(".onnx")) throw InvalidArgument("the output of an .onnx model is an .onnx file (QDQ graph), not '" + output + "'");
    const auto method = calib::parse_method(o.calib_method);
    if (!method) throw InvalidArgument("--calib-method '" + o.calib_method + "' is not one of minmax, percentile, mse, entropy");
    DataSelection calib;
    std::tie(calib.first, calib.count) = parse_sample_range(o.calib_range, "--calib-range");
    const OnnxImageOptions image{1.0f, {}, {}, o.quant.run.batch};  // raw 0..255 pixels, as cq eval's default

    auto model = OnnxModel::load(input);
    std::optional<ClassificationResult> fp32, w8a8;
    DataSelection eval;
    if (!eval_data.empty()) {
        eval = o.eval_selection;
        std::tie(eval.first, eval.count) = parse_sample_range(o.eval_range, "--eval-range");
        fp32 = classify_images_onnx(*model, eval_data, eval, image);
    }
    const int64_t quantized = quantize_onnx_w8a8_static(*model, o.quant.calib_data, calib, image, o.quant.calib_samples,
                                                        static_cast<int32_t>(*method), o.quant.percentile);
    const OnnxQdqReport r = model->write_qdq(output);
    if (fp32) w8a8 = classify_images_onnx(*model, eval_data, eval, image);
    const uint64_t bytes_in = std::filesystem::file_size(input);
    if (json) {
        nlohmann::json j{{"quantize",
                          {{"input", input}, {"output", output}, {"type", type}, {"calib_method", o.calib_method}, {"linears_quantized", quantized},
                           {"qdq_nodes", r.quantized}, {"float_linears", r.float_linears}, {"bias_adds_folded", r.bias_adds_folded}, {"opset", r.opset},
                           {"file_bytes_in", bytes_in}, {"file_bytes_out", r.file_bytes}}}};
        if (fp32)
            j["eval"] = {{"data", eval_data}, {"fp32", classification_to_json(*fp32)}, {"w8a8_static", classification_to_json(*w8a8)},
                         {"agreement", agreement_to_json(compare_predictions(*fp32, *w8a8))}};
        print_json(j);
        return 0;
    }
    std::printf("%s → %s (w8a8-static QDQ, opset %lld, calibration %s): %lld Conv/Gemm/MatMul with Q/DQ, %lld float, %lld bias Adds folded\n",
                input.c_str(), output.c_str(), static_cast<long long>(r.opset), o.calib_method.c_str(), static_cast<long long>(r.quantized),
                static_cast<long long>(r.float_linears), static_cast<long long>(r.bias_adds_folded));
    char ratio[32];
    std::snprintf(ratio, sizeof ratio, "÷%.2f", static_cast<double>(bytes_in) / static_cast<double>(std::max<uint64_t>(1, r.file_bytes)));
    print_table({{"", "before", "after", "size"}, {"file bytes", group_digits(bytes_in), group_digits(r.file_bytes), ratio}}, {false, true, true, true}, 2);
    if (fp32) {
        const PredictionAgreement a = compare_predictions(*fp32, *w8a8);
        std::printf("\n%s (%lld samples), cq's interpreter:\n  fp32:        accuracy %s, %.3f ms / image\n  w8a8 static: accuracy %s, %.3f ms / image; "
                    "agreement with fp32 %s, max |Δoutput| %.3g\n",
                    eval_data.c_str(), static_cast<long long>(fp32->samples), percent(fp32->accuracy).c_str(),
                    1e3 * fp32->seconds / static_cast<double>(std::max<int64_t>(1, fp32->samples)), percent(w8a8->accuracy).c_str(),
                    1e3 * w8a8->seconds / static_cast<double>(std::max<int64_t>(1, w8a8->samples)), percent(a.agreement).c_str(), a.max_abs_logit_diff);
    }
    return 0;
}

}  // namespace cq::cli
