// Declarations of every compiled kernel variant. Names follow <op>_<types>__<isa>; each ISA's
// definitions live in that ISA's object library (its own compile flags) and are only called
// through the kernel table after the CPU was checked.
#pragma once

#include <cstddef>
#include <cstdint>

namespace cq::kernels {

#define CQ_DECLARE_CONVERT_KERNELS(isa)                                                   \
    void convert_f16_f32__##isa(const uint16_t* x, float* y, int64_t n);                  \
    void convert_f32_f16__##isa(const float* x, uint16_t* y, int64_t n);                  \
    void convert_bf16_f32__##isa(const uint16_t* x, float* y, int64_t n);                 \
    void convert_f32_bf16__##isa(const float* x, uint16_t* y, int64_t n);

CQ_DECLARE_CONVERT_KERNELS(ref)
CQ_DECLARE_CONVERT_KERNELS(avx2)
CQ_DECLARE_CONVERT_KERNELS(avx512)
CQ_DECLARE_CONVERT_KERNELS(neon)
#undef CQ_DECLARE_CONVERT_KERNELS

int32_t dot_u8_s8__ref(const uint8_t* a, const int8_t* b, int64_t n);
int32_t dot_u8_s8__avx2(const uint8_t* a, const int8_t* b, int64_t n);
int32_t dot_u8_s8__avx512vnni(const uint8_t* a, const int8_t* b, int64_t n);
int32_t dot_u8_s8__neon(const uint8_t* a, const int8_t* b, int64_t n);

void gemm_f32__ref(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b, int64_t ldb,
                   float* c, int64_t ldc);
void gemm_f32__openblas(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b,
                        int64_t ldb, float* c, int64_t ldc);

void gemm_f32__dnnl(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b, int64_t ldb,
                    float* c, int64_t ldc);
void gemm_f32_nn__dnnl(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b, int64_t ldb,
                       float* c, int64_t ldc);

void gemm_f32_nn__ref(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b, int64_t ldb,
                      float* c, int64_t ldc);
void gemm_f32_nn__openblas(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b,
                           int64_t ldb, float* c, int64_t ldc);

// BF16 products with FP32 accumulation (GemmBF16Fn / GemmBF16NNFn); __dnnl: oneDNN's bf16 matmul (brgemm on
// vdpbf16ps), only called where the CPU has AVX-512 BF16.
void gemm_bf16__ref(int64_t m, int64_t n, int64_t k, const uint16_t* a, int64_t lda, const uint16_t* b, int64_t ldb,
                    float* c, int64_t ldc);
void gemm_bf16_nn__ref(int64_t m, int64_t n, int64_t k, const uint16_t* a, int64_t lda, const uint16_t* b, int64_t ldb,
                       float* c, int64_t ldc);
void gemm_bf16_tn__ref(int64_t m, int64_t n, int64_t k, const uint16_t* a, int64_t lda, const uint16_t* b, int64_t ldb,
                       float* c, int64_t ldc);
void gemm_bf16_tn__dnnl(int64_t m, int64_t n, int64_t k, const uint16_t* a, int64_t lda, const uint16_t* b,
                        int64_t ldb, float* c, int64_t ldc);
void gemm_bf16__dnnl(int64_t m, int64_t n, int64_t k, const uint16_t* a, int64_t lda, const uint16_t* b, int64_t ldb,
                     float* c, int64_t ldc);
void gemm_bf16_nn__dnnl(int64_t m, int64_t n, int64_t k, const uint16_t* a, int64_t lda, const uint16_t* b,
                        int64_t ldb, float* c, int64_t ldc);

void gemv_f32__ref(int64_t n, int64_t k, const float* w, int64_t ldw, const float* x, float* y);
void gemv_f32__avx2(int64_t n, int64_t k, const float* w, int64_t ldw, const float* x, float* y);
void gemv_f32__avx512(int64_t n, int64_t k, const float* w, int64_t ldw, const float* x, float* y);

// Quantized matrix products (GemmQuantFn: c[t][i] = act row t · weight row i) and the activation
// quantizers (QuantizeRowFn; the reference ones are the formats' codecs, formats/formats.h).
// gemm_<weights>_<activations>__<isa>; <weights>x8: the 8-row packed layout (formats::Block*x8).
#define CQ_DECLARE_GEMM_QUANT(wt, at, isa)                                                                  \
    void gemm_##wt##_##at##__##isa(int64_t m, int64_t n, int64_t k, const void* act, size_t act_row_bytes, \
                                   const void* w, size_t w_row_bytes, float* c, int64_t ldc);
