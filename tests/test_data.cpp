// Dataset readers: the SST-2 and MNIST fixtures against counts and sums computed outside cq (awk,
// Python), and hostile files (truncated gzip, wrong magic, mismatched counts, bad TSVs, wrong-sized PNGs).
#include <gtest/gtest.h>
#include <stb/stb_image_write.h>

#include <filesystem>
#include <fstream>
#include <numeric>
#include <sstream>

#include "cq/datasets.h"
#include "cq/error.h"
#include "test_support.h"

namespace cq::data {
namespace {

using test::TempDir;

// Expects `fn` to throw a FormatError whose message contains every string in `needles`.
template <typename Fn>
void expect_format_error(Fn fn, std::initializer_list<std::string> needles) {
    try {
        fn();
        ADD_FAILURE() << "no FormatError thrown";
    } catch (const FormatError& e) {
        for (const auto& n : needles) EXPECT_NE(std::string(e.what()).find(n), std::string::npos) << e.what();
    }
}

// ---- TSV ------------------------------------------------------------------------------------------

TEST(data_tsv, Sst2DevMatchesPlainLineSplitting) {
    const std::string path = test::fixture("data/sst2_dev.tsv");
    const auto ds = load_text_tsv(path);
    EXPECT_EQ(ds.text_column, "sentence");
    EXPECT_EQ(ds.label_column, "label");
    EXPECT_EQ(ds.pair_column, "");
    // `awk -F'\t' 'NR>1{c[$2]++} END{for(k in c) print k, c[k]}' sst2_dev.tsv` → 1 444, 0 428.
    ASSERT_EQ(ds.examples.size(), 872u);
    int64_t positives = 0;
    for (const auto& ex : ds.examples) positives += ex.label;
    EXPECT_EQ(positives, 444);

    // The same file split by hand: every line after the header is "<text>\t<label>".
    std::ifstream in(path);
    std::string line;
    std::getline(in, line);
    size_t i = 0;
    while (std::getline(in, line)) {
        if (line.empty()) continue;
        ASSERT_LT(i, ds.examples.size());
        const size_t tab = line.rfind('\t');
        EXPECT_EQ(ds.examples[i].text, line.substr(0, tab)) << "row " << i;
        EXPECT_EQ(ds.examples[i].label, std::stoi(line.substr(tab + 1))) << "row " << i;
        EXPECT_TRUE(ds.examples[i].text_pair.empty());
        ++i;
    }
    EXPECT_EQ(i, ds.examples.size());
    EXPECT_EQ(ds.examples[0].text, "it 's a charming and often affecting journey . ");
    EXPECT_EQ(ds.examples[0].label, 1);
}

TEST(data_tsv, IntegerLabelsAreAcceptedAlongsideNames) {
    const std::vector<std::string> names = {"NEGATIVE", "POSITIVE"};
    const auto ds = load_text_tsv(test::fixture("data/sst2_dev.tsv"), names);
    ASSERT_EQ(ds.examples.size(), 872u);
    EXPECT_EQ(ds.examples[0].label, 1);
    EXPECT_EQ(ds.examples[1].label, 0);
}

TEST(data_tsv, PairsCrlfNamedLabelsAndQuotes) {
    TempDir dir;
    const auto path = dir.write("mnli.tsv",
                                "\xEF\xBB\xBFindex\tpremise\thypothesis\tlabel\r\n"
                                "0\tA \"quoted\" man.\tA person.\tentailment\r\n"
                                "1\t'single\tother\tCONTRADICTION\r\n"
                                "\r\n"
                                "2\tx\ty\tneutral\r\n"
                                "\r\n");
    const std::vector<std::string> names = {"contradiction", "entailment", "neutral"};
    const auto ds = load_text_tsv(path, names);
    EXPECT_EQ(ds.text_column, "premise");
    EXPECT_EQ(ds.pair_column, "hypothesis");
    ASSERT_EQ(ds.examples.size(), 3u);
    EXPECT_EQ(ds.examples[0].text, "A \"quoted\" man.");  // quotes are text, not syntax
    EXPECT_EQ(ds.examples[0].text_pair, "A person.");
    EXPECT_EQ(ds.examples[0].label, 1);
    EXPECT_EQ(ds.examples[1].text, "'single");
    EXPECT_EQ(ds.examples[1].label, 0);  // case-insensitive match
    EXPECT_EQ(ds.examples[2].text_pair, "y");
    EXPECT_EQ(ds.examples[2].label, 2);
}

TEST(data_tsv, QnliOrderIsQuestionThenSentence) {
    TempDir dir;
    const auto path = dir.write("qnli.tsv", "index\tquestion\tsentence\tlabel\n0\tWho?\tHim.\t1\n");
    const auto ds = load_text_tsv(path);
    EXPECT_EQ(ds.text_column, "question");
    EXPECT_EQ(ds.pair_column, "sentence");
    ASSERT_EQ(ds.examples.size(), 1u);
    EXPECT_EQ(ds.examples[0].text, "Who?");
    EXPECT_EQ(ds.examples[0].text_pair, "Him.");
}

TEST(data_tsv, HostileFilesNameFileLineAndColumns) {
    TempDir dir;
    const auto no_label = dir.write("a.tsv", "sentence\tscore\nhello\t1\n");
    expect_format_error([&] { load_text_tsv(no_label); }, {no_label, "line 1", "label column", "'sentence', 'score'"});
    const auto no_text = dir.write("b.tsv", "words\tlabel\nhello\t1\n");
    expect_format_error([&] { load_text_tsv(no_text); }, {"text column", "'words', 'label'"});
    const auto bad_label = dir.write("c.tsv", "sentence\tlabel\nok\t1\nbad\tx1\n");
    expect_format_error([&] { load_text_tsv(bad_label); }, {bad_label, "line 3", "'x1'", "not an integer"});
    const std::vector<std::string> names = {"NEGATIVE", "POSITIVE"};
    const auto unknown = dir.write("d.tsv", "sentence\tlabel\nok\tNEUTRAL\n");
    expect_format_error([&] { load_text_tsv(unknown, names); }, {"line 2", "'NEUTRAL'", "'POSITIVE'"});
    const auto out_of_range = dir.write("e.tsv", "sentence\tlabel\nok\t2\n");
    expect_format_error([&] { load_text_tsv(out_of_range, names); }, {"line 2", "'2'"});
    const auto short_row = dir.write("f.tsv", "sentence\tlabel\nok\t1\nno label here\n");
    expect_format_error([&] { load_text_tsv(short_row); }, {"line 3", "1 tab-separated fields"});
    const auto empty = dir.write("g.tsv", "");
    expect_format_error([&] { load_text_tsv(empty); }, {"empty"});
    try {
        load_text_tsv(bad_label);
    } catch (const FormatError& e) {
        EXPECT_EQ(e.offset(), std::string("sentence\tlabel\nok\t1\n").size());  // start of line 3
    }
}

// ---- MNIST ----------------------------------------------------------------------------------------

const std::string kImages = "data/t10k-images-idx3-ubyte.gz";
const std::string kLabels = "data/t10k-labels-idx1-ubyte.gz";

int64_t pixel_sum(const ImageDataset& ds, int64_t i) {
    const int64_t n = ds.channels * ds.height * ds.width;
    return std::accumulate(ds.pixels.begin() + i * n, ds.pixels.begin() + (i + 1) * n, int64_t{0});
}

TEST(data_mnist, T10kMatchesPython) {
    const auto ds = load_mnist(test::fixture(kImages), test::fixture(kLabels));
    ASSERT_EQ(ds.count(), 10000);
    EXPECT_EQ(ds.channels, 1);
    EXPECT_EQ(ds.height, 28);
    EXPECT_EQ(ds.width, 28);
    ASSERT_EQ(ds.pixels.size(), 10000u * 784u);
    // python3 -c "import gzip; im=gzip.open('t10k-images-idx3-ubyte.gz').read();
    //   lb=gzip.open('t10k-labels-idx1-ubyte.gz').read(); print(list(lb[8:18]), list(lb[8+8000:8+8008]),
    //   [sum(im[16+784*i:16+784*(i+1)]) for i in (0,1,8000,9999)], sum(im[16:]))"
    const std::vector<int32_t> first10 = {7, 2, 1, 0, 4, 1, 4, 9, 5, 9};
    EXPECT_EQ(std::vector<int32_t>(ds.labels.begin(), ds.labels.begin() + 10), first10);
    const std::vector<int32_t> at8000 = {4, 9, 9, 7, 1, 1, 9, 0};
    EXPECT_EQ(std::vector<int32_t>(ds.labels.begin() + 8000, ds.labels.begin() + 8008), at8000);
    EXPECT_EQ(pixel_sum(ds, 0), 18454);
    EXPECT_EQ(pixel_sum(ds, 1), 28850);
    EXPECT_EQ(pixel_sum(ds, 8000), 37689);
    EXPECT_EQ(pixel_sum(ds, 9999), 41833);
    EXPECT_EQ(std::accumulate(ds.pixels.begin(), ds.pixels.end(), int64_t{0}), 264923200);
}

TEST(data_mnist, SubrangesAndRangeErrors) {
    const auto ds = load_mnist(test::fixture(kImages), test::fixture(kLabels), 8000, 8);
    ASSERT_EQ(ds.count(), 8);
    EXPECT_EQ(ds.first_index, 8000);
    EXPECT_EQ(ds.labels, (std::vector<int32_t>{4, 9, 9, 7, 1, 1, 9, 0}));
    EXPECT_EQ(pixel_sum(ds, 0), 37689);
    const auto tail = load_mnist(test::fixture(kImages), test::fixture(kLabels), 9999);
    ASSERT_EQ(tail.count(), 1);
    EXPECT_EQ(pixel_sum(tail, 0), 41833);
    expect_format_error([&] { load_mnist(test::fixture(kImages), test::fixture(kLabels), 9990, 20); },
                        {"[9990, 10010)", "10000"});
    expect_format_error([&] { load_mnist(test::fixture(kImages), test::fixture(kLabels), 10001); }, {"outside"});
    EXPECT_THROW(load_mnist(test::fixture(kImages), test::fixture(kLabels), -1), InvalidArgument);
}

std::string be32(uint32_t v) {
    return {static_cast<char>(v >> 24), static_cast<char>(v >> 16), static_cast<char>(v >> 8), static_cast<char>(v)};
}

// A raw idx3 file of n images h×w whose pixel k of image i is (i * 16 + k) & 0xff.
std::string idx3(uint32_t magic, uint32_t n, uint32_t h, uint32_t w) {
    std::string s = be32(magic) + be32(n) + be32(h) + be32(w);
    for (uint32_t i = 0; i < n; ++i)
        for (uint32_t k = 0; k < h * w; ++k) s.push_back(static_cast<char>((i * 16 + k) & 0xff));
    return s;
}

std::string idx1(uint32_t n) {
    std::string s = be32(0x801) + be32(n);
    for (uint32_t i = 0; i < n; ++i) s.push_back(static_cast<char>(i % 10));
    return s;
}

TEST(data_mnist, RawIdxFiles) {
    TempDir dir;
    const auto images = dir.write("img", idx3(0x803, 3, 2, 3));
    const auto labels = dir.write("lbl", idx1(3));
    const auto ds = load_mnist(images, labels, 1, 2);
    EXPECT_EQ(ds.height, 2);
    EXPECT_EQ(ds.width, 3);
    EXPECT_EQ(ds.labels, (std::vector<int32_t>{1, 2}));
    EXPECT_EQ(ds.pixels, (std::vector<uint8_t>{16, 17, 18, 19, 20, 21, 32, 33, 34, 35, 36, 37}));
}

TEST(data_mnist, HostileFiles) {
    TempDir dir;
    const auto labels = dir.write("lbl", idx1(3));
    const auto wrong_magic = dir.write("magic", idx3(0x804, 3, 2, 3));
    expect_format_error([&] { load_mnist(wrong_magic, labels); }, {wrong_magic, "at byte 0", "0x00000804", "0x00000803"});
    expect_format_error([&] { load_mnist(labels, labels); }, {"0x00000801"});
    const auto mismatch = dir.write("img4", idx3(0x803, 4, 2, 3));
    expect_format_error([&] { load_mnist(mismatch, labels); }, {"3 labels", "4 images"});
    std::string cut = idx3(0x803, 3, 2, 3);
    cut.resize(cut.size() - 1);
    const auto truncated = dir.write("cut", cut);
    expect_format_error([&] { load_mnist(truncated, labels); }, {truncated, "truncated", "at byte 33"});
    const auto header_only = dir.write("hdr", be32(0x803) + be32(1));
    expect_format_error([&] { load_mnist(header_only, labels); }, {"header is truncated"});

    // The fixture's gzip cut in half: the stream ends before its trailer.
    const auto gz = test::read_bytes(test::fixture(kImages));
    const auto half_gz = dir.write("half.gz", std::string(gz.begin(), gz.begin() + gz.size() / 2));
    expect_format_error([&] { load_mnist(half_gz, test::fixture(kLabels)); }, {half_gz, "truncated"});
    // Garbage after a valid gzip magic.
    std::string garbage = "\x1f\x8b\x08\x00";
    garbage += std::string(64, '\xff');
    const auto bad_gz = dir.write("bad.gz", garbage);
    EXPECT_THROW(load_mnist(bad_gz, test::fixture(kLabels)), FormatError);
}

// ---- Image folders --------------------------------------------------------------------------------

// Writes a PNG of h×w×c bytes (interleaved) at dir/sub/name, creating sub.
std::string write_png(const TempDir& dir, const std::string& sub, const std::string& name, int h, int w, int c,
                      const std::vector<uint8_t>& hwc) {
    std::filesystem::create_directories(dir.file(sub));
    const std::string path = dir.file(sub + "/" + name);
    EXPECT_NE(stbi_write_png(path.c_str(), w, h, c, hwc.data(), w * c), 0) << path;
    return path;
}

TEST(data_image_folder, RgbIsPlanarAndOrderIsByPath) {
    TempDir dir;
    // 2×2 RGB: pixel p has (r, g, b) = (10p, 10p + 1, 10p + 2) (+100 for the second file).
    std::vector<uint8_t> a, b;
    for (int p = 0; p < 4; ++p)
        for (int c = 0; c < 3; ++c) a.push_back(static_cast<uint8_t>(10 * p + c)), b.push_back(static_cast<uint8_t>(100 + 10 * p + c));
    write_png(dir, "1", "z.png", 2, 2, 3, a);
    write_png(dir, "0", "y.png", 2, 2, 3, b);
    dir.write("README.txt", "not a class");
    dir.write("1/notes.txt", "not an image");
    const auto ds = load_image_folder(dir.path(), 3, 2, 2);
    ASSERT_EQ(ds.count(), 2);
    EXPECT_EQ(ds.labels, (std::vector<int32_t>{0, 1}));  // "…/0/y.png" sorts before "…/1/z.png"
    const std::vector<uint8_t> planar_b = {100, 110, 120, 130, 101, 111, 121, 131, 102, 112, 122, 132};
    EXPECT_EQ(std::vector<uint8_t>(ds.pixels.begin(), ds.pixels.begin() + 12), planar_b);
    EXPECT_EQ(ds.pixels[12], 0);
    EXPECT_EQ(ds.pixels[12 + 4], 1);
}

TEST(data_image_folder, GreyAndNamedClasses) {
    TempDir dir;
    write_png(dir, "cat", "a.png", 1, 3, 1, {5, 6, 7});
    write_png(dir, "Dog", "b.png", 1, 3, 1, {8, 9, 10});
    const std::vector<std::string> names = {"dog", "cat"};
    const auto grey = load_image_folder(dir.path(), 1, 1, 3, names);
    EXPECT_EQ(grey.labels, (std::vector<int32_t>{0, 1}));  // "Dog" < "cat" in byte order
    EXPECT_EQ(grey.pixels, (std::vector<uint8_t>{8, 9, 10, 5, 6, 7}));
    const auto rgb = load_image_folder(dir.path(), 3, 1, 3, names);  // grey replicated into R, G, B
    EXPECT_EQ(std::vector<uint8_t>(rgb.pixels.begin(), rgb.pixels.begin() + 9),
              (std::vector<uint8_t>{8, 9, 10, 8, 9, 10, 8, 9, 10}));
    expect_format_error([&] { load_image_folder(dir.path(), 1, 1, 3); }, {"not an integer"});
    const std::vector<std::string> other = {"dog", "bird"};
    expect_format_error([&] { load_image_folder(dir.path(), 1, 1, 3, other); }, {"'cat'", "'bird'"});
}

TEST(data_image_folder, WrongSizeIsAnErrorNotAResize) {
    TempDir dir;
    write_png(dir, "0", "ok.png", 4, 5, 1, std::vector<uint8_t>(20, 1));
    const auto bad = write_png(dir, "0", "small.png", 3, 5, 1, std::vector<uint8_t>(15, 1));
    expect_format_error([&] { load_image_folder(dir.path(), 1, 4, 5); }, {bad, "1×3×5", "1×4×5"});
    dir.write("0/broken.png", "\x89PNG not really");
    std::filesystem::remove(bad);
    expect_format_error([&] { load_image_folder(dir.path(), 1, 4, 5); }, {"broken.png", "cannot decode"});
    TempDir empty;
    expect_format_error([&] { load_image_folder(empty.path(), 1, 4, 5); }, {"no .png"});
    EXPECT_THROW(load_image_folder(empty.path(), 2, 4, 5), InvalidArgument);
}

}  // namespace
}  // namespace cq::data
