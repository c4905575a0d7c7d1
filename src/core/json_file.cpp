// JSON files → nlohmann::json, with parser failures reported as FormatError.
#include "core/json_file.h"

#include "cq/error.h"
#include "cq/mapped_file.h"

namespace cq {

nlohmann::json parse_json_text(const std::string& text, const std::string& format, const std::string& file) {
    try {
        return nlohmann::json::parse(text);
    } catch (const nlohmann::json::parse_error& e) {
        throw FormatError(format, file, e.byte > 0 ? e.byte - 1 : 0, std::string("malformed JSON: ") + e.what());
    } catch (const nlohmann::json::exception& e) {  // e.g. a number too large for any C++ type
        throw FormatError(format, file, 0, std::string("unreadable JSON: ") + e.what());
    }
}

nlohmann::json read_json_file(const std::string& path, const std::string& format, uint64_t max_bytes) {
    return parse_json_text(read_text_file(path, max_bytes), format, path);
}

}  // namespace cq
