// The HTML report (cq report, cq quantize/compress --report): one self-contained page — inline CSS, JS and SVG, nothing
// fetched — built from the JSON reports cq writes: same-run tables, a size–quality Pareto chart, per-tensor sensitivity,
// speed and memory.
#pragma once

#include <string>
#include <vector>

namespace cq {

/// One JSON report: the file it came from (for labels and error messages) and its text.
struct ReportInput {
    std::string file;
    std::string json;
};

struct ReportOptions {
    std::string title = "cq report";
    /// The Pareto chart's quality axis: "auto" (perplexity where two or more sized points have it, else mean
    /// KL-divergence, else accuracy), "ppl", "kld" or "accuracy".
    std::string metric = "auto";
};

/// Which of the points (size, loss), both to be minimised, no other point dominates: none other is ≤ in both and
/// < in one. Equal points are all kept.
std::vector<bool> pareto_front(const std::vector<double>& size, const std::vector<double>& loss);

/// The page. FormatError naming the file and the key for a document that is not JSON or lacks what its kind needs;
/// InvalidArgument for no inputs or an unknown metric.
std::string render_html_report(const std::vector<ReportInput>& inputs, const ReportOptions& options = {});

/// Reads each JSON file and writes the page to `output` atomically. IoError names a file that cannot be read.
void write_html_report(const std::vector<std::string>& json_files, const std::string& output, const ReportOptions& options = {});
/// The same from reports already in memory (cq quantize --report).
void write_html_report(const std::vector<ReportInput>& inputs, const std::string& output, const ReportOptions& options = {});

}  // namespace cq
