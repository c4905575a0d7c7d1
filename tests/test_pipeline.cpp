// CompressionPipeline (cq/pipeline.h): broken recipes (YAML and JSON) fail with one error naming the file, the line and
// the key, and write nothing; stages without a pipeline engine are refused up front; a run killed mid-stage (SIGKILL)
// resumes after its last finished stage and ends with the same bytes as an uninterrupted run.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "cq/error.h"
#include "cq/pipeline.h"
#include "test_support.h"

namespace cq {
namespace {

namespace fs = std::filesystem;

const char* kModel = "models/llama-256d-stories";

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

// The message of the InvalidArgument a recipe raises ("" when it parses).
std::string recipe_error(const std::string& text, const std::string& path) {
    try {
        (void)CompressionConfig::parse(text, path);
    } catch (const InvalidArgument& e) {
        return e.what();
    }
    return "";
}

TEST(PipelineRecipe, BrokenRecipesNameLineAndKey) {
    const std::string calib = test::fixture("data/stories_calib.txt");
    struct Case {
        std::string text, line, key;
    };
    const std::vector<Case> cases{
        {"stages:\n  - prune: {method: magnitude, sparsty: 0.5}\n", ":2:", "stages[0].prune.sparsty"},
        {"stages:\n  - quantize: {type: q4_k_m}\n  - shrink: {}\n", ":3:", "stages[1]"},
        {"stages:\n  - quantize:\n      type: q9_z\n", ":3:", "stages[0].quantize.type"},
        {"calibration:\n  text: " + calib + "\n  ctx: many\nstages:\n  - quantize: {}\n", ":3:", "calibration.ctx"},
        {"stages:\n  - distill: {steps: 10}\n", ":2:", "calibration.text"},
        {"stages: [\n  {prune: {pattern: \"2:4\", sparsity: 0.5}}\n]\n", ":2:", "stages[0].prune"},
        {"stages:\n  - prune: {pattern: 2:4\n", ":", "not valid YAML"},
        {"{\n  \"stages\": [\n    {\"quantize\": {\"type\": \"q8_0\", \"methd\": \"gptq\"}}\n  ]\n}\n", ":3:", "stages[0].quantize.methd"},
        {"evaluation: {text: /no/such/file.txt}\nstages:\n  - quantize: {}\n", ":1:", "evaluation.text"},
        {"stagez:\n  - quantize: {}\n", ":1:", "recipe.stagez"},
    };
    for (const auto& c : cases) {
        const std::string e = recipe_error(c.text, "r.yaml");
        EXPECT_NE(e.find("recipe r.yaml" + c.line), std::string::npos) << c.text << " → " << e;
        EXPECT_NE(e.find(c.key), std::string::npos) << c.text << " → " << e;
    }
    const CompressionConfig ok = CompressionConfig::parse(
        "calibration: {text: " + calib + ", ctx: 64, chunks: 4}\nstages:\n  - prune: {method: wanda, sparsity: 0.5}\n  - distill: {steps: 3}\n"
        "  - quantize: {type: q4_k_m, method: gptq, tensor_types: [\"output.weight=q8_0\"]}\n  - export: {}\n",
        "ok.yaml");
    ASSERT_EQ(ok.stages.size(), 4u);
    EXPECT_EQ(ok.stages[0].kind, StageKind::prune);
    EXPECT_DOUBLE_EQ(ok.stages[0].prune.sparsity, 0.5);
    EXPECT_EQ(ok.stages[1].distill.steps, 3);
    EXPECT_EQ(ok.stages[2].quantize.method, "gptq");
    EXPECT_EQ(ok.stages[2].quantize.tensor_types.size(), 1u);
    EXPECT_EQ(ok.stages[3].line, 6);
    EXPECT_EQ(ok.recipe_sha256.size(), 64u);
}

// ModelQuantizer is thin: the same bytes as quantize_model with the same options (the README's call).
TEST(ModelQuantizer, SameBytesAsQuantizeModel) {
    test::TempDir dir;
    cq::ModelQuantizer({.type = "q4_k_m", .method = "rtn"}).quantize(test::fixture(kModel), dir.file("a.gguf"), {.text_path = ""});
    QuantizeOptions q;
    q.type = "q4_k_m";
    q.method = QuantMethod::rtn;
    quantize_model(test::fixture(kModel), dir.file("b.gguf"), q);
    EXPECT_EQ(read(dir.file("a.gguf")), read(dir.file("b.gguf")));
}

int run_cli(const std::string& args, std::string* out) {
    const std::string cmd = std::string(CQ_CLI_PATH) + " " + args + " 2>&1";
    FILE* p = popen(cmd.c_str(), "r");
    std::string text;
    char buf[4096];
    while (size_t n = fread(buf, 1, sizeof buf, p)) text.append(buf, n);
    const int status = pclose(p);
    if (out) *out = text;
    return WEXITSTATUS(status);
}

TEST(PipelineCli, BrokenRecipeWritesNothing) {
    test::TempDir dir;
    const std::string r = write(dir.file("bad.yaml"), "stages:\n  - quantize: {type: q8_0}\n  - prune: {method: magnitude, pattern: \"3:3\"}\n");
    std::string out;
    EXPECT_NE(run_cli("compress " + test::fixture(kModel) + " --recipe " + r + " -o " + dir.file("out"), &out), 0);
    EXPECT_NE(out.find("bad.yaml:3:"), std::string::npos) << out;
    EXPECT_NE(out.find("stages[1].prune"), std::string::npos) << out;
    EXPECT_FALSE(fs::exists(dir.file("out")));
    // A stage whose engine the pipeline does not drive is refused before anything is written, never skipped.
    const std::string q = write(dir.file("qat.yaml"), "stages:\n  - quantize: {type: q8_0}\n  - qat: {}\n");
    EXPECT_NE(run_cli("compress " + test::fixture(kModel) + " --recipe " + q + " -o " + dir.file("out2"), &out), 0);
    EXPECT_NE(out.find("qat.yaml:3: stage 'qat' is not available"), std::string::npos) << out;
    EXPECT_FALSE(fs::exists(dir.file("out2")));
}

TEST(PipelineCli, ResumeAfterKillEndToEnd) {
    test::TempDir dir;
    const std::string recipe = write(dir.file("r.yaml"),
                                     "calibration: {text: " + test::fixture("data/stories_calib.txt") + ", ctx: 64, chunks: 4}\n"
                                     "evaluation: {text: " + test::fixture("data/tinystories_valid_subset.txt") + ", ctx: 64, chunks: 2, bench: false}\n"
                                     "stages:\n"
                                     "  - prune: {method: magnitude, pattern: \"2:4\"}\n"
                                     "  - quantize: {type: q4_k_m, method: gptq}\n"
                                     "  - export: {format: gguf}\n");
    const std::string model = test::fixture(kModel);
    // The uninterrupted run.
    std::string out;
    ASSERT_EQ(run_cli("-t 1 compress " + model + " --recipe " + recipe + " -o " + dir.file("full") + " --json", &out), 0) << out;
    // The same run, killed once its first stage is checkpointed (inside the second: GPTQ), then resumed.
    const std::string killed = dir.file("killed");
    const pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        execl(CQ_CLI_PATH, CQ_CLI_PATH, "-t", "1", "compress", model.c_str(), "--recipe", recipe.c_str(), "-o", killed.c_str(), "--json",
              static_cast<char*>(nullptr));
        _exit(127);
    }
    bool first_done = false;
    for (int i = 0; i < 6000 && !first_done; ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
        if (fs::exists(killed + "/state.json")) {
            try {
                first_done = nlohmann::json::parse(read(killed + "/state.json")).at("finished").size() == 1;
            } catch (const std::exception&) {
            }
        }
    }
    ASSERT_TRUE(first_done);
    kill(pid, SIGKILL);
    int status = 0;
    waitpid(pid, &status, 0);
    ASSERT_TRUE(WIFSIGNALED(status)) << "the run finished before it could be killed mid-stage";
    EXPECT_FALSE(fs::exists(killed + "/model.gguf"));
    const std::string stage1 = read(killed + "/stages/1-prune/model.gguf");
    ASSERT_EQ(run_cli("-t 1 compress " + model + " --recipe " + recipe + " -o " + killed + " --resume --json", &out), 0) << out;
    const auto j = nlohmann::json::parse(out.substr(out.find('{')));
    ASSERT_EQ(j.at("stages").size(), 3u);
    EXPECT_TRUE(j["stages"][0]["resumed"].get<bool>());
    EXPECT_FALSE(j["stages"][1]["resumed"].get<bool>());
    EXPECT_FALSE(j["stages"][2]["resumed"].get<bool>());
    EXPECT_EQ(read(killed + "/stages/1-prune/model.gguf"), stage1) << "the finished stage was not redone";
    const std::string a = read(dir.file("full") + "/model.gguf"), b = read(killed + "/model.gguf");
    EXPECT_FALSE(a.empty());
    EXPECT_EQ(a, b) << "the resumed run's final model differs from the uninterrupted run's";
    // Provenance: the recipe and its hash.
    const auto prov = nlohmann::json::parse(read(killed + "/provenance.json"));
    EXPECT_EQ(prov.at("recipe").get<std::string>(), read(recipe));
    EXPECT_EQ(prov.at("recipe_sha256").get<std::string>(), j.at("recipe_sha256").get<std::string>());
    EXPECT_EQ(prov.at("calibration_sha256").get<std::string>().size(), 64u);
    // Resuming with another recipe, or starting over an existing run, is refused.
    const std::string other = write(dir.file("o.yaml"), read(recipe) + "  - export: {}\n");
    EXPECT_NE(run_cli("compress " + model + " --recipe " + other + " -o " + killed + " --resume", &out), 0);
    EXPECT_NE(out.find("another recipe"), std::string::npos) << out;
    EXPECT_NE(run_cli("compress " + model + " --recipe " + recipe + " -o " + killed, &out), 0);
    EXPECT_NE(out.find("--resume"), std::string::npos) << out;
}

}  // namespace
}  // namespace cq
