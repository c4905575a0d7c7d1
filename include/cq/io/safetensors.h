// safetensors reader (single file and sharded via model.safetensors.index.json): every dtype of the
// format, zero-copy tensors from a read-only mapping, strict layout checks (offsets inside the file,
// size = elements × dtype size, no overlaps, no duplicate names); and the writer every pass that emits an HF
// directory uses (pruning, fine-tuning, students).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "cq/dtype.h"
#include "cq/mapped_file.h"
#include "cq/tensor.h"

namespace cq::safetensors {

struct TensorInfo {
    std::string name;
    DType dtype = DType::F32;
    std::string dtype_name;      // as spelled in the file, e.g. "BF16"
    std::vector<int64_t> shape;  // row-major, outermost first
    uint64_t begin = 0, end = 0; // data_offsets, relative to the data section
    uint64_t file_offset = 0;    // absolute position of the first byte
    uint64_t nbytes = 0;
    int64_t numel = 0;
};

struct Limits {
    uint64_t max_header_bytes = 100ull << 20;  // the reference implementation's cap
    uint32_t max_json_depth = 16;
    uint32_t max_rank = 16;
};

/// The dtype a safetensors dtype string names (F32, BF16, F8_E4M3, ...), if known.
std::optional<DType> dtype_from_safetensors_name(std::string_view name);

/// One .safetensors file.
class File {
public:
    static File open(const std::string& path, const Limits& limits = {});
    static File parse(std::shared_ptr<const ByteSource> source, const Limits& limits = {});

    const std::string& path() const { return source_->name(); }
    uint64_t file_size() const { return source_->size(); }
    uint64_t header_size() const { return header_size_; }
    uint64_t data_section_offset() const { return 8 + header_size_; }
    /// The optional "__metadata__" string map.
    const std::map<std::string, std::string>& metadata() const { return metadata_; }
    /// Tensors in data-offset order.
    const std::vector<TensorInfo>& tensors() const { return tensors_; }
    const TensorInfo* find_tensor(std::string_view name) const;
    Tensor tensor(const TensorInfo& info) const;
    Tensor tensor(std::string_view name) const;

private:
    std::shared_ptr<const ByteSource> source_;
    uint64_t header_size_ = 0;
    std::map<std::string, std::string> metadata_;
    std::vector<TensorInfo> tensors_;
    std::unordered_map<std::string, size_t> index_;
};

/// A model's weights: one file, or the shards an index file lists. Tensor names are unique across shards.
class Model {
public:
    /// `path`: a .safetensors file, a model.safetensors.index.json, or a directory holding either.
    static Model open(const std::string& path, const Limits& limits = {});

    const std::vector<File>& shards() const { return shards_; }
    /// Path of the index file ("" for a single file).
    const std::string& index_path() const { return index_path_; }
    size_t tensor_count() const { return locations_.size(); }
    /// All tensors, shard by shard, in data-offset order.
    std::vector<const TensorInfo*> tensors() const;
    const TensorInfo* find_tensor(std::string_view name) const;
    /// The shard holding `name` (nullptr if absent).
    const File* shard_of(std::string_view name) const;
    Tensor tensor(std::string_view name) const;

private:
    std::vector<File> shards_;
    std::string index_path_;
    std::unordered_map<std::string, std::pair<size_t, size_t>> locations_;  // name → (shard, tensor)
};

/// One tensor for write_file: name, dtype as the format spells it ("F32", "BF16", …), shape and byte count, and its
/// bytes — or nullptr where write_file's `fill` writes them.
struct TensorToWrite {
    std::string name, dtype;
    std::vector<int64_t> shape;
    uint64_t nbytes = 0;
    const void* bytes = nullptr;
};
/// Writes a .safetensors file atomically: the u64 header length, the JSON header (tensors in the given order, data
/// back to back, "__metadata__" = metadata; padded with spaces to 8 bytes), then the data. A tensor without bytes is
/// produced by fill(index, write), which must pass exactly its nbytes to write(data, size). Returns the file's size.
/// InvalidArgument for a duplicate name or a fill that writes another byte count.
uint64_t write_file(const std::string& path, std::span<const TensorToWrite> tensors, const std::map<std::string, std::string>& metadata,
                    const std::function<void(size_t index, const std::function<void(const void*, size_t)>& write)>& fill = {});

}  // namespace cq::safetensors
