// The encoder–decoder spine every Seq2SeqModel family runs (BART, T5, BLIP): loading dispatch, the two stacks as residual
// sublayers (post-LN or pre-norm, learned or relative positions, as Seq2SeqConfig says), greedy decoding with a KV cache,
// teacher-forced logits and NLL, and the Linear / layer listings. Family specifics live in bart.cpp, t5.cpp and blip.cpp
// (BLIP's image encoder replaces the text encoder; the decoder is this one).
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <optional>

#include "core/json_file.h"
#include "cq/error.h"
#include "cq/io/gguf.h"
#include "cq/kernels.h"
#include "cq/thread_pool.h"
#include "io/hf/hf_model.h"
#include "models/model_container.h"
#include "models/seq2seq_internal.h"
#include "ops/ops.h"

namespace cq {

namespace fs = std::filesystem;

void require_architecture(const hf::Config& c, const std::string& model_type, const std::string& architecture) {
    std::string arch;
    if (const nlohmann::json* a = c.find("architectures"); a && a->is_array() && !a->empty() && (*a)[0].is_string()) arch = (*a)[0].get<std::string>();
    if (!arch.empty() && arch != architecture)
        throw Unsupported("[seq2seq] " + c.path() + ": model_type '" + model_type + "' with architecture '" + arch + "' is not supported; supported: " +
                          architecture + " (" + model_type + ")");
}

void load_attention(const EncoderWeightSource& src, const std::string& prefix, const AttentionNames& names, int64_t d, int64_t inner, int64_t block,
                    Linear& q, Linear& k, Linear& v, Linear& out) {
    q = src.linear(prefix + names.q, inner, d, LayerRole::attn_q, block);
    k = src.linear(prefix + names.k, inner, d, LayerRole::attn_k, block);
    v = src.linear(prefix + names.v, inner, d, LayerRole::attn_v, block);
    out = src.linear(prefix + names.out, d, inner, LayerRole::attn_out, block);
}

Seq2SeqModel::Seq2SeqModel() : s_(std::make_unique<State>()) {}
Seq2SeqModel::~Seq2SeqModel() = default;

std::unique_ptr<Seq2SeqModel> Seq2SeqModel::load(const std::string& hf_dir) {
    auto m = std::make_unique<Seq2SeqModel>();
    m->path_ = hf_dir;
    std::error_code ec;
    // cq's container (Seq2SeqModel::save): the same loaders read its tensors, and its embedded files stand for the directory's.
    std::optional<container::Reader> packed;
    if (fs::is_regular_file(hf_dir, ec)) packed.emplace(hf_dir, "cq-seq2seq", "cq encoder–decoder container");
    const std::string dir_path = packed ? packed->dir() : hf_dir;
    const std::string config_path = (fs::path(dir_path) / "config.json").string();
    if (!fs::is_directory(dir_path, ec)) throw IoError("[seq2seq] '" + hf_dir + "' is not an HF model directory");
    if (!fs::is_regular_file(config_path, ec)) throw IoError("[seq2seq] " + config_path + " does not exist");
    const nlohmann::json j = read_json_file(config_path, "hf");
    const hf::Config c(j, packed ? hf_dir + " (config.json)" : config_path);
    const std::string model_type = c.string_or("model_type", "");
    if (model_type != "bart" && model_type != "t5" && model_type != "blip")
        throw Unsupported("[seq2seq] " + config_path + ": model_type '" + model_type +
                          "' is not supported; supported: BartForConditionalGeneration (bart), T5ForConditionalGeneration (t5), "
                          "BlipForConditionalGeneration (blip)");

    hf::ModelDir d;
    if (packed) {
        d.path = dir_path;
        d.config = j;
        d.model_type = model_type;
    } else {
        d = hf::open_model_dir(hf_dir);
    }
    const std::string weights_file = packed                             ? hf_dir
                                     : !d.weights.index_path().empty() ? d.weights.index_path()
                                     : d.weights.shards().empty()      ? hf_dir
                                                                       : d.weights.shards().front().path();
    const EncoderWeightSource src(weights_file, [&d, &packed](const std::string& name) -> std::optional<Tensor> {
        if (packed) return packed->tensor(name);
        if (d.weights.find_tensor(name)) return d.weights.tensor(name);
        return std::nullopt;
    });
    m->config_.model_type = model_type;
    if (model_type == "bart") Seq2SeqLoader::load_bart(*m, c, src);
    else if (model_type == "blip") Seq2SeqLoader::load_blip(*m, c, src, d);
    else Seq2SeqLoader::load_t5(*m, c, src);
    if (packed) packed->restore_linears(m->linears());

    m->tokenizer_ = load_tokenizer(d);
    if (m->tokenizer_->vocab_size() > m->config_.vocab)
        throw FormatError("hf", hf_dir, 0, "the tokenizer has " + std::to_string(m->tokenizer_->vocab_size()) + " tokens but the embeddings only " +
                                               std::to_string(m->config_.vocab));
    return m;
}

bool is_seq2seq_model(const std::string& path) {
    std::error_code ec;
    try {
        if (fs::is_directory(path, ec)) {
            const std::string type = hf::model_type_of_dir(path);
            return type == "bart" || type == "t5" || type == "blip";
        }
        if (!fs::is_regular_file(path, ec)) return false;
        return gguf::File::open(path).get_string("general.architecture") == "cq-seq2seq";
    } catch (const Error&) {
        return false;  // not readable as either: the caller's own loader reports why
    }
}

void Seq2SeqModel::save(const std::string& path, const SaveOptions& options) const {
    std::error_code ec;
    if (!fs::is_directory(path_, ec))
        throw Unsupported("[save] " + path_ + " is already cq's encoder–decoder container; save a model loaded from its HF directory");
    // A head tied to the embeddings shares their tensor: quantizing it would change the table the tokens are looked up in.
    const Linear& head = s_->lm_head;
    if ((head.int8 || dtype_traits(head.weight.dtype()).is_quantized) && head.source_name != "lm_head")
        throw Unsupported("[save] the lm_head of " + path_ + " is tied to '" + head.source_name + "', which the container keeps as one tensor; "
                          "leave the head in float to save");
    container::write(path_, path, "cq-seq2seq", linears(), {}, options);
}

std::vector<int32_t> Seq2SeqModel::tokenize(std::string_view text, int64_t max_len) const {
    const bool bos = config_.bos_token_id >= 0;
    if (max_len != 0 && max_len < (bos ? 3 : 2))
        throw InvalidArgument("[seq2seq] max_len " + std::to_string(max_len) + " leaves no room for the text between its special tokens");
    std::vector<int32_t> ids;
    if (bos) ids.push_back(config_.bos_token_id);
    std::vector<int32_t> body = tokenizer_->encode(text, false);
    const int64_t room = max_len - (bos ? 2 : 1);
    if (max_len > 0 && static_cast<int64_t>(body.size()) > room) body.resize(static_cast<size_t>(room));
    ids.insert(ids.end(), body.begin(), body.end());
    ids.push_back(config_.eos_token_id);
    return ids;
}

namespace {

// Multi-head attention of Tq queries over Tk keys (one sequence). q: [Tq, q_stride], k / v: [Tk, kv_stride], head h at
// column h·head_dim; out: [Tq, n_head·head_dim]. causal_offset ≥ 0: query t sees keys 0..causal_offset + t (a decoder
// with causal_offset cached positions); < 0: every key. bias (null: none): [n_head, Tq, Tk] added to the scores, then
// softmax(scale · scores) — T5 adds its position bias at scale 1, BART scales by 1/√head_dim. Heads spread over the
// thread pool; each head's arithmetic is the same at any thread count.
void attend(const float* q, int64_t q_stride, int64_t Tq, const float* k, const float* v, int64_t kv_stride, int64_t Tk, int64_t n_head,
            int64_t head_dim, int64_t causal_offset, float scale, const float* bias, float* out) {
    const KernelTable& kt = kernel_table();
    ThreadPool::global().parallel_for(n_head, [&](int64_t h0, int64_t h1) {
        std::vector<float> scores(static_cast<size_t>(Tq * Tk));
        for (int64_t h = h0; h < h1; ++h) {
            // scores: [Tq, Tk] = Q_h · K_hᵀ
            kt.gemm_f32.fn(Tq, Tk, head_dim, q + h * head_dim, q_stride, k + h * head_dim, kv_stride, scores.data(), Tk);
            if (bias) ops::add(scores.data(), bias + h * Tq * Tk, Tq * Tk);
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

float attention_scale(const Seq2SeqConfig& g, int64_t head_dim) { return g.scale_attention ? 1.0f / std::sqrt(static_cast<float>(head_dim)) : 1.0f; }

// x: [T, d] → y: [T, d], the config's norm (T5LayerNorm or LayerNorm). y may be x.
void norm_rows(const Seq2SeqConfig& g, const Norm& n, const float* x, int64_t T, float* y) {
    if (g.rms_norm) ops::rms_norm(x, T, g.d_model, n.weight, g.norm_eps, y);
    else ops::layer_norm_rows(x, T, g.d_model, n.weight, n.bias ? &*n.bias : nullptr, g.norm_eps, y);
}

// One residual sublayer on x: [T, d]; f(in, y) writes the sublayer's [T, d] output for its input rows.
// Pre-norm (T5): x += f(norm(x)). Post-LN (BART): x = LN(x + f(x)).
template <class F>
void sublayer(const Seq2SeqConfig& g, const Norm& n, std::vector<float>& x, int64_t T, F&& f) {
    std::vector<float> y(x.size());
    if (g.pre_norm) {
        std::vector<float> h(x.size());
        norm_rows(g, n, x.data(), T, h.data());
        f(h.data(), y.data());
        ops::add(x.data(), y.data(), static_cast<int64_t>(x.size()));
    } else {
        f(x.data(), y.data());
        ops::add_layer_norm_rows(x.data(), y.data(), T, g.d_model, n.weight, n.bias ? &*n.bias : nullptr, g.norm_eps, x.data());
    }
}

// x: [T, d] → y: [T, d] = ffn_out(act(ffn_in x)), or ffn_out(act(ffn_gate x) · ffn_in x) when gated.
void ffn(const Seq2SeqLayer& l, ops::Activation act, const float* x, int64_t T, float* y) {
    std::vector<float> h(static_cast<size_t>(T * l.ffn_in.n_out()));
    if (l.ffn_gate) {
        std::vector<float> gate(h.size());
        const Linear* both[] = {&*l.ffn_gate, &l.ffn_in};
        float* const outs[] = {gate.data(), h.data()};
        ops::linear_shared_input(both, x, T, outs);
        ops::activate(act, gate.data(), static_cast<int64_t>(gate.size()));
        for (size_t i = 0; i < h.size(); ++i) h[i] *= gate[i];
    } else {
        ops::linear(l.ffn_in, x, T, h.data());
        ops::activate(act, h.data(), static_cast<int64_t>(h.size()));
    }
    ops::linear(l.ffn_out, h.data(), T, y);
}

// x: [T, d] = embed(ids)·scale (+ learned positions[first + t + offset]: BART's 2, BLIP's 0) (→ LayerNorm: BART, BLIP)
void embed(const Seq2SeqConfig& g, const Tensor& shared, const Seq2SeqStack& stack, std::span<const int32_t> ids, int64_t first,
           std::vector<float>& x) {
    const int64_t T = static_cast<int64_t>(ids.size()), D = g.d_model;
    if (stack.positions.ndim() > 0 && first + T > stack.positions.dim(0) - g.position_offset)
        throw InvalidArgument("[seq2seq] " + std::to_string(first + T) + " positions exceed the model's " + std::to_string(stack.positions.dim(0) - g.position_offset));
    x.resize(static_cast<size_t>(T * D));
    ops::embedding(shared, ids, x.data());
    if (g.embed_scale != 1.0f)
        for (float& v : x) v *= g.embed_scale;
    if (stack.positions.ndim() > 0) {
        std::vector<int32_t> positions(static_cast<size_t>(T));
        for (int64_t t = 0; t < T; ++t) positions[static_cast<size_t>(t)] = static_cast<int32_t>(first + t + g.position_offset);
        std::vector<float> p(static_cast<size_t>(T * D));
        ops::embedding(stack.positions, positions, p.data());
        ops::add(x.data(), p.data(), T * D);
    }
    if (stack.embed_norm) ops::layer_norm_rows(x.data(), T, D, stack.embed_norm->weight, &*stack.embed_norm->bias, g.norm_eps, x.data());
}

// T5's relative position bias of `stack` for Tq queries from position q0 over Tk keys ([heads, Tq, Tk]); empty without one.
std::vector<float> position_bias(const Seq2SeqConfig& g, const Seq2SeqStack& stack, bool bidirectional, int64_t q0, int64_t Tq, int64_t Tk) {
    std::vector<float> out;
    if (stack.relative_bias.ndim() > 0) t5::relative_position_bias(stack.relative_bias, bidirectional, g.relative_max_distance, q0, Tq, Tk, out);
    return out;
}

}  // namespace

// The decoder's per-sequence cache: each layer's self-attention keys / values so far, and its cross-attention ones.
struct DecoderCache {
    std::vector<std::vector<float>> k, v, cross_k, cross_v;
    int64_t n_past = 0, n_source = 0;
};

void Seq2SeqModel::collect_linears(std::vector<Linear*>& out) {
    if (s_->image) {  // BLIP's vision tower first, in forward order
        out.push_back(&s_->image->w.patch_embd);
        for (auto& b : s_->image->w.blocks)
            for (Linear* x : {&b.q, &b.k, &b.v, &b.attn_out, &b.ffn_in, &b.ffn_out}) out.push_back(x);
    }
    for (auto* stack : {&s_->encoder, &s_->decoder})
        for (auto& l : stack->layers) {
            for (Linear* x : {&l.q, &l.k, &l.v, &l.attn_out}) out.push_back(x);
            if (l.cross_q)
                for (auto* x : {&l.cross_q, &l.cross_k, &l.cross_v, &l.cross_out}) out.push_back(&**x);
            if (l.ffn_gate) out.push_back(&*l.ffn_gate);
            out.push_back(&l.ffn_in);
            out.push_back(&l.ffn_out);
        }
    if (s_->head_dense) out.push_back(&*s_->head_dense);
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
    const auto stack = [&](const Seq2SeqStack& st) {
        if (st.positions.ndim() > 0) tensor(st.positions_name, LayerRole::position_embed, -1, st.positions);
        if (st.relative_bias.ndim() > 0) tensor(st.positions_name, LayerRole::position_embed, -1, st.relative_bias);
        if (st.embed_norm) tensor(st.embed_norm->name, LayerRole::norm, -1, st.embed_norm->weight);
        for (const auto& l : st.layers) {
            for (const Linear* x : {&l.q, &l.k, &l.v, &l.attn_out}) linear(*x);
            tensor(l.attn_norm.name, LayerRole::norm, l.q.block, l.attn_norm.weight);
            if (l.cross_q) {
                for (const auto* x : {&l.cross_q, &l.cross_k, &l.cross_v, &l.cross_out}) linear(**x);
                tensor(l.cross_norm->name, LayerRole::norm, l.q.block, l.cross_norm->weight);
            }
            if (l.ffn_gate) linear(*l.ffn_gate);
            linear(l.ffn_in);
            linear(l.ffn_out);
            tensor(l.ffn_norm.name, LayerRole::norm, l.q.block, l.ffn_norm.weight);
        }
        if (st.final_norm) tensor(st.final_norm->name, LayerRole::norm, -1, st.final_norm->weight);
    };
    const State& s = *s_;
    if (s.image) {
        const EncoderWeights& w = s.image->w;
        linear(w.patch_embd);
        tensor("vision_model.embeddings.class_embedding", LayerRole::position_embed, -1, *w.cls_token);
        tensor("vision_model.embeddings.position_embedding", LayerRole::position_embed, -1, w.pos_embd);
        for (const auto& b : w.blocks) {
            tensor(b.attn_norm.name, LayerRole::norm, b.q.block, b.attn_norm.weight);
            for (const Linear* x : {&b.q, &b.k, &b.v, &b.attn_out}) linear(*x);
            tensor(b.ffn_norm.name, LayerRole::norm, b.q.block, b.ffn_norm.weight);
            linear(b.ffn_in);
            linear(b.ffn_out);
        }
        tensor(w.final_norm->name, LayerRole::norm, -1, w.final_norm->weight);
    }
    tensor(s.shared_name, LayerRole::token_embed, -1, s.shared);
    stack(s.encoder);
    stack(s.decoder);
    if (s.head_dense) {
        linear(*s.head_dense);
        tensor(s.head_norm->name, LayerRole::norm, -1, s.head_norm->weight);
    }
    linear(s.lm_head);
    return out;
}

namespace {

std::vector<float> run_encoder(const Seq2SeqConfig& g, const Seq2SeqModel::State& s, std::span<const int32_t> source) {
    if (s.image) throw InvalidArgument("[seq2seq] " + g.architecture + " encodes images (encode_image / image_logits), not token ids");
    if (source.empty()) throw InvalidArgument("[seq2seq] the source holds no tokens");
    const int64_t T = static_cast<int64_t>(source.size()), H = g.encoder_heads;
    std::vector<float> x;
    embed(g, s.shared, s.encoder, source, 0, x);
    const std::vector<float> bias = position_bias(g, s.encoder, true, 0, T, T);
    for (const auto& l : s.encoder.layers) {
        sublayer(g, l.attn_norm, x, T, [&](const float* in, float* y) {
            const int64_t inner = l.q.n_out(), hd = inner / H;
            std::vector<float> q(static_cast<size_t>(T * inner)), k(q.size()), v(q.size()), a(q.size());
            const Linear* qkv[] = {&l.q, &l.k, &l.v};
            float* const outs[] = {q.data(), k.data(), v.data()};
            ops::linear_shared_input(qkv, in, T, outs);
            attend(q.data(), inner, T, k.data(), v.data(), inner, T, H, hd, -1, attention_scale(g, hd), bias.empty() ? nullptr : bias.data(), a.data());
            ops::linear(l.attn_out, a.data(), T, y);
        });
        sublayer(g, l.ffn_norm, x, T, [&](const float* in, float* y) { ffn(l, s.act, in, T, y); });
    }
    if (s.encoder.final_norm) norm_rows(g, *s.encoder.final_norm, x.data(), T, x.data());
    return x;
}

// Decoder tokens ids at positions cache.n_past.. → logits [T, vocab]; appends their keys / values to the cache.
void run_decoder(const Seq2SeqConfig& g, const Seq2SeqModel::State& s, DecoderCache& cache, std::span<const int32_t> ids, float* logits) {
    const int64_t T = static_cast<int64_t>(ids.size()), H = g.decoder_heads, past = cache.n_past;
    std::vector<float> x;
    embed(g, s.shared, s.decoder, ids, past, x);
    const std::vector<float> bias = position_bias(g, s.decoder, false, past, T, past + T);
    for (size_t i = 0; i < s.decoder.layers.size(); ++i) {
        const Seq2SeqLayer& l = s.decoder.layers[i];
        const int64_t inner = l.q.n_out(), hd = inner / H;
        std::vector<float> q(static_cast<size_t>(T * inner)), a(q.size());
        // self-attention over the cached positions and these, causal
        sublayer(g, l.attn_norm, x, T, [&](const float* in, float* y) {
            std::vector<float> k(q.size()), v(q.size());
            const Linear* qkv[] = {&l.q, &l.k, &l.v};
            float* const outs[] = {q.data(), k.data(), v.data()};
            ops::linear_shared_input(qkv, in, T, outs);
            auto& ck = cache.k[i];
            auto& cv = cache.v[i];
            ck.insert(ck.end(), k.begin(), k.end());
            cv.insert(cv.end(), v.begin(), v.end());
            attend(q.data(), inner, T, ck.data(), cv.data(), inner, past + T, H, hd, past, attention_scale(g, hd), bias.empty() ? nullptr : bias.data(),
                   a.data());
            ops::linear(l.attn_out, a.data(), T, y);
        });
        // cross-attention to every source position (no position bias)
        sublayer(g, *l.cross_norm, x, T, [&](const float* in, float* y) {
            const int64_t cinner = l.cross_q->n_out(), chd = cinner / H;
            std::vector<float> cq(static_cast<size_t>(T * cinner)), ca(cq.size());
            ops::linear(*l.cross_q, in, T, cq.data());
            attend(cq.data(), cinner, T, cache.cross_k[i].data(), cache.cross_v[i].data(), cinner, cache.n_source, H, chd, -1, attention_scale(g, chd),
                   nullptr, ca.data());
            ops::linear(*l.cross_out, ca.data(), T, y);
        });
        sublayer(g, l.ffn_norm, x, T, [&](const float* in, float* y) { ffn(l, s.act, in, T, y); });
    }
    cache.n_past += T;
    if (s.decoder.final_norm) norm_rows(g, *s.decoder.final_norm, x.data(), T, x.data());
    if (g.logits_scale != 1.0f)
        for (float& v : x) v *= g.logits_scale;
    if (s.head_dense) {  // BLIP's prediction-head transform
        std::vector<float> h(x.size());
        ops::linear(*s.head_dense, x.data(), T, h.data());
        ops::activate(s.act, h.data(), static_cast<int64_t>(h.size()));
        norm_rows(g, *s.head_norm, h.data(), T, h.data());
        x.swap(h);
    }
    ops::linear(s.lm_head, x.data(), T, logits);
}

DecoderCache start_cache(const Seq2SeqModel::State& s, const std::vector<float>& encoded, int64_t width) {
    DecoderCache c;
    const int64_t n = static_cast<int64_t>(encoded.size()) / width;
    c.n_source = n;
    c.k.resize(s.decoder.layers.size());
    c.v.resize(s.decoder.layers.size());
    for (const auto& l : s.decoder.layers) {
        // the cross-attention keys / values: once per source, every step reads them
        std::vector<float> k(static_cast<size_t>(n * l.cross_k->n_out())), v(k.size());
        const Linear* kv[] = {&*l.cross_k, &*l.cross_v};
        float* const outs[] = {k.data(), v.data()};
        ops::linear_shared_input(kv, encoded.data(), n, outs);
        c.cross_k.push_back(std::move(k));
        c.cross_v.push_back(std::move(v));
    }
    return c;
}

}  // namespace

// ---- everything after the encoder: one path for token and image sources -----------------------------------------

namespace {

int64_t encoder_width(const Seq2SeqConfig& g) { return g.encoder_width > 0 ? g.encoder_width : g.d_model; }

void decoder_logits(const Seq2SeqConfig& g, const Seq2SeqModel::State& s, const std::vector<float>& encoded, std::span<const int32_t> decoder_ids,
                    float* out) {
    if (decoder_ids.empty()) throw InvalidArgument("[seq2seq] the decoder input holds no tokens");
    DecoderCache cache = start_cache(s, encoded, encoder_width(g));
    run_decoder(g, s, cache, decoder_ids, out);
}

// Summed NLL of target under teacher forcing (decoder_start + target without its last token); smoothed (if not null):
// the sum of torch's label-smoothed cross-entropy, (1 − ε)·(−log p_y) + ε·mean_j(−log p_j), ε = g.label_smoothing.
double decoder_nll(const Seq2SeqConfig& g, const Seq2SeqModel::State& s, const std::vector<float>& encoded, std::span<const int32_t> target,
                   double* smoothed) {
    if (target.empty()) throw InvalidArgument("[seq2seq] the target holds no tokens");
    std::vector<int32_t> dec{g.decoder_start_token_id};
    dec.insert(dec.end(), target.begin(), target.end() - 1);
    const int64_t V = g.vocab;
    std::vector<float> out(dec.size() * static_cast<size_t>(V));
    decoder_logits(g, s, encoded, dec, out.data());
    double nll = 0, smooth = 0;
    for (size_t t = 0; t < target.size(); ++t) {
        float* row = out.data() + t * static_cast<size_t>(V);
        if (target[t] < 0 || target[t] >= V) throw InvalidArgument("[seq2seq] target token " + std::to_string(target[t]) + " is outside the vocabulary");
        ops::log_softmax(row, V);
        nll -= row[target[t]];
        if (smoothed) {
            double all = 0;
            for (int64_t j = 0; j < V; ++j) all -= row[j];
            smooth += (1.0 - g.label_smoothing) * -double{row[target[t]]} + g.label_smoothing * all / static_cast<double>(V);
        }
    }
    if (smoothed) *smoothed = smooth;
    return nll;
}

// Greedy decoding after `prefix` (every token of it through the decoder at once, then one token a step from the cache).
std::vector<int32_t> greedy(const Seq2SeqConfig& g, const Seq2SeqModel::State& s, const std::vector<float>& encoded, std::vector<int32_t> seq,
                            int64_t max_new_tokens) {
    if (max_new_tokens < 1) throw InvalidArgument("[seq2seq] max_new_tokens must be at least 1");
    DecoderCache cache = start_cache(s, encoded, encoder_width(g));
    std::vector<float> logits(seq.size() * static_cast<size_t>(g.vocab));
    run_decoder(g, s, cache, seq, logits.data());
    for (int64_t step = 0;; ++step) {
        const auto last = logits.end() - g.vocab;
        int32_t next = static_cast<int32_t>(std::max_element(last, logits.end()) - last);  // first max, as torch.argmax
        if (step == 0 && g.forced_bos_token_id) next = *g.forced_bos_token_id;
        if (step == max_new_tokens - 1 && g.forced_eos_token_id) next = *g.forced_eos_token_id;
        seq.push_back(next);
        if (next == g.eos_token_id || step == max_new_tokens - 1) break;
        logits.resize(static_cast<size_t>(g.vocab));
        run_decoder(g, s, cache, std::span(seq).last(1), logits.data());  // one new token: the cache holds the rest
    }
    return seq;
}

}  // namespace

void Seq2SeqModel::logits(std::span<const int32_t> source, std::span<const int32_t> decoder_ids, float* out) {
    decoder_logits(config_, *s_, run_encoder(config_, *s_, source), decoder_ids, out);
}

double Seq2SeqModel::target_nll(std::span<const int32_t> source, std::span<const int32_t> target) {
    return decoder_nll(config_, *s_, run_encoder(config_, *s_, source), target, nullptr);
}

std::vector<int32_t> Seq2SeqModel::generate_greedy(std::span<const int32_t> source, int64_t max_new_tokens) {
    return greedy(config_, *s_, run_encoder(config_, *s_, source), {config_.decoder_start_token_id}, max_new_tokens);
}

std::vector<int32_t> Seq2SeqModel::caption_prompt(std::string_view prompt) const {
    std::vector<int32_t> ids{config_.decoder_start_token_id};
    const std::vector<int32_t> body = tokenizer_->encode(prompt, false);
    ids.insert(ids.end(), body.begin(), body.end());
    return ids;
}

std::vector<float> Seq2SeqModel::encode_image(const uint8_t* pixels) {
    if (!s_->image) throw InvalidArgument("[seq2seq] " + config_.architecture + " takes token ids, not images");
    if (!pixels) throw InvalidArgument("[seq2seq] the pixels are null");
    return blip_encode_image(*s_->image, pixels);
}

void Seq2SeqModel::image_logits(const uint8_t* pixels, std::span<const int32_t> decoder_ids, float* out) {
    decoder_logits(config_, *s_, encode_image(pixels), decoder_ids, out);
}

double Seq2SeqModel::image_target_nll(const uint8_t* pixels, std::span<const int32_t> target, double* smoothed) {
    return decoder_nll(config_, *s_, encode_image(pixels), target, smoothed);
}

std::vector<int32_t> Seq2SeqModel::generate_caption(const uint8_t* pixels, std::span<const int32_t> prefix, int64_t max_new_tokens) {
    std::vector<int32_t> seq(prefix.begin(), prefix.end());
    if (seq.empty()) seq.push_back(config_.decoder_start_token_id);
    for (const int32_t id : seq)
        if (id < 0 || id >= config_.vocab) throw InvalidArgument("[seq2seq] prompt token " + std::to_string(id) + " is outside the vocabulary");
    return greedy(config_, *s_, encode_image(pixels), std::move(seq), max_new_tokens);
}

}  // namespace cq
