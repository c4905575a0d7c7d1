// The Model base: layer roles, observers attached to Linears and blocks, in-memory rewrites of a Linear's
// weight, and the loader that picks the family (decoder LLM or encoder / ViT) from the file.
#include <algorithm>
#include <cmath>
#include <filesystem>

#include "core/json_file.h"
#include "core/name_table.h"
#include "cq/detr.h"
#include "cq/encoder.h"
#include "cq/seq2seq.h"
#include "cq/error.h"
#include "cq/io/gguf.h"
#include "cq/llm.h"
#if !defined(CQ_MINIMAL)
#include "cq/onnx_model.h"
#endif
#include "cq/model.h"
#include "cq/thread_pool.h"
#include "cq/w8a8.h"
#include "ops/ops.h"
#include "quant/finite_rows.h"

namespace cq {

namespace fs = std::filesystem;

namespace {
const std::pair<LayerRole, std::string_view> kRoleNames[] = {
    {LayerRole::attn_q, "attn_q"},         {LayerRole::attn_k, "attn_k"},           {LayerRole::attn_v, "attn_v"},
    {LayerRole::attn_qkv, "attn_qkv"},     {LayerRole::attn_out, "attn_out"},       {LayerRole::ffn_gate, "ffn_gate"},
    {LayerRole::ffn_up, "ffn_up"},         {LayerRole::ffn_down, "ffn_down"},       {LayerRole::lm_head, "lm_head"},
    {LayerRole::pooler, "pooler"},         {LayerRole::pre_classifier, "pre_classifier"}, {LayerRole::classifier, "classifier"},
    {LayerRole::patch_embed, "patch_embed"}, {LayerRole::token_embed, "token_embed"}, {LayerRole::position_embed, "position_embed"},
    {LayerRole::type_embed, "type_embed"}, {LayerRole::norm, "norm"},               {LayerRole::other, "other"},
    {LayerRole::depthwise_conv, "depthwise_conv"},
};
}  // namespace

std::string_view role_name(LayerRole role) { return name_in(kRoleNames, role, "other"); }
std::optional<LayerRole> role_from_name(std::string_view name) { return value_in(kRoleNames, name); }

std::string_view model_kind_name(ModelKind kind) {
    switch (kind) {
        case ModelKind::decoder: return "decoder";
        case ModelKind::encoder: return "encoder";
        case ModelKind::vision: return "vision";
    }
    return "?";
}

uint64_t Linear::bytes() const {
    uint64_t total = 0;
    if (int8) total = int8->weight.nbytes() + int8->weight_scale.size() * sizeof(float) + int8->bias.size() * sizeof(float);
    else total = weight.nbytes() + (bias ? bias->nbytes() : 0);
    return total;
}

std::string Linear::format() const { return int8 ? "int8" : std::string(dtype_name(weight.dtype())); }

Model::~Model() = default;

std::unique_ptr<Model> Model::load(const std::string& path) {
    std::error_code ec;
    if (fs::is_directory(path, ec)) {
        const std::string config_path = (fs::path(path) / "config.json").string();
        if (!fs::is_regular_file(config_path, ec)) throw IoError("[model] " + path + ": no config.json (an HF model directory needs one)");
        const auto config = read_json_file(config_path, "hf");
        std::string model_type;
        if (config.is_object())
            if (auto it = config.find("model_type"); it != config.end() && it->is_string()) model_type = it->get<std::string>();
        for (const char* decoder : {"llama", "mistral", "qwen2", "gpt2"})
            if (model_type == decoder) return LanguageModel::load(path);
        if (model_type == "bart" || model_type == "t5" || model_type == "blip") return Seq2SeqModel::load(path);  // encoder–decoder generators
        if (model_type == "detr") return DetrModel::load(path);  // object detection
        return EncoderModel::load(path);
    }
    if (fs::path(path).extension() == ".onnx") {  // an imported ONNX graph (cq/onnx_model.h)
#if defined(CQ_MINIMAL)
        throw Unsupported("[model] " + path + ": ONNX import needs the full cq build (this is the CQ_MINIMAL runtime)");
#else
        return OnnxModel::load(path);
#endif
    }
    if (!fs::exists(path, ec)) throw IoError("[model] '" + path + "' does not exist");
    const auto arch = gguf::File::open(path).get_string("general.architecture");
    if (arch == "cq-encoder") return EncoderModel::load(path);
    if (arch == "cq-seq2seq") return Seq2SeqModel::load(path);
    if (arch == "cq-detr") return DetrModel::load(path);
    return LanguageModel::load(path);
}

std::vector<Linear*> Model::linears() {
    std::vector<Linear*> out;
    collect_linears(out);
    return out;
}

std::vector<const Linear*> Model::linears() const {
    std::vector<Linear*> all;
    const_cast<Model*>(this)->collect_linears(all);
    return {all.begin(), all.end()};
}

Linear* Model::find_linear(std::string_view name) {
    for (Linear* l : linears())
        if (l->name == name || l->source_name == name) return l;
    return nullptr;
}

ObserverId Model::observe(Linear& layer, LinearObserver fn) {
    if (!fn) throw InvalidArgument("[model] observe: the observer of '" + layer.name + "' is empty");
    if (!layer.observers) layer.observers = std::make_shared<LinearObservers>();
    const ObserverId id = next_observer_++;
    layer.observers->list.emplace_back(id, std::move(fn));
    return id;
}

ObserverId Model::observe_blocks(BlockObserver fn) {
    if (!fn) throw InvalidArgument("[model] observe_blocks: the observer is empty");
    const ObserverId id = next_observer_++;
    block_observers_.emplace_back(id, std::move(fn));
    return id;
}

void Model::remove_observer(ObserverId id) {
    const auto drop = [id](auto& list) { std::erase_if(list, [id](const auto& entry) { return entry.first == id; }); };
    drop(block_observers_);
    for (Linear* l : linears()) {
        if (!l->observers) continue;
        drop(l->observers->list);
        if (l->observers->list.empty()) l->observers.reset();  // back to the one-test fast path
    }
}

void Model::clear_observers() {
    block_observers_.clear();
    for (Linear* l : linears()) l->observers.reset();
}

void Model::set_weight(Linear& layer, Tensor weight, std::string_view by) {
    const int64_t n_out = layer.n_out(), n_in = layer.n_in();
    if (weight.shape() != std::vector<int64_t>{n_out, n_in})
        throw InvalidArgument("[model] set_weight: '" + layer.name + "' needs a weight of shape [" + std::to_string(n_out) + ", " +
                              std::to_string(n_in) + "], got " + weight.shape_string());
    layer.weight = std::move(weight);
    layer.transposed = false;
    layer.int8.reset();
    layer.x8.reset();
    layer.modified_by = std::string(by);
    if (pack_for_kernels_) ops::pack_for_kernels(layer);
}

void Model::quantize_linear(Linear& layer, DType type, std::string_view by) {
    const auto& to = dtype_traits(type);
    const int64_t n_out = layer.n_out(), n_in = layer.n_in();
    if (!to.from_float)
        throw InvalidArgument("[model] quantize_linear: cq cannot write " + std::string(to.name) + " weights ('" + layer.name + "')");
    if (n_in % static_cast<int64_t>(to.block_size) != 0)
        throw InvalidArgument("[model] quantize_linear: rows of " + std::to_string(n_in) + " in '" + layer.name + "' are not a multiple of " +
                              std::string(to.name) + "'s block of " + std::to_string(to.block_size));
    const auto& from = dtype_traits(layer.weight.dtype());
    if (!from.to_float || layer.int8)
        throw Unsupported("[model] quantize_linear: '" + layer.name + "' holds " + layer.format() + " weights, which cq cannot read back as floats yet");
    const auto check_finite = [&](const float* row, int64_t r) { quant::require_finite_row(row, n_in, layer.name, r); };
    Tensor out = Tensor::zeros({n_out, n_in}, type);
    const uint64_t out_row = *dtype_bytes(type, static_cast<uint64_t>(n_in));
    auto* dst = static_cast<uint8_t*>(out.mutable_data());
    if (layer.transposed) {
        // [in, out] (GPT-2 Conv1D): transpose through floats once.
        const std::vector<float> w = layer.weight.to_float();
        std::vector<float> row(static_cast<size_t>(n_in));
        for (int64_t o = 0; o < n_out; ++o) {
            for (int64_t i = 0; i < n_in; ++i) row[static_cast<size_t>(i)] = w[static_cast<size_t>(i * n_out + o)];
            check_finite(row.data(), o);
            to.from_float(row.data(), dst + static_cast<uint64_t>(o) * out_row, n_in);
        }
    } else {
        const auto* src = static_cast<const uint8_t*>(layer.weight.data());
        const uint64_t in_row = *dtype_bytes(layer.weight.dtype(), static_cast<uint64_t>(n_in));
        ThreadPool::global().parallel_for(n_out, [&](int64_t r0, int64_t r1) {
            std::vector<float> row(static_cast<size_t>(n_in));
            for (int64_t r = r0; r < r1; ++r) {
                from.to_float(src + static_cast<uint64_t>(r) * in_row, row.data(), n_in);
                check_finite(row.data(), r);
                to.from_float(row.data(), dst + static_cast<uint64_t>(r) * out_row, n_in);
            }
        }, 16);
    }
    set_weight(layer, std::move(out), by);
}

void notify_block(const std::vector<std::pair<ObserverId, BlockObserver>>* observers, const BlockEvent& e) {
    if (!observers) return;
    for (const auto& entry : *observers) entry.second(e);
}

}  // namespace cq
