// This machine's peaks, one core and all cores: FP32 FMA (ymm/zmm), BF16 dot, INT8 dot (AVX2's
// vpmaddubsw step, VNNI's vpdpbusd) and streaming read bandwidth, so other benchmarks' "% of peak"
// can be checked against one table. Each probe is repeated (median), interleaved across probes so a
// burst of load from other work does not land on one probe only.
// Usage: bench_peaks [--threads N] [--seconds S] [--repeats R] [--json]
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "cq/cpu_features.h"
#include "peak_probes.h"

namespace {

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v.empty() ? 0.0 : (v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2);
}

std::string json_escape(const std::string& s) {
    std::string out;
    for (char c : s) {
        if (c == '"' || c == '\\') out += '\\';
        out += c;
    }
    return out;
}

}  // namespace

int main(int argc, char** argv) {
    int threads = int(std::max(1u, std::thread::hardware_concurrency()));
    double seconds = 0.25;
    int repeats = 3;
    bool json = false;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "--threads" && i + 1 < argc) threads = std::max(1, std::atoi(argv[++i]));
        else if (a == "--seconds" && i + 1 < argc) seconds = std::atof(argv[++i]);
        else if (a == "--repeats" && i + 1 < argc) repeats = std::max(1, std::atoi(argv[++i]));
        else if (a == "--json") json = true;
        else {
            std::fprintf(stderr, "usage: bench_peaks [--threads N] [--seconds S] [--repeats R] [--json]\n");
            return 2;
        }
    }
    const auto probes = cq::bench::peak_probes();
    std::vector<std::vector<double>> one(probes.size()), all(probes.size());
    for (int r = 0; r < repeats; ++r)
        for (size_t p = 0; p < probes.size(); ++p) {
            one[p].push_back(probes[p].run(seconds));
            all[p].push_back(cq::bench::run_on_threads(probes[p], threads, seconds));
        }
    const cq::CpuFeatures& f = cq::cpu_features();
    if (json) {
        std::printf("{\"cpu\": \"%s\", \"vendor\": \"%s\", \"family\": %d, \"model\": %d, \"threads\": %d, \"probes\": [",
                    json_escape(f.brand).c_str(), f.vendor.c_str(), f.family, f.model, threads);
        for (size_t p = 0; p < probes.size(); ++p)
            std::printf("%s\n  {\"name\": \"%s\", \"what\": \"%s\", \"unit\": \"%s\", \"one_core\": %.2f, \"all_cores\": %.2f}",
                        p ? "," : "", probes[p].name.c_str(), json_escape(probes[p].what).c_str(), probes[p].unit.c_str(),
                        median(one[p]), median(all[p]));
        std::printf("\n]}\n");
        return 0;
    }
    std::printf("cpu: %s (%s family %d model %d), %d threads, median of %d × %.2f s\n\n", f.brand.c_str(), f.vendor.c_str(),
                f.family, f.model, threads, repeats, seconds);
    std::printf("| probe | instruction | unit | one core | %d threads | scaling |\n|---|---|---|---:|---:|---:|\n", threads);
    for (size_t p = 0; p < probes.size(); ++p) {
        const double o = median(one[p]), a = median(all[p]);
        std::printf("| %s | %s | %s | %.1f | %.1f | %.2f× |\n", probes[p].name.c_str(), probes[p].what.c_str(),
                    probes[p].unit.c_str(), o, a, a / o);
    }
}
