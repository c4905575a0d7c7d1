// Training kernels (see train_ops.h): fast forms on the kernel table's f32 GEMMs, split into fixed-size tasks
// (row tiles, column tiles, (batch, head) pairs) so results are the same bytes for any thread count, and their
// scalar reference twins (double accumulation, plain loops).
#include "train/train_ops.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numbers>
#include <vector>

#include "cq/error.h"
#include "cq/kernels.h"
#include "cq/tensor.h"
#include "cq/thread_pool.h"
#include "kernels/kernel_decls.h"

namespace cq::train {

namespace {

constexpr int64_t kRowTile = 64;     // rows per task for row-parallel ops and the x·wᵀ / dy·w GEMMs
constexpr int64_t kColTile = 64;     // weight rows (outputs) per task for dw = dyᵀ·x
constexpr int64_t kElemTile = 1 << 14;

// Runs fn(task) for every task in [0, n); a task's result never depends on which thread ran it.
template <typename F>
void for_tasks(int64_t n, F fn) {
    ThreadPool::global().parallel_for(n, [&](int64_t t0, int64_t t1) {
        for (int64_t t = t0; t < t1; ++t) fn(t);
    });
}

// A per-thread buffer aligned like tensors (so a GEMM's output alignment is the same on every thread).
struct Scratch {
    float* data = nullptr;
    size_t size = 0;
    ~Scratch() { aligned_free(data); }
    float* get(size_t n) {
        if (n > size) {
            aligned_free(data);
            data = static_cast<float*>(aligned_alloc_bytes(std::max<size_t>(n, 16) * sizeof(float)));
            size = n;
        }
        return data;
    }
};
Scratch& scratch(int slot) {
    thread_local Scratch s[4];
    return s[slot];
}

// src: [rows, cols] (row stride lds) → dst: [cols, rows]
void transpose(const float* src, int64_t rows, int64_t cols, int64_t lds, float* dst) {
    constexpr int64_t kB = 16;
    for (int64_t r0 = 0; r0 < rows; r0 += kB)
        for (int64_t c0 = 0; c0 < cols; c0 += kB) {
            const int64_t r1 = std::min(rows, r0 + kB), c1 = std::min(cols, c0 + kB);
            for (int64_t r = r0; r < r1; ++r)
                for (int64_t c = c0; c < c1; ++c) dst[c * rows + r] = src[r * lds + c];
        }
}

float sigmoid(float x) { return 1.0f / (1.0f + std::exp(-x)); }

}  // namespace

// ---------------------------------------------------------------- matmul precision

namespace {
thread_local MatmulPrecision t_matmul_precision = MatmulPrecision::f32;

// f32 → f32 rounded to p's operand format (exact round trips through the kernel table's converters).
void round_operands(MatmulPrecision p, const float* x, float* y, int64_t n) {
    const KernelTable& kt = kernel_table();
    for_tasks((n + kElemTile - 1) / kElemTile, [&](int64_t task) {
        const int64_t i0 = task * kElemTile, m = std::min(kElemTile, n - i0);
        uint16_t* h = reinterpret_cast<uint16_t*>(scratch(3).get(static_cast<size_t>((m + 1) / 2)));
        if (p == MatmulPrecision::fp16_via_f32) {
            kt.convert_f32_f16.fn(x + i0, h, m);
            kt.convert_f16_f32.fn(h, y + i0, m);
        } else {
            kt.convert_f32_bf16.fn(x + i0, h, m);
            kt.convert_bf16_f32.fn(h, y + i0, m);
        }
    });
}

// f32 → bf16 bits, in parallel.
void to_bf16(const float* x, uint16_t* y, int64_t n) {
    const auto convert = kernel_table().convert_f32_bf16.fn;
    for_tasks((n + kElemTile - 1) / kElemTile, [&](int64_t task) {
        const int64_t i0 = task * kElemTile;
        convert(x + i0, y + i0, std::min(kElemTile, n - i0));
    });
}

// What `bf16` means on this kernel table.
MatmulPrecision resolved(MatmulPrecision p) {
    if (p == MatmulPrecision::bf16 && kernel_table().gemm_bf16.isa == IsaLevel::ref) return MatmulPrecision::bf16_via_f32;
    return p;
}

// Operand copies of the calling thread (grow-only, reused across calls).
template <typename T>
T* operand_buffer(int slot, int64_t n) {
    thread_local std::vector<T> buffers[3];
    std::vector<T>& b = buffers[slot];
    if (static_cast<int64_t>(b.size()) < n) b.resize(static_cast<size_t>(n));
    return b.data();
}

}  // namespace

MatmulPrecision matmul_precision() { return t_matmul_precision; }

MatmulPrecision parse_matmul_precision(const std::string& name) {
    if (name == "fp32") return MatmulPrecision::f32;
    if (name == "bf16") return MatmulPrecision::bf16;
    if (name == "fp16") return MatmulPrecision::fp16_via_f32;
    throw InvalidArgument("[train] precision '" + name + "' is not one of fp32, bf16, fp16");
}

ScopedMatmulPrecision::ScopedMatmulPrecision(MatmulPrecision p) : previous_(t_matmul_precision) { t_matmul_precision = p; }
ScopedMatmulPrecision::~ScopedMatmulPrecision() { t_matmul_precision = previous_; }

void round_operands__ref(MatmulPrecision p, const float* x, float* y, int64_t n) {
    for (int64_t i = 0; i < n; ++i) {
        if (p == MatmulPrecision::f32) y[i] = x[i];
        else if (p == MatmulPrecision::fp16_via_f32) y[i] = kernels::f16_to_f32_scalar(kernels::f32_to_f16_scalar(x[i]));
        else y[i] = kernels::bf16_to_f32_scalar(kernels::f32_to_bf16_scalar(x[i]));
    }
}

// ---------------------------------------------------------------- Linear

namespace {

void linear_forward_f32(const float* x, const float* w, const float* b, int64_t N, int64_t I, int64_t O, float* y) {
    const auto gemm = kernel_table().gemm_f32.fn;
    for_tasks((N + kRowTile - 1) / kRowTile, [&](int64_t task) {
        const int64_t r0 = task * kRowTile, rows = std::min(kRowTile, N - r0);
        gemm(rows, O, I, x + r0 * I, I, w, I, y + r0 * O, O);
        if (b)
            for (int64_t r = r0; r < r0 + rows; ++r)
                for (int64_t o = 0; o < O; ++o) y[r * O + o] += b[o];
    });
}

// The same tiles on bf16 operands (x, w converted once per call: weights change every step).
void linear_forward_bf16(const float* x, const float* w, const float* b, int64_t N, int64_t I, int64_t O, float* y) {
    const auto gemm = kernel_table().gemm_bf16.fn;
    uint16_t* xb = operand_buffer<uint16_t>(0, N * I);
    uint16_t* wb = operand_buffer<uint16_t>(1, O * I);
    to_bf16(x, xb, N * I), to_bf16(w, wb, O * I);
    for_tasks((N + kRowTile - 1) / kRowTile, [&](int64_t task) {
        const int64_t r0 = task * kRowTile, rows = std::min(kRowTile, N - r0);
        gemm(rows, O, I, xb + r0 * I, I, wb, I, y + r0 * O, O);
        if (b)
            for (int64_t r = r0; r < r0 + rows; ++r)
                for (int64_t o = 0; o < O; ++o) y[r * O + o] += b[o];
    });
}

// db[o0:o0+oc] += Σ_n dy[n, o]
void bias_grad(const float* dy, int64_t N, int64_t O, int64_t o0, int64_t oc, float* db) {
    for (int64_t o = o0; o < o0 + oc; ++o) {
        double s = 0;
        for (int64_t n = 0; n < N; ++n) s += dy[n * O + o];
        db[o] += static_cast<float>(s);
    }
}

void linear_backward_f32(const float* dy, const float* x, const float* w, int64_t N, int64_t I, int64_t O, float* dx,
                         bool accumulate_dx, float* dw, float* db, const float* dy_for_db) {
    const KernelTable& kt = kernel_table();
    const int64_t n_row_tasks = dx ? (N + kRowTile - 1) / kRowTile : 0;
    const int64_t n_col_tasks = (dw || db) ? (O + kColTile - 1) / kColTile : 0;
    // One task list for both products, so neither waits for the other's stragglers.
    for_tasks(n_row_tasks + n_col_tasks, [&](int64_t task) {
        if (task < n_row_tasks) {
            // dx[r0:r0+rows] = dy[r0:r0+rows] · w
            const int64_t r0 = task * kRowTile, rows = std::min(kRowTile, N - r0);
            if (!accumulate_dx) {
                kt.gemm_f32_nn.fn(rows, I, O, dy + r0 * O, O, w, I, dx + r0 * I, I);
            } else {
                float* tmp = scratch(0).get(static_cast<size_t>(rows * I));
                kt.gemm_f32_nn.fn(rows, I, O, dy + r0 * O, O, w, I, tmp, I);
                for (int64_t i = 0; i < rows * I; ++i) dx[r0 * I + i] += tmp[i];
            }
            return;
        }
        // dw[o0:o0+oc] += dy[:, o0:o0+oc]ᵀ · x ; db[o0:o0+oc] += Σ_n dy[n, o]
        const int64_t o0 = (task - n_row_tasks) * kColTile, oc = std::min(kColTile, O - o0);
        if (dw) {
            float* dyt = scratch(1).get(static_cast<size_t>(oc * N));
            float* tmp = scratch(2).get(static_cast<size_t>(oc * I));
            transpose(dy + o0, N, oc, O, dyt);
            kt.gemm_f32_nn.fn(oc, I, N, dyt, N, x, I, tmp, I);
            for (int64_t i = 0; i < oc * I; ++i) dw[o0 * I + i] += tmp[i];
        }
        if (db) bias_grad(dy_for_db, N, O, o0, oc, db);
    });
}

// The same tasks on bf16 operands (dy, x, w converted once per call).
void linear_backward_bf16(const float* dy, const float* x, const float* w, int64_t N, int64_t I, int64_t O, float* dx,
                          bool accumulate_dx, float* dw, float* db) {
    const KernelTable& kt = kernel_table();
    const int64_t n_row_tasks = dx ? (N + kRowTile - 1) / kRowTile : 0;
    const int64_t n_col_tasks = (dw || db) ? (O + kColTile - 1) / kColTile : 0;
    uint16_t* dyb = operand_buffer<uint16_t>(0, N * O);
    uint16_t* xb = dw ? operand_buffer<uint16_t>(1, N * I) : nullptr;
    uint16_t* wb = dx ? operand_buffer<uint16_t>(2, O * I) : nullptr;
    to_bf16(dy, dyb, N * O);
    if (xb) to_bf16(x, xb, N * I);
    if (wb) to_bf16(w, wb, O * I);
    for_tasks(n_row_tasks + n_col_tasks, [&](int64_t task) {
        if (task < n_row_tasks) {
            const int64_t r0 = task * kRowTile, rows = std::min(kRowTile, N - r0);
            if (!accumulate_dx) {
                kt.gemm_bf16_nn.fn(rows, I, O, dyb + r0 * O, O, wb, I, dx + r0 * I, I);
            } else {
                float* tmp = scratch(0).get(static_cast<size_t>(rows * I));
                kt.gemm_bf16_nn.fn(rows, I, O, dyb + r0 * O, O, wb, I, tmp, I);
                for (int64_t i = 0; i < rows * I; ++i) dx[r0 * I + i] += tmp[i];
            }
            return;
        }
        const int64_t o0 = (task - n_row_tasks) * kColTile, oc = std::min(kColTile, O - o0);
        if (dw) {  // dw[o0:o0+oc] += (dy[:, o0:o0+oc])ᵀ · x, dy read in place
            float* tmp = scratch(2).get(static_cast<size_t>(oc * I));
            kt.gemm_bf16_tn.fn(oc, I, N, dyb + o0, O, xb, I, tmp, I);
            for (int64_t i = 0; i < oc * I; ++i) dw[o0 * I + i] += tmp[i];
        }
        if (db) bias_grad(dy, N, O, o0, oc, db);
    });
}

}  // namespace

void linear_forward(const float* x, const float* w, const float* b, int64_t N, int64_t I, int64_t O, float* y) {
    const MatmulPrecision p = resolved(t_matmul_precision);
    if (p == MatmulPrecision::f32) return linear_forward_f32(x, w, b, N, I, O, y);
    if (p == MatmulPrecision::bf16) return linear_forward_bf16(x, w, b, N, I, O, y);
    float* xr = operand_buffer<float>(0, N * I);
    float* wr = operand_buffer<float>(1, O * I);
    round_operands(p, x, xr, N * I), round_operands(p, w, wr, O * I);
    linear_forward_f32(xr, wr, b, N, I, O, y);
}

void linear_backward(const float* dy, const float* x, const float* w, int64_t N, int64_t I, int64_t O, float* dx,
                     bool accumulate_dx, float* dw, float* db) {
    const MatmulPrecision p = resolved(t_matmul_precision);
    if (p == MatmulPrecision::f32) return linear_backward_f32(dy, x, w, N, I, O, dx, accumulate_dx, dw, db, dy);
    if (p == MatmulPrecision::bf16) return linear_backward_bf16(dy, x, w, N, I, O, dx, accumulate_dx, dw, db);
    float* dyr = operand_buffer<float>(0, N * O);
    float* xr = dw ? operand_buffer<float>(1, N * I) : nullptr;
    float* wr = dx ? operand_buffer<float>(2, O * I) : nullptr;
    round_operands(p, dy, dyr, N * O);
    if (xr) round_operands(p, x, xr, N * I);
    if (wr) round_operands(p, w, wr, O * I);
    linear_backward_f32(dyr, xr, wr, N, I, O, dx, accumulate_dx, dw, db, dy);
}

void linear_forward_rounded__ref(MatmulPrecision p, const float* x, const float* w, const float* b, int64_t N, int64_t I,
                                 int64_t O, float* y) {
    std::vector<float> xr(static_cast<size_t>(N * I)), wr(static_cast<size_t>(O * I));
    round_operands__ref(p, x, xr.data(), N * I), round_operands__ref(p, w, wr.data(), O * I);
    linear_forward__ref(xr.data(), wr.data(), b, N, I, O, y);
}

void linear_backward_rounded__ref(MatmulPrecision p, const float* dy, const float* x, const float* w, int64_t N, int64_t I,
                                  int64_t O, float* dx, bool accumulate_dx, float* dw, float* db) {
    std::vector<float> dyr(static_cast<size_t>(N * O)), xr(static_cast<size_t>(N * I)), wr(static_cast<size_t>(O * I));
    round_operands__ref(p, dy, dyr.data(), N * O), round_operands__ref(p, x, xr.data(), N * I);
    round_operands__ref(p, w, wr.data(), O * I);
    linear_backward__ref(dyr.data(), xr.data(), wr.data(), N, I, O, dx, accumulate_dx, dw, nullptr);
    if (db)
        for (int64_t o = 0; o < O; ++o) {
            double s = 0;
            for (int64_t n = 0; n < N; ++n) s += dy[n * O + o];
            db[o] += static_cast<float>(s);
        }
}

void linear_forward__ref(const float* x, const float* w, const float* b, int64_t N, int64_t I, int64_t O, float* y) {
    for (int64_t n = 0; n < N; ++n)
        for (int64_t o = 0; o < O; ++o) {
            double s = b ? b[o] : 0.0;
            for (int64_t i = 0; i < I; ++i) s += static_cast<double>(x[n * I + i]) * w[o * I + i];
            y[n * O + o] = static_cast<float>(s);
        }
}

void linear_backward__ref(const float* dy, const float* x, const float* w, int64_t N, int64_t I, int64_t O, float* dx,
                          bool accumulate_dx, float* dw, float* db) {
    if (dx)
        for (int64_t n = 0; n < N; ++n)
            for (int64_t i = 0; i < I; ++i) {
                double s = 0;
                for (int64_t o = 0; o < O; ++o) s += static_cast<double>(dy[n * O + o]) * w[o * I + i];
                dx[n * I + i] = static_cast<float>((accumulate_dx ? dx[n * I + i] : 0.0) + s);
            }
    if (dw)
        for (int64_t o = 0; o < O; ++o)
            for (int64_t i = 0; i < I; ++i) {
                double s = 0;
                for (int64_t n = 0; n < N; ++n) s += static_cast<double>(dy[n * O + o]) * x[n * I + i];
                dw[o * I + i] += static_cast<float>(s);
            }
    if (db)
        for (int64_t o = 0; o < O; ++o) {
            double s = 0;
            for (int64_t n = 0; n < N; ++n) s += dy[n * O + o];
            db[o] += static_cast<float>(s);
        }
}

// ---------------------------------------------------------------- RMSNorm

namespace {
float rms_rstd(const float* xr, int64_t D, float eps) {
    double ss = 0;
    for (int64_t i = 0; i < D; ++i) ss += static_cast<double>(xr[i]) * xr[i];
    return static_cast<float>(1.0 / std::sqrt(ss / static_cast<double>(D) + eps));
}
}  // namespace

void rmsnorm_forward(const float* x, const float* w, int64_t N, int64_t D, float eps, float* y, float* rstd) {
    for_tasks((N + kRowTile - 1) / kRowTile, [&](int64_t task) {
        for (int64_t n = task * kRowTile; n < std::min(N, (task + 1) * kRowTile); ++n) {
            const float* xr = x + n * D;
            const float r = rms_rstd(xr, D, eps);
            rstd[n] = r;
            for (int64_t i = 0; i < D; ++i) y[n * D + i] = (xr[i] * r) * w[i];
        }
    });
}

void rmsnorm_backward(const float* dy, const float* x, const float* w, const float* rstd, int64_t N, int64_t D, float* dx,
                      float* dw) {
    // dw is reduced in two fixed stages: per row tile (rows in order), then tiles in order.
    const int64_t n_tiles = (N + kRowTile - 1) / kRowTile;
    std::vector<float> partial(static_cast<size_t>(n_tiles * D), 0.0f);
    for_tasks(n_tiles, [&](int64_t task) {
        float* pw = partial.data() + task * D;
        for (int64_t n = task * kRowTile; n < std::min(N, (task + 1) * kRowTile); ++n) {
            const float* xr = x + n * D;
            const float* dyr = dy + n * D;
            const float r = rstd[n];
            double dot = 0;  // Σ (dy·w)·x̂ / D
            for (int64_t i = 0; i < D; ++i) dot += static_cast<double>(dyr[i] * w[i]) * (xr[i] * r);
            const float m = static_cast<float>(dot / static_cast<double>(D));
            for (int64_t i = 0; i < D; ++i) {
                const float xhat = xr[i] * r;
                dx[n * D + i] += r * (dyr[i] * w[i] - xhat * m);
                pw[i] += dyr[i] * xhat;
            }
        }
    });
    for (int64_t t = 0; t < n_tiles; ++t)
        for (int64_t i = 0; i < D; ++i) dw[i] += partial[static_cast<size_t>(t * D + i)];
}

void rmsnorm_forward__ref(const float* x, const float* w, int64_t N, int64_t D, float eps, float* y, float* rstd) {
    for (int64_t n = 0; n < N; ++n) {
        double ss = 0;
        for (int64_t i = 0; i < D; ++i) ss += static_cast<double>(x[n * D + i]) * x[n * D + i];
        const double r = 1.0 / std::sqrt(ss / static_cast<double>(D) + eps);
        rstd[n] = static_cast<float>(r);
        for (int64_t i = 0; i < D; ++i) y[n * D + i] = static_cast<float>(x[n * D + i] * r * w[i]);
    }
}

// Straight from the Jacobian: y_i = w_i·x_i·r, ∂r/∂x_j = −r³·x_j/D.
void rmsnorm_backward__ref(const float* dy, const float* x, const float* w, const float* rstd, int64_t N, int64_t D,
                           float* dx, float* dw) {
    for (int64_t n = 0; n < N; ++n) {
        const double r = rstd[n];
        double s = 0;  // Σ_i dy_i·w_i·x_i
        for (int64_t i = 0; i < D; ++i) s += static_cast<double>(dy[n * D + i]) * w[i] * x[n * D + i];
        for (int64_t j = 0; j < D; ++j) {
            const double xj = x[n * D + j];
            dx[n * D + j] += static_cast<float>(dy[n * D + j] * w[j] * r - s * r * r * r * xj / static_cast<double>(D));
        }
    }
    for (int64_t i = 0; i < D; ++i) {
        double s = 0;
        for (int64_t n = 0; n < N; ++n) s += static_cast<double>(dy[n * D + i]) * x[n * D + i] * rstd[n];
        dw[i] += static_cast<float>(s);
    }
}

// ---------------------------------------------------------------- LayerNorm

void layernorm_forward(const float* x, const float* w, const float* b, int64_t N, int64_t D, float eps, float* y,
                       float* mean, float* rstd) {
    for_tasks((N + kRowTile - 1) / kRowTile, [&](int64_t task) {
        for (int64_t n = task * kRowTile; n < std::min(N, (task + 1) * kRowTile); ++n) {
            const float* xr = x + n * D;
            double s = 0;
            for (int64_t i = 0; i < D; ++i) s += xr[i];
            const float m = static_cast<float>(s / static_cast<double>(D));
            double v = 0;
            for (int64_t i = 0; i < D; ++i) v += static_cast<double>(xr[i] - m) * (xr[i] - m);
            const float r = static_cast<float>(1.0 / std::sqrt(v / static_cast<double>(D) + eps));
            mean[n] = m, rstd[n] = r;
            for (int64_t i = 0; i < D; ++i) y[n * D + i] = (xr[i] - m) * r * w[i] + (b ? b[i] : 0.0f);
        }
    });
}

void layernorm_backward(const float* dy, const float* x, const float* w, const float* mean, const float* rstd, int64_t N,
                        int64_t D, float* dx, float* dw, float* db) {
    const int64_t n_tiles = (N + kRowTile - 1) / kRowTile;
    std::vector<float> partial(static_cast<size_t>(n_tiles * 2 * D), 0.0f);  // per tile: dw, then db
    for_tasks(n_tiles, [&](int64_t task) {
        float* pw = partial.data() + task * 2 * D;
        float* pb = pw + D;
        for (int64_t n = task * kRowTile; n < std::min(N, (task + 1) * kRowTile); ++n) {
            const float* xr = x + n * D;
            const float* dyr = dy + n * D;
            const float m = mean[n], r = rstd[n];
            double s1 = 0, s2 = 0;  // Σ dy·w, Σ dy·w·x̂
            for (int64_t i = 0; i < D; ++i) {
                const float dn = dyr[i] * w[i];
                s1 += dn;
                s2 += static_cast<double>(dn) * ((xr[i] - m) * r);
            }
            const float m1 = static_cast<float>(s1 / static_cast<double>(D)), m2 = static_cast<float>(s2 / static_cast<double>(D));
            for (int64_t i = 0; i < D; ++i) {
                const float xhat = (xr[i] - m) * r;
                dx[n * D + i] += r * (dyr[i] * w[i] - m1 - xhat * m2);
                pw[i] += dyr[i] * xhat;
                pb[i] += dyr[i];
            }
        }
    });
    for (int64_t t = 0; t < n_tiles; ++t)
        for (int64_t i = 0; i < D; ++i) {
            dw[i] += partial[static_cast<size_t>(t * 2 * D + i)];
            if (db) db[i] += partial[static_cast<size_t>(t * 2 * D + D + i)];
        }
}

void layernorm_forward__ref(const float* x, const float* w, const float* b, int64_t N, int64_t D, float eps, float* y,
                            float* mean, float* rstd) {
    for (int64_t n = 0; n < N; ++n) {
        double s = 0, v = 0;
        for (int64_t i = 0; i < D; ++i) s += x[n * D + i];
        const double m = s / static_cast<double>(D);
        for (int64_t i = 0; i < D; ++i) v += (x[n * D + i] - m) * (x[n * D + i] - m);
        const double r = 1.0 / std::sqrt(v / static_cast<double>(D) + eps);
        mean[n] = static_cast<float>(m), rstd[n] = static_cast<float>(r);
        for (int64_t i = 0; i < D; ++i) y[n * D + i] = static_cast<float>((x[n * D + i] - m) * r * w[i] + (b ? b[i] : 0.0));
    }
}

// From the Jacobian: y_i = w_i·(x_i − μ)·r + b_i, ∂μ/∂x_j = 1/D, ∂r/∂x_j = −r³·(x_j − μ)/D.
void layernorm_backward__ref(const float* dy, const float* x, const float* w, const float* mean, const float* rstd,
                             int64_t N, int64_t D, float* dx, float* dw, float* db) {
    for (int64_t n = 0; n < N; ++n) {
        const double m = mean[n], r = rstd[n];
        double a = 0, c = 0;  // Σ dy·w, Σ dy·w·(x − μ)
        for (int64_t i = 0; i < D; ++i) {
            a += static_cast<double>(dy[n * D + i]) * w[i];
            c += static_cast<double>(dy[n * D + i]) * w[i] * (x[n * D + i] - m);
        }
        for (int64_t j = 0; j < D; ++j) {
            const double xc = x[n * D + j] - m;
            dx[n * D + j] += static_cast<float>(r * dy[n * D + j] * w[j] - r * a / static_cast<double>(D) - r * r * r * xc * c / static_cast<double>(D));
        }
    }
    for (int64_t i = 0; i < D; ++i) {
        double sw = 0, sb = 0;
        for (int64_t n = 0; n < N; ++n) {
            sw += static_cast<double>(dy[n * D + i]) * (x[n * D + i] - mean[n]) * rstd[n];
            sb += dy[n * D + i];
        }
        dw[i] += static_cast<float>(sw);
        if (db) db[i] += static_cast<float>(sb);
    }
}

// ---------------------------------------------------------------- GELU (tanh)

namespace {
constexpr float kGeluK = 0.7978845608028654f;  // √(2/π)
}

void gelu_tanh_forward(const float* x, float* y, int64_t n) {
    for_tasks((n + kElemTile - 1) / kElemTile, [&](int64_t task) {
        for (int64_t i = task * kElemTile; i < std::min(n, (task + 1) * kElemTile); ++i) {
            const float v = x[i];
            y[i] = 0.5f * v * (1.0f + std::tanh(kGeluK * (v + 0.044715f * v * v * v)));
        }
    });
}

void gelu_tanh_backward(const float* dy, const float* x, float* dx, int64_t n) {
    for_tasks((n + kElemTile - 1) / kElemTile, [&](int64_t task) {
        for (int64_t i = task * kElemTile; i < std::min(n, (task + 1) * kElemTile); ++i) {
            const float v = x[i];
            const float t = std::tanh(kGeluK * (v + 0.044715f * v * v * v));
            const float d = 0.5f * (1.0f + t) + 0.5f * v * (1.0f - t * t) * kGeluK * (1.0f + 3.0f * 0.044715f * v * v);
            dx[i] = dy[i] * d;
        }
    });
}

void gelu_tanh_backward__ref(const float* dy, const float* x, float* dx, int64_t n) {
    const double k = std::sqrt(2.0 / std::numbers::pi);
    for (int64_t i = 0; i < n; ++i) {
        const double v = x[i], t = std::tanh(k * (v + 0.044715 * v * v * v));
        dx[i] = static_cast<float>(dy[i] * (0.5 * (1.0 + t) + 0.5 * v * (1.0 - t * t) * k * (1.0 + 3.0 * 0.044715 * v * v)));
    }
}

// ---------------------------------------------------------------- RoPE

void rope_tables(int64_t T, int64_t rope_dims, float theta, float scale, float* cos_t, float* sin_t) {
    const int64_t half = rope_dims / 2;
    for (int64_t t = 0; t < T; ++t)
        for (int64_t i = 0; i < half; ++i) {
            const double inv_freq = std::pow(static_cast<double>(theta), -2.0 * static_cast<double>(i) / static_cast<double>(rope_dims));
            const double angle = static_cast<double>(t) / scale * inv_freq;
            cos_t[t * half + i] = static_cast<float>(std::cos(angle));
            sin_t[t * half + i] = static_cast<float>(std::sin(angle));
        }
}

namespace {
// sign = +1: forward rotation; −1: its transpose (the backward).
void rope_rows(float* x, int64_t r0, int64_t r1, int64_t T, int64_t stride, int64_t n_head, int64_t head_dim,
               int64_t rope_dims, const float* cos_t, const float* sin_t, RopePairing pairing, float sign) {
    const int64_t half = rope_dims / 2;
    for (int64_t r = r0; r < r1; ++r) {
        const int64_t t = r % T;
        const float* c = cos_t + t * half;
        const float* s = sin_t + t * half;
        for (int64_t h = 0; h < n_head; ++h) {
            float* v = x + r * stride + h * head_dim;
            for (int64_t i = 0; i < half; ++i) {
                const int64_t a = pairing == RopePairing::adjacent ? 2 * i : i;
                const int64_t b = pairing == RopePairing::adjacent ? 2 * i + 1 : i + half;
                const float x0 = v[a], x1 = v[b], si = sign * s[i];
                v[a] = x0 * c[i] - x1 * si;
                v[b] = x0 * si + x1 * c[i];
            }
        }
    }
}
}  // namespace

void rope_forward(float* x, int64_t B, int64_t T, int64_t stride, int64_t n_head, int64_t head_dim, int64_t rope_dims,
                  const float* cos_t, const float* sin_t, RopePairing pairing) {
    const int64_t N = B * T;
    for_tasks((N + kRowTile - 1) / kRowTile, [&](int64_t task) {
        rope_rows(x, task * kRowTile, std::min(N, (task + 1) * kRowTile), T, stride, n_head, head_dim, rope_dims, cos_t,
                  sin_t, pairing, 1.0f);
    });
}

void rope_backward(float* dx, int64_t B, int64_t T, int64_t stride, int64_t n_head, int64_t head_dim, int64_t rope_dims,
                   const float* cos_t, const float* sin_t, RopePairing pairing) {
    const int64_t N = B * T;
    for_tasks((N + kRowTile - 1) / kRowTile, [&](int64_t task) {
        rope_rows(dx, task * kRowTile, std::min(N, (task + 1) * kRowTile), T, stride, n_head, head_dim, rope_dims, cos_t,
                  sin_t, pairing, -1.0f);
    });
}

// y_a = x_a·c − x_b·s, y_b = x_a·s + x_b·c  ⇒  dx_a = dy_a·c + dy_b·s, dx_b = −dy_a·s + dy_b·c.
void rope_backward__ref(float* dx, int64_t B, int64_t T, int64_t stride, int64_t n_head, int64_t head_dim,
                        int64_t rope_dims, const float* cos_t, const float* sin_t, RopePairing pairing) {
    const int64_t half = rope_dims / 2;
    for (int64_t r = 0; r < B * T; ++r)
        for (int64_t h = 0; h < n_head; ++h)
            for (int64_t i = 0; i < half; ++i) {
                float* v = dx + r * stride + h * head_dim;
                const int64_t a = pairing == RopePairing::adjacent ? 2 * i : i;
                const int64_t b = pairing == RopePairing::adjacent ? 2 * i + 1 : i + half;
                const double c = cos_t[(r % T) * half + i], s = sin_t[(r % T) * half + i];
                const double ga = v[a], gb = v[b];
                v[a] = static_cast<float>(ga * c + gb * s);
                v[b] = static_cast<float>(-ga * s + gb * c);
            }
}

// ---------------------------------------------------------------- attention

namespace {
// row: [n] raw scores, entries ≥ valid masked → row ← softmax(scale·row) over [0, valid), 0 beyond.
void softmax_row(float* row, int64_t valid, int64_t n, float scale) {
    float mx = row[0];
    for (int64_t j = 1; j < valid; ++j) mx = std::max(mx, row[j]);
    double sum = 0;
    for (int64_t j = 0; j < valid; ++j) {
        row[j] = std::exp((row[j] - mx) * scale);
        sum += row[j];
    }
    const float inv = static_cast<float>(1.0 / sum);
    for (int64_t j = 0; j < valid; ++j) row[j] *= inv;
    std::fill(row + valid, row + n, 0.0f);
}
}  // namespace

namespace {
// The keys query t of sequence b sees: [0, t] (causal) or the real tokens.
bool sees(const int32_t* key_mask, int64_t b, int64_t T, int64_t t, int64_t j) {
    return key_mask ? key_mask[b * T + j] != 0 : j <= t;
}
}  // namespace

// ---------------------------------------------------------------- low-precision products with an f32 interface

namespace {

enum class Form { nt, nn, tn };  // c = a·bᵀ (b: [n, k]); c = a·b (b: [k, n]); c = aᵀ·b (a: [k, m], b: [k, n])

// rows × cols of src (row stride lds) → dst contiguous, as p's operands: bf16 bits (native) or f32 rounded to p.
void pack_operand(MatmulPrecision p, const float* src, int64_t rows, int64_t cols, int64_t lds, void* dst) {
    const KernelTable& kt = kernel_table();
    if (p == MatmulPrecision::bf16) {
        uint16_t* d = static_cast<uint16_t*>(dst);
        for (int64_t r = 0; r < rows; ++r) kt.convert_f32_bf16.fn(src + r * lds, d + r * cols, cols);
        return;
    }
    thread_local std::vector<uint16_t> row;
    if (static_cast<int64_t>(row.size()) < cols) row.resize(static_cast<size_t>(cols));
    float* d = static_cast<float*>(dst);
    for (int64_t r = 0; r < rows; ++r) {
        if (p == MatmulPrecision::fp16_via_f32) {
            kt.convert_f32_f16.fn(src + r * lds, row.data(), cols);
            kt.convert_f16_f32.fn(row.data(), d + r * cols, cols);
        } else {
            kt.convert_f32_bf16.fn(src + r * lds, row.data(), cols);
            kt.convert_bf16_f32.fn(row.data(), d + r * cols, cols);
        }
    }
}

// One product on operands in precision p (resolved, not f32), f32 in and out; single-threaded (inside a task).
void lowp_gemm(MatmulPrecision p, Form form, int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b,
               int64_t ldb, float* c, int64_t ldc) {
    const KernelTable& kt = kernel_table();
    thread_local std::vector<float> abuf, bbuf, tbuf;  // f32 words (bf16 operands take half of one each)
    const int64_t a_rows = form == Form::tn ? k : m, a_cols = form == Form::tn ? m : k;
    const int64_t b_rows = form == Form::nt ? n : k, b_cols = form == Form::nt ? k : n;
    if (static_cast<int64_t>(abuf.size()) < a_rows * a_cols) abuf.resize(static_cast<size_t>(a_rows * a_cols));
    if (static_cast<int64_t>(bbuf.size()) < b_rows * b_cols) bbuf.resize(static_cast<size_t>(b_rows * b_cols));
    pack_operand(p, a, a_rows, a_cols, lda, abuf.data());
    pack_operand(p, b, b_rows, b_cols, ldb, bbuf.data());
    if (p == MatmulPrecision::bf16) {
        const auto* ab = reinterpret_cast<const uint16_t*>(abuf.data());
        const auto* bb = reinterpret_cast<const uint16_t*>(bbuf.data());
        if (form == Form::nt) kt.gemm_bf16.fn(m, n, k, ab, a_cols, bb, b_cols, c, ldc);
        else if (form == Form::nn) kt.gemm_bf16_nn.fn(m, n, k, ab, a_cols, bb, b_cols, c, ldc);
        else kt.gemm_bf16_tn.fn(m, n, k, ab, a_cols, bb, b_cols, c, ldc);
        return;
    }
    if (form == Form::nt) return kt.gemm_f32.fn(m, n, k, abuf.data(), a_cols, bbuf.data(), b_cols, c, ldc);
    if (form == Form::nn) return kt.gemm_f32_nn.fn(m, n, k, abuf.data(), a_cols, bbuf.data(), b_cols, c, ldc);
    if (static_cast<int64_t>(tbuf.size()) < m * k) tbuf.resize(static_cast<size_t>(m * k));
    transpose(abuf.data(), k, m, m, tbuf.data());
    kt.gemm_f32_nn.fn(m, n, k, tbuf.data(), k, bbuf.data(), b_cols, c, ldc);
}

}  // namespace

void attention_forward(const float* q, const float* k, const float* v, int64_t B, int64_t T, int64_t Hq, int64_t Hkv,
                       int64_t hd, float* p, float* out, const int32_t* key_mask, const float* drop) {
    const KernelTable& kt = kernel_table();
    const int64_t qs = Hq * hd, ks = Hkv * hd, group = Hq / Hkv;
    const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
    const MatmulPrecision mp = resolved(t_matmul_precision);  // read here: the tasks run on other threads
    for_tasks(B * Hq, [&](int64_t task) {
        const int64_t b = task / Hq, h = task % Hq, hk = h / group;
        float* P = p + task * T * T;
        const float* qh = q + b * T * qs + h * hd;
        const float* kh = k + b * T * ks + hk * hd;
        const float* vh = v + b * T * ks + hk * hd;
        if (mp == MatmulPrecision::f32) kt.gemm_f32.fn(T, T, hd, qh, qs, kh, ks, P, T);  // S: [T, T] = Q_h·K_hᵀ
        else lowp_gemm(mp, Form::nt, T, T, hd, qh, qs, kh, ks, P, T);
        if (!key_mask) {
            for (int64_t t = 0; t < T; ++t) softmax_row(P + t * T, t + 1, T, scale);
        } else {
            const int32_t* m = key_mask + b * T;
            for (int64_t t = 0; t < T; ++t) {
                float* row = P + t * T;
                float mx = -INFINITY;
                for (int64_t j = 0; j < T; ++j)
                    if (m[j]) mx = std::max(mx, row[j]);
                double sum = 0;
                for (int64_t j = 0; j < T; ++j) {
                    row[j] = m[j] ? std::exp((row[j] - mx) * scale) : 0.0f;
                    sum += row[j];
                }
                const float inv = sum > 0 ? static_cast<float>(1.0 / sum) : 0.0f;
                for (int64_t j = 0; j < T; ++j) row[j] *= inv;
            }
        }
        const float* Pv = P;
        if (drop) {
            float* pd = scratch(0).get(static_cast<size_t>(T * T));
            const float* dm = drop + task * T * T;
            for (int64_t i = 0; i < T * T; ++i) pd[i] = P[i] * dm[i];
            Pv = pd;
        }
        if (mp == MatmulPrecision::f32) kt.gemm_f32_nn.fn(T, hd, T, Pv, T, vh, ks, out + b * T * qs + h * hd, qs);  // out_h = (P∘drop)·V_h
        else lowp_gemm(mp, Form::nn, T, hd, T, Pv, T, vh, ks, out + b * T * qs + h * hd, qs);
    });
}

void attention_backward(const float* dout, const float* q, const float* k, const float* v, const float* p, int64_t B,
                        int64_t T, int64_t Hq, int64_t Hkv, int64_t hd, float* dq, float* dk, float* dv,
                        const int32_t* key_mask, const float* drop) {
    const KernelTable& kt = kernel_table();
    const int64_t qs = Hq * hd, ks = Hkv * hd, group = Hq / Hkv;
    const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
    const MatmulPrecision mp = resolved(t_matmul_precision);  // read here: the tasks run on other threads
    // One task per (batch, KV head): the heads sharing it add their dK, dV in head order.
    for_tasks(B * Hkv, [&](int64_t task) {
        const int64_t b = task / Hkv, hk = task % Hkv;
        float* dP = scratch(0).get(static_cast<size_t>(T * T));
        float* tr = scratch(1).get(static_cast<size_t>(T * T));
        float* tmp = scratch(2).get(static_cast<size_t>(T * hd));
        const float* kh = k + b * T * ks + hk * hd;
        const float* vh = v + b * T * ks + hk * hd;
        float* dkh = dk + b * T * ks + hk * hd;
        float* dvh = dv + b * T * ks + hk * hd;
        for (int64_t g = 0; g < group; ++g) {
            const int64_t h = hk * group + g;
            const float* P = p + (b * Hq + h) * T * T;
            const float* dm = drop ? drop + (b * Hq + h) * T * T : nullptr;
            const float* doh = dout + b * T * qs + h * hd;
            const float* qh = q + b * T * qs + h * hd;
            float* dqh = dq + b * T * qs + h * hd;
            const auto add_into = [&](float* dst) {  // dst: [T, hd] (row stride ks) (+)= tmp
                for (int64_t t = 0; t < T; ++t)
                    for (int64_t d = 0; d < hd; ++d) dst[t * ks + d] = (g == 0 ? 0.0f : dst[t * ks + d]) + tmp[t * hd + d];
            };
            if (mp != MatmulPrecision::f32) {  // the same products on low-precision operands, Pᵀ and dSᵀ read in place
                lowp_gemm(mp, Form::nt, T, T, hd, doh, qs, vh, ks, dP, T);
                const float* Pd = P;
                if (dm) {
                    for (int64_t i = 0; i < T * T; ++i) tr[i] = P[i] * dm[i];
                    Pd = tr;
                }
                lowp_gemm(mp, Form::tn, T, hd, T, Pd, T, doh, qs, tmp, hd);
            } else {
                kt.gemm_f32.fn(T, T, hd, doh, qs, vh, ks, dP, T);  // d(P∘drop) = dO_h·V_hᵀ
                transpose(P, T, T, T, tr);
                if (dm)
                    for (int64_t i = 0; i < T; ++i)
                        for (int64_t j = 0; j < T; ++j) tr[j * T + i] *= dm[i * T + j];
                kt.gemm_f32_nn.fn(T, hd, T, tr, T, doh, qs, tmp, hd);  // dV_h = (P∘drop)ᵀ·dO_h
            }
            add_into(dvh);
            for (int64_t t = 0; t < T; ++t) {  // dS = P ∘ (dP − Σ_j dP·P)·scale, dP = d(P∘drop)∘drop
                float* dr = dP + t * T;
                const float* pr = P + t * T;
                if (dm)
                    for (int64_t j = 0; j < T; ++j) dr[j] *= dm[t * T + j];
                double dot = 0;
                for (int64_t j = 0; j < T; ++j)
                    if (sees(key_mask, b, T, t, j)) dot += static_cast<double>(dr[j]) * pr[j];
                const float m = static_cast<float>(dot);
                for (int64_t j = 0; j < T; ++j) dr[j] = sees(key_mask, b, T, t, j) ? pr[j] * (dr[j] - m) * scale : 0.0f;
            }
            if (mp != MatmulPrecision::f32) {
                lowp_gemm(mp, Form::nn, T, hd, T, dP, T, kh, ks, dqh, qs);
                lowp_gemm(mp, Form::tn, T, hd, T, dP, T, qh, qs, tmp, hd);
            } else {
                kt.gemm_f32_nn.fn(T, hd, T, dP, T, kh, ks, dqh, qs);  // dQ_h = dS·K_h
                transpose(dP, T, T, T, tr);
                kt.gemm_f32_nn.fn(T, hd, T, tr, T, qh, qs, tmp, hd);  // dK_h = dSᵀ·Q_h
            }
            add_into(dkh);
        }
    });
}

void attention_forward__ref(const float* q, const float* k, const float* v, int64_t B, int64_t T, int64_t Hq,
                            int64_t Hkv, int64_t hd, float* p, float* out, const int32_t* key_mask, const float* drop) {
    const int64_t qs = Hq * hd, ks = Hkv * hd, group = Hq / Hkv;
    const double scale = 1.0 / std::sqrt(static_cast<double>(hd));
    std::vector<double> row(static_cast<size_t>(T));
    for (int64_t b = 0; b < B; ++b)
        for (int64_t h = 0; h < Hq; ++h) {
            const int64_t hk = h / group;
            float* P = p + (b * Hq + h) * T * T;
            const float* dm = drop ? drop + (b * Hq + h) * T * T : nullptr;
            for (int64_t t = 0; t < T; ++t) {
                double mx = -1e300, sum = 0;
                for (int64_t j = 0; j < T; ++j) {
                    if (!sees(key_mask, b, T, t, j)) continue;
                    double s = 0;
                    for (int64_t d = 0; d < hd; ++d) s += static_cast<double>(q[(b * T + t) * qs + h * hd + d]) * k[(b * T + j) * ks + hk * hd + d];
                    row[j] = s * scale;
                    mx = std::max(mx, row[j]);
                }
                for (int64_t j = 0; j < T; ++j)
                    if (sees(key_mask, b, T, t, j)) sum += (row[j] = std::exp(row[j] - mx));
                for (int64_t j = 0; j < T; ++j) {
                    row[j] = sees(key_mask, b, T, t, j) ? row[j] / sum : 0.0;
                    P[t * T + j] = static_cast<float>(row[j]);
                }
                for (int64_t d = 0; d < hd; ++d) {
                    double o = 0;
                    for (int64_t j = 0; j < T; ++j) o += row[j] * (dm ? dm[t * T + j] : 1.0) * v[(b * T + j) * ks + hk * hd + d];
                    out[(b * T + t) * qs + h * hd + d] = static_cast<float>(o);
                }
            }
        }
}

void attention_backward__ref(const float* dout, const float* q, const float* k, const float* v, const float* p,
                             int64_t B, int64_t T, int64_t Hq, int64_t Hkv, int64_t hd, float* dq, float* dk, float* dv,
                             const int32_t* key_mask, const float* drop) {
    const int64_t qs = Hq * hd, ks = Hkv * hd, group = Hq / Hkv;
    const double scale = 1.0 / std::sqrt(static_cast<double>(hd));
    std::vector<double> dk_acc(static_cast<size_t>(B * T * ks), 0.0), dv_acc(dk_acc.size(), 0.0);
    std::vector<double> dp(static_cast<size_t>(T));
    for (int64_t b = 0; b < B; ++b)
        for (int64_t h = 0; h < Hq; ++h) {
            const int64_t hk = h / group;
            const float* P = p + (b * Hq + h) * T * T;
            const float* dm = drop ? drop + (b * Hq + h) * T * T : nullptr;
            for (int64_t t = 0; t < T; ++t) {
                const float* dot_ = dout + (b * T + t) * qs + h * hd;
                double sum = 0;
                for (int64_t j = 0; j < T; ++j) {
                    if (!sees(key_mask, b, T, t, j)) continue;
                    const double m = dm ? dm[t * T + j] : 1.0;
                    double s = 0;
                    for (int64_t d = 0; d < hd; ++d) s += static_cast<double>(dot_[d]) * v[(b * T + j) * ks + hk * hd + d];
                    dp[j] = s * m;
                    sum += dp[j] * P[t * T + j];
                    for (int64_t d = 0; d < hd; ++d) dv_acc[(b * T + j) * ks + hk * hd + d] += P[t * T + j] * m * dot_[d];
                }
                for (int64_t d = 0; d < hd; ++d) dq[(b * T + t) * qs + h * hd + d] = 0.0f;
                for (int64_t j = 0; j < T; ++j) {
                    if (!sees(key_mask, b, T, t, j)) continue;
                    const double ds = P[t * T + j] * (dp[j] - sum) * scale;
                    for (int64_t d = 0; d < hd; ++d) {
                        dq[(b * T + t) * qs + h * hd + d] += static_cast<float>(ds * k[(b * T + j) * ks + hk * hd + d]);
                        dk_acc[(b * T + j) * ks + hk * hd + d] += ds * q[(b * T + t) * qs + h * hd + d];
                    }
                }
            }
        }
    for (size_t i = 0; i < dk_acc.size(); ++i) dk[i] = static_cast<float>(dk_acc[i]), dv[i] = static_cast<float>(dv_acc[i]);
}

// ---------------------------------------------------------------- GELU (erf), tanh, dropout

void gelu_erf_forward(const float* x, float* y, int64_t n) {
    for_tasks((n + kElemTile - 1) / kElemTile, [&](int64_t task) {
        for (int64_t i = task * kElemTile; i < std::min(n, (task + 1) * kElemTile); ++i)
            y[i] = 0.5f * x[i] * (1.0f + std::erf(x[i] * 0.70710678118654752f));
    });
}

void gelu_erf_backward(const float* dy, const float* x, float* dx, int64_t n) {
    for_tasks((n + kElemTile - 1) / kElemTile, [&](int64_t task) {
        for (int64_t i = task * kElemTile; i < std::min(n, (task + 1) * kElemTile); ++i) {
            const float v = x[i];
            const float cdf = 0.5f * (1.0f + std::erf(v * 0.70710678118654752f));
            const float pdf = 0.3989422804014327f * std::exp(-0.5f * v * v);
            dx[i] = dy[i] * (cdf + v * pdf);
        }
    });
}

void gelu_erf_backward__ref(const float* dy, const float* x, float* dx, int64_t n) {
    for (int64_t i = 0; i < n; ++i) {
        const double v = x[i];
        dx[i] = static_cast<float>(dy[i] * (0.5 * std::erfc(-v / std::sqrt(2.0)) + v * std::exp(-0.5 * v * v) / std::sqrt(2.0 * std::numbers::pi)));
    }
}

void tanh_forward(const float* x, float* y, int64_t n) {
    for (int64_t i = 0; i < n; ++i) y[i] = std::tanh(x[i]);
}

void tanh_backward(const float* dy, const float* y, float* dx, int64_t n) {
    for (int64_t i = 0; i < n; ++i) dx[i] = dy[i] * (1.0f - y[i] * y[i]);
}

void dropout_mask(uint64_t key, float p, float* m, int64_t n) {
    const float keep = 1.0f / (1.0f - p);
    const auto threshold = static_cast<uint64_t>(static_cast<double>(p) * 18446744073709551616.0);
    for_tasks((n + kElemTile - 1) / kElemTile, [&](int64_t task) {
        for (int64_t i = task * kElemTile; i < std::min(n, (task + 1) * kElemTile); ++i) {
            uint64_t z = key + static_cast<uint64_t>(i) * 0x9e3779b97f4a7c15ull;  // splitmix64 of (key, i)
            z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
            z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
            z ^= z >> 31;
            m[i] = z < threshold ? 0.0f : keep;
        }
    });
}

void mul_forward(const float* a, const float* b, float* y, int64_t n) {
    for_tasks((n + kElemTile - 1) / kElemTile, [&](int64_t task) {
        for (int64_t i = task * kElemTile; i < std::min(n, (task + 1) * kElemTile); ++i) y[i] = a[i] * b[i];
    });
}

// ---------------------------------------------------------------- SwiGLU

void swiglu_forward(const float* g, const float* u, float* h, int64_t n) {
    for_tasks((n + kElemTile - 1) / kElemTile, [&](int64_t task) {
        for (int64_t i = task * kElemTile; i < std::min(n, (task + 1) * kElemTile); ++i) h[i] = (g[i] * sigmoid(g[i])) * u[i];
    });
}

void swiglu_backward(const float* dh, const float* g, const float* u, float* dg, float* du, int64_t n) {
    for_tasks((n + kElemTile - 1) / kElemTile, [&](int64_t task) {
        for (int64_t i = task * kElemTile; i < std::min(n, (task + 1) * kElemTile); ++i) {
            const float s = sigmoid(g[i]), d = dh[i];
            du[i] = d * (g[i] * s);
            dg[i] = d * u[i] * (s * (1.0f + g[i] * (1.0f - s)));
        }
    });
}

// d/dg [g·σ(g)] = σ(g) + g·σ(g)·(1 − σ(g))
void swiglu_backward__ref(const float* dh, const float* g, const float* u, float* dg, float* du, int64_t n) {
    for (int64_t i = 0; i < n; ++i) {
        const double s = 1.0 / (1.0 + std::exp(-static_cast<double>(g[i])));
        du[i] = static_cast<float>(dh[i] * g[i] * s);
        dg[i] = static_cast<float>(static_cast<double>(dh[i]) * u[i] * (s + g[i] * s * (1.0 - s)));
    }
}

// ---------------------------------------------------------------- embedding

void embedding_forward(const float* table, const int32_t* ids, int64_t N, int64_t D, float* y) {
    for_tasks((N + kRowTile - 1) / kRowTile, [&](int64_t task) {
        for (int64_t n = task * kRowTile; n < std::min(N, (task + 1) * kRowTile); ++n)
            std::memcpy(y + n * D, table + static_cast<int64_t>(ids[n]) * D, static_cast<size_t>(D) * sizeof(float));
    });
}

void embedding_backward(const float* dy, const int32_t* ids, int64_t N, int64_t D, float* dtable) {
    // Column tiles: a table row is added to by every token of its id, always in token order.
    for_tasks((D + kColTile - 1) / kColTile, [&](int64_t task) {
        const int64_t c0 = task * kColTile, c1 = std::min(D, c0 + kColTile);
        for (int64_t n = 0; n < N; ++n) {
            float* dst = dtable + static_cast<int64_t>(ids[n]) * D;
            for (int64_t c = c0; c < c1; ++c) dst[c] += dy[n * D + c];
        }
    });
}

void embedding_backward__ref(const float* dy, const int32_t* ids, int64_t N, int64_t D, float* dtable) {
    for (int64_t n = 0; n < N; ++n)
        for (int64_t c = 0; c < D; ++c) dtable[static_cast<int64_t>(ids[n]) * D + c] += dy[n * D + c];
}

// ---------------------------------------------------------------- cross-entropy

double cross_entropy_forward(const float* logits, const int32_t* targets, int64_t N, int64_t V, float* probs, float* losses) {
    for_tasks((N + kRowTile - 1) / kRowTile, [&](int64_t task) {
        for (int64_t n = task * kRowTile; n < std::min(N, (task + 1) * kRowTile); ++n) {
            const float* lr = logits + n * V;
            float* pr = probs + n * V;
            float mx = lr[0];
            for (int64_t j = 1; j < V; ++j) mx = std::max(mx, lr[j]);
            double sum = 0;
            for (int64_t j = 0; j < V; ++j) sum += std::exp(static_cast<double>(lr[j] - mx));
            const int32_t tgt = targets[n];
            losses[n] = tgt < 0 ? 0.0f : static_cast<float>(std::log(sum) + mx - lr[tgt]);
            const double inv = 1.0 / sum;
            for (int64_t j = 0; j < V; ++j) pr[j] = static_cast<float>(std::exp(static_cast<double>(lr[j] - mx)) * inv);
        }
    });
    double total = 0;
    for (int64_t n = 0; n < N; ++n) total += losses[n];
    return total;
}

void cross_entropy_backward(const float* probs, const int32_t* targets, int64_t N, int64_t V, float dloss, float* dlogits) {
    for_tasks((N + kRowTile - 1) / kRowTile, [&](int64_t task) {
        for (int64_t n = task * kRowTile; n < std::min(N, (task + 1) * kRowTile); ++n) {
            const int32_t tgt = targets[n];
            for (int64_t j = 0; j < V; ++j)
                dlogits[n * V + j] = tgt < 0 ? 0.0f : (probs[n * V + j] - (j == tgt ? 1.0f : 0.0f)) * dloss;
        }
    });
}

void cross_entropy_backward__ref(const float* probs, const int32_t* targets, int64_t N, int64_t V, float dloss,
                                 float* dlogits) {
    for (int64_t n = 0; n < N; ++n)
        for (int64_t j = 0; j < V; ++j)
            dlogits[n * V + j] = targets[n] < 0 ? 0.0f
                                                : static_cast<float>((static_cast<double>(probs[n * V + j]) - (j == targets[n])) * dloss);
}

void add_forward(const float* a, const float* b, float* y, int64_t n) {
    for_tasks((n + kElemTile - 1) / kElemTile, [&](int64_t task) {
        for (int64_t i = task * kElemTile; i < std::min(n, (task + 1) * kElemTile); ++i) y[i] = a[i] + b[i];
    });
}

}  // namespace cq::train
