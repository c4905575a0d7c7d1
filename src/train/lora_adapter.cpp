// Reads a LoRA adapter GGUF (llama.cpp's layout: general.type "adapter", adapter.type "lora", adapter.lora.alpha,
// "<weight>.lora_a" [rank, in] and "<weight>.lora_b" [out, rank]) and merges it into a LanguageModel's Linears.
// Everything is checked before the first Linear changes, so a bad file leaves the model as it was.
#include <cmath>
#include <map>
#include <string>
#include <vector>

#include "cq/error.h"
#include "cq/io/gguf.h"
#include "cq/train.h"

namespace cq {

namespace {

std::vector<float> tensor_values(const gguf::File& file, const gguf::TensorInfo& info, const std::string& path) {
    const auto& traits = dtype_traits(info.dtype);
    if (!traits.to_float)
        throw InvalidArgument("[lora] " + path + ": tensor '" + info.name + "' is " + std::string(traits.name) + ", which cq cannot read");
    const Tensor t = file.tensor(info);
    std::vector<float> v = t.to_float();
    for (size_t i = 0; i < v.size(); ++i)
        if (!std::isfinite(v[i]))
            throw InvalidArgument("[lora] " + path + ": tensor '" + info.name + "' holds a non-finite value at element " + std::to_string(i));
    return v;
}

}  // namespace

int64_t apply_lora_adapter(LanguageModel& model, const std::string& path, float scale) {
    const gguf::File file = gguf::File::open(path);
    const auto need = [&](const char* key, const std::string& want) {
        const auto v = file.get_string(key);
        if (!v || *v != want)
            throw InvalidArgument("[lora] " + path + ": " + key + " is '" + (v ? *v : std::string("(absent)")) + "', expected '" + want + "'");
    };
    need("general.type", "adapter");
    need("adapter.type", "lora");
    if (file.architecture() != model.architecture())
        throw InvalidArgument("[lora] " + path + " is an adapter for '" + file.architecture() + "', the model is '" + model.architecture() + "'");
    const double alpha = file.get_double("adapter.lora.alpha").value_or(0.0);
    if (!std::isfinite(alpha) || alpha < 0)
        throw InvalidArgument("[lora] " + path + ": adapter.lora.alpha " + std::to_string(alpha) + " is not a non-negative number");

    struct Pair {
        const gguf::TensorInfo* a = nullptr;
        const gguf::TensorInfo* b = nullptr;
    };
    std::map<std::string, Pair> pairs;  // by the base weight's name, in name order
    for (const gguf::TensorInfo& t : file.tensors()) {
        const auto ends = [&](const std::string& suffix) {
            return t.name.size() > suffix.size() && t.name.compare(t.name.size() - suffix.size(), suffix.size(), suffix) == 0;
        };
        if (ends(".lora_a")) pairs[t.name.substr(0, t.name.size() - 7)].a = &t;
        else if (ends(".lora_b")) pairs[t.name.substr(0, t.name.size() - 7)].b = &t;
        else throw InvalidArgument("[lora] " + path + ": tensor '" + t.name + "' is neither a .lora_a nor a .lora_b");
    }
    if (pairs.empty()) throw InvalidArgument("[lora] " + path + " holds no adapter tensors");

    struct Update {
        Linear* layer;
        Tensor merged;
    };
    std::vector<Update> updates;
    for (const auto& [weight, pair] : pairs) {
        if (!pair.a || !pair.b)
            throw InvalidArgument("[lora] " + path + ": '" + weight + "' has a " + (pair.a ? "lora_a" : "lora_b") + " but no " +
                                  (pair.a ? "lora_b" : "lora_a"));
        const std::string name = weight.size() > 7 && weight.compare(weight.size() - 7, 7, ".weight") == 0 ? weight.substr(0, weight.size() - 7) : weight;
        Linear* layer = model.find_linear(name);
        if (!layer) throw InvalidArgument("[lora] " + path + ": the model has no Linear '" + name + "' for '" + weight + "'");
        const auto& wt = dtype_traits(layer->weight.dtype());
        if (layer->int8 || !wt.to_float)
            throw Unsupported("[lora] '" + name + "' is held as " + layer->format() + ", which cq cannot merge an adapter into");
        const int64_t O = layer->n_out(), I = layer->n_in();
        const auto& as = pair.a->shape;
        const auto& bs = pair.b->shape;
        if (as.size() != 2 || bs.size() != 2 || as[1] != I || bs[0] != O || as[0] != bs[1] || as[0] < 1)
            throw InvalidArgument("[lora] " + path + ": '" + weight + "' is " + std::to_string(O) + " × " + std::to_string(I) +
                                  " but its adapter pair does not fit it (lora_a must be [rank, " + std::to_string(I) + "], lora_b [" +
                                  std::to_string(O) + ", rank])");
        const int64_t r = as[0];
        const std::vector<float> A = tensor_values(file, *pair.a, path), B = tensor_values(file, *pair.b, path);
        // llama.cpp: scale·alpha/rank where the file has an alpha, else the scale alone.
        const double s = alpha > 0 ? scale * alpha / static_cast<double>(r) : scale;
        std::vector<float> W = layer->weight.to_float();
        Tensor merged = Tensor::zeros({O, I}, DType::F32);
        auto* m = static_cast<float*>(merged.mutable_data());
        for (int64_t o = 0; o < O; ++o)
            for (int64_t i = 0; i < I; ++i) {
                double delta = 0;
                for (int64_t k = 0; k < r; ++k) delta += static_cast<double>(B[static_cast<size_t>(o * r + k)]) * A[static_cast<size_t>(k * I + i)];
                const float w = layer->transposed ? W[static_cast<size_t>(i * O + o)] : W[static_cast<size_t>(o * I + i)];
                m[o * I + i] = w + static_cast<float>(s * delta);
            }
        updates.push_back({layer, std::move(merged)});
    }
    for (Update& u : updates) model.set_weight(*u.layer, std::move(u.merged), "lora-adapter");
    return static_cast<int64_t>(updates.size());
}

}  // namespace cq
