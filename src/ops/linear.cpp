// Linear layers through the kernel table's GEMMs. f32 weights are used in place (from the mmap);
// f16/bf16 weights are widened tile by tile into a per-thread scratch buffer, never as a whole.
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <string>

#include "cq/error.h"
#include "cq/kernels.h"
#include "cq/thread_pool.h"
#include "formats/formats.h"
#include "ops/ops.h"

namespace cq::ops {

namespace {
constexpr int64_t kTileRows = 64;             // output rows widened per GEMM call for non-f32 weights
constexpr int64_t kMinColumnsPerThread = 64;  // smaller slices cost more in wake-ups than they save
}

// Quantized weights: the activations are quantized once to the format's partner type (Q8_0, Q8_1
// or Q8_K), then each thread runs the format's GEMM kernel over its slice of output rows.
void linear_quantized(const Linear& layer, const float* x, int64_t T, float* y) {
    const Tensor& w = layer.weight;
    const QuantKernels& q = kernel_table().quant_kernels(w.dtype());
    const int64_t n_in = layer.n_in(), n_out = layer.n_out();
    if (!q.gemm.fn || !q.quantize_act.fn)
        throw Unsupported("[linear] " + layer.name + ": no matrix-product kernel for " + std::string(dtype_name(w.dtype())) + " weights yet");
    const size_t act_row = static_cast<size_t>(*dtype_bytes(q.act_type, static_cast<uint64_t>(n_in)));
    thread_local std::vector<uint8_t> xq;
    xq.resize(act_row * static_cast<size_t>(T));
    const auto quantize = q.quantize_act.fn;
    ThreadPool& pool = ThreadPool::global();
    uint8_t* xq_data = xq.data();
    pool.parallel_for(T, [&](int64_t t0, int64_t t1) {
        for (int64_t t = t0; t < t1; ++t) quantize(x + t * n_in, xq_data + static_cast<size_t>(t) * act_row, n_in);
    });
    const bool packed = layer.x8 && q.runs_packed();
    const auto gemm = q.kernel_for(T, packed).fn;
    const auto* wp = packed ? layer.x8->data() : static_cast<const uint8_t*>(w.data());
    const size_t w_row = packed ? q.packed_row_bytes(n_in)  // a packed row's share of its group
                                : static_cast<size_t>(*dtype_bytes(w.dtype(), static_cast<uint64_t>(n_in)));
    // Slices are whole row groups, so no thread's slice ends in a kernel's short row tile.
    const int64_t group = q.row_group, n_groups = (n_out + group - 1) / group;
    pool.parallel_for(
        n_groups,
        [&](int64_t g0, int64_t g1) {
            const int64_t r0 = g0 * group, r1 = std::min(n_out, g1 * group);
            gemm(T, r1 - r0, n_in, xq_data, act_row, wp + static_cast<size_t>(r0) * w_row, w_row, y + r0, n_out);
        },
        std::max<int64_t>(1, kMinColumnsPerThread / group));
}

void pack_for_kernels(Linear& layer) {
    if (layer.int8) return;  // runs its own packed int8 form
    const Tensor& w = layer.weight;
    const QuantKernels& q = kernel_table().quant_kernels(w.dtype());
    if (!q.runs_packed() || layer.transposed || layer.x8) return;
    const int64_t n = layer.n_out(), n_in = layer.n_in();
    auto packed = std::make_shared<std::vector<uint8_t>>(q.packed_bytes(n, n_in));
    q.pack_rows(w.data(), static_cast<size_t>(*dtype_bytes(w.dtype(), static_cast<uint64_t>(n_in))), n, n_in, packed->data());
    layer.x8 = std::move(packed);
    // The kernels now read only the packed copy: hand the mapped file pages back, so the model is not
    // resident twice (llama.cpp's repacked buffers replace the mapping the same way). MADV_PAGEOUT drops
    // clean file pages and never loses data (anonymous memory stays or goes to swap); `weight` stays
    // valid and pages back in if read again (requantizing, the tied embedding's lookups).
    if (!w.is_owned()) {
        const auto page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
        const auto begin = (reinterpret_cast<uintptr_t>(w.data()) + page - 1) / page * page;
        const auto end = (reinterpret_cast<uintptr_t>(w.data()) + w.nbytes()) / page * page;
        if (end > begin) madvise(reinterpret_cast<void*>(begin), end - begin, MADV_PAGEOUT);  // advice only: errors are harmless
    }
}

void linear(const Linear& layer, const float* x, int64_t T, float* y, const int32_t* row_mask) {
    if (layer.int8) return linear_int8(layer, x, T, y, row_mask);  // notifies the observers itself
    const KernelTable& k = kernel_table();
    const Tensor& w = layer.weight;
    const int64_t n_in = layer.n_in(), n_out = layer.n_out();
    ThreadPool& pool = ThreadPool::global();
    if (w.dtype() == DType::F32) {
        const float* wp = static_cast<const float*>(w.data());
        // Output columns are split across the pool in whole blocks of kMinColumnsPerThread, so every slice starts at a
        // multiple of 64 for any thread count; each slice is one single-threaded kernel call. The float GEMMs give
        // the same bits for any such split (the OpenBLAS wrappers by going through 64-column blocks themselves).
        const int64_t n_blocks = (n_out + kMinColumnsPerThread - 1) / kMinColumnsPerThread;
        pool.parallel_for(n_blocks, [&](int64_t b0, int64_t b1) {
            const int64_t c0 = b0 * kMinColumnsPerThread, c1 = std::min(n_out, b1 * kMinColumnsPerThread);
            if (layer.transposed) k.gemm_f32_nn.fn(T, c1 - c0, n_in, x, n_in, wp + c0, n_out, y + c0, n_out);
            else if (T == 1) k.gemv_f32.fn(c1 - c0, n_in, wp + c0 * n_in, n_in, x, y + c0);
            else k.gemm_f32.fn(T, c1 - c0, n_in, x, n_in, wp + c0 * n_in, n_in, y + c0, n_out);
        });
    } else if (dtype_traits(w.dtype()).is_quantized && !layer.transposed) {
        linear_quantized(layer, x, T, y);
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
    notify_observers(layer, x, y, T, row_mask);
}

}  // namespace cq::ops
