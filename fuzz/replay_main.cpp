// A main() for the fuzz targets where libFuzzer is absent (GCC builds, the Release and ASan test stages): it
// feeds LLVMFuzzerTestOneInput every seed file and, for each, a fixed set of deterministic mutations (truncations,
// byte overwrites with boundary values, bit flips, 32- and 64-bit length fields set huge, duplicated spans). The
// coverage-guided search stays with scripts/fuzz (clang, libFuzzer); this replays the corpus and its near
// neighbours on every test run, so a reader that starts crashing on hostile input fails the suite, not just a
// fuzzing session. Same seeds, same mutations, same order on every run.
// Usage: fuzz_replay_<target> [--mutations N] [--max-len BYTES] PATH...   (a PATH may be a file or a folder)
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {

namespace fs = std::filesystem;
using Bytes = std::vector<uint8_t>;

// splitmix64: a tiny generator whose sequence is fixed by its seed on every platform.
struct Rng {
    uint64_t state;
    uint64_t next() {
        uint64_t z = (state += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        return z ^ (z >> 31);
    }
    size_t below(size_t n) { return n ? static_cast<size_t>(next() % n) : 0; }
};

void run_one(const Bytes& b) { LLVMFuzzerTestOneInput(b.empty() ? nullptr : b.data(), b.size()); }

// Values that sit on the edges readers get wrong: zero, all ones, sign bits, and lengths just past any buffer.
constexpr uint8_t kBoundaryBytes[] = {0x00, 0xff, 0x7f, 0x80, 0x01, 0xfe};
constexpr uint64_t kBoundaryWords[] = {0, 1, 0x7fffffffull, 0x80000000ull, 0xffffffffull, 0x7fffffffffffffffull,
                                       0xffffffffffffffffull, 0x100000000ull};

Bytes mutate(const Bytes& seed, Rng& rng) {
    Bytes b = seed;
    if (b.empty()) {
        b.push_back(static_cast<uint8_t>(rng.next()));
        return b;
    }
    switch (rng.below(6)) {
        case 0:  // truncate
            b.resize(rng.below(b.size()));
            break;
        case 1:  // one byte set to a boundary value
            b[rng.below(b.size())] = kBoundaryBytes[rng.below(std::size(kBoundaryBytes))];
            break;
        case 2:  // a few bit flips
            for (int i = 0, n = 1 + static_cast<int>(rng.below(4)); i < n; ++i)
                b[rng.below(b.size())] ^= static_cast<uint8_t>(1u << rng.below(8));
            break;
        case 3: {  // a little-endian 32- or 64-bit field set to a boundary value (lengths, counts, offsets)
            const size_t width = rng.below(2) ? 8 : 4;
            if (b.size() < width) break;
            const size_t at = rng.below(b.size() - width + 1);
            const uint64_t v = kBoundaryWords[rng.below(std::size(kBoundaryWords))];
            for (size_t i = 0; i < width; ++i) b[at + i] = static_cast<uint8_t>(v >> (8 * i));
            break;
        }
        case 4: {  // a span repeated in place (nested structures, repeated keys)
            const size_t from = rng.below(b.size());
            const size_t len = 1 + rng.below(std::min<size_t>(64, b.size() - from));
            const Bytes span(b.begin() + static_cast<std::ptrdiff_t>(from),
                             b.begin() + static_cast<std::ptrdiff_t>(from + len));
            b.insert(b.begin() + static_cast<std::ptrdiff_t>(from), span.begin(), span.end());
            break;
        }
        default:  // a span removed
        {
            const size_t from = rng.below(b.size());
            const size_t len = 1 + rng.below(std::min<size_t>(64, b.size() - from));
            b.erase(b.begin() + static_cast<std::ptrdiff_t>(from), b.begin() + static_cast<std::ptrdiff_t>(from + len));
            break;
        }
    }
    return b;
}

Bytes read_file(const fs::path& p, size_t max_len) {
    std::ifstream in(p, std::ios::binary);
    Bytes b((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (!in.eof() && in.fail()) {
        std::fprintf(stderr, "fuzz replay: cannot read %s\n", p.c_str());
        std::exit(2);
    }
    if (b.size() > max_len) b.resize(max_len);
    return b;
}

}  // namespace

int main(int argc, char** argv) {
    size_t mutations = 512, max_len = 65536;
    std::vector<fs::path> files;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if ((a == "--mutations" || a == "--max-len") && i + 1 < argc) {
            char* end = nullptr;
            const unsigned long long v = std::strtoull(argv[++i], &end, 10);
            if (!end || *end) {
                std::fprintf(stderr, "fuzz replay: %s wants a whole number, got '%s'\n", a.c_str(), argv[i]);
                return 2;
            }
            (a == "--mutations" ? mutations : max_len) = static_cast<size_t>(v);
        } else if (fs::is_directory(a)) {
            for (const auto& e : fs::directory_iterator(a))
                if (e.is_regular_file()) files.push_back(e.path());
        } else if (fs::is_regular_file(a)) {
            files.push_back(a);
        } else {
            std::fprintf(stderr, "fuzz replay: '%s' is neither a file nor a folder\n", a.c_str());
            return 2;
        }
    }
    if (files.empty()) {
        std::fprintf(stderr, "usage: %s [--mutations N] [--max-len BYTES] PATH...  (no seed files given)\n", argv[0]);
        return 2;
    }
    std::sort(files.begin(), files.end());  // directory order is not fixed; the replay is
    size_t inputs = 0;
    for (const auto& f : files) {
        const Bytes seed = read_file(f, max_len);
        run_one(seed);
        uint64_t name_hash = 0xcbf29ce484222325ull;  // FNV-1a of the file name: the seed of its mutations
        for (unsigned char c : f.filename().string()) name_hash = (name_hash ^ c) * 0x100000001b3ull;
        Rng rng{name_hash ^ seed.size()};
        for (size_t m = 0; m < mutations; ++m) run_one(mutate(seed, rng));
        inputs += 1 + mutations;
    }
    std::printf("fuzz replay: %zu seeds, %zu inputs, no finding\n", files.size(), inputs);
    return 0;
}
