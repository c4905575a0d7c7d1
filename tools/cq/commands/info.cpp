// `cq info PATH`: what a model file holds; `cq info --kernels`: CPU features and the kernel per op.
#include <cstdio>
#include <iostream>

#include "commands/commands.h"
#include "commands/format.h"
#include "commands/layers.h"
#include "commands/json_reports.h"
#include "cq/cpu_features.h"
#include "cq/inspect.h"
#include "cq/kernels.h"

namespace cq::cli {

namespace {

struct InfoOptions {
    std::string path;
    bool tensors = false;
    bool metadata = false;
    bool json = false;
    bool kernels = false;
    bool layers = false;
};

nlohmann::json kernels_json() {
    const CpuFeatures& f = cpu_features();
    const KernelTable& t = cq::kernel_table();
    nlohmann::json ops = nlohmann::json::array();
    for (const auto& k : list_kernels(t)) ops.push_back({{"op", k.op}, {"kernel", k.kernel}, {"isa", k.isa}, {"why", k.why}});
    nlohmann::json levels = nlohmann::json::array();
    for (IsaLevel l : supported_isa_levels()) levels.push_back(std::string(isa_level_name(l)));
    return {{"cpu", f.brand},
            {"features", f.names()},
            {"detected_level", std::string(isa_level_name(detected_isa_level()))},
            {"supported_levels", levels},
            {"level", std::string(isa_level_name(t.level))},
            {"cpu_class", std::string(dispatch_cpu_class())},
            {"tuned_for", std::string(t.tuned_for)},
            {"kernels", ops}};
}

void print_kernels(const nlohmann::json& k) {
    std::cout << "cpu       " << k["cpu"].get<std::string>() << '\n';
    std::string features;
    for (const auto& f : k["features"]) features += (features.empty() ? "" : " ") + f.get<std::string>();
    std::cout << "features  " << features << '\n';
    std::cout << "isa level " << k["level"].get<std::string>();
    if (k["level"] != k["detected_level"]) std::cout << " (forced by CQ_ISA; detected " << k["detected_level"].get<std::string>() << ")";
    std::cout << "\ncpu class " << (k["cpu_class"] == "" ? std::string("(unknown)") : k["cpu_class"].get<std::string>());
    if (k["tuned_for"] == "") std::cout << " (plain ladder: no rung preferences applied)";
    std::cout << "\n\n";
    std::vector<std::vector<std::string>> rows{{"op", "kernel", "isa", "why"}};
    for (const auto& op : k["kernels"]) rows.push_back({op["op"], op["kernel"], op["isa"], op["why"]});
    print_table(rows, {}, 0);
}

void print_summary(const ModelSummary& s, const InfoOptions& o) {
    std::cout << s.path << '\n';
    std::vector<std::vector<std::string>> rows;
    rows.push_back({"format", s.format});
    rows.push_back({"architecture", s.architecture.empty() ? "(unknown)" : s.architecture});
    if (!s.name.empty()) rows.push_back({"name", s.name});
    rows.push_back({"tensors", group_digits(s.tensor_count)});
    rows.push_back({"parameters", group_digits(s.parameter_count) + " (" + human_count(s.parameter_count) + ")"});
    rows.push_back({"tensor bytes", group_digits(s.tensor_bytes) + " (" + human_bytes(s.tensor_bytes) + ")"});
    rows.push_back({"file bytes", group_digits(s.file_bytes) + " (" + human_bytes(s.file_bytes) + ")"});
    char bpw[32];
    std::snprintf(bpw, sizeof bpw, "%.3f", s.bits_per_weight);
    rows.push_back({"bits/weight", bpw});
    for (const auto& n : s.notes) rows.push_back({"note", n});
    print_table(rows, {}, 2);

    if (!s.hyperparameters.empty()) {
        std::cout << "\nhyperparameters\n";
        std::vector<std::vector<std::string>> hp;
        for (const auto& [k, v] : s.hyperparameters) hp.push_back({k, v});
        print_table(hp, {}, 2);
    }
    if (!s.bytes_by_dtype.empty()) {
        std::cout << "\ndtypes\n";
        std::vector<std::vector<std::string>> dt{{"dtype", "tensors", "bytes", "share"}};
        for (const auto& [dtype, bytes] : s.bytes_by_dtype) {
            char share[16];
            std::snprintf(share, sizeof share, "%.1f%%", s.tensor_bytes ? 100.0 * static_cast<double>(bytes) / static_cast<double>(s.tensor_bytes) : 0.0);
            dt.push_back({dtype, group_digits(s.tensors_by_dtype.at(dtype)), group_digits(bytes), share});
        }
        print_table(dt, {false, true, true, true}, 2);
    }
    if (o.tensors) {
        std::cout << "\ntensors (shape is row-major, outermost first; offset is the absolute byte offset in the file)\n";
        const bool sharded = !s.tensors.empty() && s.tensors.front().file != s.tensors.back().file;
        std::vector<std::vector<std::string>> tt{{"name", "shape", "dtype", "bytes", "offset"}};
        if (sharded) tt[0].push_back("file");
        for (const auto& t : s.tensors) {
            std::string shape = "[";
            for (size_t i = 0; i < t.shape.size(); ++i) shape += (i ? ", " : "") + std::to_string(t.shape[i]);
            tt.push_back({t.name, shape + "]", t.dtype, group_digits(t.nbytes), group_digits(t.offset)});
            if (sharded) tt.back().push_back(t.file.substr(t.file.find_last_of('/') + 1));
        }
        print_table(tt, {false, false, false, true, true}, 2);
    }
    if (o.metadata) {
        std::cout << "\nmetadata\n";
        std::vector<std::vector<std::string>> md;
        for (const auto& e : s.metadata) {
            std::string text = e.text;
            for (auto& c : text)
                if (c == '\n' || c == '\r' || c == '\t') c = ' ';
            if (text.size() > 160) text = text.substr(0, 160) + "… (" + std::to_string(text.size()) + " chars)";
            md.push_back({e.key, text});
        }
        print_table(md, {}, 2);
    }
}

}  // namespace

Runner register_info(CLI::App& app) {
    auto opts = std::make_shared<InfoOptions>();
    CLI::App* cmd = app.add_subcommand("info", "Show what a model holds: architecture, hyperparameters, tensors, "
                                               "parameters, bytes by dtype, bits per weight");
    cmd->add_option("path", opts->path, "A .gguf file, a .safetensors file, a model.safetensors.index.json or an HF model directory");
    cmd->add_flag("--tensors", opts->tensors, "List every tensor: name, shape, dtype, bytes, offset (default: off)");
    cmd->add_flag("--metadata", opts->metadata, "Dump GGUF key-values or config.json, long arrays summarised (default: off)");
    cmd->add_flag("--layers", opts->layers, "Load the model and list every Linear: canonical name, role, block, shape [out, in], "
                                            "format, bytes, name in the file (default: off)");
    cmd->add_flag("--json", opts->json, "Print JSON instead of tables (default: off)");
    cmd->add_flag("--kernels", opts->kernels, "Print the CPU features, the ISA level and the kernel chosen for each op "
                                              "(CQ_ISA=ref|avx2|avx512|avx512_vnni|neon forces a level) (default: off)");
    return [opts, cmd]() -> int {
        if (opts->path.empty() && !opts->kernels)
            throw CLI::RequiredError("info needs a model PATH (or --kernels)");
        nlohmann::json out;
        if (opts->kernels) {
            const auto k = kernels_json();
            if (opts->json) out["kernels"] = k;
            else print_kernels(k);
        }
        if (!opts->path.empty()) {
            const ModelSummary s = summarize_model(opts->path);
            if (opts->json) {
                nlohmann::json j = summary_to_json(s, opts->tensors, opts->metadata);
                if (out.is_null()) out = std::move(j);
                else out["model"] = std::move(j);
            } else {
                if (opts->kernels) std::cout << '\n';
                print_summary(s, *opts);
            }
            if (opts->layers) {
                const auto model = Model::load(opts->path);
                if (opts->json) out["layers"] = layers_to_json(*model, true);
                else print_layers(*model, true);
            }
        }
        if (opts->json) print_json(out);
        (void)cmd;
        return 0;
    };
}

}  // namespace cq::cli
