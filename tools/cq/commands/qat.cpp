// `cq qat MODEL --type TYPE|PRESET --data FILE -o OUT`: quantization-aware training (cq::qat_lm for decoders,
// cq::qat_classifier for BERT classifiers) and the same-run report: float vs post-training quantization vs QAT.
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>

#include "commands/commands.h"
#include "commands/format.h"
#include "cq/classify.h"
#include "cq/encoder.h"
#include "cq/error.h"
#include "cq/eval.h"
#include "cq/mapped_file.h"
#include "cq/qat.h"
#include "cq/quantize.h"
#include "cq/quantize_encoder.h"

namespace cq::cli {

namespace {
struct Options {
    std::string model, type, data, output, init = "rtn", teacher = "fp", eval, save_ptq, act, weight_grad = "lsq", range, eval_range;
    std::vector<std::string> layer_rules, tensor_types;
    int64_t steps = 100, batch = -1, ctx = 128, eval_ctx = 128, eval_chunks = -1, max_len = 64, calib_samples = 256, seed = 1;
    float lr = -1, temperature = 1.0f;
    std::string loss;
    bool json = false;
};

DataSelection parse_range(const std::string& text, const std::string& option) {
    DataSelection s;
    if (text.empty()) return s;
    const auto colon = text.find(':');
    try {
        if (colon == std::string::npos) throw std::invalid_argument(text);
        s.first = std::stoll(text.substr(0, colon));
        const int64_t end = std::stoll(text.substr(colon + 1));
        if (s.first < 0 || end <= s.first) throw std::invalid_argument(text);
        s.count = end - s.first;
    } catch (const std::exception&) {
        throw InvalidArgument("[qat] " + option + " '" + text + "' is not FIRST:END with 0 ≤ FIRST < END");
    }
    return s;
}

// A temporary file path beside nothing the user owns; removed by the guard.
struct TempPath {
    std::string path;
    explicit TempPath(const std::string& name)
        : path((std::filesystem::temp_directory_path() / ("cq-qat-" + std::to_string(::getpid()) + "-" + name)).string()) {}
    ~TempPath() {
        std::error_code ec;
        std::filesystem::remove(path, ec);
    }
};

std::function<void(const FinetuneProgress&)> on_progress(Progress& progress) {
    return [&progress](const FinetuneProgress& p) {
        char detail[160];
        std::snprintf(detail, sizeof detail, "steps, loss %.4f, lr %.2e, %.0f tokens/s", p.loss, p.lr, p.tokens_per_s);
        progress.update(p.step, p.total_steps, detail);
    };
}

int run_decoder(const Options& o) {
    if (o.output.empty()) throw InvalidArgument("[qat] -o OUT.gguf is required for language models");
    QatLmOptions q;
    q.data = o.data, q.output = o.output, q.steps = o.steps, q.ctx = o.ctx, q.seed = static_cast<uint64_t>(o.seed);
    q.batch = o.batch > 0 ? o.batch : 8;
    q.schedule.lr = o.lr > 0 ? o.lr : 1e-4f;
    q.teacher = o.teacher == "fp";
    q.temperature = o.temperature;
    if (!o.loss.empty()) q.loss = parse_distill_loss(o.loss);
    // 1. post-training quantization: the starting point, and what the report compares with
    TempPath tmp("ptq.gguf");
    const std::string ptq_path = o.save_ptq.empty() ? tmp.path : o.save_ptq;
    QuantizeOptions qo;
    qo.type = o.type;
    qo.tensor_types = o.tensor_types;
    qo.method = parse_quant_method(o.init);
    if (*qo.method != QuantMethod::rtn) qo.calib.text_path = o.data;
    Progress progress("qat", !o.json);
    qo.stage_progress = [&](const std::string& stage, int64_t done, int64_t total) { progress.update(done, total, stage); };
    const QuantizeReport ptq_report = quantize_model(o.model, ptq_path, qo);
    // 2. training through the PTQ file's codecs
    LoadOptions train_lo;
    train_lo.pack_for_kernels = false, train_lo.n_ctx = 16;
    auto ptq = LanguageModel::load(ptq_path, train_lo);
    std::unique_ptr<LanguageModel> fp;
    if (q.teacher) {
        LoadOptions lo;
        lo.n_ctx = o.ctx;
        fp = LanguageModel::load(o.model, lo);
    }
    const QatReport r = qat_lm(*ptq, fp.get(), q, on_progress(progress));
    ptq.reset(), fp.reset();
    // 3. the same-run report
    nlohmann::json j{{"type", o.type}, {"init", o.init}, {"teacher", o.teacher}, {"steps", r.train.steps},
                     {"train_seconds", r.train.seconds}, {"tokens", r.train.tokens}, {"quantized_tensors", r.n_quantized},
                     {"loss_curve", r.train.loss_curve}, {"step_seconds", r.train.step_seconds}, {"output", r.output},
                     {"ptq_method", ptq_report.method}};
    std::vector<std::vector<std::string>> rows{{"model", "file bytes", "PPL", "KLD vs f32", "same top"}};
    if (!o.eval.empty()) {
        TempPath logits("f32.logits");
        PerplexityOptions po;
        po.n_ctx = o.eval_ctx, po.max_chunks = o.eval_chunks, po.save_logits = logits.path;
        const std::string text = read_text_file(o.eval, 1ull << 31);
        nlohmann::json ev = nlohmann::json::array();
        const auto measure = [&](const std::string& label, const std::string& path, bool base) {
            auto m = LanguageModel::load(path);
            PerplexityOptions p = po;
            if (!base) p.save_logits.clear(), p.kld_base = logits.path;
            progress.update(0, 1, "evaluating " + label);
            const PerplexityResult pr = evaluate_perplexity(*m, text, p);
            uint64_t bytes = 0;  // a file, or an HF directory's safetensors
            if (std::filesystem::is_directory(path)) {
                for (const auto& e : std::filesystem::directory_iterator(path))
                    if (e.path().extension() == ".safetensors") bytes += e.file_size();
            } else {
                bytes = std::filesystem::file_size(path);
            }
            char ppl[64], kld[64], top[32];
            std::snprintf(ppl, sizeof ppl, "%.4f ± %.4f", pr.ppl, pr.ppl_err);
            std::snprintf(kld, sizeof kld, "%s", pr.kld ? (std::to_string(pr.kld->mean).substr(0, 8) + " ± " + std::to_string(pr.kld->mean_err).substr(0, 8)).c_str() : "-");
            std::snprintf(top, sizeof top, "%s", pr.kld ? (std::to_string(100 * pr.kld->same_top).substr(0, 6) + " %").c_str() : "-");
            rows.push_back({label, group_digits(bytes), ppl, kld, top});
            nlohmann::json e{{"model", label}, {"path", path}, {"file_bytes", bytes}, {"ppl", pr.ppl}, {"ppl_err", pr.ppl_err}};
            if (pr.kld) e["kld"] = pr.kld->mean, e["kld_err"] = pr.kld->mean_err, e["same_top"] = pr.kld->same_top;
            ev.push_back(e);
        };
        measure("f32", o.model, true);
        measure("PTQ (" + o.init + ")", ptq_path, false);
        measure("QAT", o.output, false);
        j["eval"] = ev;
        j["eval_ctx"] = o.eval_ctx;
    }
    progress.finish();
    if (o.json) {
        print_json(j);
        return 0;
    }
    std::printf("%s → %s: %s from %s PTQ, %lld steps (%s teacher), %lld tensors trained through their codecs, %.1f s\n",
                o.model.c_str(), o.output.c_str(), o.type.c_str(), o.init.c_str(), static_cast<long long>(r.train.steps),
                o.teacher.c_str(), static_cast<long long>(r.n_quantized), r.train.seconds);
    const size_t n = r.train.loss_curve.size();
    if (n) std::printf("training loss %.4f → %.4f\n", r.train.loss_curve.front(), r.train.loss_curve.back());
    if (rows.size() > 1) print_table(rows, {false, true, true, true, true}, 2);
    return 0;
}

int run_encoder(const Options& o) {
    QatClassifierOptions q;
    q.data = o.data, q.eval_data = o.eval, q.output = o.output, q.steps = o.steps, q.max_len = o.max_len;
    q.calib_samples = o.calib_samples, q.seed = static_cast<uint64_t>(o.seed);
    q.batch = o.batch > 0 ? o.batch : 32;
    if (o.lr > 0) q.schedule.lr = o.lr;
    q.teacher = o.teacher == "fp";
    q.temperature = o.temperature;
    if (!o.loss.empty()) q.loss = parse_distill_loss(o.loss);
    q.data_selection = parse_range(o.range, "--range"), q.eval_selection = parse_range(o.eval_range, "--eval-range");
    std::string act = o.act;
    if (o.type == "w8a8-static" || o.type == "w8a8-dynamic") {
        q.weights = parse_weight_quant_spec("int8-channel-sym");
        if (act.empty()) act = o.type == "w8a8-static" ? "static" : "dynamic";
    } else {
        q.weights = parse_weight_quant_spec(o.type);
        if (q.weights.kind != WeightQuantSpec::Kind::integer)
            throw InvalidArgument("[qat] encoders take w8a8-static, w8a8-dynamic or an integer grid (int8, int4-g32 …), not '" + o.type + "'");
        if (act.empty()) act = "static";
    }
    q.activations = parse_act_quant_mode(act);
    q.weight_grad = o.weight_grad == "ste" ? WeightGrad::ste : WeightGrad::lsq;
    for (const std::string& r : o.layer_rules) q.rules.push_back(parse_w8a8_rule(r));
    auto model = EncoderModel::load(o.model);
    std::unique_ptr<EncoderModel> teacher;
    if (q.teacher) teacher = EncoderModel::load(o.model);
    Progress progress("qat", !o.json);
    const QatClassifierReport r = qat_classifier(*model, teacher.get(), q, on_progress(progress));
    nlohmann::json j{{"type", o.type}, {"weights", q.weights.text()}, {"activations", act_quant_mode_name(q.activations)},
                     {"weight_grad", o.weight_grad}, {"teacher", o.teacher}, {"steps", r.train.steps}, {"train_seconds", r.train.seconds},
                     {"quantized_linears", r.n_quantized}, {"loss_curve", r.train.loss_curve}};
    double exported_acc = -1;
    if (!r.output.empty()) {
        j["output"] = r.output;
        if (r.has_eval) {
            progress.update(0, 1, "evaluating the exported file");
            auto out = EncoderModel::load(r.output);
            const LabelledData d = load_labelled_data(o.eval, *out, q.eval_selection);
            ClassifyOptions co;
            co.batch = 64, co.max_len = o.max_len;
            exported_acc = classify_dataset(*out, *d.text, co).accuracy;
            j["accuracy_exported"] = exported_acc;
        }
    }
    progress.finish();
    if (r.has_eval) j["accuracy"] = {{"fp32", r.accuracy_fp}, {"ptq", r.accuracy_ptq}, {"qat", r.accuracy_qat}};
    if (o.json) {
        print_json(j);
        return 0;
    }
    std::printf("%s: %s weights (%s), %s activations, %lld Linears, %lld steps (%s teacher), %.1f s\n", o.model.c_str(),
                q.weights.text().c_str(), o.weight_grad.c_str(), act_quant_mode_name(q.activations).c_str(),
                static_cast<long long>(r.n_quantized), static_cast<long long>(r.train.steps), o.teacher.c_str(), r.train.seconds);
    if (r.has_eval) {
        std::vector<std::vector<std::string>> rows{{"model", "accuracy"}};
        const auto pct = [](double a) {
            char b[32];
            std::snprintf(b, sizeof b, "%.2f %%", 100 * a);
            return std::string(b);
        };
        rows.push_back({"fp32", pct(r.accuracy_fp)});
        rows.push_back({"PTQ (min/max ranges, round to nearest)", pct(r.accuracy_ptq)});
        rows.push_back({"QAT", pct(r.accuracy_qat)});
        if (exported_acc >= 0) rows.push_back({"QAT, exported W8A8 file (cq runtime)", pct(exported_acc)});
        print_table(rows, {false, true}, 2);
    }
    if (!r.output.empty()) std::printf("wrote %s\n", r.output.c_str());
    return 0;
}
}  // namespace

Runner register_qat(CLI::App& app) {
    auto o = std::make_shared<Options>();
    CLI::App* cmd = app.add_subcommand("qat", "Quantization-aware training: start from post-training quantization, train through "
                                              "fake quantization (optionally against the float model), export the real quantized file");
    cmd->add_option("model", o->model, "A .gguf file or an HF directory (decoder LLM), or an HF BERT classifier directory")->required();
    cmd->add_option("--type", o->type, "LLMs: a ggml type or preset (q4_0, q3_K, q4_k_m …: every Linear the rules quantize trains "
                                       "through that type's codec). Classifiers: w8a8-static, w8a8-dynamic, or a weight grid "
                                       "intB[-tensor|-channel|-gN][-sym|-asym] (with --act)")->required();
    cmd->add_option("--data", o->data, "Training data: a text file (LLMs) or a labelled TSV (classifiers); also the calibration "
                                       "text of --init imatrix|gptq|awq")->required();
    cmd->add_option("-o,--output", o->output, "LLMs: the GGUF to write (required); classifiers: cq's W8A8 container "
                                              "(int8-channel-sym weights with static or dynamic activations only)");
    cmd->add_option("--tensor-type", o->tensor_types, "LLMs: PATTERN=TYPE rules after --type's (later rules win), as cq quantize");
    cmd->add_option("--steps", o->steps, "Optimiser steps")->default_val(100)->check(CLI::Range(int64_t{1}, int64_t{1} << 40));
    cmd->add_option("--lr", o->lr, "Peak learning rate, AdamW, cosine (LLMs) / linear (classifiers) decay (default: 1e-4)");
    cmd->add_option("--batch", o->batch, "Windows (LLMs, default 8) or examples (classifiers, default 32) per step")->check(CLI::Range(1, 1 << 16));
    cmd->add_option("--ctx", o->ctx, "Tokens per training window (LLMs)")->default_val(128)->check(CLI::Range(2, 1 << 20));
    cmd->add_option("--init", o->init, "LLMs: the post-training method QAT starts from: rtn, imatrix, gptq, awq, awq+gptq "
                                       "(calibrated on --data), or auto (GPTQ or AWQ+GPTQ, whichever has the lower held-out KLD)")->default_val("rtn")
        ->check(CLI::IsMember({"rtn", "imatrix", "gptq", "awq", "awq+gptq", "auto"}));
    cmd->add_option("--teacher", o->teacher, "fp: KL to the float model's logits (quantization-aware distillation); none: "
                                             "cross-entropy on the data")->default_val("fp")->check(CLI::IsMember({"fp", "none"}));
    cmd->add_option("--loss", o->loss, "With --teacher fp: loss weights kl=W,ce=W (default: LLMs kl=1; classifiers kl=1,ce=0.5)");
    cmd->add_option("--temperature", o->temperature, "Softening temperature of the teacher KL")->default_val(1.0f);
    cmd->add_option("--save-ptq", o->save_ptq, "LLMs: keep the post-training-quantized starting file here (default: a temporary file)");
    cmd->add_option("--eval", o->eval, "Same-run report: LLMs PPL / KLD vs f32 of f32, PTQ and QAT on this text; classifiers "
                                       "accuracy on this labelled file");
    cmd->add_option("--eval-ctx", o->eval_ctx, "LLMs: context of the evaluation chunks")->default_val(128);
    cmd->add_option("--eval-chunks", o->eval_chunks, "LLMs: evaluate at most N chunks (-1: all)")->default_val(-1);
    cmd->add_option("--act", o->act, "Classifiers: activation fake quantization: none, static (learned ranges, LSQ+), static-ema, "
                                     "dynamic (per token) (default: from --type; static for weight grids)");
    cmd->add_option("--weight-grad", o->weight_grad, "Classifiers: lsq (learned step sizes) or ste (round-to-nearest grid, straight "
                                                     "through)")->default_val("lsq")->check(CLI::IsMember({"lsq", "ste"}));
    cmd->add_option("--layer", o->layer_rules, "Classifiers: PATTERN=int8|float rules over Linear names after the W8A8 defaults "
                                               "(every Linear in the encoder blocks)");
    cmd->add_option("--max-len", o->max_len, "Classifiers: tokens per example")->default_val(64);
    cmd->add_option("--calib-samples", o->calib_samples, "Classifiers: training examples whose min / max start the static ranges")->default_val(256);
    cmd->add_option("--range", o->range, "Classifiers: train on samples FIRST:END of --data");
    cmd->add_option("--eval-range", o->eval_range, "Classifiers: evaluate samples FIRST:END of --eval");
    cmd->add_option("--seed", o->seed, "Data order and dropout")->default_val(1);
    cmd->add_flag("--json", o->json, "Print a JSON report instead of text (default: off)");
    return [o]() -> int {
        if (Model::load(o->model)->kind() == ModelKind::decoder) return run_decoder(*o);
        return run_encoder(*o);
    };
}

}  // namespace cq::cli
