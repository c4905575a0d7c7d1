// Hidden-state distillation: the layer map (student block → teacher block), the MSE / cosine terms on mapped block
// outputs with their gradients, and the per-pair projections (student width → teacher width) trained with the student.
// The trainers add ∂term/∂h at the block outputs (HiddenLoss); the teacher's outputs come from its own forward.
#include <algorithm>
#include <cmath>
#include <sstream>

#include "cq/distill.h"
#include "cq/error.h"

namespace cq {

namespace {

int64_t parse_block(const std::string& text, const std::string& pair, const std::string& spec) {
    size_t used = 0;
    int64_t b = -1;
    try {
        b = std::stoll(text, &used);
    } catch (const std::exception&) {
        used = 0;
    }
    if (text.empty() || used != text.size())
        throw InvalidArgument("[distill] --layer-map pair '" + pair + "' in '" + spec + "' is not STUDENT:TEACHER (block indices)");
    return b;
}

// A seeded uniform draw in [-bound, bound) from splitmix64: the same numbers on every platform.
float uniform_draw(uint64_t& state, float bound) {
    uint64_t z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return static_cast<float>((2.0 * (static_cast<double>(z >> 11) * 0x1.0p-53) - 1.0) * bound);
}

}  // namespace

std::vector<LayerPair> parse_layer_map(const std::string& spec, int64_t student_layers, int64_t teacher_layers) {
    if (spec.empty() || spec.back() == ',')
        throw InvalidArgument("[distill] --layer-map '" + spec + "' is not STUDENT:TEACHER,… (e.g. 0:1,1:3)");
    std::vector<LayerPair> map;
    std::stringstream in(spec);
    std::string pair;
    while (std::getline(in, pair, ',')) {
        const auto colon = pair.find(':');
        if (colon == std::string::npos)
            throw InvalidArgument("[distill] --layer-map pair '" + pair + "' in '" + spec + "' is not STUDENT:TEACHER (block indices)");
        const LayerPair p{parse_block(pair.substr(0, colon), pair, spec), parse_block(pair.substr(colon + 1), pair, spec)};
        if (p.student < 0 || p.student >= student_layers)
            throw InvalidArgument("[distill] --layer-map pair '" + pair + "': student block " + std::to_string(p.student) + " is outside [0, " +
                                  std::to_string(student_layers) + ") (the student has " + std::to_string(student_layers) + " blocks)");
        if (p.teacher < 0 || p.teacher >= teacher_layers)
            throw InvalidArgument("[distill] --layer-map pair '" + pair + "': teacher block " + std::to_string(p.teacher) + " is outside [0, " +
                                  std::to_string(teacher_layers) + ") (the teacher has " + std::to_string(teacher_layers) + " blocks)");
        map.push_back(p);
    }
    return map;
}

std::vector<LayerPair> default_layer_map(int64_t student_layers, int64_t teacher_layers, const std::vector<int64_t>& copied_from) {
    std::vector<LayerPair> map;
    const bool copied = static_cast<int64_t>(copied_from.size()) == student_layers;
    for (int64_t i = 0; i < student_layers; ++i) {
        const int64_t t = copied ? copied_from[static_cast<size_t>(i)]
                                 : std::llround(static_cast<double>((i + 1) * teacher_layers) / static_cast<double>(student_layers)) - 1;
        if (t < 0 || t >= teacher_layers)
            throw InvalidArgument("[distill] student block " + std::to_string(i) + " came from teacher block " + std::to_string(t) +
                                  ", which the teacher (" + std::to_string(teacher_layers) + " blocks) does not have");
        map.push_back({i, t});
    }
    return map;
}

double hidden_pair_loss(const float* hs, const float* ht, const int32_t* row_mask, int64_t N, int64_t Ds, int64_t Dt,
                        const float* W, float mse, float cos, float* dhs, float* dW) {
    if (!W && Ds != Dt)
        throw InvalidArgument("[distill] hidden widths " + std::to_string(Ds) + " and " + std::to_string(Dt) + " differ: a projection is needed");
    int64_t n = 0;
    for (int64_t r = 0; r < N; ++r) n += !row_mask || row_mask[r] != 0;
    if (dhs) std::fill_n(dhs, N * Ds, 0.0f);
    if (n == 0) return 0.0;
    std::vector<double> p(static_cast<size_t>(Dt)), dp(static_cast<size_t>(Dt));
    const double mse_scale = static_cast<double>(mse) / static_cast<double>(n * Dt), cos_scale = static_cast<double>(cos) / static_cast<double>(n);
    double total = 0;
    for (int64_t r = 0; r < N; ++r) {
        if (row_mask && row_mask[r] == 0) continue;
        const float* x = hs + r * Ds;
        const float* t = ht + r * Dt;
        // p = W·x  (W: [Dt, Ds])
        for (int64_t o = 0; o < Dt; ++o) {
            if (!W) {
                p[static_cast<size_t>(o)] = x[o];
                continue;
            }
            double a = 0;
            for (int64_t i = 0; i < Ds; ++i) a += static_cast<double>(W[o * Ds + i]) * x[i];
            p[static_cast<size_t>(o)] = a;
        }
        double sq = 0, pt = 0, pp = 0, tt = 0;
        for (int64_t o = 0; o < Dt; ++o) {
            const double pv = p[static_cast<size_t>(o)], tv = t[o];
            sq += (pv - tv) * (pv - tv), pt += pv * tv, pp += pv * pv, tt += tv * tv;
        }
        const double norm = std::max(std::sqrt(pp) * std::sqrt(tt), 1e-12), c = pt / norm;
        total += mse_scale * sq + cos_scale * (1.0 - c);
        if (!dhs) continue;
        // ∂/∂p: 2·mse_scale·(p − t) − cos_scale·(t / (‖p‖‖t‖) − c·p / ‖p‖²)
        const double inv_pp = pp > 0 ? 1.0 / pp : 0.0;
        for (int64_t o = 0; o < Dt; ++o) {
            const double pv = p[static_cast<size_t>(o)], tv = t[o];
            dp[static_cast<size_t>(o)] = 2.0 * mse_scale * (pv - tv) - cos_scale * (tv / norm - c * pv * inv_pp);
        }
        float* dx = dhs + r * Ds;
        if (!W) {
            for (int64_t o = 0; o < Dt; ++o) dx[o] = static_cast<float>(dp[static_cast<size_t>(o)]);
            continue;
        }
        // dx = Wᵀ·dp, dW += dp ⊗ x
        std::vector<double> acc(static_cast<size_t>(Ds), 0.0);
        for (int64_t o = 0; o < Dt; ++o) {
            const double g = dp[static_cast<size_t>(o)];
            const float* w = W + o * Ds;
            for (int64_t i = 0; i < Ds; ++i) acc[static_cast<size_t>(i)] += g * w[i];
            if (dW)
                for (int64_t i = 0; i < Ds; ++i) dW[o * Ds + i] += static_cast<float>(g * x[i]);
        }
        for (int64_t i = 0; i < Ds; ++i) dx[i] = static_cast<float>(acc[static_cast<size_t>(i)]);
    }
    return total;
}

HiddenDistill::HiddenDistill(std::vector<LayerPair> map, int64_t student_width, int64_t teacher_width, const DistillLoss& loss,
                             uint64_t seed)
    : map_(std::move(map)), ds_(student_width), dt_(teacher_width), loss_(loss) {
    if (map_.empty()) throw InvalidArgument("[distill] hidden-state terms need at least one --layer-map pair");
    teacher_.resize(map_.size());
    if (ds_ == dt_) return;
    // One projection per pair: U(±1/√Ds) (nn.Linear's default bound), from the seed.
    uint64_t rng = seed * 0x2545F4914F6CDD1Dull + 0x5EEDull;
    const float bound = 1.0f / std::sqrt(static_cast<float>(ds_));
    weights_.resize(map_.size()), grads_.resize(map_.size());
    for (size_t i = 0; i < map_.size(); ++i) {
        weights_[i].resize(static_cast<size_t>(dt_ * ds_));
        for (float& v : weights_[i]) v = uniform_draw(rng, bound);
        grads_[i].assign(weights_[i].size(), 0.0f);
        TrainParam p;
        p.name = p.hf_name = "distill.proj." + std::to_string(map_[i].student) + "_" + std::to_string(map_[i].teacher) + ".weight";
        p.shape = {dt_, ds_}, p.numel = dt_ * ds_, p.value = weights_[i].data(), p.grad = grads_[i].data(), p.decay = false;
        params_.push_back(p);
    }
}

void HiddenDistill::zero_grad() {
    for (auto& g : grads_) std::fill(g.begin(), g.end(), 0.0f);
}

HiddenLoss HiddenDistill::hook() {
    HiddenLoss h;
    for (const LayerPair& p : map_) h.blocks.push_back(p.student);
    // Each term weighs 1/pairs: the weights mean the same for any map.
    h.fn = [this](size_t i, const float* hs, int64_t N, int64_t D, float* dh) {
        if (D != ds_) throw InvalidArgument("[distill] the student's hidden width is " + std::to_string(D) + ", not " + std::to_string(ds_));
        const std::vector<float>& t = teacher_[i];
        if (static_cast<int64_t>(t.size()) != N * dt_)
            throw InvalidArgument("[distill] the teacher's hidden states of pair " + std::to_string(i) + " hold " + std::to_string(t.size()) +
                                  " values, not " + std::to_string(N) + " × " + std::to_string(dt_));
        if (!mask_.empty() && static_cast<int64_t>(mask_.size()) != N)
            throw InvalidArgument("[distill] the row mask holds " + std::to_string(mask_.size()) + " rows, not " + std::to_string(N));
        const float share = 1.0f / static_cast<float>(map_.size());
        const bool proj = !weights_.empty();
        return hidden_pair_loss(hs, t.data(), mask_.empty() ? nullptr : mask_.data(), N, ds_, dt_, proj ? weights_[i].data() : nullptr,
                                loss_.hidden * share, loss_.cos * share, dh, proj && dh ? grads_[i].data() : nullptr);
    };
    return h;
}

}  // namespace cq
