// cq's model-file readers against values obtained independently: tests/expected/fixtures.json was
// written by tests/expected/make_expected.py, a stdlib-only Python parser of the same fixture files
// that shares nothing with cq. Every check here is driven by that JSON (one test instance per file),
// and every failure names the file, and the tensor or key, it is about.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <stdlib.h>  // mkdtemp

#include <nlohmann/json.hpp>

#include "cq/dtype.h"
#include "cq/inspect.h"
#include "cq/io/gguf.h"
#include "io/hf/hf_model.h"
#include "cq/io/safetensors.h"
#include "cq/tensor.h"
#include "test_support.h"

namespace {

using nlohmann::json;
namespace fs = std::filesystem;

std::string expected_path() { return cq::test::tests_dir() + "/expected/fixtures.json"; }

// The whole reference file; null if it cannot be read (ExpectedFile.Loads reports that).
const json& expected() {
    static const json doc = [] {
        std::ifstream in(expected_path());
        if (!in) return json();
        return json::parse(in, nullptr, /*allow_exceptions=*/false);
    }();
    return doc;
}

const json& entry(const std::string& key) { return expected().at("files").at(key); }

std::vector<std::string> keys_of_format(const std::string& format) {
    std::vector<std::string> keys;
    const json& doc = expected();
    if (!doc.is_object() || !doc.contains("files")) return keys;
    for (const auto& [key, value] : doc["files"].items())
        if (value.value("format", "") == format) keys.push_back(key);
    return keys;
}

std::string param_name(const testing::TestParamInfo<std::string>& info) {
    std::string name;
    for (char c : info.param) name += std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
    while (!name.empty() && name.back() == '_') name.pop_back();
    return name;
}

std::string lower(std::string s) {
    for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return s;
}

std::vector<int64_t> shape_of(const json& j) { return j.get<std::vector<int64_t>>(); }


// Element values of a float tensor against first_values / sample_values (exact for f32).
void check_values(const cq::Tensor& t, const json& exp) {
    if (!exp.contains("first_values")) return;
    std::vector<float> f = t.to_float();
    ASSERT_EQ(static_cast<int64_t>(f.size()), t.numel()) << "to_float() size";
    const auto& first = exp["first_values"];
    for (size_t i = 0; i < first.size(); ++i) {
        ASSERT_LT(i, f.size());
        EXPECT_EQ(f[i], first[i].get<float>()) << "element " << i << " via to_float()";
    }
    for (const auto& s : exp["sample_values"]) {
        size_t i = s[0].get<size_t>();
        ASSERT_LT(i, f.size());
        EXPECT_EQ(f[i], s[1].get<float>()) << "element " << i << " via to_float()";
    }
    if (t.dtype() == cq::DType::F32) {
        auto v = t.values<float>();
        ASSERT_EQ(static_cast<int64_t>(v.size()), t.numel()) << "values<float>() size";
        for (size_t i = 0; i < first.size(); ++i) EXPECT_EQ(v[i], first[i].get<float>()) << "values<float>()[" << i << "]";
        for (const auto& s : exp["sample_values"]) {
            size_t i = s[0].get<size_t>();
            EXPECT_EQ(v[i], s[1].get<float>()) << "values<float>()[" << i << "]";
        }
    }
}

// The Tensor object a reader hands out, against the reference entry of that tensor.
void check_tensor_object(const cq::Tensor& t, const json& exp) {
    EXPECT_EQ(t.shape(), shape_of(exp["shape"])) << "Tensor::shape()";
    EXPECT_EQ(lower(std::string(cq::dtype_name(t.dtype()))), lower(exp["dtype"].get<std::string>()))
        << "Tensor::dtype()";
    EXPECT_EQ(t.nbytes(), exp["nbytes"].get<uint64_t>()) << "Tensor::nbytes()";
    ASSERT_NE(t.data(), nullptr);
    EXPECT_EQ(cq::test::crc32(t.data(), t.nbytes()), exp["crc32"].get<uint32_t>()) << "CRC-32 of the tensor bytes";
    check_values(t, exp);
}

// bytes_by_dtype: the GGUF reference uses ggml names, the safetensors one the file's names
// ("F32"); cq's summary may spell either, so the keys are compared case-insensitively.
std::map<std::string, uint64_t> lower_keys(const std::map<std::string, uint64_t>& m) {
    std::map<std::string, uint64_t> out;
    for (const auto& [k, v] : m) out[lower(k)] += v;
    return out;
}
std::map<std::string, uint64_t> lower_keys(const json& j) {
    std::map<std::string, uint64_t> out;
    for (const auto& [k, v] : j.items()) out[lower(k)] += v.get<uint64_t>();
    return out;
}

// summarize_model(path) against a reference entry holding n_tensors, n_params, bytes_by_dtype and,
// for single files, tensors.
void check_summary(const cq::ModelSummary& s, const json& exp, const std::string& format, const std::string& file) {
    EXPECT_EQ(s.format, format);
    EXPECT_EQ(s.tensor_count, exp["n_tensors"].get<uint64_t>()) << "tensor_count";
    EXPECT_EQ(s.parameter_count, exp["n_params"].get<uint64_t>()) << "parameter_count";
    EXPECT_EQ(lower_keys(s.bytes_by_dtype), lower_keys(exp["bytes_by_dtype"])) << "bytes_by_dtype";
    uint64_t total = 0;
    for (const auto& [k, v] : exp["bytes_by_dtype"].items()) total += v.get<uint64_t>();
    EXPECT_EQ(s.tensor_bytes, total) << "tensor_bytes";
    if (exp.contains("file_size")) {
        EXPECT_EQ(s.file_bytes, exp["file_size"].get<uint64_t>()) << "file_bytes";
    }
    if (!exp.contains("tensors")) return;
    ASSERT_EQ(s.tensors.size(), exp["tensors"].size()) << "summary tensors";
    for (const auto& ts : s.tensors) {
        SCOPED_TRACE("summary tensor " + ts.name);
        ASSERT_TRUE(exp["tensors"].contains(ts.name)) << "unexpected tensor " << ts.name;
        const json& te = exp["tensors"][ts.name];
        EXPECT_EQ(ts.shape, shape_of(te["shape"]));
        EXPECT_EQ(lower(ts.dtype), lower(te["dtype"].get<std::string>()));
        EXPECT_EQ(ts.nbytes, te["nbytes"].get<uint64_t>());
        EXPECT_EQ(ts.offset, te["offset"].get<uint64_t>());
        EXPECT_TRUE(ts.file.empty() || fs::path(ts.file).filename().string() == fs::path(file).filename().string())
            << "summary tensor file " << ts.file;
    }
}

TEST(fixtures, ExpectedFileLoads) {
    const json& doc = expected();
    ASSERT_TRUE(doc.is_object()) << "cannot read or parse " << expected_path()
                                 << " (regenerate with python3 tests/expected/make_expected.py)";
    ASSERT_TRUE(doc.contains("files"));
    EXPECT_EQ(keys_of_format("gguf").size(), 4u);
    EXPECT_EQ(keys_of_format("safetensors").size(), 4u);
    EXPECT_EQ(keys_of_format("hf").size(), 4u);
    for (const auto& [key, value] : doc["files"].items()) {
        const std::string path = cq::test::fixture(key);
        EXPECT_TRUE(fs::exists(path)) << "fixture missing: " << path;
    }
}

// ---------------------------------------------------------------------------------------------
// GGUF

class GgufFixture : public testing::TestWithParam<std::string> {
protected:
    void SetUp() override {
        key_ = GetParam();
        exp_ = &entry(key_);
        file_ = cq::gguf::File::open(cq::test::fixture(key_));
    }
    std::string key_;
    const json* exp_ = nullptr;
    cq::gguf::File file_;
};

TEST_P(GgufFixture, Header) {
    SCOPED_TRACE(key_);
    const json& e = *exp_;
    EXPECT_EQ(file_.version(), e["version"].get<uint32_t>()) << key_ << ": version";
    EXPECT_EQ(file_.tensors().size(), e["n_tensors"].get<size_t>()) << key_ << ": tensor count";
    EXPECT_EQ(file_.metadata().size(), e["n_kv"].get<size_t>()) << key_ << ": n_kv";
    EXPECT_EQ(file_.alignment(), e["alignment"].get<uint64_t>()) << key_ << ": alignment";
    EXPECT_EQ(file_.data_section_offset(), e["data_section_offset"].get<uint64_t>())
        << key_ << ": data section offset";
    EXPECT_EQ(file_.file_size(), e["file_size"].get<uint64_t>()) << key_ << ": file size";
}

// One scalar metadata value against {"type", "value"} (also used for array items, type = element type).
void check_scalar(const cq::gguf::Value& v, const std::string& type, const json& value, const std::string& where) {
    SCOPED_TRACE(where);
    EXPECT_EQ(std::string(cq::gguf::value_type_name(v.type)), type) << where << ": type";
    if (type == "string") {
        ASSERT_NE(v.as_string(), nullptr) << where << ": not a string";
        EXPECT_EQ(*v.as_string(), value.get<std::string>()) << where;
    } else if (type == "bool") {
        ASSERT_TRUE(std::holds_alternative<bool>(v.data)) << where << ": not a bool";
        EXPECT_EQ(std::get<bool>(v.data), value.get<bool>()) << where;
    } else if (type == "f32" || type == "f64") {
        ASSERT_TRUE(v.as_double().has_value()) << where << ": not a number";
        // The reference holds the exact double of the stored f32/f64.
        EXPECT_EQ(*v.as_double(), value.get<double>()) << where;
        EXPECT_FALSE(v.is_integer()) << where;
    } else if (type[0] == 'u') {
        ASSERT_TRUE(std::holds_alternative<uint64_t>(v.data)) << where << ": not held as uint64_t";
        EXPECT_EQ(std::get<uint64_t>(v.data), value.get<uint64_t>()) << where;
        EXPECT_TRUE(v.is_integer()) << where;
    } else if (type[0] == 'i') {
        ASSERT_TRUE(std::holds_alternative<int64_t>(v.data)) << where << ": not held as int64_t";
        EXPECT_EQ(std::get<int64_t>(v.data), value.get<int64_t>()) << where;
        EXPECT_TRUE(v.is_integer()) << where;
    } else {
        ADD_FAILURE() << where << ": reference type " << type << " not handled";
    }
}

TEST_P(GgufFixture, Metadata) {
    const json& e = *exp_;
    const auto& kv = file_.metadata();
    std::vector<std::string> keys;
    for (const auto& k : kv) keys.push_back(k.key);
    EXPECT_EQ(keys, e["kv_keys"].get<std::vector<std::string>>()) << key_ << ": keys in file order";

    std::map<std::string, uint64_t> record_offsets;
    for (const auto& k : kv) record_offsets[k.key] = k.file_offset;
    for (const auto& [name, m] : e["metadata"].items()) {
        const std::string where = key_ + ": " + name;
        const cq::gguf::Value* v = file_.find(name);
        ASSERT_NE(v, nullptr) << where << ": key not found";
        EXPECT_EQ(record_offsets[name], m["record_offset"].get<uint64_t>()) << where << ": KeyValue::file_offset";
        const std::string type = m["type"].get<std::string>();
        if (type != "array") {
            check_scalar(*v, type, m["value"], where);
            if (type == "string") {
                EXPECT_EQ(file_.get_string(name), m["value"].get<std::string>()) << where << ": get_string";
            } else if (type[0] == 'u' || type[0] == 'i') {
                if (!(type == "u64" && m["value"].get<uint64_t>() > uint64_t(INT64_MAX))) {
                    EXPECT_EQ(file_.get_int(name), m["value"].get<int64_t>()) << where << ": get_int";
                }
            } else if (type[0] == 'f') {
                EXPECT_EQ(file_.get_double(name), m["value"].get<double>()) << where << ": get_double";
            }
            continue;
        }
        EXPECT_EQ(std::string(cq::gguf::value_type_name(v->type)), "array") << where << ": type";
        const cq::gguf::Array* a = v->as_array();
        ASSERT_NE(a, nullptr) << where << ": not an array";
        const std::string elem = m["element_type"].get<std::string>();
        EXPECT_EQ(std::string(cq::gguf::value_type_name(a->element_type)), elem) << where << ": element type";
        ASSERT_EQ(a->items.size(), m["count"].get<size_t>()) << where << ": count";
        const json& first = m["first"];
        for (size_t i = 0; i < first.size(); ++i) {
            if (first[i].is_object()) continue;  // nested array (none in the fixtures)
            check_scalar(a->items[i], elem, first[i], where + "[" + std::to_string(i) + "]");
        }
        if (m.contains("last"))
            check_scalar(a->items.back(), elem, m["last"], where + "[" + std::to_string(a->items.size() - 1) + "]");
    }
    // Convenience accessors agree with the metadata.
    if (e["metadata"].contains("general.architecture")) {
        EXPECT_EQ(file_.architecture(), e["metadata"]["general.architecture"]["value"].get<std::string>());
    }
    EXPECT_EQ(file_.find("no.such.key"), nullptr);
}

TEST_P(GgufFixture, Tensors) {
    const json& e = *exp_;
    std::vector<std::string> order;
    for (const auto& t : file_.tensors()) order.push_back(t.name);
    EXPECT_EQ(order, e["tensor_order"].get<std::vector<std::string>>()) << key_ << ": tensor order";

    const uint64_t data_section = e["data_section_offset"].get<uint64_t>();
    for (const auto& [name, te] : e["tensors"].items()) {
        SCOPED_TRACE(key_ + ": tensor " + name);
        const cq::gguf::TensorInfo* info = file_.find_tensor(name);
        ASSERT_NE(info, nullptr) << key_ << ": tensor " << name << " not found";
        EXPECT_EQ(info->shape, shape_of(te["shape"])) << "shape";
        EXPECT_EQ(std::string(cq::dtype_name(info->dtype)), te["dtype"].get<std::string>()) << "dtype";
        EXPECT_EQ(info->file_offset, te["offset"].get<uint64_t>()) << "file_offset";
        EXPECT_EQ(info->data_offset, te["offset"].get<uint64_t>() - data_section) << "data_offset";
        EXPECT_EQ(info->nbytes, te["nbytes"].get<uint64_t>()) << "nbytes";
        EXPECT_EQ(info->info_offset, te["info_offset"].get<uint64_t>()) << "info_offset";
        int64_t n = 1;
        for (int64_t d : te["shape"]) n *= d;
        EXPECT_EQ(info->numel, n) << "numel";
        check_tensor_object(file_.tensor(*info), te);
        check_tensor_object(file_.tensor(std::string_view(name)), te);
    }
    EXPECT_EQ(file_.find_tensor("no.such.tensor"), nullptr);
}

TEST_P(GgufFixture, Summary) {
    SCOPED_TRACE(key_);
    const json& e = *exp_;
    const cq::ModelSummary s = cq::summarize_model(cq::test::fixture(key_));
    check_summary(s, e, "gguf", key_);
    const json& md = e["metadata"];
    if (md.contains("general.architecture")) {
        EXPECT_EQ(s.architecture, md["general.architecture"]["value"].get<std::string>()) << "architecture";
    }
    if (md.contains("general.name")) {
        EXPECT_EQ(s.name, md["general.name"]["value"].get<std::string>()) << "name";
    }
}

// Test names carry "fixtures" so that `ctest -R fixtures` selects them all.
INSTANTIATE_TEST_SUITE_P(fixtures, GgufFixture, testing::ValuesIn(keys_of_format("gguf")), param_name);

// ---------------------------------------------------------------------------------------------
// safetensors (single files)

void check_st_tensors(const json& e, const std::string& key,
                      const std::function<const cq::safetensors::TensorInfo*(const std::string&)>& find,
                      const std::function<cq::Tensor(const std::string&)>& get) {
    const uint64_t data_section = e["data_section_offset"].get<uint64_t>();
    for (const auto& [name, te] : e["tensors"].items()) {
        SCOPED_TRACE(key + ": tensor " + name);
        const cq::safetensors::TensorInfo* info = find(name);
        ASSERT_NE(info, nullptr) << key << ": tensor " << name << " not found";
        EXPECT_EQ(info->name, name);
        EXPECT_EQ(info->shape, shape_of(te["shape"])) << "shape";
        EXPECT_EQ(info->dtype_name, te["dtype"].get<std::string>()) << "dtype as spelled in the file";
        EXPECT_EQ(lower(std::string(cq::dtype_name(info->dtype))), lower(te["dtype"].get<std::string>()))
            << "cq dtype";
        EXPECT_EQ(info->file_offset, te["offset"].get<uint64_t>()) << "file_offset";
        EXPECT_EQ(info->begin, te["offset"].get<uint64_t>() - data_section) << "data_offsets[0]";
        EXPECT_EQ(info->end, te["offset"].get<uint64_t>() - data_section + te["nbytes"].get<uint64_t>())
            << "data_offsets[1]";
        EXPECT_EQ(info->nbytes, te["nbytes"].get<uint64_t>()) << "nbytes";
        int64_t n = 1;
        for (int64_t d : te["shape"]) n *= d;
        EXPECT_EQ(info->numel, n) << "numel";
        check_tensor_object(get(name), te);
    }
}

class SafetensorsFixture : public testing::TestWithParam<std::string> {
protected:
    void SetUp() override {
        key_ = GetParam();
        exp_ = &entry(key_);
    }
    std::string key_;
    const json* exp_ = nullptr;
};

TEST_P(SafetensorsFixture, File) {
    SCOPED_TRACE(key_);
    const json& e = *exp_;
    const auto f = cq::safetensors::File::open(cq::test::fixture(key_));
    EXPECT_EQ(f.header_size(), e["header_size"].get<uint64_t>()) << key_ << ": header size";
    EXPECT_EQ(f.data_section_offset(), e["data_section_offset"].get<uint64_t>()) << key_ << ": data section";
    EXPECT_EQ(f.file_size(), e["file_size"].get<uint64_t>()) << key_ << ": file size";
    EXPECT_EQ(f.tensors().size(), e["n_tensors"].get<size_t>()) << key_ << ": tensor count";
    EXPECT_EQ(f.metadata(), (e["metadata"].get<std::map<std::string, std::string>>())) << key_ << ": __metadata__";
    std::vector<std::string> order;
    for (const auto& t : f.tensors()) order.push_back(t.name);
    EXPECT_EQ(order, e["tensor_order"].get<std::vector<std::string>>()) << key_ << ": data-offset order";
    check_st_tensors(
        e, key_, [&](const std::string& n) { return f.find_tensor(n); },
        [&](const std::string& n) { return f.tensor(std::string_view(n)); });
    EXPECT_EQ(f.find_tensor("no.such.tensor"), nullptr);
}

TEST_P(SafetensorsFixture, Model) {
    SCOPED_TRACE(key_);
    const json& e = *exp_;
    const auto m = cq::safetensors::Model::open(cq::test::fixture(key_));
    EXPECT_EQ(m.shards().size(), 1u);
    EXPECT_EQ(m.index_path(), "");
    EXPECT_EQ(m.tensor_count(), e["n_tensors"].get<size_t>()) << key_ << ": tensor count";
    std::vector<std::string> order;
    for (const auto* t : m.tensors()) order.push_back(t->name);
    EXPECT_EQ(order, e["tensor_order"].get<std::vector<std::string>>()) << key_ << ": tensors() order";
    check_st_tensors(
        e, key_, [&](const std::string& n) { return m.find_tensor(n); },
        [&](const std::string& n) { return m.tensor(n); });
}

TEST_P(SafetensorsFixture, Summary) {
    SCOPED_TRACE(key_);
    check_summary(cq::summarize_model(cq::test::fixture(key_)), *exp_, "safetensors", key_);
}

INSTANTIATE_TEST_SUITE_P(fixtures, SafetensorsFixture, testing::ValuesIn(keys_of_format("safetensors")), param_name);

// ---------------------------------------------------------------------------------------------
// HF model directories

class HfDirFixture : public testing::TestWithParam<std::string> {
protected:
    void SetUp() override {
        key_ = GetParam();
        exp_ = &entry(key_);
    }
    std::string key_;
    const json* exp_ = nullptr;
};

TEST_P(HfDirFixture, OpenModelDir) {
    SCOPED_TRACE(key_);
    const json& e = *exp_;
    const std::string dir = cq::test::fixture(key_);
    EXPECT_TRUE(cq::hf::is_model_dir(dir)) << key_;
    const cq::hf::ModelDir md = cq::hf::open_model_dir(dir);
    const json& cfg = e["config"];
    for (const auto& [k, v] : cfg.items()) {
        ASSERT_TRUE(md.config.contains(k)) << key_ << ": config." << k << " missing";
        EXPECT_EQ(md.config[k], v) << key_ << ": config." << k;
    }
    EXPECT_EQ(md.model_type, cfg["model_type"].get<std::string>()) << key_ << ": model_type";
    EXPECT_EQ(md.architectures, cfg["architectures"].get<std::vector<std::string>>()) << key_ << ": architectures";

    const auto files = e["files"].get<std::vector<std::string>>();
    const std::set<std::string> present(files.begin(), files.end());
    EXPECT_EQ(md.generation_config.has_value(), present.count("generation_config.json") == 1)
        << key_ << ": generation_config";
    for (const auto& f : md.tokenizer_files)
        EXPECT_TRUE(present.count(fs::path(f).filename().string())) << key_ << ": tokenizer file " << f;
    for (const auto& f : md.other_files)
        EXPECT_TRUE(present.count(fs::path(f).filename().string())) << key_ << ": other file " << f;
    for (const char* tok : {"tokenizer.model", "tokenizer.json", "vocab.txt", "vocab.json", "merges.txt"}) {
        if (!present.count(tok)) continue;
        bool listed = false;
        for (const auto& f : md.tokenizer_files) listed |= fs::path(f).filename().string() == tok;
        EXPECT_TRUE(listed) << key_ << ": tokenizer file " << tok << " not in tokenizer_files";
    }

    const std::string wkey = e["weights"].get<std::string>();
    const json& we = entry(wkey);
    EXPECT_EQ(md.weights.shards().size(), 1u);
    EXPECT_EQ(md.weights.tensor_count(), we["n_tensors"].get<size_t>()) << key_ << ": tensor count";
    check_st_tensors(
        we, wkey, [&](const std::string& n) { return md.weights.find_tensor(n); },
        [&](const std::string& n) { return md.weights.tensor(n); });
}

TEST_P(HfDirFixture, Summary) {
    SCOPED_TRACE(key_);
    const json& e = *exp_;
    const cq::ModelSummary s = cq::summarize_model(cq::test::fixture(key_));
    const json& we = entry(e["weights"].get<std::string>());
    check_summary(s, e, "hf", key_);  // e has no "tensors": they are checked against the weights entry below
    EXPECT_EQ(s.architecture, e["config"]["model_type"].get<std::string>()) << key_ << ": architecture";
    ASSERT_EQ(s.tensors.size(), we["tensors"].size()) << key_ << ": summary tensors";
    for (const auto& ts : s.tensors) {
        SCOPED_TRACE("summary tensor " + ts.name);
        ASSERT_TRUE(we["tensors"].contains(ts.name));
        const json& te = we["tensors"][ts.name];
        EXPECT_EQ(ts.shape, shape_of(te["shape"]));
        EXPECT_EQ(ts.nbytes, te["nbytes"].get<uint64_t>());
        EXPECT_EQ(ts.offset, te["offset"].get<uint64_t>());
    }
}

INSTANTIATE_TEST_SUITE_P(fixtures, HfDirFixture, testing::ValuesIn(keys_of_format("hf")), param_name);

// ---------------------------------------------------------------------------------------------
// Sharded safetensors: each model.safetensors split into two shards plus model.safetensors.index.json
// (and config.json, so the folder is also an HF model directory), written into a temporary folder
// from the reference JSON and the original bytes, without cq.

class ShardedSafetensors : public testing::TestWithParam<std::string> {
protected:
    struct Placed {
        std::string shard;     // file name
        uint64_t offset = 0;   // absolute offset in the shard
    };

