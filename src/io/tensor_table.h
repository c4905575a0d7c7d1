// What the file readers (GGUF, safetensors) share about their tensor tables: lookup through a name →
// position map, and the InvalidArgument for a name the file does not hold.
#pragma once

#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "cq/error.h"
#include "cq/tensor.h"

namespace cq::io {

template <typename Info>
const Info* find_by_name(const std::unordered_map<std::string, size_t>& index, const std::vector<Info>& infos,
                         std::string_view name) {
    const auto it = index.find(std::string(name));
    return it == index.end() ? nullptr : &infos[it->second];
}

/// file.tensor(*file.find_tensor(name)); `format` ("gguf", "safetensors") starts the error message.
template <typename File>
Tensor tensor_named(const File& file, std::string_view name, const char* format) {
    const auto* info = file.find_tensor(name);
    if (!info) throw InvalidArgument("[" + std::string(format) + "] " + file.path() + ": no tensor named '" + std::string(name) + "'");
    return file.tensor(*info);
}

}  // namespace cq::io
