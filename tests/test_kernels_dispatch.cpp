// The tuned dispatch: a rung preference only ever moves an op to a kernel that some rung's plain
// ladder runs (at or below the level), keeps every op the ladder has, and the process table is the
// tuned one unless CQ_ISA forces a level (then the plain ladder, so tests reach every rung's kernels).
// Float GEMMs from libraries (OpenBLAS, oneDNN) give the same bits however the ops split columns across
// threads, so results do not depend on the thread count.
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <map>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "cq/cpu_features.h"
#include "cq/kernels.h"

namespace {

using cq::IsaLevel;

std::map<std::string, cq::KernelListing> by_op(const cq::KernelTable& t) {
    std::map<std::string, cq::KernelListing> m;
    for (const auto& k : cq::list_kernels(t)) m[k.op] = k;
    return m;
}

// Every CPU class the preferences know, and this CPU's: the invariants hold whichever class is asked for.
const char* const kClasses[] = {"amd_zen3", "amd_zen4", "amd_zen5", "intel", ""};

TEST(Dispatch, TunedTablesPickOnlyKernelsOfRungsAtOrBelowTheLevel) {
    for (IsaLevel level : cq::supported_isa_levels())
        for (const char* cls : kClasses) {
            const auto ladder = by_op(cq::make_kernel_table(level));
            const cq::KernelTable tuned_table = cq::make_tuned_kernel_table(level, cls);
            EXPECT_EQ(tuned_table.level, level);
            const auto tuned = by_op(tuned_table);
            ASSERT_EQ(tuned.size(), ladder.size()) << cls << " at " << cq::isa_level_name(level);
            for (const auto& [op, k] : tuned) {
                ASSERT_TRUE(ladder.count(op)) << op;
                EXPECT_FALSE(k.why.empty()) << op;
                bool some_rung_runs_it = false;
                for (IsaLevel rung : cq::supported_isa_levels()) {
                    if (int(rung) > int(level)) break;
                    const auto lower = by_op(cq::make_kernel_table(rung));
                    some_rung_runs_it |= lower.count(op) && lower.at(op).kernel == k.kernel;
                }
                EXPECT_TRUE(some_rung_runs_it) << cls << ": " << op << " → " << k.kernel << " at level " << cq::isa_level_name(level);
            }
        }
}

TEST(Dispatch, WeightTypesShareTheirActivationQuantizer) {
    const cq::KernelTable t = cq::make_tuned_kernel_table(cq::detected_isa_level(), cq::dispatch_cpu_class());
    for (const cq::QuantKernels& q : t.quant) {
        if (q.act_type == cq::DType::F32) continue;
        EXPECT_EQ(q.quantize_act.fn, t.quant_kernels(q.act_type).quantize_act.fn) << cq::dtype_name(q.act_type);
    }
}

TEST(Dispatch, DecodeAndPromptKernelsAreBothSet) {
    const cq::KernelTable t = cq::make_tuned_kernel_table(cq::detected_isa_level(), cq::dispatch_cpu_class());
    for (const cq::QuantKernels& q : t.quant) {
        EXPECT_EQ(q.gemm.fn == nullptr, q.gemv.fn == nullptr);
        EXPECT_EQ(q.gemm_packed.fn == nullptr, q.gemv_packed.fn == nullptr);
        if (q.gemm.fn) {
            EXPECT_EQ(q.kernel_for(1, false).fn, q.gemv.fn);
            EXPECT_EQ(q.kernel_for(7, false).fn, q.gemm.fn);
        }
    }
}

TEST(Dispatch, ProcessTableIsTunedUnlessCqIsaForcesALevel) {
    const char* forced = std::getenv("CQ_ISA");
    const auto process = by_op(cq::kernel_table());
    const auto expected = forced && *forced ? by_op(cq::make_kernel_table(*cq::isa_level_from_name(forced)))
                                            : by_op(cq::make_tuned_kernel_table(cq::detected_isa_level(), cq::dispatch_cpu_class()));
    ASSERT_EQ(process.size(), expected.size());
    for (const auto& [op, k] : process) EXPECT_EQ(k.kernel, expected.at(op).kernel) << op;
    if (forced && *forced) EXPECT_STREQ(cq::kernel_table().tuned_for, "");
}

TEST(Dispatch, CpuClassFollowsVendorAndFamily) {
    const cq::CpuFeatures& f = cq::cpu_features();
    const std::string cls(cq::dispatch_cpu_class());
    if (f.vendor == "AuthenticAMD" && f.family == 25) EXPECT_EQ(cls, f.avx512f ? "amd_zen4" : "amd_zen3");
    if (f.vendor == "AuthenticAMD" && f.family == 26) EXPECT_EQ(cls, "amd_zen5");
    if (f.vendor == "GenuineIntel")
        EXPECT_EQ(cls, f.family == 6 && (f.model == 143 || f.model == 207) && f.avx512f ? "intel_sapphire_rapids" : "intel");
}

// The ops give each thread a slice of output columns starting at a multiple of 64 (ops::linear): every such
// slicing must reproduce the unsplit product bit for bit, whatever BLAS core the CPU gets.
TEST(Dispatch, FloatGemmsGiveTheSameBitsForAnyColumnSplit) {
    std::mt19937 rng(5);
    std::normal_distribution<float> d;
    for (IsaLevel level : cq::supported_isa_levels()) {
        const cq::KernelTable t = cq::make_kernel_table(level);
        for (const auto& [m, n, k] : {std::tuple<int64_t, int64_t, int64_t>{1, 768, 768}, {37, 1000, 300}, {64, 768, 3072}}) {
            std::vector<float> a(size_t(m * k)), b(size_t(n * k)), whole(size_t(m * n)), split(size_t(m * n));
            for (auto& v : a) v = d(rng);
            for (auto& v : b) v = d(rng);
            for (const bool nn : {false, true}) {
                const auto run = [&](int64_t c0, int64_t c1, float* c) {
                    if (nn) t.gemm_f32_nn.fn(m, c1 - c0, k, a.data(), k, b.data() + c0, n, c + c0, n);
                    else t.gemm_f32.fn(m, c1 - c0, k, a.data(), k, b.data() + c0 * k, k, c + c0, n);
                };
                run(0, n, whole.data());
                for (const int64_t cut : {int64_t(64), n / 2 / 64 * 64, (n - 1) / 64 * 64}) {
                    run(0, cut, split.data());
                    run(cut, n, split.data());
                    EXPECT_EQ(std::memcmp(whole.data(), split.data(), whole.size() * sizeof(float)), 0)
                            << (nn ? t.gemm_f32_nn.name : t.gemm_f32.name) << " m=" << m << " n=" << n << " k=" << k << " cut at " << cut;
                }
            }
        }
    }
}

}  // namespace
