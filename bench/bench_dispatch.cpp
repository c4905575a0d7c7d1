// The dispatch matrix: for every op and format of the kernel table, each ISA rung this CPU runs is timed
// on representative shapes (decode GEMV, prompt GEMM, BERT-base INT8 and FP32 GEMMs), next to the rung
// the process table (kernel_table(): detected level, tuned per CPU class) chose and why. A choice is
// "ok" when no other rung of the CPU is faster by more than the threshold; anything else is a bug of the
// dispatch table in src/kernels/dispatch.cpp. Single-threaded, as the ops call kernels.
// Rounds interleave the rungs (rotated order) so that load from other work spreads over all of them;
// a cell is the median over rounds of the median batch time. The scalar reference runs a smaller m on
// prompt shapes and its time is scaled to the full shape (marked ~).
// Usage: bench_dispatch [--op SUBSTR]... [--rounds R] [--min-time S] [--threshold F] [--json]
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "cq/cpu_features.h"
#include "cq/dtype.h"
#include "cq/int8_gemm.h"
#include "cq/kernels.h"
#include "peak_probes.h"

namespace {

using cq::DType;
using cq::IsaLevel;
using cq::KernelTable;

// What one table holds for an op: the kernel's name and rung (empty name: the table has none).
struct Slot {
    std::string kernel;
    IsaLevel isa = IsaLevel::ref;
};
template <typename Fn>
Slot slot_of(const cq::Kernel<Fn>& k) {
    return k.fn ? Slot{k.name, k.isa} : Slot{};
}

// A callable bound to one table's kernel, and the work one call does in the case's unit.
struct Bound {
    std::function<void()> call;
    double work = 0;
};
// Builds a case's data once (shared by all its rungs) and returns the binder: table, reduced → Bound.
// `reduced`: the scalar reference, run on a smaller m where the full shape takes seconds.
using Binder = std::function<Bound(const KernelTable&, bool reduced)>;

struct Case {
    std::string op;     // as list_kernels names it
    std::string shape;  // e.g. "m=512 n=2048 k=4096"
    std::string unit;   // "GOP/s" (2·m·n·k per second) or "GB/s"
    std::function<Slot(const KernelTable&)> slot;
    std::function<Binder()> setup;
};

std::vector<float> gaussian(size_t n, uint32_t seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> d(0.0f, 1.0f);
    std::vector<float> v(n);
    for (auto& x : v) x = d(rng);
    return v;
}

// The L3 of the machines this runs on is at most 32 MiB: decode weights cycle through copies that
// together exceed it by 4×, so every call streams from memory as a model's decode step does.
constexpr size_t kDecodeBytes = size_t(128) << 20;

// n rows of k values of `type` through its codec: 64 distinct Gaussian rows, repeated (the codec of the
// k-quants is slow, and the kernels' speed does not depend on which values the rows hold).
std::vector<uint8_t> quantized_rows(DType type, int64_t n, int64_t k) {
    const auto& tr = cq::dtype_traits(type);
    const size_t row_bytes = size_t(k / tr.block_size) * tr.bytes_per_block;
    constexpr int64_t kDistinct = 64;
    std::vector<uint8_t> distinct(row_bytes * kDistinct);
    for (int64_t i = 0; i < kDistinct; ++i) {
        const auto x = gaussian(size_t(k), uint32_t(i));
        tr.from_float(x.data(), distinct.data() + size_t(i) * row_bytes, k);
    }
    std::vector<uint8_t> w(row_bytes * size_t(n));
    for (int64_t i = 0; i < n; ++i)
        std::memcpy(w.data() + size_t(i) * row_bytes, distinct.data() + size_t(i % kDistinct) * row_bytes, row_bytes);
    return w;
}

std::string shape_mnk(int64_t m, int64_t n, int64_t k) {
    return "m=" + std::to_string(m) + " n=" + std::to_string(n) + " k=" + std::to_string(k);
}

// Quantized GEMM of `type` on the file layout or the packed one: decode (m = 1, weights from memory)
// and prompt (m = 512: one thread's share of a 4096-row projection on 2 threads).
void add_quant_gemm_cases(std::vector<Case>& cases, DType type, bool packed) {
    // The op as listed: gemv_* at m = 1, gemm_* above (dispatch may choose their rungs apart).
    const std::string name = std::string(cq::dtype_name(type)) + (packed ? "x8" : "");
    struct Shape {
        int64_t m, n, k, m_reduced;
        bool cycle;
    };
    // Decode: a LLaMA-7B projection (k 4096) and a small model's vocabulary projection (k 768, 32000 rows);
    // prompt: 512 tokens.
    for (const Shape s : {Shape{1, 4096, 4096, 1, true}, Shape{1, 32000, 768, 1, true}, Shape{512, 2048, 4096, 16, false}}) {
        auto slot = [type, packed, m = s.m](const KernelTable& t) {
            const cq::QuantKernels& q = t.quant_kernels(type);
            return packed && !q.runs_packed() ? Slot{} : slot_of(q.kernel_for(m, packed));
        };
        cases.push_back({(s.m == 1 ? "gemv_" : "gemm_") + name, shape_mnk(s.m, s.n, s.k), "GOP/s", slot, [type, packed, s]() -> Binder {
                             const KernelTable ref = cq::make_kernel_table(IsaLevel::ref);
                             const cq::QuantKernels& q0 = ref.quant_kernels(type);
                             const KernelTable& any = cq::kernel_table();  // the layout is the same on every rung
                             const cq::QuantKernels& qp = any.quant_kernels(type);
                             const auto& at = cq::dtype_traits(q0.act_type);
                             const auto& wt = cq::dtype_traits(type);
                             const size_t arb = size_t(s.k / at.block_size) * at.bytes_per_block;
                             size_t wrb = size_t(s.k / wt.block_size) * wt.bytes_per_block;
                             auto w = std::make_shared<std::vector<uint8_t>>(quantized_rows(type, s.n, s.k));
                             if (packed) {
                                 auto p = std::make_shared<std::vector<uint8_t>>(qp.packed_bytes(s.n, s.k));
                                 qp.pack_rows(w->data(), wrb, s.n, s.k, p->data());
                                 w = p;
                                 wrb = qp.packed_row_bytes(s.k);
                             }
                             const size_t matrix = w->size();
                             const size_t copies = s.cycle ? std::max<size_t>(1, kDecodeBytes / matrix) : 1;
                             auto all = std::make_shared<std::vector<uint8_t>>(matrix * copies);
                             for (size_t c = 0; c < copies; ++c) std::memcpy(all->data() + c * matrix, w->data(), matrix);
                             const auto x = gaussian(size_t(s.m * s.k), 7);
                             auto a = std::make_shared<std::vector<uint8_t>>(arb * size_t(s.m));
                             for (int64_t t = 0; t < s.m; ++t)
                                 q0.quantize_act.fn(x.data() + t * s.k, a->data() + size_t(t) * arb, s.k);
                             auto c = std::make_shared<std::vector<float>>(size_t(s.m * s.n));
                             return [=](const KernelTable& t, bool reduced) {
                                 const cq::QuantKernels& q = t.quant_kernels(type);
                                 const auto gemm = q.kernel_for(s.m, packed).fn;
                                 const int64_t m = reduced ? s.m_reduced : s.m;
                                 auto next = std::make_shared<size_t>(0);
                                 return Bound{[=] {
                                                  const uint8_t* wc = all->data() + (*next)++ % copies * matrix;
                                                  gemm(m, s.n, s.k, a->data(), arb, wc, wrb, c->data(), s.n);
                                              },
                                              2.0 * double(m) * double(s.n) * double(s.k) / 1e9};
                             };
                         }});
    }
}

// The INT8 W8A8 GEMMs on BERT-base at 8 × 128 tokens: attention projection, FFN up, FFN down.
void add_int8_gemm_cases(std::vector<Case>& cases, bool seven_bit) {
    const std::string op = seven_bit ? "gemm_u7s8" : "gemm_u8s8";
    for (const auto& [n, k] : {std::pair<int64_t, int64_t>{768, 768}, {3072, 768}, {768, 3072}}) {
        const int64_t m = 1024;
        cases.push_back({op, shape_mnk(m, n, k), "GOP/s",
                         [seven_bit](const KernelTable& t) { return slot_of(seven_bit ? t.gemm_u7s8 : t.gemm_u8s8); },
                         [=]() -> Binder {
                             const int32_t a_max = seven_bit ? cq::kU7QMax : cq::kU8QMax;
                             const int64_t lda = cq::round_up(k, 4);
                             std::mt19937 rng(1);
                             auto a = std::make_shared<std::vector<uint8_t>>(size_t(m * lda));
                             for (auto& v : *a) v = uint8_t(rng() % uint32_t(a_max + 1));
                             std::vector<int8_t> w(size_t(n * k));
                             for (auto& v : w) v = int8_t(rng());
                             auto packed = std::make_shared<std::vector<int8_t>>(size_t(cq::packed_s8_bytes(n, k)));
                             cq::pack_s8_panels(w.data(), n, k, k, packed->data());
                             auto sums = std::make_shared<std::vector<int32_t>>(size_t(n));
                             cq::s8_row_sums(w.data(), n, k, k, sums->data());
                             auto zp = std::make_shared<std::vector<int32_t>>(size_t(m), (a_max + 1) / 2);
                             auto w_scale = std::make_shared<std::vector<float>>(size_t(n), 0.01f);
                             auto bias = std::make_shared<std::vector<float>>(size_t(n), 0.5f);
                             auto a_scale = std::make_shared<std::vector<float>>(size_t(m), 0.02f);
                             auto c = std::make_shared<std::vector<float>>(size_t(m * n));
                             return [=](const KernelTable& t, bool reduced) {
                                 const auto gemm = seven_bit ? t.gemm_u7s8.fn : t.gemm_u8s8.fn;
                                 const int64_t mm = reduced ? 64 : m;
                                 return Bound{[=] {
                                                  gemm(mm, n, k, a->data(), lda, a_scale->data(), zp->data(), 1, packed->data(),
                                                       sums->data(), w_scale->data(), bias->data(), c->data(), n);
                                              },
                                              2.0 * double(mm) * double(n) * double(k) / 1e9};
                             };
                         }});
    }
}

// FP32 products: BERT-base at 8 × 128 tokens (gemm_f32, weights [out, in]; gemm_f32_nn, weights [in, out]),
// one attention head's QKᵀ / PV at 128 tokens, and a decode GEMV over a 64 MiB matrix.
void add_float_cases(std::vector<Case>& cases) {
    for (const bool nn : {false, true})
        for (const auto& [m, n, k] : {std::tuple<int64_t, int64_t, int64_t>{1024, 768, 768}, {1024, 3072, 768}, {1024, 768, 3072},
                                      {128, 128, 64}, {128, 64, 128}}) {
            cases.push_back({nn ? "gemm_f32_nn" : "gemm_f32", shape_mnk(m, n, k), "GOP/s",
                             [nn](const KernelTable& t) { return nn ? slot_of(t.gemm_f32_nn) : slot_of(t.gemm_f32); },
                             [=]() -> Binder {
                                 auto a = std::make_shared<std::vector<float>>(gaussian(size_t(m * k), 1));
                                 auto b = std::make_shared<std::vector<float>>(gaussian(size_t(n * k), 2));
                                 auto c = std::make_shared<std::vector<float>>(size_t(m * n));
                                 return [=](const KernelTable& t, bool reduced) {
                                     const int64_t mm = reduced ? std::min<int64_t>(16, m) : m;
                                     if (nn)
                                         return Bound{[=] { t.gemm_f32_nn.fn(mm, n, k, a->data(), k, b->data(), n, c->data(), n); },
                                                      2.0 * double(mm) * double(n) * double(k) / 1e9};
                                     return Bound{[=] { t.gemm_f32.fn(mm, n, k, a->data(), k, b->data(), k, c->data(), n); },
                                                  2.0 * double(mm) * double(n) * double(k) / 1e9};
                                 };
                             }});
        }
    const int64_t n = 4096, k = 4096;
    cases.push_back({"gemv_f32", shape_mnk(1, n, k), "GOP/s", [](const KernelTable& t) { return slot_of(t.gemv_f32); },
                     [=]() -> Binder {
                         auto w = std::make_shared<std::vector<float>>(gaussian(size_t(n * k), 1));
                         auto x = std::make_shared<std::vector<float>>(gaussian(size_t(k), 2));
                         auto y = std::make_shared<std::vector<float>>(size_t(n));
                         return [=](const KernelTable& t, bool) {
                             return Bound{[=] { t.gemv_f32.fn(n, k, w->data(), k, x->data(), y->data()); }, 2.0 * double(n * k) / 1e9};
                         };
                     }});
}

// A conversion in its direction: 16-bit → f32 or f32 → 16-bit.
void run_convert(cq::ConvertF16ToF32Fn fn, uint16_t* h, float* f, int64_t n) { fn(h, f, n); }
void run_convert(cq::ConvertF32ToF16Fn fn, uint16_t* h, float* f, int64_t n) { fn(f, h, n); }

// Element-wise ops, timed in GB/s of input + output: conversions (1 Mi values), activation quantizers
// (512 rows of 4096), the u8 activation quantizers and the encoder activations (BERT-base FFN width).
void add_streaming_cases(std::vector<Case>& cases) {
    const int64_t kValues = int64_t(1) << 20;
    auto add_convert = [&](const char* op, auto member, bool bf16) {
        cases.push_back({op, "n=" + std::to_string(kValues), "GB/s", [member](const KernelTable& t) { return slot_of(t.*member); },
                         [=]() -> Binder {
                             auto f = std::make_shared<std::vector<float>>(gaussian(size_t(kValues), 3));
                             auto h = std::make_shared<std::vector<uint16_t>>(size_t(kValues));
                             const KernelTable ref = cq::make_kernel_table(IsaLevel::ref);
                             if (bf16) ref.convert_f32_bf16.fn(f->data(), h->data(), kValues);
                             else ref.convert_f32_f16.fn(f->data(), h->data(), kValues);
                             return [=](const KernelTable& t, bool) {
                                 const auto fn = (t.*member).fn;
                                 return Bound{[=] { run_convert(fn, h->data(), f->data(), kValues); },
                                              6.0 * double(kValues) / 1e9};
                             };
                         }});
    };
    add_convert("convert_f16_f32", &KernelTable::convert_f16_f32, false);
    add_convert("convert_f32_f16", &KernelTable::convert_f32_f16, false);
    add_convert("convert_bf16_f32", &KernelTable::convert_bf16_f32, true);
    add_convert("convert_f32_bf16", &KernelTable::convert_f32_bf16, true);

    for (const DType act : {DType::Q8_0, DType::Q8_1, DType::Q8_K}) {
        const int64_t rows = 512, k = 4096;
        cases.push_back({"quantize_row_" + std::string(cq::dtype_name(act)), "rows=512 k=4096", "GB/s",
                         [act](const KernelTable& t) { return slot_of(t.quant_kernels(act).quantize_act); },
                         [=]() -> Binder {
                             auto x = std::make_shared<std::vector<float>>(gaussian(size_t(rows * k), 4));
                             const auto& at = cq::dtype_traits(act);
                             const size_t arb = size_t(k / at.block_size) * at.bytes_per_block;
                             auto y = std::make_shared<std::vector<uint8_t>>(arb * size_t(rows));
                             return [=](const KernelTable& t, bool) {
                                 const auto fn = t.quant_kernels(act).quantize_act.fn;
                                 return Bound{[=] {
                                                  for (int64_t r = 0; r < rows; ++r)
                                                      fn(x->data() + r * k, y->data() + size_t(r) * arb, k);
                                              },
                                              double(rows * k * 4 + int64_t(y->size())) / 1e9};
                             };
                         }});
    }

    const int64_t m = 1024, k = 768;
    for (const bool dynamic : {true, false})
        cases.push_back({dynamic ? "quantize_rows_u8_dynamic" : "quantize_rows_u8_static", "m=1024 k=768", "GB/s",
                         [dynamic](const KernelTable& t) {
                             return dynamic ? slot_of(t.quantize_rows_u8_dynamic) : slot_of(t.quantize_rows_u8_static);
                         },
                         [=]() -> Binder {
                             auto x = std::make_shared<std::vector<float>>(gaussian(size_t(m * k), 3));
                             auto q = std::make_shared<std::vector<uint8_t>>(size_t(m * k));
                             auto scale = std::make_shared<std::vector<float>>(size_t(m));
                             auto zp = std::make_shared<std::vector<int32_t>>(size_t(m));
                             return [=](const KernelTable& t, bool) {
                                 if (dynamic) {
                                     const auto fn = t.quantize_rows_u8_dynamic.fn;
                                     return Bound{[=] { fn(x->data(), m, k, k, cq::kU8QMax, q->data(), k, scale->data(), zp->data()); },
                                                  5.0 * double(m * k) / 1e9};
                                 }
                                 const auto fn = t.quantize_rows_u8_static.fn;
                                 return Bound{[=] { fn(x->data(), m, k, k, 0.05f, 128, cq::kU8QMax, q->data(), k); }, 5.0 * double(m * k) / 1e9};
                             };
                         }});

    const int64_t n = 1024 * 3072;  // one BERT-base FFN activation at 8 × 128 tokens
    cases.push_back({"gelu_erf_f32", "n=" + std::to_string(n), "GB/s", [](const KernelTable& t) { return slot_of(t.gelu_erf_f32); },
                     [=]() -> Binder {
                         auto x = std::make_shared<std::vector<float>>(gaussian(size_t(n), 5));
                         auto y = std::make_shared<std::vector<float>>(size_t(n));
                         return [=](const KernelTable& t, bool) {
                             const auto fn = t.gelu_erf_f32.fn;
                             return Bound{[=] { fn(x->data(), y->data(), n); }, 8.0 * double(n) / 1e9};
                         };
                     }});
    // Softmax in place over attention rows of 128: the values stay probabilities, so repeats stay finite.
    const int64_t rows = 8 * 12 * 128, len = 128;
    cases.push_back({"softmax_f32", "rows=12288 n=128", "GB/s", [](const KernelTable& t) { return slot_of(t.softmax_f32); },
                     [=]() -> Binder {
                         auto x = std::make_shared<std::vector<float>>(gaussian(size_t(rows * len), 6));
                         return [=](const KernelTable& t, bool) {
                             const auto fn = t.softmax_f32.fn;
                             return Bound{[=] {
                                              for (int64_t r = 0; r < rows; ++r) fn(x->data() + r * len, len, 0.125f);
                                          },
                                          8.0 * double(rows * len) / 1e9};
                         };
                     }});
    // BERT-base attention at 128 tokens: 12 heads of one sequence (q | k | v interleaved in rows, as the encoders
    // lay them out), f32 and INT8; work 4·seq²·head_dim per head (the two products).
    const int64_t seq = 128, hd = 64, heads = 12, ld = 3 * heads * hd;
    const auto attention_case = [&](const char* op, bool int8) {
        cases.push_back({op, "seq=128 head_dim=64 heads=12", "GOP/s",
                         [int8](const KernelTable& t) { return int8 ? slot_of(t.attention_u8s8) : slot_of(t.attention_f32); },
                         [=]() -> Binder {
                             auto qkv = std::make_shared<std::vector<float>>(gaussian(size_t(seq * ld), 9));
                             auto out = std::make_shared<std::vector<float>>(size_t(seq * heads * hd));
                             auto scratch = std::make_shared<std::vector<float>>(
                                 size_t(std::max(cq::attention_f32_scratch_floats(seq, hd), cq::attention_u8s8_scratch_bytes(seq, hd) / 4 + 16)));
                             return [=](const KernelTable& t, bool) {
                                 const auto f32 = t.attention_f32.fn;
                                 const auto u8 = t.attention_u8s8.fn;
                                 return Bound{[=] {
                                                  const float* x = qkv->data();
                                                  auto* bytes = reinterpret_cast<uint8_t*>((reinterpret_cast<uintptr_t>(scratch->data()) + 63) / 64 * 64);
                                                  for (int64_t h = 0; h < heads; ++h) {
                                                      const float* q = x + h * hd;
                                                      if (int8)
                                                          u8(seq, hd, q, q + heads * hd, q + 2 * heads * hd, ld, nullptr, 0.125f, out->data() + h * hd, heads * hd, bytes);
                                                      else
                                                          f32(seq, hd, q, q + heads * hd, q + 2 * heads * hd, ld, nullptr, 0.125f, out->data() + h * hd, heads * hd,
                                                              scratch->data());
                                                  }
                                              },
                                              4.0 * double(heads * seq * seq * hd) / 1e9};
                             };
                         }});
    };
    attention_case("attention_f32", false);
    attention_case("attention_u8s8", true);
    // silu_mul overwrites its gate: each call starts from a fresh copy (the same memcpy on every rung).
    const int64_t g = 512 * 2048;
    cases.push_back({"silu_mul_f32", "n=" + std::to_string(g), "GB/s", [](const KernelTable& t) { return slot_of(t.silu_mul_f32); },
                     [=]() -> Binder {
                         auto gate0 = std::make_shared<std::vector<float>>(gaussian(size_t(g), 7));
                         auto up = std::make_shared<std::vector<float>>(gaussian(size_t(g), 8));
                         auto gate = std::make_shared<std::vector<float>>(size_t(g));
                         return [=](const KernelTable& t, bool) {
                             const auto fn = t.silu_mul_f32.fn;
                             return Bound{[=] {
                                              std::memcpy(gate->data(), gate0->data(), size_t(g) * sizeof(float));
                                              fn(gate->data(), up->data(), g);
                                          },
                                          12.0 * double(g) / 1e9};
                         };
                     }});
    const int64_t dn = 3072;
    cases.push_back({"dot_u8_s8", "n=3072", "GB/s", [](const KernelTable& t) { return slot_of(t.dot_u8_s8); },
                     [=]() -> Binder {
                         std::mt19937 rng(2);
                         auto a = std::make_shared<std::vector<uint8_t>>(size_t(dn));
                         auto b = std::make_shared<std::vector<int8_t>>(size_t(dn));
                         for (auto& v : *a) v = uint8_t(rng());
                         for (auto& v : *b) v = int8_t(rng());
                         return [=](const KernelTable& t, bool) {
                             const auto fn = t.dot_u8_s8.fn;
                             return Bound{[=] {
                                              int32_t s = fn(a->data(), b->data(), dn);
                                              asm volatile("" : : "r"(s));
                                          },
                                          2.0 * double(dn) / 1e9};
                         };
                     }});
}

std::vector<Case> all_cases() {
    std::vector<Case> cases;
    for (uint32_t id = 0; id < cq::kMaxGgmlTypes; ++id) {
        const auto type = cq::dtype_from_ggml_id(id);
        if (!type) continue;
        const cq::KernelTable& t = cq::kernel_table();
        if (!t.quant_kernels(*type).gemm.fn || !cq::dtype_traits(*type).from_float) continue;
        add_quant_gemm_cases(cases, *type, false);
        if (t.quant_kernels(*type).pack_rows) add_quant_gemm_cases(cases, *type, true);
    }
    add_int8_gemm_cases(cases, false);
    add_int8_gemm_cases(cases, true);
    add_float_cases(cases);
    add_streaming_cases(cases);
    return cases;
}

// Seconds per call: calls in batches of ≥ 2 ms until min_time passed (at least 3 batches); the median batch.
double time_per_call(const std::function<void()>& call, double min_time) {
    using clock = std::chrono::steady_clock;
    call();  // warm-up: caches, page faults, the vector units' wake-up
    auto t0 = clock::now();
    call();
    const double once = std::max(1e-9, cq::bench::seconds_since(t0));
    const int64_t batch = std::max<int64_t>(1, int64_t(2e-3 / once));
    std::vector<double> per_call;
    const auto start = clock::now();
    while (per_call.size() < 3 || cq::bench::seconds_since(start) < min_time) {
        t0 = clock::now();
        for (int64_t i = 0; i < batch; ++i) call();
        per_call.push_back(cq::bench::seconds_since(t0) / double(batch));
    }
    std::sort(per_call.begin(), per_call.end());
    return per_call[per_call.size() / 2];
}

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v.empty() ? 0.0 : (v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2);
}

