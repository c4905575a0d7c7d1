// cq report end to end on real runs of stories260K (q8_0, q4_0, a measured mixed-precision plan, a memory profile):
// the HTML's tables, the Pareto chart's points against the JSON inputs and its front against a brute-force check,
// the per-tensor ΔKLD, errors naming file and key; and, where Debian's chromium is installed, the page loaded
// headless with no console messages and the chart's markers found in a screenshot.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <regex>
#include <set>

#include <nlohmann/json.hpp>
#include <stb/stb_image.h>

#include "cq/report.h"
#include "command_runner.h"
#include "test_support.h"

#ifndef CQ_CLI_PATH
#error "test_cli_report needs the cq binary (CQ_BUILD_TOOLS=ON)"
#endif

namespace cq {
namespace {

using test::RunResult;
using test::run_command;

namespace fs = std::filesystem;
using nlohmann::json;

std::string slurp(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

std::string exact(double v) {
    char b[64];
    std::snprintf(b, sizeof b, "%.17g", v);
    return b;
}

// The real runs, made once for the suite.
class ReportRuns : public ::testing::Test {
protected:
    static void SetUpTestSuite() {
        dir_ = new test::TempDir("cq_report");
        const std::string cq = CQ_CLI_PATH, model = test::fixture("models/stories260K-gguf/stories260K.gguf");
        const std::string text = test::fixture("data/tinystories_valid_subset.txt"), calib = test::fixture("data/stories_calib.txt");
        const std::string eval = " --eval " + text + " -c 128 --chunks 4 --bench-prompt 64 --bench-gen 16 --bench-reps 1 --json";
        const std::vector<std::pair<std::string, std::string>> runs = {
            {"q8.json", "quantize " + model + " " + dir_->file("q8.gguf") + " -t q8_0" + eval},
            {"q4.json", "quantize " + model + " " + dir_->file("q4.gguf") + " -t q4_0" + eval + " --report " + dir_->file("q4_direct.html")},
            {"mp.json", "quantize " + model + " " + dir_->file("mp.gguf") + " -t q4_0 --calib " + calib +
                            " --calib-ctx 128 --calib-chunks 16 --target-bpw 7.5" + eval},
            {"mem.json", "bench --memory --json " + model + " -p 64 -n 16"},
        };
        for (const auto& [file, args] : runs) {
            const RunResult r = run_command(cq + " " + args + " > " + dir_->file(file));
            ASSERT_EQ(r.exit_code, 0) << args << "\n" << r.err;
        }
        const RunResult r = run_command(cq + " report " + dir_->file("q8.json") + " " + dir_->file("q4.json") + " " + dir_->file("mp.json") + " " +
                                   dir_->file("mem.json") + " -o " + dir_->file("report.html"));
        ASSERT_EQ(r.exit_code, 0) << r.err;
        html_ = new std::string(slurp(dir_->file("report.html")));
    }
    static void TearDownTestSuite() {
        delete html_;
        delete dir_;
    }
    static json load(const std::string& name) { return json::parse(slurp(dir_->file(name))); }
    static test::TempDir* dir_;
    static std::string* html_;
};
test::TempDir* ReportRuns::dir_ = nullptr;
std::string* ReportRuns::html_ = nullptr;

struct Marker {
    double size, value;
    bool front;
    std::string model;
};

std::vector<Marker> markers(const std::string& html) {
    std::vector<Marker> out;
    const std::regex re(R"re(<circle class="pt (front|dominated)"[^>]*data-size="([^"]+)" data-value="([^"]+)" data-front="([01])" data-model="([^"]*)")re");
    for (auto it = std::sregex_iterator(html.begin(), html.end(), re); it != std::sregex_iterator(); ++it)
        out.push_back({std::stod((*it)[2]), std::stod((*it)[3]), (*it)[4] == "1", (*it)[5]});
    return out;
}

std::string pareto_svg(const std::string& html) {
    const size_t a = html.find("<svg id=\"pareto\""), b = html.find("</svg>", a);
    return a == std::string::npos || b == std::string::npos ? "" : html.substr(a, b + 6 - a);
}

// Dominance by definition, O(n²): the independent check of the library's sweep.
std::vector<bool> brute_front(const std::vector<double>& x, const std::vector<double>& y) {
    std::vector<bool> f(x.size(), true);
    for (size_t i = 0; i < x.size(); ++i)
        for (size_t j = 0; j < x.size(); ++j)
            if (x[j] <= x[i] && y[j] <= y[i] && (x[j] < x[i] || y[j] < y[i])) f[i] = false;
    return f;
}

TEST(ParetoFront, EqualsBruteForceOnRandomPointsWithTies) {
    std::mt19937 rng(7);
    for (int trial = 0; trial < 200; ++trial) {
        const int n = 1 + static_cast<int>(rng() % 30);
        std::vector<double> x(n), y(n);
        for (int i = 0; i < n; ++i) x[i] = static_cast<double>(rng() % 8), y[i] = static_cast<double>(rng() % 8);  // many ties
        EXPECT_EQ(pareto_front(x, y), brute_front(x, y)) << "trial " << trial << ", " << n << " points";
    }
}

TEST_F(ReportRuns, ParetoPointsAreTheInputsNumbersAndTheFrontIsRight) {
    // Expected: every artifact with a size and a perplexity, the original once (the same file, text and numbers).
    std::vector<std::pair<double, double>> expected;
    for (const char* name : {"q8.json", "q4.json", "mp.json"}) {
        const json j = load(name);
        const std::pair<double, double> base{j["quantize"]["file_bytes_in"].get<double>(), j["eval"]["base"]["perplexity"]["ppl"].get<double>()};
        if (std::find(expected.begin(), expected.end(), base) == expected.end()) expected.push_back(base);
        expected.emplace_back(j["quantize"]["file_bytes_out"].get<double>(), j["eval"]["candidate"]["perplexity"]["ppl"].get<double>());
    }
    ASSERT_EQ(expected.size(), 4u);
    const std::vector<Marker> m = markers(*html_);
    ASSERT_EQ(m.size(), expected.size()) << pareto_svg(*html_);
    EXPECT_NE(html_->find("data-metric=\"ppl\""), std::string::npos);
    std::vector<double> x, y;
    for (const auto& [s, v] : expected) x.push_back(s), y.push_back(v);
    const std::vector<bool> front = brute_front(x, y);
    for (size_t i = 0; i < expected.size(); ++i) {
        const auto it = std::find_if(m.begin(), m.end(), [&](const Marker& k) { return k.size == x[i] && k.value == y[i]; });
        ASSERT_NE(it, m.end()) << "no marker at size " << exact(x[i]) << ", ppl " << exact(y[i]);
        EXPECT_EQ(it->front, front[i]) << it->model;
    }
    // The front's markers are red, the others blue.
    const size_t n_front = static_cast<size_t>(std::count(front.begin(), front.end(), true));
    EXPECT_GE(n_front, 1u);
    size_t red = 0, pos = 0;
    while ((pos = html_->find("fill=\"#d62728\" data-size", pos)) != std::string::npos) ++red, ++pos;
    EXPECT_EQ(red, n_front);
}

TEST_F(ReportRuns, TablesHoldEachRunsNumbers) {
    size_t tables = 0, pos = 0;
    while ((pos = html_->find("<table class=\"runs", pos)) != std::string::npos) ++tables, ++pos;
    EXPECT_EQ(tables, 3u);  // one per quantize run; the memory profile has no quality
    const json q8 = load("q8.json");
    const size_t t = html_->find("<table class=\"runs sortable\" id=\"run-0\"");
    ASSERT_NE(t, std::string::npos);
    const std::string table = html_->substr(t, html_->find("</table>", t) - t);
    size_t rows = 0;
    pos = 0;
    while ((pos = table.find("<tr", pos)) != std::string::npos) ++rows, ++pos;
    EXPECT_EQ(rows, 3u);  // header, original, q8_0
    char ppl[64];
    std::snprintf(ppl, sizeof ppl, "%.4f", q8["eval"]["candidate"]["perplexity"]["ppl"].get<double>());
    EXPECT_NE(table.find(ppl), std::string::npos) << ppl;
    EXPECT_NE(table.find("data-v=\"" + exact(q8["eval"]["candidate"]["perplexity"]["kld"]["mean"].get<double>()) + "\""), std::string::npos);
    // Speed and memory sections carry the memory profile's figures.
    const json mem = load("mem.json");
    EXPECT_NE(html_->find("data-v=\"" + exact(mem["analytic"]["total_bytes"].get<double>()) + "\""), std::string::npos);
    EXPECT_NE(html_->find("data-v=\"" + exact(mem["measured"]["peak_rss"].get<double>()) + "\""), std::string::npos);
    EXPECT_NE(html_->find("id=\"memory-3\""), std::string::npos);
    EXPECT_NE(html_->find("id=\"speed\""), std::string::npos);
}

TEST_F(ReportRuns, SensitivityListsEveryMeasuredTensor) {
    const json mp = load("mp.json");
    int measured = 0;
    const size_t t = html_->find("id=\"tensors-2\"");
    ASSERT_NE(t, std::string::npos);
    const std::string table = html_->substr(t, html_->find("</table>", t) - t);
    for (const auto& tensor : mp["quantize"]["tensors"]) {
        if (!tensor.contains("sensitivity")) continue;
        ++measured;
        const std::string name = tensor["name"].get<std::string>();
        const size_t row = table.find(">" + name + "<");
        ASSERT_NE(row, std::string::npos) << name;
        const std::string tr = table.substr(row, table.find("</tr>", row) - row);
        EXPECT_NE(tr.find("data-v=\"" + exact(tensor["sensitivity"]["measured_dkld"].get<double>()) + "\""), std::string::npos) << name << ": " << tr;
        const double chosen = tensor["sensitivity"]["predicted_dkld"][tensor["type"].get<std::string>()].get<double>();
        EXPECT_NE(tr.find("data-v=\"" + exact(chosen) + "\""), std::string::npos) << name << ": " << tr;
    }
    EXPECT_GT(measured, 0) << "the mixed-precision run measured no tensor";
}

TEST_F(ReportRuns, PageIsSelfContained) {
    for (const char* s : {"http://", "https://", "<link", " src=", "@import", "url("}) EXPECT_EQ(html_->find(s), std::string::npos) << s;
    EXPECT_EQ(html_->rfind("<!DOCTYPE html>", 0), 0u);
    EXPECT_NE(html_->find("</html>"), std::string::npos);
    // The atomic writer leaves no temporary beside the page.
    for (const auto& e : fs::directory_iterator(dir_->path())) EXPECT_EQ(e.path().string().find(".tmp."), std::string::npos) << e.path();
}

TEST_F(ReportRuns, QuantizeReportFlagWritesTheSameChart) {
    const std::string direct = slurp(dir_->file("q4_direct.html"));
    ASSERT_FALSE(direct.empty());
    const std::string via = dir_->file("q4_via.html");
    ASSERT_EQ(run_command(std::string(CQ_CLI_PATH) + " report " + dir_->file("q4.json") + " -o " + via).exit_code, 0);
    EXPECT_EQ(pareto_svg(direct), pareto_svg(slurp(via)));
    EXPECT_FALSE(pareto_svg(direct).empty());
}

TEST_F(ReportRuns, ErrorsNameTheFileAndTheKey) {
    const std::string cq = CQ_CLI_PATH, out = dir_->file("bad.html");
    json j = load("q8.json");
    j["quantize"].erase("file_bytes_out");
    const std::string missing = dir_->write("missing_key.json", j.dump());
    RunResult r = run_command(cq + " report " + missing + " -o " + out);
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.err.find("missing_key.json"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("'quantize.file_bytes_out' is missing"), std::string::npos) << r.err;

    j = load("q8.json");
    j["eval"]["candidate"]["perplexity"]["ppl"] = "4.4";
    const std::string typed = dir_->write("wrong_type.json", j.dump());
    r = run_command(cq + " report " + typed + " -o " + out);
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.err.find("wrong_type.json"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("'eval.candidate.perplexity.ppl' is string, expected a number"), std::string::npos) << r.err;

    const std::string garbage = dir_->write("garbage.json", "{\"quantize\": [1, 2");
    r = run_command(cq + " report " + garbage + " -o " + out);
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.err.find("garbage.json"), std::string::npos) << r.err;

    const std::string other = dir_->write("other.json", "{\"hello\": 1}");
    r = run_command(cq + " report " + other + " -o " + out);
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.err.find("other.json"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("not a report cq writes"), std::string::npos) << r.err;

    r = run_command(cq + " report " + dir_->file("does_not_exist.json") + " -o " + out);
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.err.find("does_not_exist.json"), std::string::npos) << r.err;
    EXPECT_FALSE(fs::exists(out)) << "a failed report must not leave a page behind";
}

// The other kinds of report: a compress pipeline (each stage a point), and an encoder's W8A8 quantize with cq eval
// --compare on the same data, where the chart's axis becomes accuracy.
TEST_F(ReportRuns, CompressW8A8AndEvalRuns) {
    const std::string cq = CQ_CLI_PATH;
    const std::string recipe = dir_->write("r.yaml", "calibration: {text: " + test::fixture("data/stories_calib.txt") + ", ctx: 64, chunks: 4}\n"
                                                     "evaluation: {text: " + test::fixture("data/tinystories_valid_subset.txt") +
                                                         ", ctx: 64, chunks: 2, bench: false}\n"
                                                     "stages:\n  - prune: {method: magnitude, pattern: \"2:4\"}\n  - quantize: {type: q8_0}\n");
    RunResult r = run_command(cq + " compress " + test::fixture("models/stories260K-gguf/stories260K.gguf") + " --recipe " + recipe + " -o " +
                         dir_->file("pipe") + " --report " + dir_->file("pipe.html") + " > /dev/null");
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const json pipe = load("pipe/report.json");
    std::vector<std::pair<double, double>> expected{{pipe["original"]["bytes"].get<double>(), pipe["original"]["ppl"].get<double>()}};
    for (const auto& st : pipe["stages"]) expected.emplace_back(st["bytes"].get<double>(), st["ppl"].get<double>());
    std::vector<Marker> m = markers(slurp(dir_->file("pipe.html")));
    ASSERT_EQ(m.size(), expected.size());
    for (const auto& [size, ppl] : expected)
        EXPECT_TRUE(std::any_of(m.begin(), m.end(), [&](const Marker& k) { return k.size == size && k.value == ppl; })) << size << " " << ppl;

    const std::string bert = test::fixture("models/bert-tiny-sst2"), dev = test::fixture("data/sst2_dev.tsv");
    r = run_command(cq + " quantize " + bert + " " + dir_->file("bert.cq") + " -t w8a8-dynamic --eval " + dev + " --bench-reps 1 --json > " +
               dir_->file("w8a8.json"));
    ASSERT_EQ(r.exit_code, 0) << r.err;
    r = run_command(cq + " eval " + bert + " --data " + dev + " --compare " + dir_->file("bert.cq") + " --json > " + dir_->file("eval.json"));
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const std::string page = dir_->file("w8a8.html");
    r = run_command(cq + " report " + dir_->file("w8a8.json") + " " + dir_->file("eval.json") + " -o " + page + " --title 'bert <w8a8>'");
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const std::string html = slurp(page);
    EXPECT_NE(html.find("data-metric=\"accuracy\""), std::string::npos);
    EXPECT_NE(html.find("<title>bert &lt;w8a8&gt;</title>"), std::string::npos) << "the title is escaped";
    const json q = load("w8a8.json"), ev = load("eval.json");
    m = markers(html);
    ASSERT_EQ(m.size(), 2u);  // cq eval's rows carry no size: tables only
    std::vector<double> x{q["quantize"]["file_bytes_in"].get<double>(), q["quantize"]["file_bytes_out"].get<double>()};
    std::vector<double> acc{q["eval"]["before"]["accuracy"].get<double>(), q["eval"]["after"]["accuracy"].get<double>()};
    const std::vector<bool> front = brute_front(x, {-acc[0], -acc[1]});  // higher accuracy is better
    for (size_t i = 0; i < 2; ++i) {
        const auto it = std::find_if(m.begin(), m.end(), [&](const Marker& k) { return k.size == x[i] && k.value == acc[i]; });
        ASSERT_NE(it, m.end()) << x[i] << " " << acc[i];
        EXPECT_EQ(it->front, front[i]);
    }
    EXPECT_NE(html.find("data-v=\"" + exact(ev["compare"]["agreement"]["mean_kld"].get<double>()) + "\""), std::string::npos);
    EXPECT_NE(html.find("data-v=\"" + exact(ev["result"]["accuracy"].get<double>()) + "\""), std::string::npos);
}

TEST_F(ReportRuns, HelpDocumentsEveryOptionWithItsDefault) {
    const RunResult r = run_command(std::string(CQ_CLI_PATH) + " report --help");
    EXPECT_EQ(r.exit_code, 0);
    for (const char* s : {"-o,--output", "--title", "--metric", "cq report", "auto"}) EXPECT_NE(r.out.find(s), std::string::npos) << s << "\n" << r.out;
}

// Loads the page in Debian's headless chromium: no console message at all (script errors, console.* calls), the
// inline script ran to its end, and the screenshot holds the chart's red front markers and blue dominated ones.
// (Headless chromium does not log a failed fetch to this log; PageIsSelfContained excludes fetches statically.)
TEST_F(ReportRuns, ChromiumRendersTheChartWithoutConsoleErrors) {
    if (std::system("command -v chromium > /dev/null 2>&1") != 0) GTEST_SKIP() << "chromium is not installed (apt-get install chromium)";
    const std::string page = "file://" + dir_->file("report.html"), png = dir_->file("shot.png");
    const std::string flags = " --headless --disable-gpu --no-sandbox --hide-scrollbars --user-data-dir=" + dir_->file("profile");
    RunResult r = run_command("timeout 120 chromium" + flags + " --enable-logging=stderr --v=0 --window-size=1200,1000 --screenshot=" + png + " " + page +
                         " > /dev/null");
    ASSERT_EQ(r.exit_code, 0) << r.err;
    std::string console;
    for (size_t pos = 0; (pos = r.err.find(":CONSOLE", pos)) != std::string::npos; ++pos)
        console += r.err.substr(r.err.rfind('\n', pos) + 1, r.err.find('\n', pos) - r.err.rfind('\n', pos)) + "\n";
    EXPECT_TRUE(console.empty()) << "console messages:\n" << console;
    r = run_command("timeout 120 chromium" + flags + " --dump-dom " + page);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.out.find("data-ready=\"1\""), std::string::npos) << "the page's script did not run to its end";

    int w = 0, h = 0, c = 0;
    unsigned char* px = stbi_load(png.c_str(), &w, &h, &c, 3);
    ASSERT_NE(px, nullptr) << png;
    size_t red = 0, blue = 0;
    for (int i = 0; i < w * h; ++i) {
        const unsigned char* p = px + 3 * i;
        red += p[0] == 0xd6 && p[1] == 0x27 && p[2] == 0x28;
        blue += p[0] == 0x1f && p[1] == 0x77 && p[2] == 0xb4;
    }
    stbi_image_free(px);
    const std::vector<Marker> m = markers(*html_);
    const size_t n_front = static_cast<size_t>(std::count_if(m.begin(), m.end(), [](const Marker& k) { return k.front; }));
    // A marker of radius 7 fills ~150 pixels of its exact colour; half of that per marker, in case labels or the
    // front line overlap it.
    std::printf("[ chromium ] %dx%d screenshot: %zu front-marker pixels (%zu markers), %zu dominated-marker pixels (%zu markers)\n", w, h, red,
                n_front, blue, m.size() - n_front);
    EXPECT_GE(red, n_front * 75) << "front markers (#d62728) not found in the screenshot " << png;
    EXPECT_GE(blue, (m.size() - n_front) * 75) << "dominated markers (#1f77b4) not found in the screenshot " << png;
}

}  // namespace
}  // namespace cq
