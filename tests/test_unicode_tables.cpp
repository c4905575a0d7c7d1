// The tokenizers' Unicode classes, accent stripping and lowercase: the same answers from ICU (the full
// build) and from the generated tables of the CQ_MINIMAL runtime (unicode_tables.cpp), which run this test
// in their own build. Code points are chosen from every class and mapping kind the tokenizers rely on.
#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

#include "tokenizers/tokenizer_internal.h"

namespace {

using cq::tok::append_lowercase;
using cq::tok::strip_accents;

TEST(UnicodeClasses, LettersNumbersPunctuationOtherMarksSpace) {
    using namespace cq::tok;
    for (uint32_t cp : {0x41u, 0x7Au, 0xE9u, 0x3B1u, 0x416u, 0x5D0u, 0x627u, 0x4E00u, 0xAC00u, 0x10400u})
        EXPECT_TRUE(is_letter(cp)) << std::hex << cp;
    for (uint32_t cp : {0x30u, 0x39u, 0xB2u, 0x660u, 0x2160u, 0xFF10u}) EXPECT_TRUE(is_number(cp)) << std::hex << cp;
    for (uint32_t cp : {0x21u, 0x2Cu, 0xA1u, 0xBFu, 0x2014u, 0x3001u, 0xFF01u, 0x55Du}) EXPECT_TRUE(is_punctuation(cp)) << std::hex << cp;
    for (uint32_t cp : {0x0u, 0x1Fu, 0x7Fu, 0xADu, 0x200Bu, 0xE000u, 0xFFFFu, 0x10FFFFu}) EXPECT_TRUE(is_other(cp)) << std::hex << cp;
    for (uint32_t cp : {0x300u, 0x301u, 0x36Fu, 0x5B0u, 0x64Bu, 0x93Cu}) EXPECT_TRUE(is_nonspacing_mark(cp)) << std::hex << cp;
    for (uint32_t cp : {0x20u, 0x09u, 0x0Au, 0x85u, 0xA0u, 0x1680u, 0x2000u, 0x200Au, 0x2028u, 0x202Fu, 0x3000u})
        EXPECT_TRUE(is_white_space(cp)) << std::hex << cp;
    // and what they are not
    EXPECT_FALSE(is_letter(0x30));
    EXPECT_FALSE(is_letter(0x300));
    EXPECT_FALSE(is_number(0x41));
    EXPECT_FALSE(is_punctuation(0x24));  // '$' is a symbol (Sc)
    EXPECT_FALSE(is_punctuation(0x2B));  // '+' is Sm
    EXPECT_FALSE(is_other(0x41));
    EXPECT_FALSE(is_white_space(0x200B));  // zero width space is Cf, not White_Space
    EXPECT_FALSE(is_nonspacing_mark(0x903));  // Devanagari visarga is Mc
}

TEST(UnicodeClasses, StripAccentsIsNfdWithoutMarks) {
    const auto strip = [](std::vector<uint32_t> cps) { return strip_accents(cps); };
    EXPECT_EQ(strip({'c', 'a', 'f', 0xE9}), (std::vector<uint32_t>{'c', 'a', 'f', 'e'}));
    EXPECT_EQ(strip({0xC5, 0x1E69}), (std::vector<uint32_t>{'A', 's'}));                  // Å, ṩ (two marks)
    EXPECT_EQ(strip({0x65, 0x301}), (std::vector<uint32_t>{0x65}));                     // e + combining acute
    EXPECT_EQ(strip({0xD55C}), (std::vector<uint32_t>{0x1112, 0x1161, 0x11AB}));        // 한: L V T jamo
    EXPECT_EQ(strip({0xAC00}), (std::vector<uint32_t>{0x1100, 0x1161}));                // 가: L V
    EXPECT_EQ(strip({0x3AC}), (std::vector<uint32_t>{0x3B1}));                          // ά
    EXPECT_EQ(strip({0x4E00, 0xDF, 0x41}), (std::vector<uint32_t>{0x4E00, 0xDF, 0x41}));  // no decomposition
    EXPECT_EQ(strip({0x212B}), (std::vector<uint32_t>{'A'}));                            // Ångström sign → Å → A
}

TEST(UnicodeClasses, LowercaseIsTheFullMapping) {
    const auto lower = [](uint32_t cp) {
        std::vector<uint32_t> out;
        append_lowercase(cp, out);
        return out;
    };
    EXPECT_EQ(lower('A'), (std::vector<uint32_t>{'a'}));
    EXPECT_EQ(lower('z'), (std::vector<uint32_t>{'z'}));
    EXPECT_EQ(lower(0xC9), (std::vector<uint32_t>{0xE9}));          // É
    EXPECT_EQ(lower(0x130), (std::vector<uint32_t>{0x69, 0x307}));  // İ → i̇
    EXPECT_EQ(lower(0x3A3), (std::vector<uint32_t>{0x3C3}));        // Σ → σ (no final-sigma context)
    EXPECT_EQ(lower(0x410), (std::vector<uint32_t>{0x430}));        // А
    EXPECT_EQ(lower(0x1E9E), (std::vector<uint32_t>{0xDF}));        // ẞ → ß
    EXPECT_EQ(lower(0xDF), (std::vector<uint32_t>{0xDF}));          // ß stays
    EXPECT_EQ(lower(0x4E00), (std::vector<uint32_t>{0x4E00}));
    EXPECT_EQ(lower(0x10400), (std::vector<uint32_t>{0x10428}));    // Deseret
}

}  // namespace
