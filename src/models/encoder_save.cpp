// EncoderModel::save: cq's encoder container, written from the model as it is now. Tensors follow the
// HF directory's order; what a pass changed (a Linear's W8A8 form, the word embeddings' type) is written
// as the model holds it, everything else as the file has it.
#include <algorithm>
#include <cstring>
#include <functional>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "cq/atomic_file.h"
#include "cq/encoder.h"
#include "cq/error.h"
#include "cq/io/gguf_writer.h"
#include "cq/w8a8.h"
#include "io/hf/hf_model.h"

namespace cq {

namespace fs = std::filesystem;

namespace {

// The HF files a container carries so that it loads without its directory.
const char* const kEmbeddedFiles[] = {"config.json",   "preprocessor_config.json", "tokenizer_config.json", "special_tokens_map.json",
                                      "tokenizer.json", "vocab.txt",                "vocab.json",            "merges.txt",
                                      "spm.model"};  // CLIP's tokenizer too; DeBERTa's SentencePiece model

std::string read_text_file(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    if (!in) throw IoError("[save] cannot read " + p.string());
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}

}  // namespace

void EncoderModel::save(const std::string& path, const SaveOptions& options) const {
    std::error_code ec;
    if (!fs::is_directory(path_, ec))
        throw Unsupported("[save] " + path_ + " is already cq's encoder container; save a model loaded from its HF directory");
    if (fs::exists(path, ec) && fs::equivalent(path_, path, ec)) throw InvalidArgument("[save] the output would overwrite the input");
    const hf::ModelDir dir = hf::open_model_dir(path_);

    std::map<std::string, const Int8Linear*> int8;
    int32_t act_qmax = 0;
    for (const Linear* l : linears())
        if (l->int8) {
            int8[l->name + ".weight"] = l->int8.get();
            act_qmax = std::max(act_qmax, l->int8->act_qmax);
        }

    gguf::Writer w;
    w.set_string("general.architecture", "cq-encoder");
    w.set_string("general.name", fs::path(path_).filename().string());
    w.set_string("cq.version", CQ_VERSION);
    if (options.metadata) options.metadata(w);
    if (!w.has("cq.w8a8.activation_bits"))  // the bits the Linears were built for (a caller may say 0: auto)
        w.set_u32("cq.w8a8.activation_bits", act_qmax == 127 ? 7u : 8u);
    for (const char* name : kEmbeddedFiles)
        if (fs::is_regular_file(fs::path(path_) / name, ec))
            w.set_string(std::string("cq.encoder.file.") + name, read_text_file(fs::path(path_) / name));

    // Each declared tensor and where its bytes come from.
    std::vector<std::function<void(std::vector<uint8_t>&)>> fill;
    const auto bytes_of = [](const void* p, uint64_t n) {
        return [p, n](std::vector<uint8_t>& buf) { buf.assign(static_cast<const uint8_t*>(p), static_cast<const uint8_t*>(p) + n); };
    };
    const auto floats = [](std::vector<float> v) {
        return [v = std::move(v)](std::vector<uint8_t>& buf) {
            buf.resize(v.size() * sizeof(float));
            std::memcpy(buf.data(), v.data(), buf.size());
        };
    };
    for (const auto* t : dir.weights.tensors()) {
        // BatchNorm's num_batches_tracked is a training counter (a 0-dim I64, which GGUF cannot hold): not needed to run.
        if (t->name.ends_with(".num_batches_tracked")) continue;
        const bool integer = t->dtype == DType::I64 || t->dtype == DType::I32;
        if (t->dtype != DType::F32 && t->dtype != DType::F16 && t->dtype != DType::BF16 && !integer)
            throw Unsupported("[save] tensor '" + t->name + "' is " + t->dtype_name + "; the encoder container holds f32/f16/bf16/i32/i64 tensors only");
        const bool word_embedding = t->name.ends_with("word_embeddings.weight") && t->shape.size() == 2;
        if (word_embedding && weights_.word_embd.dtype() != t->dtype) {
            w.add_tensor(t->name, t->shape, weights_.word_embd.dtype());
            fill.push_back(bytes_of(weights_.word_embd.data(), weights_.word_embd.nbytes()));
            continue;
        }
        const auto q = int8.find(t->name);
        if (q == int8.end()) {
            // A 0-dim tensor (CLIP's logit_scale) is stored as [1]: GGUF gives every tensor at least one dimension.
            w.add_tensor(t->name, t->shape.empty() ? std::vector<int64_t>{1} : t->shape, t->dtype);
            const std::string name = t->name;
            const hf::ModelDir* d = &dir;
            fill.push_back([d, name](std::vector<uint8_t>& buf) {
                const Tensor x = d->weights.tensor(name);
                const auto* p = static_cast<const uint8_t*>(x.data());
                buf.assign(p, p + x.nbytes());
            });
            continue;
        }
        const Int8Linear* l = q->second;
        const std::string base = t->name.substr(0, t->name.size() - std::string(".weight").size());
        w.add_tensor(t->name, {l->n_out, l->n_in}, DType::I8);
        fill.push_back(bytes_of(l->weight.data(), l->weight.nbytes()));
        w.add_tensor(base + ".weight_scale", {l->n_out}, DType::F32);
        fill.push_back(floats(l->weight_scale));
        if (l->activations == ActivationQuant::static_per_tensor) {
            w.add_tensor(base + ".input_scale", {1}, DType::F32);
            fill.push_back(floats({l->input.scale}));
            w.add_tensor(base + ".input_zero_point", {1}, DType::I32);
            fill.push_back(bytes_of(&l->input.zero_point, 4));
        }
    }
    AtomicFile out(path);
    w.write(out, [&](size_t i, std::vector<uint8_t>& buf) {
        fill.at(i)(buf);
        if (options.progress) options.progress(static_cast<int64_t>(i + 1), static_cast<int64_t>(fill.size()));
    });
    out.commit();
}

}  // namespace cq
