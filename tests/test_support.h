// Helpers shared by the tests: where the fixtures are, reading files, guard-page buffers.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace cq::test {

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
