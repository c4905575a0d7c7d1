// The rule engine's matching: glob + block selector + GQA minimum, and the text a report names a rule by.
#include <fnmatch.h>

#include "cq/error.h"
#include "cq/rules.h"

namespace cq {

using K = LayerSelector::Kind;

bool LayerSelector::matches(int64_t layer, int64_t n_layer) const {
    switch (kind) {
        case K::all: return true;
        case K::more_bits:  // llama.cpp's use_more_bits: the first and last eighth, and every third layer between
            return layer >= 0 && (layer < n_layer / 8 || layer >= 7 * n_layer / 8 || (layer - n_layer / 8) % 3 == 2);
        case K::below: return layer >= 0 && layer < n;
        case K::below_fraction: return layer >= 0 && n > 0 && layer < n_layer / n;
    }
    return false;
}

bool RuleScope::matches(const RuleTarget& t) const {
    const bool name_ok = fnmatch(pattern.c_str(), t.name.c_str(), 0) == 0 || (!t.alias.empty() && pattern == t.alias);
    return name_ok && layers.matches(t.block, t.n_blocks) && t.gqa >= min_gqa;
}

std::string RuleScope::text() const {
    std::string s = pattern;
    switch (layers.kind) {
        case K::all: break;
        case K::more_bits: s += "[more_bits]"; break;
        case K::below: s += "[layer<" + std::to_string(layers.n) + "]"; break;
        case K::below_fraction: s += "[layer<n/" + std::to_string(layers.n) + "]"; break;
    }
    if (min_gqa > 0) s += "[gqa>=" + std::to_string(min_gqa) + "]";
    return s;
}

std::pair<std::string, std::string> split_rule_spec(const std::string& spec, const std::string& option, const std::string& form) {
    const size_t eq = spec.rfind('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == spec.size())
        throw InvalidArgument(option + " '" + spec + "' is not " + form);
    return {spec.substr(0, eq), spec.substr(eq + 1)};
}

}  // namespace cq
