// The model spine: every family (decoder LLMs, encoders, ViT) is a Model whose layers are named objects
// that compression passes walk (linears()), observe (observe / observe_blocks) and rewrite (set_weight,
// quantize_linear), then run again in the same process. A Linear knows its canonical name, its name in
// the file, its role, its block and its shape, and holds its weight in any format cq has.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "cq/tensor.h"

namespace cq {

/// What a layer does in its model. Families map their tensors onto these, so a pass can say
/// "every down projection" without knowing whether the file calls it ffn_down, mlp.c_proj or output.dense.
enum class LayerRole : uint8_t {
    attn_q, attn_k, attn_v, attn_qkv, attn_out,  // attention projections (attn_qkv: fused, GPT-2)
    ffn_gate, ffn_up, ffn_down,                   // MLP (encoders: ffn_up = intermediate, ffn_down = output)
    lm_head, pooler, pre_classifier, classifier,  // heads
    patch_embed,                                  // ViT's patch convolution, as a Linear over flattened patches
    token_embed, position_embed, type_embed,      // embeddings
    norm,                                         // RMSNorm / LayerNorm
    other,
    depthwise_conv,                               // EfficientNet's depthwise convolutions (not Linears: kept f32)
};
/// "attn_q", "ffn_down", ...
std::string_view role_name(LayerRole role);
/// The role named `name`; nullopt if none is.
std::optional<LayerRole> role_from_name(std::string_view name);

struct Int8Linear;     // cq/w8a8.h
struct LinearEvent;
using LinearObserver = std::function<void(const LinearEvent&)>;
/// Identifies an attached observer for Model::remove_observer.
using ObserverId = uint64_t;

/// The observers attached to one Linear; null in a Linear that has none (the forward pass tests only that).
struct LinearObservers {
    std::vector<std::pair<ObserverId, LinearObserver>> list;
};

/// One linear layer y = x·Wᵀ (+ b). `weight` is [out, in] unless `transposed` ([in, out], GPT-2 Conv1D).
/// When `int8` is set (W8A8 quantization), it runs instead of `weight`/`bias`.
struct Linear {
    Tensor weight;
    std::optional<Tensor> bias;
    bool transposed = false;
    /// Canonical name, the same whichever file the model came from: llama.cpp's GGUF names for decoder
    /// LLMs ("blk.0.attn_q", "output"), the HF module path for encoders ("bert.encoder.layer.0.attention.self.query").
    std::string name;
    /// The weight's name without ".weight" in the file it was loaded from ("model.layers.0.self_attn.q_proj").
    std::string source_name;
    LayerRole role = LayerRole::other;
    int64_t block = -1;  // transformer block index; -1 outside the blocks
    std::shared_ptr<const Int8Linear> int8;
    // The weights re-laid out at load time in groups of 8 rows for the type's packed GEMM (QuantKernels::gemm_packed)
    // (ops::pack_for_kernels); null where no such kernel runs. `weight` stays the model's truth.
    std::shared_ptr<const std::vector<uint8_t>> x8;
    std::shared_ptr<LinearObservers> observers;
    /// Empty while the weight is the file's; otherwise what replaced it ("quantize_linear", "set_weight", or a
    /// pass's own name). Model::save writes such a layer's weight as the model holds it.
    std::string modified_by;
    int64_t n_in() const { return transposed ? weight.dim(0) : weight.dim(1); }
    int64_t n_out() const { return transposed ? weight.dim(1) : weight.dim(0); }
    /// Bytes of the weight as the model holds it (the int8 form where there is one), bias included.
    uint64_t bytes() const;
    /// The weight's format: a dtype name ("q4_0", "f32") or "int8" for a W8A8 layer.
    std::string format() const;
};

/// What an observer of a Linear sees after the layer ran: its input x [rows, n_in] and output y [rows, n_out].
/// row_mask (null: every row is real) marks padding rows of a padded batch with 0.
struct LinearEvent {
    const Linear& layer;
    const float* x;
    const float* y;
    int64_t rows;
    const int32_t* row_mask;
};

/// A transformer block's output (the residual stream after the block): hidden [rows, width].
struct BlockEvent {
    int64_t block;
    const float* hidden;
    int64_t rows, width;
    const int32_t* row_mask;  // as in LinearEvent
};
using BlockObserver = std::function<void(const BlockEvent&)>;

struct Norm {
    std::string name;  // encoders: the HF module path; decoders leave it empty (layers() names them)
    Tensor weight;
    std::optional<Tensor> bias;  // LayerNorm only
    /// Empty while the weights are the file's; a pass that changes them (AWQ / SmoothQuant fold scales into
    /// the norm before a Linear) names itself here, and Model::save writes them.
    std::string modified_by;
};

enum class ModelKind { decoder, encoder, vision };

namespace gguf {
class Writer;
}
/// What Model::save adds to the file: metadata of the caller's own (provenance), and progress per tensor.
struct SaveOptions {
    std::function<void(gguf::Writer&)> metadata;
    std::function<void(int64_t done, int64_t total)> progress;
};
std::string_view model_kind_name(ModelKind kind);

/// Any layer with weights, for listings: Linears, embeddings and norms in execution order.
struct LayerInfo {
    std::string name, source_name;
    LayerRole role = LayerRole::other;
    int64_t block = -1;
    std::vector<int64_t> shape;  // Linears: [n_out, n_in]; embeddings: [rows, width]; norms: [width]
    std::string format;
    uint64_t bytes = 0;
    bool is_linear = false;
};

/// The common base of LanguageModel and EncoderModel.
class Model {
public:
    virtual ~Model();
    /// Loads any supported model: a decoder LLM (GGUF file or HF directory), an encoder / ViT classifier
    /// (HF directory or cq's W8A8 container). Unsupported names what was found and what is supported.
    static std::unique_ptr<Model> load(const std::string& path);

