// AWQ's scale search (see awq.h). The activation statistic is the per-channel RMS from the Hessian's diagonal
// (AutoAWQ uses mean |x|; both rank channels by how much their inputs carry), the error the exact output error
// of the group on the calibration rows through H, so no activation samples are kept.
#include "quant/awq.h"

#include <algorithm>
#include <cmath>

#include "cq/error.h"
#include "cq/thread_pool.h"
#include "cq/weighted_quant.h"

namespace cq::quant {

constexpr int64_t kMaxRows = 256;  // rows of each Linear the search quantizes per α

std::vector<float> quantize_dequantize(DType type, const float* w, int64_t n_out, int64_t n_in, const float* importance) {
    const auto& traits = dtype_traits(type);
    if (!traits.to_float) throw InvalidArgument("[awq] cq cannot decode " + std::string(traits.name));
    const uint64_t row_bytes = *dtype_bytes(type, static_cast<uint64_t>(n_in));
    const bool weighted = has_weighted_quantizer(type);
    std::vector<float> out(static_cast<size_t>(n_out * n_in));
    ThreadPool::global().parallel_for(n_out, [&](int64_t r0, int64_t r1) {
        std::vector<uint8_t> q(static_cast<size_t>(row_bytes));
        for (int64_t r = r0; r < r1; ++r) {
            if (weighted) quantize_row_weighted(type, w + r * n_in, q.data(), n_in, importance);
            else if (traits.from_float) traits.from_float(w + r * n_in, q.data(), n_in);
            else throw InvalidArgument("[awq] cq cannot encode " + std::string(traits.name));
            traits.to_float(q.data(), out.data() + r * n_in, n_in);
        }
    }, 8);
    return out;
}

AwqSearch awq_search(const Hessian& H, const std::vector<AwqLinear>& group, int grid) {
    const int64_t n = H.n;
    const std::vector<float> imp = H.importance();
    std::vector<float> rms(static_cast<size_t>(n));
    for (int64_t j = 0; j < n; ++j) rms[static_cast<size_t>(j)] = std::sqrt(std::max(imp[static_cast<size_t>(j)], 1e-12f));

    AwqSearch best;
    best.scales.assign(static_cast<size_t>(n), 1.0f);
    best.error = best.error_unscaled = -1;
    std::vector<float> s(static_cast<size_t>(n)), imp_s(static_cast<size_t>(n));
    for (int g = 0; g < grid; ++g) {
        const double alpha = static_cast<double>(g) / grid;
        double lo = INFINITY, hi = 0;
        for (int64_t j = 0; j < n; ++j) {
            s[static_cast<size_t>(j)] = static_cast<float>(std::pow(static_cast<double>(rms[static_cast<size_t>(j)]), alpha));
            lo = std::min(lo, static_cast<double>(s[static_cast<size_t>(j)]));
            hi = std::max(hi, static_cast<double>(s[static_cast<size_t>(j)]));
        }
        // Centre the scales (geometric middle of their range at 1) so the scaled weights keep their magnitude.
        const float norm = static_cast<float>(1.0 / std::sqrt(lo * hi));
        for (int64_t j = 0; j < n; ++j) {
            s[static_cast<size_t>(j)] = g == 0 ? 1.0f : s[static_cast<size_t>(j)] * norm;
            imp_s[static_cast<size_t>(j)] = imp[static_cast<size_t>(j)] / (s[static_cast<size_t>(j)] * s[static_cast<size_t>(j)]);
        }
        double err = 0;
        for (const AwqLinear& l : group) {
            // Every stride-th row (at most kMaxRows): the error of a row does not depend on the others, and α is one
            // number per group, so a sample ranks the grid as the whole matrix does at a fraction of the cost.
            const int64_t stride = (l.n_out + kMaxRows - 1) / kMaxRows, rows = (l.n_out + stride - 1) / stride;
            std::vector<float> ws(static_cast<size_t>(rows * n));
            for (int64_t r = 0; r < rows; ++r)
                for (int64_t j = 0; j < n; ++j) ws[static_cast<size_t>(r * n + j)] = l.weight[r * stride * n + j] * s[static_cast<size_t>(j)];
            std::vector<float> q = quantize_dequantize(l.type, ws.data(), rows, n, imp_s.data());
            // E = W − Q(W·S)·S⁻¹
            for (int64_t r = 0; r < rows; ++r)
                for (int64_t j = 0; j < n; ++j) {
                    const size_t i = static_cast<size_t>(r * n + j);
                    q[i] = l.weight[r * stride * n + j] - q[i] / s[static_cast<size_t>(j)];
                }
            err += output_error(H, q.data(), rows) * static_cast<double>(stride);
        }
        if (g == 0) best.error_unscaled = err;
        if (best.error < 0 || err < best.error) {
            best.error = err;
            best.alpha = alpha;
            best.scales = s;
        }
    }
    return best;
}

}  // namespace cq::quant
