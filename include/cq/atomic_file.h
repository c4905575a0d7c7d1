// Output files that appear whole or not at all: bytes go to a temporary file beside the target and
// are renamed over it only on commit(). Unfinished temporaries are removed by the destructor and, on
// SIGINT/SIGTERM, by a signal handler — so Ctrl-C never leaves a partial output behind.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>

namespace cq {

class AtomicFile {
public:
    /// Creates `<target>.tmp.<pid>.<n>` next to `target`. IoError if the folder is not writable.
    explicit AtomicFile(std::string target);
    ~AtomicFile();
    AtomicFile(const AtomicFile&) = delete;
    AtomicFile& operator=(const AtomicFile&) = delete;

    void write(const void* data, size_t bytes);
    /// Flushes, fsyncs and renames onto the target. IoError on failure (the temporary is removed).
    void commit();
    const std::string& target() const { return target_; }

private:
    std::string target_, temp_;
    FILE* file_ = nullptr;
    int slot_ = -1;
};

/// Installs the SIGINT/SIGTERM handler that removes unfinished temporaries (idempotent).
void install_interrupt_cleanup();

}  // namespace cq
