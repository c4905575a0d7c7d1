// UTF-8 decoding/encoding and the SentencePiece helpers the tokenizers share. The Unicode character
// classes, NFD and lowercase come from ICU (unicode_icu.cpp) or, in the CQ_MINIMAL runtime, from
// generated tables (unicode_tables.cpp).
#include "tokenizers/tokenizer_internal.h"

namespace cq::tok {

uint32_t utf8_decode(std::string_view s, size_t i, size_t& len) {
    const auto byte = [&](size_t k) { return static_cast<uint8_t>(s[k]); };
    const auto cont = [&](size_t k) { return k < s.size() && (byte(k) & 0xC0) == 0x80; };
    const uint8_t c = byte(i);
    len = 1;
    if (c < 0x80) return c;
    if (c >= 0xC2 && c <= 0xDF) {
        if (!cont(i + 1)) return 0xFFFD;
        len = 2;
        return ((c & 0x1Fu) << 6) | (byte(i + 1) & 0x3Fu);
    }
    if (c >= 0xE0 && c <= 0xEF) {
        if (!cont(i + 1) || !cont(i + 2)) return 0xFFFD;
        const uint8_t c1 = byte(i + 1);
        if ((c == 0xE0 && c1 < 0xA0) || (c == 0xED && c1 >= 0xA0)) return 0xFFFD;  // overlong / surrogate
        len = 3;
        return ((c & 0x0Fu) << 12) | ((c1 & 0x3Fu) << 6) | (byte(i + 2) & 0x3Fu);
    }
    if (c >= 0xF0 && c <= 0xF4) {
        if (!cont(i + 1) || !cont(i + 2) || !cont(i + 3)) return 0xFFFD;
        const uint8_t c1 = byte(i + 1);
        if ((c == 0xF0 && c1 < 0x90) || (c == 0xF4 && c1 >= 0x90)) return 0xFFFD;  // overlong / > U+10FFFF
        len = 4;
        return ((c & 0x07u) << 18) | ((c1 & 0x3Fu) << 12) | ((byte(i + 2) & 0x3Fu) << 6) | (byte(i + 3) & 0x3Fu);
    }
    return 0xFFFD;
}

void utf8_append(std::string& out, uint32_t cp) {
    if (cp < 0x80) {
        out += static_cast<char>(cp);
    } else if (cp < 0x800) {
        out += static_cast<char>(0xC0 | (cp >> 6));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        out += static_cast<char>(0xE0 | (cp >> 12));
        out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
        out += static_cast<char>(0xF0 | (cp >> 18));
        out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
        out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    }
}

std::string spm_unescape(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    for (size_t i = 0; i < s.size();) {
        if (s.compare(i, kSpmSpace.size(), kSpmSpace) == 0) {
            out += ' ';
            i += kSpmSpace.size();
        } else {
            out += s[i++];
        }
    }
    return out;
}

std::optional<uint8_t> parse_byte_piece(std::string_view piece) {
    if (piece.size() != 6 || piece.substr(0, 3) != "<0x" || piece[5] != '>') return std::nullopt;
    const auto hex = [](char c) -> int {
        if (c >= '0' && c <= '9') return c - '0';
        if (c >= 'A' && c <= 'F') return c - 'A' + 10;
        if (c >= 'a' && c <= 'f') return c - 'a' + 10;
        return -1;
    };
    const int hi = hex(piece[3]), lo = hex(piece[4]);
    if (hi < 0 || lo < 0) return std::nullopt;
    return static_cast<uint8_t>(hi * 16 + lo);
}

bool is_cjk_ideograph(uint32_t cp) {
    return (cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= 0x3400 && cp <= 0x4DBF) || (cp >= 0x20000 && cp <= 0x2A6DF) ||
           (cp >= 0x2A700 && cp <= 0x2B73F) || (cp >= 0x2B740 && cp <= 0x2B81F) || (cp >= 0x2B820 && cp <= 0x2CEAF) ||
           (cp >= 0xF900 && cp <= 0xFAFF) || (cp >= 0x2F800 && cp <= 0x2FA1F);
}

}  // namespace cq::tok
