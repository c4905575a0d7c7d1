// Scalar reference for the float matrix-vector product used by single-token decoding: each output
// is a dot product accumulated in double and rounded once.
#include <cstdint>

#include "kernels/kernel_decls.h"

namespace cq::kernels {

// w: [n, k] (row stride ldw), x: [k] → y: [n]
void gemv_f32__ref(int64_t n, int64_t k, const float* w, int64_t ldw, const float* x, float* y) {
    for (int64_t i = 0; i < n; ++i) {
        double sum = 0.0;
        for (int64_t p = 0; p < k; ++p) sum += double(w[i * ldw + p]) * double(x[p]);
        y[i] = float(sum);
    }
}

}  // namespace cq::kernels
