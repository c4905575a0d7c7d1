// Importance matrices (llama.cpp's imatrix): for every Linear weight, Σx² of each input channel over the
// calibration tokens and how many tokens were summed. Collected by observers through the model spine,
// read and written in both of llama-imatrix's file formats (GGUF, its default, and the legacy .dat),
// combined as llama-imatrix --in-file does, and turned into the importance rows llama-quantize feeds its
// weighted searches (cq/weighted_quant.h).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "cq/eval.h"
#include "cq/mapped_file.h"
#include "cq/model.h"

namespace cq {

/// One weight's statistics as llama-imatrix keeps them: sums [n_mat · n_in] (Σx² per input channel, one
/// row per matrix: 1 for a Linear, one per expert for 3-D weights) and counts [n_mat] (rows summed).
/// In an Imatrix read from a legacy .dat file, sums hold (Σx²/count)·ncall and counts {ncall}.
struct ImatrixEntry {
    std::vector<float> sums;
    std::vector<int64_t> counts;
};

/// A whole importance matrix, keyed by the weight's llama.cpp name ("blk.0.attn_q.weight").
struct Imatrix {
    std::map<std::string, ImatrixEntry> entries;
    std::vector<std::string> datasets;  // the calibration files it was computed on, oldest first
    int32_t chunk_count = 0;            // chunks of chunk_size tokens behind the largest count
    int32_t chunk_size = 0;             // tokens per chunk (the context); 0 in legacy files
    bool legacy = false;                // read from a .dat file (see ImatrixEntry)

    /// The importance row llama-quantize gives the quantizer of `weight_name`: per matrix, sums / count (a
    /// matrix never reached: 1s); legacy: sums / ncall. Empty when the weight has no entry.
    std::vector<float> importance(const std::string& weight_name) const;
};

enum class ImatrixFormat { gguf, dat };

/// Reads an imatrix file of either format (GGUF by its magic, else legacy .dat). A malformed file is a
/// FormatError naming the file, the byte offset and what is wrong.
Imatrix read_imatrix(const std::string& path);
/// The same from bytes already in memory (tests, fuzzers); `source->name()` appears in errors.
Imatrix parse_imatrix(std::shared_ptr<const ByteSource> source);

/// Writes `m` as llama-imatrix does: GGUF (general.type "imatrix", imatrix.datasets / chunk_count /
/// chunk_size, tensors <name>.in_sum2 and <name>.counts, names sorted) or legacy .dat (mean x² · ncall per
/// entry, entries without data skipped). `m` must not be legacy and, for .dat, needs chunk_size > 0.
/// Atomic (a temporary file renamed into place).
void write_imatrix(const Imatrix& m, const std::string& path, ImatrixFormat format);

/// Adds `other` into `into` as llama-imatrix --in-file does: sums and counts add up (a legacy file's
/// values are first scaled back to raw sums by into.chunk_size), datasets are appended, chunk_count is
/// recomputed. InvalidArgument when a weight's sizes differ, or a legacy file comes without a chunk size.
void merge_imatrix(Imatrix& into, const Imatrix& other);

struct ImatrixOptions {
    int64_t n_ctx = 512;         // tokens per chunk, BOS first (llama-imatrix -c)
    int64_t max_chunks = -1;     // −1: every whole chunk (llama-imatrix --chunks)
    bool process_output = false;  // also collect output.weight (llama-imatrix --process-output); a tied head never
    std::vector<std::string> in_files;  // imatrix files combined before collecting (llama-imatrix --in-file)
};

/// Runs a decoder LLM over the text file `text_path` (may be empty when in_files are given: combine only) in
/// llama-imatrix's chunks and returns the Σx² / counts of every block Linear (and the output head on request)
/// added to the combined in_files. Unsupported for encoders.
Imatrix compute_imatrix(Model& model, const std::string& text_path, const ImatrixOptions& options,
                        const ProgressFn& progress = {});

/// Combines imatrix files without a model (llama-imatrix --in-file … without -f); chunk_size scales legacy files.
Imatrix combine_imatrix_files(const std::vector<std::string>& paths, int32_t chunk_size);

}  // namespace cq
