// BLIP captioning (issue 20) against Hugging Face transformers: two tiny random BlipForConditionalGeneration models from
// scripts/make_family_references.py (tests/data/families/blip-*): teacher-forced logits to 1e-5, greedy captions (with and
// without a prompt) identical, the caption loss with and without label smoothing, the same bytes at 1 and 3 threads,
// W8A8 in memory, clear errors. Suites are named families_blip so that `ctest -R families` selects them.
#include "cq/w8a8.h"
#include "seq2seq_test_support.h"

namespace cq {
namespace {

using namespace test::seq2seq;

struct CaptionOutputs {
    std::vector<std::vector<int32_t>> generated, prompted;
    std::vector<float> logits;
};

CaptionOutputs run_captions(Seq2SeqModel& m, const nlohmann::json& ref) {
    CaptionOutputs o;
    const int64_t max_new = ref["max_new_tokens"].get<int64_t>();
    const std::vector<int32_t> prompt = m.caption_prompt(ref["prompt"].get<std::string>());
    for (size_t i = 0; i < ref["pixels_u8"].size(); ++i) {
        const std::vector<uint8_t> px = image_of(ref, i);
        o.generated.push_back(m.generate_caption(px.data(), {}, max_new));
        o.prompted.push_back(m.generate_caption(px.data(), prompt, max_new));
        const auto ids = ref["input_ids"][i].get<std::vector<int32_t>>();
        std::vector<float> l(ids.size() * static_cast<size_t>(m.config().vocab));
        m.image_logits(px.data(), ids, l.data());
        o.logits.insert(o.logits.end(), l.begin(), l.end());
    }
    return o;
}

double expect_blip_matches(const std::string& name, int64_t vision_layers, int64_t text_layers) {
    const auto model = Seq2SeqModel::load(family_dir(name));
    const nlohmann::json ref = read_json(family_dir(name) + "/reference.json");
    EXPECT_TRUE(model->takes_images());
    EXPECT_EQ(model->n_blocks(), vision_layers + text_layers);
    // vision: patch conv + 6 per layer; text: 10 per layer; the head's dense and the decoder
    EXPECT_EQ(static_cast<int64_t>(model->linears().size()), 1 + 6 * vision_layers + 10 * text_layers + 2) << name;
    // BertTokenizer's ids: the caption's pieces + [SEP] after [DEC]; the prompt as generate builds it
    for (size_t i = 0; i < ref["captions"].size(); ++i) {
        auto want = ref["input_ids"][i].get<std::vector<int32_t>>();
        want.erase(want.begin());
        EXPECT_EQ(model->tokenize(ref["captions"][i].get<std::string>()), want) << name << " caption " << i;
    }
    EXPECT_EQ(model->caption_prompt(ref["prompt"].get<std::string>()), ref["prompt_ids"].get<std::vector<int32_t>>()) << name;

    // the vision tower's output (post_layernorm on every row)
    const std::vector<uint8_t> px0 = image_of(ref, 0);
    const std::vector<float> emb = model->encode_image(px0.data());
    double emb_worst = 0;
    size_t k = 0;
    for (const auto& row : ref["image_embeds_0"])
        for (const auto& v : row) emb_worst = std::max(emb_worst, std::abs(double{emb.at(k++)} - v.get<double>()));
    EXPECT_EQ(k, emb.size());
    EXPECT_LE(emb_worst, 1e-5) << name;

    const CaptionOutputs o = run_captions(*model, ref);
    for (size_t i = 0; i < o.generated.size(); ++i) {
        EXPECT_EQ(o.generated[i], ref["generated"][i].get<std::vector<int32_t>>()) << name << " image " << i;
        EXPECT_EQ(o.prompted[i], ref["generated_with_prompt"][i].get<std::vector<int32_t>>()) << name << " image " << i << " with prompt";
    }
    const double worst = max_abs_diff(o.logits, ref["logits"]);
    EXPECT_LE(worst, 1e-5) << name;
    std::printf("%s: captions identical (%zu images, with and without the prompt '%s'), max |Δ image embedding| %.3g, teacher-forced max "
                "|Δlogit| vs transformers %.3g\n",
                name.c_str(), o.generated.size(), ref["prompt"].get<std::string>().c_str(), emb_worst, worst);

    // the KV cache gives what recomputing the whole prefix gives
    const auto& gen = o.generated[0];
    const int64_t V = model->config().vocab;
    std::vector<float> full(gen.size() * static_cast<size_t>(V));
    model->image_logits(px0.data(), std::span(gen).first(gen.size() - 1), full.data());
    for (size_t t = 0; t + 1 < gen.size(); ++t) {
        const float* row = full.data() + t * static_cast<size_t>(V);
        EXPECT_EQ(static_cast<int32_t>(std::max_element(row, row + V) - row), gen[t + 1]) << name << " step " << t;
    }

    // the same bytes at 1 and 3 threads
    ThreadPool::set_global_threads(1);
    const CaptionOutputs one = run_captions(*model, ref);
    ThreadPool::set_global_threads(3);
    const CaptionOutputs three = run_captions(*model, ref);
    ThreadPool::set_global_threads(0);
    EXPECT_EQ(one.logits, three.logits) << name;
    EXPECT_EQ(one.generated, three.generated) << name;
    EXPECT_EQ(one.prompted, three.prompted) << name;
    return worst;
}

TEST(families_blip, TinyMatchesTransformers) {
    // vision 32×32 / patch 8, width 40, 2 layers, 4 heads; text width 32, 2 layers, 4 heads, label smoothing 0.1
    expect_blip_matches("blip-tiny-random", 2, 2);
}

TEST(families_blip, SecondConfigMatchesTransformers) {
    // MNIST-shaped 28×28 / patch 7, width 32, 1 layer, 2 heads, gelu_new, eps 1e-6; text width 24, 3 layers, 3 heads
    expect_blip_matches("blip-mnist-random-b", 1, 3);
}

TEST(families_blip, CaptionLossMatchesTransformers) {
    // evaluate_captions over the reference's (image, caption) pairs: the plain summed NLL, and transformers' loss (the
    // mean with text_config.label_smoothing) times the token count
    for (const char* name : {"blip-tiny-random", "blip-mnist-random-b"}) {
        const auto model = Seq2SeqModel::load(family_dir(name));
        const nlohmann::json ref = read_json(family_dir(name) + "/reference.json");
        const std::vector<CaptionPair> pairs = pairs_of(ref);
        double smoothed = 0;
        const Seq2SeqEvalResult r = evaluate_captions(*model, pairs, &smoothed);
        EXPECT_EQ(r.pairs, static_cast<int64_t>(pairs.size()));
        EXPECT_EQ(r.tokens, ref["tokens"].get<int64_t>()) << name;
        const double tokens = ref["tokens"].get<double>();
        EXPECT_NEAR(r.mean_nll, ref["nll_sum"].get<double>() / tokens, 1e-6) << name;
        EXPECT_NEAR(smoothed, ref["loss_smoothed_sum"].get<double>() / tokens, 1e-6) << name;
        EXPECT_FLOAT_EQ(model->config().label_smoothing, ref["label_smoothing"].get<float>()) << name;
        std::printf("%s: caption loss mean NLL %.7f (transformers %.7f), with label smoothing %.2f: %.7f (transformers %.7f)\n", name, r.mean_nll,
                    ref["nll_sum"].get<double>() / tokens, model->config().label_smoothing, smoothed, ref["loss_smoothed_sum"].get<double>() / tokens);
    }
}

TEST(families_blip, W8A8DynamicAndStaticAgreeWithFp32) {
    // quantize_captioner_w8a8 on every block Linear (vision and text): the caption loss, the arg-max agreement of the
    // teacher-forced logits and the greedy captions against FP32
    for (const char* name : {"blip-tiny-random", "blip-mnist-random-b"}) {
        const nlohmann::json ref = read_json(family_dir(name) + "/reference.json");
        const std::vector<CaptionPair> pairs = pairs_of(ref);
        const auto fp = Seq2SeqModel::load(family_dir(name));
        const double fp32 = evaluate_captions(*fp, pairs).mean_nll;
        const CaptionOutputs base = run_captions(*fp, ref);
        for (const bool is_static : {false, true}) {
            const auto model = Seq2SeqModel::load(family_dir(name));
            const int64_t blocks = model->config().encoder_layers * 6 + model->config().decoder_layers * 10;
            EXPECT_EQ(quantize_captioner_w8a8(*model, is_static ? ActivationQuant::static_per_tensor : ActivationQuant::dynamic_per_token, pairs), blocks);
            const double q = evaluate_captions(*model, pairs).mean_nll;
            const CaptionOutputs o = run_captions(*model, ref);
            const int64_t V = model->config().vocab;
            int64_t agree = 0, rows = 0;
            for (size_t r = 0; r * static_cast<size_t>(V) < o.logits.size(); ++r, ++rows) {
                const auto a = o.logits.begin() + static_cast<std::ptrdiff_t>(r * V), b = base.logits.begin() + static_cast<std::ptrdiff_t>(r * V);
                agree += (std::max_element(a, a + V) - a) == (std::max_element(b, b + V) - b);
            }
            int64_t same_captions = 0;
            for (size_t i = 0; i < o.generated.size(); ++i) same_captions += o.generated[i] == base.generated[i];
            std::printf("%s W8A8 %s: mean NLL %.5f vs FP32 %.5f, teacher-forced arg-max agreement %lld/%lld, greedy captions identical %lld/%zu\n", name,
                        is_static ? "static (minmax)" : "dynamic", q, fp32, static_cast<long long>(agree), static_cast<long long>(rows),
                        static_cast<long long>(same_captions), o.generated.size());
            EXPECT_LT(std::abs(q - fp32), 0.05 * fp32) << name;
            EXPECT_GE(agree * 10, rows * 8) << name;
        }
    }
    const auto model = Seq2SeqModel::load(family_dir("blip-tiny-random"));
    EXPECT_THROW(quantize_captioner_w8a8(*model, ActivationQuant::static_per_tensor), InvalidArgument);
}

TEST(families_blip, ClearErrors) {
    const auto model = Seq2SeqModel::load(family_dir("blip-tiny-random"));
    const nlohmann::json ref = read_json(family_dir("blip-tiny-random") + "/reference.json");
    const std::vector<uint8_t> px = image_of(ref, 0);
    std::vector<float> out(64 * static_cast<size_t>(model->config().vocab));
    const std::vector<int32_t> ids{static_cast<int32_t>(model->config().decoder_start_token_id)};
    expect_error([&] { model->logits(ids, ids, out.data()); }, {"encodes images"});
    EXPECT_THROW(model->generate_caption(px.data(), {}, 0), InvalidArgument);
    EXPECT_THROW(model->image_logits(nullptr, ids, out.data()), InvalidArgument);
    const std::vector<int32_t> too_long(33, 5);  // 32 positions
    EXPECT_THROW(model->image_logits(px.data(), too_long, out.data()), InvalidArgument);
    std::vector<CaptionPair> wrong{{std::vector<uint8_t>(10), "a photo"}};
    expect_error([&] { evaluate_captions(*model, wrong); }, {"image 0 holds 10 bytes"});
    // a text model has no image entry point
    const auto bart = Seq2SeqModel::load(family_dir("bart-tiny-random"));
    expect_error([&] { bart->encode_image(px.data()); }, {"takes token ids, not images"});

    const auto edited = [](const test::TempDir& dir, const std::function<void(nlohmann::json&)>& edit) { return edited_copy(dir, "blip-tiny-random", edit); };
    {
        test::TempDir dir("cq_blip");
        const std::string p = edited(dir, [](nlohmann::json& c) { c["text_config"]["num_hidden_layers"] = 3; });
        expect_error([&] { Seq2SeqModel::load(p); }, {"text_decoder.bert.encoder.layer.2.attention.self.query.weight' is missing"});
    }
    {
        test::TempDir dir("cq_blip");
        const std::string p = edited(dir, [](nlohmann::json& c) { c["vision_config"]["patch_size"] = 5; });
        expect_error([&] { Seq2SeqModel::load(p); }, {"vision_config.image_size 32 is not a multiple of vision_config.patch_size 5", "config.json"});
    }
    {
        test::TempDir dir("cq_blip");
        const std::string p = edited(dir, [](nlohmann::json& c) { c["text_config"]["num_attention_heads"] = 5; });
        expect_error([&] { Seq2SeqModel::load(p); }, {"text_config.num_attention_heads 5", "config.json"});
    }
    {
        test::TempDir dir("cq_blip");
        const std::string p = edited(dir, [](nlohmann::json& c) { c["text_config"]["hidden_act"] = "mish"; });
        expect_error([&] { Seq2SeqModel::load(p); }, {"hidden_act 'mish'", "text_config"});
    }
    {
        test::TempDir dir("cq_blip");
        const std::string p = edited(dir, [](nlohmann::json& c) { c["vision_config"]["hidden_size"] = 48; });
        expect_error([&] { Seq2SeqModel::load(p); }, {"has shape", "model.safetensors"});
    }
    {
        test::TempDir dir("cq_blip");
        const std::string p = edited(dir, [](nlohmann::json& c) { c["architectures"] = {"BlipForQuestionAnswering"}; });
        expect_error([&] { Seq2SeqModel::load(p); }, {"BlipForQuestionAnswering", "BlipForConditionalGeneration (blip)"});
    }
    {
        test::TempDir dir("cq_blip");
        const std::string p = edited(dir, [](nlohmann::json& c) { c["text_config"]["sep_token_id"] = 5000; });
        expect_error([&] { Seq2SeqModel::load(p); }, {"special token id 5000", "config.json"});
    }
}

}  // namespace
}  // namespace cq
