// Memory profile of a decoder LLM (cq bench --memory): analytic sizes — weights by format, the KV cache, the forward
// pass's workspace — beside the process's resident set measured from /proc/self/status, phase by phase.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "cq/eval.h"

namespace cq {

/// The process's resident set now, from /proc/self/status (bytes; 0 where the kernel does not report a field).
struct RssSample {
    uint64_t rss = 0;       // VmRSS
    uint64_t peak = 0;      // VmHWM: the high-water mark since start or since the last reset_peak_rss()
    uint64_t rss_anon = 0;  // RssAnon: heap, stacks, copies
    uint64_t rss_file = 0;  // RssFile: mapped files (the model's weights while they are mapped)
};
/// Reads /proc/self/status. IoError where it cannot be read (not Linux).
RssSample read_rss();
/// The resident set split by what is mapped (from /proc/self/smaps, bytes).
struct RssByMapping {
    uint64_t model_file = 0;  // mappings of the model's file(s): the weights as far as they have been read
    uint64_t other_files = 0; // other file-backed mappings: the executable's and libraries' code and data
    uint64_t anonymous = 0;   // heap, anonymous mappings, stacks: copies, KV cache, workspace
};
/// Reads /proc/self/smaps; `model_path` (a file, or a directory whose files count) picks the model's mappings.
/// IoError where it cannot be read.
RssByMapping read_rss_by_mapping(const std::string& model_path);
/// Bytes freed but kept by the C allocator in its arenas (glibc's mallinfo2().fordblks; 0 elsewhere).
uint64_t allocator_free_bytes();
/// Resets VmHWM to the current RSS (writes "5" to /proc/self/clear_refs); false where the kernel refuses it.
bool reset_peak_rss();

/// Weight bytes of one storage format as the model holds it.
struct FormatBytes {
    std::string format;  // dtype name: "f32", "q4_0", …
    int64_t tensors = 0;
    uint64_t bytes = 0;
};

/// One phase: what it allocated and the highest resident set while it ran.
struct MemoryPhase {
    std::string name;  // "load", "prompt", "generation", "calibration", "training step"
    uint64_t rss_before = 0, rss_after = 0;
    uint64_t anon_after = 0, file_after = 0;  // RssAnon / RssFile after the phase (weights are mapped: they page in lazily,
                                              // at first use, so they show as file-backed growth in the first forward pass)
    RssByMapping mapped_after;                // the same split by mapping: the model's file apart from the libraries
    uint64_t heap_free_after = 0;             // freed bytes the allocator keeps in its arenas (glibc mallinfo2 fordblks):
                                              // anonymous RSS that no live object holds (0 where unknown)
    uint64_t peak = 0;          // the phase's own peak (reset at its start) or, without resets, the process's so far
    uint64_t analytic = 0;      // what the analytic model says this phase adds (load: weights + packed + KV; prompt and
                                // generation: the growth of the workspace and the logits buffer; calibration: the
                                // statistics, Σ over block Linears of n_in · 4 + 8 bytes, the text, one chunk's logits
                                // and the workspace's growth; training step: TrainingMemory::total)
    double seconds = 0;
};

struct MemoryProfileOptions {
    int64_t n_prompt = 512;  // tokens of the prompt phase (one batch)
    int64_t n_gen = 128;     // single-token steps of the generation phase
    int64_t n_ctx = 0;       // KV cache length (0: n_prompt + n_gen)
    bool reset_peaks = true; // reset VmHWM at each phase start (where the kernel allows it)
    // A calibration phase after generation (empty: none): importance statistics (Σx² per input channel of every block
    // Linear, cq imatrix's pass) over chunks of this text.
    std::string calib_text;
    int64_t calib_ctx = 128, calib_chunks = 4;
    // A training-step phase last (train_batch 0: none): the model's trainable tensors made f32 (LmTrainer), their
    // gradients, AdamW's two moments, and one forward + backward + update over train_batch windows of train_ctx tokens.
    int64_t train_batch = 0, train_ctx = 128;
    std::string train_checkpoint = "none";  // activation checkpointing, as cq finetune --checkpoint (none, block, every:K)
};

/// The training step's analytic memory: what LmTrainer and AdamW hold (bytes).
struct TrainingMemory {
    int64_t parameters = 0;        // trainable elements
    uint64_t values_bytes = 0;     // f32 copies of the trainable tensors (replacing the model's own, mapped or packed)
    uint64_t grad_bytes = 0;       // one f32 gradient per element
    uint64_t optimizer_bytes = 0;  // AdamW: m and v, f32
    uint64_t activation_bytes = 0; // the trainer's saved activations and their gradients at this batch (LmTrainer::activation_bytes)
    uint64_t released_packed_bytes = 0;  // packed copies the model dropped when its Linears became f32
    uint64_t released_mapped_bytes = 0;  // the model file's resident weight pages, once no tensor reads from the mapping
                                         // any more (the model unmaps it)
    int64_t batch = 0, ctx = 0;
    std::string checkpoint;
    uint64_t released_bytes() const { return released_packed_bytes + released_mapped_bytes; }
    uint64_t total() const { return values_bytes + grad_bytes + optimizer_bytes + activation_bytes - released_bytes(); }
};

struct MemoryProfile {
    std::string model;
    // Analytic figures (bytes).
    std::vector<FormatBytes> weights;  // by format, as the model holds them (tied tables counted once)
    uint64_t weight_bytes = 0;         // Σ weights
    uint64_t packed_bytes = 0;         // load-time repacked copies for the packed GEMMs (ops::pack_for_kernels)
    int64_t n_layer = 0, n_ctx = 0, n_head_kv = 0, head_dim = 0;
    uint64_t kv_bytes = 0;             // 2 · n_layer · n_ctx · n_head_kv · head_dim · 4 (f32 K and V)
    uint64_t workspace_bytes = 0;      // the forward pass's scratch after the largest batch, plus the logits buffer
    uint64_t calib_stats_bytes = 0;    // the calibration phase's statistics (held during that phase only)
    TrainingMemory training;           // the training-step phase (parameters 0: none)
    uint64_t analytic_total() const { return weight_bytes + packed_bytes + kv_bytes + workspace_bytes; }
    // Measured (bytes).
    uint64_t baseline_rss = 0;         // before the model was loaded (code, libraries, heap of the process)
    RssByMapping baseline_mapped;      // the same split by mapping
    uint64_t startup_peak = 0;         // VmHWM before the first phase (process start-up)
    std::vector<MemoryPhase> phases;
    uint64_t peak_rss = 0;             // the process's peak: the highest of startup_peak and every phase's peak
    uint64_t final_rss = 0, final_rss_anon = 0, final_rss_file = 0;
    uint64_t weights_resident = 0;     // the model file's resident pages after the last phase (analytic: weight_bytes
                                       // plus the file's header, less what packing handed back)
    bool peak_reset = false;           // phases' peaks are their own (clear_refs accepted)
    BenchResult bench;                 // the prompt and generation speeds measured in the phases
};

/// Loads `model` (GGUF or HF directory), runs one prompt of n_prompt tokens, n_gen generated tokens, with
/// calib_text a calibration pass and with train_batch one training step, and measures each phase. Call it early in a process that holds no other model: the baseline is whatever the process holds.
MemoryProfile profile_memory(const std::string& model, const MemoryProfileOptions& options = {});

/// The profile as a Markdown report (analytic vs measured, per phase).
std::string memory_profile_to_markdown(const MemoryProfile& p);

}  // namespace cq
