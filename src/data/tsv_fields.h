// Tab-separated fields of one line, shared by the TSV readers (labelled text, text pairs, caption pairs). The views
// point into `line`, which must outlive them.
#pragma once

#include <string_view>
#include <vector>

namespace cq::data {

inline std::vector<std::string_view> split_tabs(std::string_view line) {
    std::vector<std::string_view> fields;
    size_t start = 0;
    for (;;) {
        const size_t tab = line.find('\t', start);
        fields.push_back(line.substr(start, tab == std::string_view::npos ? std::string_view::npos : tab - start));
        if (tab == std::string_view::npos) return fields;
        start = tab + 1;
    }
}

}  // namespace cq::data
