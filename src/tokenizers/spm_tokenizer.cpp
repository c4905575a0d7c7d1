// SentencePiece-style BPE from GGUF `tokenizer.ggml.*` metadata (LLaMA vocabularies), the algorithm
// llama.cpp's SPM tokenizer and SentencePiece's BPE model share: spaces → "▁" (plus a leading "▁"
// when add_space_prefix), one symbol per UTF-8 character, then repeatedly merge the adjacent pair
// whose concatenation is a vocabulary piece with the highest score (ties: leftmost); symbols that
// are not pieces fall back to <0xXX> byte tokens. (Malformed UTF-8 bytes become one symbol each;
// llama.cpp instead takes as many bytes as the lead byte announces.)
#include <queue>

#include "cq/error.h"
#include "tokenizers/tokenizer_internal.h"

namespace cq::tok {

namespace {

class SpmTokenizer final : public PieceTokenizer {
public:
    TokenizerKind kind() const override { return TokenizerKind::spm; }

    std::string token_to_text(int32_t id) const override {
        check(id);
        switch (types_[static_cast<size_t>(id)]) {
            case TokenType::byte: {
                const auto b = parse_byte_piece(pieces_[static_cast<size_t>(id)]);
                return b ? std::string(1, static_cast<char>(*b)) : std::string();
            }
            case TokenType::control:
            case TokenType::unknown:
                return {};
            default:
                return spm_unescape(pieces_[static_cast<size_t>(id)]);
        }
    }

    void build(const GgufMeta& meta);

private:
    void encode_text(std::string_view text, std::vector<int32_t>& out) const override {
        if (text.empty()) return;
        std::string s;
        s.reserve(text.size() + text.size() / 4 + 3);
        if (add_space_prefix_) s += kSpmSpace;
        for (const char c : text) {
            if (c == ' ') s += kSpmSpace;
            else s += c;
        }
        tokenize(s, out);
    }

    struct Symbol {
        int32_t prev, next;
        uint32_t offset, size;  // bytes of the escaped text; size 0 once merged into the left neighbour
    };
    struct Bigram {
        float score;
        int32_t left, right;
        uint32_t size;  // the pair's total bytes when queued; stale if either side changed since
        bool operator<(const Bigram& o) const {  // priority_queue top: highest score, then leftmost
            return score < o.score || (score == o.score && left > o.left);
        }
    };

    void tokenize(std::string_view s, std::vector<int32_t>& out) const {
        std::vector<Symbol> sym;
        sym.reserve(s.size());
        for (size_t i = 0; i < s.size();) {
            size_t n = 0;  // one symbol per valid UTF-8 character; each malformed byte alone
            utf8_decode(s, i, n);
            const auto k = static_cast<int32_t>(sym.size());
            sym.push_back({k - 1, k + 1, static_cast<uint32_t>(i), static_cast<uint32_t>(n)});
            i += n;
        }
        sym.back().next = -1;

        std::vector<Bigram> storage;
        storage.reserve(sym.size());
        std::priority_queue<Bigram> queue(std::less<Bigram>{}, std::move(storage));
        const auto try_pair = [&](int32_t left, int32_t right) {
            if (left < 0 || right < 0) return;
            const Symbol& l = sym[static_cast<size_t>(left)];
            const Symbol& r = sym[static_cast<size_t>(right)];
            const int32_t id = find_piece(mergeable_, s.substr(l.offset, l.size + r.size));
            if (id < 0) return;
            queue.push({scores_[static_cast<size_t>(id)], left, right, l.size + r.size});
        };
        for (size_t i = 1; i < sym.size(); ++i) try_pair(static_cast<int32_t>(i - 1), static_cast<int32_t>(i));

        while (!queue.empty()) {
            const Bigram b = queue.top();
            queue.pop();
            Symbol& l = sym[static_cast<size_t>(b.left)];
            Symbol& r = sym[static_cast<size_t>(b.right)];
            if (l.size == 0 || r.size == 0 || l.size + r.size != b.size) continue;  // stale
            l.size += r.size;
            r.size = 0;
            l.next = r.next;
            if (r.next >= 0) sym[static_cast<size_t>(r.next)].prev = b.left;
            try_pair(l.prev, b.left);
            try_pair(b.left, l.next);
        }

        for (int32_t i = 0; i >= 0; i = sym[static_cast<size_t>(i)].next) {
            const Symbol& x = sym[static_cast<size_t>(i)];
            const std::string_view piece = s.substr(x.offset, x.size);
            const int32_t id = find_piece(mergeable_, piece);
            if (id >= 0) {
                out.push_back(id);
                continue;
            }
            for (const char c : piece) {  // byte fallback
                const int32_t b = byte_ids_[static_cast<uint8_t>(c)] >= 0 ? byte_ids_[static_cast<uint8_t>(c)] : unk_id_;
                if (b < 0)
                    throw InvalidArgument("[tokenizer] cannot encode byte " + std::to_string(static_cast<uint8_t>(c)) +
                                          ": the vocabulary has neither its <0xXX> token nor an unknown token");
                out.push_back(b);
            }
        }
    }