    void SetUp() override {
        ASSERT_TRUE(expected().is_object());
        source_ = GetParam();
        model_dir_ = source_.substr(0, source_.rfind('/') + 1);
        exp_ = &entry(source_);
        char tmpl[] = "/tmp/cq_test_sharded_XXXXXX";
        ASSERT_NE(mkdtemp(tmpl), nullptr);
        dir_ = tmpl;
        original_ = cq::test::read_bytes(cq::test::fixture(source_));

        const auto order = (*exp_)["tensor_order"].get<std::vector<std::string>>();
        const size_t half = order.size() / 2;
        const std::vector<std::vector<std::string>> shards = {
            {order.begin(), order.begin() + static_cast<std::ptrdiff_t>(half)},
            {order.begin() + static_cast<std::ptrdiff_t>(half), order.end()}};
        json weight_map = json::object();
        uint64_t total = 0;
        for (size_t s = 0; s < shards.size(); ++s) {
            const std::string fname = "model-0000" + std::to_string(s + 1) + "-of-00002.safetensors";
            shard_names_.push_back(fname);
            json header = json::object();
            uint64_t pos = 0;
            for (const auto& name : shards[s]) {
                const json& te = (*exp_)["tensors"][name];
                const uint64_t nb = te["nbytes"].get<uint64_t>();
                header[name] = {{"dtype", te["dtype"]}, {"shape", te["shape"]}, {"data_offsets", {pos, pos + nb}}};
                pos += nb;
                weight_map[name] = fname;
            }
            header["__metadata__"] = {{"format", "pt"}};
            std::string text = header.dump();
            while ((8 + text.size()) % 8) text += ' ';
            std::ofstream out(dir_ / fname, std::ios::binary);
            uint64_t n = text.size();
            unsigned char len[8];
            for (int i = 0; i < 8; ++i) len[i] = static_cast<unsigned char>(n >> (8 * i));
            out.write(reinterpret_cast<const char*>(len), 8);
            out.write(text.data(), static_cast<std::streamsize>(text.size()));
            uint64_t at = 8 + n;
            for (const auto& name : shards[s]) {
                const json& te = (*exp_)["tensors"][name];
                const uint64_t off = te["offset"].get<uint64_t>(), nb = te["nbytes"].get<uint64_t>();
                ASSERT_LE(off + nb, original_.size());
                out.write(reinterpret_cast<const char*>(original_.data() + off), static_cast<std::streamsize>(nb));
                placed_[name] = {fname, at};
                at += nb;
                total += nb;
            }
            ASSERT_TRUE(out.good());
        }
        json index = {{"metadata", {{"total_size", total}}}, {"weight_map", weight_map}};
        std::ofstream(dir_ / "model.safetensors.index.json") << index.dump(2);
        fs::copy_file(cq::test::fixture(model_dir_ + "config.json"), dir_ / "config.json");
    }

