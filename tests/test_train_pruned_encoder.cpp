// EncoderTrainer on encoders with per-block head counts (HF pruned_heads): bert-tiny-sst2 with heads {1}, {0, 2}, none
// and {3} removed (3, 2, 4, 3 heads) — its loss against the inference model's, its gradients against those of the
// expanded twin (expand_pruned_encoder: the removed heads as exact zeros, the same function) restricted to the kept
// heads (an identity up to float rounding, with and without dropout; ViT too) and against central differences, the guard on a
// block whose head count disagrees with its weights, and cq distill on a pruned student whose output cq and transformers
// load with equal logits.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>

#include <nlohmann/json.hpp>

#include "command_runner.h"
#include "cq/datasets.h"
#include "cq/encoder.h"
#include "cq/error.h"
#include "cq/io/safetensors.h"
#include "cq/prune_encoder.h"
#include "cq/train.h"
#include "test_support.h"

namespace cq {
namespace {

namespace fs = std::filesystem;
const char* kModel = "models/bert-tiny-sst2";
const int64_t kHeadDim = 32;  // hidden 128 / 4 heads
const std::map<int64_t, std::vector<int64_t>> kRemoved = {{0, {1}}, {1, {0, 2}}, {3, {3}}};

std::vector<int64_t> kept_of_removed(int64_t l) {
    const auto it = kRemoved.find(l);
    std::vector<int64_t> kept;
    for (int64_t h = 0; h < 4; ++h)
        if (it == kRemoved.end() || std::find(it->second.begin(), it->second.end(), h) == it->second.end()) kept.push_back(h);
    return kept;
}

// The heads block l keeps, in the config's numbering.
std::vector<int64_t> kept_heads(const EncoderConfig& c, int64_t l) {
    std::vector<int64_t> kept;
    const std::vector<int64_t> none;
    const auto& removed = static_cast<size_t>(l) < c.pruned_heads.size() ? c.pruned_heads[static_cast<size_t>(l)] : none;
    for (int64_t h = 0; h < c.n_head; ++h)
        if (std::find(removed.begin(), removed.end(), h) == removed.end()) kept.push_back(h);
    return kept;
}

// Block and role of an HF tensor name (BERT, ViT): 'r' q/k/v (rows cut per head), 'c' attention output weight
// (columns), 0 other.
std::pair<int64_t, char> role_of(const std::string& name) {
    const std::string pre = ".encoder.layer.";
    const size_t at = name.find(pre);
    if (at == std::string::npos) return {-1, 0};
    const int64_t l = std::stoll(name.substr(at + pre.size()));
    if (name.find(".attention.self.") != std::string::npos || name.find(".attention.attention.") != std::string::npos) return {l, 'r'};
    if (name.find(".attention.output.dense.weight") != std::string::npos) return {l, 'c'};
    return {l, 0};
}

// Every gradient of tp (the pruned model's trainer) against te's (its expanded twin) on the kept heads' rows / columns;
// te's removed rows / columns must be exactly 0. Returns the worst max |Δgrad| / max |grad| over the tensors.
double expect_grads_equal_on_kept_heads(const EncoderTrainer& tp, const EncoderTrainer& te, const EncoderConfig& c, const std::string& what) {
    std::map<std::string, const TrainParam*> by_name;
    for (const TrainParam& p : const_cast<EncoderTrainer&>(te).params()) by_name[p.hf_name] = &p;
    const std::vector<TrainParam>& params = const_cast<EncoderTrainer&>(tp).params();
    EXPECT_EQ(params.size(), by_name.size());
    const int64_t hd = c.hidden / c.n_head;
    double worst = 0;
    for (const TrainParam& p : params) {
        if (!by_name.count(p.hf_name)) {
            ADD_FAILURE() << p.hf_name << " is not in the expanded model";
            continue;
        }
        const TrainParam& e = *by_name[p.hf_name];
        const auto [l, role] = role_of(p.hf_name);
        // where pruned element i sits in the expanded tensor
        std::vector<int64_t> at(static_cast<size_t>(p.numel));
        std::vector<bool> kept(static_cast<size_t>(e.numel), !role);
        const std::vector<int64_t> heads = role ? kept_heads(c, l) : std::vector<int64_t>{};
        const int64_t cols = p.shape.size() > 1 ? p.shape[1] : 1, ecols = e.shape.size() > 1 ? e.shape[1] : 1;
        for (int64_t i = 0; i < p.numel; ++i) {
            const int64_t r = i / cols, k = i % cols;
            int64_t j = i;
            if (role == 'r') j = (heads[static_cast<size_t>(r / hd)] * hd + r % hd) * ecols + k;
            if (role == 'c') j = r * ecols + heads[static_cast<size_t>(k / hd)] * hd + k % hd;
            at[static_cast<size_t>(i)] = j, kept[static_cast<size_t>(j)] = true;
        }
        double gmax = 0, dmax = 0;
        for (int64_t j = 0; j < e.numel; ++j) {
            gmax = std::max(gmax, std::fabs(double(e.grad[j])));
            if (!kept[static_cast<size_t>(j)] && e.grad[j] != 0.0f) {
                ADD_FAILURE() << e.hf_name << "[" << j << "]: a removed head's gradient is " << e.grad[j] << " (" << what << ")";
                break;
            }
        }
        for (int64_t i = 0; i < p.numel; ++i) {
            EXPECT_EQ(p.value[i], e.value[at[static_cast<size_t>(i)]]) << p.hf_name << "[" << i << "]";
            dmax = std::max(dmax, std::fabs(double(p.grad[i]) - e.grad[at[static_cast<size_t>(i)]]));
        }
        // float rounding only: GEMMs over A = kept·hd rather than n_head·hd inputs (the extra terms are exact zeros). The
        // floor is for tensors whose exact gradient is 0 (the key bias: softmax ignores a constant per query), where both
        // sides hold rounding noise (measured up to 2.8e-9 on an AVX2 Zen CPU)
        EXPECT_LE(dmax, 1e-4 * gmax + 1e-8) << p.hf_name << " (" << what << "): max |Δgrad| " << dmax << " of max |grad| " << gmax;
        if (gmax > 0) worst = std::max(worst, dmax / gmax);
    }
    return worst;
}

// bert-tiny-sst2 with kRemoved cut out as transformers' prune_heads leaves it: q/k/v [kept·32, 128] (rows of the kept
// heads), the attention output [128, kept·32], config.json's pruned_heads.
void write_pruned(const std::string& dir) {
    const std::string src = test::fixture(kModel);
    fs::create_directories(dir);
    const safetensors::Model st = safetensors::Model::open(src);
    nlohmann::json header;
    {
        std::ifstream in(src + "/model.safetensors", std::ios::binary);
        uint64_t n = 0;
        in.read(reinterpret_cast<char*>(&n), sizeof n);
        std::string text(n, ' ');
        in.read(text.data(), static_cast<std::streamsize>(n));
        header = nlohmann::json::parse(text);
    }
    std::vector<std::vector<float>> data;
    std::vector<safetensors::TensorToWrite> out;
    for (const auto& [name, info] : header.items()) {
        if (name == "__metadata__") continue;
        std::vector<int64_t> shape = info["shape"].get<std::vector<int64_t>>();
        std::vector<float> v = st.tensor(name).to_float();
        const auto [l, role] = role_of(name);
        if (role) {
            const std::vector<int64_t> kept = kept_of_removed(l);
            const int64_t rows = shape[0], cols = shape.size() > 1 ? shape[1] : 1, A = static_cast<int64_t>(kept.size()) * kHeadDim;
            std::vector<float> cut;
            if (role == 'r') {
                for (int64_t h : kept) cut.insert(cut.end(), v.begin() + h * kHeadDim * cols, v.begin() + (h + 1) * kHeadDim * cols);
                shape[0] = A;
            } else {
                for (int64_t r = 0; r < rows; ++r)
                    for (int64_t h : kept) cut.insert(cut.end(), v.begin() + r * cols + h * kHeadDim, v.begin() + r * cols + (h + 1) * kHeadDim);
                shape[1] = A;
            }
            v = std::move(cut);
        }
        data.push_back(std::move(v));
        out.push_back({name, "F32", shape, data.back().size() * sizeof(float), nullptr});
    }
    for (size_t i = 0; i < out.size(); ++i) out[i].bytes = data[i].data();
    safetensors::write_file(dir + "/model.safetensors", out, {{"format", "pt"}});
    std::ifstream cin(src + "/config.json");
    nlohmann::json config = nlohmann::json::parse(cin);
    for (const auto& [l, heads] : kRemoved) config["pruned_heads"][std::to_string(l)] = heads;
    std::ofstream(dir + "/config.json") << config.dump(2);
    for (const char* f : {"vocab.txt", "tokenizer_config.json", "special_tokens_map.json"}) fs::copy_file(src + "/" + f, dir + "/" + f);
}

std::vector<std::string> dev_texts(size_t n) {
    std::ifstream in(test::fixture("data/sst2_dev.tsv"));
    std::string line;
    std::getline(in, line);
    std::vector<std::string> out;
    while (out.size() < n && std::getline(in, line)) out.push_back(line.substr(0, line.find('\t')));
    return out;
}
const std::vector<int32_t> kLabels = {0, 1, 1, 0, 1, 0, 0, 1};

class TrainPrunedEncoder : public ::testing::Test {
protected:
    static void SetUpTestSuite() {
        dir_ = new test::TempDir("cq_train_pruned");
        write_pruned(dir_->file("pruned"));
        expand_pruned_encoder(dir_->file("pruned"), dir_->file("expanded"));
    }
    static void TearDownTestSuite() { delete dir_; }
    static std::string pruned() { return dir_->file("pruned"); }
    static std::string expanded() { return dir_->file("expanded"); }
    static test::TempDir* dir_;
};
test::TempDir* TrainPrunedEncoder::dir_ = nullptr;

// The trainer's loss and logits (eval mode) against the inference model's forward on the same batch.
TEST_F(TrainPrunedEncoder, LossEqualsTheInferenceModels) {
    auto m = EncoderModel::load(pruned());
    const std::vector<int64_t> want_heads = {3, 2, 4, 3};
    for (int64_t l = 0; l < 4; ++l) ASSERT_EQ(m->config().heads_in_block(l), want_heads[static_cast<size_t>(l)]);
    const TextBatch b = m->tokenize(dev_texts(8), 64);
    std::vector<float> ref(16), got(16);
    m->classify(b, ref.data());
    double ref_loss = 0;
    for (int64_t i = 0; i < 8; ++i) {
        const float* z = ref.data() + 2 * i;
        const double mx = std::max(z[0], z[1]);
        ref_loss += mx + std::log(std::exp(z[0] - mx) + std::exp(z[1] - mx)) - z[kLabels[static_cast<size_t>(i)]];
    }
    ref_loss /= 8;
    EncoderTrainer trainer(*m);
    const double loss = trainer.loss(b, kLabels, got.data());
    for (size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], ref[i], 1e-4) << "logit " << i;
    EXPECT_NEAR(loss, ref_loss, 1e-5 * ref_loss) << "trainer " << loss << ", inference " << ref_loss;
    // and the shapes it trains are the file's (what save_hf_dir writes)
    for (const TrainParam& p : trainer.params()) {
        const auto [l, role] = role_of(p.hf_name);
        if (role == 'r') EXPECT_EQ(p.shape[0], want_heads[static_cast<size_t>(l)] * kHeadDim) << p.hf_name;
        if (role == 'c') EXPECT_EQ(p.shape[1], want_heads[static_cast<size_t>(l)] * kHeadDim) << p.hf_name;
    }
}

// Every gradient of the pruned model against the expanded twin's restricted to the kept heads' rows / columns; the
// twin's removed rows / columns get exactly 0. Run with dropout too: a pruned block draws the unpruned block's masks.
TEST_F(TrainPrunedEncoder, GradientsEqualTheExpandedModelsOnTheKeptHeads) {
    for (const float dropout : {0.0f, 0.1f}) {
        auto mp = EncoderModel::load(pruned());
        auto me = EncoderModel::load(expanded());
        const TextBatch b = mp->tokenize(dev_texts(8), 64);
        EncoderTrainer tp(*mp), te(*me);
        tp.zero_grad(), te.zero_grad();
        const double lp = tp.forward_backward(b, kLabels, dropout, 7);
        const double le = te.forward_backward(b, kLabels, dropout, 7);
        EXPECT_NEAR(lp, le, 1e-6 * le) << "dropout " << dropout;
        const double worst = expect_grads_equal_on_kept_heads(tp, te, mp->config(), "dropout " + std::to_string(dropout));
        std::printf("dropout %.1f: loss %.8f (expanded %.8f); worst max|Δgrad| / max|grad| %.2e\n", dropout, lp, le, worst);
    }
}

// ViT (pre-LN, no dropout): prune_encoder_structured's vit-tiny-mnist (3 of 4 heads per block) against its expanded
// twin, and the trainer's logits against the inference model's.
TEST_F(TrainPrunedEncoder, VitGradientsEqualTheExpandedModelsOnTheKeptHeads) {
    const std::string images = test::fixture("data/t10k-images-idx3-ubyte.gz");
    EncoderPruneOptions po;
    po.target = StructuredTarget::parse("heads=0.3,ffn=0.3", "[prune]");
    po.calib_data = images;
    po.calib_samples = 16;
    prune_encoder_structured(test::fixture("models/vit-tiny-mnist"), dir_->file("vit"), po);
    expand_pruned_encoder(dir_->file("vit"), dir_->file("vit_expanded"));
    const data::ImageDataset d = data::load_mnist(images, test::fixture("data/t10k-labels-idx1-ubyte.gz"), 100, 8);
    auto mp = EncoderModel::load(dir_->file("vit"));
    auto me = EncoderModel::load(dir_->file("vit_expanded"));
    for (int64_t l = 0; l < mp->config().n_layer; ++l) ASSERT_EQ(mp->config().heads_in_block(l), 3);
    std::vector<float> ref(static_cast<size_t>(d.count() * 10)), got(ref.size());
    mp->classify_images(d.pixels.data(), d.count(), ref.data());
    EncoderTrainer tp(*mp), te(*me);
    tp.loss_images(d.pixels.data(), d.count(), d.labels, got.data());
    for (size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], ref[i], 1e-4) << "logit " << i;
    tp.zero_grad(), te.zero_grad();
    const double lp = tp.forward_backward_images(d.pixels.data(), d.count(), d.labels);
    const double le = te.forward_backward_images(d.pixels.data(), d.count(), d.labels);
    EXPECT_NEAR(lp, le, 1e-6 * le);
    const double worst = expect_grads_equal_on_kept_heads(tp, te, mp->config(), "vit");
    std::printf("vit: loss %.8f (expanded %.8f); worst max|Δgrad| / max|grad| %.2e\n", lp, le, worst);
}

