// cq-run: the small runtime for devices. Loads a GGUF model cq wrote (or any llama.cpp GGUF of a family cq
// runs, or a W8A8 encoder container) and runs it: generation, perplexity, bench, classification accuracy,
// and the kernels chosen for this CPU. No CLI11, JSON or BLAS: flags are parsed here, results printed plainly.
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <iostream>
#include <map>
#include <new>
#include <string>
#include <vector>

#include "cq/classify.h"
#include "cq/cpu_features.h"
#include "cq/encoder.h"
#include "cq/error.h"
#include "cq/eval.h"
#include "cq/kernels.h"
#include "cq/llm.h"
#include "cq/mapped_file.h"
#include "cq/thread_pool.h"

namespace {

constexpr const char* kUsage = R"(usage: cq-run [-t N] COMMAND MODEL [options]
  run MODEL -p PROMPT [-n 64] [--temp 0] [--seed 0] [-c CTX]   generate text (greedy unless --temp > 0)
  perplexity MODEL -f TEXT [-c 512] [--chunks -1]             llama.cpp's perplexity method
  bench MODEL [-p 512] [-n 128] [-r 5]                          prompt / generation tokens/s (encoders: -b 8 -s 128)
  eval MODEL --data TSV [--range FIRST:END]                     accuracy of an encoder classifier (W8A8 container)
  info [--kernels]                                               CPU features and the kernel each op runs
  -t N: worker threads (0: all hardware threads); CQ_ISA=ref|neon|neon_dotprod|neon_i8mm|avx2|... forces a rung
)";

// Flag → value, in the order given; a flag without a value fails. Positional arguments come back apart.
struct Args {
    std::vector<std::string> positional;
    std::map<std::string, std::string> flags;

