// render_html_report: reads cq's JSON reports (quantize, quantize w8a8, compress, eval, bench, bench --memory) into
// runs of measured artifacts and writes one self-contained HTML page; every number on it is an input's, unrounded
// in the SVG's data attributes so a test can check the chart against the files.
#include "cq/report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <map>
#include <numeric>
#include <sstream>

#include "core/json_file.h"
#include "cq/atomic_file.h"
#include "cq/error.h"
#include "cq/mapped_file.h"

namespace cq {

namespace {

using nlohmann::json;

// A JSON value with the key path that reached it, so every error names the file and the key.
class Node {
public:
    Node(const json& j, std::string path, const std::string& file) : j_(&j), path_(std::move(path)), file_(&file) {}
    bool has(const std::string& key) const { return j_->is_object() && j_->contains(key) && !(*j_)[key].is_null(); }
    Node operator[](const std::string& key) const {
        if (!j_->is_object()) fail("is " + type() + ", expected an object");
        const auto it = j_->find(key);
        if (it == j_->end()) throw FormatError("report", *file_, 0, "key '" + join(key) + "' is missing");
        return Node(*it, join(key), *file_);
    }
    double num() const {
        if (!j_->is_number()) fail("is " + type() + ", expected a number");
        return j_->get<double>();
    }
    std::string str() const {
        if (!j_->is_string()) fail("is " + type() + ", expected a string");
        return j_->get<std::string>();
    }
    bool boolean() const {
        if (!j_->is_boolean()) fail("is " + type() + ", expected true or false");
        return j_->get<bool>();
    }
    std::vector<Node> items() const {
        if (!j_->is_array()) fail("is " + type() + ", expected an array");
        std::vector<Node> out;
        for (size_t i = 0; i < j_->size(); ++i) out.emplace_back((*j_)[i], path_ + "[" + std::to_string(i) + "]", *file_);
        return out;
    }
    std::vector<std::pair<std::string, Node>> entries() const {
        if (!j_->is_object()) fail("is " + type() + ", expected an object");
        std::vector<std::pair<std::string, Node>> out;
        for (auto it = j_->begin(); it != j_->end(); ++it) out.emplace_back(it.key(), Node(it.value(), join(it.key()), *file_));
        return out;
    }
    double num_or(const std::string& key, double fallback) const { return has(key) ? (*this)[key].num() : fallback; }
    std::string str_or(const std::string& key, const std::string& fallback) const { return has(key) ? (*this)[key].str() : fallback; }

private:
    const json* j_;
    std::string path_;
    const std::string* file_;
    std::string join(const std::string& key) const { return path_.empty() ? key : path_ + "." + key; }
    std::string type() const { return std::string(j_->type_name()); }
    [[noreturn]] void fail(const std::string& why) const {
        throw FormatError("report", *file_, 0, "key '" + (path_.empty() ? std::string("(document)") : path_) + "' " + why);
    }
};

// One measured artifact (a model file) of a run. −1: not measured.
struct Point {
    std::string run, label, model;
    bool original = false;
    double size = -1, bpw = -1;  // bytes on disk, bits per weight
    double ppl = -1, ppl_err = -1, kld = -1, same_top = -1, accuracy = -1;
    double prompt_tps = -1, gen_tps = -1, latency_ms = -1;
};

struct TensorRow {
    std::string name, shape, from, type, rule, fallback, probe_type;
    double bytes_in = 0, bytes_out = 0, probe_dkld = -1, chosen_dkld = -1;
};

struct SpeedRow {
    std::string model, test;
    double tps = 0, lo = 0, hi = 0;
};

struct MemoryRun {
    std::vector<std::pair<std::string, double>> analytic;  // component → bytes
    double analytic_total = 0, baseline = 0, peak = 0, final_rss = 0, final_anon = 0, final_file = 0;
    double weight_bytes = 0, weights_resident = -1;  // −1: a report from before the split by mapping
    bool peak_reset = false;
    struct Phase {
        std::string name;
        double before = 0, after = 0, peak = 0, analytic = 0, seconds = 0;
        double model_file = -1, libraries = -1, anonymous = -1;  // RSS by mapping after the phase (−1: not in the report)
        double allocator_free = -1;                              // freed bytes the allocator kept
    };
    std::vector<Phase> phases;
};

struct Run {
    std::string file, kind, title;
    std::vector<Point> points;
    std::vector<TensorRow> tensors;
    std::vector<SpeedRow> speed;
    std::optional<MemoryRun> memory;
    std::vector<std::string> notes;
};

std::string base_name(const std::string& path) {
    std::string p = path;
    while (p.size() > 1 && p.back() == '/') p.pop_back();
    const size_t s = p.find_last_of('/');
    return s == std::string::npos ? p : p.substr(s + 1);
}

// Bench series → prompt (pp…) / generation (tg…) medians.
void read_bench_results(const Node& bench, Point& p) {
    for (const Node& s : bench["results"].items()) {
        const std::string test = s["test"].str();
        if (test.rfind("pp", 0) == 0) p.prompt_tps = s["median"].num();
        if (test.rfind("tg", 0) == 0) p.gen_tps = s["median"].num();
    }
}

void read_perplexity(const Node& m, Point& p) {
    const Node ppl = m["perplexity"];
    p.ppl = ppl["ppl"].num();
    p.ppl_err = ppl.num_or("ppl_err", -1);
    if (ppl.has("kld")) {
        p.kld = ppl["kld"]["mean"].num();
        p.same_top = ppl["kld"].num_or("same_top", -1);
    }
    if (m.has("bench")) read_bench_results(m["bench"], p);
}

Run read_quantize(const Node& doc, const std::string& file) {
    Run r;
    r.file = file;
    const Node q = doc["quantize"];
    Point a, b;
    a.original = true, a.label = "original", a.model = q["input"].str();
    b.model = q["output"].str();
    b.label = q["type"].str();
    a.size = q["file_bytes_in"].num(), b.size = q["file_bytes_out"].num();
    if (q.has("linears")) {  // encoder W8A8
        r.kind = "quantize (w8a8)";
        if (doc.has("eval")) {
            const Node e = doc["eval"];
            a.accuracy = e["before"]["accuracy"].num(), b.accuracy = e["after"]["accuracy"].num();
            b.kld = e["agreement"]["mean_kld"].num();
            if (e.has("speed")) {
                a.latency_ms = e["speed"]["before"]["median_ms"].num(), b.latency_ms = e["speed"]["after"]["median_ms"].num();
                a.prompt_tps = e["speed"]["before"]["tokens_per_s"].num(), b.prompt_tps = e["speed"]["after"]["tokens_per_s"].num();
            }
        }
        for (const Node& l : q["linears"].items()) {
            TensorRow t;
            t.name = l["name"].str();
            t.type = l["int8"].boolean() ? "int8" : "f32";
            t.rule = l.str_or("rule", "");
            r.tensors.push_back(t);
        }
    } else {
        r.kind = "quantize";
        a.bpw = q["bits_per_weight_in"].num(), b.bpw = q["bits_per_weight_out"].num();
        const std::string method = q.str_or("method", "rtn");
        if (method != "rtn") b.label += " (" + method + ")";
        if (doc.has("eval")) {
            read_perplexity(doc["eval"]["base"], a);
            read_perplexity(doc["eval"]["candidate"], b);
        }
        if (q.has("predicted_kld")) r.notes.push_back("mixed precision: predicted mean KLD " + std::to_string(q["predicted_kld"].num()));
        if (q.has("held_out_calibration_kld"))
            r.notes.push_back("held-out calibration KLD " + std::to_string(q["held_out_calibration_kld"].num()));
        for (const Node& t : q["tensors"].items()) {
            TensorRow row;
            row.name = t["name"].str();
            std::string shape;
            for (const Node& d : t["shape"].items()) shape += (shape.empty() ? "" : "×") + std::to_string(static_cast<int64_t>(d.num()));
            row.shape = shape;
            row.from = t["from"].str(), row.type = t["type"].str(), row.rule = t["rule"].str(), row.fallback = t.str_or("fallback", "");
            row.bytes_in = t["bytes_in"].num(), row.bytes_out = t["bytes_out"].num();
            if (t.has("sensitivity")) {
                const Node s = t["sensitivity"];
                row.probe_type = s["probe_type"].str(), row.probe_dkld = s["measured_dkld"].num();
                for (const auto& [type, v] : s["predicted_dkld"].entries())
                    if (type == row.type) row.chosen_dkld = v.num();
            }
            r.tensors.push_back(row);
        }
    }
    r.title = base_name(a.model) + " → " + base_name(b.model) + " (" + b.label + ")";
    r.points = {a, b};
    return r;
}

Run read_compress(const Node& doc, const std::string& file) {
    Run r;
    r.file = file, r.kind = "compress";
    const auto stage = [&](const Node& s, bool original) {
        Point p;
        p.original = original;
        p.label = s["name"].str(), p.model = s["model"].str(), p.size = s["bytes"].num();
        const double ppl = s["ppl"].num();
        if (ppl > 0) p.ppl = ppl, p.ppl_err = s.num_or("ppl_err", -1);
        if (s.num_or("kld", -1) >= 0) p.kld = s["kld"].num();
        if (s.num_or("same_top", -1) >= 0) p.same_top = s["same_top"].num();
        if (s.num_or("prompt_tps", 0) > 0) p.prompt_tps = s["prompt_tps"].num();
        if (s.num_or("gen_tps", 0) > 0) p.gen_tps = s["gen_tps"].num();
        for (const Node& n : s["notes"].items()) r.notes.push_back(p.label + ": " + n.str());
        return p;
    };
    r.points.push_back(stage(doc["original"], true));
    for (const Node& s : doc["stages"].items()) {
        r.points.push_back(stage(s, false));
        // The original is measured beside every stage; its first measurement stands for it where it has none.
        Point& o = r.points.front();
        if (o.prompt_tps < 0 && s.num_or("base_prompt_tps", 0) > 0) o.prompt_tps = s["base_prompt_tps"].num();
        if (o.gen_tps < 0 && s.num_or("base_gen_tps", 0) > 0) o.gen_tps = s["base_gen_tps"].num();
    }
    r.title = "pipeline " + base_name(doc["input"].str()) + " → " + base_name(doc["output_dir"].str());
    return r;
}

Run read_eval(const Node& doc, const std::string& file) {
    Run r;
    r.file = file, r.kind = "eval";
    Point a;
    a.original = true, a.label = "model", a.model = doc["model"].str(), a.accuracy = doc["result"]["accuracy"].num();
    r.points.push_back(a);
    if (doc.has("compare")) {
        Point b;
        b.label = "compare", b.model = doc["compare"]["model"].str(), b.accuracy = doc["compare"]["result"]["accuracy"].num();
        b.kld = doc["compare"]["agreement"]["mean_kld"].num();
        r.points.push_back(b);
    }
    r.title = "eval " + base_name(a.model) + " on " + base_name(doc.str_or("data", ""));
    return r;
}

Run read_bench(const Node& doc, const std::string& file) {
    Run r;
    r.file = file, r.kind = "bench";
    const std::string model = doc["model"].str();
    if (doc.has("median_ms")) {  // encoder bench
        SpeedRow s;
        s.model = model;
        s.test = "batch " + std::to_string(static_cast<int64_t>(doc["batch"].num())) + " × " + std::to_string(static_cast<int64_t>(doc["seq"].num()));
        s.tps = doc["tokens_per_s"].num();
        s.lo = s.hi = s.tps;
        r.speed.push_back(s);
    } else {
        for (const Node& x : doc["results"].items())
            r.speed.push_back({model, x["test"].str(), x["median"].num(), x["min"].num(), x["max"].num()});
        r.notes.push_back("isa " + doc.str_or("isa", "?") + ", " + std::to_string(static_cast<int64_t>(doc.num_or("threads", 0))) + " threads, " +
                          std::to_string(static_cast<int64_t>(doc.num_or("weight_bytes", 0))) + " weight bytes");
    }
    r.title = "bench " + base_name(model);
    return r;
}

Run read_memory(const Node& doc, const std::string& file) {
    Run r = read_bench(doc["bench"], file);
    r.kind = "bench --memory";
    const Node a = doc["analytic"], m = doc["measured"];
    MemoryRun mem;
    for (const Node& w : a["weights"].items()) mem.analytic.emplace_back("weights " + w["format"].str(), w["bytes"].num());
    if (a["packed_bytes"].num() > 0) mem.analytic.emplace_back("packed copies", a["packed_bytes"].num());
    mem.analytic.emplace_back("KV cache", a["kv_cache"]["bytes"].num());
    mem.analytic.emplace_back("activations / workspace", a["workspace_bytes"].num());
    mem.analytic_total = a["total_bytes"].num();
    mem.baseline = m["baseline_rss"].num(), mem.peak = m["peak_rss"].num(), mem.final_rss = m["final_rss"].num();
    mem.final_anon = m.num_or("final_rss_anon", 0), mem.final_file = m.num_or("final_rss_file", 0);
    mem.peak_reset = m["peak_reset_per_phase"].boolean();
    mem.weight_bytes = a["weight_bytes"].num();
    mem.weights_resident = m.num_or("weights_resident", -1);
    for (const Node& p : m["phases"].items())
        mem.phases.push_back({p["phase"].str(), p["rss_before"].num(), p["rss_after"].num(), p["peak"].num(), p["analytic"].num(),
                              p["seconds"].num(), p.num_or("rss_model_file_after", -1), p.num_or("rss_other_files_after", -1),
                              p.num_or("rss_anonymous_mappings_after", -1), p.num_or("allocator_free_after", -1)});
    r.memory = mem;
    r.title = "memory " + base_name(doc["model"].str());
    return r;
}

Run read_run(const ReportInput& in) {
    const json doc = parse_json_text(in.json, "report", in.file);
    const Node d(doc, "", in.file);
    if (!doc.is_object()) throw FormatError("report", in.file, 0, "the document is " + std::string(doc.type_name()) + ", expected a cq JSON report (an object)");
    if (d.has("quantize")) return read_quantize(d, in.file);
    if (d.has("stages") && d.has("original")) return read_compress(d, in.file);
    if (d.has("analytic") && d.has("measured")) return read_memory(d, in.file);
    if (d.has("result")) return read_eval(d, in.file);
    if (d.has("results") || d.has("median_ms")) return read_bench(d, in.file);
    throw FormatError("report", in.file, 0,
                      "not a report cq writes: none of the keys 'quantize' (cq quantize --json), 'stages' (cq compress report.json), "
                      "'analytic' (cq bench --memory --json), 'result' (cq eval --json), 'results' (cq bench --json)");
}

// ---- HTML ----

std::string esc(const std::string& s) {
    std::string o;
    for (char c : s) {
        switch (c) {
        case '&': o += "&amp;"; break;
        case '<': o += "&lt;"; break;
        case '>': o += "&gt;"; break;
        case '"': o += "&quot;"; break;
        case '\'': o += "&#39;"; break;
        default: o += c;
        }
    }
    return o;
}

std::string fmt(const char* f, double v) {
    char b[64];
    std::snprintf(b, sizeof b, f, v);
    return b;
}
std::string exact(double v) { return fmt("%.17g", v); }
std::string mib(double bytes) { return fmt("%.3f", bytes / (1024.0 * 1024.0)); }
std::string opt(double v, const char* f) { return v < 0 ? "—" : fmt(f, v); }

// A metric's value on a point (−1: none) and whether higher is better.
double metric_value(const Point& p, const std::string& m) {
    if (m == "ppl") return p.ppl;
    if (m == "kld") return p.kld;
    return p.accuracy;
}

std::string metric_label(const std::string& m) {
    if (m == "ppl") return "perplexity (lower is better)";
    if (m == "kld") return "mean KL-divergence vs the original (lower is better)";
    return "accuracy (higher is better)";
}

// Ticks at 1, 2 or 5 × 10^k spanning [lo, hi].
std::vector<double> ticks(double lo, double hi) {
    const double span = hi - lo;
    const double raw = span / 5.0;
    const double mag = std::pow(10.0, std::floor(std::log10(raw)));
    double step = mag;
    for (double m : {1.0, 2.0, 5.0, 10.0})
        if (raw <= m * mag) {
            step = m * mag;
            break;
        }
    std::vector<double> out;
    for (double t = std::ceil(lo / step) * step; t <= hi + step * 1e-9; t += step) out.push_back(std::abs(t) < step * 1e-9 ? 0.0 : t);
    return out;
}

const char* kFront = "#d62728";      // Pareto-front markers (the screenshot test looks for this colour)
const char* kDominated = "#1f77b4";  // dominated markers

std::string pareto_svg(const std::vector<Point>& pts, const std::string& metric, std::string& caption) {
    std::vector<const Point*> plotted;
    for (const Point& p : pts)
        if (p.size > 0 && metric_value(p, metric) >= 0) plotted.push_back(&p);
    // The same model measured the same way in two runs (the original of two quantize runs) is one point.
    std::vector<const Point*> unique;
    for (const Point* p : plotted) {
        bool dup = false;
        for (const Point* u : unique) dup |= u->model == p->model && u->size == p->size && metric_value(*u, metric) == metric_value(*p, metric);
        if (!dup) unique.push_back(p);
    }
    if (unique.empty()) {
        caption = "No artifact in these reports has both a size and a " + metric_label(metric) + ".";
        return "";
    }
    const bool higher_better = metric == "accuracy";
    std::vector<double> size, loss;
    for (const Point* p : unique) {
        size.push_back(p->size);
        loss.push_back(higher_better ? -metric_value(*p, metric) : metric_value(*p, metric));
    }
    const std::vector<bool> front = pareto_front(size, loss);
    const double W = 760, H = 440, L = 80, R = 30, T = 20, B = 56;
    double x0 = *std::min_element(size.begin(), size.end()) / (1024.0 * 1024.0), x1 = *std::max_element(size.begin(), size.end()) / (1024.0 * 1024.0);
    double y0 = std::numeric_limits<double>::max(), y1 = -y0;
    for (const Point* p : unique) y0 = std::min(y0, metric_value(*p, metric)), y1 = std::max(y1, metric_value(*p, metric));
    const auto pad = [](double& lo, double& hi) {
        const double d = hi > lo ? (hi - lo) * 0.08 : std::max(std::abs(lo) * 0.05, 1e-3);
        lo -= d, hi += d;
    };
    pad(x0, x1), pad(y0, y1);
    const auto X = [&](double bytes) { return L + (bytes / (1024.0 * 1024.0) - x0) / (x1 - x0) * (W - L - R); };
    const auto Y = [&](double v) { return H - B - (v - y0) / (y1 - y0) * (H - T - B); };
    std::ostringstream s;
    s << "<svg id=\"pareto\" class=\"chart\" width=\"" << W << "\" height=\"" << H << "\" viewBox=\"0 0 " << W << " " << H
      << "\" role=\"img\" aria-label=\"size–quality Pareto chart\" data-metric=\"" << metric << "\">\n";
    s << "<rect x=\"" << L << "\" y=\"" << T << "\" width=\"" << W - L - R << "\" height=\"" << H - T - B << "\" class=\"plot\"/>\n";
    for (double t : ticks(x0, x1)) {
        const double x = X(t * 1024.0 * 1024.0);
        s << "<line class=\"grid\" x1=\"" << x << "\" x2=\"" << x << "\" y1=\"" << T << "\" y2=\"" << H - B << "\"/>"
          << "<text class=\"tick\" x=\"" << x << "\" y=\"" << H - B + 16 << "\" text-anchor=\"middle\">" << fmt("%g", t) << "</text>\n";
    }
    for (double t : ticks(y0, y1)) {
        const double y = Y(t);
        s << "<line class=\"grid\" x1=\"" << L << "\" x2=\"" << W - R << "\" y1=\"" << y << "\" y2=\"" << y << "\"/>"
          << "<text class=\"tick\" x=\"" << L - 6 << "\" y=\"" << y + 4 << "\" text-anchor=\"end\">" << fmt("%g", t) << "</text>\n";
    }
    s << "<text class=\"axis\" x=\"" << (L + W - R) / 2 << "\" y=\"" << H - 12 << "\" text-anchor=\"middle\">size on disk (MiB)</text>\n";
    s << "<text class=\"axis\" transform=\"translate(16," << (T + H - B) / 2 << ") rotate(-90)\" text-anchor=\"middle\">" << esc(metric_label(metric))
      << "</text>\n";
    // The front as a staircase from the smallest artifact to the best one.
    std::vector<size_t> f;
    for (size_t i = 0; i < unique.size(); ++i)
        if (front[i]) f.push_back(i);
    std::sort(f.begin(), f.end(), [&](size_t a, size_t b) { return size[a] < size[b] || (size[a] == size[b] && loss[a] < loss[b]); });
    if (f.size() > 1) {
        s << "<polyline class=\"front-line\" points=\"";
        for (size_t k = 0; k < f.size(); ++k) {
            const Point& p = *unique[f[k]];
            if (k > 0) s << X(p.size) << "," << Y(metric_value(*unique[f[k - 1]], metric)) << " ";
            s << X(p.size) << "," << Y(metric_value(p, metric)) << " ";
        }
        s << "\"/>\n";
    }
    for (size_t i = 0; i < unique.size(); ++i) {
        const Point& p = *unique[i];
        const double v = metric_value(p, metric);
        s << "<circle class=\"pt " << (front[i] ? "front" : "dominated") << "\" cx=\"" << X(p.size) << "\" cy=\"" << Y(v) << "\" r=\"7\" fill=\""
          << (front[i] ? kFront : kDominated) << "\" data-size=\"" << exact(p.size) << "\" data-value=\"" << exact(v) << "\" data-front=\""
          << (front[i] ? 1 : 0) << "\" data-model=\"" << esc(p.model) << "\"><title>" << esc(p.label + " — " + p.model) << ": "
          << mib(p.size) << " MiB, " << metric << " " << fmt("%.6g", v) << "</title></circle>\n";
        s << "<text class=\"pt-label\" x=\"" << X(p.size) + 10 << "\" y=\"" << Y(v) - 8 << "\">" << esc(p.label) << "</text>\n";
    }
    s << "</svg>\n";
    caption = std::to_string(unique.size()) + " artifacts, " + std::to_string(f.size()) +
              " on the Pareto front (red: no other artifact is both smaller and better; blue: dominated). Values measured in different runs "
              "are comparable only where those runs used the same evaluation text.";
    return s.str();
}

std::string bar(double frac, const char* cls = "bar") {
    frac = std::clamp(frac, 0.0, 1.0);
    return "<span class=\"" + std::string(cls) + "\" style=\"width:" + fmt("%.1f", 100.0 * frac) + "px\"></span>";
}

std::string run_table(const Run& r, size_t index) {
    const auto any = [&](auto f) { return std::any_of(r.points.begin(), r.points.end(), f); };
    const bool has_bpw = any([](const Point& p) { return p.bpw >= 0; }), has_ppl = any([](const Point& p) { return p.ppl >= 0; }),
               has_kld = any([](const Point& p) { return p.kld >= 0; }), has_top = any([](const Point& p) { return p.same_top >= 0; }),
               has_acc = any([](const Point& p) { return p.accuracy >= 0; }), has_pp = any([](const Point& p) { return p.prompt_tps >= 0; }),
               has_tg = any([](const Point& p) { return p.gen_tps >= 0; }), has_lat = any([](const Point& p) { return p.latency_ms >= 0; }),
               has_size = any([](const Point& p) { return p.size >= 0; });
    const Point* base = nullptr;
    for (const Point& p : r.points)
        if (p.original) base = &p;
    std::ostringstream s;
    s << "<div class=\"scroll\"><table class=\"runs sortable\" id=\"run-" << index << "\" data-file=\"" << esc(r.file) << "\">\n<thead><tr><th>artifact</th><th>model</th>";
    if (has_size) s << "<th>size MiB</th><th>÷ size</th>";
    if (has_bpw) s << "<th>bits/weight</th>";
    if (has_ppl) s << "<th>PPL</th><th>Δ PPL</th>";
    if (has_kld) s << "<th>mean KLD</th>";
    if (has_top) s << "<th>same top</th>";
    if (has_acc) s << "<th>accuracy</th>";
    if (has_pp) s << "<th>prompt tok/s</th>";
    if (has_tg) s << "<th>gen tok/s</th>";
    if (has_lat) s << "<th>latency ms</th>";
    s << "</tr></thead>\n<tbody>\n";
    for (const Point& p : r.points) {
        s << "<tr" << (p.original ? " class=\"original\"" : "") << "><td>" << esc(p.label) << "</td><td class=\"path\">" << esc(p.model) << "</td>";
        if (has_size) {
            s << "<td data-v=\"" << exact(p.size) << "\">" << (p.size >= 0 ? mib(p.size) : "—") << "</td><td>";
            s << (base && base->size > 0 && p.size > 0 && !p.original ? fmt("%.2f", base->size / p.size) : "") << "</td>";
        }
        if (has_bpw) s << "<td>" << opt(p.bpw, "%.3f") << "</td>";
        if (has_ppl) {
            s << "<td data-v=\"" << exact(p.ppl) << "\">" << opt(p.ppl, "%.4f") << (p.ppl_err > 0 ? " ± " + fmt("%.4f", p.ppl_err) : "") << "</td><td>";
            s << (base && base->ppl >= 0 && p.ppl >= 0 && !p.original ? fmt("%+.4f", p.ppl - base->ppl) : "") << "</td>";
        }
        if (has_kld) s << "<td data-v=\"" << exact(p.kld) << "\">" << opt(p.kld, "%.6f") << "</td>";
        if (has_top) s << "<td>" << (p.same_top >= 0 ? fmt("%.2f", 100.0 * p.same_top) + " %" : "—") << "</td>";
        if (has_acc) s << "<td data-v=\"" << exact(p.accuracy) << "\">" << (p.accuracy >= 0 ? fmt("%.2f", 100.0 * p.accuracy) + " %" : "—") << "</td>";
        if (has_pp) s << "<td>" << opt(p.prompt_tps, "%.1f") << "</td>";
        if (has_tg) s << "<td>" << opt(p.gen_tps, "%.1f") << "</td>";
        if (has_lat) s << "<td>" << opt(p.latency_ms, "%.2f") << "</td>";
        s << "</tr>\n";
    }
    s << "</tbody></table></div>\n";
    return s.str();
}

std::string sensitivity_section(const Run& r, size_t index) {
    std::ostringstream s;
    // Bytes by type: where the output's bytes went.
    std::map<std::string, std::pair<int64_t, double>> by;
    double total = 0;
    for (const TensorRow& t : r.tensors) {
        by[t.type].first += 1, by[t.type].second += t.bytes_out;
        total += t.bytes_out;
    }
    s << "<h3>" << esc(r.title) << "</h3>\n";
    if (total > 0) {
        s << "<table class=\"bytype\"><thead><tr><th>type</th><th>tensors</th><th>MiB</th><th>share</th></tr></thead><tbody>\n";
        for (const auto& [type, nb] : by)
            s << "<tr><td>" << esc(type) << "</td><td>" << nb.first << "</td><td>" << mib(nb.second) << "</td><td class=\"barcell\">"
              << bar(nb.second / total) << fmt("%.1f", 100.0 * nb.second / total) << " %</td></tr>\n";
        s << "</tbody></table>\n";
    }
    const bool measured = std::any_of(r.tensors.begin(), r.tensors.end(), [](const TensorRow& t) { return t.probe_dkld >= 0; });
    if (!measured)
        s << "<p class=\"note\">No per-tensor sensitivity in this run (cq quantize --calib with --target-bpw, --target-size or --max-kld measures "
             "each tensor's ΔKLD).</p>\n";
    std::vector<const TensorRow*> rows;
    for (const TensorRow& t : r.tensors) rows.push_back(&t);
    if (measured)
        std::stable_sort(rows.begin(), rows.end(), [](const TensorRow* a, const TensorRow* b) { return a->chosen_dkld > b->chosen_dkld; });
    double max_dkld = 0;
    for (const TensorRow* t : rows) max_dkld = std::max({max_dkld, t->probe_dkld, t->chosen_dkld});
    // The listing is long: open where it carries measurements, folded otherwise.
    s << "<details" << (measured ? " open" : "") << "><summary>" << r.tensors.size() << " tensors"
      << (measured ? ", most sensitive first" : "") << "</summary>\n<div class=\"scroll\">";
    s << "<table class=\"tensors sortable\" id=\"tensors-" << index << "\"><thead><tr><th>tensor</th><th>shape</th><th>from</th><th>type</th>"
      << (total > 0 ? "<th>bytes in</th><th>bytes out</th>" : "") << "<th>decided by</th>";
    if (measured) s << "<th>probe</th><th>measured ΔKLD</th><th>predicted ΔKLD at type</th>";
    s << "</tr></thead><tbody>\n";
    for (const TensorRow* t : rows) {
        s << "<tr><td class=\"path\">" << esc(t->name) << "</td><td>" << esc(t->shape) << "</td><td>" << esc(t->from) << "</td><td>" << esc(t->type)
          << (t->fallback.empty() ? "" : " <span class=\"note\">(" + esc(t->fallback) + ")</span>") << "</td>";
        if (total > 0) s << "<td>" << exact(t->bytes_in) << "</td><td>" << exact(t->bytes_out) << "</td>";
        s << "<td>" << esc(t->rule) << "</td>";
        if (measured) {
            s << "<td>" << esc(t->probe_type) << "</td><td data-v=\"" << exact(t->probe_dkld) << "\">" << opt(t->probe_dkld, "%.3g") << "</td>";
            s << "<td class=\"barcell\" data-v=\"" << exact(t->chosen_dkld) << "\">"
              << (t->chosen_dkld >= 0 && max_dkld > 0 ? bar(t->chosen_dkld / max_dkld, "bar warm") : "") << opt(t->chosen_dkld, "%.3g") << "</td>";
        }
        s << "</tr>\n";
    }
    s << "</tbody></table></div></details>\n";
    return s.str();
}

std::string speed_section(const std::vector<Run>& runs) {
    std::vector<SpeedRow> rows;
    for (const Run& r : runs) {
        for (const Point& p : r.points) {
            if (p.prompt_tps >= 0) rows.push_back({p.model, r.kind == "quantize (w8a8)" ? "batch tokens/s" : "prompt", p.prompt_tps, p.prompt_tps, p.prompt_tps});
            if (p.gen_tps >= 0) rows.push_back({p.model, "generation", p.gen_tps, p.gen_tps, p.gen_tps});
        }
        rows.insert(rows.end(), r.speed.begin(), r.speed.end());
    }
    if (rows.empty()) return "<p class=\"note\">No speed measurements in these reports.</p>\n";
    std::map<std::string, double> best;  // per test kind, for the bars
    const auto kind = [](const std::string& t) { return t.rfind("tg", 0) == 0 || t == "generation" ? std::string("generation") : std::string("prompt"); };
    for (const SpeedRow& r : rows) best[kind(r.test)] = std::max(best[kind(r.test)], r.tps);
    std::ostringstream s;
    s << "<table class=\"speed sortable\" id=\"speed\"><thead><tr><th>model</th><th>test</th><th>tokens/s</th><th>min</th><th>max</th></tr></thead><tbody>\n";
    for (const SpeedRow& r : rows)
        s << "<tr><td class=\"path\">" << esc(r.model) << "</td><td>" << esc(r.test) << "</td><td class=\"barcell\" data-v=\"" << exact(r.tps) << "\">"
          << bar(r.tps / best[kind(r.test)]) << fmt("%.1f", r.tps) << "</td><td>" << fmt("%.1f", r.lo) << "</td><td>" << fmt("%.1f", r.hi)
          << "</td></tr>\n";
    s << "</tbody></table>\n";
    return s.str();
}

std::string memory_section(const Run& r, size_t index) {
    const MemoryRun& m = *r.memory;
    std::ostringstream s;
    s << "<h3>" << esc(r.title) << "</h3>\n";
    // One stacked bar: the analytic components over the measured growth above the baseline.
    const double W = 760, H = 90, L = 200;
    const double scale_max = std::max(m.analytic_total, m.peak - m.baseline);
    static const char* colours[] = {"#4e79a7", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac", "#76b7b2"};
    s << "<svg class=\"chart memory\" id=\"memory-" << index << "\" width=\"" << W << "\" height=\"" << H << "\" viewBox=\"0 0 " << W << " " << H << "\">\n";
    s << "<text class=\"tick\" x=\"" << L - 8 << "\" y=\"28\" text-anchor=\"end\">analytic</text>";
    s << "<text class=\"tick\" x=\"" << L - 8 << "\" y=\"66\" text-anchor=\"end\">measured peak − baseline</text>\n";
    double x = L;
    size_t c = 0;
    for (const auto& [name, bytes] : m.analytic) {
        const double w = scale_max > 0 ? bytes / scale_max * (W - L - 20) : 0;
        s << "<rect x=\"" << x << "\" y=\"12\" width=\"" << w << "\" height=\"24\" fill=\"" << colours[c++ % 8] << "\"><title>" << esc(name) << ": "
          << mib(bytes) << " MiB</title></rect>\n";
        x += w;
    }
    const double wm = scale_max > 0 ? (m.peak - m.baseline) / scale_max * (W - L - 20) : 0;
    s << "<rect x=\"" << L << "\" y=\"50\" width=\"" << std::max(0.0, wm) << "\" height=\"24\" fill=\"#888\"><title>measured: " << mib(m.peak - m.baseline)
      << " MiB</title></rect>\n</svg>\n";
    s << "<div class=\"cols\"><table class=\"mem\"><thead><tr><th>analytic</th><th>MiB</th></tr></thead><tbody>\n";
    c = 0;
    for (const auto& [name, bytes] : m.analytic)
        s << "<tr><td><span class=\"swatch\" style=\"background:" << colours[c++ % 8] << "\"></span>" << esc(name) << "</td><td data-v=\"" << exact(bytes)
          << "\">" << mib(bytes) << "</td></tr>\n";
    s << "<tr class=\"total\"><td>total</td><td data-v=\"" << exact(m.analytic_total) << "\">" << mib(m.analytic_total) << "</td></tr>\n";
    s << "<tr><td>measured baseline RSS (before load)</td><td>" << mib(m.baseline) << "</td></tr>\n";
    s << "<tr><td>measured peak RSS</td><td data-v=\"" << exact(m.peak) << "\">" << mib(m.peak) << "</td></tr>\n";
    if (m.weights_resident >= 0)
        s << "<tr><td>weights resident (the model file's pages; analytic " << mib(m.weight_bytes) << ")</td><td data-v=\"" << exact(m.weights_resident)
          << "\">" << mib(m.weights_resident) << "</td></tr>\n";
    s << "<tr><td>final RSS: anonymous / file-backed</td><td>" << mib(m.final_anon) << " / " << mib(m.final_file) << "</td></tr>\n";
    s << "<tr><td>unexplained (peak − baseline − analytic)</td><td>" << fmt("%+.3f", (m.peak - m.baseline - m.analytic_total) / (1024.0 * 1024.0))
      << "</td></tr>\n</tbody></table>\n";
    s << "<table class=\"phases\"><thead><tr><th>phase</th><th>RSS before</th><th>RSS after</th><th>analytic Δ</th><th>peak" << (m.peak_reset ? " (own)" : " (so far)")
      << "</th><th>model file</th><th>libraries</th><th>anonymous</th><th>of which allocator-free</th><th>seconds</th></tr></thead><tbody>\n";
    const auto maybe = [](double v) { return v < 0 ? std::string("—") : mib(v); };
    for (const auto& p : m.phases)
        s << "<tr><td>" << esc(p.name) << "</td><td>" << mib(p.before) << "</td><td>" << mib(p.after) << "</td><td>" << mib(p.analytic) << "</td><td>"
          << mib(p.peak) << "</td><td>" << maybe(p.model_file) << "</td><td>" << maybe(p.libraries) << "</td><td>" << maybe(p.anonymous) << "</td><td>"
          << maybe(p.allocator_free) << "</td><td>" << fmt("%.3f", p.seconds) << "</td></tr>\n";
    s << "</tbody></table></div>\n";
    return s.str();
}

const char* kStyle = R"(
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px auto;max-width:1100px;color:#222;padding:0 16px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:32px}h3{font-size:15px}
table{border-collapse:collapse;margin:8px 0 16px;font-variant-numeric:tabular-nums}
th,td{border-bottom:1px solid #e5e5e5;padding:4px 10px;text-align:right;white-space:nowrap}
th{background:#f6f6f6;cursor:pointer;user-select:none}th:first-child,td:first-child,td.path{text-align:left}
td.path{max-width:360px;overflow:hidden;text-overflow:ellipsis;font-family:ui-monospace,monospace;font-size:12px}
tr.original td{background:#fafaf2}tr.total td{font-weight:600}
.note{color:#666;font-size:13px}.barcell{min-width:190px}
.bar{display:inline-block;height:10px;background:#9ecae1;margin-right:6px;vertical-align:middle}
.bar.warm{background:#fdae6b}.swatch{display:inline-block;width:10px;height:10px;margin-right:6px}
svg.chart{display:block;margin:8px 0}.plot{fill:#fff;stroke:#bbb}.grid{stroke:#eee}.tick{font-size:11px;fill:#555}
.axis{font-size:12px;fill:#333}.pt-label{font-size:11px;fill:#333}.front-line{fill:none;stroke:#ff9896;stroke-width:1.5;stroke-dasharray:4 3}
.scroll{overflow-x:auto;max-width:100%}summary{cursor:pointer;color:#444;margin:6px 0}
.cols{display:flex;gap:32px;flex-wrap:wrap}.files{font-family:ui-monospace,monospace;font-size:12px;color:#555}
)";

// Sorting by a header click; the page is complete without it. data-ready marks that the script ran to the end.
const char* kScript = R"(
(function(){
  function key(td){var v=td.getAttribute('data-v');if(v!==null)return parseFloat(v);var n=parseFloat(td.textContent);return isNaN(n)?td.textContent:n;}
  document.querySelectorAll('table.sortable').forEach(function(t){
    t.querySelectorAll('th').forEach(function(th,i){
      th.addEventListener('click',function(){
        var tb=t.tBodies[0],rows=Array.prototype.slice.call(tb.rows),dir=th.getAttribute('data-dir')==='asc'?-1:1;
        rows.sort(function(a,b){var x=key(a.cells[i]),y=key(b.cells[i]);return (x<y?-1:x>y?1:0)*dir;});
        rows.forEach(function(r){tb.appendChild(r);});th.setAttribute('data-dir',dir===1?'asc':'desc');
      });
    });
  });
  document.documentElement.setAttribute('data-ready','1');
})();
)";

}  // namespace

std::vector<bool> pareto_front(const std::vector<double>& size, const std::vector<double>& loss) {
    if (size.size() != loss.size()) throw InvalidArgument("[report] pareto_front: " + std::to_string(size.size()) + " sizes, " + std::to_string(loss.size()) + " losses");
    // Sweep by size (ties: lower loss first): a point is on the front iff its loss is below every strictly smaller point's
    // and it is the best at its own size.
    std::vector<size_t> order(size.size());
    std::iota(order.begin(), order.end(), 0);
    std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return size[a] < size[b] || (size[a] == size[b] && loss[a] < loss[b]); });
    std::vector<bool> front(size.size(), false);
    double best_smaller = std::numeric_limits<double>::infinity();
    for (size_t i = 0; i < order.size();) {
        size_t j = i;
        while (j < order.size() && size[order[j]] == size[order[i]]) ++j;
        const double best_here = loss[order[i]];  // the group's lowest
        for (size_t k = i; k < j; ++k) front[order[k]] = loss[order[k]] == best_here && best_here < best_smaller;
        best_smaller = std::min(best_smaller, best_here);
        i = j;
    }
    return front;
}

std::string render_html_report(const std::vector<ReportInput>& inputs, const ReportOptions& options) {
    if (inputs.empty()) throw InvalidArgument("[report] no JSON reports given");
    if (options.metric != "auto" && options.metric != "ppl" && options.metric != "kld" && options.metric != "accuracy")
        throw InvalidArgument("[report] --metric '" + options.metric + "' is not one of auto, ppl, kld, accuracy");
    std::vector<Run> runs;
    for (const ReportInput& in : inputs) runs.push_back(read_run(in));
    std::vector<Point> all;
    for (const Run& r : runs)
        for (Point p : r.points) {
            p.run = r.file;
            all.push_back(p);
        }
    std::string metric = options.metric;
    if (metric == "auto") {
        metric = "ppl";
        for (const char* m : {"ppl", "kld", "accuracy"}) {
            const auto n = std::count_if(all.begin(), all.end(), [&](const Point& p) { return p.size > 0 && metric_value(p, m) >= 0; });
            if (n >= 2) {
                metric = m;
                break;
            }
        }
    }
    std::ostringstream h;
    h << "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
      << "<title>" << esc(options.title) << "</title>\n<style>" << kStyle << "</style>\n</head>\n<body>\n";
    h << "<h1>" << esc(options.title) << "</h1>\n<p class=\"files\">" << runs.size() << " report" << (runs.size() == 1 ? "" : "s") << ": ";
    for (size_t i = 0; i < runs.size(); ++i) h << (i ? ", " : "") << esc(runs[i].file) << " (" << esc(runs[i].kind) << ")";
    h << "</p>\n";

    h << "<h2 id=\"pareto-section\">Size and quality</h2>\n";
    std::string caption;
    h << pareto_svg(all, metric, caption);
    h << "<p class=\"note\" id=\"pareto-caption\">" << esc(caption) << "</p>\n";

    h << "<h2 id=\"comparison\">Same-run comparisons</h2>\n";
    bool any_table = false;
    for (size_t i = 0; i < runs.size(); ++i) {
        if (runs[i].points.empty()) continue;
        any_table = true;
        h << "<h3>" << esc(runs[i].title) << " <span class=\"note\">" << esc(runs[i].kind) << ", " << esc(runs[i].file) << "</span></h3>\n";
        h << run_table(runs[i], i);
        for (const std::string& n : runs[i].notes) h << "<p class=\"note\">" << esc(n) << "</p>\n";
    }
    if (!any_table) h << "<p class=\"note\">No quantize, compress or eval report among the inputs.</p>\n";

    h << "<h2 id=\"sensitivity\">Per-layer types and sensitivity</h2>\n";
    bool any_tensors = false;
    for (size_t i = 0; i < runs.size(); ++i)
        if (!runs[i].tensors.empty()) h << sensitivity_section(runs[i], i), any_tensors = true;
    if (!any_tensors) h << "<p class=\"note\">No per-tensor listing among the inputs (cq quantize --json writes one).</p>\n";

    h << "<h2 id=\"speed-memory\">Speed and memory</h2>\n";
    h << speed_section(runs);
    bool any_memory = false;
    for (size_t i = 0; i < runs.size(); ++i)
        if (runs[i].memory) h << memory_section(runs[i], i), any_memory = true;
    if (!any_memory) h << "<p class=\"note\">No memory profile among the inputs (cq bench --memory --json writes one).</p>\n";

    h << "<script>" << kScript << "</script>\n</body>\n</html>\n";
    return h.str();
}

void write_html_report(const std::vector<ReportInput>& inputs, const std::string& output, const ReportOptions& options) {
    const std::string html = render_html_report(inputs, options);
    AtomicFile out(output);
    out.write(html.data(), html.size());
    out.commit();
}

void write_html_report(const std::vector<std::string>& json_files, const std::string& output, const ReportOptions& options) {
    std::vector<ReportInput> inputs;
    for (const std::string& f : json_files) inputs.push_back({f, read_text_file(f, 256ull << 20)});
    write_html_report(inputs, output, options);
}

}  // namespace cq
