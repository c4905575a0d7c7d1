// The per-family graph writers behind export_onnx (src/onnx/export_onnx.cpp dispatches on the model's kind).
#pragma once

#include <string>

#include "cq/encoder.h"
#include "cq/llm.h"
#include "cq/onnx.h"

namespace cq::onnx_export {

void export_decoder(const LanguageModel& model, const std::string& path, const OnnxExportOptions& options, OnnxExportReport& report);
void export_encoder(const EncoderModel& model, const std::string& path, const OnnxExportOptions& options, OnnxExportReport& report);

}  // namespace cq::onnx_export
