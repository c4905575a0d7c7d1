// cq finetune from the command line: the JSON report of a short run (its curve, eval before / after, output), the
// written GGUF reloading, a classifier run from random init, and bad input as one clear error with a usage exit code.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include <nlohmann/json.hpp>

#include "cq/llm.h"
#include "command_runner.h"
#include "test_support.h"

#ifndef CQ_CLI_PATH
#error "test_train_cli needs the cq binary (CQ_BUILD_TOOLS=ON)"
#endif

namespace cq {
namespace {

using test::RunResult;

RunResult run_cq(const std::string& args, const test::TempDir&) { return test::run_command(std::string(CQ_CLI_PATH) + " " + args); }

TEST(TrainCli, FinetuneLlmWritesAReportAndAModel) {
    test::TempDir dir;
    const std::string out = dir.file("tuned.gguf");
    const RunResult r = run_cq("-t 2 finetune " + test::fixture("models/llama-256d-stories") + " --data " +
                                   test::fixture("data/stories_calib.txt") + " --eval " + test::fixture("data/tinystories_valid_subset.txt") +
                                   " --eval-batches 2 --steps 4 --batch 2 --ctx 32 --lr 1e-3 --warmup 1 -o " + out + " --json",
                               dir);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_TRUE(r.err.empty()) << "progress must stay quiet when stderr is not a terminal: " << r.err;
    const auto j = nlohmann::json::parse(r.out);
    EXPECT_EQ(j["steps"], 4);
    EXPECT_EQ(j["tokens"], 4 * 2 * 32);
    EXPECT_EQ(j["loss_curve"].size(), 4u);
    EXPECT_GT(j["eval"]["loss_before"].get<double>(), 0.0);
    EXPECT_NEAR(j["eval"]["ppl_before"].get<double>(), std::exp(j["eval"]["loss_before"].get<double>()), 1e-9);
    EXPECT_GT(j["peak_rss_bytes"].get<uint64_t>(), 0u);
    auto model = LanguageModel::load(out);
    EXPECT_EQ(model->config().n_layer, 6);
}

TEST(TrainCli, FinetuneClassifierFromRandomInit) {
    test::TempDir dir;
    const RunResult r = run_cq("-t 2 finetune " + test::fixture("models/bert-tiny-sst2") + " --init random --seed 1 --data " +
                                   test::fixture("data/sst2_dev.tsv") + " --eval " + test::fixture("data/sst2_dev.tsv") +
                                   " --steps 3 --batch 16 --json",
                               dir);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const auto j = nlohmann::json::parse(r.out);
    EXPECT_EQ(j["loss_curve"].size(), 3u);
    EXPECT_NEAR(j["loss_curve"][0].get<double>(), std::log(2.0), 0.05) << "a freshly initialised 2-way classifier";
    EXPECT_NEAR(j["eval"]["accuracy_before"].get<double>(), 0.5, 0.06);
}

// LoRA from the command line on a Q4_K_M GGUF base: the adapter file applied by `cq perplexity --lora` gives the same
// perplexity as the merged model the same (deterministic) run writes, the base file is left as it was, and only the
// adapters train (rank·(in + out) per adapted Linear).
TEST(TrainCli, LoraOnAQuantizedBaseWritesAnAdapterAndAMergedModelThatAgree) {
    test::TempDir dir;
    const std::string base = dir.file("base.gguf");
    ASSERT_EQ(run_cq("quantize " + test::fixture("models/llama-256d-stories") + " " + base + " --type q4_k_m", dir).exit_code, 0);
    const std::vector<uint8_t> base_bytes = test::read_bytes(base);
    const std::string train = "-t 2 finetune " + base + " --data " + test::fixture("data/stories_calib.txt") +
                              " --steps 3 --batch 2 --ctx 32 --lr 2e-3 --lora 4 --lora-alpha 8 --lora-target 'blk.*.attn_*' --json ";
    const RunResult a = run_cq(train + "--lora-output adapter -o " + dir.file("adapter.gguf"), dir);
    ASSERT_EQ(a.exit_code, 0) << a.err;
    const RunResult m = run_cq(train + "-o " + dir.file("merged.gguf"), dir);
    ASSERT_EQ(m.exit_code, 0) << m.err;
    const auto ja = nlohmann::json::parse(a.out);
    // attn_q 256→256, attn_k / attn_v 256→128, attn_output 256→256, in each of 6 blocks
    EXPECT_EQ(ja["trained_parameters"].get<int64_t>(), 6 * 4 * ((256 + 256) + 2 * (256 + 128) + (256 + 256)));
    EXPECT_EQ(ja["loss_curve"], nlohmann::json::parse(m.out)["loss_curve"]) << "the same run twice";
    EXPECT_EQ(test::read_bytes(base), base_bytes);

    const std::string ppl = "perplexity -f " + test::fixture("data/tinystories_valid_subset.txt") + " -c 64 --chunks 6 --json ";
    const RunResult with_adapter = run_cq(ppl + base + " --lora " + dir.file("adapter.gguf"), dir);
    const RunResult merged = run_cq(ppl + dir.file("merged.gguf"), dir);
    const RunResult plain = run_cq(ppl + base, dir);
    ASSERT_EQ(with_adapter.exit_code, 0) << with_adapter.err;
    ASSERT_EQ(merged.exit_code, 0) << merged.err;
    const double p_adapter = nlohmann::json::parse(with_adapter.out)["ppl"], p_merged = nlohmann::json::parse(merged.out)["ppl"];
    const double p_plain = nlohmann::json::parse(plain.out)["ppl"];
    EXPECT_EQ(p_adapter, p_merged);
    EXPECT_NE(p_adapter, p_plain) << "the adapters changed nothing";

    const RunResult bad = run_cq(train + "--lora-output adapter -o " + dir.file("out_dir"), dir);
    EXPECT_EQ(bad.exit_code, 2);  // an invalid argument: the usage exit code
    EXPECT_NE(bad.err.find(".gguf"), std::string::npos) << bad.err;
    EXPECT_FALSE(std::filesystem::exists(dir.file("out_dir")));
}

TEST(TrainCli, BadInputIsOneClearError) {
    test::TempDir dir;
    const std::string model = test::fixture("models/llama-256d-stories");
    RunResult r = run_cq("finetune " + model + " --data " + dir.file("missing.txt") + " --steps 1", dir);
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_NE(r.err.find("missing.txt"), std::string::npos) << r.err;
    r = run_cq("finetune " + model + " --data " + test::fixture("data/stories_calib.txt") + " --steps 1 --ctx 100000", dir);
    EXPECT_EQ(r.exit_code, 2);
    EXPECT_NE(r.err.find("--ctx 100000"), std::string::npos) << r.err;
    r = run_cq("finetune " + model + " --data " + test::fixture("data/stories_calib.txt") + " --steps 1 --precision fp8", dir);
    EXPECT_EQ(r.exit_code, 2);
    EXPECT_NE(r.err.find("--precision"), std::string::npos) << r.err;
    r = run_cq("finetune " + model + " --data " + test::fixture("data/stories_calib.txt") + " --steps 1 --checkpoint every:0", dir);
    EXPECT_EQ(r.exit_code, 2);
    EXPECT_NE(r.err.find("every:0"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace cq
