// Tensor storage: aligned owned buffers and read-only borrowed views.
#include "cq/tensor.h"

#include <cstdlib>
#include <cstring>
#include <new>

#include "cq/error.h"

namespace cq {

void* aligned_alloc_bytes(size_t bytes) {
    const size_t rounded = (bytes + kTensorAlignment - 1) / kTensorAlignment * kTensorAlignment;
    void* p = std::aligned_alloc(kTensorAlignment, rounded == 0 ? kTensorAlignment : rounded);
    if (!p) throw std::bad_alloc();
    return p;
}

void aligned_free(void* ptr) { std::free(ptr); }

std::optional<int64_t> checked_numel(std::span<const int64_t> shape) {
    int64_t n = 1;
    for (int64_t d : shape) {
        if (d < 0) return std::nullopt;
        if (d != 0 && n > (int64_t{1} << 62) / d) return std::nullopt;
        n *= d;
    }
    return n;
}

Tensor::Tensor(std::vector<int64_t> shape, DType dtype, void* data, std::shared_ptr<const void> storage,
               bool writable)
    : shape_(std::move(shape)), dtype_(dtype), data_(data), storage_(std::move(storage)), writable_(writable) {
    const auto n = checked_numel(shape_);
    if (!n) throw InvalidArgument("[tensor] shape " + shape_string() + " is negative or too large");
    numel_ = *n;
    const auto bytes = dtype_bytes(dtype_, static_cast<uint64_t>(numel_));
    if (!bytes)
        throw InvalidArgument("[tensor] shape " + shape_string() + " is not a whole number of " +
                              std::string(dtype_name(dtype_)) + " blocks");
    nbytes_ = static_cast<size_t>(*bytes);
}

Tensor Tensor::zeros(std::vector<int64_t> shape, DType dtype) {
    Tensor probe(shape, dtype, nullptr, nullptr, false);  // validates and sizes
    void* buf = aligned_alloc_bytes(probe.nbytes_);
    std::memset(buf, 0, probe.nbytes_);
    std::shared_ptr<void> owner(buf, aligned_free);
    return Tensor(std::move(shape), dtype, buf, std::move(owner), true);
}

Tensor Tensor::borrowed(std::vector<int64_t> shape, DType dtype, const void* data, std::shared_ptr<const void> keepalive) {
    return Tensor(std::move(shape), dtype, const_cast<void*>(data), std::move(keepalive), false);
}

void* Tensor::mutable_data() {
    if (!writable_) throw InvalidArgument("[tensor] cannot write to a read-only (borrowed) tensor");
    return data_;
}

std::vector<float> Tensor::to_float() const {
    const auto& traits = dtype_traits(dtype_);
    if (!traits.to_float)
        throw Unsupported("[tensor] no float conversion for dtype " + std::string(traits.name) + " yet");
    std::vector<float> out(static_cast<size_t>(numel_));
    if (numel_ > 0) traits.to_float(data_, out.data(), numel_);
    return out;
}

std::string Tensor::shape_string() const {
    std::string s = "[";
    for (size_t i = 0; i < shape_.size(); ++i) {
        if (i) s += ", ";
        s += std::to_string(shape_[i]);
    }
    return s + "]";
}

}  // namespace cq
