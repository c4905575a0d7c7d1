// cq export / cq eval MODEL.onnx through the command line: the JSON report, the files written, one clear error and a
// non-zero exit for a bad format, an old opset or a float model asked for int8, and no partial output.
#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "command_runner.h"
#include "test_support.h"

#ifndef CQ_CLI_PATH
#error "test_cli_onnx needs the cq binary (CQ_BUILD_TOOLS=ON)"
#endif

namespace cq {
namespace {

using test::RunResult;

RunResult run_cq(const std::string& args, const test::TempDir&) { return test::run_command(std::string(CQ_CLI_PATH) + " " + args); }

TEST(CliOnnx, ExportWritesBothDecoderGraphsAndReportsThem) {
    test::TempDir dir;
    const RunResult r = run_cq("export '" + test::fixture("models/llama-256d-stories") + "' '" + dir.file("m.onnx") + "' --json", dir);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const auto j = nlohmann::json::parse(r.out);
    EXPECT_EQ(j["format"], "fp32");
    ASSERT_EQ(j["files"].size(), 2u);
    EXPECT_EQ(j["files"][1]["graph"], "decode");
    EXPECT_EQ(j["files"][1]["inputs"].size(), 3u + 2u * 6u);  // ids, mask, positions + 6 layers' past K and V
    EXPECT_TRUE(std::filesystem::exists(dir.file("m.onnx")));
    EXPECT_TRUE(std::filesystem::exists(dir.file("m_with_past.onnx")));
}

TEST(CliOnnx, BadRequestsFailClearlyWithoutOutput) {
    test::TempDir dir;
    const std::string bert = "'" + test::fixture("models/bert-tiny-sst2") + "'";
    RunResult r = run_cq("export " + bert + " '" + dir.file("a.onnx") + "' --format int3", dir);
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.err.find("int3"), std::string::npos) << r.err;
    r = run_cq("export " + bert + " '" + dir.file("b.onnx") + "' --format qdq", dir);
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.err.find("w8a8-static"), std::string::npos) << r.err;
    r = run_cq("export " + bert + " '" + dir.file("c.onnx") + "' --opset 13", dir);
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.err.find("opset 13"), std::string::npos) << r.err;
    EXPECT_TRUE(std::filesystem::is_empty(dir.path()));
}

TEST(CliOnnx, DecoderW8A8QuantizesRunsAndExports) {
    test::TempDir dir;
    const std::string llama = "'" + test::fixture("models/llama-256d-stories") + "'";
    const std::string text = "'" + test::fixture("data/stories_calib.txt") + "'";
    RunResult r = run_cq("quantize " + llama + " '" + dir.file("s.gguf") + "' --type w8a8-static --act-symmetric --calib " + text +
                             " --calib-ctx 64 --calib-chunks 4 --json",
                         dir);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const auto q = nlohmann::json::parse(r.out);
    EXPECT_EQ(q["quantize"]["type"], "w8a8-static");
    EXPECT_EQ(q["quantize"]["tensors_by_type"]["i8"], 42);  // 6 blocks × q k v o gate up down
    // the file runs in cq and exports as TensorRT's explicit quantization, its rules checked
    r = run_cq("perplexity '" + dir.file("s.gguf") + "' -f " + text + " -c 64 --chunks 2 --json", dir);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_GT(nlohmann::json::parse(r.out)["ppl"].get<double>(), 1.0);
    r = run_cq("export '" + dir.file("s.gguf") + "' '" + dir.file("t.onnx") + "' --format trt-qdq --no-past --json", dir);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(nlohmann::json::parse(r.out)["files"][0]["linears"]["Q/DQ MatMul (TensorRT)"], 42);
    // options that do not fit the type or the model are one clear error, and write nothing
    r = run_cq("quantize " + llama + " '" + dir.file("x.gguf") + "' --type w8a8-dynamic --act-symmetric", dir);
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.err.find("--act-symmetric"), std::string::npos) << r.err;
    r = run_cq("quantize " + llama + " '" + dir.file("x.gguf") + "' --type w8a8-static", dir);
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.err.find("calibration text"), std::string::npos) << r.err;
    r = run_cq("quantize '" + test::fixture("models/bert-tiny-sst2") + "' '" + dir.file("x.gguf") + "' --type w8a8-dynamic --act-granularity tensor", dir);
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.err.find("--act-granularity"), std::string::npos) << r.err;
    EXPECT_FALSE(std::filesystem::exists(dir.file("x.gguf")));
}

TEST(CliOnnx, EncoderInt8AttentionIsRecordedAndTheExportSaysSo) {
    test::TempDir dir;
    const std::string bert = "'" + test::fixture("models/bert-tiny-sst2") + "'";
    RunResult r = run_cq("quantize " + bert + " '" + dir.file("a.gguf") + "' --type w8a8-dynamic --attention int8 --json", dir);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(nlohmann::json::parse(r.out)["quantize"]["attention"], "int8");
    r = run_cq("export '" + dir.file("a.gguf") + "' '" + dir.file("a.onnx") + "' --format dynamic --json", dir);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const auto notes = nlohmann::json::parse(r.out)["notes"];
    ASSERT_EQ(notes.size(), 1u);
    EXPECT_NE(notes[0].get<std::string>().find("INT8"), std::string::npos) << notes[0];
    // one clear error, nothing written: a weight-only type, a decoder LLM, an unknown precision
    for (const std::string& bad : {bert + " '" + dir.file("x.gguf") + "' --type q8_0 --attention int8",
                                   "'" + test::fixture("models/llama-256d-stories") + "' '" + dir.file("x.gguf") + "' --type w8a8-dynamic --attention int8",
                                   bert + " '" + dir.file("x.gguf") + "' --type w8a8-dynamic --attention bf16"}) {
        r = run_cq("quantize " + bad, dir);
        EXPECT_NE(r.exit_code, 0) << bad;
        EXPECT_NE(r.err.find("--attention"), std::string::npos) << r.err;
        EXPECT_FALSE(std::filesystem::exists(dir.file("x.gguf"))) << bad;
    }
}

TEST(CliOnnx, EvalRunsAnImportedModel) {
    test::TempDir dir;
    const RunResult r = run_cq("eval '" + test::fixture("vision/mnist-8.onnx") + "' --data '" + test::fixture("data/t10k-images-idx3-ubyte.gz") +
                                   "' --range 0:500 --json",
                               dir);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const auto j = nlohmann::json::parse(r.out);
    EXPECT_EQ(j["result"]["samples"], 500);
    EXPECT_GT(j["result"]["accuracy"].get<double>(), 0.97);
}

}  // namespace
}  // namespace cq
