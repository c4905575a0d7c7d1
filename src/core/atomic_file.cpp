// Atomic output files and the interrupt handler that cleans up their temporaries.
#include "cq/atomic_file.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <mutex>

#include "cq/error.h"

namespace cq {

namespace {

// Temporaries in flight, readable from a signal handler: fixed slots of fixed-size paths.
constexpr int kSlots = 16;
constexpr size_t kPathMax = 4096;
std::array<std::atomic<bool>, kSlots> g_slot_used{};
std::array<std::array<char, kPathMax>, kSlots> g_slot_path{};
std::mutex g_slot_mutex;
std::atomic<int> g_counter{0};

int claim_slot(const std::string& path) {
    if (path.size() >= kPathMax) return -1;
    std::lock_guard lock(g_slot_mutex);
    for (int i = 0; i < kSlots; ++i) {
        if (!g_slot_used[i].load()) {
            std::memcpy(g_slot_path[i].data(), path.c_str(), path.size() + 1);
            g_slot_used[i].store(true);
            return i;
        }
    }
    return -1;
}

void release_slot(int slot) {
    if (slot >= 0) g_slot_used[slot].store(false);
}

void on_interrupt(int sig) {
    for (int i = 0; i < kSlots; ++i)
        if (g_slot_used[i].load()) ::unlink(g_slot_path[i].data());
    ::signal(sig, SIG_DFL);
    ::raise(sig);
}

}  // namespace

void install_interrupt_cleanup() {
    static std::once_flag once;
    std::call_once(once, [] {
        struct sigaction sa {};
        sa.sa_handler = on_interrupt;
        sigemptyset(&sa.sa_mask);
        ::sigaction(SIGINT, &sa, nullptr);
        ::sigaction(SIGTERM, &sa, nullptr);
    });
}

AtomicFile::AtomicFile(std::string target) : target_(std::move(target)) {
    install_interrupt_cleanup();
    temp_ = target_ + ".tmp." + std::to_string(::getpid()) + "." + std::to_string(g_counter++);
    slot_ = claim_slot(temp_);
    const int fd = ::open(temp_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) {
        release_slot(slot_);
        throw IoError("[io] cannot create '" + temp_ + "' for " + target_ + ": " + std::strerror(errno));
    }
    file_ = ::fdopen(fd, "wb");
}

AtomicFile::~AtomicFile() {
    if (file_) {
        std::fclose(file_);
        ::unlink(temp_.c_str());
    }
    release_slot(slot_);
}

void AtomicFile::write(const void* data, size_t bytes) {
    if (!file_) throw IoError("[io] " + target_ + ": write after commit");
    if (bytes && std::fwrite(data, 1, bytes, file_) != bytes)
        throw IoError("[io] cannot write '" + temp_ + "': " + std::strerror(errno));
}

void AtomicFile::commit() {
    if (!file_) throw IoError("[io] " + target_ + ": committed twice");
    const bool ok = std::fflush(file_) == 0 && ::fsync(::fileno(file_)) == 0;
    const int err = errno;
    std::fclose(file_);
    file_ = nullptr;
    if (!ok || ::rename(temp_.c_str(), target_.c_str()) != 0) {
        const int e = ok ? errno : err;
        ::unlink(temp_.c_str());
        release_slot(slot_);
        slot_ = -1;
        throw IoError("[io] cannot write '" + target_ + "': " + std::strerror(e));
    }
    release_slot(slot_);
    slot_ = -1;
}

}  // namespace cq
