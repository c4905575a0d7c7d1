// export_onnx: picks the family's graph writer; format names and the decode graph's file name.
#include <filesystem>

#include "cq/encoder.h"
#include "cq/error.h"
#include "cq/llm.h"
#include "cq/onnx.h"
#include "onnx/export_families.h"

namespace cq {

OnnxFormat onnx_format_from_name(const std::string& name) {
    if (name == "fp32") return OnnxFormat::fp32;
    if (name == "matmulnbits") return OnnxFormat::matmulnbits;
    throw InvalidArgument("[onnx] format '" + name + "' is not one of: fp32, matmulnbits");
}

const char* onnx_format_name(OnnxFormat format) {
    switch (format) {
    case OnnxFormat::fp32: return "fp32";
    case OnnxFormat::matmulnbits: return "matmulnbits";
    }
    return "?";
}

std::string onnx_with_past_path(const std::string& path) {
    std::filesystem::path p(path);
    const std::string stem = p.extension() == ".onnx" ? p.stem().string() : p.filename().string();
    return (p.parent_path() / (stem + "_with_past.onnx")).string();
}

OnnxExportReport export_onnx(const Model& model, const std::string& path, const OnnxExportOptions& options) {
    OnnxExportReport report;
    report.architecture = model.architecture();
    report.format = options.format;
    report.opset = options.opset;
    if (const auto* lm = dynamic_cast<const LanguageModel*>(&model)) onnx_export::export_decoder(*lm, path, options, report);
    else if (const auto* enc = dynamic_cast<const EncoderModel*>(&model)) onnx_export::export_encoder(*enc, path, options, report);
    else throw Unsupported("[onnx] cannot export a model of architecture '" + model.architecture() + "'");
    return report;
}

}  // namespace cq
