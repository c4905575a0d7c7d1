// Structured pruning (cq/prune.h: prune_structured): the smaller HF directory against the dense model with the removed
// units masked in memory (o_proj columns of the removed query heads, down_proj columns of the removed neurons set to 0;
// a removed KV group's heads then contribute nothing, exactly as if sliced away), so the two must give the same
// logits; the config and shapes; the importance ordering; and the target parser's errors.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "cq/error.h"
#include "cq/llm.h"
#include "cq/prune.h"
#include "test_support.h"

namespace cq {
namespace {

const char* kModel = "models/llama-256d-stories";
const char* kCalib = "data/stories_calib.txt";

TEST(StructuredTarget, ParsesAndRefuses) {
    const StructuredTarget t = StructuredTarget::parse("ffn=0.5,heads=0.25,layers=2", "[t]");
    EXPECT_DOUBLE_EQ(t.heads, 0.25);
    EXPECT_DOUBLE_EQ(t.ffn, 0.5);
    EXPECT_EQ(t.layers, 2);
    for (const char* bad : {"", "heads=1", "heads=-0.1", "ffn=x", "layers=1.5", "width=0.2", "heads=0,ffn=0"})
        EXPECT_THROW(StructuredTarget::parse(bad, "[t]"), InvalidArgument) << bad;
}

std::vector<float> logits_of(LanguageModel& m, const std::vector<int32_t>& tokens) {
    std::vector<float> out(tokens.size() * static_cast<size_t>(m.config().n_vocab));
    m.forward(tokens, 0, out, true);
    return out;
}

TEST(StructuredPrune, SmallerModelEqualsTheMaskedDenseOne) {
    test::TempDir dir;
    StructuredOptions o;
    o.target = StructuredTarget::parse("heads=0.25,ffn=0.25", "[t]");
    o.calib.text_path = test::fixture(kCalib);
    o.calib.n_ctx = 64;
    o.calib.max_chunks = 8;
    const std::string out = dir.file("pruned");
    const StructuredReport r = prune_structured(test::fixture(kModel), out, o);
    EXPECT_EQ(r.n_head_in, 8);
    EXPECT_EQ(r.n_head_kv_out, 3);
    EXPECT_EQ(r.n_head_out, 6);
    EXPECT_EQ(r.n_ff_out, 576);
    EXPECT_EQ(r.n_layer_out, 6);
    EXPECT_LT(r.params_out, r.params_in);

    std::ifstream cf(out + "/config.json");
    const nlohmann::json cfg = nlohmann::json::parse(cf);
    EXPECT_EQ(cfg["num_attention_heads"], 6);
    EXPECT_EQ(cfg["num_key_value_heads"], 3);
    EXPECT_EQ(cfg["intermediate_size"], 576);
    EXPECT_EQ(cfg["head_dim"], 32);

    auto dense = LanguageModel::load(test::fixture(kModel));
    const LlmConfig& c = dense->config();
    const int64_t hd = c.head_dim, G = c.n_head / c.n_head_kv;
    for (const StructuredBlock& b : r.blocks) {
        // The kept groups are the highest-scoring ones.
        double lowest_kept = 1e300, highest_dropped = -1;
        for (int64_t g = 0; g < c.n_head_kv; ++g) {
            const bool kept = std::find(b.kept_groups.begin(), b.kept_groups.end(), g) != b.kept_groups.end();
            (kept ? lowest_kept : highest_dropped) = kept ? std::min(lowest_kept, b.group_scores[g]) : std::max(highest_dropped, b.group_scores[g]);
            EXPECT_GT(b.group_scores[g], 0.0);
        }
        EXPECT_GE(lowest_kept, highest_dropped);
        DecoderBlock& blk = dense->weights().blocks[static_cast<size_t>(b.block)];
        std::vector<float> wo = blk.wo.weight.to_float();
        const int64_t n_in = blk.wo.n_in();
        for (int64_t h = 0; h < c.n_head; ++h)
            if (std::find(b.kept_groups.begin(), b.kept_groups.end(), h / G) == b.kept_groups.end())
                for (int64_t row = 0; row < blk.wo.n_out(); ++row)
                    for (int64_t i = 0; i < hd; ++i) wo[static_cast<size_t>(row * n_in + h * hd + i)] = 0.0f;
        Tensor two = Tensor::zeros({blk.wo.n_out(), n_in}, DType::F32);
        std::copy(wo.begin(), wo.end(), static_cast<float*>(two.mutable_data()));
        dense->set_weight(blk.wo, std::move(two), "test mask");
    }
    // FFN: the kept neurons are read back from the pruned file's gate rows (equal rows of the dense gate).
    auto small = LanguageModel::load(out);
    for (int64_t l = 0; l < c.n_layer; ++l) {
        DecoderBlock& db = dense->weights().blocks[static_cast<size_t>(l)];
        const DecoderBlock& sb = small->weights().blocks[static_cast<size_t>(l)];
        const std::vector<float> dg = db.ffn_gate.weight.to_float(), sg = sb.ffn_gate.weight.to_float();
        const int64_t D = db.ffn_gate.n_in(), F = db.ffn_gate.n_out();
        std::vector<uint8_t> kept(static_cast<size_t>(F), 0);
        for (int64_t k = 0; k < sb.ffn_gate.n_out(); ++k) {
            int64_t found = -1;
            for (int64_t i = 0; i < F && found < 0; ++i)
                if (std::equal(sg.begin() + k * D, sg.begin() + (k + 1) * D, dg.begin() + i * D)) found = i;
            ASSERT_GE(found, 0) << "block " << l << " kept neuron " << k << " is no row of the dense gate";
            kept[static_cast<size_t>(found)] = 1;
        }
        std::vector<float> wd = db.ffn_down.weight.to_float();
        for (int64_t row = 0; row < db.ffn_down.n_out(); ++row)
            for (int64_t i = 0; i < F; ++i)
                if (!kept[static_cast<size_t>(i)]) wd[static_cast<size_t>(row * F + i)] = 0.0f;
        Tensor t = Tensor::zeros({db.ffn_down.n_out(), F}, DType::F32);
        std::copy(wd.begin(), wd.end(), static_cast<float*>(t.mutable_data()));
        dense->set_weight(db.ffn_down, std::move(t), "test mask");
    }
    const std::vector<int32_t> tokens{1, 45, 300, 12, 7, 99, 250, 3, 17, 400, 88, 5};
    const auto a = logits_of(*dense, tokens), b = logits_of(*small, tokens);
    ASSERT_EQ(a.size(), b.size());
    double max_diff = 0, max_abs = 0;
    for (size_t i = 0; i < a.size(); ++i) max_diff = std::max(max_diff, double(std::fabs(a[i] - b[i]))), max_abs = std::max(max_abs, double(std::fabs(a[i])));
    EXPECT_LT(max_diff, 1e-4 * std::max(1.0, max_abs)) << "pruned vs masked dense logits";
}

TEST(StructuredPrune, DepthRemovesTheLeastInfluentialBlocks) {
    test::TempDir dir;
    StructuredOptions o;
    o.target = StructuredTarget::parse("layers=2", "[t]");
    o.calib.text_path = test::fixture(kCalib);
    o.calib.n_ctx = 64;
    o.calib.max_chunks = 4;
    const StructuredReport r = prune_structured(test::fixture(kModel), dir.file("d"), o);
    EXPECT_EQ(r.n_layer_out, 4);
    double min_kept = 1e300, max_removed = -1;
    for (const auto& b : r.blocks) (b.new_index < 0 ? max_removed : min_kept) = b.new_index < 0 ? std::max(max_removed, b.influence) : std::min(min_kept, b.influence);
    EXPECT_GE(min_kept, max_removed);
    auto m = LanguageModel::load(dir.file("d"));
    EXPECT_EQ(m->config().n_layer, 4);
}

TEST(StructuredPrune, RefusesBadInputsBeforeWriting) {
    test::TempDir dir;
    StructuredOptions o;
    o.target = StructuredTarget::parse("ffn=0.25", "[t]");
    EXPECT_THROW(prune_structured(test::fixture(kModel), dir.file("x"), o), InvalidArgument);  // no calibration text
    o.calib.text_path = test::fixture(kCalib);
    EXPECT_THROW(prune_structured(test::fixture("models/stories260K-gguf"), dir.file("y"), o), Unsupported);
    o.target.layers = 6;
    EXPECT_THROW(prune_structured(test::fixture(kModel), dir.file("z"), o), InvalidArgument);
    EXPECT_FALSE(std::filesystem::exists(dir.file("x")));
    EXPECT_FALSE(std::filesystem::exists(dir.file("z")));
}

}  // namespace
}  // namespace cq