#define CQ_DECLARE_QUANT_KERNELS(isa)     \
    CQ_DECLARE_GEMM_QUANT(q8_0, q8_0, isa) \
    CQ_DECLARE_GEMM_QUANT(q4_0, q8_0, isa) \
    CQ_DECLARE_GEMM_QUANT(q4_1, q8_1, isa) \
    CQ_DECLARE_GEMM_QUANT(q5_0, q8_0, isa) \
    CQ_DECLARE_GEMM_QUANT(q5_1, q8_1, isa) \
    CQ_DECLARE_GEMM_QUANT(q2_K, q8_K, isa) \
    CQ_DECLARE_GEMM_QUANT(q3_K, q8_K, isa) \
    CQ_DECLARE_GEMM_QUANT(q4_K, q8_K, isa) \
    CQ_DECLARE_GEMM_QUANT(q5_K, q8_K, isa) \
    CQ_DECLARE_GEMM_QUANT(q6_K, q8_K, isa)
#define CQ_DECLARE_PACKED_KERNELS(isa)       \
    CQ_DECLARE_GEMM_QUANT(q4_0x8, q8_0, isa) \
    CQ_DECLARE_GEMM_QUANT(q8_0x8, q8_0, isa) \
    CQ_DECLARE_GEMM_QUANT(q4_Kx8, q8_K, isa)

CQ_DECLARE_QUANT_KERNELS(ref)
CQ_DECLARE_QUANT_KERNELS(avx2)
CQ_DECLARE_QUANT_KERNELS(neon)          // kernels/arm/quant_gemm_arm.h with smull + sadalp
CQ_DECLARE_QUANT_KERNELS(neon_dotprod)  // the same with sdot
CQ_DECLARE_PACKED_KERNELS(ref)
CQ_DECLARE_PACKED_KERNELS(avx2)
CQ_DECLARE_PACKED_KERNELS(avx512vnni)
// AVX-512 VNNI on the file layout: the formats where vpdpbusd/vpdpwssd pay (Q4_K_M = Q4_K + Q6_K).
CQ_DECLARE_GEMM_QUANT(q8_0, q8_0, avx512vnni)
CQ_DECLARE_GEMM_QUANT(q4_0, q8_0, avx512vnni)
CQ_DECLARE_GEMM_QUANT(q4_K, q8_K, avx512vnni)
CQ_DECLARE_GEMM_QUANT(q6_K, q8_K, avx512vnni)
// The non-linear 4-bit formats (IQ4_NL pairs with Q8_0, IQ4_XS with Q8_K; file layout only).
CQ_DECLARE_GEMM_QUANT(iq4_nl, q8_0, ref)
CQ_DECLARE_GEMM_QUANT(iq4_xs, q8_K, ref)
CQ_DECLARE_GEMM_QUANT(iq4_nl, q8_0, avx2)
CQ_DECLARE_GEMM_QUANT(iq4_xs, q8_K, avx2)
void quantize_row_q8_0__avx2(const float* x, void* y, int64_t k);
void quantize_row_q8_1__avx2(const float* x, void* y, int64_t k);
void quantize_row_q8_K__avx2(const float* x, void* y, int64_t k);
#undef CQ_DECLARE_PACKED_KERNELS
#undef CQ_DECLARE_QUANT_KERNELS
#undef CQ_DECLARE_GEMM_QUANT

// INT8 W8A8 (QuantizeRowsU8DynamicFn / QuantizeRowsU8StaticFn / GemmU8S8Fn; layout in cq/int8_gemm.h).
// gemm_u7s8: 7-bit activations (GemmU8S8Fn with every a ≤ 127): the reference and VNNI forward to their
// u8s8 kernels (exact for them already; vpdpbusd never saturates); AVX2 gets a vpmaddubsw kernel.
#define CQ_DECLARE_GEMM_U8(name, isa)                                                                           \
    void name##_f32__##isa(int64_t m, int64_t n, int64_t k, const uint8_t* a, int64_t lda, const float* a_scale, \
                           const int32_t* a_zero_point, int64_t a_param_stride, const int8_t* packed_w,         \
                           const int32_t* w_sums, const float* w_scale, const float* bias, float* c, int64_t ldc);
#define CQ_DECLARE_INT8_KERNELS(isa)                                                                          \
    void quantize_rows_u8_dynamic__##isa(const float* x, int64_t m, int64_t k, int64_t ldx, int32_t qmax,     \
                                         uint8_t* q, int64_t ldq, float* scale, int32_t* zero_point);         \
    void quantize_rows_u8_static__##isa(const float* x, int64_t m, int64_t k, int64_t ldx, float scale,       \
                                        int32_t zero_point, int32_t qmax, uint8_t* q, int64_t ldq);           \
    CQ_DECLARE_GEMM_U8(gemm_u8s8, isa)                                                                        \
    CQ_DECLARE_GEMM_U8(gemm_u7s8, isa)
