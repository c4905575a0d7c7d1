// EncoderModel: reads config.json (+ preprocessor_config.json for ViT / CLIP), maps the safetensors weights into
// the family's layout without copying matrices (norms and biases are widened to small f32 vectors), checks
// every shape, tokenizes padded batches and dispatches to the family's forward pass.
#include <stdlib.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "core/json_file.h"
#include "cq/encoder.h"
#include "cq/error.h"
#include "cq/io/gguf.h"
#include "cq/kernels.h"
#include "io/hf/hf_config.h"
#include "io/hf/hf_model.h"
#include "cq/thread_pool.h"
#include "models/model_container.h"
#include "cq/w8a8.h"
#include "models/encoder_families.h"
#include "models/weight_helpers.h"
#include "ops/ops.h"
#include "tokenizers/clip_tokenizer.h"

namespace cq {

namespace fs = std::filesystem;

namespace {

struct Supported {
    const char* model_type;
    const char* architecture;
    EncoderFamily family;
};
constexpr Supported kSupported[] = {
    {"bert", "BertForSequenceClassification", EncoderFamily::bert},
    {"bert", "BertModel", EncoderFamily::bert},
    {"roberta", "RobertaForSequenceClassification", EncoderFamily::roberta},
    {"distilbert", "DistilBertForSequenceClassification", EncoderFamily::distilbert},
    {"vit", "ViTForImageClassification", EncoderFamily::vit},
    {"deit", "DeiTForImageClassificationWithTeacher", EncoderFamily::deit},
    {"deit", "DeiTForImageClassification", EncoderFamily::deit},
    {"layoutlm", "LayoutLMForSequenceClassification", EncoderFamily::layoutlm},
    {"layoutlm", "LayoutLMForTokenClassification", EncoderFamily::layoutlm},
    {"resnet", "ResNetForImageClassification", EncoderFamily::resnet},
    {"clip", "CLIPModel", EncoderFamily::clip},
    {"deberta-v2", "DebertaV2ForSequenceClassification", EncoderFamily::deberta_v2},
    {"efficientnet", "EfficientNetForImageClassification", EncoderFamily::efficientnet},
};

std::string config_architecture(const nlohmann::json& config) {
    if (auto it = config.find("architectures"); it != config.end() && it->is_array() && !it->empty() && (*it)[0].is_string())
        return (*it)[0].get<std::string>();
    return "";
}

// The supported entry for a config.json's model_type (and first architecture, when it names one).
const Supported* find_supported(const nlohmann::json& config) {
    std::string model_type;
    if (auto it = config.find("model_type"); it != config.end() && it->is_string()) model_type = it->get<std::string>();
    const std::string architecture = config_architecture(config);
    for (const auto& s : kSupported)
        if (model_type == s.model_type && (architecture.empty() || architecture == s.architecture)) return &s;
    return nullptr;
}

using models::shape_str;
using models::to_f32;

// The same bytes under another shape of equal element count; the view keeps `t` (and its mapping) alive.
Tensor view_as(const Tensor& t, const std::vector<int64_t>& shape) {
    if (t.shape() == shape) return t;
    return Tensor::borrowed(shape, t.dtype(), t.data(), std::make_shared<Tensor>(t));
}

std::string json_string(const nlohmann::json& j, const char* key, const std::string& fallback) {
    if (auto it = j.find(key); it != j.end() && it->is_string()) return it->get<std::string>();
    return fallback;
}

// Per-channel values of preprocessor_config.json: a list, or one number for every channel.
std::vector<float> channel_values(const nlohmann::json& j, const char* key, float fallback, int64_t channels, const std::string& file) {
    std::vector<float> out(static_cast<size_t>(channels), fallback);
    const auto it = j.find(key);
    if (it == j.end() || it->is_null()) return out;
    if (it->is_number()) return std::vector<float>(static_cast<size_t>(channels), it->get<float>());
    if (!it->is_array() || static_cast<int64_t>(it->size()) != channels)
        throw FormatError("json", file, 0, std::string("'") + key + "' must hold one number per channel (" + std::to_string(channels) + ")");
    for (size_t i = 0; i < out.size(); ++i) {
        if (!(*it)[i].is_number()) throw FormatError("json", file, 0, std::string("'") + key + "' holds a value that is not a number");
        out[i] = (*it)[i].get<float>();
    }
    return out;
}

void read_labels(const hf::Config& config, EncoderConfig& c) {
    c.labels = config.labels();
    c.num_labels = static_cast<int64_t>(c.labels.size());
}

// preprocessor_config.json as a JSON object ({} when the directory has none).
nlohmann::json read_preprocessor(const hf::ModelDir& d, std::string& pre_path) {
    nlohmann::json pre = nlohmann::json::object();
    pre_path = (fs::path(d.path) / "preprocessor_config.json").string();
    std::error_code ec;
    if (fs::is_regular_file(pre_path, ec)) pre = read_json_file(pre_path, "json");
    if (!pre.is_object()) throw FormatError("json", pre_path, 0, "preprocessor_config.json is not a JSON object");
    return pre;
}

// A list of positive integers under `key` (ResNet's hidden_sizes, depths).
std::vector<int64_t> positive_list(const hf::Config& j, const char* key) {
    const nlohmann::json* v = j.find(key);
    std::vector<int64_t> out;
    if (!v || !v->is_array() || v->empty()) throw FormatError("json", j.path(), 0, std::string("'") + key + "' must be a non-empty list of positive integers");
    for (const auto& x : *v) {
        if (!x.is_number_integer() || x.get<int64_t>() <= 0)
            throw FormatError("json", j.path(), 0, std::string("'") + key + "' must be a non-empty list of positive integers");
        out.push_back(x.get<int64_t>());
    }
    return out;
}

// ResNetConfig: stages, block type, stem width; the input size comes from the preprocessor (ResNet takes any size, cq's
// datasets one): crop_size, else size (height = width, or shortest_edge), else 224.
void read_resnet_config(const hf::ModelDir& d, const hf::Config& j, EncoderConfig& c) {
    c.stage_sizes = positive_list(j, "hidden_sizes");
    c.stage_depths = positive_list(j, "depths");
    if (c.stage_sizes.size() != c.stage_depths.size())
        throw FormatError("json", j.path(), 0, "'hidden_sizes' and 'depths' must name the same number of stages (" +
                                                   std::to_string(c.stage_sizes.size()) + " vs " + std::to_string(c.stage_depths.size()) + ")");
    c.embedding_size = j.size_or({"embedding_size"}, 64);
    c.num_channels = j.size_or({"num_channels"}, 3);
    const std::string type = j.string_or("layer_type", "bottleneck");
    if (type != "bottleneck" && type != "basic")
        throw Unsupported("[encoder] " + j.path() + ": ResNet layer_type '" + type + "' is not supported (bottleneck, basic)");
    c.bottleneck = type == "bottleneck";
    if (c.bottleneck)
        for (const int64_t s : c.stage_sizes)
            if (s % 4 != 0) throw FormatError("json", j.path(), 0, "bottleneck stage width " + std::to_string(s) + " is not a multiple of 4");
    c.downsample_in_first_stage = j.bool_or("downsample_in_first_stage", false);
    c.downsample_in_bottleneck = j.bool_or("downsample_in_bottleneck", false);
    c.hidden_act = j.string_or("hidden_act", "relu");
    c.hidden = c.stage_sizes.back();
    c.n_layer = 0;
    for (const int64_t n : c.stage_depths) c.n_layer += n;
    c.n_head = 1;
    c.n_ff = c.hidden;
    c.max_positions = 1;
    c.norm_eps = 1e-5f;
    std::string pre_path;
    const nlohmann::json pre = read_preprocessor(d, pre_path);
    const hf::Config preprocessor(pre, pre_path);
    c.image_size = 224;
    for (const char* key : {"size", "crop_size"}) {
        const nlohmann::json* size = preprocessor.find(key);
        if (!size) continue;
        if (size->is_number_integer()) c.image_size = size->get<int64_t>();
        else if (size->is_object() && size->contains("height") && size->contains("width")) {
            if ((*size)["height"] != (*size)["width"] || !(*size)["height"].is_number_integer())
                throw Unsupported("[encoder] " + pre_path + ": '" + key + "' must be square (height = width)");
            c.image_size = (*size)["height"].get<int64_t>();
        } else if (size->is_object() && size->contains("shortest_edge") && (*size)["shortest_edge"].is_number_integer()) {
            c.image_size = (*size)["shortest_edge"].get<int64_t>();
        } else {
            throw FormatError("json", pre_path, 0, std::string("'") + key + "' is neither a number, {height, width} nor {shortest_edge}");
        }
    }
    if (c.image_size <= 0) throw FormatError("json", pre_path, 0, "the image size must be positive");
}

// A list of integers under `key`, each at least `min` (`fallback` where the config leaves it out, as transformers does).
std::vector<int64_t> int_list_or(const hf::Config& j, const char* key, int64_t min, std::vector<int64_t> fallback) {
    const nlohmann::json* v = j.find(key);
    if (!v) return fallback;
    const std::string what = std::string("'") + key + "' must be a list of integers ≥ " + std::to_string(min);
    if (!v->is_array()) throw FormatError("json", j.path(), 0, what);
    std::vector<int64_t> out;
    for (const auto& x : *v) {
        if (!x.is_number_integer() || x.get<int64_t>() < min) throw FormatError("json", j.path(), 0, what);
        out.push_back(x.get<int64_t>());
    }
    return out;
}

// EfficientNetConfig (its defaults, B7's, where a key is left out) and EfficientNetImageProcessor's extra steps:
// rescale_offset (x·r − 1) folds into the mean, include_top (a second division by the std) into the std.
void read_efficientnet_config(const hf::ModelDir& d, const hf::Config& j, EncoderConfig& c) {
    EfficientNetConfig& e = c.efficientnet;
    const auto number = [&](const char* key, double fallback) {
        const double v = j.number_or(key, fallback);
        if (!(v > 0) || !std::isfinite(v)) throw FormatError("json", j.path(), 0, std::string("'") + key + "' must be a positive number");
        return v;
    };
    e.width_coefficient = number("width_coefficient", 2.0);
    e.depth_coefficient = number("depth_coefficient", 3.1);
    e.squeeze_expansion_ratio = number("squeeze_expansion_ratio", 0.25);
    e.batch_norm_eps = static_cast<float>(number("batch_norm_eps", 1e-3));
    e.depth_divisor = j.size_or({"depth_divisor"}, 8);
    e.kernel_sizes = int_list_or(j, "kernel_sizes", 1, {3, 3, 5, 3, 5, 5, 3});
    e.in_channels = int_list_or(j, "in_channels", 1, {32, 16, 24, 40, 80, 112, 192});
    e.out_channels = int_list_or(j, "out_channels", 1, {16, 24, 40, 80, 112, 192, 320});
    e.strides = int_list_or(j, "strides", 1, {1, 2, 2, 2, 1, 2, 1});
    e.num_block_repeats = int_list_or(j, "num_block_repeats", 1, {1, 2, 2, 3, 3, 4, 1});
    e.expand_ratios = int_list_or(j, "expand_ratios", 1, {1, 6, 6, 6, 6, 6, 6});
    e.depthwise_padding = int_list_or(j, "depthwise_padding", 0, {});
    const size_t stages = e.in_channels.size();
    if (stages == 0) throw FormatError("json", j.path(), 0, "'in_channels' names no stage");
    for (const auto& [key, list] : {std::pair{"out_channels", &e.out_channels}, std::pair{"kernel_sizes", &e.kernel_sizes},
                                    std::pair{"strides", &e.strides}, std::pair{"num_block_repeats", &e.num_block_repeats},
                                    std::pair{"expand_ratios", &e.expand_ratios}})
        if (list->size() != stages)
            throw FormatError("json", j.path(), 0, std::string("'") + key + "' names " + std::to_string(list->size()) + " stages, 'in_channels' " +
                                                       std::to_string(stages));
    for (size_t i = 0; i < stages; ++i) {
        if (e.kernel_sizes[i] % 2 == 0)
            throw Unsupported("[encoder] " + j.path() + ": 'kernel_sizes' holds the even size " + std::to_string(e.kernel_sizes[i]) +
                              " (cq implements odd depthwise kernels, whose \"same\" padding is symmetric)");
        if (e.strides[i] > 2)
            throw Unsupported("[encoder] " + j.path() + ": 'strides' holds " + std::to_string(e.strides[i]) + " (transformers' EfficientNet pads strides 1 and 2)");
    }
    const std::string pooling = j.string_or("pooling_type", "mean");
    if (pooling != "mean" && pooling != "max")
        throw FormatError("json", j.path(), 0, "'pooling_type' is '" + pooling + "', not mean or max");
    e.max_pooling = pooling == "max";
    e.hidden_dim = j.size_or({"hidden_dim"}, 2560);
    if (e.hidden_dim != efficientnet_round_filters(e, 1280))
        throw FormatError("json", j.path(), 0, "'hidden_dim' " + std::to_string(e.hidden_dim) + " is not the top conv's width round_filters(1280) = " +
                                                   std::to_string(efficientnet_round_filters(e, 1280)) + " (transformers' top_bn would not fit)");
    c.hidden_act = j.string_or("hidden_act", "swish");
    if (!ops::activation_from_name(c.hidden_act))
        throw Unsupported("[encoder] " + j.path() + ": 'hidden_act' '" + c.hidden_act +
                          "' is not supported (cq implements swish / silu, gelu, gelu_new, relu, tanh, quick_gelu)");
    c.num_channels = j.size_or({"num_channels"}, 3);
    c.image_size = j.size_or({"image_size"}, 600);
    c.hidden = c.n_ff = e.hidden_dim;
    c.n_head = 1;
    c.n_layer = 0;
    for (const int64_t n : e.num_block_repeats) c.n_layer += efficientnet_round_repeats(e, n);
    c.max_positions = 1;
    c.norm_eps = e.batch_norm_eps;
    read_labels(j, c);
    // IMAGENET_STANDARD_MEAN / STD (0.5) are EfficientNetImageProcessor's defaults
    read_image_preprocessor(d, c, 0.5f, 0.5f);
    std::string pre_path;
    const nlohmann::json pre = read_preprocessor(d, pre_path);
    const hf::Config preprocessor(pre, pre_path);
    const bool rescale = preprocessor.bool_or("do_rescale", true), normalize = preprocessor.bool_or("do_normalize", true);
    if (rescale && preprocessor.bool_or("rescale_offset", false))
        for (float& m : c.image_mean) m += 1.0f;  // (x·r − 1 − mean) / std
    if (preprocessor.bool_or("include_top", true)) {
        const std::vector<float> std = channel_values(pre, "image_std", 0.5f, c.num_channels, pre_path);
        for (size_t i = 0; i < c.image_std.size(); ++i) c.image_std[i] = (normalize ? c.image_std[i] : 1.0f) * std[i];
    }
}


// CLIPConfig: text_config and vision_config (each with CLIPTextConfig's / CLIPVisionConfig's defaults for what it leaves
// out, as save_pretrained writes only the values that differ), projection_dim; the class names for zero-shot
// classification from id2label where it names real classes (not HF's LABEL_i placeholders).
void read_clip_config(const hf::ModelDir& d, const std::string& config_path, EncoderConfig& c) {
    const hf::Config top(d.config, config_path), text = top.section("text_config"), vision = top.section("vision_config");
    ClipTextConfig& t = c.clip_text;
    t.vocab = text.size_or({"vocab_size"}, 49408);
    t.hidden = text.size_or({"hidden_size"}, 512);
    t.n_ff = text.size_or({"intermediate_size"}, 2048);
    t.n_layer = text.size_or({"num_hidden_layers"}, 12);
    t.n_head = text.size_or({"num_attention_heads"}, 8);
    t.max_positions = text.size_or({"max_position_embeddings"}, 77);
    t.hidden_act = text.string_or("hidden_act", "quick_gelu");
    t.norm_eps = static_cast<float>(text.number_or("layer_norm_eps", 1e-5));
    t.eos_token_id = static_cast<int32_t>(text.int_or({"eos_token_id"}, 49407));
    t.projection_dim = top.size_or({"projection_dim"}, 512);
    c.hidden = vision.size_or({"hidden_size"}, 768);
    c.n_ff = vision.size_or({"intermediate_size"}, 3072);
    c.n_layer = vision.size_or({"num_hidden_layers"}, 12);
    c.n_head = vision.size_or({"num_attention_heads"}, 12);
    c.num_channels = vision.size_or({"num_channels"}, 3);
    c.image_size = vision.size_or({"image_size"}, 224);
    c.patch_size = vision.size_or({"patch_size"}, 32);
    c.hidden_act = vision.string_or("hidden_act", "quick_gelu");
    c.norm_eps = static_cast<float>(vision.number_or("layer_norm_eps", 1e-5));
    if (t.hidden % t.n_head != 0)
        throw FormatError("json", config_path, 0, "text_config: hidden_size " + std::to_string(t.hidden) + " is not a multiple of num_attention_heads " +
                                                      std::to_string(t.n_head));
    if (c.hidden % c.n_head != 0)
        throw FormatError("json", config_path, 0, "vision_config: hidden_size " + std::to_string(c.hidden) +
                                                      " is not a multiple of num_attention_heads " + std::to_string(c.n_head));
    if (c.image_size % c.patch_size != 0)
        throw FormatError("json", config_path, 0, "vision_config: image_size " + std::to_string(c.image_size) + " is not a multiple of patch_size " +
                                                      std::to_string(c.patch_size));
    if (t.eos_token_id != 2 && (t.eos_token_id < 0 || t.eos_token_id >= t.vocab))
        throw FormatError("json", config_path, 0, "text_config: eos_token_id " + std::to_string(t.eos_token_id) + " is outside the vocabulary");
    for (const auto& [tower, act] : {std::pair{"text_config", t.hidden_act}, std::pair{"vision_config", c.hidden_act}})
        if (!ops::activation_from_name(act))
            throw Unsupported("[encoder] " + config_path + ": " + tower + " activation '" + act +
                              "' is not supported (cq implements quick_gelu, gelu, gelu_new, gelu_pytorch_tanh, relu, tanh)");
    const int64_t side = c.image_size / c.patch_size;
    c.max_positions = side * side + 1;  // + the class embedding
    c.vocab = t.vocab;
    read_image_preprocessor(d, c, 0.5f, 0.5f);
    // Zero-shot classes: id2label's names, unless they are all HF's placeholders LABEL_i.
    read_labels(top, c);
    bool placeholders = true;
    for (size_t i = 0; i < c.labels.size(); ++i) placeholders = placeholders && c.labels[i] == "LABEL_" + std::to_string(i);
    if (placeholders) c.labels.clear();
    c.num_labels = static_cast<int64_t>(c.labels.size());
}

// DebertaV2Config's disentangled-attention fields, with its defaults (relative_attention off, absolute positions on).
void read_deberta_config(const hf::Config& j, EncoderConfig& c) {
    DebertaConfig& dc = c.deberta;
    dc.relative_attention = j.bool_or("relative_attention", false);
    // pos_att_type: a list, or a string "p2c|c2p" in older configs
    std::vector<std::string> types;
    if (const nlohmann::json* t = j.find("pos_att_type")) {
        if (t->is_string()) {
            std::string v = t->get<std::string>();
            for (size_t b = 0; b <= v.size();) {
                const size_t e = std::min(v.find('|', b), v.size());
                std::string x = v.substr(b, e - b);
                x.erase(0, x.find_first_not_of(' '));
                x.erase(x.find_last_not_of(' ') + 1);
                std::transform(x.begin(), x.end(), x.begin(), [](unsigned char ch) { return static_cast<char>(std::tolower(ch)); });
                if (!x.empty()) types.push_back(x);
                b = e + 1;
            }
        } else if (t->is_array()) {
            for (const auto& x : *t) {
                if (!x.is_string()) throw FormatError("json", j.path(), 0, "'pos_att_type' holds a value that is not a string");
                types.push_back(x.get<std::string>());
            }
        } else {
            throw FormatError("json", j.path(), 0, "'pos_att_type' is neither a list nor a string");
        }
    }
    for (const auto& t : types) {
        if (t == "c2p") dc.c2p = true;
        else if (t == "p2c") dc.p2c = true;
        else throw Unsupported("[encoder] " + j.path() + ": pos_att_type '" + t + "' is not supported (c2p, p2c)");
    }
    dc.share_att_key = j.bool_or("share_att_key", false);
    const std::string norm = j.string_or("norm_rel_ebd", "none");
    dc.norm_rel_ebd = norm.find("layer_norm") != std::string::npos;
    dc.position_biased_input = j.bool_or("position_biased_input", true);
    dc.position_buckets = j.int_or({"position_buckets"}, -1);
    dc.max_relative_positions = j.int_or({"max_relative_positions"}, -1);
    if (dc.max_relative_positions < 1) dc.max_relative_positions = c.max_positions;
    dc.att_span = dc.position_buckets > 0 ? dc.position_buckets : dc.max_relative_positions;
    dc.embedding_size = j.size_or({"embedding_size"}, c.hidden);
    dc.pooler_size = j.size_or({"pooler_hidden_size"}, c.hidden);
    dc.pooler_act = j.string_or("pooler_hidden_act", "gelu");
    if (j.int_or({"conv_kernel_size"}, 0) > 0)
        throw Unsupported("[encoder] " + j.path() + ": DeBERTa's convolution layer (conv_kernel_size > 0) is not supported");
    if (j.opt_int({"attention_head_size"}) && *j.opt_int({"attention_head_size"}) != c.hidden / c.n_head)
        throw Unsupported("[encoder] " + j.path() + ": attention_head_size other than hidden_size / num_attention_heads is not supported");
    if (!ops::activation_from_name(dc.pooler_act))
        throw Unsupported("[encoder] " + j.path() + ": pooler_hidden_act '" + dc.pooler_act +
                          "' is not supported (cq implements gelu, gelu_new, gelu_pytorch_tanh, relu, tanh, quick_gelu)");
}

// HF's pruned_heads ({"layer": [heads]}, as transformers' prune_heads records it): which heads each block lost. Only
// the families whose loader slices by it (BERT family, ViT / DeiT); Unsupported elsewhere rather than a wrong model.
void read_pruned_heads(const hf::Config& j, EncoderConfig& c) {
    const nlohmann::json* p = j.find("pruned_heads");
    if (!p || p->is_null() || (p->is_object() && p->empty())) return;
    const std::string where = "[encoder] " + j.path() + ": pruned_heads";
    if (c.family == EncoderFamily::clip || c.family == EncoderFamily::deberta_v2 || c.family == EncoderFamily::resnet ||
        c.family == EncoderFamily::efficientnet)
        throw Unsupported(where + " (pruned attention heads) is supported for BERT-family and ViT models only");
    if (!p->is_object()) throw FormatError("json", j.path(), 0, "'pruned_heads' is not an object {\"layer\": [heads]}");
    c.pruned_heads.assign(static_cast<size_t>(c.n_layer), {});
    for (const auto& [key, heads] : p->items()) {
        size_t used = 0;
        int64_t l = -1;
        try {
            l = std::stoll(key, &used);
        } catch (const std::exception&) {
            used = 0;
        }
        if (used == 0 || used != key.size() || l < 0 || l >= c.n_layer)
            throw FormatError("json", j.path(), 0, "'pruned_heads' names layer '" + key + "', outside [0, " + std::to_string(c.n_layer) + ")");
        if (!heads.is_array()) throw FormatError("json", j.path(), 0, "'pruned_heads' layer " + key + " is not a list of heads");
        auto& out = c.pruned_heads[static_cast<size_t>(l)];
        for (const auto& h : heads) {
            if (!h.is_number_integer() || h.get<int64_t>() < 0 || h.get<int64_t>() >= c.n_head)
                throw FormatError("json", j.path(), 0, "'pruned_heads' layer " + key + " holds " + h.dump() + ", not a head in [0, " +
                                                           std::to_string(c.n_head) + ")");
            out.push_back(h.get<int64_t>());
        }
        std::sort(out.begin(), out.end());
        out.erase(std::unique(out.begin(), out.end()), out.end());
        if (static_cast<int64_t>(out.size()) >= c.n_head)
            throw FormatError("json", j.path(), 0, "'pruned_heads' removes every head of layer " + key);
    }
}

void read_config(const hf::ModelDir& d, const std::string& config_path, EncoderConfig& c) {
    if (c.family == EncoderFamily::clip) return read_clip_config(d, config_path, c);
    const hf::Config j(d.config, config_path);
    if (c.family == EncoderFamily::efficientnet) return read_efficientnet_config(d, j, c);
    if (c.family == EncoderFamily::resnet) read_resnet_config(d, j, c);
    // HF's defaults (BERT-base's sizes) where a config leaves a size out.
    const hf::TransformerSizes sizes = c.family == EncoderFamily::resnet ? hf::TransformerSizes{} : j.transformer_sizes();
    const auto or_default = [](int64_t v, int64_t fallback) { return v > 0 ? v : fallback; };
    if (c.family != EncoderFamily::resnet) {
        c.hidden = or_default(sizes.hidden, 768);
        c.n_layer = or_default(sizes.layers, c.family == EncoderFamily::distilbert ? 6 : 12);
        c.n_head = or_default(sizes.heads, 12);
        c.n_ff = or_default(sizes.ffn, 3072);
    }
    const bool vision = c.family == EncoderFamily::vit || c.family == EncoderFamily::deit || c.family == EncoderFamily::resnet;
    if (!vision) {
        c.max_positions = or_default(sizes.positions, 512);
        c.vocab = or_default(sizes.vocab, 30522);
        // DebertaV2Config's default is no token types; BERT's two
        c.type_vocab = c.family == EncoderFamily::distilbert ? 0 : j.int_or({"type_vocab_size"}, c.family == EncoderFamily::deberta_v2 ? 0 : 2);
        c.pad_token_id = static_cast<int32_t>(j.int_or({"pad_token_id"}, c.family == EncoderFamily::roberta ? 1 : 0));
    }
    if (c.family == EncoderFamily::distilbert) {
        c.hidden_act = j.string_or("activation", "gelu");
        c.norm_eps = 1e-12f;  // DistilBERT's LayerNorms hard-code it
    } else if (c.family != EncoderFamily::resnet) {
        c.hidden_act = j.string_or("hidden_act", "gelu");
        c.norm_eps = static_cast<float>(j.number_or("layer_norm_eps", c.family == EncoderFamily::deberta_v2 ? 1e-7 : 1e-12));
    }
    if (c.hidden <= 0 || c.n_layer <= 0 || c.n_head <= 0 || c.n_ff <= 0 || c.hidden % c.n_head != 0)
        throw FormatError("json", config_path, 0, "the encoder's sizes are missing, not positive or inconsistent (hidden " +
                                                      std::to_string(c.hidden) + ", layers " + std::to_string(c.n_layer) + ", heads " +
                                                      std::to_string(c.n_head) + ", ffn " + std::to_string(c.n_ff) + ")");
    if (!ops::activation_from_name(c.hidden_act))
        throw Unsupported("[encoder] " + config_path + ": activation '" + c.hidden_act +
                          "' is not supported (cq implements gelu, gelu_new, gelu_pytorch_tanh, relu, tanh)");
    read_labels(j, c);
    read_pruned_heads(j, c);
    c.token_classification = c.architecture.ends_with("ForTokenClassification");
    c.feature_extraction = c.architecture == "BertModel";
    if (c.family == EncoderFamily::layoutlm) {
        c.max_2d_positions = j.size_or({"max_2d_position_embeddings"}, 1024);
    }
    if (c.family == EncoderFamily::deberta_v2) read_deberta_config(j, c);

    if (vision) {
        if (c.family != EncoderFamily::resnet) {
            c.image_size = j.int_or({"image_size"}, 224);
            c.patch_size = j.int_or({"patch_size"}, 16);
            c.num_channels = j.int_or({"num_channels"}, 3);
            if (c.image_size <= 0 || c.patch_size <= 0 || c.num_channels <= 0 || c.image_size % c.patch_size != 0)
                throw FormatError("json", config_path, 0, "image_size " + std::to_string(c.image_size) + " is not a positive multiple of patch_size " +
                                                              std::to_string(c.patch_size));
            const int64_t side = c.image_size / c.patch_size;
            c.max_positions = side * side + (c.family == EncoderFamily::deit ? 2 : 1);  // + CLS (+ DeiT's distillation token)
        }
        read_image_preprocessor(d, c, 0.5f, 0.5f);
    } else if (c.max_positions <= 0 || c.vocab <= 0) {
        throw FormatError("json", config_path, 0, "max_position_embeddings and vocab_size must be positive");
    }
}

}  // namespace

// preprocessor_config.json's rescale and normalisation (the processor's defaults where the file has none); resizing and
// cropping are not done: images come at the model's size. Outside the anonymous namespace: BLIP's loader uses it too.
void read_image_preprocessor(const hf::ModelDir& d, EncoderConfig& c, float default_mean, float default_std) {
    std::string pre_path;
    const nlohmann::json pre = read_preprocessor(d, pre_path);
    const hf::Config preprocessor(pre, pre_path);
    const bool rescale = !pre.contains("do_rescale") || pre["do_rescale"] != false;
    const bool normalize = !pre.contains("do_normalize") || pre["do_normalize"] != false;
    c.rescale_factor = rescale ? static_cast<float>(preprocessor.number_or("rescale_factor", 1.0 / 255.0)) : 1.0f;
    c.image_mean = normalize ? channel_values(pre, "image_mean", default_mean, c.num_channels, pre_path) : std::vector<float>(static_cast<size_t>(c.num_channels), 0.0f);
    c.image_std = normalize ? channel_values(pre, "image_std", default_std, c.num_channels, pre_path) : std::vector<float>(static_cast<size_t>(c.num_channels), 1.0f);
    for (const float s : c.image_std)
        if (!(s > 0)) throw FormatError("json", pre_path, 0, "image_std holds a value that is not positive");
}

// ---- EncoderWeightSource ------------------------------------------------------------------------------

void EncoderWeightSource::fail(const std::string& what) const { throw FormatError("safetensors", file_, 0, what); }

std::optional<Tensor> EncoderWeightSource::find(const std::string& name, const std::vector<int64_t>& shape) const {
    auto t = lookup_(name);
    if (!t) return std::nullopt;
    int64_t numel = 1;
    for (const int64_t d : shape) numel *= d;
    // A stored shape that only adds unit dimensions ([1, 1, D] for [D]) or, for a conv, splits the last
    // dimension ([out, C, p, p] for [out, C·p·p]) holds the same row-major bytes.
    const bool same_rows = !shape.empty() && t->ndim() >= 1 && t->dim(0) == shape[0];
    std::vector<int64_t> squeezed;
    for (const int64_t d : t->shape())
        if (d != 1) squeezed.push_back(d);
    std::vector<int64_t> wanted_squeezed;
    for (const int64_t d : shape)
        if (d != 1) wanted_squeezed.push_back(d);
    const bool viewable = t->numel() == numel && (squeezed == wanted_squeezed || (same_rows && shape.size() == 2 && t->ndim() > 2));
    if (t->shape() != shape && !viewable)
        fail("tensor '" + name + "' has shape " + t->shape_string() + ", expected " + shape_str(shape));
    return view_as(*t, shape);
}

Tensor EncoderWeightSource::get(const std::string& name, const std::vector<int64_t>& shape) const {
    auto t = find(name, shape);
    if (!t) fail("tensor '" + name + "' is missing");
    return *t;
}

Linear EncoderWeightSource::linear(const std::string& name, int64_t n_out, int64_t n_in, LayerRole role, int64_t block) const {
    Linear l;
    l.name = name;
    l.source_name = name;
    l.role = role;
    l.block = block;
    l.weight = get(name + ".weight", {n_out, n_in});
    if (auto b = find(name + ".bias", {n_out})) l.bias = to_f32(*b);
    return l;
}

Norm EncoderWeightSource::norm(const std::string& name, int64_t n) const {
    Norm out;
    out.name = name;
    out.weight = to_f32(get(name + ".weight", {n}));
    out.bias = to_f32(get(name + ".bias", {n}));
    return out;
}

std::vector<EncoderBlock> EncoderWeightSource::blocks(const std::string& layers, const BlockNames& n, int64_t n_layer, int64_t d,
                                                     int64_t f, const EncoderConfig* pruned) const {
    std::vector<EncoderBlock> out;
    for (int64_t l = 0; l < n_layer; ++l) {
        const std::string p = layers + std::to_string(l) + ".";
        EncoderBlock b;
        // a = the attention width: all heads, or those this block keeps (HF pruned_heads)
        const int64_t a = pruned ? pruned->heads_in_block(l) * (pruned->hidden / pruned->n_head) : d;
        if (pruned) b.n_head = pruned->heads_in_block(l);
        b.q = linear(p + n.q, a, d, LayerRole::attn_q, l);
        b.k = linear(p + n.k, a, d, LayerRole::attn_k, l);
        b.v = linear(p + n.v, a, d, LayerRole::attn_v, l);
        b.attn_out = linear(p + n.attn_out, d, a, LayerRole::attn_out, l);
        b.attn_norm = norm(p + n.attn_norm, d);
        b.ffn_in = linear(p + n.ffn_in, f, d, LayerRole::ffn_up, l);
        b.ffn_out = linear(p + n.ffn_out, d, f, LayerRole::ffn_down, l);
        b.ffn_norm = norm(p + n.ffn_norm, d);
        out.push_back(std::move(b));
    }
    return out;
}

// ---- EncoderPass ----------------------------------------------------------------------------------------

void EncoderPass::linear(const Linear& layer, const float* x, int64_t rows, float* y, const int32_t* row_mask) const {
    ops::linear(layer, x, rows, y, row_mask);
}

void EncoderPass::block_done(int64_t index, const float* x, int64_t rows, const int32_t* row_mask) const {
    if (block_observers) notify_block(block_observers, {index, x, rows, c.hidden, row_mask});
}

void EncoderPass::self_attention(const EncoderBlock& b, const float* x, int64_t batch, int64_t seq, const int32_t* key_mask, bool causal) const {
    const int64_t rows = batch * seq;
    const Linear* qkv[] = {&b.q, &b.k, &b.v};
    float* const out[] = {s.q.data(), s.k.data(), s.v.data()};
    ops::linear_shared_input(qkv, x, rows, out, key_mask);
    // q, k, v: [rows, H·hd] with H the heads this block keeps (fewer than c.n_head after HF prune_heads)
    const int64_t hd = c.hidden / c.n_head, H = b.n_head > 0 ? b.n_head : c.n_head;
    if (causal)
        ops::attention_causal(s.q.data(), s.k.data(), s.v.data(), H * hd, batch, seq, H, hd, key_mask, s.attn.data());
    else if (w.attention == AttentionPrecision::int8)
        ops::attention_bidirectional_int8(s.q.data(), s.k.data(), s.v.data(), H * hd, batch, seq, H, hd, key_mask, s.attn.data());
    else
        ops::attention_bidirectional(s.q.data(), s.k.data(), s.v.data(), H * hd, batch, seq, H, hd, key_mask, s.attn.data());
    linear(b.attn_out, s.attn.data(), rows, s.tmp.data(), key_mask);
}

bool EncoderPass::splits_by_sequence(const std::vector<EncoderBlock>& blocks, int64_t batch, int64_t seq) const {
    constexpr int64_t kMinSequenceTokens = 32;  // fewer rows per GEMM call starve its tiles: split output channels instead
    const int threads = ThreadPool::global().size();
    if (threads < 2 || batch < threads || seq < kMinSequenceTokens || block_observers) return false;
    for (const EncoderBlock& b : blocks)
        for (const Linear* l : {&b.q, &b.k, &b.v, &b.attn_out, &b.ffn_in, &b.ffn_out})
            if (l->observers) return false;
    return true;
}

EncoderScratch& EncoderPass::thread_scratch(const EncoderConfig& c, const std::vector<EncoderBlock>& blocks, int64_t rows) {
    thread_local EncoderScratch local;
    int64_t width = c.hidden, ffn = 0;
    for (const EncoderBlock& b : blocks) {
        width = std::max({width, b.q.n_out(), b.k.n_out(), b.v.n_out(), b.attn_out.n_out()});
        ffn = std::max(ffn, b.ffn_in.n_out());
    }
    for (auto* v : {&local.q, &local.k, &local.v, &local.attn, &local.tmp, &local.xn})
        if (static_cast<int64_t>(v->size()) < rows * width) v->resize(static_cast<size_t>(rows * width));
    if (static_cast<int64_t>(local.ffn.size()) < rows * ffn) local.ffn.resize(static_cast<size_t>(rows * ffn));
    return local;
}

void EncoderPass::gather_cls(int64_t batch, int64_t seq) const {
    for (int64_t b = 0; b < batch; ++b) std::copy_n(s.x.data() + b * seq * c.hidden, c.hidden, s.cls.data() + b * c.hidden);
}

// ---- EncoderModel ---------------------------------------------------------------------------------------

class EncoderLoader {
public:
    static void load_container(EncoderModel& m, const std::string& path);
    static void load(EncoderModel& m, const std::string& path) {
        std::error_code ec;
        if (fs::is_regular_file(path, ec)) return load_container(m, path);
        if (!fs::is_directory(path, ec)) throw IoError("[encoder] '" + path + "' is neither an HF model directory nor a cq W8A8 .gguf container");
        const std::string config_path = (fs::path(path) / "config.json").string();
        if (!fs::is_regular_file(config_path, ec)) throw IoError("[encoder] " + config_path + " does not exist");
        // Read config.json alone first, so an unsupported model is named before its weights are opened.
        const nlohmann::json config = read_json_file(config_path, "hf");
        if (!config.is_object()) throw FormatError("hf", config_path, 0, "config.json is not a JSON object");
        const std::string model_type = json_string(config, "model_type", "");
        const std::string architecture = config_architecture(config);
        const Supported* match = find_supported(config);
        if (!match)
            throw Unsupported("[encoder] " + config_path + ": model_type '" + model_type + "' with architecture '" +
                              (architecture.empty() ? "(none)" : architecture) + "' is not supported; supported: " +
                              supported_encoder_architectures());

        const hf::ModelDir d = hf::open_model_dir(path);
        EncoderConfig& c = m.config_;
        c.family = match->family;
        c.architecture = match->architecture;
        read_config(d, config_path, c);

        const std::string weights_file = !d.weights.index_path().empty() ? d.weights.index_path()
                                         : d.weights.shards().empty()   ? path
                                                                        : d.weights.shards().front().path();
        const EncoderWeightSource src(weights_file, [&d](const std::string& name) -> std::optional<Tensor> {
            if (d.weights.find_tensor(name)) return d.weights.tensor(name);
            return std::nullopt;
        });
        if (c.family == EncoderFamily::resnet) {
            load_resnet_weights(c, src, m.weights_);
        } else if (c.family == EncoderFamily::efficientnet) {
            load_efficientnet_weights(c, src, m.weights_);
        } else if (c.family == EncoderFamily::clip) {
            load_clip_weights(c, src, m.weights_);
            m.load_clip_tokenizer(d);
        } else if (m.is_vision()) {
            load_vit_weights(c, src, m.weights_);
        } else {
            if (c.family == EncoderFamily::deberta_v2) load_deberta_weights(c, src, m.weights_);
            else load_bert_family_weights(c, src, m.weights_);
            m.tokenizer_ = load_tokenizer(d);
            if (m.tokenizer_->bos_id() < 0 || m.tokenizer_->eos_id() < 0)
                throw FormatError("hf", d.path, 0, "the tokenizer names no start/separator tokens ([CLS]/[SEP] or <s>/</s>)");
            if (m.tokenizer_->vocab_size() > c.vocab)
                throw FormatError("hf", d.path, 0, "the tokenizer has " + std::to_string(m.tokenizer_->vocab_size()) +
                                                       " tokens but the word embedding only " + std::to_string(c.vocab));
            if (c.pad_token_id < 0 || c.pad_token_id >= c.vocab)
                throw FormatError("json", config_path, 0, "pad_token_id " + std::to_string(c.pad_token_id) + " is outside the vocabulary");
        }
    }
};

// ---- the W8A8 GGUF container (written by `cq quantize --type w8a8-*`) -------------------------------

namespace {

// Right-pads token rows into one batch: ids with the pad id, mask 1 on the real tokens, token types where given
// (else 0), and where given each token's box (4 ints; padding gets 0s).
TextBatch padded_batch(const std::vector<std::vector<int32_t>>& ids, int32_t pad_id, const std::vector<std::vector<int32_t>>* types = nullptr,
                       const std::vector<std::vector<WordBox>>* boxes = nullptr) {
    int64_t seq = 1;
    for (const auto& row : ids) seq = std::max(seq, static_cast<int64_t>(row.size()));
    TextBatch batch;
    batch.batch = static_cast<int64_t>(ids.size());
    batch.seq = seq;
    const size_t n = static_cast<size_t>(batch.batch * seq);
    batch.ids.assign(n, pad_id);
    batch.type_ids.assign(n, 0);
    batch.mask.assign(n, 0);
    if (boxes) batch.bbox.assign(n * 4, 0);
    for (size_t i = 0; i < ids.size(); ++i) {
        const size_t row = i * static_cast<size_t>(seq);
        std::copy(ids[i].begin(), ids[i].end(), batch.ids.begin() + static_cast<ptrdiff_t>(row));
        if (types) std::copy((*types)[i].begin(), (*types)[i].end(), batch.type_ids.begin() + static_cast<ptrdiff_t>(row));
        std::fill_n(batch.mask.begin() + static_cast<ptrdiff_t>(row), ids[i].size(), 1);
        if (boxes)
            for (size_t t = 0; t < (*boxes)[i].size(); ++t) std::copy_n((*boxes)[i][t].data(), 4, batch.bbox.data() + (row + t) * 4);
    }
    return batch;
}

}  // namespace

void EncoderLoader::load_container(EncoderModel& m, const std::string& path) {
    const container::Reader f(path, "cq-encoder", "cq encoder container (decoder LLMs run with cq perplexity / run / bench)");
    const std::string config_path = (fs::path(f.dir()) / "config.json").string();
    hf::ModelDir d;
    d.path = f.dir();
    d.config = read_json_file(config_path, "hf");
    if (!d.config.is_object()) throw FormatError("gguf", path, 0, "the embedded config.json is not a JSON object");
    d.model_type = json_string(d.config, "model_type", "");
    const Supported* match = find_supported(d.config);
    if (!match) throw Unsupported("[encoder] " + path + ": model_type '" + d.model_type + "' is not supported; supported: " + supported_encoder_architectures());
    EncoderConfig& c = m.config_;
    c.family = match->family;
    c.architecture = match->architecture;
    read_config(d, path, c);
    const EncoderWeightSource src(path, [&f](const std::string& name) { return f.tensor(name); });
    if (c.family == EncoderFamily::resnet) load_resnet_weights(c, src, m.weights_);
    else if (c.family == EncoderFamily::efficientnet) load_efficientnet_weights(c, src, m.weights_);
    else if (c.family == EncoderFamily::clip) {
        load_clip_weights(c, src, m.weights_);
        m.load_clip_tokenizer(d);
    } else if (m.is_vision()) load_vit_weights(c, src, m.weights_);
    else {
        if (c.family == EncoderFamily::deberta_v2) load_deberta_weights(c, src, m.weights_);
        else load_bert_family_weights(c, src, m.weights_);
        m.tokenizer_ = load_tokenizer(d);
    }
    // Each Linear stored as I8 carries its scales; rebuild the kernels' layout from them.
    f.restore_linears(m.linears());
    if (const std::optional<std::string> attention = f.file().get_string(container::kAttentionPrecisionKey)) {
        const auto precision = attention_precision_from_name(*attention);
        if (!precision) throw FormatError("gguf", path, 0, std::string(container::kAttentionPrecisionKey) + " must be \"f32\" or \"int8\", not \"" + *attention + "\"");
        m.weights_.attention = *precision;
    }
}

std::string_view attention_precision_name(AttentionPrecision a) { return a == AttentionPrecision::int8 ? "int8" : "f32"; }

std::optional<AttentionPrecision> attention_precision_from_name(std::string_view name) {
    if (name == "f32") return AttentionPrecision::f32;
    if (name == "int8") return AttentionPrecision::int8;
    return std::nullopt;
}

std::string supported_encoder_architectures() {
    std::string out;
    for (const auto& s : kSupported) out += std::string(out.empty() ? "" : ", ") + s.architecture + " (" + s.model_type + ")";
    return out;
}

EncoderModel::EncoderModel() : scratch_(std::make_unique<EncoderScratch>()) {}
EncoderModel::~EncoderModel() = default;

std::unique_ptr<EncoderModel> EncoderModel::load(const std::string& hf_dir) {
    auto m = std::make_unique<EncoderModel>();
    m->path_ = hf_dir;
    EncoderLoader::load(*m, hf_dir);
    return m;
}

void EncoderModel::load_clip_tokenizer(const hf::ModelDir& d) {
    tokenizer_ = tok::make_clip_tokenizer(d.path);
    if (tokenizer_->vocab_size() > config_.clip_text.vocab)
        throw FormatError("hf", d.path, 0, "the tokenizer has " + std::to_string(tokenizer_->vocab_size()) +
                                               " tokens but the text tower's token embedding only " + std::to_string(config_.clip_text.vocab));
    config_.pad_token_id = tok::clip_pad_id(*tokenizer_);
}

TextBatch EncoderModel::tokenize_clip(std::span<const std::string> texts, int64_t max_len) const {
    if (max_len <= 2 || max_len > config_.clip_text.max_positions)
        throw InvalidArgument("[encoder] max_len " + std::to_string(max_len) + " must lie in (2, " + std::to_string(config_.clip_text.max_positions) +
                              "] for this model");
    std::vector<std::vector<int32_t>> ids(texts.size());
    for (size_t i = 0; i < texts.size(); ++i) {
        std::vector<int32_t> a = tokenizer_->encode(texts[i], false);
        if (static_cast<int64_t>(a.size()) > max_len - 2) a.resize(static_cast<size_t>(max_len - 2));  // truncation keeps the ends' specials
        ids[i].push_back(tokenizer_->bos_id());
        ids[i].insert(ids[i].end(), a.begin(), a.end());
        ids[i].push_back(tokenizer_->eos_id());
    }
    return padded_batch(ids, config_.pad_token_id);
}

TextBatch EncoderModel::tokenize(std::span<const std::string> texts, int64_t max_len, std::span<const std::string> pairs) const {
    if (!tokenizer_) throw InvalidArgument("[encoder] " + path_ + ": tokenize needs a text model, this one is " + config_.architecture);
    if (is_clip()) {
        if (!pairs.empty()) throw InvalidArgument("[encoder] CLIP's text tower takes single texts, not pairs");
        return tokenize_clip(texts, max_len);
    }
    if (!pairs.empty() && pairs.size() != texts.size())
        throw InvalidArgument("[encoder] tokenize got " + std::to_string(texts.size()) + " texts but " + std::to_string(pairs.size()) +
                              " second segments");
    const bool roberta = config_.family == EncoderFamily::roberta;
    const bool with_pairs = !pairs.empty();
    // [CLS] a [SEP] (b [SEP]); RoBERTa: <s> a </s> (</s> b </s>)
    const int64_t n_special = with_pairs ? (roberta ? 4 : 3) : 2;
    // DeBERTa without absolute positions (v3) has relative ones only, which clamp: any length runs
    const bool unbounded = config_.family == EncoderFamily::deberta_v2 && !config_.deberta.position_biased_input;
    const int64_t position_limit = unbounded ? int64_t{1} << 20 : roberta ? config_.max_positions - config_.pad_token_id - 1 : config_.max_positions;
    if (max_len <= n_special || max_len > position_limit)
        throw InvalidArgument("[encoder] max_len " + std::to_string(max_len) + " must lie in (" + std::to_string(n_special) + ", " +
                              std::to_string(position_limit) + "] for this model");
    const int32_t cls = tokenizer_->bos_id(), sep = tokenizer_->eos_id();

    std::vector<std::vector<int32_t>> ids(texts.size()), types(texts.size());
    for (size_t i = 0; i < texts.size(); ++i) {
        std::vector<int32_t> a = tokenizer_->encode(texts[i], false), b;
        if (with_pairs) b = tokenizer_->encode(pairs[i], false);
        // HF's longest_first: drop the last piece of the longer segment (of the second one on a tie).
        while (static_cast<int64_t>(a.size() + b.size()) > max_len - n_special) (a.size() > b.size() ? a : b).pop_back();
        auto& out = ids[i];
        auto& type = types[i];
        out.push_back(cls);
        out.insert(out.end(), a.begin(), a.end());
        out.push_back(sep);
        type.assign(out.size(), 0);
        if (with_pairs) {
            if (roberta) out.push_back(sep);
            out.insert(out.end(), b.begin(), b.end());
            out.push_back(sep);
            // BERT marks the second segment with token type 1; RoBERTa and DistilBERT have no token types.
            type.resize(out.size(), config_.family == EncoderFamily::bert || config_.family == EncoderFamily::layoutlm ||
                                            config_.family == EncoderFamily::deberta_v2 ? 1 : 0);
        }
    }
    return padded_batch(ids, config_.pad_token_id, &types);
}

TextBatch EncoderModel::tokenize_with_boxes(std::span<const std::string> texts, std::span<const std::vector<WordBox>> boxes,
                                            int64_t max_len) const {
    if (!tokenizer_) throw InvalidArgument("[encoder] " + path_ + ": tokenize needs a text model, this one is " + config_.architecture);
    if (!boxes.empty() && boxes.size() != texts.size())
        throw InvalidArgument("[encoder] tokenize_with_boxes got " + std::to_string(texts.size()) + " texts but " + std::to_string(boxes.size()) +
                              " box lists");
    if (max_len <= 2 || max_len > config_.max_positions)
        throw InvalidArgument("[encoder] max_len " + std::to_string(max_len) + " must lie in (2, " + std::to_string(config_.max_positions) +
                              "] for this model");
    // LayoutLM's processors: [SEP] gets the page's far corner (1000, …) on the usual 0..1000 grid; clamped to a smaller one.
    const int32_t far = static_cast<int32_t>(std::min<int64_t>(1000, std::max<int64_t>(config_.max_2d_positions - 1, 0)));
    const int32_t cls = tokenizer_->bos_id(), sep = tokenizer_->eos_id();
    std::vector<std::vector<int32_t>> ids(texts.size());
    std::vector<std::vector<WordBox>> token_boxes(texts.size());
    for (size_t i = 0; i < texts.size(); ++i) {
        // Words split on whitespace, each tokenized alone and its pieces given its box (HF's LayoutLM recipe).
        std::vector<std::string> words;
        std::istringstream in(texts[i]);
        for (std::string word; in >> word;) words.push_back(word);
        if (!boxes.empty() && boxes[i].size() != words.size())
            throw InvalidArgument("[encoder] text " + std::to_string(i) + " has " + std::to_string(words.size()) + " words but " +
                                  std::to_string(boxes[i].size()) + " boxes (one box per whitespace-separated word)");
        auto& out = ids[i];
        auto& ob = token_boxes[i];
        out.push_back(cls);
        ob.push_back({0, 0, 0, 0});
        for (size_t w = 0; w < words.size(); ++w) {
            const WordBox box = boxes.empty() ? WordBox{0, 0, 0, 0} : boxes[i][w];
            for (const int32_t id : tokenizer_->encode(words[w], false)) {
                if (static_cast<int64_t>(out.size()) >= max_len - 1) break;  // room for [SEP]
                out.push_back(id);
                ob.push_back(box);
            }
        }
        out.push_back(sep);
        ob.push_back({far, far, far, far});
    }
    return padded_batch(ids, config_.pad_token_id, nullptr, &token_boxes);
}

void EncoderModel::run_text(const TextBatch& batch, float* out, float* pooled, TextOutput mode) {
    if (is_vision()) throw InvalidArgument("[encoder] " + path_ + ": classify takes text; use classify_images for " + config_.architecture);
    const size_t n = static_cast<size_t>(batch.batch * batch.seq);
    if (batch.batch <= 0 || batch.seq <= 0 || batch.ids.size() != n || batch.mask.size() != n ||
        (!batch.type_ids.empty() && batch.type_ids.size() != n))
        throw InvalidArgument("[encoder] the text batch's ids/mask/type_ids do not hold batch·seq = " + std::to_string(batch.batch) + "·" +
                              std::to_string(batch.seq) + " entries");
    if (!batch.bbox.empty()) {
        if (config_.family != EncoderFamily::layoutlm)
            throw InvalidArgument("[encoder] " + config_.architecture + " takes no boxes, but the batch has them");
        if (batch.bbox.size() != n * 4)
            throw InvalidArgument("[encoder] the batch's bbox holds " + std::to_string(batch.bbox.size()) + " values, not batch·seq·4 = " +
                                  std::to_string(n * 4));
        // Every coordinate, and the height and width it implies, index a table of max_2d_positions rows.
        const int64_t limit = config_.max_2d_positions;
        for (size_t t = 0; t < n; ++t) {
            const int32_t* b = batch.bbox.data() + t * 4;
            const int64_t h = int64_t{b[3]} - b[1], w = int64_t{b[2]} - b[0];
            const bool ok = std::all_of(b, b + 4, [&](int32_t v) { return v >= 0 && v < limit; }) && h >= 0 && h < limit && w >= 0 && w < limit;
            if (!ok)
                throw InvalidArgument("[encoder] box (" + std::to_string(b[0]) + ", " + std::to_string(b[1]) + ", " + std::to_string(b[2]) + ", " +
                                      std::to_string(b[3]) + ") of sequence " + std::to_string(static_cast<int64_t>(t) / batch.seq) +
                                      ", token " + std::to_string(static_cast<int64_t>(t) % batch.seq) +
                                      " is not x0 ≤ x1, y0 ≤ y1 with coordinates in [0, " + std::to_string(limit) + ")");
        }
    }
    const EncoderPass pass{config_, weights_, *scratch_, block_observers(), *ops::activation_from_name(config_.hidden_act)};
    if (config_.family == EncoderFamily::deberta_v2) {
        if (mode == TextOutput::per_token) throw InvalidArgument("[encoder] " + config_.architecture + " gives logits per sequence: call classify");
        return mode == TextOutput::hidden ? deberta_forward(pass, batch, nullptr, nullptr, out) : deberta_forward(pass, batch, out, pooled, nullptr);
    }
    if (mode == TextOutput::hidden) return bert_family_forward(pass, batch, nullptr, nullptr, out);
    if (config_.feature_extraction)
        throw InvalidArgument("[encoder] " + config_.architecture + " has no classification head: call hidden_states");
    if (config_.token_classification && mode != TextOutput::per_token)
        throw InvalidArgument("[encoder] " + config_.architecture + " gives logits per token: call classify_tokens");
    if (mode == TextOutput::per_token && !config_.token_classification)
        throw InvalidArgument("[encoder] " + config_.architecture + " gives logits per sequence: call classify");
    bert_family_forward(pass, batch, out, pooled);
}

void EncoderModel::classify(const TextBatch& batch, float* logits, float* pooled) { run_text(batch, logits, pooled, TextOutput::per_sequence); }

void EncoderModel::classify_tokens(const TextBatch& batch, float* logits) { run_text(batch, logits, nullptr, TextOutput::per_token); }

void EncoderModel::hidden_states(const TextBatch& batch, float* hidden) { run_text(batch, hidden, nullptr, TextOutput::hidden); }

void EncoderModel::normalize_pixels(const uint8_t* pixels, int64_t batch) {
    if (batch <= 0) throw InvalidArgument("[encoder] " + config_.architecture + " needs at least one image");
    if (!pixels) throw InvalidArgument("[encoder] the pixels are null");
    const EncoderConfig& c = config_;
    const int64_t plane = c.image_size * c.image_size;
    std::vector<float>& x = scratch_->pixels;
    x.resize(static_cast<size_t>(batch * c.num_channels * plane));
    for (int64_t b = 0; b < batch; ++b)
        for (int64_t ch = 0; ch < c.num_channels; ++ch) {
            const size_t off = static_cast<size_t>((b * c.num_channels + ch) * plane);
            const float mean = c.image_mean[static_cast<size_t>(ch)], std = c.image_std[static_cast<size_t>(ch)];
            for (size_t i = off; i < off + static_cast<size_t>(plane); ++i) x[i] = (static_cast<float>(pixels[i]) * c.rescale_factor - mean) / std;
        }
}

void EncoderModel::set_zero_shot_classes(std::vector<std::string> names, std::string prompt_template) {
    if (!is_clip()) throw InvalidArgument("[encoder] zero-shot classes need a CLIP model, this one is " + config_.architecture);
    if (names.empty()) throw InvalidArgument("[encoder] set_zero_shot_classes needs at least one class name");
    if (prompt_template.find("{}") == std::string::npos)
        throw InvalidArgument("[encoder] the prompt template '" + prompt_template + "' has no '{}' for the class name");
    config_.labels = std::move(names);
    config_.num_labels = static_cast<int64_t>(config_.labels.size());
    config_.clip_text.prompt_template = std::move(prompt_template);
}

void EncoderModel::text_embeddings(const TextBatch& batch, float* embeds) {
    if (!is_clip()) throw InvalidArgument("[encoder] text_embeddings needs a CLIP model, this one is " + config_.architecture);
    const size_t n = static_cast<size_t>(std::max<int64_t>(batch.batch, 0) * std::max<int64_t>(batch.seq, 0));
    if (batch.batch <= 0 || batch.seq <= 0 || batch.ids.size() != n || batch.mask.size() != n)
        throw InvalidArgument("[encoder] the text batch's ids/mask do not hold batch·seq = " + std::to_string(batch.batch) + "·" +
                              std::to_string(batch.seq) + " entries");
    if (batch.seq > config_.clip_text.max_positions)
        throw InvalidArgument("[encoder] the text batch's " + std::to_string(batch.seq) + " tokens exceed CLIP's " +
                              std::to_string(config_.clip_text.max_positions) + " positions");
    if (!batch.bbox.empty()) throw InvalidArgument("[encoder] CLIP takes no boxes, but the batch has them");
    const EncoderConfig text = clip_text_tower(config_);
    const EncoderPass pass{text, weights_, *scratch_, block_observers(), *ops::activation_from_name(text.hidden_act)};
    clip_text_forward(pass, batch, embeds);
}

void EncoderModel::image_embeddings(const uint8_t* pixels, int64_t batch, float* embeds) {
    if (!is_clip()) throw InvalidArgument("[encoder] image_embeddings needs a CLIP model, this one is " + config_.architecture);
    normalize_pixels(pixels, batch);
    const EncoderPass pass{config_, weights_, *scratch_, block_observers(), *ops::activation_from_name(config_.hidden_act)};
    clip_vision_forward(pass, scratch_->pixels.data(), batch, embeds);
}

void EncoderModel::clip_logits(const uint8_t* pixels, int64_t n_images, const TextBatch& texts, float* logits_per_image) {
    const int64_t E = config_.clip_text.projection_dim;
    std::vector<float> image(static_cast<size_t>(std::max<int64_t>(n_images, 0) * E)), text(static_cast<size_t>(std::max<int64_t>(texts.batch, 0) * E));
    image_embeddings(pixels, n_images, image.data());
    text_embeddings(texts, text.data());
    // logits_per_image: [n_images, n_texts] = scale · image · textᵀ (the kernel table's GEMM, B given as rows)
    kernel_table().gemm_f32.fn(n_images, texts.batch, E, image.data(), E, text.data(), E, logits_per_image, texts.batch);
    for (int64_t i = 0; i < n_images * texts.batch; ++i) logits_per_image[i] *= weights_.logit_scale;
}

void EncoderModel::classify_images(const uint8_t* pixels, int64_t batch, float* logits) {
    if (!is_vision()) throw InvalidArgument("[encoder] " + path_ + ": classify_images needs a vision model, this one is " + config_.architecture);
    if (batch <= 0) throw InvalidArgument("[encoder] classify_images needs at least one image");
    const EncoderConfig& c = config_;
    if (is_clip()) {
        // Zero-shot: the prompts are embedded on every call, so observers (calibration, stats) see the text tower too.
        if (c.labels.empty())
            throw InvalidArgument("[encoder] " + path_ + ": CLIP classifies images zero-shot and needs class names: config.json's id2label "
                                                         "names none (set_zero_shot_classes)");
        const std::string& tmpl = c.clip_text.prompt_template;
        std::vector<std::string> prompts;
        for (const auto& name : c.labels) prompts.push_back(std::string(tmpl).replace(tmpl.find("{}"), 2, name));
        return clip_logits(pixels, batch, tokenize_clip(prompts, c.clip_text.max_positions), logits);
    }
    normalize_pixels(pixels, batch);
    const EncoderPass pass{config_, weights_, *scratch_, block_observers(), *ops::activation_from_name(config_.hidden_act)};
    if (c.family == EncoderFamily::resnet) resnet_forward(pass, scratch_->pixels.data(), batch, logits);
    else if (c.family == EncoderFamily::efficientnet) efficientnet_forward(pass, scratch_->pixels.data(), batch, logits);
    else vit_forward(pass, scratch_->pixels.data(), batch, logits);
}

void EncoderModel::collect_linears(std::vector<Linear*>& out) {
    if (is_clip()) {
        // CLIP, as classify_images runs it: the vision tower and its projection, then the text tower and its projection
        out.push_back(&weights_.patch_embd);
        for (auto* blocks : {&weights_.blocks, &weights_.text_blocks}) {
            for (auto& b : *blocks)
                for (Linear* l : {&b.q, &b.k, &b.v, &b.attn_out, &b.ffn_in, &b.ffn_out}) out.push_back(l);
            out.push_back(blocks == &weights_.blocks ? &*weights_.visual_projection : &*weights_.text_projection);
        }
        return;
    }
    if (weights_.top) {
        // EfficientNet, in forward order: the stem, each block's expansion, squeeze-excite and projection, the top conv
        out.push_back(&weights_.stem->conv);
        for (auto& u : weights_.mbconv_units) {
            if (u.expand) out.push_back(&u.expand->conv);
            for (Linear* l : {&u.se_reduce, &u.se_expand, &u.project.conv}) out.push_back(l);
        }
        out.push_back(&weights_.top->conv);
        out.push_back(&weights_.classifier);
        return;
    }
    if (weights_.stem) {
        // ResNet: the stem, then each block's path and shortcut convolutions, then the classifier
        out.push_back(&weights_.stem->conv);
        for (auto& u : weights_.residual_units) {
            for (auto& conv : u.path) out.push_back(&conv.conv);
            if (u.shortcut) out.push_back(&u.shortcut->conv);
        }
        out.push_back(&weights_.classifier);
        return;
    }
    if (is_vision()) out.push_back(&weights_.patch_embd);
    if (weights_.embed_proj) out.push_back(&*weights_.embed_proj);
    for (auto& b : weights_.blocks) {
        // DeBERTa's position projections run after q, k, v (on the relative embeddings), before the attention output
        for (Linear* l : {&b.q, &b.k, &b.v}) out.push_back(l);
        for (auto* pos : {&b.pos_k, &b.pos_q})
            if (*pos) out.push_back(&**pos);
        for (Linear* l : {&b.attn_out, &b.ffn_in, &b.ffn_out}) out.push_back(l);
    }
    if (weights_.pooler) out.push_back(&*weights_.pooler);
    if (weights_.pre_classifier) out.push_back(&*weights_.pre_classifier);
    if (!config_.feature_extraction) out.push_back(&weights_.classifier);
    if (weights_.dist_classifier) out.push_back(&*weights_.dist_classifier);
}

std::vector<LayerInfo> EncoderModel::layers() const {
    std::vector<LayerInfo> out;
    const auto tensor = [&](const std::string& name, LayerRole role, int64_t block, const Tensor& t) {
        out.push_back(LayerInfo{name, name, role, block, t.shape(), std::string(dtype_name(t.dtype())), t.nbytes(), false});
    };
    const auto linear = [&](const Linear& l) {
        out.push_back(LayerInfo{l.name, l.source_name, l.role, l.block, {l.n_out(), l.n_in()}, l.format(), l.bytes(), true});
    };
    const EncoderWeights& w = weights_;
    if (w.top) {
        // EfficientNet: 1×1 / stem / top convs and the squeeze-excite convs as Linears (BatchNorms folded in), each
        // depthwise conv as a layer of its own ([k·k, channels], f32: no pass rewrites it)
        linear(w.stem->conv);
        for (const auto& u : w.mbconv_units) {
            if (u.expand) linear(u.expand->conv);
            const DepthwiseConvUnit& d = u.depthwise;
            out.push_back(LayerInfo{d.name, d.name, LayerRole::depthwise_conv, d.block, d.weight.shape(), std::string(dtype_name(d.weight.dtype())),
                                    d.weight.nbytes() + d.bias.nbytes(), false});
            for (const Linear* l : {&u.se_reduce, &u.se_expand, &u.project.conv}) linear(*l);
        }
        linear(w.top->conv);
        linear(w.classifier);
        return out;
    }
    if (w.stem) {
        // ResNet: convolutions as Linears over [C·k·k] patches, their BatchNorms folded in (so not listed apart)
        linear(w.stem->conv);
        for (const auto& u : w.residual_units) {
            for (const auto& conv : u.path) linear(conv.conv);
            if (u.shortcut) linear(u.shortcut->conv);
        }
        linear(w.classifier);
        return out;
    }
    if (is_clip()) {
        // CLIP: the vision tower (pre-LN blocks), its projection, the text tower, its projection, the logit scale
        linear(w.patch_embd);
        tensor("vision_model.embeddings.class_embedding", LayerRole::other, -1, *w.cls_token);
        tensor("vision_model.embeddings.position_embedding", LayerRole::position_embed, -1, w.pos_embd);
        tensor(w.pre_norm->name, LayerRole::norm, -1, w.pre_norm->weight);
        const auto blocks = [&](const std::vector<EncoderBlock>& bs) {
            for (const EncoderBlock& b : bs) {
                tensor(b.attn_norm.name, LayerRole::norm, b.q.block, b.attn_norm.weight);
                for (const Linear* l : {&b.q, &b.k, &b.v, &b.attn_out}) linear(*l);
                tensor(b.ffn_norm.name, LayerRole::norm, b.q.block, b.ffn_norm.weight);
                linear(b.ffn_in);
                linear(b.ffn_out);
            }
        };
        blocks(w.blocks);
        tensor(w.final_norm->name, LayerRole::norm, -1, w.final_norm->weight);
        linear(*w.visual_projection);
        tensor("text_model.embeddings.token_embedding", LayerRole::token_embed, -1, w.word_embd);
        tensor("text_model.embeddings.position_embedding", LayerRole::position_embed, -1, *w.text_pos_embd);
        blocks(w.text_blocks);
        tensor(w.text_final_norm->name, LayerRole::norm, -1, w.text_final_norm->weight);
        linear(*w.text_projection);
        return out;
    }
    if (is_vision()) {
        linear(w.patch_embd);
        tensor("cls_token", LayerRole::other, -1, *w.cls_token);
        if (w.dist_token) tensor("distillation_token", LayerRole::other, -1, *w.dist_token);
        tensor("position_embeddings", LayerRole::position_embed, -1, w.pos_embd);
    } else {
        tensor("word_embeddings", LayerRole::token_embed, -1, w.word_embd);
        if (!w.pos_embd.shape().empty()) tensor("position_embeddings", LayerRole::position_embed, -1, w.pos_embd);
        if (w.x_pos_embd) {
            tensor("x_position_embeddings", LayerRole::position_embed, -1, *w.x_pos_embd);
            tensor("y_position_embeddings", LayerRole::position_embed, -1, *w.y_pos_embd);
            tensor("h_position_embeddings", LayerRole::position_embed, -1, *w.h_pos_embd);
            tensor("w_position_embeddings", LayerRole::position_embed, -1, *w.w_pos_embd);
        }
        if (w.type_embd) tensor("token_type_embeddings", LayerRole::type_embed, -1, *w.type_embd);
        if (w.embed_proj) linear(*w.embed_proj);
        tensor(w.embd_norm.name, LayerRole::norm, -1, w.embd_norm.weight);
        if (w.rel_embd) tensor("deberta.encoder.rel_embeddings", LayerRole::position_embed, -1, *w.rel_embd);
        if (w.rel_norm) tensor(w.rel_norm->name, LayerRole::norm, -1, w.rel_norm->weight);
    }
    for (size_t i = 0; i < w.blocks.size(); ++i) {
        const EncoderBlock& b = w.blocks[i];
        const int64_t n = static_cast<int64_t>(i);
        // ViT normalises each sub-layer's input (pre-LN), the BERT family its output (post-LN).
        if (is_vision()) tensor(b.attn_norm.name, LayerRole::norm, n, b.attn_norm.weight);
        for (const Linear* l : {&b.q, &b.k, &b.v}) linear(*l);
        for (const auto* pos : {&b.pos_k, &b.pos_q})
            if (*pos) linear(**pos);
        linear(b.attn_out);
        const Norm& between = is_vision() ? b.ffn_norm : b.attn_norm;
        tensor(between.name, LayerRole::norm, n, between.weight);
        linear(b.ffn_in);
        linear(b.ffn_out);
        if (!is_vision()) tensor(b.ffn_norm.name, LayerRole::norm, n, b.ffn_norm.weight);
    }
    if (w.final_norm) tensor(w.final_norm->name, LayerRole::norm, -1, w.final_norm->weight);
    for (const Linear* l : {w.pooler ? &*w.pooler : nullptr, w.pre_classifier ? &*w.pre_classifier : nullptr,
                            config_.feature_extraction ? nullptr : &w.classifier,
                            w.dist_classifier ? &*w.dist_classifier : nullptr})
        if (l) linear(*l);
    return out;
}

}  // namespace cq
