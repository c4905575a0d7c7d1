// cq-run, the device runtime's command line (tools/cq-run): its commands give the library's results, and bad
// input gives one error line and the documented exit code. The aarch64 build is checked under qemu by
// scripts/test_aarch64; this is the same binary built for the host.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdio>
#include <fstream>
#include <iterator>
#include <string>

#include "cq/eval.h"
#include "cq/llm.h"
#include "cq/mapped_file.h"
#include "command_runner.h"
#include "test_support.h"

#ifndef CQ_RUN_PATH
#error "CQ_RUN_PATH must name the cq-run binary"
#endif

namespace {

using namespace cq;

using test::RunResult;

RunResult run_cq_run(const std::string& args) { return test::run_command(std::string(CQ_RUN_PATH) + " " + args); }

size_t lines(const std::string& s) {
    size_t n = 0;
    for (char c : s) n += c == '\n';
    return n;
}

TEST(CliCqRun, PerplexityIsTheLibrarysToSixDecimals) {
    const std::string model = test::fixture("models/stories260K-gguf/stories260K.gguf");
    const std::string text_path = test::fixture("data/tinystories_valid_subset.txt");
    const RunResult r = run_cq_run("-t 1 perplexity '" + model + "' -f '" + text_path + "' -c 128 --chunks 3");
    ASSERT_EQ(r.exit_code, 0) << r.err;
    LoadOptions lo;
    lo.n_ctx = 128;
    auto lm = LanguageModel::load(model, lo);
    std::string text = read_text_file(text_path, uint64_t{1} << 32);
    if (!text.empty() && text.back() == '\n') text.pop_back();
    PerplexityOptions o;
    o.n_ctx = 128;
    o.max_chunks = 3;
    const PerplexityResult want = evaluate_perplexity(*lm, text, o);
    char line[64];
    std::snprintf(line, sizeof line, "PPL = %.6f", want.ppl);
    EXPECT_NE(r.out.find(line), std::string::npos) << r.out << " wanted " << line;
}

TEST(CliCqRun, InfoListsTheKernels) {
    const RunResult r = run_cq_run("info --kernels");
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.out.find("gemm_q4_0 "), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("gemm_u8s8 "), std::string::npos) << r.out;
}

TEST(CliCqRun, BadInputIsOneErrorLineAndTheDocumentedExitCode) {
    test::TempDir dir;
    const std::string bad = dir.write("bad.gguf", std::string("GGUF\x03\x00\x00\x00garbage", 15));
    const struct {
        std::string args;
        int code;
    } cases[] = {
        {"perplexity '" + bad + "' -f /dev/null", 1},        // a corrupt file
        {"perplexity '" + dir.file("missing.gguf") + "' -f /dev/null", 1},
        {"frobnicate x", 2},                                  // usage
        {"bench", 2},
        {"run x -n abc -p hi", 2},
        {"perplexity x -f y --unknown 1", 2},
    };
    for (const auto& c : cases) {
        const RunResult r = run_cq_run(c.args);
        EXPECT_EQ(r.exit_code, c.code) << c.args << ": " << r.err;
        EXPECT_EQ(lines(r.err), 1u) << c.args << ": " << r.err;
        EXPECT_EQ(r.err.rfind("cq-run: error: ", 0), 0u) << c.args << ": " << r.err;
    }
    EXPECT_EQ(run_cq_run("").exit_code, 2);  // no command: usage on stderr
    EXPECT_EQ(run_cq_run("--version").exit_code, 0);
}

}  // namespace