CQ_DECLARE_INT8_KERNELS(ref)
CQ_DECLARE_INT8_KERNELS(avx2)
CQ_DECLARE_INT8_KERNELS(avx512vnni)
// ARM64 (kernels/arm/): widening multiplies, sdot on a − 128, usmmla (+ usdot for an odd token); exact for any u8,
// so the same kernel serves gemm_u7s8. The activation quantizers stay the reference ones on ARM.
CQ_DECLARE_GEMM_U8(gemm_u8s8, neon)
CQ_DECLARE_GEMM_U8(gemm_u8s8, neon_dotprod)
CQ_DECLARE_GEMM_U8(gemm_u8s8, neon_i8mm)
#undef CQ_DECLARE_INT8_KERNELS
#undef CQ_DECLARE_GEMM_U8

// Encoder activations (GeluF32Fn / SoftmaxF32Fn); the AVX2 kernels follow the references' per-element
// operation sequence (erf_rational_scalar, exp_nonpositive_scalar).
void gelu_erf_f32__ref(const float* x, float* y, int64_t n);
void gelu_erf_f32__avx2(const float* x, float* y, int64_t n);
void softmax_f32__ref(float* x, int64_t n, float scale);
// AttentionF32Fn (cq/kernels.h): scores and softmax exps the reference's per-element sequence, keys in 16-lane rows.
void attention_f32__ref(int64_t seq, int64_t head_dim, const float* q, const float* k, const float* v, int64_t ld,
                        const int32_t* key_mask, float scale, float* out, int64_t ldo, float* scratch);
// AttentionU8S8Fn (cq/kernels.h): the reference's helpers with each rung's u8·s8 GEMM (the AVX2 one on the
// reference's quantizers and packing), the VNNI one vectorized throughout.
#define CQ_DECLARE_ATTENTION_U8S8(isa)                                                                                          \
    void attention_u8s8__##isa(int64_t seq, int64_t head_dim, const float* q, const float* k, const float* v, int64_t ld, \
                               const int32_t* key_mask, float scale, float* out, int64_t ldo, uint8_t* scratch);
CQ_DECLARE_ATTENTION_U8S8(ref)
CQ_DECLARE_ATTENTION_U8S8(avx2)
CQ_DECLARE_ATTENTION_U8S8(avx512vnni)
#undef CQ_DECLARE_ATTENTION_U8S8
void attention_f32__avx512(int64_t seq, int64_t head_dim, const float* q, const float* k, const float* v, int64_t ld,
                           const int32_t* key_mask, float scale, float* out, int64_t ldo, float* scratch);
// DepthwiseConvF32Fn (cq/kernels.h): one NHWC image, output rows [oy0, oy1).
#define CQ_DECLARE_DEPTHWISE_CONV(isa)                                                                                        \
    void depthwise_conv_f32__##isa(const float* x, int64_t H, int64_t W, int64_t C, const float* w, int64_t k, int64_t stride, \
                                   int64_t pad_top, int64_t pad_left, const float* bias, float* y, int64_t OW, int64_t oy0, int64_t oy1);
CQ_DECLARE_DEPTHWISE_CONV(ref)
CQ_DECLARE_DEPTHWISE_CONV(avx2)
#undef CQ_DECLARE_DEPTHWISE_CONV

void silu_mul_f32__ref(float* gate, const float* up, int64_t n);
void silu_mul_f32__avx2(float* gate, const float* up, int64_t n);
void softmax_f32__avx2(float* x, int64_t n, float scale);
void gelu_erf_f32__neon(const float* x, float* y, int64_t n);
void silu_mul_f32__neon(float* gate, const float* up, int64_t n);
void softmax_f32__neon(float* x, int64_t n, float scale);
float erf_rational_scalar(float x);      // |error| ≤ 3.4e-7 against erf; ±1 beyond |x| = 4
float exp_nonpositive_scalar(float x);  // x ≤ 0; 0 below −87

// Scalar single-value conversions shared by the reference kernels and the tails of vector kernels.
float f16_to_f32_scalar(uint16_t h);
uint16_t f32_to_f16_scalar(float f);
float bf16_to_f32_scalar(uint16_t h);
uint16_t f32_to_bf16_scalar(float f);

/// The IQ4 GEMM entry points of one rung over that rung's `gemm<Block, ActBlock, block_size, dot>` template.
#define CQ_DEFINE_IQ4_GEMMS(ISA)                                                                                              \
    void gemm_iq4_nl_q8_0__##ISA(int64_t m, int64_t n, int64_t k, const void* act, size_t arb, const void* w, size_t wrb, \
                                 float* c, int64_t ldc) {                                                                 \
        gemm<BlockIQ4_NL, BlockQ8_0, kQK, dot_iq4_nl>(m, n, k, act, arb, w, wrb, c, ldc);                                \
    }                                                                                                                     \
    void gemm_iq4_xs_q8_K__##ISA(int64_t m, int64_t n, int64_t k, const void* act, size_t arb, const void* w, size_t wrb, \
                                 float* c, int64_t ldc) {                                                                 \
        gemm<BlockIQ4_XS, BlockQ8_K, kQK_K, dot_iq4_xs>(m, n, k, act, arb, w, wrb, c, ldc);                              \
    }

}  // namespace cq::kernels
