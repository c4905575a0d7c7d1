// Message formatting for cq's error types.
#include "cq/error.h"

namespace cq {

static std::string format_error_message(const std::string& format, const std::string& file, uint64_t offset,
                                        const std::string& what) {
    return "[" + format + "] " + file + ": at byte " + std::to_string(offset) + ": " + what;
}

FormatError::FormatError(std::string format, std::string file, uint64_t offset, const std::string& what)
    : Error(format_error_message(format, file, offset, what)),
      format_(std::move(format)),
      file_(std::move(file)),
      offset_(offset) {}

}  // namespace cq
