// A trained decoder written as an HF directory: model.safetensors with every parameter under its HF name (f32,
// written atomically) beside the source directory's config and tokenizer files, so cq and PyTorch load it again.
#include <sys/stat.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cq/atomic_file.h"
#include "cq/error.h"
#include "cq/train.h"

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

    // safetensors: u64 header length, the JSON header (padded with spaces to 8 bytes), then the tensors back to back.
    nlohmann::json header = nlohmann::json::object();
    uint64_t offset = 0;
    for (const TrainParam& p : params) {
        const uint64_t bytes = static_cast<uint64_t>(p.numel) * sizeof(float);
        const std::vector<int64_t> shape = !p.hf_shape.empty() ? p.hf_shape : p.hf_transposed ? std::vector<int64_t>{p.shape[1], p.shape[0]} : p.shape;
        header[p.hf_name] = {{"dtype", "F32"}, {"shape", shape}, {"data_offsets", {offset, offset + bytes}}};
        offset += bytes;
    }
    header["__metadata__"] = {{"format", "pt"}, {"written_by", "cq finetune"}};
    std::string text = header.dump();
    text.resize((text.size() + 7) / 8 * 8, ' ');
    AtomicFile out((fs::path(dir) / "model.safetensors").string());
    const uint64_t n = text.size();
    out.write(&n, sizeof n);
    out.write(text.data(), text.size());
    std::vector<float> t;
    for (const TrainParam& p : params) {
        if (!p.hf_transposed) {
            out.write(p.value, static_cast<size_t>(p.numel) * sizeof(float));
            continue;
        }
        // GPT-2's Conv1D: [out, in] as trained → [in, out] as the file holds it
        const int64_t rows = p.shape[0], cols = p.shape[1];
        t.resize(static_cast<size_t>(p.numel));
        for (int64_t r = 0; r < rows; ++r)
            for (int64_t c = 0; c < cols; ++c) t[static_cast<size_t>(c * rows + r)] = p.value[r * cols + c];
        out.write(t.data(), t.size() * sizeof(float));
    }
    out.commit();

    for (const char* name : {"config.json", "generation_config.json", "tokenizer.model", "tokenizer.json", "tokenizer_config.json",
                             "special_tokens_map.json", "vocab.json", "vocab.txt", "merges.txt", "added_tokens.json",
                             "preprocessor_config.json"}) {
        if (!fs::exists(src / name)) continue;
        fs::copy_file(src / name, fs::path(dir) / name, fs::copy_options::overwrite_existing, ec);
        if (ec) throw IoError("[finetune] cannot copy '" + (src / name).string() + "' to '" + dir + "': " + ec.message());
        fs::permissions(fs::path(dir) / name, fs::perms::owner_read | fs::perms::owner_write, fs::perm_options::add, ec);
    }
}

}  // namespace cq
