// GGUF writer: re-writing a real GGUF (every key-value, every tensor, same order) reproduces the
// original file byte for byte — the files come from llama.cpp's gguf-py, an independent writer.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>

#include "cq/error.h"
#include "cq/io/gguf.h"
#include "cq/io/gguf_writer.h"
#include "test_support.h"

namespace cq {
namespace {

namespace fs = std::filesystem;

std::vector<uint8_t> rewrite(const std::string& path, const fs::path& out) {
    const gguf::File in = gguf::File::open(path);
    gguf::Writer w(in.alignment());
    w.copy_metadata(in);
    for (const auto& t : in.tensors()) w.add_tensor(t.name, t.shape, t.dtype);
    {
        AtomicFile file(out.string());
        w.write(file, [&](size_t i, std::vector<uint8_t>& buf) {
            const auto& t = in.tensors()[i];
            const auto* p = static_cast<const uint8_t*>(in.tensor(t).data());
            buf.assign(p, p + t.nbytes);
        });
        file.commit();
    }
    return test::read_bytes(out.string());
}

TEST(GgufWriter, RewritingRealFilesIsByteIdentical) {
    const fs::path dir = fs::temp_directory_path() / ("cq_gguf_writer_" + std::to_string(::getpid()));
    fs::create_directories(dir);
    for (const char* rel : {"models/stories260K-gguf/stories260K.gguf", "tokenizers/llamacpp_vocab/ggml-vocab-gpt-2.gguf",
                            "tokenizers/llamacpp_vocab/ggml-vocab-llama-spm.gguf"}) {
        const auto original = test::read_bytes(test::fixture(rel));
        const auto copy = rewrite(test::fixture(rel), dir / "copy.gguf");
        if (gguf::File::open(test::fixture(rel)).tensors().empty()) {
            // Vocab-only files end right after the metadata; the writer pads the header to the alignment.
            ASSERT_GE(copy.size(), original.size()) << rel;
            EXPECT_EQ(0, std::memcmp(copy.data(), original.data(), original.size())) << rel;
        } else {
            ASSERT_EQ(copy.size(), original.size()) << rel;
            for (size_t i = 0; i < copy.size(); ++i) ASSERT_EQ(copy[i], original[i]) << rel << " differs at byte " << i;
        }
        const gguf::File reread = gguf::File::open((dir / "copy.gguf").string());
        EXPECT_EQ(reread.metadata().size(), gguf::File::open(test::fixture(rel)).metadata().size());
    }
    fs::remove_all(dir);
}

TEST(GgufWriter, RejectsBadTensorsAndLeavesNoFileOnFailure) {
    gguf::Writer w;
    EXPECT_THROW(w.add_tensor("a", {2, 33}, DType::Q4_0), InvalidArgument);
    w.add_tensor("a", {2, 32}, DType::Q4_0);
    EXPECT_THROW(w.add_tensor("a", {1}, DType::F32), InvalidArgument);
    EXPECT_EQ(w.tensor_bytes(0), 36u);
    const fs::path out = fs::temp_directory_path() / ("cq_gguf_fail_" + std::to_string(::getpid()) + ".gguf");
    {
        AtomicFile file(out.string());
        EXPECT_THROW(w.write(file, [](size_t, std::vector<uint8_t>& buf) { buf.resize(5); }), Error);
    }
    EXPECT_FALSE(fs::exists(out));
    for (const auto& e : fs::directory_iterator(out.parent_path()))
        EXPECT_EQ(e.path().filename().string().find(out.filename().string() + ".tmp"), std::string::npos) << e.path();
}

}  // namespace
}  // namespace cq
