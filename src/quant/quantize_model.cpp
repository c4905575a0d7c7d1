// cq quantize for decoder LLMs: the rules (a preset, a replayed plan, --tensor-type rules) decide every tensor's
// type and the one LLM GGUF writer (quant/llm_gguf_writer.h) streams the result. RTN and --imatrix FILE need no
// model: tensors stream from the file. The calibrated methods and mixed precision (quant/calibrated_quantize.cpp)
// change a LanguageModel in memory first; what they changed is written as they left it. Provenance goes into
// the metadata.

#include <chrono>
#include <filesystem>
#include <fstream>

#include "cq/atomic_file.h"
#include "cq/error.h"
#include "cq/imatrix.h"
#include "cq/io/gguf_writer.h"
#include "cq/quantize.h"
#include "quant/llm_gguf_writer.h"
#include "quant/quantize_plan.h"

namespace cq {

namespace fs = std::filesystem;

std::string_view quant_method_name(QuantMethod m) {
    switch (m) {
        case QuantMethod::rtn: return "rtn";
        case QuantMethod::imatrix: return "imatrix";
        case QuantMethod::gptq: return "gptq";
        case QuantMethod::awq: return "awq";
        case QuantMethod::awq_gptq: return "awq+gptq";
        case QuantMethod::automatic: return "auto";
    }
    return "?";
}

QuantMethod parse_quant_method(const std::string& name) {
    for (QuantMethod m : {QuantMethod::rtn, QuantMethod::imatrix, QuantMethod::gptq, QuantMethod::awq, QuantMethod::awq_gptq,
                          QuantMethod::automatic})
        if (quant_method_name(m) == name) return m;
    throw InvalidArgument("[quantize] unknown --method '" + name + "'; use one of: rtn, imatrix, gptq, awq, awq+gptq, auto");
}

namespace quant {

std::vector<QuantRule> read_rules_file(const std::string& path) {
    std::ifstream in(path);
    if (!in) throw IoError("[quantize] cannot read the rules file " + path);
    std::vector<QuantRule> rules;
    std::string line;
    for (int64_t n = 1; std::getline(in, line); ++n) {
        const size_t b = line.find_first_not_of(" \t\r"), e = line.find_last_not_of(" \t\r");
        if (b == std::string::npos || line[b] == '#') continue;
        try {
            rules.push_back(parse_tensor_type_rule(line.substr(b, e - b + 1)));
        } catch (const Error& err) {
            throw InvalidArgument("[quantize] " + path + ":" + std::to_string(n) + ": " + err.what());
        }
    }
    return rules;
}

void write_rules_file(const std::string& path, const std::vector<QuantRule>& rules, const std::string& header) {
    std::string text = header;
    for (const auto& r : rules) text += r.text() + "\n";
    AtomicFile out(path);
    out.write(text.data(), text.size());
    out.commit();
}

std::vector<QuantRule> options_rules(const QuantizeOptions& o, const QuantPreset** preset_out) {
    const QuantPreset* preset = find_preset(o.type);
    if (!preset) {
        std::string names;
        for (const auto& p : quant_presets()) names += (names.empty() ? "" : ", ") + p.name;
        throw InvalidArgument("[quantize] unknown --type '" + o.type + "'; use one of: " + names);
    }
    std::vector<QuantRule> rules = preset->rules;
    if (!o.rules_file.empty())
        for (auto& r : read_rules_file(o.rules_file)) rules.push_back(std::move(r));
    for (const auto& spec : o.tensor_types) rules.push_back(parse_tensor_type_rule(spec));
    if (preset_out) *preset_out = preset;
    return rules;
}

QuantizeReport write_quantized(const QuantizedWrite& job, const std::string& output, const ProgressFn& progress) {
    const auto t0 = std::chrono::steady_clock::now();
    std::error_code ec;
    if (!job.dry_run && fs::exists(output, ec) && fs::equivalent(job.input, output, ec))
        throw InvalidArgument("[quantize] the output " + output + " is the input file; cq never overwrites its input");
    const ModelSource in = open_model_source(job.input);
    const std::string sha = job.dry_run ? std::string() : in.sha256();
    LlmWriteJob w;
    w.file = &in;
    w.model = job.model;
    w.rules = &job.rules;
    w.importance = job.importance;
    w.dry_run = job.dry_run;
    w.keep_zeros = job.keep_zeros;
    w.metadata = [&](gguf::Writer& g) {
        g.set_u32("general.file_type", job.preset->llama_ftype);
        g.set_u32("general.quantization_version", 2);
        g.set_string("cq.version", CQ_VERSION);
        g.set_string("cq.quantize.type", job.preset->name);
        std::vector<std::string> rule_texts;
        for (const auto& rule : job.rules) rule_texts.push_back(rule.text());
        g.set_string_array("cq.quantize.rules", rule_texts);
        g.set_string("cq.quantize.source_file", in.display_name);
        // A dry run sizes the file: the hash has the same length as the real one.
        g.set_string("cq.quantize.source_sha256", job.dry_run ? std::string(64, '0') : sha);
        if (job.metadata) job.metadata(g);
    };
    if (progress) w.progress = [&](int64_t done, int64_t total) { progress(done, total, 0.0); };
    QuantizeReport r = write_llm_gguf(w, output);
    r.input = job.input, r.output = output, r.type = job.preset->name, r.input_sha256 = sha;
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return r;
}

}  // namespace quant

namespace {

QuantMethod resolve_method(const QuantizeOptions& o) {
    if (o.method) return *o.method;
    if (!o.calib.text_path.empty()) return QuantMethod::automatic;
    if (!o.imatrix_file.empty()) return QuantMethod::imatrix;
    return QuantMethod::rtn;
}

bool wants_mixed_precision(const QuantizeOptions& o) { return o.target_size > 0 || o.target_bpw > 0 || o.max_kld > 0; }

// The options that do not combine, named as the CLI names them.
void check_options(const QuantizeOptions& o, QuantMethod method) {
    if (o.target_size > 0 && o.target_bpw > 0) throw InvalidArgument("[quantize] give --target-size or --target-bpw, not both");
    if (o.target_bpw < 0 || o.max_kld < 0) throw InvalidArgument("[quantize] --target-bpw and --max-kld must be positive");
    const bool calibrated = method != QuantMethod::rtn && !(method == QuantMethod::imatrix && !o.imatrix_file.empty());
    if ((calibrated || wants_mixed_precision(o)) && o.calib.text_path.empty())
        throw InvalidArgument(std::string("[quantize] ") +
                              (wants_mixed_precision(o) ? "--target-size / --target-bpw / --max-kld measure" : "--method " + std::string(quant_method_name(method)) + " calibrates") +
                              " on text: give --calib FILE" + (method == QuantMethod::imatrix ? " or --imatrix FILE" : ""));
    if (!o.imatrix_file.empty() && method != QuantMethod::imatrix)
        throw InvalidArgument("[quantize] --imatrix FILE is the importance of --method imatrix; --method " + std::string(quant_method_name(method)) +
                              " computes its own statistics from --calib");
    if (!o.rules_file.empty() && wants_mixed_precision(o))
        throw InvalidArgument("[quantize] --rules replays a plan; it does not combine with --target-size / --target-bpw / --max-kld");
}

QuantizeReport quantize_from_file(const std::string& input, const LanguageModel* model, const std::string& output,
                                  const QuantizeOptions& o, const ProgressFn& progress) {
    const QuantMethod method = resolve_method(o);
    check_options(o, method);
    if (method != QuantMethod::rtn && !(method == QuantMethod::imatrix && !o.imatrix_file.empty()))
        return quant::quantize_calibrated(input, output, o, method, progress);
    if (wants_mixed_precision(o)) return quant::quantize_calibrated(input, output, o, method, progress);

    quant::QuantizedWrite job;
    job.input = input;
    job.model = model;
    job.keep_zeros = o.keep_zeros;
    job.rules = quant::options_rules(o, &job.preset);
    std::shared_ptr<Imatrix> im;
    if (!o.imatrix_file.empty()) {
        im = std::make_shared<Imatrix>(read_imatrix(o.imatrix_file));
        job.importance = [im](const std::string& name) { return im->importance(name); };
        job.metadata = [im, &o](gguf::Writer& w) {
            // llama-quantize's keys, so tools that read them see where the importance came from.
            w.set_string("quantize.imatrix.file", o.imatrix_file);
            if (!im->datasets.empty()) w.set_string("quantize.imatrix.dataset", im->datasets.back());
            w.set_u32("quantize.imatrix.entries_count", static_cast<uint32_t>(im->entries.size()));
            w.set_u32("quantize.imatrix.chunks_count", static_cast<uint32_t>(im->chunk_count));
        };
    }
    if (!o.dump_rules_file.empty())
        quant::write_rules_file(o.dump_rules_file, job.rules, "# cq quantize rules (type " + job.preset->name + "); later rules win\n");
    QuantizeReport r = quant::write_quantized(job, output, progress);
    r.method = std::string(quant_method_name(method));
    return r;
}

}  // namespace

QuantizeReport quantize_model(const std::string& input, const std::string& output, const QuantizeOptions& options,
                              const ProgressFn& progress) {
    return quantize_from_file(input, nullptr, output, options, progress);
}

QuantizeReport quantize_model(const LanguageModel& model, const std::string& output, const QuantizeOptions& options,
                              const ProgressFn& progress) {
    const QuantMethod method = resolve_method(options);
    if ((method != QuantMethod::rtn && !(method == QuantMethod::imatrix && !options.imatrix_file.empty())) || wants_mixed_precision(options))
        throw InvalidArgument("[quantize] a model already in memory is written with rtn or --imatrix FILE; the calibrated methods and "
                              "mixed precision load the model themselves (quantize_model(path, …))");
    return quantize_from_file(model.path(), &model, output, options, progress);
}

}  // namespace cq
