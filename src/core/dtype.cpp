// The dtype traits table. Block sizes and bytes per block of the ggml types follow ggml's
// ggml-common.h block structs (QK_K = 256); plain types convert through the dispatched kernels,
// the ggml block formats through their reference codecs (src/formats).
#include "cq/dtype.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <cmath>
#include <limits>
#include <cstring>

#include "cq/error.h"
#include "cq/kernels.h"
#include "formats/formats.h"

namespace cq {
namespace {

void f32_to_float(const void* src, float* dst, int64_t n) { std::memcpy(dst, src, static_cast<size_t>(n) * 4); }
void f32_from_float(const float* src, void* dst, int64_t n) { std::memcpy(dst, src, static_cast<size_t>(n) * 4); }
void f16_to_float(const void* src, float* dst, int64_t n) {
    kernel_table().convert_f16_f32.fn(static_cast<const uint16_t*>(src), dst, n);
}
void f16_from_float(const float* src, void* dst, int64_t n) {
    kernel_table().convert_f32_f16.fn(src, static_cast<uint16_t*>(dst), n);
}
void bf16_to_float(const void* src, float* dst, int64_t n) {
    kernel_table().convert_bf16_f32.fn(static_cast<const uint16_t*>(src), dst, n);
}
void bf16_from_float(const float* src, void* dst, int64_t n) {
    kernel_table().convert_f32_bf16.fn(src, static_cast<uint16_t*>(dst), n);
}
template <typename T>
void int_to_float(const void* src, float* dst, int64_t n) {
    const T* s = static_cast<const T*>(src);
    for (int64_t i = 0; i < n; ++i) dst[i] = static_cast<float>(s[i]);
}
// Saturating, round-to-nearest-even float → integer (NaN → 0): what a user converting weights expects.
template <typename T>
void int_from_float(const float* src, void* dst, int64_t n) {
    T* d = static_cast<T*>(dst);
    constexpr double lo = static_cast<double>(std::numeric_limits<T>::min());
    constexpr double hi = static_cast<double>(std::numeric_limits<T>::max());
    for (int64_t i = 0; i < n; ++i) {
        double v = src[i];
        if (v != v) v = 0;
        v = std::clamp(std::nearbyint(v), lo, hi);
        d[i] = static_cast<T>(v);
    }
}

void f64_to_float(const void* src, float* dst, int64_t n) {
    const double* s = static_cast<const double*>(src);
    for (int64_t i = 0; i < n; ++i) dst[i] = static_cast<float>(s[i]);
}

constexpr uint32_t QK = 32;    // ggml QK4_0 / QK8_0 ...
constexpr uint32_t QK_K = 256; // k-quant super-block

// clang-format off
const std::array kTraits = {
    //        dtype          name       ggml  block  bytes  quant  to_float  from_float
    DTypeTraits{DType::F32,     "f32",      0,   1,    4, false, f32_to_float,  f32_from_float},
    DTypeTraits{DType::F16,     "f16",      1,   1,    2, false, f16_to_float,  f16_from_float},
    DTypeTraits{DType::Q4_0,    "q4_0",     2,  QK,   18, true,  formats::dequantize_row_q4_0_ref, formats::quantize_row_q4_0_ref},
    DTypeTraits{DType::Q4_1,    "q4_1",     3,  QK,   20, true,  formats::dequantize_row_q4_1_ref, formats::quantize_row_q4_1_ref},
    DTypeTraits{DType::Q5_0,    "q5_0",     6,  QK,   22, true,  formats::dequantize_row_q5_0_ref, formats::quantize_row_q5_0_ref},
    DTypeTraits{DType::Q5_1,    "q5_1",     7,  QK,   24, true,  formats::dequantize_row_q5_1_ref, formats::quantize_row_q5_1_ref},
    DTypeTraits{DType::Q8_0,    "q8_0",     8,  QK,   34, true,  formats::dequantize_row_q8_0_ref, formats::quantize_row_q8_0_ref},
    DTypeTraits{DType::Q8_1,    "q8_1",     9,  QK,   36, true,  formats::dequantize_row_q8_1_ref, formats::quantize_row_q8_1_ref},
    DTypeTraits{DType::Q2_K,    "q2_K",    10, QK_K,  84, true,  formats::dequantize_row_q2_K_ref, formats::quantize_row_q2_K_ref},
    DTypeTraits{DType::Q3_K,    "q3_K",    11, QK_K, 110, true,  formats::dequantize_row_q3_K_ref, formats::quantize_row_q3_K_ref},
    DTypeTraits{DType::Q4_K,    "q4_K",    12, QK_K, 144, true,  formats::dequantize_row_q4_K_ref, formats::quantize_row_q4_K_ref},
    DTypeTraits{DType::Q5_K,    "q5_K",    13, QK_K, 176, true,  formats::dequantize_row_q5_K_ref, formats::quantize_row_q5_K_ref},
    DTypeTraits{DType::Q6_K,    "q6_K",    14, QK_K, 210, true,  formats::dequantize_row_q6_K_ref, formats::quantize_row_q6_K_ref},
    DTypeTraits{DType::Q8_K,    "q8_K",    15, QK_K, 292, true,  formats::dequantize_row_q8_K_ref, formats::quantize_row_q8_K_ref},
    DTypeTraits{DType::IQ2_XXS, "iq2_xxs", 16, QK_K,  66, true,  nullptr, nullptr},
    DTypeTraits{DType::IQ2_XS,  "iq2_xs",  17, QK_K,  74, true,  nullptr, nullptr},
    DTypeTraits{DType::IQ3_XXS, "iq3_xxs", 18, QK_K,  98, true,  nullptr, nullptr},
    DTypeTraits{DType::IQ1_S,   "iq1_s",   19, QK_K,  50, true,  nullptr, nullptr},
    DTypeTraits{DType::IQ4_NL,  "iq4_nl",  20,  QK,   18, true,  formats::dequantize_row_iq4_nl_ref, formats::quantize_row_iq4_nl_ref},
    DTypeTraits{DType::IQ3_S,   "iq3_s",   21, QK_K, 110, true,  nullptr, nullptr},
    DTypeTraits{DType::IQ2_S,   "iq2_s",   22, QK_K,  82, true,  nullptr, nullptr},
    DTypeTraits{DType::IQ4_XS,  "iq4_xs",  23, QK_K, 136, true,  formats::dequantize_row_iq4_xs_ref, formats::quantize_row_iq4_xs_ref},
    DTypeTraits{DType::I8,      "i8",      24,   1,    1, false, int_to_float<int8_t>,  int_from_float<int8_t>},
    DTypeTraits{DType::I16,     "i16",     25,   1,    2, false, int_to_float<int16_t>, int_from_float<int16_t>},
    DTypeTraits{DType::I32,     "i32",     26,   1,    4, false, int_to_float<int32_t>, int_from_float<int32_t>},
    DTypeTraits{DType::I64,     "i64",     27,   1,    8, false, int_to_float<int64_t>, nullptr},
    DTypeTraits{DType::F64,     "f64",     28,   1,    8, false, f64_to_float, nullptr},
    DTypeTraits{DType::IQ1_M,   "iq1_m",   29, QK_K,  56, true,  nullptr, nullptr},
    DTypeTraits{DType::BF16,    "bf16",    30,   1,    2, false, bf16_to_float, bf16_from_float},
    DTypeTraits{DType::TQ1_0,   "tq1_0",   34, QK_K,  54, true,  nullptr, nullptr},
    DTypeTraits{DType::TQ2_0,   "tq2_0",   35, QK_K,  66, true,  nullptr, nullptr},
    DTypeTraits{DType::MXFP4,   "mxfp4",   39,  QK,   17, true,  nullptr, nullptr},
    DTypeTraits{DType::U8,      "u8",      -1,   1,    1, false, int_to_float<uint8_t>, int_from_float<uint8_t>},
    DTypeTraits{DType::BOOL,    "bool",    -1,   1,    1, false, int_to_float<uint8_t>, nullptr},
    DTypeTraits{DType::U16,     "u16",     -1,   1,    2, false, int_to_float<uint16_t>, nullptr},
    DTypeTraits{DType::U32,     "u32",     -1,   1,    4, false, int_to_float<uint32_t>, nullptr},
    DTypeTraits{DType::U64,     "u64",     -1,   1,    8, false, int_to_float<uint64_t>, nullptr},
    DTypeTraits{DType::F8_E4M3, "f8_e4m3", -1,   1,    1, false, nullptr, nullptr},
    DTypeTraits{DType::F8_E5M2, "f8_e5m2", -1,   1,    1, false, nullptr, nullptr},
};
// clang-format on

bool iequal(std::string_view a, std::string_view b) {
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
               return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
           });
}

}  // namespace

const DTypeTraits& dtype_traits(DType dtype) {
    for (const auto& t : kTraits)
        if (t.dtype == dtype) return t;
    throw InvalidArgument("[dtype] unknown dtype id " + std::to_string(static_cast<int>(dtype)));
}

std::span<const DTypeTraits> all_dtypes() { return kTraits; }

std::optional<DType> dtype_from_ggml_id(uint32_t id) {
    for (const auto& t : kTraits)
        if (t.ggml_id >= 0 && static_cast<uint32_t>(t.ggml_id) == id) return t.dtype;
    return std::nullopt;
}

std::optional<DType> dtype_from_name(std::string_view name) {
    for (const auto& t : kTraits)
        if (iequal(t.name, name)) return t.dtype;
    return std::nullopt;
}

std::optional<uint64_t> dtype_bytes(DType dtype, uint64_t n_elements) {
    const auto& t = dtype_traits(dtype);
    if (n_elements % t.block_size != 0) return std::nullopt;
    const uint64_t blocks = n_elements / t.block_size;
    if (blocks > (uint64_t{1} << 62) / t.bytes_per_block) return std::nullopt;
    return blocks * t.bytes_per_block;
}

}  // namespace cq
