// Linear layers through the kernel table's GEMMs. f32 weights are used in place (from the mmap);
// f16/bf16 weights are widened tile by tile into a per-thread scratch buffer, never as a whole.
#include <algorithm>
#include <string>

#include "cq/error.h"
#include "cq/kernels.h"
#include "cq/thread_pool.h"
#include "ops/ops.h"

namespace cq::ops {

namespace {
constexpr int64_t kTileRows = 64;  // output rows widened per GEMM call for non-f32 weights
}

void linear(const Linear& layer, const float* x, int64_t T, float* y) {
    const KernelTable& k = kernel_table();
    const Tensor& w = layer.weight;
    const int64_t n_in = layer.n_in(), n_out = layer.n_out();
    if (w.dtype() == DType::F32 && T == 1 && !layer.transposed) {
        // Decoding: a memory-bound matrix-vector product, rows split across the pool.
        const float* wp = static_cast<const float*>(w.data());
        ThreadPool::global().parallel_for(
            n_out, [&](int64_t r0, int64_t r1) { k.gemv_f32.fn(r1 - r0, n_in, wp + r0 * n_in, n_in, x, y + r0); }, 64);
    } else if (w.dtype() == DType::F32) {
        const float* wp = static_cast<const float*>(w.data());
        if (layer.transposed) k.gemm_f32_nn.fn(T, n_out, n_in, x, n_in, wp, n_out, y, n_out);
        else k.gemm_f32.fn(T, n_out, n_in, x, n_in, wp, n_in, y, n_out);
    } else {
        const auto& traits = dtype_traits(w.dtype());
        if (!traits.to_float || traits.is_quantized || layer.transposed)
            throw Unsupported("[linear] " + layer.name + ": weights of type " + std::string(traits.name) +
                              (layer.transposed ? " stored [in, out]" : "") + " are not supported yet");
        thread_local std::vector<float> tile;
        tile.resize(static_cast<size_t>(kTileRows * n_in));
        const auto* base = static_cast<const uint8_t*>(w.data());
        const size_t row_bytes = static_cast<size_t>(n_in) * traits.bytes_per_block;
        for (int64_t r0 = 0; r0 < n_out; r0 += kTileRows) {
            const int64_t rows = std::min(kTileRows, n_out - r0);
            traits.to_float(base + static_cast<size_t>(r0) * row_bytes, tile.data(), rows * n_in);
            k.gemm_f32.fn(T, rows, n_in, x, n_in, tile.data(), n_in, y + r0, n_out);
        }
    }
    if (layer.bias) {
        const float* b = static_cast<const float*>(layer.bias->data());
        for (int64_t t = 0; t < T; ++t) add(y + t * n_out, b, n_out);
    }
}

}  // namespace cq::ops
