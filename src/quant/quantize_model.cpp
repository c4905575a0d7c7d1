// cq quantize for decoder LLMs: the rules (a preset plus --tensor-type rules) decide every tensor's type
// and the one LLM GGUF writer (quant/llm_gguf_writer.h) streams the result. The input is a file (GGUF, or
// an HF directory converted on the fly) or a LanguageModel that passes have already changed in memory:
// what they changed is written as they left it, every other tensor as the rules decide. Provenance goes
// into the metadata.

#include <chrono>
#include <filesystem>

#include "cq/error.h"
#include "cq/io/gguf_writer.h"
#include "cq/quantize.h"
#include "quant/llm_gguf_writer.h"

namespace cq {

namespace fs = std::filesystem;

namespace {

QuantizeReport run(const std::string& input, const LanguageModel* model, const std::string& output, const QuantizeOptions& options,
                   const ProgressFn& progress) {
    const auto t0 = std::chrono::steady_clock::now();
    std::error_code ec;
    if (fs::exists(output, ec) && fs::equivalent(input, output, ec))
        throw InvalidArgument("[quantize] the output " + output + " is the input file; cq never overwrites its input");
    const QuantPreset* preset = find_preset(options.type);
    if (!preset) {
        std::string names;
        for (const auto& p : quant_presets()) names += (names.empty() ? "" : ", ") + p.name;
        throw InvalidArgument("[quantize] unknown --type '" + options.type + "'; use one of: " + names);
    }
    std::vector<QuantRule> rules = preset->rules;
    for (const auto& spec : options.tensor_types) rules.push_back(parse_tensor_type_rule(spec));

    const quant::ModelSource in = quant::open_model_source(input);
    const std::string sha = in.sha256();
    quant::LlmWriteJob job;
    job.file = &in;
    job.model = model;
    job.rules = &rules;
    job.metadata = [&](gguf::Writer& w) {
        w.set_u32("general.file_type", preset->llama_ftype);
        w.set_u32("general.quantization_version", 2);
        w.set_string("cq.version", CQ_VERSION);
        w.set_string("cq.quantize.type", preset->name);
        std::vector<std::string> rule_texts;
        for (const auto& rule : rules) rule_texts.push_back(rule.text());
        w.set_string_array("cq.quantize.rules", rule_texts);
        w.set_string("cq.quantize.source_file", in.display_name);
        w.set_string("cq.quantize.source_sha256", sha);
    };
    if (progress) job.progress = [&](int64_t done, int64_t total) { progress(done, total, 0.0); };
    QuantizeReport r = quant::write_llm_gguf(job, output);
    r.input = input, r.output = output, r.type = preset->name, r.input_sha256 = sha;
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return r;
}

}  // namespace

QuantizeReport quantize_model(const std::string& input, const std::string& output, const QuantizeOptions& options,
                              const ProgressFn& progress) {
    return run(input, nullptr, output, options, progress);
}

QuantizeReport quantize_model(const LanguageModel& model, const std::string& output, const QuantizeOptions& options,
                              const ProgressFn& progress) {
    return run(model.path(), &model, output, options, progress);
}

}  // namespace cq
