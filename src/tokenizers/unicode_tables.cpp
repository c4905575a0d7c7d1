// The Unicode character classes, NFD and full lowercase of the tokenizers without ICU (the CQ_MINIMAL
// runtime): binary searches over tables generated from Python's unicodedata (unicode_tables_data.h), so
// the answers follow that Unicode version where ICU's may follow a newer one (new code points only).
#include <algorithm>

#include "tokenizers/tokenizer_internal.h"
#include "tokenizers/unicode_tables_data.h"

namespace cq::tok {
namespace {

uint8_t class_bits(uint32_t cp) {
    if (cp > 0x10FFFF) return 8;  // not a code point: "other"
    const auto* end = std::end(tables::kClassRanges);
    const auto* it = std::upper_bound(std::begin(tables::kClassRanges), end, cp,
                                      [](uint32_t v, const tables::ClassRange& r) { return v < r.first; });
    return (it - 1)->bits;  // kClassRanges[0].first is 0
}

// The mapping of cp in `table` (sorted by code point), or null.
template <size_t N>
const tables::Mapping* find(const tables::Mapping (&table)[N], uint32_t cp) {
    const auto* it = std::lower_bound(std::begin(table), std::end(table), cp,
                                      [](const tables::Mapping& m, uint32_t v) { return m.cp < v; });
    return it != std::end(table) && it->cp == cp ? it : nullptr;
}

}  // namespace

bool is_letter(uint32_t cp) { return class_bits(cp) & 1; }
bool is_number(uint32_t cp) { return class_bits(cp) & 2; }
bool is_punctuation(uint32_t cp) { return class_bits(cp) & 4; }
bool is_other(uint32_t cp) { return class_bits(cp) & 8; }
bool is_nonspacing_mark(uint32_t cp) { return class_bits(cp) & 16; }
bool is_white_space(uint32_t cp) { return class_bits(cp) & 32; }

std::vector<uint32_t> strip_accents(const std::vector<uint32_t>& cps) {
    // Hangul syllables: L V (T) jamo, none of them a mark (Unicode 3.12's algorithm).
    constexpr uint32_t kSBase = 0xAC00, kLBase = 0x1100, kVBase = 0x1161, kTBase = 0x11A7;
    constexpr uint32_t kVCount = 21, kTCount = 28, kSCount = 11172;
    std::vector<uint32_t> out;
    out.reserve(cps.size());
    for (const uint32_t cp : cps) {
        if (cp >= kSBase && cp < kSBase + kSCount) {
            const uint32_t s = cp - kSBase;
            out.push_back(kLBase + s / (kVCount * kTCount));
            out.push_back(kVBase + (s % (kVCount * kTCount)) / kTCount);
            if (s % kTCount) out.push_back(kTBase + s % kTCount);
            continue;
        }
        const tables::Mapping* m = cp < 0x80 ? nullptr : find(tables::kDecompositions, cp);
        if (!m) {
            if (!is_nonspacing_mark(cp)) out.push_back(cp);
            continue;
        }
        for (uint32_t i = 0; i < m->length; ++i) {
            const uint32_t d = tables::kDecompositionPool[m->offset + i];
            if (!is_nonspacing_mark(d)) out.push_back(d);
        }
    }
    return out;
}

void append_lowercase(uint32_t cp, std::vector<uint32_t>& out) {
    if (cp < 0x80) {
        out.push_back(cp >= 'A' && cp <= 'Z' ? cp + 32 : cp);
        return;
    }
    const tables::Mapping* m = find(tables::kLowercase, cp);
    if (!m) {
        out.push_back(cp);
        return;
    }
    for (uint32_t i = 0; i < m->length; ++i) out.push_back(tables::kLowercasePool[m->offset + i]);
}

}  // namespace cq::tok
