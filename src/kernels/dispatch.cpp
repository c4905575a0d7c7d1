// Fills the kernel table once: reference kernels first, then each rung of the ISA ladder up to the
// detected level (or the level CQ_ISA forces) replaces the ops it has a faster kernel for.
#include "cq/kernels.h"

#include <array>
#include <cstdlib>
#include <optional>
#include <string>

#include "cq/dtype.h"
#include "cq/error.h"
#include "formats/formats.h"
#include "kernels/kernel_decls.h"
#if defined(__aarch64__)
#include "kernels/arm/kernel_decls_arm.h"
#include "kernels/arm/packed_arm.h"
#endif

namespace cq {
namespace {

// True if a table filled up to `level` includes the kernels of `rung` (same ISA family, not above).
bool reaches(IsaLevel level, IsaLevel rung) {
    const bool level_arm = static_cast<int>(level) >= static_cast<int>(IsaLevel::neon);
    const bool rung_arm = static_cast<int>(rung) >= static_cast<int>(IsaLevel::neon);
    if (rung == IsaLevel::ref) return true;
    return level_arm == rung_arm && static_cast<int>(level) >= static_cast<int>(rung);
}

template <typename Fn>
void set(Kernel<Fn>& slot, Fn fn, const char* name, IsaLevel isa) {
    slot = {fn, name, isa};
}

#define CQ_SET(slot, fn, isa) set(t.slot, &kernels::fn, #fn, isa)
// The groups of ops that several rungs fill together (isa: the kernel-name suffix, level: its IsaLevel).
#define CQ_SET_CONVERTS(isa, level)                                 \
    CQ_SET(convert_f16_f32, convert_f16_f32__##isa, level);        \
    CQ_SET(convert_f32_f16, convert_f32_f16__##isa, level);        \
    CQ_SET(convert_bf16_f32, convert_bf16_f32__##isa, level);      \
    CQ_SET(convert_f32_bf16, convert_f32_bf16__##isa, level)
#define CQ_SET_INT8(isa, level)                                                         \
    CQ_SET(quantize_rows_u8_dynamic, quantize_rows_u8_dynamic__##isa, level);          \
    CQ_SET(quantize_rows_u8_static, quantize_rows_u8_static__##isa, level);            \
    CQ_SET(gemm_u8s8, gemm_u8s8_f32__##isa, level);                                    \
    CQ_SET(gemm_u7s8, gemm_u7s8_f32__##isa, level)
#define CQ_SET_ACTIVATIONS(isa, level)                       \
    CQ_SET(gelu_erf_f32, gelu_erf_f32__##isa, level);       \
    CQ_SET(softmax_f32, softmax_f32__##isa, level);         \
    CQ_SET(silu_mul_f32, silu_mul_f32__##isa, level)
// Kernel `field` of the quantized type `wt`'s descriptor (wt a DType name).
#define CQ_SET_QUANT(wt, field, fn, isa) set(t.quant[static_cast<size_t>(DType::wt)].field, &kernels::fn, #fn, isa)
// Every format's file-layout GEMM / the three packed GEMMs / the three activation quantizers of a rung.
#define CQ_SET_GEMMS(isa, level)                                  \
    CQ_SET_QUANT(Q8_0, gemm, gemm_q8_0_q8_0__##isa, level);      \
    CQ_SET_QUANT(Q4_0, gemm, gemm_q4_0_q8_0__##isa, level);      \
    CQ_SET_QUANT(Q4_1, gemm, gemm_q4_1_q8_1__##isa, level);      \
    CQ_SET_QUANT(Q5_0, gemm, gemm_q5_0_q8_0__##isa, level);      \
    CQ_SET_QUANT(Q5_1, gemm, gemm_q5_1_q8_1__##isa, level);      \
    CQ_SET_QUANT(Q2_K, gemm, gemm_q2_K_q8_K__##isa, level);      \
    CQ_SET_QUANT(Q3_K, gemm, gemm_q3_K_q8_K__##isa, level);      \
    CQ_SET_QUANT(Q4_K, gemm, gemm_q4_K_q8_K__##isa, level);      \
    CQ_SET_QUANT(Q5_K, gemm, gemm_q5_K_q8_K__##isa, level);      \
    CQ_SET_QUANT(Q6_K, gemm, gemm_q6_K_q8_K__##isa, level)
#define CQ_SET_PACKED(isa, level)                                        \
    CQ_SET_QUANT(Q4_0, gemm_packed, gemm_q4_0x8_q8_0__##isa, level);    \
    CQ_SET_QUANT(Q8_0, gemm_packed, gemm_q8_0x8_q8_0__##isa, level);    \
    CQ_SET_QUANT(Q4_K, gemm_packed, gemm_q4_Kx8_q8_K__##isa, level)
#define CQ_SET_ACT_QUANTIZERS(ns, suffix, level)                                                       \
    set(act[size_t(DType::Q8_0)], &ns::quantize_row_q8_0##suffix, "quantize_row_q8_0__" #level, IsaLevel::level); \
    set(act[size_t(DType::Q8_1)], &ns::quantize_row_q8_1##suffix, "quantize_row_q8_1__" #level, IsaLevel::level); \
    set(act[size_t(DType::Q8_K)], &ns::quantize_row_q8_K##suffix, "quantize_row_q8_K__" #level, IsaLevel::level)

// The pairing and layouts of every quantized type: its activation type (ggml's vec_dot_type), the load-time
// packed layout where one exists, the row grouping.
void describe_quant_types(KernelTable& t) {
    const auto pair = [&](DType w, DType a) {
        QuantKernels& q = t.quant[static_cast<size_t>(w)];
        q.act_type = a;
        q.row_group = 8;  // the packed groups and the widest file-layout row tile (Q4_0's 8 rows)
    };
    for (DType w : {DType::Q4_0, DType::Q5_0, DType::Q8_0}) pair(w, DType::Q8_0);
    for (DType w : {DType::Q4_1, DType::Q5_1, DType::Q8_1}) pair(w, DType::Q8_1);
    for (DType w : {DType::Q2_K, DType::Q3_K, DType::Q4_K, DType::Q5_K, DType::Q6_K, DType::Q8_K}) pair(w, DType::Q8_K);
    pair(DType::IQ4_NL, DType::Q8_0);
    pair(DType::IQ4_XS, DType::Q8_K);
    const auto packed = [&](DType w, PackRowsFn pack, PackedBytesFn bytes) {
        t.quant[static_cast<size_t>(w)].pack_rows = pack;
        t.quant[static_cast<size_t>(w)].packed_bytes = bytes;
    };
    packed(DType::Q4_0, &formats::pack_rows_q4_0x8, &formats::packed_bytes_q4_0x8);
    packed(DType::Q8_0, &formats::pack_rows_q8_0x8, &formats::packed_bytes_q8_0x8);
    packed(DType::Q4_K, &formats::pack_rows_q4_Kx8, &formats::packed_bytes_q4_Kx8);
}

}  // namespace

KernelTable make_kernel_table(IsaLevel level) {
    if (!cpu_supports(level))
        throw InvalidArgument("[dispatch] ISA level '" + std::string(isa_level_name(level)) +
                              "' is not supported by this CPU (" + cpu_features().brand + ")");
    KernelTable t;
    t.level = level;
    CQ_SET_CONVERTS(ref, IsaLevel::ref);
    CQ_SET(dot_u8_s8, dot_u8_s8__ref, IsaLevel::ref);
    CQ_SET(gemm_f32, gemm_f32__ref, IsaLevel::ref);
    CQ_SET(gemm_f32_nn, gemm_f32_nn__ref, IsaLevel::ref);
    CQ_SET(gemm_bf16, gemm_bf16__ref, IsaLevel::ref);
    CQ_SET(gemm_bf16_nn, gemm_bf16_nn__ref, IsaLevel::ref);
    CQ_SET(gemm_bf16_tn, gemm_bf16_tn__ref, IsaLevel::ref);
    CQ_SET(gemv_f32, gemv_f32__ref, IsaLevel::ref);
    describe_quant_types(t);
    std::array<Kernel<QuantizeRowFn>, kMaxGgmlTypes> act{};  // by activation type
    CQ_SET_ACT_QUANTIZERS(formats, _ref, ref);  // the reference ones are the formats' codecs
    CQ_SET_GEMMS(ref, IsaLevel::ref);
    CQ_SET_QUANT(IQ4_NL, gemm, gemm_iq4_nl_q8_0__ref, IsaLevel::ref);
    CQ_SET_QUANT(IQ4_XS, gemm, gemm_iq4_xs_q8_K__ref, IsaLevel::ref);
    CQ_SET_INT8(ref, IsaLevel::ref);
    CQ_SET_ACTIVATIONS(ref, IsaLevel::ref);
    CQ_SET(attention_f32, attention_f32__ref, IsaLevel::ref);
    CQ_SET(attention_u8s8, attention_u8s8__ref, IsaLevel::ref);
    CQ_SET(depthwise_conv_f32, depthwise_conv_f32__ref, IsaLevel::ref);

#if defined(CQ_HAVE_OPENBLAS)
    // Float GEMM is OpenBLAS's job above the reference level; OpenBLAS dispatches by CPU itself.
    if (level != IsaLevel::ref) {
        set(t.gemm_f32, &kernels::gemm_f32__openblas, "gemm_f32__openblas", level);
        set(t.gemm_f32_nn, &kernels::gemm_f32_nn__openblas, "gemm_f32_nn__openblas", level);
    }
#endif

#if defined(__x86_64__)
    if (reaches(level, IsaLevel::avx2)) {
        CQ_SET_CONVERTS(avx2, IsaLevel::avx2);
        CQ_SET(dot_u8_s8, dot_u8_s8__avx2, IsaLevel::avx2);
        CQ_SET(gemv_f32, gemv_f32__avx2, IsaLevel::avx2);
        CQ_SET_GEMMS(avx2, IsaLevel::avx2);
        CQ_SET_QUANT(IQ4_NL, gemm, gemm_iq4_nl_q8_0__avx2, IsaLevel::avx2);
        CQ_SET_QUANT(IQ4_XS, gemm, gemm_iq4_xs_q8_K__avx2, IsaLevel::avx2);
        CQ_SET_PACKED(avx2, IsaLevel::avx2);
        CQ_SET_ACT_QUANTIZERS(kernels, __avx2, avx2);
        CQ_SET_INT8(avx2, IsaLevel::avx2);
        CQ_SET(attention_u8s8, attention_u8s8__avx2, IsaLevel::avx2);
        CQ_SET_ACTIVATIONS(avx2, IsaLevel::avx2);
        CQ_SET(depthwise_conv_f32, depthwise_conv_f32__avx2, IsaLevel::avx2);
    }
    if (reaches(level, IsaLevel::avx512)) {
        CQ_SET_CONVERTS(avx512, IsaLevel::avx512);
        CQ_SET(gemv_f32, gemv_f32__avx512, IsaLevel::avx512);
        CQ_SET(attention_f32, attention_f32__avx512, IsaLevel::avx512);
    }
    if (reaches(level, IsaLevel::avx512_vnni)) {
        CQ_SET(dot_u8_s8, dot_u8_s8__avx512vnni, IsaLevel::avx512_vnni);
        CQ_SET_QUANT(Q8_0, gemm, gemm_q8_0_q8_0__avx512vnni, IsaLevel::avx512_vnni);
        CQ_SET_QUANT(Q4_0, gemm, gemm_q4_0_q8_0__avx512vnni, IsaLevel::avx512_vnni);
        CQ_SET_QUANT(Q4_K, gemm, gemm_q4_K_q8_K__avx512vnni, IsaLevel::avx512_vnni);
        CQ_SET_QUANT(Q6_K, gemm, gemm_q6_K_q8_K__avx512vnni, IsaLevel::avx512_vnni);
        CQ_SET_PACKED(avx512vnni, IsaLevel::avx512_vnni);
        CQ_SET_INT8(avx512vnni, IsaLevel::avx512_vnni);
        CQ_SET(attention_u8s8, attention_u8s8__avx512vnni, IsaLevel::avx512_vnni);
    }
#elif defined(__aarch64__)
    if (reaches(level, IsaLevel::neon)) {
        CQ_SET_CONVERTS(neon, IsaLevel::neon);
        CQ_SET(dot_u8_s8, dot_u8_s8__neon, IsaLevel::neon);
        // cq's own float products (kernels/arm/kernel_decls_arm.h: their summation order); where OpenBLAS is linked
        // (a full native build) its tuned GEMMs stay: the NEON ones are unmeasured on hardware
#if !defined(CQ_HAVE_OPENBLAS)
        CQ_SET(gemm_f32, gemm_f32__neon, IsaLevel::neon);
        CQ_SET(gemm_f32_nn, gemm_f32_nn__neon, IsaLevel::neon);
#endif
        CQ_SET(gemv_f32, gemv_f32__neon, IsaLevel::neon);
        CQ_SET_GEMMS(neon, IsaLevel::neon);
        CQ_SET_QUANT(IQ4_NL, gemm, gemm_iq4_nl_q8_0__neon, IsaLevel::neon);
        CQ_SET_QUANT(IQ4_XS, gemm, gemm_iq4_xs_q8_K__neon, IsaLevel::neon);
        CQ_SET_ACTIVATIONS(neon, IsaLevel::neon);
        CQ_SET(gemm_u8s8, gemm_u8s8_f32__neon, IsaLevel::neon);
        CQ_SET(gemm_u7s8, gemm_u8s8_f32__neon, IsaLevel::neon);  // exact for any u8, so 7-bit inputs too
    }
    if (reaches(level, IsaLevel::neon_dotprod)) {
        CQ_SET_GEMMS(neon_dotprod, IsaLevel::neon_dotprod);
        CQ_SET_QUANT(IQ4_NL, gemm, gemm_iq4_nl_q8_0__neon_dotprod, IsaLevel::neon_dotprod);
        CQ_SET_QUANT(IQ4_XS, gemm, gemm_iq4_xs_q8_K__neon_dotprod, IsaLevel::neon_dotprod);
        // sdot on the 8-row interleaved layouts (kernels/arm/packed_arm.h); Q4_K stays on its file layout
        CQ_SET_QUANT(Q4_0, gemm_packed, gemm_q4_0x8_q8_0__neon_dotprod, IsaLevel::neon_dotprod);
        CQ_SET_QUANT(Q8_0, gemm_packed, gemm_q8_0x8_q8_0__neon_dotprod, IsaLevel::neon_dotprod);
        CQ_SET(gemm_u8s8, gemm_u8s8_f32__neon_dotprod, IsaLevel::neon_dotprod);
        CQ_SET(gemm_u7s8, gemm_u8s8_f32__neon_dotprod, IsaLevel::neon_dotprod);
    }
    if (reaches(level, IsaLevel::neon_i8mm)) {
        CQ_SET(gemm_u8s8, gemm_u8s8_f32__neon_i8mm, IsaLevel::neon_i8mm);
        CQ_SET(gemm_u7s8, gemm_u8s8_f32__neon_i8mm, IsaLevel::neon_i8mm);
    }
#endif
#if defined(CQ_HAVE_DNNL)
    // oneDNN's sgemm chooses AVX-512 kernels by ISA on any vendor's CPU, where OpenBLAS 0.3.21 runs
    // Haswell kernels on CPUs newer than it; the rung preferences keep OpenBLAS where it measured faster.
    if (reaches(level, IsaLevel::avx512)) {
        CQ_SET(gemm_f32, gemm_f32__dnnl, IsaLevel::avx512);
        CQ_SET(gemm_f32_nn, gemm_f32_nn__dnnl, IsaLevel::avx512);
        // BF16 products need vdpbf16ps, a feature within the avx512 rungs rather than a rung of its own.
        if (cpu_features().avx512_bf16) {
            CQ_SET(gemm_bf16, gemm_bf16__dnnl, IsaLevel::avx512);
            CQ_SET(gemm_bf16_nn, gemm_bf16_nn__dnnl, IsaLevel::avx512);
            CQ_SET(gemm_bf16_tn, gemm_bf16_tn__dnnl, IsaLevel::avx512);
        }
    }
#endif
    for (QuantKernels& q : t.quant) {
        if (q.act_type != DType::F32) q.quantize_act = act[static_cast<size_t>(q.act_type)];
        q.gemv = q.gemm;  // one kernel for every m until a rung preference parts them
        q.gemv_packed = q.gemm_packed;
    }
    return t;
}

namespace {

// Calls f(op, slot of each table…) for every op of the kernel table, named as `cq info --kernels` lists
// them: the float and INT8 ops by field, then per quantized type gemm_<type>, gemm_<type>x8 (its packed
// layout), gemv_<type> and gemv_<type>x8 (the same at m = 1) and quantize_row_<type> (activation types only). All tables share one layout, so a slot of one
// can be copied into another.
template <typename F, typename... Tables>
void visit_slots(F&& f, Tables&... t) {
    f(std::string("convert_f16_f32"), t.convert_f16_f32...);
    f(std::string("convert_f32_f16"), t.convert_f32_f16...);
    f(std::string("convert_bf16_f32"), t.convert_bf16_f32...);
    f(std::string("convert_f32_bf16"), t.convert_f32_bf16...);
    f(std::string("dot_u8_s8"), t.dot_u8_s8...);
    f(std::string("gemm_f32"), t.gemm_f32...);
    f(std::string("gemm_f32_nn"), t.gemm_f32_nn...);
    f(std::string("gemv_f32"), t.gemv_f32...);
    f(std::string("gemm_bf16"), t.gemm_bf16...);
    f(std::string("gemm_bf16_nn"), t.gemm_bf16_nn...);
    f(std::string("gemm_bf16_tn"), t.gemm_bf16_tn...);
    f(std::string("quantize_rows_u8_dynamic"), t.quantize_rows_u8_dynamic...);
    f(std::string("quantize_rows_u8_static"), t.quantize_rows_u8_static...);
    f(std::string("gemm_u8s8"), t.gemm_u8s8...);
    f(std::string("gemm_u7s8"), t.gemm_u7s8...);
    f(std::string("gelu_erf_f32"), t.gelu_erf_f32...);
    f(std::string("softmax_f32"), t.softmax_f32...);
    f(std::string("attention_f32"), t.attention_f32...);
    f(std::string("attention_u8s8"), t.attention_u8s8...);
    f(std::string("silu_mul_f32"), t.silu_mul_f32...);
    f(std::string("depthwise_conv_f32"), t.depthwise_conv_f32...);
    for (size_t id = 0; id < kMaxGgmlTypes; ++id) {
        const auto type = dtype_from_ggml_id(static_cast<uint32_t>(id));
        if (!type) continue;
        const std::string name(dtype_name(*type));
        f("gemm_" + name, t.quant[id].gemm...);
        f("gemm_" + name + "x8", t.quant[id].gemm_packed...);
        f("gemv_" + name, t.quant[id].gemv...);
        f("gemv_" + name + "x8", t.quant[id].gemv_packed...);
        if (((t.quant[id].act_type == *type) && ...)) f("quantize_row_" + name, t.quant[id].quantize_act...);
    }
}

// A rung preference: on CPUs of `cpu_class`, `op` runs the kernel of `rung` (not above the table's
// level), because bench_dispatch measured it the fastest there; `why` says what was measured. An entry
// whose rung is the ladder's own choice records the measurement that confirms it. Ops without an entry
// stay on the highest rung that has them. A new format or kernel adds its lines here once measured.
struct RungPreference {
    const char* cpu_class;
    const char* op;
    IsaLevel rung;
    const char* why;
    bool unless_amx = false;  // not where the CPU has AMX BF16 tiles (oneDNN's bf16 kernels use them there)
};

constexpr RungPreference kRungPreferences[] = {
    // AMD Zen 4 (EPYC family 25 model 17, 2-core VM): 512-bit ops run as two 256-bit halves, so zmm FMA
    // peaks where ymm does (bench_peaks: 116 GFLOP/s per core both) and vpdpbusd is 2× the AVX2 INT8 step.
    // bench_dispatch, 2026-12-05, medians of 3-7 rounds; decode = m 1, n 4096, k 4096 and n 32000, k 768,
    // from memory; prompt = m 512, n 2048, k 4096; INT8 = BERT-base at 1024 tokens. Ratios are rung ÷ the
    // other rung; ranges span runs on a machine shared with builds (±5 % is a tie).
    {"amd_zen4", "gemm_q4_0", IsaLevel::avx2, "vnni 0.82x avx2 on a 512-token prompt on Zen 4: keep avx2"},
    {"amd_zen4", "gemv_q4_0", IsaLevel::avx2, "vnni 0.77-0.87x avx2 at decode, k 4096, but 1.37x at k 768 on Zen 4: keep avx2 (Q4_0 runs packed on both)"},
    {"amd_zen4", "gemm_q4_0x8", IsaLevel::avx512_vnni, "vnni 1.13-1.19x avx2 on a 512-token prompt on Zen 4"},
    {"amd_zen4", "gemv_q4_0x8", IsaLevel::avx512_vnni, "vnni 0.99-1.06x avx2 at decode, k 4096 and k 768, on Zen 4 (a tie)"},
    {"amd_zen4", "gemm_q8_0", IsaLevel::avx512_vnni, "vnni 1.8x avx2 on a 512-token prompt on Zen 4 (1.28x before its tile kept the accumulators in registers)"},
    {"amd_zen4", "gemv_q8_0", IsaLevel::avx2, "vnni 0.95-0.98x avx2 at decode, k 4096, 0.96x at k 768 on Zen 4: keep avx2"},
    {"amd_zen4", "gemm_q8_0x8", IsaLevel::avx512_vnni, "vnni 1.34x avx2 on a 512-token prompt on Zen 4"},
    {"amd_zen4", "gemv_q8_0x8", IsaLevel::avx2, "vnni 0.93-1.04x avx2 at decode, k 4096, 0.92x at k 768 on Zen 4: keep avx2"},
    {"amd_zen4", "gemm_q4_K", IsaLevel::avx512_vnni, "vnni 1.25x avx2 on a 512-token prompt on Zen 4"},
    {"amd_zen4", "gemv_q4_K", IsaLevel::avx2, "vnni (1-row decode tile) 1.50x avx2 at decode, k 4096, but 0.87x at k 768 on Zen 4: keep avx2 (rows in multiples of 8 run the packed Q4_Kx8)"},
    {"amd_zen4", "gemm_q4_Kx8", IsaLevel::avx512_vnni, "vnni 0.96-1.06x avx2 on a 512-token prompt on Zen 4 (median 1.05)"},
    {"amd_zen4", "gemv_q4_Kx8", IsaLevel::avx2, "vnni 0.87-1.01x avx2 at decode, k 4096, 0.94x at k 768 on Zen 4: keep avx2"},
    {"amd_zen4", "gemm_q6_K", IsaLevel::avx512_vnni, "vnni 1.33x avx2 on a 512-token prompt on Zen 4"},
    {"amd_zen4", "gemv_q6_K", IsaLevel::avx512_vnni, "vnni (1-row decode tile) 1.58-1.72x avx2 (2 rows) at decode, k 4096 and k 768, on Zen 4 (0.83-1.05x while both ran 2 rows)"},
    {"amd_zen4", "gemm_u8s8", IsaLevel::avx512_vnni, "vnni 3.4-3.6x avx2 on BERT-base shapes on Zen 4 (6x4 tiles)"},
    {"amd_zen4", "gemm_u7s8", IsaLevel::avx512_vnni, "vnni (its u8s8 kernel, 6x4 tiles) 2.0-2.2x the avx2 vpmaddubsw kernel on BERT-base shapes on Zen 4"},
    {"amd_zen4", "quantize_rows_u8_dynamic", IsaLevel::avx512_vnni, "vnni 1.06-1.14x avx2 on Zen 4 (whole vectors stored plainly, not by vpmovdb to memory)"},
    {"amd_zen4", "quantize_rows_u8_static", IsaLevel::avx512_vnni, "vnni 1.08-1.16x avx2 on Zen 4 (whole vectors stored plainly, not by vpmovdb to memory)"},
    {"amd_zen4", "dot_u8_s8", IsaLevel::avx512_vnni, "vnni 1.7x avx2 on Zen 4"},
    {"amd_zen4", "gemm_f32", IsaLevel::avx512, "oneDNN 1.04-1.12x OpenBLAS (Haswell kernels) on BERT-base shapes on Zen 4, 0.96-1.16x on attention heads"},
    {"amd_zen4", "gemm_f32_nn", IsaLevel::avx512, "oneDNN 1.07-1.12x OpenBLAS (Haswell kernels) on BERT-base shapes on Zen 4, 1.06-1.16x on attention heads"},
    {"amd_zen4", "gemv_f32", IsaLevel::avx512, "avx512 1.00-1.22x avx2 at decode on Zen 4"},
    {"amd_zen4", "convert_f16_f32", IsaLevel::avx512, "avx512 1.00-1.02x avx2 on Zen 4 (a tie)"},
    {"amd_zen4", "convert_f32_f16", IsaLevel::avx2, "avx512 0.91-0.93x avx2 on Zen 4: keep avx2"},
    {"amd_zen4", "convert_bf16_f32", IsaLevel::avx512, "avx512 1.01-1.03x avx2 on Zen 4"},
    {"amd_zen4", "convert_f32_bf16", IsaLevel::avx512, "avx512 1.03-1.10x avx2 on Zen 4"},

    // Intel Sapphire / Emerald Rapids (Golden / Raptor Cove server cores; measured on an Emerald Rapids Xeon,
    // family 6 model 207, 2-core VM): full-width zmm, so the VNNI and oneDNN rungs lead on products; but the
    // unpacked Q4_0 tile and decode at k 768 lose to AVX2 as on Zen 4. bench_dispatch, 2026-12-06, 5 interleaved
    // rounds, three runs (one at nice -15 beside builds); same shapes as the Zen 4 lines above.
    {"intel_sapphire_rapids", "gemm_q4_0", IsaLevel::avx2, "vnni 0.61-0.70x avx2 on a 512-token prompt on Emerald Rapids: keep avx2"},
    {"intel_sapphire_rapids", "gemv_q4_0", IsaLevel::avx2, "vnni 0.87-0.92x avx2 at decode, k 768, 0.77-1.05x at k 4096 on Emerald Rapids: keep avx2"},
    {"intel_sapphire_rapids", "gemm_q4_0x8", IsaLevel::avx512_vnni, "vnni 1.21-1.49x avx2 on a 512-token prompt on Emerald Rapids"},
    {"intel_sapphire_rapids", "gemm_q8_0x8", IsaLevel::avx512_vnni, "vnni 2.00-2.02x avx2 on a 512-token prompt on Emerald Rapids"},
    {"intel_sapphire_rapids", "gemv_q4_Kx8", IsaLevel::avx2, "vnni 0.89-0.96x avx2 at decode, k 768, 0.98-1.05x at k 4096 on Emerald Rapids: keep avx2"},
    {"intel_sapphire_rapids", "gemm_q4_Kx8", IsaLevel::avx512_vnni, "vnni 1.12-1.18x avx2 on a 512-token prompt on Emerald Rapids"},
    {"intel_sapphire_rapids", "gemm_q6_K", IsaLevel::avx512_vnni, "vnni 1.26-1.31x avx2 on a 512-token prompt on Emerald Rapids"},
    {"intel_sapphire_rapids", "gemm_u8s8", IsaLevel::avx512_vnni, "vnni 1.8-3.3x avx2 on BERT-base shapes on Emerald Rapids"},
    {"intel_sapphire_rapids", "gemm_u7s8", IsaLevel::avx512_vnni, "vnni (its u8s8 kernel) 1.04-1.94x the avx2 vpmaddubsw kernel on Emerald Rapids"},
    {"intel_sapphire_rapids", "quantize_rows_u8_static", IsaLevel::avx2, "vnni 0.89-1.02x avx2 on Emerald Rapids: keep avx2"},
    {"intel_sapphire_rapids", "gemm_f32", IsaLevel::avx512, "oneDNN 4.7-5.1x OpenBLAS on BERT-base shapes and attention heads on Emerald Rapids (OpenBLAS 0.3.21 does not know the CPU and runs its SSE3 Prescott kernels)"},
    {"intel_sapphire_rapids", "dot_u8_s8", IsaLevel::avx512_vnni, "vnni 2.95-3.07x avx2 on Emerald Rapids"},
    // vdpbf16ps zmm peaks at half of FP32 FMA here (bench_peaks: 82 against 165 GFLOP/s on one core; the VM exposes no
    // AMX), so BF16 training products run as bf16-rounded operands on the f32 GEMMs (train_ops' bf16_via_f32: the
    // same numbers): oneDNN's native bf16 training ran at 0.57x fp32's tokens/s (bench/train_precision.sh).
    {"intel_sapphire_rapids", "gemm_bf16", IsaLevel::ref, "vdpbf16ps peaks at 0.5x FP32 FMA on Emerald Rapids without AMX: bf16 training rounds operands onto the f32 GEMMs", true},
    {"intel_sapphire_rapids", "gemm_bf16_nn", IsaLevel::ref, "as gemm_bf16", true},
    {"intel_sapphire_rapids", "gemm_bf16_tn", IsaLevel::ref, "as gemm_bf16", true},
};

// CPUID vendor + family (+ model where one family spans core designs, + AVX-512 within AMD family 25: Zen 3 has
// none, Zen 4 has it) → the class rung preferences are measured per. The first matching rule wins.
struct CpuClassRule {
    const char* vendor;
    int family;  // 0: any
    int model;   // 0: any
    int avx512;  // 1: needs AVX-512 F, 0: must lack it, -1: either
    const char* cpu_class;
};
constexpr CpuClassRule kCpuClasses[] = {
    {"AuthenticAMD", 25, 0, 0, "amd_zen3"},
    {"AuthenticAMD", 25, 0, 1, "amd_zen4"},
    {"AuthenticAMD", 26, 0, -1, "amd_zen5"},
    {"GenuineIntel", 6, 143, 1, "intel_sapphire_rapids"},  // Sapphire Rapids
    {"GenuineIntel", 6, 207, 1, "intel_sapphire_rapids"},  // Emerald Rapids: the same core, measured here
    {"GenuineIntel", 0, 0, -1, "intel"},
};

}  // namespace

std::string_view dispatch_cpu_class() {
    const CpuFeatures& f = cpu_features();
    for (const CpuClassRule& r : kCpuClasses)
        if (f.vendor == r.vendor && (r.family == 0 || r.family == f.family) && (r.model == 0 || r.model == f.model) &&
            (r.avx512 < 0 || r.avx512 == int(f.avx512f)))
            return r.cpu_class;
    return "";
}

KernelTable make_tuned_kernel_table(IsaLevel level, std::string_view cpu_class) {
    KernelTable t = make_kernel_table(level);
    std::array<std::optional<KernelTable>, static_cast<size_t>(IsaLevel::neon_i8mm) + 1> rungs;  // built on demand
    for (const RungPreference& p : kRungPreferences) {
        if (cpu_class != p.cpu_class || !reaches(level, p.rung) || (p.unless_amx && cpu_features().amx_bf16)) continue;
        auto& from = rungs[static_cast<size_t>(p.rung)];
        if (!from) from = make_kernel_table(p.rung);
        visit_slots(
                [&](const std::string& op, auto& slot, const auto& lower) {
                    if (op != p.op || !slot.fn || !lower.fn) return;
                    slot = lower;
                    slot.why = p.why;
                },
                t, *from);
    }
    // The activation quantizers live in their own type's slot; the weight types read them from there.
    for (QuantKernels& q : t.quant)
        if (q.act_type != DType::F32) q.quantize_act = t.quant[static_cast<size_t>(q.act_type)].quantize_act;
    for (const CpuClassRule& r : kCpuClasses)
        if (cpu_class == r.cpu_class) t.tuned_for = r.cpu_class;
    return t;
}

namespace {
KernelTable make_process_table() {
    const char* forced = std::getenv("CQ_ISA");
    if (!forced || !*forced) return make_tuned_kernel_table(detected_isa_level(), dispatch_cpu_class());
    const auto level = isa_level_from_name(forced);
    if (!level) {
        std::string valid;
        for (IsaLevel l : {IsaLevel::ref, IsaLevel::avx2, IsaLevel::avx512, IsaLevel::avx512_vnni, IsaLevel::neon,
                           IsaLevel::neon_dotprod, IsaLevel::neon_i8mm})
            valid += (valid.empty() ? "" : ", ") + std::string(isa_level_name(l));
        throw InvalidArgument("[dispatch] CQ_ISA='" + std::string(forced) + "' is not an ISA level; use one of: " + valid);
    }
    return make_kernel_table(*level);  // a forced level is the plain ladder: every rung's kernels stay reachable
}
}  // namespace

#if defined(CQ_HAVE_OPENBLAS)
extern "C" void openblas_set_num_threads(int num_threads);
#endif

const KernelTable& kernel_table() {
    static const KernelTable table = [] {
#if defined(CQ_HAVE_OPENBLAS)
        // Kernels are single-threaded; the ops split work across cq's own pool. OpenBLAS's own
        // threads would nest inside ours (and busy-wait badly on a loaded machine).
        openblas_set_num_threads(1);
#endif
        return make_process_table();
    }();
    return table;
}

std::vector<KernelListing> list_kernels(const KernelTable& t) {
    std::vector<KernelListing> out;
    const std::string ladder = "the highest rung up to " + std::string(isa_level_name(t.level)) + " that has it" +
                               (*t.tuned_for ? " (no rung preference for " + std::string(t.tuned_for) + ")" : " (plain ladder)");
    visit_slots(
            [&](const std::string& op, const auto& k) {
                if (k.fn) out.push_back({op, k.name, std::string(isa_level_name(k.isa)), *k.why ? k.why : ladder});
            },
            t);
    return out;
}

}  // namespace cq
