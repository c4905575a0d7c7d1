// `cq info MODEL.onnx`: what an ONNX file holds (opset, producer, graph input / output, operator counts, initializers)
// in the shape of the other formats' ModelSummary (cq/inspect.h).
#include <filesystem>
#include <map>

#include "cq/inspect.h"
#include "onnx/onnx_file.h"
#include "onnx/onnx_validate.h"

namespace cq {

namespace {

std::string dtype_name(int32_t t) {
    switch (t) {
    case onnx_ir::kFloat: return "f32";
    case onnx_ir::kFloat16: return "f16";
    case onnx_ir::kBfloat16: return "bf16";
    case onnx_ir::kDouble: return "f64";
    case onnx_ir::kInt8: return "i8";
    case onnx_ir::kUint8: return "u8";
    case onnx_ir::kInt16: return "i16";
    case onnx_ir::kInt32: return "i32";
    case onnx_ir::kInt64: return "i64";
    case onnx_ir::kBool: return "bool";
    default: return "type " + std::to_string(t);
    }
}

std::string value_text(const onnx_ir::ValueInfo& v) {
    std::string t = v.name + " [";
    for (size_t d = 0; d < v.shape.size(); ++d)
        t += (d ? ", " : "") + (v.shape[d].value >= 0 ? std::to_string(v.shape[d].value) : v.shape[d].param.empty() ? "?" : v.shape[d].param);
    return t + "] " + dtype_name(v.elem_type);
}

}  // namespace

ModelSummary summarize_onnx(const std::string& path) {
    const onnx_ir::Model m = onnx_export::read_onnx_file(path);
    ModelSummary s;
    s.path = path;
    s.format = "onnx";
    s.architecture = "onnx";
    s.name = m.graph.name;
    std::error_code ec;
    s.file_bytes = std::filesystem::file_size(path, ec);
    s.hyperparameters.emplace_back("opset", std::to_string(onnx_export::default_opset(m, path)));
    if (!m.producer_name.empty()) s.hyperparameters.emplace_back("producer", m.producer_name + " " + m.producer_version);
    s.hyperparameters.emplace_back("nodes", std::to_string(m.graph.nodes.size()));
    std::map<std::string, bool> initializer;
    for (const auto& t : m.graph.initializers) initializer[t.name] = true;
    for (const auto& v : m.graph.inputs)
        if (!initializer.count(v.name)) s.hyperparameters.emplace_back("input", value_text(v));
    for (const auto& v : m.graph.outputs) s.hyperparameters.emplace_back("output", value_text(v));
    std::map<std::string, int> ops;
    for (const auto& n : m.graph.nodes) ++ops[(n.domain.empty() || n.domain == "ai.onnx" ? "" : n.domain + ".") + n.op_type];
    std::string op_text;
    for (const auto& [op, count] : ops) op_text += (op_text.empty() ? "" : ", ") + op + " " + std::to_string(count);
    s.hyperparameters.emplace_back("operators", op_text);
    for (const auto& t : m.graph.initializers) {
        TensorSummary ts;
        ts.name = t.name;
        ts.shape = t.dims;
        ts.dtype = dtype_name(t.data_type);
        ts.nbytes = t.raw.size();
        ts.file = path;
        uint64_t n = 1;
        for (int64_t d : t.dims) n *= static_cast<uint64_t>(std::max<int64_t>(d, 0));
        s.parameter_count += n;
        s.tensor_bytes += ts.nbytes;
        s.bytes_by_dtype[ts.dtype] += ts.nbytes;
        s.tensors_by_dtype[ts.dtype] += 1;
        s.tensors.push_back(std::move(ts));
    }
    s.tensor_count = s.tensors.size();
    s.bits_per_weight = s.parameter_count ? 8.0 * static_cast<double>(s.tensor_bytes) / static_cast<double>(s.parameter_count) : 0.0;
    return s;
}

}  // namespace cq
