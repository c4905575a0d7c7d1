// llama-imatrix's two file formats and its --in-file combination (tools/imatrix/imatrix.cpp,
// common/imatrix-loader.cpp). GGUF: tensors <name>.in_sum2 (F32, ne [n_in, n_mat]: raw Σx²) and <name>.counts
// (F32, ne [1, n_mat]: rows summed) plus imatrix.* keys. Legacy .dat, all little-endian: i32 n_entries, then per
// entry i32 name length, the name, i32 ncall, i32 nval, nval f32 of (Σx²/count)·ncall; then optionally i32
// chunk_count, i32 length + dataset name. Every length and count is checked against the file before use.
#include "cq/imatrix.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "cq/atomic_file.h"
#include "cq/error.h"
#include "cq/io/gguf.h"
#include "cq/io/gguf_writer.h"

namespace cq {
namespace {

constexpr const char* kKeyDatasets = "imatrix.datasets";
constexpr const char* kKeyChunkCount = "imatrix.chunk_count";
constexpr const char* kKeyChunkSize = "imatrix.chunk_size";
constexpr std::string_view kSumsSuffix = ".in_sum2";
constexpr std::string_view kCountsSuffix = ".counts";
constexpr int64_t kMaxNameBytes = 1 << 16;

bool strip_suffix(std::string& s, std::string_view suffix) {
    if (s.size() <= suffix.size() || s.compare(s.size() - suffix.size(), suffix.size(), suffix) != 0) return false;
    s.resize(s.size() - suffix.size());
    return true;
}

// ---- legacy .dat ----

class DatReader {
public:
    explicit DatReader(const ByteSource& src) : src_(src) {}
    [[noreturn]] void fail(uint64_t at, const std::string& what) const { throw FormatError("imatrix", src_.name(), at, what); }
    uint64_t pos() const { return pos_; }
    uint64_t left() const { return src_.size() - pos_; }
    int32_t i32(const char* what) {
        if (left() < 4) fail(pos_, std::string("file ends inside ") + what);
        int32_t v;
        std::memcpy(&v, src_.data() + pos_, 4);
        pos_ += 4;
        return v;
    }
    const uint8_t* bytes(uint64_t n, const std::string& what) {
        if (left() < n) fail(pos_, what + " (" + std::to_string(n) + " bytes) extends past the end of the file");
        const uint8_t* p = src_.data() + pos_;
        pos_ += n;
        return p;
    }

private:
    const ByteSource& src_;
    uint64_t pos_ = 0;
};

Imatrix parse_dat(const ByteSource& src) {
    DatReader r(src);
    Imatrix m;
    m.legacy = true;
    const int32_t n_entries = r.i32("the entry count");
    if (n_entries < 1) r.fail(0, "entry count " + std::to_string(n_entries) + " is not positive (not an imatrix file?)");
    for (int32_t i = 0; i < n_entries; ++i) {
        const uint64_t at = r.pos();
        const int32_t len = r.i32("an entry's name length");
        if (len < 1 || len > kMaxNameBytes) r.fail(at, "entry " + std::to_string(i) + " has a name length of " + std::to_string(len));
        const auto* p = reinterpret_cast<const char*>(r.bytes(static_cast<uint64_t>(len), "the name of entry " + std::to_string(i)));
        std::string name(p, static_cast<size_t>(len));
        if (name.find('\0') != std::string::npos) r.fail(at + 4, "the name of entry " + std::to_string(i) + " contains a NUL byte");
        const int32_t ncall = r.i32("an entry's call count");
        const uint64_t at_nval = r.pos();
        const int32_t nval = r.i32("an entry's value count");
        if (nval < 1) r.fail(at_nval, "entry '" + name + "' has " + std::to_string(nval) + " values");
        const uint8_t* data = r.bytes(uint64_t(nval) * 4, "the values of entry '" + name + "'");
        ImatrixEntry e;
        e.sums.resize(static_cast<size_t>(nval));
        std::memcpy(e.sums.data(), data, e.sums.size() * 4);
        for (size_t j = 0; j < e.sums.size(); ++j)
            if (!std::isfinite(e.sums[j])) r.fail(at_nval + 4 + 4 * j, "entry '" + name + "' holds a non-finite value");
        e.counts = {ncall};
        if (!m.entries.emplace(std::move(name), std::move(e)).second)
            r.fail(at, "entry " + std::to_string(i) + " repeats the name of an earlier entry");
    }
    // The trailer (chunk count, dataset name) is optional, as llama.cpp's reader has it.
    if (r.left() >= 4) m.chunk_count = r.i32("the chunk count");
    if (r.left() >= 4) {
        const uint64_t at = r.pos();
        const int32_t len = r.i32("the dataset name length");
        if (len < 0 || len > kMaxNameBytes) r.fail(at, "dataset name length " + std::to_string(len) + " is out of range");
        if (len > 0) {
            const auto* p = reinterpret_cast<const char*>(r.bytes(static_cast<uint64_t>(len), "the dataset name"));
            m.datasets.emplace_back(p, strnlen(p, static_cast<size_t>(len)));
        }
    }
    if (r.left() != 0) r.fail(r.pos(), std::to_string(r.left()) + " unexpected bytes after the dataset name");
    return m;
}

// ---- GGUF ----

Imatrix parse_gguf(std::shared_ptr<const ByteSource> source) {
    const std::string name = source->name();
    const gguf::File f = gguf::File::parse(std::move(source));
    auto fail = [&](uint64_t at, const std::string& what) { throw FormatError("imatrix", name, at, what); };
    Imatrix m;
    if (const gguf::Value* v = f.find(kKeyDatasets)) {
        const gguf::Array* a = v->as_array();
        if (!a || a->element_type != gguf::ValueType::STRING) fail(0, std::string(kKeyDatasets) + " is not an array of strings");
        for (const gguf::Value& item : a->items) m.datasets.push_back(*item.as_string());
    }
    auto u32_key = [&](const char* key) -> int32_t {
        const gguf::Value* v = f.find(key);
        if (!v) return 0;
        const auto n = v->as_int();
        if (v->type != gguf::ValueType::U32 || !n || *n > INT32_MAX) fail(0, std::string(key) + " is not a u32 below 2^31");
        return static_cast<int32_t>(*n);
    };
    m.chunk_count = u32_key(kKeyChunkCount);
    m.chunk_size = u32_key(kKeyChunkSize);
    if (f.tensors().empty()) fail(0, "the file holds no tensors (no imatrix data)");

    std::map<std::string, std::pair<const gguf::TensorInfo*, const gguf::TensorInfo*>> pairs;
    for (const gguf::TensorInfo& t : f.tensors()) {
        std::string base = t.name;
        if (strip_suffix(base, kSumsSuffix)) pairs[base].first = &t;
        else if (strip_suffix(base, kCountsSuffix)) pairs[base].second = &t;
    }
    if (pairs.empty()) fail(0, "no tensor is named <weight>.in_sum2 or <weight>.counts (not an imatrix file?)");
    for (const auto& [weight, p] : pairs) {
        const auto [sums, counts] = p;
        if (!sums || !counts)
            fail((sums ? sums : counts)->info_offset, "'" + weight + "' has " + (sums ? "sums but no counts" : "counts but no sums"));
        for (const gguf::TensorInfo* t : {sums, counts})
            if (t->dtype != DType::F32) fail(t->info_offset, "tensor '" + t->name + "' is " + std::string(dtype_name(t->dtype)) + ", not f32");
        if (counts->numel < 1 || sums->numel < 1 || sums->numel % counts->numel != 0)
            fail(sums->info_offset, "'" + weight + "' has " + std::to_string(sums->numel) + " sums for " + std::to_string(counts->numel) +
                                        " counts (not a whole row per matrix)");
        ImatrixEntry e;
        const Tensor ts = f.tensor(*sums), tc = f.tensor(*counts);
        const auto sv = ts.values<float>();
        e.sums.assign(sv.begin(), sv.end());
        for (size_t j = 0; j < e.sums.size(); ++j)
            if (!std::isfinite(e.sums[j])) fail(sums->file_offset + 4 * j, "'" + weight + "' holds a non-finite sum");
        for (size_t j = 0; j < static_cast<size_t>(counts->numel); ++j) {
            const float c = tc.values<float>()[j];
            if (!(c >= 0.0f && c < 9.2e18f)) fail(counts->file_offset + 4 * j, "'" + weight + "' has count " + std::to_string(c));
            e.counts.push_back(std::lround(c));
        }
        m.entries.emplace(weight, std::move(e));
    }
    return m;
}

// Raw sums/counts of a legacy entry: llama-imatrix multiplies both by the chunk size when it loads one.
ImatrixEntry raw_from_legacy(const ImatrixEntry& e, int32_t chunk_size) {
    ImatrixEntry raw;
    raw.sums.resize(e.sums.size());
    for (size_t j = 0; j < e.sums.size(); ++j) raw.sums[j] = e.sums[j] * static_cast<float>(chunk_size);
    raw.counts = {e.counts.at(0) * chunk_size};
    return raw;
}

void write_gguf(const Imatrix& m, const std::string& path) {
    gguf::Writer w;
    w.set_string("general.type", "imatrix");
    w.set_string_array(kKeyDatasets, m.datasets);
    w.set_u32(kKeyChunkCount, static_cast<uint32_t>(m.chunk_count));
    w.set_u32(kKeyChunkSize, static_cast<uint32_t>(m.chunk_size));
    std::vector<const std::pair<const std::string, ImatrixEntry>*> stored;
    for (const auto& kv : m.entries) {
        const int64_t n_mat = static_cast<int64_t>(kv.second.counts.size());
        const int64_t n_val = static_cast<int64_t>(kv.second.sums.size());
        if (n_mat == 0 || n_val == 0) continue;
        if (n_val % n_mat != 0) throw InvalidArgument("[imatrix] '" + kv.first + "' has " + std::to_string(n_val) + " sums for " + std::to_string(n_mat) + " counts");
        w.add_tensor(kv.first + std::string(kSumsSuffix), {n_mat, n_val / n_mat}, DType::F32);
        w.add_tensor(kv.first + std::string(kCountsSuffix), {n_mat, 1}, DType::F32);
        stored.push_back(&kv);
    }
    AtomicFile out(path);
    w.write(out, [&](size_t i, std::vector<uint8_t>& buf) {
        const ImatrixEntry& e = stored[i / 2]->second;
        if (i % 2 == 0) {
            buf.resize(e.sums.size() * 4);
            std::memcpy(buf.data(), e.sums.data(), buf.size());
        } else {
            buf.resize(e.counts.size() * 4);
            for (size_t j = 0; j < e.counts.size(); ++j) {
                const float c = static_cast<float>(e.counts[j]);
                std::memcpy(buf.data() + 4 * j, &c, 4);
            }
        }
    });
    out.commit();
}

template <typename T>
void put(std::vector<uint8_t>& b, T v) {
    const auto* p = reinterpret_cast<const uint8_t*>(&v);
    b.insert(b.end(), p, p + sizeof v);
}

// llama-imatrix's save_imatrix_legacy: ncall = ceil(max count / chunk_size); values (Σx² / count)·ncall, a
// matrix without data stored as 1; entries with no data at all left out.
void write_dat(const Imatrix& m, const std::string& path) {
    if (m.chunk_size <= 0) throw InvalidArgument("[imatrix] writing a .dat file needs the chunk size (the context of the run)");
    std::vector<uint8_t> b;
    put<int32_t>(b, 0);  // n_entries, patched below
    int32_t n_entries = 0;
    for (const auto& [name, e] : m.entries) {
        if (e.counts.empty() || e.sums.empty()) continue;
        if (std::all_of(e.counts.begin(), e.counts.end(), [](int64_t c) { return c == 0; })) continue;
        ++n_entries;
        put<int32_t>(b, static_cast<int32_t>(name.size()));
        b.insert(b.end(), name.begin(), name.end());
        const int64_t max_count = *std::max_element(e.counts.begin(), e.counts.end());
        const auto ncall = static_cast<int32_t>((max_count + (m.chunk_size - 1)) / m.chunk_size);
        put<int32_t>(b, ncall);
        const auto nval = static_cast<int32_t>(e.sums.size());
        const auto nmat = static_cast<int32_t>(e.counts.size());
        put<int32_t>(b, nval);
        for (int32_t i = 0; i < nval; ++i) {
            float count = static_cast<float>(e.counts[static_cast<size_t>(i / (nval / nmat))]);
            float value = e.sums[static_cast<size_t>(i)];
            if (count == 0.0f) value = count = 1.0f;
            put<float>(b, (value / count) * static_cast<float>(ncall));
        }
    }
    std::memcpy(b.data(), &n_entries, 4);
    put<int32_t>(b, m.chunk_count);
    const std::string dataset = m.datasets.empty() ? std::string() : m.datasets.back();
    put<int32_t>(b, static_cast<int32_t>(dataset.size()));
    b.insert(b.end(), dataset.begin(), dataset.end());
    AtomicFile out(path);
    out.write(b.data(), b.size());
    out.commit();
}

}  // namespace

std::vector<float> Imatrix::importance(const std::string& weight_name) const {
    const auto it = entries.find(weight_name);
    if (it == entries.end()) return {};
    const ImatrixEntry& e = it->second;
    std::vector<float> out(e.sums.size());
    if (legacy) {
        const int64_t ncall = e.counts.empty() ? 0 : e.counts[0];
        for (size_t i = 0; i < out.size(); ++i) out[i] = ncall > 0 ? e.sums[i] / static_cast<float>(ncall) : e.sums[i];
        return out;
    }
    if (e.counts.empty()) return {};
    const size_t row = e.sums.size() / e.counts.size();
    for (size_t j = 0; j < e.counts.size(); ++j) {
        const float count = static_cast<float>(e.counts[j]);
        for (size_t i = 0; i < row; ++i) out[j * row + i] = count > 0.0f ? e.sums[j * row + i] / count : 1.0f;
    }
    return out;
}

Imatrix parse_imatrix(std::shared_ptr<const ByteSource> source) {
    if (source->size() >= 4 && std::memcmp(source->data(), "GGUF", 4) == 0) return parse_gguf(std::move(source));
    return parse_dat(*source);
}

Imatrix read_imatrix(const std::string& path) { return parse_imatrix(map_file(path)); }

void write_imatrix(const Imatrix& m, const std::string& path, ImatrixFormat format) {
    if (m.legacy) throw InvalidArgument("[imatrix] a legacy imatrix must be merged into a raw one (with its chunk size) before writing");
    if (format == ImatrixFormat::gguf) write_gguf(m, path);
    else write_dat(m, path);
}

void merge_imatrix(Imatrix& into, const Imatrix& other) {
    if (into.legacy) throw InvalidArgument("[imatrix] cannot merge into a legacy imatrix");
    if (other.legacy && into.chunk_size <= 0)
        throw InvalidArgument("[imatrix] combining a legacy .dat imatrix needs the chunk size (the context) to scale it");
    for (const auto& [name, src] : other.entries) {
        const ImatrixEntry add = other.legacy ? raw_from_legacy(src, into.chunk_size) : src;
        ImatrixEntry& e = into.entries[name];
        if (e.sums.empty()) e.sums.assign(add.sums.size(), 0.0f);
        else if (e.sums.size() != add.sums.size())
            throw InvalidArgument("[imatrix] '" + name + "' has " + std::to_string(add.sums.size()) + " values in one file and " +
                                  std::to_string(e.sums.size()) + " in another");
        if (e.counts.empty()) e.counts.assign(add.counts.size(), 0);
        else if (e.counts.size() == 1 && add.counts.size() > 1) e.counts.assign(add.counts.size(), e.counts[0]);
        // A legacy entry has one count for all its matrices (llama-imatrix broadcasts it the same way).
        if (add.counts.size() == 1 && e.counts.size() > 1) {
            for (int64_t& c : e.counts) c += add.counts[0];
        } else if (add.counts.size() != e.counts.size()) {
            throw InvalidArgument("[imatrix] '" + name + "' has " + std::to_string(add.counts.size()) + " matrices in one file and " +
                                  std::to_string(e.counts.size()) + " in another");
        } else {
            for (size_t j = 0; j < e.counts.size(); ++j) e.counts[j] += add.counts[j];
        }
        for (size_t j = 0; j < e.sums.size(); ++j) e.sums[j] += add.sums[j];
    }
    into.datasets.insert(into.datasets.end(), other.datasets.begin(), other.datasets.end());
    int64_t max_count = 0;
    for (const auto& [name, e] : into.entries)
        for (int64_t c : e.counts) max_count = std::max(max_count, c);
    if (into.chunk_size > 0) into.chunk_count = static_cast<int32_t>(max_count / into.chunk_size);
}

Imatrix combine_imatrix_files(const std::vector<std::string>& paths, int32_t chunk_size) {
    Imatrix m;
    m.chunk_size = chunk_size;
    for (const std::string& p : paths) merge_imatrix(m, read_imatrix(p));
    return m;
}

}  // namespace cq
