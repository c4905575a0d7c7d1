// Structured pruning of HF LLaMA-family decoders (cq/prune.h: prune_structured): KV groups (with their query heads),
// FFN neurons and whole blocks go, chosen by importance measured on calibration activations of the dense model, the
// same count in every block; the kept rows / columns are copied into a smaller HF directory with an updated config.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <numeric>
#include <regex>
#include <sstream>

#include <nlohmann/json.hpp>

#include "core/sha256.h"
#include "cq/atomic_file.h"
#include "cq/error.h"
#include "cq/io/safetensors.h"
#include "cq/mapped_file.h"
#include "cq/prune.h"
#include "io/hf/hf_dir_writer.h"
#include "prune/pruned_hf_dir.h"
#include "quant/block_calibration.h"

namespace cq {

namespace fs = std::filesystem;
using prune_detail::keep_top;
using prune_detail::take_units;

namespace {

double parse_fraction(const std::string& item, const std::string& value, std::string_view op) {
    size_t used = 0;
    double f = -1;
    try {
        f = std::stod(value, &used);
    } catch (const std::exception&) {
        used = 0;
    }
    if (used == 0 || used != value.size() || !(f >= 0.0 && f < 1.0))
        throw InvalidArgument(std::string(op) + ": --structured '" + item + "': the fraction must be a number in [0, 1)");
    return f;
}

}  // namespace

StructuredTarget StructuredTarget::parse(std::string_view text, std::string_view op) {
    StructuredTarget t;
    std::stringstream in{std::string(text)};
    std::string item;
    bool any = false;
    while (std::getline(in, item, ',')) {
        const auto eq = item.find('=');
        const std::string key = eq == std::string::npos ? item : item.substr(0, eq), value = eq == std::string::npos ? "" : item.substr(eq + 1);
        if (key == "heads") t.heads = parse_fraction(item, value, op);
        else if (key == "ffn") t.ffn = parse_fraction(item, value, op);
        else if (key == "layers") {
            size_t used = 0;
            long long n = -1;
            try {
                n = std::stoll(value, &used);
            } catch (const std::exception&) {
                used = 0;
            }
            if (used == 0 || used != value.size() || n < 0)
                throw InvalidArgument(std::string(op) + ": --structured '" + item + "': layers must be a whole number of blocks ≥ 0");
            t.layers = n;
        } else {
            throw InvalidArgument(std::string(op) + ": --structured '" + item + "' is not heads=F, ffn=F or layers=N");
        }
        any = true;
    }
    if (!any || (t.heads == 0 && t.ffn == 0 && t.layers == 0))
        throw InvalidArgument(std::string(op) + ": --structured '" + std::string(text) + "' removes nothing; give heads=F, ffn=F and/or layers=N");
    return t;
}

std::string StructuredTarget::describe() const {
    std::ostringstream o;
    o << "heads=" << heads << ",ffn=" << ffn << ",layers=" << layers;
    return o.str();
}

StructuredReport prune_structured(const std::string& input_dir, const std::string& output_dir, const StructuredOptions& o) {
    const auto t0 = std::chrono::steady_clock::now();
    const fs::path src(input_dir);
    if (!fs::is_directory(src) || !fs::exists(src / "config.json"))
        throw Unsupported("[prune] --structured reads an HF directory (config.json + safetensors); '" + input_dir + "' is not one");
    if (o.calib.text_path.empty()) throw InvalidArgument("[prune] --structured measures importance on calibration text: give --calib FILE");
    if (output_dir.empty()) throw InvalidArgument("[prune] --structured needs an output directory");
    std::error_code ec;
    if (fs::exists(output_dir, ec) && fs::equivalent(src, output_dir, ec))
        throw InvalidArgument("[prune] the output directory is the input: '" + output_dir + "'");
    nlohmann::json config = hf::read_config(src);
    const std::string model_type = config.value("model_type", "");
    if (model_type != "llama" && model_type != "mistral" && model_type != "qwen2")
        throw Unsupported("[prune] --structured supports llama-family HF models (llama, mistral, qwen2); '" + input_dir + "' is '" + model_type + "'");

    auto m = quant::load_for_calibration(input_dir, o.calib);
    const LlmConfig& c = m->config();
    const int64_t L = c.n_layer, H = c.n_head, KV = c.n_head_kv, hd = c.head_dim, F = c.n_ff, G = H / KV;
    StructuredReport r;
    r.input = input_dir, r.output = output_dir, r.target = o.target.describe();
    r.n_head_in = H, r.n_head_kv_in = KV, r.n_ff_in = F, r.n_layer_in = L;
    const int64_t kv_keep = KV - static_cast<int64_t>(std::llround(o.target.heads * static_cast<double>(KV)));
    int64_t ff_keep = F - static_cast<int64_t>(std::llround(o.target.ffn * static_cast<double>(F)));
    if (o.ffn_multiple > 1 && o.target.ffn > 0) ff_keep = std::max<int64_t>(o.ffn_multiple, (ff_keep + o.ffn_multiple / 2) / o.ffn_multiple * o.ffn_multiple);
    ff_keep = std::min(ff_keep, F);
    if (kv_keep < 1) throw InvalidArgument("[prune] --structured heads=" + std::to_string(o.target.heads) + " removes every KV group");
    if (ff_keep < 1) throw InvalidArgument("[prune] --structured ffn=" + std::to_string(o.target.ffn) + " removes every FFN neuron");
    if (o.target.layers >= L)
        throw InvalidArgument("[prune] --structured layers=" + std::to_string(o.target.layers) + " removes every block (the model has " + std::to_string(L) + ")");

    // Importance, block by block on the dense model.
    const quant::Calibration cal = quant::cut_calibration(*m, o.calib, false, "prune");
    r.calibration = cal.report;
    quant::Stream s = quant::embed_all(*m, cal.stats);
    std::vector<std::vector<int64_t>> ffn_kept;  // by block: the kept neurons
    for (int64_t l = 0; l < L; ++l) {
        if (o.stage_progress) o.stage_progress("prune: importance", l, L);
        const std::vector<std::vector<float>> before = s.hidden;
        quant::BlockStats stats;
        quant::run_block(*m, l, s, true, &stats);
        StructuredBlock b;
        b.block = l;
        double cos_sum = 0;
        int64_t n_tok = 0;
        for (size_t k = 0; k < s.hidden.size(); ++k) {
            const int64_t T = static_cast<int64_t>(s.hidden[k].size()) / c.n_embd;
            for (int64_t t = 0; t < T; ++t) {
                const float* x = before[k].data() + t * c.n_embd;
                const float* y = s.hidden[k].data() + t * c.n_embd;
                double xy = 0, xx = 0, yy = 0;
                for (int64_t i = 0; i < c.n_embd; ++i) xy += double(x[i]) * y[i], xx += double(x[i]) * x[i], yy += double(y[i]) * y[i];
                cos_sum += xx > 0 && yy > 0 ? xy / std::sqrt(xx * yy) : 1.0;
                ++n_tok;
            }
        }
        b.influence = n_tok ? 1.0 - cos_sum / static_cast<double>(n_tok) : 0.0;
        const DecoderBlock& blk = m->weights().blocks[static_cast<size_t>(l)];
        // KV groups: Σ over their query heads of tr(W_o,h H_hh W_o,hᵀ), the squared output each head adds.
        const std::vector<float> wo = quant::weight_of(blk.wo);  // [n_embd, H·hd]
        const quant::Hessian& Ho = stats.attn_out;
        b.group_scores.assign(static_cast<size_t>(KV), 0.0);
        for (int64_t h = 0; h < H; ++h) {
            double sc = 0;
            for (int64_t row = 0; row < c.n_embd; ++row) {
                const float* w = wo.data() + row * H * hd + h * hd;
                for (int64_t i = 0; i < hd; ++i) {
                    double acc = 0;
                    const double* hrow = Ho.h.data() + (h * hd + i) * Ho.n + h * hd;
                    for (int64_t j = 0; j < hd; ++j) acc += hrow[j] * w[j];
                    sc += w[i] * acc;
                }
            }
            b.group_scores[static_cast<size_t>(h / G)] += sc;
        }
        b.kept_groups = keep_top(b.group_scores, kv_keep);
        // FFN neurons: H_ii · ‖W_down[:, i]‖².
        const std::vector<float> wd = quant::weight_of(blk.ffn_down);  // [n_embd, F]
        const quant::Hessian& Hd = stats.ffn_out;
        std::vector<double> ns(static_cast<size_t>(F), 0.0);
        for (int64_t row = 0; row < c.n_embd; ++row)
            for (int64_t i = 0; i < F; ++i) ns[static_cast<size_t>(i)] += double(wd[static_cast<size_t>(row * F + i)]) * wd[static_cast<size_t>(row * F + i)];
        for (int64_t i = 0; i < F; ++i) ns[static_cast<size_t>(i)] *= Hd.h[static_cast<size_t>(i * F + i)];
        ffn_kept.push_back(keep_top(ns, ff_keep));
        b.ffn_kept = ff_keep;
        r.blocks.push_back(std::move(b));
    }
    if (o.stage_progress) o.stage_progress("prune: importance", L, L);
    // Depth: the blocks whose output differs least from their input go.
    {
        std::vector<double> infl;
        for (const auto& b : r.blocks) infl.push_back(b.influence);
        const std::vector<int64_t> kept = keep_top(infl, L - o.target.layers);
        for (size_t k = 0; k < kept.size(); ++k) r.blocks[static_cast<size_t>(kept[k])].new_index = static_cast<int64_t>(k);
    }
    m.reset();

    // Slice the HF tensors: q rows / o_proj columns by query head, k / v rows by KV group, gate / up rows and down_proj
    // columns by neuron; removed blocks dropped and the rest renumbered.
    const safetensors::Model st = safetensors::Model::open(input_dir);
    const std::regex block_re(R"(^(.*?layers\.)(\d+)\.(.*)$)");
    std::vector<prune_detail::PrunedTensor> outs;
    for (const safetensors::TensorInfo* t : st.tensors()) {
        r.params_in += t->numel;
        std::smatch mt;
        std::vector<float> v = st.tensor(t->name).to_float();
        std::vector<int64_t> shape(t->shape.begin(), t->shape.end());
        if (!std::regex_match(t->name, mt, block_re)) {
            outs.push_back({t->name, shape, std::move(v)});
            continue;
        }
        const int64_t l = std::stoll(mt[2].str());
        if (l < 0 || l >= L) throw FormatError("safetensors", input_dir, 0, "tensor '" + t->name + "' names block " + mt[2].str() + " of " + std::to_string(L));
        const StructuredBlock& b = r.blocks[static_cast<size_t>(l)];
        if (b.new_index < 0) continue;
        const std::string name = mt[1].str() + std::to_string(b.new_index) + "." + mt[3].str();
        const std::string suffix = mt[3].str();
        std::vector<int64_t> q_heads;
        for (int64_t g : b.kept_groups)
            for (int64_t h = g * G; h < (g + 1) * G; ++h) q_heads.push_back(h);
        auto is = [&](const char* p) { return suffix.rfind(p, 0) == 0; };
        if (is("self_attn.q_proj.")) v = take_units(v, shape, 0, q_heads, hd);
        else if (is("self_attn.k_proj.") || is("self_attn.v_proj.")) v = take_units(v, shape, 0, b.kept_groups, hd);
        else if (suffix == "self_attn.o_proj.weight") v = take_units(v, shape, 1, q_heads, hd);
        else if (is("mlp.gate_proj.") || is("mlp.up_proj.")) v = take_units(v, shape, 0, ffn_kept[static_cast<size_t>(l)], 1);
        else if (suffix == "mlp.down_proj.weight") v = take_units(v, shape, 1, ffn_kept[static_cast<size_t>(l)], 1);
        outs.push_back({name, shape, std::move(v)});
    }
    r.n_head_out = kv_keep * G, r.n_head_kv_out = kv_keep, r.n_ff_out = ff_keep, r.n_layer_out = L - o.target.layers;
    for (const auto& t : st.tensors()) r.bytes_in += t->nbytes;
    for (const auto& t : outs) r.params_out += static_cast<int64_t>(t.data.size());
    config["num_attention_heads"] = r.n_head_out;
    config["num_key_value_heads"] = r.n_head_kv_out;
    config["intermediate_size"] = r.n_ff_out;
    config["num_hidden_layers"] = r.n_layer_out;
    config["head_dim"] = hd;  // no longer hidden_size / num_attention_heads in general
    config["torch_dtype"] = "float32";
    nlohmann::json prov = {{"target", r.target}, {"source", input_dir}};
    if (r.calibration) prov["calib"] = {{"file", r.calibration->text_path}, {"sha256", r.calibration->text_sha256}, {"chunks", r.calibration->chunks}};
    config["cq_structured_prune"] = prov;
    r.bytes_out = prune_detail::write_pruned_dir(src, output_dir, outs, config, "cq prune --structured");
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return r;
}

}  // namespace cq

