// JSON renderings of the library's result structs for `--json` output. JSON is the CLI's concern:
// the library's public headers carry no third-party types.
#pragma once

#include <nlohmann/json.hpp>

#include "cq/classify.h"
#include "cq/compare.h"
#include "cq/eval.h"
#include "cq/inspect.h"
#include "cq/memory_profile.h"
#include "cq/quantize.h"
#include "cq/quantize_encoder.h"

namespace cq::cli {

/// The summary as JSON (tensors and metadata included only when asked).
nlohmann::json summary_to_json(const ModelSummary& summary, bool with_tensors, bool with_metadata);
nlohmann::json perplexity_to_json(const PerplexityResult& r);
nlohmann::json bench_to_json(const BenchResult& r);
nlohmann::json comparison_to_json(const ComparisonReport& r);
/// The same-run evaluation of a command that wrote `output` from `input` (--eval TEXT): PPL, KLD and speed of both, as
/// j["eval"] (always, for --report), and without --json a Markdown table on stdout.
void same_run_eval(const std::string& input, const std::string& output, const std::string& eval_text, CompareOptions compare,
                   bool json, nlohmann::json& j);
nlohmann::json quantize_report_to_json(const QuantizeReport& r);
nlohmann::json encoder_quantize_report_to_json(const EncoderQuantizeReport& r);
nlohmann::json classification_to_json(const ClassificationResult& r);
nlohmann::json agreement_to_json(const PredictionAgreement& a);
nlohmann::json encoder_bench_to_json(const EncoderBenchResult& r);
nlohmann::json memory_profile_to_json(const MemoryProfile& p);

}  // namespace cq::cli
