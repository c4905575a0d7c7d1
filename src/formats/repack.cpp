// In-memory re-layouts of file formats for the interleaved kernels (formats/blocks.h): built once at
// load time from the mapped tensor, which stays the model's truth.
#include <cstring>

#include "formats/formats.h"

namespace cq::formats {

void pack_q4_0x8(const void* rows, size_t row_bytes, int64_t n, int64_t k, void* out) {
    const int64_t nb = k / kQK;
    const auto* src = static_cast<const uint8_t*>(rows);
    auto* dst = static_cast<BlockQ4_0x8*>(out);
    for (int64_t g = 0; g < (n + 7) / 8; ++g)
        for (int64_t b = 0; b < nb; ++b) {
            BlockQ4_0x8& blk = dst[g * nb + b];
            for (int r = 0; r < 8; ++r) {
                const int64_t row = 8 * g + r;
                BlockQ4_0 in{};
                if (row < n) std::memcpy(&in, src + size_t(row) * row_bytes + size_t(b) * sizeof(BlockQ4_0), sizeof(in));
                else std::memset(in.qs, 0x88, sizeof(in.qs));  // q = 8: the value 0 whatever the scale
                blk.d[r] = in.d;
                for (int jj = 0; jj < 4; ++jj) std::memcpy(blk.qs + 32 * jj + 4 * r, in.qs + 4 * jj, 4);
            }
        }
}

}  // namespace cq::formats