    void TearDown() override {
        if (!dir_.empty()) {
            std::error_code ec;
            fs::remove_all(dir_, ec);
        }
    }

    void check_model(const cq::safetensors::Model& m, const std::string& what) {
        const std::string how = source_ + " sharded, " + what;
        SCOPED_TRACE(how);
        const json& e = *exp_;
        ASSERT_EQ(m.shards().size(), 2u) << how << ": shard count";
        EXPECT_FALSE(m.index_path().empty()) << how << ": index_path";
        EXPECT_EQ(m.tensor_count(), e["n_tensors"].get<size_t>()) << how << ": tensor count";
        std::vector<std::string> order;
        for (const auto* t : m.tensors()) order.push_back(t->name);
        EXPECT_EQ(order, e["tensor_order"].get<std::vector<std::string>>()) << how << ": shard by shard, offset order";
        for (size_t s = 0; s < 2; ++s)
            EXPECT_EQ(fs::path(m.shards()[s].path()).filename().string(), shard_names_[s]) << how << ": shard " << s;
        for (const auto& [name, te] : e["tensors"].items()) {
            SCOPED_TRACE(how + ": tensor " + name);
            const cq::safetensors::TensorInfo* info = m.find_tensor(name);
            ASSERT_NE(info, nullptr) << "tensor " << name << " not found";
            const Placed& p = placed_.at(name);
            const cq::safetensors::File* shard = m.shard_of(name);
            ASSERT_NE(shard, nullptr);
            EXPECT_EQ(fs::path(shard->path()).filename().string(), p.shard) << "shard_of";
            EXPECT_EQ(info->file_offset, p.offset) << "file_offset in the shard";
            EXPECT_EQ(info->shape, shape_of(te["shape"])) << "shape";
            EXPECT_EQ(info->dtype_name, te["dtype"].get<std::string>()) << "dtype";
            EXPECT_EQ(info->nbytes, te["nbytes"].get<uint64_t>()) << "nbytes";
            const cq::Tensor t = m.tensor(name);
            ASSERT_EQ(t.nbytes(), te["nbytes"].get<uint64_t>());
            EXPECT_EQ(std::memcmp(t.data(), original_.data() + te["offset"].get<uint64_t>(), t.nbytes()), 0)
                << "bytes differ from the unsharded file";
            check_tensor_object(t, te);
        }
        EXPECT_EQ(m.find_tensor("no.such.tensor"), nullptr);
        EXPECT_EQ(m.shard_of("no.such.tensor"), nullptr);
    }

