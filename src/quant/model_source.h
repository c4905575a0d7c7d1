// What quantize_model reads: a model as an ordered list of GGUF-named source tensors whose bytes (in
// GGUF's row layout) are produced one tensor at a time, plus a writer of the model's own GGUF metadata.
// A GGUF file and an HF directory (converted as llama.cpp's convert_hf_to_gguf.py does) both become one,
// so planning, rules, fallbacks, codecs, the atomic write and provenance exist once.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "cq/dtype.h"
#include "cq/io/gguf_writer.h"

namespace cq::quant {

struct SourceTensor {
    std::string name;            // GGUF name, e.g. "blk.0.attn_q.weight"
    std::vector<int64_t> shape;  // row-major, outermost first (GGUF's ne reversed)
    DType dtype = DType::F32;    // of the bytes read() gives
    DType kept = DType::F32;     // written when no rule quantizes it
    uint64_t nbytes = 0;
    int64_t numel = 0;
    /// The tensor's bytes: a view into the source's mapping, or `scratch` filled with a transformed copy.
    std::function<const uint8_t*(std::vector<uint8_t>& scratch)> read;
};

struct ModelSource {
    std::string path;          // as given
    std::string display_name;  // the file or directory name (cq.quantize.source_file)
    uint64_t file_bytes = 0;   // the file's size; for a directory, its weight files' total
    std::string arch;          // GGUF general.architecture
    int64_t n_layer = 0, n_head = 1, n_head_kv = 1;
    uint64_t alignment = 32;
    std::vector<SourceTensor> tensors;
    /// Writes the model's own metadata (architecture, hyperparameters, tokenizer) to `w`.
    std::function<void(gguf::Writer&)> write_metadata;
    /// Hex SHA-256 that identifies the input (reads every weight byte, so computed on demand).
    std::function<std::string()> sha256;
};

/// llama.cpp leaves norms, 1-D tensors and learned position / token-type embeddings in full precision;
/// every other "*.weight" may be quantized. `name` is the GGUF name.
bool is_quantizable(const std::string& name, const std::vector<int64_t>& shape);

/// Undoes HF's rotate_half row order within each of `n_head` heads of x [rows, row_bytes] into `out`
/// (convert_hf_to_gguf's permute()); rows are moved whole, so it applies to quantized rows too.
void unpermute_head_rows(const uint8_t* x, uint8_t* out, int64_t rows, int64_t n_head, uint64_t row_bytes);

/// Opens `path` as a model source: an HF directory (open_hf_source) or a GGUF file (open_gguf_source).
ModelSource open_model_source(const std::string& path);

/// A GGUF file as it is (zero-copy views of its tensors, its metadata copied).
ModelSource open_gguf_source(const std::string& path);
/// An HF LLM directory (model_type llama / mistral → GGUF "llama", gpt2 → "gpt2") with llama.cpp's
/// tensor names, q/k rows un-permuted, Conv1D weights transposed, and convert_hf_to_gguf's metadata
/// and tokenizer keys. Unsupported for other model types; FormatError for a missing, unknown or
/// misshapen tensor; Unsupported for a dtype other than F32/F16/BF16.
ModelSource open_hf_source(const std::string& dir);

}  // namespace cq::quant
