// BERT classifier training against PyTorch (tests/expected/train/bert_grads.json from scripts/train_reference.py
// bert-grads: the fixture's eight reference sentences padded to the longest), dropout determinism, the random
// initialisation, and a short cq finetune run whose trained weights the model's own forward then runs.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <fstream>

#include <nlohmann/json.hpp>

#include "cq/datasets.h"
#include "cq/encoder.h"
#include "cq/error.h"
#include "cq/thread_pool.h"
#include "cq/train.h"
#include "test_support.h"

namespace cq {
namespace {

std::unique_ptr<EncoderModel> load_bert() { return EncoderModel::load(test::fixture("models/bert-tiny-sst2")); }

nlohmann::json expected() {
    std::ifstream in(test::tests_dir() + "/expected/train/bert_grads.json");
    return nlohmann::json::parse(in);
}

TextBatch batch_from(const nlohmann::json& ref, std::vector<int32_t>& labels) {
    TextBatch b;
    b.batch = ref["batch"], b.seq = ref["seq"];
    for (const auto& row : ref["ids"])
        for (int32_t id : row.get<std::vector<int32_t>>()) b.ids.push_back(id);
    for (const auto& row : ref["mask"])
        for (int32_t m : row.get<std::vector<int32_t>>()) b.mask.push_back(m);
    b.type_ids.assign(b.ids.size(), 0);
    labels = ref["labels"].get<std::vector<int32_t>>();
    return b;
}

// Loss and per-tensor gradient norms within 1e-4 relative, sampled entries within 1e-4·‖g‖. A key bias's true gradient is
// 0 (softmax ignores a constant per query row): both sides hold rounding noise there, so a tensor whose torch norm is
// below 1e-6 of the whole gradient's must be as small in cq, not equal.
void expect_grads_match(EncoderTrainer& trainer, double loss, const nlohmann::json& ref) {
    const double ref_loss = ref["loss"];
    EXPECT_LE(std::fabs(loss - ref_loss) / ref_loss, 1e-4) << loss << " vs torch " << ref_loss;
    const auto& params = ref["params"];
    ASSERT_EQ(trainer.params().size(), params.size());
    double global = 0;
    for (const auto& [name, r] : params.items()) global += r["norm"].get<double>() * r["norm"].get<double>();
    global = std::sqrt(global);
    double worst = 0;
    for (const TrainParam& p : trainer.params()) {
        ASSERT_TRUE(params.contains(p.hf_name)) << p.hf_name;
        const auto& r = params[p.hf_name];
        EXPECT_EQ(p.hf_shape.empty() ? p.shape : p.hf_shape, r["shape"].get<std::vector<int64_t>>()) << p.name;
        double ss = 0;
        for (int64_t i = 0; i < p.numel; ++i) ss += static_cast<double>(p.grad[i]) * p.grad[i];
        const double norm = std::sqrt(ss), ref_norm = r["norm"];
        if (ref_norm < 1e-6 * global) {
            EXPECT_LT(norm, 1e-6 * global) << p.name << ": a zero gradient (torch " << ref_norm << ") is " << norm << " in cq";
            continue;
        }
        worst = std::max(worst, std::fabs(norm - ref_norm) / ref_norm);
        EXPECT_LE(std::fabs(norm - ref_norm), 1e-4 * ref_norm) << p.name << ": gradient norm " << norm << " vs torch " << ref_norm;
        const auto idx = r["idx"].get<std::vector<int64_t>>();
        const auto val = r["val"].get<std::vector<double>>();
        for (size_t k = 0; k < idx.size(); ++k)
            EXPECT_LE(std::fabs(p.grad[idx[k]] - val[k]), 1e-4 * ref_norm) << p.name << "[" << idx[k] << "]";
    }
    std::printf("loss %.8f (torch %.8f, rel %.2e); worst gradient-norm rel diff %.2e\n", loss, ref_loss,
                std::fabs(loss - ref_loss) / ref_loss, worst);
}

TEST(TrainEncoder, BertLossAndEveryGradientMatchPyTorch) {
    const auto ref = expected();
    auto model = load_bert();
    std::vector<int32_t> labels;
    const TextBatch b = batch_from(ref, labels);
    EncoderTrainer trainer(*model);
    const double loss = trainer.forward_backward(b, labels, 0.0f, 0);
    expect_grads_match(trainer, loss, ref);
}

// ViT (patch embedding, CLS token, pre-LN blocks) on the fixture's eight reference images.
TEST(TrainEncoder, VitLossAndEveryGradientMatchPyTorch) {
    std::ifstream in(test::tests_dir() + "/expected/train/vit_grads.json");
    const auto ref = nlohmann::json::parse(in);
    auto model = EncoderModel::load(test::fixture("models/vit-tiny-mnist"));
    const auto images = ref["images"].get<std::vector<int64_t>>();
    const data::ImageDataset d = data::load_mnist(test::fixture("data/t10k-images-idx3-ubyte.gz"), test::fixture("data/t10k-labels-idx1-ubyte.gz"),
                                                  images.front(), static_cast<int64_t>(images.size()));
    const auto labels = ref["labels"].get<std::vector<int32_t>>();
    ASSERT_EQ(d.labels, labels);
    EncoderTrainer trainer(*model);
    const double loss = trainer.forward_backward_images(d.pixels.data(), d.count(), labels);
    expect_grads_match(trainer, loss, ref);
    // The trainer's forward is the model's: same logits as EncoderModel::classify_images.
    std::vector<float> a(static_cast<size_t>(d.count() * 10)), c(a.size());
    trainer.loss_images(d.pixels.data(), d.count(), labels, a.data());
    model->classify_images(d.pixels.data(), d.count(), c.data());
    for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], c[i], 1e-4) << i;
}