// Central differences of the loss (eval mode) on the largest-gradient entries of block 1's (2 heads) query and
// attention-output weights and block 3's value bias.
TEST_F(TrainPrunedEncoder, GradientsMatchCentralDifferences) {
    auto m = EncoderModel::load(pruned());
    const TextBatch b = m->tokenize(dev_texts(8), 64);
    EncoderTrainer t(*m);
    t.zero_grad();
    t.forward_backward(b, kLabels, 0.0f, 0);
    int checked = 0;
    for (TrainParam& p : t.params()) {
        if (p.hf_name != "bert.encoder.layer.1.attention.self.query.weight" && p.hf_name != "bert.encoder.layer.1.attention.output.dense.weight" &&
            p.hf_name != "bert.encoder.layer.3.attention.self.value.bias")
            continue;
        std::vector<int64_t> idx(static_cast<size_t>(p.numel));
        for (int64_t i = 0; i < p.numel; ++i) idx[static_cast<size_t>(i)] = i;
        std::partial_sort(idx.begin(), idx.begin() + 3, idx.end(), [&](int64_t a, int64_t c) { return std::fabs(p.grad[a]) > std::fabs(p.grad[c]); });
        for (int k = 0; k < 3; ++k) {
            const int64_t i = idx[static_cast<size_t>(k)];
            const float w0 = p.value[i], h = 1e-2f;
            p.value[i] = w0 + h;
            const double up = t.loss(b, kLabels);
            p.value[i] = w0 - h;
            const double down = t.loss(b, kLabels);
            p.value[i] = w0;
            const double fd = (up - down) / (2.0 * h), g = p.grad[i];
            // loss rounding (~1e-7) / h and the O(h²) term
            EXPECT_NEAR(g, fd, 2e-3 * std::fabs(fd) + 2e-5) << p.hf_name << "[" << i << "]";
            ++checked;
        }
    }
    EXPECT_EQ(checked, 9);
}

