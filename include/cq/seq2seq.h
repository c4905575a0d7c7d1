// Encoder–decoder generators built from an HF directory: BART (BartForConditionalGeneration), T5
// (T5ForConditionalGeneration: v1.0, v1.1 / FLAN) and BLIP captioning (BlipForConditionalGeneration: an image encoder
// in place of the text one). Weights stay
// memory-mapped, compute is f32 through the kernel table, one sequence per call; greedy generation keeps a KV cache
// (the decoder's self-attention keys / values grow by one row per step, the cross-attention ones are made once).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "cq/calibration.h"
#include "cq/model.h"
#include "cq/tokenizer.h"
#include "cq/w8a8.h"

namespace cq {

struct Seq2SeqConfig {
    std::string architecture;  // "BartForConditionalGeneration", "T5ForConditionalGeneration", "BlipForConditionalGeneration"
    std::string model_type;    // config.json's: "bart", "t5", "blip"
    int64_t d_model = 0, vocab = 0;
    int64_t encoder_width = 0;    // the encoder's output width (BLIP: the vision tower's hidden size); 0: d_model
    int64_t position_offset = 2;  // learned positions: row first + t + offset (BART's 2; BLIP's 0)
    // BLIP: the source is an image, u8 [num_channels, image_size, image_size]; 0: the source is token ids
    int64_t image_size = 0, num_channels = 0;
    float label_smoothing = 0.0f;  // BLIP's text_config.label_smoothing, which its transformers loss applies
    int64_t max_positions = 0;  // BART's learned position table; 0: no limit (T5's relative positions)
    int64_t encoder_layers = 0, decoder_layers = 0, encoder_heads = 0, decoder_heads = 0, encoder_ffn = 0, decoder_ffn = 0;
    int64_t d_kv = 0;  // per-head width; heads · d_kv may differ from d_model (T5); BART: d_model / heads
    std::string activation = "gelu";
    float embed_scale = 1.0f;  // √d_model with scale_embedding
    float norm_eps = 1e-5f;
    bool pre_norm = false;         // T5: x + f(RMSNorm(x)) and a final RMSNorm per stack; BART: LayerNorm(x + f(x))
    bool rms_norm = false;         // T5LayerNorm: x / √(mean(x²) + eps) · w, no mean and no bias
    bool scale_attention = true;   // scores q·kᵀ / √d_kv (BART); T5 folds the scale into its weights
    bool gated_ffn = false;        // T5 v1.1 "gated-*": act(wi_0 x) · wi_1 x
    int64_t relative_buckets = 0, relative_max_distance = 0;  // T5's relative position bias; 0: none (BART)
    float logits_scale = 1.0f;     // T5 with a tied head: the decoder output × d_model^-0.5 before lm_head
    int32_t pad_token_id = 1, bos_token_id = 0, eos_token_id = 2, decoder_start_token_id = 2;  // bos -1: none (T5)
    std::optional<int32_t> forced_bos_token_id, forced_eos_token_id;
};

/// One layer. Post-LN (BART): x = LN(x + self_attn(x)); (decoder: x = LN(x + cross_attn(x, encoder))); x = LN(x + ffn(x)).
/// Pre-norm (T5): x = x + self_attn(norm(x)), and so on, each sublayer with its own norm.
struct Seq2SeqLayer {
    Linear q, k, v, attn_out;
    Norm attn_norm;
    std::optional<Linear> cross_q, cross_k, cross_v, cross_out;  // decoder only (BART encoder_attn, T5 EncDecAttention)
    std::optional<Norm> cross_norm;
    std::optional<Linear> ffn_gate;  // gated FFN (T5 v1.1 wi_0): ffn_out(act(ffn_gate x) · ffn_in x)
    Linear ffn_in, ffn_out;          // ungated: ffn_out(act(ffn_in x))
    Norm ffn_norm;
};

class Seq2SeqModel : public Model {
public:
    Seq2SeqModel();
    ~Seq2SeqModel() override;
    /// Loads an HF directory (config.json + safetensors + the tokenizer: BART's vocab.json / merges.txt, T5's spiece.model,
    /// BLIP's vocab.txt (BERT WordPiece); BLIP also preprocessor_config.json when present), or cq's container of one
    /// (save()). Unsupported for other models.
    static std::unique_ptr<Seq2SeqModel> load(const std::string& hf_dir);

