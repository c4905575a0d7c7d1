// Encoder-only classifiers (BERT, RoBERTa, DistilBERT, LayoutLM sequence / token classification; ViT, DeiT, ResNet and
// EfficientNet image classification; CLIP's two towers, zero-shot over class-name prompts) built from an HF directory: weights stay memory-mapped (ResNet's and EfficientNet's convolutions are
// owned: their BatchNorms are folded in at load), compute is f32, whole padded batches run at once.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string_view>
#include <string>
#include <vector>

#include "cq/llm.h"
#include "cq/tensor.h"
#include "cq/tokenizer.h"

namespace cq {

/// bert, roberta, distilbert and layoutlm take text (layoutlm also one box per token); vit, deit, resnet and efficientnet
/// take images;
/// clip both (its image classifier is zero-shot over class-name prompts); deberta_v2 (v2 and v3) takes text.
enum class EncoderFamily { bert, roberta, distilbert, vit, deit, layoutlm, resnet, clip, deberta_v2, efficientnet };

/// DeBERTa-v2/v3's disentangled attention and embeddings (DebertaV2Config's fields).
struct DebertaConfig {
    bool relative_attention = false;
    bool c2p = false, p2c = false;     // pos_att_type: content→position, position→content
    bool share_att_key = false;        // the relative embeddings go through query_proj / key_proj (else pos_*_proj)
    bool norm_rel_ebd = false;         // norm_rel_ebd "layer_norm": encoder.LayerNorm on the relative embeddings
    bool position_biased_input = true;  // absolute position embeddings added to the input
    int64_t position_buckets = -1;     // > 0: log buckets (make_log_bucket_position)
    int64_t max_relative_positions = 0;  // as used: max_position_embeddings where the config says < 1
    int64_t att_span = 0;              // relative embeddings rows = 2·att_span
    int64_t embedding_size = 0;        // ≠ hidden: embed_proj maps it to hidden
    int64_t pooler_size = 0;
    std::string pooler_act = "gelu";
};

/// CLIP's text tower (config.json's text_config) and what joins the towers.
struct ClipTextConfig {
    int64_t hidden = 0, n_layer = 0, n_head = 0, n_ff = 0, max_positions = 0, vocab = 0;
    float norm_eps = 1e-5f;
    std::string hidden_act = "quick_gelu";
    // The pooled token: the first eos_token_id of each sequence, or for the legacy eos_token_id 2 the largest id
    // (transformers' two branches).
    int32_t eos_token_id = 49407;
    int64_t projection_dim = 0;
    // zero-shot classification: "{}" in the template is replaced by each class name (config.json's id2label)
    std::string prompt_template = "a photo of a {}.";
};

/// EfficientNetConfig's fields (transformers' defaults: B7's), from which the loader derives every block as
/// transformers does (round_filters on the widths, ceil(depth_coefficient · repeats) blocks per stage).
struct EfficientNetConfig {
    double width_coefficient = 2.0, depth_coefficient = 3.1, squeeze_expansion_ratio = 0.25;
    int64_t depth_divisor = 8;
    std::vector<int64_t> kernel_sizes, in_channels, out_channels, strides, num_block_repeats, expand_ratios;
    std::vector<int64_t> depthwise_padding;  // blocks whose stride-2 depthwise conv pads k/2 on every side (else k/2 − 1 before)
    int64_t hidden_dim = 2560;               // the top conv's width, round_filters(1280)
    bool max_pooling = false;                // pooling_type "max" (else "mean")
    float batch_norm_eps = 1e-3f;
};

struct EncoderConfig {
    EncoderFamily family = EncoderFamily::bert;
    std::string architecture;  // as config.json names it, e.g. "BertForSequenceClassification"
    int64_t hidden = 0;
    int64_t n_layer = 0;
    int64_t n_head = 0;
    int64_t n_ff = 0;
    int64_t max_positions = 0;  // rows of the position table (vit: patches + 1)
    int64_t type_vocab = 0;     // 0 where the family has no token types
    int64_t vocab = 0;
    float norm_eps = 1e-12f;
    std::string hidden_act = "gelu";
    // HF's pruned_heads (config.json {"layer": [heads]}): per block, the heads removed, in the original numbering;
    // empty: none. Head size stays hidden / n_head; block l keeps n_head − pruned_heads[l].size() heads.
    std::vector<std::vector<int64_t>> pruned_heads;
    /// Heads block l keeps.
    int64_t heads_in_block(int64_t l) const {
        return n_head - (static_cast<size_t>(l) < pruned_heads.size() ? static_cast<int64_t>(pruned_heads[static_cast<size_t>(l)].size()) : 0);
    }
    int64_t num_labels = 0;
    std::vector<std::string> labels;  // id2label in id order
    int32_t pad_token_id = 0;
    // layoutlm: rows of the x / y / h / w tables (box coordinates lie in [0, max_2d_positions))
    int64_t max_2d_positions = 0;
    // a label per token (…ForTokenClassification): logits are [batch, seq, num_labels]
    bool token_classification = false;
    // a bare encoder (BertModel, e.g. sentence-transformers' all-MiniLM-L6-v2): no head, only hidden_states()
    bool feature_extraction = false;
    // vit, deit
    int64_t image_size = 0, patch_size = 0, num_channels = 0;
    std::vector<float> image_mean, image_std;  // per channel
    float rescale_factor = 1.0f / 255.0f;
    // resnet: stage widths and depths, the stem's width, bottleneck (else basic) blocks, where the stride-2 steps sit
    std::vector<int64_t> stage_sizes, stage_depths;
    int64_t embedding_size = 0;
    bool bottleneck = true, downsample_in_first_stage = false, downsample_in_bottleneck = false;
    // clip: the fields above describe its vision tower (hidden … norm_eps, hidden_act, image_*); these its text tower
    ClipTextConfig clip_text;
    DebertaConfig deberta;
    EfficientNetConfig efficientnet;
};

/// A convolution with its BatchNorm folded in at load (w·γ/σ, (b − μ)·γ/σ + β; σ = √(var + 1e-5)), run as im2col over
/// [in_channels·k·k] patches and the Linear `conv` ([out, in_channels·k·k]): the ONNX import's path. `activation`:
/// "" none, else an activation name ("relu", the config's hidden_act).
struct ConvUnit {
    Linear conv;
    int64_t in_channels = 0, kernel = 1, stride = 1;
    std::string activation;
};

/// One ResNet block: x → act(path(x) + shortcut(x)), the shortcut the identity when absent.
struct ResidualUnit {
    std::vector<ConvUnit> path;  // basic: 3×3, 3×3; bottleneck: 1×1, 3×3, 1×1
    std::optional<ConvUnit> shortcut;
};

/// A depthwise convolution (groups = channels) with its BatchNorm folded in at load, run on NHWC activations by
/// ops::depthwise_conv2d (the kernel table's depthwise_conv_f32). Not a Linear: it has k·k weights per channel and no
/// reduction over channels, so W8A8 and the Linear passes leave it f32.
struct DepthwiseConvUnit {
    std::string name;  // the HF module, e.g. "efficientnet.encoder.blocks.3.depthwise_conv.depthwise_conv"
    Tensor weight;     // [k·k, channels] tap-major (the file's [channels, 1, k, k] transposed), BN scale folded in
    Tensor bias;       // [channels]: the BN shift
    int64_t channels = 0, kernel = 3, stride = 1, block = -1;
    int64_t pad_top = 0, pad_left = 0, pad_bottom = 0, pad_right = 0;
};

/// One EfficientNet MBConv block: x → [expand 1×1 + BN + act] → depthwise k×k + BN + act → squeeze-and-excitation
/// (channel means → se_reduce + act → se_expand → sigmoid → scale each channel) → project 1×1 + BN (+ x where residual).
struct MBConvUnit {
    std::optional<ConvUnit> expand;  // absent where expand_ratio is 1
    DepthwiseConvUnit depthwise;
    Linear se_reduce, se_expand;     // 1×1 convs with biases on the pooled [batch, channels]
    ConvUnit project;
    bool residual = false;           // stride 1 and not the first block of its stage (transformers' apply_dropout)
};

/// One transformer block. Post-LN families (BERT, RoBERTa, DistilBERT) apply attn_norm / ffn_norm after each
/// residual add; ViT (pre-LN) applies them to each sub-layer's input.
struct EncoderBlock {
    Linear q, k, v, attn_out, ffn_in, ffn_out;  // roles attn_q, attn_k, attn_v, attn_out, ffn_up, ffn_down
    Norm attn_norm, ffn_norm;
    int64_t n_head = 0;  // heads this block keeps (HF pruned_heads: q/k/v are [n_head·head_dim, hidden]); 0: config's n_head
    std::optional<Linear> pos_k, pos_q;  // deberta without share_att_key: pos_key_proj (c2p), pos_query_proj (p2c)
};

/// How the transformer encoders' bidirectional self-attention multiplies: in f32, or in INT8 (the attention_u8s8 kernel:
/// u8 queries and probabilities, s8 keys and values, about twice as fast on VNNI CPUs; a W8A8 choice, kept in the
/// container as cq.w8a8.attention). DeBERTa's disentangled attention and causal text towers stay f32.
enum class AttentionPrecision { f32, int8 };
std::string_view attention_precision_name(AttentionPrecision a);
/// "f32" / "int8" → the precision; nullopt for anything else.
std::optional<AttentionPrecision> attention_precision_from_name(std::string_view name);

struct EncoderWeights {
    // text embeddings
    Tensor word_embd;                 // [vocab, hidden]
    Tensor pos_embd;                  // [max_positions, hidden] (vit: [patches + 1, hidden])
    std::optional<Tensor> type_embd;  // [type_vocab, hidden]
    Norm embd_norm;                   // text families only
    // layoutlm: 2-D positions of a token's box (x0, y0, x1, y1): x[x0] + y[y0] + x[x1] + y[y1] + h[y1 − y0] + w[x1 − x0]
    std::optional<Tensor> x_pos_embd, y_pos_embd, h_pos_embd, w_pos_embd;  // [max_2d_positions, hidden]
    // vit
    Linear patch_embd;                 // the patch conv as [hidden, C·p·p] over flattened [C, p, p] patches
    std::optional<Tensor> cls_token;   // [hidden]
    std::optional<Tensor> dist_token;  // deit: [hidden], the distillation token after CLS
    std::vector<EncoderBlock> blocks;
    std::optional<Norm> final_norm;    // vit
    std::optional<Linear> pooler;          // bert: tanh(dense(h_CLS))
    std::optional<Linear> pre_classifier;  // distilbert (ReLU) / roberta head dense (tanh)
    Linear classifier;                     // deit with teacher: cls_classifier
    std::optional<Linear> dist_classifier;  // deit with teacher: on the distillation token; logits = (cls + dist) / 2
    // resnet: stem (7×7 stride 2, then a 3×3 stride-2 max pool), the blocks in order, a global average pool, classifier
    std::optional<ConvUnit> stem;
    std::vector<ResidualUnit> residual_units;
    // efficientnet: stem (3×3 stride 2 after padding right / bottom by one), the MBConv blocks in order, the top 1×1
    // conv, mean or max pooling, classifier
    std::vector<MBConvUnit> mbconv_units;
    std::optional<ConvUnit> top;
    // clip: pos_embd, patch_embd (no bias), cls_token (class_embedding), blocks and final_norm (post_layernorm) are the
    // vision tower's, pre_norm its pre_layrnorm; word_embd and the text_* members the text tower's; logits between the
    // L2-normalised projections scaled by exp(logit_scale)
    std::optional<Norm> pre_norm;
    std::optional<Tensor> text_pos_embd;  // [text max_positions, text hidden]
    std::vector<EncoderBlock> text_blocks;
    std::optional<Norm> text_final_norm;
    std::optional<Linear> text_projection, visual_projection;  // [projection_dim, hidden], no bias
    float logit_scale = 1.0f;                                  // exp of the stored logit_scale
    // deberta_v2: embed_proj (embedding_size → hidden, no bias), the relative embeddings [2·att_span, hidden] and their
    // LayerNorm (norm_rel_ebd); pos_embd is empty without position_biased_input; pooler is ContextPooler's dense
    std::optional<Linear> embed_proj;
    std::optional<Tensor> rel_embd;
    std::optional<Norm> rel_norm;
    AttentionPrecision attention = AttentionPrecision::f32;  // self-attention's products (see AttentionPrecision)
};

/// Token ids of a batch: [batch, seq] each, right-padded with the pad id, mask 1 for real tokens and 0 for padding.
struct TextBatch {
    int64_t batch = 0, seq = 0;
    std::vector<int32_t> ids, type_ids, mask;
    /// layoutlm: [batch, seq, 4] boxes (x0, y0, x1, y1) on the model's 0..max_2d_positions-1 grid; empty = all zero
    std::vector<int32_t> bbox;
};

/// One word's box (x0, y0, x1, y1), given for each whitespace-separated word of a text (LayoutLM).
using WordBox = std::array<int32_t, 4>;

struct EncoderScratch;

class EncoderModel : public Model {
public:
    EncoderModel();
    ~EncoderModel() override;
    /// Loads an HF directory. Unsupported (naming the model_type/architecture and the supported list) otherwise.
    static std::unique_ptr<EncoderModel> load(const std::string& hf_dir);

