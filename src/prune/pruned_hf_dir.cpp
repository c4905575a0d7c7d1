// Unit slicing and the pruned HF directory writer shared by decoder and encoder structured pruning.
#include "prune/pruned_hf_dir.h"

#include <algorithm>
#include <numeric>

#include "cq/error.h"
#include "cq/io/safetensors.h"
#include "io/hf/hf_dir_writer.h"

namespace cq::prune_detail {

namespace fs = std::filesystem;

RemoveOnExit::~RemoveOnExit() {
    std::error_code ec;
    for (const std::string& d : dirs) fs::remove_all(d, ec);
}

std::vector<int64_t> keep_top(const std::vector<double>& score, int64_t n_keep) {
    std::vector<int64_t> idx(score.size());
    std::iota(idx.begin(), idx.end(), int64_t{0});
    std::stable_sort(idx.begin(), idx.end(), [&](int64_t a, int64_t b) { return score[static_cast<size_t>(a)] > score[static_cast<size_t>(b)]; });
    idx.resize(static_cast<size_t>(n_keep));
    std::sort(idx.begin(), idx.end());
    return idx;
}

std::vector<float> take_units(const std::vector<float>& v, std::vector<int64_t>& shape, int dim, const std::vector<int64_t>& units, int64_t unit) {
    const int64_t rows = shape[0], cols = shape.size() > 1 ? shape[1] : 1;
    std::vector<float> out;
    if (dim == 0) {
        for (int64_t u : units) out.insert(out.end(), v.begin() + u * unit * cols, v.begin() + (u + 1) * unit * cols);
        shape[0] = static_cast<int64_t>(units.size()) * unit;
    } else {
        const int64_t n = static_cast<int64_t>(units.size()) * unit;
        out.resize(static_cast<size_t>(rows * n));
        for (int64_t r = 0; r < rows; ++r)
            for (size_t k = 0; k < units.size(); ++k)
                std::copy_n(v.begin() + r * cols + units[k] * unit, unit, out.begin() + r * n + static_cast<int64_t>(k) * unit);
        shape[1] = n;
    }
    return out;
}

std::vector<float> place_units(const std::vector<float>& v, std::vector<int64_t>& shape, int dim, const std::vector<int64_t>& units, int64_t unit,
                               int64_t total) {
    const int64_t rows = shape[0], cols = shape.size() > 1 ? shape[1] : 1;
    std::vector<float> out;
    if (dim == 0) {
        out.assign(static_cast<size_t>(total * unit * cols), 0.0f);
        for (size_t k = 0; k < units.size(); ++k)
            std::copy_n(v.begin() + static_cast<int64_t>(k) * unit * cols, unit * cols, out.begin() + units[k] * unit * cols);
        shape[0] = total * unit;
    } else {
        const int64_t n = total * unit;
        out.assign(static_cast<size_t>(rows * n), 0.0f);
        for (int64_t r = 0; r < rows; ++r)
            for (size_t k = 0; k < units.size(); ++k)
                std::copy_n(v.begin() + r * cols + static_cast<int64_t>(k) * unit, unit, out.begin() + r * n + units[k] * unit);
        shape[1] = n;
    }
    return out;
}

uint64_t write_pruned_dir(const fs::path& source_dir, const std::string& output_dir, const std::vector<PrunedTensor>& tensors,
                          const nlohmann::json& config, const std::string& written_by) {
    std::error_code ec;
    fs::create_directories(output_dir, ec);
    if (ec) throw IoError("[prune] cannot create the directory '" + output_dir + "': " + ec.message());
    std::vector<safetensors::TensorToWrite> entries;
    entries.reserve(tensors.size());
    for (const PrunedTensor& t : tensors) entries.push_back({t.name, "F32", t.shape, t.data.size() * sizeof(float), t.data.data()});
    const uint64_t bytes = safetensors::write_file((fs::path(output_dir) / "model.safetensors").string(), entries,
                                                   {{"format", "pt"}, {"written_by", written_by}});
    hf::write_config(output_dir, config);
    hf::copy_side_files(source_dir, output_dir, "[prune]");
    return bytes;
}

RecoveryReport recovery_report(const DistillReport& distilled, std::chrono::steady_clock::time_point started) {
    RecoveryReport r;
    r.steps = distilled.train.steps;
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    if (!distilled.train.loss_curve.empty()) r.loss_first = distilled.train.loss_curve.front(), r.loss_last = distilled.train.loss_curve.back();
    return r;
}

}  // namespace cq::prune_detail
