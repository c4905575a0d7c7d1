// Reading an .onnx file into cq's IR: protobuf parse (ONNX's own classes), external data resolved into each
// initializer's bytes with bounds checked against the data file, then the structural checks of onnx_validate.h.
#pragma once

#include <string>

#include "onnx/onnx_ir.h"

namespace cq::onnx_export {

/// FormatError (naming the file and what is wrong) for bytes that are not a valid ONNX model; IoError when a file
/// cannot be read. External data must lie in the model's folder.
onnx_ir::Model read_onnx_file(const std::string& path);
/// The same for bytes in memory (no external data possible); `name` appears in errors.
onnx_ir::Model read_onnx_bytes(const void* data, size_t size, const std::string& name);

}  // namespace cq::onnx_export
