// DetrModel's weights (DetrModel::State), shared by the forward pass (detr.cpp) and the ONNX graph writer
// (src/onnx/export_detr.cpp), which lowers the same layers.
#pragma once

#include "cq/detr.h"
#include "models/seq2seq_internal.h"
#include "ops/encoder_ops.h"

namespace cq {

struct DetrModel::State {
    EncoderWeights backbone;  // stem + residual_units of the stages that run
    EncoderScratch scratch;
    ops::Activation backbone_act = ops::Activation::relu, act = ops::Activation::relu;
    Linear input_projection;  // [d_model, feature channels]
    Tensor query_pos;         // [num_queries, d_model]
    Tensor row_embd, col_embd;  // learned positions: [50, d_model / 2] each (empty for sine)
    std::vector<Seq2SeqLayer> encoder, decoder;  // encoder layers have no cross_* members
    Norm decoder_norm;
    Linear class_head;
    Linear bbox[3];
};

}  // namespace cq
