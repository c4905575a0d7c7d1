// The GGUF side of the quantizer's model source: tensors are zero-copy views of the input mapping and
// the metadata is copied as it is. (The HF side is hf_model_source.cpp.)
#include "quant/model_source.h"

#include <filesystem>
#include <memory>

#include "core/sha256.h"
#include "cq/io/gguf.h"

namespace cq::quant {

namespace {
bool ends_with(const std::string& s, const std::string& suffix) {
    return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}
}  // namespace

bool is_quantizable(const std::string& name, const std::vector<int64_t>& shape) {
    return ends_with(name, "weight") && shape.size() >= 2 && !ends_with(name, "_norm.weight") && name != "position_embd.weight" &&
           name != "token_types.weight";
}

ModelSource open_model_source(const std::string& path) {
    std::error_code ec;
    return std::filesystem::is_directory(path, ec) ? open_hf_source(path) : open_gguf_source(path);
}

ModelSource open_gguf_source(const std::string& path) {
    auto in = std::make_shared<const gguf::File>(gguf::File::open(path));
    ModelSource s;
    s.path = path;
    s.display_name = std::filesystem::path(path).filename().string();
    s.file_bytes = in->file_size();
    s.arch = in->architecture();
    s.n_layer = in->get_int(s.arch + ".block_count").value_or(0);
    s.n_head = in->get_int(s.arch + ".attention.head_count").value_or(1);
    s.n_head_kv = in->get_int(s.arch + ".attention.head_count_kv").value_or(s.n_head);
    s.alignment = in->alignment();
    for (const auto& t : in->tensors()) {
        SourceTensor st;
        st.name = t.name, st.shape = t.shape, st.dtype = st.kept = t.dtype, st.nbytes = t.nbytes, st.numel = t.numel;
        st.read = [in, &t](std::vector<uint8_t>&) { return static_cast<const uint8_t*>(in->tensor(t).data()); };
        s.tensors.push_back(std::move(st));
    }
    s.write_metadata = [in](gguf::Writer& w) { w.copy_metadata(*in); };
    s.sha256 = [path] { return sha256_file(path); };
    return s;
}

}  // namespace cq::quant
