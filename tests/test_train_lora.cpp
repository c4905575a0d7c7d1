// LoRA in the training engine: the adapters' gradients equal the chain rule applied to the full weight gradient
// that the whole-model trainer computes (itself checked against PyTorch in test_train_parity), a Q4_K base trains as
// its dequantized twin does while its bytes stay as they were, and the merged model, the adapter GGUF read back
// (apply_lora_adapter) and the trainer agree. Bad ranks, targets and adapter files are clear errors.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>

#include "cq/atomic_file.h"
#include "cq/error.h"
#include "cq/io/gguf.h"
#include "cq/io/gguf_writer.h"
#include "cq/train.h"
#include "test_support.h"

namespace cq {
namespace {

std::unique_ptr<LanguageModel> load(const std::string& fixture) {
    LoadOptions o;
    o.n_ctx = 64;
    o.pack_for_kernels = false;
    return LanguageModel::load(test::fixture(fixture), o);
}

struct Batch {
    std::vector<int32_t> in, tg;
    int64_t B = 0, T = 0;
};
Batch batch_of(const LanguageModel& model, int64_t B, int64_t T) {
    const TextWindows w = load_text_windows(model, test::fixture("data/stories_calib.txt"), T);
    Batch b{std::vector<int32_t>(static_cast<size_t>(B * T)), std::vector<int32_t>(static_cast<size_t>(B * T)), B, T};
    for (int64_t i = 0; i < B; ++i) w.window(i * 3, b.in.data() + i * T, b.tg.data() + i * T);
    return b;
}

double norm_rel_diff(const float* got, const std::vector<double>& want) {
    double e = 0, n = 0;
    for (size_t i = 0; i < want.size(); ++i) {
        e += (got[i] - want[i]) * (got[i] - want[i]);
        n += want[i] * want[i];
    }
    return std::sqrt(e) / std::max(std::sqrt(n), 1e-30);
}

// Gives every B a small seeded non-zero value, so A's gradient is not zero and the two products both matter.
void randomize_b(LmTrainer& t) {
    uint32_t x = 12345;
    for (const auto& L : t.lora_layers()) {
        TrainParam& b = t.params()[static_cast<size_t>(L.b)];
        for (int64_t i = 0; i < b.numel; ++i) {
            x = x * 1664525u + 1013904223u;
            b.value[i] = (static_cast<float>(x >> 8) / 16777216.0f - 0.5f) * 0.02f;
        }
    }
}

// W + scale·B·A into a copy of `model`'s Linear weights (in double, then f32), through Model::set_weight.
void merge_by_hand(LanguageModel& into, LmTrainer& t) {
    for (const auto& L : t.lora_layers()) {
        const TrainParam& A = t.params()[static_cast<size_t>(L.a)];
        const TrainParam& B = t.params()[static_cast<size_t>(L.b)];
        Linear* l = into.find_linear(L.layer->name);
        ASSERT_NE(l, nullptr);
        const int64_t O = l->n_out(), I = l->n_in(), r = A.shape[0];
        const std::vector<float> W = l->weight.to_float();
        Tensor m = Tensor::zeros({O, I}, DType::F32);
        auto* p = static_cast<float*>(m.mutable_data());
        for (int64_t o = 0; o < O; ++o)
            for (int64_t i = 0; i < I; ++i) {
                double d = 0;
                for (int64_t k = 0; k < r; ++k) d += static_cast<double>(B.value[o * r + k]) * A.value[k * I + i];
                p[o * I + i] = (l->transposed ? W[static_cast<size_t>(i * O + o)] : W[static_cast<size_t>(o * I + i)]) + static_cast<float>(L.scale * d);
            }
        into.set_weight(*l, std::move(m));
    }
}

// The chain rule: with W' = W + s·B·A and G = ∂L/∂W' (the whole-model trainer's weight gradient of the merged model),
// ∂L/∂B = s·G·Aᵀ and ∂L/∂A = s·Bᵀ·G.
void expect_chain_rule(const std::string& fixture, int64_t rank, float alpha, int64_t expected_layers) {
    auto model = load(fixture);
    const Batch b = batch_of(*model, 2, 24);
    LoraOptions lo;
    lo.rank = rank, lo.alpha = alpha, lo.seed = 7;
    LmTrainer lora(*model, lo);
    ASSERT_EQ(static_cast<int64_t>(lora.lora_layers().size()), expected_layers);
    ASSERT_EQ(lora.params().size(), lora.lora_layers().size() * 2);  // the adapters are all that trains
    randomize_b(lora);
    lora.zero_grad();
    const double loss = lora.forward_backward(b.in, b.tg, b.B, b.T);

    auto merged = load(fixture);
    merge_by_hand(*merged, lora);
    LmTrainer whole(*merged);
    whole.zero_grad();
    const double loss_whole = whole.forward_backward(b.in, b.tg, b.B, b.T);
    EXPECT_NEAR(loss, loss_whole, 1e-5 * loss_whole);

    std::map<std::string, const TrainParam*> by_name;
    for (const TrainParam& p : whole.params()) by_name[p.name] = &p;
    double worst = 0;
    for (const auto& L : lora.lora_layers()) {
        const TrainParam& A = lora.params()[static_cast<size_t>(L.a)];
        const TrainParam& B = lora.params()[static_cast<size_t>(L.b)];
        const TrainParam* G = by_name.at(L.layer->name + ".weight");
        const int64_t O = B.shape[0], r = B.shape[1], I = A.shape[1];
        ASSERT_EQ(G->shape, (std::vector<int64_t>{O, I}));
        std::vector<double> dB(static_cast<size_t>(O * r), 0.0), dA(static_cast<size_t>(r * I), 0.0);
        for (int64_t o = 0; o < O; ++o)
            for (int64_t i = 0; i < I; ++i) {
                const double g = G->grad[o * I + i];
                for (int64_t k = 0; k < r; ++k) {
                    dB[static_cast<size_t>(o * r + k)] += L.scale * g * A.value[k * I + i];
                    dA[static_cast<size_t>(k * I + i)] += L.scale * g * B.value[o * r + k];
                }
            }
        const double eb = norm_rel_diff(B.grad, dB), ea = norm_rel_diff(A.grad, dA);
        worst = std::max({worst, eb, ea});
        EXPECT_LE(eb, 1e-4) << B.name;
        EXPECT_LE(ea, 1e-4) << A.name;
    }
    std::printf("%s: worst adapter-gradient norm difference %.2e\n", fixture.c_str(), worst);
}

TEST(Lora, LlamaAdapterGradientsAreTheChainRuleOfTheWholeModelGradient) {
    expect_chain_rule("models/llama-256d-stories", 4, 8.0f, 6 * 7);
}

// GPT-2: the fused qkv Linear, biases (frozen), LayerNorm, and HF's [in, out] Conv1D weights read transposed.
TEST(Lora, Gpt2AdapterGradientsAreTheChainRuleOfTheWholeModelGradient) {
    auto probe = load("models/gpt2-tiny-stories");
    const int64_t layers = probe->config().n_layer;
    expect_chain_rule("models/gpt2-tiny-stories", 3, 6.0f, layers * 4);
}

std::unique_ptr<LanguageModel> load_q4k() {
    auto model = load("models/llama-256d-stories");
    for (Linear* l : model->linears()) model->quantize_linear(*l, DType::Q4_K);
    return model;
}

TEST(Lora, Q4KBaseTrainsAsItsDequantizedTwinAndKeepsItsBytes) {
    auto q = load_q4k();
    auto twin = load("models/llama-256d-stories");  // every Linear replaced by the f32 values of q's Q4_K weights
    for (Linear* l : twin->linears()) {
        const Linear* ql = q->find_linear(l->name);
        const std::vector<float> v = ql->weight.to_float();
        Tensor t = Tensor::zeros({l->n_out(), l->n_in()}, DType::F32);
        std::memcpy(t.mutable_data(), v.data(), v.size() * sizeof(float));
        twin->set_weight(*l, std::move(t));
    }
    std::map<std::string, uint32_t> crc_before;
    for (const Linear* l : q->linears()) crc_before[l->name] = test::crc32(l->weight.data(), l->weight.nbytes());

    const Batch b = batch_of(*q, 2, 32);
    LoraOptions lo;
    lo.rank = 8;
    lo.targets = {"blk.*.attn_q", "blk.*.attn_v", "blk.*.ffn_down"};
    LmTrainer tq(*q, lo), tt(*twin, lo);
    ASSERT_EQ(tq.lora_layers().size(), 18u);
    randomize_b(tq), randomize_b(tt);
    tq.zero_grad(), tt.zero_grad();
    const double lq = tq.forward_backward(b.in, b.tg, b.B, b.T), lt = tt.forward_backward(b.in, b.tg, b.B, b.T);
    EXPECT_NEAR(lq, lt, 1e-6 * lt);
    for (size_t i = 0; i < tq.params().size(); ++i) {
        const TrainParam &p = tq.params()[i], &r = tt.params()[i];
        ASSERT_EQ(p.name, r.name);
        std::vector<double> want(r.grad, r.grad + r.numel);
        EXPECT_LE(norm_rel_diff(p.grad, want), 1e-6) << p.name;
    }

    // A few AdamW steps on one batch: the loss falls, the base keeps its type and bytes.
    Optimizer opt(tq.params(), OptimizerOptions{});
    double first = 0, last = 0;
    for (int step = 0; step < 5; ++step) {
        tq.zero_grad();
        last = tq.forward_backward(b.in, b.tg, b.B, b.T);
        if (step == 0) first = last;
        opt.step(tq.params(), 2e-3f);
    }
    EXPECT_LT(last, first - 0.01);
    for (const Linear* l : q->linears()) {
        EXPECT_EQ(l->weight.dtype(), DType::Q4_K) << l->name;
        EXPECT_EQ(test::crc32(l->weight.data(), l->weight.nbytes()), crc_before[l->name]) << l->name;
        EXPECT_TRUE(l->modified_by == "quantize_linear") << l->name << ": " << l->modified_by;
    }
}

TEST(Lora, MergedModelAdapterFileAndTrainerAgree) {
    auto q = load_q4k();
    const Batch b = batch_of(*q, 2, 32);
    LoraOptions lo;
    lo.rank = 4, lo.alpha = 16.0f;
    LmTrainer t(*q, lo);
    Optimizer opt(t.params(), OptimizerOptions{});
    for (int step = 0; step < 3; ++step) {
        t.zero_grad();
        t.forward_backward(b.in, b.tg, b.B, b.T);
        opt.step(t.params(), 2e-3f);
    }
    const double lora_loss = t.loss(b.in, b.tg, b.B, b.T);

    // The adapter file: llama.cpp's keys, shapes [rank, in] / [out, rank] (ggml ne [in, rank] / [rank, out]), the values.
    test::TempDir dir;
    const std::string adapter = dir.file("adapter.gguf");
    t.save_lora_gguf(adapter);
    {
        const gguf::File f = gguf::File::open(adapter);
        EXPECT_EQ(f.get_string("general.type").value_or(""), "adapter");
        EXPECT_EQ(f.get_string("adapter.type").value_or(""), "lora");
        EXPECT_EQ(f.architecture(), "llama");
        EXPECT_EQ(f.find("adapter.lora.alpha")->type, gguf::ValueType::F32);
        EXPECT_EQ(f.get_double("adapter.lora.alpha").value_or(0), 16.0);
        ASSERT_EQ(f.tensors().size(), t.params().size());
        for (const TrainParam& p : t.params()) {
            const gguf::TensorInfo* info = f.find_tensor(p.name);
            ASSERT_NE(info, nullptr) << p.name;
            EXPECT_EQ(info->shape, p.shape) << p.name;
            const std::vector<float> v = f.tensor(*info).to_float();
            EXPECT_EQ(0, std::memcmp(v.data(), p.value, v.size() * sizeof(float))) << p.name;
        }
    }

    auto from_file = load_q4k();
    EXPECT_EQ(apply_lora_adapter(*from_file, adapter), 42);
    t.merge_lora();
    EXPECT_THROW(t.loss(b.in, b.tg, b.B, b.T), InvalidArgument);
    for (const Linear* l : q->linears()) {
        const Linear* m = from_file->find_linear(l->name);
        ASSERT_EQ(l->weight.dtype(), m->weight.dtype()) << l->name;
        if (l->name == "output") {
            EXPECT_EQ(l->weight.dtype(), DType::Q4_K);  // the head carries no adapter
            continue;
        }
        EXPECT_EQ(l->weight.dtype(), DType::F32) << l->name;
        EXPECT_EQ(0, std::memcmp(l->weight.data(), m->weight.data(), l->weight.nbytes())) << l->name;
    }
    LmTrainer whole(*q);
    EXPECT_NEAR(whole.loss(b.in, b.tg, b.B, b.T), lora_loss, 1e-5 * lora_loss);
}

TEST(Lora, BadRanksTargetsAndAdapterFilesAreClearErrors) {
    auto model = load("models/llama-256d-stories");
    LoraOptions lo;
    lo.rank = 300;  // > 256, the smaller side of every attention Linear
    EXPECT_THROW(LmTrainer(*model, lo), InvalidArgument);
    lo.rank = 4;
    lo.targets = {"blk.*.no_such_linear"};
    try {
        LmTrainer t(*model, lo);
        ADD_FAILURE() << "no error for targets that match nothing";
    } catch (const InvalidArgument& e) {
        EXPECT_NE(std::string(e.what()).find("blk.*.no_such_linear"), std::string::npos) << e.what();
    }
    lo.targets.clear();
    lo.alpha = -1;
    EXPECT_THROW(LmTrainer(*model, lo), InvalidArgument);

    // Adapter files: a lone lora_a, a misshapen pair, another architecture. The model is left as it was.
    test::TempDir dir;
    const auto write = [&](const std::string& name, const std::string& arch, std::vector<std::pair<std::string, std::vector<int64_t>>> tensors) {
        gguf::Writer w;
        w.set_string("general.type", "adapter");
        w.set_string("general.architecture", arch);
        w.set_string("adapter.type", "lora");
        w.set("adapter.lora.alpha", gguf::Value{gguf::ValueType::F32, 8.0});
        for (const auto& [n, shape] : tensors) w.add_tensor(n, shape, DType::F32);
        AtomicFile out(dir.file(name));
        w.write(out, [&](size_t i, std::vector<uint8_t>& buf) { buf.assign(w.tensor_bytes(i), 0); });
        out.commit();
        return dir.file(name);
    };
    const uint32_t crc = test::crc32(model->find_linear("blk.0.attn_q")->weight.data(), model->find_linear("blk.0.attn_q")->weight.nbytes());
    const std::string lone = write("lone.gguf", "llama", {{"blk.0.attn_q.weight.lora_a", {4, 256}}});
    const std::string shape = write("shape.gguf", "llama", {{"blk.0.attn_q.weight.lora_a", {4, 256}}, {"blk.0.attn_q.weight.lora_b", {256, 4}},
                                                            {"blk.1.attn_k.weight.lora_a", {4, 256}}, {"blk.1.attn_k.weight.lora_b", {256, 4}}});
    const std::string arch = write("arch.gguf", "gpt2", {{"blk.0.attn_q.weight.lora_a", {4, 256}}, {"blk.0.attn_q.weight.lora_b", {256, 4}}});
    const std::string unknown = write("unknown.gguf", "llama", {{"blk.0.attn_z.weight.lora_a", {4, 256}}, {"blk.0.attn_z.weight.lora_b", {256, 4}}});
    for (const auto& [file, needle] : std::vector<std::pair<std::string, std::string>>{
             {lone, "no lora_b"}, {shape, "blk.1.attn_k.weight"}, {arch, "gpt2"}, {unknown, "blk.0.attn_z"}}) {
        try {
            apply_lora_adapter(*model, file);
            ADD_FAILURE() << "no error for " << file;
        } catch (const InvalidArgument& e) {
            EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
        }
    }
    const Linear* q = model->find_linear("blk.0.attn_q");  // shape.gguf's first pair was fine, but nothing was applied
    EXPECT_TRUE(q->modified_by.empty());
    EXPECT_EQ(test::crc32(q->weight.data(), q->weight.nbytes()), crc);
}

}  // namespace
}  // namespace cq
