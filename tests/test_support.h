// Helpers shared by the tests: where the fixtures are, reading files, guard-page buffers.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace cq::test {

/// A fresh directory under the system temp dir, removed with everything in it on destruction.
class TempDir {
public:
    explicit TempDir(const std::string& prefix = "cq_test");
    ~TempDir();
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    const std::string& path() const { return path_; }
    /// path()/name
    std::string file(const std::string& name) const { return path_ + "/" + name; }
    /// Writes `bytes` to path()/name and returns that path.
    std::string write(const std::string& name, const std::string& bytes) const;

private:
    std::string path_;
};

/// ../shared/fixtures (or $CQ_FIXTURES when set).
std::string fixtures_dir();
/// fixtures_dir() + "/" + relative.
std::string fixture(const std::string& relative);
/// tests/ in the source tree.
std::string tests_dir();
std::vector<uint8_t> read_bytes(const std::string& path);
/// zlib's CRC-32 (as Python's zlib.crc32), to compare bytes with values recorded by scripts.
uint32_t crc32(const void* data, size_t n);

}  // namespace cq::test
