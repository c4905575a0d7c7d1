// The cq binary end to end: `cq info` on the fixtures (JSON parses, counts equal the independent
// expectations), `--kernels` under CQ_ISA, and one clear message + non-zero exit on bad input.
#include <gtest/gtest.h>

#include <sys/wait.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>

#include <nlohmann/json.hpp>

#include "command_runner.h"
#include "test_support.h"

#ifndef CQ_CLI_PATH
#error "test_cli needs the cq binary (CQ_BUILD_TOOLS=ON)"
#endif

namespace cq {
namespace {

using test::RunResult;

RunResult run_cq(const std::string& args, const std::string& env = "") {
    return test::run_command(env + " " + CQ_CLI_PATH + " " + args);
}

nlohmann::json expected() {
    std::ifstream in(test::tests_dir() + "/expected/fixtures.json");
    return nlohmann::json::parse(in)["files"];
}

TEST(CliInfo, JsonCountsMatchIndependentParserForEveryFixture) {
    const nlohmann::json all = expected();
    for (const auto& [rel, exp] : all.items()) {
        std::string path = test::fixture(rel);
        if (!path.empty() && path.back() == '/') path.pop_back();
        const RunResult r = run_cq("info --json '" + path + "'");
        ASSERT_EQ(r.exit_code, 0) << rel << " (" << path << "): " << r.err;
        const auto j = nlohmann::json::parse(r.out);
        const nlohmann::json& e = exp.contains("n_params") ? exp : all.at(exp["weights"].get<std::string>());
        EXPECT_EQ(j["parameter_count"].get<uint64_t>(), e["n_params"].get<uint64_t>()) << rel;
        EXPECT_EQ(j["tensor_count"].get<uint64_t>(), e["n_tensors"].get<uint64_t>()) << rel;
        uint64_t bytes = 0;
        for (const auto& [dt, b] : e["bytes_by_dtype"].items()) {
            EXPECT_EQ(j["dtypes"][dt]["bytes"].get<uint64_t>(), b.get<uint64_t>()) << rel << " " << dt;
            bytes += b.get<uint64_t>();
        }
        if (e["n_params"].get<uint64_t>() > 0) {
            EXPECT_DOUBLE_EQ(j["bits_per_weight"].get<double>(), 8.0 * static_cast<double>(bytes) / e["n_params"].get<double>()) << rel;
        }
    }
}

TEST(CliInfo, TensorsAndMetadataInJson) {
    const RunResult r = run_cq("info --json --tensors --metadata " + test::fixture("models/stories260K-gguf/stories260K.gguf"));
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const auto j = nlohmann::json::parse(r.out);
    ASSERT_EQ(j["tensors"].size(), 48u);
    EXPECT_EQ(j["architecture"], "llama");
    EXPECT_EQ(j["hyperparameters"]["embedding_length"], "64");
    EXPECT_EQ(j["metadata"]["llama.block_count"], 5);
    EXPECT_EQ(j["metadata"]["tokenizer.ggml.tokens"]["count"], 512);  // long array summarised
    const auto e = expected()["models/stories260K-gguf/stories260K.gguf"]["tensors"];
    for (const auto& t : j["tensors"]) {
        const auto& et = e[t["name"].get<std::string>()];
        EXPECT_EQ(t["shape"], et["shape"]) << t["name"];
        EXPECT_EQ(t["offset"], et["offset"]) << t["name"];
        EXPECT_EQ(t["bytes"], et["nbytes"]) << t["name"];
    }
}

TEST(CliInfo, TextOutputNamesTheEssentials) {
    const RunResult r = run_cq("info --tensors " + test::fixture("models/gpt2-tiny-stories"));
    ASSERT_EQ(r.exit_code, 0) << r.err;
    for (const char* s : {"architecture", "gpt2", "parameters", "bits/weight", "hyperparameters", "transformer.h.0.attn.c_attn.weight"})
        EXPECT_NE(r.out.find(s), std::string::npos) << s;
}

TEST(CliKernels, ReportsLevelAndHonoursCqIsa) {
    RunResult r = run_cq("info --kernels --json", "env -u CQ_ISA");
    ASSERT_EQ(r.exit_code, 0) << r.err;
    auto j = nlohmann::json::parse(r.out)["kernels"];
    EXPECT_EQ(j["level"], j["detected_level"]);
    // 8 float ops + 10 quantized gemms + 3 activation quantizers + 4 INT8 W8A8 ops + the encoders' activations
    EXPECT_GE(j["kernels"].size(), 25u);

    r = run_cq("info --kernels --json", "CQ_ISA=ref");
    ASSERT_EQ(r.exit_code, 0) << r.err;
    j = nlohmann::json::parse(r.out)["kernels"];
    EXPECT_EQ(j["level"], "ref");
    for (const auto& k : j["kernels"]) EXPECT_NE(k["kernel"].get<std::string>().find("__ref"), std::string::npos) << k;

    r = run_cq("info --kernels", "CQ_ISA=sse9");
    EXPECT_EQ(r.exit_code, 2);
    EXPECT_NE(r.err.find("CQ_ISA='sse9'"), std::string::npos) << r.err;
}

TEST(CliErrors, BadInputGivesOneClearMessageAndNonZeroExit) {
    const auto dir = std::filesystem::temp_directory_path() / ("cq_cli_bad_" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir);
    const auto bytes = test::read_bytes(test::fixture("models/stories260K-gguf/stories260K.gguf"));
    const std::string truncated = (dir / "truncated.gguf").string();
    std::ofstream(truncated, std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()), 5000);

