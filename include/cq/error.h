// Error hierarchy of the cq library: every failure at an API or file boundary is one of these.
// Messages are full sentences that start with the operation, e.g. "[gguf] file.gguf: byte 812: ...".
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>

namespace cq {

/// Base of every error cq throws on purpose.
class Error : public std::runtime_error {
public:
    explicit Error(const std::string& message) : std::runtime_error(message) {}
};

/// A caller passed a value that is wrong (bad shape, unknown option, out-of-range number).
class InvalidArgument : public Error {
public:
    using Error::Error;
};

/// A file is malformed; carries the file and the byte offset where the problem was found.
class FormatError : public Error {
public:
    FormatError(std::string format, std::string file, uint64_t offset, const std::string& what);
    const std::string& file() const { return file_; }
    uint64_t offset() const { return offset_; }
    const std::string& format() const { return format_; }

private:
    std::string format_;
    std::string file_;
    uint64_t offset_;
};

/// A valid input asks for something cq does not implement (yet).
class Unsupported : public Error {
public:
    using Error::Error;
};

/// The operating system refused a file operation.
class IoError : public Error {
public:
    using Error::Error;
};

}  // namespace cq
