// CompressionPipeline::run: the recipe's stages in order, each writing its model under stages/NN-kind/, measured
// against the original in the same run (compare_models; encoder classifiers: compare_encoders), then checkpointed
// (state.json, atomic) so --resume restarts at the first unfinished stage. The recipe is checked against the model's
// kind before anything is written. ModelQuantizer and the reports live here too.
#include <chrono>
#include <cmath>
#include <filesystem>
#include <sstream>

#include <nlohmann/json.hpp>

#include "core/sha256.h"
#include "cq/atomic_file.h"
#include "cq/classify.h"
#include "cq/compare.h"
#include "cq/error.h"
#include "cq/mapped_file.h"
#include "cq/onnx.h"
#include "cq/pipeline.h"
#include "cq/prune_encoder.h"
#include "cq/quantize_encoder.h"

namespace cq {

namespace fs = std::filesystem;

QuantizeReport ModelQuantizer::quantize(const std::string& input, const std::string& output, const CalibrationOptions& calib) const {
    QuantizeOptions q;
    q.type = config_.type;
    q.tensor_types = config_.tensor_types;
    q.keep_zeros = config_.keep_zeros;
    if (!config_.method.empty()) q.method = parse_quant_method(config_.method);
    // Calibration text only where the method calibrates: with none named, rtn stays rtn.
    if (!config_.method.empty() && config_.method != "rtn") q.calib = calib;
    return quantize_model(input, output, q);
}

namespace {

uint64_t path_bytes(const fs::path& p) {
    std::error_code ec;
    if (fs::is_regular_file(p, ec)) return fs::file_size(p, ec);
    uint64_t n = 0;
    if (fs::is_directory(p, ec))
        for (const auto& e : fs::recursive_directory_iterator(p, ec))
            if (e.is_regular_file(ec)) n += e.file_size(ec);
    return n;
}

void write_text(const fs::path& p, const std::string& text) {
    AtomicFile f(p.string());
    f.write(text.data(), text.size());
    f.commit();
}

nlohmann::json result_json(const StageResult& r) {
    return {{"name", r.name}, {"model", r.model}, {"bytes", r.bytes}, {"ppl", r.ppl}, {"ppl_err", r.ppl_err}, {"kld", r.kld},
            {"same_top", r.same_top}, {"prompt_tps", r.prompt_tps}, {"gen_tps", r.gen_tps}, {"base_prompt_tps", r.base_prompt_tps},
            {"base_gen_tps", r.base_gen_tps}, {"seconds", r.seconds}, {"resumed", r.resumed}, {"notes", r.notes},
            {"accuracy", r.accuracy}, {"agreement", r.agreement}, {"mean_kld", r.mean_kld}, {"latency_ms", r.latency_ms},
            {"base_latency_ms", r.base_latency_ms}, {"eval_samples", r.eval_samples}};
}

StageResult result_from_json(const nlohmann::json& j) {
    StageResult r;
    r.name = j.at("name"), r.model = j.at("model"), r.bytes = j.at("bytes"), r.ppl = j.at("ppl"), r.ppl_err = j.at("ppl_err");
    r.kld = j.at("kld"), r.same_top = j.at("same_top"), r.prompt_tps = j.at("prompt_tps"), r.gen_tps = j.at("gen_tps");
    r.base_prompt_tps = j.at("base_prompt_tps"), r.base_gen_tps = j.at("base_gen_tps"), r.seconds = j.at("seconds");
    r.notes = j.at("notes").get<std::vector<std::string>>();
    r.accuracy = j.value("accuracy", -1.0), r.agreement = j.value("agreement", -1.0), r.mean_kld = j.value("mean_kld", -1.0);
    r.latency_ms = j.value("latency_ms", 0.0), r.base_latency_ms = j.value("base_latency_ms", 0.0), r.eval_samples = j.value("eval_samples", int64_t{0});
    r.resumed = true;
    return r;
}

// The stage model against the original: PPL / KLD on the evaluation text and both speeds, in one run.
void measure(const CompressionConfig& c, const std::string& original, StageResult& r, StageResult* base_out) {
    r.bytes = path_bytes(r.model);
    if (c.eval_text.empty()) return;
    CompareOptions co;
    co.n_ctx = c.eval_ctx;
    co.max_chunks = c.eval_chunks;
    co.bench = c.bench;
    co.bench_options = c.bench_options;
    const ComparisonReport cr = compare_models(original, r.model, read_text_file(c.eval_text, uint64_t{1} << 31), co);
    r.ppl = cr.candidate.perplexity.ppl, r.ppl_err = cr.candidate.perplexity.ppl_err;
    if (cr.candidate.perplexity.kld) r.kld = cr.candidate.perplexity.kld->mean, r.same_top = cr.candidate.perplexity.kld->same_top;
    auto speeds = [](const ModelMeasurement& m, double& pp, double& tg) {
        if (!m.bench) return;
        for (const auto& s : m.bench->series) (s.test.rfind("pp", 0) == 0 ? pp : tg) = s.median;
    };
    speeds(cr.candidate, r.prompt_tps, r.gen_tps);
    speeds(cr.base, r.base_prompt_tps, r.base_gen_tps);
    if (base_out && base_out->ppl == 0) {
        base_out->ppl = cr.base.perplexity.ppl, base_out->ppl_err = cr.base.perplexity.ppl_err;
        base_out->prompt_tps = r.base_prompt_tps, base_out->gen_tps = r.base_gen_tps;
    }
}

// An encoder stage against the original: accuracy and agreement on the evaluation data, batch latency of both, in one run.
void measure_encoder(const CompressionConfig& c, const std::string& original, StageResult& r, StageResult* base_out) {
    r.bytes = path_bytes(r.model);
    if (c.eval_data.empty()) return;
    if (fs::path(r.model).extension() == ".onnx") {
        r.notes.push_back("ONNX graph: bytes only (cq does not run text encoders from ONNX; its source model is the previous row)");
        return;
    }
    auto base = EncoderModel::load(original);
    auto cand = EncoderModel::load(r.model);
    EncoderCompareOptions co;
    co.run.max_len = c.eval_max_len;
    co.selection.count = c.eval_samples;
    co.bench = c.bench;
    co.bench_batch = c.bench_batch, co.bench_seq = c.bench_seq, co.bench_repetitions = c.bench_options.repetitions;
    const EncoderComparisonReport cr = compare_encoders(*base, *cand, c.eval_data, co);
    r.accuracy = cr.candidate.accuracy, r.eval_samples = cr.candidate.samples;
    r.agreement = cr.agreement.agreement, r.mean_kld = cr.agreement.mean_kld;
    if (cr.candidate_speed) r.latency_ms = cr.candidate_speed->median_ms;
    if (cr.base_speed) r.base_latency_ms = cr.base_speed->median_ms;
    if (base_out && base_out->accuracy < 0) {
        base_out->accuracy = cr.base.accuracy, base_out->eval_samples = cr.base.samples;
        base_out->latency_ms = r.base_latency_ms;
    }
}

[[noreturn]] void recipe_fail(const CompressionConfig& c, const std::string& key, int64_t line, const std::string& why) {
    const auto it = c.key_lines.find(key);
    if (it != c.key_lines.end()) line = it->second;
    throw InvalidArgument("[compress] recipe " + c.recipe_path + ":" + std::to_string(line) + ": key '" + key + "': " + why);
}

// Every key the recipe gave is checked against the model's kind (encoder classifier or decoder LLM) before anything runs.
void check_recipe_for(const CompressionConfig& c, const std::string& model, bool encoder) {
    const std::string kind = encoder ? "an encoder classifier" : "a decoder LLM";
    auto given = [&](const std::string& key) { return c.key_lines.count(key) != 0; };
    const std::vector<std::string> decoder_keys{"calibration.text", "calibration.ctx", "calibration.chunks", "evaluation.text", "evaluation.ctx",
                                                "evaluation.chunks", "evaluation.bench_prompt", "evaluation.bench_gen"};
    const std::vector<std::string> encoder_keys{"calibration.data", "calibration.samples", "calibration.max_len", "evaluation.data",
                                                "evaluation.samples", "evaluation.max_len", "evaluation.bench_batch", "evaluation.bench_seq"};
    for (const auto& k : encoder ? decoder_keys : encoder_keys)
        if (given(k))
            recipe_fail(c, k, 1, std::string("applies to ") + (encoder ? "decoder LLMs" : "encoder classifiers") + "; '" + model + "' is " + kind +
                                     (encoder ? " (it takes calibration.data / evaluation.data: labelled TSV or images, and samples / max_len)"
                                              : " (it takes calibration.text / evaluation.text with ctx / chunks)"));
    bool quantized = false;
    for (size_t i = 0; i < c.stages.size(); ++i) {
        const StageConfig& s = c.stages[i];
        const std::string w = "stages[" + std::to_string(i) + "]." + stage_kind_name(s.kind);
        auto refuse = [&](const std::vector<std::string>& keys, const std::string& why) {
            for (const auto& k : keys)
                if (given(w + "." + k)) recipe_fail(c, w + "." + k, s.line, why);
        };
        auto needs_data = [&](const std::string& what) {
            if (c.calib_data.empty()) recipe_fail(c, "calibration.data", s.line, "stage '" + w + "' " + what + ": give calibration.data (labelled TSV / images)");
        };
        if (encoder) {
            switch (s.kind) {
                case StageKind::prune:
                    refuse({"method", "sparsity", "pattern", "scope"},
                           "unstructured pruning (method / sparsity / pattern / scope) is done for decoder LLMs only; an encoder classifier takes "
                           "structured: \"heads=F,ffn=F\"");
                    if (StructuredTarget::parse(s.prune.structured, "[compress]").layers > 0)
                        recipe_fail(c, w + ".structured", s.line, "removing whole blocks (layers=N) is done for decoders only; encoders take heads=F,ffn=F");
                    if (quantized) recipe_fail(c, w, s.line, "structured pruning reads an HF directory: it comes before the quantize stage");
                    needs_data("measures importance on calibration activations");
                    break;
                case StageKind::distill:
                    refuse({"ctx"}, "applies to decoder LLMs; an encoder's tokens per sample are calibration.max_len");
                    if (quantized) recipe_fail(c, w, s.line, "distillation trains an HF directory: it comes before the quantize stage");
                    needs_data("distils on labelled data (labels unused)");
                    break;
                case StageKind::quantize:
                    if (!is_w8a8_type(s.quantize.type))
                        recipe_fail(c, w + ".type", s.line, "'" + s.quantize.type + "' is a decoder type; an encoder classifier is quantized as w8a8-static or w8a8-dynamic");
                    refuse({"method", "tensor_types", "keep_zeros"}, "applies to decoder LLMs; W8A8 takes calib_method, percentile, embeddings, calib_samples, act_bits, attention");
                    if (quantized) recipe_fail(c, w, s.line, "the model is already W8A8");
                    if (s.quantize.type == "w8a8-static") needs_data("calibrates activation ranges");
                    quantized = true;
                    break;
                case StageKind::export_model:
                    if (s.export_format == "gguf" && !quantized)
                        recipe_fail(c, w + ".format", s.line, "an encoder's GGUF is the W8A8 container: put a quantize stage first, or export format hf / onnx");
                    if (s.export_format == "hf" && quantized)
                        recipe_fail(c, w + ".format", s.line, "after W8A8 the model is a GGUF container, not an HF directory: export format gguf or onnx");
                    break;
                case StageKind::qat: break;
            }
        } else {
            if (s.kind == StageKind::quantize) {
                if (is_w8a8_type(s.quantize.type))
                    recipe_fail(c, w + ".type", s.line, s.quantize.type + " is for encoder classifiers; '" + model + "' is a decoder LLM");
                refuse({"calib_method", "percentile", "embeddings", "calib_samples", "act_bits", "attention"}, "applies to W8A8 of encoder classifiers; '" + model + "' is a decoder LLM");
            }
            if (s.kind == StageKind::export_model) {
                if (s.export_format != "gguf") recipe_fail(c, w + ".format", s.line, "a decoder LLM is exported as gguf by the pipeline (cq export writes ONNX)");
                refuse({"onnx_format"}, "applies to export format onnx (encoder classifiers)");
            }
            const bool needs_calib = s.kind == StageKind::distill || (s.kind == StageKind::prune && (!s.prune.structured.empty() || s.prune.method != "magnitude")) ||
                                     (s.kind == StageKind::quantize && !s.quantize.method.empty() && s.quantize.method != "rtn");
            if (needs_calib && c.calib.text_path.empty())
                recipe_fail(c, "calibration.text", s.line, "stage '" + stage_kind_name(s.kind) + "' needs calibration text");
        }
    }
}

std::string fmt(const char* f, double v) {
    char b[64];
    std::snprintf(b, sizeof b, f, v);
    return b;
}

// One encoder stage: structured prune / distill write an HF directory (stages/N/model), quantize the W8A8 container
// (model.gguf), export copies it (gguf, hf) or writes ONNX. r.model is set to the output.
void run_encoder_stage(const CompressionConfig& c, const StageConfig& s, const std::string& original, const std::string& cur, const fs::path& dir,
                       StageResult& r) {
    const std::string where = r.name + " (recipe line " + std::to_string(s.line) + ")";
    auto need_dir = [&](const char* what) {
        if (!fs::is_directory(cur)) throw Unsupported("[compress] stage " + where + ": " + what + " reads an HF directory; '" + cur + "' is not one");
    };
    switch (s.kind) {
        case StageKind::prune: {
            need_dir("structured pruning");
            EncoderPruneOptions eo;
            eo.target = StructuredTarget::parse(s.prune.structured, "[compress]");
            eo.calib_data = c.calib_data;
            eo.calib_samples = c.calib_samples;
            eo.run.max_len = c.max_len;
            r.model = (dir / "model").string();
            const EncoderPruneReport pr = prune_encoder_structured(cur, r.model, eo);
            r.notes.push_back("heads per block " + std::to_string(pr.n_head_in) + "→" + std::to_string(pr.n_head_out) + ", FFN " + std::to_string(pr.n_ff_in) +
                              "→" + std::to_string(pr.n_ff_out) + ", parameters " + std::to_string(pr.params_in) + "→" + std::to_string(pr.params_out) +
                              " (importance on " + std::to_string(pr.calib_samples) + " samples)");
            break;
        }
        case StageKind::distill: {
            need_dir("distillation");
            DistillOptions d;
            d.data = c.calib_data;
            d.steps = s.distill.steps;
            d.batch = s.distill.batch;
            d.max_len = c.max_len;
            d.temperature = s.distill.temperature;
            d.schedule.lr = s.distill.lr;
            r.model = (dir / "model").string();
            const RecoveryReport rr = recover_encoder_by_distillation(original, cur, r.model, d);
            r.notes.push_back("distilled from the original: " + std::to_string(rr.steps) + " steps, loss " + fmt("%.4f", rr.loss_first) + " → " +
                              fmt("%.4f", rr.loss_last));
            break;
        }
        case StageKind::quantize: {
            need_dir("W8A8 quantization");
            EncoderQuantizeOptions q;
            const bool stat = s.quantize.type == "w8a8-static";
            q.activations = stat ? ActivationQuant::static_per_tensor : ActivationQuant::dynamic_per_token;
            q.method = *calib::parse_method(s.w8a8.calib_method);
            q.percentile = s.w8a8.percentile;
            q.embedding_type = *dtype_from_name(s.w8a8.embeddings);
            q.activation_bits = s.w8a8.act_bits;
            q.attention = *attention_precision_from_name(s.w8a8.attention);
            if (stat) q.calib_data = c.calib_data;
            q.calib_samples = s.w8a8.calib_samples;
            q.run.max_len = c.max_len;
            r.model = (dir / "model.gguf").string();
            const EncoderQuantizeReport qr = quantize_encoder(cur, r.model, q);
            int64_t int8 = 0;
            for (const auto& p : qr.linears) int8 += p.int8;
            r.notes.push_back(qr.type + ": " + std::to_string(int8) + " of " + std::to_string(qr.linears.size()) + " Linears int8" +
                              (stat ? ", activations by " + qr.method + " on " + std::to_string(qr.calib_samples) + " samples" : "") + ", " +
                              std::to_string(qr.activation_bits) + "-bit activations, " + qr.attention + " attention, word embeddings " + qr.embeddings);
            break;
        }
        case StageKind::export_model: {
            std::error_code ec;
            if (s.export_format == "onnx") {
                OnnxExportOptions eo;
                eo.format = onnx_format_from_name(s.onnx_format);
                r.model = (dir / "model.onnx").string();
                const OnnxExportReport er = export_onnx(*Model::load(cur), r.model, eo);
                r.notes.push_back("ONNX (" + std::string(onnx_format_name(er.format)) + ", opset " + std::to_string(er.opset) + ")");
            } else if (s.export_format == "hf") {
                need_dir("export format hf");
                r.model = (dir / "model").string();
                fs::copy(cur, r.model, fs::copy_options::recursive, ec);
                if (ec) throw IoError("[compress] cannot copy '" + cur + "' to '" + r.model + "': " + ec.message());
                r.notes.push_back("HF directory");
            } else {
                if (fs::is_directory(cur)) throw Unsupported("[compress] stage " + where + ": an encoder's GGUF is the W8A8 container; quantize first");
                r.model = (dir / "model.gguf").string();
                fs::copy_file(cur, r.model, fs::copy_options::overwrite_existing, ec);
                if (ec) throw IoError("[compress] cannot copy '" + cur + "' to '" + r.model + "': " + ec.message());
                r.notes.push_back("GGUF (W8A8 container)");
            }
            break;
        }
        case StageKind::qat: break;  // refused before the run
    }
}

}  // namespace

std::string CompressionReport::markdown() const {
    std::ostringstream o;
    o << "# cq compress: " << input << "\n\n";
    o << "Recipe sha256 `" << recipe_sha256 << "`";
    if (!calib_sha256.empty()) o << ", calibration sha256 `" << calib_sha256 << "`";
    o << ". Final model: `" << final_model << "`.\n\n";
    if (encoder) {
        o << "| stage | size (bytes) | × original | accuracy | Δ pt | agreement | mean KLD | latency ms (× faster than original) | stage s | |\n";
        o << "|---|---|---|---|---|---|---|---|---|---|\n";
        auto erow = [&](const StageResult& r) {
            o << "| " << r.name << " | " << r.bytes << " | " << fmt("%.3f", original.bytes ? double(r.bytes) / double(original.bytes) : 0) << " | ";
            o << (r.accuracy >= 0 ? fmt("%.2f%%", 100 * r.accuracy) : "—") << " | "
              << (r.accuracy >= 0 && original.accuracy >= 0 && &r != &original ? fmt("%+.2f", 100 * (r.accuracy - original.accuracy)) : "—") << " | ";
            o << (r.agreement >= 0 ? fmt("%.2f%%", 100 * r.agreement) : "—") << " | " << (r.mean_kld >= 0 ? fmt("%.5f", r.mean_kld) : "—") << " | ";
            o << (r.latency_ms > 0 ? fmt("%.2f", r.latency_ms) + (r.base_latency_ms > 0 && &r != &original ? " (" + fmt("%.2f", r.base_latency_ms / r.latency_ms) + ")" : "") : "—")
              << " | " << fmt("%.1f", r.seconds) << " | " << (r.resumed ? "resumed" : "") << " |\n";
        };
        erow(original);
        for (const auto& s : stages) erow(s);
        o << "\nAccuracy and agreement (same argmax as the original) on " << original.eval_samples
          << " evaluation samples; each latency is measured beside the original's in the same run, and the ratio is to that run's original.\n";
        for (const auto& s : stages)
            for (const auto& n : s.notes) o << "- " << s.name << ": " << n << "\n";
        return o.str();
    }
    o << "| stage | size (bytes) | × original | PPL | × original | KLD | same top | prompt t/s (× original) | gen t/s (× original) | stage s | |\n";
    o << "|---|---|---|---|---|---|---|---|---|---|---|\n";
    auto row = [&](const StageResult& r) {
        o << "| " << r.name << " | " << r.bytes << " | " << fmt("%.3f", original.bytes ? double(r.bytes) / double(original.bytes) : 0) << " | ";
        o << (r.ppl > 0 ? fmt("%.4f", r.ppl) + " ± " + fmt("%.4f", r.ppl_err) : "—") << " | "
          << (r.ppl > 0 && original.ppl > 0 ? fmt("%.4f", r.ppl / original.ppl) : "—") << " | ";
        o << (r.kld >= 0 ? fmt("%.5f", r.kld) : "—") << " | " << (r.same_top >= 0 ? fmt("%.2f%%", 100 * r.same_top) : "—") << " | ";
        o << (r.prompt_tps > 0 ? fmt("%.1f", r.prompt_tps) + (r.base_prompt_tps > 0 ? " (" + fmt("%.2f", r.prompt_tps / r.base_prompt_tps) + ")" : "") : "—") << " | ";
        o << (r.gen_tps > 0 ? fmt("%.1f", r.gen_tps) + (r.base_gen_tps > 0 ? " (" + fmt("%.2f", r.gen_tps / r.base_gen_tps) + ")" : "") : "—") << " | ";
        o << fmt("%.1f", r.seconds) << " | " << (r.resumed ? "resumed" : "") << " |\n";
    };
    row(original);
    for (const auto& s : stages) row(s);
    o << "\nSpeeds of each row are measured beside the original's in the same run; the ratio is to that run's original.\n";
    for (const auto& s : stages)
        for (const auto& n : s.notes) o << "- " << s.name << ": " << n << "\n";
    return o.str();
}

std::string CompressionReport::json() const {
    nlohmann::json j{{"input", input}, {"output_dir", output_dir}, {"final_model", final_model}, {"encoder", encoder}, {"recipe_sha256", recipe_sha256},
                     {"calib_sha256", calib_sha256}, {"original", result_json(original)}};
    nlohmann::json st = nlohmann::json::array();
    for (const auto& s : stages) st.push_back(result_json(s));
    j["stages"] = st;
    return j.dump(2);
}

CompressionReport CompressionPipeline::run(const std::string& model, const std::string& output_dir, bool resume,
                                           const std::function<void(const std::string&, int64_t, int64_t)>& progress) {
    const CompressionConfig& c = config_;
    if (c.stages.empty()) throw InvalidArgument("[compress] the recipe has no stages");
    if (output_dir.empty()) throw InvalidArgument("[compress] no output directory (-o OUT)");
    std::error_code ec;
    if (!fs::exists(model, ec)) throw IoError("[compress] the model '" + model + "' does not exist");
    // Stages without an engine in the pipeline fail here, before anything is written: never a silent skip.
    for (const auto& s : c.stages)
        if (s.kind == StageKind::qat)
            throw Unsupported("[compress] recipe " + c.recipe_path + ":" + std::to_string(s.line) +
                              ": stage 'qat' is not available in the pipeline yet (QAT runs as `cq qat`; the pipeline does not drive it)");
    const bool encoder = is_encoder_model(model);
    check_recipe_for(c, model, encoder);
    for (const auto& s : c.stages)
        if (s.kind == StageKind::prune && !s.prune.structured.empty() && !fs::is_directory(model) && &s == &c.stages.front())
            throw Unsupported("[compress] recipe " + c.recipe_path + ":" + std::to_string(s.line) +
                              ": structured pruning reads an HF directory; '" + model + "' is not one");
    const fs::path out(output_dir), state_path = out / "state.json";
    const std::string calib_file = encoder ? c.calib_data : c.calib.text_path;
    const std::string calib_sha = calib_file.empty() || !fs::is_regular_file(calib_file) ? "" : sha256_file(calib_file);

    CompressionReport rep;
    rep.encoder = encoder;
    rep.input = model, rep.output_dir = output_dir, rep.recipe_sha256 = c.recipe_sha256, rep.calib_sha256 = calib_sha;
    rep.original.name = "original", rep.original.model = model, rep.original.bytes = path_bytes(model);
    if (resume) {
        if (!fs::exists(state_path)) throw InvalidArgument("[compress] --resume: '" + output_dir + "' holds no pipeline run (no state.json)");
        nlohmann::json st;
        try {
            st = nlohmann::json::parse(read_text_file(state_path.string(), 1 << 24));
            if (st.at("recipe_sha256") != c.recipe_sha256)
                throw InvalidArgument("[compress] --resume: '" + output_dir + "' was run with another recipe (sha256 " + st.at("recipe_sha256").get<std::string>() + ")");
            if (st.at("input") != model) throw InvalidArgument("[compress] --resume: '" + output_dir + "' was run on '" + st.at("input").get<std::string>() + "'");
            rep.original = result_from_json(st.at("original"));
            for (const auto& s : st.at("finished")) rep.stages.push_back(result_from_json(s));
        } catch (const nlohmann::json::exception& e) {
            throw FormatError("json", state_path.string(), 0, e.what());
        }
        if (rep.stages.size() > c.stages.size()) throw FormatError("json", state_path.string(), 0, "more finished stages than the recipe has");
    } else {
        if (fs::exists(state_path)) throw InvalidArgument("[compress] '" + output_dir + "' already holds a pipeline run: --resume to continue it, or another -o");
        fs::create_directories(out / "stages", ec);
        if (ec) throw IoError("[compress] cannot create '" + output_dir + "': " + ec.message());
        nlohmann::json prov{{"input", model}, {"recipe_file", c.recipe_path}, {"recipe", c.recipe_text}, {"recipe_sha256", c.recipe_sha256},
                            {"calibration_file", calib_file}, {"calibration_sha256", calib_sha}, {"evaluation_file", encoder ? c.eval_data : c.eval_text},
                            {"cq_version", CQ_VERSION}};
        write_text(out / "provenance.json", prov.dump(2) + "\n");
    }
    auto save_state = [&] {
        nlohmann::json st{{"recipe_sha256", c.recipe_sha256}, {"input", model}, {"original", result_json(rep.original)}};
        nlohmann::json fin = nlohmann::json::array();
        for (const auto& s : rep.stages) fin.push_back(result_json(s));
        st["finished"] = fin;
        write_text(state_path, st.dump(2) + "\n");
    };

    std::string cur = rep.stages.empty() ? model : rep.stages.back().model;
    for (size_t i = rep.stages.size(); i < c.stages.size(); ++i) {
        const StageConfig& s = c.stages[i];
        const std::string name = std::to_string(i + 1) + "-" + stage_kind_name(s.kind);
        if (progress) progress(name, static_cast<int64_t>(i), static_cast<int64_t>(c.stages.size()));
        const fs::path dir = out / "stages" / name;
        fs::remove_all(dir, ec);  // a stage a killed run left unfinished starts over
        fs::create_directories(dir, ec);
        if (ec) throw IoError("[compress] cannot create '" + dir.string() + "': " + ec.message());
        StageResult r;
        r.name = name;
        r.model = (dir / "model.gguf").string();
        const auto t0 = std::chrono::steady_clock::now();
        if (encoder) {
            run_encoder_stage(c, s, model, cur, dir, r);
            r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
            if (progress) progress(name + ": measure", static_cast<int64_t>(i), static_cast<int64_t>(c.stages.size()));
            measure_encoder(c, model, r, &rep.original);
            rep.stages.push_back(r);
            cur = r.model;
            save_state();
            continue;
        }
        switch (s.kind) {
            case StageKind::prune:
                if (!s.prune.structured.empty()) {
                    if (!fs::is_directory(cur))
                        throw Unsupported("[compress] stage " + name + " (recipe line " + std::to_string(s.line) + "): structured pruning reads an HF directory; '" + cur + "' is not one");
                    StructuredOptions so;
                    so.target = StructuredTarget::parse(s.prune.structured, "[compress]");
                    so.calib = c.calib;
                    const StructuredFileReport pr = prune_structured_file(cur, r.model, (dir / "hf").string(), so);
                    r.notes.push_back("heads " + std::to_string(pr.prune.n_head_in) + "→" + std::to_string(pr.prune.n_head_out) + ", KV heads " +
                                      std::to_string(pr.prune.n_head_kv_in) + "→" + std::to_string(pr.prune.n_head_kv_out) + ", FFN " +
                                      std::to_string(pr.prune.n_ff_in) + "→" + std::to_string(pr.prune.n_ff_out) + ", blocks " +
                                      std::to_string(pr.prune.n_layer_in) + "→" + std::to_string(pr.prune.n_layer_out));
                } else {
                    PruneOptions po;
                    po.method = parse_prune_method(s.prune.method);
                    po.scope = parse_prune_scope(s.prune.scope);
                    if (!s.prune.pattern.empty()) po.target = SparsityTarget::parse_pattern(s.prune.pattern, "[compress]");
                    else po.target.sparsity = s.prune.sparsity;
                    if (po.method != PruneMethod::magnitude) po.calib = c.calib;
                    const PruneReport pr = prune_model_file(cur, r.model, po);
                    r.notes.push_back(pr.method + " " + pr.target + ": " + std::to_string(pr.zeros) + " of " + std::to_string(pr.pruned_params) + " weights zero");
                }
                break;
            case StageKind::distill: {
                RecoveryOptions ro;
                ro.steps = s.distill.steps;
                ro.distill.data = c.calib.text_path;
                ro.distill.batch = s.distill.batch;
                ro.distill.ctx = s.distill.ctx;
                ro.distill.temperature = s.distill.temperature;
                ro.distill.schedule.lr = s.distill.lr;
                const RecoveryReport rr = recover_by_distillation(model, cur, r.model, ro);
                r.notes.push_back("distilled from the original: " + std::to_string(rr.steps) + " steps, loss " + fmt("%.4f", rr.loss_first) + " → " + fmt("%.4f", rr.loss_last));
                break;
            }
            case StageKind::quantize: {
                const QuantizeReport qr = ModelQuantizer(s.quantize).quantize(cur, r.model, c.calib);
                r.notes.push_back(qr.type + " (" + qr.method + "), " + fmt("%.3f", qr.bpw_out) + " bpw" + (qr.fallbacks ? ", " + std::to_string(qr.fallbacks) + " type fallbacks" : ""));
                break;
            }
            case StageKind::export_model: {
                QuantizeOptions q;  // f32 keeps every tensor's type as it is for a GGUF; converts an HF directory
                q.type = "f32";
                if (fs::is_directory(cur)) quantize_model(cur, r.model, q);
                else fs::copy_file(cur, r.model, fs::copy_options::overwrite_existing);
                r.notes.push_back("GGUF");
                break;
            }
            case StageKind::qat: break;  // refused above
        }
        r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        if (progress) progress(name + ": measure", static_cast<int64_t>(i), static_cast<int64_t>(c.stages.size()));
        measure(c, model, r, &rep.original);
        rep.stages.push_back(r);
        cur = r.model;
        save_state();
    }
    if (progress) progress("done", static_cast<int64_t>(c.stages.size()), static_cast<int64_t>(c.stages.size()));
    // The final model beside the reports: model.gguf (model.onnx), or model/ for an HF directory.
    const bool final_dir = fs::is_directory(cur);
    const fs::path final_path = out / (final_dir ? std::string("model") : "model" + (fs::path(cur).extension() == ".onnx" ? std::string(".onnx") : std::string(".gguf")));
    {
        const fs::path tmp = final_path.string() + ".tmp";
        fs::remove_all(tmp, ec);
        if (final_dir) fs::copy(cur, tmp, fs::copy_options::recursive, ec);
        else fs::copy_file(cur, tmp, fs::copy_options::overwrite_existing, ec);
        if (!ec && final_dir) fs::remove_all(final_path, ec);
        if (ec) throw IoError("[compress] cannot copy the final model to '" + final_path.string() + "': " + ec.message());
        fs::rename(tmp, final_path, ec);
        if (ec) throw IoError("[compress] cannot write '" + final_path.string() + "': " + ec.message());
    }
    rep.final_model = final_path.string();
    write_text(out / "report.md", rep.markdown());
    write_text(out / "report.json", rep.json() + "\n");
    return rep;
}

}  // namespace cq
