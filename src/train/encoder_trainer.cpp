// EncoderTrainer: BERT sequence classification's (and ViT image classification's) training forward and backward (post-LN blocks, bidirectional
// attention over the padding mask, GELU (erf), tanh pooler on [CLS], classifier, softmax cross-entropy), with HF's
// dropout sites (embeddings, attention probabilities, both sub-layer outputs, pooled output), on the model's tensors.
// A block may keep fewer heads than the config names (HF pruned_heads): its q/k/v/output Linears and attention are as
// wide as its own heads, and its attention dropout is the unpruned block's masks of those heads.
#include <algorithm>
#include <cstring>
#include <random>
#include <string>
#include <tuple>

#include "cq/encoder.h"
#include "cq/error.h"
#include "cq/train.h"
#include "train/train_ops.h"

namespace cq {

namespace {
Tensor owned_copy(const Tensor& t, const std::string& what) {
    const auto& traits = dtype_traits(t.dtype());
    if (!traits.to_float || traits.is_quantized)
        throw Unsupported("[train] '" + what + "' is held as " + std::string(traits.name) + ", which cq cannot train");
    Tensor out = Tensor::zeros(t.shape(), DType::F32);
    const std::vector<float> v = t.to_float();
    std::memcpy(out.mutable_data(), v.data(), v.size() * sizeof(float));
    return out;
}
float* fdata(Tensor& t) { return static_cast<float*>(t.mutable_data()); }
void grow(std::vector<float>& v, int64_t n) {
    if (static_cast<int64_t>(v.size()) < n) v.resize(static_cast<size_t>(n));
}
uint64_t mix(uint64_t a, uint64_t b) {
    uint64_t z = a ^ (b + 0x9e3779b97f4a7c15ull + (a << 6) + (a >> 2));
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    return z ^ (z >> 31);
}
}  // namespace

struct EncoderTrainer::State {
    EncoderModel* model = nullptr;
    EncoderConfig c;
    std::vector<std::vector<float>> grad_storage;
    struct BlockParams {
        int q, bq, k, bk, v, bv, o, bo, ln1, ln1b, in, bin, out, bout, ln2, ln2b;
        int64_t n_head;              // heads the block keeps (HF pruned_heads); q/k/v: [n_head·hd, D], o: [D, n_head·hd]
        std::vector<int64_t> heads;  // their numbers among the config's n_head (dropout masks are drawn per original head)
    };
    int word = -1, pos = -1, type = -1, lne = -1, lneb = -1, pool = -1, poolb = -1, cls = -1, clsb = -1;
    std::vector<BlockParams> blocks;
    std::vector<std::string> init_kind;  // per param: "normal", "zero", "one"
    // activations
    std::vector<float> emb, mean_e, rstd_e, x0n, drop_e, x;  // x: [(L+1), N, D] block inputs / outputs
    std::vector<float> q, k, v, p, dropp, att, a, drop_a, y1, x1, mean1, rstd1, f, gl, drop_o, y2, mean2, rstd2;
    std::vector<float> hcls, pooled, drop_p, pd, logits, losses;
    std::vector<float> dx, dy, dq, dk, dv, datt, dgl, dcls, dpool, dlog, tmp;
    std::vector<float> drop_all;  // a pruned block's attention dropout drawn for every original head, before its heads are kept
    std::vector<int32_t> ids, types, mask, positions, labels;
    // ViT
    bool vit = false;
    int patch = -1, patchb = -1, cls_tok = -1, fnorm = -1, fnormb = -1;
    std::vector<float> patches, xn1v, xn2v, x1v, hf, meanf, rstdf;
    LogitLoss logit_loss;                 // set: replaces cross-entropy on the labels
    HiddenLoss hidden_loss;               // set: terms on block outputs; dhidden: [terms, N, D], their gradients
    std::vector<float> dhidden;
    LinearInputHook* input_hook = nullptr;  // set: Linear inputs it applies to are transformed (fake quantization)
    std::vector<std::vector<float>> xq;   // per weight parameter: the input its Linear saw
    std::vector<float> dxq;
};

EncoderTrainer::EncoderTrainer(EncoderModel& model) : s_(std::make_unique<State>()) {
    State& s = *s_;
    s.model = &model;
    s.c = model.config();
    s.vit = s.c.family == EncoderFamily::vit;
    if ((s.c.family != EncoderFamily::bert || !model.weights().pooler) && !s.vit)
        throw Unsupported("[train] " + s.c.architecture + " has no backward yet (supported: BertForSequenceClassification, "
                          "ViTForImageClassification)");
    EncoderWeights& w = model.weights();
    const auto add = [&](const std::string& name, float* value, std::vector<int64_t> shape, const char* init) {
        TrainParam p;
        p.name = p.hf_name = name, p.shape = std::move(shape), p.value = value, p.numel = 1;
        for (int64_t d : p.shape) p.numel *= d;
        s.grad_storage.emplace_back(static_cast<size_t>(p.numel), 0.0f);
        p.grad = s.grad_storage.back().data();
        params_.push_back(std::move(p));
        s.init_kind.emplace_back(init);
        return static_cast<int>(params_.size() - 1);
    };
    const auto tensor = [&](Tensor& t, const std::string& name, std::vector<int64_t> hf_shape = {}) {
        t = owned_copy(t, name);
        const int i = add(name, fdata(t), t.shape(), "normal");
        params_.back().hf_shape = std::move(hf_shape);
        return i;
    };
    const auto norm = [&](Norm& n, int* bias) {
        n.weight = owned_copy(n.weight, n.name);
        n.modified_by = "finetune";
        const int i = add(n.name + ".weight", fdata(n.weight), n.weight.shape(), "one");
        if (!n.bias) throw Unsupported("[train] the LayerNorm '" + n.name + "' has no bias");
        *n.bias = owned_copy(*n.bias, n.name + ".bias");
        *bias = add(n.name + ".bias", fdata(*n.bias), n.bias->shape(), "zero");
        return i;
    };
    const auto linear = [&](Linear& l, int* bias) {
        if (l.int8 || l.transposed) throw Unsupported("[train] '" + l.name + "' is held as " + l.format() + ", which cq cannot train");
        model.set_weight(l, owned_copy(l.weight, l.name), "finetune");
        const int i = add(l.name + ".weight", fdata(l.weight), l.weight.shape(), "normal");
        if (!l.bias) throw Unsupported("[train] '" + l.name + "' has no bias");
        *l.bias = owned_copy(*l.bias, l.name + ".bias");
        *bias = add(l.name + ".bias", fdata(*l.bias), l.bias->shape(), "zero");
        return i;
    };
    // A block keeps n_head heads of the config's (HF pruned_heads); its attention runs over n_head·hd columns.
    const auto add_block = [&](EncoderBlock& b) {
        const int64_t l = static_cast<int64_t>(s.blocks.size()), D = s.c.hidden, hd = D / s.c.n_head;
        State::BlockParams bp{};
        bp.n_head = b.n_head > 0 ? b.n_head : s.c.heads_in_block(l);
        const int64_t A = bp.n_head * hd;
        const std::vector<int64_t> none;
        const std::vector<int64_t>& removed = static_cast<size_t>(l) < s.c.pruned_heads.size() ? s.c.pruned_heads[static_cast<size_t>(l)] : none;
        for (int64_t h = 0; h < s.c.n_head; ++h)
            if (std::find(removed.begin(), removed.end(), h) == removed.end()) bp.heads.push_back(h);
        const auto is = [](const Linear& x, int64_t rows, int64_t cols) { return x.weight.shape() == std::vector<int64_t>{rows, cols}; };
        if (bp.n_head != s.c.heads_in_block(l) || bp.n_head < 1 || static_cast<int64_t>(bp.heads.size()) != bp.n_head || !is(b.q, A, D) ||
            !is(b.k, A, D) || !is(b.v, A, D) || !is(b.attn_out, D, A))
            throw Unsupported("[train] block " + std::to_string(l) + " keeps " + std::to_string(bp.n_head) + " of " + std::to_string(s.c.n_head) +
                              " heads (config: " + std::to_string(s.c.heads_in_block(l)) + "), but its attention weights are not [" +
                              std::to_string(A) + ", " + std::to_string(D) + "] (q/k/v) and [" + std::to_string(D) + ", " + std::to_string(A) +
                              "] (output) with pruned_heads naming " + std::to_string(s.c.n_head - static_cast<int64_t>(bp.heads.size())) +
                              " distinct heads: cq cannot train it");
        bp.q = linear(b.q, &bp.bq), bp.k = linear(b.k, &bp.bk), bp.v = linear(b.v, &bp.bv), bp.o = linear(b.attn_out, &bp.bo);
        bp.ln1 = norm(b.attn_norm, &bp.ln1b);
        bp.in = linear(b.ffn_in, &bp.bin), bp.out = linear(b.ffn_out, &bp.bout);
        bp.ln2 = norm(b.ffn_norm, &bp.ln2b);
        s.blocks.push_back(std::move(bp));
    };
    if (s.vit) {
        const int64_t D = s.c.hidden, P = s.c.patch_size, C = s.c.num_channels;
        s.patch = linear(w.patch_embd, &s.patchb);
        params_[static_cast<size_t>(s.patch)].hf_shape = {D, C, P, P};  // the conv weight [D, C, p, p], same bytes
        if (!w.cls_token) throw Unsupported("[train] the ViT model has no CLS token");
        s.cls_tok = tensor(*w.cls_token, "vit.embeddings.cls_token", {1, 1, D});
        s.pos = tensor(w.pos_embd, "vit.embeddings.position_embeddings", {1, s.c.max_positions, D});
        for (EncoderBlock& b : w.blocks) add_block(b);
        if (!w.final_norm) throw Unsupported("[train] the ViT model has no final LayerNorm");
        s.fnorm = norm(*w.final_norm, &s.fnormb);
        s.cls = linear(w.classifier, &s.clsb);
        return;
    }
    // "bert.embeddings.LayerNorm" → "bert.embeddings."
    const std::string pre = w.embd_norm.name.substr(0, w.embd_norm.name.rfind("LayerNorm"));
    s.word = tensor(w.word_embd, pre + "word_embeddings.weight");
    s.pos = tensor(w.pos_embd, pre + "position_embeddings.weight");
    if (!w.type_embd) throw Unsupported("[train] the BERT model has no token-type embeddings");
    s.type = tensor(*w.type_embd, pre + "token_type_embeddings.weight");
    s.lne = norm(w.embd_norm, &s.lneb);
    for (EncoderBlock& b : w.blocks) add_block(b);
    s.pool = linear(*w.pooler, &s.poolb);
    s.cls = linear(w.classifier, &s.clsb);
}

EncoderTrainer::~EncoderTrainer() = default;

void EncoderTrainer::zero_grad() {
    for (auto& g : s_->grad_storage) std::fill(g.begin(), g.end(), 0.0f);
}

void EncoderTrainer::reinitialize(uint64_t seed) {
    // As HF's BertPreTrainedModel._init_weights: N(0, initializer_range 0.02) for Linear weights and embeddings
    // (the padding row of the word embeddings zeroed), zero biases, LayerNorm weight 1 and bias 0.
    std::mt19937_64 rng(seed);
    std::normal_distribution<float> normal(0.0f, 0.02f);
    for (size_t i = 0; i < params_.size(); ++i) {
        TrainParam& p = params_[i];
        const std::string& kind = s_->init_kind[i];
        for (int64_t j = 0; j < p.numel; ++j) p.value[j] = kind == "normal" ? normal(rng) : kind == "one" ? 1.0f : 0.0f;
    }
    const int64_t pad = s_->c.pad_token_id, D = s_->c.hidden;
    if (!s_->vit && pad >= 0 && pad < s_->c.vocab) std::fill_n(params_[static_cast<size_t>(s_->word)].value + pad * D, D, 0.0f);
    for (Linear* l : s_->model->linears()) l->modified_by = "finetune (random init)";
}

uint64_t EncoderTrainer::activation_bytes() const {
    const State& s = *s_;
    uint64_t n = 0;
    for (const auto* v : {&s.emb, &s.x0n, &s.drop_e, &s.x, &s.q, &s.k, &s.v, &s.p, &s.dropp, &s.att, &s.a, &s.drop_a, &s.y1, &s.x1,
                          &s.f, &s.gl, &s.drop_o, &s.y2, &s.dx, &s.dy, &s.dq, &s.dk, &s.dv, &s.datt, &s.dgl, &s.tmp})
        n += v->size() * sizeof(float);
    return n;
}

void EncoderTrainer::set_logit_loss(LogitLoss loss) { s_->logit_loss = std::move(loss); }
void EncoderTrainer::set_hidden_loss(HiddenLoss loss) {
    for (int64_t b : loss.blocks)
        if (b < 0 || b >= s_->c.n_layer)
            throw InvalidArgument("[train] a hidden-state loss reads block " + std::to_string(b) + ", outside [0, " + std::to_string(s_->c.n_layer) + ")");
    s_->hidden_loss = std::move(loss);
}

void EncoderTrainer::set_linear_input_hook(LinearInputHook* hook) {
    s_->input_hook = hook;
    s_->xq.assign(params_.size(), {});
}

double EncoderTrainer::run(const TextBatch& batch, std::span<const int32_t> labels, float dropout, uint64_t key, bool backward,
                           float grad_scale, float* logits_out) {
    State& s = *s_;
    if (s.vit) throw InvalidArgument("[train] a ViT model trains on image batches (forward_backward_images)");
    auto& P = params_;
    const EncoderConfig& c = s.c;
    const int64_t B = batch.batch, T = batch.seq, N = B * T, D = c.hidden, H = c.n_head, hd = D / H, F = c.n_ff,
                  C = c.num_labels, L = c.n_layer;
    if (B <= 0 || T <= 0 || static_cast<int64_t>(batch.ids.size()) != N || static_cast<int64_t>(batch.mask.size()) != N)
        throw InvalidArgument("[train] a text batch of " + std::to_string(B) + " × " + std::to_string(T) + " needs " +
                              std::to_string(N) + " ids and mask values");
    if (static_cast<int64_t>(labels.size()) != B)
        throw InvalidArgument("[train] " + std::to_string(labels.size()) + " labels for a batch of " + std::to_string(B));
    if (T > c.max_positions) throw InvalidArgument("[train] sequences of " + std::to_string(T) + " exceed the model's " + std::to_string(c.max_positions) + " positions");
    for (int64_t i = 0; i < N; ++i)
        if (batch.ids[i] < 0 || batch.ids[i] >= c.vocab)
            throw InvalidArgument("[train] token id " + std::to_string(batch.ids[i]) + " at position " + std::to_string(i) + " is outside the vocabulary");
    for (int64_t b = 0; b < B; ++b)
        if (labels[b] < 0 || labels[b] >= C)
            throw InvalidArgument("[train] label " + std::to_string(labels[b]) + " of example " + std::to_string(b) + " is outside [0, " + std::to_string(C) + ")");
    if (!(dropout >= 0.0f && dropout < 1.0f)) throw InvalidArgument("[train] dropout " + std::to_string(dropout) + " is outside [0, 1)");
    s.ids = batch.ids, s.mask = batch.mask;
    s.types = batch.type_ids.empty() ? std::vector<int32_t>(static_cast<size_t>(N), 0) : batch.type_ids;
    s.positions.resize(static_cast<size_t>(N));
    for (int64_t i = 0; i < N; ++i) s.positions[static_cast<size_t>(i)] = static_cast<int32_t>(i % T);
    s.labels.assign(labels.begin(), labels.end());
    const bool drop = dropout > 0.0f;
    const auto val = [&](int i) { return P[static_cast<size_t>(i)].value; };
    const auto grad = [&](int i) { return P[static_cast<size_t>(i)].grad; };
    // A Linear (weight parameter wp, bias bp) whose input may pass through the input hook; the backward reads the
    // input the Linear saw for dW and turns the gradient into the one of its real input.
    const auto hooked = [&](int wp) { return s.input_hook && s.input_hook->applies(wp); };
    const auto lin_fwd = [&](const float* x, int wp, int bp, int64_t n, int64_t I, int64_t O, float* y) {
        const float* in = x;
        if (hooked(wp)) {
            auto& buf = s.xq[static_cast<size_t>(wp)];
            grow(buf, n * I);
            s.input_hook->forward(wp, x, n, I, buf.data(), backward);
            in = buf.data();
        }
        train::linear_forward(in, val(wp), val(bp), n, I, O, y);
    };
    const auto lin_bwd = [&](const float* dy, const float* x, int wp, int bp, int64_t n, int64_t I, int64_t O, float* dx, bool acc) {
        if (!hooked(wp)) return train::linear_backward(dy, x, val(wp), n, I, O, dx, acc, grad(wp), grad(bp));
        grow(s.dxq, n * I);
        train::linear_backward(dy, s.xq[static_cast<size_t>(wp)].data(), val(wp), n, I, O, s.dxq.data(), false, grad(wp), grad(bp));
        s.input_hook->backward(wp, x, n, I, s.dxq.data());
        if (acc) train::add_forward(dx, s.dxq.data(), dx, n * I);
        else std::copy_n(s.dxq.data(), n * I, dx);
    };
    const auto mask_for = [&](std::vector<float>& m, int64_t offset, int64_t n, uint64_t site) {
        grow(m, offset + n);
        train::dropout_mask(mix(key, site), dropout, m.data() + offset, n);
        return m.data() + offset;
    };

    grow(s.emb, N * D), grow(s.mean_e, N), grow(s.rstd_e, N), grow(s.x0n, N * D), grow(s.x, (L + 1) * N * D), grow(s.tmp, N * F);
    grow(s.q, L * N * D), grow(s.k, L * N * D), grow(s.v, L * N * D), grow(s.p, L * B * H * T * T), grow(s.att, L * N * D);
    grow(s.a, N * D), grow(s.y1, L * N * D), grow(s.x1, L * N * D), grow(s.mean1, L * N), grow(s.rstd1, L * N);
    grow(s.f, L * N * F), grow(s.gl, L * N * F), grow(s.y2, L * N * D), grow(s.mean2, L * N), grow(s.rstd2, L * N);
    grow(s.hcls, B * D), grow(s.pooled, B * D), grow(s.pd, B * D), grow(s.logits, B * C), grow(s.losses, B);

    // embeddings → LayerNorm → dropout
    train::embedding_forward(val(s.word), s.ids.data(), N, D, s.emb.data());
    train::embedding_forward(val(s.pos), s.positions.data(), N, D, s.tmp.data());
    train::add_forward(s.emb.data(), s.tmp.data(), s.emb.data(), N * D);
    train::embedding_forward(val(s.type), s.types.data(), N, D, s.tmp.data());
    train::add_forward(s.emb.data(), s.tmp.data(), s.emb.data(), N * D);
    train::layernorm_forward(s.emb.data(), val(s.lne), val(s.lneb), N, D, c.norm_eps, s.x0n.data(), s.mean_e.data(), s.rstd_e.data());
    if (drop) train::mul_forward(s.x0n.data(), mask_for(s.drop_e, 0, N * D, 1), s.x.data(), N * D);
    else std::copy_n(s.x0n.data(), N * D, s.x.data());
    for (int64_t l = 0; l < L; ++l) {
        const auto& bp = s.blocks[static_cast<size_t>(l)];
        const float* xin = s.x.data() + l * N * D;
        float *q = s.q.data() + l * N * D, *k = s.k.data() + l * N * D, *v = s.v.data() + l * N * D, *att = s.att.data() + l * N * D;
        float *y1 = s.y1.data() + l * N * D, *x1 = s.x1.data() + l * N * D, *f = s.f.data() + l * N * F, *gl = s.gl.data() + l * N * F;
        float* y2 = s.y2.data() + l * N * D;
        const uint64_t site = 16 * static_cast<uint64_t>(l + 1);
        const int64_t Hl = bp.n_head, A = Hl * hd;  // q, k, v, att: [N, A] at a stride of N·D per block
        lin_fwd(xin, bp.q, bp.bq, N, D, A, q);
        lin_fwd(xin, bp.k, bp.bk, N, D, A, k);
        lin_fwd(xin, bp.v, bp.bv, N, D, A, v);
        const float* pdrop = nullptr;
        if (drop && Hl == H) pdrop = mask_for(s.dropp, l * B * H * T * T, B * H * T * T, site + 1);
        if (drop && Hl < H) {  // the kept heads' masks, as the unpruned block draws them: [B, H, T, T] → [B, Hl, T, T]
            const float* all = mask_for(s.drop_all, 0, B * H * T * T, site + 1);
            grow(s.dropp, (l + 1) * B * H * T * T);
            float* m = s.dropp.data() + l * B * H * T * T;
            for (int64_t b = 0; b < B; ++b)
                for (int64_t j = 0; j < Hl; ++j) std::copy_n(all + (b * H + bp.heads[static_cast<size_t>(j)]) * T * T, T * T, m + (b * Hl + j) * T * T);
            pdrop = m;
        }
        train::attention_forward(q, k, v, B, T, Hl, Hl, hd, s.p.data() + l * B * H * T * T, att, s.mask.data(), pdrop);
        lin_fwd(att, bp.o, bp.bo, N, A, D, s.a.data());
        if (drop) train::mul_forward(s.a.data(), mask_for(s.drop_a, l * N * D, N * D, site + 2), s.a.data(), N * D);
        train::add_forward(xin, s.a.data(), y1, N * D);
        train::layernorm_forward(y1, val(bp.ln1), val(bp.ln1b), N, D, c.norm_eps, x1, s.mean1.data() + l * N, s.rstd1.data() + l * N);
        lin_fwd(x1, bp.in, bp.bin, N, D, F, f);
        train::gelu_erf_forward(f, gl, N * F);
        lin_fwd(gl, bp.out, bp.bout, N, F, D, s.a.data());
        if (drop) train::mul_forward(s.a.data(), mask_for(s.drop_o, l * N * D, N * D, site + 3), s.a.data(), N * D);
        train::add_forward(x1, s.a.data(), y2, N * D);
        train::layernorm_forward(y2, val(bp.ln2), val(bp.ln2b), N, D, c.norm_eps, s.x.data() + (l + 1) * N * D, s.mean2.data() + l * N,
                                 s.rstd2.data() + l * N);
    }
    // head: pooled = tanh(dense(h[CLS])) → dropout → classifier
    const float* xl = s.x.data() + L * N * D;
    for (int64_t b = 0; b < B; ++b) std::copy_n(xl + b * T * D, D, s.hcls.data() + b * D);
    lin_fwd(s.hcls.data(), s.pool, s.poolb, B, D, D, s.pooled.data());
    train::tanh_forward(s.pooled.data(), s.pooled.data(), B * D);
    if (drop) train::mul_forward(s.pooled.data(), mask_for(s.drop_p, 0, B * D, 2), s.pd.data(), B * D);
    else std::copy_n(s.pooled.data(), B * D, s.pd.data());
    lin_fwd(s.pd.data(), s.cls, s.clsb, B, D, C, s.logits.data());
    if (logits_out) std::copy_n(s.logits.data(), B * C, logits_out);
    int64_t counted = B;
    double total = 0;
    if (s.logit_loss) std::tie(total, counted) = s.logit_loss(s.logits.data(), s.labels.data(), B, C);  // s.logits ← its gradient
    else total = train::cross_entropy_forward(s.logits.data(), s.labels.data(), B, C, s.logits.data(), s.losses.data());
    if (counted <= 0) return 0.0;
    // hidden-state terms on the block outputs x[b + 1]; with the backward, their ∂/∂h in s.dhidden
    double hidden = 0;
    const std::vector<int64_t>& hblocks = s.hidden_loss.blocks;
    if (s.hidden_loss.fn) {
        if (backward) grow(s.dhidden, static_cast<int64_t>(hblocks.size()) * N * D);
        for (size_t i = 0; i < hblocks.size(); ++i)
            hidden += s.hidden_loss.fn(i, s.x.data() + (hblocks[i] + 1) * N * D, N, D,
                                       backward ? s.dhidden.data() + static_cast<int64_t>(i) * N * D : nullptr);
    }
    if (!backward) return total / static_cast<double>(counted) + hidden;

    grow(s.dx, N * D), grow(s.dy, N * D), grow(s.dq, N * D), grow(s.dk, N * D), grow(s.dv, N * D), grow(s.datt, N * D);
    grow(s.dgl, N * F), grow(s.dcls, B * D), grow(s.dpool, B * D), grow(s.dlog, B * C);
    if (s.logit_loss)
        for (int64_t i = 0; i < B * C; ++i) s.dlog[static_cast<size_t>(i)] = s.logits[static_cast<size_t>(i)] * (grad_scale / static_cast<float>(counted));
    else
        train::cross_entropy_backward(s.logits.data(), s.labels.data(), B, C, grad_scale / static_cast<float>(B), s.dlog.data());
    lin_bwd(s.dlog.data(), s.pd.data(), s.cls, s.clsb, B, D, C, s.dpool.data(), false);
    if (drop) train::mul_forward(s.dpool.data(), s.drop_p.data(), s.dpool.data(), B * D);
    train::tanh_backward(s.dpool.data(), s.pooled.data(), s.dpool.data(), B * D);
    lin_bwd(s.dpool.data(), s.hcls.data(), s.pool, s.poolb, B, D, D, s.dcls.data(), false);
    std::fill_n(s.dx.data(), N * D, 0.0f);  // dx: gradient of the current block output
    for (int64_t b = 0; b < B; ++b) std::copy_n(s.dcls.data() + b * D, D, s.dx.data() + b * T * D);
    for (int64_t l = L - 1; l >= 0; --l) {
        const auto& bp = s.blocks[static_cast<size_t>(l)];
        const float* xin = s.x.data() + l * N * D;
        const float *q = s.q.data() + l * N * D, *k = s.k.data() + l * N * D, *v = s.v.data() + l * N * D, *att = s.att.data() + l * N * D;
        const float *y1 = s.y1.data() + l * N * D, *x1 = s.x1.data() + l * N * D, *f = s.f.data() + l * N * F, *gl = s.gl.data() + l * N * F;
        const float* y2 = s.y2.data() + l * N * D;
        // dx is ∂loss/∂x[l+1] here: add the hidden-state terms on block l's output
        for (size_t i = 0; i < hblocks.size(); ++i)
            if (s.hidden_loss.fn && hblocks[i] == l) {
                const float* dh = s.dhidden.data() + static_cast<int64_t>(i) * N * D;
                for (int64_t j = 0; j < N * D; ++j) s.dx[static_cast<size_t>(j)] += grad_scale * dh[j];
            }
        // x[l+1] = LN2(y2), y2 = x1 + drop(out(gelu(in(x1))))
        std::fill_n(s.dy.data(), N * D, 0.0f);
        train::layernorm_backward(s.dx.data(), y2, val(bp.ln2), s.mean2.data() + l * N, s.rstd2.data() + l * N, N, D, s.dy.data(),
                                  grad(bp.ln2), grad(bp.ln2b));
        std::copy_n(s.dy.data(), N * D, s.dx.data());  // dx ← dx1 (the residual path)
        if (drop) train::mul_forward(s.dy.data(), s.drop_o.data() + l * N * D, s.dy.data(), N * D);
        lin_bwd(s.dy.data(), gl, bp.out, bp.bout, N, F, D, s.dgl.data(), false);
        train::gelu_erf_backward(s.dgl.data(), f, s.dgl.data(), N * F);
        lin_bwd(s.dgl.data(), x1, bp.in, bp.bin, N, D, F, s.dx.data(), true);
        // x1 = LN1(y1), y1 = xin + drop(o(attn(q, k, v)))
        std::fill_n(s.dy.data(), N * D, 0.0f);
        train::layernorm_backward(s.dx.data(), y1, val(bp.ln1), s.mean1.data() + l * N, s.rstd1.data() + l * N, N, D, s.dy.data(),
                                  grad(bp.ln1), grad(bp.ln1b));
        std::copy_n(s.dy.data(), N * D, s.dx.data());  // dx ← dxin (the residual path)
        if (drop) train::mul_forward(s.dy.data(), s.drop_a.data() + l * N * D, s.dy.data(), N * D);
        const int64_t Hl = bp.n_head, A = Hl * hd;
        lin_bwd(s.dy.data(), att, bp.o, bp.bo, N, A, D, s.datt.data(), false);
        train::attention_backward(s.datt.data(), q, k, v, s.p.data() + l * B * H * T * T, B, T, Hl, Hl, hd, s.dq.data(), s.dk.data(),
                                  s.dv.data(), s.mask.data(), drop ? s.dropp.data() + l * B * H * T * T : nullptr);
        lin_bwd(s.dq.data(), xin, bp.q, bp.bq, N, D, A, s.dx.data(), true);
        lin_bwd(s.dk.data(), xin, bp.k, bp.bk, N, D, A, s.dx.data(), true);
        lin_bwd(s.dv.data(), xin, bp.v, bp.bv, N, D, A, s.dx.data(), true);
    }
    if (drop) train::mul_forward(s.dx.data(), s.drop_e.data(), s.dx.data(), N * D);
    std::fill_n(s.dy.data(), N * D, 0.0f);
    train::layernorm_backward(s.dx.data(), s.emb.data(), val(s.lne), s.mean_e.data(), s.rstd_e.data(), N, D, s.dy.data(), grad(s.lne),
                              grad(s.lneb));
    train::embedding_backward(s.dy.data(), s.ids.data(), N, D, grad(s.word));
    train::embedding_backward(s.dy.data(), s.positions.data(), N, D, grad(s.pos));
    train::embedding_backward(s.dy.data(), s.types.data(), N, D, grad(s.type));
    return total / static_cast<double>(counted) + hidden;
}

double EncoderTrainer::run_vit(const uint8_t* pixels, int64_t B, std::span<const int32_t> labels, bool backward, float grad_scale,
                               float* logits_out) {
    State& s = *s_;
    auto& P = params_;
    const EncoderConfig& c = s.c;
    const int64_t D = c.hidden, H = c.n_head, hd = D / H, F = c.n_ff, C = c.num_labels, L = c.n_layer;
    const int64_t Pp = c.patch_size, Ch = c.num_channels, side = c.image_size / Pp, np = side * side, S = np + 1, N = B * S;
    const int64_t pin = Ch * Pp * Pp, plane = c.image_size * c.image_size;
    if (B <= 0 || static_cast<int64_t>(labels.size()) != B)
        throw InvalidArgument("[train] " + std::to_string(labels.size()) + " labels for a batch of " + std::to_string(B) + " images");
    for (int64_t b = 0; b < B; ++b)
        if (labels[b] < 0 || labels[b] >= C)
            throw InvalidArgument("[train] label " + std::to_string(labels[b]) + " of example " + std::to_string(b) + " is outside [0, " + std::to_string(C) + ")");
    s.labels.assign(labels.begin(), labels.end());
    const auto val = [&](int i) { return P[static_cast<size_t>(i)].value; };
    const auto grad = [&](int i) { return P[static_cast<size_t>(i)].grad; };
    grow(s.patches, B * np * pin), grow(s.tmp, N * std::max(D, F)), grow(s.x, (L + 1) * N * D), grow(s.xn1v, L * N * D);
    grow(s.mean1, L * N), grow(s.rstd1, L * N), grow(s.q, L * N * D), grow(s.k, L * N * D), grow(s.v, L * N * D);
    grow(s.p, L * B * H * S * S), grow(s.att, L * N * D), grow(s.x1v, L * N * D), grow(s.xn2v, L * N * D), grow(s.mean2, L * N);
    grow(s.rstd2, L * N), grow(s.f, L * N * F), grow(s.gl, L * N * F), grow(s.hcls, B * D), grow(s.hf, B * D), grow(s.meanf, B);
    grow(s.rstdf, B), grow(s.logits, B * C), grow(s.losses, B);
    // patches: [B·np, C·p·p] of normalized pixels, in the conv weight's [C, p, p] order (as the model's forward)
    for (int64_t b = 0; b < B; ++b)
        for (int64_t py = 0; py < side; ++py)
            for (int64_t px = 0; px < side; ++px) {
                float* row = s.patches.data() + (b * np + py * side + px) * pin;
                for (int64_t ch = 0; ch < Ch; ++ch) {
                    const float mean = c.image_mean[static_cast<size_t>(ch)], sd = c.image_std[static_cast<size_t>(ch)];
                    for (int64_t ky = 0; ky < Pp; ++ky)
                        for (int64_t kx = 0; kx < Pp; ++kx)
                            row[(ch * Pp + ky) * Pp + kx] =
                                (static_cast<float>(pixels[(b * Ch + ch) * plane + (py * Pp + ky) * c.image_size + px * Pp + kx]) * c.rescale_factor - mean) / sd;
                }
            }
    train::linear_forward(s.patches.data(), val(s.patch), val(s.patchb), B * np, pin, D, s.tmp.data());
    for (int64_t b = 0; b < B; ++b) {
        float* xb = s.x.data() + b * S * D;
        std::copy_n(val(s.cls_tok), D, xb);
        std::copy_n(s.tmp.data() + b * np * D, np * D, xb + D);
        train::add_forward(xb, val(s.pos), xb, S * D);
    }
    for (int64_t l = 0; l < L; ++l) {  // pre-LN: x1 = x + o(attn(LN1(x))), x' = x1 + out(gelu(in(LN2(x1))))
        const auto& bp = s.blocks[static_cast<size_t>(l)];
        const float* x = s.x.data() + l * N * D;
        float *xn1 = s.xn1v.data() + l * N * D, *q = s.q.data() + l * N * D, *k = s.k.data() + l * N * D, *v = s.v.data() + l * N * D;
        float *att = s.att.data() + l * N * D, *x1 = s.x1v.data() + l * N * D, *xn2 = s.xn2v.data() + l * N * D;
        float *f = s.f.data() + l * N * F, *gl = s.gl.data() + l * N * F;
        train::layernorm_forward(x, val(bp.ln1), val(bp.ln1b), N, D, c.norm_eps, xn1, s.mean1.data() + l * N, s.rstd1.data() + l * N);
        const int64_t Hl = bp.n_head, A = Hl * hd;  // q, k, v, att: [N, A] at a stride of N·D per block
        train::linear_forward(xn1, val(bp.q), val(bp.bq), N, D, A, q);
        train::linear_forward(xn1, val(bp.k), val(bp.bk), N, D, A, k);
        train::linear_forward(xn1, val(bp.v), val(bp.bv), N, D, A, v);
        s.mask.assign(static_cast<size_t>(N), 1);  // every token is real: bidirectional attention
        train::attention_forward(q, k, v, B, S, Hl, Hl, hd, s.p.data() + l * B * H * S * S, att, s.mask.data());
        train::linear_forward(att, val(bp.o), val(bp.bo), N, A, D, s.tmp.data());
        train::add_forward(x, s.tmp.data(), x1, N * D);
        train::layernorm_forward(x1, val(bp.ln2), val(bp.ln2b), N, D, c.norm_eps, xn2, s.mean2.data() + l * N, s.rstd2.data() + l * N);
        train::linear_forward(xn2, val(bp.in), val(bp.bin), N, D, F, f);
        train::gelu_erf_forward(f, gl, N * F);
        train::linear_forward(gl, val(bp.out), val(bp.bout), N, F, D, s.tmp.data());
        train::add_forward(x1, s.tmp.data(), s.x.data() + (l + 1) * N * D, N * D);
    }
    const float* xl = s.x.data() + L * N * D;
    for (int64_t b = 0; b < B; ++b) std::copy_n(xl + b * S * D, D, s.hcls.data() + b * D);
    train::layernorm_forward(s.hcls.data(), val(s.fnorm), val(s.fnormb), B, D, c.norm_eps, s.hf.data(), s.meanf.data(), s.rstdf.data());
    train::linear_forward(s.hf.data(), val(s.cls), val(s.clsb), B, D, C, s.logits.data());
    if (logits_out) std::copy_n(s.logits.data(), B * C, logits_out);
    const double total = train::cross_entropy_forward(s.logits.data(), s.labels.data(), B, C, s.logits.data(), s.losses.data());
    if (!backward) return total / static_cast<double>(B);

    grow(s.dx, N * D), grow(s.dy, N * D), grow(s.dq, N * D), grow(s.dk, N * D), grow(s.dv, N * D), grow(s.datt, N * D);
    grow(s.dgl, N * F), grow(s.dcls, B * D), grow(s.dpool, B * D), grow(s.dlog, B * C);
    train::cross_entropy_backward(s.logits.data(), s.labels.data(), B, C, grad_scale / static_cast<float>(B), s.dlog.data());
    train::linear_backward(s.dlog.data(), s.hf.data(), val(s.cls), B, D, C, s.dpool.data(), false, grad(s.cls), grad(s.clsb));
    std::fill_n(s.dcls.data(), B * D, 0.0f);
    train::layernorm_backward(s.dpool.data(), s.hcls.data(), val(s.fnorm), s.meanf.data(), s.rstdf.data(), B, D, s.dcls.data(),
                              grad(s.fnorm), grad(s.fnormb));
    std::fill_n(s.dx.data(), N * D, 0.0f);
    for (int64_t b = 0; b < B; ++b) std::copy_n(s.dcls.data() + b * D, D, s.dx.data() + b * S * D);
    for (int64_t l = L - 1; l >= 0; --l) {
        const auto& bp = s.blocks[static_cast<size_t>(l)];
        const float* x = s.x.data() + l * N * D;
        const float *xn1 = s.xn1v.data() + l * N * D, *q = s.q.data() + l * N * D, *k = s.k.data() + l * N * D, *v = s.v.data() + l * N * D;
        const float *att = s.att.data() + l * N * D, *x1 = s.x1v.data() + l * N * D, *xn2 = s.xn2v.data() + l * N * D;
        const float *f = s.f.data() + l * N * F, *gl = s.gl.data() + l * N * F;
        // dx holds d x[l+1] = d x1 (residual) + the MLP branch
        train::linear_backward(s.dx.data(), gl, val(bp.out), N, F, D, s.dgl.data(), false, grad(bp.out), grad(bp.bout));
        train::gelu_erf_backward(s.dgl.data(), f, s.dgl.data(), N * F);
        train::linear_backward(s.dgl.data(), xn2, val(bp.in), N, D, F, s.dy.data(), false, grad(bp.in), grad(bp.bin));
        train::layernorm_backward(s.dy.data(), x1, val(bp.ln2), s.mean2.data() + l * N, s.rstd2.data() + l * N, N, D, s.dx.data(),
                                  grad(bp.ln2), grad(bp.ln2b));
        // dx holds d x1 = d x (residual) + the attention branch
        const int64_t Hl = bp.n_head, A = Hl * hd;
        train::linear_backward(s.dx.data(), att, val(bp.o), N, A, D, s.datt.data(), false, grad(bp.o), grad(bp.bo));
        train::attention_backward(s.datt.data(), q, k, v, s.p.data() + l * B * H * S * S, B, S, Hl, Hl, hd, s.dq.data(), s.dk.data(),
                                  s.dv.data(), s.mask.data());
        train::linear_backward(s.dq.data(), xn1, val(bp.q), N, D, A, s.dy.data(), false, grad(bp.q), grad(bp.bq));
        train::linear_backward(s.dk.data(), xn1, val(bp.k), N, D, A, s.dy.data(), true, grad(bp.k), grad(bp.bk));
        train::linear_backward(s.dv.data(), xn1, val(bp.v), N, D, A, s.dy.data(), true, grad(bp.v), grad(bp.bv));
        train::layernorm_backward(s.dy.data(), x, val(bp.ln1), s.mean1.data() + l * N, s.rstd1.data() + l * N, N, D, s.dx.data(),
                                  grad(bp.ln1), grad(bp.ln1b));
    }
    // x0 = [cls; patch_embed(patches)] + pos
    float* dpos = grad(s.pos);
    float* dcls_tok = grad(s.cls_tok);
    for (int64_t b = 0; b < B; ++b) {
        const float* dxb = s.dx.data() + b * S * D;
        for (int64_t i = 0; i < S * D; ++i) dpos[i] += dxb[i];
        for (int64_t i = 0; i < D; ++i) dcls_tok[i] += dxb[i];
        std::copy_n(dxb + D, np * D, s.tmp.data() + b * np * D);
    }
    train::linear_backward(s.tmp.data(), s.patches.data(), val(s.patch), B * np, pin, D, nullptr, false, grad(s.patch), grad(s.patchb));
    return total / static_cast<double>(B);
}

double EncoderTrainer::forward_backward_images(const uint8_t* pixels, int64_t batch, std::span<const int32_t> labels, float grad_scale) {
    if (!s_->vit) throw InvalidArgument("[train] image batches need a ViT model, this one is " + s_->c.architecture);
    return run_vit(pixels, batch, labels, true, grad_scale, nullptr);
}

double EncoderTrainer::loss_images(const uint8_t* pixels, int64_t batch, std::span<const int32_t> labels, float* logits) {
    if (!s_->vit) throw InvalidArgument("[train] image batches need a ViT model, this one is " + s_->c.architecture);
    return run_vit(pixels, batch, labels, false, 1.0f, logits);
}

double EncoderTrainer::forward_backward(const TextBatch& batch, std::span<const int32_t> labels, float dropout, uint64_t dropout_key,
                                        float grad_scale) {
    return run(batch, labels, dropout, dropout_key, true, grad_scale, nullptr);
}

double EncoderTrainer::loss(const TextBatch& batch, std::span<const int32_t> labels, float* logits) {
    return run(batch, labels, 0.0f, 0, false, 1.0f, logits);
}

}  // namespace cq
