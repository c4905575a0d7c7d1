// read_onnx_file / read_onnx_bytes (see onnx_file.h).
#include "onnx/onnx_file.h"

#include <filesystem>
#include <map>

#include "cq/error.h"
#include "cq/mapped_file.h"
#include "onnx/onnx_validate.h"

namespace cq::onnx_export {

onnx_ir::Model read_onnx_bytes(const void* data, size_t size, const std::string& name) {
    onnx_ir::Model m;
    std::string error;
    if (!onnx_ir::parse(data, size, m, error)) throw FormatError("onnx", name, 0, error);
    for (const auto& t : m.graph.initializers)
        if (!t.external_data.empty())
            throw FormatError("onnx", name, 0, "initializer '" + t.name + "' refers to external data, which needs a file on disk");
    validate_graph(m, name);
    return m;
}

onnx_ir::Model read_onnx_file(const std::string& path) {
    const auto src = map_file(path);
    onnx_ir::Model m;
    std::string error;
    if (!onnx_ir::parse(src->data(), src->size(), m, error)) throw FormatError("onnx", path, 0, error);
    const std::filesystem::path dir = std::filesystem::path(path).parent_path();
    std::map<std::string, std::shared_ptr<const ByteSource>> files;
    for (auto& t : m.graph.initializers) {
        if (t.external_data.empty()) continue;
        std::map<std::string, std::string> kv(t.external_data.begin(), t.external_data.end());
        const std::string& loc = kv["location"];
        const std::filesystem::path rel(loc);
        if (loc.empty() || rel.is_absolute() || loc.find("..") != std::string::npos)
            throw FormatError("onnx", path, 0, "initializer '" + t.name + "' has external data location '" + loc +
                                                   "' (must be a file name inside the model's folder)");
        auto& file = files[loc];
        if (!file) file = map_file((dir / rel).string());
        uint64_t offset = 0, length = 0;
        try {
            offset = kv.count("offset") ? std::stoull(kv["offset"]) : 0;
            length = kv.count("length") ? std::stoull(kv["length"]) : file->size() - std::min<uint64_t>(offset, file->size());
        } catch (const std::exception&) {
            throw FormatError("onnx", path, 0, "initializer '" + t.name + "' has a malformed external data offset or length");
        }
        if (offset > file->size() || length > file->size() - offset)
            throw FormatError("onnx", path, 0, "initializer '" + t.name + "' reads bytes [" + std::to_string(offset) + ", " +
                                                   std::to_string(offset + length) + ") past the end of " + loc + " (" +
                                                   std::to_string(file->size()) + " bytes)");
        t.raw.assign(reinterpret_cast<const char*>(file->data() + offset), length);
        t.external_data.clear();
    }
    validate_graph(m, path);
    return m;
}

}  // namespace cq::onnx_export
