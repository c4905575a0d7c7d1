// GGUF v3 writer: metadata in insertion order, tensor infos with offsets computed up front, then
// tensor data streamed one tensor at a time (so peak memory is one tensor), each padded to the
// alignment — the layout llama.cpp requires. Output goes through an AtomicFile.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "cq/atomic_file.h"
#include "cq/dtype.h"
#include "cq/io/gguf.h"

namespace cq::gguf {

class Writer {
public:
    explicit Writer(uint64_t alignment = 32);

    /// Sets `key` (replacing an earlier value in place, else appending).
    void set(const std::string& key, Value value);
    /// Whether `key` is set.
    bool has(const std::string& key) const;
    void set_string(const std::string& key, std::string v) { set(key, Value{ValueType::STRING, std::move(v)}); }
    void set_u32(const std::string& key, uint32_t v) { set(key, Value{ValueType::U32, uint64_t{v}}); }
    void set_string_array(const std::string& key, const std::vector<std::string>& items);
    /// Copies every key-value of `file` (general.alignment is rewritten from this writer's alignment).
    void copy_metadata(const File& file);

    /// Declares the next tensor; its bytes must be a whole number of `dtype` blocks per row.
    void add_tensor(const std::string& name, const std::vector<int64_t>& shape, DType dtype);
    size_t tensor_count() const { return tensors_.size(); }
    uint64_t tensor_bytes(size_t i) const { return tensors_.at(i).nbytes; }

    /// The size write() would produce: the header, then every tensor padded to the alignment.
    uint64_t file_size() const;

    /// Writes everything to `out` (not committed). `produce(i, buffer)` must fill `buffer` with exactly
    /// tensor_bytes(i) bytes of tensor i; tensors are requested in declaration order.
    void write(AtomicFile& out, const std::function<void(size_t, std::vector<uint8_t>&)>& produce) const;

private:
    std::vector<uint8_t> header() const;  // magic … tensor infos, padded to the alignment
    struct PendingTensor {
        std::string name;
        std::vector<int64_t> shape;
        DType dtype;
        uint64_t nbytes;
    };
    uint64_t alignment_;
    std::vector<KeyValue> kv_;
    std::vector<PendingTensor> tensors_;
};

}  // namespace cq::gguf
