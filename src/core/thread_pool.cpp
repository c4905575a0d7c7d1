// Fixed-size thread pool: each parallel_for hands one contiguous chunk to each thread; the caller runs
// chunk 0 and waits for the rest. Between jobs, workers (and the waiting caller) poll for a short time
// before sleeping on a condition variable: a decode step issues a hundred or more small parallel_fors,
// and a futex wake-up costs ~15 µs each on these VMs while polling costs ~0.5 µs. The polling time adapts
// per thread: waits that end soon after it would have given up double it (up to kMaxSpinMicros), waits
// that outlast it halve it (down to none), so on an oversubscribed machine, where a spinning thread only
// takes the core from the one it waits for, the pool falls back to sleeping at once.
#include "cq/thread_pool.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

#include "cq/error.h"

namespace cq {

namespace {
constexpr double kMaxSpinMicros = 50.0;

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
    _mm_pause();
#elif defined(__aarch64__)
    asm volatile("yield");
#endif
}

using Clock = std::chrono::steady_clock;
double micros_since(Clock::time_point t) { return std::chrono::duration<double, std::micro>(Clock::now() - t).count(); }

// Waits until ready(): polls for up to `budget` µs (this thread's adaptive polling time), then calls
// block() to sleep; adapts the budget to how long the wait turned out to be.
template <typename Ready, typename Block>
void wait_until(double& budget, Ready ready, Block block) {
    const auto start = Clock::now();
    if (budget > 0)
        for (;;) {
            for (int i = 0; i < 64; ++i) {
                if (ready()) return;
                cpu_relax();
            }
            if (micros_since(start) > budget) break;
        }
    block();
    const double waited = micros_since(start);
    budget = waited < kMaxSpinMicros ? std::min(kMaxSpinMicros, std::max(2.0, 2 * budget)) : (budget < 1 ? 0.0 : budget / 2);
}

thread_local double t_spin_budget = kMaxSpinMicros;
// Set while this thread runs a chunk of some job: a parallel_for from inside one runs inline, since the
// pool has one job slot and its workers are busy with the outer job (waiting for them would deadlock).
thread_local bool t_inside_job = false;

struct InsideJob {
    bool saved = t_inside_job;
    InsideJob() { t_inside_job = true; }
    ~InsideJob() { t_inside_job = saved; }
};
}  // namespace

struct ThreadPool::State {
    std::mutex mutex;
    std::condition_variable wake;
    std::condition_variable done;
    std::vector<std::thread> workers;
    std::atomic<uint64_t> generation{0};
    std::atomic<bool> stopping{false};
    int sleepers = 0;  // workers blocked on `wake` (guarded by mutex)
    // The job of the current generation, written before `generation` moves (release) and read after it
    // is seen (acquire). Every worker, with a chunk or not, counts down `pending` after reading it, so the
    // caller never rewrites a job some worker is still reading.
    const std::function<void(int64_t, int64_t)>* fn = nullptr;
    int64_t n = 0;
    int n_chunks = 0;
    std::atomic<int> pending{0};
    std::exception_ptr error;  // guarded by mutex
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
            t_inside_job = true;
            State& s = *state_;
            uint64_t seen = 0;
            for (;;) {
                const auto fresh = [&] { return s.stopping.load(std::memory_order_acquire) || s.generation.load(std::memory_order_acquire) != seen; };
                wait_until(t_spin_budget, fresh, [&] {
                    std::unique_lock lock(s.mutex);
                    ++s.sleepers;
                    s.wake.wait(lock, fresh);
                    --s.sleepers;
                });
                if (s.stopping.load(std::memory_order_acquire)) return;
                seen = s.generation.load(std::memory_order_acquire);  // one job at a time: seen + 1
                if (w < s.n_chunks) {
                    const auto [begin, end] = chunk_range(s.n, s.n_chunks, w);
                    try {
                        (*s.fn)(begin, end);
                    } catch (...) {
                        std::lock_guard lock(s.mutex);
                        if (!s.error) s.error = std::current_exception();
                    }
                }
                if (s.pending.fetch_sub(1, std::memory_order_acq_rel) == 1) {
                    std::lock_guard lock(s.mutex);  // so the caller cannot miss this between its check and its wait
                    s.done.notify_one();
                }
            }
        });
    }
}

ThreadPool::~ThreadPool() {
    {
        std::lock_guard lock(state_->mutex);
        state_->stopping.store(true, std::memory_order_release);
    }
    state_->wake.notify_all();
    for (auto& t : state_->workers) t.join();
}

void ThreadPool::parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn, int64_t min_chunk) {
    if (n <= 0) return;
    const int64_t max_chunks = std::max<int64_t>(1, n / std::max<int64_t>(1, min_chunk));
    const int n_chunks = static_cast<int>(std::min<int64_t>(n_threads_, max_chunks));
    if (n_chunks == 1 || t_inside_job) {
        fn(0, n);
        return;
    }
    State& s = *state_;
    bool notify = false;
    {
        std::lock_guard lock(s.mutex);
        s.fn = &fn;
        s.n = n;
        s.n_chunks = n_chunks;
        s.pending.store(n_threads_ - 1, std::memory_order_relaxed);
        s.error = nullptr;
        s.generation.fetch_add(1, std::memory_order_release);
        notify = s.sleepers > 0;
    }
    if (notify) s.wake.notify_all();
    std::exception_ptr mine;
    try {
        const InsideJob inside;
        const auto [begin, end] = chunk_range(n, n_chunks, 0);
        fn(begin, end);
    } catch (...) {
        mine = std::current_exception();
    }
    const auto finished = [&] { return s.pending.load(std::memory_order_acquire) == 0; };
    wait_until(t_spin_budget, finished, [&] {
        std::unique_lock lock(s.mutex);
        s.done.wait(lock, finished);
    });
    std::lock_guard lock(s.mutex);  // for s.error
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
