// CompressionPipeline::run: the recipe's stages in order, each writing its model under stages/NN-kind/, measured
// against the original in the same run (compare_models), then checkpointed (state.json, atomic) so --resume restarts
// at the first unfinished stage. ModelQuantizer and the reports live here too.
#include <chrono>
#include <cmath>
#include <filesystem>
#include <sstream>

#include <nlohmann/json.hpp>

#include "core/sha256.h"
#include "cq/atomic_file.h"
#include "cq/compare.h"
#include "cq/error.h"
#include "cq/mapped_file.h"
#include "cq/pipeline.h"

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
            {"base_gen_tps", r.base_gen_tps}, {"seconds", r.seconds}, {"resumed", r.resumed}, {"notes", r.notes}};
}

StageResult result_from_json(const nlohmann::json& j) {
    StageResult r;
    r.name = j.at("name"), r.model = j.at("model"), r.bytes = j.at("bytes"), r.ppl = j.at("ppl"), r.ppl_err = j.at("ppl_err");
    r.kld = j.at("kld"), r.same_top = j.at("same_top"), r.prompt_tps = j.at("prompt_tps"), r.gen_tps = j.at("gen_tps");
    r.base_prompt_tps = j.at("base_prompt_tps"), r.base_gen_tps = j.at("base_gen_tps"), r.seconds = j.at("seconds");
    r.notes = j.at("notes").get<std::vector<std::string>>();
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

std::string fmt(const char* f, double v) {
    char b[64];
    std::snprintf(b, sizeof b, f, v);
    return b;
}

}  // namespace

std::string CompressionReport::markdown() const {
    std::ostringstream o;
    o << "# cq compress: " << input << "\n\n";
    o << "Recipe sha256 `" << recipe_sha256 << "`";
    if (!calib_sha256.empty()) o << ", calibration sha256 `" << calib_sha256 << "`";
    o << ". Final model: `" << final_model << "`.\n\n";
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
    nlohmann::json j{{"input", input}, {"output_dir", output_dir}, {"final_model", final_model}, {"recipe_sha256", recipe_sha256},
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
    for (const auto& s : c.stages)
        if (s.kind == StageKind::prune && !s.prune.structured.empty() && !fs::is_directory(model) && &s == &c.stages.front())
            throw Unsupported("[compress] recipe " + c.recipe_path + ":" + std::to_string(s.line) +
                              ": structured pruning reads an HF directory; '" + model + "' is not one");
    const fs::path out(output_dir), state_path = out / "state.json";
    const std::string calib_sha = c.calib.text_path.empty() ? "" : sha256_file(c.calib.text_path);

    CompressionReport rep;
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
                            {"calibration_file", c.calib.text_path}, {"calibration_sha256", calib_sha}, {"cq_version", CQ_VERSION}};
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
    // The final model beside the reports.
    const fs::path final_path = out / "model.gguf";
    {
        const fs::path tmp = out / "model.gguf.tmp";
        fs::copy_file(cur, tmp, fs::copy_options::overwrite_existing, ec);
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
