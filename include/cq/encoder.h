// Encoder-only classifiers (BERT, RoBERTa, DistilBERT, LayoutLM sequence / token classification; ViT, DeiT and ResNet
// image classification) built from an HF directory: weights stay memory-mapped (ResNet's convolutions are owned: their
// BatchNorms are folded in at load), compute is f32, whole padded batches run at once.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "cq/llm.h"
#include "cq/tensor.h"
#include "cq/tokenizer.h"

namespace cq {

/// bert, roberta, distilbert and layoutlm take text (layoutlm also one box per token); vit, deit and resnet take images.
enum class EncoderFamily { bert, roberta, distilbert, vit, deit, layoutlm, resnet };

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

/// One transformer block. Post-LN families (BERT, RoBERTa, DistilBERT) apply attn_norm / ffn_norm after each
/// residual add; ViT (pre-LN) applies them to each sub-layer's input.
struct EncoderBlock {
    Linear q, k, v, attn_out, ffn_in, ffn_out;  // roles attn_q, attn_k, attn_v, attn_out, ffn_up, ffn_down
    Norm attn_norm, ffn_norm;
};

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
    bool is_vision() const {
        return config_.family == EncoderFamily::vit || config_.family == EncoderFamily::deit || config_.family == EncoderFamily::resnet;
    }
    /// Whether classify gives one row of logits per token ([batch, seq, num_labels]) rather than per sequence.
    bool is_token_classifier() const { return config_.token_classification; }

    ModelKind kind() const override { return is_vision() ? ModelKind::vision : ModelKind::encoder; }
    const std::string& architecture() const override { return config_.architecture; }
    int64_t n_blocks() const override { return config_.n_layer; }
    std::vector<LayerInfo> layers() const override;
    /// Writes cq's encoder container (GGUF, general.architecture "cq-encoder"): the HF directory's tensors in
    /// its order, W8A8 Linears as I8 + per-channel scales (+ the static input scale and zero point), the
    /// word embeddings in the type the model holds, and the HF config / tokenizer files embedded, so
    /// EncoderModel::load reads it back. Unsupported for a model loaded from a container.
    void save(const std::string& path, const SaveOptions& options = {}) const override;

    /// texts (and optional second segments for pairs) → [CLS] a [SEP] (b [SEP]) ids (RoBERTa: <s> a </s></s> b </s>),
    /// truncating the word pieces (longest segment first) to fit max_len, padded to the longest in the batch.
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
    void classify_images(const uint8_t* pixels, int64_t batch, float* logits);

private:
    EncoderConfig config_;
    EncoderWeights weights_;
    std::unique_ptr<Tokenizer> tokenizer_;
    std::unique_ptr<EncoderScratch> scratch_;
    enum class TextOutput { per_sequence, per_token, hidden };
    void run_text(const TextBatch& batch, float* out, float* pooled, TextOutput mode);
    // Every Linear in forward order: blocks, then pooler / pre_classifier / classifier; ViT's patch embedding first.
    void collect_linears(std::vector<Linear*>& out) override;
    friend class EncoderLoader;
};

/// The architectures EncoderModel::load accepts, for error messages and --help.
std::string supported_encoder_architectures();

}  // namespace cq