    virtual ModelKind kind() const = 0;
    /// As the file names it: "llama", "gpt2", "BertForSequenceClassification", ...
    virtual const std::string& architecture() const = 0;
    virtual int64_t n_blocks() const = 0;
    const std::string& path() const { return path_; }

    /// Every Linear in execution order (a block's projections in the order the forward pass runs them).
    std::vector<Linear*> linears();
    std::vector<const Linear*> linears() const;
    /// Every layer with weights (Linears, embeddings, norms) in execution order.
    virtual std::vector<LayerInfo> layers() const = 0;
    /// The Linear called `name` (canonical or source name); null if there is none.
    Linear* find_linear(std::string_view name);

    /// Calls `fn` after `layer` runs, with its input and output, every forward pass until removed.
    ObserverId observe(Linear& layer, LinearObserver fn);
    /// Calls `fn` with every block's output, every forward pass until removed.
    ObserverId observe_blocks(BlockObserver fn);
    void remove_observer(ObserverId id);
    void clear_observers();

    /// Replaces a Linear's weight (any format the kernels run; shape [n_out, n_in]); drops its W8A8 form
    /// and rebuilds the kernels' load-time layout. `by` names the pass (Linear::modified_by).
    /// InvalidArgument for a wrong shape.
    void set_weight(Linear& layer, Tensor weight, std::string_view by = "set_weight");
    /// Requantizes a Linear's weight in memory to `type` (any dtype with a from_float codec), row by row
    /// from its current values. InvalidArgument when the rows do not fit the type's blocks or a value is
    /// not finite (naming the row and column).
    void quantize_linear(Linear& layer, DType type, std::string_view by = "quantize_linear");

    /// Writes the model as it is now, atomically: decoder LLMs as llama.cpp-compatible GGUF (llama.cpp's
    /// names, metadata and layouts; the file's own tensors where no pass changed them), so that what a pass did
    /// in memory is what the file holds. Unsupported for a model cq cannot write yet (names it).
    virtual void save(const std::string& path, const SaveOptions& options = {}) const = 0;

protected:
    Model() = default;
    virtual void collect_linears(std::vector<Linear*>& out) = 0;
    /// For the forward passes: the block observers, null when there are none.
    const std::vector<std::pair<ObserverId, BlockObserver>>* block_observers() const {
        return block_observers_.empty() ? nullptr : &block_observers_;
    }
    std::string path_;
    bool pack_for_kernels_ = true;  // false: a model loaded only to be rewritten and written keeps no packed copies

private:
    std::vector<std::pair<ObserverId, BlockObserver>> block_observers_;
    ObserverId next_observer_ = 1;
};

/// Calls every block observer in `observers` (may be null).
void notify_block(const std::vector<std::pair<ObserverId, BlockObserver>>* observers, const BlockEvent& e);

}  // namespace cq
