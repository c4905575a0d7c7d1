// config.json and the side files of an HF directory cq writes (cq/io/hf/hf_dir_writer.h).
#include "io/hf/hf_dir_writer.h"

#include "cq/atomic_file.h"
#include "cq/error.h"
#include "cq/mapped_file.h"

namespace cq::hf {

namespace fs = std::filesystem;

nlohmann::json read_config(const fs::path& dir) {
    try {
        return nlohmann::json::parse(read_text_file((dir / "config.json").string(), 1 << 24));
    } catch (const nlohmann::json::exception& e) {
        throw FormatError("json", (dir / "config.json").string(), 0, e.what());
    }
}

void write_config(const fs::path& output_dir, const nlohmann::json& config) {
    AtomicFile out((output_dir / "config.json").string());
    const std::string text = config.dump(2) + "\n";
    out.write(text.data(), text.size());
    out.commit();
}

void copy_side_files(const fs::path& source_dir, const fs::path& output_dir, const std::string& what, bool with_config) {
    std::error_code ec;
    for (const char* name : {"config.json", "generation_config.json", "tokenizer.model", "tokenizer.json", "tokenizer_config.json",
                             "special_tokens_map.json", "vocab.txt", "vocab.json", "merges.txt", "added_tokens.json", "spiece.model",
                             "preprocessor_config.json"}) {
        if ((!with_config && std::string(name) == "config.json") || !fs::exists(source_dir / name)) continue;
        fs::copy_file(source_dir / name, output_dir / name, fs::copy_options::overwrite_existing, ec);
        if (ec) throw IoError(what + " cannot copy '" + (source_dir / name).string() + "' to '" + output_dir.string() + "': " + ec.message());
        // Read-only sources (the shared fixtures) must not leave read-only copies a later run cannot overwrite.
        fs::permissions(output_dir / name, fs::perms::owner_read | fs::perms::owner_write, fs::perm_options::add, ec);
    }
}

}  // namespace cq::hf
