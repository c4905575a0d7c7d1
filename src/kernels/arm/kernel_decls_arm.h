// Declarations of ARM64-only kernels with the signatures of kernels/kernel_decls.h (float GEMM / GEMV, the IQ4
// GEMMs). Kept beside the ARM kernels, like packed_arm.h, so x86 builds do not rebuild every kernel and test for
// entry points they never call; dispatch.cpp includes it on AArch64.
#pragma once

#include <cstddef>
#include <cstdint>

namespace cq::kernels {

// Float products on plain NEON (Armv8.0 fmla). gemm_f32 and gemv_f32 sum each output as a dot product: four lane
// chains over k rounded down to 4 (lane l takes p ≡ l mod 4, fused), added (l0 + l1) + (l2 + l3), then the k % 4
// tail fused in order; gemm_f32_nn as one fused chain over p = 0..k−1. The order depends on k only, never on
// the tile an output falls in, so any split of rows or columns gives the same bits (and gemv = gemm at m = 1).
void gemm_f32__neon(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b, int64_t ldb, float* c,
                    int64_t ldc);
void gemm_f32_nn__neon(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b, int64_t ldb, float* c,
                       int64_t ldc);
void gemv_f32__neon(int64_t n, int64_t k, const float* w, int64_t ldw, const float* x, float* y);

// IQ4_NL × Q8_0 and IQ4_XS × Q8_K (GemmQuantFn) on the file layout, defined with the other formats' ARM GEMMs
// (quant_gemm_arm.h): levels looked up with tbl, the rung's s8 dot step, the reference's float steps.
#define CQ_DECLARE_ARM_IQ4_GEMMS(isa)                                                                                    \
    void gemm_iq4_nl_q8_0__##isa(int64_t m, int64_t n, int64_t k, const void* act, size_t act_row_bytes, const void* w, \
                                 size_t w_row_bytes, float* c, int64_t ldc);                                            \
    void gemm_iq4_xs_q8_K__##isa(int64_t m, int64_t n, int64_t k, const void* act, size_t act_row_bytes, const void* w, \
                                 size_t w_row_bytes, float* c, int64_t ldc);
CQ_DECLARE_ARM_IQ4_GEMMS(neon)
CQ_DECLARE_ARM_IQ4_GEMMS(neon_dotprod)
#undef CQ_DECLARE_ARM_IQ4_GEMMS

}  // namespace cq::kernels
