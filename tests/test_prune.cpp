// Pruning (cq/prune.h): masks against a scalar sort-based reference, Wanda's scores against a naive computation,
// SparseGPT's reconstruction error against Wanda's and magnitude's on a correlated Hessian, SparseGPT with H = I
// against magnitude pruning, the model-level pass on the llama-256d-stories fixture, and cq prune's CLI.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <numeric>
#include <random>

#include "cq/error.h"
#include "cq/llm.h"
#include "cq/prune.h"
#include "cq/quantize.h"
#include "cq/thread_pool.h"
#include "test_support.h"

namespace cq {
namespace {

const char* kModel = "models/llama-256d-stories";
const char* kCalib = "data/stories_calib.txt";

std::vector<float> random_matrix(int64_t rows, int64_t cols, uint32_t seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> d(0.0f, 1.0f);
    std::vector<float> w(static_cast<size_t>(rows * cols));
    for (float& v : w) v = d(rng);
    return w;
}

// Reference selection: sort every index of a group by (score, index), prune the first k.
std::vector<uint8_t> reference_mask(const std::vector<float>& s, int64_t rows, int64_t cols, int64_t group, int64_t k_per_group) {
    std::vector<uint8_t> mask(s.size(), 0);
    const int64_t total = rows * cols;
    for (int64_t g0 = 0; g0 < total; g0 += group) {
        std::vector<int64_t> idx(static_cast<size_t>(group));
        std::iota(idx.begin(), idx.end(), g0);
        std::sort(idx.begin(), idx.end(), [&](int64_t a, int64_t b) { return s[a] < s[b] || (s[a] == s[b] && a < b); });
        for (int64_t i = 0; i < k_per_group; ++i) mask[static_cast<size_t>(idx[static_cast<size_t>(i)])] = 1;
    }
    return mask;
}

std::vector<float> abs_of(std::vector<float> w) {
    for (float& v : w) v = std::fabs(v);
    return w;
}

std::vector<float> zeroed(std::vector<float> w, const std::vector<uint8_t>& mask) {
    for (size_t i = 0; i < w.size(); ++i)
        if (mask[i]) w[i] = 0.0f;
    return w;
}

// tr((W−Ŵ) H (W−Ŵ)ᵀ), naively in double.
double recon_error(const std::vector<float>& W, const std::vector<float>& P, int64_t rows, int64_t n, const std::vector<double>& H) {
    double total = 0;
    for (int64_t r = 0; r < rows; ++r)
        for (int64_t a = 0; a < n; ++a)
            for (int64_t b = 0; b < n; ++b)
                total += (double(W[r * n + a]) - P[r * n + a]) * H[a * n + b] * (double(W[r * n + b]) - P[r * n + b]);
    return total;
}

TEST(PruneMask, UnstructuredMatchesSortedReferencePerRowAndPerTensor) {
    const int64_t rows = 13, cols = 96;
    const auto s = abs_of(random_matrix(rows, cols, 1));
    for (double S : {0.3, 0.5, 0.77}) {
        SparsityTarget t;
        t.sparsity = S;
        const auto per_row = prune_mask(s, rows, cols, t, true);
        EXPECT_EQ(per_row, reference_mask(s, rows, cols, cols, std::llround(S * cols))) << "sparsity " << S;
        for (int64_t r = 0; r < rows; ++r)
            EXPECT_EQ(std::count(per_row.begin() + r * cols, per_row.begin() + (r + 1) * cols, 1), std::llround(S * cols)) << "row " << r;
        const auto per_tensor = prune_mask(s, rows, cols, t, false);
        EXPECT_EQ(per_tensor, reference_mask(s, rows, cols, rows * cols, std::llround(S * rows * cols))) << "sparsity " << S;
    }
}

TEST(PruneMask, NmPatternHoldsInEveryGroup) {
    const int64_t rows = 7, cols = 64;
    auto s = abs_of(random_matrix(rows, cols, 2));
    s[5] = s[6];  // a tie: the lower index goes
    for (auto [n, m] : {std::pair<int64_t, int64_t>{2, 4}, {4, 8}, {1, 4}}) {
        SparsityTarget t;
        t.n = n, t.m = m;
        const auto mask = prune_mask(s, rows, cols, t, true);
        EXPECT_EQ(mask, reference_mask(s, rows, cols, m, m - n)) << n << ":" << m;
        for (int64_t g = 0; g < rows * cols; g += m) EXPECT_EQ(std::count(mask.begin() + g, mask.begin() + g + m, 1), m - n) << "group at " << g;
    }
}

TEST(PruneMask, WandaScoresEqualNaiveComputation) {
    const int64_t rows = 9, cols = 40, tokens = 33;
    const auto W = random_matrix(rows, cols, 3);
    const auto X = random_matrix(tokens, cols, 4);
    std::vector<float> norms(cols);
    for (int64_t j = 0; j < cols; ++j) {
        double s = 0;
        for (int64_t t = 0; t < tokens; ++t) s += double(X[t * cols + j]) * X[t * cols + j];
        norms[j] = static_cast<float>(std::sqrt(s));
    }
    const auto scores = wanda_scores(W, rows, cols, norms);
    for (int64_t r = 0; r < rows; ++r)
        for (int64_t j = 0; j < cols; ++j) EXPECT_EQ(scores[r * cols + j], std::fabs(W[r * cols + j]) * norms[j]) << r << "," << j;
}

TEST(PruneMask, BadTargetsAreNamed) {
    for (double S : {0.0, 1.0, -0.2, 1.5}) {
        SparsityTarget t;
        t.sparsity = S;
        try {
            t.validate("prune");
            FAIL() << S;
        } catch (const InvalidArgument& e) {
            EXPECT_NE(std::string(e.what()).find("outside (0, 1)"), std::string::npos) << e.what();
        }
    }
    EXPECT_THROW(SparsityTarget::parse_pattern("4:2", "prune"), InvalidArgument);
    EXPECT_THROW(SparsityTarget::parse_pattern("4:4", "prune"), InvalidArgument);
    EXPECT_THROW(SparsityTarget::parse_pattern("2-4", "prune"), InvalidArgument);
    EXPECT_THROW(SparsityTarget::parse_pattern("0:4", "prune"), InvalidArgument);
    const auto t = SparsityTarget::parse_pattern("2:4", "prune");
    EXPECT_EQ(t.n, 2);
    EXPECT_EQ(t.m, 4);
}

// ---- SparseGPT ----

// H = XᵀX for correlated inputs: x = z·A with channel scales spread over two orders of magnitude.
std::vector<double> correlated_hessian(int64_t n, int64_t tokens, uint32_t seed) {
    const auto Z = random_matrix(tokens, n, seed);
    const auto A = random_matrix(n, n, seed + 1);
    std::vector<double> X(static_cast<size_t>(tokens * n), 0.0);
    for (int64_t t = 0; t < tokens; ++t)
        for (int64_t j = 0; j < n; ++j) {
            double s = Z[t * n + j] * 2.0;  // a diagonal share keeps H well conditioned
            for (int64_t k = 0; k < n; ++k) s += Z[t * n + k] * A[k * n + j] * 0.3;
            X[t * n + j] = s * std::pow(10.0, 2.0 * j / n - 1.0);
        }
    std::vector<double> H(static_cast<size_t>(n * n), 0.0);
    for (int64_t t = 0; t < tokens; ++t)
        for (int64_t a = 0; a < n; ++a)
            for (int64_t b = 0; b < n; ++b) H[a * n + b] += X[t * n + a] * X[t * n + b];
    return H;
}

TEST(SparseGpt, ReconstructionErrorBelowWandaAndMagnitude) {
    const int64_t rows = 48, n = 96;
    const auto W = random_matrix(rows, n, 5);
    const auto H = correlated_hessian(n, 400, 6);
    std::vector<float> norms(n);
    for (int64_t j = 0; j < n; ++j) norms[j] = static_cast<float>(std::sqrt(H[j * n + j]));
    SparsityTarget half, nm;
    half.sparsity = 0.5;
    nm.n = 2, nm.m = 4;
    for (const SparsityTarget& t : {half, nm}) {
        SparseGptOptions o;
        o.block_size = 32;  // several blocks
        const auto sg = sparsegpt_prune(W, rows, n, H, t, o);
        const auto wanda = zeroed(W, prune_mask(wanda_scores(W, rows, n, norms), rows, n, t, true));
        const auto mag = zeroed(W, prune_mask(abs_of(W), rows, n, t, true));
        const double e_sg = recon_error(W, sg.weights, rows, n, H), e_wanda = recon_error(W, wanda, rows, n, H), e_mag = recon_error(W, mag, rows, n, H);
        EXPECT_NEAR(sg.error, e_sg, 1e-9 * e_sg) << t.describe();
        EXPECT_LT(e_sg, e_wanda) << t.describe();
        EXPECT_LT(e_wanda, e_mag) << t.describe();
        std::printf("[ %s ] tr(EHEᵀ): sparsegpt %.4g, wanda %.4g, magnitude %.4g\n", t.describe().c_str(), e_sg, e_wanda, e_mag);
        // Same density: exact count per row (50 %) or the pattern in every group.
        for (int64_t r = 0; r < rows; ++r) {
            if (!t.is_nm()) {
                EXPECT_EQ(std::count(sg.weights.begin() + r * n, sg.weights.begin() + (r + 1) * n, 0.0f), n / 2) << "row " << r;
                continue;
            }
            for (int64_t g = 0; g < n; g += 4) EXPECT_EQ(std::count(sg.weights.begin() + r * n + g, sg.weights.begin() + r * n + g + 4, 0.0f), 2);
        }
    }
}

TEST(SparseGpt, IdentityHessianEqualsMagnitudePruning) {
    const int64_t rows = 150, n = 256;  // two row groups, two blocks
    const auto W = random_matrix(rows, n, 7);
    std::vector<double> I(static_cast<size_t>(n * n), 0.0);
    for (int64_t j = 0; j < n; ++j) I[j * n + j] = 1.0;
    for (auto [N, M] : {std::pair<int64_t, int64_t>{2, 4}, {4, 8}}) {
        SparsityTarget t;
        t.n = N, t.m = M;
        const auto sg = sparsegpt_prune(W, rows, n, I, t);
        EXPECT_EQ(sg.weights, zeroed(W, prune_mask(abs_of(W), rows, n, t, true))) << t.describe();
    }
    // Unstructured: the row's round(S·n) smallest |w| (magnitude at row scope), whatever the block size.
    for (int64_t block : {int64_t{32}, int64_t{100}, n}) {
        SparsityTarget t;
        t.sparsity = 0.37;
        SparseGptOptions o;
        o.block_size = block;
        EXPECT_EQ(sparsegpt_prune(W, rows, n, I, t, o).weights, zeroed(W, prune_mask(abs_of(W), rows, n, t, true))) << "block " << block;
    }
}

TEST(SparseGpt, SameBytesForAnyThreadCount) {
    const int64_t rows = 300, n = 64;
    const auto W = random_matrix(rows, n, 8);
    const auto H = correlated_hessian(n, 200, 9);
    SparsityTarget t;
    t.sparsity = 0.6;
    ThreadPool one(1), three(3);
    EXPECT_EQ(sparsegpt_prune(W, rows, n, H, t, {}, &one).weights, sparsegpt_prune(W, rows, n, H, t, {}, &three).weights);
}

TEST(SparseGpt, BadInputsAreNamed) {
    const auto W = random_matrix(4, 8, 10);
    std::vector<double> I(64, 0.0);
    for (int j = 0; j < 8; ++j) I[j * 8 + j] = 1;
    SparsityTarget t;
    t.sparsity = 0.5;
    EXPECT_THROW(sparsegpt_prune(W, 4, 8, std::vector<double>(63), t), InvalidArgument);
    SparsityTarget nm;
    nm.n = 2, nm.m = 3;
    EXPECT_THROW(sparsegpt_prune(W, 4, 8, I, nm), InvalidArgument);  // 8 is not a whole number of groups of 3
    auto bad = W;
    bad[5] = NAN;
    EXPECT_THROW(sparsegpt_prune(bad, 4, 8, I, t), InvalidArgument);
}

// ---- the model-level pass ----

std::unique_ptr<LanguageModel> load_model() {
    LoadOptions lo;
    lo.n_ctx = 128;
    lo.micro_batch = 128;
    return LanguageModel::load(test::fixture(kModel), lo);
}

PruneOptions model_options(PruneMethod method, const SparsityTarget& t) {
    PruneOptions o;
    o.method = method;
    o.target = t;
    o.calib.text_path = test::fixture(kCalib);
    o.calib.n_ctx = 128;
    o.calib.max_chunks = 2;
    return o;
}

TEST(PruneModel, EveryMethodHitsItsTargetExactlyInEveryBlockLinear) {
    SparsityTarget half, nm;
    half.sparsity = 0.5;
    nm.n = 2, nm.m = 4;
    for (PruneMethod method : {PruneMethod::magnitude, PruneMethod::wanda, PruneMethod::sparsegpt})
        for (const SparsityTarget& t : {half, nm}) {
            auto m = load_model();
            std::vector<std::vector<float>> before;
            for (const Linear* l : static_cast<const LanguageModel&>(*m).linears()) before.push_back(l->weight.to_float());
            const PruneReport r = prune_model(*m, model_options(method, t));
            ASSERT_EQ(r.tensors.size(), 6u * 7u);
            size_t k = 0, idx = 0;
            for (const Linear* l : static_cast<const LanguageModel&>(*m).linears()) {
                const auto w = l->weight.to_float();
                if (l->block < 0) {
                    EXPECT_EQ(w, before[idx]) << l->name << " (outside the blocks) must stay dense";
                    ++idx;
                    continue;
                }
                ++idx;
                EXPECT_EQ(l->modified_by, "prune:" + std::string(prune_method_name(method)));
                const int64_t n_in = l->n_in(), n_out = l->n_out();
                const int64_t zeros = std::count(w.begin(), w.end(), 0.0f);
                EXPECT_EQ(r.tensors[k].zeros, zeros) << l->name;
                EXPECT_EQ(r.tensors[k].name, l->name + ".weight");
                ++k;
                if (t.is_nm()) {
                    for (int64_t g = 0; g < n_out * n_in; g += 4)
                        ASSERT_GE(std::count(w.begin() + g, w.begin() + g + 4, 0.0f), 2) << l->name << " group at " << g;
                } else if (method == PruneMethod::magnitude) {
                    EXPECT_EQ(zeros, n_out * n_in / 2) << l->name;  // per layer
                } else {
                    for (int64_t r0 = 0; r0 < n_out; ++r0)
                        ASSERT_EQ(std::count(w.begin() + r0 * n_in, w.begin() + (r0 + 1) * n_in, 0.0f), n_in / 2) << l->name << " row " << r0;
                }
            }
            ASSERT_TRUE(r.calibration.has_value());  // magnitude given --calib runs the block pass to report errors
            for (const auto& pt : r.tensors) {
                EXPECT_GT(pt.rel_error, 0.0) << pt.name;
                EXPECT_LT(pt.rel_error, 1.0) << pt.name;
            }
        }
}

TEST(PruneModel, SequentialMeasuresEachGroupOnThePrunedGroupsBeforeIt) {
    SparsityTarget nm;
    nm.n = 2, nm.m = 4;
    auto a = load_model(), b = load_model();
    PruneOptions o = model_options(PruneMethod::sparsegpt, nm);
    o.sequential = false;
    prune_model(*a, o);
    o.sequential = true;
    prune_model(*b, o);
    const auto& A = a->weights().blocks[0];
    const auto& B = b->weights().blocks[0];
    // Block 0's q, k, v read the embedding in both modes; its output projection reads pruned attention only when sequential.
    EXPECT_EQ(A.wq.weight.to_float(), B.wq.weight.to_float());
    EXPECT_EQ(A.wv.weight.to_float(), B.wv.weight.to_float());
    EXPECT_NE(A.wo.weight.to_float(), B.wo.weight.to_float());
    for (const Linear* l : static_cast<const LanguageModel&>(*b).linears()) {
        if (l->block < 0) continue;
        const auto w = l->weight.to_float();
        for (size_t g = 0; g < w.size(); g += 4) ASSERT_GE(std::count(w.begin() + g, w.begin() + g + 4, 0.0f), 2) << l->name;
    }
}

TEST(PruneModel, MissingCalibrationAndBadScopeAreNamed) {
    auto m = load_model();
    SparsityTarget half;
    half.sparsity = 0.5;
    PruneOptions o = model_options(PruneMethod::wanda, half);
    o.calib.text_path.clear();
    try {
        prune_model(*m, o);
        FAIL();
    } catch (const InvalidArgument& e) {
        EXPECT_NE(std::string(e.what()).find("--calib"), std::string::npos) << e.what();
    }
    o = model_options(PruneMethod::sparsegpt, half);
    o.scope = PruneScope::global;
    EXPECT_THROW(prune_model(*m, o), InvalidArgument);
    for (const Linear* l : static_cast<const LanguageModel&>(*m).linears()) EXPECT_TRUE(l->modified_by.empty()) << l->name;
}

// ---- cq prune ----

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

std::string calib_args() { return " --calib " + test::fixture(kCalib) + " --calib-ctx 128 --calib-chunks 2"; }

TEST(PruneCli, SameBytesAtOneAndTwoThreadsAndZerosWritten) {
    test::TempDir dir;
    std::string out;
    const std::string a = dir.file("a.gguf"), b = dir.file("b.gguf");
    ASSERT_EQ(run_cli("-t 1 prune " + test::fixture(kModel) + " -o " + a + " --method sparsegpt --pattern 2:4" + calib_args(), &out), 0) << out;
    ASSERT_EQ(run_cli("-t 2 prune " + test::fixture(kModel) + " -o " + b + " --method sparsegpt --pattern 2:4" + calib_args(), &out), 0) << out;
    EXPECT_EQ(test::read_bytes(a), test::read_bytes(b));
    EXPECT_NE(out.find("blk.5.ffn_down.weight"), std::string::npos) << out;
    // The written file holds the zeros: reloaded, every block Linear keeps 2 of every 4.
    auto m = LanguageModel::load(a);
    for (const Linear* l : static_cast<const LanguageModel&>(*m).linears()) {
        if (l->block < 0) continue;
        const auto w = l->weight.to_float();
        for (size_t g = 0; g < w.size(); g += 4) ASSERT_GE(std::count(w.begin() + g, w.begin() + g + 4, 0.0f), 2) << l->name;
    }
}

TEST(PruneCli, BadOptionsAreNamedAndLeaveNoOutput) {
    test::TempDir dir;
    const std::string o = dir.file("out.gguf");
    const std::string model = test::fixture(kModel);
    const std::vector<std::pair<std::string, std::string>> cases{
        {"--sparsity 1.5", "outside (0, 1)"},
        {"--sparsity 0", "--sparsity"},
        {"--sparsity -0.1", "outside (0, 1)"},
        {"--pattern 4:2", "0 < N < M"},
        {"--pattern 2:4 --sparsity 0.5", "not both"},
        {"--method wanda --sparsity 0.5", "--calib"},
        {"--method sparsegpt --pattern 2:4", "--calib"},
        {"--method magic --sparsity 0.5", "unknown method 'magic'"},
    };
    for (const auto& [args, what] : cases) {
        std::string out;
        EXPECT_EQ(run_cli("prune " + model + " -o " + o + " " + args, &out), 2) << args << ": " << out;
        EXPECT_NE(out.find(what), std::string::npos) << args << ": " << out;
        EXPECT_FALSE(std::filesystem::exists(o)) << args;
        EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir.path()), std::filesystem::directory_iterator{}), 0) << args;
    }
}

