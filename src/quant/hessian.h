// Second-moment statistics of a Linear's inputs for the calibrated methods: H = Σ xᵀx over calibration rows
// (GPTQ's Hessian, up to a factor 2), whose diagonal over the row count is llama.cpp's importance row.
#pragma once

#include <cstdint>
#include <vector>

namespace cq::quant {

struct Hessian {
    int64_t n = 0;          // input channels
    int64_t rows = 0;       // rows summed
    std::vector<double> h;  // [n, n], row-major, symmetric

    /// Adds xᵀx of x: [rows, n] (rows whose mask is 0 skipped; mask may be null); the same bytes for any thread count.
    void add(const float* x, int64_t rows, int64_t n_in, const int32_t* mask = nullptr);
    /// diag(H) / rows: mean x² per channel (1s before any row was added).
    std::vector<float> importance() const;
    /// H with channel j scaled by 1/s_j on both sides (the statistics of x / s).
    void scale_channels(const std::vector<float>& s);
};

/// tr(E H Eᵀ) / rows for E: [n_out, n] row-major: the mean squared error the weight error E adds to the outputs.
double output_error(const Hessian& H, const float* E, int64_t n_out);

}  // namespace cq::quant
