// In-memory re-layouts of file formats for the interleaved kernels (formats/blocks.h): built once at
// load time from the mapped tensor, which stays the model's truth.
#include <cstring>

#include "formats/formats.h"

namespace cq::formats {

namespace {
// For every group g of 8 rows and block b (nb blocks a row): f(out block, r, block b of row 8g + r).
// Rows past n read as a block of zeros whose quant bytes are `zero` (the byte of value 0).
template <class Block, class Block8, class F>
void for_each_row_block(const void* rows, size_t row_bytes, int64_t n, int64_t nb, uint8_t zero, void* out, F f) {
    const auto* src = static_cast<const uint8_t*>(rows);
    auto* dst = static_cast<Block8*>(out);
    for (int64_t g = 0; g < (n + 7) / 8; ++g)
        for (int64_t b = 0; b < nb; ++b)
            for (int r = 0; r < 8; ++r) {
                const int64_t row = 8 * g + r;
                Block in{};
                if (row < n) std::memcpy(&in, src + size_t(row) * row_bytes + size_t(b) * sizeof(Block), sizeof(in));
                else std::memset(in.qs, zero, sizeof(in.qs));
                f(dst[g * nb + b], r, in);
            }
}

// Q4_0/Q8_0: the 8 scales, then the quant bytes in 4-byte pieces, piece j of every row side by side.
template <class Block, class Block8>
void pack_groups(const void* rows, size_t row_bytes, int64_t n, int64_t k, uint8_t zero, void* out) {
    for_each_row_block<Block, Block8>(rows, row_bytes, n, k / kQK, zero, out, [](Block8& blk, int r, const Block& in) {
        blk.d[r] = in.d;
        for (int j = 0; j < int(sizeof(in.qs)) / 4; ++j) std::memcpy(blk.qs + 32 * j + 4 * r, in.qs + 4 * j, 4);
    });
}
}  // namespace

// Q4_K: scales and mins decoded once here; the rows past n are all zeros (d = dmin = 0).
void pack_rows_q4_Kx8(const void* rows, size_t row_bytes, int64_t n, int64_t k, void* out) {
    for_each_row_block<BlockQ4_K, BlockQ4_Kx8>(rows, row_bytes, n, k / kQK_K, 0, out,
                                               [](BlockQ4_Kx8& blk, int r, const BlockQ4_K& in) {
        blk.d[r] = in.d;
        blk.dmin[r] = in.dmin;
        for (int sb = 0; sb < 8; ++sb) {
            int sc, mn;
            scale_min_k4(sb, in.scales, sc, mn);
            blk.scales[sb][r] = uint8_t(sc);
            blk.mins[sb / 2][r][sb % 2] = int16_t(mn);
        }
        for (int p = 0; p < 4; ++p)
            for (int jj = 0; jj < 8; ++jj) std::memcpy(blk.qs + 256 * p + 32 * jj + 4 * r, in.qs + 32 * p + 4 * jj, 4);
    });
}

template <class Block8, int64_t kElements>
size_t packed_groups_bytes(int64_t n, int64_t k) {
    return size_t((n + 7) / 8) * size_t(k / kElements) * sizeof(Block8);
}

void pack_rows_q4_0x8(const void* rows, size_t row_bytes, int64_t n, int64_t k, void* out) {
    pack_groups<BlockQ4_0, BlockQ4_0x8>(rows, row_bytes, n, k, 0x88, out);  // q = 8: value 0
}
void pack_rows_q8_0x8(const void* rows, size_t row_bytes, int64_t n, int64_t k, void* out) {
    pack_groups<BlockQ8_0, BlockQ8_0x8>(rows, row_bytes, n, k, 0, out);
}
size_t packed_bytes_q4_0x8(int64_t n, int64_t k) { return packed_groups_bytes<BlockQ4_0x8, kQK>(n, k); }
size_t packed_bytes_q8_0x8(int64_t n, int64_t k) { return packed_groups_bytes<BlockQ8_0x8, kQK>(n, k); }
size_t packed_bytes_q4_Kx8(int64_t n, int64_t k) { return packed_groups_bytes<BlockQ4_Kx8, kQK_K>(n, k); }

}  // namespace cq::formats
