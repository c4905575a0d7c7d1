// LmTrainer: the decoder families' training forward (saving every activation the backward reads) and its
// backward, op by op in reverse (train_ops.h), over the model's own tensors made owned f32 in place.
// LLaMA: RMSNorm, q/k/v (+ optional biases), RoPE, GQA attention, SwiGLU. GPT-2: LayerNorm, fused qkv, learned
// positions, GELU (tanh), biases everywhere, tied head. LoRA: adapters on frozen Linears of any format.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <deque>
#include <string>

#include "cq/atomic_file.h"
#include "cq/error.h"
#include "cq/io/gguf_writer.h"
#include "cq/train.h"
#include "models/tensor_names.h"
#include "train/train_ops.h"

namespace cq {

namespace {

// [in, out] (GPT-2 Conv1D) → an owned [out, in] copy.
Tensor owned_f32_transposed(const Tensor& t, const std::string& what);

Tensor owned_f32(const Tensor& t, const std::string& what) {
    const auto& traits = dtype_traits(t.dtype());
    if (!traits.to_float) throw Unsupported("[train] '" + what + "' is held as " + std::string(traits.name) + ", which cq cannot train");
    Tensor out = Tensor::zeros(t.shape(), DType::F32);
    const std::vector<float> v = t.to_float();
    std::memcpy(out.mutable_data(), v.data(), v.size() * sizeof(float));
    return out;
}

Tensor owned_f32_transposed(const Tensor& t, const std::string& what) {
    const Tensor in = owned_f32(t, what);
    const int64_t rows = t.dim(0), cols = t.dim(1);
    Tensor out = Tensor::zeros({cols, rows}, DType::F32);
    const float* src = static_cast<const float*>(in.data());
    float* dst = static_cast<float*>(out.mutable_data());
    for (int64_t r = 0; r < rows; ++r)
        for (int64_t c = 0; c < cols; ++c) dst[c * rows + r] = src[r * cols + c];
    return out;
}

float* data_of(Tensor& t) { return static_cast<float*>(t.mutable_data()); }

void grow(std::vector<float>& v, int64_t n) {
    if (static_cast<int64_t>(v.size()) < n) v.resize(static_cast<size_t>(n));
}

}  // namespace

struct LmTrainer::State {
    LanguageModel* model = nullptr;
    LlmConfig c;
    std::vector<std::vector<float>> grad_storage;

    // Parameter indices into params_, per block.
    // −1: absent in this family / model.
    struct BlockParams {
        int attn_norm = -1, wq = -1, wk = -1, wv = -1, wo = -1, ffn_norm = -1, gate = -1, up = -1, down = -1;
        int bq = -1, bk = -1, bv = -1;
        int attn_norm_b = -1, wqkv = -1, bqkv = -1, bo = -1, ffn_norm_b = -1, bup = -1, bdown = -1;  // GPT-2
    };
    int embd = -1, pos = -1, out_norm = -1, out_norm_b = -1, out = -1;
    bool gpt2 = false;
    std::vector<BlockParams> blocks;

    // Activations at capacity N = B·T (all layers), as the backward reads them.
    int64_t B = 0, T = 0;
    std::vector<float> res, xn1, rstd1, q, k, v, p, att, xmid, xn2, rstd2, g, u, h, xnf, rstdf, logits, losses;
    std::vector<float> mean1, mean2, meanf, qkv;  // GPT-2: LayerNorm means, the fused projection's output
    std::vector<float> dres, dxn, dq, dk, dv, datt, dh, dg, du, tmp, dqkv;
    std::vector<int32_t> positions;
    std::vector<float> cos_t, sin_t;
    std::vector<int32_t> ids, tgts;
    int64_t rope_T = -1;
    // Activation checkpointing: k > 0 recomputes blocks 0, k, 2k, … in the backward (they keep only their input and
    // share activation slot 0); the other blocks keep theirs (slots 1, 2, …). 0: none; 1: every block.
    int64_t checkpoint_every = 0;
    bool recomputed(int64_t l) const { return checkpoint_every > 0 && l % checkpoint_every == 0; }
    int64_t slot_of(int64_t l) const {
        if (checkpoint_every == 0) return l;
        return recomputed(l) ? 0 : 1 + l - (l + checkpoint_every - 1) / checkpoint_every;
    }
    int64_t n_slots(int64_t L) const { return checkpoint_every == 0 ? L : 1 + L - (L + checkpoint_every - 1) / checkpoint_every; }
    LogitLoss logit_loss;     // set: replaces cross-entropy (s.logits then holds its gradient)
    HiddenLoss hidden_loss;   // set: terms on block outputs; dhidden: [terms, N, D], their gradients
    std::vector<float> dhidden;

    // LoRA: every tensor is frozen. A frozen tensor's index in the block tables above is −2 − f (f: into `frozen`).
    struct Frozen {
        const float* value = nullptr;    // f32 as the kernels read it; null: dequantize `linear` / `table` per use
        const Linear* linear = nullptr;  // a frozen Linear (its adapters: lora ≥ 0, into lora_layers_)
        const Tensor* table = nullptr;   // a frozen embedding held in a block format: rows dequantized as looked up
        int lora = -1;
    };
    std::vector<Frozen> frozen;
    std::deque<std::vector<float>> frozen_copies;  // f32 copies of small frozen tensors held in another type (norms)
    std::vector<float> sink;  // the gradients frozen norms' backward kernels write and nobody reads
    std::vector<float> wscratch, lora_t, lora_u, lora_dt, lora_dy;
    bool merged = false;  // merge_lora ran: the frozen pointers may be stale

