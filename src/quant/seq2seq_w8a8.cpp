// Quantization of encoder–decoders: W8A8 on the block Linears, static ranges observed over teacher-forced passes on
// calibration pairs (evaluate_pairs; a captioner's on (image, caption) pairs, evaluate_captions), or weight-only block
// types; and quantize_seq2seq, which writes the result as cq's container. Apart from seq2seq_eval.cpp so that the
// evaluation needs no calibration code.
#include <chrono>
#include <filesystem>
#include <functional>
#include <optional>

#include "cq/error.h"
#include "quant/container_quant_type.h"
#include "cq/seq2seq.h"
#include "cq/io/gguf_writer.h"
#include "quant/llm_gguf_writer.h"

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

int64_t quantize_seq2seq_weights(Seq2SeqModel& model, DType type, std::vector<std::string>* fallbacks) {
    const DTypeTraits& traits = dtype_traits(type);
    if (!traits.is_quantized || !traits.from_float) throw InvalidArgument("[quantize] " + std::string(traits.name) + " is not a block type cq can quantize weights to");
    int64_t n = 0;
    for (Linear* l : model.linears()) {
        if (l->block < 0) continue;
        if (l->int8) throw InvalidArgument("[quantize] " + l->name + " is already W8A8; weight-only quantization starts from float weights");
        const auto [fit, why] = quant::fit_row_type(type, l->n_in());
        if (!dtype_traits(fit).is_quantized || !dtype_traits(fit).from_float) {
            if (fallbacks) fallbacks->push_back(l->name + ": rows of " + std::to_string(l->n_in()) + " fit no block type (kept f32)");
            continue;
        }
        if (fallbacks && !why.empty()) fallbacks->push_back(l->name + ": " + why);
        model.quantize_linear(*l, fit, "quantize");
        ++n;
    }
    return n;
}

Seq2SeqQuantizeReport quantize_seq2seq(const std::string& input, const std::string& output, const Seq2SeqQuantizeOptions& o) {
    namespace fs = std::filesystem;
    const auto start = std::chrono::steady_clock::now();
    std::error_code ec;
    if (!fs::is_directory(input, ec)) throw InvalidArgument("[quantize] an encoder–decoder's quantization needs its HF directory as input; " + input + " is not one");
    Seq2SeqQuantizeReport r;
    r.input = input;
    r.output = output;
    r.type = o.type;
    const quant::ContainerQuantType kind = quant::parse_container_quant_type(o.type);
    const bool w8a8 = kind.w8a8;
    const std::optional<DType> block = kind.block;
    if (o.type != "w8a8-static" && !o.calib_tsv.empty())
        throw InvalidArgument("[quantize] calibration pairs apply to w8a8-static only, not " + o.type);
    auto model = Seq2SeqModel::load(input);
    r.linears = static_cast<int64_t>(model->linears().size());
    if (w8a8) {
        const ActivationQuant act = o.type == "w8a8-static" ? ActivationQuant::static_per_tensor : ActivationQuant::dynamic_per_token;
        if (act == ActivationQuant::static_per_tensor && o.calib_tsv.empty())
            throw InvalidArgument(model->takes_images() ? "[quantize] w8a8-static needs calibration (image, caption) pairs (--calib CAPTIONS.tsv)"
                                                        : "[quantize] w8a8-static needs calibration text pairs (--calib PAIRS.tsv)");
        if (model->takes_images()) {
            const std::vector<CaptionPair> calib =
                o.calib_tsv.empty() ? std::vector<CaptionPair>{} : load_caption_pairs(*model, o.calib_tsv, o.calib_first, o.calib_end);
            r.quantized = quantize_captioner_w8a8(*model, act, calib, o.method, o.percentile);
        } else {
            r.quantized = quantize_seq2seq_w8a8(*model, act, o.calib_tsv, o.calib_first, o.calib_end, o.method, o.percentile);
        }
    } else {
        r.quantized = quantize_seq2seq_weights(*model, *block, &r.fallbacks);
    }
    SaveOptions save;
    save.metadata = [&](gguf::Writer& w) {
        w.set_string("cq.quantize.type", r.type);
        if (o.type == "w8a8-static")
            w.set_string("cq.quantize.calibration", std::string(calib::method_name(o.method)) + ", pairs of " + fs::path(o.calib_tsv).filename().string());
        w.set_string("cq.quantize.source_file", fs::path(input).filename().string());
    };
    model->save(output, save);
    for (const auto& e : fs::directory_iterator(input, ec))
        if (e.path().extension() == ".safetensors") r.file_bytes_in += fs::file_size(e.path(), ec);
    r.file_bytes_out = fs::file_size(output, ec);
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    return r;
}

}  // namespace cq
