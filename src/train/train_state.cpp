// cq finetune's resumable state file (train_state.h).
#include "train/train_state.h"

#include <cstring>

#include "cq/atomic_file.h"
#include "cq/error.h"
#include "cq/mapped_file.h"

namespace cq::train {

namespace {

// The resumable state file: "CQTRAIN1", then u64 fields, then each parameter (name, numel, f32 values) and each
// optimiser state array (numel, f32 values), then the loss curve (f64). Little-endian, as the host writes it.
constexpr char kStateMagic[8] = {'C', 'Q', 'T', 'R', 'A', 'I', 'N', '1'};

constexpr char kScalerMagic[8] = {'C', 'Q', 'S', 'C', 'A', 'L', 'E', '1'};

}  // namespace

void save_state(const std::string& path, const RunShape& rs, std::span<const TrainParam> params, Optimizer& opt,
                const std::vector<double>& curve, const DynamicLossScaler* scaler) {
    AtomicFile f(path);
    f.write(kStateMagic, 8);
    f.write(&rs, sizeof rs);
    const uint64_t n_params = params.size(), n_state = opt.state().size(), n_curve = curve.size();
    f.write(&n_params, 8);
    for (const TrainParam& p : params) {
        const uint64_t len = p.name.size(), numel = static_cast<uint64_t>(p.numel);
        f.write(&len, 8), f.write(p.name.data(), len), f.write(&numel, 8), f.write(p.value, numel * sizeof(float));
    }
    f.write(&n_state, 8);
    for (const auto& st : opt.state()) {
        const uint64_t numel = st.size();
        f.write(&numel, 8), f.write(st.data(), numel * sizeof(float));
    }
    f.write(&n_curve, 8), f.write(curve.data(), n_curve * sizeof(double));
    if (scaler) {  // fp16 runs: the loss scaler's state, after the curve (files of other runs end at the curve)
        const float scale = scaler->scale();
        const int64_t good = scaler->finite_in_a_row(), skipped = scaler->skipped_steps();
        f.write(kScalerMagic, 8), f.write(&scale, 4), f.write(&good, 8), f.write(&skipped, 8);
    }
    f.commit();
}

RunShape load_state(const std::string& path, const RunShape& want, std::span<TrainParam> params, Optimizer& opt,
                    std::vector<double>& curve, DynamicLossScaler* scaler) {
    const std::string bytes = read_text_file(path, 1ull << 40);
    size_t at = 0;
    const auto take = [&](void* dst, size_t n, const char* what) {
        if (n > bytes.size() - at)
            throw FormatError("cq-train-state", path, at, "the file ends inside " + std::string(what));
        std::memcpy(dst, bytes.data() + at, n);
        at += n;
    };
    char magic[8];
    take(magic, 8, "the header");
    if (std::memcmp(magic, kStateMagic, 8) != 0) throw FormatError("cq-train-state", path, 0, "not a cq finetune state file");
    RunShape rs{};
    take(&rs, sizeof rs, "the header");
    if (rs.batch != want.batch || rs.ctx != want.ctx || rs.accumulate != want.accumulate || rs.seed != want.seed ||
        rs.total_steps != want.total_steps)
        throw InvalidArgument("[finetune] " + path + " was written by a run with batch " + std::to_string(rs.batch) + ", ctx " +
                              std::to_string(rs.ctx) + ", accumulate " + std::to_string(rs.accumulate) + ", seed " + std::to_string(rs.seed) +
                              ", " + std::to_string(rs.total_steps) + " steps; this run has " + std::to_string(want.batch) + ", " +
                              std::to_string(want.ctx) + ", " + std::to_string(want.accumulate) + ", " + std::to_string(want.seed) + ", " +
                              std::to_string(want.total_steps));
    uint64_t n = 0;
    take(&n, 8, "the parameter count");
    if (n != params.size())
        throw FormatError("cq-train-state", path, at, "holds " + std::to_string(n) + " parameters, the run trains " + std::to_string(params.size()));
    for (TrainParam& p : params) {
        uint64_t len = 0, numel = 0;
        take(&len, 8, "a parameter name");
        if (len > 4096) throw FormatError("cq-train-state", path, at, "a parameter name of " + std::to_string(len) + " bytes");
        std::string name(len, '\0');
        take(name.data(), len, "a parameter name");
        take(&numel, 8, "a parameter size");
        if (name != p.name || numel != static_cast<uint64_t>(p.numel))
            throw FormatError("cq-train-state", path, at, "holds '" + name + "' (" + std::to_string(numel) + " values) where the run has '" +
                                                              p.name + "' (" + std::to_string(p.numel) + ")");
        take(p.value, numel * sizeof(float), p.name.c_str());
    }
    take(&n, 8, "the optimiser state");
    if (n != opt.state().size()) throw FormatError("cq-train-state", path, at, "optimiser state of another kind");
    for (auto& st : opt.state()) {
        uint64_t numel = 0;
        take(&numel, 8, "the optimiser state");
        if (numel != st.size()) throw FormatError("cq-train-state", path, at, "optimiser state of another size");
        take(st.data(), numel * sizeof(float), "the optimiser state");
    }
    take(&n, 8, "the loss curve");
    if (n != rs.step) throw FormatError("cq-train-state", path, at, "a loss curve of the wrong length");
    curve.resize(n);
    take(curve.data(), n * sizeof(double), "the loss curve");
    if (scaler) {
        if (at == bytes.size()) throw InvalidArgument("[finetune] " + path + " was written by a run without fp16 loss scaling");
        char magic2[8];
        float scale = 0;
        int64_t good = 0, skipped = 0;
        take(magic2, 8, "the loss scaler");
        if (std::memcmp(magic2, kScalerMagic, 8) != 0) throw FormatError("cq-train-state", path, at - 8, "not a loss scaler section");
        take(&scale, 4, "the loss scaler"), take(&good, 8, "the loss scaler"), take(&skipped, 8, "the loss scaler");
        scaler->restore(scale, good, skipped);
    }
    if (at != bytes.size())
        throw InvalidArgument("[finetune] " + path + " holds " + std::to_string(bytes.size() - at) + " bytes after the loss curve" +
                              (scaler ? "" : " (a run with --precision fp16 wrote it)"));
    opt.set_steps(static_cast<int64_t>(rs.opt_steps));
    return rs;
}

}  // namespace cq::train
