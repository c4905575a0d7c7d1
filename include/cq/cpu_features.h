// CPU feature detection (CPUID + XGETBV on x86, hwcaps on ARM64), done once per process, and the
// ISA ladder the kernel table is filled along.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace cq {

struct CpuFeatures {
    std::string brand;
    std::string vendor;           // CPUID vendor string ("AuthenticAMD", "GenuineIntel"); empty on ARM
    int family = 0, model = 0;    // CPUID display family / model (AMD Zen 4: family 25 from model 16; Zen 5: 26)
    bool sse42 = false, avx = false, avx2 = false, fma = false, f16c = false;
    bool avx512f = false, avx512bw = false, avx512vl = false, avx512dq = false;
    bool avx512_vnni = false, avx512_bf16 = false, avx_vnni = false;
    bool amx_bf16 = false;  // AMX tiles with BF16 products, enabled by the OS
    bool os_saves_ymm = false, os_saves_zmm = false;  // XGETBV: the OS preserves the wide registers
    bool neon = false, arm_dotprod = false, arm_fp16 = false, arm_i8mm = false, arm_bf16 = false, arm_sve = false;

    /// Names of the features present, e.g. {"avx2", "fma", "avx512f", ...}.
    std::vector<std::string> names() const;
};

/// The features of this CPU (detected on first call).
const CpuFeatures& cpu_features();

/// Rungs of the kernel ladder; each includes the ones below it. ARM64: neon (Armv8.0 Advanced SIMD),
/// neon_dotprod (+ SDOT/UDOT, Armv8.2 DotProd), neon_i8mm (+ USDOT/SMMLA, Armv8.6 I8MM).
enum class IsaLevel { ref = 0, avx2 = 1, avx512 = 2, avx512_vnni = 3, neon = 10, neon_dotprod = 11, neon_i8mm = 12 };

std::string_view isa_level_name(IsaLevel level);
std::optional<IsaLevel> isa_level_from_name(std::string_view name);
/// The highest level this CPU supports.
IsaLevel detected_isa_level();
/// True if this CPU can run kernels of `level`.
bool cpu_supports(IsaLevel level);
/// The levels this CPU can run, lowest first (always starts with ref).
std::vector<IsaLevel> supported_isa_levels();

}  // namespace cq
