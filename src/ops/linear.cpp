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
constexpr int64_t kTileRows = 64;             // output rows widened per GEMM call for non-f32 weights
constexpr int64_t kMinColumnsPerThread = 64;  // smaller slices cost more in wake-ups than they save
}

void linear(const Linear& layer, const float* x, int64_t T, float* y) {
    const KernelTable& k = kernel_table();
    const Tensor& w = layer.weight;
    const int64_t n_in = layer.n_in(), n_out = layer.n_out();
    ThreadPool& pool = ThreadPool::global();
    if (w.dtype() == DType::F32) {
        const float* wp = static_cast<const float*>(w.data());
        // Output columns are split across the pool; each slice is one single-threaded kernel call.
        pool.parallel_for(
            n_out,
            [&](int64_t c0, int64_t c1) {
                if (layer.transposed) k.gemm_f32_nn.fn(T, c1 - c0, n_in, x, n_in, wp + c0, n_out, y + c0, n_out);
                else if (T == 1) k.gemv_f32.fn(c1 - c0, n_in, wp + c0 * n_in, n_in, x, y + c0);
                else k.gemm_f32.fn(T, c1 - c0, n_in, x, n_in, wp + c0 * n_in, n_in, y + c0, n_out);
            },
            kMinColumnsPerThread);
    } else {
        const auto& traits = dtype_traits(w.dtype());
        if (!traits.to_float || traits.is_quantized || layer.transposed)
            throw Unsupported("[linear] " + layer.name + ": weights of type " + std::string(traits.name) +
                              (layer.transposed ? " stored [in, out]" : "") + " are not supported yet");
        const auto* base = static_cast<const uint8_t*>(w.data());
        const size_t row_bytes = static_cast<size_t>(n_in) * traits.bytes_per_block;
        const int64_t n_tiles = (n_out + kTileRows - 1) / kTileRows;
        pool.parallel_for(n_tiles, [&](int64_t t0, int64_t t1) {
            thread_local std::vector<float> tile;
            tile.resize(static_cast<size_t>(kTileRows * n_in));
            for (int64_t t = t0; t < t1; ++t) {
                const int64_t r0 = t * kTileRows, rows = std::min(kTileRows, n_out - r0);
                traits.to_float(base + static_cast<size_t>(r0) * row_bytes, tile.data(), rows * n_in);
                if (T == 1) k.gemv_f32.fn(rows, n_in, tile.data(), n_in, x, y + r0);
                else k.gemm_f32.fn(T, rows, n_in, x, n_in, tile.data(), n_in, y + r0, n_out);
            }
        });
    }
    if (layer.bias) {
        const float* b = static_cast<const float*>(layer.bias->data());
        for (int64_t t = 0; t < T; ++t) add(y + t * n_out, b, n_out);
    }
}

}  // namespace cq::ops
