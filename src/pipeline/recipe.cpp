// CompressionConfig from a recipe: YAML through yaml-cpp (JSON recipes are YAML too, so both get line numbers). Every
// key is checked against the stage's known keys, every value against its range, before anything runs: the first
// problem is one InvalidArgument naming the file, the line and the key.
#include <filesystem>
#include <set>

#include <yaml-cpp/yaml.h>

#include "core/sha256.h"
#include "cq/error.h"
#include "cq/calibration.h"
#include "cq/mapped_file.h"
#include "cq/onnx.h"
#include "cq/pipeline.h"
#include "cq/quantize_encoder.h"

namespace cq {

namespace fs = std::filesystem;

std::string stage_kind_name(StageKind k) {
    switch (k) {
        case StageKind::prune: return "prune";
        case StageKind::distill: return "distill";
        case StageKind::quantize: return "quantize";
        case StageKind::qat: return "qat";
        case StageKind::export_model: return "export";
    }
    return "?";
}

namespace {

struct Ctx {
    std::string file;
    fs::path base;  // relative paths start here
    std::map<std::string, int64_t>* lines = nullptr;  // every given key's line
    [[noreturn]] void fail(const YAML::Node& at, const std::string& key, const std::string& why) const {
        const int64_t line = at.Mark().line >= 0 ? at.Mark().line + 1 : 0;
        throw InvalidArgument("[compress] recipe " + file + ":" + std::to_string(line) + ": key '" + key + "': " + why);
    }
    std::string path(const std::string& p) const { return p.empty() || fs::path(p).is_absolute() ? p : (base / p).lexically_normal().string(); }
};

template <typename T>
T scalar(const Ctx& c, const YAML::Node& n, const std::string& key, const char* what) {
    if (!n.IsScalar()) c.fail(n, key, std::string("must be ") + what);
    try {
        return n.as<T>();
    } catch (const YAML::Exception&) {
        c.fail(n, key, "'" + n.Scalar() + "' is not " + what);
    }
}

void check_keys(const Ctx& c, const YAML::Node& map, const std::string& where, const std::set<std::string>& known) {
    if (!map.IsMap()) c.fail(map, where, "must be a mapping of options");
    for (const auto& kv : map) {
        const std::string k = kv.first.Scalar();
        if (!known.count(k)) {
            std::string list;
            for (const auto& s : known) list += (list.empty() ? "" : ", ") + s;
            c.fail(kv.first, where + "." + k, "unknown option (known: " + list + ")");
        }
        if (c.lines) (*c.lines)[where + "." + k] = kv.first.Mark().line + 1;
    }
}

StageConfig parse_stage(const Ctx& c, const YAML::Node& item, size_t index) {
    const std::string where = "stages[" + std::to_string(index) + "]";
    if (!item.IsMap() || item.size() != 1) c.fail(item, where, "each stage is one mapping 'KIND: {options}' (prune, distill, quantize, qat, export)");
    const auto kv = *item.begin();
    const std::string kind = kv.first.Scalar();
    const YAML::Node opts = kv.second.IsNull() ? YAML::Node(YAML::NodeType::Map) : kv.second;
    StageConfig s;
    s.line = kv.first.Mark().line + 1;
    const std::string w = where + "." + kind;
    if (kind == "prune") {
        s.kind = StageKind::prune;
        check_keys(c, opts, w, {"method", "sparsity", "pattern", "structured", "scope"});
        if (opts["method"]) s.prune.method = scalar<std::string>(c, opts["method"], w + ".method", "a method name");
        if (opts["sparsity"]) s.prune.sparsity = scalar<double>(c, opts["sparsity"], w + ".sparsity", "a number");
        if (opts["pattern"]) s.prune.pattern = scalar<std::string>(c, opts["pattern"], w + ".pattern", "N:M");
        if (opts["structured"]) s.prune.structured = scalar<std::string>(c, opts["structured"], w + ".structured", "heads=F,ffn=F,layers=N");
        if (opts["scope"]) s.prune.scope = scalar<std::string>(c, opts["scope"], w + ".scope", "layer, row or global");
        const int forms = (s.prune.sparsity != 0) + !s.prune.pattern.empty() + !s.prune.structured.empty();
        if (forms != 1) c.fail(opts, w, "give exactly one of sparsity, pattern, structured");
        try {
            if (!s.prune.structured.empty()) (void)StructuredTarget::parse(s.prune.structured, "structured");
            else {
                (void)parse_prune_method(s.prune.method);
                (void)parse_prune_scope(s.prune.scope);
                SparsityTarget t;
                if (!s.prune.pattern.empty()) t = SparsityTarget::parse_pattern(s.prune.pattern, "pattern");
                else t.sparsity = s.prune.sparsity;
                t.validate("prune");
            }
        } catch (const Error& e) {
            c.fail(opts, w, e.what());
        }
    } else if (kind == "distill") {
        s.kind = StageKind::distill;
        check_keys(c, opts, w, {"steps", "lr", "batch", "ctx", "temperature"});
        if (opts["steps"]) s.distill.steps = scalar<int64_t>(c, opts["steps"], w + ".steps", "a whole number");
        if (opts["lr"]) s.distill.lr = scalar<float>(c, opts["lr"], w + ".lr", "a number");
        if (opts["batch"]) s.distill.batch = scalar<int64_t>(c, opts["batch"], w + ".batch", "a whole number");
        if (opts["ctx"]) s.distill.ctx = scalar<int64_t>(c, opts["ctx"], w + ".ctx", "a whole number");
        if (opts["temperature"]) s.distill.temperature = scalar<float>(c, opts["temperature"], w + ".temperature", "a number");
        if (s.distill.steps <= 0) c.fail(opts["steps"] ? opts["steps"] : opts, w + ".steps", "must be > 0");
        if (!(s.distill.lr > 0)) c.fail(opts["lr"], w + ".lr", "must be > 0");
        if (s.distill.batch <= 0 || s.distill.ctx < 2) c.fail(opts, w, "batch must be > 0 and ctx ≥ 2");
        if (!(s.distill.temperature > 0)) c.fail(opts["temperature"], w + ".temperature", "must be > 0");
    } else if (kind == "quantize") {
        s.kind = StageKind::quantize;
        check_keys(c, opts, w, {"type", "method", "tensor_types", "keep_zeros", "calib_method", "percentile", "embeddings", "calib_samples", "act_bits", "attention"});
        if (opts["type"]) s.quantize.type = scalar<std::string>(c, opts["type"], w + ".type", "a type or preset");
        if (opts["method"]) s.quantize.method = scalar<std::string>(c, opts["method"], w + ".method", "a method name");
        if (opts["keep_zeros"]) s.quantize.keep_zeros = scalar<bool>(c, opts["keep_zeros"], w + ".keep_zeros", "true or false");
        if (const YAML::Node tt = opts["tensor_types"]) {
            if (!tt.IsSequence()) c.fail(tt, w + ".tensor_types", "must be a list of PATTERN=TYPE");
            for (const auto& r : tt) {
                const std::string rule = scalar<std::string>(c, r, w + ".tensor_types", "PATTERN=TYPE");
                try {
                    (void)parse_tensor_type_rule(rule);
                } catch (const Error& e) {
                    c.fail(r, w + ".tensor_types", e.what());
                }
                s.quantize.tensor_types.push_back(rule);
            }
        }
        if (opts["calib_method"]) {
            s.w8a8.calib_method = scalar<std::string>(c, opts["calib_method"], w + ".calib_method", "minmax, percentile, mse or entropy");
            if (!calib::parse_method(s.w8a8.calib_method)) c.fail(opts["calib_method"], w + ".calib_method", "'" + s.w8a8.calib_method + "' is not one of minmax, percentile, mse, entropy");
        }
        if (opts["percentile"]) s.w8a8.percentile = scalar<double>(c, opts["percentile"], w + ".percentile", "a number");
        if (!(s.w8a8.percentile >= 50 && s.w8a8.percentile <= 100)) c.fail(opts["percentile"], w + ".percentile", "must be in [50, 100]");
        if (opts["embeddings"]) {
            s.w8a8.embeddings = scalar<std::string>(c, opts["embeddings"], w + ".embeddings", "a type");
            const std::set<std::string> ok{"q8_0", "q5_0", "q4_0", "f16", "bf16", "f32"};
            if (!ok.count(s.w8a8.embeddings)) c.fail(opts["embeddings"], w + ".embeddings", "'" + s.w8a8.embeddings + "' is not one of q8_0, q5_0, q4_0, f16, bf16, f32");
        }
        if (opts["calib_samples"]) s.w8a8.calib_samples = scalar<int64_t>(c, opts["calib_samples"], w + ".calib_samples", "a whole number");
        if (s.w8a8.calib_samples < 1) c.fail(opts["calib_samples"], w + ".calib_samples", "must be ≥ 1");
        if (opts["act_bits"]) {
            const std::string b = scalar<std::string>(c, opts["act_bits"], w + ".act_bits", "auto, 7 or 8");
            if (b != "auto" && b != "7" && b != "8") c.fail(opts["act_bits"], w + ".act_bits", "must be auto, 7 or 8");
            s.w8a8.act_bits = b == "auto" ? 0 : std::stoi(b);
        }
        if (opts["attention"]) {
            s.w8a8.attention = scalar<std::string>(c, opts["attention"], w + ".attention", "f32 or int8");
            if (s.w8a8.attention != "f32" && s.w8a8.attention != "int8") c.fail(opts["attention"], w + ".attention", "must be f32 or int8");
        }
        if (!find_preset(s.quantize.type) && !is_w8a8_type(s.quantize.type)) c.fail(opts["type"] ? opts["type"] : opts, w + ".type", "unknown type or preset '" + s.quantize.type + "'");
        if (!s.quantize.method.empty()) try {
                (void)parse_quant_method(s.quantize.method);
            } catch (const Error& e) {
                c.fail(opts["method"], w + ".method", e.what());
            }
    } else if (kind == "qat") {
        s.kind = StageKind::qat;
    } else if (kind == "export") {
        s.kind = StageKind::export_model;
        check_keys(c, opts, w, {"format", "onnx_format"});
        if (opts["format"]) s.export_format = scalar<std::string>(c, opts["format"], w + ".format", "gguf, hf or onnx");
        if (s.export_format != "gguf" && s.export_format != "hf" && s.export_format != "onnx")
            c.fail(opts["format"], w + ".format", "the pipeline writes gguf (decoders and encoders' W8A8 container), hf or onnx (encoders)");
        if (opts["onnx_format"]) {
            s.onnx_format = scalar<std::string>(c, opts["onnx_format"], w + ".onnx_format", "fp32, dynamic, qdq or trt-qdq");
            try {
                (void)onnx_format_from_name(s.onnx_format);
            } catch (const Error& e) {
                c.fail(opts["onnx_format"], w + ".onnx_format", e.what());
            }
        }
    } else {
        c.fail(kv.first, where, "unknown stage '" + kind + "' (prune, distill, quantize, qat, export)");
    }
    return s;
}

}  // namespace

CompressionConfig CompressionConfig::parse(const std::string& text, const std::string& path) {
    CompressionConfig cfg;
    Ctx c;
    c.file = path;
    c.base = fs::path(path).parent_path();
    c.lines = &cfg.key_lines;
    YAML::Node root;
    try {
        root = YAML::Load(text);
    } catch (const YAML::ParserException& e) {
        throw InvalidArgument("[compress] recipe " + path + ":" + std::to_string(e.mark.line + 1) + ": not valid YAML/JSON: " + e.msg);
    }
    if (!root.IsMap()) throw InvalidArgument("[compress] recipe " + path + ":1: the recipe must be a mapping with 'stages'");
    check_keys(c, root, "recipe", {"calibration", "evaluation", "stages"});
    cfg.calib.n_ctx = 128;
    if (const YAML::Node n = root["calibration"]) {
        check_keys(c, n, "calibration", {"text", "ctx", "chunks", "data", "samples", "max_len"});
        if (n["data"]) cfg.calib_data = c.path(scalar<std::string>(c, n["data"], "calibration.data", "a path"));
        if (n["samples"]) cfg.calib_samples = scalar<int64_t>(c, n["samples"], "calibration.samples", "a whole number");
        if (n["max_len"]) cfg.max_len = scalar<int64_t>(c, n["max_len"], "calibration.max_len", "a whole number");
        if (cfg.calib_samples < 1) c.fail(n["samples"], "calibration.samples", "must be ≥ 1");
        if (cfg.max_len < 3) c.fail(n["max_len"], "calibration.max_len", "must be ≥ 3");
        if (!cfg.calib_data.empty() && !fs::exists(cfg.calib_data)) c.fail(n["data"], "calibration.data", "no such file or folder '" + cfg.calib_data + "'");
        if (n["text"]) cfg.calib.text_path = c.path(scalar<std::string>(c, n["text"], "calibration.text", "a path"));
        if (n["ctx"]) cfg.calib.n_ctx = scalar<int64_t>(c, n["ctx"], "calibration.ctx", "a whole number");
        if (n["chunks"]) cfg.calib.max_chunks = scalar<int64_t>(c, n["chunks"], "calibration.chunks", "a whole number");
        if (cfg.calib.n_ctx < 2) c.fail(n["ctx"], "calibration.ctx", "must be ≥ 2");
        if (!cfg.calib.text_path.empty() && !fs::is_regular_file(cfg.calib.text_path))
            c.fail(n["text"], "calibration.text", "no such file '" + cfg.calib.text_path + "'");
    }
    if (const YAML::Node n = root["evaluation"]) {
        check_keys(c, n, "evaluation", {"text", "ctx", "chunks", "bench", "bench_prompt", "bench_gen", "bench_reps", "data", "samples", "max_len",
                                        "bench_batch", "bench_seq"});
        if (n["data"]) cfg.eval_data = c.path(scalar<std::string>(c, n["data"], "evaluation.data", "a path"));
        if (n["samples"]) cfg.eval_samples = scalar<int64_t>(c, n["samples"], "evaluation.samples", "a whole number");
        if (n["max_len"]) cfg.eval_max_len = scalar<int64_t>(c, n["max_len"], "evaluation.max_len", "a whole number");
        if (n["bench_batch"]) cfg.bench_batch = scalar<int64_t>(c, n["bench_batch"], "evaluation.bench_batch", "a whole number");
        if (n["bench_seq"]) cfg.bench_seq = scalar<int64_t>(c, n["bench_seq"], "evaluation.bench_seq", "a whole number");
        if (cfg.eval_samples == 0 || cfg.eval_samples < -1) c.fail(n["samples"], "evaluation.samples", "must be ≥ 1 (or −1: all)");
        if (cfg.eval_max_len < 3) c.fail(n["max_len"], "evaluation.max_len", "must be ≥ 3");
        if (cfg.bench_batch < 1 || cfg.bench_seq < 2) c.fail(n, "evaluation", "bench_batch must be ≥ 1 and bench_seq ≥ 2");
        if (!cfg.eval_data.empty() && !fs::exists(cfg.eval_data)) c.fail(n["data"], "evaluation.data", "no such file or folder '" + cfg.eval_data + "'");
        if (n["text"]) cfg.eval_text = c.path(scalar<std::string>(c, n["text"], "evaluation.text", "a path"));
        if (n["ctx"]) cfg.eval_ctx = scalar<int64_t>(c, n["ctx"], "evaluation.ctx", "a whole number");
        if (n["chunks"]) cfg.eval_chunks = scalar<int64_t>(c, n["chunks"], "evaluation.chunks", "a whole number");
        if (n["bench"]) cfg.bench = scalar<bool>(c, n["bench"], "evaluation.bench", "true or false");
        if (n["bench_prompt"]) cfg.bench_options.n_prompt = scalar<int64_t>(c, n["bench_prompt"], "evaluation.bench_prompt", "a whole number");
        if (n["bench_gen"]) cfg.bench_options.n_gen = scalar<int64_t>(c, n["bench_gen"], "evaluation.bench_gen", "a whole number");
        if (n["bench_reps"]) cfg.bench_options.repetitions = scalar<int64_t>(c, n["bench_reps"], "evaluation.bench_reps", "a whole number");
        if (!cfg.eval_text.empty() && !fs::is_regular_file(cfg.eval_text)) c.fail(n["text"], "evaluation.text", "no such file '" + cfg.eval_text + "'");
        if (cfg.eval_ctx < 2) c.fail(n["ctx"], "evaluation.ctx", "must be ≥ 2");
    }
    const YAML::Node stages = root["stages"];
    if (!stages || !stages.IsSequence() || stages.size() == 0) c.fail(stages ? stages : root, "stages", "must be a non-empty list of stages");
    for (size_t i = 0; i < stages.size(); ++i) cfg.stages.push_back(parse_stage(c, stages[i], i));
    for (const auto& s : cfg.stages) {
        const bool needs_calib = s.kind == StageKind::distill || (s.kind == StageKind::prune && (!s.prune.structured.empty() || s.prune.method != "magnitude")) ||
                                 (s.kind == StageKind::quantize && !s.quantize.method.empty() && s.quantize.method != "rtn");
        if (needs_calib && cfg.calib.text_path.empty() && cfg.calib_data.empty())
            throw InvalidArgument("[compress] recipe " + path + ":" + std::to_string(s.line) + ": key 'calibration.text': stage '" +
                                  stage_kind_name(s.kind) + "' needs calibration text (calibration.data for an encoder classifier)");
    }
    cfg.recipe_path = path;
    cfg.recipe_text = text;
    Sha256 h;
    h.update(text.data(), text.size());
    cfg.recipe_sha256 = h.hex();
    return cfg;
}

CompressionConfig CompressionConfig::from_file(const std::string& path) {
    if (!fs::is_regular_file(path)) throw IoError("[compress] cannot read the recipe '" + path + "'");
    return parse(read_text_file(path, 1 << 22), path);
}

}  // namespace cq
