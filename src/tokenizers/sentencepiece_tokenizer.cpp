// An HF directory's tokenizer.model, run by libsentencepiece itself (so its normalizer spec — dummy
// prefix, whitespace handling — is honoured exactly). BOS/EOS follow tokenizer_config.json
// (add_bos_token defaults to true, add_eos_token to false, as in transformers' LlamaTokenizer).
#include <sentencepiece_processor.h>

#include "cq/error.h"
#include "tokenizers/tokenizer_internal.h"

namespace cq::tok {

namespace {

class SentencePieceTokenizer final : public Tokenizer {
public:
    SentencePieceTokenizer(const std::string& path, const HfTokenizerConfig& cfg) {
        const auto status = sp_.Load(path);
        if (!status.ok())
            throw FormatError("sentencepiece", path, 0, "cannot load the SentencePiece model: " + status.ToString());
        n_ = sp_.GetPieceSize();
        if (n_ <= 0) throw FormatError("sentencepiece", path, 0, "the SentencePiece model has no pieces");
        bos_id_ = sp_.bos_id();
        eos_id_ = sp_.eos_id();
        if (const auto b = hf_int(cfg, "bos_token_id"); b && *b >= 0 && *b != bos_id_) {
            if (*b >= n_)
                throw FormatError("json", cfg.dir + "/config.json", 0,
                                  "bos_token_id " + std::to_string(*b) + " is outside the vocabulary of " +
                                      std::to_string(n_) + " tokens");
            bos_id_ = static_cast<int32_t>(*b);
        }
        if (bos_id_ >= n_) bos_id_ = -1;
        if (eos_id_ >= n_) eos_id_ = -1;
        add_bos_ = hf_bool(cfg, "add_bos_token").value_or(true) && bos_id_ >= 0;
        add_eos_ = hf_bool(cfg, "add_eos_token").value_or(false) && eos_id_ >= 0;
        // Whether the normalizer adds a dummy "▁" prefix (the model proto is not in the public API):
        // with it, the first piece of any letter starts with "▁".
        const auto pieces = sp_.EncodeAsPieces("a");
        strip_leading_space_ = !pieces.empty() && pieces.front().rfind(kSpmSpace, 0) == 0;
    }

    TokenizerKind kind() const override { return TokenizerKind::spm; }
    int32_t vocab_size() const override { return n_; }

    std::vector<int32_t> encode(std::string_view text, bool add_special) const override {
        std::vector<int> ids;
        const auto status = sp_.Encode(text, &ids);
        if (!status.ok()) throw InvalidArgument("[tokenizer] SentencePiece cannot encode the text: " + status.ToString());
        std::vector<int32_t> out;
        out.reserve(ids.size() + 2);
        if (add_special && add_bos_) out.push_back(bos_id_);
        out.insert(out.end(), ids.begin(), ids.end());
        if (add_special && add_eos_) out.push_back(eos_id_);
        return out;
    }

    std::string token_to_text(int32_t id) const override {
        check(id);
        if (sp_.IsControl(id) || sp_.IsUnknown(id)) return {};
        const std::string p = sp_.IdToPiece(id);
        if (sp_.IsByte(id)) {
            const auto b = parse_byte_piece(p);
            return b ? std::string(1, static_cast<char>(*b)) : std::string();
        }
        return spm_unescape(p);
    }

    std::string piece(int32_t id) const override {
        check(id);
        return sp_.IdToPiece(id);
    }

private:
    void check(int32_t id) const { check_token_id(id, n_); }

    sentencepiece::SentencePieceProcessor sp_;
    int32_t n_ = 0;
    bool add_eos_ = false;
};

}  // namespace

std::unique_ptr<Tokenizer> make_sentencepiece(const std::string& model_path, const HfTokenizerConfig& cfg) {
    return std::make_unique<SentencePieceTokenizer>(model_path, cfg);
}

}  // namespace cq::tok
