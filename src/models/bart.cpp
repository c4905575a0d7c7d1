// BART (BartForConditionalGeneration): config.json and weights into the Seq2SeqModel spine (seq2seq.cpp): shared token
// embeddings (× √d with scale_embedding) + learned positions at offset 2, layernorm_embedding, post-LN encoder layers,
// post-LN decoder layers with causal self-attention and cross-attention to the encoder, lm_head tied to the shared
// embeddings + final_logits_bias. As transformers' modeling_bart.
#include <cmath>
#include <tuple>

#include "cq/error.h"
#include "models/seq2seq_internal.h"
#include "models/weight_helpers.h"

namespace cq {

namespace {

Seq2SeqLayer load_layer(const EncoderWeightSource& src, const std::string& p, int64_t d, int64_t f, bool decoder, int64_t block) {
    static constexpr AttentionNames kProj{"q_proj", "k_proj", "v_proj", "out_proj"};
    Seq2SeqLayer l;
    load_attention(src, p + "self_attn.", kProj, d, d, block, l.q, l.k, l.v, l.attn_out);
    l.attn_norm = src.norm(p + "self_attn_layer_norm", d);
    if (decoder) {
        load_attention(src, p + "encoder_attn.", kProj, d, d, block, l.cross_q.emplace(), l.cross_k.emplace(), l.cross_v.emplace(), l.cross_out.emplace());
        l.cross_norm = src.norm(p + "encoder_attn_layer_norm", d);
    }
    l.ffn_in = src.linear(p + "fc1", f, d, LayerRole::ffn_up, block);
    l.ffn_out = src.linear(p + "fc2", d, f, LayerRole::ffn_down, block);
    l.ffn_norm = src.norm(p + "final_layer_norm", d);
    return l;
}

}  // namespace

void Seq2SeqLoader::load_bart(Seq2SeqModel& m, const hf::Config& c, const EncoderWeightSource& src) {
    const std::string& config_path = c.path();
    require_architecture(c, "bart", "BartForConditionalGeneration");
    Seq2SeqConfig& g = config(m);
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
    g.forced_eos_token_id = c.json().contains("forced_eos_token_id") ? c.opt_int({"forced_eos_token_id"}) : std::optional<int64_t>(2);
    g.forced_bos_token_id = c.opt_int({"forced_bos_token_id"});
    if (c.bool_or("add_final_layer_norm", false) || c.bool_or("normalize_before", false))
        throw Unsupported("[seq2seq] " + config_path + ": pre-LN BART variants (normalize_before / add_final_layer_norm, mBART) are not supported");
    for (const auto& [what, dim, heads] : {std::tuple{"encoder", g.d_model, g.encoder_heads}, std::tuple{"decoder", g.d_model, g.decoder_heads}})
        if (dim % heads != 0)
            throw FormatError("json", config_path, 0, std::string(what) + "_attention_heads " + std::to_string(heads) + " does not divide d_model " +
                                                          std::to_string(dim));
    g.d_kv = g.d_model / g.encoder_heads;  // the decoder's: d_model / decoder_heads
    for (const int32_t id : {g.pad_token_id, g.bos_token_id, g.eos_token_id, g.decoder_start_token_id})
        if (id < 0 || id >= g.vocab) throw FormatError("json", config_path, 0, "special token id " + std::to_string(id) + " is outside the vocabulary");
    const auto act = ops::activation_from_name(g.activation);
    if (!act)
        throw Unsupported("[seq2seq] " + config_path + ": activation_function '" + g.activation +
                          "' is not supported (cq implements gelu, gelu_new, gelu_pytorch_tanh, relu, tanh, quick_gelu)");

    auto& s = state(m);
    s.act = *act;
    const int64_t D = g.d_model;
    s.shared_name = "model.shared";
    s.shared = src.has("model.shared.weight") ? src.get("model.shared.weight", {g.vocab, D}) : src.get("model.encoder.embed_tokens.weight", {g.vocab, D});
    for (const auto& [stack, which] : {std::pair{&s.encoder, "encoder"}, std::pair{&s.decoder, "decoder"}}) {
        const std::string p = std::string("model.") + which + ".";
        stack->positions_name = p + "embed_positions";
        stack->positions = src.get(stack->positions_name + ".weight", {g.max_positions + 2, D});
        stack->embed_norm = src.norm(p + "layernorm_embedding", D);
    }
    for (int64_t l = 0; l < g.encoder_layers; ++l)
        s.encoder.layers.push_back(load_layer(src, "model.encoder.layers." + std::to_string(l) + ".", D, g.encoder_ffn, false, l));
    for (int64_t l = 0; l < g.decoder_layers; ++l)
        s.decoder.layers.push_back(load_layer(src, "model.decoder.layers." + std::to_string(l) + ".", D, g.decoder_ffn, true, g.encoder_layers + l));
    // lm_head: tied to the shared embeddings unless the file has its own; final_logits_bias [1, vocab] (zero if absent)
    s.lm_head.name = "lm_head";
    s.lm_head.source_name = src.has("lm_head.weight") ? "lm_head" : "model.shared";
    s.lm_head.role = LayerRole::lm_head;
    s.lm_head.weight = src.has("lm_head.weight") ? src.get("lm_head.weight", {g.vocab, D}) : s.shared;
    if (auto bias = src.find("final_logits_bias", {g.vocab})) s.lm_head.bias = models::to_f32(*bias);
}

}  // namespace cq