    const EncoderConfig& config() const { return config_; }
    /// The text tokenizer; null for vision models.
    const Tokenizer* tokenizer() const { return tokenizer_.get(); }
    EncoderWeights& weights() { return weights_; }
    const EncoderWeights& weights() const { return weights_; }
    /// Whether the model's dataset input is images (CLIP: yes, its classifier is zero-shot over images).
    bool is_vision() const {
        return config_.family == EncoderFamily::vit || config_.family == EncoderFamily::deit || config_.family == EncoderFamily::resnet ||
               config_.family == EncoderFamily::efficientnet || config_.family == EncoderFamily::clip;
    }
    bool is_clip() const { return config_.family == EncoderFamily::clip; }
    /// Whether classify gives one row of logits per token ([batch, seq, num_labels]) rather than per sequence.
    bool is_token_classifier() const { return config_.token_classification; }

    ModelKind kind() const override { return is_vision() ? ModelKind::vision : ModelKind::encoder; }
    const std::string& architecture() const override { return config_.architecture; }
    int64_t n_blocks() const override { return config_.n_layer + config_.clip_text.n_layer; }  // CLIP: vision, then text
    std::vector<LayerInfo> layers() const override;
    /// Writes cq's encoder container (GGUF, general.architecture "cq-encoder"): the HF directory's tensors in
    /// its order, W8A8 Linears as I8 + per-channel scales (+ the static input scale and zero point), the
    /// word embeddings in the type the model holds, and the HF config / tokenizer files embedded, so
    /// EncoderModel::load reads it back. Unsupported for a model loaded from a container.
    void save(const std::string& path, const SaveOptions& options = {}) const override;

