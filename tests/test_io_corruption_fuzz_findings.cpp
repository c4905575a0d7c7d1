// Replays of the inputs the fuzzers once failed on (tests/fuzz_findings/, see its README): each must now
// parse or be refused with a cq::Error.
#include <gtest/gtest.h>

#include "io_corruption_support.h"

namespace {

using namespace cq::test::hostile;

// ---------------------------------------------------------------------------------------------
// Inputs the fuzzers once failed on (tests/fuzz_findings/, see its README): each must now parse or be
// refused with a cq::Error. The name's prefix picks the reader.

std::vector<std::string> fuzz_findings() {
    std::vector<std::string> names;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(cq::test::tests_dir() + "/fuzz_findings", ec))
        if (e.is_regular_file() && e.path().extension() != ".md") names.push_back(e.path().filename().string());
    std::sort(names.begin(), names.end());
    return names;
}

class FuzzFindings : public testing::TestWithParam<std::string> {};

TEST_P(FuzzFindings, Replay) {
    const std::string name = GetParam();
    const Bytes b = cq::test::read_bytes(cq::test::tests_dir() + "/fuzz_findings/" + name);
    Outcome o;
    if (name.rfind("gguf-", 0) == 0) {
        o = parse_gguf(b, name);
    } else if (name.rfind("safetensors-", 0) == 0) {
        o = parse_st(b, name);
    } else if (name.rfind("index-", 0) == 0) {
        ShardedDir d;
        const std::string idx = d.dir.write("model.safetensors.index.json", b);
        o = run([&] { (void)st::Model::open(idx); });
    } else if (name.rfind("config-", 0) == 0) {
        TempDir dir;
        dir.write("config.json", b);
        dir.write("model.safetensors", st_base());
        o = run([&] {
            (void)cq::hf::open_model_dir(dir.path().string());
            (void)cq::summarize_model(dir.path().string());
        });
    } else {
        FAIL() << "tests/fuzz_findings/" << name << ": the name must start with gguf-, safetensors-, index- or config-";
    }
    EXPECT_TRUE(IsOkOrCqError(o)) << "tests/fuzz_findings/" << name;
}

INSTANTIATE_TEST_SUITE_P(Files, FuzzFindings, testing::ValuesIn(fuzz_findings()), [](const testing::TestParamInfo<std::string>& info) {
    std::string name;
    for (char c : info.param) name += std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
    return name;
});

}  // namespace