    bool has(const std::string& k) const { return flags.count(k) != 0; }
    std::string str(const std::string& k, const std::string& fallback = "") const {
        const auto it = flags.find(k);
        return it == flags.end() ? fallback : it->second;
    }
    int64_t integer(const std::string& k, int64_t fallback, int64_t lo, int64_t hi) const {
        if (!has(k)) return fallback;
        const std::string& v = flags.at(k);
        char* end = nullptr;
        errno = 0;
        const long long x = std::strtoll(v.c_str(), &end, 10);
        if (v.empty() || *end || errno || x < lo || x > hi)
            throw cq::InvalidArgument(k + " '" + v + "' is not an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
        return x;
    }
    double number(const std::string& k, double fallback, double lo, double hi) const {
        if (!has(k)) return fallback;
        const std::string& v = flags.at(k);
        char* end = nullptr;
        const double x = std::strtod(v.c_str(), &end);
        if (v.empty() || *end || !(x >= lo && x <= hi))
            throw cq::InvalidArgument(k + " '" + v + "' is not a number in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
        return x;
    }
};

Args parse(int argc, char** argv, int first, const std::vector<std::string>& valued, const std::vector<std::string>& switches) {
    Args a;
    for (int i = first; i < argc; ++i) {
        const std::string arg = argv[i];
        const auto is = [&](const std::vector<std::string>& list) {
            for (const auto& f : list)
                if (f == arg) return true;
            return false;
        };
        if (is(switches)) {
            a.flags[arg] = "1";
        } else if (is(valued)) {
            if (i + 1 >= argc) throw cq::InvalidArgument(arg + " needs a value");
            a.flags[arg] = argv[++i];
        } else if (arg.size() > 1 && arg[0] == '-' && !(arg[1] >= '0' && arg[1] <= '9')) {
            throw cq::InvalidArgument("unknown option " + arg + " (cq-run --help lists them)");
        } else {
            a.positional.push_back(arg);
        }
    }
    return a;
}

std::string need_model(const Args& a, const char* cmd) {
    if (a.positional.size() != 1) throw cq::InvalidArgument(std::string(cmd) + " takes one MODEL path");
    return a.positional[0];
}

std::string read_text(const std::string& path) {
    std::string text = cq::read_text_file(path, uint64_t{1} << 32);
    if (!text.empty() && text.back() == '\n') text.pop_back();  // as llama.cpp does
    return text;
}

int cmd_info(const Args& a) {
    const cq::CpuFeatures& f = cq::cpu_features();
    std::string names;
    for (const auto& n : f.names()) names += (names.empty() ? "" : " ") + n;
    std::printf("cq-run %s\ncpu       %s\nfeatures  %s\nisa       %s\n", CQ_VERSION, f.brand.c_str(), names.c_str(),
                std::string(cq::isa_level_name(cq::kernel_table().level)).c_str());
    if (a.has("--kernels"))
        for (const auto& k : cq::list_kernels(cq::kernel_table()))
            std::printf("  %-28s %-34s %-13s %s\n", k.op.c_str(), k.kernel.c_str(), k.isa.c_str(), k.why.c_str());
    return 0;
}

int cmd_run(const Args& a) {
    const std::string model_path = need_model(a, "run");
    if (!a.has("-p") && !a.has("-f")) throw cq::InvalidArgument("run needs -p PROMPT or -f FILE");
    const std::string prompt = a.has("-f") ? read_text(a.str("-f")) : a.str("-p");
    // every flag is checked before the model is loaded: a usage error is reported as one
    cq::LoadOptions lo;
    lo.n_ctx = a.integer("-c", 0, 0, 1 << 20);
    cq::SamplingOptions s;
    s.temperature = float(a.number("--temp", 0.0, 0.0, 100.0));
    s.seed = uint64_t(a.integer("--seed", 0, 0, INT64_MAX));
    const int64_t n_predict = a.integer("-n", 64, 0, 1 << 20);
    auto model = cq::LanguageModel::load(model_path, lo);
    std::cout << prompt << std::flush;
    const auto r = cq::generate(*model, prompt, n_predict, s,
                                [](const std::string& piece) { std::cout << piece << std::flush; });
    std::cout << '\n';
    std::fprintf(stderr, "[run] %zu prompt tokens in %.3f s, %zu generated in %.3f s\n", r.prompt_tokens.size(), r.prompt_seconds,
                 r.tokens.size(), r.generation_seconds);
    return 0;
}

int cmd_perplexity(const Args& a) {
    const std::string model_path = need_model(a, "perplexity");
    if (!a.has("-f")) throw cq::InvalidArgument("perplexity needs -f TEXT");
    cq::PerplexityOptions o;
    o.n_ctx = a.integer("-c", 512, 4, 1 << 20);
    o.max_chunks = a.integer("--chunks", -1, -1, INT32_MAX);
    cq::LoadOptions lo;
    lo.n_ctx = o.n_ctx;
    auto model = cq::LanguageModel::load(model_path, lo);
    const auto r = cq::evaluate_perplexity(*model, read_text(a.str("-f")), o);
    std::printf("chunks %lld x %lld tokens (%lld tokens in the text), %lld scored, %.2f s\n", (long long)r.n_chunks,
                (long long)r.n_ctx, (long long)r.n_tokens, (long long)r.n_scored, r.seconds);
    std::printf("PPL = %.6f +/- %.5f\n", r.ppl, r.ppl_err);
    return 0;
}

int cmd_bench(const Args& a) {
    const std::string model_path = need_model(a, "bench");
    const int64_t reps = a.integer("-r", 5, 1, 1000);
    const int64_t batch = a.integer("-b", 8, 1, 4096), seq = a.integer("-s", 128, 2, 1 << 16);
    cq::BenchOptions o;
    o.n_prompt = a.integer("-p", 512, 0, 1 << 20);
    o.n_gen = a.integer("-n", 128, 0, 1 << 20);
    o.repetitions = reps;
    if (cq::is_encoder_model(model_path)) {
        auto model = cq::EncoderModel::load(model_path);
        const auto r = cq::bench_encoder(*model, batch, seq, reps, 1);
        std::printf("| model | isa | batch x seq | median ms | min ms | max ms |\n|---|---|---:|---:|---:|---:|\n");
        std::printf("| %s | %s | %lld x %lld | %.2f | %.2f | %.2f |\n", model_path.c_str(), r.isa.c_str(), (long long)r.batch,
                    (long long)r.seq, r.median_ms, r.min_ms, r.max_ms);
        return 0;
    }
    cq::LoadOptions lo;
    lo.n_ctx = o.n_prompt + o.n_gen;
    auto model = cq::LanguageModel::load(model_path, lo);
    std::cout << cq::bench_to_markdown(cq::bench_model(*model, o));
    return 0;
}

int cmd_eval(const Args& a) {
    const std::string model_path = need_model(a, "eval");
    if (!a.has("--data")) throw cq::InvalidArgument("eval needs --data FILE");
    cq::DataSelection sel;
    if (a.has("--range")) {
        const std::string spec = a.str("--range");
        const auto colon = spec.find(':');
        const auto bad = [&] { return cq::InvalidArgument("--range '" + spec + "' is not FIRST:END (e.g. 0:100, or 100: for the rest)"); };
        if (colon == std::string::npos || colon == 0 || spec.find_first_not_of("0123456789:") != std::string::npos) throw bad();
        sel.first = std::stoll(spec.substr(0, colon));
        const std::string end = spec.substr(colon + 1);
        if (!end.empty()) {
            const long long e = std::stoll(end);
            if (e < sel.first) throw bad();
            sel.count = e - sel.first;
        }
    }
    auto model = cq::EncoderModel::load(model_path);
    const cq::LabelledData data = cq::load_labelled_data(a.str("--data"), *model, sel);
    const auto r = cq::classify_dataset(*model, data, {});
    std::printf("%s: accuracy %.4f (%lld/%lld correct), %.2f s, %s kernels\n", data.source.c_str(), r.accuracy,
                (long long)r.correct, (long long)r.samples, r.seconds, std::string(cq::isa_level_name(cq::kernel_table().level)).c_str());
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    try {
        int i = 1;
        int threads = 0;
        if (i + 1 < argc && (std::strcmp(argv[i], "-t") == 0 || std::strcmp(argv[i], "--threads") == 0)) {
            char* end = nullptr;
            const long t = std::strtol(argv[i + 1], &end, 10);
            if (*end || t < 0 || t > 4096) throw cq::InvalidArgument(std::string("-t '") + argv[i + 1] + "' is not a thread count");
            threads = int(t);
            i += 2;
        }
        if (i >= argc || std::strcmp(argv[i], "--help") == 0 || std::strcmp(argv[i], "-h") == 0) {
            std::fputs(kUsage, i >= argc ? stderr : stdout);
            return i >= argc ? 2 : 0;
        }
        if (std::strcmp(argv[i], "--version") == 0) {
            std::printf("cq-run %s\n", CQ_VERSION);
            return 0;
        }
        cq::ThreadPool::set_global_threads(threads);
        const std::string cmd = argv[i];
        const int rest = i + 1;
        if (cmd == "info") return cmd_info(parse(argc, argv, rest, {}, {"--kernels"}));
        if (cmd == "run") return cmd_run(parse(argc, argv, rest, {"-p", "-f", "-n", "-c", "--temp", "--seed"}, {}));
        if (cmd == "perplexity") return cmd_perplexity(parse(argc, argv, rest, {"-f", "-c", "--chunks"}, {}));
        if (cmd == "bench") return cmd_bench(parse(argc, argv, rest, {"-p", "-n", "-r", "-b", "-s"}, {}));
        if (cmd == "eval") return cmd_eval(parse(argc, argv, rest, {"--data", "--range"}, {}));
        throw cq::InvalidArgument("unknown command '" + cmd + "' (run, perplexity, bench, eval, info)");
    } catch (const cq::InvalidArgument& e) {
        std::fprintf(stderr, "cq-run: error: %s\n", e.what());
        return 2;
    } catch (const cq::Error& e) {
        std::fprintf(stderr, "cq-run: error: %s\n", e.what());
        return 1;
    } catch (const std::bad_alloc&) {
        std::fprintf(stderr, "cq-run: error: out of memory\n");
        return 1;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "cq-run: internal error: %s\n", e.what());
        return 3;
    }
}
