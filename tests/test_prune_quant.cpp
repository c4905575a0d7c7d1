// Pruned zeros through quantization (quant/zero_preserving.h): for every type with a codec, a row with a pruning mask
// (unstructured 50 % and 2:4) is quantized by the type's own search, repaired, and decoded by the reference dequantizer:
// every masked zero must decode to exactly 0, blocks without zeros must keep the search's bytes, and the constrained
// blocks' error on the kept weights must stay near the unconstrained search's. GPTQ with a mask, and cq quantize on a
// pruned model for every preset type, are checked the same way.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

#include "cq/gptq.h"
#include "cq/llm.h"
#include "cq/prune.h"
#include "cq/quantize.h"
#include "cq/weighted_quant.h"
#include "quant/zero_preserving.h"
#include "test_support.h"

namespace cq {
namespace {

struct MaskedRow {
    std::vector<float> x;
    std::vector<float> importance;
};

// n values ~ N(0, 0.03) with a shifted mean per 64 values (so blocks are not centred on 0, where a min matters), then
// pruned: 2:4 (every 4 consecutive keep the 2 largest) or a random 50 %.
MaskedRow masked_row(int64_t n, bool two_four, uint32_t seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> g(0.0f, 0.03f);
    std::uniform_real_distribution<float> u(0.0f, 1.0f);
    MaskedRow r;
    r.x.resize(static_cast<size_t>(n));
    float shift = 0;
    for (int64_t i = 0; i < n; ++i) {
        if (i % 64 == 0) shift = (u(rng) - 0.5f) * 0.04f;
        r.x[static_cast<size_t>(i)] = g(rng) + shift;
    }
    if (two_four) {
        for (int64_t i = 0; i < n; i += 4) {
            int a = 0, b = 1;  // the two smallest |x| of the group go
            for (int k = 0; k < 4; ++k)
                for (int l = k + 1; l < 4; ++l) {
                    const float sk = std::fabs(r.x[static_cast<size_t>(i + k)]), sl = std::fabs(r.x[static_cast<size_t>(i + l)]);
                    const float sa = std::fabs(r.x[static_cast<size_t>(i + a)]), sb = std::fabs(r.x[static_cast<size_t>(i + b)]);
                    if (sk + sl < sa + sb) a = k, b = l;
                }
            r.x[static_cast<size_t>(i + a)] = 0.0f, r.x[static_cast<size_t>(i + b)] = 0.0f;
        }
    } else {
        for (float& v : r.x)
            if (u(rng) < 0.5f) v = 0.0f;
    }
    r.importance.resize(static_cast<size_t>(n));
    for (float& v : r.importance) v = 0.2f + u(rng);
    return r;
}

// Σ (x − decoded)² over the kept (non-zero) weights.
double kept_error(DType type, const std::vector<float>& x, const std::vector<uint8_t>& q) {
    std::vector<float> y(x.size());
    dtype_traits(type).to_float(q.data(), y.data(), static_cast<int64_t>(x.size()));
    double e = 0;
    for (size_t i = 0; i < x.size(); ++i)
        if (x[i] != 0.0f) e += (double(x[i]) - y[i]) * (double(x[i]) - y[i]);
    return e;
}

const DType kTypes[] = {DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q5_1, DType::Q8_0, DType::Q2_K,
                        DType::Q3_K, DType::Q4_K, DType::Q5_K, DType::Q6_K, DType::IQ4_NL, DType::IQ4_XS};

TEST(ZeroPreserving, EveryTypeKeepsMaskedZerosExactly) {
    const int64_t n = 1024;
    for (const DType requested : kTypes)
        for (const bool two_four : {false, true})
            for (const bool weighted : {false, true}) {
                const DType type = quant::zero_preserving_type(requested);
                if (requested == DType::IQ4_NL || requested == DType::IQ4_XS) {
                    EXPECT_EQ(type, DType::Q4_0);
                } else {
                    EXPECT_EQ(type, requested);
                }
                const MaskedRow r = masked_row(n, two_four, 7u + static_cast<uint32_t>(requested));
                const float* imp = weighted ? r.importance.data() : nullptr;
                std::vector<uint8_t> plain(*dtype_bytes(type, n)), fixed;
                quantize_row_weighted(type, r.x.data(), plain.data(), n, imp);
                fixed = plain;
                const int64_t redone = quant::restore_row_zeros(type, r.x.data(), fixed.data(), n, imp);
                const std::string what = std::string(dtype_name(type)) + (two_four ? " 2:4" : " 50%") + (weighted ? " weighted" : "");
                EXPECT_EQ(quant::count_lost_zeros(type, r.x.data(), fixed.data(), n), 0) << what;
                if (quant::has_zero_preserving_search(type)) {
                    EXPECT_GT(quant::count_lost_zeros(type, r.x.data(), plain.data(), n), 0) << what << ": the plain search should lose zeros here";
                    EXPECT_GT(redone, 0) << what;
                    // Holding 0 costs the kept weights little: within 1.4x of the unconstrained search's error (which also
                    // spends nothing on the zeros it gets wrong).
                    const double e_fixed = kept_error(type, r.x, fixed), e_plain = kept_error(type, r.x, plain);
                    std::printf("[ %s ] kept weights' squared error, zero held / type's search: %.3f\n", what.c_str(), e_fixed / e_plain);
                    EXPECT_LT(e_fixed, 1.4 * e_plain) << what << ": " << e_fixed << " vs " << e_plain;
                } else {
                    EXPECT_EQ(redone, 0) << what << ": symmetric grids keep 0 by construction";
                    EXPECT_EQ(fixed, plain) << what;
                }
            }
}

TEST(ZeroPreserving, DenseRowsAreUntouched) {
    std::mt19937 rng(3);
    std::normal_distribution<float> g(0.0f, 1.0f);
    std::vector<float> x(512);
    for (float& v : x) v = g(rng);
    EXPECT_FALSE(quant::looks_pruned(x.data(), 512));
    for (const DType type : {DType::Q4_1, DType::Q4_K, DType::Q2_K}) {
        std::vector<uint8_t> q(*dtype_bytes(type, 512));
        quantize_row_weighted(type, x.data(), q.data(), 512, nullptr);
        const auto before = q;
        EXPECT_EQ(quant::restore_row_zeros(type, x.data(), q.data(), 512, nullptr), 0);
        EXPECT_EQ(q, before);
    }
}

// An all-zero block and a block whose kept values are all positive (zero level 0) are held exactly too.
TEST(ZeroPreserving, DegenerateBlocks) {
    for (const DType type : {DType::Q4_1, DType::Q5_1, DType::Q2_K, DType::Q4_K, DType::Q5_K}) {
        const int64_t bs = dtype_traits(type).block_size;
        std::vector<float> zeros(static_cast<size_t>(bs), 0.0f), pos(static_cast<size_t>(bs));
        std::vector<uint8_t> mask(static_cast<size_t>(bs), 1), pmask(static_cast<size_t>(bs));
        for (int64_t i = 0; i < bs; ++i) pos[static_cast<size_t>(i)] = i % 3 == 0 ? 0.0f : 0.01f * static_cast<float>(1 + i % 7), pmask[static_cast<size_t>(i)] = i % 3 == 0;
        std::vector<uint8_t> q(dtype_traits(type).bytes_per_block);
        quant::quantize_block_keep_zeros(type, zeros.data(), mask.data(), nullptr, q.data());
        EXPECT_EQ(quant::count_lost_zeros(type, zeros.data(), q.data(), bs), 0) << dtype_name(type);
        quant::quantize_block_keep_zeros(type, pos.data(), pmask.data(), nullptr, q.data());
        EXPECT_EQ(quant::count_lost_zeros(type, pos.data(), q.data(), bs), 0) << dtype_name(type);
        std::vector<uint8_t> plain(q.size());
        quantize_row_weighted(type, pos.data(), plain.data(), bs, nullptr);
        EXPECT_LE(kept_error(type, pos, q), 1.6 * kept_error(type, pos, plain) + 1e-9) << dtype_name(type);
    }
}

// Masked GPTQ: pruned weights end at exact 0 for types with and without a min, and the sweep still beats masked
// rounding on its own objective tr(E H Eᵀ).
TEST(ZeroPreserving, GptqHoldsTheMask) {
    const int64_t n_out = 16, n_in = 256, n_tok = 512;
    std::mt19937 rng(11);
    std::normal_distribution<float> g(0.0f, 1.0f);
    std::vector<float> X(static_cast<size_t>(n_tok * n_in));
    for (int64_t t = 0; t < n_tok; ++t) {
        const float common = g(rng);
        for (int64_t j = 0; j < n_in; ++j) X[static_cast<size_t>(t * n_in + j)] = 0.7f * common + g(rng) * (1.0f + 0.01f * static_cast<float>(j % 13));
    }
    std::vector<double> H(static_cast<size_t>(n_in * n_in), 0.0);
    accumulate_hessian(H, X, n_tok, n_in);
    std::vector<float> W;
    for (int64_t r = 0; r < n_out; ++r) {
        const MaskedRow m = masked_row(n_in, r % 2 == 0, 100u + static_cast<uint32_t>(r));
        W.insert(W.end(), m.x.begin(), m.x.end());
    }
    auto weighted_error = [&](DType type, const std::vector<uint8_t>& q) {
        std::vector<float> y(W.size());
        dtype_traits(type).to_float(q.data(), y.data(), static_cast<int64_t>(W.size()));
        double total = 0;
        for (int64_t r = 0; r < n_out; ++r)
            for (int64_t i = 0; i < n_in; ++i)
                for (int64_t j = 0; j < n_in; ++j)
                    total += (double(W[r * n_in + i]) - y[r * n_in + i]) * H[i * n_in + j] * (double(W[r * n_in + j]) - y[r * n_in + j]);
        return total;
    };
    for (const DType type : {DType::Q4_0, DType::Q4_1, DType::Q4_K, DType::Q5_K, DType::Q2_K}) {
        const GptqResult res = gptq_quantize(type, W, n_out, n_in, H, {});
        EXPECT_EQ(quant::count_lost_zeros(type, W.data(), res.blocks.data(), n_out * n_in), 0) << dtype_name(type);
        std::vector<uint8_t> rtn(res.blocks.size());
        const size_t row_bytes = res.blocks.size() / static_cast<size_t>(n_out);
        for (int64_t r = 0; r < n_out; ++r) {
            quantize_row_weighted(type, W.data() + r * n_in, rtn.data() + r * row_bytes, n_in, nullptr);
            quant::restore_row_zeros(type, W.data() + r * n_in, rtn.data() + r * row_bytes, n_in, nullptr);
        }
        EXPECT_LT(weighted_error(type, res.blocks), weighted_error(type, rtn)) << dtype_name(type);
        GptqOptions off;
        off.keep_zeros = false;
        const GptqResult loose = gptq_quantize(type, W, n_out, n_in, H, {}, off);
        EXPECT_GT(quant::count_lost_zeros(type, W.data(), loose.blocks.data(), n_out * n_in), 0) << dtype_name(type) << ": unmasked GPTQ moves zeros";
    }
}

// cq quantize of a pruned model: every pruned zero of every block Linear is still exactly 0, for every type family.
TEST(ZeroPreserving, QuantizePrunedModelEveryTypeEndToEnd) {
    test::TempDir dir;
    PruneOptions po;
    po.method = PruneMethod::magnitude;
    po.target = SparsityTarget::parse_pattern("2:4", "test");
    const std::string pruned = dir.file("pruned.gguf");
    prune_model_file(test::fixture("models/llama-256d-stories"), pruned, po);
    auto a = LanguageModel::load(pruned);
    const auto la = static_cast<const LanguageModel&>(*a).linears();
    for (const char* type : {"q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "q2_k", "q3_k_s", "q4_k_m", "q5_k_s", "q6_k", "iq4_nl", "iq4_xs"}) {
        QuantizeOptions q;
        const bool iq4 = std::string(type).rfind("iq4", 0) == 0;  // not presets: a rule over the block tensors
        q.type = iq4 ? "q8_0" : type;
        if (iq4) q.tensor_types = {std::string("blk.*=") + type};
        const std::string out = dir.file(std::string(type) + ".gguf");
        const QuantizeReport rep = quantize_model(pruned, out, q);
        auto b = LanguageModel::load(out);
        const auto lb = static_cast<const LanguageModel&>(*b).linears();
        int64_t zeros = 0, lost = 0;
        for (size_t i = 0; i < la.size(); ++i) {
            if (la[i]->block < 0) continue;
            const auto wa = la[i]->weight.to_float(), wb = lb[i]->weight.to_float();
            for (size_t k = 0; k < wa.size(); ++k)
                if (wa[k] == 0.0f) ++zeros, lost += wb[k] != 0.0f;
        }
        EXPECT_GT(zeros, 0) << type;
        EXPECT_EQ(lost, 0) << type << ": " << lost << " of " << zeros << " pruned zeros decode to non-zero";
        if (std::string(type).rfind("iq4", 0) == 0) EXPECT_GT(rep.fallbacks, 0) << type << ": IQ4 has no 0 level, Q4_0 stands in";
    }
}

}  // namespace
}  // namespace cq