std::string fmt_time(double s) {
    char buf[32];
    if (s >= 1e-3) std::snprintf(buf, sizeof buf, "%.2f ms", s * 1e3);
    else std::snprintf(buf, sizeof buf, "%.1f µs", s * 1e6);
    return buf;
}

struct RungResult {
    Slot slot;
    bool reduced = false;
    std::vector<double> gops_per_round;  // rate in the case's unit
    double rate = 0, seconds = 0;        // median rate; full-shape seconds per call at that rate
};

}  // namespace

int main(int argc, char** argv) {
    std::vector<std::string> filters;
    int rounds = 3;
    double min_time = 0.1, threshold = 0.03;
    bool json = false;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "--op" && i + 1 < argc) filters.emplace_back(argv[++i]);
        else if (a == "--rounds" && i + 1 < argc) rounds = std::max(1, std::atoi(argv[++i]));
        else if (a == "--min-time" && i + 1 < argc) min_time = std::atof(argv[++i]);
        else if (a == "--threshold" && i + 1 < argc) threshold = std::atof(argv[++i]);
        else if (a == "--json") json = true;
        else {
            std::fprintf(stderr, "usage: bench_dispatch [--op SUBSTR]... [--rounds R] [--min-time S] [--threshold F] [--json]\n");
            return 2;
        }
    }
    const KernelTable& chosen_table = cq::kernel_table();  // sets OpenBLAS to one thread, as the ops run it
    const auto levels = cq::supported_isa_levels();
    std::vector<KernelTable> tables;
    for (IsaLevel l : levels) tables.push_back(cq::make_kernel_table(l));
    std::vector<Case> cases;
    for (Case& c : all_cases())
        if (filters.empty() || std::any_of(filters.begin(), filters.end(), [&](const auto& f) { return c.op.find(f) != std::string::npos; }))
            cases.push_back(std::move(c));

    // Per case, one entry per distinct kernel, in the table of the lowest rung that has it.
    std::vector<std::vector<RungResult>> results(cases.size());
    std::vector<std::vector<size_t>> table_of(cases.size());
    for (size_t ci = 0; ci < cases.size(); ++ci)
        for (size_t li = 0; li < tables.size(); ++li) {
            const Slot s = cases[ci].slot(tables[li]);
            if (s.kernel.empty()) continue;
            const bool seen = std::any_of(results[ci].begin(), results[ci].end(), [&](const auto& r) { return r.slot.kernel == s.kernel; });
            if (seen) continue;
            results[ci].push_back({s, levels[li] == IsaLevel::ref && tables.size() > 1, {}, 0, 0});
            table_of[ci].push_back(li);
        }

    for (int r = 0; r < rounds; ++r)
        for (size_t ci = 0; ci < cases.size(); ++ci) {
            const Binder bind = cases[ci].setup();
            const size_t n = results[ci].size();
            for (size_t j = 0; j < n; ++j) {
                const size_t e = (j + size_t(r)) % n;  // rotate which rung goes first
                RungResult& rr = results[ci][e];
                const Bound b = bind(tables[table_of[ci][e]], rr.reduced);
                rr.gops_per_round.push_back(b.work / time_per_call(b.call, min_time));
            }
            if (!json) std::fprintf(stderr, "\rround %d/%d, case %zu/%zu   ", r + 1, rounds, ci + 1, cases.size());
        }
    if (!json) std::fprintf(stderr, "\n");

    // Full-shape work per case: bind the top table without reducing, just for the number.
    std::vector<std::string> verdicts(cases.size());
    std::vector<double> chosen_vs_best(cases.size(), 0.0);
    std::vector<Slot> chosen(cases.size());
    const auto listing = cq::list_kernels(chosen_table);
    int slower = 0;
    for (size_t ci = 0; ci < cases.size(); ++ci) {
        double full_work = 0;
        {
            const Binder bind = cases[ci].setup();
            full_work = bind(tables.back(), false).work;
        }
        double best = 0;
        for (RungResult& rr : results[ci]) {
            rr.rate = median(rr.gops_per_round);
            rr.seconds = full_work / rr.rate;
            best = std::max(best, rr.rate);
        }
        chosen[ci] = cases[ci].slot(chosen_table);
        double chosen_rate = 0;
        for (const RungResult& rr : results[ci])
            if (rr.slot.kernel == chosen[ci].kernel) chosen_rate = rr.rate;
        chosen_vs_best[ci] = chosen_rate / best;
        verdicts[ci] = chosen_rate >= best * (1.0 - threshold) ? "ok" : "SLOWER";
        slower += verdicts[ci] != "ok";
    }
    auto why_of = [&](const std::string& op) {
        for (const auto& l : listing)
            if (l.op == op) return l.why;
        return std::string();
    };

    const cq::CpuFeatures& f = cq::cpu_features();
    if (json) {
        std::printf("{\"cpu\": \"%s\", \"vendor\": \"%s\", \"family\": %d, \"model\": %d, \"level\": \"%s\", \"rounds\": %d,"
                    " \"threshold\": %.3f, \"cases\": [",
                    f.brand.c_str(), f.vendor.c_str(), f.family, f.model, std::string(cq::isa_level_name(chosen_table.level)).c_str(),
                    rounds, threshold);
        for (size_t ci = 0; ci < cases.size(); ++ci) {
            std::printf("%s\n {\"op\": \"%s\", \"shape\": \"%s\", \"unit\": \"%s\", \"rungs\": [", ci ? "," : "", cases[ci].op.c_str(),
                        cases[ci].shape.c_str(), cases[ci].unit.c_str());
            for (size_t j = 0; j < results[ci].size(); ++j) {
                const RungResult& rr = results[ci][j];
                std::printf("%s{\"isa\": \"%s\", \"kernel\": \"%s\", \"rate\": %.4g, \"seconds\": %.4g, \"reduced_m\": %s}", j ? ", " : "",
                            std::string(cq::isa_level_name(rr.slot.isa)).c_str(), rr.slot.kernel.c_str(), rr.rate, rr.seconds,
                            rr.reduced ? "true" : "false");
            }
            std::printf("], \"chosen\": {\"isa\": \"%s\", \"kernel\": \"%s\", \"why\": \"%s\"}, \"chosen_vs_best\": %.3f, \"verdict\": \"%s\"}",
                        std::string(cq::isa_level_name(chosen[ci].isa)).c_str(), chosen[ci].kernel.c_str(), why_of(cases[ci].op).c_str(),
                        chosen_vs_best[ci], verdicts[ci].c_str());
        }
        std::printf("\n], \"slower\": %d}\n", slower);
        return slower ? 1 : 0;
    }
    std::printf("cpu: %s (%s family %d model %d); table level %s%s; median of %d rounds, single thread\n\n", f.brand.c_str(),
                f.vendor.c_str(), f.family, f.model, std::string(cq::isa_level_name(chosen_table.level)).c_str(),
                chosen_table.tuned_for[0] ? (std::string(", tuned for ") + chosen_table.tuned_for).c_str() : "", rounds);
    std::printf("| op | shape |");
    for (IsaLevel l : levels) std::printf(" %s |", std::string(cq::isa_level_name(l)).c_str());
    std::printf(" chosen | chosen / best | verdict |\n|---|---|");
    for (size_t i = 0; i < levels.size(); ++i) std::printf("---:|");
    std::printf("---|---:|---|\n");
    for (size_t ci = 0; ci < cases.size(); ++ci) {
        double best = 0;
        for (const RungResult& rr : results[ci]) best = std::max(best, rr.rate);
        std::printf("| %s | %s |", cases[ci].op.c_str(), cases[ci].shape.c_str());
        for (IsaLevel l : levels) {
            std::string cell;
            for (const RungResult& rr : results[ci]) {
                if (rr.slot.isa != l) continue;
                char buf[96];
                std::snprintf(buf, sizeof buf, "%s%s %.3g %s (%.2f)", rr.reduced ? "~" : "", fmt_time(rr.seconds).c_str(), rr.rate,
                              cases[ci].unit.c_str(), rr.rate / best);
                cell += (cell.empty() ? "" : "<br>") + std::string(buf);
                if (rr.slot.kernel.find("openblas") != std::string::npos) cell += " openblas";
            }
            std::printf(" %s |", cell.empty() ? "–" : cell.c_str());
        }
        std::printf(" %s | %.2f | %s |\n", std::string(cq::isa_level_name(chosen[ci].isa)).c_str(), chosen_vs_best[ci], verdicts[ci].c_str());
    }
    std::printf("\n(cell: full-shape time per call, rate, rate / best rung; ~ = measured at a smaller m and scaled)\n");
    std::printf("\nWhy each op's rung was chosen (cq info --kernels):\n");
    std::vector<std::string> printed;
    for (const Case& c : cases) {
        if (std::find(printed.begin(), printed.end(), c.op) != printed.end()) continue;
        printed.push_back(c.op);
        std::printf("  %-26s %s\n", c.op.c_str(), why_of(c.op).c_str());
    }
    std::printf("\n%d of %zu cases: the chosen rung is slower than another by more than %.0f %%\n", slower, cases.size(), threshold * 100);
    return slower ? 1 : 0;
}
