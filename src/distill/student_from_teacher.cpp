// A student built from some of a teacher's blocks (DistilBERT's initialisation): the teacher's HF directory copied
// with only the chosen blocks, renumbered 0, 1, …, and config.json's layer count changed. Tensors keep their dtype
// and bytes, so the student starts as exactly those teacher layers.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <regex>
#include <sstream>

#include <nlohmann/json.hpp>

#include "cq/distill.h"
#include "cq/error.h"
#include "cq/io/safetensors.h"
#include "cq/mapped_file.h"
#include "io/hf/hf_dir_writer.h"

namespace cq {

StudentSpec parse_student_spec(const std::string& spec, int64_t n_layers) {
    StudentSpec s;
    const auto eq = spec.find('=');
    const std::string kind = eq == std::string::npos ? "" : spec.substr(0, eq), value = eq == std::string::npos ? "" : spec.substr(eq + 1);
    if (kind == "layers") {
        std::stringstream in(value);
        std::string item;
        while (std::getline(in, item, ',')) {
            size_t used = 0;
            int64_t l = -1;
            try {
                l = std::stoll(item, &used);
            } catch (const std::exception&) {
                used = 0;
            }
            if (used == 0 || used != item.size() || l < 0)
                throw InvalidArgument("[distill] --student-from-teacher: '" + item + "' in '" + spec + "' is not a layer index");
            if (l >= n_layers)
                throw InvalidArgument("[distill] --student-from-teacher: layer " + item + " does not exist (the teacher has " +
                                      std::to_string(n_layers) + ")");
            if (!s.layers.empty() && l <= s.layers.back())
                throw InvalidArgument("[distill] --student-from-teacher: layers must increase ('" + spec + "')");
            s.layers.push_back(l);
        }
    } else if (kind == "depth") {
        double f = 0;
        try {
            size_t used = 0;
            f = std::stod(value, &used);
            if (used != value.size()) f = 0;
        } catch (const std::exception&) {
            f = 0;
        }
        if (!(f > 0.0 && f <= 1.0)) throw InvalidArgument("[distill] --student-from-teacher depth=" + value + " must be in (0, 1]");
        const int64_t keep = std::max<int64_t>(1, static_cast<int64_t>(std::llround(f * static_cast<double>(n_layers))));
        // evenly spaced from the first block: i · n / keep (depth=0.5 of 6 → 0, 2, 4)
        for (int64_t i = 0; i < keep; ++i) s.layers.push_back(i * n_layers / keep);
    } else {
        throw InvalidArgument("[distill] --student-from-teacher '" + spec + "' is not layers=I,J,… or depth=F");
    }
    if (s.layers.empty()) throw InvalidArgument("[distill] --student-from-teacher '" + spec + "' keeps no layer");
    return s;
}

void write_student_from_teacher(const std::string& teacher_dir, const StudentSpec& spec, const std::string& out_dir) {
    namespace fs = std::filesystem;
    const fs::path src(teacher_dir);
    if (!fs::is_directory(src) || !fs::exists(src / "config.json"))
        throw InvalidArgument("[distill] the teacher '" + teacher_dir + "' is not an HF directory (config.json + model.safetensors)");
    nlohmann::json config = hf::read_config(src);
    const char* key = config.contains("num_hidden_layers") ? "num_hidden_layers" : config.contains("n_layer") ? "n_layer" : nullptr;
    if (!key || !config[key].is_number_integer())
        throw FormatError("json", (src / "config.json").string(), 0, "no integer num_hidden_layers / n_layer");
    const int64_t n_layers = config[key].get<int64_t>();
    for (int64_t l : spec.layers)
        if (l < 0 || l >= n_layers) throw InvalidArgument("[distill] layer " + std::to_string(l) + " is outside the teacher's " + std::to_string(n_layers));
    const safetensors::Model st = safetensors::Model::open(teacher_dir);

    // Block tensors: "<prefix>.layers.N.…" (LLaMA), ".layer.N." (BERT), "h.N." (GPT-2).
    const std::regex block_re(R"(^(.*?(?:^|\.)(?:layers|layer|h)\.)(\d+)(\..*)$)");
    struct Out {
        std::string name;
        const safetensors::TensorInfo* info;
    };
    std::vector<Out> outs;
    for (const safetensors::TensorInfo* t : st.tensors()) {
        std::smatch m;
        if (!std::regex_match(t->name, m, block_re)) {
            outs.push_back({t->name, t});
            continue;
        }
        const int64_t l = std::stoll(m[2].str());
        const auto it = std::find(spec.layers.begin(), spec.layers.end(), l);
        if (it == spec.layers.end()) continue;
        outs.push_back({m[1].str() + std::to_string(it - spec.layers.begin()) + m[3].str(), t});
    }
    std::error_code ec;
    fs::create_directories(out_dir, ec);
    if (ec) throw IoError("[distill] cannot create the directory '" + out_dir + "': " + ec.message());
    if (fs::equivalent(src, out_dir, ec)) throw InvalidArgument("[distill] the student directory is the teacher's own: '" + out_dir + "'");

    std::vector<safetensors::TensorToWrite> entries;
    for (const Out& o : outs) entries.push_back({o.name, o.info->dtype_name, o.info->shape, o.info->nbytes, nullptr});
    // The teacher's bytes as they are (any dtype), one tensor at a time.
    safetensors::write_file((fs::path(out_dir) / "model.safetensors").string(), entries,
                            {{"format", "pt"}, {"written_by", "cq distill --student-from-teacher"}},
                            [&](size_t i, const std::function<void(const void*, size_t)>& write) {
                                const Tensor t = st.tensor(outs[i].info->name);
                                write(t.data(), outs[i].info->nbytes);
                            });
    config[key] = static_cast<int64_t>(spec.layers.size());
    hf::write_config(out_dir, config);
    hf::copy_side_files(src, out_dir, "[distill]");
}

}  // namespace cq
