// cq's model container (model_container.h): the writer, which walks the HF directory's tensors and substitutes what
// the passes changed, and the reader, which restores the embedded files and the Linears' W8A8 forms.
#include "models/model_container.h"

#include <stdlib.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "cq/atomic_file.h"
#include "cq/error.h"
#include "cq/io/gguf_writer.h"
#include "cq/w8a8.h"
#include "io/hf/hf_model.h"
#include "ops/ops.h"

namespace cq::container {

namespace fs = std::filesystem;

namespace {

// The HF files a container carries so that it loads without its directory.
const char* const kEmbeddedFiles[] = {"config.json",      "preprocessor_config.json", "tokenizer_config.json", "special_tokens_map.json",
                                      "tokenizer.json",   "vocab.txt",                "vocab.json",            "merges.txt",
                                      "spm.model",        // DeBERTa's SentencePiece model
                                      "spiece.model",     // T5's
                                      "added_tokens.json",
                                      "generation_config.json"};

const std::string kFilePrefix = "cq.encoder.file.";  // the key the first containers used; kept so they still load

std::string read_text_file(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    if (!in) throw IoError("[save] cannot read " + p.string());
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}

std::vector<float> f32_values(const gguf::File& f, const std::string& name, int64_t n) {
    const gguf::TensorInfo* info = f.find_tensor(name);
    if (!info) throw FormatError("gguf", f.path(), 0, "tensor '" + name + "' is missing");
    const Tensor t = f.tensor(*info);
    if (t.dtype() != DType::F32 || t.numel() != n)
        throw FormatError("gguf", f.path(), info->file_offset, "tensor '" + name + "' must be f32 with " + std::to_string(n) + " values");
    const auto* p = static_cast<const float*>(t.data());
    return std::vector<float>(p, p + n);
}

}  // namespace

void write(const std::string& hf_dir, const std::string& path, const std::string& architecture, const std::vector<const Linear*>& linears,
           const Replacement& replace, const SaveOptions& options) {
    std::error_code ec;
    if (fs::exists(path, ec) && fs::equivalent(hf_dir, path, ec)) throw InvalidArgument("[save] the output would overwrite the input");
    const hf::ModelDir dir = hf::open_model_dir(hf_dir);

    // The Linears of each source tensor, in model order: one, or the row blocks of a fused tensor (BLIP's qkv).
    std::map<std::string, std::vector<const Linear*>> by_source;
    int32_t act_qmax = 0;
    for (const Linear* l : linears) {
        by_source[l->source_name + ".weight"].push_back(l);
        if (l->int8) act_qmax = std::max(act_qmax, l->int8->act_qmax);
        if ((l->int8 || dtype_traits(l->weight.dtype()).is_quantized) && l->transposed)
            throw Unsupported("[save] '" + l->name + "' is stored [in, out]; the container holds quantized weights [out, in] only");
    }
    const auto modified = [](const Linear* l) { return l->int8 || dtype_traits(l->weight.dtype()).is_quantized; };
    // How a group is stored: the Linears' own forms when every part was changed the same way, the file's tensor when
    // none was; anything else (some parts int8, others not) has no one tensor to stand for it.
    const auto form = [&](const std::string& name, const std::vector<const Linear*>& parts) -> std::string {
        bool any = false;
        for (const Linear* l : parts) any = any || modified(l);
        if (!any) return "";
        const Linear* first = parts.front();
        for (const Linear* l : parts)
            if (!modified(l) || bool(l->int8) != bool(first->int8) || (!l->int8 && l->weight.dtype() != first->weight.dtype()) ||
                l->n_in() != first->n_in())
                throw Unsupported("[save] the parts of '" + name + "' (" + first->name + ", …) were quantized differently; the container stores "
                                  "one fused tensor, so quantize all of them alike or none");
        return first->int8 ? "int8" : "blocks";
    };
    gguf::Writer w;
    w.set_string("general.architecture", architecture);
    w.set_string("general.name", fs::path(hf_dir).filename().string());
    w.set_string("cq.version", CQ_VERSION);
    if (options.metadata) options.metadata(w);
    if (act_qmax > 0 && !w.has("cq.w8a8.activation_bits"))  // the bits the Linears were built for (a caller may say 0: auto)
        w.set_u32("cq.w8a8.activation_bits", act_qmax == 127 ? 7u : 8u);
    std::vector<const Int8Linear*> int8;
    for (const Linear* l : linears)
        if (l->int8) int8.push_back(l->int8.get());
    set_dynamic_granularity(w, int8);
    for (const char* name : kEmbeddedFiles)
        if (fs::is_regular_file(fs::path(hf_dir) / name, ec)) w.set_string(kFilePrefix + name, read_text_file(fs::path(hf_dir) / name));

    // Each declared tensor and where its bytes come from.
    std::vector<std::function<void(std::vector<uint8_t>&)>> fill;
    const auto bytes_of = [](const void* p, uint64_t n) {
        return [p, n](std::vector<uint8_t>& buf) { buf.assign(static_cast<const uint8_t*>(p), static_cast<const uint8_t*>(p) + n); };
    };
    const auto floats = [](std::vector<float> v) {
        return [v = std::move(v)](std::vector<uint8_t>& buf) {
            buf.resize(v.size() * sizeof(float));
            std::memcpy(buf.data(), v.data(), buf.size());
        };
    };
    for (const auto* t : dir.weights.tensors()) {
        // BatchNorm's num_batches_tracked is a training counter (a 0-dim I64, which GGUF cannot hold): not needed to run.
        if (t->name.ends_with(".num_batches_tracked")) continue;
        const bool integer = t->dtype == DType::I64 || t->dtype == DType::I32;
        if (t->dtype != DType::F32 && t->dtype != DType::F16 && t->dtype != DType::BF16 && !integer)
            throw Unsupported("[save] tensor '" + t->name + "' is " + t->dtype_name + "; the container holds f32/f16/bf16/i32/i64 tensors only");
        if (const Tensor* r = replace ? replace(t->name, t->dtype) : nullptr) {
            w.add_tensor(t->name, r->shape(), r->dtype());
            fill.push_back(bytes_of(r->data(), r->nbytes()));
            continue;
        }
        const auto group = by_source.find(t->name);
        const std::string how = group == by_source.end() ? "" : form(t->name, group->second);
        if (how.empty()) {
            // A 0-dim tensor (CLIP's logit_scale) is stored as [1]: GGUF gives every tensor at least one dimension.
            w.add_tensor(t->name, t->shape.empty() ? std::vector<int64_t>{1} : t->shape, t->dtype);
            const std::string name = t->name;
            const hf::ModelDir* d = &dir;
            fill.push_back([d, name](std::vector<uint8_t>& buf) {
                const Tensor x = d->weights.tensor(name);
                const auto* p = static_cast<const uint8_t*>(x.data());
                buf.assign(p, p + x.nbytes());
            });
            continue;
        }
        // The parts' rows, concatenated in model order, must be the file tensor's rows.
        const std::vector<const Linear*>& parts = group->second;
        int64_t rows = 0;
        for (const Linear* l : parts) rows += l->n_out();
        const int64_t n_in = parts.front()->n_in();
        if (t->shape.empty() || rows != t->shape[0] || rows * n_in != int64_t(t->numel))
            throw Unsupported("[save] the Linears of '" + t->name + "' do not cover its " + std::to_string(t->shape.empty() ? 0 : t->shape[0]) + " rows");
        // Rows whole ([out, in]; a convolution's [out, C, k, k] flattened, as the Linear sees it). A folded convolution's
        // weight is written folded: the loader folds only the biases of I8 and block weights again.
        const DType type = how == "int8" ? DType::I8 : parts.front()->weight.dtype();
        w.add_tensor(t->name, {rows, n_in}, type);
        fill.push_back([parts, how](std::vector<uint8_t>& buf) {
            buf.clear();
            for (const Linear* l : parts) {
                const Tensor& x = how == "int8" ? l->int8->weight : l->weight;
                const auto* p = static_cast<const uint8_t*>(x.data());
                buf.insert(buf.end(), p, p + x.nbytes());
            }
        });
        if (how != "int8") continue;
        // Scales under each Linear's own name (a fused tensor's parts each have theirs).
        for (const Linear* l : parts) {
            const Int8Linear* q = l->int8.get();
            w.add_tensor(l->name + ".weight_scale", {q->n_out}, DType::F32);
            fill.push_back(floats(q->weight_scale));
            if (q->activations == ActivationQuant::static_per_tensor) {
                w.add_tensor(l->name + ".input_scale", {1}, DType::F32);
                fill.push_back(floats({q->input.scale}));
                w.add_tensor(l->name + ".input_zero_point", {1}, DType::I32);
                fill.push_back(bytes_of(&q->input.zero_point, 4));
            }
        }
    }
    AtomicFile out(path);
    w.write(out, [&](size_t i, std::vector<uint8_t>& buf) {
        fill.at(i)(buf);
        if (options.progress) options.progress(static_cast<int64_t>(i + 1), static_cast<int64_t>(fill.size()));
    });
    out.commit();
}

Reader::Reader(const std::string& path, const std::string& architecture, const std::string& what) : file_(gguf::File::open(path)) {
    const auto arch = file_.get_string("general.architecture");
    if (arch != architecture) throw Unsupported("[model] " + path + " is a GGUF of architecture '" + arch.value_or("(none)") + "', not a " + what);
    std::string tmpl = (fs::temp_directory_path() / (architecture + "-XXXXXX")).string();
    if (!mkdtemp(tmpl.data())) throw IoError("[model] cannot create a temporary folder for " + path + "'s embedded files");
    dir_ = tmpl;
    try {
        for (const auto& kv : file_.metadata()) {
            if (kv.key.rfind(kFilePrefix, 0) != 0) continue;
            const std::string name = kv.key.substr(kFilePrefix.size());
            const std::string* text = kv.value.as_string();
            if (!text || name.empty() || name.find('/') != std::string::npos || name.find("..") != std::string::npos)
                throw FormatError("gguf", path, 0, "metadata key '" + kv.key + "' is not an embedded file");
            std::ofstream out(fs::path(dir_) / name, std::ios::binary);
            out.write(text->data(), static_cast<std::streamsize>(text->size()));
            if (!out) throw IoError("[model] cannot write " + (fs::path(dir_) / name).string());
        }
        std::error_code ec;
        if (!fs::is_regular_file(fs::path(dir_) / "config.json", ec)) throw FormatError("gguf", path, 0, "the container holds no config.json");
    } catch (...) {
        std::error_code ec;
        fs::remove_all(dir_, ec);
        throw;
    }
}

Reader::~Reader() {
    std::error_code ec;
    fs::remove_all(dir_, ec);
}

std::optional<Tensor> Reader::tensor(const std::string& name) const {
    if (const auto* t = file_.find_tensor(name)) return file_.tensor(*t);
    return std::nullopt;
}

void set_dynamic_granularity(gguf::Writer& w, const std::vector<const Int8Linear*>& linears) {
    bool per_tensor = false, per_token = false;
    for (const Int8Linear* q : linears) {
        per_tensor = per_tensor || q->activations == ActivationQuant::dynamic_per_tensor;
        per_token = per_token || q->activations == ActivationQuant::dynamic_per_token;
    }
    if (per_tensor && per_token)
        throw Unsupported("[save] some dynamic W8A8 Linears quantize their inputs per tensor, others per token; a file holds one granularity");
    if (per_tensor) w.set_string(kDynamicGranularityKey, "per_tensor");
}

void Reader::restore_linears(const std::vector<Linear*>& linears) const { container::restore_linears(file_, linears); }

void restore_linears(const gguf::File& file, const std::vector<Linear*>& linears) {
    const std::string& path = file.path();
    int32_t act_qmax = 255;
    bool auto_bits = false;
    if (const gguf::Value* bits = file.find("cq.w8a8.activation_bits")) {
        const auto b = bits->as_int();
        if (!b || (*b != 8 && *b != 7 && *b != 0)) throw FormatError("gguf", path, 0, "cq.w8a8.activation_bits must be 8, 7 or 0 (auto)");
        auto_bits = *b == 0;
        act_qmax = (1 << (auto_bits ? auto_activation_bits() : int32_t(*b))) - 1;
    }
    const std::optional<std::string> granularity = file.get_string(kDynamicGranularityKey);
    if (granularity && *granularity != "per_tensor")
        throw FormatError("gguf", path, 0, std::string(kDynamicGranularityKey) + " must be \"per_tensor\" (or absent: per token), not \"" + *granularity + "\"");
    if (granularity && act_qmax != 255)
        throw FormatError("gguf", path, 0, "per-tensor dynamic activations are 8-bit; cq.w8a8.activation_bits must be 8");
    for (Linear* l : linears) {
        if (dtype_traits(l->weight.dtype()).is_quantized) ops::pack_for_kernels(*l);
        if (l->weight.dtype() != DType::I8) continue;
        auto q = std::make_shared<Int8Linear>();
        q->n_out = l->weight.dim(0);
        q->n_in = l->weight.dim(1);
        q->weight = l->weight;
        q->act_qmax = act_qmax;
        q->weight_scale = f32_values(file, l->name + ".weight_scale", q->n_out);
        for (const float s : q->weight_scale)
            if (!(s > 0) || !std::isfinite(s))
                throw FormatError("gguf", path, 0, "tensor '" + l->name + ".weight_scale' holds a scale that is not positive and finite");
        if (l->bias) q->bias = l->bias->to_float();
        if (granularity) q->activations = ActivationQuant::dynamic_per_tensor;
        if (file.find_tensor(l->name + ".input_scale")) {
            if (auto_bits)  // a calibrated zero point is a code of one fixed range
                throw FormatError("gguf", path, 0, "'" + l->name + "' has static input quantization, which needs cq.w8a8.activation_bits 8 or 7, not 0 (auto)");
            q->activations = ActivationQuant::static_per_tensor;
            q->input.scale = f32_values(file, l->name + ".input_scale", 1)[0];
            const gguf::TensorInfo* zi = file.find_tensor(l->name + ".input_zero_point");
            if (!zi) throw FormatError("gguf", path, 0, "tensor '" + l->name + ".input_zero_point' is missing");
            const Tensor z = file.tensor(*zi);
            if (z.dtype() != DType::I32 || z.numel() != 1)
                throw FormatError("gguf", path, zi->file_offset, "tensor '" + l->name + ".input_zero_point' must be one i32");
            q->input.zero_point = *static_cast<const int32_t*>(z.data());
            if (!(q->input.scale > 0) || !std::isfinite(q->input.scale) || q->input.zero_point < 0 || q->input.zero_point > act_qmax)
                throw FormatError("gguf", path, zi->file_offset, "the input quantization of '" + l->name + "' is out of range");
        }
        pack_int8_linear(*q);
        l->int8 = std::move(q);
    }
}

}  // namespace cq::container
