// libFuzzer target for ONNX import: the input is a whole .onnx file, parsed from memory (ONNX's protobuf classes),
// validated, constant-folded and turned into Linears; a model whose input is small and fixed also runs once on zeros.
// Expected refusals are cq::Error; anything else escaping (or a sanitizer report) is a finding.
#include <cstddef>
#include <cstdint>
#include <exception>
#include <vector>

#include "cq/error.h"
#include "cq/onnx_model.h"
#include "fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    try {
        auto model = cq::OnnxModel::from_bytes(data, size, "fuzz.onnx");
        int64_t n = 1;
        for (int64_t d : model->input_shape()) n = d > 0 ? n * d : -1;
        if (!model->input_shape().empty() && n > 0 && n <= 4096) {
            const std::vector<float> x(static_cast<size_t>(n), 0.0f);
            const std::vector<float> y = model->run(x.data(), model->input_shape()[0]);
            if (!y.empty()) cq::fuzz::g_sink = cq::fuzz::g_sink + static_cast<uint8_t>(y.size());
        }
    } catch (const cq::Error&) {
    }
    return 0;
}
