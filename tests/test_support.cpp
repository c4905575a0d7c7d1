// Helpers shared by the tests.
#include "test_support.h"

#include <cstdlib>
#include <fstream>
#include <iterator>
#include <stdexcept>

namespace cq::test {

std::string fixtures_dir() {
    if (const char* env = std::getenv("CQ_FIXTURES"); env && *env) return env;
    return CQ_FIXTURES_DIR;
}

std::string fixture(const std::string& relative) { return fixtures_dir() + "/" + relative; }

std::string tests_dir() { return CQ_TESTS_DIR; }

std::vector<uint8_t> read_bytes(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw std::runtime_error("cannot open " + path);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

}  // namespace cq::test
