// The imported graph's state shared by OnnxModel's translation units (the interpreter in onnx_model.cpp, the QDQ writer
// in onnx_qdq_import_writer.cpp): the file's IR as loaded (BatchNorms folded into their Conv), constants, Linears.
#pragma once

#include <map>
#include <memory>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "cq/model.h"
#include "cq/w8a8.h"
#include "onnx/onnx_ir.h"
#include "onnx/onnx_value.h"

namespace cq {

struct OnnxGraphState {
    onnx_ir::Model model;
    std::string path;
    std::unordered_map<std::string, onnx_interp::Value> constants;
    std::vector<std::unique_ptr<Linear>> linears;
    std::map<size_t, size_t> node_linear;  // node index → its Linear
    std::set<size_t> skip;                 // folded nodes
    std::string input_name, output_name;
    std::vector<int64_t> input_shape;
    int64_t opset = 0;
    // Shape arithmetic (Shape and the integer nodes fed only by it and constants) depends on the input's shape
    // alone when no tensor's shape depends on data; it is then folded on the first run for each input shape.
    std::set<size_t> shape_nodes;          // nodes computing only from shapes and constants
    bool shape_folding = false;            // every shape-giving input of the graph is a constant or shape arithmetic
    std::vector<int64_t> folded_for;       // the input shape shape_values were computed for
    std::unordered_map<std::string, onnx_interp::Value> shape_values;
    // Conv node → the Relu that is its output's only reader: the Conv applies it while writing its output under the
    // Relu's output name, and the run skips the Relu (the graph itself, and what write_qdq writes, keep both nodes)
    std::map<size_t, size_t> conv_relu;
    std::set<size_t> relu_in_conv;
    // Static-W8A8 Conv node → its int8 weight re-ordered (ky, kx, c) for patches gathered from pixel-major codes, made on
    // the first run after quantization; `from` is the Linear's int8 it was made from (a re-quantized layer remakes it).
    struct PixelMajorWeight {
        std::shared_ptr<const Int8Linear> from;
        std::shared_ptr<const Int8Linear> weight;
    };
    std::map<size_t, PixelMajorWeight> pixel_major;
    // A channel Concat whose every input is a Conv's output (or its fused Relu's) read by nothing else: when all those
    // convs run W8A8 channels-last, each writes its channels of the Concat's output in place and the Concat copies
    // nothing. Conv node → (its Concat, its first channel); Concat node → its convs.
    struct ConcatSlice {
        size_t concat;
        int64_t channel;
    };
    std::map<size_t, ConcatSlice> conv_into_concat;
    std::map<size_t, std::vector<size_t>> concat_convs;
    // the nodes reading each computed value, for choosing the layout a W8A8 conv writes
    std::unordered_map<std::string, std::vector<size_t>> readers;
    // values dropped after node k ran (their last reader), so a run holds only the live tensors
    std::vector<std::vector<std::string>> release_after;
};

}  // namespace cq
