// `cq export MODEL OUT.onnx --format fp32`: writes a model cq runs as ONNX that ONNX Runtime runs (decoders: the
// full-sequence graph and the decode graph with past key/values beside it). The graphs are cq/onnx.h's.
#include <iostream>
#include <unistd.h>

#include "commands/commands.h"
#include "commands/format.h"
#include "cq/error.h"
#include "cq/model.h"
#include "cq/onnx.h"

namespace cq::cli {

namespace {
struct ExportCliOptions {
    std::string model, output, format = "fp32";
    int opset = 17;
    int64_t accuracy_level = 4;
    bool no_past = false, json = false, cq_activations = false;
    double external_gib = -1;
};
std::string lowering(const std::map<std::string, int64_t>& linears) {
    std::string s;
    for (const auto& [how, n] : linears) s += (s.empty() ? "" : ", ") + std::to_string(n) + " " + how;
    return s;
}
}  // namespace

Runner register_export(CLI::App& app) {
    auto o = std::make_shared<ExportCliOptions>();
    CLI::App* cmd = app.add_subcommand("export", "Write a model as ONNX that ONNX Runtime runs (decoders: also a decode graph with "
                                                 "past key/values, named as ONNX Runtime GenAI / Optimum name them)");
    cmd->add_option("model", o->model, "A model cq loads: a decoder LLM (.gguf or HF directory), an encoder classifier (BERT family, LayoutLM, DeBERTa, CLIP, ViT / DeiT, ResNet, EfficientNet), a T5 / BART / BLIP captioning HF directory, a DETR object detector")->required();
    cmd->add_option("output", o->output, "The .onnx file to write (decoders also write <stem>_with_past.onnx beside it); T5 / BART / BLIP: "
                                         "a directory for Optimum's encoder_model.onnx, decoder_model.onnx, decoder_with_past_model.onnx")->required();
    cmd->add_option("--format", o->format, "fp32: MatMul over float weights (quantized weights dequantized); matmulnbits: ONNX Runtime's MatMulNBits "
                                      "carrying the model's own Q4_0/Q4_1/Q4_K (4-bit) and Q8_0 (8-bit) weights, blocks of 32, other "
                                      "types as float MatMuls; for a W8A8 model (cq quantize --type w8a8-static|w8a8-dynamic, encoders and decoder LLMs): "
                                      "dynamic (DynamicQuantizeLinear + MatMulInteger: per-tensor activations, exact for --act-granularity "
                                      "tensor models), qdq (static Q/DQ MatMul with the float bias: ORT's MatMulIntegerToFloat), trt-qdq "
                                      "(TensorRT's explicit quantization, checked against its rules; exact for --act-symmetric models) (default: fp32)");
    cmd->add_option("--opset", o->opset, "ONNX opset of the default domain, 17 or later (default: 17)");
    cmd->add_option("--accuracy-level", o->accuracy_level,
                    "matmulnbits: MatMulNBits accuracy_level, 0 = float activations, 4 = int8 activations in blocks as cq's "
                    "quantized dot products (default: 4)")
        ->check(CLI::IsMember({0, 1, 2, 3, 4}));
    cmd->add_flag("--cq-activations", o->cq_activations,
                  "matmulnbits: quantize each block-typed layer's input in the graph exactly as cq's kernels do (Q8_0 blocks with "
                  "fp16 scales, Q8_K for k-quants) and run MatMulNBits at accuracy level 0 on those values, so ONNX Runtime "
                  "computes cq's numbers (slower than --accuracy-level 4) (default: off)");
    cmd->add_flag("--no-past", o->no_past, "Decoders: write only the full-sequence graph; encoder–decoders: no decoder_with_past_model.onnx (default: off)");
    cmd->add_option("--external-data-gib", o->external_gib,
                    "Put the weights in <file>.data when they exceed this many GiB (default: -1 = just under protobuf's 2 GiB limit)");
    cmd->add_flag("--json", o->json, "Print a JSON summary instead of text (default: off)");
    return [o]() -> int {
        OnnxExportOptions opts;
        opts.format = onnx_format_from_name(o->format);
        opts.opset = o->opset;
        opts.with_past = !o->no_past;
        opts.nbits_accuracy_level = o->accuracy_level;
        opts.nbits_cq_activations = o->cq_activations;
        if (o->cq_activations && opts.format != OnnxFormat::matmulnbits)
            throw InvalidArgument("--cq-activations applies to --format matmulnbits");
        if (o->external_gib >= 0) opts.external_data_threshold = static_cast<uint64_t>(o->external_gib * double(uint64_t{1} << 30));
        auto model = Model::load(o->model);
        const bool show = !o->json && isatty(STDERR_FILENO);
        if (show) opts.progress = [](const std::string& stage) { std::cerr << "\rexport: " << stage << "\x1b[K" << std::flush; };
        const OnnxExportReport r = export_onnx(*model, o->output, opts);
        if (show) std::cerr << "\r\x1b[K";
        if (o->json) {
            nlohmann::json files = nlohmann::json::array();
            for (const auto& f : r.files)
                files.push_back({{"path", f.path}, {"external_data", f.external_data}, {"graph", f.graph}, {"nodes", f.nodes},
                                 {"initializers", f.initializers}, {"weight_bytes", f.weight_bytes}, {"linears", f.linears}, {"inputs", f.inputs}, {"outputs", f.outputs}});
            print_json({{"architecture", r.architecture}, {"format", onnx_format_name(r.format)}, {"opset", r.opset}, {"files", files}, {"notes", r.notes}});
            return 0;
        }
        std::vector<std::vector<std::string>> rows{{"file", "graph", "nodes", "weights", "inputs", "linears"}};
        for (const auto& f : r.files)
            rows.push_back({f.path + (f.external_data.empty() ? "" : " (+ " + f.external_data + ")"), f.graph, std::to_string(f.nodes),
                            group_digits(f.weight_bytes) + " B", std::to_string(f.inputs.size()), lowering(f.linears)});
        std::cout << "export: " << r.architecture << " as ONNX (" << onnx_format_name(r.format) << ", opset " << r.opset << ")\n";
        print_table(rows, {false, false, true, true, true, false});
        for (const std::string& note : r.notes) std::cout << "note: " << note << "\n";
        return 0;
    };
}

}  // namespace cq::cli
