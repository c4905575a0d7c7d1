// cq's training against PyTorch on llama-256d-stories (data written by scripts/train_reference.py, which checks its
// torch rebuild against the fixture's reference logits first): the loss and every parameter's gradient on a fixed
// batch, the loss curve of an AdamW twin run, thread-count determinism, and Model::save of the trained weights.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>

#include <nlohmann/json.hpp>

#include "cq/error.h"
#include "cq/thread_pool.h"
#include "cq/train.h"
#include "test_support.h"

namespace cq {
namespace {

const char* kModel = "models/llama-256d-stories";

nlohmann::json expected(const std::string& name) {
    std::ifstream in(test::tests_dir() + "/expected/train/" + name);
    return nlohmann::json::parse(in);
}

std::unique_ptr<LanguageModel> load_model_at(const std::string& path) {
    LoadOptions o;
    o.n_ctx = 256;
    o.pack_for_kernels = false;
    return LanguageModel::load(path, o);
}
std::unique_ptr<LanguageModel> load_model() { return load_model_at(test::fixture(kModel)); }

// The token stream both sides cut windows from is the same (so the batches are).
void expect_same_stream(const TextWindows& w, const nlohmann::json& stream) {
    ASSERT_EQ(static_cast<int64_t>(w.tokens.size()), stream["n_tokens"].get<int64_t>());
    EXPECT_EQ(test::crc32(w.tokens.data(), w.tokens.size() * sizeof(int32_t)), stream["crc32"].get<uint32_t>());
}

struct Batch {
    std::vector<int32_t> in, tg;
};
Batch batch_of(const TextWindows& w, int64_t n) {
    Batch b{std::vector<int32_t>(static_cast<size_t>(n * w.ctx)), std::vector<int32_t>(static_cast<size_t>(n * w.ctx))};
    for (int64_t i = 0; i < n; ++i) w.window(i, b.in.data() + i * w.ctx, b.tg.data() + i * w.ctx);
    return b;
}

// Loss rel ≤ 1e-4; per tensor, gradient norm rel ≤ 1e-4 and each sampled entry within 1e-4·‖g‖ (an entry's error is at
// most the tensor's error norm, which is ≤ 1e-4·‖g‖ when the tensors agree norm-wise to 1e-4).
void expect_grads_match(LmTrainer& trainer, double loss, const nlohmann::json& ref) {
    const double ref_loss = ref["loss"];
    EXPECT_LE(std::fabs(loss - ref_loss) / ref_loss, 1e-4) << "loss " << loss << " vs torch " << ref_loss;
    const auto& params = ref["params"];
    ASSERT_EQ(trainer.params().size(), params.size());
    double worst_norm = 0, worst_entry = 0;
    for (const TrainParam& p : trainer.params()) {
        ASSERT_TRUE(params.contains(p.hf_name)) << p.hf_name;
        const auto& r = params[p.hf_name];
        auto shape = r["shape"].get<std::vector<int64_t>>();
        if (p.hf_transposed) std::swap(shape[0], shape[1]);
        EXPECT_EQ(p.shape, shape) << p.hf_name;
        double ss = 0;
        for (int64_t i = 0; i < p.numel; ++i) ss += static_cast<double>(p.grad[i]) * p.grad[i];
        const double norm = std::sqrt(ss), ref_norm = r["norm"];
        const double rel = std::fabs(norm - ref_norm) / ref_norm;
        worst_norm = std::max(worst_norm, rel);
        EXPECT_LE(rel, 1e-4) << p.name << ": gradient norm " << norm << " vs torch " << ref_norm;
        const auto idx = r["idx"].get<std::vector<int64_t>>();
        const auto val = r["val"].get<std::vector<double>>();
        for (size_t k = 0; k < idx.size(); ++k) {
            int64_t i = idx[k];
            if (p.hf_transposed) i = (i % p.shape[0]) * p.shape[1] + i / p.shape[0];  // [in, out] index → [out, in]
            const double err = std::fabs(p.grad[i] - val[k]);
            worst_entry = std::max(worst_entry, err / ref_norm);
            EXPECT_LE(err, 1e-4 * ref_norm) << p.name << "[" << i << "]: " << p.grad[i] << " vs torch " << val[k];
        }
    }
    std::printf("loss %.8f (torch %.8f, rel %.2e); worst gradient-norm rel diff %.2e; worst sampled entry |diff|/‖g‖ %.2e\n",
                loss, ref_loss, std::fabs(loss - ref_loss) / ref_loss, worst_norm, worst_entry);
}

TEST(TrainParity, LossAndEveryGradientMatchPyTorch) {
    const auto ref = expected("llama_grads.json");
    auto model = load_model();
    const int64_t B = ref["batch"], T = ref["ctx"];
    const TextWindows w = load_text_windows(*model, test::fixture("data/stories_calib.txt"), T);
    expect_same_stream(w, ref["stream"]);
    const Batch b = batch_of(w, B);
    LmTrainer trainer(*model);
    const double loss = trainer.forward_backward(b.in, b.tg, B, T);
    expect_grads_match(trainer, loss, ref);

    // Every gradient, for scripts/train_reference.py check (the full norm-wise comparison where torch exists).
    if (const char* dump = std::getenv("CQ_TRAIN_GRAD_DUMP")) {
        std::ofstream out(dump, std::ios::binary);
        out.write(reinterpret_cast<const char*>(&loss), sizeof loss);
        for (const TrainParam& p : trainer.params()) {
            const auto n = static_cast<uint32_t>(p.hf_name.size());
            const auto numel = static_cast<uint64_t>(p.numel);
            out.write(reinterpret_cast<const char*>(&n), 4).write(p.hf_name.data(), n);
            out.write(reinterpret_cast<const char*>(&numel), 8).write(reinterpret_cast<const char*>(p.grad), static_cast<std::streamsize>(numel * 4));
        }
    }
}

// GPT-2 (LayerNorm, fused qkv with biases, GELU tanh, learned positions, tied head) on the batch the script stored.
TEST(TrainParity, Gpt2LossAndEveryGradientMatchPyTorch) {
    const auto ref = expected("gpt2_grads.json");
    auto model = load_model_at(test::fixture("models/gpt2-tiny-stories"));
    const int64_t B = ref["batch"], T = ref["ctx"];
    std::vector<int32_t> in, tg;
    for (const auto& row : ref["tokens"]) {
        const auto ids = row.get<std::vector<int32_t>>();
        in.insert(in.end(), ids.begin(), ids.end() - 1);
        tg.insert(tg.end(), ids.begin() + 1, ids.end());
    }
    LmTrainer trainer(*model);
    const double loss = trainer.forward_backward(in, tg, B, T);
    expect_grads_match(trainer, loss, ref);
}

TEST(TrainParity, GradientsAreTheSameBytesForAnyThreadCount) {
    auto run = [](int threads) {
        ThreadPool::set_global_threads(threads);
        auto model = load_model();
        const TextWindows w = load_text_windows(*model, test::fixture("data/stories_calib.txt"), 33);
        const Batch b = batch_of(w, 3);
        LmTrainer trainer(*model);
        trainer.forward_backward(b.in, b.tg, 3, 33);
        std::vector<float> all;
        for (const TrainParam& p : trainer.params()) all.insert(all.end(), p.grad, p.grad + p.numel);
        return all;
    };
    const auto one = run(1), two = run(2);
    ThreadPool::set_global_threads(0);
    ASSERT_EQ(one.size(), two.size());
    EXPECT_EQ(0, std::memcmp(one.data(), two.data(), one.size() * sizeof(float)));
}

// cq finetune's loop (AdamW, warmup + cosine, clipping, no-decay rules) vs torch.optim.AdamW on the same batches.
// CI runs the first 20 of the 100 steps; CQ_TRAIN_TWIN_STEPS=100 runs them all.
TEST(TrainParity, TwinRunLossCurveMatchesPyTorch) {
    const auto ref = expected("llama_twin.json");
    const auto& h = ref["hyper"];
    auto model = load_model();
    FinetuneOptions o;
    o.data = test::fixture("data/stories_calib.txt");
    o.steps = h["steps"];
    o.stop_after = std::getenv("CQ_TRAIN_TWIN_STEPS") ? std::atoi(std::getenv("CQ_TRAIN_TWIN_STEPS")) : 20;
    o.batch = h["batch"], o.ctx = h["ctx"];
    o.schedule.lr = h["lr"], o.schedule.warmup_steps = h["warmup"], o.schedule.min_lr_ratio = h["min_lr_ratio"];
    o.schedule.decay = LrDecay::cosine;
    o.optimizer.weight_decay = h["weight_decay"], o.optimizer.beta1 = h["beta1"], o.optimizer.beta2 = h["beta2"];
    o.optimizer.eps = h["eps"];
    o.clip = h["clip"];
    const TextWindows w = load_text_windows(*model, o.data, o.ctx);
    expect_same_stream(w, ref["stream"]);
    ASSERT_EQ(w.n_windows, ref["n_windows"].get<int64_t>());
    const FinetuneReport r = finetune(*model, o);
    const auto torch_loss = ref["loss"].get<std::vector<double>>();
    ASSERT_EQ(static_cast<int64_t>(r.loss_curve.size()), o.stop_after);
    double worst = 0;
    for (size_t s = 0; s < r.loss_curve.size(); ++s) {
        const double rel = std::fabs(r.loss_curve[s] - torch_loss[s]) / torch_loss[s];
        worst = std::max(worst, rel);
        EXPECT_LE(rel, 1e-3) << "step " << s + 1 << ": cq " << r.loss_curve[s] << " torch " << torch_loss[s];
    }
    std::printf("%zu steps: loss %.6f → %.6f (torch %.6f → %.6f), max rel diff %.2e, %.0f tokens/s\n", r.loss_curve.size(),
                r.loss_curve.front(), r.loss_curve.back(), torch_loss.front(), torch_loss[r.loss_curve.size() - 1], worst, r.tokens_per_s);
}

// Training changes the spine's own tensors, so Model::save writes them: a saved and reloaded model holds the
// trained weights (and a different loss than the file's).
TEST(TrainParity, SaveWritesTheTrainedWeights) {
    test::TempDir dir;
    auto model = load_model();
    FinetuneOptions o;
    o.data = test::fixture("data/stories_calib.txt");
    o.steps = 3, o.batch = 2, o.ctx = 32;
    o.schedule.lr = 1e-3f, o.schedule.decay = LrDecay::constant;
    o.freeze = {"token_embd.weight"};  // the GGUF writer keeps the file's token embedding
    o.output = dir.file("tuned.gguf");
    finetune(*model, o);
    auto reloaded = LanguageModel::load(o.output);
    const auto check = [&](const Tensor& a, const Tensor& b, const std::string& what) {
        const auto va = a.to_float(), vb = b.to_float();
        ASSERT_EQ(va.size(), vb.size()) << what;
        EXPECT_EQ(0, std::memcmp(va.data(), vb.data(), va.size() * sizeof(float))) << what;
    };
    check(model->weights().blocks[2].ffn_down.weight, reloaded->weights().blocks[2].ffn_down.weight, "blk.2.ffn_down");
    check(model->weights().blocks[0].ffn_norm.weight, reloaded->weights().blocks[0].ffn_norm.weight, "blk.0.ffn_norm");
    check(model->weights().output.weight, reloaded->weights().output.weight, "output");
    auto original = load_model();
    const auto v0 = original->weights().blocks[2].ffn_down.weight.to_float();
    const auto v1 = reloaded->weights().blocks[2].ffn_down.weight.to_float();
    EXPECT_NE(0, std::memcmp(v0.data(), v1.data(), v0.size() * sizeof(float))) << "training changed nothing";
}

// The HF directory output holds every parameter (the embedding included): reloaded, it gives the trained model's loss.
TEST(TrainParity, HfDirectoryOutputReloadsAsTheTrainedModel) {
    test::TempDir dir;
    auto model = load_model();
    FinetuneOptions o;
    o.data = test::fixture("data/stories_calib.txt");
    o.steps = 2, o.batch = 2, o.ctx = 32;
    o.schedule.lr = 1e-3f, o.schedule.decay = LrDecay::constant;
    // CQ_TRAIN_HF_DUMP=DIR keeps the directory, with the tokens and cq's logits, for scripts/train_reference.py check-hf.
    const char* keep = std::getenv("CQ_TRAIN_HF_DUMP");
    o.output = keep ? std::string(keep) : dir.file("tuned");
    finetune(*model, o);
    const TextWindows w = load_text_windows(*model, o.data, 32);
    const Batch b = batch_of(w, 2);
    std::vector<float> a(static_cast<size_t>(32 * model->config().n_vocab)), c(a.size());
    model->forward(std::span<const int32_t>(b.in.data(), 32), 0, a, true);
    auto reloaded = load_model_at(o.output);
    reloaded->forward(std::span<const int32_t>(b.in.data(), 32), 0, c, true);
    EXPECT_EQ(0, std::memcmp(a.data(), c.data(), a.size() * sizeof(float)));
    if (keep) {
        std::ofstream(o.output + "/cq_tokens.bin", std::ios::binary).write(reinterpret_cast<const char*>(b.in.data()), 32 * sizeof(int32_t));
        std::ofstream(o.output + "/cq_logits.bin", std::ios::binary).write(reinterpret_cast<const char*>(a.data()),
                                                                            static_cast<std::streamsize>(a.size() * sizeof(float)));
    }
    auto original = load_model();
    const auto e0 = original->weights().token_embd.to_float(), e1 = reloaded->weights().token_embd.to_float();
    EXPECT_NE(0, std::memcmp(e0.data(), e1.data(), e0.size() * sizeof(float))) << "the embedding was not trained / written";
}

// The HF directory a fine-tune writes, loaded in PyTorch (scripts/train_reference.py check-hf rebuilds the model in plain
// torch from config.json + model.safetensors): its logits equal cq's to 1e-4 on every position. Skipped where Debian's
// python3 has no torch.
TEST(TrainParity, HfDirectoryOutputGivesCqLogitsInPyTorchEndToEnd) {
    if (std::system("/usr/bin/python3 -c 'import torch, numpy' >/dev/null 2>&1") != 0) GTEST_SKIP() << "no python3 torch";
    test::TempDir dir;
    auto model = load_model();
    FinetuneOptions o;
    o.data = test::fixture("data/stories_calib.txt");
    o.steps = 1, o.batch = 2, o.ctx = 32, o.seed = 5;
    o.schedule.lr = 1e-3f;
    o.output = dir.file("tuned");
    finetune(*model, o);
    const TextWindows w = load_text_windows(*model, o.data, 32);
    const Batch b = batch_of(w, 2);
    auto reloaded = load_model_at(o.output);
    std::vector<float> logits(static_cast<size_t>(32 * model->config().n_vocab));
    reloaded->forward(std::span<const int32_t>(b.in.data(), 32), 0, logits, true);
    std::ofstream(o.output + "/cq_tokens.bin", std::ios::binary).write(reinterpret_cast<const char*>(b.in.data()), 32 * sizeof(int32_t));
    std::ofstream(o.output + "/cq_logits.bin", std::ios::binary)
            .write(reinterpret_cast<const char*>(logits.data()), static_cast<std::streamsize>(logits.size() * sizeof(float)));
    const std::string cmd = "cd " + test::tests_dir() + "/.. && /usr/bin/python3 scripts/train_reference.py check-hf " + o.output + " 2>&1";
    FILE* p = popen(cmd.c_str(), "r");
    ASSERT_NE(p, nullptr);
    std::string out;
    char buf[512];
    while (fgets(buf, sizeof buf, p)) out += buf;
    const int status = pclose(p);
    EXPECT_EQ(status, 0) << out;
    std::printf("%s", out.c_str());
}

// A run stopped after 3 steps and resumed from its state file ends with the same bytes as one run straight through.
TEST(TrainParity, ResumedRunEqualsAnUninterruptedOne) {
    test::TempDir dir;
    FinetuneOptions o;
    o.data = test::fixture("data/stories_calib.txt");
    o.steps = 6, o.batch = 2, o.ctx = 32, o.seed = 7;
    o.schedule.lr = 1e-3f, o.schedule.warmup_steps = 2;
    o.optimizer.weight_decay = 0.1f;
    auto straight = load_model();
    const FinetuneReport a = finetune(*straight, o);

    auto first = load_model();
    FinetuneOptions o1 = o;
    o1.stop_after = 3, o1.state_path = dir.file("state.bin");
    finetune(*first, o1);
    auto second = load_model();
    FinetuneOptions o2 = o;
    o2.resume_from = o1.state_path;
    const FinetuneReport b = finetune(*second, o2);
    EXPECT_EQ(a.loss_curve, b.loss_curve);
    const auto wa = straight->weights().blocks[1].wq.weight.to_float(), wb = second->weights().blocks[1].wq.weight.to_float();
    EXPECT_EQ(0, std::memcmp(wa.data(), wb.data(), wa.size() * sizeof(float)));
    const auto ea = straight->weights().token_embd.to_float(), eb = second->weights().token_embd.to_float();
    EXPECT_EQ(0, std::memcmp(ea.data(), eb.data(), ea.size() * sizeof(float)));

    FinetuneOptions other = o;
    other.batch = 3, other.resume_from = o1.state_path;
    auto third = load_model();
    EXPECT_THROW(finetune(*third, other), InvalidArgument);
    test::TempDir junk;
    other = o, other.resume_from = junk.write("bad.bin", "CQTRAIN1 short");
    EXPECT_THROW(finetune(*third, other), FormatError);
}

// Block checkpointing recomputes each block in the backward: the same gradient bytes from a fraction of the activations.
TEST(TrainParity, BlockCheckpointingGivesTheSameGradientsWithLessMemory) {
    for (const char* path : {kModel, "models/gpt2-tiny-stories"}) {
        const auto run = [&](bool checkpoint, uint64_t& bytes) {
            auto model = load_model_at(test::fixture(path));
            const TextWindows w = load_text_windows(*model, test::fixture("data/stories_calib.txt"), 48);
            const Batch b = batch_of(w, 3);
            LmTrainer trainer(*model);
            trainer.set_checkpointing(checkpoint);
            trainer.forward_backward(b.in, b.tg, 3, 48);
            bytes = trainer.activation_bytes();
            std::vector<float> all;
            for (const TrainParam& p : trainer.params()) all.insert(all.end(), p.grad, p.grad + p.numel);
            return all;
        };
        uint64_t full = 0, ckpt = 0;
        const auto a = run(false, full), b = run(true, ckpt);
        ASSERT_EQ(a.size(), b.size());
        EXPECT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * sizeof(float))) << path;
        EXPECT_LT(ckpt, full) << path;
        std::printf("%s: activations %.1f MiB → %.1f MiB with block checkpointing\n", path, full / 1048576.0, ckpt / 1048576.0);
    }
}

