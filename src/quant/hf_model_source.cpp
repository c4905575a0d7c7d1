// An HF LLM directory as the quantizer's model source, converted the way llama.cpp's convert_hf_to_gguf.py
// converts it: llama.cpp's tensor names, q/k rows of LLaMA un-permuted (HF stores them for rotate_half;
// GGUF "llama" keeps Meta's interleaved pairs), GPT-2's Conv1D [in, out] weights transposed to [out, in],
// norms / biases / learned positions kept F32, tied heads left out, and convert_hf_to_gguf's metadata.
// Every expected tensor is checked (presence, shape, dtype) when the source is opened, before any output
// exists; tensor bytes are transformed one tensor at a time straight from the safetensors mapping.
#include <cstring>
#include <filesystem>
#include <memory>
#include <set>
#include <span>

#include "core/json_file.h"
#include "core/sha256.h"
#include "cq/error.h"
#include "io/hf/hf_config.h"
#include "io/hf/hf_model.h"
#include "quant/hf_tokenizer_metadata.h"
#include "models/tensor_names.h"
#include "quant/model_source.h"

namespace cq::quant {

namespace {

namespace fs = std::filesystem;
using nlohmann::json;

enum class Transform { none, transpose, permute_heads };

// One GGUF tensor and where it comes from.
struct Spec {
    std::string gguf, hf;
    std::vector<int64_t> shape;  // the GGUF (output) shape, row-major
    Transform transform = Transform::none;
    int64_t n_head = 0;  // permute_heads: the heads the rows form
    bool required = true;
};

std::string shape_text(const std::vector<int64_t>& s) {
    std::string out = "[";
    for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
    return out + "]";
}

gguf::Value u32(int64_t v) { return gguf::Value{gguf::ValueType::U32, static_cast<uint64_t>(v)}; }
gguf::Value f32(double v) { return gguf::Value{gguf::ValueType::F32, v}; }
gguf::Value str(std::string s) { return gguf::Value{gguf::ValueType::STRING, std::move(s)}; }

using Config = hf::Config;

struct Converted {
    std::vector<Spec> specs;
    std::vector<std::pair<std::string, gguf::Value>> hparams;  // after general.*, before the tokenizer
    std::vector<std::string> ignored_suffixes;                 // HF tensors convert_hf_to_gguf drops
    std::set<std::string> ignored_names;
    int64_t n_layer = 0, n_head = 1, n_head_kv = 1, n_vocab = 0;
};

void add_linear(Converted& c, const std::string& gguf, const std::string& hf, int64_t n_out, int64_t n_in, Transform t, int64_t n_head,
                bool bias_required) {
    const bool transposed = t == Transform::transpose;
    c.specs.push_back({gguf + ".weight", hf + ".weight", {n_out, n_in}, t, n_head, true});
    c.specs.push_back({gguf + ".bias", hf + ".bias", {n_out}, transposed ? Transform::none : t, n_head, bias_required});
}

struct LinearSpec {
    int64_t n_out, n_in;
    Transform transform;
    int64_t n_head;
};

// Every block tensor of the family, in the name table's order (which is convert_hf_to_gguf's): norms as
// F32 vectors (GPT-2's with biases), Linears shaped and transformed by `linear_spec(role)`; GPT-2's
// Linears carry required biases.
template <typename SpecFn>
void add_blocks(Converted& c, LlmFamily family, const std::string& gpt2_prefix, int64_t n_layer, int64_t D, SpecFn linear_spec) {
    const models::DecoderNames gguf(family, false), hf(family, true, gpt2_prefix);
    const bool gpt2 = family == LlmFamily::gpt2;
    const std::span<const models::TensorName> table =
        gpt2 ? std::span<const models::TensorName>(models::kGpt2BlockTensors) : std::span<const models::TensorName>(models::kLlamaBlockTensors);
    for (int64_t l = 0; l < n_layer; ++l)
        for (const models::TensorName& t : table) {
            const std::string g = gguf.block(l, t.gguf), h = hf.block(l, t.gguf);
            if (t.role == LayerRole::norm) {
                c.specs.push_back({g + ".weight", h + ".weight", {D}});
                if (gpt2) c.specs.push_back({g + ".bias", h + ".bias", {D}});
                continue;
            }
            const LinearSpec s = linear_spec(t.role);
            add_linear(c, g, h, s.n_out, s.n_in, s.transform, s.n_head, gpt2);
        }
}

// LLaMA / Mistral (LlamaForCausalLM, MistralForCausalLM) → GGUF "llama".
Converted convert_llama(const Config& cfg) {
    Converted c;
    const int64_t D = cfg.get_size({"hidden_size"}), L = cfg.get_size({"num_hidden_layers"});
    const int64_t H = cfg.get_size({"num_attention_heads"}), F = cfg.get_size({"intermediate_size"}), V = cfg.get_size({"vocab_size"});
    const auto Hkv_opt = cfg.opt_size({"num_key_value_heads"});
    const int64_t Hkv = Hkv_opt.value_or(H);
    const auto head_dim_opt = cfg.opt_size({"head_dim"});
    if (!head_dim_opt && D % H != 0) cfg.fail("hidden_size", "is not a multiple of num_attention_heads");
    const int64_t hd = head_dim_opt.value_or(D / H);
    if (H % Hkv != 0) cfg.fail("num_attention_heads", "is not a multiple of num_key_value_heads");
    if (hd % 2 != 0) cfg.fail("head_dim", "is odd; RoPE needs pairs");
    c.n_layer = L, c.n_head = H, c.n_head_kv = Hkv, c.n_vocab = V;

    // convert_hf_to_gguf's TextModel.set_gguf_parameters + LlamaModel.set_gguf_parameters, in its order.
    auto& m = c.hparams;
    m.emplace_back("llama.block_count", u32(L));
    if (auto n_ctx = cfg.opt_size({"max_position_embeddings", "n_ctx", "n_positions"})) m.emplace_back("llama.context_length", u32(*n_ctx));
    m.emplace_back("llama.embedding_length", u32(D));
    m.emplace_back("llama.feed_forward_length", u32(F));
    m.emplace_back("llama.attention.head_count", u32(H));
    if (Hkv_opt) m.emplace_back("llama.attention.head_count_kv", u32(Hkv));
    const json* rope_params = cfg.find("rope_parameters");  // transformers ≥ 5 keeps rope_theta / type there
    const json* scaling = cfg.find("rope_scaling");
    if (!scaling && rope_params) scaling = rope_params;
    if (scaling && scaling->is_object()) {
        const std::string type = scaling->value("rope_type", scaling->value("type", std::string("default")));
        if (type == "linear") {
            const auto it = scaling->find("factor");
            if (it == scaling->end() || !it->is_number()) cfg.fail("rope_scaling", "is linear but has no numeric factor");
            m.emplace_back("llama.rope.scaling.type", str("linear"));
            m.emplace_back("llama.rope.scaling.factor", f32(it->get<double>()));
        } else if (type != "default") {
            throw Unsupported("[quantize] " + cfg.path() + ": RoPE scaling '" + type +
                              "' is not supported for conversion yet (cq converts none and linear)");
        }
    }
    std::optional<double> theta = cfg.opt_number("rope_theta");
    if (!theta && rope_params && rope_params->is_object())
        if (const auto it = rope_params->find("rope_theta"); it != rope_params->end() && it->is_number()) theta = it->get<double>();
    if (theta) m.emplace_back("llama.rope.freq_base", f32(*theta));
    if (auto eps = cfg.opt_number("rms_norm_eps")) m.emplace_back("llama.attention.layer_norm_rms_epsilon", f32(*eps));
    if (head_dim_opt) {
        m.emplace_back("llama.attention.key_length", u32(hd));
        m.emplace_back("llama.attention.value_length", u32(hd));
    }
    m.emplace_back("llama.vocab_size", u32(V));
    m.emplace_back("llama.rope.dimension_count", u32(hd));

    const bool tied = cfg.bool_or("tie_word_embeddings", false);
    const int64_t q_dim = H * hd, kv_dim = Hkv * hd;
    c.specs.push_back({"token_embd.weight", "model.embed_tokens.weight", {V, D}});
    c.specs.push_back({"output_norm.weight", "model.norm.weight", {D}});
    if (tied) c.ignored_names.insert("lm_head.weight");  // a tied head is the embedding; llama.cpp falls back to it
    else c.specs.push_back({"output.weight", "lm_head.weight", {V, D}, Transform::none, 0, false});
    add_blocks(c, LlmFamily::llama, "", L, D, [&](LayerRole role) -> LinearSpec {
        switch (role) {
            case LayerRole::attn_q: return {q_dim, D, Transform::permute_heads, H};
            case LayerRole::attn_k: return {kv_dim, D, Transform::permute_heads, Hkv};
            case LayerRole::attn_v: return {kv_dim, D, Transform::none, 0};
            case LayerRole::attn_out: return {D, q_dim, Transform::none, 0};
            case LayerRole::ffn_down: return {D, F, Transform::none, 0};
            default: return {F, D, Transform::none, 0};  // gate, up
        }
    });
    c.ignored_suffixes = {".rotary_emb.inv_freq"};
    return c;
}

// GPT-2 (GPT2LMHeadModel) → GGUF "gpt2". Tensor names with or without the "transformer." prefix.
Converted convert_gpt2(const Config& cfg, const safetensors::Model& weights) {
    Converted c;
    const int64_t D = cfg.get_size({"n_embd"}), L = cfg.get_size({"n_layer"}), H = cfg.get_size({"n_head"});
    const int64_t V = cfg.get_size({"vocab_size"}), n_pos = cfg.get_size({"n_positions", "n_ctx"});
    // convert_hf_to_gguf writes 4·n_embd; n_inner, when set, is what the weights have.
    const int64_t F = cfg.opt_size({"n_inner"}).value_or(4 * D);
    c.n_layer = L, c.n_head = c.n_head_kv = H, c.n_vocab = V;
    auto& m = c.hparams;
    m.emplace_back("gpt2.block_count", u32(L));
    m.emplace_back("gpt2.context_length", u32(cfg.get_size({"n_ctx", "n_positions"})));
    m.emplace_back("gpt2.embedding_length", u32(D));
    m.emplace_back("gpt2.feed_forward_length", u32(F));
    m.emplace_back("gpt2.attention.head_count", u32(H));
    m.emplace_back("gpt2.attention.layer_norm_epsilon", f32(cfg.opt_number("layer_norm_epsilon").value_or(1e-5)));

    const std::string t = weights.find_tensor("transformer.wte.weight") ? "transformer." : "";
    const bool tied = cfg.bool_or("tie_word_embeddings", true);
    c.specs.push_back({"token_embd.weight", t + "wte.weight", {V, D}});
    c.specs.push_back({"position_embd.weight", t + "wpe.weight", {n_pos, D}});
    c.specs.push_back({"output_norm.weight", t + "ln_f.weight", {D}});
    c.specs.push_back({"output_norm.bias", t + "ln_f.bias", {D}});
    if (tied) c.ignored_names.insert("lm_head.weight");
    else c.specs.push_back({"output.weight", "lm_head.weight", {V, D}, Transform::none, 0, false});
    // Conv1D: y = x·W + b with W stored [in, out]
    add_blocks(c, LlmFamily::gpt2, t, L, D, [&](LayerRole role) -> LinearSpec {
        switch (role) {
            case LayerRole::attn_qkv: return {3 * D, D, Transform::transpose, 0};
            case LayerRole::attn_out: return {D, D, Transform::transpose, 0};
            case LayerRole::ffn_up: return {F, D, Transform::transpose, 0};
            default: return {D, F, Transform::transpose, 0};  // down
        }
    });
    c.ignored_suffixes = {".attn.bias", ".attn.masked_bias"};  // causal-mask buffers
    return c;
}

bool ends_with(const std::string& s, const std::string& suffix) {
    return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// x: [rows, cols] → out: [cols, rows], elements of `es` bytes.
void transpose(const uint8_t* x, uint8_t* out, int64_t rows, int64_t cols, size_t es) {
    for (int64_t r = 0; r < rows; ++r)
        for (int64_t c = 0; c < cols; ++c) std::memcpy(out + (c * rows + r) * es, x + (r * cols + c) * es, es);
}

std::string dir_name(const std::string& dir) {
    std::error_code ec;
    fs::path p = fs::weakly_canonical(fs::path(dir), ec);
    if (ec || p.filename().empty()) p = fs::path(dir).lexically_normal();
    if (p.filename().empty()) p = p.parent_path();
    return p.filename().string();
}

}  // namespace

ModelSource open_hf_source(const std::string& dir) {
    const std::string config_path = (fs::path(dir) / "config.json").string();
    std::error_code ec;
    if (!fs::is_regular_file(config_path, ec)) throw IoError("[quantize] " + dir + ": no config.json (an HF model directory needs one)");
    // The model type first, so an unsupported family is named before anything else is read.
    const json config = read_json_file(config_path, "hf", 16ull << 20);
    if (!config.is_object()) throw FormatError("hf", config_path, 0, "config.json is not a JSON object");
    const std::string model_type = config.value("model_type", std::string());
    std::string arch;
    if (model_type == "llama" || model_type == "mistral") arch = "llama";
    else if (model_type == "gpt2") arch = "gpt2";
    else
        throw Unsupported("[quantize] " + dir + ": converting HF model_type '" + (model_type.empty() ? "(none)" : model_type) +
                          "' to GGUF is not supported yet; cq converts llama, mistral (→ GGUF llama) and gpt2");

    auto d = std::make_shared<const hf::ModelDir>(hf::open_model_dir(dir));
    const Config cfg(config, config_path);
    const safetensors::Model& weights = d->weights;
    Converted c = arch == "llama" ? convert_llama(cfg) : convert_gpt2(cfg, weights);

    ModelSource s;
    s.path = dir;
    s.display_name = dir_name(dir);
    s.arch = arch;
    s.n_layer = c.n_layer, s.n_head = c.n_head, s.n_head_kv = c.n_head_kv;
    for (const auto& shard : weights.shards()) s.file_bytes += shard.file_size();

    std::set<std::string> used;
    for (const Spec& spec : c.specs) {
        const safetensors::TensorInfo* info = weights.find_tensor(spec.hf);
        const std::string file = info ? weights.shard_of(spec.hf)->path() : dir;
        if (!info) {
            if (!spec.required) continue;
            throw FormatError("safetensors", dir, 0, "tensor '" + spec.hf + "' (GGUF '" + spec.gguf + "') is missing");
        }
        used.insert(spec.hf);
        std::vector<int64_t> hf_shape = spec.shape;
        if (spec.transform == Transform::transpose) std::swap(hf_shape[0], hf_shape[1]);
        if (info->shape != hf_shape)
            throw FormatError("safetensors", file, info->file_offset,
                              "tensor '" + spec.hf + "' has shape " + shape_text(info->shape) + ", expected " + shape_text(hf_shape) +
                                  " for GGUF '" + spec.gguf + "' (from config.json)");
        if (info->dtype != DType::F32 && info->dtype != DType::F16 && info->dtype != DType::BF16)
            throw Unsupported("[quantize] " + file + ": tensor '" + spec.hf + "' is " + info->dtype_name +
                              "; cq converts F32, F16 and BF16 weights");
        if (spec.transform == Transform::permute_heads && spec.shape[0] % (2 * spec.n_head) != 0)
            throw FormatError("safetensors", file, info->file_offset,
                              "tensor '" + spec.hf + "' has " + std::to_string(spec.shape[0]) + " rows, not a whole number of " +
                                  std::to_string(spec.n_head) + " heads of RoPE pairs");
        SourceTensor st;
        st.name = spec.gguf, st.shape = spec.shape, st.dtype = info->dtype, st.nbytes = info->nbytes, st.numel = info->numel;
        // convert_hf_to_gguf writes 1-D tensors, norms and learned positions as F32 (biases are 1-D).
        st.kept = is_quantizable(st.name, st.shape) ? info->dtype : DType::F32;
        const size_t es = static_cast<size_t>(dtype_traits(info->dtype).bytes_per_block);
        st.read = [d, spec, es, nbytes = info->nbytes](std::vector<uint8_t>& scratch) -> const uint8_t* {
            const Tensor t = d->weights.tensor(spec.hf);
            const auto* x = static_cast<const uint8_t*>(t.data());
            if (spec.transform == Transform::none) return x;  // the mapping outlives `t` (held by `d`)
            scratch.resize(nbytes);
            const int64_t rows = spec.shape[0], cols = spec.shape.size() > 1 ? spec.shape[1] : 1;
            if (spec.transform == Transform::transpose) transpose(x, scratch.data(), cols, rows, es);
            else unpermute_head_rows(x, scratch.data(), rows, spec.n_head, static_cast<uint64_t>(cols) * es);
            return scratch.data();
        };
        s.tensors.push_back(std::move(st));
    }
    for (const auto* t : weights.tensors()) {
        if (used.count(t->name) || c.ignored_names.count(t->name)) continue;
        bool ignored = false;
        for (const auto& suffix : c.ignored_suffixes) ignored = ignored || ends_with(t->name, suffix);
        if (!ignored)
            throw FormatError("safetensors", weights.shard_of(t->name)->path(), t->file_offset,
                              "tensor '" + t->name + "' is not part of a " + model_type + " model as cq converts it (no GGUF name for it)");
    }

    std::vector<std::pair<std::string, gguf::Value>> kv;
    kv.reserve(64);  // also keeps GCC 12 from a false -Warray-bounds on the first emplace_back
    kv.emplace_back("general.architecture", str(arch));
    kv.emplace_back("general.type", str("model"));
    kv.emplace_back("general.name", str(s.display_name));  // convert_hf_to_gguf's fallback: the directory name
    for (auto& p : c.hparams) kv.push_back(std::move(p));
    for (auto& p : hf_tokenizer_metadata(dir, config, arch, c.n_vocab)) kv.push_back(std::move(p));
    s.write_metadata = [kv = std::move(kv)](gguf::Writer& w) {
        for (const auto& [key, value] : kv) w.set(key, value);
    };
    // A directory has no single file to hash: its identity is the SHA-256 of the concatenated lower-case
    // hex SHA-256 digests of its weight files, in shard order (one file: the hash of its digest's text).
    s.sha256 = [d] {
        std::string digests;
        for (const auto& shard : d->weights.shards()) digests += sha256_file(shard.path());
        Sha256 h;
        h.update(digests.data(), digests.size());
        return h.hex();
    };
    return s;
}

}  // namespace cq::quant
