// Per-Linear activation statistics gathered by observers while a model runs on real data: for every
// input channel Σx² (→ mean square, the importance-matrix statistic) and max |x|, the channels that stand
// out, and the output's range. One code path for every family: decoder LLMs on text, encoders and ViT on
// a labelled dataset.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "cq/classify.h"
#include "cq/eval.h"
#include "cq/model.h"

namespace cq {

struct LayerStatsOptions {
    // decoder LLMs: the text is cut into chunks of n_ctx tokens, BOS first (llama.cpp's imatrix / perplexity scheme)
    int64_t n_ctx = 512;
    int64_t max_chunks = -1;  // −1: every whole chunk
    // encoders / ViT: the samples of the selection, in batches; padding rows are not counted
    DataSelection selection;
    ClassifyOptions run;
    int64_t top_channels = 8;  // outlier channels listed per Linear
};

struct ChannelOutlier {
    int64_t channel = 0;
    float absmax = 0;
    double mean_square = 0;
};

struct LinearStats {
    std::string name, source_name;
    LayerRole role = LayerRole::other;
    int64_t block = -1, n_in = 0, n_out = 0;
    std::string format;
    int64_t rows = 0;                         // observed rows (tokens / patches / samples)
    std::vector<double> input_mean_square;    // [n_in]: mean over rows of x²
    std::vector<float> input_absmax;          // [n_in]: max over rows of |x|
    double input_mean_square_all = 0;         // mean over channels of input_mean_square
    float input_absmax_all = 0;
    std::vector<ChannelOutlier> outliers;     // channels with the largest max |x|, largest first
    double output_mean = 0, output_mean_square = 0;
    float output_absmax = 0;
};

struct LayerStatsReport {
    std::string model, data;
    ModelKind kind = ModelKind::decoder;
    int64_t units = 0;   // chunks (LLMs) or samples (encoders)
    int64_t tokens = 0;  // rows through the first Linear
    std::vector<LinearStats> linears;  // execution order
    double seconds = 0;
};

/// Runs `model` over `data_path` (a text file for decoder LLMs; a TSV / MNIST idx / image folder for
/// encoders and ViT) with an observer on every Linear, and returns each one's statistics.
LayerStatsReport collect_layer_stats(Model& model, const std::string& data_path, const LayerStatsOptions& options,
                                     const ProgressFn& progress = {});

}  // namespace cq