    /// texts (and optional second segments for pairs) → [CLS] a [SEP] (b [SEP]) ids (RoBERTa: <s> a </s></s> b </s>),
    /// truncating the word pieces (longest segment first) to fit max_len, padded to the longest in the batch.
    /// CLIP: <|startoftext|> a <|endoftext|>, padded with its pad token; no pairs.
    TextBatch tokenize(std::span<const std::string> texts, int64_t max_len, std::span<const std::string> pairs = {}) const;
    /// LayoutLM's form: each text's whitespace-separated words with one box each (boxes[i].size() = words of texts[i]);
    /// every word piece gets its word's box, [CLS] and padding (0, 0, 0, 0), [SEP] (1000, 1000, 1000, 1000) clamped to
    /// the grid, as LayoutLM's processors do. Empty `boxes`: all zero.
    TextBatch tokenize_with_boxes(std::span<const std::string> texts, std::span<const std::vector<WordBox>> boxes, int64_t max_len) const;
    /// logits: [batch, num_labels]; pooled (optional): [batch, hidden], the BERT pooler output, or the CLS hidden
    /// state where the family has no pooler. InvalidArgument for a token classifier (see classify_tokens).
    void classify(const TextBatch& batch, float* logits, float* pooled = nullptr);
    /// A token classifier's (…ForTokenClassification) logits: [batch, seq, num_labels], padding rows included.
    void classify_tokens(const TextBatch& batch, float* logits);
    /// The last block's output, hidden: [batch, seq, hidden] (padding rows included), for any text model; the only
    /// output of a bare encoder (BertModel). Sentence embeddings are its mean over each sequence's real tokens.
    void hidden_states(const TextBatch& batch, float* hidden);
    /// pixels: [batch, C, H, W] u8, normalized inside as (u8·rescale_factor − mean) / std per channel.
    /// logits: [batch, num_labels].
    /// CLIP: logits [batch, num_labels] = exp(logit_scale)·cos(image, prompt of each class), the prompts the template
    /// filled with each class name (config.json's id2label, or set_zero_shot_classes).
    void classify_images(const uint8_t* pixels, int64_t batch, float* logits);

