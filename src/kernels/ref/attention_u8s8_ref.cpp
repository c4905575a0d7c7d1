// Scalar reference INT8 attention (attention_u8s8): the scalar quantizers, packing and softmax of
// attention_u8s8_impl.h with the reference u8·s8 GEMM — the specification the other rungs match bit for bit.
#include "kernels/attention_u8s8_impl.h"

namespace cq {

int64_t attention_u8s8_scratch_bytes(int64_t seq, int64_t head_dim) { return kernels::AttentionU8Scratch::bytes(seq, head_dim); }

namespace kernels {
namespace {
struct RefHelpers : ScalarAttentionU8Helpers {
    static constexpr auto quantize_rows_u8_dynamic = &quantize_rows_u8_dynamic__ref;
    static constexpr auto gemm = &gemm_u8s8_f32__ref;
};
}  // namespace

void attention_u8s8__ref(int64_t seq, int64_t head_dim, const float* q, const float* k, const float* v, int64_t ld,
                         const int32_t* key_mask, float scale, float* out, int64_t ldo, uint8_t* scratch) {
    attention_u8s8<RefHelpers>(seq, head_dim, q, k, v, ld, key_mask, scale, out, ldo, scratch);
}

}  // namespace kernels
}  // namespace cq
