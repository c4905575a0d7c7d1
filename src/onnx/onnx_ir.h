// cq's in-memory form of an ONNX model: plain structs mirroring onnx.proto's ModelProto / GraphProto / NodeProto /
// TensorProto, with no protobuf type in sight. Bytes on disk are always made and read by ONNX's own protobuf classes
// (src/onnx_proto: onnx.proto compiled with protoc), which live in a separate shared library with protobuf linked
// privately: Debian's libsentencepiece exports its bundled protobuf 3.14, and one process cannot hold that and
// libprotobuf 3.21 under the same global symbol names.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#if defined(__GNUC__)
#define CQ_ONNX_PROTO_API __attribute__((visibility("default")))
#else
#define CQ_ONNX_PROTO_API
#endif

namespace cq::onnx_ir {

/// TensorProto.DataType values.
enum DataType : int32_t {
    kFloat = 1, kUint8 = 2, kInt8 = 3, kUint16 = 4, kInt16 = 5, kInt32 = 6, kInt64 = 7, kString = 8, kBool = 9,
    kFloat16 = 10, kDouble = 11, kUint32 = 12, kUint64 = 13, kBfloat16 = 16,
};

struct Tensor {
    std::string name;
    int32_t data_type = kFloat;
    std::vector<int64_t> dims;
    /// The values as little-endian bytes (parsing moves float_data / int32_data / int64_data / double_data here).
    std::string raw;
    /// External data (location / offset / length ...) when the values live in another file; raw is then empty.
    std::vector<std::pair<std::string, std::string>> external_data;
};

struct Attribute {
    enum Type : int32_t { kUndefined = 0, kFloatAttr = 1, kIntAttr = 2, kStringAttr = 3, kTensorAttr = 4, kGraphAttr = 5,
                          kFloats = 6, kInts = 7, kStrings = 8, kTensors = 9, kGraphs = 10 };
    std::string name;
    Type type = kUndefined;
    float f = 0.0f;
    int64_t i = 0;
    std::string s;
    std::vector<float> floats;
    std::vector<int64_t> ints;
    std::vector<std::string> strings;
    std::shared_ptr<Tensor> t;  // kTensorAttr
    /// Graph attributes (If / Loop / Scan bodies) are not kept; their presence is (for a clear error).
    bool has_graph = false;
};

struct Node {
    std::string name, op_type, domain;
    std::vector<std::string> inputs, outputs;  // "" = an omitted optional input
    std::vector<Attribute> attributes;
};

struct Dim {
    int64_t value = -1;  // -1: symbolic or unknown
    std::string param;
};

struct ValueInfo {
    std::string name;
    int32_t elem_type = 0;  // 0: not a tensor type or unknown
    bool has_shape = false;
    std::vector<Dim> shape;
};

struct Graph {
    std::string name, doc_string;
    std::vector<Node> nodes;
    std::vector<Tensor> initializers;
    std::vector<ValueInfo> inputs, outputs;
};

struct Model {
    int64_t ir_version = 8;
    std::string producer_name, producer_version, doc_string;
    std::vector<std::pair<std::string, int64_t>> opsets;  // (domain, version); "" is the default domain
    Graph graph;
};

/// Serializes `model` with ONNX's protobuf classes. Returns false (and says why in `error`) when it cannot,
/// e.g. a message past protobuf's 2 GiB limit.
CQ_ONNX_PROTO_API bool serialize(const Model& model, std::string& bytes, std::string& error);
/// Parses ONNX protobuf bytes into `model`. Returns false (and says why in `error`) for bytes that are not a
/// ModelProto. No semantic checks: the importer validates what it reads.
CQ_ONNX_PROTO_API bool parse(const void* data, size_t size, Model& model, std::string& error);

}  // namespace cq::onnx_ir
