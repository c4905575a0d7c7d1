// load_caption_pairs: (image, caption) pairs for a captioner (BLIP) from a TSV whose header names 'image' and 'caption'
// columns, each image a PNG/JPEG/BMP path relative to the TSV's folder, decoded by stb_image as the image-folder reader
// does; sizes are checked from the file header before decoding, and nothing is resized.
#ifndef CQ_MINIMAL
#include <stb/stb_image.h>
#endif

#include <filesystem>
#include <fstream>
#include <memory>

#include "cq/error.h"
#include "data/tsv_fields.h"
#include "cq/mapped_file.h"
#include "cq/seq2seq.h"

namespace cq {

namespace {

std::vector<std::string> to_strings(const std::vector<std::string_view>& v) { return {v.begin(), v.end()}; }


bool is_blank(const std::string& s) { return s.find_first_not_of(" \t\r\n") == std::string::npos; }

std::string dims(int64_t c, int64_t h, int64_t w) { return std::to_string(c) + "×" + std::to_string(h) + "×" + std::to_string(w); }

}  // namespace

std::vector<CaptionPair> load_caption_pairs(const std::string& tsv_path, int64_t channels, int64_t height, int64_t width, int64_t first, int64_t end) {
    namespace fs = std::filesystem;
    if (channels != 1 && channels != 3) throw InvalidArgument("[captions] channels must be 1 (grey) or 3 (RGB), got " + std::to_string(channels));
    if (height <= 0 || width <= 0 || height > (1 << 16) || width > (1 << 16))
        throw InvalidArgument("[captions] image size must be between 1 and 65536, got " + std::to_string(height) + "×" + std::to_string(width));
    if (first < 0 || (end >= 0 && end < first))
        throw InvalidArgument("[captions] the range [" + std::to_string(first) + ", " + std::to_string(end) + ") is empty or negative");
    std::ifstream in(tsv_path, std::ios::binary);
    if (!in) throw IoError("[captions] cannot read " + tsv_path);
    std::string line;
    if (!std::getline(in, line)) throw FormatError("captions", tsv_path, 0, "the file is empty (a header naming 'image' and 'caption' comes first)");
    uint64_t offset = line.size() + 1;
    if (line.starts_with("\xEF\xBB\xBF")) line.erase(0, 3);  // a UTF-8 byte-order mark
    if (!line.empty() && line.back() == '\r') line.pop_back();
    const std::vector<std::string> header = to_strings(data::split_tabs(line));
    int64_t image_col = -1, caption_col = -1;
    for (size_t i = 0; i < header.size(); ++i) {
        if (header[i] == "image") image_col = static_cast<int64_t>(i);
        if (header[i] == "caption") caption_col = static_cast<int64_t>(i);
    }
    if (image_col < 0 || caption_col < 0)
        throw FormatError("captions", tsv_path, 0,
                          std::string("the header names no '") + (image_col < 0 ? "image" : "caption") +
                              "' column ((image, caption) pairs: a tab-separated header naming 'image' and 'caption' columns)");
    const fs::path folder = fs::path(tsv_path).parent_path();

    std::vector<CaptionPair> pairs;
    int64_t row = 0;  // data rows, 0-based as --range counts them; blank lines are not rows
    for (int64_t line_no = 2; std::getline(in, line); ++line_no) {
        const uint64_t at = offset;
        offset += line.size() + 1;
        if (!line.empty() && line.back() == '\r') line.pop_back();
        if (is_blank(line)) continue;
        const int64_t this_row = row++;
        if (end >= 0 && this_row >= end) break;
        if (this_row < first) continue;
        const std::string where = "row " + std::to_string(this_row) + " (line " + std::to_string(line_no) + ")";
        const std::vector<std::string> cols = to_strings(data::split_tabs(line));
        if (static_cast<int64_t>(cols.size()) <= std::max(image_col, caption_col))
            throw FormatError("captions", tsv_path, at,
                              where + " has " + std::to_string(cols.size()) + " columns, the header " + std::to_string(header.size()));
        const std::string& name = cols[static_cast<size_t>(image_col)];
        CaptionPair pair;
        pair.caption = cols[static_cast<size_t>(caption_col)];
        if (is_blank(pair.caption)) throw FormatError("captions", tsv_path, at, where + ": the caption is empty");
        if (is_blank(name)) throw FormatError("captions", tsv_path, at, where + ": the image path is empty");
        const fs::path image = fs::path(name).is_absolute() ? fs::path(name) : folder / name;
        std::error_code ec;
        if (!fs::is_regular_file(image, ec))
            throw IoError("[captions] " + tsv_path + " " + where + ": image '" + name + "' is not a file (" + image.string() +
                          "; paths are relative to the TSV's folder)");
#ifdef CQ_MINIMAL
        throw Unsupported("[captions] " + image.string() + ": decoding images needs the full cq build (stb_image; this is the CQ_MINIMAL runtime)");
#else
        const std::string path = image.string();
        const auto src = map_file(path);
        if (src->size() > INT32_MAX) throw FormatError("captions", path, 0, where + " of " + tsv_path + ": the image file is larger than 2 GiB");
        const int len = static_cast<int>(src->size());
        int w = 0, h = 0, file_channels = 0;
        if (!stbi_info_from_memory(src->data(), len, &w, &h, &file_channels))
            throw FormatError("captions", path, 0, where + " of " + tsv_path + ": cannot decode the image (" + stbi_failure_reason() + "; PNG, JPEG or BMP)");
        if (h != height || w != width)
            throw FormatError("captions", path, 0,
                              where + " of " + tsv_path + ": the image is " + dims(channels, h, w) + " (C×H×W after conversion) but the model takes " +
                                  dims(channels, height, width) + "; cq does not resize, resize the files beforehand");
        std::unique_ptr<stbi_uc, void (*)(void*)> decoded(stbi_load_from_memory(src->data(), len, &w, &h, &file_channels, static_cast<int>(channels)),
                                                          stbi_image_free);
        if (!decoded || w != width || h != height)
            throw FormatError("captions", path, 0,
                              where + " of " + tsv_path + ": cannot decode the image (" + (decoded ? "size changed while decoding" : stbi_failure_reason()) + ")");
        const size_t plane = static_cast<size_t>(height * width);
        // stb gives interleaved HWC (grey replicated to RGB, alpha dropped, as BlipImageProcessor's convert_rgb); the model takes planar CHW.
        pair.pixels.resize(plane * static_cast<size_t>(channels));
        for (size_t p = 0; p < plane; ++p)
            for (int64_t c = 0; c < channels; ++c) pair.pixels[static_cast<size_t>(c) * plane + p] = decoded.get()[p * static_cast<size_t>(channels) + static_cast<size_t>(c)];
#endif
        pairs.push_back(std::move(pair));
    }
    if (pairs.empty())
        throw InvalidArgument("[captions] " + tsv_path + " holds no (image, caption) pairs in the range [" + std::to_string(first) + ", " +
                              (end < 0 ? std::string("end") : std::to_string(end)) + ") (" + std::to_string(row) + " rows)");
    return pairs;
}

std::vector<CaptionPair> load_caption_pairs(const Seq2SeqModel& model, const std::string& tsv_path, int64_t first, int64_t end) {
    if (!model.takes_images()) throw InvalidArgument("[captions] " + model.architecture() + " takes text, not (image, caption) pairs");
    const Seq2SeqConfig& g = model.config();
    return load_caption_pairs(tsv_path, g.num_channels, g.image_size, g.image_size, first, end);
}

}  // namespace cq
