// Scalar reference for the u8·s8 dot product: exact in int32 (|a·b| ≤ 255·128, n ≤ 2^16).
#include <cstdint>

#include "kernels/kernel_decls.h"

namespace cq::kernels {

// a: [n] u8, b: [n] s8 → Σ a[i]·b[i]
int32_t dot_u8_s8__ref(const uint8_t* a, const int8_t* b, int64_t n) {
    int32_t sum = 0;
    for (int64_t i = 0; i < n; ++i) sum += int32_t(a[i]) * int32_t(b[i]);
    return sum;
}

}  // namespace cq::kernels
