// Core: dtype traits (against ggml's published block layouts), tensor storage rules, thread pool,
// CPU feature / ISA ladder consistency, error messages.
#include <gtest/gtest.h>

#include <atomic>
#include <numeric>
#include <stdexcept>
#include <thread>
#include <vector>

#include "cq/cpu_features.h"
#include "cq/dtype.h"
#include "cq/error.h"
#include "cq/kernels.h"
#include "cq/tensor.h"
#include "cq/thread_pool.h"

namespace cq {
namespace {

// Block sizes and bytes per block from ggml's ggml-common.h block structs, written out by hand
// (QK_K = 256): e.g. block_q4_K = 2×f16 + 12 scale bytes + 128 nibble bytes = 144.
struct GgmlLayout {
    uint32_t id;
    const char* name;
    uint32_t block, bytes;
};
constexpr GgmlLayout kGgml[] = {
    {0, "f32", 1, 4},        {1, "f16", 1, 2},         {2, "q4_0", 32, 2 + 16},    {3, "q4_1", 32, 4 + 16},
    {6, "q5_0", 32, 2 + 4 + 16}, {7, "q5_1", 32, 4 + 4 + 16}, {8, "q8_0", 32, 2 + 32}, {9, "q8_1", 32, 4 + 32},
    {10, "q2_K", 256, 16 + 64 + 4}, {11, "q3_K", 256, 32 + 64 + 12 + 2}, {12, "q4_K", 256, 4 + 12 + 128},
    {13, "q5_K", 256, 4 + 12 + 32 + 128}, {14, "q6_K", 256, 128 + 64 + 16 + 2}, {15, "q8_K", 256, 4 + 256 + 32},
    {16, "iq2_xxs", 256, 2 + 64}, {17, "iq2_xs", 256, 2 + 64 + 8}, {18, "iq3_xxs", 256, 2 + 96},
    {19, "iq1_s", 256, 2 + 32 + 16}, {20, "iq4_nl", 32, 2 + 16}, {21, "iq3_s", 256, 2 + 64 + 8 + 32 + 4},
    {22, "iq2_s", 256, 2 + 64 + 8 + 8}, {23, "iq4_xs", 256, 2 + 2 + 4 + 128}, {24, "i8", 1, 1},
    {25, "i16", 1, 2}, {26, "i32", 1, 4}, {27, "i64", 1, 8}, {28, "f64", 1, 8}, {29, "iq1_m", 256, 32 + 16 + 8},
    {30, "bf16", 1, 2}, {34, "tq1_0", 256, 48 + 4 + 2}, {35, "tq2_0", 256, 64 + 2}, {39, "mxfp4", 32, 1 + 16},
};

TEST(DType, GgmlTypesMatchGgmlLayouts) {
    for (const auto& g : kGgml) {
        const auto dt = dtype_from_ggml_id(g.id);
        ASSERT_TRUE(dt) << "ggml id " << g.id;
        const auto& t = dtype_traits(*dt);
        EXPECT_EQ(t.name, g.name) << "ggml id " << g.id;
        EXPECT_EQ(t.block_size, g.block) << g.name;
        EXPECT_EQ(t.bytes_per_block, g.bytes) << g.name;
        EXPECT_EQ(dtype_from_name(g.name), dt) << g.name;
    }
    for (uint32_t removed : {4u, 5u, 31u, 32u, 33u, 36u, 37u, 38u, 40u, 1000u})
        EXPECT_FALSE(dtype_from_ggml_id(removed)) << removed;
}

TEST(DType, BytesOfWholeBlocksOnly) {
    EXPECT_EQ(dtype_bytes(DType::Q4_0, 64), 36u);
    EXPECT_EQ(dtype_bytes(DType::Q4_0, 33), std::nullopt);
    EXPECT_EQ(dtype_bytes(DType::Q4_K, 512), 288u);
    EXPECT_EQ(dtype_bytes(DType::F32, 0), 0u);
    EXPECT_EQ(dtype_bytes(DType::F32, uint64_t{1} << 62), std::nullopt);
    EXPECT_EQ(dtype_from_name("Q4_k"), DType::Q4_K);  // case-insensitive
}

TEST(DType, PlainTypesRoundTripThroughFloat) {
    const float in[] = {0.0f, 1.0f, -2.5f, 65504.0f, 0.333251953125f};
    for (DType dt : {DType::F32, DType::F16, DType::BF16}) {
        const auto& t = dtype_traits(dt);
        std::vector<uint8_t> buf(5 * t.bytes_per_block);
        t.from_float(in, buf.data(), 5);
        float out[5];
        t.to_float(buf.data(), out, 5);
        EXPECT_EQ(out[0], 0.0f);
        EXPECT_EQ(out[1], 1.0f);
        EXPECT_EQ(out[2], -2.5f);
        if (dt != DType::BF16) EXPECT_EQ(out[3], 65504.0f);
        if (dt != DType::BF16) EXPECT_EQ(out[4], 0.333251953125f);  // exactly representable in f16
    }
    const float ints[] = {-129.0f, -1.5f, 2.5f, 127.4f, 300.0f};
    int8_t i8[5];
    dtype_traits(DType::I8).from_float(ints, i8, 5);
    EXPECT_EQ(i8[0], -128);  // saturates
    EXPECT_EQ(i8[1], -2);    // nearest even
    EXPECT_EQ(i8[2], 2);
    EXPECT_EQ(i8[3], 127);
    EXPECT_EQ(i8[4], 127);
}

TEST(Tensor, ZerosOwnsAlignedZeroedMemory) {
    Tensor t = Tensor::zeros({3, 5}, DType::F32);
    EXPECT_EQ(t.numel(), 15);
    EXPECT_EQ(t.nbytes(), 60u);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(t.data()) % kTensorAlignment, 0u);
    for (float v : t.values<float>()) EXPECT_EQ(v, 0.0f);
    static_cast<float*>(t.mutable_data())[14] = 7.0f;
    EXPECT_EQ(t.to_float()[14], 7.0f);
    EXPECT_EQ(t.shape_string(), "[3, 5]");
    EXPECT_EQ(t.dim(-1), 5);
}

TEST(Tensor, BorrowedIsReadOnlyAndKeepsStorageAlive) {
    auto storage = std::make_shared<std::vector<uint16_t>>(std::vector<uint16_t>{0x3C00, 0xC000});  // f16 1, -2
    Tensor t = Tensor::borrowed({2}, DType::F16, storage->data(), storage);
    storage.reset();
    EXPECT_THROW(t.mutable_data(), InvalidArgument);
    EXPECT_EQ(t.to_float(), (std::vector<float>{1.0f, -2.0f}));
}

TEST(Tensor, RejectsBadShapes) {
    EXPECT_THROW(Tensor::zeros({-1, 4}, DType::F32), InvalidArgument);
    EXPECT_THROW(Tensor::zeros({int64_t{1} << 40, int64_t{1} << 40}, DType::F32), InvalidArgument);
    EXPECT_THROW(Tensor::zeros({2, 33}, DType::Q4_0), InvalidArgument);
    EXPECT_THROW(Tensor::zeros({1, 256}, DType::IQ2_XXS).to_float(), Unsupported);
}

TEST(ThreadPool, CoversRangeExactlyOnce) {
    for (int threads : {1, 2, 3, 8}) {
        ThreadPool pool(threads);
        for (int64_t n : {0, 1, 2, 5, 7, 1000, 1001}) {
            std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
            pool.parallel_for(n, [&](int64_t b, int64_t e) {
                for (int64_t i = b; i < e; ++i) hits[static_cast<size_t>(i)]++;
            });
            for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[static_cast<size_t>(i)], 1) << "threads " << threads << " n " << n << " i " << i;
        }
    }
}

