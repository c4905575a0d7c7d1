// Hessian accumulation (GPTQ's accumulate_hessian) and the output-error form tr(E H Eᵀ) (see hessian.h): products
// through the kernel table's f32 GEMM in fixed tiles, sums in double, so results do not depend on the thread count.
#include "quant/hessian.h"

#include <algorithm>

#include "cq/error.h"
#include "cq/gptq.h"
#include "cq/kernels.h"
#include "cq/thread_pool.h"

namespace cq::quant {
namespace {
constexpr int64_t kTile = 64;
}

void Hessian::add(const float* x, int64_t n_rows, int64_t n_in, const int32_t* mask) {
    if (n == 0) n = n_in, h.assign(static_cast<size_t>(n * n), 0.0);
    if (n_in != n) throw InvalidArgument("[calibrate] a Linear's input width changed from " + std::to_string(n) + " to " + std::to_string(n_in));
    std::vector<float> kept;
    int64_t R = n_rows;
    if (mask) {
        R = 0;
        for (int64_t r = 0; r < n_rows; ++r)
            if (mask[r] != 0) kept.insert(kept.end(), x + r * n, x + (r + 1) * n), ++R;
        x = kept.data();
    }
    if (R == 0) return;
    accumulate_hessian(h, std::span<const float>(x, static_cast<size_t>(R * n)), R, n);
    rows += R;
}

std::vector<float> Hessian::importance() const {
    std::vector<float> imp(static_cast<size_t>(n), 1.0f);
    if (rows == 0) return imp;
    for (int64_t j = 0; j < n; ++j) imp[static_cast<size_t>(j)] = static_cast<float>(h[static_cast<size_t>(j * n + j)] / static_cast<double>(rows));
    return imp;
}

void Hessian::scale_channels(const std::vector<float>& s) {
    for (int64_t i = 0; i < n; ++i)
        for (int64_t j = 0; j < n; ++j)
            h[static_cast<size_t>(i * n + j)] /= static_cast<double>(s[static_cast<size_t>(i)]) * static_cast<double>(s[static_cast<size_t>(j)]);
}

double output_error(const Hessian& H, const float* E, int64_t n_out) {
    const int64_t n = H.n;
    if (H.rows == 0) return 0.0;
    std::vector<float> hf(H.h.begin(), H.h.end());
    // EH: [n_out, n] = E · H (H symmetric, so E · Hᵀ is the same product); then Σ_r (EH)_r · E_r.
    const auto gemm = kernel_table().gemm_f32.fn;
    const int64_t tiles = (n_out + kTile - 1) / kTile;
    std::vector<double> per_tile(static_cast<size_t>(tiles), 0.0);
    ThreadPool::global().parallel_for(tiles, [&](int64_t t0, int64_t t1) {
        std::vector<float> eh(static_cast<size_t>(kTile * n));
        for (int64_t t = t0; t < t1; ++t) {
            const int64_t r0 = t * kTile, m = std::min(kTile, n_out - r0);
            gemm(m, n, n, E + r0 * n, n, hf.data(), n, eh.data(), n);
            double s = 0;
            for (int64_t i = 0; i < m; ++i)
                for (int64_t j = 0; j < n; ++j) s += static_cast<double>(eh[static_cast<size_t>(i * n + j)]) * E[(r0 + i) * n + j];
            per_tile[static_cast<size_t>(t)] = s;
        }
    });
    double total = 0;
    for (const double s : per_tile) total += s;
    return total / static_cast<double>(H.rows);
}

}  // namespace cq::quant
