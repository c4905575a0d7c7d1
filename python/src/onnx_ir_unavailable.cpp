// The Python extension's side of cq's ONNX byte codec (src/onnx/onnx_ir.h). The codec in libcq is ONNX's protobuf
// classes merged with Debian's static protobuf-lite, which uses the local-exec TLS model and so cannot be linked into
// a shared object such as this module (src/onnx_proto/CMakeLists.txt). Linked ahead of libcq, these definitions keep
// that object out of the module: every other pass links as in the tool, and reading or writing ONNX bytes fails with
// one error saying where it works.
#include <string>

#include "onnx/onnx_ir.h"

namespace cq::onnx_ir {

namespace {
const char* const kWhy =
    "ONNX files are read and written by the cq command-line tool (cq export, cq eval MODEL.onnx, cq compress with an "
    "onnx export stage): the Python extension cannot carry Debian's static protobuf-lite, which ONNX's classes need";
}  // namespace

bool serialize(const Model&, std::string&, std::string& error) {
    error = kWhy;
    return false;
}

bool parse(const void*, size_t, Model&, std::string& error) {
    error = kWhy;
    return false;
}

}  // namespace cq::onnx_ir
