// Structural checks of an ONNX graph in cq's IR, shared by the exporter (its own graphs) and the importer (files
// from anywhere): opset imported, every value produced once, every node's inputs defined before it (so no cycles),
// graph outputs produced, initializer bytes matching their shapes and types, dimensions sane.
#pragma once

#include <cstdint>
#include <string>

#include "onnx/onnx_ir.h"

namespace cq::onnx_export {

/// Bytes of one element of an ONNX data type; 0 for types cq does not handle (strings, complex ...).
int64_t element_bytes(int32_t data_type);
/// The default-domain opset the model imports; FormatError (naming `where`) when it imports none.
int64_t default_opset(const onnx_ir::Model& model, const std::string& where);
/// Throws FormatError naming `where` (the file) and the node / value at fault.
void validate_graph(const onnx_ir::Model& model, const std::string& where);

}  // namespace cq::onnx_export
