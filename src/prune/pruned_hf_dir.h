// What structured pruning of decoders and of encoders shares: choosing the kept units by score, cutting (and, for
// recovery, re-placing) whole units of rows or columns, writing the smaller HF directory, and the recovery report.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cq/distill.h"
#include "cq/prune.h"

namespace cq::prune_detail {

/// What recovery by distillation reports: steps, wall time (from `started`) and the first and last loss.
RecoveryReport recovery_report(const DistillReport& distilled, std::chrono::steady_clock::time_point started);

/// Directories removed when it goes out of scope: the temporaries of a run that fails or is interrupted half-way.
struct RemoveOnExit {
    std::vector<std::string> dirs;
    RemoveOnExit() = default;
    RemoveOnExit(const RemoveOnExit&) = delete;
    RemoveOnExit& operator=(const RemoveOnExit&) = delete;
    ~RemoveOnExit();
};

/// The kept indices: the n_keep highest scores (ties to the lower index), in increasing order.
std::vector<int64_t> keep_top(const std::vector<double>& score, int64_t n_keep);

/// v: a [rows, cols] tensor (1-D: [rows]) → the `units` (each `unit` consecutive rows for dim 0, columns for dim 1), in
/// order; `shape` becomes the result's.
std::vector<float> take_units(const std::vector<float>& v, std::vector<int64_t>& shape, int dim, const std::vector<int64_t>& units, int64_t unit);
/// The inverse of take_units: unit k of v goes to slot units[k] of `total` units, the other slots are 0.
std::vector<float> place_units(const std::vector<float>& v, std::vector<int64_t>& shape, int dim, const std::vector<int64_t>& units, int64_t unit,
                               int64_t total);

struct PrunedTensor {
    std::string name;
    std::vector<int64_t> shape;
    std::vector<float> data;
};
/// Writes output_dir: model.safetensors (f32, atomically, "written_by" in its metadata), config.json and the
/// tokenizer / preprocessor files of source_dir. Returns model.safetensors' size.
uint64_t write_pruned_dir(const std::filesystem::path& source_dir, const std::string& output_dir, const std::vector<PrunedTensor>& tensors,
                          const nlohmann::json& config, const std::string& written_by);

}  // namespace cq::prune_detail
