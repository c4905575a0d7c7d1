// `cq distill --teacher T --student S|--student-from-teacher SPEC --data FILE -o OUT`: knowledge distillation
// (cq::distill_lm / cq::distill_classifier) and the same-run report: teacher vs student size, speed and quality.
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "commands/commands.h"
#include "commands/format.h"
#include "cq/classify.h"
#include "cq/distill.h"
#include "cq/encoder.h"
#include "cq/error.h"
#include "cq/eval.h"
#include "cq/mapped_file.h"

namespace cq::cli {

namespace {
struct Options {
    std::string teacher, student, from_teacher, student_dir, output, data, eval, loss = "kl=1,ce=0.5", range, eval_range, layer_map;
    float temperature = 2.0f, lr = -1, dropout = 0.1f;
    int64_t steps = 0, batch = -1, ctx = 128, max_len = 64, seed = 1, eval_ctx = 128, eval_chunks = -1;
    double epochs = 1.0;
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
        throw InvalidArgument("[distill] " + option + " '" + text + "' is not FIRST:END with 0 ≤ FIRST < END");
    }
    return s;
}

int64_t config_layers(const std::string& dir) {
    const auto j = nlohmann::json::parse(read_text_file((std::filesystem::path(dir) / "config.json").string(), 1 << 24));
    for (const char* k : {"num_hidden_layers", "n_layer"})
        if (j.contains(k) && j[k].is_number_integer()) return j[k].get<int64_t>();
    throw FormatError("json", dir + "/config.json", 0, "no num_hidden_layers / n_layer");
}
}  // namespace

