// Structural checks of ONNX graphs (see onnx_validate.h). Hostile files reach here straight from the parser, so
// every count and size is checked before it is used.
#include "onnx/onnx_validate.h"

#include <unordered_set>

#include "cq/error.h"
#include "cq/tensor.h"

namespace cq::onnx_export {

namespace {
[[noreturn]] void fail(const std::string& where, const std::string& what) {
    throw FormatError("onnx", where, 0, what);
}
}  // namespace

int64_t element_bytes(int32_t data_type) {
    switch (data_type) {
    case onnx_ir::kFloat: case onnx_ir::kInt32: case onnx_ir::kUint32: return 4;
    case onnx_ir::kUint8: case onnx_ir::kInt8: case onnx_ir::kBool: return 1;
    case onnx_ir::kUint16: case onnx_ir::kInt16: case onnx_ir::kFloat16: case onnx_ir::kBfloat16: return 2;
    case onnx_ir::kInt64: case onnx_ir::kDouble: case onnx_ir::kUint64: return 8;
    default: return 0;
    }
}

int64_t default_opset(const onnx_ir::Model& model, const std::string& where) {
    for (const auto& [domain, version] : model.opsets)
        if (domain.empty() || domain == "ai.onnx") return version;
    fail(where, "the model imports no opset of the default ONNX domain");
}

void validate_graph(const onnx_ir::Model& model, const std::string& where) {
    const int64_t opset = default_opset(model, where);
    if (opset < 1 || opset > 1000) fail(where, "opset " + std::to_string(opset) + " is not a valid ONNX opset");
    const onnx_ir::Graph& g = model.graph;
    std::unordered_set<std::string> defined;
    auto define = [&](const std::string& name, const std::string& by) {
        if (name.empty()) return;
        if (!defined.insert(name).second) fail(where, by + " defines value '" + name + "', which is already defined");
    };
    for (const auto& t : g.initializers) {
        const auto n = checked_numel(t.dims);
        if (!n) fail(where, "initializer '" + t.name + "' has a negative or overflowing shape");
        const int64_t eb = element_bytes(t.data_type);
        if (eb == 0) fail(where, "initializer '" + t.name + "' has data type " + std::to_string(t.data_type) + ", which cq does not read");
        if (t.external_data.empty() && static_cast<uint64_t>(t.raw.size()) != static_cast<uint64_t>(*n) * static_cast<uint64_t>(eb))
            fail(where, "initializer '" + t.name + "' holds " + std::to_string(t.raw.size()) + " bytes, but its shape needs " +
                            std::to_string(*n * eb));
        define(t.name, "initializer '" + t.name + "'");
    }
    for (const auto& v : g.inputs) {
        if (defined.count(v.name)) continue;  // an input with a default (initializer of the same name)
        define(v.name, "graph input '" + v.name + "'");
        for (const auto& d : v.shape)
            if (d.value < -1) fail(where, "graph input '" + v.name + "' has dimension " + std::to_string(d.value));
    }
    for (size_t i = 0; i < g.nodes.size(); ++i) {
        const onnx_ir::Node& n = g.nodes[i];
        const std::string node = "node " + std::to_string(i) + " '" + n.name + "' (" + n.op_type + ")";
        for (const auto& in : n.inputs)
            if (!in.empty() && !defined.count(in))
                fail(where, node + " reads '" + in + "', which no earlier node, input or initializer defines (unsorted graph or a cycle)");
        for (const auto& a : n.attributes)
            if (a.has_graph) fail(where, node + " has a subgraph attribute '" + a.name + "' (control flow is not supported)");
        for (const auto& out : n.outputs) define(out, node);
    }
    for (const auto& o : g.outputs)
        if (!defined.count(o.name)) fail(where, "graph output '" + o.name + "' is not produced by any node, input or initializer");
}

}  // namespace cq::onnx_export
