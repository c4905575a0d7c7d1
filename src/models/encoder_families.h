// Internals shared by the encoder families: the weight source the loaders map tensors through, the
// scratch activations, and the forward passes (sequences of src/ops ops) that EncoderModel dispatches to.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "cq/encoder.h"
#include "ops/encoder_ops.h"

namespace cq {

namespace hf {
struct ModelDir;
}

/// Activations reused across calls (grown on demand), one set per model.
struct EncoderScratch {
    std::vector<float> x, xn, q, k, v, attn, ffn, tmp, cls, head, pixels, patches;
    std::vector<int32_t> positions;
};

/// Fetches tensors by name from one HF directory and checks their shapes; errors name the file and the tensor.
class EncoderWeightSource {
public:
    using Lookup = std::function<std::optional<Tensor>(const std::string&)>;
    EncoderWeightSource(std::string file, Lookup lookup) : file_(std::move(file)), lookup_(std::move(lookup)) {}

    bool has(const std::string& name) const { return lookup_(name).has_value(); }
    /// The tensor, which must hold exactly the elements of `shape`; it is viewed with that shape
    /// (so [1, 1, D] serves as [D]) without copying.
    Tensor get(const std::string& name, const std::vector<int64_t>& shape) const;
    std::optional<Tensor> find(const std::string& name, const std::vector<int64_t>& shape) const;
    /// name.weight [n_out, n_in] (viewed as 2-D if stored with more dims, e.g. a conv) and name.bias [n_out] (widened to f32).
    Linear linear(const std::string& name, int64_t n_out, int64_t n_in, LayerRole role = LayerRole::other, int64_t block = -1) const;
    /// name.weight and name.bias [n], widened to f32.
    Norm norm(const std::string& name, int64_t n) const;

    /// Where a family keeps one block's tensors, relative to "<layers>N.".
    struct BlockNames {
        const char *q, *k, *v, *attn_out, *attn_norm, *ffn_in, *ffn_out, *ffn_norm;
    };
    /// n_layer blocks named "<layers>N.<name>", hidden size d, feed-forward size f. With `pruned` (a config whose
    /// pruned_heads is set), block l's q/k/v / attn_out are [heads_in_block(l)·head_dim, d] / [d, heads_in_block(l)·head_dim].
    std::vector<EncoderBlock> blocks(const std::string& layers, const BlockNames& names, int64_t n_layer, int64_t d, int64_t f,
                                     const EncoderConfig* pruned = nullptr) const;
    [[noreturn]] void fail(const std::string& what) const;

private:
    std::string file_;
    Lookup lookup_;
};

/// Per-call state of one forward pass.
struct EncoderPass {
    const EncoderConfig& c;
    const EncoderWeights& w;
    EncoderScratch& s;
    const std::vector<std::pair<ObserverId, BlockObserver>>* block_observers;  // null: none attached
    ops::Activation act;

