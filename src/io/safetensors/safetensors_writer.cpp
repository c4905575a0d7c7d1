// safetensors writer: one atomic file, tensors in the caller's order, as the format's reference implementation lays
// them out (header padded to 8 bytes, data back to back), so the readers of transformers and cq take it.
#include <set>

#include <nlohmann/json.hpp>

#include "cq/atomic_file.h"
#include "cq/error.h"
#include "cq/io/safetensors.h"

namespace cq::safetensors {

uint64_t write_file(const std::string& path, std::span<const TensorToWrite> tensors, const std::map<std::string, std::string>& metadata,
                    const std::function<void(size_t, const std::function<void(const void*, size_t)>&)>& fill) {
    nlohmann::json header = nlohmann::json::object();
    std::set<std::string> names;
    uint64_t offset = 0;
    for (const TensorToWrite& t : tensors) {
        if (!names.insert(t.name).second) throw InvalidArgument("[safetensors] '" + path + "': the tensor '" + t.name + "' is written twice");
        if (!t.bytes && !fill) throw InvalidArgument("[safetensors] '" + path + "': the tensor '" + t.name + "' has no data");
        header[t.name] = {{"dtype", t.dtype}, {"shape", t.shape}, {"data_offsets", {offset, offset + t.nbytes}}};
        offset += t.nbytes;
    }
    nlohmann::json meta = nlohmann::json::object();
    for (const auto& [k, v] : metadata) meta[k] = v;
    if (!meta.empty()) header["__metadata__"] = meta;
    std::string text = header.dump();
    text.resize((text.size() + 7) / 8 * 8, ' ');
    AtomicFile out(path);
    const uint64_t n = text.size();
    out.write(&n, sizeof n);
    out.write(text.data(), text.size());
    for (size_t i = 0; i < tensors.size(); ++i) {
        const TensorToWrite& t = tensors[i];
        if (t.bytes) {
            out.write(t.bytes, t.nbytes);
            continue;
        }
        uint64_t written = 0;
        fill(i, [&](const void* data, size_t size) {
            out.write(data, size);
            written += size;
        });
        if (written != t.nbytes)
            throw InvalidArgument("[safetensors] '" + path + "': the tensor '" + t.name + "' got " + std::to_string(written) + " bytes, not " +
                                  std::to_string(t.nbytes));
    }
    out.commit();
    return 8 + text.size() + offset;
}

}  // namespace cq::safetensors