    struct Case {
        std::string args;
        int code;
        std::string needle;
    };
    const Case cases[] = {
        {"info " + truncated, 1, "at byte"},
        {"info /nonexistent/model.gguf", 1, "does not exist"},
        {"info " + test::fixture("data/sst2_dev.tsv"), 1, "not a format cq reads"},
        {"info --bogus-option x", 2, "bogus-option"},
        {"info", 2, "PATH"},
        {"frobnicate", 2, "frobnicate"},
        {"--threads -3 info --kernels", 2, "threads"},
    };
    for (const auto& c : cases) {
        const RunResult r = run_cq(c.args);
        EXPECT_EQ(r.exit_code, c.code) << c.args << "\n" << r.err;
        EXPECT_NE(r.err.find(c.needle), std::string::npos) << c.args << "\n" << r.err;
        EXPECT_TRUE(r.out.empty()) << c.args << " printed to stdout: " << r.out;
    }
    // The truncated-file message names the file and is one line.
    const RunResult r = run_cq("info " + truncated);
    EXPECT_NE(r.err.find(truncated), std::string::npos);
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    std::filesystem::remove_all(dir);
}

TEST(CliHelp, ExplainsEveryOptionWithDefault) {
    const RunResult r = run_cq("info --help");
    EXPECT_EQ(r.exit_code, 0);
    for (const char* opt : {"--tensors", "--metadata", "--json", "--kernels"}) EXPECT_NE(r.out.find(opt), std::string::npos) << opt;
    EXPECT_NE(r.out.find("default"), std::string::npos);
}

// ---- encoders: cq eval, cq quantize --type w8a8-* ------------------------------------------------------

TEST(CliEval, ClassificationAccuracyJsonAndCompare) {
    const std::string bert = test::fixture("models/bert-tiny-sst2"), dev = test::fixture("data/sst2_dev.tsv");
    const RunResult r = run_cq("eval '" + bert + "' --data '" + dev + "' --max-len 64 --range 0:100 --json");
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const auto j = nlohmann::json::parse(r.out);
    EXPECT_EQ(j["result"]["samples"].get<int64_t>(), 100);
    // Comparing a model with itself: full agreement, zero divergence.
    const RunResult c = run_cq("eval '" + bert + "' --data '" + dev + "' --max-len 64 --range 0:50 --compare '" + bert + "' --json");
    ASSERT_EQ(c.exit_code, 0) << c.err;
    const auto k = nlohmann::json::parse(c.out);
    EXPECT_EQ(k["compare"]["agreement"]["agreement"].get<double>(), 1.0);
    EXPECT_EQ(k["compare"]["agreement"]["mean_kld"].get<double>(), 0.0);
}

TEST(CliEval, DataThatDoesNotFitTheModelGivesOneClearError) {
    test::TempDir tmp;
    const std::string bert = test::fixture("models/bert-tiny-sst2"), vit = test::fixture("models/vit-tiny-mnist");
    const std::string mnist = test::fixture("data/t10k-images-idx3-ubyte.gz");
    struct Case {
        std::string args, needle;
    };
    const std::string no_label = tmp.write("nolabel.tsv", "sentence\tscore\ngood film\t1\n");
    const std::vector<Case> cases = {
        {"eval '" + bert + "' --data '" + no_label + "'", "label"},                                  // TSV without the label column
        {"eval '" + bert + "' --data '" + mnist + "' --range 0:10", "classifies text"},             // images for a text model
        {"eval '" + vit + "' --data '" + test::fixture("data/sst2_dev.tsv") + "'", "classifies images"},  // text for ViT
        {"eval '" + vit + "' --data '" + mnist + "' --range 9990:10010", "10000"},                   // range outside the file
        {"eval '" + vit + "' --data '" + mnist + "' --range 5", "FIRST:END"},                        // malformed range
        {"eval '" + bert + "' --data x --task regression", "not supported"},                         // unknown task
        {"eval '" + bert + "' --data '" + test::fixture("data/sst2_dev.tsv") + "' --compare '" + vit + "'", "classes"},  // heads differ
        {"quantize '" + vit + "' " + tmp.file("o.gguf") + " --type w8a8-static --calib '" + mnist +
             "' --calib-range 0:10 --calib-samples 64", "fewer than the 64"},                           // too few calibration samples
        {"quantize '" + vit + "' " + tmp.file("o.gguf") + " --type w8a8-static", "--calib"},          // static without data
        {"quantize '" + vit + "' " + tmp.file("o.gguf") + " --type w8a8-static --calib-method median --calib '" + mnist + "'",
         "minmax, percentile, mse, entropy"},
        // LLMs: --calib is calibration text (a missing file is named); the W8A8 calibration cache is not theirs.
        {"quantize '" + test::fixture("models/stories260K-gguf/stories260K.gguf") + "' " + tmp.file("o.gguf") + " --type q8_0 --calib x",
         "'x'"},
        {"quantize '" + test::fixture("models/stories260K-gguf/stories260K.gguf") + "' " + tmp.file("o.gguf") + " --type q8_0 --calib-cache y",
         "w8a8"},
    };
    for (const auto& c : cases) {
        const RunResult r = run_cq(c.args);
        EXPECT_NE(r.exit_code, 0) << c.args;
        EXPECT_NE(r.err.find(c.needle), std::string::npos) << c.args << "\n" << r.err;
        EXPECT_EQ(r.err.find("internal error"), std::string::npos) << r.err;
    }
    EXPECT_FALSE(std::filesystem::exists(tmp.file("o.gguf")));  // no partial output from any failure
}

TEST(CliQuantizeW8A8, SameRunReportAndTheFileEvaluatesAgain) {
    test::TempDir tmp;
    const std::string vit = test::fixture("models/vit-tiny-mnist"), mnist = test::fixture("data/t10k-images-idx3-ubyte.gz");
    const std::string out = tmp.file("vit-w8a8.gguf");
    const RunResult r = run_cq("quantize '" + vit + "' " + out + " --type w8a8-dynamic --eval '" + mnist +
                               "' --eval-range 8000:8500 --bench-batch 4 --bench-reps 1 --json");
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const auto j = nlohmann::json::parse(r.out);
    EXPECT_EQ(j["quantize"]["type"], "w8a8-dynamic");
    EXPECT_LT(j["quantize"]["file_bytes_out"].get<double>(), j["quantize"]["file_bytes_in"].get<double>() / 2);
    EXPECT_EQ(j["eval"]["before"]["samples"].get<int64_t>(), 500);
    EXPECT_GE(j["eval"]["agreement"]["agreement"].get<double>(), 0.99);
    EXPECT_GT(j["eval"]["speed"]["speedup"].get<double>(), 0.0);
    const RunResult e = run_cq("eval " + out + " --data '" + mnist + "' --range 8000:8500 --json");
    ASSERT_EQ(e.exit_code, 0) << e.err;
    EXPECT_EQ(nlohmann::json::parse(e.out)["result"]["correct"], j["eval"]["after"]["correct"]);
    // Deterministic: the same command writes the same bytes.
    const RunResult again = run_cq("quantize '" + vit + "' " + tmp.file("again.gguf") + " --type w8a8-dynamic --json");
    ASSERT_EQ(again.exit_code, 0) << again.err;
    EXPECT_EQ(test::read_bytes(out), test::read_bytes(tmp.file("again.gguf")));
}

// The text report summarises type fallbacks in one line (per requested → chosen type, counts as the JSON report's tensors
// say); --verbose lists each tensor with its reason.
TEST(CliQuantize, FallbacksAreOneSummaryLineUnlessVerbose) {
    test::TempDir dir;
    const std::string args = "quantize " + test::fixture("models/stories260K-gguf/stories260K.gguf") + " " + dir.file("q.gguf") + " --type q4_k_m";
    const RunResult json = run_cq(args + " --json");
    ASSERT_EQ(json.exit_code, 0) << json.err;
    std::map<std::string, int> moves;
    int fallbacks = 0;
    const auto report = nlohmann::json::parse(json.out);
    for (const auto& t : report["quantize"]["tensors"])
        if (!t["fallback"].get<std::string>().empty()) ++fallbacks, ++moves[t["requested"].get<std::string>() + "→" + t["type"].get<std::string>()];
    ASSERT_GT(fallbacks, 0) << "stories260K's 64-wide rows do not fit q4_K's 256-blocks";

    const RunResult text = run_cq(args);
    ASSERT_EQ(text.exit_code, 0) << text.err;
    const auto summary = text.out.find("tensors fell back to another type:");
    ASSERT_NE(summary, std::string::npos) << text.out;
    const std::string line = text.out.substr(summary, text.out.find('\n', summary) - summary);
    for (const auto& [move, n] : moves) EXPECT_NE(line.find(move + " ×" + std::to_string(n)), std::string::npos) << move << " in: " << line;
    EXPECT_EQ(text.out.find("blk.0.attn_q.weight"), std::string::npos) << "per-tensor lines belong to --verbose";

    const RunResult verbose = run_cq(args + " --verbose");
    ASSERT_EQ(verbose.exit_code, 0) << verbose.err;
    int listed = 0;
    for (size_t at = verbose.out.find(".weight: "); at != std::string::npos; at = verbose.out.find(".weight: ", at + 1)) ++listed;
    EXPECT_EQ(listed, fallbacks);
}

TEST(CliHelp, EncoderCommandsExplainEveryOptionWithDefault) {
    const RunResult e = run_cq("eval --help");
    EXPECT_EQ(e.exit_code, 0);
    for (const char* opt : {"--data", "--range", "--compare", "--batch", "--max-len", "--json", "--labels"})
        EXPECT_NE(e.out.find(opt), std::string::npos) << opt;
    const RunResult q = run_cq("quantize --help");
    for (const char* opt : {"w8a8-dynamic", "w8a8-static", "--calib", "--calib-method", "--calib-cache", "--calib-samples", "--act-bits", "--layer"})
        EXPECT_NE(q.out.find(opt), std::string::npos) << opt;
}

}  // namespace
}  // namespace cq
