// Byte sources: read-only mmap of a file (never written through) or an owned in-memory buffer.
#include "cq/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "cq/error.h"

namespace cq {
namespace {

class MappedFile final : public ByteSource {
public:
    explicit MappedFile(const std::string& path) {
        name_ = path;
        const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd < 0) throw IoError("[io] cannot open '" + path + "': " + std::strerror(errno));
        struct stat st {};
        if (::fstat(fd, &st) != 0) {
            const int err = errno;
            ::close(fd);
            throw IoError("[io] cannot stat '" + path + "': " + std::strerror(err));
        }
        if (S_ISDIR(st.st_mode)) {
            ::close(fd);
            throw IoError("[io] '" + path + "' is a directory, expected a file");
        }
        size_ = static_cast<uint64_t>(st.st_size);
        if (size_ > 0) {
            void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
            if (p == MAP_FAILED) {
                const int err = errno;
                ::close(fd);
                throw IoError("[io] cannot map '" + path + "': " + std::strerror(err));
            }
            mapping_ = p;
            data_ = static_cast<const uint8_t*>(p);
        }
        ::close(fd);
    }
    ~MappedFile() override {
        if (mapping_) ::munmap(mapping_, size_);
    }

private:
    void* mapping_ = nullptr;
};

class MemorySource final : public ByteSource {
public:
    MemorySource(std::vector<uint8_t> bytes, std::string name) : bytes_(std::move(bytes)) {
        name_ = std::move(name);
        data_ = bytes_.data();
        size_ = bytes_.size();
    }

private:
    std::vector<uint8_t> bytes_;
};

}  // namespace

std::shared_ptr<const ByteSource> map_file(const std::string& path) { return std::make_shared<MappedFile>(path); }

std::shared_ptr<const ByteSource> memory_source(std::vector<uint8_t> bytes, std::string name) {
    return std::make_shared<MemorySource>(std::move(bytes), std::move(name));
}

std::string read_text_file(const std::string& path, uint64_t max_bytes) {
    auto src = map_file(path);
    if (src->size() > max_bytes)
        throw IoError("[io] '" + path + "' is " + std::to_string(src->size()) + " bytes, more than the " +
                      std::to_string(max_bytes) + "-byte limit for this kind of file");
    return std::string(reinterpret_cast<const char*>(src->data()), src->size());
}

}  // namespace cq
