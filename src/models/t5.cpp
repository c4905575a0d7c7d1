// T5 (T5ForConditionalGeneration, v1.0 and v1.1 / FLAN-T5): config.json and weights into the Seq2SeqModel spine
// (seq2seq.cpp): pre-norm layers with T5LayerNorm (RMS, no bias), unscaled attention with a bucketed relative position
// bias (block 0 of each stack holds it; bidirectional in the encoder, causal in the decoder), ReLU or gated FFNs,
// final norms, and a head tied to the shared embeddings (decoder output × d_model^-0.5) or its own. As modeling_t5.
#include <algorithm>
#include <cmath>

#include "cq/error.h"
#include "models/seq2seq_internal.h"
#include "models/weight_helpers.h"

namespace cq {

namespace t5 {

int64_t relative_position_bucket(int64_t relative, bool bidirectional, int64_t num_buckets, int64_t max_distance) {
    int64_t bucket = 0;
    if (bidirectional) {
        num_buckets /= 2;
        if (relative > 0) bucket += num_buckets;
        relative = std::abs(relative);
    } else {
        relative = -std::min<int64_t>(relative, 0);
    }
    const int64_t max_exact = num_buckets / 2;
    if (relative < max_exact) return bucket + relative;
    // float32 throughout, as torch evaluates log(rp.float() / max_exact) / math.log(max_distance / max_exact) · (n − max_exact)
    const float scaled = std::log(static_cast<float>(relative) / static_cast<float>(max_exact)) /
                         static_cast<float>(std::log(static_cast<double>(max_distance) / static_cast<double>(max_exact))) *
                         static_cast<float>(num_buckets - max_exact);
    return bucket + std::min<int64_t>(max_exact + static_cast<int64_t>(scaled), num_buckets - 1);
}

void relative_position_bias(const Tensor& table, bool bidirectional, int64_t max_distance, int64_t q0, int64_t Tq, int64_t Tk,
                            std::vector<float>& out) {
    const int64_t n_buckets = table.dim(0), H = table.dim(1);
    const float* w = static_cast<const float*>(table.data());
    // one bucket per relative position: key − query runs from −(q0 + Tq − 1) to Tk − 1 − q0
    const int64_t lo = -(q0 + Tq - 1);
    std::vector<int64_t> bucket(static_cast<size_t>(Tk - lo));
    for (int64_t r = lo; r < Tk - q0; ++r) bucket[static_cast<size_t>(r - lo)] = relative_position_bucket(r, bidirectional, n_buckets, max_distance);
    out.resize(static_cast<size_t>(H * Tq * Tk));
    for (int64_t h = 0; h < H; ++h)
        for (int64_t t = 0; t < Tq; ++t)
            for (int64_t j = 0; j < Tk; ++j) out[static_cast<size_t>((h * Tq + t) * Tk + j)] = w[bucket[static_cast<size_t>(j - (q0 + t) - lo)] * H + h];
}

}  // namespace t5

namespace {

// T5LayerNorm: a weight, no bias.
Norm rms_norm(const EncoderWeightSource& src, const std::string& name, int64_t d) {
    Norm n;
    n.name = name;
    n.weight = models::to_f32(src.get(name + ".weight", {d}));
    return n;
}

// "<stack>.block.N.layer." → its sublayers: 0 self-attention, (decoder: 1 cross-attention), then the FFN.
Seq2SeqLayer load_layer(const EncoderWeightSource& src, const std::string& p, int64_t d, int64_t inner, int64_t f, bool gated, bool decoder,
                        int64_t block) {
    static constexpr AttentionNames kQkvo{"q", "k", "v", "o"};
    Seq2SeqLayer l;
    load_attention(src, p + "0.SelfAttention.", kQkvo, d, inner, block, l.q, l.k, l.v, l.attn_out);
    l.attn_norm = rms_norm(src, p + "0.layer_norm", d);
    if (decoder) {
        load_attention(src, p + "1.EncDecAttention.", kQkvo, d, inner, block, l.cross_q.emplace(), l.cross_k.emplace(), l.cross_v.emplace(),
                       l.cross_out.emplace());
        l.cross_norm = rms_norm(src, p + "1.layer_norm", d);
    }
    const std::string ff = p + (decoder ? "2." : "1.");
    if (gated) {
        l.ffn_gate = src.linear(ff + "DenseReluDense.wi_0", f, d, LayerRole::ffn_gate, block);
        l.ffn_in = src.linear(ff + "DenseReluDense.wi_1", f, d, LayerRole::ffn_up, block);
    } else {
        l.ffn_in = src.linear(ff + "DenseReluDense.wi", f, d, LayerRole::ffn_up, block);
    }
    l.ffn_out = src.linear(ff + "DenseReluDense.wo", d, f, LayerRole::ffn_down, block);
    l.ffn_norm = rms_norm(src, ff + "layer_norm", d);
    return l;
}

}  // namespace

void Seq2SeqLoader::load_t5(Seq2SeqModel& m, const hf::Config& c, const EncoderWeightSource& src) {
    const std::string& config_path = c.path();
    require_architecture(c, "t5", "T5ForConditionalGeneration");
    Seq2SeqConfig& g = config(m);
    g.architecture = "T5ForConditionalGeneration";
    // The sizes have no sensible default: a directory without them is not a T5 checkpoint (get_size names key and file).
    g.d_model = c.get_size({"d_model"});
    g.d_kv = c.get_size({"d_kv"});
    g.vocab = c.get_size({"vocab_size"});
    g.encoder_layers = c.get_size({"num_layers"});
    g.decoder_layers = c.size_or({"num_decoder_layers"}, g.encoder_layers);  // T5Config: num_layers when unset
    g.encoder_heads = g.decoder_heads = c.get_size({"num_heads"});
    g.encoder_ffn = g.decoder_ffn = c.get_size({"d_ff"});
    g.relative_buckets = c.size_or({"relative_attention_num_buckets"}, 32);
    g.relative_max_distance = c.size_or({"relative_attention_max_distance"}, 128);
    g.norm_eps = static_cast<float>(c.number_or("layer_norm_epsilon", 1e-6));
    g.max_positions = 0;
    g.pre_norm = g.rms_norm = true;
    g.scale_attention = false;
    const bool tied = c.bool_or("tie_word_embeddings", true);
    g.logits_scale = tied ? static_cast<float>(std::pow(static_cast<double>(g.d_model), -0.5)) : 1.0f;
    g.pad_token_id = static_cast<int32_t>(c.int_or({"pad_token_id"}, 0));
    g.eos_token_id = static_cast<int32_t>(c.int_or({"eos_token_id"}, 1));
    g.bos_token_id = -1;  // T5Tokenizer adds only </s>
    g.decoder_start_token_id = static_cast<int32_t>(c.int_or({"decoder_start_token_id"}, g.pad_token_id));
    g.forced_eos_token_id = c.opt_int({"forced_eos_token_id"});
    g.forced_bos_token_id = c.opt_int({"forced_bos_token_id"});

    // feed_forward_proj: "ACT" or "gated-ACT", as T5Config parses it; "gated-gelu" means gelu_new
    const std::string proj = c.string_or("feed_forward_proj", "relu");
    const size_t dash = proj.find('-');
    g.gated_ffn = dash != std::string::npos;
    if (g.gated_ffn && (proj.substr(0, dash) != "gated" || proj.find('-', dash + 1) != std::string::npos))
        throw FormatError("hf", config_path, 0, "'feed_forward_proj' '" + proj + "' is not of the form 'ACT' or 'gated-ACT'");
    g.activation = proj == "gated-gelu" ? "gelu_new" : g.gated_ffn ? proj.substr(dash + 1) : proj;
    const auto act = ops::activation_from_name(g.activation);
    if (!act)
        throw Unsupported("[seq2seq] " + config_path + ": feed_forward_proj '" + proj + "' (activation '" + g.activation +
                          "') is not supported (cq implements relu, gelu, gelu_new, gelu_pytorch_tanh, tanh, quick_gelu, gated or not)");
    // the decoder's causal buckets need max_distance beyond their exact half, the encoder's a log range at all
    if (g.relative_buckets < 4) throw FormatError("hf", config_path, 0, "'relative_attention_num_buckets' " + std::to_string(g.relative_buckets) + " is below 4");
    if (g.relative_max_distance <= g.relative_buckets / 2)
        throw FormatError("hf", config_path, 0, "'relative_attention_max_distance' " + std::to_string(g.relative_max_distance) +
                                                    " must exceed half of relative_attention_num_buckets (" + std::to_string(g.relative_buckets) + ")");
    for (const int32_t id : {g.pad_token_id, g.eos_token_id, g.decoder_start_token_id})
        if (id < 0 || id >= g.vocab) throw FormatError("hf", config_path, 0, "special token id " + std::to_string(id) + " is outside the vocabulary");

    auto& s = state(m);
    s.act = *act;
    const int64_t D = g.d_model, inner = g.d_kv * g.encoder_heads;
    s.shared_name = "shared";
    s.shared = src.has("shared.weight") ? src.get("shared.weight", {g.vocab, D}) : src.get("encoder.embed_tokens.weight", {g.vocab, D});
    for (const auto& [stack, which, n] : {std::tuple{&s.encoder, "encoder", g.encoder_layers}, std::tuple{&s.decoder, "decoder", g.decoder_layers}}) {
        const std::string p = std::string(which) + ".";
        const bool decoder = stack == &s.decoder;
        stack->positions_name = p + "block.0.layer.0.SelfAttention.relative_attention_bias";
        stack->relative_bias = models::to_f32(src.get(stack->positions_name + ".weight", {g.relative_buckets, g.encoder_heads}));
        for (int64_t l = 0; l < n; ++l)
            stack->layers.push_back(load_layer(src, p + "block." + std::to_string(l) + ".layer.", D, inner, g.encoder_ffn, g.gated_ffn, decoder,
                                               decoder ? g.encoder_layers + l : l));
        stack->final_norm = rms_norm(src, p + "final_layer_norm", D);
    }
    // lm_head: the shared embeddings when tied (the decoder output then scaled by d_model^-0.5), else the file's own
    s.lm_head.name = "lm_head";
    s.lm_head.source_name = tied ? "shared" : "lm_head";
    s.lm_head.role = LayerRole::lm_head;
    s.lm_head.weight = tied ? s.shared : src.get("lm_head.weight", {g.vocab, D});
}

}  // namespace cq
