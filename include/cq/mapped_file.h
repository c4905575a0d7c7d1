// Read-only byte sources for the model readers: a memory-mapped file (zero-copy) or an in-memory
// buffer (tests, fuzzers). Readers hold a shared_ptr so tensors borrowed from them stay valid.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace cq {

class ByteSource {
public:
    virtual ~ByteSource() = default;
    const uint8_t* data() const { return data_; }
    uint64_t size() const { return size_; }
    /// Name used in error messages (the path for files).
    const std::string& name() const { return name_; }

protected:
    const uint8_t* data_ = nullptr;
    uint64_t size_ = 0;
    std::string name_;
};

/// Maps `path` read-only. Throws IoError if it cannot be opened or mapped.
std::shared_ptr<const ByteSource> map_file(const std::string& path);
/// Wraps a copy of `bytes`; `name` appears in error messages.
std::shared_ptr<const ByteSource> memory_source(std::vector<uint8_t> bytes, std::string name);
/// Reads a whole (small) text file, e.g. config.json. Throws IoError.
std::string read_text_file(const std::string& path, uint64_t max_bytes);

}  // namespace cq
