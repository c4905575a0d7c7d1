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
#include "cq/dtype.h"

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

// BF16 matrix products with FP32 accumulation (mixed-precision training): a and b hold bf16 bits, c is f32.
// c: [m, n] = a: [m, k] · bᵀ, b: [n, k]; row strides lda, ldb, ldc (in elements).
using GemmBF16Fn = void (*)(int64_t m, int64_t n, int64_t k, const uint16_t* a, int64_t lda, const uint16_t* b,
                            int64_t ldb, float* c, int64_t ldc);
// c: [m, n] = a: [m, k] · b: [k, n], bf16 in, f32 out; row strides lda, ldb, ldc.
using GemmBF16NNFn = void (*)(int64_t m, int64_t n, int64_t k, const uint16_t* a, int64_t lda, const uint16_t* b,
                              int64_t ldb, float* c, int64_t ldc);
// c: [m, n] = aᵀ · b, a: [k, m], b: [k, n] (a weight gradient dW = dYᵀ·X without transposing dY); row strides lda, ldb, ldc.
using GemmBF16TNFn = void (*)(int64_t m, int64_t n, int64_t k, const uint16_t* a, int64_t lda, const uint16_t* b,
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

// INT8 W8A8 (see cq/int8_gemm.h for the packed weight layout and the quantization rule).
// x: [m, k] f32 (row stride ldx) → q: [m, round_up(k, 4)] u8 in [0, qmax] (row stride ldq), each row with
// its own scale / zero point (written to scale[t], zero_point[t]); the padding bytes hold the zero point.
using QuantizeRowsU8DynamicFn = void (*)(const float* x, int64_t m, int64_t k, int64_t ldx, int32_t qmax, uint8_t* q,
                                         int64_t ldq, float* scale, int32_t* zero_point);
// x: [m, k] f32 (row stride ldx) → q: [m, round_up(k, 4)] u8 in [0, qmax] (row stride ldq) with one scale /
// zero point (zero_point ≤ qmax).
using QuantizeRowsU8StaticFn = void (*)(const float* x, int64_t m, int64_t k, int64_t ldx, float scale,
                                        int32_t zero_point, int32_t qmax, uint8_t* q, int64_t ldq);
// c: [m, n] (row stride ldc), c[t][i] = fma(float(Σ_k a[t][k]·w[i][k] − a_zp[t]·w_sums[i]),
// a_scale[t]·w_scale[i], bias[i]) (no fma, just the product, when bias is null). a: [m, k] u8 (row
// stride lda ≥ round_up(k, 4), rows readable up to there); a_scale / a_zero_point indexed t·a_param_stride
// (1: per row, 0: one for all); packed_w: the panels of channels [0, n) (cq/int8_gemm.h); w_sums,
// w_scale, bias: [n]. Exact int32 sums (k ≤ 65536); the caller splits n on multiples of 16.
// gemm_u7s8 has the same signature and result but requires every a[t][k] ≤ 127 (7-bit activations).
using GemmU8S8Fn = void (*)(int64_t m, int64_t n, int64_t k, const uint8_t* a, int64_t lda, const float* a_scale,
                            const int32_t* a_zero_point, int64_t a_param_stride, const int8_t* packed_w,
                            const int32_t* w_sums, const float* w_scale, const float* bias, float* c, int64_t ldc);

// x: [n] → y: [n] = x·Φ(x), the exact (erf) GELU to within 4e-7·max(1, |x|); y may alias x.
using GeluF32Fn = void (*)(const float* x, float* y, int64_t n);
// gate: [n] ← silu(gate)·up = gate·σ(gate)·up (LLaMA's gated FFN), σ within 2e-7 of the exact one.
using SiluMulF32Fn = void (*)(float* gate, const float* up, int64_t n);
// x: [n] ← softmax(scale·x) (scale > 0); −inf entries get 0, at least one entry must be finite.
using SoftmaxF32Fn = void (*)(float* x, int64_t n, float scale);
// One head of one sequence of bidirectional attention, fused: out_i = Σ_j p_ij·v_j with p_i = softmax_j(scale·q_i·k_j)
// over the keys key_mask marks (≠ 0; null or all 0: every key). q, k, v: [seq, head_dim] (row stride ld); out:
// [seq, head_dim] (row stride ldo); scratch: attention_f32_scratch_floats(seq, head_dim) floats. Each score is the
// sequential fma sum over head_dim and each output the sequential fma sum over keys on every rung; only the
// softmax's normalising sum may be reordered.
using AttentionF32Fn = void (*)(int64_t seq, int64_t head_dim, const float* q, const float* k, const float* v, int64_t ld,
                                const int32_t* key_mask, float scale, float* out, int64_t ldo, float* scratch);
/// Scratch floats an AttentionF32Fn needs: the keys transposed, a key bias row and 8 rows of scores, each row
/// padded to 16.
constexpr int64_t attention_f32_scratch_floats(int64_t seq, int64_t head_dim) {
    return (head_dim + 9) * ((seq + 15) / 16 * 16);
}
// One head of one sequence of bidirectional attention in INT8: queries quantized per row to u8 (the dynamic rule of
// QuantizeRowsU8DynamicFn), keys per row and values per channel to s8 (symmetric, scale max|x| / 127), the scores
// q_scale·k_scale·(Σ q·k − q_zero·Σ k) a u8·s8 product, p_j = nearbyint(255·exp(scale·s_j − scale·max s)) (so the
// largest is 255), and out_i = (Σ_j p_ij·v_j)·v_scale / Σ_j p_ij a second u8·s8 product: four times the multiplies
// per instruction of f32, within 2–3 % RMS of exact attention on random heads (the probabilities' 8 bits dominate;
// a model's accuracy: `cq quantize ENCODER --attention int8 --eval DATA`). Arguments as AttentionF32Fn's; scratch:
// attention_u8s8_scratch_bytes(seq, head_dim) bytes, 64-byte aligned. Every rung gives the same bits.
using AttentionU8S8Fn = void (*)(int64_t seq, int64_t head_dim, const float* q, const float* k, const float* v, int64_t ld,
                                 const int32_t* key_mask, float scale, float* out, int64_t ldo, uint8_t* scratch);
/// Scratch bytes an AttentionU8S8Fn needs.
int64_t attention_u8s8_scratch_bytes(int64_t seq, int64_t head_dim);
// Depthwise 2-D convolution of one NHWC image, output rows [oy0, oy1) of y: [OH, OW, C]. x: [H, W, C]; w: [k·k, C]
// (tap (ky, kx) at row ky·k + kx); bias: [C] (null: none). y[oy][ox][c] = bias[c] + Σ w[ky·k+kx][c] ·
// x[oy·stride − pad_top + ky][ox·stride − pad_left + kx][c], taps outside x skipped (zero padding on every side),
// accumulated from the bias in (ky, kx) order with one fused multiply-add per tap, so every rung gives the same bits.
using DepthwiseConvF32Fn = void (*)(const float* x, int64_t H, int64_t W, int64_t C, const float* w, int64_t k, int64_t stride,
                                    int64_t pad_top, int64_t pad_left, const float* bias, float* y, int64_t OW, int64_t oy0, int64_t oy1);

/// Slots per ggml type id in the table's per-type descriptors.
inline constexpr size_t kMaxGgmlTypes = 40;

// rows: [n] rows of a weight type (row stride row_bytes, k a whole number of blocks) → its packed layout.
using PackRowsFn = void (*)(const void* rows, size_t row_bytes, int64_t n, int64_t k, void* out);
// Bytes a PackRowsFn writes for n rows of k elements.
using PackedBytesFn = size_t (*)(int64_t n, int64_t k);

template <typename Fn>
struct Kernel {
    Fn fn = nullptr;
    const char* name = "";  // e.g. "convert_f16_f32__avx512"
    IsaLevel isa = IsaLevel::ref;
    const char* why = "";   // why dispatch runs this rung (the ladder, or a measured rung preference)
};

/// Everything that runs one quantized weight type (ggml's type_traits_cpu, MLAS's quant-GEMM dispatch,
/// XNNPACK's gemm configs): the activation type its products pair with and that type's row quantizer,
/// the GEMM on the file layout (m = n = 1 is the dot product), and the load-time packed layout with its
/// GEMM. For an activation-only type (Q8_1, Q8_K) act_type is itself and only quantize_act is set.
struct QuantKernels {
    DType act_type = DType::F32;        // ggml's vec_dot_type; F32 where the type has no kernels
    Kernel<QuantizeRowFn> quantize_act;  // f32 row → act_type blocks
    Kernel<GemmQuantFn> gemm;           // w: n rows of the file layout
    // The packed layout (formats: 8 rows interleaved, built once at load): w is the packed groups of rows
    // [0, n), w_row_bytes packed_row_bytes(k), so rows i.. start at w + i·w_row_bytes for i a multiple of
    // row_group. Null where the file-layout gemm is the better one (the reference level).
    Kernel<GemmQuantFn> gemm_packed;
    PackRowsFn pack_rows = nullptr;       // null: the type has no packed layout
    PackedBytesFn packed_bytes = nullptr;
    // The same products for one activation row (m = 1: a decode step, which streams the weights once).
    // A rung can be the faster one for prompts and not for decode, so dispatch chooses these apart;
    // the ladder fills them with gemm / gemm_packed.
    Kernel<GemmQuantFn> gemv;
    Kernel<GemmQuantFn> gemv_packed;
    int64_t row_group = 1;  // a call's rows start at a multiple of it: the packed group, the widest row tile
    size_t packed_row_bytes(int64_t k) const { return packed_bytes(row_group, k) / size_t(row_group); }
    bool runs_packed() const { return gemm_packed.fn && pack_rows; }
    /// The kernel for m activation rows on the packed layout or the file layout.
    const Kernel<GemmQuantFn>& kernel_for(int64_t m, bool packed) const {
        return m == 1 ? (packed ? gemv_packed : gemv) : (packed ? gemm_packed : gemm);
    }
};

struct KernelTable {
    IsaLevel level = IsaLevel::ref;  // the rung the table was filled up to
    const char* tuned_for = "";      // the CPU class whose measured rung preferences it applies ("": plain ladder)
    Kernel<ConvertF16ToF32Fn> convert_f16_f32;
    Kernel<ConvertF32ToF16Fn> convert_f32_f16;
    Kernel<ConvertBF16ToF32Fn> convert_bf16_f32;
    Kernel<ConvertF32ToBF16Fn> convert_f32_bf16;
    Kernel<DotU8S8Fn> dot_u8_s8;
    Kernel<GemmF32Fn> gemm_f32;
    Kernel<GemmF32NNFn> gemm_f32_nn;
    Kernel<GemvF32Fn> gemv_f32;
    // Filled above the reference only where the CPU multiplies bf16 natively (AVX-512 BF16 vdpbf16ps);
    // elsewhere training rounds operands to bf16 and runs gemm_f32 / gemm_f32_nn (train_ops.cpp).
    Kernel<GemmBF16Fn> gemm_bf16;
    Kernel<GemmBF16NNFn> gemm_bf16_nn;
    Kernel<GemmBF16TNFn> gemm_bf16_tn;
    // Indexed by ggml type id: the quantized types' descriptors.
    std::array<QuantKernels, kMaxGgmlTypes> quant{};
    const QuantKernels& quant_kernels(DType type) const {
        static const QuantKernels none;
        const auto id = static_cast<size_t>(type);
        return id < kMaxGgmlTypes ? quant[id] : none;
    }
    Kernel<QuantizeRowsU8DynamicFn> quantize_rows_u8_dynamic;
    Kernel<QuantizeRowsU8StaticFn> quantize_rows_u8_static;
    Kernel<GemmU8S8Fn> gemm_u8s8;
    Kernel<GemmU8S8Fn> gemm_u7s8;  // activations ≤ 127 only
    Kernel<GeluF32Fn> gelu_erf_f32;
    Kernel<SoftmaxF32Fn> softmax_f32;
    Kernel<AttentionF32Fn> attention_f32;  // encoders' bidirectional attention, one (sequence, head) per call
    Kernel<AttentionU8S8Fn> attention_u8s8;  // the same in INT8, for W8A8 encoders that choose it
    Kernel<SiluMulF32Fn> silu_mul_f32;
    Kernel<DepthwiseConvF32Fn> depthwise_conv_f32;  // EfficientNet's depthwise convolutions (NHWC)
};

/// The table for this process: the detected level tuned for this CPU class (make_tuned_kernel_table), or
/// the plain ladder up to the level CQ_ISA names (InvalidArgument if CQ_ISA is unknown or above what
/// the CPU supports).
const KernelTable& kernel_table();
/// A table filled up to `level` (must be supported by this CPU), every op on the highest rung that has a
/// kernel for it (the plain ladder); used by tests to reach every variant.
KernelTable make_kernel_table(IsaLevel level);
/// The CPU class rung preferences are measured per ("amd_zen3", "amd_zen4", "amd_zen5", "intel"; "" if
/// unknown), from the CPUID vendor, family and features.
std::string_view dispatch_cpu_class();
/// make_kernel_table(level), then every op that bench_dispatch measured faster on a lower rung on
/// `cpu_class` moved down to that rung (the rung-preference table of src/kernels/dispatch.cpp).
KernelTable make_tuned_kernel_table(IsaLevel level, std::string_view cpu_class);

struct KernelListing {
    std::string op;
    std::string kernel;
    std::string isa;
    std::string why;  // the ladder, CQ_ISA, or the measurement that chose the rung
};
/// op → chosen kernel and why, for `cq info --kernels`.
std::vector<KernelListing> list_kernels(const KernelTable& table);

}  // namespace cq
