// DETR (HF DetrForObjectDetection, transformers' own ResNet backbone): config.json and weights into DetrModel, and the
// forward pass as modeling_detr.py runs it: the ResNet backbone (resnet.cpp: convs with frozen BatchNorm folded in, as
// Linears over im2col patches) up to the last out_features stage → input_projection (a 1×1 conv: a Linear over NHWC rows)
// → sine or learned 2-D positions → post-LN encoder layers whose self-attention adds the positions to queries and keys,
// not values → post-LN decoder layers over zero-initialised object queries (query_position_embeddings added to the
// self-attention's queries and keys and to the cross-attention's queries; the encoder's positions to its keys) → the
// decoder's LayerNorm → class head (num_labels + 1) and the 3-layer box MLP with a sigmoid.
#include "cq/detr.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <numbers>
#include <optional>

#include "core/json_file.h"
#include "cq/error.h"
#include "cq/io/gguf.h"
#include "cq/kernels.h"
#include "cq/thread_pool.h"
#include "io/hf/hf_config.h"
#include "io/hf/hf_model.h"
#include "models/detr_internal.h"
#include "models/model_container.h"
#include "models/seq2seq_internal.h"
#include "models/weight_helpers.h"
#include "ops/encoder_ops.h"
#include "ops/ops.h"

