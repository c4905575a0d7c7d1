// CPU feature detection: CPUID + XGETBV on x86-64 (a feature counts only if the OS also saves the
// registers it needs), getauxval hwcaps on ARM64. Detected once; the ISA ladder is derived from it.
#include "cq/cpu_features.h"

#include <cstring>

#include "core/name_table.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <cpuid.h>
#define CQ_X86 1
#elif defined(__aarch64__)
#include <sys/auxv.h>
#if __has_include(<asm/hwcap.h>)
#include <asm/hwcap.h>
#endif
#define CQ_ARM64 1
#endif

namespace cq {
namespace {

#if CQ_X86
struct Regs {
    unsigned a = 0, b = 0, c = 0, d = 0;
};
Regs cpuid(unsigned leaf, unsigned sub) {
    Regs r;
    __cpuid_count(leaf, sub, r.a, r.b, r.c, r.d);
    return r;
}
bool bit(unsigned v, int i) { return (v >> i) & 1u; }

CpuFeatures detect() {
    CpuFeatures f;
    const unsigned max_leaf = __get_cpuid_max(0, nullptr);
    if (max_leaf < 1) return f;
    const Regs l0 = cpuid(0, 0);
    char vendor[13] = {};
    std::memcpy(vendor + 0, &l0.b, 4);
    std::memcpy(vendor + 4, &l0.d, 4);
    std::memcpy(vendor + 8, &l0.c, 4);
    f.vendor = vendor;
    const Regs l1 = cpuid(1, 0);
    // Display family/model: the extended fields count only from base family 15 (family) / 6 or 15 (model).
    const int base_family = int((l1.a >> 8) & 0xF), base_model = int((l1.a >> 4) & 0xF);
    f.family = base_family == 15 ? base_family + int((l1.a >> 20) & 0xFF) : base_family;
    f.model = (base_family == 6 || base_family == 15) ? base_model + (int((l1.a >> 16) & 0xF) << 4) : base_model;
    f.sse42 = bit(l1.c, 20);
    const bool osxsave = bit(l1.c, 27);
    uint64_t xcr0 = 0;
    if (osxsave) {
        unsigned lo = 0, hi = 0;
        __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
        xcr0 = (static_cast<uint64_t>(hi) << 32) | lo;
    }
    f.os_saves_ymm = (xcr0 & 0x6) == 0x6;
    f.os_saves_zmm = f.os_saves_ymm && (xcr0 & 0xE0) == 0xE0;
    f.avx = bit(l1.c, 28) && f.os_saves_ymm;
    f.fma = bit(l1.c, 12) && f.avx;
    f.f16c = bit(l1.c, 29) && f.avx;
    if (max_leaf >= 7) {
        const Regs l7 = cpuid(7, 0);
        f.avx2 = bit(l7.b, 5) && f.avx;
        f.avx512f = bit(l7.b, 16) && f.os_saves_zmm;
        f.avx512dq = bit(l7.b, 17) && f.avx512f;
        f.avx512bw = bit(l7.b, 30) && f.avx512f;
        f.avx512vl = bit(l7.b, 31) && f.avx512f;
        f.avx512_vnni = bit(l7.c, 11) && f.avx512f;
        // AMX tiles with BF16: CPUID 7.0 EDX bits 24 (AMX-TILE) and 22 (AMX-BF16), and XCR0 bits 17-18 (the OS saves
        // XTILECFG / XTILEDATA; oneDNN asks Linux for the per-process permission itself).
        f.amx_bf16 = bit(l7.d, 24) && bit(l7.d, 22) && (xcr0 & 0x60000) == 0x60000;
        if (l7.a >= 1) {
            const Regs l71 = cpuid(7, 1);
            f.avx_vnni = bit(l71.a, 4) && f.avx;
            f.avx512_bf16 = bit(l71.a, 5) && f.avx512f;
        }
    }
    if (__get_cpuid_max(0x80000000u, nullptr) >= 0x80000004u) {
        char brand[49] = {};
        for (unsigned i = 0; i < 3; ++i) {
            const Regs r = cpuid(0x80000002u + i, 0);
            std::memcpy(brand + 16 * i + 0, &r.a, 4);
            std::memcpy(brand + 16 * i + 4, &r.b, 4);
            std::memcpy(brand + 16 * i + 8, &r.c, 4);
            std::memcpy(brand + 16 * i + 12, &r.d, 4);
        }
        f.brand = brand;
        while (!f.brand.empty() && f.brand.back() == ' ') f.brand.pop_back();
        while (!f.brand.empty() && f.brand.front() == ' ') f.brand.erase(f.brand.begin());
    }
    return f;
}
#elif CQ_ARM64
CpuFeatures detect() {
    CpuFeatures f;
    f.brand = "ARM64";
    // The Linux AArch64 hwcap bits (uapi asm/hwcap.h), spelled out so that older headers still build.
    constexpr unsigned long kHwcapAsimd = 1ul << 1, kHwcapAsimdHp = 1ul << 10;     // AT_HWCAP
    constexpr unsigned long kHwcapAsimdDp = 1ul << 20, kHwcapSve = 1ul << 22;
    constexpr unsigned long kHwcap2I8mm = 1ul << 13, kHwcap2Bf16 = 1ul << 14;     // AT_HWCAP2
    const unsigned long hw = getauxval(AT_HWCAP);
    const unsigned long hw2 = getauxval(AT_HWCAP2);
    // The kernel reports asimd on every AArch64 CPU it runs on; a zero AT_HWCAP (no auxv) still means NEON.
    f.neon = hw == 0 || (hw & kHwcapAsimd);
    f.arm_dotprod = hw & kHwcapAsimdDp;
    f.arm_sve = hw & kHwcapSve;
    f.arm_fp16 = hw & kHwcapAsimdHp;
    f.arm_i8mm = hw2 & kHwcap2I8mm;
    f.arm_bf16 = hw2 & kHwcap2Bf16;
    return f;
}
#else
CpuFeatures detect() { return {}; }
#endif

constexpr std::pair<IsaLevel, std::string_view> kLevelNames[] = {
    {IsaLevel::ref, "ref"},       {IsaLevel::avx2, "avx2"}, {IsaLevel::avx512, "avx512"},
    {IsaLevel::avx512_vnni, "avx512_vnni"}, {IsaLevel::neon, "neon"}, {IsaLevel::neon_dotprod, "neon_dotprod"},
    {IsaLevel::neon_i8mm, "neon_i8mm"},
};

}  // namespace

std::vector<std::string> CpuFeatures::names() const {
    std::vector<std::string> out;
    const std::pair<bool, const char*> all[] = {
        {sse42, "sse4.2"},         {avx, "avx"},           {avx2, "avx2"},           {fma, "fma"},
        {f16c, "f16c"},            {avx512f, "avx512f"},   {avx512dq, "avx512dq"},   {avx512bw, "avx512bw"},
        {avx512vl, "avx512vl"},    {avx512_vnni, "avx512_vnni"}, {avx512_bf16, "avx512_bf16"},
        {avx_vnni, "avx_vnni"},    {amx_bf16, "amx_bf16"},  {neon, "neon"},         {arm_dotprod, "dotprod"}, {arm_fp16, "fp16"},
        {arm_i8mm, "i8mm"},        {arm_bf16, "bf16"},     {arm_sve, "sve"},
    };
    for (const auto& [present, name] : all)
        if (present) out.emplace_back(name);
    return out;
}

const CpuFeatures& cpu_features() {
    static const CpuFeatures features = detect();
    return features;
}

std::string_view isa_level_name(IsaLevel level) { return name_in(kLevelNames, level, "?"); }

std::optional<IsaLevel> isa_level_from_name(std::string_view name) { return value_in(kLevelNames, name); }

bool cpu_supports(IsaLevel level) {
    const CpuFeatures& f = cpu_features();
    switch (level) {
        case IsaLevel::ref: return true;
#if CQ_X86
        case IsaLevel::avx2: return f.avx2 && f.fma && f.f16c;
        case IsaLevel::avx512: return cpu_supports(IsaLevel::avx2) && f.avx512f && f.avx512bw && f.avx512vl && f.avx512dq;
        case IsaLevel::avx512_vnni: return cpu_supports(IsaLevel::avx512) && f.avx512_vnni;
#elif CQ_ARM64
        case IsaLevel::neon: return f.neon;
        case IsaLevel::neon_dotprod: return f.neon && f.arm_dotprod;
        case IsaLevel::neon_i8mm: return cpu_supports(IsaLevel::neon_dotprod) && f.arm_i8mm;
#endif
        default: return false;
    }
}

std::vector<IsaLevel> supported_isa_levels() {
    std::vector<IsaLevel> out;
    for (const auto& [l, name] : kLevelNames)
        if (cpu_supports(l)) out.push_back(l);
    return out;
}

IsaLevel detected_isa_level() { return supported_isa_levels().back(); }

}  // namespace cq
