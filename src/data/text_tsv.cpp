// GLUE-style TSV reader: header row names the columns; fields split on tabs only (no quoting rules).
#include <algorithm>
#include <array>
#include <optional>
#include <string_view>
#include <vector>

#include "cq/datasets.h"
#include "cq/error.h"
#include "data/tsv_fields.h"
#include "cq/mapped_file.h"
#include "data/label_lookup.h"

namespace cq::data {

namespace {

// Evaluation TSVs are a few MB; the limit only stops a wrong path (a model file) from being slurped.
constexpr uint64_t kMaxTsvBytes = 1ull << 30;


std::optional<size_t> find_column(const std::vector<std::string_view>& header, std::string_view name) {
    for (size_t i = 0; i < header.size(); ++i)
        if (header[i] == name) return i;
    return std::nullopt;
}

std::string describe_columns(const std::vector<std::string_view>& header) {
    std::string out;
    for (auto h : header) out += (out.empty() ? "'" : ", '") + std::string(h) + "'";
    return out;
}

// Whitespace-separated words, as EncoderModel::tokenize_with_boxes splits them.
size_t count_words(std::string_view text) {
    size_t n = 0;
    bool in_word = false;
    for (const char ch : text) {
        const bool space = ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\v' || ch == '\f';
        n += !space && !in_word;
        in_word = !space;
    }
    return n;
}

// "x0,y0,x1,y1 x0,y0,x1,y1 ..." → boxes; nullopt if any box is not four integers.
std::optional<std::vector<std::array<int32_t, 4>>> parse_boxes(std::string_view field) {
    std::vector<std::array<int32_t, 4>> out;
    size_t i = 0;
    while (i < field.size()) {
        if (field[i] == ' ') {
            ++i;
            continue;
        }
        std::array<int32_t, 4> box{};
        for (int k = 0; k < 4; ++k) {
            if (k > 0) {
                if (i >= field.size() || field[i] != ',') return std::nullopt;
                ++i;
            }
            const size_t start = i;
            if (i < field.size() && field[i] == '-') ++i;
            int64_t v = 0;
            while (i < field.size() && field[i] >= '0' && field[i] <= '9' && v < (int64_t{1} << 31)) v = v * 10 + (field[i++] - '0');
            if (i == start || (field[start] == '-' && i == start + 1) || v >= (int64_t{1} << 31)) return std::nullopt;
            box[static_cast<size_t>(k)] = static_cast<int32_t>(field[start] == '-' ? -v : v);
        }
        if (i < field.size() && field[i] != ' ') return std::nullopt;
        out.push_back(box);
    }
    return out;
}

}  // namespace

TextDataset load_text_tsv(const std::string& path, std::span<const std::string> label_names) {
    const std::string text = read_text_file(path, kMaxTsvBytes);
    std::string_view rest(text);
    uint64_t offset = 0;
    if (rest.starts_with("\xEF\xBB\xBF")) rest.remove_prefix(3), offset = 3;

    // Lines with their 1-based number and byte offset; CR before LF is dropped, blank lines skipped.
    struct Line {
        std::string_view text;
        int64_t number;
        uint64_t offset;
    };
    std::vector<Line> lines;
    for (int64_t number = 1; !rest.empty(); ++number) {
        const size_t nl = rest.find('\n');
        std::string_view line = rest.substr(0, nl);
        const uint64_t line_offset = offset;
        const size_t consumed = nl == std::string_view::npos ? rest.size() : nl + 1;
        rest.remove_prefix(consumed);
        offset += consumed;
        if (line.ends_with('\r')) line.remove_suffix(1);
        if (!line.empty()) lines.push_back({line, number, line_offset});
    }
    if (lines.empty()) throw FormatError("tsv", path, 0, "the file is empty (a header row is needed)");

    const auto header = split_tabs(lines[0].text);
    TextDataset ds;
    // Pairs first: "question" is the first text of QQP/QNLI but only with its partner column present.
    constexpr std::array<std::array<std::string_view, 2>, 4> kPairs = {{
        {"sentence1", "sentence2"}, {"question1", "question2"}, {"question", "sentence"}, {"premise", "hypothesis"}}};
    constexpr std::array<std::string_view, 5> kTexts = {"sentence", "text", "sentence1", "question", "premise"};
    constexpr std::array<std::string_view, 4> kLabels = {"label", "labels", "target", "gold_label"};
    std::optional<size_t> text_col, pair_col, label_col;
    for (const auto& [first, second] : kPairs) {
        auto a = find_column(header, first), b = find_column(header, second);
        if (a && b) {
            text_col = a, pair_col = b;
            break;
        }
    }
    for (auto name : kTexts)
        if (!text_col) text_col = find_column(header, name);
    for (auto name : kLabels)
        if (!label_col) label_col = find_column(header, name);
    if (!text_col || !label_col)
        throw FormatError("tsv", path, lines[0].offset,
                          std::string("line 1: no ") + (!text_col ? "text column (sentence, text, sentence1, question or premise)"
                                                                  : "label column (label, labels, target or gold_label)") +
                              " in the header; its columns are " + describe_columns(header));
    ds.text_column = header[*text_col];
    ds.pair_column = pair_col ? std::string(header[*pair_col]) : std::string();
    ds.label_column = header[*label_col];
    std::optional<size_t> bbox_col = find_column(header, "bbox");
    if (!bbox_col) bbox_col = find_column(header, "boxes");
    if (bbox_col) ds.bbox_column = header[*bbox_col];
    const size_t needed = std::max({*text_col, *label_col, pair_col.value_or(size_t{0}), bbox_col.value_or(size_t{0})}) + 1;

    ds.examples.reserve(lines.size() - 1);
    for (size_t i = 1; i < lines.size(); ++i) {
        const auto& line = lines[i];
        const auto fields = split_tabs(line.text);
        const std::string where = "line " + std::to_string(line.number) + ": ";
        if (fields.size() < needed)
            throw FormatError("tsv", path, line.offset,
                              where + "has " + std::to_string(fields.size()) + " tab-separated fields; columns '" +
                                  ds.text_column + "' and '" + ds.label_column + "' need at least " +
                                  std::to_string(needed));
        const std::string_view value = fields[*label_col];
        const auto label = label_of(value, label_names);
        if (!label)
            throw FormatError("tsv", path, line.offset,
                              where + "label '" + std::string(value) + "' is " +
                                  (label_names.empty() ? std::string("not an integer")
                                                       : "not one of " + join_names(label_names) +
                                                             " nor an index below " + std::to_string(label_names.size())));
        TextExample ex;
        ex.text = fields[*text_col];
        if (pair_col) ex.text_pair = fields[*pair_col];
        ex.label = *label;
        if (bbox_col) {
            const auto boxes = parse_boxes(fields[*bbox_col]);
            if (!boxes || boxes->size() != count_words(ex.text))
                throw FormatError("tsv", path, line.offset,
                                  where + "column '" + ds.bbox_column + "' must hold one box x0,y0,x1,y1 (integers) per word of the text (" +
                                      std::to_string(count_words(ex.text)) + " words)");
            ex.boxes = *boxes;
        }
        ds.examples.push_back(std::move(ex));
    }
    return ds;
}

}  // namespace cq::data
