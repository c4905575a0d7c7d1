// safetensors parser: u64 header length, a JSON header (depth-limited, duplicate keys rejected),
// then tensor data that must tile the data section exactly (sorted by offset: no gap, no overlap),
// as the reference implementation requires. Sharded models are stitched together by the index.
#include <algorithm>
#include <cstring>
#include <filesystem>
#include <set>

#include <nlohmann/json.hpp>

#include "cq/error.h"
#include "cq/io/safetensors.h"
#include "io/tensor_table.h"

namespace cq::safetensors {

using nlohmann::json;

namespace {

struct NamedDType {
    std::string_view name;
    DType dtype;
};
constexpr NamedDType kDTypes[] = {
    {"F64", DType::F64}, {"F32", DType::F32}, {"F16", DType::F16},   {"BF16", DType::BF16},
    {"I64", DType::I64}, {"I32", DType::I32}, {"I16", DType::I16},   {"I8", DType::I8},
    {"U64", DType::U64}, {"U32", DType::U32}, {"U16", DType::U16},   {"U8", DType::U8},
    {"BOOL", DType::BOOL}, {"F8_E4M3", DType::F8_E4M3}, {"F8_E5M2", DType::F8_E5M2},
};

// Parses JSON text, rejecting documents nested deeper than `max_depth` and duplicate keys in any
// object (nlohmann would silently keep the last one). Errors carry the byte offset in the file.
json parse_strict_json(const char* text, size_t size, uint32_t max_depth, const std::string& format,
                       const std::string& file, uint64_t base_offset) {
    std::vector<std::set<std::string>> keys_per_level;
    std::string problem;
    auto callback = [&](int depth, json::parse_event_t event, json& parsed) -> bool {
        switch (event) {
            case json::parse_event_t::object_start:
            case json::parse_event_t::array_start:
                if (static_cast<uint32_t>(depth) >= max_depth && problem.empty())
                    problem = "JSON nested deeper than " + std::to_string(max_depth) + " levels";
                if (event == json::parse_event_t::object_start) keys_per_level.emplace_back();
                else keys_per_level.emplace_back();  // arrays hold no keys, but keep levels aligned
                break;
            case json::parse_event_t::object_end:
            case json::parse_event_t::array_end:
                if (!keys_per_level.empty()) keys_per_level.pop_back();
                break;
            case json::parse_event_t::key: {
                const std::string key = parsed.get<std::string>();
                if (!keys_per_level.empty() && !keys_per_level.back().insert(key).second && problem.empty())
                    problem = "duplicate JSON key '" + key + "'";
                break;
            }
            case json::parse_event_t::value: break;
        }
        return problem.empty();  // stop building the document after the first problem
    };
    json doc;
    try {
        doc = json::parse(text, text + size, callback, /*allow_exceptions=*/true);
    } catch (const json::parse_error& e) {
        const uint64_t at = base_offset + (e.byte > 0 ? e.byte - 1 : 0);
        throw FormatError(format, file, at, std::string("malformed JSON: ") + e.what());
    } catch (const json::exception& e) {  // e.g. a number too large for any C++ type
        throw FormatError(format, file, base_offset, std::string("unreadable JSON: ") + e.what());
    }
    if (!problem.empty()) throw FormatError(format, file, base_offset, problem);
    return doc;
}

uint64_t as_offset(const json& v, const std::string& file, const std::string& what) {
    if (!v.is_number_unsigned()) throw FormatError("safetensors", file, 8, what + " is not a non-negative integer");
    return v.get<uint64_t>();
}

}  // namespace

std::optional<DType> dtype_from_safetensors_name(std::string_view name) {
    for (const auto& d : kDTypes)
        if (d.name == name) return d.dtype;
    return std::nullopt;
}

File File::open(const std::string& path, const Limits& limits) { return parse(map_file(path), limits); }

File File::parse(std::shared_ptr<const ByteSource> source, const Limits& limits) {
    const std::string& name = source->name();
    auto fail = [&](uint64_t at, const std::string& what) -> void { throw FormatError("safetensors", name, at, what); };
    File f;
    f.source_ = source;
    const uint64_t size = source->size();
    if (size < 8) fail(0, "file is " + std::to_string(size) + " bytes, too short for the 8-byte header length");
    uint64_t n = 0;
    std::memcpy(&n, source->data(), 8);
    if (n > limits.max_header_bytes)
        fail(0, "header length " + std::to_string(n) + " exceeds the limit of " + std::to_string(limits.max_header_bytes) + " bytes");
    if (n > size - 8)
        fail(0, "header length " + std::to_string(n) + " runs past the end of the file (" + std::to_string(size) + " bytes)");
    if (n < 2 || source->data()[8] != '{') fail(8, "header is not a JSON object");
    f.header_size_ = n;
    const json header =
        parse_strict_json(reinterpret_cast<const char*>(source->data()) + 8, n, limits.max_json_depth, "safetensors", name, 8);
    if (!header.is_object()) fail(8, "header is not a JSON object");

    const uint64_t data_bytes = size - 8 - n;
    for (const auto& [key, entry] : header.items()) {
        if (key == "__metadata__") {
            if (!entry.is_object()) fail(8, "__metadata__ is not an object of strings");
            for (const auto& [mk, mv] : entry.items()) {
                if (!mv.is_string()) fail(8, "__metadata__ value '" + mk + "' is not a string");
                f.metadata_[mk] = mv.get<std::string>();
            }
            continue;
        }
        const std::string where = "tensor '" + key + "'";
        if (!entry.is_object()) fail(8, where + " entry is not an object");
        const auto dt = entry.find("dtype");
        const auto sh = entry.find("shape");
        const auto off = entry.find("data_offsets");
        if (dt == entry.end() || !dt->is_string()) fail(8, where + " has no dtype string");
        if (sh == entry.end() || !sh->is_array()) fail(8, where + " has no shape array");
        if (off == entry.end() || !off->is_array() || off->size() != 2) fail(8, where + " has no [begin, end] data_offsets");
        TensorInfo t;
        t.name = key;
        t.dtype_name = dt->get<std::string>();
        const auto dtype = dtype_from_safetensors_name(t.dtype_name);
        if (!dtype) fail(8, where + " has unknown dtype '" + t.dtype_name + "'");
        t.dtype = *dtype;
        if (sh->size() > limits.max_rank)
            fail(8, where + " has " + std::to_string(sh->size()) + " dimensions (limit " + std::to_string(limits.max_rank) + ")");
        for (const auto& d : *sh) {
            const uint64_t v = as_offset(d, name, where + " shape entry");
            if (v > static_cast<uint64_t>(INT64_MAX)) fail(8, where + " has a dimension of " + std::to_string(v));
            t.shape.push_back(static_cast<int64_t>(v));
        }
        const auto numel = checked_numel(t.shape);
        if (!numel) fail(8, where + " has too many elements (the shape overflows)");
        t.numel = *numel;
        t.begin = as_offset((*off)[0], name, where + " data_offsets[0]");
        t.end = as_offset((*off)[1], name, where + " data_offsets[1]");
        if (t.begin > t.end) fail(8, where + " has data_offsets begin " + std::to_string(t.begin) + " > end " + std::to_string(t.end));
        const auto bytes = dtype_bytes(t.dtype, static_cast<uint64_t>(t.numel));
        if (!bytes || *bytes != t.end - t.begin)
            fail(8, where + " (" + t.dtype_name + " " + std::to_string(t.numel) + " elements) needs " +
                        (bytes ? std::to_string(*bytes) : std::string("too many")) + " bytes but data_offsets span " +
                        std::to_string(t.end - t.begin));
        if (t.end > data_bytes)
            fail(8 + n + t.begin, where + " ends at data offset " + std::to_string(t.end) + ", past the end of the file (data section is " +
                                     std::to_string(data_bytes) + " bytes)");
        t.nbytes = t.end - t.begin;
        t.file_offset = 8 + n + t.begin;
        f.tensors_.push_back(std::move(t));
    }
    std::sort(f.tensors_.begin(), f.tensors_.end(),
              [](const TensorInfo& a, const TensorInfo& b) { return std::tie(a.begin, a.end) < std::tie(b.begin, b.end); });
    uint64_t expected = 0;
    for (const auto& t : f.tensors_) {
        if (t.begin < expected) fail(8 + n + t.begin, "tensor '" + t.name + "' overlaps the tensor before it");
        if (t.begin > expected)
            fail(8 + n + expected, "gap of " + std::to_string(t.begin - expected) + " bytes before tensor '" + t.name + "'");
        expected = t.end;
    }
    if (expected != data_bytes)
        fail(8 + n + expected, std::to_string(data_bytes - expected) + " bytes after the last tensor are not described by the header");
    for (size_t i = 0; i < f.tensors_.size(); ++i) f.index_.emplace(f.tensors_[i].name, i);
    return f;
}

const TensorInfo* File::find_tensor(std::string_view name) const { return io::find_by_name(index_, tensors_, name); }

Tensor File::tensor(const TensorInfo& info) const {
    return Tensor::borrowed(info.shape, info.dtype, source_->data() + info.file_offset, source_);
}

Tensor File::tensor(std::string_view name) const { return io::tensor_named(*this, name, "safetensors"); }

Model Model::open(const std::string& path, const Limits& limits) {
    namespace fs = std::filesystem;
    std::error_code ec;
    fs::path p(path);
    if (fs::is_directory(p, ec)) {
        if (fs::exists(p / "model.safetensors.index.json", ec)) p /= "model.safetensors.index.json";
        else if (fs::exists(p / "model.safetensors", ec)) p /= "model.safetensors";
        else throw IoError("[safetensors] " + path + ": no model.safetensors or model.safetensors.index.json in this directory");
    }
    Model m;
    if (p.extension() != ".json") {
        m.shards_.push_back(File::open(p.string(), limits));
    } else {
        m.index_path_ = p.string();
        const std::string text = read_text_file(m.index_path_, limits.max_header_bytes);
        const json index = parse_strict_json(text.data(), text.size(), limits.max_json_depth, "safetensors-index", m.index_path_, 0);
        const auto wm = index.is_object() ? index.find("weight_map") : index.end();
        if (!index.is_object() || wm == index.end() || !wm->is_object())
            throw FormatError("safetensors-index", m.index_path_, 0, "no \"weight_map\" object");
        std::map<std::string, std::vector<std::string>> names_by_shard;
        for (const auto& [tensor, shard] : wm->items()) {
            if (!shard.is_string()) throw FormatError("safetensors-index", m.index_path_, 0, "weight_map entry '" + tensor + "' is not a file name");
            const std::string file = shard.get<std::string>();
            if (file.empty() || file.find('\0') != std::string::npos || file.find('/') != std::string::npos || file.find('\\') != std::string::npos || file == "." || file == "..")
                throw FormatError("safetensors-index", m.index_path_, 0,
                                  "weight_map entry '" + tensor + "' names '" + file + "', which is not a plain file name in the same directory");
            names_by_shard[file].push_back(tensor);
        }
        for (const auto& [file, names] : names_by_shard) {
            m.shards_.push_back(File::open((p.parent_path() / file).string(), limits));
            for (const auto& name : names)
                if (!m.shards_.back().find_tensor(name))
                    throw FormatError("safetensors-index", m.index_path_, 0,
                                      "weight_map puts '" + name + "' in " + file + ", which has no such tensor");
        }
    }
    for (size_t s = 0; s < m.shards_.size(); ++s) {
        const auto& tensors = m.shards_[s].tensors();
        for (size_t i = 0; i < tensors.size(); ++i) {
            if (!m.locations_.emplace(tensors[i].name, std::make_pair(s, i)).second)
                throw FormatError("safetensors", m.shards_[s].path(), tensors[i].file_offset,
                                  "tensor '" + tensors[i].name + "' also appears in another shard");
        }
    }
    return m;
}

std::vector<const TensorInfo*> Model::tensors() const {
    std::vector<const TensorInfo*> out;
    for (const auto& s : shards_)
        for (const auto& t : s.tensors()) out.push_back(&t);
    return out;
}

const TensorInfo* Model::find_tensor(std::string_view name) const {
    const auto it = locations_.find(std::string(name));
    return it == locations_.end() ? nullptr : &shards_[it->second.first].tensors()[it->second.second];
}

const File* Model::shard_of(std::string_view name) const {
    const auto it = locations_.find(std::string(name));
    return it == locations_.end() ? nullptr : &shards_[it->second.first];
}

Tensor Model::tensor(std::string_view name) const {
    const File* shard = shard_of(name);
    if (!shard) throw InvalidArgument("[safetensors] no tensor named '" + std::string(name) + "'");
    return shard->tensor(name);
}

}  // namespace cq::safetensors
