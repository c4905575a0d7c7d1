// BART (BartForConditionalGeneration) on cq's ops: shared token embeddings (× √d with scale_embedding) + learned
// positions at offset 2, layernorm_embedding, post-LN encoder layers, post-LN decoder layers with causal self-attention
// and cross-attention to the encoder, lm_head tied to the shared embeddings + final_logits_bias. As transformers'
// modeling_bart; greedy decoding with a KV cache.
#include <algorithm>
#include <cmath>
#include <filesystem>

#include "core/json_file.h"
#include "cq/error.h"
#include "cq/kernels.h"
#include "cq/seq2seq.h"
#include "cq/thread_pool.h"
#include "io/hf/hf_config.h"
#include "io/hf/hf_model.h"
#include "models/encoder_families.h"
#include "models/weight_helpers.h"
#include "ops/encoder_ops.h"
#include "ops/ops.h"

namespace cq {

namespace fs = std::filesystem;

namespace {

// Multi-head attention of Tq queries over Tk keys (one sequence). q: [Tq, q_stride], k / v: [Tk, kv_stride], head h at
// column h·head_dim; out: [Tq, n_head·head_dim]. causal_offset ≥ 0: query t sees keys 0..causal_offset + t (a decoder
// with causal_offset cached positions); < 0: every key. Heads spread over the thread pool; each head's arithmetic is the
// same at any thread count.
void attend(const float* q, int64_t q_stride, int64_t Tq, const float* k, const float* v, int64_t kv_stride, int64_t Tk, int64_t n_head,
            int64_t head_dim, int64_t causal_offset, float* out) {
    const KernelTable& kt = kernel_table();
    const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
    ThreadPool::global().parallel_for(n_head, [&](int64_t h0, int64_t h1) {
        std::vector<float> scores(static_cast<size_t>(Tq * Tk));
        for (int64_t h = h0; h < h1; ++h) {
            // scores: [Tq, Tk] = Q_h · K_hᵀ
            kt.gemm_f32.fn(Tq, Tk, head_dim, q + h * head_dim, q_stride, k + h * head_dim, kv_stride, scores.data(), Tk);
            for (int64_t t = 0; t < Tq; ++t) {
                float* row = scores.data() + t * Tk;
                if (causal_offset >= 0) std::fill(row + std::min(Tk, causal_offset + t + 1), row + Tk, -INFINITY);
                kt.softmax_f32.fn(row, Tk, scale);
            }
            // out_h: [Tq, head_dim] = P · V_h
            kt.gemm_f32_nn.fn(Tq, head_dim, Tk, scores.data(), Tk, v + h * head_dim, kv_stride, out + h * head_dim, n_head * head_dim);
        }
    });
}

}  // namespace

struct Seq2SeqModel::State {
    Tensor shared, enc_pos, dec_pos;  // [vocab, d], [max_positions + 2, d] each
    Norm enc_embd_norm, dec_embd_norm;
    std::vector<Seq2SeqLayer> encoder, decoder;
    Linear lm_head;  // the shared embeddings (or lm_head.weight) + final_logits_bias
    ops::Activation act = ops::Activation::gelu_erf;
};

class Seq2SeqLoader {
public:
    static void load(Seq2SeqModel& m, const std::string& path);
};

namespace {

Seq2SeqLayer load_layer(const EncoderWeightSource& src, const std::string& p, int64_t d, int64_t f, bool decoder, int64_t block) {
    Seq2SeqLayer l;
    l.q = src.linear(p + "self_attn.q_proj", d, d, LayerRole::attn_q, block);
    l.k = src.linear(p + "self_attn.k_proj", d, d, LayerRole::attn_k, block);
    l.v = src.linear(p + "self_attn.v_proj", d, d, LayerRole::attn_v, block);
    l.attn_out = src.linear(p + "self_attn.out_proj", d, d, LayerRole::attn_out, block);
    l.attn_norm = src.norm(p + "self_attn_layer_norm", d);
    if (decoder) {
        l.cross_q = src.linear(p + "encoder_attn.q_proj", d, d, LayerRole::attn_q, block);
        l.cross_k = src.linear(p + "encoder_attn.k_proj", d, d, LayerRole::attn_k, block);
        l.cross_v = src.linear(p + "encoder_attn.v_proj", d, d, LayerRole::attn_v, block);
        l.cross_out = src.linear(p + "encoder_attn.out_proj", d, d, LayerRole::attn_out, block);
        l.cross_norm = src.norm(p + "encoder_attn_layer_norm", d);
    }
    l.ffn_in = src.linear(p + "fc1", f, d, LayerRole::ffn_up, block);
    l.ffn_out = src.linear(p + "fc2", d, f, LayerRole::ffn_down, block);
    l.ffn_norm = src.norm(p + "final_layer_norm", d);
    return l;
}

}  // namespace

void Seq2SeqLoader::load(Seq2SeqModel& m, const std::string& path) {
    std::error_code ec;
    const std::string config_path = (fs::path(path) / "config.json").string();
    if (!fs::is_directory(path, ec)) throw IoError("[seq2seq] '" + path + "' is not an HF model directory");
    if (!fs::is_regular_file(config_path, ec)) throw IoError("[seq2seq] " + config_path + " does not exist");
    const nlohmann::json j = read_json_file(config_path, "hf");
    const hf::Config c(j, config_path);
    const std::string model_type = c.string_or("model_type", "");
    std::string arch;
    if (const nlohmann::json* a = c.find("architectures"); a && a->is_array() && !a->empty() && (*a)[0].is_string()) arch = (*a)[0].get<std::string>();
    if (model_type != "bart" || (!arch.empty() && arch != "BartForConditionalGeneration"))
        throw Unsupported("[seq2seq] " + config_path + ": model_type '" + model_type + "' with architecture '" + arch +
                          "' is not supported; supported: BartForConditionalGeneration (bart)");
    Seq2SeqConfig& g = m.config_;
    g.architecture = "BartForConditionalGeneration";
    // BartConfig's defaults where config.json leaves a value out
    g.d_model = c.size_or({"d_model"}, 1024);
    g.vocab = c.size_or({"vocab_size"}, 50265);
    g.max_positions = c.size_or({"max_position_embeddings"}, 1024);
    g.encoder_layers = c.size_or({"encoder_layers"}, 12);
    g.decoder_layers = c.size_or({"decoder_layers"}, 12);
    g.encoder_heads = c.size_or({"encoder_attention_heads"}, 16);
    g.decoder_heads = c.size_or({"decoder_attention_heads"}, 16);
    g.encoder_ffn = c.size_or({"encoder_ffn_dim"}, 4096);
    g.decoder_ffn = c.size_or({"decoder_ffn_dim"}, 4096);
    g.activation = c.string_or("activation_function", "gelu");
    g.embed_scale = c.bool_or("scale_embedding", false) ? std::sqrt(static_cast<float>(g.d_model)) : 1.0f;
    g.pad_token_id = static_cast<int32_t>(c.int_or({"pad_token_id"}, 1));
    g.bos_token_id = static_cast<int32_t>(c.int_or({"bos_token_id"}, 0));
    g.eos_token_id = static_cast<int32_t>(c.int_or({"eos_token_id"}, 2));
    g.decoder_start_token_id = static_cast<int32_t>(c.int_or({"decoder_start_token_id"}, 2));
    g.forced_eos_token_id = j.contains("forced_eos_token_id") ? c.opt_int({"forced_eos_token_id"}) : std::optional<int64_t>(2);
    g.forced_bos_token_id = c.opt_int({"forced_bos_token_id"});
    if (c.bool_or("add_final_layer_norm", false) || c.bool_or("normalize_before", false))
        throw Unsupported("[seq2seq] " + config_path + ": pre-LN BART variants (normalize_before / add_final_layer_norm, mBART) are not supported");
    for (const auto& [what, dim, heads] : {std::tuple{"encoder", g.d_model, g.encoder_heads}, std::tuple{"decoder", g.d_model, g.decoder_heads}})
        if (dim % heads != 0)
            throw FormatError("json", config_path, 0, std::string(what) + "_attention_heads " + std::to_string(heads) + " does not divide d_model " +
                                                          std::to_string(dim));
    for (const int32_t id : {g.pad_token_id, g.bos_token_id, g.eos_token_id, g.decoder_start_token_id})
        if (id < 0 || id >= g.vocab) throw FormatError("json", config_path, 0, "special token id " + std::to_string(id) + " is outside the vocabulary");
    const auto act = ops::activation_from_name(g.activation);
    if (!act)
        throw Unsupported("[seq2seq] " + config_path + ": activation_function '" + g.activation +
                          "' is not supported (cq implements gelu, gelu_new, gelu_pytorch_tanh, relu, tanh, quick_gelu)");

    const hf::ModelDir d = hf::open_model_dir(path);
    const std::string weights_file = !d.weights.index_path().empty() ? d.weights.index_path()
                                     : d.weights.shards().empty()   ? path
                                                                    : d.weights.shards().front().path();
    const EncoderWeightSource src(weights_file, [&d](const std::string& name) -> std::optional<Tensor> {
        if (d.weights.find_tensor(name)) return d.weights.tensor(name);
        return std::nullopt;
    });
    auto& s = *m.s_;
    s.act = *act;
    const int64_t D = g.d_model;
    s.shared = src.has("model.shared.weight") ? src.get("model.shared.weight", {g.vocab, D}) : src.get("model.encoder.embed_tokens.weight", {g.vocab, D});
    s.enc_pos = src.get("model.encoder.embed_positions.weight", {g.max_positions + 2, D});
    s.dec_pos = src.get("model.decoder.embed_positions.weight", {g.max_positions + 2, D});
    s.enc_embd_norm = src.norm("model.encoder.layernorm_embedding", D);
    s.dec_embd_norm = src.norm("model.decoder.layernorm_embedding", D);
    for (int64_t l = 0; l < g.encoder_layers; ++l)
        s.encoder.push_back(load_layer(src, "model.encoder.layers." + std::to_string(l) + ".", D, g.encoder_ffn, false, l));
    for (int64_t l = 0; l < g.decoder_layers; ++l)
        s.decoder.push_back(load_layer(src, "model.decoder.layers." + std::to_string(l) + ".", D, g.decoder_ffn, true, g.encoder_layers + l));
    // lm_head: tied to the shared embeddings unless the file has its own; final_logits_bias [1, vocab] (zero if absent)
    s.lm_head.name = "lm_head";
    s.lm_head.source_name = src.has("lm_head.weight") ? "lm_head" : "model.shared";
    s.lm_head.role = LayerRole::lm_head;
    s.lm_head.weight = src.has("lm_head.weight") ? src.get("lm_head.weight", {g.vocab, D}) : s.shared;
    if (auto bias = src.find("final_logits_bias", {g.vocab})) s.lm_head.bias = models::to_f32(*bias);

    m.tokenizer_ = load_tokenizer(d);
    if (m.tokenizer_->vocab_size() > g.vocab)
        throw FormatError("hf", path, 0, "the tokenizer has " + std::to_string(m.tokenizer_->vocab_size()) + " tokens but the embeddings only " +
                                             std::to_string(g.vocab));
}

Seq2SeqModel::Seq2SeqModel() : s_(std::make_unique<State>()) {}
Seq2SeqModel::~Seq2SeqModel() = default;

std::unique_ptr<Seq2SeqModel> Seq2SeqModel::load(const std::string& hf_dir) {
    auto m = std::make_unique<Seq2SeqModel>();
    m->path_ = hf_dir;
    Seq2SeqLoader::load(*m, hf_dir);
    return m;
}

void Seq2SeqModel::save(const std::string&, const SaveOptions&) const {
    throw Unsupported("[save] " + config_.architecture + ": cq has no file format for encoder–decoder models yet");
}

std::vector<int32_t> Seq2SeqModel::tokenize(std::string_view text, int64_t max_len) const {
    if (max_len != 0 && max_len < 3) throw InvalidArgument("[seq2seq] max_len " + std::to_string(max_len) + " leaves no room for <s> … </s>");
    std::vector<int32_t> ids{config_.bos_token_id};
    std::vector<int32_t> body = tokenizer_->encode(text, false);
    if (max_len > 0 && static_cast<int64_t>(body.size()) > max_len - 2) body.resize(static_cast<size_t>(max_len - 2));
    ids.insert(ids.end(), body.begin(), body.end());
    ids.push_back(config_.eos_token_id);
    return ids;
}

namespace {

// x: [T, d] = embed(ids)·scale + positions[first + t + 2] → LayerNorm
void embed(const Seq2SeqConfig& g, const Tensor& shared, const Tensor& pos, const Norm& norm, std::span<const int32_t> ids, int64_t first,
           std::vector<float>& x) {
    const int64_t T = static_cast<int64_t>(ids.size()), D = g.d_model;
    if (first + T > g.max_positions)
        throw InvalidArgument("[seq2seq] " + std::to_string(first + T) + " positions exceed the model's " + std::to_string(g.max_positions));
    x.resize(static_cast<size_t>(T * D));
    ops::embedding(shared, ids, x.data());
    if (g.embed_scale != 1.0f)
        for (float& v : x) v *= g.embed_scale;
    std::vector<int32_t> positions(static_cast<size_t>(T));
    for (int64_t t = 0; t < T; ++t) positions[static_cast<size_t>(t)] = static_cast<int32_t>(first + t + 2);  // BART's offset 2
    std::vector<float> p(static_cast<size_t>(T * D));
    ops::embedding(pos, positions, p.data());
    ops::add(x.data(), p.data(), T * D);
    ops::layer_norm_rows(x.data(), T, D, norm.weight, &*norm.bias, g.norm_eps, x.data());
}

// x = LN(x + ffn(x)), x: [T, d]
void ffn(const Seq2SeqLayer& l, ops::Activation act, float eps, std::vector<float>& x, int64_t T, int64_t D) {
    std::vector<float> h(static_cast<size_t>(T * l.ffn_in.n_out())), y(static_cast<size_t>(T * D));
    ops::linear(l.ffn_in, x.data(), T, h.data());
    ops::activate(act, h.data(), static_cast<int64_t>(h.size()));
    ops::linear(l.ffn_out, h.data(), T, y.data());
    ops::add_layer_norm_rows(x.data(), y.data(), T, D, l.ffn_norm.weight, &*l.ffn_norm.bias, eps, x.data());
}

}  // namespace

// The decoder's per-sequence cache: each layer's self-attention keys / values so far, and its cross-attention ones.
struct DecoderCache {
    std::vector<std::vector<float>> k, v, cross_k, cross_v;
    int64_t n_past = 0, n_source = 0;
};

void Seq2SeqModel::collect_linears(std::vector<Linear*>& out) {
    for (auto* stack : {&s_->encoder, &s_->decoder})
        for (auto& l : *stack) {
            for (Linear* x : {&l.q, &l.k, &l.v, &l.attn_out}) out.push_back(x);
            if (l.cross_q)
                for (auto* x : {&l.cross_q, &l.cross_k, &l.cross_v, &l.cross_out}) out.push_back(&**x);
            out.push_back(&l.ffn_in);
            out.push_back(&l.ffn_out);
        }
    out.push_back(&s_->lm_head);
}

std::vector<LayerInfo> Seq2SeqModel::layers() const {
    std::vector<LayerInfo> out;
    const auto tensor = [&](const std::string& name, LayerRole role, int64_t block, const Tensor& t) {
        out.push_back(LayerInfo{name, name, role, block, t.shape(), std::string(dtype_name(t.dtype())), t.nbytes(), false});
    };
    const auto linear = [&](const Linear& l) {
        out.push_back(LayerInfo{l.name, l.source_name, l.role, l.block, {l.n_out(), l.n_in()}, l.format(), l.bytes(), true});
    };
    const State& s = *s_;
    tensor("model.shared", LayerRole::token_embed, -1, s.shared);
    tensor("model.encoder.embed_positions", LayerRole::position_embed, -1, s.enc_pos);
    tensor(s.enc_embd_norm.name, LayerRole::norm, -1, s.enc_embd_norm.weight);
    const auto stack = [&](const std::vector<Seq2SeqLayer>& ls) {
        for (const auto& l : ls) {
            for (const Linear* x : {&l.q, &l.k, &l.v, &l.attn_out}) linear(*x);
            tensor(l.attn_norm.name, LayerRole::norm, l.q.block, l.attn_norm.weight);
            if (l.cross_q) {
                for (const auto* x : {&l.cross_q, &l.cross_k, &l.cross_v, &l.cross_out}) linear(**x);
                tensor(l.cross_norm->name, LayerRole::norm, l.q.block, l.cross_norm->weight);
            }
            linear(l.ffn_in);
            linear(l.ffn_out);
            tensor(l.ffn_norm.name, LayerRole::norm, l.q.block, l.ffn_norm.weight);
        }
    };
    stack(s.encoder);
    tensor("model.decoder.embed_positions", LayerRole::position_embed, -1, s.dec_pos);
    tensor(s.dec_embd_norm.name, LayerRole::norm, -1, s.dec_embd_norm.weight);
    stack(s.decoder);
    linear(s.lm_head);
    return out;
}

namespace {

std::vector<float> run_encoder(const Seq2SeqConfig& g, const Seq2SeqModel::State& s, std::span<const int32_t> source, ops::Activation act) {
    if (source.empty()) throw InvalidArgument("[seq2seq] the source holds no tokens");
    const int64_t T = static_cast<int64_t>(source.size()), D = g.d_model, H = g.encoder_heads;
    std::vector<float> x, q(static_cast<size_t>(T * D)), k(q.size()), v(q.size()), a(q.size()), y(q.size());
    embed(g, s.shared, s.enc_pos, s.enc_embd_norm, source, 0, x);
    for (const auto& l : s.encoder) {
        const Linear* qkv[] = {&l.q, &l.k, &l.v};
        float* const outs[] = {q.data(), k.data(), v.data()};
        ops::linear_shared_input(qkv, x.data(), T, outs);
        attend(q.data(), D, T, k.data(), v.data(), D, T, H, D / H, -1, a.data());
        ops::linear(l.attn_out, a.data(), T, y.data());
        ops::add_layer_norm_rows(x.data(), y.data(), T, D, l.attn_norm.weight, &*l.attn_norm.bias, g.norm_eps, x.data());
        ffn(l, act, g.norm_eps, x, T, D);
    }
    return x;
}

// Decoder tokens ids at positions cache.n_past.. → logits [T, vocab]; appends their keys / values to the cache.
void run_decoder(const Seq2SeqConfig& g, const Seq2SeqModel::State& s, DecoderCache& cache, std::span<const int32_t> ids, float* logits) {
    const int64_t T = static_cast<int64_t>(ids.size()), D = g.d_model, H = g.decoder_heads, past = cache.n_past;
    std::vector<float> x, q(static_cast<size_t>(T * D)), k(q.size()), v(q.size()), a(q.size()), y(q.size());
    embed(g, s.shared, s.dec_pos, s.dec_embd_norm, ids, past, x);
    for (size_t i = 0; i < s.decoder.size(); ++i) {
        const Seq2SeqLayer& l = s.decoder[i];
        const Linear* qkv[] = {&l.q, &l.k, &l.v};
        float* const outs[] = {q.data(), k.data(), v.data()};
        ops::linear_shared_input(qkv, x.data(), T, outs);
        // self-attention over the cached positions and these, causal
        auto& ck = cache.k[i];
        auto& cv = cache.v[i];
        ck.insert(ck.end(), k.begin(), k.end());
        cv.insert(cv.end(), v.begin(), v.end());
        attend(q.data(), D, T, ck.data(), cv.data(), D, past + T, H, D / H, past, a.data());
        ops::linear(l.attn_out, a.data(), T, y.data());
        ops::add_layer_norm_rows(x.data(), y.data(), T, D, l.attn_norm.weight, &*l.attn_norm.bias, g.norm_eps, x.data());
        // cross-attention to every source position
        ops::linear(*l.cross_q, x.data(), T, q.data());
        attend(q.data(), D, T, cache.cross_k[i].data(), cache.cross_v[i].data(), D, cache.n_source, H, D / H, -1, a.data());
        ops::linear(*l.cross_out, a.data(), T, y.data());
        ops::add_layer_norm_rows(x.data(), y.data(), T, D, l.cross_norm->weight, &*l.cross_norm->bias, g.norm_eps, x.data());
        ffn(l, s.act, g.norm_eps, x, T, D);
    }
    cache.n_past += T;
    ops::linear(s.lm_head, x.data(), T, logits);
}

DecoderCache start_cache(const Seq2SeqConfig& g, const Seq2SeqModel::State& s, const std::vector<float>& encoded) {
    DecoderCache c;
    const int64_t D = g.d_model, n = static_cast<int64_t>(encoded.size()) / D;
    c.n_source = n;
    c.k.resize(s.decoder.size());
    c.v.resize(s.decoder.size());
    for (const auto& l : s.decoder) {
        // the cross-attention keys / values: once per source, every step reads them
        std::vector<float> k(static_cast<size_t>(n * D)), v(k.size());
        const Linear* kv[] = {&*l.cross_k, &*l.cross_v};
        float* const outs[] = {k.data(), v.data()};
        ops::linear_shared_input(kv, encoded.data(), n, outs);
        c.cross_k.push_back(std::move(k));
        c.cross_v.push_back(std::move(v));
    }
    return c;
}

}  // namespace

void Seq2SeqModel::logits(std::span<const int32_t> source, std::span<const int32_t> decoder_ids, float* out) {
    if (decoder_ids.empty()) throw InvalidArgument("[seq2seq] the decoder input holds no tokens");
    DecoderCache cache = start_cache(config_, *s_, run_encoder(config_, *s_, source, s_->act));
    run_decoder(config_, *s_, cache, decoder_ids, out);
}

double Seq2SeqModel::target_nll(std::span<const int32_t> source, std::span<const int32_t> target) {
    if (target.empty()) throw InvalidArgument("[seq2seq] the target holds no tokens");
    std::vector<int32_t> dec{config_.decoder_start_token_id};
    dec.insert(dec.end(), target.begin(), target.end() - 1);
    const int64_t V = config_.vocab;
    std::vector<float> out(dec.size() * static_cast<size_t>(V));
    logits(source, dec, out.data());
    double nll = 0;
    for (size_t t = 0; t < target.size(); ++t) {
        float* row = out.data() + t * static_cast<size_t>(V);
        if (target[t] < 0 || target[t] >= V) throw InvalidArgument("[seq2seq] target token " + std::to_string(target[t]) + " is outside the vocabulary");
        ops::log_softmax(row, V);
        nll -= row[target[t]];
    }
    return nll;
}

std::vector<int32_t> Seq2SeqModel::generate_greedy(std::span<const int32_t> source, int64_t max_new_tokens) {
    if (max_new_tokens < 1) throw InvalidArgument("[seq2seq] max_new_tokens must be at least 1");
    const Seq2SeqConfig& g = config_;
    DecoderCache cache = start_cache(g, *s_, run_encoder(g, *s_, source, s_->act));
    std::vector<int32_t> seq{g.decoder_start_token_id};
    std::vector<float> logits(static_cast<size_t>(g.vocab));
    for (int64_t step = 0; step < max_new_tokens; ++step) {
        run_decoder(g, *s_, cache, std::span(seq).last(1), logits.data());  // one new token: the cache holds the rest
        int32_t next = static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());  // first max, as torch.argmax
        if (step == 0 && g.forced_bos_token_id) next = *g.forced_bos_token_id;
        if (step == max_new_tokens - 1 && g.forced_eos_token_id) next = *g.forced_eos_token_id;
        seq.push_back(next);
        if (next == g.eos_token_id) break;
    }
    return seq;
}

}  // namespace cq
