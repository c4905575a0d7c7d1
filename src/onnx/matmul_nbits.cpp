// MatMulNBits packing from cq's quantized blocks (see matmul_nbits.h). Layout per ONNX Runtime's contrib op spec:
// B [N, k_blocks, blob], scales [N·k_blocks], zero points (float, same shape as scales) or absent.
#include "onnx/matmul_nbits.h"

#include <cstring>

#include "formats/blocks.h"
#include "kernels/kernel_decls.h"

namespace cq::onnx_export {

namespace {

using namespace formats;

float h2f(uint16_t h) { return kernels::f16_to_f32_scalar(h); }

// One block of 32 4-bit codes q[0..31] → MatMulNBits' 16 bytes (element 2i low nibble, 2i+1 high).
void pack4(const uint8_t* q, uint8_t* out) {
    for (int i = 0; i < 16; ++i) out[i] = static_cast<uint8_t>((q[2 * i] & 15) | ((q[2 * i + 1] & 15) << 4));
}

// w = q·d + m as (q − zp)·scale; d = 0 (a constant block) becomes scale 1, q 0, zp −m.
void affine_block(float d, float m, uint8_t* q, float& scale, float& zp) {
    if (d != 0.0f) {
        scale = d;
        zp = -m / d;
        return;
    }
    std::memset(q, 0, 32);
    scale = 1.0f;
    zp = -m;
}

}  // namespace

std::optional<NBitsWeights> matmul_nbits_weights(const Linear& layer) {
    if (layer.int8 || layer.transposed || layer.weight.ndim() != 2) return std::nullopt;
    const DType type = layer.weight.dtype();
    if (type != DType::Q4_0 && type != DType::Q8_0 && type != DType::Q4_1 && type != DType::Q4_K) return std::nullopt;
    NBitsWeights w;
    w.n = layer.weight.dim(0);
    w.k = layer.weight.dim(1);
    w.bits = type == DType::Q8_0 ? 8 : 4;
    const int64_t kb = w.k / 32, blob = 32 * w.bits / 8;
    w.packed.resize(static_cast<size_t>(w.n * kb * blob));
    w.scales.resize(static_cast<size_t>(w.n * kb));
    if (type == DType::Q4_1 || type == DType::Q4_K) w.zero_points.resize(w.scales.size());
    const auto* base = static_cast<const uint8_t*>(layer.weight.data());
    const size_t row_bytes = static_cast<size_t>(w.k / dtype_traits(type).block_size) * dtype_traits(type).bytes_per_block;
    uint8_t q[32];
    for (int64_t r = 0; r < w.n; ++r) {
        const uint8_t* row = base + static_cast<size_t>(r) * row_bytes;
        for (int64_t b = 0; b < kb; ++b) {
            const size_t at = static_cast<size_t>(r * kb + b);
            uint8_t* out = w.packed.data() + at * static_cast<size_t>(blob);
            if (type == DType::Q4_0) {
                const auto& blk = reinterpret_cast<const BlockQ4_0*>(row)[b];
                for (int j = 0; j < 16; ++j) q[j] = blk.qs[j] & 15, q[j + 16] = blk.qs[j] >> 4;
                pack4(q, out);
                w.scales[at] = h2f(blk.d);  // w = (q − 8)·d: the default zero point
            } else if (type == DType::Q8_0) {
                const auto& blk = reinterpret_cast<const BlockQ8_0*>(row)[b];
                for (int j = 0; j < 32; ++j) out[j] = static_cast<uint8_t>(blk.qs[j] + 128);  // (u − 128)·d: the default zero point
                w.scales[at] = h2f(blk.d);
            } else if (type == DType::Q4_1) {
                const auto& blk = reinterpret_cast<const BlockQ4_1*>(row)[b];
                for (int j = 0; j < 16; ++j) q[j] = blk.qs[j] & 15, q[j + 16] = blk.qs[j] >> 4;
                affine_block(h2f(blk.d), h2f(blk.m), q, w.scales[at], w.zero_points[at]);
                pack4(q, out);
            } else {  // Q4_K: super-block of 256 = 8 sub-blocks of 32, x = d·sc·q − dmin·mn
                const auto& blk = reinterpret_cast<const BlockQ4_K*>(row)[b / 8];
                const int sub = static_cast<int>(b % 8), chunk = sub / 2;
                const uint8_t* qs = blk.qs + 32 * chunk;
                for (int j = 0; j < 32; ++j) q[j] = sub % 2 == 0 ? (qs[j] & 15) : (qs[j] >> 4);
                int sc = 0, mn = 0;
                scale_min_k4(sub, blk.scales, sc, mn);
                affine_block(h2f(blk.d) * static_cast<float>(sc), -h2f(blk.dmin) * static_cast<float>(mn), q, w.scales[at], w.zero_points[at]);
                pack4(q, out);
            }
        }
    }
    return w;
}

std::vector<float> dequantize_nbits(const NBitsWeights& w) {
    const int64_t kb = w.k / w.block_size, blob = w.block_size * w.bits / 8;
    std::vector<float> out(static_cast<size_t>(w.n * w.k));
    for (int64_t r = 0; r < w.n; ++r)
        for (int64_t b = 0; b < kb; ++b) {
            const size_t at = static_cast<size_t>(r * kb + b);
            const float zp = w.zero_points.empty() ? static_cast<float>(1 << (w.bits - 1)) : w.zero_points[at];
            const uint8_t* blk = w.packed.data() + at * static_cast<size_t>(blob);
            for (int64_t j = 0; j < w.block_size; ++j) {
                const int q = w.bits == 8 ? blk[j] : (j % 2 == 0 ? blk[j / 2] & 15 : blk[j / 2] >> 4);
                out[static_cast<size_t>(r * w.k + b * w.block_size + j)] = (static_cast<float>(q) - zp) * w.scales[at];
            }
        }
    return out;
}

}  // namespace cq::onnx_export
