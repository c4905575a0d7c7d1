// The Unicode character classes, NFD and full lowercase the tokenizers need, answered by ICU
// (u_charType, u_isUWhiteSpace, Normalizer2, u_strToLower) so they follow the Unicode version ICU ships.
#include <unicode/normalizer2.h>
#include <unicode/uchar.h>
#include <unicode/unistr.h>
#include <unicode/ustring.h>

#include <string>

#include "cq/error.h"
#include "tokenizers/tokenizer_internal.h"

namespace cq::tok {

bool is_letter(uint32_t cp) {
    if (cp < 0x80) return (cp | 0x20) >= 'a' && (cp | 0x20) <= 'z';
    return (U_GET_GC_MASK(static_cast<UChar32>(cp)) & U_GC_L_MASK) != 0;
}

bool is_number(uint32_t cp) {
    if (cp < 0x80) return cp >= '0' && cp <= '9';
    return (U_GET_GC_MASK(static_cast<UChar32>(cp)) & U_GC_N_MASK) != 0;
}

bool is_white_space(uint32_t cp) {
    if (cp < 0x80) return cp == ' ' || (cp >= 0x09 && cp <= 0x0D);
    return u_isUWhiteSpace(static_cast<UChar32>(cp)) != 0;
}

bool is_punctuation(uint32_t cp) { return (U_GET_GC_MASK(static_cast<UChar32>(cp)) & U_GC_P_MASK) != 0; }

bool is_other(uint32_t cp) { return (U_GET_GC_MASK(static_cast<UChar32>(cp)) & U_GC_C_MASK) != 0; }

bool is_nonspacing_mark(uint32_t cp) { return u_charType(static_cast<UChar32>(cp)) == U_NON_SPACING_MARK; }

std::vector<uint32_t> strip_accents(const std::vector<uint32_t>& cps) {
    UErrorCode status = U_ZERO_ERROR;
    const icu::Normalizer2* nfd = icu::Normalizer2::getNFDInstance(status);
    if (U_FAILURE(status)) throw Error(std::string("[tokenizer] ICU NFD normalizer unavailable: ") + u_errorName(status));
    icu::UnicodeString s;
    for (const uint32_t cp : cps) s.append(static_cast<UChar32>(cp));
    const icu::UnicodeString d = nfd->normalize(s, status);
    if (U_FAILURE(status)) throw Error(std::string("[tokenizer] ICU NFD failed: ") + u_errorName(status));
    std::vector<uint32_t> out;
    out.reserve(static_cast<size_t>(d.length()));
    for (int32_t i = 0; i < d.length();) {
        const UChar32 c = d.char32At(i);
        i += U16_LENGTH(c);
        if (!is_nonspacing_mark(static_cast<uint32_t>(c))) out.push_back(static_cast<uint32_t>(c));
    }
    return out;
}

void append_lowercase(uint32_t cp, std::vector<uint32_t>& out) {
    if (cp < 0x80) {
        out.push_back(cp >= 'A' && cp <= 'Z' ? cp + 32 : cp);
        return;
    }
    UChar src[2], dst[8];
    int32_t n = 0;
    U16_APPEND_UNSAFE(src, n, static_cast<UChar32>(cp));
    UErrorCode status = U_ZERO_ERROR;
    const int32_t m = u_strToLower(dst, 8, src, n, "", &status);
    if (U_FAILURE(status) || m > 8) {
        out.push_back(cp);
        return;
    }
    for (int32_t i = 0; i < m;) {
        UChar32 c;
        U16_NEXT(dst, i, m, c);
        out.push_back(static_cast<uint32_t>(c));
    }
}

}  // namespace cq::tok