// every:K recomputes blocks 0, K, 2K, … only: the same gradient bytes as no checkpointing, activation memory between
// none and block, decreasing as more blocks are recomputed (6 blocks: every:4 → 2 of them, every:2 → 3, block → 6).
TEST(TrainParity, EveryKCheckpointingGivesTheSameGradientsWithMemoryBetweenEndToEnd) {
    const auto run = [&](int64_t k, uint64_t& bytes) {
        auto model = load_model();
        const TextWindows w = load_text_windows(*model, test::fixture("data/stories_calib.txt"), 48);
        const Batch b = batch_of(w, 2);
        LmTrainer trainer(*model);
        trainer.set_checkpoint_every(k);
        trainer.forward_backward(b.in, b.tg, 2, 48);
        bytes = trainer.activation_bytes();
        std::vector<float> all;
        for (const TrainParam& p : trainer.params()) all.insert(all.end(), p.grad, p.grad + p.numel);
        return all;
    };
    uint64_t none = 0, every4 = 0, every2 = 0, block = 0, every7 = 0;
    const auto a = run(0, none), b4 = run(4, every4), b2 = run(2, every2), b1 = run(1, block), b7 = run(7, every7);
    for (const auto* g : {&b4, &b2, &b1, &b7}) {
        ASSERT_EQ(a.size(), g->size());
        EXPECT_EQ(0, std::memcmp(a.data(), g->data(), a.size() * sizeof(float)));
    }
    EXPECT_GT(none, every4);
    EXPECT_GT(every4, every2);
    EXPECT_GT(every2, block);
    EXPECT_EQ(every7, none) << "every:7 on 6 blocks recomputes block 0 only, into its own slot";
    EXPECT_EQ(parse_checkpoint("every:3"), 3);
    EXPECT_EQ(parse_checkpoint("block"), 1);
    EXPECT_EQ(parse_checkpoint("none"), 0);
    for (const char* bad : {"every:0", "every:", "every:-2", "every:x", "sometimes"}) EXPECT_THROW(parse_checkpoint(bad), InvalidArgument) << bad;
}

TEST(TrainParity, BadBatchesAreClearErrors) {
    auto model = load_model();
    LmTrainer trainer(*model);
    std::vector<int32_t> in(8, 5), tg(8, 5);
    EXPECT_THROW(trainer.forward_backward(in, tg, 3, 3), InvalidArgument);
    in[3] = 100000;
    try {
        trainer.forward_backward(in, tg, 2, 4);
        FAIL() << "no error for an id outside the vocabulary";
    } catch (const InvalidArgument& e) {
        EXPECT_NE(std::string(e.what()).find("token id 100000 at position 3"), std::string::npos) << e.what();
    }
}

}  // namespace
}  // namespace cq
