// quantize_seq2seq_w8a8: W8A8 on an encoder–decoder's block Linears, static ranges observed over teacher-forced passes on
// calibration pairs (evaluate_pairs; a captioner's on (image, caption) pairs, evaluate_captions). Apart from
// seq2seq_eval.cpp so that the evaluation needs no calibration code.
#include <functional>

#include "cq/error.h"
#include "cq/seq2seq.h"

namespace cq {

namespace {

// W8A8 on every block Linear; static ranges from what each saw while `calibrate` ran (null: dynamic activations).
int64_t quantize_blocks(Seq2SeqModel& model, ActivationQuant activations, const std::function<void()>& calibrate, calib::Method method,
                        double percentile) {
    const int32_t qmax = (1 << auto_activation_bits()) - 1;
    std::vector<Linear*> blocks;
    for (Linear* l : model.linears())
        if (l->block >= 0) blocks.push_back(l);
    std::vector<calib::RangeObserver> ranges(blocks.size());
    if (activations == ActivationQuant::static_per_tensor) {
        // each Linear's inputs over the calibration pairs, then one range per Linear
        std::vector<ObserverId> ids;
        for (size_t i = 0; i < blocks.size(); ++i)
            ids.push_back(model.observe(*blocks[i], [r = &ranges[i]](const LinearEvent& e) { r->observe(e.x, e.rows * e.layer.n_in()); }));
        try {
            calibrate();
        } catch (...) {
            for (const ObserverId id : ids) model.remove_observer(id);
            throw;
        }
        for (const ObserverId id : ids) model.remove_observer(id);
    }
    for (size_t i = 0; i < blocks.size(); ++i) {
        const calib::U8Params p = activations == ActivationQuant::static_per_tensor ? calib::u8_params(ranges[i].range(method, percentile), qmax)
                                                                                    : calib::U8Params{1.0f, 0};
        blocks[i]->int8 = quantize_linear_w8a8(*blocks[i], activations, p, qmax);
    }
    return static_cast<int64_t>(blocks.size());
}

}  // namespace

int64_t quantize_seq2seq_w8a8(Seq2SeqModel& model, ActivationQuant activations, const std::string& calib_tsv, int64_t first, int64_t end,
                              calib::Method method, double percentile) {
    if (activations == ActivationQuant::static_per_tensor && calib_tsv.empty())
        throw InvalidArgument("[w8a8] static activation ranges need calibration pairs");
    return quantize_blocks(model, activations, [&] { evaluate_pairs(model, calib_tsv, first, end); }, method, percentile);
}

int64_t quantize_captioner_w8a8(Seq2SeqModel& model, ActivationQuant activations, std::span<const CaptionPair> calib, calib::Method method,
                                double percentile) {
    if (activations == ActivationQuant::static_per_tensor && calib.empty())
        throw InvalidArgument("[w8a8] static activation ranges need calibration (image, caption) pairs");
    return quantize_blocks(model, activations, [&] { evaluate_captions(model, calib); }, method, percentile);
}

}  // namespace cq
