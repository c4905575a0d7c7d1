// `cq report RUN.json… -o report.html`: one self-contained HTML page (cq/report.h) from the JSON reports of quantize,
// compress, eval, bench and bench --memory runs; several runs merge into one page.
#include <iostream>

#include "commands/commands.h"
#include "cq/report.h"

namespace cq::cli {

Runner register_report(CLI::App& app) {
    struct Options {
        std::vector<std::string> inputs;
        std::string output;
        ReportOptions report;
    };
    auto o = std::make_shared<Options>();
    CLI::App* cmd = app.add_subcommand("report", "Write one self-contained HTML page (no network: inline CSS, JS and SVG) from cq's JSON "
                                                 "reports: same-run tables, a size–quality Pareto chart, per-tensor types and sensitivity, "
                                                 "speed and memory");
    cmd->add_option("reports", o->inputs, "JSON reports, one run each: cq quantize --json, cq compress's report.json, cq eval --json, "
                                          "cq bench --json, cq bench --memory --json (several merge into one page)")
        ->required()
        ->check(CLI::ExistingFile);
    cmd->add_option("-o,--output", o->output, "The HTML file to write (atomically)")->required();
    cmd->add_option("--title", o->report.title, "The page's title")->default_val("cq report");
    cmd->add_option("--metric", o->report.metric, "The Pareto chart's quality axis: auto (perplexity where two or more artifacts with a "
                                                  "size have it, else mean KL-divergence, else accuracy), ppl, kld, accuracy")
        ->default_val("auto")
        ->check(CLI::IsMember({"auto", "ppl", "kld", "accuracy"}));
    return [o]() -> int {
        write_html_report(o->inputs, o->output, o->report);
        std::cout << "wrote " << o->output << " from " << o->inputs.size() << " report" << (o->inputs.size() == 1 ? "" : "s") << "\n";
        return 0;
    };
}

}  // namespace cq::cli