    const Seq2SeqConfig& config() const { return config_; }
    const Tokenizer* tokenizer() const { return tokenizer_.get(); }
    ModelKind kind() const override { return ModelKind::decoder; }  // it generates tokens
    const std::string& architecture() const override { return config_.architecture; }
    int64_t n_blocks() const override { return config_.encoder_layers + config_.decoder_layers; }  // encoder's, then decoder's
    std::vector<LayerInfo> layers() const override;
    /// Writes cq's encoder–decoder container ("cq-seq2seq" GGUF; the HF tensors with each quantized Linear as its W8A8
    /// form or block type, the config and tokenizer files embedded): load() reads it back into this model. Unsupported
    /// for a model loaded from a container, and for a quantized head tied to the embeddings.
    void save(const std::string& path, const SaveOptions& options = {}) const override;

    /// <s> text </s> as BartTokenizer gives it, text </s> as T5Tokenizer, BLIP's text [SEP] (its labels after [DEC]); max_len > 0 truncates the text's tokens to fit
    /// (truncation=True).
    std::vector<int32_t> tokenize(std::string_view text, int64_t max_len = 0) const;
    /// Summed negative log-likelihood (nats) of `target` (e.g. tokenize(text)) under teacher forcing: the decoder reads
    /// decoder_start_token_id + target without its last token, as transformers' shift_tokens_right; log-softmax in double.
    double target_nll(std::span<const int32_t> source, std::span<const int32_t> target);
    /// Teacher-forced decoder logits [decoder_ids.size(), vocab] for the source ids (no padding) and the decoder input ids.
    void logits(std::span<const int32_t> source, std::span<const int32_t> decoder_ids, float* out);
    /// Greedy decoding: decoder_start_token_id, then the arg-max token each step (forced_bos at the first, forced_eos at the
    /// last when the config sets them) until </s> or max_new_tokens; returns the start token and what was generated.
    std::vector<int32_t> generate_greedy(std::span<const int32_t> source, int64_t max_new_tokens);

    // ---- image sources (BLIP captioning); `pixels` u8 [num_channels, image_size, image_size], normalised inside as
    // (u8·rescale − mean) / std per channel (preprocessor_config.json's, else BlipImageProcessor's defaults). No resize.
    bool takes_images() const { return config_.image_size > 0; }
    /// The decoder's start for a caption: decoder_start_token_id ([DEC]) + the prompt's word pieces ("" none), as
    /// BlipForConditionalGeneration.generate turns the processor's [CLS] prompt [SEP] into its decoder input.
    std::vector<int32_t> caption_prompt(std::string_view prompt) const;
    /// The image encoder's output [S, encoder_width] (BLIP: the vision tower's last_hidden_state after post_layernorm).
    std::vector<float> encode_image(const uint8_t* pixels);
    /// Teacher-forced decoder logits [decoder_ids.size(), vocab] for one image.
    void image_logits(const uint8_t* pixels, std::span<const int32_t> decoder_ids, float* out);
    /// Greedy captioning: `prefix` (caption_prompt's; empty: decoder_start alone), then the arg-max token each step until
    /// eos (BLIP: [SEP]) or max_new_tokens; returns the prefix and what was generated (generate(num_beams=1)).
    std::vector<int32_t> generate_caption(const uint8_t* pixels, std::span<const int32_t> prefix, int64_t max_new_tokens);
    /// Summed NLL (nats) of `target` (tokenize(caption): pieces + [SEP]) given the image, as target_nll; `smoothed` (if
    /// not null) gets the sum with config().label_smoothing ε as torch's CrossEntropyLoss: (1 − ε)·nll + ε·mean_j(−log p_j).
    double image_target_nll(const uint8_t* pixels, std::span<const int32_t> target, double* smoothed = nullptr);

