// INT8 attention on AVX2 (attention_u8s8): the reference's quantizers, packing and softmax (compiled for AVX2) around
// the AVX2 u8·s8 GEMM and row quantizer, which give the reference's bits.
#include "kernels/attention_u8s8_impl.h"

namespace cq::kernels {
namespace {
struct Avx2Helpers : ScalarAttentionU8Helpers {
    static constexpr auto quantize_rows_u8_dynamic = &quantize_rows_u8_dynamic__avx2;
    static constexpr auto gemm = &gemm_u8s8_f32__avx2;
};
}  // namespace

void attention_u8s8__avx2(int64_t seq, int64_t head_dim, const float* q, const float* k, const float* v, int64_t ld,
                          const int32_t* key_mask, float scale, float* out, int64_t ldo, uint8_t* scratch) {
    attention_u8s8<Avx2Helpers>(seq, head_dim, q, k, v, ld, key_mask, scale, out, ldo, scratch);
}

}  // namespace cq::kernels
