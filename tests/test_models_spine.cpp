// The model spine: every family's Linears listed with the same names, roles and shapes whichever file form
// the model came from; observers see what PyTorch forward hooks see (per-channel input mean squares from
// tests/expected/layer_stats/make_reference.py, to 1e-4 relative); rewrites run in the same process.
#include <cmath>
#include <fstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "cq/encoder.h"
#include "cq/error.h"
#include "cq/layer_stats.h"
#include "cq/llm.h"
#include "cq/quantize.h"
#include "test_support.h"

namespace cq {
namespace {

nlohmann::json layer_stats_reference() {
    std::ifstream in(test::tests_dir() + "/expected/layer_stats/reference.json");
    return nlohmann::json::parse(in);
}

// Every Linear's per-channel input mean square against the PyTorch hooks' value.
void expect_matches_reference(const LayerStatsReport& r, const nlohmann::json& ref) {
    const auto& linears = ref.at("linears");
    ASSERT_EQ(r.linears.size(), linears.size());
    for (const LinearStats& s : r.linears) {
        ASSERT_TRUE(linears.contains(s.source_name)) << s.source_name;
        const auto& want = linears.at(s.source_name);
        EXPECT_EQ(s.rows, want.at("rows").get<int64_t>()) << s.source_name;
        const auto& ms = want.at("channel_mean_square");
        ASSERT_EQ(static_cast<int64_t>(ms.size()), s.n_in) << s.source_name;
        for (int64_t c = 0; c < s.n_in; ++c) {
            const double b = ms[static_cast<size_t>(c)].get<double>(), a = s.input_mean_square[static_cast<size_t>(c)];
            ASSERT_LE(std::abs(a - b), 1e-4 * std::abs(b) + 1e-12) << s.source_name << " channel " << c << ": cq " << a << ", PyTorch " << b;
        }
    }
}

TEST(spine, LlamaStatsMatchPyTorchHooks) {
    const auto ref = layer_stats_reference().at("llama-256d-stories");
    auto model = Model::load(test::fixture("models/llama-256d-stories"));
    LayerStatsOptions o;
    o.n_ctx = ref.at("ctx").get<int64_t>();
    const LayerStatsReport r = collect_layer_stats(*model, test::fixture(ref.at("data").get<std::string>()), o);
    EXPECT_EQ(r.units, ref.at("chunks").get<int64_t>());
    expect_matches_reference(r, ref);
    for (const Linear* l : model->linears()) EXPECT_FALSE(l->observers) << l->name << ": observers left attached";
}

TEST(spine, BertStatsMatchPyTorchHooksWithoutPaddingRows) {
    const auto ref = layer_stats_reference().at("bert-tiny-sst2");
    auto model = Model::load(test::fixture("models/bert-tiny-sst2"));
    LayerStatsOptions o;
    o.selection.count = ref.at("samples").get<int64_t>();
    o.run.max_len = ref.at("max_len").get<int64_t>();
    o.run.batch = 16;  // padded batches: the padding rows must not count
    const LayerStatsReport r = collect_layer_stats(*model, test::fixture(ref.at("data").get<std::string>()), o);
    expect_matches_reference(r, ref);
}

struct LinearKey {
    std::string name;
    LayerRole role;
    int64_t block, n_out, n_in;
    bool operator==(const LinearKey&) const = default;
};
std::vector<LinearKey> keys(Model& m) {
    std::vector<LinearKey> out;
    for (const Linear* l : m.linears()) out.push_back({l->name, l->role, l->block, l->n_out(), l->n_in()});
    return out;
}

TEST(spine, GgufAndHfFormsListTheSameLinears) {
    auto gguf = Model::load(test::fixture("models/stories260K-gguf/stories260K.gguf"));
    auto hf = Model::load(test::fixture("models/stories260K-hf"));
    const auto a = keys(*gguf), b = keys(*hf);
    ASSERT_EQ(a.size(), 5u * 7u + 1u);
    EXPECT_TRUE(a == b);
    EXPECT_EQ(a.front().name, "blk.0.attn_q");
    EXPECT_EQ(a.front().role, LayerRole::attn_q);
    EXPECT_EQ(a.back().role, LayerRole::lm_head);
    EXPECT_EQ(hf->linears().front()->source_name, "model.layers.0.self_attn.q_proj");
    EXPECT_EQ(hf->find_linear("model.layers.4.mlp.down_proj"), hf->find_linear("blk.4.ffn_down"));
}

TEST(spine, Gpt2HfAndTheGgufCqWritesListTheSameLinears) {
    const test::TempDir tmp;
    QuantizeOptions q;
    q.type = "f16";
    quantize_model(test::fixture("models/gpt2-tiny-stories"), tmp.file("gpt2.gguf"), q);
    auto hf = Model::load(test::fixture("models/gpt2-tiny-stories"));
    auto gguf = Model::load(tmp.file("gpt2.gguf"));
    const auto a = keys(*hf);
    ASSERT_EQ(a.size(), 4u * 4u + 1u);
    EXPECT_TRUE(a == keys(*gguf));
    EXPECT_EQ(a.front().role, LayerRole::attn_qkv);
    EXPECT_EQ(hf->linears().front()->source_name, "transformer.h.0.attn.c_attn");
    EXPECT_EQ(gguf->linears().front()->format(), "f16");
}

TEST(spine, ObserversSeeEveryLinearAndBlockWithoutChangingTheResult) {
    auto model = LanguageModel::load(test::fixture("models/stories260K-gguf/stories260K.gguf"));
    const std::vector<int32_t> tokens = {1, 403, 407, 261, 378};
    const size_t V = static_cast<size_t>(model->config().n_vocab);
    std::vector<float> plain(tokens.size() * V), observed(plain.size());
    model->forward(tokens, 0, plain, true);
    std::vector<std::string> seen;
    std::vector<int64_t> blocks;
    for (Linear* l : model->linears())
        model->observe(*l, [&](const LinearEvent& e) {
            seen.push_back(e.layer.name);
            EXPECT_EQ(e.rows, static_cast<int64_t>(tokens.size()));
            EXPECT_EQ(e.row_mask, nullptr);
        });
    const ObserverId id = model->observe_blocks([&](const BlockEvent& e) { blocks.push_back(e.block); });
    model->forward(tokens, 0, observed, true);
    EXPECT_EQ(plain, observed);
    std::vector<std::string> order;
    for (const Linear* l : model->linears()) order.push_back(l->name);
    EXPECT_EQ(seen, order);
    EXPECT_EQ(blocks, (std::vector<int64_t>{0, 1, 2, 3, 4}));
    model->remove_observer(id);
    model->clear_observers();
    for (const Linear* l : model->linears()) EXPECT_FALSE(l->observers);
}

TEST(spine, QuantizeLinearRewritesOneLayerInMemory) {
    auto model = LanguageModel::load(test::fixture("models/llama-256d-stories"));
    const std::vector<int32_t> tokens = {1, 403, 407, 261, 378};
    const size_t V = static_cast<size_t>(model->config().n_vocab);
    std::vector<float> before(tokens.size() * V), after(before.size());
    model->forward(tokens, 0, before, true);
    Linear* down = model->find_linear("blk.2.ffn_down");
    ASSERT_NE(down, nullptr);
    const std::vector<float> w = down->weight.to_float();
    model->quantize_linear(*down, DType::Q8_0);
    EXPECT_EQ(down->format(), "q8_0");
    // The new weight is the Q8_0 round trip of the old one: within half a step of the block's scale, plus
    // what rounding that scale to f16 (relative 2⁻¹¹) moves the largest code (127 steps) by.
    const std::vector<float> q = down->weight.to_float();
    for (size_t b = 0; b < w.size(); b += 32) {
        float amax = 0;
        for (size_t i = b; i < b + 32; ++i) amax = std::max(amax, std::abs(w[i]));
        for (size_t i = b; i < b + 32; ++i) ASSERT_LE(std::abs(q[i] - w[i]), amax / 127.0f * 0.5f * (1 + 0x1p-10f) + amax * 0x1p-11f + 1e-7f) << i;
    }
    model->forward(tokens, 0, after, true);
    float diff = 0;
    for (size_t i = 0; i < before.size(); ++i) diff = std::max(diff, std::abs(after[i] - before[i]));
    EXPECT_GT(diff, 0.0f);
    EXPECT_LT(diff, 0.05f);
    EXPECT_THROW(model->set_weight(*down, Tensor::zeros({3, 3}, DType::F32)), InvalidArgument);
    // stories260K's rows of 64 are not a whole Q4_K super-block of 256.
    auto small = LanguageModel::load(test::fixture("models/stories260K-gguf/stories260K.gguf"));
    EXPECT_THROW(small->quantize_linear(*small->find_linear("blk.0.attn_q"), DType::Q4_K), InvalidArgument);
}

}  // namespace
}  // namespace cq
