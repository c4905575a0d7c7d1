// Encoder classifiers against independent references: PyTorch logits and dev accuracy in the BERT-tiny SST-2 and
// ViT-tiny MNIST fixtures' reference.json (1e-4 absolute), tiny random RoBERTa / DistilBERT made by
// tests/expected/make_encoder_fixtures.py (its own torch forward pass), padded ≡ one-by-one, and clear errors.
// Suites are named encoder_* so that `ctest -R encoder` (case-sensitive) selects them.
#include <gtest/gtest.h>

#include <zlib.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "cq/encoder.h"
#include "cq/error.h"
#include "ops/encoder_ops.h"
#include "test_support.h"

namespace cq {
namespace {

namespace fs = std::filesystem;

nlohmann::json read_json(const std::string& path) {
    std::ifstream in(path);
    return nlohmann::json::parse(in);
}

int64_t argmax(const float* v, int64_t n) { return std::max_element(v, v + n) - v; }

// Largest |a − b| over a row-major [rows, cols] result and a nested reference list.
double max_abs_diff(const std::vector<float>& got, const nlohmann::json& expected, int64_t cols) {
    double worst = 0;
    for (size_t r = 0; r < expected.size(); ++r)
        for (int64_t c = 0; c < cols; ++c)
            worst = std::max(worst, std::abs(got[r * static_cast<size_t>(cols) + static_cast<size_t>(c)] - expected[r][c].get<double>()));
    return worst;
}

// ---- the attention op against a float64 loop -----------------------------------------------------------------

TEST(encoder_ops, MaskedAttentionMatchesNaiveLoopAndNeverNaNs) {
    const int64_t batch = 3, seq = 7, n_head = 2, head_dim = 5, stride = 13;  // stride > n_head·head_dim: q/k/v inside wider rows
    std::vector<float> q(batch * seq * stride), k(q.size()), v(q.size());
    uint32_t state = 12345;
    const auto next = [&] { return (state = state * 1664525u + 1013904223u) / 4294967296.0f * 4.0f - 2.0f; };
    for (auto* t : {&q, &k, &v})
        for (float& x : *t) x = next();
    // Sequence 0 unpadded, sequence 1 right-padded with a hole, sequence 2 fully masked.
    const std::vector<int32_t> mask = {1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    std::vector<float> out(batch * seq * n_head * head_dim);
    ops::attention_bidirectional(q.data(), k.data(), v.data(), stride, batch, seq, n_head, head_dim, mask.data(), out.data());
    for (int64_t b = 0; b < batch; ++b) {
        const bool none = std::count(mask.begin() + b * seq, mask.begin() + (b + 1) * seq, 1) == 0;
        for (int64_t h = 0; h < n_head; ++h)
            for (int64_t t = 0; t < seq; ++t) {
                std::vector<double> p(seq);
                double mx = -1e300, sum = 0;
                for (int64_t j = 0; j < seq; ++j) {
                    double s = 0;
                    for (int64_t d = 0; d < head_dim; ++d) s += double(q[(b * seq + t) * stride + h * head_dim + d]) * k[(b * seq + j) * stride + h * head_dim + d];
                    p[j] = s / std::sqrt(double(head_dim));
                    if (none || mask[b * seq + j]) mx = std::max(mx, p[j]);
                }
                for (int64_t j = 0; j < seq; ++j) sum += p[j] = (none || mask[b * seq + j]) ? std::exp(p[j] - mx) : 0.0;
                for (int64_t d = 0; d < head_dim; ++d) {
                    double o = 0;
                    for (int64_t j = 0; j < seq; ++j) o += p[j] / sum * v[(b * seq + j) * stride + h * head_dim + d];
                    const float got = out[(b * seq + t) * n_head * head_dim + h * head_dim + d];
                    ASSERT_TRUE(std::isfinite(got)) << "sequence " << b << " head " << h << " query " << t;
                    // |Σ p·v| terms ≤ 2 each: f32 accumulation over seq + head_dim products stays within 1e-5.
                    EXPECT_NEAR(got, o, 1e-5) << "sequence " << b << " head " << h << " query " << t << " dim " << d;
                }
            }
    }
}

// ---- BERT-tiny SST-2 ------------------------------------------------------------------------------------------

const std::string kBert = "models/bert-tiny-sst2";

struct Sst2Row {
    std::string sentence;
    int label;
};

// data/sst2_dev.tsv: header "sentence<TAB>label", then one row per line.
std::vector<Sst2Row> read_sst2_dev() {
    std::ifstream in(test::fixture("data/sst2_dev.tsv"));
    std::string line;
    std::getline(in, line);
    EXPECT_EQ(line, "sentence\tlabel");
    std::vector<Sst2Row> rows;
    while (std::getline(in, line)) {
        const size_t tab = line.rfind('\t');
        if (tab == std::string::npos) continue;
        rows.push_back({line.substr(0, tab), std::stoi(line.substr(tab + 1))});
    }
    return rows;
}

TEST(encoder_bert, TokenizerAndLogitsMatchPyTorch) {
    auto model = EncoderModel::load(test::fixture(kBert));
    const auto ref = read_json(test::fixture(kBert + "/reference.json"));
    const auto& first8 = ref["reference_first8"];
    std::vector<std::string> texts;
    for (const auto& r : first8) texts.push_back(r["sentence"].get<std::string>());
    const int64_t L = model->config().num_labels;
    ASSERT_EQ(L, 2);
    EXPECT_EQ(model->config().labels, (std::vector<std::string>{"NEGATIVE", "POSITIVE"}));

    // Padded batch of 8.
    const TextBatch batch = model->tokenize(texts, 64);
    ASSERT_EQ(batch.batch, 8);
    std::vector<float> logits(static_cast<size_t>(8 * L));
    model->classify(batch, logits.data());
    nlohmann::json expected = nlohmann::json::array();
    for (size_t i = 0; i < first8.size(); ++i) {
        const auto ids = first8[i]["input_ids"].get<std::vector<int32_t>>();
        const std::vector<int32_t> got(batch.ids.begin() + static_cast<ptrdiff_t>(i * batch.seq),
                                       batch.ids.begin() + static_cast<ptrdiff_t>(i * batch.seq + ids.size()));
        EXPECT_EQ(got, ids) << "sentence " << i;
        for (int64_t t = static_cast<int64_t>(ids.size()); t < batch.seq; ++t) {
            EXPECT_EQ(batch.ids[i * batch.seq + t], 0);
            EXPECT_EQ(batch.mask[i * batch.seq + t], 0);
        }
        expected.push_back(first8[i]["logits"]);
    }
    const double batched = max_abs_diff(logits, expected, L);
    EXPECT_LT(batched, 1e-4) << "padded batch of 8";

    // One by one, unpadded.
    double single = 0;
    for (size_t i = 0; i < texts.size(); ++i) {
        const TextBatch one = model->tokenize(std::span(texts).subspan(i, 1), 64);
        EXPECT_EQ(one.seq, static_cast<int64_t>(first8[i]["input_ids"].size()));
        std::vector<float> l(static_cast<size_t>(L));
        model->classify(one, l.data());
        single = std::max(single, max_abs_diff(l, nlohmann::json::array({first8[i]["logits"]}), L));
    }
    EXPECT_LT(single, 1e-4) << "one by one";
    std::printf("bert-tiny-sst2: max |Δlogit| vs PyTorch %.3g (padded batch), %.3g (one by one)\n", batched, single);
}

TEST(encoder_bert, PooledIsTanhOfPoolerAndObserverSeesEveryLinear) {
    auto model = EncoderModel::load(test::fixture(kBert));
    const std::vector<std::string> texts = {"a gorgeous film .", "dull"};
    const TextBatch batch = model->tokenize(texts, 64);
    std::vector<std::string> seen;
    for (Linear* l : model->linears())
        model->observe(*l, [&](const LinearEvent& e) {
            seen.push_back(e.layer.name);
            const bool in_block = e.layer.block >= 0;
            EXPECT_EQ(in_block, e.layer.name.find("encoder.layer") != std::string::npos) << e.layer.name;
            EXPECT_EQ(e.rows, in_block ? batch.batch * batch.seq : batch.batch) << e.layer.name;
            EXPECT_EQ(e.row_mask, in_block ? batch.mask.data() : nullptr) << e.layer.name;
        });
    std::vector<float> logits(4), pooled(static_cast<size_t>(2 * model->config().hidden));
    model->classify(batch, logits.data(), pooled.data());
    std::vector<std::string> order;
    for (const Linear* l : model->linears()) order.push_back(l->name);
    EXPECT_EQ(seen, order);
    EXPECT_EQ(order.size(), 4u * 6u + 2u);
    EXPECT_EQ(order.back(), "classifier");
    for (const float v : pooled) EXPECT_LE(std::abs(v), 1.0f);
}

TEST(encoder_bert, PairsGetTokenTypesAndLongestFirstTruncation) {
    auto model = EncoderModel::load(test::fixture(kBert));
    const std::vector<std::string> a = {"the movie was good"}, b = {"it was not"};
    const TextBatch batch = model->tokenize(a, 64, b);
    const auto ta = model->tokenizer()->encode(a[0], false), tb = model->tokenizer()->encode(b[0], false);
    ASSERT_EQ(batch.seq, static_cast<int64_t>(ta.size() + tb.size() + 3));
    EXPECT_EQ(batch.ids.front(), model->tokenizer()->bos_id());
    EXPECT_EQ(batch.ids[ta.size() + 1], model->tokenizer()->eos_id());
    EXPECT_EQ(batch.type_ids[ta.size() + 1], 0);
    EXPECT_EQ(batch.type_ids[ta.size() + 2], 1);
    EXPECT_EQ(batch.type_ids.back(), 1);
    // 4 + 3 pieces into 6 - 3 = 3: the longer segment loses pieces first, ties from the second.
    const TextBatch cut = model->tokenize(a, 6, b);
    EXPECT_EQ(cut.seq, 6);
    EXPECT_EQ(cut.ids[1], ta[0]);
    EXPECT_EQ(cut.ids[2], ta[1]);
    EXPECT_EQ(cut.ids[4], tb[0]);
    EXPECT_THROW(model->tokenize(a, 1000), InvalidArgument);
}

// The whole SST-2 dev set as reference.json's eval procedure: batches of 32, max_len 64.
TEST(encoder_bert, Sst2DevAccuracy) {
    auto model = EncoderModel::load(test::fixture(kBert));
    const auto ref = read_json(test::fixture(kBert + "/reference.json"));
    const auto rows = read_sst2_dev();
    ASSERT_EQ(rows.size(), 872u);
    int correct = 0;
    const auto t0 = std::chrono::steady_clock::now();
    for (size_t b0 = 0; b0 < rows.size(); b0 += 32) {
        std::vector<std::string> texts;
        for (size_t i = b0; i < std::min(rows.size(), b0 + 32); ++i) texts.push_back(rows[i].sentence);
        const TextBatch batch = model->tokenize(texts, 64);
        std::vector<float> logits(texts.size() * 2);
        model->classify(batch, logits.data());
        for (size_t i = 0; i < texts.size(); ++i) correct += argmax(logits.data() + 2 * i, 2) == rows[b0 + i].label;
    }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("bert-tiny-sst2: %d/872 correct (%.5f), dev pass %.3f s\n", correct, correct / 872.0, seconds);
    EXPECT_EQ(correct, ref["eval"]["fp32_correct"].get<int>());
}

// ---- ViT-tiny MNIST ---------------------------------------------------------------------------------------------

const std::string kVit = "models/vit-tiny-mnist";

uint32_t big_endian_u32(const uint8_t* p) { return uint32_t(p[0]) << 24 | uint32_t(p[1]) << 16 | uint32_t(p[2]) << 8 | p[3]; }

// A gzipped IDX file: magic, then `n_dims` big-endian sizes, then u8 data.
std::vector<uint8_t> read_idx_gz(const std::string& path, uint32_t magic, int n_dims, std::vector<uint32_t>& dims) {
    gzFile f = gzopen(path.c_str(), "rb");
    EXPECT_NE(f, nullptr) << path;
    std::vector<uint8_t> bytes;
    uint8_t buf[1 << 16];
    int n;
    while (f && (n = gzread(f, buf, sizeof(buf))) > 0) bytes.insert(bytes.end(), buf, buf + n);
    if (f) gzclose(f);
    const size_t header = 4 + 4 * static_cast<size_t>(n_dims);
    EXPECT_GE(bytes.size(), header);
    EXPECT_EQ(big_endian_u32(bytes.data()), magic) << path;
    size_t count = 1;
    for (int i = 0; i < n_dims; ++i) count *= dims.emplace_back(big_endian_u32(bytes.data() + 4 + 4 * i));
    EXPECT_EQ(bytes.size(), header + count) << path;
    return {bytes.begin() + static_cast<ptrdiff_t>(header), bytes.end()};
}

struct Mnist {
    std::vector<uint8_t> images, labels;  // [10000, 28, 28], [10000]
};

const Mnist& mnist() {
    static const Mnist m = [] {
        Mnist out;
        std::vector<uint32_t> dims;
        out.images = read_idx_gz(test::fixture("data/t10k-images-idx3-ubyte.gz"), 0x00000803, 3, dims);
        EXPECT_EQ(dims, (std::vector<uint32_t>{10000, 28, 28}));
        dims.clear();
        out.labels = read_idx_gz(test::fixture("data/t10k-labels-idx1-ubyte.gz"), 0x00000801, 1, dims);
        return out;
    }();
    return m;
}

TEST(encoder_vit, LogitsAndNormalizationMatchPyTorch) {
    auto model = EncoderModel::load(test::fixture(kVit));
    ASSERT_TRUE(model->is_vision());
    EXPECT_EQ(model->tokenizer(), nullptr);
    const auto ref = read_json(test::fixture(kVit + "/reference.json"));
    const EncoderConfig& c = model->config();
    const auto images = ref["reference_images"].get<std::vector<int64_t>>();
    const int64_t n = static_cast<int64_t>(images.size()), plane = 28 * 28;
    std::vector<uint8_t> pixels;
    for (size_t i = 0; i < images.size(); ++i) {
        const uint8_t* img = mnist().images.data() + images[i] * plane;
        pixels.insert(pixels.end(), img, img + plane);
        EXPECT_EQ(mnist().labels[static_cast<size_t>(images[i])], ref["reference_labels"][i].get<int>());
        // The normalisation cq applies, (u8·rescale − mean) / std, summed over the image.
        double sum = 0;
        for (int64_t p = 0; p < plane; ++p) sum += (img[p] * c.rescale_factor - c.image_mean[0]) / c.image_std[0];
        const double expected = ref["reference_pixel_sum_normalized"][i].get<double>();
        EXPECT_NEAR(sum, expected, 1e-6 * std::abs(expected) + 1e-3) << "image " << images[i];
    }
    std::vector<float> logits(static_cast<size_t>(n * c.num_labels));
    model->classify_images(pixels.data(), n, logits.data());
    const double diff = max_abs_diff(logits, ref["reference_logits"], c.num_labels);
    EXPECT_LT(diff, 1e-4);
    std::printf("vit-tiny-mnist: max |Δlogit| vs PyTorch %.3g\n", diff);
}

TEST(encoder_vit, MnistAccuracy8000To9999) {
    auto model = EncoderModel::load(test::fixture(kVit));
    const auto ref = read_json(test::fixture(kVit + "/reference.json"));
    const int64_t plane = 28 * 28, L = model->config().num_labels;
    int correct = 0;
    for (int64_t i0 = 8000; i0 < 10000; i0 += 100) {
        std::vector<float> logits(static_cast<size_t>(100 * L));
        model->classify_images(mnist().images.data() + i0 * plane, 100, logits.data());
        for (int64_t i = 0; i < 100; ++i) correct += argmax(logits.data() + i * L, L) == mnist().labels[static_cast<size_t>(i0 + i)];
    }
    std::printf("vit-tiny-mnist: %d/2000 correct on images 8000..9999\n", correct);
    EXPECT_EQ(correct, ref["correct"].get<int>());
}

// ---- tiny random RoBERTa / DistilBERT (tests/expected/make_encoder_fixtures.py) ----------------------------------

void expect_tiny_model_matches_torch(const std::string& name) {
    const std::string dir = test::tests_dir() + "/expected/encoders/" + name;
    auto model = EncoderModel::load(dir);
    const auto ref = read_json(dir + "/reference.json");
    const int64_t L = model->config().num_labels;
    double worst = 0;
    for (const auto& b : ref["batches"]) {
        const auto texts = b["texts"].get<std::vector<std::string>>();
        const auto pairs = b["pairs"].is_null() ? std::vector<std::string>{} : b["pairs"].get<std::vector<std::string>>();
        const TextBatch batch = model->tokenize(texts, 16, pairs);
        const auto ids = b["input_ids"].get<std::vector<std::vector<int32_t>>>();
        const auto mask = b["attention_mask"].get<std::vector<std::vector<int32_t>>>();
        ASSERT_EQ(batch.batch, static_cast<int64_t>(ids.size()));
        ASSERT_EQ(batch.seq, static_cast<int64_t>(ids[0].size())) << name;
        for (size_t i = 0; i < ids.size(); ++i) {
            EXPECT_EQ(std::vector<int32_t>(batch.ids.begin() + static_cast<ptrdiff_t>(i * batch.seq),
                                           batch.ids.begin() + static_cast<ptrdiff_t>((i + 1) * batch.seq)),
                      ids[i])
                << name << " '" << texts[i] << "'";
            EXPECT_EQ(std::vector<int32_t>(batch.mask.begin() + static_cast<ptrdiff_t>(i * batch.seq),
                                           batch.mask.begin() + static_cast<ptrdiff_t>((i + 1) * batch.seq)),
                      mask[i]);
        }
        std::vector<float> logits(static_cast<size_t>(batch.batch * L));
        model->classify(batch, logits.data());
        worst = std::max(worst, max_abs_diff(logits, b["logits"], L));
        // Each sequence alone, unpadded, gives the same logits as in the padded batch.
        for (int64_t i = 0; i < batch.batch; ++i) {
            TextBatch one;
            one.batch = 1;
            one.seq = std::count(mask[i].begin(), mask[i].end(), 1);
            one.ids.assign(ids[i].begin(), ids[i].begin() + one.seq);
            one.mask.assign(static_cast<size_t>(one.seq), 1);
            one.type_ids.assign(batch.type_ids.begin() + i * batch.seq, batch.type_ids.begin() + i * batch.seq + one.seq);
            std::vector<float> l(static_cast<size_t>(L));
            model->classify(one, l.data());
            worst = std::max(worst, max_abs_diff(l, nlohmann::json::array({b["logits"][i]}), L));
        }
    }
    EXPECT_LT(worst, 1e-4) << name;
    std::printf("%s: max |Δlogit| vs PyTorch %.3g\n", name.c_str(), worst);
}

TEST(encoder_roberta, TinyRandomMatchesPyTorch) { expect_tiny_model_matches_torch("roberta-tiny-random"); }
TEST(encoder_distilbert, TinyRandomMatchesPyTorch) { expect_tiny_model_matches_torch("distilbert-tiny-random"); }

// ---- errors --------------------------------------------------------------------------------------------------------

TEST(encoder_errors, UnsupportedModelNamesConfigAndSupportedList) {
    test::TempDir dir("cq_encoder");
    dir.write("config.json", R"({"model_type": "bert", "architectures": ["BertForMaskedLM"]})");
    try {
        EncoderModel::load(dir.path());
        FAIL() << "no error";
    } catch (const Unsupported& e) {
        const std::string msg = e.what();
        EXPECT_NE(msg.find(dir.file("config.json")), std::string::npos) << msg;
        EXPECT_NE(msg.find("BertForMaskedLM"), std::string::npos) << msg;
        EXPECT_NE(msg.find("ViTForImageClassification"), std::string::npos) << msg;
    }
    dir.write("config.json", R"({"model_type": "llama", "architectures": ["LlamaForCausalLM"]})");
    EXPECT_THROW(EncoderModel::load(dir.path()), Unsupported);
    EXPECT_THROW(EncoderModel::load(dir.file("nothing-here")), IoError);
}

TEST(encoder_errors, MissingTensorNamesTheFileAndTensor) {
    // The DistilBERT fixture's config with the RoBERTa fixture's weights: every tensor name is wrong.
    test::TempDir dir("cq_encoder");
    const std::string src = test::tests_dir() + "/expected/encoders/";
    fs::copy_file(src + "distilbert-tiny-random/config.json", dir.file("config.json"));
    fs::copy_file(src + "distilbert-tiny-random/vocab.txt", dir.file("vocab.txt"));
    fs::copy_file(src + "roberta-tiny-random/model.safetensors", dir.file("model.safetensors"));
    try {
        EncoderModel::load(dir.path());
        FAIL() << "no error";
    } catch (const FormatError& e) {
        const std::string msg = e.what();
        EXPECT_EQ(e.file(), dir.file("model.safetensors")) << msg;
        EXPECT_NE(msg.find("distilbert.embeddings.word_embeddings.weight"), std::string::npos) << msg;
    }
}

TEST(encoder_errors, WrongInputsAreRejected) {
    auto model = EncoderModel::load(test::tests_dir() + "/expected/encoders/distilbert-tiny-random");
    TextBatch bad;
    bad.batch = 1;
    bad.seq = 3;
    bad.ids = {2, 999, 3};
    bad.mask = {1, 1, 1};
    std::vector<float> logits(2);
    EXPECT_THROW(model->classify(bad, logits.data()), InvalidArgument);  // id outside the vocabulary
    bad.mask = {1, 1};
    EXPECT_THROW(model->classify(bad, logits.data()), InvalidArgument);  // sizes do not match
    EXPECT_THROW(model->classify_images(nullptr, 1, logits.data()), InvalidArgument);
}

// ---- optional: the BERT-base random twin (peer cache; absent in CI) --------------------------------------------------

TEST(encoder_bert, BaseRandomTwinMatchesPyTorch) {
    const char* home = std::getenv("HOME");
    const std::string dir = std::string(home ? home : "") + "/.cache/cq-peers/models/bert-base-random";
    std::error_code ec;
    if (!home || !fs::is_regular_file(dir + "/reference.json", ec)) GTEST_SKIP() << dir << " is not present";
    auto model = EncoderModel::load(dir);
    const auto ref = read_json(dir + "/reference.json");
    const auto& in = ref["inputs"];
    const auto ids = in["input_ids"].get<std::vector<std::vector<int32_t>>>();
    TextBatch batch;
    batch.batch = static_cast<int64_t>(ids.size());
    batch.seq = static_cast<int64_t>(ids[0].size());
    for (size_t i = 0; i < ids.size(); ++i) {
        for (const char* key : {"input_ids", "attention_mask", "token_type_ids"}) {
            const auto row = in[key][i].get<std::vector<int32_t>>();
            auto& out = key[0] == 'i' ? batch.ids : key[0] == 'a' ? batch.mask : batch.type_ids;
            out.insert(out.end(), row.begin(), row.end());
        }
    }
    const int64_t L = model->config().num_labels, D = model->config().hidden;
    std::vector<float> logits(static_cast<size_t>(batch.batch * L)), pooled(static_cast<size_t>(batch.batch * D));
    model->classify(batch, logits.data(), pooled.data());
    const double diff = max_abs_diff(logits, ref["logits"], L);
    EXPECT_LT(diff, 1e-4);
    double pooled_diff = 0;
    for (size_t i = 0; i < ids.size(); ++i)
        for (size_t j = 0; j < 8; ++j)
            pooled_diff = std::max(pooled_diff, std::abs(pooled[i * static_cast<size_t>(D) + j] - ref["pooler_output_first8"][i][j].get<double>()));
    EXPECT_LT(pooled_diff, 1e-4);
    std::printf("bert-base-random: max |Δlogit| vs PyTorch %.3g\n", diff);
}

}  // namespace
}  // namespace cq
