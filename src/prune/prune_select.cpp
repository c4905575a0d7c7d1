// Mask selection shared by the pruning methods (cq/prune.h): the sparsity target's parsing and checks, the lowest-score
// selection per comparison group (ties to the lower index, so every method's mask is a pure function of its scores), and
// Wanda's scores.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>

#include "cq/error.h"
#include "cq/prune.h"

namespace cq {

std::string_view prune_method_name(PruneMethod m) {
    switch (m) {
        case PruneMethod::magnitude: return "magnitude";
        case PruneMethod::wanda: return "wanda";
        case PruneMethod::sparsegpt: return "sparsegpt";
    }
    return "?";
}

PruneMethod parse_prune_method(std::string_view name) {
    for (PruneMethod m : {PruneMethod::magnitude, PruneMethod::wanda, PruneMethod::sparsegpt})
        if (name == prune_method_name(m)) return m;
    throw InvalidArgument("[prune] unknown method '" + std::string(name) + "' (magnitude, wanda, sparsegpt)");
}

std::string_view prune_scope_name(PruneScope s) {
    switch (s) {
        case PruneScope::layer: return "layer";
        case PruneScope::row: return "row";
        case PruneScope::global: return "global";
    }
    return "?";
}

PruneScope parse_prune_scope(std::string_view name) {
    for (PruneScope s : {PruneScope::layer, PruneScope::row, PruneScope::global})
        if (name == prune_scope_name(s)) return s;
    throw InvalidArgument("[prune] unknown scope '" + std::string(name) + "' (layer, row, global)");
}

std::string SparsityTarget::describe() const {
    if (is_nm()) return std::to_string(n) + ":" + std::to_string(m);
    char buf[32];
    std::snprintf(buf, sizeof buf, "%g%%", sparsity * 100.0);
    return buf;
}

void SparsityTarget::validate(std::string_view op) const {
    const std::string o(op);
    if (is_nm()) {
        if (sparsity != 0) throw InvalidArgument("[" + o + "] give either a sparsity or an N:M pattern, not both");
        if (!(n > 0 && n < m))
            throw InvalidArgument("[" + o + "] pattern " + std::to_string(n) + ":" + std::to_string(m) +
                                  " must keep N of every M weights with 0 < N < M (e.g. 2:4, 4:8)");
        return;
    }
    if (n != 0) throw InvalidArgument("[" + o + "] pattern N given without M");
    if (!(sparsity > 0 && sparsity < 1)) {
        char buf[64];
        std::snprintf(buf, sizeof buf, "%g", sparsity);
        throw InvalidArgument("[" + o + "] sparsity " + buf + " is outside (0, 1) (give a fraction such as 0.5, or --pattern N:M)");
    }
}

SparsityTarget SparsityTarget::parse_pattern(std::string_view text, std::string_view op) {
    const auto bad = [&] { return InvalidArgument("[" + std::string(op) + "] pattern '" + std::string(text) + "' is not N:M (e.g. 2:4)"); };
    const size_t colon = text.find(':');
    if (colon == std::string_view::npos || colon == 0 || colon + 1 == text.size()) throw bad();
    const auto num = [&](std::string_view s) {
        int64_t v = 0;
        for (char c : s) {
            if (c < '0' || c > '9' || v > 1'000'000) throw bad();
            v = v * 10 + (c - '0');
        }
        return v;
    };
    SparsityTarget t;
    t.n = num(text.substr(0, colon));
    t.m = num(text.substr(colon + 1));
    if (t.m == 0) throw bad();
    t.validate(op);
    return t;
}

namespace {

// Marks the k lowest of scores[idx[0..count)] (ties to the lower index); idx is scratch.
void mark_lowest(const float* s, int64_t stride, int64_t count, int64_t k, uint8_t* mask, std::vector<int64_t>& idx) {
    if (k <= 0) return;
    idx.resize(static_cast<size_t>(count));
    std::iota(idx.begin(), idx.end(), int64_t{0});
    const auto less = [&](int64_t a, int64_t b) { return s[a * stride] < s[b * stride] || (s[a * stride] == s[b * stride] && a < b); };
    if (k < count) std::nth_element(idx.begin(), idx.begin() + k, idx.end(), less);
    for (int64_t i = 0; i < std::min(k, count); ++i) mask[idx[static_cast<size_t>(i)] * stride] = 1;
}

}  // namespace

std::vector<uint8_t> prune_mask(std::span<const float> scores, int64_t n_out, int64_t n_in, const SparsityTarget& target, bool per_row) {
    target.validate("prune");
    if (n_out <= 0 || n_in <= 0 || static_cast<int64_t>(scores.size()) != n_out * n_in)
        throw InvalidArgument("[prune] scores hold " + std::to_string(scores.size()) + " values, not n_out · n_in = " + std::to_string(n_out) +
                              " · " + std::to_string(n_in));
    std::vector<uint8_t> mask(scores.size(), 0);
    std::vector<int64_t> idx;
    if (target.is_nm()) {
        if (n_in % target.m != 0)
            throw InvalidArgument("[prune] rows of " + std::to_string(n_in) + " weights are not a whole number of " + target.describe() + " groups");
        for (int64_t r = 0; r < n_out; ++r)
            for (int64_t g = 0; g < n_in; g += target.m)
                mark_lowest(scores.data() + r * n_in + g, 1, target.m, target.m - target.n, mask.data() + r * n_in + g, idx);
        return mask;
    }
    if (per_row) {
        const int64_t k = std::llround(target.sparsity * static_cast<double>(n_in));
        for (int64_t r = 0; r < n_out; ++r) mark_lowest(scores.data() + r * n_in, 1, n_in, k, mask.data() + r * n_in, idx);
    } else {
        const int64_t k = std::llround(target.sparsity * static_cast<double>(n_out * n_in));
        mark_lowest(scores.data(), 1, n_out * n_in, k, mask.data(), idx);
    }
    return mask;
}

std::vector<float> wanda_scores(std::span<const float> W, int64_t n_out, int64_t n_in, std::span<const float> input_norms) {
    if (static_cast<int64_t>(W.size()) != n_out * n_in || static_cast<int64_t>(input_norms.size()) != n_in)
        throw InvalidArgument("[prune] wanda: W holds " + std::to_string(W.size()) + " values and the norms " + std::to_string(input_norms.size()) +
                              ", not " + std::to_string(n_out) + " · " + std::to_string(n_in) + " and " + std::to_string(n_in));
    std::vector<float> s(W.size());
    for (int64_t r = 0; r < n_out; ++r)
        for (int64_t j = 0; j < n_in; ++j) s[static_cast<size_t>(r * n_in + j)] = std::fabs(W[static_cast<size_t>(r * n_in + j)]) * input_norms[static_cast<size_t>(j)];
    return s;
}

}  // namespace cq
