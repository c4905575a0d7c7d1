// onnx_ir::Model ↔ ONNX protobuf bytes through the classes protoc generates from Debian's onnx.proto. This file and
// protobuf-lite are linked into their own shared library with every symbol but the two entry points hidden
// (see onnx_ir.h for why), so nothing here may throw across the boundary: errors come back as text.
#include <cstring>
#include <exception>

#include "onnx/onnx.pb.h"
#include "onnx/onnx_ir.h"

namespace cq::onnx_ir {

namespace {

void to_proto(const Tensor& t, onnx::TensorProto& p) {
    p.set_name(t.name);
    p.set_data_type(t.data_type);
    for (int64_t d : t.dims) p.add_dims(d);
    if (!t.external_data.empty()) {
        p.set_data_location(onnx::TensorProto::EXTERNAL);
        for (const auto& [k, v] : t.external_data) {
            auto* e = p.add_external_data();
            e->set_key(k);
            e->set_value(v);
        }
    } else {
        p.set_raw_data(t.raw);
    }
}

template <class T, class Field>
void append_raw(std::string& raw, const Field& values) {
    raw.reserve(raw.size() + static_cast<size_t>(values.size()) * sizeof(T));
    for (const auto& v : values) {
        const T x = static_cast<T>(v);
        raw.append(reinterpret_cast<const char*>(&x), sizeof x);
    }
}

void from_proto(const onnx::TensorProto& p, Tensor& t) {
    t.name = p.name();
    t.data_type = p.data_type();
    t.dims.assign(p.dims().begin(), p.dims().end());
    if (p.data_location() == onnx::TensorProto::EXTERNAL) {
        for (const auto& e : p.external_data()) t.external_data.emplace_back(e.key(), e.value());
        return;
    }
    if (p.has_raw_data()) {
        t.raw = p.raw_data();
        return;
    }
    switch (p.data_type()) {
    case kFloat: append_raw<float>(t.raw, p.float_data()); break;
    case kInt64: append_raw<int64_t>(t.raw, p.int64_data()); break;
    case kInt32: append_raw<int32_t>(t.raw, p.int32_data()); break;
    case kInt16: append_raw<int16_t>(t.raw, p.int32_data()); break;
    case kUint16: case kFloat16: case kBfloat16: append_raw<uint16_t>(t.raw, p.int32_data()); break;
    case kInt8: append_raw<int8_t>(t.raw, p.int32_data()); break;
    case kUint8: case kBool: append_raw<uint8_t>(t.raw, p.int32_data()); break;
    case kDouble: append_raw<double>(t.raw, p.double_data()); break;
    case kUint32: append_raw<uint32_t>(t.raw, p.uint64_data()); break;
    case kUint64: append_raw<uint64_t>(t.raw, p.uint64_data()); break;
    default: break;  // strings and others: no bytes (the importer rejects them by type)
    }
}

void to_proto(const Attribute& a, onnx::AttributeProto& p) {
    p.set_name(a.name);
    p.set_type(static_cast<onnx::AttributeProto::AttributeType>(a.type));
    switch (a.type) {
    case Attribute::kFloatAttr: p.set_f(a.f); break;
    case Attribute::kIntAttr: p.set_i(a.i); break;
    case Attribute::kStringAttr: p.set_s(a.s); break;
    case Attribute::kTensorAttr: if (a.t) to_proto(*a.t, *p.mutable_t()); break;
    case Attribute::kFloats: for (float v : a.floats) p.add_floats(v); break;
    case Attribute::kInts: for (int64_t v : a.ints) p.add_ints(v); break;
    case Attribute::kStrings: for (const auto& v : a.strings) p.add_strings(v); break;
    default: break;
    }
}

void from_proto(const onnx::AttributeProto& p, Attribute& a) {
    a.name = p.name();
    a.type = static_cast<Attribute::Type>(p.type());
    a.f = p.f();
    a.i = p.i();
    a.s = p.s();
    a.floats.assign(p.floats().begin(), p.floats().end());
    a.ints.assign(p.ints().begin(), p.ints().end());
    a.strings.assign(p.strings().begin(), p.strings().end());
    if (p.has_t()) {
        a.t = std::make_shared<Tensor>();
        from_proto(p.t(), *a.t);
    }
    a.has_graph = p.has_g() || p.graphs_size() > 0;
}

void to_proto(const ValueInfo& v, onnx::ValueInfoProto& p) {
    p.set_name(v.name);
    auto* tt = p.mutable_type()->mutable_tensor_type();
    tt->set_elem_type(v.elem_type);
    if (!v.has_shape) return;
    auto* s = tt->mutable_shape();
    for (const Dim& d : v.shape) {
        auto* dim = s->add_dim();
        if (!d.param.empty()) dim->set_dim_param(d.param);
        else if (d.value >= 0) dim->set_dim_value(d.value);
    }
}

void from_proto(const onnx::ValueInfoProto& p, ValueInfo& v) {
    v.name = p.name();
    if (!p.has_type() || !p.type().has_tensor_type()) return;
    const auto& tt = p.type().tensor_type();
    v.elem_type = tt.elem_type();
    v.has_shape = tt.has_shape();
    for (const auto& d : tt.shape().dim()) v.shape.push_back(Dim{d.has_dim_value() ? d.dim_value() : -1, d.dim_param()});
}

}  // namespace

bool serialize(const Model& model, std::string& bytes, std::string& error) {
    try {
        onnx::ModelProto m;
        m.set_ir_version(model.ir_version);
        m.set_producer_name(model.producer_name);
        m.set_producer_version(model.producer_version);
        m.set_doc_string(model.doc_string);
        for (const auto& [domain, version] : model.opsets) {
            auto* o = m.add_opset_import();
            o->set_domain(domain);
            o->set_version(version);
        }
        const Graph& g = model.graph;
        auto* pg = m.mutable_graph();
        pg->set_name(g.name);
        pg->set_doc_string(g.doc_string);
        for (const Node& n : g.nodes) {
            auto* pn = pg->add_node();
            pn->set_name(n.name);
            pn->set_op_type(n.op_type);
            if (!n.domain.empty()) pn->set_domain(n.domain);
            for (const auto& i : n.inputs) pn->add_input(i);
            for (const auto& o : n.outputs) pn->add_output(o);
            for (const auto& a : n.attributes) to_proto(a, *pn->add_attribute());
        }
        for (const auto& t : g.initializers) to_proto(t, *pg->add_initializer());
        for (const auto& v : g.inputs) to_proto(v, *pg->add_input());
        for (const auto& v : g.outputs) to_proto(v, *pg->add_output());
        const size_t size = m.ByteSizeLong();
        if (size > static_cast<size_t>(INT32_MAX)) {
            error = "the model is " + std::to_string(size) + " bytes, past protobuf's 2 GiB limit for one message";
            return false;
        }
        bytes.clear();
        if (!m.SerializeToString(&bytes)) {
            error = "protobuf could not serialize the model";
            return false;
        }
        return true;
    } catch (const std::exception& e) {
        error = e.what();
        return false;
    }
}

bool parse(const void* data, size_t size, Model& model, std::string& error) {
    try {
        if (size > static_cast<size_t>(INT32_MAX)) {
            error = "the file is " + std::to_string(size) + " bytes, past protobuf's 2 GiB limit for one message";
            return false;
        }
        onnx::ModelProto m;
        if (!m.ParseFromArray(data, static_cast<int>(size))) {
            error = "the bytes are not an ONNX ModelProto (protobuf could not parse them)";
            return false;
        }
        model = Model{};
        model.ir_version = m.ir_version();
        model.producer_name = m.producer_name();
        model.producer_version = m.producer_version();
        model.doc_string = m.doc_string();
        for (const auto& o : m.opset_import()) model.opsets.emplace_back(o.domain(), o.version());
        const auto& pg = m.graph();
        Graph& g = model.graph;
        g.name = pg.name();
        g.doc_string = pg.doc_string();
        for (const auto& pn : pg.node()) {
            Node n;
            n.name = pn.name();
            n.op_type = pn.op_type();
            n.domain = pn.domain();
            n.inputs.assign(pn.input().begin(), pn.input().end());
            n.outputs.assign(pn.output().begin(), pn.output().end());
            for (const auto& a : pn.attribute()) from_proto(a, n.attributes.emplace_back());
            g.nodes.push_back(std::move(n));
        }
        for (const auto& t : pg.initializer()) from_proto(t, g.initializers.emplace_back());
        for (const auto& v : pg.input()) from_proto(v, g.inputs.emplace_back());
        for (const auto& v : pg.output()) from_proto(v, g.outputs.emplace_back());
        return true;
    } catch (const std::exception& e) {
        error = e.what();
        return false;
    }
}

}  // namespace cq::onnx_ir
