// ViT and DeiT image classifiers: non-overlapping p×p patches through the patch conv (as a Linear over flattened
// [C, p, p] patches), a CLS token in front (DeiT: then its distillation token), learned positions added, pre-LN
// blocks (x += attn(LN(x)); x += ffn(LN(x))), a final LayerNorm and the classifier on the CLS state (DeiT with
// teacher: the mean of the CLS head's and the distillation head's logits). vit_encode (everything before the head) and
// pre_ln_blocks also serve CLIP's towers.
#include <algorithm>
#include <string>

#include "cq/error.h"
#include "cq/thread_pool.h"
#include "models/encoder_families.h"
#include "ops/ops.h"

namespace cq {

namespace {
void grow(std::vector<float>& v, int64_t n) {
    if (static_cast<int64_t>(v.size()) < n) v.resize(static_cast<size_t>(n));
}
}  // namespace

void load_vit_weights(const EncoderConfig& c, const EncoderWeightSource& src, EncoderWeights& w) {
    const int64_t D = c.hidden, F = c.n_ff, patch_in = c.num_channels * c.patch_size * c.patch_size;
    const bool deit = c.family == EncoderFamily::deit;
    const std::string root = deit ? "deit." : "vit.", e = root + "embeddings.";
    // The conv weight [D, C, p, p] is read as [D, C·p·p]: the same bytes, no copy.
    w.patch_embd = src.linear(e + "patch_embeddings.projection", D, patch_in, LayerRole::patch_embed);
    w.cls_token = src.get(e + "cls_token", {D});
    if (deit) w.dist_token = src.get(e + "distillation_token", {D});
    w.pos_embd = src.get(e + "position_embeddings", {c.max_positions, D});
    w.blocks = src.blocks(root + "encoder.layer.",
                          {"attention.attention.query", "attention.attention.key", "attention.attention.value",
                           "attention.output.dense", "layernorm_before", "intermediate.dense", "output.dense", "layernorm_after"},
                          c.n_layer, D, F, &c);
    w.final_norm = src.norm(root + "layernorm", D);
    if (c.architecture == "DeiTForImageClassificationWithTeacher") {
        w.classifier = src.linear("cls_classifier", c.num_labels, D, LayerRole::classifier);
        w.dist_classifier = src.linear("distillation_classifier", c.num_labels, D, LayerRole::classifier);
    } else {
        w.classifier = src.linear("classifier", c.num_labels, D, LayerRole::classifier);
    }
}

namespace {
// One pre-LN block over x: [batch·S, hidden] in place (the pass's scratch for everything else).
void pre_ln_block(const EncoderPass& p, const EncoderBlock& b, float* x, int64_t batch, int64_t S, const int32_t* mask, bool causal) {
    const EncoderConfig& c = p.c;
    EncoderScratch& s = p.s;
    const int64_t D = c.hidden, rows = batch * S;
    ops::layer_norm_rows(x, rows, D, b.attn_norm.weight, &*b.attn_norm.bias, c.norm_eps, s.xn.data());
    p.self_attention(b, s.xn.data(), batch, S, mask, causal);  // → s.tmp
    ops::add_layer_norm_rows(x, s.tmp.data(), rows, D, b.ffn_norm.weight, &*b.ffn_norm.bias, c.norm_eps, s.xn.data());
    p.linear(b.ffn_in, s.xn.data(), rows, s.ffn.data(), mask);
    ops::activate(p.act, s.ffn.data(), rows * c.n_ff);
    p.linear(b.ffn_out, s.ffn.data(), rows, s.tmp.data(), mask);
    ops::add(x, s.tmp.data(), rows * D);
}
}  // namespace

void pre_ln_blocks(const EncoderPass& p, const std::vector<EncoderBlock>& blocks, int64_t batch, int64_t S, const int32_t* mask,
                   bool causal, int64_t first_index) {
    EncoderScratch& s = p.s;
    const int64_t D = p.c.hidden;
    if (p.splits_by_sequence(blocks, batch, S)) {
        ThreadPool::global().parallel_for(batch, [&](int64_t b0, int64_t b1) {
            EncoderScratch& local = EncoderPass::thread_scratch(p.c, blocks, (b1 - b0) * S);
            const EncoderPass sub{p.c, p.w, local, nullptr, p.act};
            for (const EncoderBlock& b : blocks) pre_ln_block(sub, b, s.x.data() + b0 * S * D, b1 - b0, S, mask ? mask + b0 * S : nullptr, causal);
        });
        return;
    }
    for (size_t l = 0; l < blocks.size(); ++l) {
        pre_ln_block(p, blocks[l], s.x.data(), batch, S, mask, causal);
        p.block_done(first_index + static_cast<int64_t>(l), s.x.data(), batch * S, mask);
    }
}

int64_t vit_encode(const EncoderPass& p, const float* pixels, int64_t batch) {
    const EncoderConfig& c = p.c;
    const EncoderWeights& w = p.w;
    EncoderScratch& s = p.s;
    const int64_t D = c.hidden, P = c.patch_size, C = c.num_channels, H = c.image_size;
    // prefix: the tokens in front of the patches (CLS; DeiT: CLS, distillation)
    const int64_t prefix = w.dist_token ? 2 : 1;
    const int64_t side = H / P, n_patch = side * side, S = n_patch + prefix, rows = batch * S, patch_in = C * P * P;
    for (auto* v : {&s.x, &s.xn, &s.q, &s.k, &s.v, &s.attn, &s.tmp}) grow(*v, rows * D);
    grow(s.ffn, rows * c.n_ff);
    grow(s.patches, batch * n_patch * patch_in);
    grow(s.cls, batch * D);
    grow(s.head, batch * D);

    // patches: [batch·n_patch, C·p·p], patch (py, px) in row-major order, elements in the conv weight's [C, p, p] order
    for (int64_t b = 0; b < batch; ++b)
        for (int64_t py = 0; py < side; ++py)
            for (int64_t px = 0; px < side; ++px) {
                float* row = s.patches.data() + ((b * n_patch) + py * side + px) * patch_in;
                for (int64_t ch = 0; ch < C; ++ch)
                    for (int64_t ky = 0; ky < P; ++ky)
                        std::copy_n(pixels + ((b * C + ch) * H + py * P + ky) * H + px * P, P, row + (ch * P + ky) * P);
            }
    p.linear(w.patch_embd, s.patches.data(), batch * n_patch, s.tmp.data());

    // x: [batch·S, D], row 0 of each image the CLS token (DeiT: row 1 the distillation token), then its patches;
    // positions added
    std::vector<int32_t>& positions = s.positions;
    positions.resize(static_cast<size_t>(S));
    for (int64_t t = 0; t < S; ++t) positions[static_cast<size_t>(t)] = static_cast<int32_t>(t);
    std::vector<float> pos(static_cast<size_t>(S * D)), cls = w.cls_token->to_float();
    const std::vector<float> dist = w.dist_token ? w.dist_token->to_float() : std::vector<float>{};
    ops::embedding(w.pos_embd, positions, pos.data());
    for (int64_t b = 0; b < batch; ++b) {
        float* xb = s.x.data() + b * S * D;
        std::copy(cls.begin(), cls.end(), xb);
        if (w.dist_token) std::copy(dist.begin(), dist.end(), xb + D);
        std::copy_n(s.tmp.data() + b * n_patch * D, n_patch * D, xb + prefix * D);
        ops::add(xb, pos.data(), S * D);
    }

    // CLIP normalises the embeddings before the blocks (pre_layrnorm)
    if (w.pre_norm) ops::layer_norm_rows(s.x.data(), rows, D, w.pre_norm->weight, &*w.pre_norm->bias, c.norm_eps, s.x.data());
    pre_ln_blocks(p, w.blocks, batch, S, nullptr, false, 0);
    return S;
}

void vit_forward(const EncoderPass& p, const float* pixels, int64_t batch, float* logits) {
    const EncoderConfig& c = p.c;
    const EncoderWeights& w = p.w;
    EncoderScratch& s = p.s;
    const int64_t D = c.hidden, S = vit_encode(p, pixels, batch);
    // The final LayerNorm is per row, so only the CLS (and distillation) rows need it.
    p.gather_cls(batch, S);
    ops::layer_norm_rows(s.cls.data(), batch, D, w.final_norm->weight, &*w.final_norm->bias, c.norm_eps, s.cls.data());
    p.linear(w.classifier, s.cls.data(), batch, logits);
    if (!w.dist_classifier) return;
    // head: [batch, D], each image's distillation-token row; logits = (cls_logits + dist_logits) / 2, as HF computes it
    for (int64_t b = 0; b < batch; ++b) std::copy_n(s.x.data() + (b * S + 1) * D, D, s.head.data() + b * D);
    ops::layer_norm_rows(s.head.data(), batch, D, w.final_norm->weight, &*w.final_norm->bias, c.norm_eps, s.head.data());
    const int64_t L = c.num_labels;
    std::vector<float> dist_logits(static_cast<size_t>(batch * L));
    p.linear(*w.dist_classifier, s.head.data(), batch, dist_logits.data());
    for (int64_t i = 0; i < batch * L; ++i) logits[i] = (logits[i] + dist_logits[static_cast<size_t>(i)]) / 2.0f;
}

}  // namespace cq
