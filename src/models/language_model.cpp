// LanguageModel: reads the config and maps the weights of a GGUF file or an HF directory into the
// family's layout (no copies of matrices; norms and biases are widened to small f32 vectors), checks
// every shape, and runs the family's forward pass.
#include <algorithm>
#include <filesystem>
#include <functional>
#include <span>
#include <string>

#include "cq/error.h"
#include "cq/io/gguf.h"
#include "io/hf/hf_config.h"
#include "io/hf/hf_model.h"
#include "cq/llm.h"
#include "models/families.h"
#include "models/model_container.h"
#include "models/tensor_names.h"
#include "models/weight_helpers.h"
#include "ops/ops.h"

namespace cq {

namespace {

using TensorLookup = std::function<std::optional<Tensor>(const std::string&)>;

using models::shape_str;
using models::to_f32;

// Fetches tensors by name and checks their shapes; errors name the file and the tensor.
class WeightSource {
public:
    WeightSource(std::string format, std::string file, TensorLookup lookup)
        : format_(std::move(format)), file_(std::move(file)), lookup_(std::move(lookup)) {}

    std::optional<Tensor> find(const std::string& name, const std::vector<int64_t>& shape) const {
        auto t = lookup_(name);
        if (t && t->shape() != shape)
            throw FormatError(format_, file_, 0, "tensor '" + name + "' has shape " + t->shape_string() + ", expected " + shape_str(shape));
        return t;
    }
    Tensor get(const std::string& name, const std::vector<int64_t>& shape) const {
        auto t = find(name, shape);
        if (!t) throw FormatError(format_, file_, 0, "tensor '" + name + "' is missing");
        return *t;
    }
    // `file_name` is the weight's name in the file without ".weight"; `name` the canonical (GGUF) one.
    Linear linear(const std::string& file_name, const std::string& name, LayerRole role, int64_t block, int64_t n_out, int64_t n_in,
                  bool transposed, bool bias_required = false) const {
        Linear l;
        l.name = name;
        l.source_name = file_name;
        l.role = role;
        l.block = block;
        l.transposed = transposed;
        l.weight = get(file_name + ".weight", transposed ? std::vector<int64_t>{n_in, n_out} : std::vector<int64_t>{n_out, n_in});
        if (auto b = find(file_name + ".bias", {n_out})) l.bias = to_f32(*b);
        else if (bias_required) throw FormatError(format_, file_, 0, "tensor '" + file_name + ".bias' is missing");
        return l;
    }
    Norm norm(const std::string& name, int64_t n, bool with_bias) const {
        Norm out;
        out.weight = to_f32(get(name + ".weight", {n}));
        if (with_bias) out.bias = to_f32(get(name + ".bias", {n}));
        return out;
    }

private:
    std::string format_, file_;
    TensorLookup lookup_;
};

[[noreturn]] void unsupported_architecture(const std::string& arch, const std::string& path) {
    throw Unsupported("[llm] " + path + ": architecture '" + arch + "' is not supported by cq's LLM engine yet; supported: " +
                      supported_llm_architectures());
}

void finish_config(LlmConfig& c, const std::string& format, const std::string& file) {
    if (c.n_head_kv == 0) c.n_head_kv = c.n_head;
    if (c.n_embd <= 0 || c.n_layer <= 0 || c.n_head <= 0 || c.n_vocab <= 0 || c.n_ff <= 0)
        throw FormatError(format, file, 0, "the model's hyperparameters are missing or not positive (n_embd " + std::to_string(c.n_embd) +
                                               ", n_layer " + std::to_string(c.n_layer) + ", n_head " + std::to_string(c.n_head) +
                                               ", n_ff " + std::to_string(c.n_ff) + ", n_vocab " + std::to_string(c.n_vocab) + ")");
    if (c.head_dim == 0) {
        if (c.n_embd % c.n_head != 0) throw FormatError(format, file, 0, "n_embd is not a multiple of n_head");
        c.head_dim = c.n_embd / c.n_head;
    }
    if (c.n_head % c.n_head_kv != 0)
        throw FormatError(format, file, 0, "n_head " + std::to_string(c.n_head) + " is not a multiple of n_head_kv " + std::to_string(c.n_head_kv));
    if (c.rope_dims == 0) c.rope_dims = c.head_dim;
    if (c.rope_dims > c.head_dim || c.rope_dims % 2 != 0)
        throw FormatError(format, file, 0, "RoPE dimension count " + std::to_string(c.rope_dims) + " does not fit head_dim " + std::to_string(c.head_dim));
    if (c.n_ctx_train <= 0) c.n_ctx_train = 2048;
}

// The output head: its own tensor, or the token embedding where the model ties them (a Linear over the same bytes).
Linear load_output(const LlmConfig& c, const WeightSource& src, const models::DecoderNames& names, const LlmWeights& w) {
    const std::string head = names.global("output");
    Linear out;
    if (auto t = src.find(head + ".weight", {c.n_vocab, c.n_embd})) {
        out.weight = *t;
        out.source_name = head;
    } else {
        out.weight = w.token_embd;
        out.source_name = names.global("token_embd");
    }
    out.name = "output";
    out.role = LayerRole::lm_head;
    return out;
}

// Where a block tensor of `role` goes, and its [n_out, n_in].
Linear& block_slot(DecoderBlock& b, LayerRole role) {
    switch (role) {
        case LayerRole::attn_q: return b.wq;
        case LayerRole::attn_k: return b.wk;
        case LayerRole::attn_v: return b.wv;
        case LayerRole::attn_qkv: return b.wqkv;
        case LayerRole::attn_out: return b.wo;
        case LayerRole::ffn_gate: return b.ffn_gate;
        case LayerRole::ffn_up: return b.ffn_up;
        default: return b.ffn_down;
    }
}
std::pair<int64_t, int64_t> block_shape(const LlmConfig& c, LayerRole role) {
    const int64_t D = c.n_embd, q_dim = c.n_head * c.head_dim, kv_dim = c.n_head_kv * c.head_dim, F = c.n_ff;
    switch (role) {
        case LayerRole::attn_q: return {q_dim, D};
        case LayerRole::attn_k:
        case LayerRole::attn_v: return {kv_dim, D};
        case LayerRole::attn_qkv: return {3 * D, D};
        case LayerRole::attn_out: return {D, q_dim};
        case LayerRole::ffn_gate:
        case LayerRole::ffn_up: return {F, D};
        default: return {D, F};
    }
}

// Both decoder families through the name table: GPT-2 has LayerNorm biases, required Linear biases,
// learned positions and (in HF files) Conv1D weights stored [in, out].
void load_decoder_weights(const LlmConfig& c, const WeightSource& src, const models::DecoderNames& n, bool hf, LlmWeights& w) {
    const bool gpt2 = c.family == LlmFamily::gpt2;
    const int64_t D = c.n_embd;
    w.token_embd = src.get(n.global("token_embd") + ".weight", {c.n_vocab, D});
    if (gpt2) w.pos_embd = src.get(n.global("position_embd") + ".weight", {c.n_ctx_train, D});
    const std::span<const models::TensorName> table =
        gpt2 ? std::span<const models::TensorName>(models::kGpt2BlockTensors) : std::span<const models::TensorName>(models::kLlamaBlockTensors);
    for (int64_t l = 0; l < c.n_layer; ++l) {
        DecoderBlock b;
        for (const models::TensorName& t : table) {
            if (t.role == LayerRole::norm) {
                (std::string_view(t.gguf) == "attn_norm" ? b.attn_norm : b.ffn_norm) = src.norm(n.block(l, t.gguf), D, gpt2);
                continue;
            }
            const auto [n_out, n_in] = block_shape(c, t.role);
            block_slot(b, t.role) =
                src.linear(n.block(l, t.gguf), "blk." + std::to_string(l) + "." + t.gguf, t.role, l, n_out, n_in, gpt2 && hf, gpt2);
        }
        w.blocks.push_back(std::move(b));
    }
    w.output_norm = src.norm(n.global("output_norm"), D, gpt2);
    w.output = load_output(c, src, n, w);
}

}  // namespace

class LlmLoader {
public:
    static void from_gguf(LanguageModel& m, const std::string& path) {
        const gguf::File f = gguf::File::open(path);
        LlmConfig& c = m.config_;
        c.architecture = f.architecture();
        const std::string& a = c.architecture;
        if (a == "llama" || a == "mistral" || a == "qwen2") c.family = LlmFamily::llama;
        else if (a == "gpt2") c.family = LlmFamily::gpt2;
        else unsupported_architecture(a.empty() ? "(none: general.architecture is missing)" : a, path);
        auto key = [&](const std::string& k) { return f.get_int(a + "." + k).value_or(0); };
        c.n_ctx_train = key("context_length");
        c.n_embd = key("embedding_length");
        c.n_layer = key("block_count");
        c.n_ff = key("feed_forward_length");
        c.n_head = key("attention.head_count");
        c.n_head_kv = key("attention.head_count_kv");
        c.head_dim = key("attention.key_length");
        c.rope_dims = key("rope.dimension_count");
        c.rope_theta = static_cast<float>(f.get_double(a + ".rope.freq_base").value_or(10000.0));
        const auto eps = f.get_double(a + (c.family == LlmFamily::gpt2 ? ".attention.layer_norm_epsilon" : ".attention.layer_norm_rms_epsilon"));
        c.norm_eps = static_cast<float>(eps.value_or(1e-5));
        const std::string scaling = f.get_string(a + ".rope.scaling.type").value_or("none");
        if (scaling == "linear") c.rope_scale = static_cast<float>(f.get_double(a + ".rope.scaling.factor").value_or(1.0));
        else if (scaling != "none")
            throw Unsupported("[llm] " + path + ": RoPE scaling '" + scaling + "' is not supported yet (only linear)");
        if (auto s = f.get_double(a + ".rope.scale_linear")) c.rope_scale = static_cast<float>(*s);
        // llama.cpp rotates adjacent pairs for llama/mistral GGUFs and half-split pairs (NEOX) for qwen2.
        c.rope_pairing = a == "qwen2" ? RopePairing::half_split : RopePairing::adjacent;
        const gguf::TensorInfo* embd = f.find_tensor("token_embd.weight");
        if (!embd || embd->shape.size() != 2) throw FormatError("gguf", path, 0, "tensor 'token_embd.weight' is missing or not 2-D");
        c.n_vocab = embd->shape[0];
        finish_config(c, "gguf", path);
        const WeightSource src("gguf", path, [&f](const std::string& name) -> std::optional<Tensor> {
            if (const auto* t = f.find_tensor(name)) return f.tensor(*t);
            return std::nullopt;
        });
        load_decoder_weights(c, src, models::DecoderNames(c.family, false), false, m.weights_);
        // W8A8 Linears (cq quantize --type w8a8-*): I8 weights with their scales beside them, as cq's containers hold them
        std::vector<Linear*> int8;
        for (Linear* l : m.linears())
            if (l->weight.dtype() == DType::I8) int8.push_back(l);
        if (!int8.empty()) container::restore_linears(f, int8);
        m.tokenizer_ = load_tokenizer(f);
    }

