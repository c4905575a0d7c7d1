// A small fixed-size thread pool whose parallel_for splits a range into one contiguous chunk per
// thread; the calling thread takes the first chunk. The size follows `--threads`.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>

namespace cq {

class ThreadPool {
public:
    /// `n_threads` counts the caller; 1 runs everything inline.
    explicit ThreadPool(int n_threads);
    ~ThreadPool();
    ThreadPool(const ThreadPool&) = delete;
    ThreadPool& operator=(const ThreadPool&) = delete;

    int size() const { return n_threads_; }

    /// Calls fn(begin, end) over disjoint chunks covering [0, n). Chunks are at least `min_chunk`
    /// long. Rethrows the first exception a chunk threw, after every chunk has finished. Called from
    /// inside a chunk (of any pool), it runs fn(0, n) on the calling thread.
    void parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn, int64_t min_chunk = 1);

    /// The process-wide pool (hardware concurrency until set_global_threads is called).
    static ThreadPool& global();
    /// Replaces the global pool; n <= 0 means the number of hardware threads.
    static void set_global_threads(int n);

private:
    struct State;
    int n_threads_;
    std::unique_ptr<State> state_;
};

}  // namespace cq
