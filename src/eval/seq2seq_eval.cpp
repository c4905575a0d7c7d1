// evaluate_pairs: teacher-forced loss / perplexity of an encoder–decoder (Seq2SeqModel) on a TSV of text pairs ('source'
// and 'target' columns named in the header), one pair at a time; evaluate_captions the same for a captioner on
// (image, caption) pairs.
#include <chrono>
#include <cmath>
#include <fstream>
#include <sstream>

#include "cq/error.h"
#include "data/tsv_fields.h"
#include "cq/seq2seq.h"

namespace cq {

namespace {

std::vector<std::string> to_strings(const std::vector<std::string_view>& v) { return {v.begin(), v.end()}; }


}  // namespace

Seq2SeqEvalResult evaluate_pairs(Seq2SeqModel& model, const std::string& tsv_path, int64_t first, int64_t end) {
    std::ifstream in(tsv_path, std::ios::binary);
    if (!in) throw IoError("[eval] cannot read " + tsv_path);
    std::string line;
    if (!std::getline(in, line)) throw FormatError("tsv", tsv_path, 0, "the file is empty (a header naming 'source' and 'target' comes first)");
    if (!line.empty() && line.back() == '\r') line.pop_back();
    const std::vector<std::string> header = to_strings(data::split_tabs(line));
    int64_t src_col = -1, tgt_col = -1;
    for (size_t i = 0; i < header.size(); ++i) {
        if (header[i] == "source") src_col = static_cast<int64_t>(i);
        if (header[i] == "target") tgt_col = static_cast<int64_t>(i);
    }
    if (src_col < 0 || tgt_col < 0) throw FormatError("tsv", tsv_path, 0, "the header names no 'source' and 'target' columns (text pairs for an encoder–decoder)");
    if (first < 0 || (end >= 0 && end < first)) throw InvalidArgument("[eval] the range [" + std::to_string(first) + ", " + std::to_string(end) + ") is empty or negative");

    Seq2SeqEvalResult r;
    const auto t0 = std::chrono::steady_clock::now();
    uint64_t offset = line.size() + 1;
    for (int64_t row = 0; std::getline(in, line); ++row) {
        const uint64_t at = offset;
        offset += line.size() + 1;
        if (!line.empty() && line.back() == '\r') line.pop_back();
        if (end >= 0 && row >= end) break;
        if (row < first || line.empty()) continue;
        const std::vector<std::string> cols = to_strings(data::split_tabs(line));
        if (static_cast<int64_t>(cols.size()) <= std::max(src_col, tgt_col))
            throw FormatError("tsv", tsv_path, at, "row " + std::to_string(row) + " has " + std::to_string(cols.size()) + " columns, the header " +
                                                       std::to_string(header.size()));
        const std::vector<int32_t> source = model.tokenize(cols[static_cast<size_t>(src_col)], model.config().max_positions);
        const std::vector<int32_t> target = model.tokenize(cols[static_cast<size_t>(tgt_col)], model.config().max_positions);
        r.nll += model.target_nll(source, target);
        r.tokens += static_cast<int64_t>(target.size());
        ++r.pairs;
    }
    if (r.pairs == 0) throw InvalidArgument("[eval] " + tsv_path + " holds no pairs in the range");
    r.mean_nll = r.nll / static_cast<double>(r.tokens);
    r.perplexity = std::exp(r.mean_nll);
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return r;
}

Seq2SeqEvalResult evaluate_captions(Seq2SeqModel& model, std::span<const CaptionPair> pairs, double* smoothed_mean_nll) {
    if (!model.takes_images()) throw InvalidArgument("[eval] " + model.architecture() + " takes text, not (image, caption) pairs");
    if (pairs.empty()) throw InvalidArgument("[eval] no (image, caption) pairs");
    const Seq2SeqConfig& g = model.config();
    const size_t image_bytes = static_cast<size_t>(g.num_channels * g.image_size * g.image_size);
    Seq2SeqEvalResult r;
    double smoothed = 0;
    const auto t0 = std::chrono::steady_clock::now();
    for (size_t i = 0; i < pairs.size(); ++i) {
        if (pairs[i].pixels.size() != image_bytes)
            throw InvalidArgument("[eval] image " + std::to_string(i) + " holds " + std::to_string(pairs[i].pixels.size()) + " bytes, the model takes " +
                                  std::to_string(g.num_channels) + "×" + std::to_string(g.image_size) + "×" + std::to_string(g.image_size));
        // [DEC] + caption + [SEP] must fit the position table
        const std::vector<int32_t> target = model.tokenize(pairs[i].caption, g.max_positions > 0 ? g.max_positions - 1 : 0);
        double s = 0;
        r.nll += model.image_target_nll(pairs[i].pixels.data(), target, &s);
        smoothed += s;
        r.tokens += static_cast<int64_t>(target.size());
        ++r.pairs;
    }
    r.mean_nll = r.nll / static_cast<double>(r.tokens);
    r.perplexity = std::exp(r.mean_nll);
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (smoothed_mean_nll) *smoothed_mean_nll = smoothed / static_cast<double>(r.tokens);
    return r;
}

}  // namespace cq