// A block whose head count disagrees with its weights is one clear error naming the block, not an out-of-bounds read.
TEST_F(TrainPrunedEncoder, MismatchedHeadCountIsUnsupported) {
    auto m = EncoderModel::load(pruned());
    m->weights().blocks[1].n_head = 4;  // its q/k/v hold 2 heads
    try {
        EncoderTrainer t(*m);
        FAIL() << "no error";
    } catch (const Unsupported& e) {
        EXPECT_NE(std::string(e.what()).find("block 1 keeps 4 of 4 heads (config: 2)"), std::string::npos) << e.what();
    }
}

// cq distill with a pruned student (prune_encoder_structured's output, 2 heads and 352 neurons per block): the written
// directory keeps pruned_heads and the sliced shapes, its weights moved, and cq and transformers give it equal logits.
TEST_F(TrainPrunedEncoder, DistillAPrunedStudentFromTheCli) {
    const std::string student = dir_->file("student"), out = dir_->file("distilled");
    EncoderPruneOptions po;
    po.target = StructuredTarget::parse("heads=0.5,ffn=0.3", "[prune]");
    po.calib_data = test::fixture("data/sst2_train.tsv");
    po.calib_samples = 16;
    po.run.max_len = 64;
    prune_encoder_structured(test::fixture(kModel), student, po);
    const test::RunResult r = test::run_command(std::string(CQ_CLI_PATH) + " -t 2 distill --teacher " + test::fixture(kModel) + " --student " +
                                                student + " --data " + test::fixture("data/sst2_train.tsv") + " --steps 20 -o " + out + " --json");
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(nlohmann::json::parse(r.out)["steps"], 20) << r.out;
    std::ifstream a(student + "/config.json"), c(out + "/config.json");
    const nlohmann::json ca = nlohmann::json::parse(a), cc = nlohmann::json::parse(c);
    EXPECT_EQ(cc["pruned_heads"], ca["pruned_heads"]);
    EXPECT_EQ(cc["intermediate_size"], 352);
    const safetensors::Model before = safetensors::Model::open(student), after = safetensors::Model::open(out);
    const safetensors::TensorInfo* q0 = after.find_tensor("bert.encoder.layer.0.attention.self.query.weight");
    const safetensors::TensorInfo* o0 = after.find_tensor("bert.encoder.layer.0.attention.output.dense.weight");
    ASSERT_TRUE(q0 && o0);
    EXPECT_EQ(q0->shape, (std::vector<int64_t>{64, 128}));
    EXPECT_EQ(o0->shape, (std::vector<int64_t>{128, 64}));
    EXPECT_NE(before.tensor(q0->name).to_float(), after.tensor(q0->name).to_float()) << "training did not move the weights";

    auto m = EncoderModel::load(out);
    for (const EncoderBlock& blk : m->weights().blocks) EXPECT_EQ(blk.n_head, 2);
    const std::vector<std::string> texts = dev_texts(16);
    const TextBatch b = m->tokenize(texts, 128);
    std::vector<float> got(32);
    m->classify(b, got.data());

    const char* py = std::getenv("CQ_TRANSFORMERS_PYTHON");
    const std::string python = py ? py : "/work/venv-fam/bin/python";
    if (!fs::exists(python)) GTEST_SKIP() << "no Python with transformers (" << python << "; set CQ_TRANSFORMERS_PYTHON)";
    const std::string script = std::string(CQ_TESTS_DIR) + "/../scripts/hf_encoder_logits.py";
    const test::RunResult t = test::run_command(python + " " + script + " " + out + " " + test::fixture("data/sst2_dev.tsv") + " 16");
    if (t.exit_code != 0 && t.out.empty()) GTEST_SKIP() << "the transformers reference did not run: " << t.err;
    const nlohmann::json ref = nlohmann::json::parse(t.out);
    EXPECT_EQ(ref["heads"], nlohmann::json({2, 2, 2, 2}));
    std::vector<float> want;
    for (const auto& row : ref["logits"])
        for (const auto& x : row) want.push_back(x.get<float>());
    ASSERT_EQ(want.size(), got.size());
    for (size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], want[i], 1e-4) << "logit " << i << ": cq " << got[i] << ", transformers " << want[i];
}

}  // namespace
}  // namespace cq
