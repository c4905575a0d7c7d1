// Element types and quantized block formats: one traits table (name, block size, bytes per block,
// to/from float) that every reader, kernel and report consults. ggml types keep ggml's numeric ids.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

namespace cq {

/// A storage type. Values 0..39 are ggml's `ggml_type` ids (so GGUF files map 1:1); cq-only types
/// (found in safetensors files) start at 256.
enum class DType : uint16_t {
    F32 = 0, F16 = 1, Q4_0 = 2, Q4_1 = 3,
    Q5_0 = 6, Q5_1 = 7, Q8_0 = 8, Q8_1 = 9,
    Q2_K = 10, Q3_K = 11, Q4_K = 12, Q5_K = 13, Q6_K = 14, Q8_K = 15,
    IQ2_XXS = 16, IQ2_XS = 17, IQ3_XXS = 18, IQ1_S = 19, IQ4_NL = 20, IQ3_S = 21, IQ2_S = 22, IQ4_XS = 23,
    I8 = 24, I16 = 25, I32 = 26, I64 = 27, F64 = 28, IQ1_M = 29, BF16 = 30,
    TQ1_0 = 34, TQ2_0 = 35, MXFP4 = 39,
    // Not ggml types.
    U8 = 256, BOOL = 257, U16 = 258, U32 = 259, U64 = 260, F8_E4M3 = 261, F8_E5M2 = 262,
};

/// Converts `n` elements (a whole number of blocks) of this type to float.
using ToFloatFn = void (*)(const void* src, float* dst, int64_t n);
/// Converts `n` floats (a whole number of blocks) to this type.
using FromFloatFn = void (*)(const float* src, void* dst, int64_t n);

/// What cq knows about one storage type.
struct DTypeTraits {
    DType dtype;
    std::string_view name;     // ggml's type name where one exists ("q4_K"), else lower-case ("u8")
    int32_t ggml_id;           // -1 for types ggml does not have
    uint32_t block_size;       // elements per block (1 for plain types)
    uint32_t bytes_per_block;  // bytes of one block
    bool is_quantized;         // block-quantized (not a plain scalar type)
    ToFloatFn to_float;        // nullptr until a codec exists
    FromFloatFn from_float;    // nullptr until a codec exists
};

/// The traits of `dtype`.
const DTypeTraits& dtype_traits(DType dtype);
/// Every type cq knows, in id order.
std::span<const DTypeTraits> all_dtypes();
/// The type with ggml id `id`, if ggml has (still) such a type.
std::optional<DType> dtype_from_ggml_id(uint32_t id);
/// The type named `name` (ggml spelling, case-insensitive).
std::optional<DType> dtype_from_name(std::string_view name);

inline std::string_view dtype_name(DType dtype) { return dtype_traits(dtype).name; }

/// Bytes of `n_elements` elements, or nullopt when `n_elements` is not a whole number of blocks
/// or the size does not fit in 63 bits.
std::optional<uint64_t> dtype_bytes(DType dtype, uint64_t n_elements);

}  // namespace cq
