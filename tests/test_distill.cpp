// Distillation: the KL + CE logit loss against a closed form and central finite differences, the loss spec and the
// student spec parsers, a student built from a teacher's layers (its tensors are the teacher's chosen blocks), and a
// short LM distillation (a student equal to its teacher has zero KL and zero gradient; a 2-layer student's loss falls).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <sys/wait.h>
#include <algorithm>
#include <filesystem>
#include <random>

#include "cq/distill.h"
#include "cq/encoder.h"
#include "cq/error.h"
#include "cq/io/safetensors.h"
#include "cq/llm.h"
#include "test_support.h"

namespace cq {
namespace {

// Σ_rows kl·T²·KL(p_t‖p_s) + ce·CE, straight from the definitions in long double.
long double reference_loss(const std::vector<float>& zs, const std::vector<float>& zt, const std::vector<int32_t>& y, int64_t N,
                           int64_t V, const DistillLoss& l, double T) {
    long double total = 0;
    for (int64_t r = 0; r < N; ++r) {
        if (y[r] < 0) continue;
        const auto logp = [&](const std::vector<float>& z, double t, int64_t j) {
            long double s = 0;
            for (int64_t k = 0; k < V; ++k) s += std::exp(static_cast<long double>(z[r * V + k]) / t);
            return static_cast<long double>(z[r * V + j]) / t - std::log(s);
        };
        for (int64_t j = 0; j < V; ++j) total += l.kl * T * T * std::exp(logp(zt, T, j)) * (logp(zt, T, j) - logp(zs, T, j));
        total += -l.ce * logp(zs, 1.0, y[r]);
    }
    return total;
}

TEST(DistillLoss, MatchesDefinitionAndFiniteDifferences) {
    const int64_t N = 5, V = 7;
    std::mt19937 rng(3);
    std::normal_distribution<float> nd(0.0f, 2.0f);
    std::vector<float> zs(N * V), zt(N * V);
    for (auto& v : zs) v = nd(rng);
    for (auto& v : zt) v = nd(rng);
    const std::vector<int32_t> y = {0, 6, -1, 3, 2};
    const DistillLoss l{0.7f, 0.4f};
    const float T = 2.5f;
    std::vector<float> g = zs;
    const auto [total, counted] = distill_logit_loss(g.data(), zt.data(), y.data(), N, V, l, T);
    EXPECT_EQ(counted, 4);
    EXPECT_NEAR(total, static_cast<double>(reference_loss(zs, zt, y, N, V, l, T)), 1e-9);
    for (int64_t i = 0; i < N * V; ++i) {
        const double h = 1e-3;
        std::vector<float> zp = zs, zm = zs;
        zp[i] += static_cast<float>(h), zm[i] -= static_cast<float>(h);
        const double hp = static_cast<double>(zp[i] - zs[i]), hm = static_cast<double>(zs[i] - zm[i]);
        const double fd = static_cast<double>(reference_loss(zp, zt, y, N, V, l, T) - reference_loss(zm, zt, y, N, V, l, T)) / (hp + hm);
        EXPECT_NEAR(g[i], fd, 1e-4) << "logit " << i;
    }
    for (int64_t j = 0; j < V; ++j) EXPECT_EQ(g[2 * V + j], 0.0f);  // the ignored row
}

TEST(DistillLoss, ParsesSpecsAndRejectsBadOnes) {
    const DistillLoss l = parse_distill_loss("ce=0.5,kl=1");
    EXPECT_EQ(l.kl, 1.0f);
    EXPECT_EQ(l.ce, 0.5f);
    EXPECT_EQ(parse_distill_loss("kl=2").ce, 0.0f);
    for (const char* bad : {"", "kl", "kl=x", "mse=1", "kl=-1", "kl=0,ce=0", "kl=1,"})
        EXPECT_THROW(parse_distill_loss(bad), InvalidArgument) << bad;
}

TEST(StudentSpec, LayersAndDepth) {
    EXPECT_EQ(parse_student_spec("layers=0,2", 4).layers, (std::vector<int64_t>{0, 2}));
    EXPECT_EQ(parse_student_spec("depth=0.5", 6).layers, (std::vector<int64_t>{0, 2, 4}));
    EXPECT_EQ(parse_student_spec("depth=0.5", 4).layers, (std::vector<int64_t>{0, 2}));
    EXPECT_EQ(parse_student_spec("depth=1", 3).layers, (std::vector<int64_t>{0, 1, 2}));
    for (const char* bad : {"layers=", "layers=0,0", "layers=2,1", "layers=4", "layers=a", "depth=0", "depth=1.5", "width=0.5", "x"})
        EXPECT_THROW(parse_student_spec(bad, 4), InvalidArgument) << bad;
}

TEST(StudentFromTeacher, BertKeepsTheChosenBlocksRenumbered) {
    const std::string teacher = test::fixture("models/bert-tiny-sst2");
    test::TempDir dir;
    const std::string out = dir.file("student");
    write_student_from_teacher(teacher, parse_student_spec("layers=0,2", 4), out);
    auto student = EncoderModel::load(out);
    EXPECT_EQ(student->config().n_layer, 2);
    const auto t = safetensors::Model::open(teacher), s = safetensors::Model::open(out);
    EXPECT_EQ(s.tensor_count(), t.tensor_count() - 2 * 16);
    const auto same = [&](const std::string& sn, const std::string& tn) {
        const Tensor a = s.tensor(sn), b = t.tensor(tn);
        ASSERT_EQ(a.nbytes(), b.nbytes()) << sn;
        EXPECT_EQ(std::memcmp(a.data(), b.data(), a.nbytes()), 0) << sn << " vs " << tn;
    };
    same("bert.encoder.layer.1.attention.self.query.weight", "bert.encoder.layer.2.attention.self.query.weight");
    same("bert.encoder.layer.0.output.dense.weight", "bert.encoder.layer.0.output.dense.weight");
    same("classifier.weight", "classifier.weight");
    EXPECT_EQ(s.find_tensor("bert.encoder.layer.2.attention.self.query.weight"), nullptr);
}

TEST(DistillLm, StudentEqualToTeacherHasNoKlAndAShallowStudentLearns) {
    const std::string teacher_dir = test::fixture("models/stories260K-hf");
    auto teacher = LanguageModel::load(teacher_dir);
    test::TempDir dir;
    DistillOptions o;
    o.data = test::fixture("data/stories_calib.txt");
    o.batch = 2, o.ctx = 32, o.steps = 1, o.loss = {1.0f, 0.0f};
    o.schedule.lr = 0.0f;  // one step without an update: the loss of the identical student
    {
        auto same = LanguageModel::load(teacher_dir);
        const DistillReport r = distill_lm(*teacher, *same, o);
        ASSERT_EQ(r.train.loss_curve.size(), 1u);
        EXPECT_LT(std::abs(r.train.loss_curve[0]), 1e-5);
        EXPECT_EQ(r.teacher_params, r.student_params);
    }
    const std::string student_dir = dir.file("student");
    write_student_from_teacher(teacher_dir, parse_student_spec("layers=0,4", 5), student_dir);
    auto student = LanguageModel::load(student_dir);
    EXPECT_EQ(student->config().n_layer, 2);
    o.steps = 12, o.schedule.lr = 3e-3f, o.warmup_fraction = 0.0f;
    o.loss = {1.0f, 0.5f};
    const DistillReport r = distill_lm(*teacher, *student, o);
    ASSERT_EQ(r.train.loss_curve.size(), 12u);
    EXPECT_LT(r.train.loss_curve.back(), r.train.loss_curve.front());
    EXPECT_LT(r.student_params, r.teacher_params);
}

#ifdef CQ_CLI_PATH
// The CLI: bad input is one clear error line and a non-zero exit, nothing written.
struct CliResult {
    int exit_code = -1;
    std::string err;
};
CliResult run_cli(const std::string& args, const test::TempDir& dir) {
    const std::string err_path = dir.file("stderr");
    const int status = std::system((std::string(CQ_CLI_PATH) + " " + args + " >/dev/null 2>" + err_path).c_str());
    CliResult r;
    r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128;
    std::ifstream e(err_path);
    r.err.assign(std::istreambuf_iterator<char>(e), std::istreambuf_iterator<char>());
    return r;
}

TEST(DistillCli, BadInputIsOneClearError) {
    test::TempDir dir;
    const std::string bert = test::fixture("models/bert-tiny-sst2"), data = test::fixture("data/sst2_train.tsv");
    struct Case {
        std::string args, says;
    };
    const std::vector<Case> cases = {
        {"distill --teacher " + bert + " --student " + bert + " --student-from-teacher layers=0 --data " + data + " -o " + dir.file("o"),
         "exactly one of --student"},
        {"distill --teacher " + bert + " --student-from-teacher layers=0,9 --data " + data + " -o " + dir.file("o"), "layer 9"},
        {"distill --teacher " + bert + " --student-from-teacher layers=0 --loss mse=1 --data " + data + " -o " + dir.file("o"),
         "unknown --loss term 'mse'"},
        {"qat " + bert + " --type int4-q9 --data " + data, "unknown weight quantization 'int4-q9'"},
        {"qat " + bert + " --type int4-g32 --data " + data + " -o " + dir.file("x.gguf"), "no cq runtime format"},
        {"qat " + test::fixture("models/stories260K-gguf/stories260K.gguf") + " --type q4_0 --data " + data, "-o OUT.gguf is required"},
    };
    for (const Case& c : cases) {
        const CliResult r = run_cli(c.args, dir);
        EXPECT_NE(r.exit_code, 0) << c.args;
        EXPECT_NE(r.err.find(c.says), std::string::npos) << c.args << "\n" << r.err;
        EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    }
    EXPECT_FALSE(std::filesystem::exists(dir.file("o")));
    EXPECT_FALSE(std::filesystem::exists(dir.file("x.gguf")));
}
#endif

}  // namespace
}  // namespace cq
