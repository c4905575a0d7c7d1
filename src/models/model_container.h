// cq's model container: one GGUF file holding an HF directory's tensors as the passes left them (a Linear's W8A8
// form as I8 weights plus scales, a weight-only Linear in its ggml block type, a re-typed embedding table), with the
// directory's config / tokenizer / preprocessor files embedded so the file alone loads again. Shared by the encoders
// ("cq-encoder") and the encoder–decoders ("cq-seq2seq"); each family's loader reads tensors through Reader::lookup
// exactly as it reads an HF directory's safetensors.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "cq/io/gguf.h"
#include "cq/io/gguf_writer.h"
#include "cq/w8a8.h"
#include "cq/model.h"

namespace cq::container {

/// What the container writes in place of the HF directory's tensor `name` (of type `file_type` there), when a pass
/// replaced a tensor that is not a Linear's weight (an embedding table in another type); null to keep the file's.
using Replacement = std::function<const Tensor*(const std::string& name, DType file_type)>;

/// Writes `path` atomically: general.architecture `architecture`, the HF files of `hf_dir` embedded, and every tensor of
/// hf_dir's weights in the directory's order, each as `linears` hold it now (W8A8: `<name>.weight` I8 [out, in],
/// `<name>.weight_scale`, static `<name>.input_scale` / `.input_zero_point`; block type: [out, in] in that type) or as
/// `replace` gives it, else as the file has it. `options.metadata` adds keys. Unsupported for tensors GGUF cannot hold.
void write(const std::string& hf_dir, const std::string& path, const std::string& architecture, const std::vector<const Linear*>& linears,
           const Replacement& replace, const SaveOptions& options);

/// An open container: its file, its embedded files written back to a private temporary folder (removed when the
/// Reader is destroyed) so the HF readers parse them, and a tensor lookup for the family loaders.
class Reader {
public:
    /// Opens `path` and checks its architecture; Unsupported naming both when it is another one ("… is a GGUF of
    /// architecture 'llama', not a <what>").
    Reader(const std::string& path, const std::string& architecture, const std::string& what);
    ~Reader();
    Reader(const Reader&) = delete;
    Reader& operator=(const Reader&) = delete;

    const gguf::File& file() const { return file_; }
    /// The folder holding the embedded files (config.json, tokenizer files …).
    const std::string& dir() const { return dir_; }
    /// The tensor `name`, viewing the file's mapping, or nullopt.
    std::optional<Tensor> tensor(const std::string& name) const;
    /// Gives every Linear stored as I8 its W8A8 form back from the scales beside it (cq.w8a8.activation_bits: 8, 7 or
    /// 0 = this CPU's choice), and every block-typed weight the kernels' load-time layout, as quantizing it in memory
    /// does (so a reloaded model runs the same kernels). FormatError naming the tensor for a missing or out-of-range scale.
    void restore_linears(const std::vector<Linear*>& linears) const;

private:
    gguf::File file_;
    std::string dir_;
};

/// The metadata key that says how the file's dynamic W8A8 Linears quantize their inputs: "per_tensor"
/// (ActivationQuant::dynamic_per_tensor); absent: per token.
inline constexpr const char* kDynamicGranularityKey = "cq.w8a8.dynamic_activations";
/// The metadata key of an encoder's self-attention precision (AttentionPrecision): "int8"; absent: f32.
inline constexpr const char* kAttentionPrecisionKey = "cq.w8a8.attention";
/// Sets kDynamicGranularityKey when `linears` quantize per tensor at run time; Unsupported when some do and other dynamic
/// ones quantize per token (one key holds one granularity).
void set_dynamic_granularity(gguf::Writer& w, const std::vector<const Int8Linear*>& linears);

/// Reader::restore_linears over any GGUF file whose tensors hold Linears by their names (the LLM files' W8A8 Linears too).
void restore_linears(const gguf::File& file, const std::vector<Linear*>& linears);

}  // namespace cq::container
