// Hidden-state distillation: the MSE / cosine terms and their gradients against their definitions (long double) and
// central differences; the layer map's parser and defaults; the whole student loss (logit terms + hidden terms through
// the trainers' hooks) against central differences of that loss w.r.t. student weights and projections, for a LLaMA,
// a GPT-2 and a BERT student of the teacher's width (built from its blocks) and of a narrower one (random, with projections);
// distill_lm / distill_classifier with a student equal to its teacher give zero hidden terms.
#include <gtest/gtest.h>

#include <sys/wait.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>

#include <nlohmann/json.hpp>

#include "cq/distill.h"
#include "cq/encoder.h"
#include "cq/error.h"
#include "cq/llm.h"
#include "test_support.h"

namespace cq {
namespace {

namespace fs = std::filesystem;

// ---- the terms against their definitions ----

// mse·Σ(p − t)²/(n·Dt) + cos·Σ(1 − cos(p, t))/n over counted rows, p = W·x, straight from the definitions.
long double reference_pair(const std::vector<float>& hs, const std::vector<float>& ht, const std::vector<int32_t>& mask, int64_t N,
                           int64_t Ds, int64_t Dt, const std::vector<float>* W, long double mse, long double cos) {
    long double sq = 0, cs = 0;
    int64_t n = 0;
    for (int64_t r = 0; r < N; ++r) {
        if (!mask.empty() && mask[r] == 0) continue;
        ++n;
        std::vector<long double> p(static_cast<size_t>(Dt));
        for (int64_t o = 0; o < Dt; ++o) {
            if (!W) {
                p[o] = hs[r * Ds + o];
                continue;
            }
            for (int64_t i = 0; i < Ds; ++i) p[o] += static_cast<long double>((*W)[o * Ds + i]) * hs[r * Ds + i];
        }
        long double dot = 0, pp = 0, tt = 0;
        for (int64_t o = 0; o < Dt; ++o) {
            const long double t = ht[r * Dt + o];
            sq += (p[o] - t) * (p[o] - t), dot += p[o] * t, pp += p[o] * p[o], tt += t * t;
        }
        cs += 1 - dot / (std::sqrt(pp) * std::sqrt(tt));
    }
    return mse * sq / static_cast<long double>(n * Dt) + cos * cs / static_cast<long double>(n);
}

void check_pair(int64_t Ds, int64_t Dt, bool projected) {
    const int64_t N = 5;
    std::mt19937 rng(11);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    std::vector<float> hs(N * Ds), ht(N * Dt), W;
    for (auto& v : hs) v = nd(rng);
    for (auto& v : ht) v = nd(rng);
    if (projected) {
        W.resize(static_cast<size_t>(Dt * Ds));
        for (auto& v : W) v = 0.4f * nd(rng);
    }
    const std::vector<int32_t> mask = {1, 1, 0, 1, 1};
    const float mse = 0.7f, cos = 1.3f;
    std::vector<float> dhs(N * Ds, 9.0f), dW(W.size(), 0.0f);
    const double got = hidden_pair_loss(hs.data(), ht.data(), mask.data(), N, Ds, Dt, projected ? W.data() : nullptr, mse, cos, dhs.data(),
                                        projected ? dW.data() : nullptr);
    const auto ref = [&](const std::vector<float>& x, const std::vector<float>& w) {
        return reference_pair(x, ht, mask, N, Ds, Dt, projected ? &w : nullptr, mse, cos);
    };
    EXPECT_NEAR(got, static_cast<double>(ref(hs, W)), 1e-12) << Ds << "→" << Dt;
    EXPECT_EQ(hidden_pair_loss(hs.data(), ht.data(), mask.data(), N, Ds, Dt, projected ? W.data() : nullptr, mse, cos, nullptr, nullptr), got);
    const auto fd = [&](std::vector<float>& v, size_t i, auto&& f) {
        const float keep = v[i], h = 1e-3f;
        v[i] = keep + h;
        const long double up = f();
        const float hp = v[i] - keep;
        v[i] = keep - h;
        const long double down = f();
        const float hm = keep - v[i];
        v[i] = keep;
        return static_cast<double>((up - down) / (static_cast<long double>(hp) + hm));
    };
    for (size_t i = 0; i < hs.size(); ++i) {
        const double want = fd(hs, i, [&] { return ref(hs, W); });
        EXPECT_NEAR(dhs[i], want, 1e-5) << "∂/∂h_s[" << i << "], " << Ds << "→" << Dt;
    }
    for (int64_t j = 0; j < Ds; ++j) EXPECT_EQ(dhs[2 * Ds + j], 0.0f);  // the masked row
    for (size_t i = 0; i < W.size(); ++i) {
        const double want = fd(W, i, [&] { return ref(hs, W); });
        EXPECT_NEAR(dW[i], want, 1e-5) << "∂/∂W[" << i << "]";
    }
}

TEST(HiddenLoss, MseAndCosineMatchTheirDefinitionsAndFiniteDifferences) {
    check_pair(6, 6, false);
    check_pair(4, 7, true);
    check_pair(6, 6, true);
}

TEST(HiddenLoss, SpecsAndLayerMaps) {
    const DistillLoss l = parse_distill_loss("kl=1,ce=0.5,hidden=0.1,cos=2");
    EXPECT_EQ(l.hidden, 0.1f);
    EXPECT_EQ(l.cos, 2.0f);
    EXPECT_TRUE(l.has_hidden());
    EXPECT_EQ(l.text(), "kl=1,ce=0.5,hidden=0.1,cos=2");
    EXPECT_FALSE(parse_distill_loss("kl=1").has_hidden());
    EXPECT_NO_THROW(parse_distill_loss("cos=1"));  // hidden terms alone are a loss
    EXPECT_THROW(parse_distill_loss("kl=0,hidden=0"), InvalidArgument);

    EXPECT_EQ(parse_layer_map("0:1,1:3", 2, 4), (std::vector<LayerPair>{{0, 1}, {1, 3}}));
    EXPECT_EQ(parse_layer_map("1:0", 2, 4), (std::vector<LayerPair>{{1, 0}}));
    struct Bad {
        std::string spec, says;
    };
    for (const Bad& b : std::vector<Bad>{{"", "is not STUDENT:TEACHER"},
                                         {"0", "pair '0'"},
                                         {"0:", "pair '0:'"},
                                         {"a:1", "pair 'a:1'"},
                                         {"0:1,", "is not STUDENT:TEACHER"},
                                         {"0:1:2", "pair '0:1:2'"},
                                         {"0:1,2:3", "student block 2 is outside [0, 2)"},
                                         {"-1:0", "student block -1 is outside [0, 2)"},
                                         {"1:4", "teacher block 4 is outside [0, 4)"}}) {
        try {
            parse_layer_map(b.spec, 2, 4);
            ADD_FAILURE() << "'" << b.spec << "' was accepted";
        } catch (const InvalidArgument& e) {
            const std::string msg = e.what();
            EXPECT_NE(msg.find("--layer-map"), std::string::npos) << msg;
            EXPECT_NE(msg.find(b.says), std::string::npos) << b.spec << ": " << msg;
        }
    }
    EXPECT_EQ(default_layer_map(2, 4), (std::vector<LayerPair>{{0, 1}, {1, 3}}));
    EXPECT_EQ(default_layer_map(3, 4), (std::vector<LayerPair>{{0, 0}, {1, 2}, {2, 3}}));
    EXPECT_EQ(default_layer_map(3, 3), (std::vector<LayerPair>{{0, 0}, {1, 1}, {2, 2}}));
    EXPECT_EQ(default_layer_map(2, 4, {0, 2}), (std::vector<LayerPair>{{0, 0}, {1, 2}}));
    EXPECT_EQ(default_layer_map(3, 6, parse_student_spec("depth=0.5", 6).layers), (std::vector<LayerPair>{{0, 0}, {1, 2}, {2, 4}}));
}

TEST(HiddenLoss, ProjectionsOnlyWhereWidthsDifferSeededDeterministically) {
    const DistillLoss l{1.0f, 0.0f, 1.0f, 0.0f};
    EXPECT_TRUE(HiddenDistill({{0, 1}}, 8, 8, l, 1).params().empty());
    HiddenDistill a({{0, 1}, {1, 3}}, 4, 8, l, 1), b({{0, 1}, {1, 3}}, 4, 8, l, 1), c({{0, 1}, {1, 3}}, 4, 8, l, 2);
    ASSERT_EQ(a.params().size(), 2u);
    EXPECT_EQ(a.params()[0].shape, (std::vector<int64_t>{8, 4}));
    EXPECT_EQ(std::memcmp(a.params()[1].value, b.params()[1].value, 32 * sizeof(float)), 0);
    EXPECT_NE(std::memcmp(a.params()[1].value, c.params()[1].value, 32 * sizeof(float)), 0);
    for (int64_t i = 0; i < 32; ++i) EXPECT_LE(std::fabs(a.params()[0].value[i]), 0.5f);  // U(±1/√4)
}

// ---- tiny random models of another width ----

// An HF safetensors file of f32 tensors: norms' weights near 1, everything else N(0, 0.1²).
void write_random_safetensors(const std::string& path, const std::vector<std::pair<std::string, std::vector<int64_t>>>& tensors, uint32_t seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    nlohmann::json header = nlohmann::json::object();
    std::vector<float> data;
    for (const auto& [name, shape] : tensors) {
        int64_t n = 1;
        for (int64_t d : shape) n *= d;
        const bool norm_weight = (name.find("norm") != std::string::npos || name.find("LayerNorm") != std::string::npos) &&
                                 name.find("bias") == std::string::npos;
        const size_t begin = data.size() * sizeof(float);
        for (int64_t i = 0; i < n; ++i) data.push_back(norm_weight ? 1.0f + 0.1f * nd(rng) : 0.1f * nd(rng));
        header[name] = {{"dtype", "F32"}, {"shape", shape}, {"data_offsets", {begin, data.size() * sizeof(float)}}};
    }
    std::string text = header.dump();
    while (text.size() % 8) text += ' ';
    std::ofstream out(path, std::ios::binary);
    const uint64_t len = text.size();
    out.write(reinterpret_cast<const char*>(&len), sizeof len);
    out.write(text.data(), static_cast<std::streamsize>(text.size()));
    out.write(reinterpret_cast<const char*>(data.data()), static_cast<std::streamsize>(data.size() * sizeof(float)));
}

// A 2-block LLaMA of width 32 with stories260K's tokenizer (vocabulary 512).
std::string write_narrow_llama(const test::TempDir& dir) {
    const std::string src = test::fixture("models/stories260K-hf"), out = dir.file("narrow-llama");
    fs::create_directories(out);
    for (const char* f : {"tokenizer.model", "tokenizer_config.json"}) fs::copy_file(src + "/" + f, out + "/" + f);
    nlohmann::json c = nlohmann::json::parse(std::ifstream(src + "/config.json"));
    const int64_t D = 32, F = 48, L = 2, V = 512, H = 4, Hkv = 2, hd = 8;
    c["hidden_size"] = D, c["intermediate_size"] = F, c["num_hidden_layers"] = L, c["num_attention_heads"] = H;
    c["num_key_value_heads"] = Hkv, c["head_dim"] = hd;
    std::ofstream(out + "/config.json") << c.dump(1);
    std::vector<std::pair<std::string, std::vector<int64_t>>> t = {{"model.embed_tokens.weight", {V, D}}};
    for (int64_t l = 0; l < L; ++l) {
        const std::string p = "model.layers." + std::to_string(l) + ".";
        t.push_back({p + "self_attn.q_proj.weight", {H * hd, D}}), t.push_back({p + "self_attn.k_proj.weight", {Hkv * hd, D}});
        t.push_back({p + "self_attn.v_proj.weight", {Hkv * hd, D}}), t.push_back({p + "self_attn.o_proj.weight", {D, H * hd}});
        t.push_back({p + "mlp.gate_proj.weight", {F, D}}), t.push_back({p + "mlp.up_proj.weight", {F, D}});
        t.push_back({p + "mlp.down_proj.weight", {D, F}});
        t.push_back({p + "input_layernorm.weight", {D}}), t.push_back({p + "post_attention_layernorm.weight", {D}});
    }
    t.push_back({"model.norm.weight", {D}}), t.push_back({"lm_head.weight", {V, D}});
    write_random_safetensors(out + "/model.safetensors", t, 5);
    return out;
}

// A 2-block BERT classifier of width 32 with bert-tiny-sst2's vocabulary and labels.
std::string write_narrow_bert(const test::TempDir& dir) {
    const std::string src = test::fixture("models/bert-tiny-sst2"), out = dir.file("narrow-bert");
    fs::create_directories(out);
    for (const char* f : {"vocab.txt", "tokenizer_config.json", "special_tokens_map.json"}) fs::copy_file(src + "/" + f, out + "/" + f);
    nlohmann::json c = nlohmann::json::parse(std::ifstream(src + "/config.json"));
    const int64_t D = 32, F = 64, L = 2, V = c["vocab_size"], P = c["max_position_embeddings"];
    c["hidden_size"] = D, c["intermediate_size"] = F, c["num_hidden_layers"] = L, c["num_attention_heads"] = 2;
    std::ofstream(out + "/config.json") << c.dump(1);
    const std::string e = "bert.embeddings.";
    std::vector<std::pair<std::string, std::vector<int64_t>>> t = {{e + "word_embeddings.weight", {V, D}}, {e + "position_embeddings.weight", {P, D}},
                                                                  {e + "token_type_embeddings.weight", {2, D}}, {e + "LayerNorm.weight", {D}},
                                                                  {e + "LayerNorm.bias", {D}}};
    for (int64_t l = 0; l < L; ++l) {
        const std::string p = "bert.encoder.layer." + std::to_string(l) + ".";
        for (const char* m : {"attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense"})
            t.push_back({p + m + ".weight", {D, D}}), t.push_back({p + m + ".bias", {D}});
        t.push_back({p + "intermediate.dense.weight", {F, D}}), t.push_back({p + "intermediate.dense.bias", {F}});
        t.push_back({p + "output.dense.weight", {D, F}}), t.push_back({p + "output.dense.bias", {D}});
        for (const char* n : {"attention.output.LayerNorm", "output.LayerNorm"})
            t.push_back({p + n + ".weight", {D}}), t.push_back({p + n + ".bias", {D}});
    }
    t.push_back({"bert.pooler.dense.weight", {D, D}}), t.push_back({"bert.pooler.dense.bias", {D}});
    t.push_back({"classifier.weight", {2, D}}), t.push_back({"classifier.bias", {2}});
    write_random_safetensors(out + "/model.safetensors", t, 6);
    return out;
}

// ---- the whole student loss against central differences ----

// For each named parameter (student, or projection), its entry of largest |gradient| and one more: the analytic
// gradient against (L(θ + h) − L(θ − h)) / 2h of the loss function, within 2 % + 1e-3 of the largest checked gradient.
void expect_gradients_match_differences(std::vector<TrainParam>& params, const std::vector<std::string>& names,
                                        const std::function<double()>& loss, const std::string& what) {
    struct Probe {
        TrainParam* p;
        int64_t i;
        float g;
    };
    std::vector<Probe> probes;
    float gmax = 0;
    for (const std::string& name : names) {
        auto it = std::find_if(params.begin(), params.end(), [&](const TrainParam& p) { return p.name == name; });
        ASSERT_NE(it, params.end()) << name;
        int64_t best = 0;
        for (int64_t i = 0; i < it->numel; ++i)
            if (std::fabs(it->grad[i]) > std::fabs(it->grad[best])) best = i;
        probes.push_back({&*it, best, it->grad[best]});
        probes.push_back({&*it, (best + it->numel / 2 + 1) % it->numel, it->grad[(best + it->numel / 2 + 1) % it->numel]});
        gmax = std::max(gmax, std::fabs(it->grad[best]));
    }
    ASSERT_GT(gmax, 1e-4f) << what << ": the checked gradients are all ~0";
    double worst = 0;
    for (const Probe& pr : probes) {
        float& v = pr.p->value[pr.i];
        const float keep = v, h = 2e-3f * std::max(1.0f, std::fabs(keep));
        v = keep + h;
        const double up = loss();
        const float hp = v - keep;
        v = keep - h;
        const double down = loss();
        const float hm = keep - v;
        v = keep;
        const double fd = (up - down) / (static_cast<double>(hp) + hm);
        EXPECT_NEAR(pr.g, fd, 0.02 * std::fabs(fd) + 1e-3 * gmax) << what << ": " << pr.p->name << "[" << pr.i << "]";
        worst = std::max(worst, std::fabs(pr.g - fd) / (std::fabs(fd) + 1e-3 * gmax));
    }
    std::printf("%s: %zu probes, largest |gradient| %.3g, worst |analytic − difference| / (|difference| + 1e-3·largest) %.2e\n",
                what.c_str(), probes.size(), gmax, worst);
}

// The evaluation loss equals the forward_backward's l0, and the student's named parameters and every projection of
// `hd` have the gradients the central differences of that loss give.
void expect_whole_loss_gradients(const std::vector<TrainParam>& student, HiddenDistill& hd, const std::vector<std::string>& names,
                                 const std::function<double()>& eval, double l0, const std::string& what) {
    EXPECT_NEAR(eval(), l0, 1e-6 * std::fabs(l0)) << what;
    std::vector<TrainParam> all = student;
    all.insert(all.end(), hd.params().begin(), hd.params().end());
    std::vector<std::string> checked = names;
    for (const TrainParam& p : hd.params()) checked.push_back(p.name);
    expect_gradients_match_differences(all, checked, eval, what);
}

// The LM student's loss on a fixed batch: teacher logits and mapped hidden states from its stage-by-stage forward.
void check_lm(LanguageModel& teacher, LanguageModel& student, const DistillLoss& loss, const std::vector<LayerPair>& map,
              const std::vector<std::string>& names, const std::string& what) {
    const int64_t B = 2, T = 12, V = teacher.config().n_vocab, Dt = teacher.config().n_embd, Lt = teacher.config().n_layer;
    std::vector<int32_t> tokens(B * T + 1);
    for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = static_cast<int32_t>((i * 37 + 11) % V);
    std::vector<int32_t> in(tokens.begin(), tokens.end() - 1), tg(tokens.begin() + 1, tokens.end());
    HiddenDistill hd(map, student.config().n_embd, Dt, loss, 3);
    std::vector<float> t_logits(static_cast<size_t>(B * T * V)), h(static_cast<size_t>(T * Dt));
    for (auto& t : hd.teacher_hidden()) t.resize(static_cast<size_t>(B * T * Dt));
    for (int64_t b = 0; b < B; ++b) {
        teacher.embed({in.data() + b * T, static_cast<size_t>(T)}, 0, h.data());
        for (int64_t l = 0; l < Lt; ++l) {
            teacher.run_block(l, h.data(), T, 0);
            for (size_t j = 0; j < map.size(); ++j)
                if (map[j].teacher == l) std::copy(h.begin(), h.end(), hd.teacher_hidden()[j].begin() + b * T * Dt);
        }
        teacher.run_head(h.data(), T, t_logits.data() + b * T * V);
    }
    LmTrainer trainer(student);
    trainer.set_logit_loss([&](float* z, const int32_t* y, int64_t N, int64_t Vs) {
        return distill_logit_loss(z, t_logits.data(), y, N, Vs, loss, 2.0f);
    });
    trainer.set_hidden_loss(hd.hook());
    trainer.zero_grad(), hd.zero_grad();
    const double l0 = trainer.forward_backward(in, tg, B, T);
    expect_whole_loss_gradients(trainer.params(), hd, names, [&] { return trainer.loss(in, tg, B, T); }, l0, what);
}

TEST(HiddenDistillGradients, LlamaStudentOfTheTeachersWidthAndANarrowerOne) {
    const std::string teacher_dir = test::fixture("models/stories260K-hf");
    auto teacher = LanguageModel::load(teacher_dir);
    test::TempDir dir;
    write_student_from_teacher(teacher_dir, parse_student_spec("layers=0,4", 5), dir.file("s2"));
    const std::vector<std::string> names = {"blk.0.attn_q.weight", "blk.0.ffn_down.weight", "blk.1.attn_v.weight", "blk.0.attn_norm.weight",
                                            "token_embd.weight"};
    const std::vector<LayerPair> copied = default_layer_map(2, 5, {0, 4});
    {
        auto student = LanguageModel::load(dir.file("s2"));
        check_lm(*teacher, *student, {0.0f, 0.0f, 1.0f, 1.0f}, copied, names, "LLaMA, hidden + cos only");
    }
    {
        auto student = LanguageModel::load(dir.file("s2"));
        check_lm(*teacher, *student, {1.0f, 0.5f, 0.5f, 0.5f}, {{0, 2}, {1, 4}, {0, 1}}, names, "LLaMA, kl + ce + hidden + cos");
    }
    {
        auto student = LanguageModel::load(write_narrow_llama(dir));
        check_lm(*teacher, *student, {0.0f, 0.0f, 1.0f, 1.0f}, {{0, 1}, {1, 4}}, names, "narrow LLaMA (32 → 64), hidden + cos only");
    }
}

TEST(HiddenDistillGradients, Gpt2StudentFromTheTeachersBlocks) {
    const std::string teacher_dir = test::fixture("models/gpt2-tiny-stories");
    LoadOptions lo;
    lo.n_ctx = 64;
    auto teacher = LanguageModel::load(teacher_dir, lo);
    test::TempDir dir;
    write_student_from_teacher(teacher_dir, parse_student_spec("layers=0,2", 4), dir.file("s2"));
    auto student = LanguageModel::load(dir.file("s2"), lo);
    check_lm(*teacher, *student, {0.0f, 0.0f, 1.0f, 1.0f}, {{0, 1}, {1, 3}},
             {"blk.0.attn_qkv.weight", "blk.0.ffn_down.weight", "blk.1.attn_output.bias", "blk.0.attn_norm.weight", "position_embd.weight"},
             "GPT-2, hidden + cos only");
}

// The BERT student's loss on three sentences (padding included, not counted): teacher logits from classify and its
// mapped block outputs from a block observer.
void check_bert(EncoderModel& teacher, EncoderModel& student, const DistillLoss& loss, const std::vector<LayerPair>& map,
                const std::vector<std::string>& names, const std::string& what) {
    const std::vector<std::string> texts = {"a gripping, funny film", "dull", "the plot goes nowhere and the actors know it"};
    const std::vector<int32_t> labels = {1, 0, 0};
    const TextBatch b = student.tokenize(texts, 32);
    const TextBatch tb = teacher.tokenize(texts, 32);
    ASSERT_EQ(tb.ids, b.ids);
    ASSERT_GT(std::count(b.mask.begin(), b.mask.end(), 0), 0);
    HiddenDistill hd(map, student.config().hidden, teacher.config().hidden, loss, 3);
    const ObserverId id = teacher.observe_blocks([&](const BlockEvent& e) {
        for (size_t j = 0; j < map.size(); ++j)
            if (map[j].teacher == e.block) hd.teacher_hidden()[j].assign(e.hidden, e.hidden + e.rows * e.width);
    });
    std::vector<float> t_logits(static_cast<size_t>(b.batch * 2));
    teacher.classify(tb, t_logits.data());
    teacher.remove_observer(id);
    hd.set_row_mask(b.mask);
    EncoderTrainer trainer(student);
    trainer.set_logit_loss([&](float* z, const int32_t* y, int64_t N, int64_t V) {
        return distill_logit_loss(z, t_logits.data(), y, N, V, loss, 2.0f);
    });
    trainer.set_hidden_loss(hd.hook());
    trainer.zero_grad(), hd.zero_grad();
    const double l0 = trainer.forward_backward(b, labels, 0.0f, 0);
    expect_whole_loss_gradients(trainer.params(), hd, names, [&] { return trainer.loss(b, labels); }, l0, what);
}

TEST(HiddenDistillGradients, BertStudentOfTheTeachersWidthAndANarrowerOne) {
    const std::string teacher_dir = test::fixture("models/bert-tiny-sst2");
    auto teacher = EncoderModel::load(teacher_dir);
    test::TempDir dir;
    write_student_from_teacher(teacher_dir, parse_student_spec("layers=0,2", 4), dir.file("s2"));
    const std::vector<std::string> names = {"bert.encoder.layer.0.attention.self.query.weight", "bert.encoder.layer.0.output.dense.weight",
                                            "bert.encoder.layer.0.output.LayerNorm.weight", "bert.encoder.layer.1.intermediate.dense.bias",
                                            "bert.embeddings.LayerNorm.bias"};
    {
        auto student = EncoderModel::load(dir.file("s2"));
        check_bert(*teacher, *student, {0.0f, 0.0f, 1.0f, 1.0f}, default_layer_map(2, 4, {0, 2}), names, "BERT, hidden + cos only");
    }
    {
        auto student = EncoderModel::load(dir.file("s2"));
        check_bert(*teacher, *student, {1.0f, 0.5f, 0.5f, 0.5f}, {{0, 1}, {1, 3}}, names, "BERT, kl + ce + hidden + cos");
    }
    {
        auto student = EncoderModel::load(write_narrow_bert(dir));
        check_bert(*teacher, *student, {0.0f, 0.0f, 1.0f, 1.0f}, default_layer_map(2, 4), names, "narrow BERT (32 → 128), hidden + cos only");
    }
}

// ---- the runs ----

TEST(HiddenDistillRuns, AStudentEqualToItsTeacherHasZeroHiddenTerms) {
    DistillOptions o;
    o.steps = 1, o.loss = {0.0f, 0.0f, 1.0f, 1.0f}, o.schedule.lr = 0.0f;
    {
        const std::string dir = test::fixture("models/stories260K-hf");
        auto teacher = LanguageModel::load(dir), same = LanguageModel::load(dir);
        o.data = test::fixture("data/stories_calib.txt"), o.batch = 2, o.ctx = 32;
        const DistillReport r = distill_lm(*teacher, *same, o);
        ASSERT_EQ(r.train.loss_curve.size(), 1u);
        EXPECT_LT(std::abs(r.train.loss_curve[0]), 1e-5);
    }
    {
        const std::string dir = test::fixture("models/bert-tiny-sst2");
        auto teacher = EncoderModel::load(dir), same = EncoderModel::load(dir);
        o.data = test::fixture("data/sst2_train.tsv"), o.batch = 8, o.dropout = 0.0f;
        o.data_selection.first = 0, o.data_selection.count = 8;
        const DistillReport r = distill_classifier(*teacher, *same, o);
        ASSERT_EQ(r.train.loss_curve.size(), 1u);
        EXPECT_LT(std::abs(r.train.loss_curve[0]), 1e-5);
    }
    // A map without hidden terms, or hidden terms on a block the student does not have, are errors naming the option.
    auto teacher = EncoderModel::load(test::fixture("models/bert-tiny-sst2"));
    auto student = EncoderModel::load(test::fixture("models/bert-tiny-sst2"));
    o.layer_map = "0:0";
    o.loss = {1.0f, 0.0f, 0.0f, 0.0f};
    EXPECT_THROW(distill_classifier(*teacher, *student, o), InvalidArgument);
    o.loss = {1.0f, 0.0f, 0.0f, 1.0f}, o.layer_map = "4:0";
    try {
        distill_classifier(*teacher, *student, o);
        ADD_FAILURE() << "block 4 of a 4-block student was accepted";
    } catch (const InvalidArgument& e) {
        EXPECT_NE(std::string(e.what()).find("--layer-map pair '4:0': student block 4"), std::string::npos) << e.what();
    }
}

#ifdef CQ_CLI_PATH
TEST(HiddenDistillCli, BadLayerMapsAreOneClearError) {
    test::TempDir dir;
    const std::string bert = test::fixture("models/bert-tiny-sst2"), data = test::fixture("data/sst2_train.tsv");
    const std::string base = std::string(CQ_CLI_PATH) + " distill --teacher " + bert + " --student-from-teacher layers=0,2 --data " + data +
                             " -o " + dir.file("o") + " --steps 1";
    struct Case {
        std::string args, says;
    };
    for (const Case& c : std::vector<Case>{{" --loss kl=1,cos=1 --layer-map 0:9", "--layer-map pair '0:9': teacher block 9 is outside [0, 4)"},
                                           {" --loss kl=1,cos=1 --layer-map 2:0", "student block 2 is outside [0, 2)"},
                                           {" --loss kl=1,cos=1 --layer-map 0-1", "--layer-map pair '0-1'"},
                                           {" --loss kl=1 --layer-map 0:1", "--layer-map needs a hidden or cos term"}}) {
        const std::string err = dir.file("stderr");
        const int status = std::system((base + c.args + " >/dev/null 2>" + err).c_str());
        EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) != 0) << c.args;
        std::ifstream e(err);
        const std::string text((std::istreambuf_iterator<char>(e)), std::istreambuf_iterator<char>());
        EXPECT_NE(text.find(c.says), std::string::npos) << c.args << "\n" << text;
        EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 1) << text;
    }
    EXPECT_FALSE(fs::exists(dir.file("o")));
}
#endif

}  // namespace
}  // namespace cq
