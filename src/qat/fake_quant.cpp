// The fake-quantization ops of QAT (cq/qat.h): affine integer grids with STE / LSQ gradients (torch's arithmetic:
// x·(1/s), nearbyint, the zero point added after rounding), cq's dynamic per-token u8 activations, ggml codec round
// trips; and the weight-spec / activation-mode parsers.
#include <algorithm>
#include <cmath>
#include <regex>

#include "cq/error.h"
#include "cq/int8_gemm.h"
#include "cq/qat.h"

namespace cq {
namespace qat {

namespace {
inline float rounded_zero_point(const float* zp, int64_t p, int32_t qmin, int32_t qmax) {
    if (!zp) return 0.0f;
    return std::min(std::max(std::nearbyint(zp[p]), static_cast<float>(qmin)), static_cast<float>(qmax));
}
}  // namespace

void fake_quant_forward(const float* x, int64_t n, int64_t group, const float* scale, const float* zero_point, int32_t qmin,
                        int32_t qmax, float* y, uint8_t* mask) {
    const float lo = static_cast<float>(qmin), hi = static_cast<float>(qmax);
    for (int64_t g0 = 0, p = 0; g0 < n; g0 += group, ++p) {
        const float s = scale[p], inv = 1.0f / s, z = rounded_zero_point(zero_point, p, qmin, qmax);
        const int64_t g1 = std::min(n, g0 + group);
        for (int64_t i = g0; i < g1; ++i) {
            const float q = z + std::nearbyint(x[i] * inv);
            y[i] = (std::min(std::max(q, lo), hi) - z) * s;
            if (mask) mask[i] = q >= lo && q <= hi;
        }
    }
}

void fake_quant_forward__ref(const float* x, int64_t n, int64_t group, const float* scale, const float* zero_point,
                             int32_t qmin, int32_t qmax, float* y, uint8_t* mask) {
    for (int64_t i = 0; i < n; ++i) {
        const int64_t p = i / group;
        const float inv = 1.0f / scale[p];
        const int64_t z = zero_point ? std::clamp<int64_t>(static_cast<int64_t>(std::nearbyint(zero_point[p])), qmin, qmax) : 0;
        const int64_t q = z + static_cast<int64_t>(std::nearbyint(x[i] * inv));
        y[i] = static_cast<float>(std::clamp<int64_t>(q, qmin, qmax) - z) * scale[p];
        if (mask) mask[i] = q >= qmin && q <= qmax;
    }
}

void fake_quant_backward_ste(const float* dy, const uint8_t* mask, int64_t n, float* dx) {
    for (int64_t i = 0; i < n; ++i) dx[i] = mask[i] ? dy[i] : 0.0f;
}

void fake_quant_backward_lsq(const float* dy, const float* x, int64_t n, int64_t group, const float* scale,
                             const float* zero_point, int32_t qmin, int32_t qmax, float grad_factor, float* dx, float* dscale,
                             float* dzero_point) {
    const float lo = static_cast<float>(qmin), hi = static_cast<float>(qmax);
    for (int64_t g0 = 0, p = 0; g0 < n; g0 += group, ++p) {
        const float s = scale[p], inv = 1.0f / s, z = rounded_zero_point(zero_point, p, qmin, qmax);
        const int64_t g1 = std::min(n, g0 + group);
        float ds = 0.0f, dz = 0.0f;
        for (int64_t i = g0; i < g1; ++i) {
            const float q = z + std::nearbyint(x[i] * inv), g = dy[i];  // dx may alias dy
            if (q < lo || q > hi) {
                dx[i] = 0.0f;
                ds += g * ((q < lo ? lo : hi) - z);
                dz -= g * s;
            } else {
                dx[i] = g;
                const float yq = (q - z) * s;
                ds += g * ((yq - x[i]) * inv);
            }
        }
        dscale[p] += ds * grad_factor;
        if (dzero_point) dzero_point[p] += dz * grad_factor;
    }
}

void fake_quant_backward_lsq__ref(const float* dy, const float* x, int64_t n, int64_t group, const float* scale,
                                  const float* zero_point, int32_t qmin, int32_t qmax, float grad_factor, float* dx,
                                  float* dscale, float* dzero_point) {
    const int64_t n_params = (n + group - 1) / group;
    std::vector<double> ds(static_cast<size_t>(n_params), 0.0), dz(static_cast<size_t>(n_params), 0.0);
    for (int64_t i = 0; i < n; ++i) {
        const int64_t p = i / group;
        const double s = scale[p];
        const int64_t z = zero_point ? std::clamp<int64_t>(static_cast<int64_t>(std::nearbyint(zero_point[p])), qmin, qmax) : 0;
        const int64_t q = z + static_cast<int64_t>(std::nearbyint(x[i] * (1.0f / scale[p])));
        const double g = dy[i];  // dx may alias dy
        if (q < qmin || q > qmax) {
            dx[i] = 0.0f;
            ds[static_cast<size_t>(p)] += g * static_cast<double>((q < qmin ? qmin : qmax) - z);
            dz[static_cast<size_t>(p)] -= g * s;
        } else {
            dx[i] = dy[i];
            ds[static_cast<size_t>(p)] += g * (static_cast<double>(q - z) - x[i] / s);  // round(x/s) − x/s
        }
    }
    for (int64_t p = 0; p < n_params; ++p) {
        dscale[p] += static_cast<float>(ds[static_cast<size_t>(p)] * grad_factor);
        if (dzero_point) dzero_point[p] += static_cast<float>(dz[static_cast<size_t>(p)] * grad_factor);
    }
}

void fake_quant_dynamic_per_token(const float* x, int64_t rows, int64_t cols, int32_t qmax, float* y) {
    const float top = static_cast<float>(qmax);
    for (int64_t r = 0; r < rows; ++r) {
        const float* row = x + r * cols;
        float lo = 0.0f, hi = 0.0f;
        for (int64_t i = 0; i < cols; ++i) lo = row[i] < lo ? row[i] : lo, hi = row[i] > hi ? row[i] : hi;
        float s = 1.0f;
        int32_t z = 0;
        u8_quant_params_from_range(lo, hi, qmax, &s, &z);
        const float inv = 1.0f / s, zp = static_cast<float>(z);
        for (int64_t i = 0; i < cols; ++i) {
            float v = std::nearbyint(row[i] * inv) + zp;  // as quantize_row_u8 computes it
            v = v > 0.0f ? v : 0.0f;
            v = v < top ? v : top;
            y[r * cols + i] = (v - zp) * s;
        }
    }
}

void fake_quant_ggml(DType type, const float* x, int64_t rows, int64_t cols, float* y) {
    const DTypeTraits& t = dtype_traits(type);
    if (!t.from_float || !t.to_float) throw InvalidArgument("[qat] " + std::string(t.name) + " has no codec to fake-quantize with");
    if (cols % static_cast<int64_t>(t.block_size) != 0)
        throw InvalidArgument("[qat] rows of " + std::to_string(cols) + " are not whole " + std::string(t.name) + " blocks of " +
                              std::to_string(t.block_size));
    const int64_t row_bytes = cols / static_cast<int64_t>(t.block_size) * static_cast<int64_t>(t.bytes_per_block);
    std::vector<uint8_t> buf(static_cast<size_t>(row_bytes));
    for (int64_t r = 0; r < rows; ++r) {
        t.from_float(x + r * cols, buf.data(), cols);
        t.to_float(buf.data(), y + r * cols, cols);
    }
}

}  // namespace qat

std::string WeightQuantSpec::text() const {
    if (kind == Kind::ggml) return std::string(dtype_name(type));
    std::string g = granularity == Granularity::tensor ? "tensor" : granularity == Granularity::channel ? "channel" : "g" + std::to_string(group);
    return "int" + std::to_string(bits) + "-" + g + (symmetric ? "-sym" : "-asym");
}

WeightQuantSpec parse_weight_quant_spec(const std::string& spec) {
    WeightQuantSpec w;
    static const std::regex re(R"(int([2-8])(?:-(tensor|channel|g([0-9]+)))?(?:-(sym|asym))?)");
    std::smatch m;
    if (std::regex_match(spec, m, re)) {
        w.bits = std::stoi(m[1].str());
        if (m[2].matched) {
            const std::string g = m[2].str();
            if (g == "tensor") w.granularity = WeightQuantSpec::Granularity::tensor;
            else if (g == "channel") w.granularity = WeightQuantSpec::Granularity::channel;
            else {
                w.granularity = WeightQuantSpec::Granularity::group;
                w.group = std::stoll(m[3].str());
                if (w.group < 1 || w.group > (1 << 20)) throw InvalidArgument("[qat] group size in '" + spec + "' must be in [1, 2^20]");
            }
        }
        w.symmetric = !m[4].matched || m[4].str() == "sym";
        return w;
    }
    if (const auto t = dtype_from_name(spec); t && dtype_traits(*t).is_quantized && dtype_traits(*t).from_float) {
        w.kind = WeightQuantSpec::Kind::ggml;
        w.type = *t;
        return w;
    }
    throw InvalidArgument("[qat] unknown weight quantization '" + spec +
                          "' (intB[-tensor|-channel|-gN][-sym|-asym] with B in 2..8, or a ggml type with a codec such as q4_0, q3_K)");
}

std::string act_quant_mode_name(ActQuantMode m) {
    switch (m) {
        case ActQuantMode::none: return "none";
        case ActQuantMode::static_ema: return "static-ema";
        case ActQuantMode::static_learned: return "static-learned";
        case ActQuantMode::dynamic: return "dynamic";
    }
    return "?";
}

ActQuantMode parse_act_quant_mode(const std::string& t) {
    if (t == "none") return ActQuantMode::none;
    if (t == "static" || t == "static-learned") return ActQuantMode::static_learned;
    if (t == "static-ema") return ActQuantMode::static_ema;
    if (t == "dynamic") return ActQuantMode::dynamic;
    throw InvalidArgument("[qat] unknown activation quantization '" + t + "' (none, static, static-ema, static-learned, dynamic)");
}

QatRule parse_qat_rule(const std::string& rule) {
    const auto [pattern, action] = split_rule_spec(rule, "--qat-rule", "PATTERN=SPEC|float");
    QatRule r;
    r.scope.pattern = pattern;
    if (action == "float") r.quantize = false;
    else r.spec = parse_weight_quant_spec(action);
    return r;
}

}  // namespace cq
