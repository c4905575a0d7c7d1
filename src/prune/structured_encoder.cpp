// Structured pruning of encoder classifiers (cq/prune_encoder.h): heads and FFN neurons scored on calibration
// activations of the dense model, the same count removed from every block, and the kept rows / columns copied into a
// smaller HF directory whose config.json says what transformers' prune_heads would (pruned_heads, intermediate_size).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <map>
#include <numeric>

#include <nlohmann/json.hpp>

#include "cq/atomic_file.h"
#include "cq/encoder.h"
#include "cq/error.h"
#include "cq/io/safetensors.h"
#include "cq/mapped_file.h"
#include "cq/prune_encoder.h"
#include "io/hf/hf_dir_writer.h"
#include "prune/pruned_hf_dir.h"

namespace cq {

namespace fs = std::filesystem;
using prune_detail::keep_top;
using prune_detail::place_units;
using prune_detail::take_units;

namespace {

// What a tensor of a block is to the slicing: rows or columns grouped by head, or by FFN neuron.
enum class Cut { none, head_rows, head_cols, ffn_rows, ffn_cols };
struct TensorRole {
    Cut cut = Cut::none;
    int64_t block = -1;
};

// HF tensor name → its role, from the loaded model's Linears (so every family's names come from its own loader).
std::map<std::string, TensorRole> tensor_roles(const EncoderModel& m) {
    std::map<std::string, TensorRole> roles;
    const auto& blocks = m.weights().blocks;
    for (size_t l = 0; l < blocks.size(); ++l) {
        const EncoderBlock& b = blocks[l];
        const int64_t bl = static_cast<int64_t>(l);
        for (const Linear* q : {&b.q, &b.k, &b.v}) {
            roles[q->source_name + ".weight"] = {Cut::head_rows, bl};
            roles[q->source_name + ".bias"] = {Cut::head_rows, bl};
        }
        roles[b.attn_out.source_name + ".weight"] = {Cut::head_cols, bl};
        roles[b.ffn_in.source_name + ".weight"] = {Cut::ffn_rows, bl};
        roles[b.ffn_in.source_name + ".bias"] = {Cut::ffn_rows, bl};
        roles[b.ffn_out.source_name + ".weight"] = {Cut::ffn_cols, bl};
    }
    return roles;
}

// Every tensor of `dir`, passed through fn(name, role, shape&, data) → data.
template <class Fn>
std::vector<prune_detail::PrunedTensor> transform_tensors(const std::string& dir, const std::map<std::string, TensorRole>& roles, Fn fn, int64_t* params_in) {
    const safetensors::Model st = safetensors::Model::open(dir);
    std::vector<prune_detail::PrunedTensor> outs;
    for (const safetensors::TensorInfo* t : st.tensors()) {
        if (params_in) *params_in += t->numel;
        std::vector<int64_t> shape(t->shape.begin(), t->shape.end());
        std::vector<float> v = st.tensor(t->name).to_float();
        const auto it = roles.find(t->name);
        const TensorRole role = it == roles.end() ? TensorRole{} : it->second;
        if (role.cut != Cut::none) v = fn(t->name, role, shape, std::move(v));
        outs.push_back({t->name, std::move(shape), std::move(v)});
    }
    return outs;
}

void check_output_dir(const std::string& input_dir, const std::string& output_dir) {
    if (output_dir.empty()) throw InvalidArgument("[prune] --structured needs an output directory (-o DIR)");
    std::error_code ec;
    if (fs::exists(output_dir, ec) && fs::equivalent(input_dir, output_dir, ec))
        throw InvalidArgument("[prune] the output directory is the input: '" + output_dir + "'");
}

const char* ffn_key(const EncoderConfig& c) { return c.family == EncoderFamily::distilbert ? "hidden_dim" : "intermediate_size"; }

// The heads block l of `c` still has, in the original numbering.
std::vector<int64_t> original_heads(const EncoderConfig& c, int64_t l) {
    std::vector<int64_t> kept;
    const auto* removed = static_cast<size_t>(l) < c.pruned_heads.size() ? &c.pruned_heads[static_cast<size_t>(l)] : nullptr;
    for (int64_t h = 0; h < c.n_head; ++h)
        if (!removed || !std::binary_search(removed->begin(), removed->end(), h)) kept.push_back(h);
    return kept;
}

}  // namespace

bool is_prunable_encoder_dir(const std::string& dir) {
    std::error_code ec;
    if (!fs::is_directory(dir, ec) || !fs::exists(fs::path(dir) / "config.json", ec)) return false;
    nlohmann::json j;
    try {
        j = nlohmann::json::parse(read_text_file((fs::path(dir) / "config.json").string(), 1 << 24));
    } catch (const std::exception&) {
        return false;
    }
    const std::string t = j.value("model_type", "");
    return t == "bert" || t == "roberta" || t == "distilbert" || t == "vit" || t == "deit";
}

EncoderPruneReport prune_encoder_structured(const std::string& input_dir, const std::string& output_dir, const EncoderPruneOptions& o) {
    const auto t0 = std::chrono::steady_clock::now();
    if (o.target.layers > 0)
        throw InvalidArgument("[prune] --structured layers=" + std::to_string(o.target.layers) +
                              ": removing whole blocks is done for decoders only; encoders take heads=F,ffn=F");
    if (!(o.target.heads >= 0 && o.target.heads < 1) || !(o.target.ffn >= 0 && o.target.ffn < 1))
        throw InvalidArgument("[prune] --structured: heads and ffn must be fractions in [0, 1)");
    if (o.calib_data.empty()) throw InvalidArgument("[prune] --structured measures importance on calibration data: give --calib FILE");
    if (o.calib_samples < 1) throw InvalidArgument("[prune] --calib-samples must be ≥ 1");
    if (o.ffn_multiple < 1) throw InvalidArgument("[prune] the FFN multiple must be ≥ 1");
    if (o.recover_steps < 0) throw InvalidArgument("[prune] --recover STEPS must be ≥ 0");
    if (!is_prunable_encoder_dir(input_dir))
        throw Unsupported("[prune] --structured on an encoder reads an HF directory of a BERT, RoBERTa, DistilBERT, ViT or DeiT model; '" +
                          input_dir + "' is not one");
    check_output_dir(input_dir, output_dir);

    auto m = EncoderModel::load(input_dir);
    const EncoderConfig c = m->config();  // a copy: the model is released before the output is written
    const int64_t L = c.n_layer, D = c.hidden, hd = c.hidden / c.n_head, F = c.n_ff;
    EncoderPruneReport r;
    r.input = input_dir, r.output = output_dir, r.target = o.target.describe(), r.calib_data = o.calib_data;
    r.n_head_in = c.heads_in_block(0), r.n_ff_in = F;
    for (int64_t l = 1; l < L; ++l) r.n_head_in = std::min(r.n_head_in, c.heads_in_block(l));
    int64_t ff_keep = F - static_cast<int64_t>(std::llround(o.target.ffn * static_cast<double>(F)));
    if (o.ffn_multiple > 1 && o.target.ffn > 0) ff_keep = (ff_keep + o.ffn_multiple / 2) / o.ffn_multiple * o.ffn_multiple;
    ff_keep = std::min(ff_keep, F);
    if (ff_keep < 1) throw InvalidArgument("[prune] --structured ffn=" + std::to_string(o.target.ffn) + " removes every FFN neuron");

    // Importance on the calibration samples, through the dense model (observers see each Linear's input).
    std::vector<std::vector<double>> head_score(static_cast<size_t>(L)), ffn_score(static_cast<size_t>(L));
    int64_t tokens = 0;
    auto& blocks = m->weights().blocks;
    for (int64_t l = 0; l < L; ++l) {
        EncoderBlock& b = blocks[static_cast<size_t>(l)];
        const int64_t H = c.heads_in_block(l), A = H * hd;
        head_score[static_cast<size_t>(l)].assign(static_cast<size_t>(H), 0.0);
        ffn_score[static_cast<size_t>(l)].assign(static_cast<size_t>(F), 0.0);
        auto wo = std::make_shared<std::vector<float>>(b.attn_out.weight.to_float());  // [D, A]
        m->observe(b.attn_out, [wo, l, H, A, D, hd, &head_score, &tokens](const LinearEvent& e) {
            // x: [rows, A] (heads concatenated) → per head ‖W_o[:, h]·x_h‖²
            std::vector<double>& sc = head_score[static_cast<size_t>(l)];
            std::vector<double> y(static_cast<size_t>(D));
            for (int64_t r = 0; r < e.rows; ++r) {
                if (e.row_mask && !e.row_mask[r]) continue;
                if (l == 0) ++tokens;
                const float* x = e.x + r * A;
                for (int64_t h = 0; h < H; ++h) {
                    double s = 0;
                    for (int64_t i = 0; i < D; ++i) {
                        const float* w = wo->data() + i * A + h * hd;
                        double acc = 0;
                        for (int64_t j = 0; j < hd; ++j) acc += double(w[j]) * x[h * hd + j];
                        s += acc * acc;
                    }
                    sc[static_cast<size_t>(h)] += s;
                }
            }
        });
        // FFN: Σ a_i² per neuron (a: the down projection's input); × ‖W_out[:, i]‖² below
        m->observe(b.ffn_out, [l, F, &ffn_score](const LinearEvent& e) {
            std::vector<double>& sc = ffn_score[static_cast<size_t>(l)];
            for (int64_t r = 0; r < e.rows; ++r) {
                if (e.row_mask && !e.row_mask[r]) continue;
                const float* a = e.x + r * F;
                for (int64_t i = 0; i < F; ++i) sc[static_cast<size_t>(i)] += double(a[i]) * a[i];
            }
        });
    }
    DataSelection sel = o.calib_selection;
    if (sel.count < 0 || sel.count > o.calib_samples) sel.count = o.calib_samples;
    const LabelledData data = load_labelled_data(o.calib_data, *m, sel);
    const ClassificationResult cr = classify_dataset(*m, data, o.run);
    m->clear_observers();
    r.calib_samples = cr.samples, r.calib_tokens = tokens;

    std::vector<std::vector<int64_t>> heads_kept(static_cast<size_t>(L)), ffn_kept(static_cast<size_t>(L));
    nlohmann::json pruned = nlohmann::json::object();
    r.n_head_out = -1;
    for (int64_t l = 0; l < L; ++l) {
        const EncoderBlock& b = blocks[static_cast<size_t>(l)];
        const int64_t H = c.heads_in_block(l);
        const int64_t h_keep = H - static_cast<int64_t>(std::llround(o.target.heads * static_cast<double>(H)));
        if (h_keep < 1) throw InvalidArgument("[prune] --structured heads=" + std::to_string(o.target.heads) + " removes every head of block " + std::to_string(l));
        std::vector<double>& ns = ffn_score[static_cast<size_t>(l)];
        const std::vector<float> wd = b.ffn_out.weight.to_float();  // [D, F]
        std::vector<double> col(static_cast<size_t>(F), 0.0);
        for (int64_t i = 0; i < D; ++i)
            for (int64_t j = 0; j < F; ++j) col[static_cast<size_t>(j)] += double(wd[static_cast<size_t>(i * F + j)]) * wd[static_cast<size_t>(i * F + j)];
        for (int64_t j = 0; j < F; ++j) ns[static_cast<size_t>(j)] *= col[static_cast<size_t>(j)];
        heads_kept[static_cast<size_t>(l)] = keep_top(head_score[static_cast<size_t>(l)], h_keep);
        ffn_kept[static_cast<size_t>(l)] = keep_top(ns, ff_keep);
        EncoderPrunedBlock pb;
        pb.block = l;
        const std::vector<int64_t> orig = original_heads(c, l);
        for (int64_t h : heads_kept[static_cast<size_t>(l)]) pb.heads_kept.push_back(orig[static_cast<size_t>(h)]);
        pb.head_scores = head_score[static_cast<size_t>(l)];
        pb.ffn_kept = ff_keep;
        pb.ffn_neurons = ffn_kept[static_cast<size_t>(l)];
        std::vector<int64_t> removed;
        for (int64_t h = 0; h < c.n_head; ++h)
            if (!std::binary_search(pb.heads_kept.begin(), pb.heads_kept.end(), h)) removed.push_back(h);
        if (!removed.empty()) pruned[std::to_string(l)] = removed;
        r.n_head_out = r.n_head_out < 0 ? h_keep : std::min(r.n_head_out, h_keep);
        r.blocks.push_back(std::move(pb));
    }
    r.n_ff_out = ff_keep;
    const std::map<std::string, TensorRole> roles = tensor_roles(*m);
    m.reset();

    const auto cut = [&](const std::string&, const TensorRole& role, std::vector<int64_t>& shape, std::vector<float> v) {
        const size_t l = static_cast<size_t>(role.block);
        switch (role.cut) {
        case Cut::head_rows: return take_units(v, shape, 0, heads_kept[l], hd);
        case Cut::head_cols: return take_units(v, shape, 1, heads_kept[l], hd);
        case Cut::ffn_rows: return take_units(v, shape, 0, ffn_kept[l], 1);
        case Cut::ffn_cols: return take_units(v, shape, 1, ffn_kept[l], 1);
        case Cut::none: break;
        }
        return v;
    };
    const bool recover = o.recover_steps > 0;
    const std::string pruned_dir = recover ? output_dir + ".pruned.tmp" : output_dir;
    prune_detail::RemoveOnExit cleanup;
    if (recover) cleanup.dirs = {pruned_dir};
    {
        const std::vector<prune_detail::PrunedTensor> outs = transform_tensors(input_dir, roles, cut, &r.params_in);
        for (const prune_detail::PrunedTensor& t : outs) r.params_out += static_cast<int64_t>(t.data.size());
        nlohmann::json config = hf::read_config(input_dir);
        if (pruned.empty()) config.erase("pruned_heads");
        else config["pruned_heads"] = pruned;
        config[ffn_key(c)] = ff_keep;
        config["torch_dtype"] = "float32";
        nlohmann::json prov = {{"target", r.target},       {"source", input_dir},          {"calib", o.calib_data},
                               {"calib_samples", r.calib_samples}, {"calib_tokens", r.calib_tokens},
                               {"importance", "heads: sum over tokens of |W_o[:,h] ctx_h|^2; ffn: sum a_i^2 * |W_out[:,i]|^2"}};
        config["cq_structured_prune"] = prov;
        r.bytes_out = prune_detail::write_pruned_dir(fs::path(input_dir), pruned_dir, outs, config, "cq prune --structured");
    }
    r.bytes_in = fs::file_size(fs::path(input_dir) / "model.safetensors");
    if (recover) {
        DistillOptions d = o.recover;
        if (d.data.empty()) d.data = o.calib_data;
        d.steps = o.recover_steps;
        r.recovery = recover_encoder_by_distillation(input_dir, pruned_dir, output_dir, d);
        r.bytes_out = fs::file_size(fs::path(output_dir) / "model.safetensors");
    }
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return r;
}

RecoveryReport recover_encoder_by_distillation(const std::string& teacher_dir, const std::string& student_dir, const std::string& output_dir,
                                               const DistillOptions& options) {
    if (options.steps <= 0) throw InvalidArgument("[prune] recovery by distillation needs a number of steps > 0");
    if (options.data.empty()) throw InvalidArgument("[prune] recovery by distillation needs labelled data (labels unused)");
    check_output_dir(teacher_dir, output_dir);
    check_output_dir(student_dir, output_dir);
    // The trainer takes each block's own head count (pruned_heads): the pruned student trains as it is, and
    // save_hf_dir writes it with its config (pruned_heads) and sliced shapes.
    auto teacher = EncoderModel::load(teacher_dir);
    auto student = EncoderModel::load(student_dir);
    DistillOptions d = options;
    d.output = output_dir;
    const auto t0 = std::chrono::steady_clock::now();
    const DistillReport dr = distill_classifier(*teacher, *student, d);
    return prune_detail::recovery_report(dr, t0);
}

void expand_pruned_encoder(const std::string& pruned_dir, const std::string& output_dir) {
    check_output_dir(pruned_dir, output_dir);
    auto m = EncoderModel::load(pruned_dir);
    const EncoderConfig c = m->config();
    const int64_t hd = c.hidden / c.n_head;
    const std::map<std::string, TensorRole> roles = tensor_roles(*m);
    m.reset();
    const auto grow = [&](const std::string&, const TensorRole& role, std::vector<int64_t>& shape, std::vector<float> v) {
        const std::vector<int64_t> kept = original_heads(c, role.block);
        if (role.cut == Cut::head_rows) return place_units(v, shape, 0, kept, hd, c.n_head);
        if (role.cut == Cut::head_cols) return place_units(v, shape, 1, kept, hd, c.n_head);
        return v;
    };
    const std::vector<prune_detail::PrunedTensor> outs = transform_tensors(pruned_dir, roles, grow, nullptr);
    nlohmann::json config = hf::read_config(pruned_dir);
    nlohmann::json heads = config.contains("pruned_heads") ? config["pruned_heads"] : nlohmann::json::object();
    config.erase("pruned_heads");
    if (!config.contains("cq_structured_prune") || !config["cq_structured_prune"].is_object()) config["cq_structured_prune"] = nlohmann::json::object();
    config["cq_structured_prune"]["pruned_heads"] = heads;
    prune_detail::write_pruned_dir(fs::path(pruned_dir), output_dir, outs, config, "cq prune --structured (expanded)");
}

}  // namespace cq
