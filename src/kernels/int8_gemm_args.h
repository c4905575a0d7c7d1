// The arguments every tile of a vector INT8 GEMM (GemmU8S8Fn, layout in cq/int8_gemm.h) shares.
#pragma once

#include <cstdint>

namespace cq::kernels {

struct Int8GemmArgs {
    int64_t kq, lda, panel_bytes;  // quads of k, activation row stride, bytes per packed panel
    const uint8_t* a;
    const float* a_scale;
    const int32_t* a_zero_point;
    int64_t a_param_stride;
    const int32_t* w_sums;  // the sums / scales / bias of the channels the tile reads
    const float* w_scale;
    const float* bias;  // null: no bias
    float* c;
    int64_t ldc, n;  // n: channels, where a tile masks its stores
};

}  // namespace cq::kernels
