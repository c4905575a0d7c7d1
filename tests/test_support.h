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

}  // namespace cq::test
