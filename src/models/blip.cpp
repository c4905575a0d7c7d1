// BLIP captioning (BlipForConditionalGeneration): config.json, preprocessor_config.json and weights into the Seq2SeqModel
// spine. The vision tower (ViT: patch conv, class token, learned positions, pre-LN blocks with a fused qkv, post_layernorm
// on every row) runs through vit_encode; the text decoder (BERT embeddings + LayerNorm, post-LN layers with causal
// self-attention and cross-attention to the image, the LM head's dense + act + LayerNorm transform, decoder + bias) is
// seq2seq.cpp's decoder. As transformers' modeling_blip.py / modeling_blip_text.py.
#include <filesystem>
#include <memory>

#include "core/json_file.h"
#include "cq/error.h"
#include "models/seq2seq_internal.h"
#include "models/weight_helpers.h"
#include "ops/ops.h"

namespace cq {

namespace fs = std::filesystem;

namespace {

// BlipImageProcessor's defaults (OPENAI_CLIP_MEAN / OPENAI_CLIP_STD) where preprocessor_config.json leaves them out
constexpr float kClipMean[3] = {0.48145466f, 0.4578275f, 0.40821073f};
constexpr float kClipStd[3] = {0.26862954f, 0.26130258f, 0.27577711f};

// rows [i·n, (i + 1)·n) of a [3n, …] tensor as a view (the fused qkv's q, k or v part); the view keeps `t` alive
Tensor row_block(const Tensor& t, int64_t i, int64_t n) {
    const size_t row_bytes = t.nbytes() / static_cast<size_t>(t.dim(0));
    std::vector<int64_t> shape = t.shape();
    shape[0] = n;
    auto keep = std::make_shared<Tensor>(t);
    return Tensor::borrowed(shape, t.dtype(), static_cast<const uint8_t*>(t.data()) + static_cast<size_t>(i * n) * row_bytes, keep);
}

// One vision layer: layer_norm1, self_attn.qkv (fused [3D, D], split into q / k / v views) and projection, layer_norm2,
// mlp.fc1 / fc2. Linear names: the q / k / v parts are "<layer>.self_attn.q" etc., their source the fused tensor.
EncoderBlock vision_block(const EncoderWeightSource& src, const std::string& p, int64_t D, int64_t F, int64_t block) {
    EncoderBlock b;
    const std::string qkv = p + "self_attn.qkv";
    const Tensor w = src.get(qkv + ".weight", {3 * D, D});
    const std::optional<Tensor> bias = src.find(qkv + ".bias", {3 * D});
    const std::vector<float> bias_f = bias ? bias->to_float() : std::vector<float>{};
    const LayerRole roles[3] = {LayerRole::attn_q, LayerRole::attn_k, LayerRole::attn_v};
    const char* parts[3] = {"q", "k", "v"};
    Linear* outs[3] = {&b.q, &b.k, &b.v};
    for (int i = 0; i < 3; ++i) {
        Linear& l = *outs[i];
        l.name = p + "self_attn." + parts[i];
        l.source_name = qkv;
        l.role = roles[i];
        l.block = block;
        l.weight = row_block(w, i, D);
        if (bias) {
            Tensor t = Tensor::zeros({D}, DType::F32);
            std::copy_n(bias_f.data() + i * D, D, static_cast<float*>(t.mutable_data()));
            l.bias = std::move(t);
        }
    }
    b.attn_out = src.linear(p + "self_attn.projection", D, D, LayerRole::attn_out, block);
    b.attn_norm = src.norm(p + "layer_norm1", D);
    b.ffn_in = src.linear(p + "mlp.fc1", F, D, LayerRole::ffn_up, block);
    b.ffn_out = src.linear(p + "mlp.fc2", D, F, LayerRole::ffn_down, block);
    b.ffn_norm = src.norm(p + "layer_norm2", D);
    return b;
}

// One text layer (BlipTextLayer, post-LN): attention.self / .output, crossattention.self (keys / values from the image's
// width) / .output, intermediate.dense, output.dense + LayerNorm.
Seq2SeqLayer text_layer(const EncoderWeightSource& src, const std::string& p, int64_t D, int64_t Dv, int64_t F, int64_t block) {
    static constexpr AttentionNames kSelf{"self.query", "self.key", "self.value", "output.dense"};
    Seq2SeqLayer l;
    load_attention(src, p + "attention.", kSelf, D, D, block, l.q, l.k, l.v, l.attn_out);
    l.attn_norm = src.norm(p + "attention.output.LayerNorm", D);
    const std::string c = p + "crossattention.";
    l.cross_q = src.linear(c + "self.query", D, D, LayerRole::attn_q, block);
    l.cross_k = src.linear(c + "self.key", D, Dv, LayerRole::attn_k, block);
    l.cross_v = src.linear(c + "self.value", D, Dv, LayerRole::attn_v, block);
    l.cross_out = src.linear(c + "output.dense", D, D, LayerRole::attn_out, block);
    l.cross_norm = src.norm(c + "output.LayerNorm", D);
    l.ffn_in = src.linear(p + "intermediate.dense", F, D, LayerRole::ffn_up, block);
    l.ffn_out = src.linear(p + "output.dense", D, F, LayerRole::ffn_down, block);
    l.ffn_norm = src.norm(p + "output.LayerNorm", D);
    return l;
}

ops::Activation activation(const std::string& name, const std::string& where) {
    const auto act = ops::activation_from_name(name);
    if (!act)
        throw Unsupported("[seq2seq] " + where + ": hidden_act '" + name +
                          "' is not supported (cq implements gelu, gelu_new, gelu_pytorch_tanh, relu, tanh, quick_gelu)");
    return *act;
}

}  // namespace

void Seq2SeqLoader::load_blip(Seq2SeqModel& m, const hf::Config& c, const EncoderWeightSource& src, const hf::ModelDir& d) {
    const std::string& config_path = c.path();
    require_architecture(c, "blip", "BlipForConditionalGeneration");
    // BlipTextConfig's / BlipVisionConfig's defaults where config.json leaves a value out (save_pretrained writes only
    // the values that differ)
    const hf::Config text = c.section("text_config"), vision = c.section("vision_config");
    Seq2SeqConfig& g = config(m);
    g.architecture = "BlipForConditionalGeneration";
    g.d_model = text.size_or({"hidden_size"}, 768);
    g.vocab = text.size_or({"vocab_size"}, 30524);
    g.max_positions = text.size_or({"max_position_embeddings"}, 512);
    g.decoder_layers = text.size_or({"num_hidden_layers"}, 12);
    g.decoder_heads = text.size_or({"num_attention_heads"}, 8);
    g.decoder_ffn = text.size_or({"intermediate_size"}, 3072);
    g.activation = text.string_or("hidden_act", "gelu");
    g.norm_eps = static_cast<float>(text.number_or("layer_norm_eps", 1e-12));
    g.label_smoothing = static_cast<float>(text.number_or("label_smoothing", 0.0));
    g.position_offset = 0;
    g.pad_token_id = static_cast<int32_t>(text.int_or({"pad_token_id"}, 0));
    // captions: [DEC] (bos_token_id) starts the decoder, [SEP] (sep_token_id) ends it, as generate's eos; the text
    // config's eos_token_id plays no part, and tokenize adds no bos (the labels are pieces + [SEP] after [DEC])
    g.decoder_start_token_id = static_cast<int32_t>(text.int_or({"bos_token_id"}, 30522));
    g.eos_token_id = static_cast<int32_t>(text.int_or({"sep_token_id"}, 102));
    g.bos_token_id = -1;
    if (const std::string pos = text.string_or("position_embedding_type", "absolute"); pos != "absolute")
        throw Unsupported("[seq2seq] " + config_path + ": text_config.position_embedding_type '" + pos + "' is not supported (cq implements 'absolute')");

    EncoderConfig vc;
    vc.family = EncoderFamily::vit;
    vc.architecture = g.architecture;
    vc.hidden = vision.size_or({"hidden_size"}, 768);
    vc.n_ff = vision.size_or({"intermediate_size"}, 3072);
    vc.n_layer = vision.size_or({"num_hidden_layers"}, 12);
    vc.n_head = vision.size_or({"num_attention_heads"}, 12);
    vc.image_size = vision.size_or({"image_size"}, 384);
    vc.patch_size = vision.size_or({"patch_size"}, 16);
    vc.num_channels = 3;  // BlipVisionEmbeddings' patch conv takes three channels whatever the config says
    vc.hidden_act = vision.string_or("hidden_act", "gelu");
    vc.norm_eps = static_cast<float>(vision.number_or("layer_norm_eps", 1e-5));
    if (vc.patch_size <= 0 || vc.image_size % vc.patch_size != 0)
        throw FormatError("json", config_path, 0, "vision_config.image_size " + std::to_string(vc.image_size) + " is not a multiple of vision_config.patch_size " +
                                                      std::to_string(vc.patch_size));
    const int64_t side = vc.image_size / vc.patch_size;
    vc.max_positions = side * side + 1;
    for (const auto& [what, dim, heads] : {std::tuple{"text_config", g.d_model, g.decoder_heads}, std::tuple{"vision_config", vc.hidden, vc.n_head}})
        if (heads <= 0 || dim % heads != 0)
            throw FormatError("json", config_path, 0, std::string(what) + ".num_attention_heads " + std::to_string(heads) + " does not divide " + what +
                                                          ".hidden_size " + std::to_string(dim));
    for (const int32_t id : {g.pad_token_id, g.eos_token_id, g.decoder_start_token_id})
        if (id < 0 || id >= g.vocab)
            throw FormatError("json", config_path, 0, "text_config special token id " + std::to_string(id) + " (pad / sep / bos) is outside the vocabulary of " +
                                                          std::to_string(g.vocab));
    g.encoder_layers = vc.n_layer;
    g.encoder_heads = vc.n_head;
    g.encoder_ffn = vc.n_ff;
    g.encoder_width = vc.hidden;
    g.d_kv = g.d_model / g.decoder_heads;
    g.image_size = vc.image_size;
    g.num_channels = vc.num_channels;

    // the image processor's rescale and normalisation (no resize: images come at image_size)
    read_image_preprocessor(d, vc, 0.0f, 1.0f);
    const std::string pre_path = (fs::path(d.path) / "preprocessor_config.json").string();
    std::error_code ec;
    const nlohmann::json pre = fs::is_regular_file(pre_path, ec) ? read_json_file(pre_path, "json") : nlohmann::json::object();
    if (pre.value("do_normalize", true)) {
        if (!pre.contains("image_mean") || pre["image_mean"].is_null()) vc.image_mean.assign(std::begin(kClipMean), std::end(kClipMean));
        if (!pre.contains("image_std") || pre["image_std"].is_null()) vc.image_std.assign(std::begin(kClipStd), std::end(kClipStd));
    }

    auto& s = state(m);
    s.act = activation(g.activation, config_path + " text_config");
    ImageEncoder& img = s.image.emplace();
    img.act = activation(vc.hidden_act, config_path + " vision_config");
    img.c = vc;
    const int64_t Dv = vc.hidden, D = g.d_model, patch_in = vc.num_channels * vc.patch_size * vc.patch_size;
    const std::string v = "vision_model.", e = v + "embeddings.";
    // The conv weight [Dv, 3, p, p] is read as [Dv, 3·p·p]: the same bytes, no copy.
    img.w.patch_embd = src.linear(e + "patch_embedding", Dv, patch_in, LayerRole::patch_embed);
    img.w.cls_token = src.get(e + "class_embedding", {Dv});
    img.w.pos_embd = src.get(e + "position_embedding", {vc.max_positions, Dv});
    for (int64_t l = 0; l < vc.n_layer; ++l) img.w.blocks.push_back(vision_block(src, v + "encoder.layers." + std::to_string(l) + ".", Dv, vc.n_ff, l));
    img.w.final_norm = src.norm(v + "post_layernorm", Dv);

    const std::string t = "text_decoder.bert.";
    s.shared_name = t + "embeddings.word_embeddings";
    s.shared = src.get(s.shared_name + ".weight", {g.vocab, D});
    s.decoder.positions_name = t + "embeddings.position_embeddings";
    s.decoder.positions = src.get(s.decoder.positions_name + ".weight", {g.max_positions, D});
    s.decoder.embed_norm = src.norm(t + "embeddings.LayerNorm", D);
    for (int64_t l = 0; l < g.decoder_layers; ++l)
        s.decoder.layers.push_back(text_layer(src, t + "encoder.layer." + std::to_string(l) + ".", D, Dv, g.decoder_ffn, vc.n_layer + l));
    // cls.predictions: transform (dense, act, LayerNorm), then the decoder [vocab, D] (tied to the word embeddings where the
    // file leaves it out) + bias
    const std::string h = "text_decoder.cls.predictions.";
    s.head_dense = src.linear(h + "transform.dense", D, D, LayerRole::other);
    s.head_norm = src.norm(h + "transform.LayerNorm", D);
    s.lm_head.name = "lm_head";
    s.lm_head.role = LayerRole::lm_head;
    const bool own = src.has(h + "decoder.weight");
    s.lm_head.source_name = own ? h + "decoder" : s.shared_name;
    s.lm_head.weight = own ? src.get(h + "decoder.weight", {g.vocab, D}) : s.shared;
    if (auto bias = src.find(h + "bias", {g.vocab})) s.lm_head.bias = models::to_f32(*bias);
    else if (auto dbias = src.find(h + "decoder.bias", {g.vocab})) s.lm_head.bias = models::to_f32(*dbias);
}

std::vector<float> blip_encode_image(ImageEncoder& e, const uint8_t* pixels) {
    const EncoderConfig& c = e.c;
    const int64_t plane = c.image_size * c.image_size;
    std::vector<float> x(static_cast<size_t>(c.num_channels * plane));
    for (int64_t ch = 0; ch < c.num_channels; ++ch) {
        const float mean = c.image_mean[static_cast<size_t>(ch)], stdev = c.image_std[static_cast<size_t>(ch)];
        for (int64_t i = ch * plane; i < (ch + 1) * plane; ++i) x[static_cast<size_t>(i)] = (static_cast<float>(pixels[i]) * c.rescale_factor - mean) / stdev;
    }
    const EncoderPass pass{c, e.w, e.s, nullptr, e.act};
    const int64_t S = vit_encode(pass, x.data(), 1), D = c.hidden;
    // post_layernorm on every row: the decoder cross-attends to all of them (last_hidden_state)
    std::vector<float> out(static_cast<size_t>(S * D));
    ops::layer_norm_rows(e.s.x.data(), S, D, e.w.final_norm->weight, &*e.w.final_norm->bias, c.norm_eps, out.data());
    return out;
}

}  // namespace cq
