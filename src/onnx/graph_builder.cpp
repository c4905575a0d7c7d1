// GraphBuilder: node and initializer helpers over onnx_ir::Graph (see graph_builder.h).
#include "onnx/graph_builder.h"

#include <cstring>

#include "cq/error.h"

namespace cq::onnx_export {

onnx_ir::Attribute attr(const std::string& name, int64_t value) {
    onnx_ir::Attribute a;
    a.name = name;
    a.type = onnx_ir::Attribute::kIntAttr;
    a.i = value;
    return a;
}

onnx_ir::Attribute attr(const std::string& name, float value) {
    onnx_ir::Attribute a;
    a.name = name;
    a.type = onnx_ir::Attribute::kFloatAttr;
    a.f = value;
    return a;
}

onnx_ir::Attribute attr(const std::string& name, const std::string& value) {
    onnx_ir::Attribute a;
    a.name = name;
    a.type = onnx_ir::Attribute::kStringAttr;
    a.s = value;
    return a;
}

onnx_ir::Attribute attr(const std::string& name, std::vector<int64_t> values) {
    onnx_ir::Attribute a;
    a.name = name;
    a.type = onnx_ir::Attribute::kInts;
    a.ints = std::move(values);
    return a;
}

std::string GraphBuilder::fresh(const std::string& what) { return scope_ + "/" + what + "_" + std::to_string(counter_++); }

std::vector<std::string> GraphBuilder::ops(const std::string& op_type, std::vector<std::string> inputs, int n_outputs,
                                           std::vector<onnx_ir::Attribute> attrs, const std::string& domain) {
    onnx_ir::Node& n = graph_.nodes.emplace_back();
    n.name = fresh(op_type);
    n.op_type = op_type;
    n.domain = domain;
    n.inputs = std::move(inputs);
    for (int i = 0; i < n_outputs; ++i) n.outputs.push_back(n.name + "_output_" + std::to_string(i));
    n.attributes = std::move(attrs);
    return n.outputs;
}

std::string GraphBuilder::op(const std::string& op_type, std::vector<std::string> inputs, std::vector<onnx_ir::Attribute> attrs,
                             const std::string& domain) {
    return ops(op_type, std::move(inputs), 1, std::move(attrs), domain)[0];
}

void GraphBuilder::op_to(const std::string& op_type, std::vector<std::string> inputs, const std::string& output,
                         std::vector<onnx_ir::Attribute> attrs, const std::string& domain) {
    onnx_ir::Node& n = graph_.nodes.emplace_back();
    n.name = fresh(op_type);
    n.op_type = op_type;
    n.domain = domain;
    n.inputs = std::move(inputs);
    n.outputs = {output};
    n.attributes = std::move(attrs);
}

std::string GraphBuilder::typed(const std::string& name, int32_t onnx_type, std::vector<int64_t> shape, const void* data, size_t bytes) {
    // The same tensor asked for again (a Linear a graph applies to two inputs, as DeBERTa's key projection to the tokens
    // and to the relative embeddings) is stored once; another tensor under a used name is the exporter's bug.
    if (const auto it = initializer_index_.find(name); it != initializer_index_.end()) {
        const onnx_ir::Tensor& t = graph_.initializers[it->second];
        if (t.data_type != onnx_type || t.dims != shape || t.raw.size() != bytes || std::memcmp(t.raw.data(), data, bytes) != 0)
            throw Error("[onnx] two different initializers named '" + name + "' (cq's bug)");
        return name;
    }
    initializer_index_.emplace(name, graph_.initializers.size());
    onnx_ir::Tensor& t = graph_.initializers.emplace_back();
    t.name = name;
    t.data_type = onnx_type;
    t.dims = std::move(shape);
    t.raw.assign(static_cast<const char*>(data), bytes);  // raw data is little-endian in ONNX, as on every host cq builds for
    return name;
}

std::string GraphBuilder::f32(const std::string& name, std::vector<int64_t> shape, std::span<const float> data) {
    return typed(name, onnx_ir::kFloat, std::move(shape), data.data(), data.size_bytes());
}

std::string GraphBuilder::i64(const std::string& name, std::vector<int64_t> shape, std::span<const int64_t> data) {
    return typed(name, onnx_ir::kInt64, std::move(shape), data.data(), data.size_bytes());
}

std::string GraphBuilder::const_i64(std::initializer_list<int64_t> values) {
    return const_i64(std::span<const int64_t>(values.begin(), values.size()));
}

std::string GraphBuilder::const_i64(std::span<const int64_t> values) {
    return i64(fresh("const"), {static_cast<int64_t>(values.size())}, values);
}

std::string GraphBuilder::scalar_f32(float value) { return typed(fresh("const"), onnx_ir::kFloat, {}, &value, sizeof value); }

std::string GraphBuilder::scalar_i64(int64_t value) { return typed(fresh("const"), onnx_ir::kInt64, {}, &value, sizeof value); }

namespace {
onnx_ir::ValueInfo value_info(const std::string& name, int32_t elem_type, const std::vector<Dim>& shape) {
    onnx_ir::ValueInfo v;
    v.name = name;
    v.elem_type = elem_type;
    v.has_shape = true;
    for (const Dim& d : shape) v.shape.push_back(onnx_ir::Dim{d.param.empty() ? d.value : -1, d.param});
    return v;
}
}  // namespace

void GraphBuilder::input(const std::string& name, int32_t elem_type, std::vector<Dim> shape) {
    graph_.inputs.push_back(value_info(name, elem_type, shape));
}

void GraphBuilder::output(const std::string& name, int32_t elem_type, std::vector<Dim> shape) {
    graph_.outputs.push_back(value_info(name, elem_type, shape));
}

}  // namespace cq::onnx_export
