// W8A8 quantization of Linear layers: per-channel symmetric int8 weights, the kernels' packed layout,
// and the rule list that picks which Linears are quantized.

#include <algorithm>
#include <cmath>
#include <cstring>
#include <optional>

#include "cq/error.h"
#include "cq/int8_gemm.h"
#include "cq/kernels.h"
#include "cq/llm.h"
#include "cq/w8a8.h"
#include "formats/formats.h"

namespace cq {

namespace {

// One weight row as f32, whatever the stored float type.
void load_row_f32(const Tensor& w, int64_t row, int64_t n, float* out) {
    const auto* base = static_cast<const uint8_t*>(w.data());
    switch (w.dtype()) {
    case DType::F32: std::memcpy(out, base + row * n * 4, static_cast<size_t>(n) * 4); return;
    case DType::F16: kernel_table().convert_f16_f32.fn(reinterpret_cast<const uint16_t*>(base + row * n * 2), out, n); return;
    case DType::BF16: kernel_table().convert_bf16_f32.fn(reinterpret_cast<const uint16_t*>(base + row * n * 2), out, n); return;
    default: {
        // a block type (a quantized GGUF's weight): its rows dequantized exactly, then requantized per channel
        const DTypeTraits& t = dtype_traits(w.dtype());
        if (!t.is_quantized || !t.to_float)
            throw Unsupported("[w8a8] weights of type " + std::string(dtype_name(w.dtype())) + " cannot be quantized to int8");
        const uint64_t row_bytes = *dtype_bytes(w.dtype(), static_cast<uint64_t>(n));
        t.to_float(base + row * static_cast<int64_t>(row_bytes), out, n);
        return;
    }
    }
}

// [in, out] (f32/f16/bf16) → its transpose [out, in] in f32.
Tensor transpose_to_f32(const Tensor& w, const std::string& name) {
    const int64_t n_in = w.dim(0), n_out = w.dim(1);
    Tensor t = Tensor::zeros({n_out, n_in}, DType::F32);
    auto* dst = static_cast<float*>(t.mutable_data());
    std::vector<float> row(static_cast<size_t>(n_out));
    for (int64_t i = 0; i < n_in; ++i) {
        try {
            load_row_f32(w, i, n_out, row.data());
        } catch (const Unsupported& e) {
            throw Unsupported(std::string(e.what()) + " (" + name + ")");
        }
        for (int64_t o = 0; o < n_out; ++o) dst[o * n_in + i] = row[static_cast<size_t>(o)];
    }
    return t;
}

}  // namespace

void pack_int8_linear(Int8Linear& q) {
    const int64_t bytes = packed_s8_bytes(q.n_out, q.n_in);
    auto* mem = static_cast<int8_t*>(aligned_alloc_bytes(static_cast<size_t>(bytes)));
    q.packed = std::shared_ptr<int8_t>(mem, [](int8_t* p) { aligned_free(p); });
    const auto* w = static_cast<const int8_t*>(q.weight.data());
    pack_s8_panels(w, q.n_out, q.n_in, q.n_in, mem);
    q.weight_sums.resize(static_cast<size_t>(q.n_out));
    s8_row_sums(w, q.n_out, q.n_in, q.n_in, q.weight_sums.data());
}

int32_t auto_activation_bits() {
    // 8 bits where the u8s8 kernel is exact and fast: VNNI, and every ARM64 rung (sdot / usdot / widening
    // multiplies never saturate); 7 where only vpmaddubsw's 7-bit path is both.
    const IsaLevel isa = kernel_table().gemm_u8s8.isa;
    return isa == IsaLevel::avx512_vnni || isa == IsaLevel::neon || isa == IsaLevel::neon_dotprod || isa == IsaLevel::neon_i8mm ? 8 : 7;
}

std::shared_ptr<Int8Linear> quantize_linear_w8a8(const Linear& layer, ActivationQuant activations, calib::U8Params input,
                                                 int32_t act_qmax) {
    if (act_qmax != kU8QMax && act_qmax != kU7QMax)
        throw InvalidArgument("[w8a8] " + layer.name + ": activation qmax " + std::to_string(act_qmax) +
                              " is not 255 (8-bit) or 127 (7-bit)");
    if (activations == ActivationQuant::dynamic_per_tensor && act_qmax != kU8QMax)
        throw InvalidArgument("[w8a8] " + layer.name + ": per-tensor dynamic activations (DynamicQuantizeLinear) are 8-bit, not " +
                              std::to_string(act_qmax == kU7QMax ? 7 : 0) + "-bit");
    if (activations == ActivationQuant::static_per_tensor && (input.zero_point < 0 || input.zero_point > act_qmax))
        throw InvalidArgument("[w8a8] " + layer.name + ": static input zero point " + std::to_string(input.zero_point) +
                              " is outside [0, " + std::to_string(act_qmax) + "]");
    if (layer.weight.ndim() != 2) throw InvalidArgument("[w8a8] " + layer.name + ": weight is not 2-D");
    // A weight stored [in, out] (GPT-2's Conv1D) is read as its transpose: the int8 form is [out, in] whatever the file's layout.
    const std::optional<Tensor> rows_first = layer.transposed ? std::optional<Tensor>(transpose_to_f32(layer.weight, layer.name)) : std::nullopt;
    const Tensor& weight = rows_first ? *rows_first : layer.weight;
    auto q = std::make_shared<Int8Linear>();
    q->n_out = weight.dim(0);
    q->n_in = weight.dim(1);
    q->activations = activations;
    q->input = input;
    q->act_qmax = act_qmax;
    q->weight = Tensor::zeros({q->n_out, q->n_in}, DType::I8);
    q->weight_scale.resize(static_cast<size_t>(q->n_out));
    auto* wq = static_cast<int8_t*>(q->weight.mutable_data());
    std::vector<float> row(static_cast<size_t>(q->n_in));
    for (int64_t i = 0; i < q->n_out; ++i) {
        load_row_f32(weight, i, q->n_in, row.data());
        float amax = 0.0f;
        for (float v : row) {
            if (!std::isfinite(v)) throw InvalidArgument("[w8a8] " + layer.name + ": weight row " + std::to_string(i) + " holds NaN or Inf");
            amax = std::max(amax, std::fabs(v));
        }
        const float scale = amax > 0.0f ? amax / 127.0f : 1.0f;
        const float inv = 1.0f / scale;
        q->weight_scale[static_cast<size_t>(i)] = scale;
        for (int64_t j = 0; j < q->n_in; ++j)
            wq[i * q->n_in + j] = static_cast<int8_t>(std::clamp(std::nearbyint(row[static_cast<size_t>(j)] * inv), -127.0f, 127.0f));
    }
    if (layer.bias) {
        q->bias.resize(static_cast<size_t>(q->n_out));
        load_row_f32(*layer.bias, 0, q->n_out, q->bias.data());
    }
    pack_int8_linear(*q);
    return q;
}

calib::U8Params dynamic_quantize_linear_params(float lo, float hi) {
    lo = std::min(lo, 0.0f);
    hi = std::max(hi, 0.0f);
    const float scale = hi == lo ? 1.0f : (hi - lo) / 255.0f;
    const float zero = std::clamp(0.0f - lo / scale, 0.0f, 255.0f);
    return {scale, static_cast<int32_t>(std::nearbyint(zero))};  // the default rounding mode: half to even
}

std::string W8A8Rule::text() const { return scope.text() + (int8 ? "=int8" : "=float"); }

W8A8Rule parse_w8a8_rule(const std::string& spec) {
    const auto [pattern, what] = split_rule_spec(spec, "[w8a8] rule", "PATTERN=int8|float");
    if (what != "int8" && what != "float")
        throw InvalidArgument("[w8a8] rule '" + spec + "': '" + what + "' is not int8 or float");
    return W8A8Rule{RuleScope{pattern}, what == "int8"};
}

std::vector<W8A8Rule> default_w8a8_rules() {
    // "*.layer.N.*" is where every HF encoder (bert/roberta/vit: encoder.layer, distilbert: transformer.layer)
    // keeps its blocks, "*.encoder.layers.N.*" CLIP's two towers, "*.encoder.blocks.N.*" EfficientNet's MBConv blocks;
    // pooler, classifier heads, CLIP's projections and EfficientNet's stem / top convs are few FLOPs and sensitive,
    // so they stay float.
    return {W8A8Rule{RuleScope{"*"}, false}, W8A8Rule{RuleScope{"*.layer.*"}, true}, W8A8Rule{RuleScope{"*.encoder.layers.*"}, true},
            W8A8Rule{RuleScope{"*.encoder.blocks.*"}, true}};
}

bool w8a8_selects(const std::vector<W8A8Rule>& rules, const std::string& name) {
    const auto i = deciding_rule<W8A8Rule>(rules, RuleTarget{name});
    return i >= 0 && rules[static_cast<size_t>(i)].int8;
}

std::string w8a8_deciding_rule(const std::vector<W8A8Rule>& rules, const RuleTarget& target) {
    const auto i = deciding_rule<W8A8Rule>(rules, target);
    return i >= 0 ? rules[static_cast<size_t>(i)].text() : "(none)";
}

}  // namespace cq
