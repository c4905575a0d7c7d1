// Image-folder reader: dir/<class>/<file>, decoded by stb_image, stored planar [N, C, H, W]. Sizes are
// checked from the file header before decoding, so a huge or wrong-sized image is never decompressed.
#include <stb/stb_image.h>

#include <algorithm>
#include <filesystem>
#include <memory>

#include "cq/datasets.h"
#include "cq/error.h"
#include "cq/mapped_file.h"
#include "data/label_lookup.h"

namespace cq::data {

namespace {

bool is_image_file(const std::filesystem::path& p) {
    std::string ext = p.extension().string();
    for (auto& c : ext) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return ext == ".png" || ext == ".jpg" || ext == ".jpeg" || ext == ".bmp";
}

std::string dims(int64_t c, int64_t h, int64_t w) {
    return std::to_string(c) + "×" + std::to_string(h) + "×" + std::to_string(w);
}

}  // namespace

ImageDataset load_image_folder(const std::string& dir, int64_t channels, int64_t height, int64_t width,
                               std::span<const std::string> label_names) {
    namespace fs = std::filesystem;
    if (channels != 1 && channels != 3)
        throw InvalidArgument("[images] channels must be 1 (grey) or 3 (RGB), got " + std::to_string(channels));
    if (height <= 0 || width <= 0 || height > (1 << 16) || width > (1 << 16))
        throw InvalidArgument("[images] image size must be between 1 and 65536, got " + std::to_string(height) + "×" +
                              std::to_string(width));
    std::error_code ec;
    if (!fs::is_directory(dir, ec)) throw IoError("[images] '" + dir + "' is not a readable folder");

    std::vector<std::pair<std::string, int32_t>> files;  // (path, label)
    try {
        for (const auto& cls : fs::directory_iterator(dir)) {
            if (!cls.is_directory()) continue;  // a README or labels.txt beside the class folders
            const std::string name = cls.path().filename().string();
            const auto label = label_of(name, label_names);
            if (!label)
                throw FormatError("images", cls.path().string(), 0,
                                  "class folder '" + name + "' is " +
                                      (label_names.empty() ? std::string("not an integer (pass the class names)")
                                                           : "not one of " + join_names(label_names)));
            for (const auto& f : fs::directory_iterator(cls.path()))
                if (f.is_regular_file() && is_image_file(f.path())) files.emplace_back(f.path().string(), *label);
        }
    } catch (const fs::filesystem_error& e) {
        throw IoError("[images] cannot list '" + dir + "': " + e.what());
    }
    std::sort(files.begin(), files.end());
    if (files.empty())
        throw FormatError("images", dir, 0, "no .png/.jpg/.jpeg/.bmp files in any class subfolder");

    ImageDataset ds;
    ds.channels = channels, ds.height = height, ds.width = width;
    const size_t plane = static_cast<size_t>(height * width), image_bytes = plane * static_cast<size_t>(channels);
    ds.pixels.resize(files.size() * image_bytes);
    ds.labels.reserve(files.size());
    for (size_t n = 0; n < files.size(); ++n) {
        const auto& [path, label] = files[n];
        auto src = map_file(path);
        if (src->size() > INT32_MAX) throw FormatError("images", path, 0, "file is larger than 2 GiB");
        const int len = static_cast<int>(src->size());
        int w = 0, h = 0, file_channels = 0;
        if (!stbi_info_from_memory(src->data(), len, &w, &h, &file_channels))
            throw FormatError("images", path, 0, std::string("cannot decode image: ") + stbi_failure_reason());
        if (h != height || w != width)
            throw FormatError("images", path, 0,
                              "image is " + dims(channels, h, w) + " (C×H×W after conversion) but the dataset needs " +
                                  dims(channels, height, width) + "; resize the files beforehand");
        std::unique_ptr<stbi_uc, void (*)(void*)> decoded(
            stbi_load_from_memory(src->data(), len, &w, &h, &file_channels, static_cast<int>(channels)), stbi_image_free);
        if (!decoded || w != width || h != height)
            throw FormatError("images", path, 0, std::string("cannot decode image: ") +
                                                     (decoded ? "size changed while decoding" : stbi_failure_reason()));
        // stb gives interleaved HWC; the models take planar CHW.
        uint8_t* out = ds.pixels.data() + n * image_bytes;
        for (size_t p = 0; p < plane; ++p)
            for (int64_t c = 0; c < channels; ++c) out[c * plane + p] = decoded.get()[p * channels + c];
        ds.labels.push_back(label);
    }
    return ds;
}

}  // namespace cq::data
