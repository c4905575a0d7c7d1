// Fixed-size thread pool: workers sleep on a condition variable and each takes one contiguous chunk
// of a parallel_for; the caller runs chunk 0 and waits for the rest.
#include "cq/thread_pool.h"

#include <algorithm>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

#include "cq/error.h"


namespace cq {

struct ThreadPool::State {
    std::mutex mutex;
    std::condition_variable wake;
    std::condition_variable done;
    std::vector<std::thread> workers;
    uint64_t generation = 0;
    bool stopping = false;
    // The job of the current generation.
    const std::function<void(int64_t, int64_t)>* fn = nullptr;
    int64_t n = 0;
    int n_chunks = 0;
    int pending = 0;
    std::exception_ptr error;
};

namespace {
std::pair<int64_t, int64_t> chunk_range(int64_t n, int n_chunks, int i) {
    const int64_t base = n / n_chunks, extra = n % n_chunks;
    const int64_t begin = i * base + std::min<int64_t>(i, extra);
    return {begin, begin + base + (i < extra ? 1 : 0)};
}
}  // namespace

ThreadPool::ThreadPool(int n_threads) : n_threads_(std::max(1, n_threads)), state_(std::make_unique<State>()) {
    for (int w = 1; w < n_threads_; ++w) {
        state_->workers.emplace_back([this, w] {
            State& s = *state_;
            uint64_t seen = 0;
            for (;;) {
                std::unique_lock lock(s.mutex);
                s.wake.wait(lock, [&] { return s.stopping || s.generation != seen; });
                if (s.stopping) return;
                seen = s.generation;
                if (w >= s.n_chunks) continue;
                const auto* fn = s.fn;
                const auto [begin, end] = chunk_range(s.n, s.n_chunks, w);
                lock.unlock();
                std::exception_ptr err;
                try {
                    (*fn)(begin, end);
                } catch (...) {
                    err = std::current_exception();
                }
                lock.lock();
                if (err && !s.error) s.error = err;
                if (--s.pending == 0) s.done.notify_one();
            }
        });
    }
}

ThreadPool::~ThreadPool() {
    {
        std::lock_guard lock(state_->mutex);
        state_->stopping = true;
    }
    state_->wake.notify_all();
    for (auto& t : state_->workers) t.join();
}

void ThreadPool::parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn, int64_t min_chunk) {
    if (n <= 0) return;
    const int64_t max_chunks = std::max<int64_t>(1, n / std::max<int64_t>(1, min_chunk));
    const int n_chunks = static_cast<int>(std::min<int64_t>(n_threads_, max_chunks));
    if (n_chunks == 1) {
        fn(0, n);
        return;
    }
    State& s = *state_;
    {
        std::lock_guard lock(s.mutex);
        s.fn = &fn;
        s.n = n;
        s.n_chunks = n_chunks;
        s.pending = n_chunks - 1;
        s.error = nullptr;
        ++s.generation;
    }
    s.wake.notify_all();
    std::exception_ptr mine;
    try {
        const auto [begin, end] = chunk_range(n, n_chunks, 0);
        fn(begin, end);
    } catch (...) {
        mine = std::current_exception();
    }
    std::unique_lock lock(s.mutex);
    s.done.wait(lock, [&] { return s.pending == 0; });
    s.fn = nullptr;
    if (mine) std::rethrow_exception(mine);
    if (s.error) std::rethrow_exception(s.error);
}

namespace {
std::mutex g_pool_mutex;
std::unique_ptr<ThreadPool> g_pool;
int hardware_threads() { return std::max(1u, std::thread::hardware_concurrency()); }
}  // namespace

ThreadPool& ThreadPool::global() {
    std::lock_guard lock(g_pool_mutex);
    if (!g_pool) g_pool = std::make_unique<ThreadPool>(hardware_threads());
    return *g_pool;
}

void ThreadPool::set_global_threads(int n) {
    if (n > 4096) throw InvalidArgument("[threads] " + std::to_string(n) + " threads is more than the 4096 allowed");
    const int threads = n <= 0 ? hardware_threads() : n;
    std::lock_guard lock(g_pool_mutex);
    g_pool = std::make_unique<ThreadPool>(threads);
}

}  // namespace cq
