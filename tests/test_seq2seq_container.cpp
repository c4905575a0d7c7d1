// cq's encoder–decoder container (Seq2SeqModel::save / load, `cq quantize` on BART / T5 / BLIP directories): a quantized
// model written and read back is the in-memory model (same logits and generations, bit for bit) for W8A8 dynamic and
// static and for weight-only blocks, BLIP's fused qkv included; the FP32 container equals the directory; the CLI's
// same-run loss equals the library's in-memory quantization; errors are clear and leave no file.
#include <nlohmann/json.hpp>

#include "command_runner.h"
#include "cq/io/gguf.h"
#include "cq/model.h"
#include "cq/w8a8.h"
#include "seq2seq_test_support.h"

namespace cq {
namespace {

using namespace test::seq2seq;

// Teacher-forced logits and greedy outputs on the reference inputs: text pairs, or (BLIP) images and captions.
Outputs outputs(Seq2SeqModel& m, const nlohmann::json& ref) {
    if (!m.takes_images()) return run(m, ref);
    Outputs o;
    for (size_t i = 0; i < ref["pixels_u8"].size(); ++i) {
        const std::vector<uint8_t> px = image_of(ref, i);
        o.generated.push_back(m.generate_caption(px.data(), {}, ref["max_new_tokens"].get<int64_t>()));
        const auto ids = ref["input_ids"][i].get<std::vector<int32_t>>();
        std::vector<float> l(ids.size() * static_cast<size_t>(m.config().vocab));
        m.image_logits(px.data(), ids, l.data());
        o.logits.insert(o.logits.end(), l.begin(), l.end());
    }
    return o;
}

void expect_same(const Outputs& a, const Outputs& b, const std::string& what) {
    EXPECT_EQ(a.generated, b.generated) << what;
    ASSERT_EQ(a.logits.size(), b.logits.size()) << what;
    EXPECT_TRUE(a.logits == b.logits) << what;
}

TEST(Seq2SeqContainer, QuantizedModelsReloadBitForBit) {
    for (const char* name : {"bart-tiny-random", "t5v11-tiny-random", "t5-tiny-random", "blip-tiny-random"}) {
        const nlohmann::json ref = read_json(family_dir(name) + "/reference.json");
        for (const std::string form : {"f32", "w8a8-dynamic", "w8a8-static", "q8_0"}) {
            if (form == "w8a8-static" && std::string(name) == "blip-tiny-random") continue;  // needs caption pairs (below)
            auto model = Seq2SeqModel::load(family_dir(name));
            int64_t rewritten = 0;
            if (form == "w8a8-dynamic") rewritten = model->takes_images() ? quantize_captioner_w8a8(*model, ActivationQuant::dynamic_per_token)
                                                                          : quantize_seq2seq_w8a8(*model, ActivationQuant::dynamic_per_token);
            if (form == "w8a8-static") rewritten = quantize_seq2seq_w8a8(*model, ActivationQuant::static_per_tensor, pairs_tsv(), 16, 48);
            if (form == "q8_0") rewritten = quantize_seq2seq_weights(*model, DType::Q8_0);
            if (form != "f32") EXPECT_GT(rewritten, 0) << name << " " << form;
            const Outputs in_memory = outputs(*model, ref);
            test::TempDir dir("cq_seq2seq");
            model->save(dir.file("m.gguf"));
            auto reloaded = Model::load(dir.file("m.gguf"));
            auto* s2s = dynamic_cast<Seq2SeqModel*>(reloaded.get());
            ASSERT_NE(s2s, nullptr) << name;
            expect_same(outputs(*s2s, ref), in_memory, std::string(name) + " " + form);
            int64_t int8 = 0, q8 = 0;
            for (const Linear* l : s2s->linears()) int8 += bool(l->int8), q8 += l->weight.dtype() == DType::Q8_0;
            EXPECT_EQ(form.starts_with("w8a8") ? int8 : form == "q8_0" ? q8 : int8 + q8, rewritten) << name << " " << form;
            // The FP32 container is the directory's model.
            if (form == "f32") {
                auto original = Seq2SeqModel::load(family_dir(name));
                expect_same(outputs(*s2s, ref), outputs(*original, ref), std::string(name) + " f32 vs directory");
            }
        }
    }
}

TEST(Seq2SeqContainer, ContainerCannotBeSavedAgainAndTiedQuantizedHeadIsRefused) {
    test::TempDir dir("cq_seq2seq");
    auto model = Seq2SeqModel::load(family_dir("t5-tiny-random"));
    model->save(dir.file("a.gguf"));
    auto reloaded = Seq2SeqModel::load(dir.file("a.gguf"));
    expect_error([&] { reloaded->save(dir.file("b.gguf")); }, {"already cq's encoder–decoder container"});
    // t5-tiny-random (v1.0) ties its head to the shared embeddings
    Linear* head = model->linears().back();
    ASSERT_EQ(head->source_name, "shared");
    model->quantize_linear(*head, DType::Q8_0);
    expect_error([&] { model->save(dir.file("c.gguf")); }, {"tied to 'shared'"});
    EXPECT_FALSE(std::filesystem::exists(dir.file("c.gguf")));
    // an encoder container is not an encoder–decoder's
    expect_error([&] { Seq2SeqModel::load(test::fixture("models/stories260K-gguf/stories260K.gguf")); }, {"not a cq encoder–decoder container"});
}

TEST(Seq2SeqContainer, CliQuantizeReportsSizeAndTheSameLossAsTheLibrary) {
    const std::string cq = CQ_CLI_PATH, dir = family_dir("t5v11-tiny-random");
    test::TempDir tmp("cq_seq2seq");
    const auto r = test::run_command(cq + " quantize " + dir + " " + tmp.file("s.gguf") + " --type w8a8-static --calib " + pairs_tsv() +
                                     " --calib-range 16:48 --calib-method minmax --eval " + pairs_tsv() + " --eval-range 0:16 --json");
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const auto j = nlohmann::json::parse(r.out);
    EXPECT_EQ(j["quantize"]["type"], "w8a8-static");
    EXPECT_GT(j["quantize"]["quantized"].get<int64_t>(), 0);
    EXPECT_LT(j["quantize"]["file_bytes_out"].get<uint64_t>(), j["quantize"]["file_bytes_in"].get<uint64_t>());
    // Independent of the CLI and the container: the same quantization in memory, evaluated on the same pairs.
    auto model = Seq2SeqModel::load(dir);
    const Seq2SeqEvalResult f32 = evaluate_pairs(*model, pairs_tsv(), 0, 16);
    quantize_seq2seq_w8a8(*model, ActivationQuant::static_per_tensor, pairs_tsv(), 16, 48, calib::Method::minmax);
    const Seq2SeqEvalResult q = evaluate_pairs(*model, pairs_tsv(), 0, 16);
    EXPECT_DOUBLE_EQ(j["eval"]["before"]["mean_nll"].get<double>(), f32.mean_nll);
    EXPECT_DOUBLE_EQ(j["eval"]["after"]["mean_nll"].get<double>(), q.mean_nll);
    EXPECT_NEAR(q.mean_nll, f32.mean_nll, 0.05);

    const auto four = test::run_command(cq + " quantize " + family_dir("bart-tiny-random") + " " + tmp.file("q4.gguf") + " --type q4_0 --json");
    ASSERT_EQ(four.exit_code, 0) << four.err;
    EXPECT_EQ(gguf::File::open(tmp.file("q4.gguf")).get_string("general.architecture"), "cq-seq2seq");

    const auto bad = test::run_command(cq + " quantize " + dir + " " + tmp.file("x.gguf") + " --type w8a8-static");
    EXPECT_NE(bad.exit_code, 0);
    EXPECT_NE(bad.err.find("calibration"), std::string::npos) << bad.err;
    EXPECT_FALSE(std::filesystem::exists(tmp.file("x.gguf")));
    const auto blip = test::run_command(cq + " quantize " + family_dir("blip-tiny-random") + " " + tmp.file("y.gguf") + " --type w8a8-static --calib " + pairs_tsv());
    EXPECT_NE(blip.exit_code, 0);
    EXPECT_NE(blip.err.find("no 'image' column"), std::string::npos) << blip.err;  // text pairs are not caption pairs (test_blip_captions_cli)
}

}  // namespace
}  // namespace cq
