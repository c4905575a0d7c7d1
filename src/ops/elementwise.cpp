// Norms, activations, residual adds, RoPE and embedding lookup: the cheap per-element ops.
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "cq/error.h"
#include "cq/kernels.h"
#include "cq/thread_pool.h"
#include "ops/ops.h"

namespace cq::ops {

namespace {
// Row sums in 16 float lanes (fixed order, so the same on every ISA; the compiler vectorises the lanes)
// folded in double: exact enough for norms of rows up to ~10^5 without a double pass per element.
constexpr int kLanes = 16;
template <typename F>
double lane_sum(int64_t D, F term) {
    float acc[kLanes] = {};
    int64_t i = 0;
    for (; i + kLanes <= D; i += kLanes)
        for (int j = 0; j < kLanes; ++j) acc[j] += term(i + j);
    double s = 0;
    for (; i < D; ++i) s += term(i);
    for (int j = 0; j < kLanes; ++j) s += acc[j];
    return s;
}

// Prompt-sized batches are split across the pool (these ops ran on one thread while the other waited:
// ~4 % of a 512-token prompt at 2 threads); a decode step's rows stay on the caller, below a wake-up's
// worth of work. Every row or element is computed as before, so results do not depend on the split.
constexpr int64_t kMinRowsPerThread = 16;
constexpr int64_t kMinElementsPerThread = 1 << 15;

template <typename F>
void for_rows(int64_t T, F row) {
    ThreadPool::global().parallel_for(
        T, [&](int64_t t0, int64_t t1) {
            for (int64_t t = t0; t < t1; ++t) row(t);
        },
        kMinRowsPerThread);
}
}  // namespace

void rms_norm(const float* x, int64_t T, int64_t D, const Tensor& w, float eps, float* y) {
    const float* g = static_cast<const float*>(w.data());
    for_rows(T, [&](int64_t t) {
        const float* xr = x + t * D;
        float* yr = y + t * D;
        const double ss = lane_sum(D, [xr](int64_t i) { return xr[i] * xr[i]; });
        const float inv = static_cast<float>(1.0 / std::sqrt(ss / static_cast<double>(D) + eps));
        for (int64_t i = 0; i < D; ++i) yr[i] = xr[i] * inv * g[i];
    });
}

void layer_norm(const float* x, int64_t T, int64_t D, const Tensor& w, const Tensor* b, float eps, float* y) {
    const float* g = static_cast<const float*>(w.data());
    const float* beta = b ? static_cast<const float*>(b->data()) : nullptr;
    for_rows(T, [&](int64_t t) {
        const float* xr = x + t * D;
        float* yr = y + t * D;
        const float mean = static_cast<float>(lane_sum(D, [xr](int64_t i) { return xr[i]; }) / static_cast<double>(D));
        const double var = lane_sum(D, [xr, mean](int64_t i) { return (xr[i] - mean) * (xr[i] - mean); });
        const float inv = static_cast<float>(1.0 / std::sqrt(var / static_cast<double>(D) + eps));
        if (beta)
            for (int64_t i = 0; i < D; ++i) yr[i] = (xr[i] - mean) * inv * g[i] + beta[i];
        else
            for (int64_t i = 0; i < D; ++i) yr[i] = (xr[i] - mean) * inv * g[i];
    });
}

void rope(float* x, int64_t T, int64_t row_stride, int64_t n_head, int64_t head_dim, int64_t rope_dims, int64_t pos0,
          float theta, float scale, RopePairing pairing) {
    const int64_t half = rope_dims / 2;
    std::vector<double> inv_freq(static_cast<size_t>(half));  // θ^(−2i/d), once per call rather than per token
    for (int64_t i = 0; i < half; ++i)
        inv_freq[i] = std::pow(static_cast<double>(theta), -2.0 * static_cast<double>(i) / static_cast<double>(rope_dims));
    ThreadPool::global().parallel_for(
        T,
        [&](int64_t t0, int64_t t1) {
            std::vector<float> cos_t(static_cast<size_t>(half)), sin_t(static_cast<size_t>(half));
            for (int64_t t = t0; t < t1; ++t) {
                const double pos = static_cast<double>(pos0 + t) / scale;
                for (int64_t i = 0; i < half; ++i) {
                    const double angle = pos * inv_freq[i];
                    cos_t[i] = static_cast<float>(std::cos(angle));
                    sin_t[i] = static_cast<float>(std::sin(angle));
                }
                for (int64_t h = 0; h < n_head; ++h) {
                    float* v = x + t * row_stride + h * head_dim;
                    for (int64_t i = 0; i < half; ++i) {
                        const int64_t a = pairing == RopePairing::adjacent ? 2 * i : i;
                        const int64_t b = pairing == RopePairing::adjacent ? 2 * i + 1 : i + half;
                        const float x0 = v[a], x1 = v[b];
                        v[a] = x0 * cos_t[i] - x1 * sin_t[i];
                        v[b] = x0 * sin_t[i] + x1 * cos_t[i];
                    }
                }
            }
        },
        kMinRowsPerThread);
}

void silu_mul(float* gate, const float* up, int64_t n) {
    const auto kernel = kernel_table().silu_mul_f32.fn;
    ThreadPool::global().parallel_for(n, [&](int64_t i0, int64_t i1) { kernel(gate + i0, up + i0, i1 - i0); }, kMinElementsPerThread);
}

void gelu_tanh(float* x, int64_t n) {
    constexpr float k = 0.7978845608028654f;  // sqrt(2/π)
    for (int64_t i = 0; i < n; ++i) {
        const float v = x[i];
        x[i] = 0.5f * v * (1.0f + std::tanh(k * (v + 0.044715f * v * v * v)));
    }
}

void add(float* y, const float* x, int64_t n) {
    ThreadPool::global().parallel_for(
        n,
        [&](int64_t i0, int64_t i1) {
            for (int64_t i = i0; i < i1; ++i) y[i] += x[i];
        },
        kMinElementsPerThread);
}

void embedding(const Tensor& table, std::span<const int32_t> ids, float* y) {
    const int64_t V = table.dim(0), D = table.dim(1);
    const auto& traits = dtype_traits(table.dtype());
    if (!traits.to_float)
        throw Unsupported("[embedding] token embeddings of type " + std::string(traits.name) + " are not supported yet");
    const size_t row_bytes = static_cast<size_t>(*dtype_bytes(table.dtype(), static_cast<uint64_t>(D)));
    for (size_t t = 0; t < ids.size(); ++t) {
        if (ids[t] < 0 || ids[t] >= V)
            throw InvalidArgument("[embedding] token id " + std::to_string(ids[t]) + " is outside the vocabulary [0, " +
                                  std::to_string(V) + ")");
        traits.to_float(static_cast<const uint8_t*>(table.data()) + static_cast<size_t>(ids[t]) * row_bytes,
                        y + static_cast<int64_t>(t) * D, D);
    }
}

void log_softmax(float* logits, int64_t n) {
    float mx = logits[0];
    for (int64_t i = 1; i < n; ++i) mx = std::max(mx, logits[i]);
    double sum = 0;
    for (int64_t i = 0; i < n; ++i) sum += std::exp(static_cast<double>(logits[i] - mx));
    const float lse = mx + static_cast<float>(std::log(sum));
    for (int64_t i = 0; i < n; ++i) logits[i] -= lse;
}

}  // namespace cq::ops
