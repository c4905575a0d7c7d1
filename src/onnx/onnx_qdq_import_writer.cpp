// Writes an imported ONNX model back to ONNX after static W8A8 (OnnxModel::write_qdq): the file's own nodes, with each
// quantized Conv / Gemm / MatMul fed by QuantizeLinear → DequantizeLinear (cq's calibrated u8 scale / zero point), int8
// weights and an int32 bias behind DequantizeLinear — the values cq computes with, so ONNX Runtime fuses QLinearConv /
// QGemm / MatMulIntegerToFloat and runs what cq ran; a Concat between quantized convs gets Q/DQ on its inputs too.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>
#include <optional>
#include <set>

#include "cq/error.h"
#include "cq/onnx.h"
#include "cq/onnx_model.h"
#include "cq/w8a8.h"
#include "onnx/export_common.h"
#include "onnx/graph_builder.h"
#include "onnx/onnx_graph_state.h"

namespace cq {

namespace {

using onnx_export::attr;

const onnx_ir::Attribute* find(const onnx_ir::Node& n, const std::string& name) {
    for (const auto& a : n.attributes)
        if (a.name == name) return &a;
    return nullptr;
}

// Per-axis DequantizeLinear needs opset 13; an older file's nodes are rewritten where their definition changed by 13
// (Squeeze / Unsqueeze axes became an input, Dropout is Identity at inference) and refused where cq cannot be sure.
void upgrade_node(onnx_ir::Node& n, int64_t from_opset, onnx_export::GraphBuilder& g, const std::string& path) {
    if (from_opset >= 13) return;
    const std::string where = path + ": node '" + n.name + "' (" + n.op_type + ", opset " + std::to_string(from_opset) + ")";
    if (n.op_type == "Squeeze" || n.op_type == "Unsqueeze") {
        if (const auto* a = find(n, "axes")) {
            const std::vector<int64_t> axes = a->ints;
            n.attributes.clear();
            n.inputs.resize(1);
            n.inputs.push_back(g.const_i64(axes));
        }
    } else if (n.op_type == "Dropout") {
        if (n.outputs.size() > 1 && !n.outputs[1].empty()) throw Unsupported("[onnx] " + where + ": Dropout's mask output cannot be written at opset 13");
        n.op_type = "Identity";
        n.inputs.resize(1);
        n.outputs.resize(1);
        n.attributes.clear();
    } else if (n.op_type == "Softmax" && find(n, "axis") && find(n, "axis")->i == -1) {
        // before opset 13 Softmax flattens to [prod(dims before axis), prod(dims from axis)]; over the last axis that is
        // the same function as opset 13's: kept as it is
    } else if (n.op_type == "Softmax" || n.op_type == "Split" || (n.op_type == "Clip" && from_opset < 11) ||
               (n.op_type == "Slice" && from_opset < 10) || (n.op_type == "Resize" && from_opset < 11) ||
               ((n.op_type == "Add" || n.op_type == "Sub" || n.op_type == "Mul" || n.op_type == "Div" || n.op_type == "Gemm") && find(n, "broadcast"))) {
        throw Unsupported("[onnx] " + where + ": the QDQ graph is written at opset 13 (per-channel DequantizeLinear), where this operator's "
                          "definition differs; re-export the model at opset 13 or later");
    } else if (n.op_type == "BatchNormalization") {
        std::erase_if(n.attributes, [](const onnx_ir::Attribute& a) { return a.name == "spatial" || a.name == "is_test" || a.name == "consumed_inputs"; });
    }
}

struct InputQuantizer {
    float scale;
    int32_t zero_point;
    std::string scale_name, zero_point_name;
    std::string input, dequantized;  // the float value it quantizes, and its DequantizeLinear's output
};

// The quantization every path from `v` ends in, through Relu / MaxPool / Concat / Identity: the input QuantizeLinear of
// quantized Linears, all with one scale and zero point. None when a path ends anywhere else (a float operator, a graph
// output) or the quantizers differ.
std::optional<InputQuantizer> downstream_quantizer(const std::string& v, const std::map<std::string, std::vector<const onnx_ir::Node*>>& readers,
                                                   const std::set<std::string>& graph_outputs,
                                                   const std::map<std::string, InputQuantizer>& input_quantizers, int depth = 0) {
    const auto it = readers.find(v);
    if (graph_outputs.count(v) || it == readers.end() || it->second.empty() || depth > 64) return std::nullopt;
    std::optional<InputQuantizer> found;
    for (const onnx_ir::Node* r : it->second) {
        std::optional<InputQuantizer> here;
        if (r->op_type == "QuantizeLinear" && !r->outputs.empty() && input_quantizers.count(r->outputs[0]) && r->inputs[0] == v) {
            here = input_quantizers.at(r->outputs[0]);
        } else if ((r->op_type == "Relu" || r->op_type == "MaxPool" || r->op_type == "Concat" || r->op_type == "Identity") && r->outputs.size() == 1) {
            here = downstream_quantizer(r->outputs[0], readers, graph_outputs, input_quantizers, depth + 1);
        }
        if (!here || (found && (found->scale != here->scale || found->zero_point != here->zero_point))) return std::nullopt;
        found = here;
    }
    return found;
}

// A Concat whose output reaches only quantized Linears with one input quantization gets that QuantizeLinear →
// DequantizeLinear on each computed input, as ONNX Runtime's own quantizer writes it: ORT then fuses the convs before it
// with u8 outputs and concatenates codes (QLinearConcat). It does not change what the graph computes: Relu, MaxPool and
// Concat commute with the monotone quantization, and quantizing values already on the grid again gives them back, so
// the Linears' inputs are the codes cq's W8A8 run computes. (Relu / MaxPool chains need nothing: ORT moves a
// QuantizeLinear up through them itself.) Returns how many inputs got one.
int64_t quantize_concat_inputs(onnx_ir::Graph& graph, const std::map<std::string, InputQuantizer>& input_quantizers) {
    std::map<std::string, std::vector<const onnx_ir::Node*>> readers;
    for (const auto& n : graph.nodes)
        for (const auto& i : n.inputs) readers[i].push_back(&n);
    std::set<std::string> graph_outputs, constants;
    for (const auto& o : graph.outputs) graph_outputs.insert(o.name);
    for (const auto& t : graph.initializers) constants.insert(t.name);
    for (const auto& n : graph.nodes)  // constant-folded chains keep their nodes; a Constant's output is constant too
        if (n.op_type == "Constant") constants.insert(n.outputs.begin(), n.outputs.end());
    std::vector<std::pair<size_t, InputQuantizer>> sites;
    for (size_t k = 0; k < graph.nodes.size(); ++k) {
        const auto& n = graph.nodes[k];
        if (n.op_type != "Concat" || n.outputs.size() != 1) continue;
        if (const auto q = downstream_quantizer(n.outputs[0], readers, graph_outputs, input_quantizers)) sites.emplace_back(k, *q);
    }
    int64_t inserted = 0;
    std::vector<onnx_ir::Node> nodes;
    size_t site = 0;
    for (size_t k = 0; k < graph.nodes.size(); ++k) {
        onnx_ir::Node n = std::move(graph.nodes[k]);
        if (site < sites.size() && sites[site].first == k) {
            const InputQuantizer& q = sites[site++].second;
            for (size_t i = 0; i < n.inputs.size(); ++i) {
                if (n.inputs[i].empty() || constants.count(n.inputs[i])) continue;
                const std::string base = n.name + "/input_" + std::to_string(i);
                onnx_ir::Node quantize, dequantize;
                quantize.name = base + "/QuantizeLinear";
                quantize.op_type = "QuantizeLinear";
                quantize.inputs = {n.inputs[i], q.scale_name, q.zero_point_name};
                quantize.outputs = {base + "/quantized"};
                dequantize.name = base + "/DequantizeLinear";
                dequantize.op_type = "DequantizeLinear";
                dequantize.inputs = {quantize.outputs[0], q.scale_name, q.zero_point_name};
                dequantize.outputs = {base + "/dequantized"};
                n.inputs[i] = dequantize.outputs[0];
                nodes.push_back(std::move(quantize));
                nodes.push_back(std::move(dequantize));
                ++inserted;
            }
        }
        nodes.push_back(std::move(n));
    }
    graph.nodes = std::move(nodes);
    return inserted;
}

}  // namespace

OnnxQdqReport OnnxModel::write_qdq(const std::string& path) const {
    const OnnxGraphState& st = *state_;
    namespace fs = std::filesystem;
    std::error_code ec;
    if (path == st.path || (fs::exists(path, ec) && fs::equivalent(path, st.path, ec)))
        throw InvalidArgument("[onnx] the QDQ output '" + path + "' is the input model; write to another file");
    int64_t quantized = 0;
    for (const auto& l : st.linears) {
        if (!l->int8) continue;
        if (l->int8->activations != ActivationQuant::static_per_tensor)
            throw InvalidArgument("[onnx] " + l->name + " quantizes its input at run time (W8A8 dynamic); the QDQ graph needs static W8A8 "
                                  "(quantize_onnx_w8a8_static / cq quantize --type w8a8-static --calib DATA)");
        if (l->int8->act_qmax != 255) throw InvalidArgument("[onnx] " + l->name + ": the QDQ graph writes 8-bit activations (act_qmax 255)");
        ++quantized;
    }
    if (quantized == 0)
        throw InvalidArgument("[onnx] " + st.path + " holds no W8A8 Linears; calibrate it first (quantize_onnx_w8a8_static, or cq quantize "
                              "MODEL.onnx OUT.onnx --type w8a8-static --calib DATA)");

    const onnx_ir::Graph& src = st.model.graph;
    onnx_ir::Model out;
    out.ir_version = std::max<int64_t>(st.model.ir_version, 7);
    out.producer_name = "cq";
#ifdef CQ_VERSION
    out.producer_version = CQ_VERSION;
#endif
    out.doc_string = "static W8A8 (QDQ) of " + fs::path(st.path).filename().string() + " by cq";
    const int64_t opset = std::max<int64_t>(st.opset, 13);
    for (const auto& [domain, version] : st.model.opsets)
        out.opsets.emplace_back(domain, domain.empty() || domain == "ai.onnx" ? opset : version);
    if (std::none_of(out.opsets.begin(), out.opsets.end(), [](const auto& d) { return d.first.empty() || d.first == "ai.onnx"; }))
        out.opsets.emplace_back("", opset);
    out.graph.name = src.name;
    onnx_export::GraphBuilder g(out.graph);
    g.set_scope("cq_qdq");

    // Values known without the input: initializers and the outputs of nodes the importer folded as constants. Those
    // nodes are written as they are (ONNX Runtime folds them again); a skipped node reading a computed value is a
    // BatchNormalization folded into its Conv, and is dropped.
    std::set<std::string> constant_values;
    for (const auto& t : src.initializers) constant_values.insert(t.name);
    std::map<std::string, int> readers;
    for (const auto& n : src.nodes)
        for (const auto& i : n.inputs) ++readers[i];
    for (const auto& o : src.outputs) ++readers[o.name];
    std::map<std::string, size_t> producer;
    for (size_t k = 0; k < src.nodes.size(); ++k)
        for (const auto& o : src.nodes[k].outputs) producer[o] = k;

    OnnxQdqReport report;
    report.opset = opset;
    std::map<std::string, InputQuantizer> input_quantizers;  // a quantized Linear's input QuantizeLinear, by its output
    std::set<size_t> dropped;  // bias Adds folded into the quantized Conv before them
    for (size_t k = 0; k < src.nodes.size(); ++k) {
        if (dropped.count(k)) continue;
        onnx_ir::Node n = src.nodes[k];
        if (st.skip.count(k)) {
            const bool constant = std::all_of(n.inputs.begin(), n.inputs.end(), [&](const std::string& i) { return i.empty() || constant_values.count(i); });
            if (!constant) continue;  // a folded BatchNormalization
            for (const auto& o : n.outputs) constant_values.insert(o);
            upgrade_node(n, st.opset, g, st.path);
            out.graph.nodes.push_back(std::move(n));
            continue;
        }
        const auto li = st.node_linear.find(k);
        if (li == st.node_linear.end()) {
            upgrade_node(n, st.opset, g, st.path);
            out.graph.nodes.push_back(std::move(n));
            continue;
        }
        const Linear& layer = *st.linears[li->second];
        const std::string& lname = layer.name;
        const int64_t N = layer.n_out(), K = layer.n_in();
        const bool is_conv = n.op_type == "Conv";
        const std::string x = n.inputs[0];
        const Int8Linear* q = layer.int8.get();
        std::vector<onnx_ir::Attribute> attrs = n.attributes;
        // A quantized MatMul over a 2-D input (a Flatten's, or a Reshape's to a constant 2-D shape) is written as a Gemm,
        // so that ONNX Runtime fuses it with its bias Add into QGemm; over other ranks it stays a MatMul.
        if (n.op_type == "MatMul" && q && producer.count(x)) {
            const onnx_ir::Node& p = src.nodes[producer.at(x)];
            const auto shape = p.op_type == "Reshape" && p.inputs.size() > 1 ? st.constants.find(p.inputs[1]) : st.constants.end();
            if (p.op_type == "Flatten" || (shape != st.constants.end() && shape->second.integer && shape->second.numel() == 2)) {
                n.op_type = "Gemm";
                attrs.clear();
            }
        }
        const bool is_matmul = n.op_type == "MatMul";
        std::vector<int64_t> wshape = st.constants.at(n.inputs[1]).shape;  // Conv: [M, C/group, kh, kw]
        if (!is_conv) wshape = is_matmul ? std::vector<int64_t>{K, N} : std::vector<int64_t>{N, K};
        if (n.op_type == "Gemm") {  // alpha / beta are in cq's weight and bias; B is written [N, K]
            std::erase_if(attrs, [](const onnx_ir::Attribute& a) { return a.name == "alpha" || a.name == "beta" || a.name == "transB" || a.name == "broadcast"; });
            attrs.push_back(attr("transB", int64_t{1}));
        }
        std::string y = n.outputs[0];
        std::vector<float> bias;
        if (q) bias = q->bias;
        else if (layer.bias) bias = onnx_export::tensor_f32(*layer.bias);
        // A per-channel bias Add after a quantized Conv ([M, 1, 1] constant) or Gemm ([N]), the node its only reader, goes
        // into the int32 bias (rounded to input scale × weight scale), so that ONNX Runtime fuses Conv → Relu → MaxPool →
        // QuantizeLinear into one QLinearConv and the Gemm into QGemm (mnist-8's pattern: bias-free Conv / MatMul, then Add).
        if (!is_matmul && q && readers[y] == 1) {
            for (size_t j = k + 1; j < src.nodes.size(); ++j) {
                const auto& a = src.nodes[j];
                if (a.op_type != "Add" || a.inputs.size() != 2 || st.skip.count(j)) continue;
                const int side = a.inputs[0] == y ? 1 : a.inputs[1] == y ? 0 : -1;
                if (side < 0) continue;
                const auto c = st.constants.find(a.inputs[static_cast<size_t>(side)]);
                if (c == st.constants.end() || c->second.integer) break;
                const auto& s = c->second.shape;
                const bool per_channel = is_conv ? (s == std::vector<int64_t>{N, 1, 1} || s == std::vector<int64_t>{1, N, 1, 1})
                                                 : (s == std::vector<int64_t>{N} || s == std::vector<int64_t>{1, N});
                if (!per_channel) break;
                if (bias.empty()) bias.assign(static_cast<size_t>(N), 0.0f);
                for (int64_t o = 0; o < N; ++o) bias[static_cast<size_t>(o)] += c->second.f[static_cast<size_t>(o)];
                y = a.outputs[0];
                dropped.insert(j);
                ++report.bias_adds_folded;
                break;
            }
        }
        onnx_ir::Node node;
        node.name = n.name;
        node.op_type = n.op_type;
        node.domain = n.domain;
        node.attributes = attrs;
        node.outputs = {y};
        if (!q) {  // a Linear left in float: its weight as cq holds it (BatchNorm folded, Gemm's alpha / beta applied)
            std::vector<float> w = onnx_export::linear_weight_f32(layer);
            if (is_matmul) {
                std::vector<float> t(w.size());
                for (int64_t o = 0; o < N; ++o)
                    for (int64_t i = 0; i < K; ++i) t[static_cast<size_t>(i * N + o)] = w[static_cast<size_t>(o * K + i)];
                w.swap(t);
            }
            node.inputs = {x, g.f32(lname + ".weight", wshape, w)};
            if (!bias.empty()) node.inputs.push_back(g.f32(lname + ".bias", {N}, bias));
            out.graph.nodes.push_back(std::move(node));
            ++report.float_linears;
            continue;
        }
        // input: cq's calibrated u8 scale / zero point
        // (Linears reading the same value with the same quantization — a fire module's two expand convs — share one
        // QuantizeLinear, as ORT's quantizer writes it: a value read by two QuantizeLinears keeps its producer in float.)
        std::string xd;
        const auto shared = std::find_if(input_quantizers.begin(), input_quantizers.end(), [&](const auto& e) {
            return e.second.input == x && e.second.scale == q->input.scale && e.second.zero_point == q->input.zero_point;
        });
        if (shared != input_quantizers.end()) {
            xd = shared->second.dequantized;
        } else {
            const uint8_t zp = static_cast<uint8_t>(q->input.zero_point);
            const std::string s = g.f32(lname + ".input_scale", {}, std::span<const float>(&q->input.scale, 1));
            const std::string z = g.typed(lname + ".input_zero_point", onnx_ir::kUint8, {}, &zp, 1);
            const std::string xq = g.op("QuantizeLinear", {x, s, z});
            xd = g.op("DequantizeLinear", {xq, s, z});
            input_quantizers[xq] = {q->input.scale, q->input.zero_point, s, z, x, xd};
        }
        // weight: cq's int8 codes and per-output-channel scales (axis 0; MatMul's B is [K, N], its channels axis 1)
        const std::vector<int8_t> wz(static_cast<size_t>(N), 0);
        std::vector<int8_t> codes(static_cast<const int8_t*>(q->weight.data()), static_cast<const int8_t*>(q->weight.data()) + N * K);
        if (is_matmul) {
            std::vector<int8_t> t(codes.size());
            for (int64_t o = 0; o < N; ++o)
                for (int64_t i = 0; i < K; ++i) t[static_cast<size_t>(i * N + o)] = codes[static_cast<size_t>(o * K + i)];
            codes.swap(t);
        }
        const std::string w = g.typed(lname + ".weight_quantized", onnx_ir::kInt8, wshape, codes.data(), codes.size());
        const std::string ws = g.f32(lname + ".weight_scale", {N}, q->weight_scale);
        const std::string wzp = g.typed(lname + ".weight_zero_point", onnx_ir::kInt8, {N}, wz.data(), wz.size());
        const std::string wd = g.op("DequantizeLinear", {w, ws, wzp}, {attr("axis", int64_t{is_matmul ? 1 : 0})});
        node.inputs = {xd, wd};
        if (!bias.empty()) {
            if (is_matmul) throw Unsupported("[onnx] " + lname + ": a MatMul with a bias");  // the importer gives MatMul none
            // int32 in units of input scale × weight scale, zero point 0 (ONNX Runtime's QDQ convention for QLinearConv / QGemm)
            std::vector<int32_t> bq(static_cast<size_t>(N));
            std::vector<float> bs(static_cast<size_t>(N));
            for (int64_t o = 0; o < N; ++o) {
                bs[static_cast<size_t>(o)] = q->input.scale * q->weight_scale[static_cast<size_t>(o)];
                const double v = std::nearbyint(static_cast<double>(bias[static_cast<size_t>(o)]) / bs[static_cast<size_t>(o)]);
                bq[static_cast<size_t>(o)] = static_cast<int32_t>(std::clamp(v, -2147483647.0, 2147483647.0));
            }
            const std::string b = g.typed(lname + ".bias_quantized", onnx_ir::kInt32, {N}, bq.data(), bq.size() * 4);
            node.inputs.push_back(g.op("DequantizeLinear", {b, g.f32(lname + ".bias_scale", {N}, bs)}, {attr("axis", int64_t{0})}));
        }
        out.graph.nodes.push_back(std::move(node));
        ++report.quantized;
    }

    out.graph.outputs = src.outputs;  // (a Concat that is a graph output keeps its float inputs)
    report.concat_inputs_quantized = quantize_concat_inputs(out.graph, input_quantizers);

    // drop what nothing reads any more (the float weights' Reshape / DequantizeLinear chains, their initializers)
    std::set<std::string> live;
    for (const auto& o : src.outputs) live.insert(o.name);
    std::vector<onnx_ir::Node> kept;
    for (auto it = out.graph.nodes.rbegin(); it != out.graph.nodes.rend(); ++it) {
        const bool used = std::any_of(it->outputs.begin(), it->outputs.end(), [&](const std::string& o) { return live.count(o) > 0; });
        if (!used) continue;
        for (const auto& i : it->inputs) live.insert(i);
        kept.push_back(std::move(*it));
    }
    std::reverse(kept.begin(), kept.end());
    out.graph.nodes = std::move(kept);
    std::vector<onnx_ir::Tensor> initializers;
    for (const auto& t : src.initializers)
        if (live.count(t.name)) initializers.push_back(t);
    for (auto& t : out.graph.initializers)
        if (live.count(t.name)) initializers.push_back(std::move(t));
    out.graph.initializers = std::move(initializers);
    for (const auto& v : src.inputs)
        if (v.name == st.input_name) out.graph.inputs.push_back(v);
    out.graph.outputs = src.outputs;

    OnnxExportOptions options;
    OnnxExportFile file;
    onnx_export::write_model(out, path, options, file);
    report.path = path;
    report.nodes = file.nodes;
    report.initializers = file.initializers;
    report.weight_bytes = file.weight_bytes;
    report.file_bytes = fs::file_size(path);
    return report;
}

}  // namespace cq
