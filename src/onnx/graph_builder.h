// A thin helper for writing graphs into cq's ONNX IR (onnx/onnx_ir.h): unique value names under a scope
// ("/blk.0/attn/MatMul_3"), initializers from float / int data, and attributes. No ONNX semantics live here;
// the exporters decide the graph.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "onnx/onnx_ir.h"

namespace cq::onnx_export {

onnx_ir::Attribute attr(const std::string& name, int64_t value);
onnx_ir::Attribute attr(const std::string& name, float value);
onnx_ir::Attribute attr(const std::string& name, const std::string& value);
onnx_ir::Attribute attr(const std::string& name, std::vector<int64_t> values);

/// A graph input/output dimension: a fixed size or a symbolic name ("batch").
struct Dim {
    int64_t value = -1;
    std::string param;
    Dim(int64_t v) : value(v) {}
    Dim(const char* p) : param(p) {}
    Dim(std::string p) : param(std::move(p)) {}
};

class GraphBuilder {
public:
    explicit GraphBuilder(onnx_ir::Graph& graph) : graph_(graph) {}

    /// Prefix for the names of nodes and values made from now on ("/blk.3/attn").
    void set_scope(std::string scope) { scope_ = std::move(scope); }

    /// Adds a node; returns its output names (n_outputs of them, named under the scope).
    std::vector<std::string> ops(const std::string& op_type, std::vector<std::string> inputs, int n_outputs,
                                 std::vector<onnx_ir::Attribute> attrs = {}, const std::string& domain = "");
    /// Adds a node with one output and returns its name.
    std::string op(const std::string& op_type, std::vector<std::string> inputs, std::vector<onnx_ir::Attribute> attrs = {},
                   const std::string& domain = "");
    /// As op, with the output named `output` (graph outputs).
    void op_to(const std::string& op_type, std::vector<std::string> inputs, const std::string& output,
               std::vector<onnx_ir::Attribute> attrs = {}, const std::string& domain = "");

    /// Initializers (stored as raw little-endian data); `name` is kept as given. Return the name.
    std::string f32(const std::string& name, std::vector<int64_t> shape, std::span<const float> data);
    std::string i64(const std::string& name, std::vector<int64_t> shape, std::span<const int64_t> data);
    /// An initializer already made under `name` with the same type, shape and bytes is returned, not stored twice.
    std::string typed(const std::string& name, int32_t onnx_type, std::vector<int64_t> shape, const void* data, size_t bytes);
    /// Unnamed constants (an initializer named under the scope).
    std::string const_i64(std::initializer_list<int64_t> values);
    std::string const_i64(std::span<const int64_t> values);
    std::string scalar_f32(float value);
    std::string scalar_i64(int64_t value);

    void input(const std::string& name, int32_t elem_type, std::vector<Dim> shape);
    void output(const std::string& name, int32_t elem_type, std::vector<Dim> shape);

    onnx_ir::Graph& graph() { return graph_; }

private:
    std::string fresh(const std::string& what);
    onnx_ir::Graph& graph_;
    std::string scope_;
    int64_t counter_ = 0;
    std::map<std::string, size_t> initializer_index_;  // name → index in graph_.initializers
};

}  // namespace cq::onnx_export
