// `cq stats MODEL --data FILE`: runs the model on real data with an observer on every Linear and prints
// each one's input statistics (mean square, max |x|, outlier channels) and output range. Also the
// layer listing behind `cq info --layers`.
#include <cstdio>
#include <iostream>
#include <unistd.h>

#include "commands/commands.h"
#include "commands/format.h"
#include "commands/layers.h"
#include "cq/layer_stats.h"

namespace cq::cli {

namespace {

std::string shape_text(const std::vector<int64_t>& s) {
    std::string out = "[";
    for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
    return out + "]";
}

std::string fmt(const char* f, double v) {
    char buf[48];
    std::snprintf(buf, sizeof buf, f, v);
    return buf;
}

nlohmann::json stats_to_json(const LayerStatsReport& r, bool channels) {
    nlohmann::json linears = nlohmann::json::array();
    for (const LinearStats& s : r.linears) {
        nlohmann::json outliers = nlohmann::json::array();
        for (const auto& o : s.outliers) outliers.push_back({{"channel", o.channel}, {"absmax", o.absmax}, {"mean_square", o.mean_square}});
        nlohmann::json in = {{"absmax", s.input_absmax_all}, {"mean_square", s.input_mean_square_all}, {"outliers", outliers}};
        if (channels) {
            in["channel_mean_square"] = s.input_mean_square;
            in["channel_absmax"] = s.input_absmax;
        }
        linears.push_back({{"name", s.name},
                           {"source_name", s.source_name},
                           {"role", role_name(s.role)},
                           {"block", s.block},
                           {"shape", {s.n_out, s.n_in}},
                           {"format", s.format},
                           {"rows", s.rows},
                           {"input", in},
                           {"output", {{"mean", s.output_mean}, {"mean_square", s.output_mean_square}, {"absmax", s.output_absmax}}}});
    }
    return {{"model", r.model}, {"data", r.data},        {"kind", model_kind_name(r.kind)}, {"units", r.units},
            {"rows", r.tokens}, {"seconds", r.seconds}, {"linears", linears}};
}

void print_stats(const LayerStatsReport& r) {
    std::cout << r.model << " on " << r.data << ": " << group_digits(static_cast<uint64_t>(r.units))
              << (r.kind == ModelKind::decoder ? " chunks, " : " samples, ") << group_digits(static_cast<uint64_t>(r.tokens))
              << " rows, " << fmt("%.2f", r.seconds) << " s\n\n";
    std::vector<std::vector<std::string>> rows{
        {"linear", "role", "rows", "in absmax", "in mean x²", "top channels (max |x|)", "out absmax", "out rms"}};
    for (const LinearStats& s : r.linears) {
        std::string top;
        for (size_t i = 0; i < std::min<size_t>(3, s.outliers.size()); ++i)
            top += (i ? " " : "") + std::to_string(s.outliers[i].channel) + ":" + fmt("%.3g", s.outliers[i].absmax);
        rows.push_back({s.name, std::string(role_name(s.role)), group_digits(static_cast<uint64_t>(s.rows)), fmt("%.4g", s.input_absmax_all),
                        fmt("%.4g", s.input_mean_square_all), top, fmt("%.4g", s.output_absmax), fmt("%.4g", std::sqrt(s.output_mean_square))});
    }
    print_table(rows, {false, false, true, true, true, false, true, true}, 0);
}

struct StatsOptions {
    std::string model, data, range, labels;
    int64_t ctx = 512, chunks = -1, batch = 32, max_len = 128, top = 8;
    bool json = false, channels = false;
};

}  // namespace

nlohmann::json layers_to_json(const Model& model, bool linears_only) {
    nlohmann::json layers = nlohmann::json::array();
    for (const LayerInfo& l : model.layers()) {
        if (linears_only && !l.is_linear) continue;
        layers.push_back({{"name", l.name},
                          {"source_name", l.source_name},
                          {"kind", l.is_linear ? "linear" : l.role == LayerRole::norm ? "norm" : "tensor"},
                          {"role", role_name(l.role)},
                          {"block", l.block},
                          {"shape", l.shape},
                          {"format", l.format},
                          {"bytes", l.bytes}});
    }
    return {{"path", model.path()},
            {"architecture", model.architecture()},
            {"kind", model_kind_name(model.kind())},
            {"blocks", model.n_blocks()},
            {"linears", model.linears().size()},
            {"layers", layers}};
}

void print_layers(const Model& model, bool linears_only) {
    std::cout << "\nlayers (" << model_kind_name(model.kind()) << ", " << model.n_blocks() << " blocks, " << model.linears().size()
              << " Linears; shape is [out, in] for Linears)\n";
    std::vector<std::vector<std::string>> rows{{"name", "role", "block", "shape", "format", "bytes", "in the file"}};
    for (const LayerInfo& l : model.layers()) {
        if (linears_only && !l.is_linear) continue;
        rows.push_back({l.name, std::string(role_name(l.role)), l.block < 0 ? "-" : std::to_string(l.block), shape_text(l.shape), l.format,
                        group_digits(l.bytes), l.source_name == l.name ? "" : l.source_name});
    }
    print_table(rows, {false, false, true, false, false, true, false}, 2);
}

Runner register_stats(CLI::App& app) {
    auto o = std::make_shared<StatsOptions>();
    CLI::App* cmd = app.add_subcommand("stats", "Run a model on real data and print every Linear's input-activation statistics "
                                                "(per-channel mean square and max |x|, outlier channels) and output range");
    cmd->add_option("model", o->model, "A .gguf file or an HF model directory (any family cq loads)")->required();
    cmd->add_option("--data", o->data, "LLMs: a text file (one trailing newline dropped, as llama.cpp does); encoders / ViT: a TSV "
                                       "with a header, an MNIST idx3 file or an image folder")->required();
    cmd->add_option("--ctx", o->ctx, "LLMs: tokens per chunk, BOS first (default: 512)");
    cmd->add_option("--chunks", o->chunks, "LLMs: at most this many chunks (default: -1 = every whole chunk)");
    cmd->add_option("--range", o->range, "Encoders: samples FIRST:END of the data (default: all)");
    cmd->add_option("--labels", o->labels, "Encoders on MNIST: the idx1 labels file (default: derived from the images file)");
    cmd->add_option("-b,--batch", o->batch, "Encoders: samples per forward pass (default: 32)");
    cmd->add_option("--max-len", o->max_len, "Encoders: tokens per text sample incl. [CLS]/[SEP] (default: 128)");
    cmd->add_option("--top", o->top, "Outlier channels listed per Linear (default: 8)");
    cmd->add_flag("--channels", o->channels, "With --json: every channel's mean square and max |x| (default: off)");
    cmd->add_flag("--json", o->json, "Print JSON instead of a table (default: off)");
    return [o]() -> int {
        auto model = Model::load(o->model);
        LayerStatsOptions opts;
        opts.n_ctx = o->ctx;
        opts.max_chunks = o->chunks;
        auto [first, count] = parse_sample_range(o->range, "--range");
        opts.selection.first = first;
        opts.selection.count = count;
        opts.selection.labels_path = o->labels;
        opts.run.batch = o->batch;
        opts.run.max_len = o->max_len;
        opts.top_channels = o->top;
        Progress progress("stats", !o->json && isatty(STDERR_FILENO));
        const LayerStatsReport r = collect_layer_stats(*model, o->data, opts, [&](int64_t done, int64_t total, double) {
            progress.update(done, total, "");
        });
        progress.finish();
        if (o->json) print_json(stats_to_json(r, o->channels));
        else print_stats(r);
        return 0;
    };
}

}  // namespace cq::cli
