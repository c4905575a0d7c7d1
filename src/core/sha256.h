// SHA-256 (FIPS 180-4) for provenance: the hash of an input model recorded in files cq writes.
#pragma once

#include <array>
#include <cstdint>
#include <string>

namespace cq {

class Sha256 {
public:
    Sha256();
    void update(const void* data, size_t bytes);
    /// Lower-case hex digest; the object must not be updated afterwards.
    std::string hex();

private:
    void block(const uint8_t* p);
    std::array<uint32_t, 8> h_;
    std::array<uint8_t, 64> buf_{};
    size_t buf_len_ = 0;
    uint64_t total_ = 0;
};

/// Hex SHA-256 of a whole file (memory-mapped, read sequentially).
std::string sha256_file(const std::string& path);

}  // namespace cq
