// Subcommand registration: each verb adds its options to the app and returns the function that runs
// it after parsing (returning the process exit code).
#pragma once

#include <functional>

#include <CLI/CLI.hpp>

namespace cq::cli {

using Runner = std::function<int()>;

Runner register_info(CLI::App& app);
Runner register_perplexity(CLI::App& app);
Runner register_run(CLI::App& app);
Runner register_bench(CLI::App& app);
Runner register_quantize(CLI::App& app);
Runner register_eval(CLI::App& app);
Runner register_stats(CLI::App& app);
Runner register_imatrix(CLI::App& app);
Runner register_finetune(CLI::App& app);
Runner register_prune(CLI::App& app);
Runner register_export(CLI::App& app);
Runner register_qat(CLI::App& app);
Runner register_distill(CLI::App& app);
Runner register_compress(CLI::App& app);
Runner register_report(CLI::App& app);

}  // namespace cq::cli
