// check_tensorrt_qdq: TensorRT's rules for explicitly quantized ONNX graphs (TensorRT developer guide, "Explicit
// Quantization"), as far as they can be checked without TensorRT: INT8 Q/DQ are symmetric (zero point 0, type int8),
// scales positive and finite, activations per tensor, weights per tensor or per output channel, and the quantizable
// layers (MatMul, Gemm, Conv) that read one data input through a DequantizeLinear read all of them so.
#include <cmath>
#include <cstring>
#include <map>

#include "cq/onnx.h"
#include "onnx/onnx_file.h"

namespace cq {

namespace {

using onnx_export::read_onnx_file;

const onnx_ir::Attribute* find_attr(const onnx_ir::Node& n, const std::string& name) {
    for (const auto& a : n.attributes)
        if (a.name == name) return &a;
    return nullptr;
}

}  // namespace

std::vector<std::string> check_tensorrt_qdq(const std::string& path) {
    const onnx_ir::Model m = read_onnx_file(path);
    const onnx_ir::Graph& g = m.graph;
    std::map<std::string, const onnx_ir::Tensor*> init;
    for (const auto& t : g.initializers) init[t.name] = &t;
    std::map<std::string, const onnx_ir::Node*> producer;
    for (const auto& n : g.nodes)
        for (const auto& o : n.outputs) producer[o] = &n;
    std::vector<std::string> issues;
    auto where = [](const onnx_ir::Node& n) { return "node '" + n.name + "' (" + n.op_type + ")"; };
    int64_t qdq_nodes = 0;

    for (const auto& n : g.nodes) {
        if (n.op_type != "QuantizeLinear" && n.op_type != "DequantizeLinear") continue;
        ++qdq_nodes;
        if (n.inputs.size() < 3 || n.inputs[2].empty()) {
            issues.push_back(where(n) + " has no zero point: the default is uint8, and TensorRT's INT8 is signed");
            continue;
        }
        const auto s = init.find(n.inputs[1]), z = init.find(n.inputs[2]);
        if (s == init.end() || z == init.end()) {
            issues.push_back(where(n) + " takes its scale or zero point from a computed value; TensorRT needs constants");
            continue;
        }
        if (z->second->data_type != onnx_ir::kInt8) issues.push_back(where(n) + " has a zero point of type " + std::to_string(z->second->data_type) + ", not int8");
        else
            for (char c : z->second->raw)
                if (c != 0) {
                    issues.push_back(where(n) + " has a non-zero zero point: TensorRT's quantization is symmetric");
                    break;
                }
        if (s->second->data_type != onnx_ir::kFloat) issues.push_back(where(n) + "'s scale is not float");
        else
            for (size_t i = 0; i + 4 <= s->second->raw.size(); i += 4) {
                float v;
                std::memcpy(&v, s->second->raw.data() + i, 4);
                if (!(v > 0.0f) || !std::isfinite(v)) {
                    issues.push_back(where(n) + " has a scale that is not positive and finite (" + std::to_string(v) + ")");
                    break;
                }
            }
        const bool per_channel = !s->second->dims.empty() && !(s->second->dims.size() == 1 && s->second->dims[0] == 1);
        if (n.op_type == "DequantizeLinear") {
            const auto w = init.find(n.inputs[0]);
            if (w != init.end()) {  // a weight
                if (w->second->data_type != onnx_ir::kInt8) issues.push_back(where(n) + " dequantizes a weight that is not int8");
                if (per_channel) {
                    const auto* axis = find_attr(n, "axis");
                    const int64_t rank = static_cast<int64_t>(w->second->dims.size());
                    int64_t a = axis ? axis->i : 1;
                    if (a < 0) a += rank;
                    // the output channel: axis 0 of Conv / Gemm(transB) weights, the last axis of MatMul's B
                    if (a != 0 && a != rank - 1) issues.push_back(where(n) + " quantizes a weight along axis " + std::to_string(a) + ", not its output channels");
                    else if (s->second->dims.size() != 1 || s->second->dims[0] != w->second->dims[static_cast<size_t>(a)])
                        issues.push_back(where(n) + " has " + std::to_string(s->second->dims.empty() ? 1 : s->second->dims[0]) +
                                         " scales for " + std::to_string(w->second->dims[static_cast<size_t>(a)]) + " channels");
                }
            } else {  // an activation: per tensor, fed by a QuantizeLinear with the same scale
                if (per_channel) issues.push_back(where(n) + " dequantizes an activation per channel; TensorRT wants per tensor");
                const auto p = producer.find(n.inputs[0]);
                if (p == producer.end() || p->second->op_type != "QuantizeLinear")
                    issues.push_back(where(n) + " is not fed by a QuantizeLinear");
                else if (p->second->inputs.size() < 3 || p->second->inputs[1] != n.inputs[1] || p->second->inputs[2] != n.inputs[2]) {
                    const auto ps = p->second->inputs.size() > 1 ? init.find(p->second->inputs[1]) : init.end();
                    if (ps == init.end() || ps->second->raw != s->second->raw) issues.push_back(where(n) + " uses another scale than its QuantizeLinear");
                }
            }
        }
    }
    // A layer TensorRT quantizes has Q/DQ on every data input; one with none runs in float (attention's batched
    // MatMuls, heads kept float), but one with only some is half-quantized, which TensorRT does not fuse.
    for (const auto& n : g.nodes) {
        if (n.op_type != "MatMul" && n.op_type != "Gemm" && n.op_type != "Conv") continue;
        std::vector<size_t> plain;
        size_t dq = 0;
        for (size_t i = 0; i < std::min<size_t>(2, n.inputs.size()); ++i) {
            const auto p = producer.find(n.inputs[i]);
            if (p != producer.end() && p->second->op_type == "DequantizeLinear") ++dq;
            else plain.push_back(i);
        }
        if (dq > 0)
            for (size_t i : plain)
                issues.push_back(where(n) + " reads input " + std::to_string(i) + " ('" + n.inputs[i] +
                                 "') without a DequantizeLinear while its other input is quantized");
    }
    if (qdq_nodes == 0) issues.push_back("the graph has no QuantizeLinear / DequantizeLinear: nothing is explicitly quantized");
    return issues;
}

}  // namespace cq