namespace cq {

RecoveryReport recover_by_distillation(const std::string& teacher_path, const std::string& student_path, const std::string& output,
                                       const RecoveryOptions& options) {
    if (options.steps <= 0) throw InvalidArgument("[prune] --recover needs a number of steps > 0");
    if (options.distill.data.empty()) throw InvalidArgument("[prune] --recover distils on text: give --calib FILE");
    auto teacher = LanguageModel::load(teacher_path);
    auto student = LanguageModel::load(student_path);
    DistillOptions d = options.distill;
    d.steps = options.steps;
    d.output = output;
    const auto t0 = std::chrono::steady_clock::now();
    const DistillReport dr = distill_lm(*teacher, *student, d);
    return prune_detail::recovery_report(dr, t0);
}

StructuredFileReport prune_structured_file(const std::string& input_dir, const std::string& output_gguf, const std::string& hf_dir,
                                           const StructuredOptions& options, const RecoveryOptions& recovery) {
    if (output_gguf.empty()) throw InvalidArgument("[prune] no output path (-o OUT.gguf)");
    if (recovery.steps < 0) throw InvalidArgument("[prune] --recover STEPS must be ≥ 0");
    const std::string final_dir = hf_dir.empty() ? output_gguf + ".hf.tmp" : hf_dir;
    const std::string pruned_dir = recovery.steps > 0 ? output_gguf + ".pruned.tmp" : final_dir;
    std::error_code ec;
    prune_detail::RemoveOnExit cleanup;
    if (recovery.steps > 0) cleanup.dirs.push_back(pruned_dir);
    if (hf_dir.empty()) cleanup.dirs.push_back(final_dir);
    StructuredFileReport r;
    r.prune = prune_structured(input_dir, pruned_dir, options);
    if (recovery.steps > 0) {
        RecoveryOptions ro = recovery;
        if (ro.distill.data.empty()) ro.distill.data = options.calib.text_path;
        fs::create_directories(final_dir, ec);
        r.recovery = recover_by_distillation(input_dir, pruned_dir, final_dir, ro);
    }
    QuantizeOptions q;
    q.type = "f32";
    quantize_model(final_dir, output_gguf, q);
    r.gguf = output_gguf;
    r.hf_dir = hf_dir;
    r.gguf_bytes = fs::file_size(output_gguf, ec);
    return r;
}

}  // namespace cq
