// cq bench --memory end to end: its weight bytes by format equal the tensor sizes computed here from each tensor's
// shape and ggml's block sizes, its KV cache equals 2·n_layer·n_ctx·n_kv_head·head_dim·4 from the hyperparameters,
// and its measured peak RSS is within 5 % of /usr/bin/time -v's maximum resident set size for the same command.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <map>
#include <regex>

#include <nlohmann/json.hpp>

#include "command_runner.h"
#include "test_support.h"

#ifndef CQ_CLI_PATH
#error "test_cli_memory needs the cq binary (CQ_BUILD_TOOLS=ON)"
#endif

namespace cq {
namespace {

using test::RunResult;
using test::run_command;

using nlohmann::json;

// ggml's storage: (elements per block, bytes per block) — ggml-common.h's block structs.
const std::map<std::string, std::pair<int64_t, int64_t>> kBlocks = {
    {"f32", {1, 4}},     {"f16", {1, 2}},      {"bf16", {1, 2}},     {"q8_0", {32, 34}},  {"q4_0", {32, 18}},  {"q4_1", {32, 20}},
    {"q5_0", {32, 22}},  {"q5_1", {32, 24}},   {"iq4_nl", {32, 18}}, {"q2_k", {256, 84}}, {"q3_k", {256, 110}}, {"q4_k", {256, 144}},
    {"q5_k", {256, 176}}, {"q6_k", {256, 210}}, {"iq4_xs", {256, 136}}};

std::string lower(std::string s) {
    for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return s;
}

class MemoryProfileCli : public ::testing::Test {
protected:
    test::TempDir dir{"cq_memory"};
    json run(const std::string& args) {
        const RunResult r = run_command(std::string(CQ_CLI_PATH) + " " + args);
        EXPECT_EQ(r.exit_code, 0) << args << "\n" << r.err;
        return r.exit_code == 0 ? json::parse(r.out) : json();
    }
    // Analytic figures computed here, from cq info's tensor list (shapes, types) and hyperparameters.
    void check_analytic(const std::string& model, int64_t n_ctx, const std::string& extra) {
        const json info = run("info --json --tensors " + model);
        ASSERT_FALSE(info.is_null());
        std::map<std::string, uint64_t> expected;
        for (const auto& t : info["tensors"]) {
            const std::string type = lower(t["dtype"].get<std::string>());
            ASSERT_TRUE(kBlocks.count(type)) << "no block size for " << type << " in the test's table";
            int64_t numel = 1;
            for (const auto& d : t["shape"]) numel *= d.get<int64_t>();
            const auto [per_block, block_bytes] = kBlocks.at(type);
            ASSERT_EQ(numel % per_block, 0) << t["name"];
            expected[type] += static_cast<uint64_t>(numel / per_block * block_bytes);
        }
        const json p = run("bench --memory --json " + model + " " + extra);
        ASSERT_FALSE(p.is_null());
        std::map<std::string, uint64_t> got;
        for (const auto& w : p["analytic"]["weights"]) got[w["format"].get<std::string>()] = w["bytes"].get<uint64_t>();
        EXPECT_EQ(got, expected) << model;
        const auto& hp = info["hyperparameters"];
        const auto num = [&](std::initializer_list<const char*> keys) {
            for (const char* k : keys)
                if (hp.contains(k)) return std::stoll(hp[k].get<std::string>());
            ADD_FAILURE() << "no hyperparameter " << *keys.begin();
            return 0ll;
        };
        const int64_t n_layer = num({"block_count", "num_layers"}), n_head = num({"attention.head_count", "num_attention_heads"});
        const int64_t n_kv = num({"attention.head_count_kv", "num_key_value_heads"}), n_embd = num({"embedding_length", "hidden_size"});
        const uint64_t kv = 2ull * static_cast<uint64_t>(n_layer * n_ctx * n_kv * (n_embd / n_head)) * 4;
        EXPECT_EQ(p["analytic"]["kv_cache"]["bytes"].get<uint64_t>(), kv) << model;
        EXPECT_EQ(p["analytic"]["kv_cache"]["n_ctx"].get<int64_t>(), n_ctx);
        // Measured figures hang together: three phases, each peak at least what the phase ended with.
        const auto& m = p["measured"];
        ASSERT_EQ(m["phases"].size(), 3u);
        EXPECT_EQ(m["phases"][0]["phase"], "load");
        for (const auto& ph : m["phases"]) EXPECT_GE(ph["peak"].get<uint64_t>(), ph["rss_after"].get<uint64_t>()) << ph["phase"];
        EXPECT_GT(m["peak_rss"].get<uint64_t>(), m["baseline_rss"].get<uint64_t>());
        // Reconciled with the measurement: after a prompt has read every weight, the model file's resident pages are the
        // weights (whole pages, plus the header's) — unless packing handed them back for its own copies.
        const uint64_t weights = p["analytic"]["weight_bytes"].get<uint64_t>(), resident = m["weights_resident"].get<uint64_t>();
        uint64_t file_bytes = 0;
        if (std::filesystem::is_directory(model)) {
            for (const auto& e : std::filesystem::directory_iterator(model)) file_bytes += e.file_size();
        } else {
            file_bytes = std::filesystem::file_size(model);
        }
        if (p["analytic"]["packed_bytes"].get<uint64_t>() == 0) {
            EXPECT_GE(resident + 8192, weights) << model;
            EXPECT_LE(resident, file_bytes + 4096) << model;
        } else {
            EXPECT_LT(resident, weights) << model << ": the packed tensors' mapped pages were not handed back";
        }
    }
};

TEST_F(MemoryProfileCli, WeightsAndKvEqualAnalyticSizes) {
    const std::string f32 = test::fixture("models/stories260K-gguf/stories260K.gguf");
    check_analytic(f32, 64 + 16, "-p 64 -n 16");
    check_analytic(f32, 256, "-p 64 -n 16 --ctx 256");
    // Quantized: several formats in one file.
    const std::string q8 = dir.file("q8.gguf"), q4 = dir.file("q4.gguf");
    ASSERT_EQ(run_command(std::string(CQ_CLI_PATH) + " quantize " + f32 + " " + q8 + " -t q8_0 --json > /dev/null").exit_code, 0);
    ASSERT_EQ(run_command(std::string(CQ_CLI_PATH) + " quantize " + f32 + " " + q4 + " -t q4_0 --json > /dev/null").exit_code, 0);
    check_analytic(q8, 96, "-p 64 -n 32");
    check_analytic(q4, 96, "-p 64 -n 32");
    // An HF directory (safetensors, 20 MB of f32).
    check_analytic(test::fixture("models/llama-256d-stories"), 320, "-p 256 -n 64");
}

// The calibration phase's statistics: Σx² (f32) per input channel and one count (i64) for every block Linear — sized
// here from the file's 2-D blk.* tensors, [n_out, n_in].
TEST_F(MemoryProfileCli, CalibrationPhaseHoldsOneStatisticPerInputChannel) {
    const std::string model = test::fixture("models/stories260K-gguf/stories260K.gguf");
    const json info = run("info --json --tensors " + model);
    uint64_t expected = 0;
    for (const auto& t : info["tensors"])
        if (t["name"].get<std::string>().rfind("blk.", 0) == 0 && t["shape"].size() == 2) expected += t["shape"][1].get<uint64_t>() * 4 + 8;
    const json p = run("bench --memory --json " + model + " -p 128 -n 16 --calib " + test::fixture("data/stories_calib.txt") +
                       " --calib-ctx 128 --calib-chunks 2");
    ASSERT_FALSE(p.is_null());
    EXPECT_EQ(p["analytic"]["calibration_stats_bytes"].get<uint64_t>(), expected);
    ASSERT_EQ(p["measured"]["phases"].size(), 4u);
    EXPECT_EQ(p["measured"]["phases"][3]["phase"], "calibration");
    EXPECT_GE(p["measured"]["phases"][3]["analytic"].get<uint64_t>(), expected);
    // A chunk longer than the KV cache is refused with a message naming both.
    const RunResult r = run_command(std::string(CQ_CLI_PATH) + " bench --memory " + model + " -p 16 -n 16 --calib " + test::fixture("data/stories_calib.txt") +
                               " --calib-ctx 128");
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.err.find("128 tokens do not fit a context of 32"), std::string::npos) << r.err;
}

TEST_F(MemoryProfileCli, PeakMatchesTimeMaximumResidentSetSize) {
    if (!std::filesystem::exists("/usr/bin/time")) GTEST_SKIP() << "/usr/bin/time is not installed (apt-get install time)";
    for (const std::string& model : {test::fixture("models/llama-256d-stories"), test::fixture("models/stories260K-gguf/stories260K.gguf")}) {
        const RunResult r = run_command("/usr/bin/time -v " + std::string(CQ_CLI_PATH) + " bench --memory --json " + model + " -p 256 -n 64");
        ASSERT_EQ(r.exit_code, 0) << r.err;
        std::smatch match;
        ASSERT_TRUE(std::regex_search(r.err, match, std::regex(R"(Maximum resident set size \(kbytes\): (\d+))"))) << r.err;
        const double time_peak = std::stod(match[1]) * 1024.0;
        const double peak = json::parse(r.out)["measured"]["peak_rss"].get<double>();
        EXPECT_NEAR(peak, time_peak, 0.05 * time_peak) << model << ": profile " << peak << " B, /usr/bin/time " << time_peak << " B";
        std::printf("[ memory   ] %s: peak %.0f KiB, /usr/bin/time %.0f KiB (%+.2f %%)\n", model.c_str(), peak / 1024, time_peak / 1024,
                    100.0 * (peak - time_peak) / time_peak);
    }
}

// The training-step phase: every tensor of a LLaMA model trains in full fine-tuning, so the trainer holds 4 bytes of f32
// value and 4 of gradient per parameter counted here from the file's tensor shapes, AdamW 8 more (m and v); block
// checkpointing keeps less activation memory; and the phase's measured RSS growth is the analytic sum (within 10 %), its
// peak that of /usr/bin/time.
TEST_F(MemoryProfileCli, TrainingStepHoldsWeightsGradientsMomentsAndActivations) {
    const std::string model = test::fixture("models/llama-256d-stories");
    const json info = run("info --json --tensors " + model);
    ASSERT_FALSE(info.is_null());
    uint64_t params = 0;
    for (const auto& t : info["tensors"]) {
        uint64_t numel = 1;
        for (const auto& d : t["shape"]) numel *= d.get<uint64_t>();
        params += numel;
    }
    uint64_t activations[2] = {0, 0};
    int i = 0;
    const bool timed = std::filesystem::exists("/usr/bin/time");
    for (const std::string checkpoint : {"none", "block"}) {
        const std::string args = "bench --memory --json " + model + " -p 64 -n 16 --train-batch 4 --train-ctx 128 --train-checkpoint " + checkpoint;
        const RunResult r = run_command((timed ? "/usr/bin/time -v " : "") + std::string(CQ_CLI_PATH) + " " + args);
        ASSERT_EQ(r.exit_code, 0) << args << "\n" << r.err;
        const json p = json::parse(r.out);
        const auto& t = p["analytic"]["training"];
        EXPECT_EQ(t["parameters"].get<uint64_t>(), params);
        EXPECT_EQ(t["values_bytes"].get<uint64_t>(), 4 * params);
        EXPECT_EQ(t["gradient_bytes"].get<uint64_t>(), 4 * params);
        EXPECT_EQ(t["optimizer_bytes"].get<uint64_t>(), 8 * params);
        EXPECT_EQ(t["checkpoint"], checkpoint);
        activations[i++] = t["activation_bytes"].get<uint64_t>();
        const auto& phases = p["measured"]["phases"];
        ASSERT_EQ(phases.size(), 4u);
        const auto& ph = phases[3];
        EXPECT_EQ(ph["phase"], "training step");
        const double grown = static_cast<double>(ph["rss_after"].get<uint64_t>()) - ph["rss_before"].get<double>();
        const double analytic = ph["analytic"].get<double>();
#if defined(__SANITIZE_ADDRESS__)
        // AddressSanitizer's allocator (redzones, quarantine, shadow memory) is not the one the analytic sum describes.
        std::printf("[ memory   ] built with AddressSanitizer: RSS growth not compared with the analytic sum\n");
#else
        EXPECT_NEAR(grown, analytic, 0.10 * analytic) << checkpoint << ": RSS grew " << grown << " B, analytic " << analytic << " B";
#endif
        std::printf("[ memory   ] training step (checkpoint %s): RSS +%.2f MiB, analytic %.2f MiB (%+.1f %%)\n", checkpoint.c_str(),
                    grown / 1048576, analytic / 1048576, 100.0 * (grown - analytic) / analytic);
        if (timed) {
            std::smatch match;
            ASSERT_TRUE(std::regex_search(r.err, match, std::regex(R"(Maximum resident set size \(kbytes\): (\d+))"))) << r.err;
            const double time_peak = std::stod(match[1]) * 1024.0;
            EXPECT_NEAR(p["measured"]["peak_rss"].get<double>(), time_peak, 0.05 * time_peak) << checkpoint;
        }
    }
    EXPECT_LT(activations[1], activations[0]) << "block checkpointing should keep fewer activations";
    // A bad checkpoint spec is refused by name.
    const RunResult bad = run_command(std::string(CQ_CLI_PATH) + " bench --memory " + model + " -p 8 -n 0 --train-batch 1 --train-checkpoint sometimes");
    EXPECT_NE(bad.exit_code, 0);
    EXPECT_NE(bad.err.find("sometimes"), std::string::npos) << bad.err;
}

}  // namespace
}  // namespace cq
