// An N-dimensional, contiguous, row-major tensor whose bytes are either owned (aligned heap buffer)
// or borrowed read-only from storage kept alive by a shared handle (e.g. a memory-mapped file).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "cq/dtype.h"

namespace cq {

/// Allocation alignment for tensor buffers (one cache line and a full zmm register).
inline constexpr size_t kTensorAlignment = 64;

/// Allocates `bytes` with `kTensorAlignment`; freed with `aligned_free`. Throws on failure.
void* aligned_alloc_bytes(size_t bytes);
void aligned_free(void* ptr);

class Tensor {
public:
    Tensor() = default;

    /// A zero-filled tensor that owns its (aligned) buffer.
    static Tensor zeros(std::vector<int64_t> shape, DType dtype);
    /// A read-only view of `data`, kept valid by `keepalive` (e.g. the mapped file).
    static Tensor borrowed(std::vector<int64_t> shape, DType dtype, const void* data,
                           std::shared_ptr<const void> keepalive);

    const std::vector<int64_t>& shape() const { return shape_; }
    int ndim() const { return static_cast<int>(shape_.size()); }
    int64_t dim(int i) const { return shape_.at(static_cast<size_t>(i < 0 ? i + ndim() : i)); }
    DType dtype() const { return dtype_; }
    int64_t numel() const { return numel_; }
    size_t nbytes() const { return nbytes_; }
    bool is_owned() const { return writable_; }

    const void* data() const { return data_; }
    /// Writable access; throws InvalidArgument for a borrowed (read-only) tensor.
    void* mutable_data();

    template <typename T>
    std::span<const T> values() const {
        return {static_cast<const T*>(data_), nbytes_ / sizeof(T)};
    }

    /// The whole tensor converted to float (uses the dtype's to_float codec).
    std::vector<float> to_float() const;

    /// "[512, 64]"
    std::string shape_string() const;

private:
    Tensor(std::vector<int64_t> shape, DType dtype, void* data, std::shared_ptr<const void> storage, bool writable);

    std::vector<int64_t> shape_;
    DType dtype_ = DType::F32;
    int64_t numel_ = 0;
    size_t nbytes_ = 0;
    void* data_ = nullptr;
    std::shared_ptr<const void> storage_;
    bool writable_ = false;
};

/// Product of `shape`, or nullopt on a negative dimension or overflow past 2^62.
std::optional<int64_t> checked_numel(std::span<const int64_t> shape);

}  // namespace cq
