// libFuzzer target for the JSON-driven paths, which read files by name: the first input byte picks
//   0: the bytes are model.safetensors.index.json next to two valid shards (a.safetensors holds x,
//      b.safetensors holds y) → safetensors::Model::open;
//   1: the bytes are config.json of an HF directory with valid weights → hf::open_model_dir and
//      summarize_model (what `cq info` does);
//   2: the bytes are shard a.safetensors behind a fixed, valid index → Model::open through mmap.
// The library has no in-memory entry point for these, so the input is written to a private temp
// directory (created once per process, removed at exit).
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cq/error.h"
#include "cq/inspect.h"
#include "cq/io/safetensors.h"
#include "fuzz_common.h"
#include "io/hf/hf_model.h"

namespace {

namespace fs = std::filesystem;

void write_file(const fs::path& path, const uint8_t* data, size_t size) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
    if (!out) {
        std::fprintf(stderr, "fuzz_safetensors_index: cannot write %s\n", path.c_str());
        std::abort();
    }
}
void write_file(const fs::path& path, const std::string& text) {
    write_file(path, reinterpret_cast<const uint8_t*>(text.data()), text.size());
}

// A valid single-tensor safetensors file: `name` as U8[4].
std::string shard(const std::string& name) {
    const std::string header = "{\"__metadata__\":{\"format\":\"pt\"},\"" + name +
                               "\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]}}";
    std::string out(8, '\0');
    const uint64_t n = header.size();
    for (int i = 0; i < 8; ++i) out[i] = static_cast<char>(n >> (8 * i));
    return out + header + "abcd";
}

struct Workspace {
    fs::path root, index_dir, hf_dir, shard_dir;
    Workspace() {
        std::string tmpl = (fs::temp_directory_path() / "cq_fuzz_index_XXXXXX").string();
        if (!mkdtemp(tmpl.data())) {
            std::perror("mkdtemp");
            std::abort();
        }
        root = tmpl;
        index_dir = root / "index";
        hf_dir = root / "hf";
        shard_dir = root / "shard";
        for (const auto& d : {index_dir, hf_dir, shard_dir}) fs::create_directory(d);
        write_file(index_dir / "a.safetensors", shard("x"));
        write_file(index_dir / "b.safetensors", shard("y"));
        write_file(hf_dir / "model.safetensors", shard("w"));
        write_file(shard_dir / "b.safetensors", shard("y"));
        write_file(shard_dir / "model.safetensors.index.json",
                   std::string(R"({"metadata":{"total_size":8},"weight_map":{"x":"a.safetensors","y":"b.safetensors"}})"));
    }
    ~Workspace() {
        std::error_code ec;
        fs::remove_all(root, ec);
    }
};

Workspace& workspace() {
    static Workspace w;
    return w;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    workspace();
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size == 0) return 0;
    const Workspace& w = workspace();
    const uint8_t mode = data[0] % 3;
    ++data;
    --size;
    try {
        if (mode == 0) {
            write_file(w.index_dir / "model.safetensors.index.json", data, size);
            cq::fuzz::touch(cq::safetensors::Model::open((w.index_dir / "model.safetensors.index.json").string()));
        } else if (mode == 1) {
            write_file(w.hf_dir / "config.json", data, size);
            const auto dir = cq::hf::open_model_dir(w.hf_dir.string());
            cq::fuzz::touch(dir.weights);
            const auto summary = cq::summarize_model(w.hf_dir.string());
            for (const auto& e : summary.metadata)  // as `cq info --json` reads it back
                if (nlohmann::json::parse(e.json).is_discarded()) std::abort();
        } else {
            write_file(w.shard_dir / "a.safetensors", data, size);
            cq::fuzz::touch(cq::safetensors::Model::open(w.shard_dir.string()));
        }
    } catch (const cq::Error&) {
    }
    return 0;
}
