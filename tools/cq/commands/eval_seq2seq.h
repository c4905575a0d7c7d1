// The encoder–decoder branch of `cq eval` (BART, T5: text pairs; BLIP: (image, caption) pairs), for an HF directory or
// cq's container of one.
#pragma once

#include <cstdint>
#include <string>

namespace cq::cli {

struct Seq2SeqEvalCliOptions {
    std::string model, data, range;
    bool w8a8_dynamic = false;                               // also W8A8 with dynamic activations, beside FP32
    std::string calib, calib_range, calib_method = "minmax";  // also static W8A8 calibrated on these pairs
    int64_t generate = 0;                                     // captioners: greedy captions of at most this many new tokens (0: none)
    bool json = false;
};

/// Teacher-forced loss (mean NLL per target token, perplexity; a captioner's label-smoothed loss too) of FP32 and the
/// requested W8A8 form on the same pairs, in one run; a captioner's greedy captions with `generate`.
int run_eval_seq2seq(const Seq2SeqEvalCliOptions& o);

}  // namespace cq::cli