TEST(ThreadPool, RespectsMinChunkAndRethrows) {
    ThreadPool pool(4);
    std::atomic<int> chunks{0};
    pool.parallel_for(10, [&](int64_t, int64_t) { chunks++; }, 8);
    EXPECT_EQ(chunks, 1);
    EXPECT_THROW(pool.parallel_for(100, [](int64_t b, int64_t) {
        if (b > 0) throw std::runtime_error("worker failed");
    }),
                 std::runtime_error);
    // The pool still works after an exception.
    std::atomic<int64_t> sum{0};
    pool.parallel_for(100, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) sum += i;
    });
    EXPECT_EQ(sum, 4950);
}

// A parallel_for inside a chunk (an op that parallelises itself, called from a parallel region) runs
// inline on that thread and covers its range; before, it waited for workers busy with the outer job.
TEST(ThreadPool, NestedCallsRunInlineOnTheCallingThread) {
    ThreadPool pool(3);
    std::vector<std::atomic<int>> hits(3 * 100);
    std::atomic<int> foreign{0};
    pool.parallel_for(3, [&](int64_t b, int64_t e) {
        for (int64_t outer = b; outer < e; ++outer) {
            const auto self = std::this_thread::get_id();
            pool.parallel_for(100, [&](int64_t ib, int64_t ie) {
                if (std::this_thread::get_id() != self) foreign++;
                for (int64_t i = ib; i < ie; ++i) hits[static_cast<size_t>(outer * 100 + i)]++;
            });
        }
    });
    EXPECT_EQ(foreign, 0);
    for (size_t i = 0; i < hits.size(); ++i) ASSERT_EQ(hits[i], 1) << i;
    // the pool works normally again at the top level
    std::atomic<int64_t> sum{0};
    pool.parallel_for(100, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) sum += i;
    });
    EXPECT_EQ(sum, 4950);
}

