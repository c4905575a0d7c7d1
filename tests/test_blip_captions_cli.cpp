// BLIP's (image, caption) data path (issue 20): load_caption_pairs reads a TSV of PNG paths and captions, and `cq eval` /
// `cq quantize --type w8a8-static --calib … --eval …` run on it. The reference images of tests/data/families/blip-*
// (transformers' pixels) are written as PNGs at test time with stb_image_write; the CLI's losses must equal the library's
// evaluate_captions on the reference pixels and transformers' loss, its greedy captions transformers', its W8A8 losses
// the library's in-memory quantize_captioner_w8a8; bad files give one error naming the file and the row.
#include <stb/stb_image_write.h>

#include "command_runner.h"
#include "cq/calibration.h"
#include "cq/w8a8.h"
#include "seq2seq_test_support.h"

namespace cq {
namespace {

using namespace test::seq2seq;

// Planar [C, H, W] bytes as a PNG (stb writes interleaved rows).
void write_png(const std::string& path, const std::vector<uint8_t>& planar, int channels, int height, int width) {
    const size_t plane = static_cast<size_t>(height) * static_cast<size_t>(width);
    ASSERT_EQ(planar.size(), plane * static_cast<size_t>(channels)) << path;
    std::vector<uint8_t> hwc(planar.size());
    for (size_t p = 0; p < plane; ++p)
        for (int c = 0; c < channels; ++c) hwc[p * static_cast<size_t>(channels) + static_cast<size_t>(c)] = planar[static_cast<size_t>(c) * plane + p];
    ASSERT_NE(stbi_write_png(path.c_str(), width, height, channels, hwc.data(), width * channels), 0) << path;
}

void write_text(const std::string& path, const std::string& text) {
    std::ofstream(path, std::ios::binary) << text;
}

// The reference's images as images/<i>.png under dir and dir/captions.tsv (an extra 'id' column first, so the columns are
// found by name), rows in the reference's order.
std::string write_reference_set(const test::TempDir& dir, const std::string& model) {
    const nlohmann::json ref = read_json(family_dir(model) + "/reference.json");
    const nlohmann::json cfg = read_json(family_dir(model) + "/config.json");
    const int size = cfg["vision_config"]["image_size"].get<int>();
    std::filesystem::create_directories(dir.file("images"));
    std::string tsv = "id\timage\tcaption\n";
    for (size_t i = 0; i < ref["captions"].size(); ++i) {
        const std::string name = "images/" + std::to_string(i) + ".png";
        write_png(dir.file(name), image_of(ref, i), 3, size, size);
        tsv += std::to_string(i) + "\t" + name + "\t" + ref["captions"][i].get<std::string>() + "\n";
    }
    write_text(dir.file("captions.tsv"), tsv);
    return dir.file("captions.tsv");
}

nlohmann::json run_json(const std::string& args) {
    const auto r = test::run_command(std::string(CQ_CLI_PATH) + " " + args + " --json");
    EXPECT_EQ(r.exit_code, 0) << args << "\n" << r.err;
    return r.exit_code == 0 ? nlohmann::json::parse(r.out) : nlohmann::json::object();
}

TEST(BlipCaptionsCli, ReaderGivesTheReferencePixels) {
    // PNG is lossless: the decoded planes are transformers' pixel bytes
    for (const char* name : {"blip-tiny-random", "blip-mnist-random-b"}) {
        test::TempDir dir("cq_blipcli");
        const std::string tsv = write_reference_set(dir, name);
        const nlohmann::json ref = read_json(family_dir(name) + "/reference.json");
        const auto model = Seq2SeqModel::load(family_dir(name));
        const std::vector<CaptionPair> pairs = load_caption_pairs(*model, tsv);
        ASSERT_EQ(pairs.size(), ref["captions"].size()) << name;
        for (size_t i = 0; i < pairs.size(); ++i) {
            EXPECT_EQ(pairs[i].pixels, image_of(ref, i)) << name << " image " << i;
            EXPECT_EQ(pairs[i].caption, ref["captions"][i].get<std::string>()) << name;
        }
        const std::vector<CaptionPair> middle = load_caption_pairs(*model, tsv, 1, 2);
        ASSERT_EQ(middle.size(), 1u);
        EXPECT_EQ(middle[0].pixels, image_of(ref, 1)) << name;
    }
    // A grey PNG becomes RGB with the grey value in every channel (BlipImageProcessor's convert_rgb); CRLF and blank lines
    test::TempDir dir("cq_blipcli");
    std::vector<uint8_t> grey(32 * 32);
    for (size_t i = 0; i < grey.size(); ++i) grey[i] = static_cast<uint8_t>(i * 7);
    write_png(dir.file("g.png"), grey, 1, 32, 32);
    write_text(dir.file("c.tsv"), "caption\timage\r\n\r\na grey digit\tg.png\r\n\n");
    const std::vector<CaptionPair> pairs = load_caption_pairs(dir.file("c.tsv"), 3, 32, 32);
    ASSERT_EQ(pairs.size(), 1u);
    EXPECT_EQ(pairs[0].caption, "a grey digit");
    for (int c = 0; c < 3; ++c)
        EXPECT_TRUE(std::equal(grey.begin(), grey.end(), pairs[0].pixels.begin() + c * 1024)) << "channel " << c;
}

TEST(BlipCaptionsCli, EvalMatchesLibraryAndTransformers) {
    for (const char* name : {"blip-tiny-random", "blip-mnist-random-b"}) {
        test::TempDir dir("cq_blipcli");
        const std::string tsv = write_reference_set(dir, name);
        const nlohmann::json ref = read_json(family_dir(name) + "/reference.json");
        const int64_t max_new = ref["max_new_tokens"].get<int64_t>();
        const nlohmann::json j = run_json("eval " + family_dir(name) + " --data " + tsv + " --generate " + std::to_string(max_new));
        // the library on the reference's pixels (not through the PNGs)
        const auto model = Seq2SeqModel::load(family_dir(name));
        double smoothed = 0;
        const Seq2SeqEvalResult lib = evaluate_captions(*model, pairs_of(ref), &smoothed);
        EXPECT_EQ(j["pairs"].get<int64_t>(), static_cast<int64_t>(ref["captions"].size())) << name;
        EXPECT_EQ(j["tokens"].get<int64_t>(), ref["tokens"].get<int64_t>()) << name;
        EXPECT_DOUBLE_EQ(j["mean_nll"].get<double>(), lib.mean_nll) << name;
        EXPECT_DOUBLE_EQ(j["loss"].get<double>(), smoothed) << name;
        EXPECT_NEAR(j["perplexity"].get<double>(), std::exp(lib.mean_nll), 1e-9 * lib.perplexity) << name;
        // transformers: the summed NLL and the label-smoothed loss over the caption tokens
        const double tokens = ref["tokens"].get<double>();
        EXPECT_NEAR(j["mean_nll"].get<double>(), ref["nll_sum"].get<double>() / tokens, 1e-6) << name;
        EXPECT_NEAR(j["loss"].get<double>(), ref["loss_smoothed_sum"].get<double>() / tokens, 1e-6) << name;
        EXPECT_FLOAT_EQ(j["label_smoothing"].get<float>(), ref["label_smoothing"].get<float>()) << name;
        // greedy captions: transformers' arg-max loop
        ASSERT_EQ(j["captions"].size(), ref["generated"].size()) << name;
        for (size_t i = 0; i < ref["generated"].size(); ++i) {
            EXPECT_EQ(j["captions"][i]["ids"].get<std::vector<int32_t>>(), ref["generated"][i].get<std::vector<int32_t>>()) << name << " image " << i;
            EXPECT_EQ(j["captions"][i]["row"].get<int64_t>(), static_cast<int64_t>(i));
            EXPECT_EQ(j["captions"][i]["reference"], ref["captions"][i]);
        }
        std::printf("%s: cq eval mean NLL %.7f (transformers %.7f), loss %.7f (transformers %.7f), %zu greedy captions identical\n", name,
                    j["mean_nll"].get<double>(), ref["nll_sum"].get<double>() / tokens, j["loss"].get<double>(),
                    ref["loss_smoothed_sum"].get<double>() / tokens, ref["generated"].size());

        // --range: rows 1..end only, the same per-pair NLL as the library on those pairs
        const nlohmann::json tail = run_json("eval " + family_dir(name) + " --data " + tsv + " --range 1:");
        const std::vector<CaptionPair> all = pairs_of(ref);
        const Seq2SeqEvalResult lib_tail = evaluate_captions(*model, std::span(all).subspan(1));
        EXPECT_EQ(tail["pairs"].get<int64_t>(), static_cast<int64_t>(all.size()) - 1);
        EXPECT_EQ(tail["rows"], nlohmann::json::array({1, static_cast<int64_t>(all.size())}));
        EXPECT_DOUBLE_EQ(tail["mean_nll"].get<double>(), lib_tail.mean_nll) << name;
        EXPECT_FALSE(tail.contains("captions"));
    }
}

TEST(BlipCaptionsCli, EvalW8A8FlagsMatchTheLibrary) {
    const std::string name = "blip-tiny-random";
    test::TempDir dir("cq_blipcli");
    const std::string tsv = write_reference_set(dir, name);
    const nlohmann::json ref = read_json(family_dir(name) + "/reference.json");
    const std::vector<CaptionPair> pairs = pairs_of(ref);
    const std::vector<CaptionPair> calib(pairs.begin() + 1, pairs.end());  // --calib-range 1:3
    for (const bool is_static : {false, true}) {
        const std::string flags = is_static ? " --w8a8-calib " + tsv + " --calib-range 1:3 --calib-method minmax" : " --w8a8-dynamic";
        const nlohmann::json j = run_json("eval " + family_dir(name) + " --data " + tsv + flags + " --generate 10");
        const auto model = Seq2SeqModel::load(family_dir(name));
        const double fp32 = evaluate_captions(*model, pairs).mean_nll;
        std::vector<std::vector<int32_t>> fp32_captions;
        for (const CaptionPair& p : pairs) fp32_captions.push_back(model->generate_caption(p.pixels.data(), {}, 10));
        const int64_t n = quantize_captioner_w8a8(*model, is_static ? ActivationQuant::static_per_tensor : ActivationQuant::dynamic_per_token,
                                                  is_static ? std::span<const CaptionPair>(calib) : std::span<const CaptionPair>{}, calib::Method::minmax);
        double smoothed = 0;
        const Seq2SeqEvalResult q = evaluate_captions(*model, pairs, &smoothed);
        EXPECT_DOUBLE_EQ(j["mean_nll"].get<double>(), fp32);
        EXPECT_DOUBLE_EQ(j["w8a8"]["mean_nll"].get<double>(), q.mean_nll) << flags;
        EXPECT_DOUBLE_EQ(j["w8a8"]["loss"].get<double>(), smoothed) << flags;
        EXPECT_NE(j["w8a8"]["form"].get<std::string>().find(std::to_string(n) + " Linears"), std::string::npos) << j["w8a8"]["form"];
        int64_t same = 0;
        for (size_t i = 0; i < pairs.size(); ++i) {
            const std::vector<int32_t> ids = model->generate_caption(pairs[i].pixels.data(), {}, 10);
            EXPECT_EQ(j["w8a8"]["captions"][i]["ids"].get<std::vector<int32_t>>(), ids) << flags << " image " << i;
            same += ids == fp32_captions[i];
        }
        EXPECT_EQ(j["w8a8"]["captions_equal_fp32"].get<int64_t>(), same) << flags;
        EXPECT_LT(std::abs(q.mean_nll - fp32), 0.05 * fp32) << flags;
        std::printf("%s cq eval%s: mean NLL %.6f → %.6f, captions equal %lld/%zu\n", name.c_str(), flags.c_str(), fp32, q.mean_nll,
                    static_cast<long long>(same), pairs.size());
    }
}

TEST(BlipCaptionsCli, QuantizeStaticWithCaptionPairs) {
    for (const char* name : {"blip-tiny-random", "blip-mnist-random-b"}) {
        test::TempDir dir("cq_blipcli");
        const std::string tsv = write_reference_set(dir, name);
        const nlohmann::json ref = read_json(family_dir(name) + "/reference.json");
        const std::vector<CaptionPair> pairs = pairs_of(ref);
        const std::string out = dir.file("s.gguf");
        const nlohmann::json j = run_json("quantize " + family_dir(name) + " " + out + " --type w8a8-static --calib " + tsv +
                                          " --calib-range 1: --calib-method minmax --eval " + tsv);
        EXPECT_EQ(j["quantize"]["type"], "w8a8-static");
        EXPECT_LT(j["quantize"]["file_bytes_out"].get<uint64_t>(), j["quantize"]["file_bytes_in"].get<uint64_t>()) << name;
        // Independent of the CLI and the container: the same quantization in memory on the reference's pixels.
        auto model = Seq2SeqModel::load(family_dir(name));
        double f32_smoothed = 0, q_smoothed = 0;
        const Seq2SeqEvalResult f32 = evaluate_captions(*model, pairs, &f32_smoothed);
        const int64_t n = quantize_captioner_w8a8(*model, ActivationQuant::static_per_tensor, std::span(pairs).subspan(1), calib::Method::minmax);
        const Seq2SeqEvalResult q = evaluate_captions(*model, pairs, &q_smoothed);
        EXPECT_EQ(j["quantize"]["quantized"].get<int64_t>(), n) << name;
        EXPECT_EQ(j["eval"]["before"]["tokens"].get<int64_t>(), ref["tokens"].get<int64_t>()) << name;
        EXPECT_DOUBLE_EQ(j["eval"]["before"]["mean_nll"].get<double>(), f32.mean_nll) << name;
        EXPECT_DOUBLE_EQ(j["eval"]["before"]["loss"].get<double>(), f32_smoothed) << name;
        EXPECT_DOUBLE_EQ(j["eval"]["after"]["mean_nll"].get<double>(), q.mean_nll) << name;
        EXPECT_DOUBLE_EQ(j["eval"]["after"]["loss"].get<double>(), q_smoothed) << name;
        EXPECT_LT(std::abs(q.mean_nll - f32.mean_nll), 0.05 * f32.mean_nll) << name;
        // the container through cq eval: the same loss and the in-memory model's captions
        const nlohmann::json e = run_json("eval " + out + " --data " + tsv + " --generate 6");
        EXPECT_DOUBLE_EQ(e["mean_nll"].get<double>(), q.mean_nll) << name;
        for (size_t i = 0; i < pairs.size(); ++i)
            EXPECT_EQ(e["captions"][i]["ids"].get<std::vector<int32_t>>(), model->generate_caption(pairs[i].pixels.data(), {}, 6)) << name << " " << i;
        std::printf("%s cq quantize w8a8-static (minmax, rows 1-): %lld Linears, %llu → %llu bytes, mean NLL %.6f → %.6f\n", name,
                    static_cast<long long>(n), static_cast<unsigned long long>(j["quantize"]["file_bytes_in"].get<uint64_t>()),
                    static_cast<unsigned long long>(j["quantize"]["file_bytes_out"].get<uint64_t>()), f32.mean_nll, q.mean_nll);
    }
    // weight-only and dynamic take --eval caption pairs too; the loss after is the in-memory quantization's
    test::TempDir dir("cq_blipcli");
    const std::string tsv = write_reference_set(dir, "blip-tiny-random");
    const std::vector<CaptionPair> pairs = pairs_of(read_json(family_dir("blip-tiny-random") + "/reference.json"));
    for (const std::string type : {"q8_0", "w8a8-dynamic"}) {
        const nlohmann::json j = run_json("quantize " + family_dir("blip-tiny-random") + " " + dir.file(type + ".gguf") + " --type " + type + " --eval " + tsv);
        auto model = Seq2SeqModel::load(family_dir("blip-tiny-random"));
        if (type == "q8_0") quantize_seq2seq_weights(*model, DType::Q8_0);
        else quantize_captioner_w8a8(*model, ActivationQuant::dynamic_per_token);
        EXPECT_DOUBLE_EQ(j["eval"]["after"]["mean_nll"].get<double>(), evaluate_captions(*model, pairs).mean_nll) << type;
    }
}

TEST(BlipCaptionsCli, BadDataIsOneClearError) {
    const std::string name = "blip-tiny-random";
    const auto model = Seq2SeqModel::load(family_dir(name));
    test::TempDir dir("cq_blipcli");
    const std::string good = write_reference_set(dir, name);
    const auto tsv = [&](const std::string& file, const std::string& text) {
        write_text(dir.file(file), text);
        return dir.file(file);
    };
    // missing columns
    expect_error([&] { load_caption_pairs(*model, tsv("a.tsv", "img\tcaption\nimages/0.png\ta photo\n")); }, {"a.tsv", "no 'image' column"});
    expect_error([&] { load_caption_pairs(*model, tsv("b.tsv", "image\ttext\nimages/0.png\ta photo\n")); }, {"b.tsv", "no 'caption' column"});
    expect_error([&] { load_caption_pairs(*model, pairs_tsv()); }, {"bart_pairs.tsv", "no 'image' column"});  // text pairs
    expect_error([&] { load_caption_pairs(*model, tsv("e.tsv", "")); }, {"e.tsv", "empty"});
    // a missing image, an empty caption, a short row: the TSV and the row (0-based, blank lines not counted) and its line
    expect_error([&] { load_caption_pairs(*model, tsv("c.tsv", "image\tcaption\nimages/0.png\ta\n\nimages/9.png\tb\n")); },
                 {"c.tsv", "row 1 (line 4)", "images/9.png", "not a file"});
    expect_error([&] { load_caption_pairs(*model, tsv("d.tsv", "image\tcaption\nimages/0.png\ta\nimages/1.png\t  \n")); },
                 {"d.tsv", "row 1 (line 3)", "caption is empty"});
    expect_error([&] { load_caption_pairs(*model, tsv("f.tsv", "image\tcaption\nimages/0.png\n")); }, {"f.tsv", "row 0 (line 2)", "1 columns"});
    // a wrong size names the image, the row and both sizes, from the PNG header alone: the file ends after its IHDR chunk
    write_png(dir.file("small.png"), std::vector<uint8_t>(3 * 16 * 24, 9), 3, 16, 24);
    std::filesystem::resize_file(dir.file("small.png"), 33);  // signature (8) + IHDR (25)
    expect_error([&] { load_caption_pairs(*model, tsv("g.tsv", "image\tcaption\nimages/0.png\ta\nsmall.png\tb\n")); },
                 {"small.png", "row 1 (line 3)", "g.tsv", "3×16×24", "3×32×32", "does not resize"});
    write_text(dir.file("junk.png"), "not an image");
    expect_error([&] { load_caption_pairs(*model, tsv("h.tsv", "image\tcaption\njunk.png\ta\n")); }, {"junk.png", "row 0", "cannot decode"});
    // rows outside the range are not read; an empty range is refused
    EXPECT_EQ(load_caption_pairs(*model, dir.file("g.tsv"), 0, 1).size(), 1u);
    expect_error([&] { load_caption_pairs(*model, good, 5, 9); }, {"no (image, caption) pairs in the range [5, 9)", "3 rows"});
    // a text model has no image input
    const auto bart = Seq2SeqModel::load(family_dir("bart-tiny-random"));
    expect_error([&] { load_caption_pairs(*bart, good); }, {"takes text"});

    // the CLI: exit code 1 (a bad file) or 2 (a bad argument), no crash, the same message; nothing written by a refused quantize
    const std::string cq = CQ_CLI_PATH;
    const auto e = test::run_command(cq + " eval " + family_dir(name) + " --data " + dir.file("g.tsv"));
    EXPECT_EQ(e.exit_code, 1);
    EXPECT_NE(e.err.find("row 1 (line 3)"), std::string::npos) << e.err;
    EXPECT_NE(e.err.find("small.png"), std::string::npos) << e.err;
    const auto nocalib = test::run_command(cq + " quantize " + family_dir(name) + " " + dir.file("x.gguf") + " --type w8a8-static");
    EXPECT_EQ(nocalib.exit_code, 2);  // InvalidArgument
    EXPECT_NE(nocalib.err.find("(image, caption) pairs (--calib CAPTIONS.tsv)"), std::string::npos) << nocalib.err;
    const auto badcalib = test::run_command(cq + " quantize " + family_dir(name) + " " + dir.file("x.gguf") + " --type w8a8-static --calib " + dir.file("d.tsv"));
    EXPECT_EQ(badcalib.exit_code, 1);
    EXPECT_NE(badcalib.err.find("caption is empty"), std::string::npos) << badcalib.err;
    EXPECT_FALSE(std::filesystem::exists(dir.file("x.gguf")));
    const auto text_generate = test::run_command(cq + " eval " + family_dir("bart-tiny-random") + " --data " + pairs_tsv() + " --generate 4");
    EXPECT_EQ(text_generate.exit_code, 2);
    EXPECT_NE(text_generate.err.find("--generate applies to captioners"), std::string::npos) << text_generate.err;
}

}  // namespace
}  // namespace cq
