// The one rule engine: the last matching rule decides; block selectors, the GQA minimum and a tied
// embedding's alias are part of the scope; quantize and W8A8 rules are the same engine with other actions.
#include <gtest/gtest.h>

#include "cq/error.h"
#include "cq/quantize.h"
#include "cq/w8a8.h"

namespace cq {
namespace {

TEST(rules, LastMatchingRuleDecides) {
    const std::vector<QuantRule> rules = {parse_tensor_type_rule("*.weight=q4_0"), parse_tensor_type_rule("blk.*.ffn_down.weight=q6_K"),
                                          parse_tensor_type_rule("blk.1.*=q8_0")};
    EXPECT_EQ(deciding_rule<QuantRule>(rules, {"blk.0.ffn_down.weight", 0, 4}), 1);
    EXPECT_EQ(deciding_rule<QuantRule>(rules, {"blk.1.ffn_down.weight", 1, 4}), 2);
    EXPECT_EQ(deciding_rule<QuantRule>(rules, {"output.weight", -1, 4}), 0);
    EXPECT_EQ(deciding_rule<QuantRule>(rules, {"output_norm", -1, 4}), -1);
    EXPECT_EQ(rules[1].text(), "blk.*.ffn_down.weight=q6_K");
}

TEST(rules, SelectorsGqaAndAliasAreScope) {
    // llama.cpp's use_more_bits over 8 layers: i < 8/8, i ≥ 7·8/8, or (i − 8/8) % 3 == 2 → 0, 3, 6, 7.
    const RuleScope more{"blk.*", {LayerSelector::Kind::more_bits, 0}};
    std::vector<int64_t> picked;
    for (int64_t l = 0; l < 8; ++l)
        if (more.matches({"blk." + std::to_string(l) + ".attn_v.weight", l, 8})) picked.push_back(l);
    EXPECT_EQ(picked, (std::vector<int64_t>{0, 3, 6, 7}));
    EXPECT_FALSE(more.matches({"output.weight", -1, 8}));  // outside the blocks only `all` matches
    const RuleScope gqa{"*", {}, 4};
    EXPECT_FALSE(gqa.matches({"x", 0, 1, 2}));
    EXPECT_TRUE(gqa.matches({"x", 0, 1, 4}));
    EXPECT_EQ(gqa.text(), "*[gqa>=4]");
    const RuleScope head{"output.weight"};
    EXPECT_TRUE(head.matches({"token_embd.weight", -1, 1, 1, "output.weight"}));
    EXPECT_FALSE(head.matches({"token_embd.weight", -1, 1, 1, ""}));
}

TEST(rules, W8A8RulesAreTheSameEngine) {
    std::vector<W8A8Rule> rules = default_w8a8_rules();
    rules.push_back(parse_w8a8_rule("*.layer.0.*=float"));
    EXPECT_TRUE(w8a8_selects(rules, "bert.encoder.layer.1.output.dense"));
    EXPECT_FALSE(w8a8_selects(rules, "bert.encoder.layer.0.output.dense"));
    EXPECT_FALSE(w8a8_selects(rules, "classifier"));
    EXPECT_EQ(w8a8_deciding_rule(rules, {"bert.encoder.layer.0.output.dense"}), "*.layer.0.*=float");
    EXPECT_THROW(parse_w8a8_rule("*.layer.*="), InvalidArgument);
    EXPECT_THROW(parse_w8a8_rule("*=int4"), InvalidArgument);
    EXPECT_THROW(parse_tensor_type_rule("=q4_0"), InvalidArgument);
}

}  // namespace
}  // namespace cq
