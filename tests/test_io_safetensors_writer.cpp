// safetensors::write_file: what it writes reads back through cq's strict reader with the same names, dtypes, shapes
// and bytes, in the given order; the header is padded to 8 bytes; a duplicate name or a fill that writes another byte
// count is an error and leaves no file.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "cq/error.h"
#include "cq/io/safetensors.h"
#include "test_support.h"

namespace cq {
namespace {

TEST(SafetensorsWriter, ReadsBackWithTheSameTensorsInOrder) {
    test::TempDir dir{"cq_st_writer"};
    const std::string path = dir.file("m.safetensors");
    const std::vector<float> a = {1.0f, -2.5f, 3.25f, 0.0f, 7.0f, -0.125f};
    const std::vector<uint16_t> b = {0x3f80, 0xc000, 0x4040};  // BF16 1, -2, 3
    const std::vector<safetensors::TensorToWrite> tensors = {
        {"z.weight", "F32", {2, 3}, a.size() * sizeof(float), a.data()},
        {"a.bias", "BF16", {3}, b.size() * sizeof(uint16_t), nullptr},  // written by fill
    };
    const uint64_t size = safetensors::write_file(path, tensors, {{"format", "pt"}, {"written_by", "test"}},
                                                  [&](size_t i, const std::function<void(const void*, size_t)>& write) {
                                                      ASSERT_EQ(i, 1u);
                                                      write(b.data(), 2);  // in two pieces
                                                      write(b.data() + 1, 4);
                                                  });
    EXPECT_EQ(size, std::filesystem::file_size(path));
    const safetensors::File f = safetensors::File::open(path);
    EXPECT_EQ(f.header_size() % 8, 0u);
    ASSERT_EQ(f.tensors().size(), 2u);
    EXPECT_EQ(f.tensors()[0].name, "z.weight");  // data-offset order = the order given
    EXPECT_EQ(f.tensors()[0].shape, (std::vector<int64_t>{2, 3}));
    EXPECT_EQ(f.tensors()[1].dtype_name, "BF16");
    EXPECT_EQ(f.metadata().at("written_by"), "test");
    EXPECT_EQ(std::memcmp(f.tensor("z.weight").data(), a.data(), a.size() * sizeof(float)), 0);
    EXPECT_EQ(std::memcmp(f.tensor("a.bias").data(), b.data(), b.size() * sizeof(uint16_t)), 0);
}

TEST(SafetensorsWriter, DuplicateNamesAndShortFillsAreErrorsAndLeaveNoFile) {
    test::TempDir dir{"cq_st_writer"};
    const std::string path = dir.file("m.safetensors");
    const float x[2] = {1, 2};
    const std::vector<safetensors::TensorToWrite> twice = {{"w", "F32", {2}, 8, x}, {"w", "F32", {2}, 8, x}};
    try {
        safetensors::write_file(path, twice, {});
        FAIL() << "no error";
    } catch (const InvalidArgument& e) {
        EXPECT_NE(std::string(e.what()).find("'w' is written twice"), std::string::npos) << e.what();
    }
    const std::vector<safetensors::TensorToWrite> filled = {{"w", "F32", {2}, 8, nullptr}};
    try {
        safetensors::write_file(path, filled, {}, [&](size_t, const std::function<void(const void*, size_t)>& write) { write(x, 4); });
        FAIL() << "no error";
    } catch (const InvalidArgument& e) {
        EXPECT_NE(std::string(e.what()).find("got 4 bytes, not 8"), std::string::npos) << e.what();
    }
    EXPECT_FALSE(std::filesystem::exists(path));
    EXPECT_TRUE(std::filesystem::is_empty(dir.path()));  // no temporary left either
}

}  // namespace
}  // namespace cq