    // x: [rows, n_in] → y: [rows, n_out]; row_mask (null: all real) marks padding rows for observers.
    void linear(const Linear& layer, const float* x, int64_t rows, float* y, const int32_t* row_mask = nullptr) const;
    // Shows block `index`'s output x: [rows, hidden] to the block observers.
    void block_done(int64_t index, const float* x, int64_t rows, const int32_t* row_mask) const;
    // x: [batch·seq, hidden] → s.attn: [batch·seq, hidden] after the output projection is NOT applied (heads concatenated).
    // causal: query t sees keys 0..t only (CLIP's text tower).
    void self_attention(const EncoderBlock& b, const float* x, int64_t batch, int64_t seq, const int32_t* key_mask, bool causal = false) const;
    // s.x: [batch·seq, hidden] → s.cls: [batch, hidden], the first token of each sequence
    void gather_cls(int64_t batch, int64_t seq) const;
    // Whether `blocks` run sequence-parallel: whole sequences per thread through every block (no barrier between a
    // block's ops, each thread's rows its own; every op is row-wise or per sequence, so the bits are the batch-wide
    // pass's). Taken when every thread gets a sequence of at least 32 tokens and nothing observes the pass (block
    // observers, or observers on the blocks' Linears, must see whole-batch events in order).
    bool splits_by_sequence(const std::vector<EncoderBlock>& blocks, int64_t batch, int64_t seq) const;
    // This thread's scratch for a sequence-parallel slice of `rows` tokens through `blocks` (q, k, v, attn, tmp, xn, ffn).
    static EncoderScratch& thread_scratch(const EncoderConfig& c, const std::vector<EncoderBlock>& blocks, int64_t rows);
};

/// preprocessor_config.json's rescale and normalisation into c (the processor's defaults where the file has none; no
/// resize or crop: images come at the model's size).
void read_image_preprocessor(const hf::ModelDir& d, EncoderConfig& c, float default_mean, float default_std);
void load_bert_family_weights(const EncoderConfig& c, const EncoderWeightSource& src, EncoderWeights& w);
void load_vit_weights(const EncoderConfig& c, const EncoderWeightSource& src, EncoderWeights& w);
void load_resnet_weights(const EncoderConfig& c, const EncoderWeightSource& src, EncoderWeights& w);
/// HF ResNet's embedder (stem) and the blocks of its first n_stages stages, named "<prefix>embedder.embedder",
/// "<prefix>encoder.stages.S.layers.D…" (prefix "resnet." in ResNetForImageClassification; DETR's backbone has its own),
/// into w.stem and w.residual_units (blocks numbered from 0).
void load_resnet_backbone(const EncoderConfig& c, const EncoderWeightSource& src, const std::string& prefix, int64_t n_stages, EncoderWeights& w);
void load_efficientnet_weights(const EncoderConfig& c, const EncoderWeightSource& src, EncoderWeights& w);
/// transformers' round_filters (a width × width_coefficient, rounded to depth_divisor) and round_repeats (⌈depth_coefficient · n⌉).
int64_t efficientnet_round_filters(const EfficientNetConfig& e, int64_t channels);
int64_t efficientnet_round_repeats(const EfficientNetConfig& e, int64_t repeats);

// ---- convolutions shared by ResNet and EfficientNet (conv_bn.cpp) ----
/// BatchNorm2d `bn` (.weight γ, .bias β, .running_mean μ, .running_var: [n]) as scale γ/√(var + eps), shift β − μ·scale.
void fold_batch_norm(const EncoderWeightSource& src, const std::string& bn, int64_t n, float eps, std::vector<float>& scale,
                     std::vector<float>& shift);
/// `conv`.weight [out, in, k, k] with the BatchNorm `bn` folded in: a Linear named `conv` over [in·k·k] patches.
ConvUnit conv_bn(const EncoderWeightSource& src, const std::string& conv, const std::string& bn, int64_t in, int64_t out, int64_t kernel,
                 int64_t stride, std::string activation, int64_t block, float eps);
/// x: [N, C, H, W] → rows: [N·OH·OW, M] (NHWC) = conv(x) + b, im2col over zero padding pads {top, left, bottom, right}
/// (OH, OW say how much of the bottom / right padding is read) and the Linear; no activation.
void conv_rows(const EncoderPass& p, const ConvUnit& u, const float* x, int64_t N, int64_t H, int64_t W, const int64_t pads[4], int64_t OH,
               int64_t OW, std::vector<float>& rows);
void load_clip_weights(const EncoderConfig& c, const EncoderWeightSource& src, EncoderWeights& w);
void load_deberta_weights(const EncoderConfig& c, const EncoderWeightSource& src, EncoderWeights& w);
/// DeBERTa's relative position of query i to key j (rel = i − j), log-bucketed where bucket_size > 0 (transformers'
/// make_log_bucket_position, in float32 as torch computes it).
int64_t deberta_relative_position(int64_t rel, int64_t bucket_size, int64_t max_position);
/// DeBERTa-v2/v3: batch → logits [batch, num_labels] (null: none), pooled [batch, pooler_size] (optional), hidden
/// [batch·seq, hidden] (optional).
void deberta_forward(const EncoderPass& p, const TextBatch& batch, float* logits, float* pooled, float* hidden);
/// CLIP's text tower as an EncoderConfig (its sizes, eps and activation in the fields the shared code reads).
EncoderConfig clip_text_tower(const EncoderConfig& c);

/// BERT / RoBERTa / DistilBERT / LayoutLM: batch → logits [batch, num_labels] ([batch·seq, num_labels] for a token
/// classifier), pooled [batch, hidden] (optional); hidden (optional) gets the last block's output [batch·seq, hidden]
/// and, for a bare encoder (no head), is the only output.
void bert_family_forward(const EncoderPass& p, const TextBatch& batch, float* logits, float* pooled, float* hidden = nullptr);
/// ViT: normalized pixels [batch, C, H, W] → logits [batch, num_labels].
void vit_forward(const EncoderPass& p, const float* pixels, int64_t batch, float* logits);
/// Pre-LN blocks (x += attn(LN(x)); x += ffn(LN(x))) over s.x: [batch·S, hidden]; mask [batch, S] (null: none) marks
/// padding keys; block observers see index first_index + l.
void pre_ln_blocks(const EncoderPass& p, const std::vector<EncoderBlock>& blocks, int64_t batch, int64_t S, const int32_t* mask,
                   bool causal, int64_t first_index);
/// ViT / DeiT / CLIP vision: pixels → s.x [batch·S, hidden] after the blocks (before the final norm); returns S.
int64_t vit_encode(const EncoderPass& p, const float* pixels, int64_t batch);
/// CLIP: text batch → embeds [batch, projection_dim] (L2-normalised); p carries the text tower's config.
void clip_text_forward(const EncoderPass& p, const TextBatch& batch, float* embeds);
/// CLIP: normalized pixels → embeds [batch, projection_dim] (L2-normalised); p carries the vision tower's config.
void clip_vision_forward(const EncoderPass& p, const float* pixels, int64_t batch, float* embeds);
/// ResNet: normalized pixels [batch, C, H, W] → logits [batch, num_labels].
/// The stem, max pool and every block of p.w.residual_units: pixels [batch, num_channels, H, W] → x [batch, C, H', W']
/// (NCHW); H, W become H', W' and the result is C.
int64_t resnet_features(const EncoderPass& p, const float* pixels, int64_t batch, int64_t& H, int64_t& W, std::vector<float>& x);
void resnet_forward(const EncoderPass& p, const float* pixels, int64_t batch, float* logits);
/// EfficientNet: normalized pixels [batch, C, H, W] → logits [batch, num_labels]; activations NHWC after the stem.
void efficientnet_forward(const EncoderPass& p, const float* pixels, int64_t batch, float* logits);

}  // namespace cq