    std::vector<float> scores_;
    std::vector<TokenType> types_;
    PieceMap mergeable_;  // normal, user-defined and unused pieces (as SentencePiece's BPE model)
    int32_t byte_ids_[256];
    int32_t unk_id_ = -1;
    bool add_space_prefix_ = true;
};

void SpmTokenizer::build(const GgufMeta& meta) {
    pieces_ = meta.tokens();
    const size_t n = pieces_.size();

    scores_.assign(n, 0.0f);
    if (const auto scores = meta.numbers("tokenizer.ggml.scores")) {
        meta.expect_per_token("tokenizer.ggml.scores", scores->size(), n);
        for (size_t i = 0; i < n; ++i) scores_[i] = static_cast<float>((*scores)[i]);
    }
    types_ = meta.token_types(n).value_or(std::vector<TokenType>(n, TokenType::normal));

    std::fill(std::begin(byte_ids_), std::end(byte_ids_), -1);
    mergeable_.reserve(n);
    for (size_t i = 0; i < n; ++i) {
        const auto id = static_cast<int32_t>(i);
        switch (types_[i]) {
            case TokenType::byte:
                if (const auto b = parse_byte_piece(pieces_[i])) byte_ids_[*b] = id;
                else meta.fail("tokenizer.ggml.tokens", "token " + std::to_string(i) + " ('" + pieces_[i] +
                                                            "') is typed BYTE but is not of the form <0xXX>");
                break;
            case TokenType::normal:
            case TokenType::user_defined:
            case TokenType::unused:
            case TokenType::undefined:
                mergeable_.emplace(pieces_[i], id);  // the first of duplicate pieces wins
                break;
            default:
                break;
        }
    }

    unk_id_ = meta.token_id("tokenizer.ggml.unknown_token_id", n).value_or(-1);
    bos_id_ = meta.token_id("tokenizer.ggml.bos_token_id", n).value_or(-1);
    eos_id_ = meta.token_id("tokenizer.ggml.eos_token_id", n).value_or(-1);
    if (unk_id_ < 0 && !meta.find("tokenizer.ggml.unknown_token_id") && n > 0) unk_id_ = 0;  // llama.cpp's defaults
    if (bos_id_ < 0 && !meta.find("tokenizer.ggml.bos_token_id") && n > 1) bos_id_ = 1;
    if (eos_id_ < 0 && !meta.find("tokenizer.ggml.eos_token_id") && n > 2) eos_id_ = 2;
    add_bos_ = meta.boolean("tokenizer.ggml.add_bos_token").value_or(true) && bos_id_ >= 0;
    add_eos_ = meta.boolean("tokenizer.ggml.add_eos_token").value_or(false) && eos_id_ >= 0;
    add_space_prefix_ = meta.boolean("tokenizer.ggml.add_space_prefix").value_or(true);
    strip_leading_space_ = add_space_prefix_;
}

}  // namespace

std::unique_ptr<Tokenizer> make_spm_from_gguf(const GgufMeta& meta) {
    auto t = std::make_unique<SpmTokenizer>();
    t->build(meta);
    return t;
}

}  // namespace cq::tok