TEST(TrainEncoder, DropoutRunsAreTheSameBytesForAnyThreadCount) {
    const auto ref = expected();
    std::vector<int32_t> labels;
    const TextBatch b = batch_from(ref, labels);
    const auto run = [&](int threads) {
        ThreadPool::set_global_threads(threads);
        auto model = load_bert();
        EncoderTrainer trainer(*model);
        trainer.forward_backward(b, labels, 0.1f, 42);
        std::vector<float> all;
        for (const TrainParam& p : trainer.params()) all.insert(all.end(), p.grad, p.grad + p.numel);
        return all;
    };
    const auto one = run(1), two = run(2);
    ThreadPool::set_global_threads(0);
    EXPECT_EQ(0, std::memcmp(one.data(), two.data(), one.size() * sizeof(float)));
    auto model = load_bert();
    EncoderTrainer trainer(*model);
    const double no_drop = trainer.forward_backward(b, labels, 0.0f, 42);
    const double drop = trainer.forward_backward(b, labels, 0.1f, 42);
    EXPECT_NE(no_drop, drop) << "dropout changed nothing";
}

TEST(TrainEncoder, RandomInitFollowsHfAndFinetuneRunsInTheModel) {
    auto model = load_bert();
    ClassifierFinetuneOptions o;
    o.data = test::fixture("data/sst2_train.tsv");
    o.eval_data = test::fixture("data/sst2_dev.tsv");
    o.random_init = true, o.seed = 1, o.steps = 2106, o.stop_after = 40, o.batch = 32;
    test::TempDir dir;
    o.output = dir.file("bert");
    const FinetuneReport r = finetune_classifier(*model, o);
    ASSERT_EQ(r.loss_curve.size(), 40u);
    EXPECT_NEAR(r.eval_accuracy_before, 0.5, 0.06);  // a random model guesses
    // LayerNorms restarted at 1 / 0 and moved only by 40 small steps; biases from 0.
    const auto g = model->weights().blocks[0].attn_norm.weight.to_float();
    for (float v : g) EXPECT_NEAR(v, 1.0f, 0.05f);
    // The written HF directory reloads to the same logits as the trained model in memory.
    auto reloaded = EncoderModel::load(o.output);
    const std::vector<std::string> texts = {"a charming and often affecting journey", "bleak and desperate"};
    const TextBatch b = model->tokenize(texts, 64);
    std::vector<float> a(4), c(4);
    model->classify(b, a.data());
    reloaded->classify(b, c.data());
    EXPECT_EQ(0, std::memcmp(a.data(), c.data(), sizeof(float) * 4));
}