// Pruned zeros through cq quantize on the pruned model. Q4_0 and Q8_0 are symmetric (x = d·q), so 0 rounds to q = 0
// exactly; the types with a min (x = d·sc·q − dmin·m) keep them through the zero-preserving block search
// (quant/zero_preserving.h; every type is covered in test_prune_quant.cpp).
TEST(PruneQuantize, ZerosThroughLaterRounding) {
    test::TempDir dir;
    SparsityTarget half;
    half.sparsity = 0.5;
    const std::string pruned = dir.file("pruned.gguf");
    prune_model_file(test::fixture(kModel), pruned, model_options(PruneMethod::magnitude, half));
    // Presets whose block tensors are one plain type: q4_k_s / q5_k_s put most in Q4_K / Q5_K (only those are counted).
    const std::map<std::string, DType> counted{{"q4_k_s", DType::Q4_K}, {"q5_k_s", DType::Q5_K}};
    for (const char* type : {"q8_0", "q4_0", "q5_0", "q4_1", "q4_k_s", "q5_k_s"}) {
        QuantizeOptions q;
        q.type = type;
        const std::string out = dir.file(std::string(type) + ".gguf");
        quantize_model(pruned, out, q);
        auto a = LanguageModel::load(pruned), b = LanguageModel::load(out);
        const auto la = static_cast<const LanguageModel&>(*a).linears(), lb = static_cast<const LanguageModel&>(*b).linears();
        int64_t zeros = 0, kept = 0;
        double lost_abs = 0, kept_abs = 0;
        int64_t n_kept_weights = 0;
        for (size_t i = 0; i < la.size(); ++i) {
            if (la[i]->block < 0 || (counted.count(type) && lb[i]->weight.dtype() != counted.at(type))) continue;
            const auto wa = la[i]->weight.to_float(), wb = lb[i]->weight.to_float();
            for (size_t k = 0; k < wa.size(); ++k) {
                if (wa[k] == 0.0f) ++zeros, kept += wb[k] == 0.0f, lost_abs += std::fabs(wb[k]);
                else ++n_kept_weights, kept_abs += std::fabs(wa[k]);
            }
        }
        std::printf("[ %s ] pruned zeros still zero: %lld of %lld (%.2f%%); mean |decoded| of the pruned %.3g vs mean |w| kept %.3g\n", type,
                    static_cast<long long>(kept), static_cast<long long>(zeros), 100.0 * double(kept) / double(zeros), lost_abs / double(zeros),
                    kept_abs / double(n_kept_weights));
        EXPECT_EQ(kept, zeros) << type;
    }
}

}  // namespace
}  // namespace cq
