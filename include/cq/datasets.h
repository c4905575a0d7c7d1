// Evaluation datasets read from local files: GLUE-style TSVs for text classifiers, MNIST idx files and
// folders of images for image classifiers. Every malformed input is a FormatError naming the file.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace cq::data {

/// One labelled text; `text_pair` is empty unless the file has a second sentence column; `boxes` (layout models such
/// as LayoutLM) holds one (x0, y0, x1, y1) per whitespace-separated word of `text`, empty unless the file has a box column.
struct TextExample {
    std::string text, text_pair;
    int32_t label = 0;
    std::vector<std::array<int32_t, 4>> boxes;
};

/// The examples of a TSV in file order, and the header names of the columns they came from.
struct TextDataset {
    std::vector<TextExample> examples;
    std::string text_column, pair_column, label_column, bbox_column;
};

/// Reads a TSV with a header row. Sentence pairs are recognised first (sentence1+sentence2,
/// question1+question2, question+sentence, premise+hypothesis), else the text is the first of
/// sentence|text|sentence1|question|premise; the label is label|labels|target|gold_label. Labels are
/// integers, or strings matched against `label_names` (exactly, then ignoring case; the index is the
/// label). Handles CRLF, a UTF-8 BOM and blank lines; quotes are not special (GLUE TSVs are unquoted).
/// An optional column `bbox` (or `boxes`) gives each word of the text a box: "x0,y0,x1,y1 x0,y0,x1,y1 ..." (one per
/// whitespace-separated word, integers). FormatError (file, line, byte offset) for missing columns, short rows, unknown
/// labels and boxes that are not one per word.
TextDataset load_text_tsv(const std::string& path, std::span<const std::string> label_names = {});

/// Images as unsigned bytes, planar: pixels is [count, channels, height, width].
struct ImageDataset {
    int64_t channels = 0, height = 0, width = 0;
    std::vector<uint8_t> pixels;
    std::vector<int32_t> labels;
    int64_t first_index = 0;  ///< index in the source of sample 0
    int64_t count() const { return static_cast<int64_t>(labels.size()); }
};

/// Reads samples [first, first + count) of an MNIST pair (idx3 images + idx1 labels, raw or gzip,
/// detected by the 1f 8b magic); count -1 means to the end. FormatError (file + byte offset, in the
/// decompressed data for .gz) on bad magic, truncated data, count mismatch or a range outside the file.
ImageDataset load_mnist(const std::string& images_path, const std::string& labels_path, int64_t first = 0,
                        int64_t count = -1);

/// Reads dir/<class>/*.{png,jpg,jpeg,bmp} in path order; the class is the index of the subfolder name in
/// `label_names` (exact, then ignoring case) or, without names, the subfolder name as an integer.
/// Images are decoded to `channels` (1 = grey, 3 = RGB) and must already be height×width: a different
/// size is a FormatError naming the file and both sizes (nothing is resized).
ImageDataset load_image_folder(const std::string& dir, int64_t channels, int64_t height, int64_t width,
                               std::span<const std::string> label_names = {});

}  // namespace cq::data