    // A tensor's f32 values by index (−1: absent → null; frozen: its f32 form, null where it is dequantized per use).
    const float* value(const std::vector<TrainParam>& P, int i) const {
        if (i >= 0) return P[static_cast<size_t>(i)].value;
        return i == -1 ? nullptr : frozen[static_cast<size_t>(-2 - i)].value;
    }
    // Where a tensor's gradient adds up: its own, none (−1), or the sink (frozen: a norm's backward writes it anyway).
    float* gradient(std::vector<TrainParam>& P, int i) {
        if (i >= 0) return P[static_cast<size_t>(i)].grad;
        return i == -1 ? nullptr : sink.data();
    }
    const Frozen* frozen_at(int i) const { return i <= -2 ? &frozen[static_cast<size_t>(-2 - i)] : nullptr; }
};

namespace {

// A seeded uniform draw in [-bound, bound) from splitmix64: the same numbers on every platform and standard library.
float uniform_draw(uint64_t& state, float bound) {
    uint64_t z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    const double u = static_cast<double>(z >> 11) * 0x1.0p-53;
    return static_cast<float>((2.0 * u - 1.0) * bound);
}

bool matches_any(const std::vector<std::string>& globs, const std::string& name) {
    RuleTarget target;
    target.name = name;
    for (const std::string& g : globs) {
        RuleScope scope;
        scope.pattern = g;
        if (scope.matches(target)) return true;
    }
    return false;
}

}  // namespace

LmTrainer::LmTrainer(LanguageModel& model) : LmTrainer(model, LoraOptions{}) {}

LmTrainer::LmTrainer(LanguageModel& model, const LoraOptions& lora) : s_(std::make_unique<State>()) {
    State& s = *s_;
    s.model = &model;
    s.c = model.config();
    const LlmConfig& c = s.c;
    if (lora.rank < 0) throw InvalidArgument("[train] LoRA rank " + std::to_string(lora.rank) + " must be positive");
    if (lora.alpha < 0 || !std::isfinite(lora.alpha))
        throw InvalidArgument("[train] LoRA alpha " + std::to_string(lora.alpha) + " must be a positive number (0: the rank)");
    const bool frozen_base = lora.rank > 0;
    lora_alpha_ = lora.alpha > 0 ? lora.alpha : static_cast<float>(lora.rank);
    uint64_t rng = lora.seed * 0x2545F4914F6CDD1Dull + 0x1234567ull;
    s.gpt2 = c.family == LlmFamily::gpt2;
    if (!s.gpt2 && (c.n_head_kv <= 0 || c.n_head % c.n_head_kv != 0))
        throw Unsupported("[train] " + std::to_string(c.n_head) + " query heads over " + std::to_string(c.n_head_kv) + " KV heads");
    LlmWeights& w = model.weights();
    const bool tied = w.output.weight.data() == w.token_embd.data();
    // HF names: GPT-2 files come with and without the "transformer." prefix; follow the file's own Linears.
    const std::string& src0 = w.blocks.empty() ? std::string() : (s.gpt2 ? w.blocks[0].wqkv.source_name : w.blocks[0].wq.source_name);
    const models::DecoderNames hf(c.family, true, src0.rfind("h.", 0) == 0 ? "" : "transformer.");

    const auto add = [&](std::string name, std::string hf_name, float* value, std::vector<int64_t> shape, bool hf_t = false) {
        TrainParam p;
        p.name = std::move(name), p.hf_name = std::move(hf_name), p.shape = std::move(shape), p.value = value;
        p.hf_transposed = hf_t;
        p.numel = 1;
        for (int64_t d : p.shape) p.numel *= d;
        s.grad_storage.emplace_back(static_cast<size_t>(p.numel), 0.0f);  // moving the vector keeps each buffer
        p.grad = s.grad_storage.back().data();
        params_.push_back(std::move(p));
        return static_cast<int>(params_.size() - 1);
    };
    // A frozen tensor read as f32: its own bytes where it is f32, else an f32 copy held here (norms, biases: small).
    const auto freeze_f32 = [&](const Tensor& t, const std::string& what) {
        State::Frozen f;
        if (t.dtype() == DType::F32) {
            f.value = static_cast<const float*>(t.data());
        } else {
            const Tensor copy = owned_f32(t, what);
            s.frozen_copies.emplace_back(static_cast<const float*>(copy.data()), static_cast<const float*>(copy.data()) + copy.numel());
            f.value = s.frozen_copies.back().data();
        }
        s.frozen.push_back(f);
        return -2 - static_cast<int>(s.frozen.size() - 1);
    };
    // A frozen Linear, read as f32 in place or dequantized (and transposed) per use; with adapters when targeted.
    const auto freeze_linear = [&](Linear& l, const std::string& hf_name, int* bias) {
        if (l.int8) throw Unsupported("[train] '" + l.name + "' is held as " + l.format() + ", which cq cannot train adapters on");
        if (!dtype_traits(l.weight.dtype()).to_float)
            throw Unsupported("[train] '" + l.name + "' is held as " + l.format() + ", which cq cannot read as floats");
        State::Frozen f;
        f.linear = &l;
        if (l.weight.dtype() == DType::F32 && !l.transposed) f.value = static_cast<const float*>(l.weight.data());
        if (l.bias) {
            if (!bias) throw Unsupported("[train] '" + l.name + "' has a bias, which this family's backward does not take");
            *bias = freeze_f32(*l.bias, l.name + ".bias");
        }
        const bool targeted = l.block >= 0 && (lora.targets.empty() || matches_any(lora.targets, l.name));
        if (targeted) {
            const int64_t r = lora.rank, I = l.n_in(), O = l.n_out();
            if (r > std::min(I, O))
                throw InvalidArgument("[train] LoRA rank " + std::to_string(r) + " exceeds '" + l.name + "' (" + std::to_string(O) + " × " +
                                      std::to_string(I) + ")");
            auto& a = s.frozen_copies.emplace_back(static_cast<size_t>(r * I));
            const float bound = 1.0f / std::sqrt(static_cast<float>(I));  // PEFT: kaiming_uniform_(a = √5) = U(±1/√in)
            for (float& v : a) v = uniform_draw(rng, bound);
            auto& b = s.frozen_copies.emplace_back(static_cast<size_t>(O * r), 0.0f);
            const std::string peft = "base_model.model." + hf_name;
            LoraLayer L{&l, -1, -1, lora_alpha_ / static_cast<float>(r)};
            L.a = add(l.name + ".weight.lora_a", peft + ".lora_A.weight", a.data(), {r, I});
            L.b = add(l.name + ".weight.lora_b", peft + ".lora_B.weight", b.data(), {O, r});
            f.lora = static_cast<int>(lora_layers_.size());
            lora_layers_.push_back(L);
        }
        s.frozen.push_back(f);
        return -2 - static_cast<int>(s.frozen.size() - 1);
    };
    // A norm's weight (and LayerNorm bias → *bias).
    const auto add_norm = [&](Norm& n, const std::string& name, const std::string& hf_name, int* bias) {
        if (frozen_base) {
            if (n.bias && !bias) throw Unsupported("[train] '" + name + "' has a bias, which an RMSNorm does not take");
            if (n.bias) *bias = freeze_f32(*n.bias, name + ".bias");
            return freeze_f32(n.weight, name);
        }
        n.weight = owned_f32(n.weight, name);
        n.modified_by = "finetune";
        const int i = add(name + ".weight", hf_name + ".weight", data_of(n.weight), n.weight.shape());
        if (n.bias) {
            if (!bias) throw Unsupported("[train] '" + name + "' has a bias, which an RMSNorm does not take");
            *n.bias = owned_f32(*n.bias, name + ".bias");
            *bias = add(name + ".bias", hf_name + ".bias", data_of(*n.bias), n.bias->shape());
        }
        return i;
    };
    // A Linear's weight, as [out, in] (and its bias → *bias; null: the backward takes none here).
    const auto add_linear = [&](Linear& l, const std::string& hf_name, int* bias) {
        if (frozen_base) return freeze_linear(l, hf_name, bias);
        if (l.int8) throw Unsupported("[train] '" + l.name + "' is held as " + l.format() + ", which cq cannot train");
        const bool was_transposed = l.transposed;
        model.set_weight(l, was_transposed ? owned_f32_transposed(l.weight, l.name) : owned_f32(l.weight, l.name), "finetune");
        const int i = add(l.name + ".weight", hf_name + ".weight", data_of(l.weight), l.weight.shape(), was_transposed);
        if (l.bias) {
            if (!bias) throw Unsupported("[train] '" + l.name + "' has a bias, which this family's backward does not take");
            *l.bias = owned_f32(*l.bias, l.name + ".bias");
            *bias = add(l.name + ".bias", hf_name + ".bias", data_of(*l.bias), l.bias->shape());
        }
        return i;
    };

    if (frozen_base) {
        const auto& traits = dtype_traits(w.token_embd.dtype());
        if (!traits.to_float || c.n_embd % static_cast<int64_t>(traits.block_size) != 0)
            throw Unsupported("[train] the token embedding is held as " + std::string(traits.name) + ", which cq cannot read by rows");
        State::Frozen f;
        if (w.token_embd.dtype() == DType::F32) f.value = static_cast<const float*>(w.token_embd.data());
        else f.table = &w.token_embd;
        s.frozen.push_back(f);
        s.embd = -2 - static_cast<int>(s.frozen.size() - 1);
        if (s.gpt2) {
            if (!w.pos_embd) throw Unsupported("[train] the GPT-2 model has no position embedding");
            s.pos = freeze_f32(*w.pos_embd, "position_embd");
        }
        s.sink.assign(static_cast<size_t>(c.n_embd), 0.0f);
    } else {
        w.token_embd = owned_f32(w.token_embd, "token_embd");
        w.embeddings_modified_by = "finetune";
        s.embd = add("token_embd.weight", hf.global("token_embd") + ".weight", data_of(w.token_embd), w.token_embd.shape());
        if (s.gpt2) {
            if (!w.pos_embd) throw Unsupported("[train] the GPT-2 model has no position embedding");
            *w.pos_embd = owned_f32(*w.pos_embd, "position_embd");
            s.pos = add("position_embd.weight", hf.global("position_embd") + ".weight", data_of(*w.pos_embd), w.pos_embd->shape());
        }
    }
    for (size_t l = 0; l < w.blocks.size(); ++l) {
        DecoderBlock& b = w.blocks[l];
        const auto n = static_cast<int64_t>(l);
        const std::string blk = "blk." + std::to_string(l) + ".";
        State::BlockParams bp{};
        if (s.gpt2) {
            bp.attn_norm = add_norm(b.attn_norm, blk + "attn_norm", hf.block(n, "attn_norm"), &bp.attn_norm_b);
            bp.wqkv = add_linear(b.wqkv, hf.block(n, "attn_qkv"), &bp.bqkv);
            bp.wo = add_linear(b.wo, hf.block(n, "attn_output"), &bp.bo);
            bp.ffn_norm = add_norm(b.ffn_norm, blk + "ffn_norm", hf.block(n, "ffn_norm"), &bp.ffn_norm_b);
            bp.up = add_linear(b.ffn_up, hf.block(n, "ffn_up"), &bp.bup);
            bp.down = add_linear(b.ffn_down, hf.block(n, "ffn_down"), &bp.bdown);
        } else {
            bp.attn_norm = add_norm(b.attn_norm, blk + "attn_norm", hf.block(n, "attn_norm"), nullptr);
            bp.wq = add_linear(b.wq, hf.block(n, "attn_q"), &bp.bq);
            bp.wk = add_linear(b.wk, hf.block(n, "attn_k"), &bp.bk);
            bp.wv = add_linear(b.wv, hf.block(n, "attn_v"), &bp.bv);
            bp.wo = add_linear(b.wo, hf.block(n, "attn_output"), nullptr);
            bp.ffn_norm = add_norm(b.ffn_norm, blk + "ffn_norm", hf.block(n, "ffn_norm"), nullptr);
            bp.gate = add_linear(b.ffn_gate, hf.block(n, "ffn_gate"), nullptr);
            bp.up = add_linear(b.ffn_up, hf.block(n, "ffn_up"), nullptr);
            bp.down = add_linear(b.ffn_down, hf.block(n, "ffn_down"), nullptr);
        }
        s.blocks.push_back(bp);
    }
    s.out_norm = add_norm(w.output_norm, "output_norm", hf.global("output_norm"), s.gpt2 ? &s.out_norm_b : nullptr);
    if (frozen_base) {
        s.out = freeze_linear(w.output, hf.global("output"), nullptr);  // tied: w.output.weight is the embedding's bytes
        if (lora_layers_.empty()) {
            std::string globs;
            for (const std::string& g : lora.targets) {
                if (!globs.empty()) globs += ',';
                globs += g;
            }
            throw InvalidArgument("[train] no Linear inside the blocks matches the LoRA targets '" + globs + "'");
        }
    } else if (tied) {
        // The head is the embedding: one parameter, both uses add to its gradient.
        w.output.weight = w.token_embd;
        w.output.transposed = false;
        w.output.modified_by = "finetune";
        s.out = s.embd;
    } else {
        s.out = add_linear(w.output, hf.global("output"), nullptr);
    }
}

LmTrainer::~LmTrainer() = default;

void LmTrainer::set_checkpointing(bool on) { s_->checkpoint_every = on ? 1 : 0; }

void LmTrainer::set_checkpoint_every(int64_t k) {
    if (k < 0) throw InvalidArgument("[train] checkpointing every " + std::to_string(k) + " blocks: k must be ≥ 0");
    s_->checkpoint_every = k;
}

void LmTrainer::set_logit_loss(LogitLoss loss) { s_->logit_loss = std::move(loss); }

void LmTrainer::set_hidden_loss(HiddenLoss loss) {
    for (int64_t b : loss.blocks)
        if (b < 0 || b >= s_->c.n_layer)
            throw InvalidArgument("[train] a hidden-state loss reads block " + std::to_string(b) + ", outside [0, " + std::to_string(s_->c.n_layer) + ")");
    s_->hidden_loss = std::move(loss);
}

void LmTrainer::zero_grad() {
    for (auto& g : s_->grad_storage) std::fill(g.begin(), g.end(), 0.0f);
}

uint64_t LmTrainer::activation_bytes() const {
    const State& s = *s_;
    uint64_t n = 0;
    for (const auto* v : {&s.res, &s.xn1, &s.rstd1, &s.q, &s.k, &s.v, &s.p, &s.att, &s.xmid, &s.xn2, &s.rstd2, &s.g, &s.u,
                          &s.h, &s.xnf, &s.rstdf, &s.logits, &s.losses, &s.dres, &s.dxn, &s.dq, &s.dk, &s.dv, &s.datt,
                          &s.dh, &s.dg, &s.du, &s.tmp, &s.mean1, &s.mean2, &s.meanf, &s.qkv, &s.dqkv})
        n += v->size() * sizeof(float);
    return n;
}

namespace {

struct Dims {
    int64_t N, D, L, Hq, Hkv, hd, qd, kvd, F, V;
};
Dims dims_of(const LlmConfig& c, int64_t N) {
    const int64_t Hkv = c.family == LlmFamily::gpt2 ? c.n_head : c.n_head_kv;
    return {N, c.n_embd, c.n_layer, c.n_head, Hkv, c.head_dim, c.n_head * c.head_dim, Hkv * c.head_dim, c.n_ff, c.n_vocab};
}

}  // namespace

// Block l's forward from res[l] into res[l + 1], its activations in slot sl of the per-block buffers (State::slot_of: l,
// or under activation checkpointing 0 for the blocks the backward runs again just before it needs them).
void LmTrainer::block_forward(int64_t l, int64_t sl) {
    State& s = *s_;
    auto& P = params_;
    const LlmConfig& c = s.c;
    const int64_t B = s.B, T = s.T;
    const Dims d = dims_of(c, B * T);
    const int64_t N = d.N;
    const auto val = [&](int i) { return s.value(P, i); };
    const auto& bp = s.blocks[static_cast<size_t>(l)];
    const float* xin = s.res.data() + l * N * d.D;
    float* xn1 = s.xn1.data() + sl * N * d.D;
    float* q = s.q.data() + sl * N * d.qd;
    float* k = s.k.data() + sl * N * d.kvd;
    float* v = s.v.data() + sl * N * d.kvd;
    float* att = s.att.data() + sl * N * d.qd;
    float* xmid = s.xmid.data() + sl * N * d.D;
    float* xn2 = s.xn2.data() + sl * N * d.D;
    float* g = s.g.data() + sl * N * d.F;
    float* h = s.h.data() + sl * N * d.F;
    if (s.gpt2) {
        train::layernorm_forward(xin, val(bp.attn_norm), val(bp.attn_norm_b), N, d.D, c.norm_eps, xn1, s.mean1.data() + sl * N,
                                 s.rstd1.data() + sl * N);
        // qkv: [N, 3D] = q | k | v → three contiguous buffers, as the attention kernels take them
        linear_forward(bp.wqkv, bp.bqkv, xn1, N, d.D, 3 * d.D, s.qkv.data());
        for (int64_t r = 0; r < N; ++r) {
            const float* src = s.qkv.data() + r * 3 * d.D;
            std::copy_n(src, d.D, q + r * d.D), std::copy_n(src + d.D, d.D, k + r * d.D), std::copy_n(src + 2 * d.D, d.D, v + r * d.D);
        }
    } else {
        train::rmsnorm_forward(xin, val(bp.attn_norm), N, d.D, c.norm_eps, xn1, s.rstd1.data() + sl * N);
        linear_forward(bp.wq, bp.bq, xn1, N, d.D, d.qd, q);
        linear_forward(bp.wk, bp.bk, xn1, N, d.D, d.kvd, k);
        linear_forward(bp.wv, bp.bv, xn1, N, d.D, d.kvd, v);
        train::rope_forward(q, B, T, d.qd, d.Hq, d.hd, c.rope_dims, s.cos_t.data(), s.sin_t.data(), c.rope_pairing);
        train::rope_forward(k, B, T, d.kvd, d.Hkv, d.hd, c.rope_dims, s.cos_t.data(), s.sin_t.data(), c.rope_pairing);
    }
    train::attention_forward(q, k, v, B, T, d.Hq, d.Hkv, d.hd, s.p.data() + sl * B * d.Hq * T * T, att);
    linear_forward(bp.wo, bp.bo, att, N, d.qd, d.D, s.tmp.data());
    train::add_forward(xin, s.tmp.data(), xmid, N * d.D);
    if (s.gpt2) {
        train::layernorm_forward(xmid, val(bp.ffn_norm), val(bp.ffn_norm_b), N, d.D, c.norm_eps, xn2, s.mean2.data() + sl * N,
                                 s.rstd2.data() + sl * N);
        linear_forward(bp.up, bp.bup, xn2, N, d.D, d.F, g);
        train::gelu_tanh_forward(g, h, N * d.F);
    } else {
        float* u = s.u.data() + sl * N * d.F;
        train::rmsnorm_forward(xmid, val(bp.ffn_norm), N, d.D, c.norm_eps, xn2, s.rstd2.data() + sl * N);
        linear_forward(bp.gate, -1, xn2, N, d.D, d.F, g);
        linear_forward(bp.up, -1, xn2, N, d.D, d.F, u);
        train::swiglu_forward(g, u, h, N * d.F);
    }
    linear_forward(bp.down, bp.bdown, h, N, d.F, d.D, s.tmp.data());
    train::add_forward(xmid, s.tmp.data(), s.res.data() + (l + 1) * N * d.D, N * d.D);
}

// The forward with saved activations; returns Σ losses and the number of counted targets.
std::pair<double, int64_t> LmTrainer::run_forward(std::span<const int32_t> tokens, std::span<const int32_t> targets,
                                                  int64_t B, int64_t T) {
    State& s = *s_;
    auto& P = params_;
    const LlmConfig& c = s.c;
    if (B <= 0 || T <= 0) throw InvalidArgument("[train] batch " + std::to_string(B) + " × " + std::to_string(T) + " is empty");
    if (static_cast<int64_t>(tokens.size()) != B * T || static_cast<int64_t>(targets.size()) != B * T)
        throw InvalidArgument("[train] a batch of " + std::to_string(B) + " × " + std::to_string(T) + " needs " + std::to_string(B * T) +
                              " tokens and targets, got " + std::to_string(tokens.size()) + " and " + std::to_string(targets.size()));
    if (c.n_ctx_train > 0 && T > c.n_ctx_train)
        throw InvalidArgument("[train] sequences of " + std::to_string(T) + " tokens exceed the model's context of " + std::to_string(c.n_ctx_train));
    for (int64_t i = 0; i < B * T; ++i) {
        if (tokens[i] < 0 || tokens[i] >= c.n_vocab)
            throw InvalidArgument("[train] token id " + std::to_string(tokens[i]) + " at position " + std::to_string(i) +
                                  " is outside the vocabulary [0, " + std::to_string(c.n_vocab) + ")");
        if (targets[i] >= c.n_vocab)
            throw InvalidArgument("[train] target id " + std::to_string(targets[i]) + " at position " + std::to_string(i) +
                                  " is outside the vocabulary [0, " + std::to_string(c.n_vocab) + ")");
    }
    const Dims d = dims_of(c, B * T);
    const int64_t N = d.N;
    s.B = B, s.T = T;
    const int64_t S = s.n_slots(d.L);  // slots of per-block activations
    grow(s.res, (d.L + 1) * N * d.D);
    grow(s.xn1, S * N * d.D), grow(s.xmid, S * N * d.D), grow(s.xn2, S * N * d.D);
    grow(s.rstd1, S * N), grow(s.rstd2, S * N);
    grow(s.q, S * N * d.qd), grow(s.att, S * N * d.qd);
    grow(s.k, S * N * d.kvd), grow(s.v, S * N * d.kvd);
    grow(s.p, S * B * d.Hq * T * T);
    grow(s.g, S * N * d.F), grow(s.h, S * N * d.F);
    if (!s.gpt2) grow(s.u, S * N * d.F);
    grow(s.xnf, N * d.D), grow(s.rstdf, N), grow(s.logits, N * d.V), grow(s.losses, N), grow(s.tmp, N * std::max(d.D, d.F));
    if (s.gpt2) {
        grow(s.mean1, S * N), grow(s.mean2, S * N), grow(s.meanf, N), grow(s.qkv, N * 3 * d.D);
        s.positions.resize(static_cast<size_t>(N));
        for (int64_t i = 0; i < N; ++i) s.positions[static_cast<size_t>(i)] = static_cast<int32_t>(i % T);
    } else if (s.rope_T != T) {
        const int64_t half = c.rope_dims / 2;
        s.cos_t.assign(static_cast<size_t>(T * half), 0.0f), s.sin_t.assign(static_cast<size_t>(T * half), 0.0f);
        train::rope_tables(T, c.rope_dims, c.rope_theta, c.rope_scale, s.cos_t.data(), s.sin_t.data());
        s.rope_T = T;
    }
    s.ids.assign(tokens.begin(), tokens.end());
    s.tgts.assign(targets.begin(), targets.end());
    const auto val = [&](int i) { return s.value(P, i); };

    if (s.merged) throw InvalidArgument("[train] the adapters were merged into the model; this trainer cannot run again");
    if (const State::Frozen* f = s.frozen_at(s.embd); f && f->table) {
        // A frozen embedding in a block format: dequantize the looked-up rows only.
        const auto& traits = dtype_traits(f->table->dtype());
        const uint64_t row_bytes = *dtype_bytes(f->table->dtype(), static_cast<uint64_t>(d.D));
        const auto* base = static_cast<const uint8_t*>(f->table->data());
        for (int64_t i = 0; i < N; ++i)
            traits.to_float(base + static_cast<uint64_t>(s.ids[static_cast<size_t>(i)]) * row_bytes, s.res.data() + i * d.D, d.D);
    } else {
        train::embedding_forward(val(s.embd), s.ids.data(), N, d.D, s.res.data());
    }
    if (s.gpt2) {
        train::embedding_forward(val(s.pos), s.positions.data(), N, d.D, s.tmp.data());
        train::add_forward(s.res.data(), s.tmp.data(), s.res.data(), N * d.D);
    }
    for (int64_t l = 0; l < d.L; ++l) block_forward(l, s.slot_of(l));
    const float* xlast = s.res.data() + d.L * N * d.D;
    if (s.gpt2) train::layernorm_forward(xlast, val(s.out_norm), val(s.out_norm_b), N, d.D, c.norm_eps, s.xnf.data(), s.meanf.data(), s.rstdf.data());
    else train::rmsnorm_forward(xlast, val(s.out_norm), N, d.D, c.norm_eps, s.xnf.data(), s.rstdf.data());
    linear_forward(s.out, -1, s.xnf.data(), N, d.D, d.V, s.logits.data());
    if (s.logit_loss) return s.logit_loss(s.logits.data(), s.tgts.data(), N, d.V);
    const double total = train::cross_entropy_forward(s.logits.data(), s.tgts.data(), N, d.V, s.logits.data(), s.losses.data());
    int64_t counted = 0;
    for (int64_t i = 0; i < N; ++i) counted += s.tgts[static_cast<size_t>(i)] >= 0;
    return {total, counted};
}

double LmTrainer::loss(std::span<const int32_t> tokens, std::span<const int32_t> targets, int64_t B, int64_t T) {
    const auto [total, counted] = run_forward(tokens, targets, B, T);
    if (counted == 0) return 0.0;
    return total / static_cast<double>(counted) + hidden_terms(false);
}

// The hidden-state terms on the block outputs the forward left in s.res; with gradient: their ∂/∂h in s.dhidden.
double LmTrainer::hidden_terms(bool gradient) {
    State& s = *s_;
    if (!s.hidden_loss.fn) return 0.0;
    const int64_t N = s.B * s.T, D = s.c.n_embd;
    const size_t n = s.hidden_loss.blocks.size();
    if (gradient) grow(s.dhidden, static_cast<int64_t>(n) * N * D);
    double sum = 0;
    for (size_t i = 0; i < n; ++i)
        sum += s.hidden_loss.fn(i, s.res.data() + (s.hidden_loss.blocks[i] + 1) * N * D, N, D,
                                gradient ? s.dhidden.data() + static_cast<int64_t>(i) * N * D : nullptr);
    return sum;
}

double LmTrainer::forward_backward(std::span<const int32_t> tokens, std::span<const int32_t> targets, int64_t B, int64_t T,
                                   float grad_scale) {
    State& s = *s_;
    auto& P = params_;
    const auto [total, counted] = run_forward(tokens, targets, B, T);
    if (counted == 0) return 0.0;
    const double hidden = hidden_terms(true);
    const LlmConfig& c = s.c;
    const Dims d = dims_of(c, B * T);
    const int64_t N = d.N;
    grow(s.dres, N * d.D), grow(s.dxn, N * d.D), grow(s.dq, N * d.qd), grow(s.datt, N * d.qd);
    grow(s.dk, N * d.kvd), grow(s.dv, N * d.kvd), grow(s.dh, N * d.F), grow(s.dg, N * d.F);
    if (s.gpt2) grow(s.dqkv, N * 3 * d.D);
    else grow(s.du, N * d.F);
    const auto val = [&](int i) { return s.value(P, i); };
    const auto grad = [&](int i) { return s.gradient(P, i); };

    // logits ← dlogits; the head; the final norm into the residual stream's gradient.
    if (s.logit_loss) {  // s.logits holds ∂(summed loss)/∂logits
        const float scale = grad_scale / static_cast<float>(counted);
        for (int64_t i = 0; i < N * d.V; ++i) s.logits[static_cast<size_t>(i)] *= scale;
    } else {
        train::cross_entropy_backward(s.logits.data(), s.tgts.data(), N, d.V, grad_scale / static_cast<float>(counted), s.logits.data());
    }
    linear_backward(s.out, -1, s.logits.data(), s.xnf.data(), N, d.D, d.V, s.dxn.data(), false);
    std::fill_n(s.dres.data(), N * d.D, 0.0f);
    const float* xlast = s.res.data() + d.L * N * d.D;
    if (s.gpt2)
        train::layernorm_backward(s.dxn.data(), xlast, val(s.out_norm), s.meanf.data(), s.rstdf.data(), N, d.D, s.dres.data(),
                                  grad(s.out_norm), grad(s.out_norm_b));
    else
        train::rmsnorm_backward(s.dxn.data(), xlast, val(s.out_norm), s.rstdf.data(), N, d.D, s.dres.data(), grad(s.out_norm));
    for (int64_t l = d.L - 1; l >= 0; --l) {
        const auto& bp = s.blocks[static_cast<size_t>(l)];
        const int64_t sl = s.slot_of(l);
        // dres is ∂loss/∂res[l + 1] here: add the hidden-state terms on block l's output
        for (size_t i = 0; i < s.hidden_loss.blocks.size(); ++i)
            if (s.hidden_loss.fn && s.hidden_loss.blocks[i] == l) {
                const float* dh = s.dhidden.data() + static_cast<int64_t>(i) * N * d.D;
                for (int64_t j = 0; j < N * d.D; ++j) s.dres[static_cast<size_t>(j)] += grad_scale * dh[j];
            }
        // Recompute a checkpointed block's activations from its saved input (the last one forward ran is still in slot 0).
        if (s.recomputed(l) && l != (d.L - 1) / s.checkpoint_every * s.checkpoint_every) block_forward(l, 0);
        const float* xin = s.res.data() + l * N * d.D;
        const float* xn1 = s.xn1.data() + sl * N * d.D;
        const float* q = s.q.data() + sl * N * d.qd;
        const float* k = s.k.data() + sl * N * d.kvd;
        const float* v = s.v.data() + sl * N * d.kvd;
        const float* att = s.att.data() + sl * N * d.qd;
        const float* xmid = s.xmid.data() + sl * N * d.D;
        const float* xn2 = s.xn2.data() + sl * N * d.D;
        const float* g = s.g.data() + sl * N * d.F;
        const float* h = s.h.data() + sl * N * d.F;
        // MLP: res[l+1] = xmid + down(act(xn2)), xn2 = norm(xmid)
        linear_backward(bp.down, bp.bdown, s.dres.data(), h, N, d.F, d.D, s.dh.data(), false);
        if (s.gpt2) {
            train::gelu_tanh_backward(s.dh.data(), g, s.dg.data(), N * d.F);
            linear_backward(bp.up, bp.bup, s.dg.data(), xn2, N, d.D, d.F, s.dxn.data(), false);
            train::layernorm_backward(s.dxn.data(), xmid, val(bp.ffn_norm), s.mean2.data() + sl * N, s.rstd2.data() + sl * N, N, d.D,
                                      s.dres.data(), grad(bp.ffn_norm), grad(bp.ffn_norm_b));
        } else {
            const float* u = s.u.data() + sl * N * d.F;
            train::swiglu_backward(s.dh.data(), g, u, s.dg.data(), s.du.data(), N * d.F);
            linear_backward(bp.gate, -1, s.dg.data(), xn2, N, d.D, d.F, s.dxn.data(), false);
            linear_backward(bp.up, -1, s.du.data(), xn2, N, d.D, d.F, s.dxn.data(), true);
            train::rmsnorm_backward(s.dxn.data(), xmid, val(bp.ffn_norm), s.rstd2.data() + sl * N, N, d.D, s.dres.data(), grad(bp.ffn_norm));
        }
        // attention: xmid = xin + wo(attn(q, k, v)), q, k, v from xn1 = norm(xin)
        linear_backward(bp.wo, bp.bo, s.dres.data(), att, N, d.qd, d.D, s.datt.data(), false);
        train::attention_backward(s.datt.data(), q, k, v, s.p.data() + sl * B * d.Hq * T * T, B, T, d.Hq, d.Hkv, d.hd,
                                  s.dq.data(), s.dk.data(), s.dv.data());
        if (s.gpt2) {
            for (int64_t r = 0; r < N; ++r) {
                float* dst = s.dqkv.data() + r * 3 * d.D;
                std::copy_n(s.dq.data() + r * d.D, d.D, dst), std::copy_n(s.dk.data() + r * d.D, d.D, dst + d.D);
                std::copy_n(s.dv.data() + r * d.D, d.D, dst + 2 * d.D);
            }
            linear_backward(bp.wqkv, bp.bqkv, s.dqkv.data(), xn1, N, d.D, 3 * d.D, s.dxn.data(), false);
            train::layernorm_backward(s.dxn.data(), xin, val(bp.attn_norm), s.mean1.data() + sl * N, s.rstd1.data() + sl * N, N, d.D,
                                      s.dres.data(), grad(bp.attn_norm), grad(bp.attn_norm_b));
        } else {
            train::rope_backward(s.dq.data(), B, T, d.qd, d.Hq, d.hd, c.rope_dims, s.cos_t.data(), s.sin_t.data(), c.rope_pairing);
            train::rope_backward(s.dk.data(), B, T, d.kvd, d.Hkv, d.hd, c.rope_dims, s.cos_t.data(), s.sin_t.data(), c.rope_pairing);
            linear_backward(bp.wq, bp.bq, s.dq.data(), xn1, N, d.D, d.qd, s.dxn.data(), false);
            linear_backward(bp.wk, bp.bk, s.dk.data(), xn1, N, d.D, d.kvd, s.dxn.data(), true);
            linear_backward(bp.wv, bp.bv, s.dv.data(), xn1, N, d.D, d.kvd, s.dxn.data(), true);
            train::rmsnorm_backward(s.dxn.data(), xin, val(bp.attn_norm), s.rstd1.data() + sl * N, N, d.D, s.dres.data(), grad(bp.attn_norm));
        }
    }
    if (s.embd >= 0) train::embedding_backward(s.dres.data(), s.ids.data(), N, d.D, grad(s.embd));
    if (s.gpt2 && s.pos >= 0) train::embedding_backward(s.dres.data(), s.positions.data(), N, d.D, grad(s.pos));
    return total / static_cast<double>(counted) + hidden;
}

// W as the kernels take it, [out, in] f32: a trained parameter's values, a frozen f32 Linear's own bytes, or a frozen
// Linear in another format (or [in, out]) dequantized into `scratch` (so a Q4_K base is never held as f32 whole).
const float* LmTrainer::linear_weight(int w, std::vector<float>& scratch) const {
    if (w >= 0) return params_[static_cast<size_t>(w)].value;
    const State::Frozen& f = *s_->frozen_at(w);
    if (f.value) return f.value;
    const Linear& l = *f.linear;
    const int64_t O = l.n_out(), I = l.n_in();
    grow(scratch, O * I);
    const auto& traits = dtype_traits(l.weight.dtype());
    if (!l.transposed) {
        traits.to_float(l.weight.data(), scratch.data(), O * I);
        return scratch.data();
    }
    // [in, out] as the file has it (GPT-2's Conv1D): read in place when f32, else dequantized first.
    std::vector<float> dequantized;
    const float* held = static_cast<const float*>(l.weight.data());
    if (l.weight.dtype() != DType::F32) {
        dequantized.resize(static_cast<size_t>(O * I));
        traits.to_float(l.weight.data(), dequantized.data(), O * I);
        held = dequantized.data();
    }
    for (int64_t i = 0; i < I; ++i)
        for (int64_t o = 0; o < O; ++o) scratch[static_cast<size_t>(o * I + i)] = held[static_cast<size_t>(i * O + o)];
    return scratch.data();
}

// y = x·Wᵀ + b, plus scale·(x·Aᵀ)·Bᵀ where the Linear carries adapters.
void LmTrainer::linear_forward(int w, int b, const float* x, int64_t N, int64_t I, int64_t O, float* y) {
    State& s = *s_;
    train::linear_forward(x, linear_weight(w, s.wscratch), s.value(params_, b), N, I, O, y);
    const State::Frozen* f = s.frozen_at(w);
    if (!f || f->lora < 0) return;
    const LoraLayer& L = lora_layers_[static_cast<size_t>(f->lora)];
    const TrainParam& A = params_[static_cast<size_t>(L.a)];
    const int64_t r = A.shape[0];
    grow(s.lora_t, N * r), grow(s.lora_u, N * O);
    train::linear_forward(x, A.value, nullptr, N, I, r, s.lora_t.data());
    train::linear_forward(s.lora_t.data(), params_[static_cast<size_t>(L.b)].value, nullptr, N, r, O, s.lora_u.data());
    for (int64_t i = 0; i < N * O; ++i) y[i] += L.scale * s.lora_u[static_cast<size_t>(i)];
}

// dx (= or +=) dy·W; the parameters' gradients where they train; an adapter pair's: with t = x·Aᵀ (recomputed, it is
// cheap) and dys = scale·dy: dB += dysᵀ·t, dt = dys·B, dA += dtᵀ·x, dx += dt·A.
void LmTrainer::linear_backward(int w, int b, const float* dy, const float* x, int64_t N, int64_t I, int64_t O, float* dx,
                                bool accumulate_dx) {
    State& s = *s_;
    train::linear_backward(dy, x, linear_weight(w, s.wscratch), N, I, O, dx, accumulate_dx,
                           w >= 0 ? params_[static_cast<size_t>(w)].grad : nullptr, b >= 0 ? params_[static_cast<size_t>(b)].grad : nullptr);
    const State::Frozen* f = s.frozen_at(w);
    if (!f || f->lora < 0) return;
    const LoraLayer& L = lora_layers_[static_cast<size_t>(f->lora)];
    TrainParam& A = params_[static_cast<size_t>(L.a)];
    TrainParam& B = params_[static_cast<size_t>(L.b)];
    const int64_t r = A.shape[0];
    grow(s.lora_t, N * r), grow(s.lora_dt, N * r), grow(s.lora_dy, N * O);
    train::linear_forward(x, A.value, nullptr, N, I, r, s.lora_t.data());
    for (int64_t i = 0; i < N * O; ++i) s.lora_dy[static_cast<size_t>(i)] = L.scale * dy[i];
    train::linear_backward(s.lora_dy.data(), s.lora_t.data(), B.value, N, r, O, s.lora_dt.data(), false, B.grad, nullptr);
    train::linear_backward(s.lora_dt.data(), x, A.value, N, I, r, dx, true, A.grad, nullptr);
}

void LmTrainer::merge_lora() {
    State& s = *s_;
    if (s.merged) return;
    for (size_t f = 0; f < s.frozen.size(); ++f) {
        const State::Frozen& fz = s.frozen[f];
        if (fz.lora < 0) continue;
        const LoraLayer& L = lora_layers_[static_cast<size_t>(fz.lora)];
        const TrainParam& A = params_[static_cast<size_t>(L.a)];
        const TrainParam& B = params_[static_cast<size_t>(L.b)];
        const int64_t O = L.layer->n_out(), I = L.layer->n_in(), r = A.shape[0];
        std::vector<float> scratch;
        const float* W = linear_weight(-2 - static_cast<int>(f), scratch);
        const double scale = static_cast<double>(lora_alpha_) / static_cast<double>(r);  // as apply_lora_adapter reads it back
        Tensor merged = Tensor::zeros({O, I}, DType::F32);
        float* m = data_of(merged);
        for (int64_t o = 0; o < O; ++o)
            for (int64_t i = 0; i < I; ++i) {
                double delta = 0;
                for (int64_t k = 0; k < r; ++k) delta += static_cast<double>(B.value[o * r + k]) * A.value[k * I + i];
                m[o * I + i] = W[o * I + i] + static_cast<float>(scale * delta);
            }
        s.model->set_weight(*L.layer, std::move(merged), "finetune-lora");
    }
    s.merged = true;
}

void LmTrainer::save_lora_gguf(const std::string& path) const {
    if (lora_layers_.empty()) throw InvalidArgument("[train] this run trained no LoRA adapters to write to " + path);
    gguf::Writer writer;
    writer.set_string("general.type", "adapter");
    writer.set_string("general.architecture", s_->c.architecture);
    writer.set_string("adapter.type", "lora");
    writer.set("adapter.lora.alpha", gguf::Value{gguf::ValueType::F32, static_cast<double>(lora_alpha_)});
    std::vector<const TrainParam*> tensors;
    for (const LoraLayer& L : lora_layers_)
        for (int i : {L.a, L.b}) {
            const TrainParam& p = params_[static_cast<size_t>(i)];
            writer.add_tensor(p.name, p.shape, DType::F32);
            tensors.push_back(&p);
        }
    AtomicFile out(path);
    writer.write(out, [&](size_t i, std::vector<uint8_t>& buffer) {
        const TrainParam& p = *tensors[i];
        buffer.resize(static_cast<size_t>(p.numel) * sizeof(float));
        std::memcpy(buffer.data(), p.value, buffer.size());
    });
    out.commit();
}

}  // namespace cq
