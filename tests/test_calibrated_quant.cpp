// The calibrated-quantization pieces checked against independent computations: the mixed-precision solver
// against brute force, Hessians and output errors against naive sums, AWQ against the unscaled rounding, the
// block-by-block forward against the whole forward, and cq quantize --calib end to end (budget, determinism,
// provenance, KLD against plain rounding on evaluation text).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <random>

#include "cq/error.h"
#include "cq/io/gguf.h"
#include "cq/llm.h"
#include "cq/compare.h"
#include "cq/quantize.h"
#include "cq/weighted_quant.h"
#include "quant/awq.h"
#include "quant/bit_allocation.h"
#include "quant/hessian.h"
#include "test_support.h"

namespace cq {
namespace {

using quant::TensorChoices;
using quant::TensorOption;

const std::string kModel = "models/llama-256d-stories";
const std::string kCalib = "data/stories_calib.txt";
const std::string kEval = "data/tinystories_valid_subset.txt";

// ---- the solver ----

std::vector<TensorChoices> random_instance(std::mt19937& rng, size_t tensors, size_t options, uint64_t unit) {
    std::vector<TensorChoices> t(tensors);
    std::uniform_int_distribution<int> units(1, 40);
    std::uniform_real_distribution<double> cost(0.0, 1.0);
    for (size_t i = 0; i < tensors; ++i) {
        t[i].name = "t" + std::to_string(i);
        for (size_t k = 0; k < options; ++k) t[i].options.push_back({DType::Q4_K, unit * static_cast<uint64_t>(units(rng)), cost(rng)});
    }
    return t;
}

// Every combination: the least cost within the budget (and the fewest bytes within a cost).
void brute_force(const std::vector<TensorChoices>& t, uint64_t budget, double max_cost, double* best_cost, uint64_t* least_bytes) {
    *best_cost = INFINITY, *least_bytes = UINT64_MAX;
    std::vector<size_t> pick(t.size(), 0);
    while (true) {
        uint64_t b = 0;
        double c = 0;
        for (size_t i = 0; i < t.size(); ++i) b += t[i].options[pick[i]].bytes, c += t[i].options[pick[i]].cost;
        if (b <= budget) *best_cost = std::min(*best_cost, c);
        if (c <= max_cost) *least_bytes = std::min(*least_bytes, b);
        size_t i = 0;
        while (i < t.size() && ++pick[i] == t[i].options.size()) pick[i++] = 0;
        if (i == t.size()) break;
    }
}

TEST(BitAllocation, EqualsBruteForceOnSmallInstances) {
    std::mt19937 rng(7);
    for (int trial = 0; trial < 200; ++trial) {
        const auto t = random_instance(rng, 2 + trial % 4, 2 + trial % 3, 32);
        uint64_t lo = 0, hi = 0;
        for (const auto& c : t) {
            uint64_t mn = UINT64_MAX, mx = 0;
            for (const auto& o : c.options) mn = std::min(mn, o.bytes), mx = std::max(mx, o.bytes);
            lo += mn, hi += mx;
        }
        const uint64_t budget = lo + (hi - lo) * static_cast<uint64_t>(trial % 7) / 6;
        const double max_cost = 0.3 * static_cast<double>(t.size());
        double best = 0;
        uint64_t least = 0;
        brute_force(t, budget, max_cost, &best, &least);
        const auto pick = quant::allocate_bytes(t, budget);
        uint64_t b = 0;
        double c = 0;
        for (size_t i = 0; i < t.size(); ++i) b += t[i].options[pick[i]].bytes, c += t[i].options[pick[i]].cost;
        EXPECT_LE(b, budget) << "trial " << trial;
        EXPECT_NEAR(c, best, 1e-12) << "trial " << trial;
        bool reached = false;
        const auto by_cost = quant::allocate_cost(t, max_cost, &reached);
        EXPECT_EQ(reached, least != UINT64_MAX) << "trial " << trial;
        if (reached) {
            uint64_t bb = 0;
            double cc = 0;
            for (size_t i = 0; i < t.size(); ++i) bb += t[i].options[by_cost[i]].bytes, cc += t[i].options[by_cost[i]].cost;
            EXPECT_LE(cc, max_cost) << "trial " << trial;
            EXPECT_EQ(bb, least) << "trial " << trial;
        }
    }
}

TEST(BitAllocation, RefusesABudgetBelowTheSmallestPlan) {
    const std::vector<TensorChoices> t{{"a", {{DType::Q4_K, 100, 1.0}, {DType::Q8_0, 200, 0.0}}}, {"b", {{DType::Q4_K, 50, 1.0}}}};
    EXPECT_THROW(quant::allocate_bytes(t, 149), InvalidArgument);
    const auto pick = quant::allocate_bytes(t, 150);
    EXPECT_EQ(pick[0], 0u);
    EXPECT_EQ(quant::allocate_bytes(t, 250)[0], 1u);
}

// ---- Hessians ----

TEST(Hessian, EqualsNaiveSumsWithMaskedRowsAndOutputErrorIsTheTrace) {
    std::mt19937 rng(3);
    std::normal_distribution<float> nd;
    const int64_t n = 70, rows = 37, n_out = 9;  // not multiples of any tile
    std::vector<float> x(static_cast<size_t>(rows * n));
    for (auto& v : x) v = nd(rng);
    std::vector<int32_t> mask(static_cast<size_t>(rows), 1);
    mask[3] = mask[20] = 0;
    quant::Hessian H;
    H.add(x.data(), rows, n, mask.data());
    H.add(x.data(), 5, n);  // a second batch, unmasked
    EXPECT_EQ(H.rows, rows - 2 + 5);
    double max_err = 0;
    for (int64_t i = 0; i < n; ++i)
        for (int64_t j = 0; j < n; ++j) {
            double ref = 0;
            for (int64_t r = 0; r < rows; ++r)
                if (mask[static_cast<size_t>(r)]) ref += double(x[r * n + i]) * x[r * n + j];
            for (int64_t r = 0; r < 5; ++r) ref += double(x[r * n + i]) * x[r * n + j];
            max_err = std::max(max_err, std::abs(H.h[static_cast<size_t>(i * n + j)] - ref) / (1.0 + std::abs(ref)));
        }
    EXPECT_LT(max_err, 1e-5);
    std::vector<float> e(static_cast<size_t>(n_out * n));
    for (auto& v : e) v = nd(rng);
    double ref = 0;  // Σ over kept rows of |E x|², over the row count
    const auto add_row = [&](const float* xr) {
        for (int64_t o = 0; o < n_out; ++o) {
            double d = 0;
            for (int64_t j = 0; j < n; ++j) d += double(e[o * n + j]) * xr[j];
            ref += d * d;
        }
    };
    for (int64_t r = 0; r < rows; ++r)
        if (mask[static_cast<size_t>(r)]) add_row(x.data() + r * n);
    for (int64_t r = 0; r < 5; ++r) add_row(x.data() + r * n);
    EXPECT_NEAR(quant::output_error(H, e.data(), n_out), ref / double(H.rows), 1e-4 * ref / double(H.rows));
}

// ---- AWQ ----

// Inputs with a few channels 30× larger than the rest (the outlier channels AWQ is about): scaling protects them,
// so the searched scales give a lower output error than plain weighted rounding, which error_unscaled is.
TEST(Awq, ScalesLowerTheOutputErrorOfOutlierChannelsAndAlphaZeroIsPlainRounding) {
    std::mt19937 rng(11);
    std::normal_distribution<float> nd;
    const int64_t n = 512, rows = 256, n_out = 64;
    std::vector<float> x(static_cast<size_t>(rows * n)), w(static_cast<size_t>(n_out * n));
    for (int64_t r = 0; r < rows; ++r)
        for (int64_t j = 0; j < n; ++j) x[static_cast<size_t>(r * n + j)] = nd(rng) * (j % 61 == 5 ? 30.0f : 1.0f);
    for (auto& v : w) v = nd(rng) * 0.05f;
    quant::Hessian H;
    H.add(x.data(), rows, n);
    for (DType type : {DType::Q4_K, DType::Q3_K, DType::Q4_0}) {
        const quant::AwqSearch s = quant::awq_search(H, {{w.data(), n_out, type}});
        const std::vector<float> imp = H.importance();
        const std::vector<float> q = quant::quantize_dequantize(type, w.data(), n_out, n, imp.data());
        std::vector<float> e(w.size());
        for (size_t i = 0; i < w.size(); ++i) e[i] = w[i] - q[i];
        EXPECT_NEAR(s.error_unscaled, quant::output_error(H, e.data(), n_out), 1e-9 * s.error_unscaled) << dtype_name(type);
        EXPECT_GT(s.alpha, 0.0) << dtype_name(type);
        EXPECT_LT(s.error, 0.9 * s.error_unscaled) << dtype_name(type);
        ASSERT_EQ(s.scales.size(), size_t(n));
        EXPECT_GT(s.scales[5], s.scales[6]) << "the outlier channel gets the larger scale";
    }
}

// ---- the staged forward ----

TEST(StagedForward, EmbedBlocksHeadEqualsForward) {
    LoadOptions lo;
    lo.n_ctx = 64;
    auto m = LanguageModel::load(test::fixture(kModel), lo);
    const std::vector<int32_t> tokens{1, 45, 300, 17, 99, 4, 250, 7, 8, 9, 10, 511, 2};
    const int64_t T = static_cast<int64_t>(tokens.size()), V = m->config().n_vocab;
    std::vector<float> whole(static_cast<size_t>(T * V)), staged(static_cast<size_t>(T * V));
    m->forward(tokens, 0, whole, true);
    std::vector<float> h(static_cast<size_t>(T * m->config().n_embd));
    m->embed(tokens, 0, h.data());
    for (int64_t l = 0; l < m->n_blocks(); ++l) m->run_block(l, h.data(), T, 0);
    m->run_head(h.data(), T, staged.data());
    EXPECT_EQ(whole, staged);
    EXPECT_THROW(m->run_block(m->n_blocks(), h.data(), T, 0), InvalidArgument);
}

// ---- cq quantize --calib end to end ----

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

std::string calib_args() { return " --calib " + test::fixture(kCalib) + " --calib-ctx 128 --calib-chunks 24"; }

double eval_kld(const std::string& base, const std::string& candidate) {
    CompareOptions c;
    c.n_ctx = 128;
    c.max_chunks = 16;
    c.bench = false;
    std::ifstream in(test::fixture(kEval));
    const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    return compare_models(base, candidate, text, c).candidate.perplexity.kld->mean;
}

TEST(CalibratedQuantizeEndToEnd, GptqAndAwqBeatPlainRoundingOnEvaluationText) {
    test::TempDir dir;
    std::string log;
    const std::string f32 = dir.file("f32.gguf");
    ASSERT_EQ(run_cli("quantize '" + test::fixture(kModel) + "' " + f32 + " --type f32", &log), 0) << log;
    ASSERT_EQ(run_cli("quantize " + f32 + " " + dir.file("rtn.gguf") + " --type q3_k_m", &log), 0) << log;
    ASSERT_EQ(run_cli("quantize " + f32 + " " + dir.file("gptq.gguf") + " --type q3_k_m --method gptq" + calib_args(), &log), 0) << log;
    ASSERT_EQ(run_cli("quantize " + f32 + " " + dir.file("awq.gguf") + " --type q3_k_m --method awq" + calib_args(), &log), 0) << log;
    const double rtn = eval_kld(f32, dir.file("rtn.gguf")), gptq = eval_kld(f32, dir.file("gptq.gguf")), awq = eval_kld(f32, dir.file("awq.gguf"));
    EXPECT_LT(gptq, 0.9 * rtn) << "gptq " << gptq << " rtn " << rtn;
    EXPECT_LT(awq, rtn) << "awq " << awq << " rtn " << rtn;
    // The same tensor types and sizes: the methods choose values, not types.
    const gguf::File r = gguf::File::open(dir.file("rtn.gguf")), q = gguf::File::open(dir.file("gptq.gguf"));
    ASSERT_EQ(r.tensors().size(), q.tensors().size());
    for (size_t i = 0; i < r.tensors().size(); ++i) EXPECT_EQ(r.tensors()[i].dtype, q.tensors()[i].dtype) << r.tensors()[i].name;
    const gguf::File g = gguf::File::open(dir.file("gptq.gguf"));
    EXPECT_EQ(g.get_string("cq.quantize.method").value_or(""), "gptq");
    EXPECT_EQ(g.get_string("cq.quantize.calib.sha256").value_or("").size(), 64u);
    EXPECT_EQ(g.get_int("cq.quantize.calib.chunks").value_or(0), 24);
}

TEST(CalibratedQuantizeEndToEnd, TargetSizeIsMetDeterministicAcrossThreadsAndReplaysFromRules) {
    test::TempDir dir;
    std::string log;
    const std::string model = test::fixture(kModel);
    const uint64_t target = 2'700'000;
    const std::string common = " --type q4_k_m --method imatrix --target-size " + std::to_string(target) + calib_args();
    ASSERT_EQ(run_cli("-t 1 quantize '" + model + "' " + dir.file("a.gguf") + common + " --dump-rules " + dir.file("plan.rules"), &log), 0) << log;
    ASSERT_EQ(run_cli("-t 2 quantize '" + model + "' " + dir.file("b.gguf") + common, &log), 0) << log;
    const auto a = test::read_bytes(dir.file("a.gguf")), b = test::read_bytes(dir.file("b.gguf"));
    EXPECT_LE(a.size(), target);
    EXPECT_GT(a.size(), target - 100'000) << "the plan should use most of the budget";
    EXPECT_EQ(a, b) << "same bytes for 1 and 2 threads";
    // Replaying the plan's rules reproduces the types without measuring.
    ASSERT_EQ(run_cli("quantize '" + model + "' " + dir.file("c.gguf") + " --type q4_k_m --method imatrix --rules " + dir.file("plan.rules") + calib_args(), &log), 0) << log;
    const gguf::File fa = gguf::File::open(dir.file("a.gguf")), fc = gguf::File::open(dir.file("c.gguf"));
    ASSERT_EQ(fa.tensors().size(), fc.tensors().size());
    for (size_t i = 0; i < fa.tensors().size(); ++i) EXPECT_EQ(fa.tensors()[i].dtype, fc.tensors()[i].dtype) << fa.tensors()[i].name;
}

// GPT-2's HF directory holds Conv1D weights [in, out]; its calibrated quantization equals that of its GGUF form,
// tensor for tensor (the GGUF converter's layout is the passes' layout).
TEST(CalibratedQuantizeEndToEnd, Gpt2HfDirectoryEqualsItsGgufForm) {
    test::TempDir dir;
    std::string log;
    const std::string hf = test::fixture("models/gpt2-tiny-stories"), f32 = dir.file("f32.gguf");
    const std::string args = " --type q4_k_m --method awq+gptq --calib " + test::fixture(kCalib) + " --calib-ctx 64 --calib-chunks 8";
    ASSERT_EQ(run_cli("quantize '" + hf + "' " + f32 + " --type f32", &log), 0) << log;
    ASSERT_EQ(run_cli("quantize '" + hf + "' " + dir.file("a.gguf") + args, &log), 0) << log;
    ASSERT_EQ(run_cli("quantize " + f32 + " " + dir.file("b.gguf") + args, &log), 0) << log;
    const gguf::File a = gguf::File::open(dir.file("a.gguf")), b = gguf::File::open(dir.file("b.gguf"));
    ASSERT_EQ(a.tensors().size(), b.tensors().size());
    int changed = 0;
    for (size_t i = 0; i < a.tensors().size(); ++i) {
        const Tensor ta = a.tensor(a.tensors()[i]), tb = b.tensor(b.tensors()[i]);
        ASSERT_EQ(ta.nbytes(), tb.nbytes()) << a.tensors()[i].name;
        EXPECT_EQ(std::memcmp(ta.data(), tb.data(), ta.nbytes()), 0) << a.tensors()[i].name;
        changed += a.tensors()[i].name.find("attn_qkv") != std::string::npos;
    }
    EXPECT_GT(changed, 0);
}

// The library names an evaluation text that shares lines with the calibration text, and records what calibrated.
TEST(CalibratedQuantize, WarnsWhenEvaluationTextOverlapsCalibrationAndReportsIt) {
    test::TempDir dir;
    const std::string calib = test::fixture(kCalib);
    std::ifstream in(calib);
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const std::string eval = dir.write("eval.txt", text.substr(text.size() / 2, 4000));
    QuantizeOptions o;
    o.type = "q4_0";
    o.method = QuantMethod::imatrix;
    o.calib.text_path = calib;
    o.calib.n_ctx = 64;
    o.calib.max_chunks = 6;
    o.eval_text = eval;
    const QuantizeReport r = quantize_model(test::fixture("models/stories260K-gguf/stories260K.gguf"), dir.file("o.gguf"), o);
    ASSERT_FALSE(r.warnings.empty());
    EXPECT_NE(r.warnings[0].find("also occur in the calibration text"), std::string::npos) << r.warnings[0];
    ASSERT_TRUE(r.calibration.has_value());
    EXPECT_EQ(r.calibration->chunks, 6);
    EXPECT_EQ(r.calibration->tokens, 6 * 64);
    EXPECT_EQ(r.method, "imatrix");
    o.eval_text = test::fixture(kEval);  // the evaluation text proper shares no line with it
    EXPECT_TRUE(quantize_model(test::fixture("models/stories260K-gguf/stories260K.gguf"), dir.file("p.gguf"), o).warnings.empty());
}

TEST(CalibratedQuantize, BadOptionsAreNamed) {
    test::TempDir dir;
    std::string log;
    const std::string model = test::fixture(kModel);
    EXPECT_NE(run_cli("quantize '" + model + "' " + dir.file("x.gguf") + " --method gptq", &log), 0);
    EXPECT_NE(log.find("--calib"), std::string::npos) << log;
    EXPECT_NE(run_cli("quantize '" + model + "' " + dir.file("x.gguf") + " --target-size 100" + calib_args(), &log), 0);
    EXPECT_NE(log.find("smallest plan"), std::string::npos) << log;
    EXPECT_NE(run_cli("quantize '" + model + "' " + dir.file("x.gguf") + " --method fast" + calib_args(), &log), 0);
    EXPECT_NE(log.find("unknown --method 'fast'"), std::string::npos) << log;
    EXPECT_FALSE(std::ifstream(dir.file("x.gguf")).good());
}

}  // namespace
}  // namespace cq