TEST(CpuFeatures, LadderIsConsistent) {
    const auto levels = supported_isa_levels();
    ASSERT_FALSE(levels.empty());
    EXPECT_EQ(levels.front(), IsaLevel::ref);
    EXPECT_EQ(levels.back(), detected_isa_level());
    const CpuFeatures& f = cpu_features();
    if (cpu_supports(IsaLevel::avx512_vnni)) EXPECT_TRUE(f.avx512_vnni && f.avx512bw);
    if (cpu_supports(IsaLevel::avx2)) EXPECT_TRUE(f.avx2 && f.fma && f.f16c);
    EXPECT_EQ(isa_level_from_name("avx512_vnni"), IsaLevel::avx512_vnni);
    EXPECT_EQ(isa_level_from_name("sse9"), std::nullopt);
    for (IsaLevel l : levels) {
        const KernelTable t = make_kernel_table(l);
        EXPECT_EQ(t.level, l);
        for (const auto& k : list_kernels(t)) {
            EXPECT_FALSE(k.kernel.empty()) << k.op;
            // gemv_<quantized type>: the m = 1 slot of that type's GEMM
            const bool quant_gemv = k.op.rfind("gemv_", 0) == 0 && k.op != "gemv_f32";
            const std::string op = quant_gemv ? "gemm_" + k.op.substr(5) : k.op;
            EXPECT_NE(k.kernel.find(op), std::string::npos) << k.kernel << " does not implement " << k.op;
        }
    }
    const KernelTable ref = make_kernel_table(IsaLevel::ref);
    for (const auto& k : list_kernels(ref)) EXPECT_EQ(k.isa, "ref") << k.op;
}

TEST(CpuFeatures, UnsupportedLevelIsAnError) {
    for (IsaLevel l : {IsaLevel::avx2, IsaLevel::avx512, IsaLevel::avx512_vnni, IsaLevel::neon})
        if (!cpu_supports(l)) EXPECT_THROW(make_kernel_table(l), InvalidArgument);
}

TEST(Error, FormatErrorNamesFileAndOffset) {
    const FormatError e("gguf", "/m/x.gguf", 812, "tensor 'a' extends past the end of the file");
    EXPECT_STREQ(e.what(), "[gguf] /m/x.gguf: at byte 812: tensor 'a' extends past the end of the file");
    EXPECT_EQ(e.offset(), 812u);
    EXPECT_EQ(e.file(), "/m/x.gguf");
}

}  // namespace
}  // namespace cq

#include "core/sha256.h"
#include "test_support.h"

namespace cq {
namespace {

TEST(Sha256, KnownVectorsAndAFixtureHash) {
    // FIPS 180-4 examples.
    Sha256 a;
    a.update("abc", 3);
    EXPECT_EQ(a.hex(), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    Sha256 e;
    EXPECT_EQ(e.hex(), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    Sha256 m;
    const std::string s = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    for (char c : s) m.update(&c, 1);  // byte by byte exercises the buffering
    EXPECT_EQ(m.hex(), "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    // SOURCES.md gives the official hash of the stories260K GGUF.
    EXPECT_EQ(sha256_file(test::fixture("models/stories260K-gguf/stories260K.gguf")),
              "270cba1bd5109f42d03350f60406024560464db173c0e387d91f0426d3bd256d");
}

}  // namespace
}  // namespace cq