    /// CLIP: the classes classify_images scores and the prompt template ("{}" → the class name).
    void set_zero_shot_classes(std::vector<std::string> names, std::string prompt_template = "a photo of a {}.");
    /// CLIP: text embeddings [batch, projection_dim], L2-normalised (transformers' CLIPModel text_embeds); the batch
    /// from tokenize (<|startoftext|> … <|endoftext|>, padded).
    void text_embeddings(const TextBatch& batch, float* embeds);
    /// CLIP: image embeddings [batch, projection_dim], L2-normalised (image_embeds); pixels as for classify_images.
    void image_embeddings(const uint8_t* pixels, int64_t batch, float* embeds);
    /// CLIP: logits_per_image [n_images, n_texts] = exp(logit_scale) · image_embeds · text_embedsᵀ.
    void clip_logits(const uint8_t* pixels, int64_t n_images, const TextBatch& texts, float* logits_per_image);
private:
    EncoderConfig config_;
    EncoderWeights weights_;
    std::unique_ptr<Tokenizer> tokenizer_;
    std::unique_ptr<EncoderScratch> scratch_;
    enum class TextOutput { per_sequence, per_token, hidden };
    void run_text(const TextBatch& batch, float* out, float* pooled, TextOutput mode);
    void normalize_pixels(const uint8_t* pixels, int64_t batch);  // → scratch_->pixels
    void load_clip_tokenizer(const hf::ModelDir& d);
    TextBatch tokenize_clip(std::span<const std::string> texts, int64_t max_len) const;
    // Every Linear in forward order: blocks, then pooler / pre_classifier / classifier; ViT's patch embedding first.
    void collect_linears(std::vector<Linear*>& out) override;
    friend class EncoderLoader;
};

/// The architectures EncoderModel::load accepts, for error messages and --help.
std::string supported_encoder_architectures();

}  // namespace cq
