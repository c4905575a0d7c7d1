// The kernel table: one function pointer per op, filled once from the scalar reference kernels
// upwards along the ISA ladder (or up to the level CQ_ISA forces). Kernels never throw or allocate.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "cq/cpu_features.h"

namespace cq {

// x: [n] f16 bits → y: [n] f32 (exact).
using ConvertF16ToF32Fn = void (*)(const uint16_t* x, float* y, int64_t n);
// x: [n] f32 → y: [n] f16 bits, round to nearest even; NaN stays NaN (quiet), overflow → inf.
using ConvertF32ToF16Fn = void (*)(const float* x, uint16_t* y, int64_t n);
// x: [n] bf16 bits → y: [n] f32 (exact).
using ConvertBF16ToF32Fn = void (*)(const uint16_t* x, float* y, int64_t n);
// x: [n] f32 → y: [n] bf16 bits, round to nearest even; NaN stays NaN (quiet).
using ConvertF32ToBF16Fn = void (*)(const float* x, uint16_t* y, int64_t n);
// Σ a[i]·b[i] over n u8×s8 pairs, exact in int32 (n ≤ 2^16 so it cannot overflow).
using DotU8S8Fn = int32_t (*)(const uint8_t* a, const int8_t* b, int64_t n);
// c: [m, n] = a: [m, k] · bᵀ, b: [n, k] (weights stored [out, in]); row strides lda, ldb, ldc.
using GemmF32Fn = void (*)(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b,
                           int64_t ldb, float* c, int64_t ldc);

// c: [m, n] = a: [m, k] · b: [k, n]; row strides lda, ldb, ldc.
using GemmF32NNFn = void (*)(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b,
                             int64_t ldb, float* c, int64_t ldc);

// y: [n] = w: [n, k] (row stride ldw) · x: [k]. The caller splits rows across threads.
using GemvF32Fn = void (*)(int64_t n, int64_t k, const float* w, int64_t ldw, const float* x, float* y);

// Quantized matrix product against activations quantized on the fly:
// c: [m, n] (row stride ldc) with c[t][i] = Σ_k dequant(w row i)[k] · dequant(act row t)[k].
// act: m rows of `act_row_bytes` in the weight format's activation type (Q8_0, Q8_1 or Q8_K);
// w: n rows of `w_row_bytes` in the weight format; k is a whole number of blocks.
using GemmQuantFn = void (*)(int64_t m, int64_t n, int64_t k, const void* act, size_t act_row_bytes, const void* w,
                             size_t w_row_bytes, float* c, int64_t ldc);
// x: [k] f32 → y: k/block activation blocks (Q8_0, Q8_1 or Q8_K), k a whole number of blocks.
using QuantizeRowFn = void (*)(const float* x, void* y, int64_t k);

/// Slots per ggml type id in the quantized-kernel arrays.
inline constexpr size_t kMaxGgmlTypes = 40;

template <typename Fn>
struct Kernel {
    Fn fn = nullptr;
    const char* name = "";  // e.g. "convert_f16_f32__avx512"
    IsaLevel isa = IsaLevel::ref;
};

struct KernelTable {
    IsaLevel level = IsaLevel::ref;  // the rung the table was filled up to
    Kernel<ConvertF16ToF32Fn> convert_f16_f32;
    Kernel<ConvertF32ToF16Fn> convert_f32_f16;
    Kernel<ConvertBF16ToF32Fn> convert_bf16_f32;
    Kernel<ConvertF32ToBF16Fn> convert_f32_bf16;
    Kernel<DotU8S8Fn> dot_u8_s8;
    Kernel<GemmF32Fn> gemm_f32;
    Kernel<GemmF32NNFn> gemm_f32_nn;
    Kernel<GemvF32Fn> gemv_f32;
    // Indexed by the ggml type id of the weights / of the activation type; fn is null where absent.
    std::array<Kernel<GemmQuantFn>, kMaxGgmlTypes> gemm_quant{};
    std::array<Kernel<QuantizeRowFn>, kMaxGgmlTypes> quantize_row{};
};

/// The table for this process: the detected level, or the one CQ_ISA names (InvalidArgument if
/// CQ_ISA is unknown or above what the CPU supports).
const KernelTable& kernel_table();
/// A table filled up to `level` (must be supported by this CPU); used by tests to reach every variant.
KernelTable make_kernel_table(IsaLevel level);

struct KernelListing {
    std::string op;
    std::string kernel;
    std::string isa;
};
/// op → chosen kernel, for `cq info --kernels`.
std::vector<KernelListing> list_kernels(const KernelTable& table);

}  // namespace cq
