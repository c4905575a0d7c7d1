// Declarations of every compiled kernel variant. Names follow <op>_<types>__<isa>; each ISA's
// definitions live in that ISA's object library (its own compile flags) and are only called
// through the kernel table after the CPU was checked.
#pragma once

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

void gemm_f32_nn__ref(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b, int64_t ldb,
                      float* c, int64_t ldc);
void gemm_f32_nn__openblas(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b,
                           int64_t ldb, float* c, int64_t ldc);

void gemv_f32__ref(int64_t n, int64_t k, const float* w, int64_t ldw, const float* x, float* y);
void gemv_f32__avx2(int64_t n, int64_t k, const float* w, int64_t ldw, const float* x, float* y);
void gemv_f32__avx512(int64_t n, int64_t k, const float* w, int64_t ldw, const float* x, float* y);

// Scalar single-value conversions shared by the reference kernels and the tails of vector kernels.
float f16_to_f32_scalar(uint16_t h);
uint16_t f32_to_f16_scalar(float f);
float bf16_to_f32_scalar(uint16_t h);
uint16_t f32_to_bf16_scalar(float f);

}  // namespace cq::kernels
