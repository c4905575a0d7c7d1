// cq quantize: plan every tensor's type from the rules (with llama.cpp's fallbacks for rows that do
// not fit a format's block), then stream tensors from the model source (a GGUF file, or an HF directory
// converted on the fly — quant/model_source.h) through the codecs into an atomic GGUF output, rows split
// across the thread pool. Provenance goes into the metadata.

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>

#include "cq/error.h"
#include "cq/io/gguf_writer.h"
#include "cq/quantize.h"
#include "cq/thread_pool.h"
#include "quant/model_source.h"

namespace cq {

namespace fs = std::filesystem;

namespace {

int64_t layer_of(const std::string& name) {
    if (name.rfind("blk.", 0) != 0) return -1;
    const size_t dot = name.find('.', 4);
    try {
        return std::stoll(name.substr(4, dot - 4));
    } catch (...) {
        return -1;
    }
}

// The type llama.cpp falls back to when a row is not a whole number of the format's blocks.
std::pair<DType, std::string> fit_row(DType type, int64_t row) {
    const auto fits = [&](DType t) { return row % static_cast<int64_t>(dtype_traits(t).block_size) == 0; };
    if (fits(type)) return {type, ""};
    DType next = DType::F16;
    std::string why = "rows of " + std::to_string(row) + " are not a multiple of " + std::string(dtype_name(type)) + "'s block of " +
                      std::to_string(dtype_traits(type).block_size);
    switch (type) {
        case DType::Q2_K:
        case DType::Q3_K:
            next = DType::Q4_0;  // llama.cpp picks IQ4_NL (same 4.5 bpw), which cq does not implement yet
            why += " (llama.cpp would use iq4_nl)";
            break;
        case DType::Q4_K: next = DType::Q5_0; break;
        case DType::Q5_K: next = DType::Q5_1; break;
        case DType::Q6_K: next = DType::Q8_0; break;
        default: break;
    }
    if (!fits(next)) next = DType::F16;
    return {next, why};
}

}  // namespace

QuantizeReport quantize_model(const std::string& input, const std::string& output, const QuantizeOptions& options,
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

    const quant::ModelSource in = fs::is_directory(input, ec) ? quant::open_hf_source(input) : quant::open_gguf_source(input);
    const int64_t gqa = in.n_head_kv > 0 ? in.n_head / in.n_head_kv : 1;
    const bool has_output = std::any_of(in.tensors.begin(), in.tensors.end(), [](const auto& t) { return t.name == "output.weight"; });

    QuantizeReport r;
    r.input = input, r.output = output, r.type = preset->name;
    r.file_bytes_in = in.file_bytes;
    for (const auto& t : in.tensors) {
        TensorPlan p;
        p.name = t.name, p.shape = t.shape, p.from = t.dtype, p.numel = t.numel, p.bytes_in = t.nbytes;
        p.requested = p.chosen = t.kept;
        p.rule = "kept";
        if (quant::is_quantizable(t.name, t.shape)) {
            // A tied model's token embedding is its output head: "output.weight" rules apply to it.
            const RuleTarget target{t.name, layer_of(t.name), in.n_layer, gqa,
                                    !has_output && t.name == "token_embd.weight" ? "output.weight" : ""};
            if (const auto i = deciding_rule<QuantRule>(rules, target); i >= 0) {
                p.requested = rules[static_cast<size_t>(i)].type;
                p.rule = rules[static_cast<size_t>(i)].text();
            }
            if (p.rule != "kept") {
                auto [chosen, why] = fit_row(p.requested, t.shape.back());
                p.chosen = chosen;
                p.fallback = why;
                if (!why.empty()) ++r.fallbacks;
            }
        }
        const auto& traits = dtype_traits(p.chosen);
        if (p.chosen != p.from && (!traits.from_float || !dtype_traits(p.from).to_float))
            throw Unsupported("[quantize] tensor '" + t.name + "': converting " + std::string(dtype_name(p.from)) + " to " +
                              std::string(traits.name) + " is not supported yet");
        p.bytes_out = *dtype_bytes(p.chosen, static_cast<uint64_t>(p.numel));
        r.tensor_bytes_in += p.bytes_in;
        r.tensor_bytes_out += p.bytes_out;
        r.parameters += p.numel;
        r.tensors_by_type[std::string(dtype_name(p.chosen))] += 1;
        r.tensors.push_back(std::move(p));
    }
    r.input_sha256 = in.sha256();

    gguf::Writer w(in.alignment);
    in.write_metadata(w);
    w.set_u32("general.file_type", preset->llama_ftype);
    w.set_u32("general.quantization_version", 2);
    w.set_string("cq.version", CQ_VERSION);
    w.set_string("cq.quantize.type", preset->name);
    std::vector<std::string> rule_texts;
    for (const auto& rule : rules) rule_texts.push_back(rule.text());
    w.set_string_array("cq.quantize.rules", rule_texts);
    w.set_string("cq.quantize.source_file", in.display_name);
    w.set_string("cq.quantize.source_sha256", r.input_sha256);
    for (const auto& p : r.tensors) w.add_tensor(p.name, p.shape, p.chosen);

    AtomicFile out(output);
    ThreadPool& pool = ThreadPool::global();
    std::vector<uint8_t> scratch;
    w.write(out, [&](size_t i, std::vector<uint8_t>& buf) {
        const TensorPlan& p = r.tensors[i];
        const uint8_t* src = in.tensors[i].read(scratch);
        buf.resize(p.bytes_out);
        if (p.chosen == p.from) {
            std::copy_n(src, p.bytes_in, buf.data());
        } else {
            const int64_t row = p.shape.back(), n_rows = p.numel / std::max<int64_t>(row, 1);
            const auto& from = dtype_traits(p.from);
            const auto& to = dtype_traits(p.chosen);
            const uint64_t in_row = *dtype_bytes(p.from, static_cast<uint64_t>(row));
            const uint64_t out_row = *dtype_bytes(p.chosen, static_cast<uint64_t>(row));
            pool.parallel_for(n_rows, [&](int64_t r0, int64_t r1) {
                std::vector<float> x(static_cast<size_t>(row));
                for (int64_t rr = r0; rr < r1; ++rr) {
                    from.to_float(src + rr * in_row, x.data(), row);
                    for (int64_t j = 0; j < row; ++j)
                        if (!std::isfinite(x[static_cast<size_t>(j)]))
                            throw InvalidArgument("[quantize] tensor '" + p.name + "' has a non-finite value (" +
                                                  std::to_string(x[static_cast<size_t>(j)]) + ") at row " + std::to_string(rr) +
                                                  ", column " + std::to_string(j) + "; refusing to quantize it");
                    to.from_float(x.data(), buf.data() + rr * out_row, row);
                }
            }, 16);
        }
        if (progress) progress(static_cast<int64_t>(i + 1), static_cast<int64_t>(r.tensors.size()), 0.0);
    });
    out.commit();
    r.file_bytes_out = fs::file_size(output);
    r.bpw_in = r.parameters ? 8.0 * static_cast<double>(r.tensor_bytes_in) / static_cast<double>(r.parameters) : 0;
    r.bpw_out = r.parameters ? 8.0 * static_cast<double>(r.tensor_bytes_out) / static_cast<double>(r.parameters) : 0;
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return r;
}

}  // namespace cq
