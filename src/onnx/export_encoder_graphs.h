// The encoder families' ONNX graph builders, one per family group (export_encoder.cpp checks the allow-list and
// dispatches): each declares the graph's inputs and outputs (Optimum's names) and emits cq's forward pass as ONNX ops.
#pragma once

#include "cq/encoder.h"
#include "onnx/export_common.h"
#include "ops/encoder_ops.h"

namespace cq::onnx_export {

/// BERT / RoBERTa / DistilBERT / LayoutLM (export_encoder.cpp): input_ids, [bbox,] attention_mask[, token_type_ids] →
/// logits [batch, labels] (sequence classifiers), logits [batch, seq, labels] (token classifiers) or
/// last_hidden_state [batch, seq, hidden] (a bare BertModel).
void bert_family_graph(Emitter& e, const EncoderConfig& c, const EncoderWeights& w, ops::Activation act);
/// ViT and DeiT (export_vision.cpp): pixel_values → logits (DeiT with teacher: the mean of both heads).
void vit_graph(Emitter& e, const EncoderConfig& c, const EncoderWeights& w, ops::Activation act);
/// ViT / DeiT / CLIP vision: pixel_values [B, C, H, W] → [B, prefix + patches, hidden]: the patch conv, the CLS
/// (DeiT: and distillation) token in front, learned positions added.
std::string vit_tokens(Emitter& e, const EncoderConfig& c, const EncoderWeights& w, const std::string& pixel_values);
/// ResNet and EfficientNet (export_cnn.cpp): pixel_values → logits; convolutions with their BatchNorm folded in.
void resnet_graph(Emitter& e, const EncoderConfig& c, const EncoderWeights& w, ops::Activation act);
void efficientnet_graph(Emitter& e, const EncoderConfig& c, const EncoderWeights& w, ops::Activation act);
/// CLIP (export_clip.cpp): both towers and the logits (Optimum's graph), or one tower's embeddings.
enum class ClipGraph { joint, text, vision };
void clip_graph(Emitter& e, const EncoderConfig& c, const EncoderWeights& w, ClipGraph which);
/// DeBERTa v2 / v3 (export_deberta.cpp): input_ids, attention_mask[, token_type_ids] → logits.
void deberta_graph(Emitter& e, const EncoderConfig& c, const EncoderWeights& w, ops::Activation act);

}  // namespace cq::onnx_export
