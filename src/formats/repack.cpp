// In-memory re-layouts of file formats for the interleaved kernels (formats/blocks.h): built once at
// load time from the mapped tensor, which stays the model's truth.
#include <cstring>

#include "formats/formats.h"

namespace cq::formats {

namespace {
// Block b of rows 8g..8g+7 → one interleaved block: the 8 scales, then the quant bytes in 4-byte pieces,
// piece j of every row side by side (the rows past n are zeros: `zero` is the quant byte of value 0).
template <class Block, class Block8>
void pack_groups(const void* rows, size_t row_bytes, int64_t n, int64_t k, uint8_t zero, void* out) {
    constexpr int kPieces = sizeof(Block{}.qs) / 4;
    const int64_t nb = k / kQK;
    const auto* src = static_cast<const uint8_t*>(rows);
    auto* dst = static_cast<Block8*>(out);
    for (int64_t g = 0; g < (n + 7) / 8; ++g)
        for (int64_t b = 0; b < nb; ++b) {
            Block8& blk = dst[g * nb + b];
            for (int r = 0; r < 8; ++r) {
                const int64_t row = 8 * g + r;
                Block in{};
                if (row < n) std::memcpy(&in, src + size_t(row) * row_bytes + size_t(b) * sizeof(Block), sizeof(in));
                else std::memset(in.qs, zero, sizeof(in.qs));
                blk.d[r] = in.d;
                for (int j = 0; j < kPieces; ++j) std::memcpy(blk.qs + 32 * j + 4 * r, in.qs + 4 * j, 4);
            }
        }
}
}  // namespace

bool has_x8_layout(DType type) { return type == DType::Q4_0 || type == DType::Q8_0; }

size_t packed_x8_bytes(DType type, int64_t n, int64_t k) {
    const size_t block = type == DType::Q4_0 ? sizeof(BlockQ4_0x8) : sizeof(BlockQ8_0x8);
    return size_t((n + 7) / 8) * size_t(k / kQK) * block;
}

void pack_rows_x8(DType type, const void* rows, size_t row_bytes, int64_t n, int64_t k, void* out) {
    if (type == DType::Q4_0) pack_groups<BlockQ4_0, BlockQ4_0x8>(rows, row_bytes, n, k, 0x88, out);  // q = 8: value 0
    else pack_groups<BlockQ8_0, BlockQ8_0x8>(rows, row_bytes, n, k, 0, out);
}

}  // namespace cq::formats
