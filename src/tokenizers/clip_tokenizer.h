// CLIP's tokenizer (transformers' CLIPTokenizer without ftfy): text cleaned and lowercased as BERT's BasicTokenizer
// does, split by CLIP's regex, bytes mapped as GPT-2's, then byte-level BPE whose word-final symbol carries "</w>".
#pragma once

#include <memory>
#include <string>

#include "cq/tokenizer.h"

namespace cq::tok {

/// vocab.json + merges.txt (+ tokenizer_config.json's bos/eos/pad/unk tokens) of the HF directory `dir`.
/// encode(text, true) gives <|startoftext|> … <|endoftext|>. IoError / FormatError naming the file otherwise.
std::unique_ptr<Tokenizer> make_clip_tokenizer(const std::string& dir);
/// The id of a CLIP tokenizer's pad token (its <|endoftext|> unless tokenizer_config.json says otherwise).
int32_t clip_pad_id(const Tokenizer& t);

}  // namespace cq::tok
