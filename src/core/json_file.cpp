// JSON files → nlohmann::json, with parser failures reported as FormatError.
#include "core/json_file.h"

#include "cq/error.h"
#include "cq/mapped_file.h"

namespace cq {

nlohmann::json parse_json_text(const std::string& text, const std::string& format, const std::string& file) {
    // A depth limit: copying or destroying a deeply nested document recurses (a hostile config.json
    // of a million '[' would overflow the stack); real configs are a few levels deep.
    constexpr int kMaxDepth = 64;
    bool too_deep = false;
    auto limit = [&](int depth, nlohmann::json::parse_event_t event, nlohmann::json&) {
        if ((event == nlohmann::json::parse_event_t::object_start || event == nlohmann::json::parse_event_t::array_start) &&
            depth >= kMaxDepth)
            too_deep = true;
        return !too_deep;
    };
    try {
        nlohmann::json doc = nlohmann::json::parse(text, limit);
        if (too_deep) throw FormatError(format, file, 0, "JSON nested deeper than " + std::to_string(kMaxDepth) + " levels");
        return doc;
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
