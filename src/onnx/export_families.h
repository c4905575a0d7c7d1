// The per-family graph writers behind export_onnx (src/onnx/export_onnx.cpp dispatches on the model's kind).
#pragma once

#include <string>

#include "cq/detr.h"
#include "cq/encoder.h"
#include "cq/llm.h"
#include "cq/onnx.h"
#include "cq/seq2seq.h"

namespace cq::onnx_export {

void export_decoder(const LanguageModel& model, const std::string& path, const OnnxExportOptions& options, OnnxExportReport& report);
void export_encoder(const EncoderModel& model, const std::string& path, const OnnxExportOptions& options, OnnxExportReport& report);
/// T5, BART, BLIP captioning: Optimum's three graphs into the directory `dir` (export_seq2seq.cpp).
void export_seq2seq(const Seq2SeqModel& model, const std::string& dir, const OnnxExportOptions& options, OnnxExportReport& report);

/// DETR: pixel_values → logits, pred_boxes (export_detr.cpp).
void export_detr(const DetrModel& model, const std::string& path, const OnnxExportOptions& options, OnnxExportReport& report);

}  // namespace cq::onnx_export
