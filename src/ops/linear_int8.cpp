// W8A8 Linear layers: activations are quantized to u8 in [0, act_qmax] once per call (per token, with the layer's
// calibrated scale, or with one scale from the whole input's range), then each thread runs the u8×s8 GEMM (gemm_u7s8 for 7-bit activations)
// over whole 16-channel panels of outputs. Layers that read the same input with the same activation
// quantization (an attention block's q, k, v) share the quantized input and one parallel pass.
#include <algorithm>
#include <vector>

#include "cq/int8_gemm.h"
#include "cq/kernels.h"
#include "cq/thread_pool.h"
#include "cq/w8a8.h"
#include "ops/ops.h"

namespace cq::ops {

namespace {
constexpr int64_t kPanel = 16;           // output channels per packed weight panel
constexpr int64_t kMinRowsPerThread = 8;  // quantizing fewer rows per thread costs more than it saves

bool same_input_quantization(const Int8Linear& a, const Int8Linear& b) {
    return a.n_in == b.n_in && a.act_qmax == b.act_qmax && a.activations == b.activations &&
           (a.activations != ActivationQuant::static_per_tensor ||
            (a.input.scale == b.input.scale && a.input.zero_point == b.input.zero_point));
}
}  // namespace

void linear_shared_input(std::span<const Linear* const> layers, const float* x, int64_t T, std::span<float* const> ys,
                         const int32_t* row_mask) {
    const bool shared = std::all_of(layers.begin(), layers.end(), [&](const Linear* l) {
        return l->int8 && layers[0]->int8 && same_input_quantization(*layers[0]->int8, *l->int8);
    });
    if (!shared) {
        for (size_t i = 0; i < layers.size(); ++i) linear(*layers[i], x, T, ys[i], row_mask);
        return;
    }
    const Int8Linear& q = *layers[0]->int8;
    const KernelTable& k = kernel_table();
    const int64_t n_in = q.n_in;
    const int64_t k_padded = (n_in + 3) / 4 * 4;
    thread_local std::vector<uint8_t> xq;
    thread_local std::vector<float> x_scale;
    thread_local std::vector<int32_t> x_zero;
    xq.resize(static_cast<size_t>(T * k_padded));
    ThreadPool& pool = ThreadPool::global();
    uint8_t* xq_data = xq.data();
    int64_t param_stride = 1;
    if (q.activations == ActivationQuant::dynamic_per_token) {
        x_scale.resize(static_cast<size_t>(T));
        x_zero.resize(static_cast<size_t>(T));
        float* s = x_scale.data();
        int32_t* z = x_zero.data();
        pool.parallel_for(
            T, [&](int64_t t0, int64_t t1) {
                k.quantize_rows_u8_dynamic.fn(x + t0 * n_in, t1 - t0, n_in, n_in, q.act_qmax, xq_data + t0 * k_padded, k_padded, s + t0, z + t0);
            },
            kMinRowsPerThread);
    } else {
        calib::U8Params p = q.input;
        if (q.activations == ActivationQuant::dynamic_per_tensor) {
            // the whole input's range, then one scale / zero point as DynamicQuantizeLinear computes them
            const auto [lo, hi] = std::minmax_element(x, x + T * n_in);
            p = dynamic_quantize_linear_params(*lo, *hi);
        }
        x_scale.assign(1, p.scale);
        x_zero.assign(1, p.zero_point);
        param_stride = 0;
        pool.parallel_for(
            T, [&](int64_t t0, int64_t t1) {
                k.quantize_rows_u8_static.fn(x + t0 * n_in, t1 - t0, n_in, n_in, p.scale, p.zero_point, q.act_qmax, xq_data + t0 * k_padded,
                                             k_padded);
            },
            kMinRowsPerThread);
    }
    // The layers' panels laid end to end: one parallel pass over all of them.
    std::vector<int64_t> first_panel(layers.size() + 1, 0);
    for (size_t i = 0; i < layers.size(); ++i)
        first_panel[i + 1] = first_panel[i] + (layers[i]->int8->n_out + kPanel - 1) / kPanel;
    const float* scales = x_scale.data();  // thread_locals: take the caller's buffers before the workers run
    const int32_t* zeros = x_zero.data();
    const GemmU8S8Fn gemm = q.act_qmax <= kU7QMax ? k.gemm_u7s8.fn : k.gemm_u8s8.fn;
    pool.parallel_for(first_panel.back(), [&](int64_t p0, int64_t p1) {
        for (size_t i = 0; i < layers.size(); ++i) {
            const int64_t a = std::max(p0, first_panel[i]) - first_panel[i], b = std::min(p1, first_panel[i + 1]) - first_panel[i];
            if (a >= b) continue;
            const Int8Linear& l = *layers[i]->int8;
            const int64_t c0 = a * kPanel, c1 = std::min(l.n_out, b * kPanel);
            const float* bias = l.bias.empty() ? nullptr : l.bias.data();
            gemm(T, c1 - c0, n_in, xq_data, k_padded, scales, zeros, param_stride, l.packed.get() + c0 * k_padded,
                 l.weight_sums.data() + c0, l.weight_scale.data() + c0, bias ? bias + c0 : nullptr, ys[i] + c0, l.n_out);
        }
    });
    for (size_t i = 0; i < layers.size(); ++i) notify_observers(*layers[i], x, ys[i], T, row_mask);
}

void linear_int8(const Linear& layer, const float* x, int64_t T, float* y, const int32_t* row_mask) {
    const Linear* layers[] = {&layer};
    float* const ys[] = {y};
    linear_shared_input(layers, x, T, ys, row_mask);
}

}  // namespace cq::ops