    struct State;  // the weights (src/models/seq2seq_internal.h)

private:
    Seq2SeqConfig config_;
    std::unique_ptr<Tokenizer> tokenizer_;
    std::unique_ptr<State> s_;
    void collect_linears(std::vector<Linear*>& out) override;
    friend class Seq2SeqLoader;
};

/// Teacher-forced loss of a Seq2SeqModel on text pairs.
struct Seq2SeqEvalResult {
    int64_t pairs = 0, tokens = 0;
    double nll = 0, mean_nll = 0, perplexity = 0, seconds = 0;
};
/// A TSV of text pairs (a header naming 'source' and 'target' columns), rows [first, end) (end < 0: all): each source
/// truncated to the position table (if any), each target tokenize(text); mean NLL per target token and its exp (perplexity).
Seq2SeqEvalResult evaluate_pairs(Seq2SeqModel& model, const std::string& tsv_path, int64_t first = 0, int64_t end = -1);

/// One image and its caption (BLIP): pixels u8 [num_channels, image_size, image_size].
struct CaptionPair {
    std::vector<uint8_t> pixels;
    std::string caption;
};
/// (image, caption) pairs from a TSV with a header naming 'image' and 'caption' columns (others ignored), data rows
/// [first, end) (end < 0: all; blank lines are not rows). `image` is a PNG / JPEG / BMP path relative to the TSV's folder
/// (or absolute), decoded by stb_image to `channels` (grey replicated to RGB, alpha dropped) and stored planar; it must
/// already be height×width: nothing is resized, and a wrong size is a FormatError naming the image, the row and both sizes,
/// found from the file's header before decoding. FormatError / IoError naming the file and row for a missing column, a
/// short row, an empty caption or image path, a missing or undecodable image; InvalidArgument when the range holds no row.
std::vector<CaptionPair> load_caption_pairs(const std::string& tsv_path, int64_t channels, int64_t height, int64_t width, int64_t first = 0,
                                            int64_t end = -1);
/// The same at a captioner's input size (config().num_channels, image_size); InvalidArgument for a text model.
std::vector<CaptionPair> load_caption_pairs(const Seq2SeqModel& model, const std::string& tsv_path, int64_t first = 0, int64_t end = -1);
/// Teacher-forced loss of a captioner on (image, caption) pairs: each caption tokenize(text) (pieces + [SEP]) after
/// [DEC]; mean NLL per caption token and its exp. `smoothed_mean_nll` (if not null) gets the mean with the config's
/// label smoothing, which is what transformers reports as the loss.
Seq2SeqEvalResult evaluate_captions(Seq2SeqModel& model, std::span<const CaptionPair> pairs, double* smoothed_mean_nll = nullptr);

/// W8A8 in memory on every block Linear (lm_head stays f32), activation bits as auto_activation_bits() says: dynamic
/// per-token activations, or (static_per_tensor) one input range per Linear chosen by `method` from what it saw over the
/// text pairs [first, end) of `calib_tsv`. Returns the Linears rewritten. InvalidArgument for static without pairs.
int64_t quantize_seq2seq_w8a8(Seq2SeqModel& model, ActivationQuant activations, const std::string& calib_tsv = "", int64_t first = 0,
                              int64_t end = -1, calib::Method method = calib::Method::minmax, double percentile = 99.99);
/// The same for a captioner (BLIP): static ranges observed over teacher-forced passes on (image, caption) pairs; the
/// vision tower's block Linears are quantized too (its patch embedding and the LM head stay f32).
int64_t quantize_captioner_w8a8(Seq2SeqModel& model, ActivationQuant activations, std::span<const CaptionPair> calib = {},
                                calib::Method method = calib::Method::minmax, double percentile = 99.99);

/// Whether `path` is an HF directory of an encoder–decoder cq runs (model_type bart, t5, blip) or cq's container of one.
bool is_seq2seq_model(const std::string& path);

/// Weight-only block quantization in memory: each block Linear (lm_head stays f32) gets `type`, or llama.cpp's fallback
/// for its row length (a Linear whose rows fit no block type stays f32). Returns the Linears rewritten; `fallbacks` (if
/// not null) gets "name: why" for each that did not get `type`.
int64_t quantize_seq2seq_weights(Seq2SeqModel& model, DType type, std::vector<std::string>* fallbacks = nullptr);

/// `cq quantize` for an encoder–decoder: load the HF directory, quantize (W8A8 dynamic / static from calibration text
/// pairs, a captioner's from (image, caption) pairs (load_caption_pairs), or a block type weight-only), and write cq's
/// container atomically.
struct Seq2SeqQuantizeOptions {
    std::string type = "w8a8-dynamic";  // w8a8-dynamic, w8a8-static, or a block type (q4_0, q8_0, q4_K …)
    std::string calib_tsv;              // w8a8-static: text pairs (source / target columns), or a captioner's image / caption TSV
    int64_t calib_first = 0, calib_end = -1;
    calib::Method method = calib::Method::minmax;
    double percentile = 99.99;
};
struct Seq2SeqQuantizeReport {
    std::string input, output, type;
    int64_t linears = 0, quantized = 0;  // Linears in the model; rewritten
    std::vector<std::string> fallbacks;  // weight-only: "name: why"
    uint64_t file_bytes_in = 0, file_bytes_out = 0;
    double seconds = 0;
};
Seq2SeqQuantizeReport quantize_seq2seq(const std::string& input, const std::string& output, const Seq2SeqQuantizeOptions& options);

}  // namespace cq