    static void from_hf(LanguageModel& m, const std::string& path) {
        const hf::ModelDir d = hf::open_model_dir(path);
        const std::string config_path = (std::filesystem::path(path) / "config.json").string();
        LlmConfig& c = m.config_;
        c.architecture = d.model_type;
        const hf::Config j(d.config, config_path);
        const hf::TransformerSizes sizes = j.transformer_sizes();
        c.n_embd = sizes.hidden, c.n_layer = sizes.layers, c.n_head = sizes.heads, c.n_vocab = sizes.vocab, c.n_ctx_train = sizes.positions;
        if (c.architecture == "llama" || c.architecture == "mistral" || c.architecture == "qwen2") {
            c.family = LlmFamily::llama;
            c.n_head_kv = sizes.kv_heads, c.head_dim = sizes.head_dim, c.n_ff = sizes.ffn;
            c.norm_eps = static_cast<float>(j.number_or("rms_norm_eps", 1e-6));
            c.rope_theta = static_cast<float>(j.number_or("rope_theta", 10000.0));
            if (const auto* rs = j.find("rope_scaling"); rs && rs->is_object()) {
                const std::string type = rs->value("type", rs->value("rope_type", std::string("none")));
                if (type == "linear") c.rope_scale = rs->value("factor", 1.0f);
                else if (type != "default")
                    throw Unsupported("[llm] " + config_path + ": rope_scaling type '" + type + "' is not supported yet (only linear)");
            }
            c.rope_pairing = RopePairing::half_split;  // HF stores q/k permuted for rotate_half
        } else if (c.architecture == "gpt2") {
            c.family = LlmFamily::gpt2;
            c.n_ff = sizes.ffn ? sizes.ffn : 4 * c.n_embd;  // n_inner: null means 4 · n_embd
            c.norm_eps = static_cast<float>(j.number_or("layer_norm_epsilon", 1e-5));
            const std::string act = j.string_or("activation_function", "gelu_new");
            if (act != "gelu_new" && act != "gelu_pytorch_tanh")
                throw Unsupported("[llm] " + config_path + ": GPT-2 activation '" + act + "' is not supported yet (gelu_new)");
        } else {
            unsupported_architecture(c.architecture.empty() ? "(none: config.json has no model_type)" : c.architecture, path);
        }
        finish_config(c, "hf", config_path);
        const auto& weights = d.weights;
        const WeightSource src("safetensors", path, [&weights](const std::string& name) -> std::optional<Tensor> {
            if (weights.find_tensor(name)) return weights.tensor(name);
            return std::nullopt;
        });
        // GPT-2 checkpoints exist with and without the "transformer." prefix.
        const models::DecoderNames names(c.family, true, weights.find_tensor("transformer.wte.weight") ? "transformer." : "");
        load_decoder_weights(c, src, names, true, m.weights_);
        m.tokenizer_ = load_tokenizer(d);
    }
};

std::string supported_llm_architectures() { return "llama, mistral, qwen2 (LLaMA family), gpt2"; }

KvCache::KvCache(int64_t n_layer, int64_t n_ctx, int64_t kv_dim)
    : n_ctx_(n_ctx), kv_dim_(kv_dim), k_(static_cast<size_t>(n_layer * n_ctx * kv_dim)), v_(k_.size()) {}

LanguageModel::LanguageModel() = default;
LanguageModel::~LanguageModel() = default;

std::unique_ptr<LanguageModel> LanguageModel::load(const std::string& path, const LoadOptions& options) {
    auto m = std::make_unique<LanguageModel>();
    m->path_ = path;
    std::error_code ec;
    if (std::filesystem::is_directory(path, ec)) LlmLoader::from_hf(*m, path);
    else if (!std::filesystem::exists(path, ec)) throw IoError("[llm] '" + path + "' does not exist");
    else LlmLoader::from_gguf(*m, path);
    m->pack_for_kernels_ = options.pack_for_kernels;
    if (m->pack_for_kernels_)
        for (Linear* l : m->linears()) ops::pack_for_kernels(*l);
    const LlmConfig& c = m->config_;
    if (m->tokenizer_->vocab_size() > c.n_vocab)
        throw FormatError("llm", path, 0, "the tokenizer has " + std::to_string(m->tokenizer_->vocab_size()) +
                                              " tokens but the model's embedding only " + std::to_string(c.n_vocab));
    int64_t n_ctx = options.n_ctx > 0 ? options.n_ctx : std::min<int64_t>(c.n_ctx_train, 4096);
    if (n_ctx > c.n_ctx_train)
        throw InvalidArgument("[llm] a context of " + std::to_string(n_ctx) + " tokens is longer than this model allows (" +
                              std::to_string(c.n_ctx_train) + ")");
    if (options.micro_batch < 1) throw InvalidArgument("[llm] the micro-batch must be at least one token (got " + std::to_string(options.micro_batch) + ")");
    m->micro_batch_ = options.micro_batch;
    m->cache_ = KvCache(c.n_layer, n_ctx, c.n_head_kv * c.head_dim);
    m->scratch_ = std::make_unique<ForwardScratch>();
    return m;
}

void LanguageModel::forward(std::span<const int32_t> tokens, int64_t n_past, std::span<float> logits, bool all_logits) {
    const int64_t T = static_cast<int64_t>(tokens.size());
    if (T == 0) throw InvalidArgument("[llm] forward needs at least one token");
    if (n_past < 0 || n_past + T > cache_.n_ctx())
        throw InvalidArgument("[llm] positions " + std::to_string(n_past) + ".." + std::to_string(n_past + T - 1) +
                              " do not fit the context of " + std::to_string(cache_.n_ctx()) + " tokens");
    const size_t need = static_cast<size_t>((all_logits ? T : 1) * config_.n_vocab);
    if (logits.size() < need) throw InvalidArgument("[llm] logits buffer too small");
    scratch_->block_observers = block_observers();
    // Long prompts run in micro-batches of micro_batch_ tokens, as llama.cpp's n_ubatch does: the batch
    // buffers (activations, MLP, attention scores) are sized by the micro-batch, not the prompt, and each
    // token's result is the same, since every row of a micro-batch attends to the cache exactly as in one batch.
    for (int64_t start = 0; start < T; start += micro_batch_) {
        const int64_t n = std::min(micro_batch_, T - start);
        // Without all_logits each micro-batch writes its last row's logits to the one row; the last one stays.
        const std::span<float> out = all_logits ? logits.subspan(static_cast<size_t>(start * config_.n_vocab)) : logits;
        const auto chunk = tokens.subspan(static_cast<size_t>(start), static_cast<size_t>(n));
        if (config_.family == LlmFamily::llama) llama_forward(config_, weights_, cache_, chunk, n_past + start, out, all_logits, *scratch_);
        else gpt2_forward(config_, weights_, cache_, chunk, n_past + start, out, all_logits, *scratch_);
    }
}

void LanguageModel::embed(std::span<const int32_t> tokens, int64_t n_past, float* hidden) {
    const int64_t T = static_cast<int64_t>(tokens.size());
    if (T == 0 || n_past < 0 || n_past + T > cache_.n_ctx())
        throw InvalidArgument("[llm] positions " + std::to_string(n_past) + ".." + std::to_string(n_past + T - 1) +
                              " do not fit the context of " + std::to_string(cache_.n_ctx()) + " tokens");
    if (config_.family == LlmFamily::llama) ops::embedding(weights_.token_embd, tokens, hidden);
    else gpt2_embed(config_, weights_, tokens, n_past, hidden, *scratch_);
}

void LanguageModel::run_block(int64_t block, float* hidden, int64_t T, int64_t n_past) {
    if (block < 0 || block >= config_.n_layer) throw InvalidArgument("[llm] there is no block " + std::to_string(block));
    if (T < 1 || n_past < 0 || n_past + T > cache_.n_ctx())
        throw InvalidArgument("[llm] positions " + std::to_string(n_past) + ".." + std::to_string(n_past + T - 1) +
                              " do not fit the context of " + std::to_string(cache_.n_ctx()) + " tokens");
    scratch_->block_observers = block_observers();
    if (config_.family == LlmFamily::llama) llama_block(config_, weights_, cache_, block, hidden, T, n_past, *scratch_);
    else gpt2_block(config_, weights_, cache_, block, hidden, T, n_past, *scratch_);
}

void LanguageModel::run_head(const float* hidden, int64_t T, float* logits) {
    const std::span<float> out(logits, static_cast<size_t>(T * config_.n_vocab));
    if (config_.family == LlmFamily::llama) llama_head(config_, weights_, hidden, T, out, true, *scratch_);
    else gpt2_head(config_, weights_, hidden, T, out, true, *scratch_);
}

// A block's Linears in the order the forward pass runs them (llama: q k v o gate up down; gpt2: qkv o up down).
void LanguageModel::collect_linears(std::vector<Linear*>& out) {
    for (DecoderBlock& b : weights_.blocks)
        for (Linear* l : {&b.wq, &b.wk, &b.wv, &b.wqkv, &b.wo, &b.ffn_gate, &b.ffn_up, &b.ffn_down})
            if (l->weight.numel() > 0) out.push_back(l);
    out.push_back(&weights_.output);
}

std::vector<LayerInfo> LanguageModel::layers() const {
    std::vector<LayerInfo> out;
    const auto tensor = [&](const std::string& name, LayerRole role, int64_t block, const Tensor& t) {
        out.push_back(LayerInfo{name, "", role, block, t.shape(), std::string(dtype_name(t.dtype())), t.nbytes(), false});
    };
    tensor("token_embd", LayerRole::token_embed, -1, weights_.token_embd);
    if (weights_.pos_embd) tensor("position_embd", LayerRole::position_embed, -1, *weights_.pos_embd);
    const std::vector<const Linear*> lin = linears();
    size_t next = 0;
    const auto linear_info = [&](const Linear& l) {
        out.push_back(LayerInfo{l.name, l.source_name, l.role, l.block, {l.n_out(), l.n_in()}, l.format(), l.bytes(), true});
    };
    for (size_t i = 0; i < weights_.blocks.size(); ++i) {
        const DecoderBlock& b = weights_.blocks[i];
        const std::string p = "blk." + std::to_string(i) + ".";
        tensor(p + "attn_norm", LayerRole::norm, static_cast<int64_t>(i), b.attn_norm.weight);
        // The block's Linears, with ffn_norm before the first MLP projection.
        for (; next < lin.size() && lin[next]->block == static_cast<int64_t>(i); ++next) {
            if (lin[next]->role == LayerRole::ffn_gate || (lin[next]->role == LayerRole::ffn_up && config_.family == LlmFamily::gpt2))
                tensor(p + "ffn_norm", LayerRole::norm, static_cast<int64_t>(i), b.ffn_norm.weight);
            linear_info(*lin[next]);
        }
    }
    tensor("output_norm", LayerRole::norm, -1, weights_.output_norm.weight);
    linear_info(weights_.output);
    return out;
}

uint64_t LanguageModel::weight_bytes() const {
    uint64_t total = weights_.token_embd.nbytes();
    if (weights_.pos_embd) total += weights_.pos_embd->nbytes();
    for (const auto& b : weights_.blocks)
        for (const Linear* l : {&b.wq, &b.wk, &b.wv, &b.wo, &b.wqkv, &b.ffn_gate, &b.ffn_up, &b.ffn_down}) total += l->weight.nbytes();
    if (weights_.output.weight.data() != weights_.token_embd.data()) total += weights_.output.weight.nbytes();
    return total;
}

uint64_t LanguageModel::workspace_bytes() const {
    if (!scratch_) return 0;
    const ForwardScratch& s = *scratch_;
    uint64_t n = 0;
    for (const std::vector<float>* v : {&s.x, &s.xn, &s.q, &s.k, &s.v, &s.qkv, &s.attn, &s.gate, &s.up, &s.tmp}) n += v->capacity();
    return n * sizeof(float);
}

uint64_t LanguageModel::kv_cache_bytes() const { return cache_.bytes(); }

}  // namespace cq