    std::string source_;     // the safetensors file that was split
    std::string model_dir_;  // its HF model directory (key with trailing slash)
    const json* exp_ = nullptr;
    fs::path dir_;
    std::vector<uint8_t> original_;
    std::vector<std::string> shard_names_;
    std::map<std::string, Placed> placed_;
};

TEST_P(ShardedSafetensors, OpenDirectory) { check_model(cq::safetensors::Model::open(dir_.string()), "directory"); }

TEST_P(ShardedSafetensors, OpenIndex) {
    const auto m = cq::safetensors::Model::open((dir_ / "model.safetensors.index.json").string());
    EXPECT_EQ(fs::path(m.index_path()).filename().string(), "model.safetensors.index.json");
    check_model(m, "index file");
}

TEST_P(ShardedSafetensors, HfDirAndSummary) {
    SCOPED_TRACE(source_ + " sharded");
    const cq::hf::ModelDir md = cq::hf::open_model_dir(dir_.string());
    EXPECT_EQ(md.model_type, entry(model_dir_)["config"]["model_type"].get<std::string>());
    check_model(md.weights, "open_model_dir");

    const json& e = *exp_;
    const cq::ModelSummary s = cq::summarize_model(dir_.string());
    EXPECT_EQ(s.format, "hf");
    EXPECT_EQ(s.tensor_count, e["n_tensors"].get<uint64_t>()) << "tensor_count";
    EXPECT_EQ(s.parameter_count, e["n_params"].get<uint64_t>()) << "parameter_count";
    EXPECT_EQ(lower_keys(s.bytes_by_dtype), lower_keys(e["bytes_by_dtype"])) << "bytes_by_dtype";
    uint64_t shard_bytes = 0;
    for (const auto& n : shard_names_) shard_bytes += fs::file_size(dir_ / n);
    EXPECT_EQ(s.file_bytes, shard_bytes) << "file_bytes = sum of the shard sizes";
    for (const auto& ts : s.tensors) {
        SCOPED_TRACE("summary tensor " + ts.name);
        ASSERT_TRUE(placed_.count(ts.name));
        EXPECT_EQ(fs::path(ts.file).filename().string(), placed_[ts.name].shard) << "file";
        EXPECT_EQ(ts.offset, placed_[ts.name].offset) << "offset";
    }

    const auto idx = cq::summarize_model((dir_ / "model.safetensors.index.json").string());
    EXPECT_EQ(idx.format, "safetensors");
    EXPECT_EQ(idx.tensor_count, e["n_tensors"].get<uint64_t>());
    EXPECT_EQ(idx.parameter_count, e["n_params"].get<uint64_t>());
}

INSTANTIATE_TEST_SUITE_P(fixtures, ShardedSafetensors, testing::ValuesIn(keys_of_format("safetensors")), param_name);

}  // namespace
