// cq command-line entry point: parses global options and dispatches to one subcommand. Library
// errors become one message on stderr and a non-zero exit (1 for bad input, 2 for bad usage).
#include <cstdio>
#include <iostream>

#include "commands/commands.h"
#include "cq/atomic_file.h"
#include "cq/error.h"
#include "cq/kernels.h"
#include "cq/thread_pool.h"

int main(int argc, char** argv) {
    CLI::App app{"cq — compress trained neural networks and measure what it cost", "cq"};
    app.set_version_flag("--version", std::string("cq ") + CQ_VERSION);
    int threads = 0;
    app.add_option("-t,--threads", threads, "Worker threads for every command (0 = all hardware threads) (default: 0)")
        ->check(CLI::Range(0, 4096));
    app.require_subcommand(1);

    std::vector<std::pair<CLI::App*, cq::cli::Runner>> commands;
    for (auto [name, reg] : {std::pair{"info", &cq::cli::register_info}, std::pair{"perplexity", &cq::cli::register_perplexity},
                             std::pair{"run", &cq::cli::register_run}, std::pair{"bench", &cq::cli::register_bench},
                             std::pair{"quantize", &cq::cli::register_quantize},
                             std::pair{"eval", &cq::cli::register_eval}, std::pair{"stats", &cq::cli::register_stats},
                             std::pair{"imatrix", &cq::cli::register_imatrix},
                             std::pair{"finetune", &cq::cli::register_finetune},
                             std::pair{"prune", &cq::cli::register_prune},
                             std::pair{"export", &cq::cli::register_export},
                             std::pair{"qat", &cq::cli::register_qat}, std::pair{"distill", &cq::cli::register_distill},
                             std::pair{"compress", &cq::cli::register_compress},
                             std::pair{"report", &cq::cli::register_report}}) {
        cq::cli::Runner run = reg(app);
        commands.emplace_back(app.get_subcommand(name), std::move(run));
    }

    // CLI11 would only say "A subcommand is required" for a misspelt verb; name it instead.
    for (int i = 1; i < argc; ++i) {
        const std::string arg = argv[i];
        if (arg == "-t" || arg == "--threads") {
            ++i;
            continue;
        }
        if (arg.empty() || arg[0] == '-') continue;
        bool known = false;
        std::string verbs;
        for (const auto& [cmd, run] : commands) {
            known = known || cmd->get_name() == arg;
            verbs += (verbs.empty() ? "" : ", ") + cmd->get_name();
        }
        if (!known) {
            std::cerr << "cq: error: unknown command '" << arg << "' (commands: " << verbs << "; see cq --help)\n";
            return 2;
        }
        break;
    }
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        const int code = app.exit(e);
        return code == 0 ? 0 : 2;
    }
    cq::install_interrupt_cleanup();
    try {
        cq::kernel_table();  // validates CQ_ISA before any work
        cq::ThreadPool::set_global_threads(threads);
        for (auto& [cmd, run] : commands)
            if (cmd->parsed()) return run();
    } catch (const CLI::Error& e) {
        std::cerr << "cq: error: " << e.what() << "\n";
        return 2;
    } catch (const cq::InvalidArgument& e) {
        std::cerr << "cq: error: " << e.what() << "\n";
        return 2;
    } catch (const cq::Error& e) {
        std::cerr << "cq: error: " << e.what() << "\n";
        return 1;
    } catch (const std::bad_alloc&) {
        std::cerr << "cq: error: out of memory\n";
        return 1;
    } catch (const std::exception& e) {
        std::cerr << "cq: internal error: " << e.what() << "\n";
        return 3;
    }
    return 0;
}
