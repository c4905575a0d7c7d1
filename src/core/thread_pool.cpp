// Fixed-size thread pool: each worker takes one contiguous chunk of a parallel_for; the caller runs
// chunk 0. Workers spin briefly on an atomic job word before sleeping, so back-to-back ops (a decode
// step is ~100 of them, each tens of µs) start without a futex wake-up.
#include "cq/thread_pool.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__)
#include <immintrin.h>
#endif

#include "cq/error.h"


namespace cq {

namespace {
// How long an idle thread polls before it sleeps: longer than the gap between two ops of a decode step
// (norms, RoPE, a few µs), short enough that on an oversubscribed machine a poller soon gives its core
// back (300 µs measured no faster under load, and pure spinning lets decode collapse there).
constexpr auto kSpin = std::chrono::microseconds(100);
// A job word is generation << kChunkBits | n_chunks, so a worker beyond n_chunks never reads the job.
constexpr int kChunkBits = 16;

inline void cpu_relax() {
#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__)
    _mm_pause();
#else
    std::this_thread::yield();
#endif
}

// Polls pred() for up to kSpin; true if it held.
template <class Pred>
bool spin_until(Pred pred) {
    const auto until = std::chrono::steady_clock::now() + kSpin;
    for (;;) {
        for (int i = 0; i < 64; ++i) {
            if (pred()) return true;
            cpu_relax();
        }
        if (std::chrono::steady_clock::now() >= until) return pred();
    }
}
}  // namespace

struct ThreadPool::State {
    std::mutex mutex;
    std::condition_variable wake;
    std::condition_variable done;
    std::vector<std::thread> workers;
    std::atomic<uint64_t> job{0};  // generation << kChunkBits | n_chunks
    std::atomic<bool> stopping{false};
    std::atomic<int> sleepers{0};      // workers blocked (or about to block) on `wake`
    std::atomic<bool> caller_asleep{false};
    // The job of the current generation; stable until every worker below n_chunks has finished it.
    const std::function<void(int64_t, int64_t)>* fn = nullptr;
    int64_t n = 0;
    std::atomic<int> pending{0};
    std::exception_ptr error;  // written under mutex
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
                // seq_cst on both sides (sleepers here, job in parallel_for): either this thread sees the
                // new job before it sleeps, or the caller sees it asleep and notifies under the mutex.
                auto fresh = [&] { return s.stopping.load() || s.job.load() >> kChunkBits != seen >> kChunkBits; };
                if (!spin_until(fresh)) {
                    std::unique_lock lock(s.mutex);
                    s.sleepers.fetch_add(1);
                    s.wake.wait(lock, fresh);
                    s.sleepers.fetch_sub(1);
                }
                if (s.stopping.load()) return;
                seen = s.job.load(std::memory_order_acquire);
                const int n_chunks = int(seen & ((uint64_t{1} << kChunkBits) - 1));
                if (w >= n_chunks) continue;
                const auto [begin, end] = chunk_range(s.n, n_chunks, w);
                try {
                    (*s.fn)(begin, end);
                } catch (...) {
                    std::lock_guard lock(s.mutex);
                    if (!s.error) s.error = std::current_exception();
                }
                if (s.pending.fetch_sub(1) == 1 && s.caller_asleep.load()) {
                    std::lock_guard lock(s.mutex);
                    s.done.notify_one();
                }
            }
        });
    }
}

ThreadPool::~ThreadPool() {
    {
        std::lock_guard lock(state_->mutex);
        state_->stopping.store(true);
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
    s.fn = &fn;
    s.n = n;
    s.error = nullptr;
    s.pending.store(n_chunks - 1);
    const uint64_t gen = (s.job.load(std::memory_order_relaxed) >> kChunkBits) + 1;
    s.job.store(gen << kChunkBits | uint64_t(n_chunks));
    if (s.sleepers.load() > 0) {
        { std::lock_guard lock(s.mutex); }  // a worker between its check and its wait gets the notify
        s.wake.notify_all();
    }
    std::exception_ptr mine;
    try {
        const auto [begin, end] = chunk_range(n, n_chunks, 0);
        fn(begin, end);
    } catch (...) {
        mine = std::current_exception();
    }
    auto finished = [&] { return s.pending.load() == 0; };
    if (!spin_until(finished)) {
        std::unique_lock lock(s.mutex);
        s.caller_asleep.store(true);
        s.done.wait(lock, finished);
        s.caller_asleep.store(false);
    }
    s.fn = nullptr;
    if (mine) std::rethrow_exception(mine);
    std::lock_guard lock(s.mutex);
    if (s.error) std::rethrow_exception(std::exchange(s.error, nullptr));
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
