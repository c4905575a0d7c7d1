// Per-tensor quantization policy as data: rules, layer selectors and the named presets. The mixes
// follow llama.cpp's llama_tensor_get_type for LLaMA-style models (no importance matrix).
#include <algorithm>
#include <cctype>

#include "cq/error.h"
#include "cq/quantize.h"

namespace cq {

namespace {

using K = LayerSelector::Kind;

QuantRule rule(std::string pattern, DType type, LayerSelector layers = {}, int64_t min_gqa = 0) {
    return QuantRule{RuleScope{std::move(pattern), layers, min_gqa}, type};
}
LayerSelector more_bits() { return {K::more_bits, 0}; }
LayerSelector below(int64_t n) { return {K::below, n}; }
LayerSelector below_fraction(int64_t den) { return {K::below_fraction, den}; }

// llama.cpp quantizes every ≥2-D "*.weight" tensor by default and sends the output head to Q6_K
// (except for Q8_0); "output.weight" rules also cover a tied token embedding (see the planner).
QuantPreset plain(std::string name, DType type, uint32_t ftype, bool q6k_output, std::string description) {
    QuantPreset p{std::move(name), std::move(description), ftype, {rule("*.weight", type)}};
    if (q6k_output) p.rules.push_back(rule("output.weight", DType::Q6_K));
    return p;
}

// A k-quant mix: `type` everywhere, output Q6_K, and `rules` in between (later rules win).
QuantPreset mix(std::string name, DType type, uint32_t ftype, std::string description, std::vector<QuantRule> rules) {
    QuantPreset p = plain(std::move(name), type, ftype, true, std::move(description));
    p.rules.insert(p.rules.end() - 1, rules.begin(), rules.end());
    return p;
}

std::vector<QuantPreset> make_presets() {
    return {
        plain("f32", DType::F32, 0, false, "32-bit floats (no quantization)"),
        plain("f16", DType::F16, 1, false, "16-bit IEEE floats"),
        plain("bf16", DType::BF16, 32, false, "bfloat16"),
        plain("q8_0", DType::Q8_0, 7, false, "8.5 bpw, symmetric 8-bit blocks of 32"),
        plain("q4_0", DType::Q4_0, 2, true, "4.5 bpw, symmetric 4-bit blocks of 32; output Q6_K"),
        plain("q4_1", DType::Q4_1, 3, true, "5 bpw, 4-bit blocks of 32 with a minimum; output Q6_K"),
        plain("q5_0", DType::Q5_0, 8, true, "5.5 bpw, symmetric 5-bit blocks of 32; output Q6_K"),
        plain("q5_1", DType::Q5_1, 9, true, "6 bpw, 5-bit blocks of 32 with a minimum; output Q6_K"),
        mix("q2_k", DType::Q2_K, 10, "k-quant mix around Q2_K (attn_v/ffn_down/attn_output Q3_K)",
            {rule("blk.*.attn_v.weight", DType::Q3_K), rule("blk.*.attn_v.weight", DType::Q4_K, {}, 4),
             rule("blk.*.ffn_down.weight", DType::Q3_K), rule("blk.*.attn_output.weight", DType::Q3_K)}),
        plain("q3_k_s", DType::Q3_K, 11, true, "Q3_K everywhere; output Q6_K"),
        mix("q3_k_m", DType::Q3_K, 12, "k-quant mix around Q3_K (attn_v, ffn_down, attn_output higher)",
            {rule("blk.*.attn_v.weight", DType::Q4_K), rule("blk.*.attn_v.weight", DType::Q5_K, below(2)),
             rule("blk.*.ffn_down.weight", DType::Q4_K), rule("blk.*.ffn_down.weight", DType::Q5_K, below_fraction(16)),
             rule("blk.*.attn_output.weight", DType::Q4_K), rule("blk.*.attn_qkv.weight", DType::Q4_K)}),
        mix("q3_k_l", DType::Q3_K, 13, "k-quant mix around Q3_K, attn_v/ffn_down/attn_output Q5_K",
            {rule("blk.*.attn_v.weight", DType::Q5_K), rule("blk.*.ffn_down.weight", DType::Q5_K),
             rule("blk.*.attn_output.weight", DType::Q5_K), rule("blk.*.attn_qkv.weight", DType::Q4_K)}),
        mix("q4_k_s", DType::Q4_K, 14, "k-quant mix around Q4_K (first layers' attn_v/ffn_down Q5_K)",
            {rule("blk.*.attn_v.weight", DType::Q5_K, below(4)), rule("blk.*.ffn_down.weight", DType::Q5_K, below_fraction(8))}),
        mix("q4_k_m", DType::Q4_K, 15, "k-quant mix around Q4_K (some attn_v/ffn_down Q6_K)",
            {rule("blk.*.attn_v.weight", DType::Q6_K, more_bits()), rule("blk.*.ffn_down.weight", DType::Q6_K, more_bits()),
             rule("blk.*.attn_qkv.weight", DType::Q5_K)}),
        plain("q5_k_s", DType::Q5_K, 16, true, "Q5_K everywhere; output Q6_K"),
        mix("q5_k_m", DType::Q5_K, 17, "k-quant mix around Q5_K (some attn_v/ffn_down Q6_K)",
            {rule("blk.*.attn_v.weight", DType::Q6_K, more_bits()), rule("blk.*.ffn_down.weight", DType::Q6_K, more_bits()),
             rule("blk.*.attn_qkv.weight", DType::Q6_K)}),
        plain("q6_k", DType::Q6_K, 18, true, "Q6_K everywhere"),
    };
}

std::string lower(std::string s) {
    std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return s;
}

}  // namespace

std::string QuantRule::text() const { return scope.text() + "=" + std::string(dtype_name(type)); }

const std::vector<QuantPreset>& quant_presets() {
    static const std::vector<QuantPreset> presets = make_presets();
    return presets;
}

const QuantPreset* find_preset(const std::string& name) {
    const std::string n = lower(name);
    for (const auto& p : quant_presets())
        if (p.name == n) return &p;
    return nullptr;
}

QuantRule parse_tensor_type_rule(const std::string& spec) {
    const auto [pattern, type_name] = split_rule_spec(spec, "[quantize] --tensor-type", "PATTERN=TYPE (e.g. 'blk.*.ffn_down.weight=q6_K')");
    const auto type = dtype_from_name(type_name);
    if (!type || !dtype_traits(*type).from_float || *type == DType::Q8_1 || *type == DType::Q8_K)
        throw InvalidArgument("[quantize] --tensor-type '" + spec + "': '" + type_name +
                              "' is not a type cq can quantize to (f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, q2_K … q6_K)");
    return rule(pattern, *type);
}

}  // namespace cq
