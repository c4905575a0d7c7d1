// `cq imatrix MODEL -f TEXT`: collects llama.cpp importance matrices (per Linear, Σx² per input channel and the
// token count) and writes them in llama-imatrix's GGUF or legacy .dat format; --in-file combines files.
#include <chrono>
#include <iostream>
#include <numeric>
#include <unistd.h>

#include "commands/commands.h"
#include "commands/format.h"
#include "cq/error.h"
#include "cq/imatrix.h"

namespace cq::cli {

namespace {

struct ImatrixCliOptions {
    std::string model, text, output = "imatrix.gguf", format = "gguf";
    std::vector<std::string> in_files;
    int64_t ctx = 512, chunks = -1;
    bool process_output = false, json = false;
};

nlohmann::json imatrix_to_json(const Imatrix& m, const ImatrixCliOptions& o, double seconds) {
    nlohmann::json entries = nlohmann::json::array();
    for (const auto& [name, e] : m.entries) {
        const double sum = std::accumulate(e.sums.begin(), e.sums.end(), 0.0);
        const int64_t count = e.counts.empty() ? 0 : e.counts.front();
        entries.push_back({{"name", name},
                           {"values", e.sums.size()},
                           {"counts", e.counts},
                           {"mean_square", count > 0 ? sum / static_cast<double>(count) / static_cast<double>(e.sums.size()) : 0.0}});
    }
    return {{"output", o.output},      {"format", o.format},         {"chunk_count", m.chunk_count}, {"chunk_size", m.chunk_size},
            {"datasets", m.datasets}, {"seconds", seconds},         {"entries", entries}};
}

}  // namespace

Runner register_imatrix(CLI::App& app) {
    auto o = std::make_shared<ImatrixCliOptions>();
    CLI::App* cmd = app.add_subcommand("imatrix", "Collect an importance matrix (per Linear: Σx² per input channel and token counts) "
                                                  "from calibration text, as llama-imatrix does, and write it in its GGUF or .dat format");
    cmd->add_option("model", o->model, "A .gguf file or an HF directory of a decoder LLM (not needed when only combining --in-file)");
    cmd->add_option("-f,--file", o->text, "Calibration text, cut into chunks of --ctx tokens, BOS first (default: none: combine --in-file only)");
    cmd->add_option("--ctx", o->ctx, "Tokens per chunk; also the chunk size recorded in the file (default: 512)");
    cmd->add_option("--chunks", o->chunks, "At most this many chunks (default: -1 = every whole chunk)");
    cmd->add_option("-o,--output", o->output, "Output file (default: imatrix.gguf)");
    cmd->add_option("--output-format", o->format, "gguf (llama-imatrix's default) or dat (its legacy format) (default: gguf)")
        ->check(CLI::IsMember({"gguf", "dat"}));
    cmd->add_option("--in-file", o->in_files, "An imatrix file (GGUF or .dat) to combine with the result; repeat for several (default: none)");
    cmd->add_flag("--process-output", o->process_output, "Also collect output.weight, as llama-imatrix --process-output (default: off)");
    cmd->add_flag("--json", o->json, "Print a JSON summary instead of text (default: off)");
    return [o]() -> int {
        const auto t0 = std::chrono::steady_clock::now();
        ImatrixOptions opts;
        opts.n_ctx = o->ctx;
        opts.max_chunks = o->chunks;
        opts.process_output = o->process_output;
        opts.in_files = o->in_files;
        Imatrix m;
        if (o->text.empty()) {
            if (o->in_files.empty()) throw InvalidArgument("[imatrix] give a calibration text (-f) or imatrix files to combine (--in-file)");
            m = combine_imatrix_files(o->in_files, static_cast<int32_t>(o->ctx));
        } else {
            if (o->model.empty()) throw InvalidArgument("[imatrix] a model is needed to collect from " + o->text);
            auto model = Model::load(o->model);
            Progress progress("imatrix", !o->json && isatty(STDERR_FILENO));
            m = compute_imatrix(*model, o->text, opts, [&](int64_t done, int64_t total, double) { progress.update(done, total, ""); });
            progress.finish();
        }
        write_imatrix(m, o->output, o->format == "dat" ? ImatrixFormat::dat : ImatrixFormat::gguf);
        const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        if (o->json) {
            print_json(imatrix_to_json(m, *o, seconds));
        } else {
            int64_t tokens = 0;
            for (const auto& [name, e] : m.entries)
                for (int64_t c : e.counts) tokens = std::max(tokens, c);
            std::cout << "imatrix: " << m.entries.size() << " entries, " << m.chunk_count << " chunks of " << m.chunk_size << " tokens ("
                      << group_digits(static_cast<uint64_t>(tokens)) << " tokens per Linear) → " << o->output << " (" << o->format << "), "
                      << seconds << " s\n";
        }
        return 0;
    };
}

}  // namespace cq::cli
