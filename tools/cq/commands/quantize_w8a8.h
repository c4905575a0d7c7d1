// The encoder (W8A8 / weight-only) and encoder–decoder options and runners of `cq quantize`.
#pragma once

#include <string>

#include <CLI/CLI.hpp>

#include "cq/quantize_encoder.h"

namespace cq::cli {

struct W8A8CliOptions {
    EncoderQuantizeOptions quant;
    std::string calib_method = "percentile", calib_range, eval_range, embedding_type = "q8_0", act_bits = "auto";
    DataSelection eval_selection;
    int64_t bench_batch = 8, bench_seq = 128;
    bool act_symmetric = false;  // decoder LLMs' w8a8-static only (LlmW8A8Options::symmetric)
    std::string act_granularity = "token";  // decoder LLMs' w8a8-dynamic: token | tensor
    std::string attention = "f32";          // encoders' W8A8: f32 | int8 (AttentionPrecision)
};

void add_w8a8_options(CLI::App* cmd, W8A8CliOptions& o);
int run_quantize_w8a8(W8A8CliOptions& o, const std::string& input, const std::string& output, const std::string& type,
                      const std::string& eval_data, bool bench, int64_t bench_reps, bool json, const std::string& report_html = "");

/// BART / T5 / BLIP directories: W8A8 or a block type into cq's encoder–decoder container; --eval takes text pairs.
int run_quantize_seq2seq(W8A8CliOptions& o, const std::string& input, const std::string& output, const std::string& type,
                         const std::string& eval_data, bool json, const std::string& report_html = "");

/// A DETR directory: W8A8 (static: --calib MNIST images tiled into canvases) or a block type into cq's DETR container.
int run_quantize_detr(W8A8CliOptions& o, const std::string& input, const std::string& output, const std::string& type, bool json);

/// An imported .onnx model: static W8A8 (--calib images) written back as an ONNX QDQ graph (OnnxModel::write_qdq).
int run_quantize_onnx(W8A8CliOptions& o, const std::string& input, const std::string& output, const std::string& type,
                      const std::string& eval_data, bool json);

}  // namespace cq::cli
