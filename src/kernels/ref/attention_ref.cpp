// Fused bidirectional attention of one (sequence, head), the specification: per query, scores as sequential fma
// sums over head_dim, masked keys at −inf, softmax_f32__ref, then each output the sequential fma sum over keys.
#include <cmath>
#include <cstdint>

#include "kernels/kernel_decls.h"

namespace cq::kernels {

// q, k, v: [seq, head_dim] (row stride ld); key_mask: [seq] or null; out: [seq, head_dim] (row stride ldo);
// scratch: [seq] (of attention_f32_scratch_floats)
void attention_f32__ref(int64_t seq, int64_t head_dim, const float* q, const float* k, const float* v, int64_t ld,
                        const int32_t* key_mask, float scale, float* out, int64_t ldo, float* scratch) {
    bool any_valid = false;
    if (key_mask)
        for (int64_t j = 0; j < seq; ++j) any_valid = any_valid || key_mask[j] != 0;
    if (!any_valid) key_mask = nullptr;  // no valid key: every key counts (no NaN from padding)
    float* p = scratch;
    for (int64_t i = 0; i < seq; ++i) {
        const float* qi = q + i * ld;
        for (int64_t j = 0; j < seq; ++j) {
            const float* kj = k + j * ld;
            float s = 0.0f;
            for (int64_t d = 0; d < head_dim; ++d) s = std::fma(qi[d], kj[d], s);
            p[j] = key_mask && !key_mask[j] ? -INFINITY : s;
        }
        softmax_f32__ref(p, seq, scale);
        float* o = out + i * ldo;
        for (int64_t d = 0; d < head_dim; ++d) {
            float acc = 0.0f;
            for (int64_t j = 0; j < seq; ++j) acc = std::fma(p[j], v[j * ld + d], acc);
            o[d] = acc;
        }
    }
}

}  // namespace cq::kernels
