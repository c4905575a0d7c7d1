// A trained decoder written as an HF directory: model.safetensors with every parameter under its HF name (f32,
// written atomically) beside the source directory's config and tokenizer files, so cq and PyTorch load it again.
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "cq/error.h"
#include "cq/io/safetensors.h"
#include "cq/train.h"
#include "io/hf/hf_dir_writer.h"

namespace cq {

void save_hf_dir(const Model& model, std::span<const TrainParam> params, const std::string& dir) {
    namespace fs = std::filesystem;
    const fs::path src(model.path());
    const auto* lm = dynamic_cast<const LanguageModel*>(&model);
    if (!fs::is_directory(src) || (lm && lm->config().family == LlmFamily::llama && lm->config().rope_pairing != RopePairing::half_split))
        throw Unsupported("[finetune] an HF directory can be written only for a model loaded from one ('" + model.path() +
                          "' is not); write a .gguf instead");
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec) throw IoError("[finetune] cannot create the directory '" + dir + "': " + ec.message());
    if (fs::equivalent(src, dir, ec)) throw InvalidArgument("[finetune] the output directory is the model's own: '" + dir + "'");

    std::vector<safetensors::TensorToWrite> entries;
    for (const TrainParam& p : params) {
        const std::vector<int64_t> shape = !p.hf_shape.empty() ? p.hf_shape : p.hf_transposed ? std::vector<int64_t>{p.shape[1], p.shape[0]} : p.shape;
        entries.push_back({p.hf_name, "F32", shape, static_cast<uint64_t>(p.numel) * sizeof(float), p.hf_transposed ? nullptr : p.value});
    }
    std::vector<float> t;
    safetensors::write_file((fs::path(dir) / "model.safetensors").string(), entries, {{"format", "pt"}, {"written_by", "cq finetune"}},
                            [&](size_t i, const std::function<void(const void*, size_t)>& write) {
                                // GPT-2's Conv1D: [out, in] as trained → [in, out] as the file holds it
                                const TrainParam& p = params[i];
                                const int64_t rows = p.shape[0], cols = p.shape[1];
                                t.resize(static_cast<size_t>(p.numel));
                                for (int64_t r = 0; r < rows; ++r)
                                    for (int64_t c = 0; c < cols; ++c) t[static_cast<size_t>(c * rows + r)] = p.value[r * cols + c];
                                write(t.data(), t.size() * sizeof(float));
                            });
    hf::copy_side_files(src, dir, "[finetune]", /*with_config=*/true);
}

}  // namespace cq
