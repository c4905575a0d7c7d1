// A test buffer whose last element ends right before a PROT_NONE page (MLAS's MatrixGuardBuffer idea),
// shared by the kernel tests so an over-read or over-write faults at once.
#pragma once

#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <stdexcept>
#include <vector>

namespace cq::test {

// n elements of T whose last one ends right before a PROT_NONE page, so a kernel that reads or
// writes past the end faults at once (MLAS's MatrixGuardBuffer idea).
template <typename T>
class GuardedBuffer {
public:
    explicit GuardedBuffer(size_t n) : n_(n) {
        const size_t page = size_t(sysconf(_SC_PAGESIZE));
        const size_t data_pages = (n * sizeof(T) + page - 1) / page;
        mapped_ = (data_pages + 1) * page;
        void* p = mmap(nullptr, mapped_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) throw std::runtime_error("GuardedBuffer: mmap failed");
        base_ = static_cast<char*>(p);
        if (mprotect(base_ + data_pages * page, page, PROT_NONE) != 0) throw std::runtime_error("GuardedBuffer: mprotect failed");
        data_ = reinterpret_cast<T*>(base_ + data_pages * page - n * sizeof(T));
    }
    explicit GuardedBuffer(const std::vector<T>& v) : GuardedBuffer(v.size()) {
        if (!v.empty()) std::memcpy(data_, v.data(), v.size() * sizeof(T));
    }
    GuardedBuffer(const GuardedBuffer&) = delete;
    GuardedBuffer& operator=(const GuardedBuffer&) = delete;
    ~GuardedBuffer() { munmap(base_, mapped_); }
    T* data() { return data_; }
    T& operator[](size_t i) { return data_[i]; }
    const T& operator[](size_t i) const { return data_[i]; }
    size_t size() const { return n_; }
    std::vector<T> to_vector() const { return std::vector<T>(data_, data_ + n_); }

private:
    size_t n_;
    size_t mapped_ = 0;
    char* base_ = nullptr;
    T* data_ = nullptr;
};

}  // namespace cq::test
