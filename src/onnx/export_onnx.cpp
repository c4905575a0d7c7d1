// export_onnx: picks the family's graph writer; format names and the decode graph's file name.
#include <filesystem>

#include "cq/encoder.h"
#include "cq/error.h"
#include "cq/llm.h"
#include "cq/model.h"
#include "cq/onnx.h"
#include "cq/seq2seq.h"
#include "onnx/export_families.h"

namespace cq {

OnnxFormat onnx_format_from_name(const std::string& name) {
    if (name == "fp32") return OnnxFormat::fp32;
    if (name == "matmulnbits") return OnnxFormat::matmulnbits;
    if (name == "dynamic") return OnnxFormat::dynamic;
    if (name == "qdq") return OnnxFormat::qdq;
    if (name == "trt-qdq") return OnnxFormat::trt_qdq;
    throw InvalidArgument("[onnx] format '" + name + "' is not one of: fp32, matmulnbits, dynamic, qdq, trt-qdq");
}

const char* onnx_format_name(OnnxFormat format) {
    switch (format) {
    case OnnxFormat::fp32: return "fp32";
    case OnnxFormat::matmulnbits: return "matmulnbits";
    case OnnxFormat::dynamic: return "dynamic";
    case OnnxFormat::qdq: return "qdq";
    case OnnxFormat::trt_qdq: return "trt-qdq";
    }
    return "?";
}

std::string onnx_with_past_path(const std::string& path) {
    std::filesystem::path p(path);
    const std::string stem = p.extension() == ".onnx" ? p.stem().string() : p.filename().string();
    return (p.parent_path() / (stem + "_with_past.onnx")).string();
}

OnnxExportReport export_onnx(const Model& model, const std::string& path, const OnnxExportOptions& options) {
    if (options.format == OnnxFormat::dynamic || options.format == OnnxFormat::qdq || options.format == OnnxFormat::trt_qdq) {
        bool any = false;
        for (const Linear* l : model.linears()) any = any || l->int8;
        if (!any)
            throw InvalidArgument(std::string("[onnx] --format ") + onnx_format_name(options.format) + ": " + model.path() +
                                  " holds no W8A8 Linears; quantize it first (cq quantize MODEL OUT.gguf --type w8a8-static --calib DATA, "
                                  "or w8a8-dynamic) and export that file");
    }
    OnnxExportReport report;
    report.architecture = model.architecture();
    report.format = options.format;
    report.opset = options.opset;
    if (const auto* lm = dynamic_cast<const LanguageModel*>(&model)) onnx_export::export_decoder(*lm, path, options, report);
    else if (const auto* enc = dynamic_cast<const EncoderModel*>(&model)) onnx_export::export_encoder(*enc, path, options, report);
    else if (const auto* s2s = dynamic_cast<const Seq2SeqModel*>(&model)) onnx_export::export_seq2seq(*s2s, path, options, report);
    else if (const auto* detr = dynamic_cast<const DetrModel*>(&model)) onnx_export::export_detr(*detr, path, options, report);
    else throw Unsupported("[onnx] cannot export a model of architecture '" + model.architecture() + "'");
    if (options.format == OnnxFormat::trt_qdq)
        for (const auto& f : report.files)
            if (const auto issues = check_tensorrt_qdq(f.path); !issues.empty())
                throw Error("[onnx] the trt-qdq graph " + f.path + " breaks TensorRT's rules (cq's bug): " + issues.front());
    return report;
}

}  // namespace cq