namespace cq {

namespace fs = std::filesystem;


namespace {

constexpr const char* kBackbone = "model.backbone.conv_encoder.model.";
// DETR's ImageNet defaults (DetrImageProcessor: IMAGENET_DEFAULT_MEAN / STD)
constexpr float kImagenetMean[3] = {0.485f, 0.456f, 0.406f};
constexpr float kImagenetStd[3] = {0.229f, 0.224f, 0.225f};

ops::Activation activation(const std::string& name, const std::string& where) {
    const auto act = ops::activation_from_name(name);
    if (!act)
        throw Unsupported("[detr] " + where + " '" + name + "' is not supported (cq implements relu, gelu, gelu_new, silu / swish, tanh, quick_gelu)");
    return *act;
}

// A non-empty list of positive integers under `key` (hidden_sizes, depths).
std::vector<int64_t> positive_list(const hf::Config& j, const char* key, const std::vector<int64_t>& fallback) {
    const nlohmann::json* v = j.find(key);
    if (!v) return fallback;
    std::vector<int64_t> out;
    if (!v->is_array() || v->empty()) j.fail(key, "is not a non-empty list of positive integers");
    for (const auto& x : *v) {
        if (!x.is_number_integer() || x.get<int64_t>() <= 0) j.fail(key, "is not a non-empty list of positive integers");
        out.push_back(x.get<int64_t>());
    }
    return out;
}

// The stage whose output feeds the transformer: the last of out_features ("stem" 0, "stageN" N) or out_indices, else the
// last stage (transformers' default for a backbone that names neither).
int64_t feature_stage(const hf::Config& b, int64_t n_stages) {
    if (const nlohmann::json* f = b.find("out_features")) {
        if (!f->is_array() || f->empty() || !f->back().is_string()) b.fail("out_features", "is not a non-empty list of stage names");
        const std::string name = f->back().get<std::string>();
        if (name == "stem") return 0;
        for (int64_t s = 1; s <= n_stages; ++s)
            if (name == "stage" + std::to_string(s)) return s;
        b.fail("out_features", "names '" + name + "', which is not one of stem, stage1 … stage" + std::to_string(n_stages));
    }
    if (const nlohmann::json* i = b.find("out_indices")) {
        if (!i->is_array() || i->empty() || !i->back().is_number_integer()) b.fail("out_indices", "is not a non-empty list of stage indices");
        int64_t idx = i->back().get<int64_t>();
        if (idx < 0) idx += n_stages + 1;  // Python's negative indices into stage_names
        if (idx < 0 || idx > n_stages) b.fail("out_indices", "holds " + std::to_string(i->back().get<int64_t>()) + ", outside stem + " + std::to_string(n_stages) + " stages");
        return idx;
    }
    return n_stages;
}

DetrConfig read_config(const hf::Config& j, const hf::ModelDir& d) {
    const std::string& path = j.path();
    DetrConfig c;
    if (const nlohmann::json* a = j.find("architectures"); a && a->is_array() && !a->empty() && (*a)[0].is_string()) {
        const std::string arch = (*a)[0].get<std::string>();
        if (arch != "DetrForObjectDetection")
            throw Unsupported("[detr] " + path + ": architecture '" + arch + "' is not supported; supported: DetrForObjectDetection (detr)" +
                              (arch == "DetrForSegmentation" ? " — the mask head (masks / panoptic) is not implemented" : ""));
    }
    // What would change the backbone cq cannot run: timm's models, dilation (DC5), keyword overrides.
    if (j.bool_or("use_timm_backbone", true))
        throw Unsupported("[detr] " + path + ": use_timm_backbone is true (or absent, DetrConfig's default): cq runs transformers' own ResNet "
                                             "backbone only (use_timm_backbone false with a ResNet backbone_config)");
    if (const nlohmann::json* dil = j.find("dilation"); dil && !(dil->is_boolean() && !dil->get<bool>()))
        throw Unsupported("[detr] " + path + ": 'dilation' (the DC5 backbone) is not supported");
    if (const nlohmann::json* kw = j.find("backbone_kwargs"); kw && !(kw->is_object() && kw->empty()))
        throw Unsupported("[detr] " + path + ": 'backbone_kwargs' is not supported (the backbone comes from backbone_config)");
    if (j.bool_or("use_pretrained_backbone", false) && j.find("backbone"))
        throw Unsupported("[detr] " + path + ": a named pretrained 'backbone' is not supported (the backbone comes from backbone_config)");
    const hf::Config b = j.section("backbone_config");
    if (!j.find("backbone_config")) throw Unsupported("[detr] " + path + ": 'backbone_config' is missing (cq needs the ResNet backbone's config)");
    if (const std::string type = b.string_or("model_type", ""); type != "resnet")
        throw Unsupported("[detr] " + path + ": backbone_config.model_type '" + type + "' is not supported (cq implements resnet)");

    // ResNetConfig's fields, with its defaults (ResNet-50's) for what the file leaves out
    EncoderConfig& bc = c.backbone;
    bc.family = EncoderFamily::resnet;
    bc.architecture = "DetrForObjectDetection";
    bc.stage_sizes = positive_list(b, "hidden_sizes", {256, 512, 1024, 2048});
    bc.stage_depths = positive_list(b, "depths", {3, 4, 6, 3});
    if (bc.stage_sizes.size() != bc.stage_depths.size())
        b.fail("hidden_sizes", "names " + std::to_string(bc.stage_sizes.size()) + " stages but 'depths' " + std::to_string(bc.stage_depths.size()));
    bc.embedding_size = b.size_or({"embedding_size"}, 64);
    bc.num_channels = b.size_or({"num_channels"}, 3);
    const std::string layer_type = b.string_or("layer_type", "bottleneck");
    if (layer_type != "bottleneck" && layer_type != "basic")
        throw Unsupported("[detr] " + b.path() + ": layer_type '" + layer_type + "' is not supported (bottleneck, basic)");
    bc.bottleneck = layer_type == "bottleneck";
    if (bc.bottleneck)
        for (const int64_t s : bc.stage_sizes)
            if (s % 4 != 0) b.fail("hidden_sizes", "holds " + std::to_string(s) + ", not a multiple of 4 as bottleneck blocks need");
    bc.downsample_in_first_stage = b.bool_or("downsample_in_first_stage", false);
    bc.downsample_in_bottleneck = b.bool_or("downsample_in_bottleneck", false);
    bc.hidden_act = b.string_or("hidden_act", "relu");
    c.backbone_stages = feature_stage(b, static_cast<int64_t>(bc.stage_sizes.size()));
    // Only the stages up to the feature map run (their outputs after it feed nothing).
    bc.stage_sizes.resize(static_cast<size_t>(c.backbone_stages));
    bc.stage_depths.resize(static_cast<size_t>(c.backbone_stages));

    c.d_model = j.size_or({"d_model", "hidden_size"}, 256);
    c.encoder_layers = j.size_or({"encoder_layers"}, 6);
    c.decoder_layers = j.size_or({"decoder_layers"}, 6);
    c.encoder_heads = j.size_or({"encoder_attention_heads"}, 8);
    c.decoder_heads = j.size_or({"decoder_attention_heads"}, 8);
    c.encoder_ffn = j.size_or({"encoder_ffn_dim"}, 2048);
    c.decoder_ffn = j.size_or({"decoder_ffn_dim"}, 2048);
    c.num_queries = j.size_or({"num_queries"}, 100);
    c.activation = j.string_or("activation_function", "relu");
    c.auxiliary_loss = j.bool_or("auxiliary_loss", false);
    const std::string pos = j.string_or("position_embedding_type", "sine");
    if (pos != "sine" && pos != "learned")
        throw Unsupported("[detr] " + path + ": position_embedding_type '" + pos + "' is not supported (sine, learned)");
    c.learned_positions = pos == "learned";
    if (c.d_model % 2 != 0) j.fail("d_model", "is odd: the 2-D position embeddings give d_model / 2 channels per axis");
    for (const auto& [key, heads] : {std::pair{"encoder_attention_heads", c.encoder_heads}, std::pair{"decoder_attention_heads", c.decoder_heads}})
        if (c.d_model % heads != 0) j.fail(key, std::to_string(heads) + " does not divide d_model " + std::to_string(c.d_model));

    // id2label (num_labels = its size, as PretrainedConfig sets it), else num_labels
    c.labels = j.labels();
    c.num_labels = static_cast<int64_t>(c.labels.size());

    // the image processor's rescale and normalisation (no resize: images come at their size)
    read_image_preprocessor(d, bc, 0.0f, 1.0f);
    const std::string pre_path = (fs::path(d.path) / "preprocessor_config.json").string();
    std::error_code ec;
    const nlohmann::json pre = fs::is_regular_file(pre_path, ec) ? read_json_file(pre_path, "json") : nlohmann::json::object();
    const bool normalize = !pre.contains("do_normalize") || pre["do_normalize"] != false;
    if (normalize && bc.num_channels == 3) {
        if (!pre.contains("image_mean") || pre["image_mean"].is_null()) bc.image_mean.assign(std::begin(kImagenetMean), std::end(kImagenetMean));
        if (!pre.contains("image_std") || pre["image_std"].is_null()) bc.image_std.assign(std::begin(kImagenetStd), std::end(kImagenetStd));
    }
    return c;
}

// One DETR attention block's projections: prefix + q_proj / k_proj / v_proj / out_proj, all [d, d].
void load_detr_attention(const EncoderWeightSource& src, const std::string& prefix, int64_t d, int64_t block, Linear& q, Linear& k, Linear& v,
                         Linear& out) {
    static constexpr AttentionNames kNames{"q_proj", "k_proj", "v_proj", "out_proj"};
    load_attention(src, prefix, kNames, d, d, block, q, k, v, out);
}

// ---- forward pieces --------------------------------------------------------------------------------------------

// PyTorch's nearest-neighbour source index (F.interpolate, mode "nearest"): floor(out · in/out) in float, clamped.
int64_t nearest_source(int64_t out_index, int64_t in_size, int64_t out_size) {
    if (out_size == in_size) return out_index;
    if (out_size == 2 * in_size) return out_index >> 1;
    const float scale = static_cast<float>(in_size) / static_cast<float>(out_size);
    return std::min(static_cast<int64_t>(std::floor(static_cast<float>(out_index) * scale)), in_size - 1);
}

// DetrSinePositionEmbedding(d / 2, normalize=True): pos: [B·h·w, d]; channels [0, d/2) from the row (y) cumulative sum of
// the feature mask, [d/2, d) from the column (x) one; channel i of each half is sin (even i) or cos (odd i) of
// cumsum / (last cumsum + 1e-6) · 2π / 10000^(2⌊i/2⌋ / (d/2)), in float32 as torch computes it. mask: [B, h, w] (1 real).
void sine_positions(const std::vector<float>& mask, int64_t B, int64_t h, int64_t w, int64_t d, std::vector<float>& pos) {
    const int64_t half = d / 2;
    std::vector<float> dim_t(static_cast<size_t>(half));
    for (int64_t i = 0; i < half; ++i)
        dim_t[static_cast<size_t>(i)] = std::pow(10000.0f, static_cast<float>(2 * (i / 2)) / static_cast<float>(half));
    const float scale = static_cast<float>(2 * std::numbers::pi), eps = 1e-6f;
    std::vector<float> ycum(mask.size()), xcum(mask.size());
    for (int64_t b = 0; b < B; ++b) {
        const float* m = mask.data() + b * h * w;
        float* yc = ycum.data() + b * h * w;
        float* xc = xcum.data() + b * h * w;
        for (int64_t y = 0; y < h; ++y)
            for (int64_t x = 0; x < w; ++x) {
                yc[y * w + x] = m[y * w + x] + (y > 0 ? yc[(y - 1) * w + x] : 0.0f);
                xc[y * w + x] = m[y * w + x] + (x > 0 ? xc[y * w + x - 1] : 0.0f);
            }
        for (int64_t y = 0; y < h; ++y)
            for (int64_t x = 0; x < w; ++x) {
                const float ye = yc[y * w + x] / (yc[(h - 1) * w + x] + eps) * scale;
                const float xe = xc[y * w + x] / (xc[y * w + w - 1] + eps) * scale;
                float* p = pos.data() + ((b * h + y) * w + x) * d;
                for (int64_t i = 0; i < half; ++i) {
                    const float vy = ye / dim_t[static_cast<size_t>(i)], vx = xe / dim_t[static_cast<size_t>(i)];
                    p[i] = i % 2 == 0 ? std::sin(vy) : std::cos(vy);
                    p[half + i] = i % 2 == 0 ? std::sin(vx) : std::cos(vx);
                }
            }
    }
}

// DetrLearnedPositionEmbedding: pos[b, y, x] = column_embeddings[x] ‖ row_embeddings[y] (the mask plays no part).
void learned_positions(const Tensor& row, const Tensor& col, int64_t B, int64_t h, int64_t w, int64_t d, std::vector<float>& pos) {
    const int64_t half = d / 2;
    std::vector<int32_t> xs(static_cast<size_t>(w)), ys(static_cast<size_t>(h));
    for (int64_t x = 0; x < w; ++x) xs[static_cast<size_t>(x)] = static_cast<int32_t>(x);
    for (int64_t y = 0; y < h; ++y) ys[static_cast<size_t>(y)] = static_cast<int32_t>(y);
    std::vector<float> xe(static_cast<size_t>(w * half)), ye(static_cast<size_t>(h * half));
    ops::embedding(col, xs, xe.data());
    ops::embedding(row, ys, ye.data());
    for (int64_t b = 0; b < B; ++b)
        for (int64_t y = 0; y < h; ++y)
            for (int64_t x = 0; x < w; ++x) {
                float* p = pos.data() + ((b * h + y) * w + x) * d;
                std::copy_n(xe.data() + x * half, half, p);
                std::copy_n(ye.data() + y * half, half, p + half);
            }
}

// Cross-attention of Tq queries over Tk keys per image: q: [B·Tq, D], k / v: [B·Tk, D] (head h at column h·head_dim);
// key_mask: [B, Tk] (null: none), 0 = padding, given weight 0 unless every key of the image is padding; out: [B·Tq, D].
// Two GEMMs and the softmax kernel per (image, head) over the thread pool; each task's arithmetic is the same whatever the
// split, so every thread count gives the same bytes.
void cross_attention(const float* q, const float* k, const float* v, int64_t D, int64_t B, int64_t Tq, int64_t Tk, int64_t n_head,
                     const int32_t* key_mask, float* out) {
    const KernelTable& kt = kernel_table();
    const int64_t hd = D / n_head;
    const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
    ThreadPool::global().parallel_for(B * n_head, [&](int64_t t0, int64_t t1) {
        std::vector<float> scores(static_cast<size_t>(Tq * Tk));
        for (int64_t task = t0; task < t1; ++task) {
            const int64_t b = task / n_head, h = task % n_head;
            const float* qb = q + b * Tq * D + h * hd;
            const float* kb = k + b * Tk * D + h * hd;
            const float* vb = v + b * Tk * D + h * hd;
            const int32_t* mask = key_mask ? key_mask + b * Tk : nullptr;
            if (mask && std::none_of(mask, mask + Tk, [](int32_t m) { return m == 0; })) mask = nullptr;
            if (mask && std::none_of(mask, mask + Tk, [](int32_t m) { return m != 0; })) mask = nullptr;
            // scores: [Tq, Tk] = Q_bh · K_bhᵀ
            kt.gemm_f32.fn(Tq, Tk, hd, qb, D, kb, D, scores.data(), Tk);
            for (int64_t t = 0; t < Tq; ++t) {
                float* row = scores.data() + t * Tk;
                if (mask)
                    for (int64_t j = 0; j < Tk; ++j)
                        if (!mask[j]) row[j] = -INFINITY;
                kt.softmax_f32.fn(row, Tk, scale);
            }
            // out_bh: [Tq, hd] = P · V_bh
            kt.gemm_f32_nn.fn(Tq, hd, Tk, scores.data(), Tk, vb, D, out + b * Tq * D + h * hd, D);
        }
    });
}

// y = x + p, elementwise over n values
std::vector<float> sum_of(const std::vector<float>& x, const std::vector<float>& p) {
    std::vector<float> y = x;
    ops::add(y.data(), p.data(), static_cast<int64_t>(y.size()));
    return y;
}

// x: [T, d] → LN(x + f(x)) with f the layer's FFN: fc2(act(fc1 x)).
void ffn_sublayer(const Seq2SeqLayer& l, ops::Activation act, std::vector<float>& x, int64_t T, int64_t d, float eps) {
    std::vector<float> h(static_cast<size_t>(T * l.ffn_in.n_out())), y(x.size());
    ops::linear(l.ffn_in, x.data(), T, h.data());
    ops::activate(act, h.data(), static_cast<int64_t>(h.size()));
    ops::linear(l.ffn_out, h.data(), T, y.data());
    ops::add_layer_norm_rows(x.data(), y.data(), T, d, l.ffn_norm.weight, &*l.ffn_norm.bias, eps, x.data());
}

}  // namespace

DetrModel::DetrModel() : s_(std::make_unique<State>()) {}
DetrModel::~DetrModel() = default;

std::unique_ptr<DetrModel> DetrModel::load(const std::string& hf_dir) {
    auto m = std::make_unique<DetrModel>();
    m->path_ = hf_dir;
    std::error_code ec;
    // cq's container (DetrModel::save): the same loader reads its tensors, its embedded files stand for the directory's.
    std::optional<container::Reader> packed;
    if (fs::is_regular_file(hf_dir, ec)) packed.emplace(hf_dir, "cq-detr", "cq DETR container");
    const std::string dir_path = packed ? packed->dir() : hf_dir;
    const std::string config_path = (fs::path(dir_path) / "config.json").string();
    if (!fs::is_directory(dir_path, ec)) throw IoError("[detr] '" + hf_dir + "' is not an HF model directory");
    if (!fs::is_regular_file(config_path, ec)) throw IoError("[detr] " + config_path + " does not exist");
    const nlohmann::json j = read_json_file(config_path, "hf");
    const hf::Config c(j, packed ? hf_dir + " (config.json)" : config_path);
    if (const std::string type = c.string_or("model_type", ""); type != "detr")
        throw Unsupported("[detr] " + config_path + ": model_type '" + type + "' is not supported; supported: DetrForObjectDetection (detr)");
    hf::ModelDir d;
    if (packed) {
        d.path = dir_path;
        d.config = j;
        d.model_type = "detr";
    } else {
        d = hf::open_model_dir(hf_dir);
    }
    DetrConfig& g = m->config_;
    g = read_config(c, d);
    State& s = *m->s_;
    s.backbone_act = activation(g.backbone.hidden_act, "backbone_config.hidden_act");
    s.act = activation(g.activation, "activation_function");

    const std::string weights_file = packed                             ? hf_dir
                                     : !d.weights.index_path().empty() ? d.weights.index_path()
                                     : d.weights.shards().empty()      ? hf_dir
                                                                       : d.weights.shards().front().path();
    const EncoderWeightSource src(weights_file, [&d, &packed](const std::string& name) -> std::optional<Tensor> {
        if (packed) return packed->tensor(name);
        if (d.weights.find_tensor(name)) return d.weights.tensor(name);
        return std::nullopt;
    });
    const EncoderConfig& bc = g.backbone;
    load_resnet_backbone(bc, src, kBackbone, g.backbone_stages, s.backbone);
    const int64_t units = static_cast<int64_t>(s.backbone.residual_units.size());
    const int64_t D = g.d_model, features = g.backbone_stages == 0 ? bc.embedding_size : bc.stage_sizes.back();
    // input_projection: a 1×1 conv [D, C, 1, 1], read as [D, C]
    s.input_projection = src.linear("model.input_projection", D, features);
    s.query_pos = src.get("model.query_position_embeddings.weight", {g.num_queries, D});
    if (g.learned_positions) {
        s.row_embd = models::to_f32(src.get("model.backbone.position_embedding.row_embeddings.weight", {g.learned_position_rows, D / 2}));
        s.col_embd = models::to_f32(src.get("model.backbone.position_embedding.column_embeddings.weight", {g.learned_position_rows, D / 2}));
    }
    for (int64_t l = 0; l < g.encoder_layers; ++l) {
        const std::string p = "model.encoder.layers." + std::to_string(l) + ".";
        const int64_t block = units + l;
        Seq2SeqLayer& e = s.encoder.emplace_back();
        load_detr_attention(src, p + "self_attn.", D, block, e.q, e.k, e.v, e.attn_out);
        e.attn_norm = src.norm(p + "self_attn_layer_norm", D);
        e.ffn_in = src.linear(p + "fc1", g.encoder_ffn, D, LayerRole::ffn_up, block);
        e.ffn_out = src.linear(p + "fc2", D, g.encoder_ffn, LayerRole::ffn_down, block);
        e.ffn_norm = src.norm(p + "final_layer_norm", D);
    }
    for (int64_t l = 0; l < g.decoder_layers; ++l) {
        const std::string p = "model.decoder.layers." + std::to_string(l) + ".";
        const int64_t block = units + g.encoder_layers + l;
        Seq2SeqLayer& e = s.decoder.emplace_back();
        load_detr_attention(src, p + "self_attn.", D, block, e.q, e.k, e.v, e.attn_out);
        e.attn_norm = src.norm(p + "self_attn_layer_norm", D);
        e.cross_q.emplace(), e.cross_k.emplace(), e.cross_v.emplace(), e.cross_out.emplace();
        load_detr_attention(src, p + "encoder_attn.", D, block, *e.cross_q, *e.cross_k, *e.cross_v, *e.cross_out);
        e.cross_norm = src.norm(p + "encoder_attn_layer_norm", D);
        e.ffn_in = src.linear(p + "fc1", g.decoder_ffn, D, LayerRole::ffn_up, block);
        e.ffn_out = src.linear(p + "fc2", D, g.decoder_ffn, LayerRole::ffn_down, block);
        e.ffn_norm = src.norm(p + "final_layer_norm", D);
    }
    s.decoder_norm = src.norm("model.decoder.layernorm", D);
    s.class_head = src.linear("class_labels_classifier", g.num_labels + 1, D, LayerRole::classifier);
    for (int i = 0; i < 3; ++i) s.bbox[i] = src.linear("bbox_predictor.layers." + std::to_string(i), i == 2 ? 4 : D, D);
    // Linears stored as I8 get their W8A8 form back from the scales beside them; block-typed ones the kernels' layout.
    if (packed) packed->restore_linears(m->linears());
    return m;
}

int64_t DetrModel::n_blocks() const {
    return static_cast<int64_t>(s_->backbone.residual_units.size()) + config_.encoder_layers + config_.decoder_layers;
}

void DetrModel::save(const std::string& path, const SaveOptions& options) const {
    std::error_code ec;
    if (!fs::is_directory(path_, ec))
        throw Unsupported("[save] " + path_ + " is already cq's DETR container; save a model loaded from its HF directory");
    // The backbone's convs are held BatchNorm-folded; a quantized one is written folded (the loader does not fold an I8 or
    // block-typed weight again), an f32 one as the directory has it (folded again at load).
    container::write(path_, path, "cq-detr", linears(), {}, options);
}

bool is_detr_model(const std::string& path) {
    std::error_code ec;
    try {
        if (fs::is_directory(path, ec)) return hf::model_type_of_dir(path) == "detr";
        if (!fs::is_regular_file(path, ec) || fs::path(path).extension() == ".onnx") return false;
        return gguf::File::open(path).get_string("general.architecture") == "cq-detr";
    } catch (const Error&) {
        return false;  // not readable as either: the caller's own loader reports why
    }
}

void DetrModel::collect_linears(std::vector<Linear*>& out) {
    State& s = *s_;
    out.push_back(&s.backbone.stem->conv);
    for (ResidualUnit& u : s.backbone.residual_units) {
        for (ConvUnit& c : u.path) out.push_back(&c.conv);
        if (u.shortcut) out.push_back(&u.shortcut->conv);
    }
    out.push_back(&s.input_projection);
    for (auto* stack : {&s.encoder, &s.decoder})
        for (Seq2SeqLayer& l : *stack) {
            for (Linear* x : {&l.q, &l.k, &l.v, &l.attn_out}) out.push_back(x);
            if (l.cross_q)
                for (auto* x : {&l.cross_q, &l.cross_k, &l.cross_v, &l.cross_out}) out.push_back(&**x);
            out.push_back(&l.ffn_in);
            out.push_back(&l.ffn_out);
        }
    out.push_back(&s.class_head);
    for (Linear& l : s.bbox) out.push_back(&l);
}

std::vector<LayerInfo> DetrModel::layers() const {
    std::vector<LayerInfo> out;
    const State& s = *s_;
    const auto tensor = [&](const std::string& name, LayerRole role, int64_t block, const Tensor& t) {
        out.push_back(LayerInfo{name, name, role, block, t.shape(), std::string(dtype_name(t.dtype())), t.nbytes(), false});
    };
    const auto linear = [&](const Linear& l) {
        out.push_back(LayerInfo{l.name, l.source_name, l.role, l.block, {l.n_out(), l.n_in()}, l.format(), l.bytes(), true});
    };
    // the convolutions are listed once, as Linears: their BatchNorms are folded into them
    linear(s.backbone.stem->conv);
    for (const ResidualUnit& u : s.backbone.residual_units) {
        for (const ConvUnit& c : u.path) linear(c.conv);
        if (u.shortcut) linear(u.shortcut->conv);
    }
    linear(s.input_projection);
    if (s.row_embd.ndim() > 0) {
        tensor("model.backbone.position_embedding.row_embeddings", LayerRole::position_embed, -1, s.row_embd);
        tensor("model.backbone.position_embedding.column_embeddings", LayerRole::position_embed, -1, s.col_embd);
    }
    tensor("model.query_position_embeddings", LayerRole::position_embed, -1, s.query_pos);
    for (const auto* stack : {&s.encoder, &s.decoder})
        for (const Seq2SeqLayer& l : *stack) {
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
    tensor(s.decoder_norm.name, LayerRole::norm, -1, s.decoder_norm.weight);
    linear(s.class_head);
    for (const Linear& l : s.bbox) linear(l);
    return out;
}

void DetrModel::forward(const uint8_t* pixels, int64_t B, int64_t H, int64_t W, float* logits, float* boxes, const uint8_t* pixel_mask) {
    const DetrConfig& g = config_;
    const EncoderConfig& bc = g.backbone;
    State& s = *s_;
    if (!pixels || !logits || !boxes) throw InvalidArgument("[detr] forward: pixels, logits and boxes must not be null");
    if (B < 1 || H < 1 || W < 1) throw InvalidArgument("[detr] forward: batch, height and width must be positive");
    const int64_t C = bc.num_channels, D = g.d_model, Q = g.num_queries, plane = H * W;

    // normalised pixels [B, C, H, W]; padding (mask 0) is 0 after normalisation, as DetrImageProcessor pads
    std::vector<float> x(static_cast<size_t>(B * C * plane));
    for (int64_t b = 0; b < B; ++b)
        for (int64_t ch = 0; ch < C; ++ch) {
            const float mean = bc.image_mean[static_cast<size_t>(ch)], stdev = bc.image_std[static_cast<size_t>(ch)];
            const uint8_t* in = pixels + (b * C + ch) * plane;
            float* o = x.data() + (b * C + ch) * plane;
            const uint8_t* m = pixel_mask ? pixel_mask + b * plane : nullptr;
            for (int64_t i = 0; i < plane; ++i) o[i] = m && !m[i] ? 0.0f : (static_cast<float>(in[i]) * bc.rescale_factor - mean) / stdev;
        }

    // backbone → feature map [B, F, h, w]
    const EncoderPass pass{bc, s.backbone, s.scratch, nullptr, s.backbone_act};
    int64_t h = H, w = W;
    std::vector<float> fmap;
    const int64_t F = resnet_features(pass, x.data(), B, h, w, fmap);
    const int64_t S = h * w, T = B * S;
    if (g.learned_positions && (h > g.learned_position_rows || w > g.learned_position_rows))
        throw InvalidArgument("[detr] a " + std::to_string(H) + "×" + std::to_string(W) + " image gives a " + std::to_string(h) + "×" +
                              std::to_string(w) + " feature map; the learned position tables cover " + std::to_string(g.learned_position_rows) +
                              " rows and columns");

    // feature rows [B·h·w, F] (NHWC) → input_projection → src [T, D]
    std::vector<float> rows(static_cast<size_t>(T * F)), src(static_cast<size_t>(T * D));
    for (int64_t b = 0; b < B; ++b)
        for (int64_t c = 0; c < F; ++c)
            for (int64_t i = 0; i < S; ++i) rows[static_cast<size_t>((b * S + i) * F + c)] = fmap[static_cast<size_t>((b * F + c) * S + i)];
    ops::linear(s.input_projection, rows.data(), T, src.data());

    // the pixel mask at the feature map's size (nearest), as keys' mask [B, S] and as the sine embedding's input
    std::vector<float> fmask(static_cast<size_t>(T), 1.0f);
    std::vector<int32_t> key_mask;
    if (pixel_mask) {
        key_mask.resize(static_cast<size_t>(T));
        for (int64_t b = 0; b < B; ++b)
            for (int64_t y = 0; y < h; ++y)
                for (int64_t xx = 0; xx < w; ++xx) {
                    const int64_t sy = nearest_source(y, H, h), sx = nearest_source(xx, W, w);
                    const bool real = pixel_mask[b * plane + sy * W + sx] != 0;
                    fmask[static_cast<size_t>(b * S + y * w + xx)] = real ? 1.0f : 0.0f;
                    key_mask[static_cast<size_t>(b * S + y * w + xx)] = real ? 1 : 0;
                }
    }
    const int32_t* kmask = key_mask.empty() ? nullptr : key_mask.data();
    std::vector<float> pos(static_cast<size_t>(T * D));
    if (g.learned_positions) learned_positions(s.row_embd, s.col_embd, B, h, w, D, pos);
    else sine_positions(fmask, B, h, w, D, pos);

    // encoder: x = LN(x + attn(q, k from x + pos; v from x)); x = LN(x + ffn(x))
    std::vector<float>& enc = src;
    const float eps = g.layer_norm_eps;
    for (const Seq2SeqLayer& l : s.encoder) {
        std::vector<float> qk_in = sum_of(enc, pos), q(enc.size()), k(enc.size()), v(enc.size()), a(enc.size()), y(enc.size());
        const Linear* qk[] = {&l.q, &l.k};
        float* const qk_out[] = {q.data(), k.data()};
        ops::linear_shared_input(qk, qk_in.data(), T, qk_out);
        ops::linear(l.v, enc.data(), T, v.data());
        ops::attention_bidirectional(q.data(), k.data(), v.data(), D, B, S, g.encoder_heads, D / g.encoder_heads, kmask, a.data());
        ops::linear(l.attn_out, a.data(), T, y.data());
        ops::add_layer_norm_rows(enc.data(), y.data(), T, D, l.attn_norm.weight, &*l.attn_norm.bias, eps, enc.data());
        ffn_sublayer(l, s.act, enc, T, D, eps);
    }

    // decoder over zero queries; query_pos [B·Q, D] the object queries' positions
    const int64_t TQ = B * Q;
    std::vector<float> qpos(static_cast<size_t>(TQ * D)), dec(static_cast<size_t>(TQ * D), 0.0f);
    const std::vector<float> query_table = s.query_pos.to_float();
    for (int64_t b = 0; b < B; ++b) std::copy(query_table.begin(), query_table.end(), qpos.begin() + b * Q * D);
    const std::vector<float> enc_pos = sum_of(enc, pos);
    const int64_t Hd = g.decoder_heads;
    for (const Seq2SeqLayer& l : s.decoder) {
        std::vector<float> q(dec.size()), k(dec.size()), v(dec.size()), a(dec.size()), y(dec.size());
        {  // self-attention: queries and keys from dec + query_pos, values from dec
            const std::vector<float> qk_in = sum_of(dec, qpos);
            const Linear* qk[] = {&l.q, &l.k};
            float* const qk_out[] = {q.data(), k.data()};
            ops::linear_shared_input(qk, qk_in.data(), TQ, qk_out);
            ops::linear(l.v, dec.data(), TQ, v.data());
            ops::attention_bidirectional(q.data(), k.data(), v.data(), D, B, Q, Hd, D / Hd, nullptr, a.data());
            ops::linear(l.attn_out, a.data(), TQ, y.data());
            ops::add_layer_norm_rows(dec.data(), y.data(), TQ, D, l.attn_norm.weight, &*l.attn_norm.bias, eps, dec.data());
        }
        {  // cross-attention: queries from dec + query_pos, keys from the encoder's output + its positions, values from the output
            const std::vector<float> q_in = sum_of(dec, qpos);
            std::vector<float> ck(static_cast<size_t>(T * D)), cv(ck.size());
            ops::linear(*l.cross_q, q_in.data(), TQ, q.data());
            ops::linear(*l.cross_k, enc_pos.data(), T, ck.data());
            ops::linear(*l.cross_v, enc.data(), T, cv.data());
            cross_attention(q.data(), ck.data(), cv.data(), D, B, Q, S, Hd, kmask, a.data());
            ops::linear(*l.cross_out, a.data(), TQ, y.data());
            ops::add_layer_norm_rows(dec.data(), y.data(), TQ, D, l.cross_norm->weight, &*l.cross_norm->bias, eps, dec.data());
        }
        ffn_sublayer(l, s.act, dec, TQ, D, eps);
        if (g.auxiliary_loss) ops::layer_norm_rows(dec.data(), TQ, D, s.decoder_norm.weight, &*s.decoder_norm.bias, eps, dec.data());
    }
    ops::layer_norm_rows(dec.data(), TQ, D, s.decoder_norm.weight, &*s.decoder_norm.bias, eps, dec.data());

    // heads: class logits [B·Q, labels + 1]; boxes = sigmoid(l2(relu(l1(relu(l0 dec)))))
    ops::linear(s.class_head, dec.data(), TQ, logits);
    std::vector<float> h1(dec.size()), h2(dec.size());
    ops::linear(s.bbox[0], dec.data(), TQ, h1.data());
    ops::activate(ops::Activation::relu, h1.data(), static_cast<int64_t>(h1.size()));
    ops::linear(s.bbox[1], h1.data(), TQ, h2.data());
    ops::activate(ops::Activation::relu, h2.data(), static_cast<int64_t>(h2.size()));
    ops::linear(s.bbox[2], h2.data(), TQ, boxes);
    ops::sigmoid(boxes, TQ * 4);
}

std::vector<Detection> DetrModel::detect(const uint8_t* pixels, int64_t batch, int64_t height, int64_t width, float threshold, int64_t first_image) {
    const int64_t Q = config_.num_queries, L = config_.num_labels + 1;
    std::vector<float> logits(static_cast<size_t>(batch * Q * L)), boxes(static_cast<size_t>(batch * Q * 4));
    forward(pixels, batch, height, width, logits.data(), boxes.data());
    return detr_post_process(logits.data(), boxes.data(), batch, Q, L, height, width, threshold, first_image);
}

std::vector<Detection> detr_post_process(const float* logits, const float* boxes, int64_t batch, int64_t queries, int64_t classes_with_no_object,
                                         int64_t height, int64_t width, float threshold, int64_t first_image) {
    if (classes_with_no_object < 2) throw InvalidArgument("[detr] post-processing needs at least one class besides 'no object'");
    const int64_t L = classes_with_no_object;
    std::vector<Detection> out;
    const float fw = static_cast<float>(width), fh = static_cast<float>(height);
    for (int64_t b = 0; b < batch; ++b)
        for (int64_t q = 0; q < queries; ++q) {
            const float* row = logits + (b * queries + q) * L;
            // softmax over every class (no-object included), then the best real class: the first of equal maxima
            const float top = *std::max_element(row, row + L);
            double sum = 0;
            for (int64_t c = 0; c < L; ++c) sum += std::exp(static_cast<double>(row[c]) - top);
            const int64_t label = std::max_element(row, row + L - 1) - row;
            const float score = static_cast<float>(std::exp(static_cast<double>(row[label]) - top) / sum);
            if (!(score > threshold)) continue;
            const float* bx = boxes + (b * queries + q) * 4;
            // center_to_corners_format, then × (w, h, w, h) as the processor scales
            const Box corners = box_from_center(bx[0], bx[1], bx[2], bx[3]);
            out.push_back(Detection{first_image + b, static_cast<int32_t>(label), score,
                                    Box{corners.x0 * fw, corners.y0 * fh, corners.x1 * fw, corners.y1 * fh}});
        }
    return out;
}

}  // namespace cq
