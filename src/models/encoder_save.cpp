// EncoderModel::save: cq's encoder container (models/model_container.h), written from the model as it is now: what a
// pass changed (a Linear's W8A8 form or block-quantized weight, the word embeddings' type) as the model holds it,
// everything else as the HF directory has it.
#include <filesystem>

#include "cq/encoder.h"
#include "cq/error.h"
#include "models/model_container.h"

namespace cq {

namespace fs = std::filesystem;

void EncoderModel::save(const std::string& path, const SaveOptions& options) const {
    std::error_code ec;
    if (!fs::is_directory(path_, ec))
        throw Unsupported("[save] " + path_ + " is already cq's encoder container; save a model loaded from its HF directory");
    const Tensor& words = weights_.word_embd;
    SaveOptions with_attention = options;
    if (weights_.attention != AttentionPrecision::f32)
        with_attention.metadata = [&options, this](gguf::Writer& w) {
            if (options.metadata) options.metadata(w);
            w.set_string(container::kAttentionPrecisionKey, std::string(attention_precision_name(weights_.attention)));
        };
    container::write(path_, path, "cq-encoder", linears(),
                     [&words](const std::string& name, DType file_type) -> const Tensor* {
                         // the word embeddings in the type a pass gave them (only gathered, never multiplied)
                         return name.ends_with("word_embeddings.weight") && words.ndim() == 2 && words.dtype() != file_type ? &words : nullptr;
                     },
                     with_attention);
}

}  // namespace cq
