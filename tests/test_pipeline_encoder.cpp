// CompressionPipeline on an encoder classifier (bert-tiny-sst2): structured prune → distill → W8A8 static runs, every
// stage's reported bytes / accuracy / agreement equal an independent recomputation (file sizes, `cq eval` of the written
// file, classify_dataset + compare_predictions), --resume after a finished first stage skips it, and recipe keys that do
// not apply to the model's kind fail with one error naming the line and the key before anything is written.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "cq/classify.h"
#include "cq/error.h"
#include "cq/pipeline.h"
#include "command_runner.h"
#include "test_support.h"

namespace cq {
namespace {

namespace fs = std::filesystem;

const char* kBert = "models/bert-tiny-sst2";

std::string write(const std::string& path, const std::string& text) {
    std::ofstream(path) << text;
    return path;
}

std::string read(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
}

// `cq ARGS`: its exit code, with stdout and stderr together in *out.
int run_cli(const std::string& args, std::string* out) {
    const test::RunResult r = test::run_command(std::string(CQ_CLI_PATH) + " " + args);
    if (out) *out = r.out + r.err;
    return r.exit_code;
}

// Bytes on disk of a file, or of every file under a directory (counted here, apart from the pipeline).
uint64_t bytes_of(const fs::path& p) {
    if (fs::is_regular_file(p)) return fs::file_size(p);
    uint64_t n = 0;
    for (const auto& e : fs::recursive_directory_iterator(p))
        if (e.is_regular_file()) n += e.file_size();
    return n;
}

// A short recipe: 16 calibration samples, 4 distillation steps, 16 samples for static W8A8, 48 dev samples.
std::string short_recipe(const std::string& dir) {
    return write(dir + "/r.yaml", "calibration: {data: " + test::fixture("data/sst2_train.tsv") + ", samples: 16, max_len: 48}\n"
                                  "evaluation: {data: " + test::fixture("data/sst2_dev.tsv") + ", samples: 48, bench: true, bench_reps: 1, bench_seq: 32}\n"
                                  "stages:\n"
                                  "  - prune: {structured: \"heads=0.3,ffn=0.3\"}\n"
                                  "  - distill: {steps: 4, lr: 1.0e-4, batch: 8}\n"
                                  "  - quantize: {type: w8a8-static, calib_samples: 16, embeddings: q4_0, attention: int8}\n");
}

TEST(PipelineEncoder, PruneDistillQuantizeMatchesRecomputationAndResumes) {
    test::TempDir dir;
    const std::string recipe = short_recipe(dir.path()), model = test::fixture(kBert), out = dir.file("run");
    const std::string dev = test::fixture("data/sst2_dev.tsv");
    const CompressionReport r = CompressionPipeline(CompressionConfig::from_file(recipe)).run(model, out);
    ASSERT_TRUE(r.encoder);
    ASSERT_EQ(r.stages.size(), 3u);
    EXPECT_EQ(r.stages[0].name, "1-prune");
    EXPECT_EQ(r.stages[2].name, "3-quantize");
    EXPECT_EQ(r.original.bytes, bytes_of(model));

    // Each stage against an independent recomputation on the same 48 dev samples.
    auto original = EncoderModel::load(model);
    const ClassifyOptions run{32, 128};
    const ClassificationResult base = classify_dataset(*original, load_labelled_data(dev, *original, {0, 48, ""}), run);
    EXPECT_EQ(r.original.accuracy, base.accuracy);
    EXPECT_EQ(r.original.eval_samples, 48);
    for (const StageResult& s : r.stages) {
        EXPECT_EQ(s.bytes, bytes_of(s.model)) << s.name;
        auto m = EncoderModel::load(s.model);
        const ClassificationResult c = classify_dataset(*m, load_labelled_data(dev, *m, {0, 48, ""}), run);
        EXPECT_EQ(s.accuracy, c.accuracy) << s.name;
        EXPECT_EQ(s.agreement, compare_predictions(base, c).agreement) << s.name;
        EXPECT_GT(s.latency_ms, 0) << s.name;
        EXPECT_GT(s.base_latency_ms, 0) << s.name;
    }
    EXPECT_LT(r.stages[2].bytes, r.stages[1].bytes / 3) << "W8A8 with a Q4_0 embedding table";
    EXPECT_EQ(EncoderModel::load(r.stages[2].model)->weights().attention, AttentionPrecision::int8) << "the recipe's attention: int8";
    // The final file is the last stage's, and `cq eval` of it gives the reported accuracy.
    EXPECT_EQ(r.final_model, out + "/model.gguf");
    EXPECT_EQ(read(r.final_model), read(r.stages[2].model));
    std::string text;
    ASSERT_EQ(run_cli("eval " + r.final_model + " --data " + dev + " --range 0:48 --json", &text), 0) << text;
    const auto ev = nlohmann::json::parse(text.substr(text.find('{')));
    EXPECT_EQ(ev.at("result").at("accuracy").get<double>(), r.stages[2].accuracy);
    // The JSON report carries the same numbers.
    const auto rj = nlohmann::json::parse(read(out + "/report.json"));
    EXPECT_EQ(rj.at("stages")[2].at("accuracy").get<double>(), r.stages[2].accuracy);
    EXPECT_EQ(rj.at("stages")[2].at("bytes").get<uint64_t>(), r.stages[2].bytes);

    // --resume with only the first stage checkpointed (as a run killed during stage 2 leaves it): stage 1 is not redone.
    auto state = nlohmann::json::parse(read(out + "/state.json"));
    state["finished"] = nlohmann::json::array({state["finished"][0]});
    ASSERT_EQ(state["finished"].size(), 1u);
    write(out + "/state.json", state.dump(2));
    fs::remove_all(out + "/stages/2-distill");
    fs::remove_all(out + "/stages/3-quantize");
    fs::remove(out + "/model.gguf");
    const std::string stage1 = read(r.stages[0].model + "/model.safetensors");
    const auto mtime = fs::last_write_time(r.stages[0].model + "/model.safetensors");
    const CompressionReport again = CompressionPipeline(CompressionConfig::from_file(recipe)).run(model, out, /*resume=*/true);
    ASSERT_EQ(again.stages.size(), 3u);
    EXPECT_TRUE(again.stages[0].resumed);
    EXPECT_FALSE(again.stages[1].resumed);
    EXPECT_FALSE(again.stages[2].resumed);
    EXPECT_EQ(read(r.stages[0].model + "/model.safetensors"), stage1);
    EXPECT_EQ(fs::last_write_time(r.stages[0].model + "/model.safetensors"), mtime) << "the finished stage was rewritten";
    EXPECT_EQ(again.stages[0].bytes, r.stages[0].bytes);
    EXPECT_EQ(again.stages[0].accuracy, r.stages[0].accuracy);
    EXPECT_TRUE(fs::is_regular_file(out + "/model.gguf"));
    EXPECT_EQ(again.stages[2].bytes, bytes_of(out + "/model.gguf"));
}

TEST(PipelineEncoder, KeysThatDoNotApplyFailWithLineAndKeyAndWriteNothing) {
    test::TempDir dir;
    const std::string train = test::fixture("data/sst2_train.tsv"), dev = test::fixture("data/sst2_dev.tsv");
    struct Case {
        std::string text, line, key;
    };
    const std::string cal = "calibration: {data: " + train + ", samples: 8}\n";
    const std::vector<Case> cases{
        {cal + "stages:\n  - prune: {structured: \"heads=0.3,ffn=0.3\"}\n  - prune: {method: wanda, sparsity: 0.5}\n", ":4:", "stages[1].prune.method"},
        {cal + "stages:\n  - quantize: {type: q4_k_m}\n", ":3:", "stages[0].quantize.type"},
        {cal + "stages:\n  - distill:\n      steps: 3\n      ctx: 64\n", ":5:", "stages[0].distill.ctx"},
        {"calibration: {text: " + test::fixture("data/stories_calib.txt") + "}\nstages:\n  - quantize: {type: w8a8-dynamic}\n", ":1:", "calibration.text"},
        {"stages:\n  - quantize: {type: w8a8-static}\n", ":2:", "calibration.data"},
        {cal + "stages:\n  - quantize: {type: w8a8-dynamic}\n  - prune: {structured: \"heads=0.3\"}\n", ":4:", "stages[1].prune"},
        {cal + "stages:\n  - quantize: {type: w8a8-static, calib_method: median}\n", ":3:", "stages[0].quantize.calib_method"},
        {cal + "stages:\n  - prune: {structured: \"heads=0.3,ffn=0.3\"}\n  - export: {format: gguf}\n", ":4:", "stages[1].export.format"},
        {cal + "stages:\n  - quantize: {type: w8a8-dynamic, attention: bf16}\n", ":3:", "stages[0].quantize.attention"},
    };
    int i = 0;
    for (const auto& c : cases) {
        const std::string r = write(dir.file("bad" + std::to_string(i) + ".yaml"), c.text), out = dir.file("out" + std::to_string(i++));
        std::string text;
        EXPECT_EQ(run_cli("compress " + test::fixture(kBert) + " --recipe " + r + " -o " + out, &text), 2) << c.text << text;
        EXPECT_NE(text.find(fs::path(r).filename().string() + c.line), std::string::npos) << c.text << " → " << text;
        EXPECT_NE(text.find("key '" + c.key + "'"), std::string::npos) << c.text << " → " << text;
        EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 1) << "one error line: " << text;
        EXPECT_FALSE(fs::exists(out)) << c.text;
    }
    // The other way round: W8A8 and labelled data are for encoders; a decoder LLM refuses them before writing anything.
    const std::string r = write(dir.file("dec.yaml"), "evaluation: {data: " + dev + "}\nstages:\n  - quantize: {type: q8_0}\n");
    std::string text;
    EXPECT_EQ(run_cli("compress " + test::fixture("models/llama-256d-stories") + " --recipe " + r + " -o " + dir.file("dec"), &text), 2);
    EXPECT_NE(text.find("dec.yaml:1: key 'evaluation.data'"), std::string::npos) << text;
    EXPECT_FALSE(fs::exists(dir.file("dec")));
}

}  // namespace
}  // namespace cq
