// The encoders' sequence-parallel pass (whole sequences per thread through every block): taken only where each
// thread gets a long enough sequence and nothing observes the pass, and it gives the batch-wide pass's bits for any
// thread count and any uneven split, FP32 and W8A8 with INT8 attention alike.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "cq/encoder.h"
#include "cq/quantize_encoder.h"
#include "cq/thread_pool.h"
#include "models/encoder_families.h"
#include "test_support.h"

namespace cq {
namespace {

// Sentences long enough (≥ 32 word pieces) for the split; padded to the longest, so the masks matter too.
std::vector<std::string> texts(int64_t n) {
    const std::vector<std::string> base = {
        "a gripping , funny and ultimately heartbreaking film that stays with you long after the credits roll , the lights come up and the "
        "audience walks out into the cold night still talking about it",
        "the plot is thin , the jokes are stale and the whole thing drags on for far too long without a single moment of real surprise",
        "an uneven but often charming story about friendship",
        "neither the actors nor the director seem to know what this movie wants to be , and by the end neither does the audience",
        "it is a beautiful , patient piece of work",
    };
    std::vector<std::string> out;
    for (int64_t i = 0; i < n; ++i) out.push_back(base[static_cast<size_t>(i) % base.size()]);
    return out;
}

std::vector<float> logits_with_threads(EncoderModel& m, const TextBatch& batch, int threads) {
    ThreadPool::set_global_threads(threads);
    std::vector<float> logits(static_cast<size_t>(batch.batch * m.config().num_labels));
    m.classify(batch, logits.data());
    ThreadPool::set_global_threads(0);
    return logits;
}

TEST(EncoderSequenceParallel, SameBitsForAnyThreadCount) {
    const std::string dir = test::fixture("models/bert-tiny-sst2");
    test::TempDir tmp;
    EncoderQuantizeOptions o;
    o.activation_bits = 8;
    o.attention = AttentionPrecision::int8;
    quantize_encoder(dir, tmp.file("int8.gguf"), o);
    for (const std::string& path : {dir, tmp.file("int8.gguf")}) {
        auto m = EncoderModel::load(path);
        for (int64_t n : {5, 6}) {
            const TextBatch batch = m->tokenize(texts(n), 64);
            ASSERT_GE(batch.seq, 32) << "the sentences must reach the split's minimum";
            const std::vector<float> one = logits_with_threads(*m, batch, 1);
            for (int threads : {2, 3, 4}) EXPECT_EQ(logits_with_threads(*m, batch, threads), one) << path << ", batch " << n << ", threads " << threads;
        }
    }
}

TEST(EncoderSequenceParallel, TakenOnlyWhereItPays) {
    auto m = EncoderModel::load(test::fixture("models/bert-tiny-sst2"));
    EncoderScratch scratch;
    const EncoderPass pass{m->config(), m->weights(), scratch, nullptr, ops::Activation::gelu_erf};
    const auto& blocks = m->weights().blocks;
    ThreadPool::set_global_threads(2);
    EXPECT_TRUE(pass.splits_by_sequence(blocks, 2, 32));
    EXPECT_FALSE(pass.splits_by_sequence(blocks, 1, 128));  // fewer sequences than threads
    EXPECT_FALSE(pass.splits_by_sequence(blocks, 8, 31));   // too short for the GEMM tiles
    const ObserverId id = m->observe(m->weights().blocks[1].ffn_out, [](const LinearEvent&) {});
    EXPECT_FALSE(pass.splits_by_sequence(blocks, 8, 128));  // an observer sees whole-batch events
    m->remove_observer(id);
    EXPECT_TRUE(pass.splits_by_sequence(blocks, 8, 128));
    ThreadPool::set_global_threads(1);
    EXPECT_FALSE(pass.splits_by_sequence(blocks, 8, 128));
    ThreadPool::set_global_threads(0);
}

}  // namespace
}  // namespace cq
