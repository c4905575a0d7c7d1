// cq export of the encoder–decoders (T5 v1.0 / v1.1, BART, BLIP captioning; issue 20) against ONNX Runtime. ORT ran cq's
// exports of the tiny random family models (tests/data/families) on the inputs of their transformers references
// (scripts/onnx_reference_seq2seq → tests/expected/onnx/<name>.seq2seq.fp32.json, with the CRC-32 of the three graphs it
// ran, which the test re-exports and checks). Checked: cq's logits vs ORT's (decoder_model, and decoder_with_past one
// token at a time), ORT's vs transformers', ORT's greedy tokens through the graphs = cq's = transformers', the same
// bytes at any thread count, and the errors.
#include <filesystem>

#include "command_runner.h"
#include "cq/model.h"
#include "cq/onnx.h"
#include "models/seq2seq_internal.h"
#include "seq2seq_test_support.h"

namespace cq {
namespace {

using namespace test::seq2seq;

const char* const kFiles[] = {"encoder_model.onnx", "decoder_model.onnx", "decoder_with_past_model.onnx"};

nlohmann::json ort_reference(const std::string& name, const std::string& format = "fp32") {
    const std::string path = test::tests_dir() + "/expected/onnx/" + name + ".seq2seq." + format + ".json";
    if (!std::filesystem::exists(path)) throw IoError("cannot open " + path + " (run scripts/onnx_reference_seq2seq)");
    return read_json(path);
}

// Exports `model` into dir and checks that the three graphs are the ones ONNX Runtime ran.
OnnxExportReport export_and_check_graphs(const Model& model, const test::TempDir& dir, const nlohmann::json& ort, const std::string& name,
                                         const OnnxExportOptions& options = {}) {
    const OnnxExportReport report = export_onnx(model, dir.file("onnx"), options);
    EXPECT_EQ(report.files.size(), 3u) << name;
    if (report.files.size() != 3u) return report;
    for (size_t i = 0; i < 3; ++i) {
        EXPECT_EQ(report.files[i].path, dir.file("onnx") + "/" + kFiles[i]);
        const auto bytes = test::read_bytes(report.files[i].path);
        EXPECT_EQ(test::crc32(bytes.data(), bytes.size()), ort["onnx_crc32"][kFiles[i]].get<uint32_t>())
            << name << " " << kFiles[i] << " differs from the graph ONNX Runtime ran: rerun scripts/onnx_reference_seq2seq if the change is intended";
    }
    return report;
}

// max |a[i] − b[i]| over a's elements (b a flat JSON array of as many)
double max_diff(const float* a, size_t n, const nlohmann::json& b) {
    EXPECT_EQ(b.size(), n);
    double worst = 0;
    for (size_t i = 0; i < std::min(n, b.size()); ++i) worst = std::max(worst, std::fabs(double{a[i]} - b[i].get<double>()));
    return worst;
}

// transformers' nested [rows][vocab] logits, flattened
std::vector<float> flat(const nlohmann::json& rows) {
    std::vector<float> out;
    for (const auto& row : rows)
        for (const auto& v : row) out.push_back(v.get<float>());
    return out;
}

struct Worst {
    double cq = 0, steps = 0, transformers = 0;
    void add(const std::vector<float>& cq_logits, const nlohmann::json& ort_logits, const nlohmann::json& ort_steps, const nlohmann::json& hf_logits,
             int64_t from, int64_t V) {
        cq = std::max(cq, max_diff(cq_logits.data(), cq_logits.size(), ort_logits));
        steps = std::max(steps, max_diff(cq_logits.data() + from * V, cq_logits.size() - static_cast<size_t>(from * V), ort_steps));
        const std::vector<float> hf = flat(hf_logits);
        std::vector<float> ort(ort_logits.size());
        for (size_t i = 0; i < ort.size(); ++i) ort[i] = ort_logits[i].get<float>();
        transformers = std::max(transformers, max_diff(ort.data(), ort.size(), nlohmann::json(hf)));
    }
    void expect(const std::string& name) const {
        EXPECT_LE(cq, 1e-4) << name << ": cq's teacher-forced logits vs ORT's (decoder_model)";
        EXPECT_LE(steps, 1e-4) << name << ": cq's logits vs ORT's through decoder_with_past";
        EXPECT_LE(transformers, 1e-4) << name << ": ORT's logits vs transformers'";
    }
};

// T5 / BART: the padded batch of the first two reference sources (ORT ran it with the attention mask; cq runs each
// source's real tokens), and greedy generation of all three.
void check_text(const std::string& name) {
    auto model = Seq2SeqModel::load(family_dir(name));
    const nlohmann::json hf = read_json(family_dir(name) + "/reference.json"), ort = ort_reference(name);
    test::TempDir dir;
    export_and_check_graphs(*model, dir, ort, name);
    const int64_t V = model->config().vocab, from = ort["from"];
    ASSERT_EQ(ort["vocab"].get<int64_t>(), V);
    Worst worst;
    for (size_t i = 0; i < hf["decoder_input_ids"].size(); ++i) {
        const auto dec = hf["decoder_input_ids"][i].get<std::vector<int32_t>>();
        std::vector<float> logits(dec.size() * static_cast<size_t>(V));
        model->logits(source_of(hf, i), dec, logits.data());
        worst.add(logits, ort["logits"][i], ort["step_logits"][i], hf["logits"][i], from, V);
    }
    worst.expect(name);
    const int64_t max_new = hf["max_new_tokens"];
    for (size_t i = 0; i < hf["sources"].size(); ++i) {
        const std::vector<int32_t> cq_tokens = model->generate_greedy(source_of(hf, i), max_new);
        EXPECT_EQ(cq_tokens, ort["greedy"][i].get<std::vector<int32_t>>()) << name << " source " << i << ": cq vs ORT";
        EXPECT_EQ(cq_tokens, hf["generated"][i].get<std::vector<int32_t>>()) << name << " source " << i << ": cq vs transformers";
    }
    std::printf("[onnx] %s: max |logits − ORT| decoder_model %.3g, decoder_with_past %.3g; ORT vs transformers %.3g; %zu greedy generations equal\n",
                name.c_str(), worst.cq, worst.steps, worst.transformers, hf["sources"].size());
}

// BLIP: every reference image (one at a time), its caption teacher-forced, greedy captions with and without the prompt.
void check_captioner(const std::string& name) {
    auto model = Seq2SeqModel::load(family_dir(name));
    const nlohmann::json hf = read_json(family_dir(name) + "/reference.json"), ort = ort_reference(name);
    test::TempDir dir;
    export_and_check_graphs(*model, dir, ort, name);
    const int64_t V = model->config().vocab, from = ort["from"], max_new = hf["max_new_tokens"];
    const auto prompt = hf["prompt_ids"].get<std::vector<int32_t>>();
    ASSERT_EQ(model->caption_prompt(hf["prompt"].get<std::string>()), prompt);
    Worst worst;
    double embeds = 0, embeds_hf = 0;
    for (size_t i = 0; i < hf["pixels_u8"].size(); ++i) {
        const auto pixels = hf["pixels_u8"][i].get<std::vector<uint8_t>>();
        if (i == 0) {
            const std::vector<float> e = model->encode_image(pixels.data()), hf_e = flat(hf["image_embeds_0"]);
            embeds = max_diff(e.data(), e.size(), ort["image_embeds_0"]);
            embeds_hf = max_diff(hf_e.data(), hf_e.size(), ort["image_embeds_0"]);
        }
        const auto ids = hf["input_ids"][i].get<std::vector<int32_t>>();
        std::vector<float> logits(ids.size() * static_cast<size_t>(V));
        model->image_logits(pixels.data(), ids, logits.data());
        worst.add(logits, ort["logits"][i], ort["step_logits"][i], hf["logits"][i], from, V);
        const std::vector<int32_t> plain = model->generate_caption(pixels.data(), {}, max_new), prompted = model->generate_caption(pixels.data(), prompt, max_new);
        EXPECT_EQ(plain, ort["greedy"][i].get<std::vector<int32_t>>()) << name << " image " << i << ": cq vs ORT";
        EXPECT_EQ(plain, hf["generated"][i].get<std::vector<int32_t>>()) << name << " image " << i << ": cq vs transformers";
        EXPECT_EQ(prompted, ort["greedy_with_prompt"][i].get<std::vector<int32_t>>()) << name << " image " << i << " (prompt): cq vs ORT";
        EXPECT_EQ(prompted, hf["generated_with_prompt"][i].get<std::vector<int32_t>>()) << name << " image " << i << " (prompt): cq vs transformers";
    }
    worst.expect(name);
    EXPECT_LE(embeds, 1e-4) << name << ": cq's image embeddings vs ORT's encoder_model";
    EXPECT_LE(embeds_hf, 1e-4) << name << ": ORT's image embeddings vs transformers'";
    std::printf("[onnx] %s: max |image embeddings − ORT| %.3g (ORT vs transformers %.3g); max |logits − ORT| decoder_model %.3g, "
                "decoder_with_past %.3g; ORT vs transformers %.3g; %zu × 2 greedy captions equal\n",
                name.c_str(), embeds, embeds_hf, worst.cq, worst.steps, worst.transformers, hf["pixels_u8"].size());
}

TEST(OnnxExportSeq2Seq, T5V10MatchesOnnxRuntime) { check_text("t5-tiny-random"); }
TEST(OnnxExportSeq2Seq, T5V10SecondConfigMatchesOnnxRuntime) { check_text("t5-random-b"); }
TEST(OnnxExportSeq2Seq, T5V11MatchesOnnxRuntime) { check_text("t5v11-tiny-random"); }
TEST(OnnxExportSeq2Seq, T5V11SecondConfigMatchesOnnxRuntime) { check_text("t5v11-random-b"); }
TEST(OnnxExportSeq2Seq, BartMatchesOnnxRuntime) { check_text("bart-tiny-random"); }
TEST(OnnxExportSeq2Seq, BartSecondConfigMatchesOnnxRuntime) { check_text("bart-random-b"); }
TEST(OnnxExportSeq2Seq, BlipMatchesOnnxRuntime) { check_captioner("blip-tiny-random"); }
TEST(OnnxExportSeq2Seq, BlipSecondConfigMatchesOnnxRuntime) { check_captioner("blip-mnist-random-b"); }

// The quantized forms, through the shared Emitter, of models quantized as `cq quantize` does for encoder–decoders (every
// block Linear; the head stays f32). scripts/onnx_reference_seq2seq exported them from cq's container; the CRCs show the
// in-memory quantization here gives the same graphs.
//
// Q4_0 as MatMulNBits, exported at accuracy_level 0: ORT multiplies float activations by the dequantized Q4_0 weights,
// which is exactly cq's float forward over those weights (set as f32), so the bar is FP32's: 1e-4 and equal greedy
// tokens. (cq's own Q4_0 run quantizes activations to Q8_0 blocks and differs by more: printed.)
void check_matmulnbits(const std::string& name) {
    auto model = Seq2SeqModel::load(family_dir(name));
    for (Linear* l : model->linears())
        if (l->block >= 0) model->quantize_linear(*l, DType::Q4_0);
    const nlohmann::json hf = read_json(family_dir(name) + "/reference.json"), ort = ort_reference(name, "matmulnbits-q4_0");
    test::TempDir dir;
    OnnxExportOptions o;
    o.format = OnnxFormat::matmulnbits;
    o.nbits_accuracy_level = 0;
    const OnnxExportReport report = export_and_check_graphs(*model, dir, ort, name + " q4_0", o);
    int64_t encoder_linears = 0;
    for (const Linear* l : std::as_const(*model).linears()) encoder_linears += l->block >= 0 && l->block < model->config().encoder_layers;
    EXPECT_EQ(report.files[0].linears.at("MatMulNBits 4-bit"), encoder_linears) << name;
    const int64_t V = model->config().vocab, from = ort["from"];
    const auto logits_of = [&](size_t i) {
        const auto dec = hf["decoder_input_ids"][i].get<std::vector<int32_t>>();
        std::vector<float> logits(dec.size() * static_cast<size_t>(V));
        model->logits(source_of(hf, i), dec, logits.data());
        return logits;
    };
    double own = 0;  // cq's Q4_0 × Q8_0 run
    for (size_t i = 0; i < hf["decoder_input_ids"].size(); ++i) {
        const std::vector<float> l = logits_of(i);
        own = std::max(own, max_diff(l.data(), l.size(), ort["logits"][i]));
    }
    for (Linear* l : model->linears())
        if (l->block >= 0) {
            Tensor w = Tensor::zeros({l->n_out(), l->n_in()}, DType::F32);
            const std::vector<float> values = l->weight.to_float();
            std::copy(values.begin(), values.end(), static_cast<float*>(w.mutable_data()));
            model->set_weight(*l, std::move(w));
        }
    double worst = 0, steps = 0;
    for (size_t i = 0; i < hf["decoder_input_ids"].size(); ++i) {
        const std::vector<float> l = logits_of(i);
        worst = std::max(worst, max_diff(l.data(), l.size(), ort["logits"][i]));
        steps = std::max(steps, max_diff(l.data() + from * V, l.size() - static_cast<size_t>(from * V), ort["step_logits"][i]));
    }
    EXPECT_LE(worst, 1e-4) << name << " q4_0: cq's float forward over the Q4_0 weights vs ORT's MatMulNBits";
    EXPECT_LE(steps, 1e-4) << name << " q4_0, decoder_with_past";
    for (size_t i = 0; i < hf["sources"].size(); ++i)
        EXPECT_EQ(model->generate_greedy(source_of(hf, i), hf["max_new_tokens"]), ort["greedy"][i].get<std::vector<int32_t>>()) << name << " q4_0 source " << i;
    std::printf("[onnx] %s q4_0 matmulnbits (accuracy_level 0): max |logits − ORT| %.3g, with past %.3g (cq's Q4_0 × Q8_0 run: %.3g); "
                "%zu greedy generations equal\n",
                name.c_str(), worst, steps, own, hf["sources"].size());
}

TEST(OnnxExportSeq2Seq, T5Q4_0AsMatMulNBitsMatchesOnnxRuntime) { check_matmulnbits("t5-tiny-random"); }
TEST(OnnxExportSeq2Seq, BartQ4_0AsMatMulNBitsMatchesOnnxRuntime) { check_matmulnbits("bart-tiny-random"); }

// T5's relative positions are looked up in a table over −max_distance..max_distance, farther ones clipped to its ends: the
// bucket function must be constant beyond them (t5-random-b's sources, 27 tokens against max_distance 20, cross it).
TEST(OnnxExportSeq2Seq, RelativeBucketsSaturateAtMaxDistance) {
    for (const char* name : {"t5-tiny-random", "t5-random-b", "t5v11-tiny-random", "t5v11-random-b"}) {
        const auto model = Seq2SeqModel::load(family_dir(name));
        const Seq2SeqConfig& c = model->config();
        const int64_t md = c.relative_max_distance;
        for (const bool bidirectional : {true, false})
            for (int64_t r = md; r <= 20 * md; ++r) {
                ASSERT_EQ(t5::relative_position_bucket(r, bidirectional, c.relative_buckets, md), t5::relative_position_bucket(md, bidirectional, c.relative_buckets, md))
                    << name << " +" << r;
                ASSERT_EQ(t5::relative_position_bucket(-r, bidirectional, c.relative_buckets, md), t5::relative_position_bucket(-md, bidirectional, c.relative_buckets, md))
                    << name << " −" << r;
            }
    }
}

TEST(OnnxExportSeq2Seq, SameBytesForAnyThreadCount) {
    for (const char* name : {"t5v11-tiny-random", "blip-tiny-random"}) {
        auto model = Seq2SeqModel::load(family_dir(name));
        test::TempDir dir;
        ThreadPool::set_global_threads(1);
        export_onnx(*model, dir.file("a"));
        ThreadPool::set_global_threads(3);
        export_onnx(*model, dir.file("b"));
        ThreadPool::set_global_threads(0);
        for (const char* f : kFiles) EXPECT_EQ(test::read_bytes(dir.file("a/") + f), test::read_bytes(dir.file("b/") + f)) << name << " " << f;
    }
}

TEST(OnnxExportSeq2Seq, NoPastWritesTwoGraphs) {
    auto model = Seq2SeqModel::load(family_dir("bart-tiny-random"));
    test::TempDir dir;
    OnnxExportOptions o;
    o.with_past = false;
    const OnnxExportReport r = export_onnx(*model, dir.file("out"), o);
    ASSERT_EQ(r.files.size(), 2u);
    EXPECT_EQ(r.files[0].graph, "encoder");
    EXPECT_EQ(r.files[1].graph, "decoder");
    EXPECT_EQ(r.files[0].inputs, (std::vector<std::string>{"input_ids", "attention_mask"}));
    EXPECT_EQ(r.files[0].outputs, (std::vector<std::string>{"last_hidden_state"}));
    EXPECT_EQ(r.files[1].inputs, (std::vector<std::string>{"input_ids", "encoder_attention_mask", "encoder_hidden_states"}));
    EXPECT_EQ(r.files[1].outputs.size(), 1u + 4u * 2u);  // logits + 2 layers × decoder / encoder key / value
    EXPECT_FALSE(std::filesystem::exists(dir.file("out/decoder_with_past_model.onnx")));
}

TEST(OnnxExportSeq2Seq, ErrorsAreClearAndLeaveNoFile) {
    auto model = Seq2SeqModel::load(family_dir("t5-tiny-random"));
    test::TempDir dir;
    // three graphs need a directory
    expect_error([&] { export_onnx(*model, dir.file("t5.onnx")); }, {"give a directory", "t5.onnx"});
    OnnxExportOptions old;
    old.opset = 13;
    expect_error([&] { export_onnx(*model, dir.file("out"), old); }, {"opset 13"});
    EXPECT_THROW(export_onnx(*model, dir.file("missing/out")), IoError);
    // W8A8 static Q/DQ of a model with no W8A8 Linears
    OnnxExportOptions qdq;
    qdq.format = OnnxFormat::qdq;
    expect_error([&] { export_onnx(*model, dir.file("out"), qdq); }, {"holds no W8A8 Linears"});
    EXPECT_TRUE(std::filesystem::is_empty(dir.path()));
    // the variants cq does not run are refused by name before any export (pre-LN BART: mBART's layout)
    test::TempDir copy;
    const std::string pre_ln = edited_copy(copy, "bart-tiny-random", [](nlohmann::json& c) { c["normalize_before"] = true; });
    try {
        Model::load(pre_ln);
        ADD_FAILURE() << "pre-LN BART loaded";
    } catch (const Unsupported& e) {
        EXPECT_NE(std::string(e.what()).find("normalize_before"), std::string::npos) << e.what();
    }
}

#ifdef CQ_CLI_PATH
// `cq export` on a family directory writes Optimum's three files and says so.
TEST(OnnxExportSeq2Seq, CliWritesOptimumLayout) {
    test::TempDir dir;
    const auto r = test::run_command(std::string(CQ_CLI_PATH) + " export " + family_dir("blip-tiny-random") + " " + dir.file("blip") + " --json");
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const nlohmann::json j = nlohmann::json::parse(r.out);
    EXPECT_EQ(j["architecture"], "BlipForConditionalGeneration");
    ASSERT_EQ(j["files"].size(), 3u);
    EXPECT_EQ(j["files"][0]["inputs"], nlohmann::json::array({"pixel_values"}));
    EXPECT_EQ(j["files"][2]["graph"], "decoder_with_past");
    for (const char* f : kFiles) EXPECT_TRUE(std::filesystem::is_regular_file(dir.file("blip/") + f)) << f;
    const auto bad = test::run_command(std::string(CQ_CLI_PATH) + " export " + family_dir("t5-tiny-random") + " " + dir.file("t5.onnx"));
    EXPECT_NE(bad.exit_code, 0);
    EXPECT_NE(bad.err.find("give a directory"), std::string::npos) << bad.err;
}
#endif

}  // namespace
}  // namespace cq
