// The GGUF side of the quantizer's model source: tensors are zero-copy views of the input mapping and
// the metadata is copied as it is. (The HF side is hf_model_source.cpp.)
#include "quant/model_source.h"

#include <cstring>
#include <filesystem>
#include <memory>

#include "core/sha256.h"
#include "cq/error.h"
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

// GGUF row h·hd + 2i + j ← HF row h·hd + j·hd/2 + i (reshape(n_head, 2, hd/2, ...).swapaxes(1, 2)).
void unpermute_head_rows(const uint8_t* x, uint8_t* out, int64_t rows, int64_t n_head, uint64_t row_bytes) {
    const int64_t hd = rows / n_head, half = hd / 2;
    for (int64_t h = 0; h < n_head; ++h)
        for (int64_t i = 0; i < half; ++i)
            for (int64_t j = 0; j < 2; ++j)
                std::memcpy(out + static_cast<uint64_t>(h * hd + 2 * i + j) * row_bytes,
                            x + static_cast<uint64_t>(h * hd + j * half + i) * row_bytes, row_bytes);
}

ModelSource open_model_source(const std::string& path) {
    std::error_code ec;
#if defined(CQ_MINIMAL)
    if (std::filesystem::is_directory(path, ec))
        throw Unsupported("[quantize] " + path + ": HF model directories need the full cq build (this is the CQ_MINIMAL runtime)");
    return open_gguf_source(path);
#else
    return std::filesystem::is_directory(path, ec) ? open_hf_source(path) : open_gguf_source(path);
#endif
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
