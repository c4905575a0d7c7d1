// Declarations of the ARM64 GEMMs on cq's 8-row interleaved layouts (GemmQuantFn on formats::BlockQ4_0x8 /
// BlockQ8_0x8). Kept beside the ARM kernels, not in kernels/kernel_decls.h, so x86 builds do not rebuild every
// kernel and test for ARM-only entry points; dispatch.cpp includes it on AArch64.
#pragma once

#include <cstddef>
#include <cstdint>

namespace cq::kernels {

void gemm_q4_0x8_q8_0__neon_dotprod(int64_t m, int64_t n, int64_t k, const void* act, size_t act_row_bytes, const void* w,
                                    size_t w_row_bytes, float* c, int64_t ldc);
void gemm_q8_0x8_q8_0__neon_dotprod(int64_t m, int64_t n, int64_t k, const void* act, size_t act_row_bytes, const void* w,
                                    size_t w_row_bytes, float* c, int64_t ldc);

}  // namespace cq::kernels
