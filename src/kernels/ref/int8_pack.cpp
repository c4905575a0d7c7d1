// Packing of s8 weights into the 16-channel × 4-input panels the gemm_u8s8 kernels read, and the
// per-channel weight sums their zero-point compensation needs (layout in cq/int8_gemm.h).
#include <cstdint>
#include <cstring>

#include "cq/int8_gemm.h"

namespace cq {

// w: [n, k] (row stride ldw) → packed: [round_up(n, 16) / 16 panels][kq quads][16 channels][4 inputs]
void pack_s8_panels(const int8_t* w, int64_t n, int64_t k, int64_t ldw, int8_t* packed) {
    const int64_t kq = s8_quads(k);
    std::memset(packed, 0, size_t(packed_s8_bytes(n, k)));
    for (int64_t c = 0; c < n; ++c) {
        const int64_t p = c / kS8PanelChannels, i = c % kS8PanelChannels;
        int8_t* panel = packed + p * kq * kS8PanelChannels * kS8QuadInputs;
        for (int64_t x = 0; x < k; ++x) {
            const int64_t q = x / kS8QuadInputs, j = x % kS8QuadInputs;
            panel[(q * kS8PanelChannels + i) * kS8QuadInputs + j] = w[c * ldw + x];
        }
    }
}

// w: [n, k] (row stride ldw) → sums: [n]
void s8_row_sums(const int8_t* w, int64_t n, int64_t k, int64_t ldw, int32_t* sums) {
    for (int64_t c = 0; c < n; ++c) {
        int32_t s = 0;
        for (int64_t x = 0; x < k; ++x) s += w[c * ldw + x];
        sums[c] = s;
    }
}

}  // namespace cq