// cq finetune's classifier loop on MNIST (ViT): a few small-lr steps from the fixture keep its accuracy, and the
// trained weights are what the model's own forward then runs (its accuracy is measured through classify_dataset).
TEST(TrainEncoder, VitFinetuneOnMnistKeepsTheModelAccurate) {
    auto model = EncoderModel::load(test::fixture("models/vit-tiny-mnist"));
    ClassifierFinetuneOptions o;
    o.data = o.eval_data = test::fixture("data/t10k-images-idx3-ubyte.gz");
    o.data_selection.first = 0, o.data_selection.count = 512;
    o.eval_selection.first = 8000, o.eval_selection.count = 500;
    o.steps = 4, o.batch = 64, o.schedule.lr = 1e-4f;
    const FinetuneReport r = finetune_classifier(*model, o);
    ASSERT_EQ(r.loss_curve.size(), 4u);
    EXPECT_GE(r.eval_accuracy_before, 0.97);
    EXPECT_GE(r.eval_accuracy_after, 0.97);
    EXPECT_EQ(model->weights().blocks[0].q.modified_by, "finetune");
    o.data = test::fixture("data/sst2_dev.tsv");
    EXPECT_THROW(finetune_classifier(*model, o), InvalidArgument);  // texts for an image model
}

// A classifier fine-tune (BERT from random init, with dropout) stopped after 3 steps and resumed from its state file
// ends with the same loss curve and weight bytes as one run straight through; another run's file is refused.
TEST(TrainEncoder, ClassifierResumedRunEqualsAnUninterruptedOneEndToEnd) {
    test::TempDir dir;
    ClassifierFinetuneOptions o;
    o.data = test::fixture("data/sst2_train.tsv");
    o.data_selection.first = 0, o.data_selection.count = 96;
    o.random_init = true, o.seed = 4, o.steps = 6, o.batch = 16, o.max_len = 32;
    auto straight = load_bert();
    const FinetuneReport a = finetune_classifier(*straight, o);
    ClassifierFinetuneOptions o1 = o;
    o1.stop_after = 3, o1.state_path = dir.file("state.bin");
    auto first = load_bert();
    finetune_classifier(*first, o1);
    ClassifierFinetuneOptions o2 = o;
    o2.resume_from = o1.state_path;
    auto second = load_bert();
    const FinetuneReport b = finetune_classifier(*second, o2);
    EXPECT_EQ(a.loss_curve, b.loss_curve);
    ASSERT_EQ(b.loss_curve.size(), 6u);
    const auto wa = straight->weights().blocks[1].q.weight.to_float(), wb = second->weights().blocks[1].q.weight.to_float();
    EXPECT_EQ(0, std::memcmp(wa.data(), wb.data(), wa.size() * sizeof(float)));
    ClassifierFinetuneOptions other = o2;
    other.batch = 8;
    auto third = load_bert();
    EXPECT_THROW(finetune_classifier(*third, other), InvalidArgument);
}

TEST(TrainEncoder, BadLabelsAreClearErrors) {
    const auto ref = expected();
    auto model = load_bert();
    std::vector<int32_t> labels;
    const TextBatch b = batch_from(ref, labels);
    EncoderTrainer trainer(*model);
    labels[2] = 5;
    try {
        trainer.forward_backward(b, labels, 0.0f, 0);
        FAIL() << "no error for label 5";
    } catch (const InvalidArgument& e) {
        EXPECT_NE(std::string(e.what()).find("label 5 of example 2"), std::string::npos) << e.what();
    }
}

}  // namespace
}  // namespace cq
