// AVX-512 fused bidirectional attention of one (sequence, head): the keys transposed once into scratch, then
// blocks of 8 queries: scores 8 × 32 keys at a time (sequential fma over head_dim, as the reference), the
// reference's exp per element in 16 lanes, and the context 8 queries × 32 outputs at a time (sequential fma over
// keys). Only the softmax sum is reordered (16 lanes), so outputs stay within seq·ε of the reference.
#include "kernels/x86/avx512_prelude.h"

#include <cmath>
#include <cstdint>

#include "kernels/kernel_decls.h"

namespace cq::kernels {

namespace {

constexpr int kRows = 8;  // queries per block

inline __mmask16 lanes(int64_t left) { return left >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << left) - 1u); }

// s: [R, sp] raw scores of queries q[0..R) against keys [0, sp) (kT: [head_dim, sp]) plus kbias (0 or −inf).
template <int R>
void scores(int64_t head_dim, int64_t sp, const float* q, int64_t ld, const float* kT, const float* kbias, float* s) {
    for (int64_t j = 0; j < sp; j += 32) {
        const bool two = j + 16 < sp;
        __m512 acc[R][2];
        for (int r = 0; r < R; ++r) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
        for (int64_t d = 0; d < head_dim; ++d) {
            const __m512 k0 = _mm512_loadu_ps(kT + d * sp + j);
            const __m512 k1 = two ? _mm512_loadu_ps(kT + d * sp + j + 16) : _mm512_setzero_ps();
            for (int r = 0; r < R; ++r) {
                const __m512 qv = _mm512_set1_ps(q[r * ld + d]);
                acc[r][0] = _mm512_fmadd_ps(qv, k0, acc[r][0]);
                if (two) acc[r][1] = _mm512_fmadd_ps(qv, k1, acc[r][1]);
            }
        }
        for (int r = 0; r < R; ++r) {
            _mm512_storeu_ps(s + r * sp + j, _mm512_add_ps(acc[r][0], _mm512_loadu_ps(kbias + j)));
            if (two) _mm512_storeu_ps(s + r * sp + j + 16, _mm512_add_ps(acc[r][1], _mm512_loadu_ps(kbias + j + 16)));
        }
    }
}

// One row s: [sp] (entries ≥ seq are −inf) ← softmax(scale·s), as softmax_f32__ref but summed in 16 lanes.
void softmax_row(float* s, int64_t sp, float scale) {
    __m512 mx = _mm512_set1_ps(-INFINITY);
    for (int64_t j = 0; j < sp; j += 16) mx = _mm512_max_ps(mx, _mm512_loadu_ps(s + j));
    const __m512 shift = _mm512_set1_ps(-scale * _mm512_reduce_max_ps(mx)), vs = _mm512_set1_ps(scale);
    __m512 sum = _mm512_setzero_ps();
    for (int64_t j = 0; j < sp; j += 16) {
        const __m512 e = exp_nonpositive16(_mm512_fmadd_ps(_mm512_loadu_ps(s + j), vs, shift));
        _mm512_storeu_ps(s + j, e);
        sum = _mm512_add_ps(sum, e);
    }
    const __m512 inv = _mm512_set1_ps(1.0f / _mm512_reduce_add_ps(sum));
    for (int64_t j = 0; j < sp; j += 16) _mm512_storeu_ps(s + j, _mm512_mul_ps(_mm512_loadu_ps(s + j), inv));
}

// out[r][d] = Σ_j p[r][j]·v[j][d] for R queries (p: [R, sp]), 32 outputs at a time.
template <int R>
void context(int64_t seq, int64_t head_dim, int64_t sp, const float* p, const float* v, int64_t ld, float* out, int64_t ldo) {
    for (int64_t d = 0; d < head_dim; d += 32) {
        const __mmask16 m0 = lanes(head_dim - d), m1 = head_dim - d > 16 ? lanes(head_dim - d - 16) : __mmask16(0);
        __m512 acc[R][2];
        for (int r = 0; r < R; ++r) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
        for (int64_t j = 0; j < seq; ++j) {
            const __m512 v0 = _mm512_maskz_loadu_ps(m0, v + j * ld + d);
            const __m512 v1 = m1 ? _mm512_maskz_loadu_ps(m1, v + j * ld + d + 16) : _mm512_setzero_ps();
            for (int r = 0; r < R; ++r) {
                const __m512 pv = _mm512_set1_ps(p[r * sp + j]);
                acc[r][0] = _mm512_fmadd_ps(pv, v0, acc[r][0]);
                if (m1) acc[r][1] = _mm512_fmadd_ps(pv, v1, acc[r][1]);
            }
        }
        for (int r = 0; r < R; ++r) {
            _mm512_mask_storeu_ps(out + r * ldo + d, m0, acc[r][0]);
            if (m1) _mm512_mask_storeu_ps(out + r * ldo + d + 16, m1, acc[r][1]);
        }
    }
}

template <int R>
void block(int64_t seq, int64_t head_dim, int64_t sp, const float* q, const float* v, int64_t ld, const float* kT, const float* kbias,
           float scale, float* s, float* out, int64_t ldo) {
    scores<R>(head_dim, sp, q, ld, kT, kbias, s);
    for (int r = 0; r < R; ++r) softmax_row(s + r * sp, sp, scale);
    context<R>(seq, head_dim, sp, s, v, ld, out, ldo);
}

}  // namespace

// q, k, v: [seq, head_dim] (row stride ld); key_mask: [seq] or null; out: [seq, head_dim] (row stride ldo);
// scratch: kT [head_dim, sp] | kbias [sp] | s [8, sp], sp = round_up(seq, 16)
void attention_f32__avx512(int64_t seq, int64_t head_dim, const float* q, const float* k, const float* v, int64_t ld,
                           const int32_t* key_mask, float scale, float* out, int64_t ldo, float* scratch) {
    const int64_t sp = (seq + 15) / 16 * 16;
    float* kT = scratch;
    float* kbias = kT + head_dim * sp;
    float* s = kbias + sp;
    bool any_valid = false;
    if (key_mask)
        for (int64_t j = 0; j < seq; ++j) any_valid = any_valid || key_mask[j] != 0;
    for (int64_t j = 0; j < sp; ++j) kbias[j] = j >= seq || (any_valid && !key_mask[j]) ? -INFINITY : 0.0f;
    for (int64_t j = 0; j < seq; ++j)
        for (int64_t d = 0; d < head_dim; ++d) kT[d * sp + j] = k[j * ld + d];
    for (int64_t d = 0; d < head_dim; ++d)
        for (int64_t j = seq; j < sp; ++j) kT[d * sp + j] = 0.0f;
    int64_t i = 0;
    for (; i + kRows <= seq; i += kRows) block<kRows>(seq, head_dim, sp, q + i * ld, v, ld, kT, kbias, scale, s, out + i * ldo, ldo);
    for (; i < seq; ++i) block<1>(seq, head_dim, sp, q + i * ld, v, ld, kT, kbias, scale, s, out + i * ldo, ldo);
}

}  // namespace cq::kernels
