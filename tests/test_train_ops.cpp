// Training kernels: each backward's scalar reference twin against central finite differences of its forward,
// each fast kernel against its twin on awkward shapes (odd sizes, T not a multiple of the 64-row tile, GQA 2,
// odd head_dim), and the fast kernels' bytes at 1 and 2 threads.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "cq/thread_pool.h"
#include "train/train_ops.h"

namespace cq::train {
namespace {

std::vector<float> randn(size_t n, uint32_t seed, float scale = 1.0f) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> d(0.0f, scale);
    std::vector<float> v(n);
    for (float& x : v) x = d(rng);
    return v;
}

double max_abs(const std::vector<float>& v) {
    double m = 0;
    for (float x : v) m = std::max(m, static_cast<double>(std::fabs(x)));
    return m;
}

// L(x) = Σ r·f(x) in double; checks grad (the analytic ∂L/∂x) against (L(x+h) − L(x−h)) / 2h at every entry.
// Tolerance: the central difference's truncation (h²·f''') plus f32 rounding of f's outputs over 2h.
void expect_fd(const std::string& what, std::vector<float>& x, const std::vector<float>& grad,
               const std::function<std::vector<float>()>& f, const std::vector<float>& r, float h = 1e-2f) {
    ASSERT_EQ(x.size(), grad.size()) << what;
    const auto L = [&] {
        const std::vector<float> y = f();
        double s = 0;
        for (size_t i = 0; i < y.size(); ++i) s += static_cast<double>(r[i]) * y[i];
        return s;
    };
    const double tol = 2e-3 * std::max(1.0, max_abs(grad));
    for (size_t i = 0; i < x.size(); ++i) {
        const float x0 = x[i];
        x[i] = x0 + h;
        const double lp = L();
        x[i] = x0 - h;
        const double lm = L();
        x[i] = x0;
        const double fd = (lp - lm) / (2.0 * h);
        ASSERT_NEAR(grad[i], fd, tol) << what << ": entry " << i << " of " << x.size();
    }
}

// Fast vs reference: |a − b| ≤ 1e-5·K·max|terms| style bound, given the scale of the sums.
void expect_close(const std::string& what, const std::vector<float>& fast, const std::vector<float>& ref, double tol) {
    ASSERT_EQ(fast.size(), ref.size()) << what;
    for (size_t i = 0; i < fast.size(); ++i) ASSERT_NEAR(fast[i], ref[i], tol) << what << ": index " << i;
}

TEST(TrainOps, LinearBackwardMatchesFiniteDifferences) {
    const int64_t N = 7, I = 13, O = 5;
    auto x = randn(N * I, 1), w = randn(O * I, 2, 0.3f), b = randn(O, 3), r = randn(N * O, 4);
    std::vector<float> dx(N * I), dw(O * I, 0.0f), db(O, 0.0f), y(N * O);
    linear_backward__ref(r.data(), x.data(), w.data(), N, I, O, dx.data(), false, dw.data(), db.data());
    const auto f = [&] {
        linear_forward__ref(x.data(), w.data(), b.data(), N, I, O, y.data());
        return y;
    };
    expect_fd("linear dx", x, dx, f, r);
    expect_fd("linear dw", w, dw, f, r);
    expect_fd("linear db", b, db, f, r);
}

TEST(TrainOps, LinearFastMatchesReference) {
    for (auto [N, I, O] : {std::tuple<int64_t, int64_t, int64_t>{130, 67, 129}, {1, 5, 3}, {64, 64, 64}, {65, 33, 200}}) {
        const std::string shape = "N=" + std::to_string(N) + " I=" + std::to_string(I) + " O=" + std::to_string(O);
        auto x = randn(N * I, 5), w = randn(O * I, 6), b = randn(O, 7), dy = randn(N * O, 8);
        std::vector<float> y(N * O), y_ref(N * O);
        linear_forward(x.data(), w.data(), b.data(), N, I, O, y.data());
        linear_forward__ref(x.data(), w.data(), b.data(), N, I, O, y_ref.data());
        expect_close("linear_forward " + shape, y, y_ref, 1e-5 * I * 4);
        for (bool acc : {false, true}) {
            std::vector<float> dx(N * I, 0.5f), dw(O * I, 0.25f), db(O, 0.125f);
            auto dx_ref = dx, dw_ref = dw, db_ref = db;
            linear_backward(dy.data(), x.data(), w.data(), N, I, O, dx.data(), acc, dw.data(), db.data());
            linear_backward__ref(dy.data(), x.data(), w.data(), N, I, O, dx_ref.data(), acc, dw_ref.data(), db_ref.data());
            expect_close("linear_backward dx " + shape, dx, dx_ref, 1e-5 * O * 4);
            expect_close("linear_backward dw " + shape, dw, dw_ref, 1e-5 * N * 4);
            expect_close("linear_backward db " + shape, db, db_ref, 1e-5 * N * 4);
        }
    }
}

// Mixed precision: the forward and both backward products under each operand format against the f32 references on
// operands rounded by the scalar codecs (products of rounded values are exact in f32, so only the f32 sums differ:
// the same bound as the f32 kernels), on shapes that straddle the 64-row and 64-column tiles. bf16 runs the kernel
// table's native bf16 GEMMs where this CPU has them; bf16_via_f32 is the path every other CPU takes.
TEST(TrainOps, LinearLowPrecisionMatchesRoundedReference) {
    for (MatmulPrecision p : {MatmulPrecision::bf16, MatmulPrecision::bf16_via_f32, MatmulPrecision::fp16_via_f32}) {
        const ScopedMatmulPrecision scope(p);
        for (auto [N, I, O] : {std::tuple<int64_t, int64_t, int64_t>{130, 67, 129}, {1, 5, 3}, {64, 64, 64}, {65, 33, 200}, {3, 1, 1}}) {
            const std::string shape = "precision " + std::to_string(static_cast<int>(p)) + " N=" + std::to_string(N) + " I=" +
                                      std::to_string(I) + " O=" + std::to_string(O);
            auto x = randn(N * I, 5), w = randn(O * I, 6), b = randn(O, 7), dy = randn(N * O, 8);
            std::vector<float> y(N * O), y_ref(N * O), y_f32(N * O);
            linear_forward(x.data(), w.data(), b.data(), N, I, O, y.data());
            linear_forward_rounded__ref(p, x.data(), w.data(), b.data(), N, I, O, y_ref.data());
            expect_close("linear_forward " + shape, y, y_ref, 1e-5 * I * 4);
            // The rounding is real: the f32 product differs by about the operands' relative precision.
            linear_forward__ref(x.data(), w.data(), b.data(), N, I, O, y_f32.data());
            double diff = 0;
            for (size_t i = 0; i < y.size(); ++i) diff = std::max(diff, std::fabs(double(y[i]) - y_f32[i]));
            if (I > 4) EXPECT_GT(diff, 1e-5) << shape;
            for (bool acc : {false, true}) {
                std::vector<float> dx(N * I, 0.5f), dw(O * I, 0.25f), db(O, 0.125f);
                auto dx_ref = dx, dw_ref = dw, db_ref = db;
                linear_backward(dy.data(), x.data(), w.data(), N, I, O, dx.data(), acc, dw.data(), db.data());
                linear_backward_rounded__ref(p, dy.data(), x.data(), w.data(), N, I, O, dx_ref.data(), acc, dw_ref.data(), db_ref.data());
                expect_close("linear_backward dx " + shape, dx, dx_ref, 1e-5 * O * 4);
                expect_close("linear_backward dw " + shape, dw, dw_ref, 1e-5 * N * 4);
                expect_close("linear_backward db " + shape, db, db_ref, 1e-5 * N * 4);
            }
        }
    }
    EXPECT_EQ(matmul_precision(), MatmulPrecision::f32);  // the scope ended
}

// The operand formats' rounding, against closed forms: bf16 keeps 8 significant bits, fp16 11 and overflows at 65520.
TEST(TrainOps, RoundOperandsClosedForm) {
    const float in[] = {1.0f + 1.0f / 256, 1.0f + 3.0f / 256, 1.0f + 1.0f / 2048, 65519.0f, 65520.0f, 1e-8f, -3.0f};
    float bf[7], hf[7];
    round_operands__ref(MatmulPrecision::bf16, in, bf, 7);
    round_operands__ref(MatmulPrecision::fp16_via_f32, in, hf, 7);
    EXPECT_EQ(bf[0], 1.0f);                     // a tie rounds to even
    EXPECT_EQ(bf[1], 1.0f + 4.0f / 256);        // a tie rounds to even (up)
    EXPECT_EQ(hf[0], 1.0f + 1.0f / 256);        // exact in fp16
    EXPECT_EQ(hf[2], 1.0f);                     // a tie rounds to even
    EXPECT_EQ(hf[3], 65504.0f);                 // the largest fp16
    EXPECT_TRUE(std::isinf(hf[4]));             // overflow
    EXPECT_EQ(hf[5], 0.0f);                     // below half the smallest subnormal (2^-24)
    EXPECT_EQ(bf[6], -3.0f);
    EXPECT_EQ(hf[6], -3.0f);
}

TEST(TrainOps, RmsNormBackwardMatchesFiniteDifferences) {
    const int64_t N = 5, D = 11;
    auto x = randn(N * D, 11), w = randn(D, 12), r = randn(N * D, 13);
    std::vector<float> y(N * D), rstd(N), dx(N * D, 0.0f), dw(D, 0.0f);
    rmsnorm_forward__ref(x.data(), w.data(), N, D, 1e-5f, y.data(), rstd.data());
    rmsnorm_backward__ref(r.data(), x.data(), w.data(), rstd.data(), N, D, dx.data(), dw.data());
    const auto f = [&] {
        rmsnorm_forward__ref(x.data(), w.data(), N, D, 1e-5f, y.data(), rstd.data());
        return y;
    };
    expect_fd("rmsnorm dx", x, dx, f, r, 1e-3f);
    expect_fd("rmsnorm dw", w, dw, f, r, 1e-3f);
}

TEST(TrainOps, RmsNormFastMatchesReference) {
    const int64_t N = 131, D = 67;
    auto x = randn(N * D, 14), w = randn(D, 15), dy = randn(N * D, 16);
    std::vector<float> y(N * D), y_ref(N * D), rstd(N), rstd_ref(N);
    rmsnorm_forward(x.data(), w.data(), N, D, 1e-5f, y.data(), rstd.data());
    rmsnorm_forward__ref(x.data(), w.data(), N, D, 1e-5f, y_ref.data(), rstd_ref.data());
    expect_close("rmsnorm_forward", y, y_ref, 1e-5 * max_abs(y_ref));
    std::vector<float> dx(N * D, 0.5f), dw(D, 0.5f);
    auto dx_ref = dx, dw_ref = dw;
    rmsnorm_backward(dy.data(), x.data(), w.data(), rstd.data(), N, D, dx.data(), dw.data());
    rmsnorm_backward__ref(dy.data(), x.data(), w.data(), rstd.data(), N, D, dx_ref.data(), dw_ref.data());
    expect_close("rmsnorm_backward dx", dx, dx_ref, 1e-5 * max_abs(dx_ref));
    expect_close("rmsnorm_backward dw", dw, dw_ref, 1e-5 * N * 4);
}

TEST(TrainOps, LayerNormBackwardMatchesFiniteDifferences) {
    const int64_t N = 5, D = 11;
    auto x = randn(N * D, 17), w = randn(D, 18), b = randn(D, 19), r = randn(N * D, 20);
    std::vector<float> y(N * D), mean(N), rstd(N), dx(N * D, 0.0f), dw(D, 0.0f), db(D, 0.0f);
    layernorm_forward__ref(x.data(), w.data(), b.data(), N, D, 1e-5f, y.data(), mean.data(), rstd.data());
    layernorm_backward__ref(r.data(), x.data(), w.data(), mean.data(), rstd.data(), N, D, dx.data(), dw.data(), db.data());
    const auto f = [&] {
        std::vector<float> m(N), rs(N);
        layernorm_forward__ref(x.data(), w.data(), b.data(), N, D, 1e-5f, y.data(), m.data(), rs.data());
        return y;
    };
    expect_fd("layernorm dx", x, dx, f, r, 1e-3f);
    expect_fd("layernorm dw", w, dw, f, r, 1e-3f);
    expect_fd("layernorm db", b, db, f, r, 1e-3f);
}

TEST(TrainOps, LayerNormFastMatchesReference) {
    const int64_t N = 131, D = 67;
    auto x = randn(N * D, 23), w = randn(D, 24), b = randn(D, 25), dy = randn(N * D, 26);
    std::vector<float> y(N * D), y_ref(N * D), mean(N), rstd(N), mean_ref(N), rstd_ref(N);
    layernorm_forward(x.data(), w.data(), b.data(), N, D, 1e-5f, y.data(), mean.data(), rstd.data());
    layernorm_forward__ref(x.data(), w.data(), b.data(), N, D, 1e-5f, y_ref.data(), mean_ref.data(), rstd_ref.data());
    expect_close("layernorm_forward", y, y_ref, 1e-5 * max_abs(y_ref));
    std::vector<float> dx(N * D, 0.5f), dw(D, 0.5f), db(D, 0.25f);
    auto dx_ref = dx, dw_ref = dw, db_ref = db;
    layernorm_backward(dy.data(), x.data(), w.data(), mean.data(), rstd.data(), N, D, dx.data(), dw.data(), db.data());
    layernorm_backward__ref(dy.data(), x.data(), w.data(), mean.data(), rstd.data(), N, D, dx_ref.data(), dw_ref.data(), db_ref.data());
    expect_close("layernorm_backward dx", dx, dx_ref, 1e-5 * max_abs(dx_ref));
    expect_close("layernorm_backward dw", dw, dw_ref, 1e-5 * N * 4);
    expect_close("layernorm_backward db", db, db_ref, 1e-5 * N * 4);
}

TEST(TrainOps, GeluTanhBackwardMatchesFiniteDifferences) {
    const int64_t n = 37;
    auto x = randn(n, 27, 2.0f), r = randn(n, 28);
    std::vector<float> dx(n), dx_fast(n), y(n);
    gelu_tanh_backward__ref(r.data(), x.data(), dx.data(), n);
    gelu_tanh_backward(r.data(), x.data(), dx_fast.data(), n);
    expect_close("gelu_tanh_backward", dx_fast, dx, 1e-6 * max_abs(dx));
    const auto f = [&] {
        gelu_tanh_forward(x.data(), y.data(), n);
        return y;
    };
    expect_fd("gelu_tanh dx", x, dx, f, r, 1e-3f);
}

TEST(TrainOps, RopeBackwardMatchesFiniteDifferences) {
    for (RopePairing pairing : {RopePairing::adjacent, RopePairing::half_split})
        for (int64_t rope_dims : {6, 4}) {
            const int64_t B = 2, T = 5, H = 3, hd = 6, stride = H * hd + 2;  // rows wider than the heads
            std::vector<float> cs(T * rope_dims / 2), sn(cs.size());
            rope_tables(T, rope_dims, 10000.0f, 1.0f, cs.data(), sn.data());
            auto x = randn(B * T * stride, 21), r = randn(x.size(), 22);
            auto dx = r, dx_fast = r;
            rope_backward__ref(dx.data(), B, T, stride, H, hd, rope_dims, cs.data(), sn.data(), pairing);
            rope_backward(dx_fast.data(), B, T, stride, H, hd, rope_dims, cs.data(), sn.data(), pairing);
            expect_close("rope_backward", dx_fast, dx, 1e-6);
            const auto f = [&] {
                auto y = x;
                rope_forward(y.data(), B, T, stride, H, hd, rope_dims, cs.data(), sn.data(), pairing);
                return y;
            };
            expect_fd("rope dx (rope_dims " + std::to_string(rope_dims) + ")", x, dx, f, r);
        }
}

TEST(TrainOps, AttentionBackwardMatchesFiniteDifferences) {
    const int64_t B = 2, T = 7, Hq = 4, Hkv = 2, hd = 5;  // GQA ratio 2, odd head_dim
    auto q = randn(B * T * Hq * hd, 31), k = randn(B * T * Hkv * hd, 32), v = randn(B * T * Hkv * hd, 33);
    auto r = randn(B * T * Hq * hd, 34);
    std::vector<float> p(B * Hq * T * T), out(q.size()), dq(q.size()), dk(k.size()), dv(v.size());
    attention_forward__ref(q.data(), k.data(), v.data(), B, T, Hq, Hkv, hd, p.data(), out.data());
    attention_backward__ref(r.data(), q.data(), k.data(), v.data(), p.data(), B, T, Hq, Hkv, hd, dq.data(), dk.data(), dv.data());
    const auto f = [&] {
        std::vector<float> pp(p.size()), o(out.size());
        attention_forward__ref(q.data(), k.data(), v.data(), B, T, Hq, Hkv, hd, pp.data(), o.data());
        return o;
    };
    expect_fd("attention dq", q, dq, f, r, 1e-3f);
    expect_fd("attention dk", k, dk, f, r, 1e-3f);
    expect_fd("attention dv", v, dv, f, r, 1e-3f);
}

TEST(TrainOps, AttentionFastMatchesReference) {
    for (auto [B, T, Hq, Hkv, hd] : {std::tuple<int64_t, int64_t, int64_t, int64_t, int64_t>{2, 67, 6, 3, 9}, {1, 1, 2, 1, 4}, {3, 65, 4, 4, 8}}) {
        const std::string shape = "B=" + std::to_string(B) + " T=" + std::to_string(T) + " Hq=" + std::to_string(Hq) +
                                  " Hkv=" + std::to_string(Hkv) + " hd=" + std::to_string(hd);
        auto q = randn(B * T * Hq * hd, 41), k = randn(B * T * Hkv * hd, 42), v = randn(B * T * Hkv * hd, 43);
        auto dout = randn(q.size(), 44);
        std::vector<float> p(B * Hq * T * T), p_ref(p.size()), out(q.size()), out_ref(q.size());
        attention_forward(q.data(), k.data(), v.data(), B, T, Hq, Hkv, hd, p.data(), out.data());
        attention_forward__ref(q.data(), k.data(), v.data(), B, T, Hq, Hkv, hd, p_ref.data(), out_ref.data());
        expect_close("attention_forward p " + shape, p, p_ref, 1e-5);
        expect_close("attention_forward out " + shape, out, out_ref, 1e-5 * max_abs(v) * 4);
        std::vector<float> dq(q.size()), dk(k.size()), dv(v.size()), dq_ref(q.size()), dk_ref(k.size()), dv_ref(v.size());
        attention_backward(dout.data(), q.data(), k.data(), v.data(), p_ref.data(), B, T, Hq, Hkv, hd, dq.data(), dk.data(), dv.data());
        attention_backward__ref(dout.data(), q.data(), k.data(), v.data(), p_ref.data(), B, T, Hq, Hkv, hd, dq_ref.data(),
                                dk_ref.data(), dv_ref.data());
        const double tol = 1e-5 * static_cast<double>(T * hd);
        expect_close("attention_backward dq " + shape, dq, dq_ref, tol);
        expect_close("attention_backward dk " + shape, dk, dk_ref, tol);
        expect_close("attention_backward dv " + shape, dv, dv_ref, tol);
    }
}

// ||a − b|| / ||b|| (norm-wise, as the PyTorch parity bars).
double rel_norm(const std::vector<float>& a, const std::vector<float>& b) {
    double num = 0, den = 0;
    for (size_t i = 0; i < a.size(); ++i) num += (double(a[i]) - b[i]) * (double(a[i]) - b[i]), den += double(b[i]) * b[i];
    return std::sqrt(num / std::max(den, 1e-300));
}

// Attention's six products on low-precision operands: each format within a few units of its rounding (u = 2^-8 bf16,
// 2^-11 fp16) of the f32 reference, norm-wise, and bf16 on the native kernels within f32 summation order (plus rare
// one-ulp flips of a rounded operand) of the bf16 emulation on f32 products, causal and masked with dropout.
TEST(TrainOps, AttentionLowPrecisionMatchesReference) {
    for (auto [B, T, Hq, Hkv, hd] : {std::tuple<int64_t, int64_t, int64_t, int64_t, int64_t>{2, 67, 6, 3, 9}, {1, 1, 2, 1, 4}, {2, 65, 4, 4, 8}}) {
        for (bool masked : {false, true}) {
            const std::string shape = "B=" + std::to_string(B) + " T=" + std::to_string(T) + " Hq=" + std::to_string(Hq) +
                                      " Hkv=" + std::to_string(Hkv) + " hd=" + std::to_string(hd) + (masked ? " masked" : " causal");
            auto q = randn(B * T * Hq * hd, 51), k = randn(B * T * Hkv * hd, 52), v = randn(B * T * Hkv * hd, 53);
            auto dout = randn(q.size(), 54);
            std::vector<int32_t> mask(static_cast<size_t>(B * T), 1);
            for (int64_t t = T - T / 4; t < T; ++t) mask[static_cast<size_t>(t)] = 0;  // padding at the end of the first row
            std::vector<float> drop(static_cast<size_t>(B * Hq * T * T));
            dropout_mask(7, 0.1f, drop.data(), static_cast<int64_t>(drop.size()));
            const int32_t* m = masked ? mask.data() : nullptr;
            const float* dm = masked ? drop.data() : nullptr;
            std::vector<float> p_ref(B * Hq * T * T), out_ref(q.size()), dq_ref(q.size()), dk_ref(k.size()), dv_ref(v.size());
            attention_forward__ref(q.data(), k.data(), v.data(), B, T, Hq, Hkv, hd, p_ref.data(), out_ref.data(), m, dm);
            attention_backward__ref(dout.data(), q.data(), k.data(), v.data(), p_ref.data(), B, T, Hq, Hkv, hd, dq_ref.data(),
                                    dk_ref.data(), dv_ref.data(), m, dm);
            struct Result {
                std::vector<float> out, dq, dk, dv;
            };
            const auto run = [&](MatmulPrecision precision) {
                const ScopedMatmulPrecision scope(precision);
                Result r{std::vector<float>(q.size()), std::vector<float>(q.size()), std::vector<float>(k.size()), std::vector<float>(v.size())};
                std::vector<float> p(p_ref.size());
                attention_forward(q.data(), k.data(), v.data(), B, T, Hq, Hkv, hd, p.data(), r.out.data(), m, dm);
                attention_backward(dout.data(), q.data(), k.data(), v.data(), p.data(), B, T, Hq, Hkv, hd, r.dq.data(), r.dk.data(),
                                   r.dv.data(), m, dm);
                return r;
            };
            const Result bf = run(MatmulPrecision::bf16), emu = run(MatmulPrecision::bf16_via_f32), hf = run(MatmulPrecision::fp16_via_f32);
            for (const auto& [name, r, u] : {std::tuple<const char*, const Result*, double>{"bf16", &bf, std::ldexp(1.0, -8)},
                                            {"bf16_via_f32", &emu, std::ldexp(1.0, -8)}, {"fp16", &hf, std::ldexp(1.0, -11)}}) {
                EXPECT_LT(rel_norm(r->out, out_ref), 8 * u) << name << " out " << shape;
                EXPECT_LT(rel_norm(r->dq, dq_ref), 8 * u) << name << " dq " << shape;
                EXPECT_LT(rel_norm(r->dk, dk_ref), 8 * u) << name << " dk " << shape;
                EXPECT_LT(rel_norm(r->dv, dv_ref), 8 * u) << name << " dv " << shape;
            }
            EXPECT_LT(rel_norm(bf.out, emu.out), 1e-4) << shape;
            EXPECT_LT(rel_norm(bf.dq, emu.dq), 1e-4) << shape;
            EXPECT_LT(rel_norm(bf.dk, emu.dk), 1e-4) << shape;
            EXPECT_LT(rel_norm(bf.dv, emu.dv), 1e-4) << shape;
        }
    }
}

// BERT's form: bidirectional over a key mask (padding), with dropout on the probabilities.
TEST(TrainOps, MaskedAttentionWithDropoutMatchesFiniteDifferencesAndReference) {
    const int64_t B = 2, T = 7, Hq = 2, Hkv = 2, hd = 5;
    const std::vector<int32_t> mask = {1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1, 1};
    auto q = randn(B * T * Hq * hd, 35), k = randn(B * T * Hkv * hd, 36), v = randn(B * T * Hkv * hd, 37);
    auto r = randn(q.size(), 38);
    std::vector<float> drop(B * Hq * T * T);
    dropout_mask(99, 0.25f, drop.data(), static_cast<int64_t>(drop.size()));
    std::vector<float> p(B * Hq * T * T), out(q.size()), dq(q.size()), dk(k.size()), dv(v.size());
    attention_forward__ref(q.data(), k.data(), v.data(), B, T, Hq, Hkv, hd, p.data(), out.data(), mask.data(), drop.data());
    attention_backward__ref(r.data(), q.data(), k.data(), v.data(), p.data(), B, T, Hq, Hkv, hd, dq.data(), dk.data(), dv.data(),
                            mask.data(), drop.data());
    const auto f = [&] {
        std::vector<float> pp(p.size()), o(out.size());
        attention_forward__ref(q.data(), k.data(), v.data(), B, T, Hq, Hkv, hd, pp.data(), o.data(), mask.data(), drop.data());
        return o;
    };
    expect_fd("masked attention dq", q, dq, f, r, 1e-3f);
    expect_fd("masked attention dk", k, dk, f, r, 1e-3f);
    expect_fd("masked attention dv", v, dv, f, r, 1e-3f);
    std::vector<float> p_fast(p.size()), out_fast(out.size()), dq_fast(q.size()), dk_fast(k.size()), dv_fast(v.size());
    attention_forward(q.data(), k.data(), v.data(), B, T, Hq, Hkv, hd, p_fast.data(), out_fast.data(), mask.data(), drop.data());
    expect_close("masked attention_forward p", p_fast, p, 1e-5);
    expect_close("masked attention_forward out", out_fast, out, 1e-4);
    attention_backward(r.data(), q.data(), k.data(), v.data(), p.data(), B, T, Hq, Hkv, hd, dq_fast.data(), dk_fast.data(),
                       dv_fast.data(), mask.data(), drop.data());
    expect_close("masked attention_backward dq", dq_fast, dq, 1e-4);
    expect_close("masked attention_backward dk", dk_fast, dk, 1e-4);
    expect_close("masked attention_backward dv", dv_fast, dv, 1e-4);
    // Dropout keeps ~75 % at scale 1/0.75.
    int64_t kept = 0;
    for (float m : drop) {
        kept += m != 0.0f;
        EXPECT_TRUE(m == 0.0f || std::fabs(m - 1.0f / 0.75f) < 1e-6f) << m;
    }
    EXPECT_NEAR(static_cast<double>(kept) / static_cast<double>(drop.size()), 0.75, 0.1);
}

TEST(TrainOps, GeluErfBackwardMatchesFiniteDifferences) {
    const int64_t n = 37;
    auto x = randn(n, 29, 2.0f), r = randn(n, 30);
    std::vector<float> dx(n), dx_fast(n), y(n);
    gelu_erf_backward__ref(r.data(), x.data(), dx.data(), n);
    gelu_erf_backward(r.data(), x.data(), dx_fast.data(), n);
    expect_close("gelu_erf_backward", dx_fast, dx, 1e-6 * max_abs(dx));
    const auto f = [&] {
        gelu_erf_forward(x.data(), y.data(), n);
        return y;
    };
    expect_fd("gelu_erf dx", x, dx, f, r, 1e-3f);
}

TEST(TrainOps, SwigluBackwardMatchesFiniteDifferences) {
    const int64_t n = 37;
    auto g = randn(n, 51, 2.0f), u = randn(n, 52), r = randn(n, 53);
    std::vector<float> dg(n), du(n), dg_fast(n), du_fast(n), h(n);
    swiglu_backward__ref(r.data(), g.data(), u.data(), dg.data(), du.data(), n);
    swiglu_backward(r.data(), g.data(), u.data(), dg_fast.data(), du_fast.data(), n);
    expect_close("swiglu_backward dg", dg_fast, dg, 1e-6 * max_abs(dg));
    expect_close("swiglu_backward du", du_fast, du, 1e-6 * max_abs(du));
    const auto f = [&] {
        swiglu_forward(g.data(), u.data(), h.data(), n);
        return h;
    };
    expect_fd("swiglu dg", g, dg, f, r, 1e-3f);
    expect_fd("swiglu du", u, du, f, r, 1e-3f);
}

TEST(TrainOps, EmbeddingBackwardMatchesFiniteDifferences) {
    const int64_t V = 11, D = 67, N = 13;
    std::vector<int32_t> ids = {3, 0, 10, 3, 3, 7, 1, 0, 9, 10, 2, 3, 5};
    auto table = randn(V * D, 61), r = randn(N * D, 62);
    std::vector<float> dt(V * D, 0.0f), dt_fast(V * D, 0.0f), y(N * D);
    embedding_backward__ref(r.data(), ids.data(), N, D, dt.data());
    embedding_backward(r.data(), ids.data(), N, D, dt_fast.data());
    expect_close("embedding_backward", dt_fast, dt, 1e-6 * N);
    const auto f = [&] {
        embedding_forward(table.data(), ids.data(), N, D, y.data());
        return y;
    };
    expect_fd("embedding dtable", table, dt, f, r);
}

TEST(TrainOps, CrossEntropyBackwardMatchesFiniteDifferences) {
    const int64_t N = 6, V = 9;
    std::vector<int32_t> tg = {0, 8, -1, 4, 4, 2};
    auto logits = randn(N * V, 71, 2.0f);
    std::vector<float> probs(N * V), losses(N), d(N * V), d_fast(N * V);
    cross_entropy_forward(logits.data(), tg.data(), N, V, probs.data(), losses.data());
    EXPECT_EQ(losses[2], 0.0f);
    cross_entropy_backward__ref(probs.data(), tg.data(), N, V, 0.2f, d.data());
    cross_entropy_backward(probs.data(), tg.data(), N, V, 0.2f, d_fast.data());
    expect_close("cross_entropy_backward", d_fast, d, 1e-7);
    // L = 0.2·Σ losses: one output, weight 0.2.
    const std::vector<float> r = {0.2f};
    const auto f = [&] {
        std::vector<float> pr(N * V), ls(N);
        return std::vector<float>{static_cast<float>(cross_entropy_forward(logits.data(), tg.data(), N, V, pr.data(), ls.data()))};
    };
    expect_fd("cross_entropy dlogits", logits, d, f, r, 1e-2f);
}

// The fast kernels' bytes do not depend on the thread count.
TEST(TrainOps, FastKernelsAreDeterministicAcrossThreadCounts) {
    const int64_t B = 2, T = 67, Hq = 4, Hkv = 2, hd = 9, N = B * T, I = 37, O = 150;
    auto x = randn(N * I, 81), w = randn(O * I, 82), dy = randn(N * O, 83);
    auto q = randn(N * Hq * hd, 84), k = randn(N * Hkv * hd, 85), v = randn(N * Hkv * hd, 86), dout = randn(q.size(), 87);
    const auto run = [&](int threads) {
        ThreadPool::set_global_threads(threads);
        std::vector<float> y(N * O), dx(N * I), dw(O * I, 0.0f), db(O, 0.0f), p(B * Hq * T * T), out(q.size()), dq(q.size()),
            dk(k.size()), dv(v.size()), rstd(N), xn(N * I), dxn(N * I, 0.0f), dg(I, 0.0f), dt(O * I, 0.0f);
        linear_forward(x.data(), w.data(), nullptr, N, I, O, y.data());
        linear_backward(dy.data(), x.data(), w.data(), N, I, O, dx.data(), false, dw.data(), db.data());
        attention_forward(q.data(), k.data(), v.data(), B, T, Hq, Hkv, hd, p.data(), out.data());
        attention_backward(dout.data(), q.data(), k.data(), v.data(), p.data(), B, T, Hq, Hkv, hd, dq.data(), dk.data(), dv.data());
        rmsnorm_forward(x.data(), w.data(), N, I, 1e-5f, xn.data(), rstd.data());
        rmsnorm_backward(dx.data(), x.data(), w.data(), rstd.data(), N, I, dxn.data(), dg.data());
        std::vector<int32_t> ids(N);
        for (int64_t i = 0; i < N; ++i) ids[i] = static_cast<int32_t>((i * 7) % O);
        embedding_backward(dx.data(), ids.data(), N, I, dt.data());
        std::vector<float> all;
        for (const auto* vec : {&y, &dx, &dw, &db, &p, &out, &dq, &dk, &dv, &xn, &dxn, &dg, &dt}) all.insert(all.end(), vec->begin(), vec->end());
        return all;
    };
    const auto one = run(1), two = run(2), three = run(3);
    ThreadPool::set_global_threads(0);
    ASSERT_EQ(one.size(), two.size());
    EXPECT_EQ(0, std::memcmp(one.data(), two.data(), one.size() * sizeof(float)));
    EXPECT_EQ(0, std::memcmp(one.data(), three.data(), one.size() * sizeof(float)));
}

}  // namespace
}  // namespace cq::train
