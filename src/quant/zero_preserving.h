// Pruned weights stay exact zeros through quantization (issue 17). A tensor with many exact zeros (a pruned one) is
// quantized as usual, then every block in which an input zero would decode to something else is searched again under
// the constraint that 0 is one of its levels. Symmetric formats (Q4_0, Q5_0, Q8_0, Q3_K, Q6_K) keep zeros by
// construction; formats with a min (Q4_1, Q5_1, Q2_K, Q4_K, Q5_K) get the constrained search here; IQ4_NL / IQ4_XS
// have no zero level at all and are replaced by Q4_0 for such tensors.
#pragma once

#include <cstdint>

#include "cq/dtype.h"

namespace cq::quant {

/// A tensor counts as pruned (its exact zeros are a mask to keep) when at least this fraction of it is exactly 0.
/// Dense trained weights have almost none; cq prune's outputs have 2:4's 50 % or the chosen sparsity.
inline constexpr double kPrunedZeroFraction = 0.01;

/// True when at least kPrunedZeroFraction of w[0, n) is exactly 0.
bool looks_pruned(const float* w, int64_t n);

/// True when the type has a constrained block search here (the formats with a min: Q4_1, Q5_1, Q2_K, Q4_K, Q5_K).
bool has_zero_preserving_search(DType type);

/// `type` itself when its grids can hold an exact 0 (all types with a codec except IQ4_NL / IQ4_XS), else the type a
/// pruned tensor gets instead (IQ4_NL, IQ4_XS → Q4_0: 4.5 bpw, exact 0 level).
DType zero_preserving_type(DType type);

/// One block of `type` (block_size values x) such that every x[i] with mask[i] != 0 decodes to exactly 0 (x[i] there
/// is taken as 0). The other values are fitted by a weighted least-squares search over (scale, zero level) per
/// sub-block, weights importance[i]·(rms(x) + |x[i]|) (importance null: 1). K-quants: dmin = d·2^e, chosen per
/// super-block with e ∈ [0, 4], and min_j = scale_j·zero_j / 2^e, so d·scale_j·zero_j and dmin·min_j are the same
/// exact product. Types without a min: the type's own weighted search (which already maps 0 to 0).
void quantize_block_keep_zeros(DType type, const float* x, const uint8_t* mask, const float* importance, void* out);

/// After a row x: [n] was quantized to `out` by any search: each block where an exact-zero x decodes to non-zero is
/// quantized again with quantize_block_keep_zeros (the mask: x == 0). Returns the number of blocks redone.
int64_t restore_row_zeros(DType type, const float* x, void* out, int64_t n, const float* importance);

/// Exact zeros of x: [n] that decode from `q` (n values of `type`) to non-zero — 0 when the mask survived.
int64_t count_lost_zeros(DType type, const float* x, const void* q, int64_t n);

}  // namespace cq::quant