Runner register_distill(CLI::App& app) {
    auto o = std::make_shared<Options>();
    CLI::App* cmd = app.add_subcommand("distill", "Knowledge distillation: train a student (LLM or BERT classifier) on a teacher's "
                                                  "softened outputs plus the data's labels; teacher and student may differ in shape");
    cmd->add_option("--teacher", o->teacher, "The teacher: an HF directory (or a .gguf for LLMs)")->required();
    cmd->add_option("--student", o->student, "The student: an HF directory (or a .gguf for LLMs) with the teacher's vocabulary / labels "
                                             "(default: none; give this or --student-from-teacher)");
    cmd->add_option("--student-from-teacher", o->from_teacher, "Build the student from the teacher's own blocks (HF teacher): "
                                                               "layers=I,J,… or depth=F (evenly spaced, the first kept; default: none)");
    cmd->add_option("--student-dir", o->student_dir, "With --student-from-teacher: write the initial student here (default: a "
                                                     "temporary directory)");
    cmd->add_option("-o,--output", o->output, "The trained student: an HF directory, or for LLMs a .gguf")->required();
    cmd->add_option("--data", o->data, "Training data: a text file (LLMs) or a labelled TSV (classifiers)")->required();
    cmd->add_option("--eval", o->eval, "Held-out data for the report: LLMs perplexity (text), classifiers accuracy (labelled file) "
                                       "(default: none, no evaluation)");
    cmd->add_option("--loss", o->loss, "Loss weights NAME=W,…: kl (T²·KL of softened logits), ce (labels / next tokens), hidden (MSE "
                                       "of mapped block outputs), cos (1 − cosine of mapped block outputs); hidden / cos are averaged "
                                       "over the --layer-map pairs, through a learned projection where widths differ")
        ->default_val("kl=1,ce=0.5");
    cmd->add_option("--layer-map", o->layer_map, "With hidden / cos: student:teacher block pairs, e.g. 0:1,1:3 (default: each block "
                                                 "of a --student-from-teacher student → the block it was copied from, else block i → "
                                                 "round((i+1)·Lt/Ls) − 1)");
    cmd->add_option("--temperature", o->temperature, "Softening temperature T")->default_val(2.0f);
    cmd->add_option("--steps", o->steps, "Optimiser steps (0: from --epochs)")->default_val(0);
    cmd->add_option("--epochs", o->epochs, "Passes over the data when --steps is 0")->default_val(1.0);
    cmd->add_option("--lr", o->lr, "Peak learning rate, AdamW with warmup (5 %) and cosine decay (default: 1e-3)");
    cmd->add_option("--batch", o->batch, "Windows (LLMs, default 8) or examples (classifiers, default 32) per step");
    cmd->add_option("--ctx", o->ctx, "LLMs: tokens per training window")->default_val(128);
    cmd->add_option("--max-len", o->max_len, "Classifiers: tokens per example")->default_val(64);
    cmd->add_option("--dropout", o->dropout, "Classifiers: the student's dropout")->default_val(0.1f);
    cmd->add_option("--range", o->range, "Classifiers: train on samples FIRST:END of --data (default: all)");
    cmd->add_option("--eval-range", o->eval_range, "Classifiers: evaluate samples FIRST:END of --eval (default: all)");
    cmd->add_option("--eval-ctx", o->eval_ctx, "LLMs: context of the perplexity chunks")->default_val(128);
    cmd->add_option("--eval-chunks", o->eval_chunks, "LLMs: at most N perplexity chunks (-1: all)")->default_val(-1);
    cmd->add_option("--seed", o->seed, "Data order, dropout and the projections' initialisation (0: file order)")->default_val(1);
    cmd->add_flag("--json", o->json, "Print a JSON report instead of text (default: off)");
    return [o]() -> int {
        if (o->student.empty() == o->from_teacher.empty())
            throw InvalidArgument("[distill] give exactly one of --student and --student-from-teacher");
        const DistillLoss loss = parse_distill_loss(o->loss);  // before anything is written
        if (!o->layer_map.empty() && !loss.has_hidden()) throw InvalidArgument("[distill] --layer-map needs a hidden or cos term in --loss");
        namespace fs = std::filesystem;
        std::string student_path = o->student;
        fs::path tmp_dir;
        std::vector<int64_t> copied_from;
        if (!o->from_teacher.empty()) {
            const StudentSpec spec = parse_student_spec(o->from_teacher, config_layers(o->teacher));
            copied_from = spec.layers;
            if (loss.has_hidden() && !o->layer_map.empty())  // bad maps are errors before anything is written
                parse_layer_map(o->layer_map, static_cast<int64_t>(spec.layers.size()), config_layers(o->teacher));
            if (o->student_dir.empty()) tmp_dir = fs::temp_directory_path() / ("cq-distill-" + std::to_string(::getpid()));
            student_path = o->student_dir.empty() ? tmp_dir.string() : o->student_dir;
            write_student_from_teacher(o->teacher, spec, student_path);
        }
        struct Cleanup {
            fs::path p;
            ~Cleanup() {
                std::error_code ec;
                if (!p.empty()) fs::remove_all(p, ec);
            }
        } cleanup{tmp_dir};
        DistillOptions d;
        d.data = o->data, d.eval_data = o->eval, d.output = o->output, d.loss = loss, d.temperature = o->temperature;
        d.steps = o->steps, d.epochs = o->epochs, d.ctx = o->ctx, d.max_len = o->max_len, d.dropout = o->dropout;
        d.seed = static_cast<uint64_t>(o->seed);
        d.layer_map = o->layer_map, d.student_copied_from = copied_from;
        if (o->lr > 0) d.schedule.lr = o->lr;
        d.data_selection = parse_range(o->range, "--range"), d.eval_selection = parse_range(o->eval_range, "--eval-range");
        Progress progress("distill", !o->json);
        const auto on_progress = [&progress](const FinetuneProgress& p) {
            char detail[160];
            std::snprintf(detail, sizeof detail, "steps, loss %.4f, lr %.2e", p.loss, p.lr);
            progress.update(p.step, p.total_steps, detail);
        };
        nlohmann::json j;
        std::vector<std::vector<std::string>> rows;
        const bool decoder = Model::load(o->teacher)->kind() == ModelKind::decoder;
        DistillReport r;
        if (decoder) {
            d.batch = o->batch > 0 ? o->batch : 8;
            d.eval_data.clear();  // the report measures perplexity below, llama.cpp's way
            LoadOptions lo;
            lo.n_ctx = std::max<int64_t>(o->ctx, 16);
            auto teacher = LanguageModel::load(o->teacher, lo);
            LoadOptions slo;
            slo.n_ctx = 16, slo.pack_for_kernels = false;
            auto student = LanguageModel::load(student_path, slo);
            r = distill_lm(*teacher, *student, d, on_progress);
            if (!o->eval.empty()) {
                const std::string text = read_text_file(o->eval, 1ull << 31);
                rows = {{"model", "parameters", "PPL", "eval seconds"}};
                nlohmann::json ev = nlohmann::json::array();
                for (const auto& [label, path] : {std::pair{std::string("teacher"), o->teacher}, std::pair{std::string("student"), o->output}}) {
                    progress.update(0, 1, "evaluating the " + label);
                    auto m = LanguageModel::load(path);
                    PerplexityOptions po;
                    po.n_ctx = o->eval_ctx, po.max_chunks = o->eval_chunks;
                    const PerplexityResult pr = evaluate_perplexity(*m, text, po);
                    char ppl[64], sec[32];
                    std::snprintf(ppl, sizeof ppl, "%.4f ± %.4f", pr.ppl, pr.ppl_err);
                    std::snprintf(sec, sizeof sec, "%.2f", pr.seconds);
                    const uint64_t params = label == "teacher" ? r.teacher_params : r.student_params;
                    rows.push_back({label, group_digits(params), ppl, sec});
                    ev.push_back({{"model", label}, {"params", params}, {"ppl", pr.ppl}, {"ppl_err", pr.ppl_err}, {"seconds", pr.seconds}});
                }
                j["eval"] = ev;
            }
        } else {
            d.batch = o->batch > 0 ? o->batch : 32;
            auto teacher = EncoderModel::load(o->teacher);
            auto student = EncoderModel::load(student_path);
            r = distill_classifier(*teacher, *student, d, on_progress);
            if (!o->eval.empty()) {
                // accuracy and latency through the runtime, the written student against the teacher
                rows = {{"model", "parameters", "accuracy", "eval seconds"}};
                nlohmann::json ev = nlohmann::json::array();
                for (const auto& [label, path] : {std::pair{std::string("teacher"), o->teacher}, std::pair{std::string("student"), o->output}}) {
                    auto m = EncoderModel::load(path);
                    const LabelledData data = load_labelled_data(o->eval, *m, d.eval_selection);
                    ClassifyOptions co;
                    co.batch = 64, co.max_len = o->max_len;
                    const ClassificationResult cr = classify_dataset(*m, *data.text, co);
                    char acc[32], sec[32];
                    std::snprintf(acc, sizeof acc, "%.2f %%", 100 * cr.accuracy);
                    std::snprintf(sec, sizeof sec, "%.3f", cr.seconds);
                    const uint64_t params = label == "teacher" ? r.teacher_params : r.student_params;
                    rows.push_back({label, group_digits(params), acc, sec});
                    ev.push_back({{"model", label}, {"params", params}, {"accuracy", cr.accuracy}, {"seconds", cr.seconds}});
                }
                j["eval"] = ev;
            }
        }
        progress.finish();
        j["steps"] = r.train.steps, j["train_seconds"] = r.train.seconds, j["loss_curve"] = r.train.loss_curve, j["output"] = o->output;
        j["loss"] = d.loss.text(), j["temperature"] = d.temperature, j["teacher_params"] = r.teacher_params, j["student_params"] = r.student_params;
        if (o->json) {
            print_json(j);
            return 0;
        }
        std::printf("%s → %s (%s, T = %g): %lld steps in %.1f s, loss %.4f → %.4f\n", o->teacher.c_str(), o->output.c_str(),
                    d.loss.text().c_str(), d.temperature, static_cast<long long>(r.train.steps), r.train.seconds,
                    r.train.loss_curve.empty() ? 0.0 : r.train.loss_curve.front(), r.train.loss_curve.empty() ? 0.0 : r.train.loss_curve.back());
        if (!rows.empty()) print_table(rows, {false, true, true, true}, 2);
        return 0;
    };
}

}  // namespace cq::cli
