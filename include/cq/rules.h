// The one per-tensor policy engine every pass shares: ordered rules "PATTERN[selectors]=ACTION" over
// tensor / layer names, the last matching rule deciding. Quantization types, W8A8 layer choices (and later
// pruning) are rules with different actions on the same scope, so matching and "which rule decided" exist once.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <utility>

namespace cq {

/// Which transformer blocks a rule applies to (by the block index). Tensors outside blocks match only `all`.
struct LayerSelector {
    enum class Kind { all, more_bits, below, below_fraction } kind = Kind::all;
    int64_t n = 0;  // below: i < n; below_fraction: i < n_layer / n
    bool matches(int64_t layer, int64_t n_layer) const;
};

/// What a rule is matched against: a tensor or layer and where it sits in its model.
struct RuleTarget {
    std::string name;
    int64_t block = -1, n_blocks = 0;
    int64_t gqa = 1;    // n_head / n_head_kv
    std::string alias;  // a second name rules may name exactly (a tied embedding is also "output.weight")
};

/// Where a rule applies: a glob over the name (fnmatch; '*' crosses dots), a block selector, a GQA minimum.
struct RuleScope {
    std::string pattern;
    LayerSelector layers;
    int64_t min_gqa = 0;  // applies only when n_head / n_head_kv ≥ min_gqa
    bool matches(const RuleTarget& target) const;
    /// "blk.*.ffn_down.weight[more_bits][gqa>=4]"
    std::string text() const;
};

/// Index of the rule that decides `target` (the last whose scope matches), −1 when none does.
/// Rule: any type with a `RuleScope scope` member.
template <typename Rule>
std::ptrdiff_t deciding_rule(std::span<const Rule> rules, const RuleTarget& target) {
    std::ptrdiff_t decided = -1;
    for (size_t i = 0; i < rules.size(); ++i)
        if (rules[i].scope.matches(target)) decided = static_cast<std::ptrdiff_t>(i);
    return decided;
}

/// "PATTERN=ACTION" split at the last '='. InvalidArgument naming `option` and `form` when either side is empty.
std::pair<std::string, std::string> split_rule_spec(const std::string& spec, const std::string& option, const std::string& form);

}  // namespace cq
