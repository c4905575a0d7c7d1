// Seq2SeqModel's weights and the per-family loaders behind it (bart.cpp, t5.cpp, blip.cpp); the forward pass that runs every
// family's stacks is one (seq2seq.cpp), steered by Seq2SeqConfig's layout flags.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cq/seq2seq.h"
#include "io/hf/hf_config.h"
#include "io/hf/hf_model.h"
#include "models/encoder_families.h"
#include "ops/encoder_ops.h"

namespace cq {

/// One stack (encoder or decoder): its position information, the norms around it and its layers.
struct Seq2SeqStack {
    Tensor positions;             // BART: learned positions [max_positions + 2, d] (empty for T5)
    Tensor relative_bias;         // T5: block 0's relative_attention_bias [buckets, heads] as f32, shared by every layer (empty for BART)
    std::string positions_name;   // the listing's name of whichever of the two the stack has
    std::optional<Norm> embed_norm;  // BART: layernorm_embedding
    std::optional<Norm> final_norm;  // T5: final_layer_norm
    std::vector<Seq2SeqLayer> layers;
};

/// BLIP's vision tower, run by the ViT code (vit_encode) with its own config, weights and scratch.
struct ImageEncoder {
    EncoderConfig c;  // family vit: sizes, eps, hidden_act, image_* and the normalisation
    EncoderWeights w;  // patch_embd, cls_token, pos_embd, blocks (q / k / v views of the fused qkv), final_norm (post_layernorm)
    EncoderScratch s;
    ops::Activation act = ops::Activation::gelu_erf;
};

struct Seq2SeqModel::State {
    Tensor shared;  // token embeddings [vocab, d], both stacks'
    std::string shared_name;
    Seq2SeqStack encoder, decoder;
    std::optional<ImageEncoder> image;  // BLIP: the encoder (the `encoder` stack stays empty)
    // BLIP's LM head transform before lm_head: LayerNorm(act(head_dense x))
    std::optional<Linear> head_dense;
    std::optional<Norm> head_norm;
    Linear lm_head;  // the shared embeddings (tied) or the file's lm_head (+ BART's final_logits_bias, BLIP's decoder bias)
    ops::Activation act = ops::Activation::gelu_erf;
};

/// Fills a model from its directory; each family's in its own file. `c` reads config_path's JSON; `src` the weights.
class Seq2SeqLoader {
public:
    static void load_bart(Seq2SeqModel& m, const hf::Config& c, const EncoderWeightSource& src);
    static void load_t5(Seq2SeqModel& m, const hf::Config& c, const EncoderWeightSource& src);
    /// BLIP: also the preprocessor (image normalisation) from the directory d.
    static void load_blip(Seq2SeqModel& m, const hf::Config& c, const EncoderWeightSource& src, const hf::ModelDir& d);
    static Seq2SeqConfig& config(Seq2SeqModel& m) { return m.config_; }
    static Seq2SeqModel::State& state(Seq2SeqModel& m) { return *m.s_; }
    /// The weights as they are, for readers (the ONNX export).
    static const Seq2SeqModel::State& state(const Seq2SeqModel& m) { return *m.s_; }
};

/// Unsupported (naming config.json) unless config.json's architectures[0], when present, is `architecture`.
void require_architecture(const hf::Config& c, const std::string& model_type, const std::string& architecture);
/// Where an attention block keeps its four projections, after its prefix.
struct AttentionNames {
    const char *q, *k, *v, *out;
};
/// prefix + names: q / k / v [inner, d] and out [d, inner] with their roles, of `block`.
void load_attention(const EncoderWeightSource& src, const std::string& prefix, const AttentionNames& names, int64_t d, int64_t inner, int64_t block,
                    Linear& q, Linear& k, Linear& v, Linear& out);

/// BLIP's vision tower: pixels u8 [C, H, W] → [S, hidden] after post_layernorm (blip.cpp).
std::vector<float> blip_encode_image(ImageEncoder& e, const uint8_t* pixels);

namespace t5 {
/// T5's bucket for a key at `relative` = key position − query position, as transformers' _relative_position_bucket
/// (float32 logarithms, truncated): exact buckets up to half of them, logarithmic ones up to max_distance, then the last.
/// Bidirectional (the encoder) spends half the buckets on keys after the query.
int64_t relative_position_bucket(int64_t relative, bool bidirectional, int64_t num_buckets, int64_t max_distance);
/// out: [n_head, Tq, Tk] = table[bucket(j − (q0 + t))][h] for query t (at position q0 + t) and key j; table [buckets, n_head] f32.
void relative_position_bias(const Tensor& table, bool bidirectional, int64_t max_distance, int64_t q0, int64_t Tq, int64_t Tk,
                            std::vector<float>& out);
}  // namespace t5

}  // namespace cq
