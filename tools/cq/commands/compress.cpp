// `cq compress MODEL --recipe R.yaml -o OUT [--resume] [--json]`: the CompressionPipeline (cq/pipeline.h) — the recipe's
// stages in order, each measured against the original and checkpointed; the report as Markdown or JSON.
#include <cstdio>
#include <iostream>

#include "commands/commands.h"
#include "commands/format.h"
#include "cq/error.h"
#include "cq/pipeline.h"
#include "cq/report.h"

namespace cq::cli {

Runner register_compress(CLI::App& app) {
    struct Options {
        std::string input, recipe, output, report;
        bool resume = false, json = false;
    };
    auto o = std::make_shared<Options>();
    CLI::App* cmd = app.add_subcommand("compress", "Run a compression recipe (prune, distill, quantize, export stages) on a decoder LLM or an encoder classifier, "
                                                   "measuring every stage against the original");
    cmd->add_option("input", o->input, "The model: a GGUF file or an HF directory (decoder LLM), or an encoder classifier's HF directory")->required();
    cmd->add_option("--recipe", o->recipe, "The recipe (YAML or JSON; docs/pipeline.md lists its keys)")->required();
    cmd->add_option("-o,--output", o->output, "Output directory: stages/, state.json, provenance.json, report.md/json, model.gguf")->required();
    cmd->add_flag("--resume", o->resume, "Continue the run in OUT after its last finished stage (default: off)");
    cmd->add_flag("--json", o->json, "Print the report as JSON instead of Markdown (default: off)");
    cmd->add_option("--report", o->report, "Also write the run's HTML report (as cq report makes from OUT/report.json) to this file "
                                           "(default: none)");
    return [o]() -> int {
        // The whole recipe is checked before anything is written.
        CompressionPipeline pipeline(CompressionConfig::from_file(o->recipe));
        std::unique_ptr<Progress> stage;
        std::string stage_name;
        const bool show = !o->json;
        const CompressionReport r = pipeline.run(o->input, o->output, o->resume, [&](const std::string& name, int64_t done, int64_t total) {
            if (name != stage_name) {
                if (stage) stage->finish();
                stage = std::make_unique<Progress>("compress: " + name, show);
                stage_name = name;
            }
            stage->update(done, total, "stages");
        });
        if (stage) stage->finish(), stage.reset();
        if (!o->report.empty()) write_html_report(std::vector<ReportInput>{{o->output + "/report.json", r.json()}}, o->report);
        if (o->json) std::cout << r.json() << "\n";
        else std::cout << r.markdown();
        return 0;
    };
}

}  // namespace cq::cli
