// MNIST idx reader: idx3 images (magic 0x00000803) + idx1 labels (0x00000801), big-endian u32 counts,
// raw or gzip. Offsets in errors are into the decompressed bytes, which is what the idx header describes.
#include <zlib.h>

#include <algorithm>
#include <cstdio>

#include "cq/datasets.h"
#include "cq/error.h"
#include "cq/mapped_file.h"

namespace cq::data {

namespace {

// Far above any idx file (MNIST train images: 47 MB); stops a gzip bomb from filling memory.
constexpr uint64_t kMaxDecompressedBytes = 4ull << 30;

std::vector<uint8_t> gunzip(const uint8_t* data, uint64_t size, const std::string& path) {
    z_stream zs{};
    if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK) throw Error("[mnist] zlib could not start inflating " + path);
    std::vector<uint8_t> out;
    uint8_t buffer[1 << 16];
    uint64_t consumed = 0;
    int rc = Z_OK;
    while (rc != Z_STREAM_END) {
        if (zs.avail_in == 0) {
            if (consumed == size) break;  // input ended before the gzip trailer: truncated
            const uint64_t take = std::min<uint64_t>(size - consumed, 1u << 30);
            zs.next_in = const_cast<Bytef*>(data + consumed);
            zs.avail_in = static_cast<uInt>(take);
            consumed += take;
        }
        zs.next_out = buffer;
        zs.avail_out = sizeof(buffer);
        rc = inflate(&zs, Z_NO_FLUSH);
        if (rc != Z_OK && rc != Z_STREAM_END && rc != Z_BUF_ERROR) {
            const uint64_t at = consumed - zs.avail_in;
            const std::string why = zs.msg ? zs.msg : "zlib error " + std::to_string(rc);
            inflateEnd(&zs);
            throw FormatError("mnist", path, at, "corrupt gzip data (" + why + ")");
        }
        out.insert(out.end(), buffer, buffer + (sizeof(buffer) - zs.avail_out));
        if (out.size() > kMaxDecompressedBytes) {
            inflateEnd(&zs);
            throw FormatError("mnist", path, consumed - zs.avail_in,
                              "decompresses to more than " + std::to_string(kMaxDecompressedBytes) + " bytes");
        }
        if (rc == Z_BUF_ERROR && zs.avail_in != 0) {  // no progress possible with input left: corrupt
            inflateEnd(&zs);
            throw FormatError("mnist", path, consumed - zs.avail_in, "corrupt gzip data (inflate made no progress)");
        }
    }
    inflateEnd(&zs);
    if (rc != Z_STREAM_END)
        throw FormatError("mnist", path, size, "gzip stream is truncated (ends before its trailer)");
    return out;
}

std::vector<uint8_t> read_maybe_gzip(const std::string& path) {
    auto src = map_file(path);
    const uint8_t* d = src->data();
    if (src->size() >= 2 && d[0] == 0x1f && d[1] == 0x8b) return gunzip(d, src->size(), path);
    return {d, d + src->size()};
}

uint32_t be32(const uint8_t* p) {
    return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}

std::string hex32(uint32_t v) {
    char s[11];
    std::snprintf(s, sizeof(s), "0x%08x", v);
    return s;
}

// Checks the header of an idx file with `n_dims` dimensions and returns them; data starts at 4 + 4·n_dims.
std::vector<uint64_t> idx_dims(const std::vector<uint8_t>& bytes, uint32_t magic, int n_dims, const std::string& path) {
    const uint64_t header = 4 + 4ull * n_dims;
    if (bytes.size() < 4 || be32(bytes.data()) != magic)
        throw FormatError("mnist", path, 0,
                          "bad magic " + (bytes.size() < 4 ? std::string("(file shorter than 4 bytes)") : hex32(be32(bytes.data()))) +
                              ", expected " + hex32(magic) + (n_dims == 3 ? " (idx3 images)" : " (idx1 labels)"));
    if (bytes.size() < header)
        throw FormatError("mnist", path, bytes.size(), "header is truncated (needs " + std::to_string(header) + " bytes)");
    std::vector<uint64_t> dims(n_dims);
    uint64_t total = 1;
    for (int i = 0; i < n_dims; ++i) {
        dims[i] = be32(bytes.data() + 4 + 4 * i);
        if (__builtin_mul_overflow(total, dims[i], &total)) total = UINT64_MAX;  // absurd header: "truncated"
    }
    if (total > bytes.size() - header)
        throw FormatError("mnist", path, bytes.size(),
                          "data is truncated: the header promises " + std::to_string(total) + " bytes after offset " +
                              std::to_string(header) + ", the file has " + std::to_string(bytes.size() - header));
    return dims;
}

}  // namespace

ImageDataset load_mnist(const std::string& images_path, const std::string& labels_path, int64_t first, int64_t count) {
    if (first < 0 || count < -1)
        throw InvalidArgument("[mnist] sample range must have first >= 0 and count >= -1, got first " +
                              std::to_string(first) + ", count " + std::to_string(count));
    const auto images = read_maybe_gzip(images_path);
    const auto labels = read_maybe_gzip(labels_path);
    const auto idims = idx_dims(images, 0x00000803, 3, images_path);
    const auto ldims = idx_dims(labels, 0x00000801, 1, labels_path);
    if (idims[0] != ldims[0])
        throw FormatError("mnist", labels_path, 4,
                          "holds " + std::to_string(ldims[0]) + " labels but '" + images_path + "' holds " +
                              std::to_string(idims[0]) + " images");
    const uint64_t n = idims[0], pixels_per_image = idims[1] * idims[2];
    const uint64_t end = count < 0 ? n : static_cast<uint64_t>(first) + static_cast<uint64_t>(count);
    if (static_cast<uint64_t>(first) > n || end > n)
        throw FormatError("mnist", images_path, 16 + std::min<uint64_t>(end, n) * pixels_per_image,
                          "samples [" + std::to_string(first) + ", " + std::to_string(end) + ") are outside the " +
                              std::to_string(n) + " in the file");

    ImageDataset ds;
    ds.channels = 1;
    ds.height = static_cast<int64_t>(idims[1]);
    ds.width = static_cast<int64_t>(idims[2]);
    ds.first_index = first;
    const uint64_t taken = end - static_cast<uint64_t>(first);
    const uint8_t* px = images.data() + 16 + static_cast<uint64_t>(first) * pixels_per_image;
    ds.pixels.assign(px, px + taken * pixels_per_image);
    const uint8_t* lb = labels.data() + 8 + first;
    ds.labels.assign(lb, lb + taken);
    return ds;
}

}  // namespace cq::data
