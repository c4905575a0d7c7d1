// cq export (ONNX): cq's own forward passes against ONNX Runtime's outputs for cq's exports of the four fixture
// families (tests/expected/onnx/*.fp32.json, written by scripts/onnx_reference with onnxruntime-node). Each file
// records the CRC-32 of the graphs ORT ran, and the test re-exports and checks it, so the reference belongs to the
// graphs the exporter writes today. Also: the decode graph's step-by-step logits and greedy tokens, external data,
// determinism and errors.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>

#include <nlohmann/json.hpp>

#include "cq/encoder.h"
#include "cq/error.h"
#include "cq/llm.h"
#include "cq/onnx.h"
#include "cq/quantize.h"
#include "cq/quantize_encoder.h"
#include "cq/thread_pool.h"
#include "onnx/matmul_nbits.h"
#include "onnx/onnx_ir.h"
#include "test_support.h"

namespace cq {
namespace {

using test::fixture;
using test::TempDir;

nlohmann::json expected(const std::string& name) {
    std::ifstream in(test::tests_dir() + "/expected/onnx/" + name);
    if (!in) throw IoError("cannot open expected/onnx/" + name + " (run scripts/onnx_reference)");
    return nlohmann::json::parse(in);
}

uint32_t file_crc(const std::string& path) {
    const auto bytes = test::read_bytes(path);
    return test::crc32(bytes.data(), bytes.size());
}

// The export ORT ran is the export cq writes now.
void expect_same_graph(const nlohmann::json& ref, const std::string& key, const std::string& path) {
    ASSERT_TRUE(ref.contains(key)) << key;
    EXPECT_EQ(file_crc(path), ref[key].get<uint32_t>())
        << path << " differs from the graph ONNX Runtime ran: rerun scripts/onnx_reference if the change is intended";
}

// logits: [rows, vocab] from cq; ref: {rows, vocab, cols, values} (ORT's logits at the kept columns).
double max_abs_diff(const std::vector<float>& logits, const nlohmann::json& ref) {
    const int64_t rows = ref["rows"], vocab = ref["vocab"];
    const auto cols = ref["cols"].get<std::vector<int64_t>>();
    const auto values = ref["values"].get<std::vector<double>>();
    EXPECT_EQ(static_cast<int64_t>(logits.size()), rows * vocab);
    double worst = 0;
    for (int64_t r = 0; r < rows; ++r)
        for (size_t c = 0; c < cols.size(); ++c)
            worst = std::max(worst, std::fabs(logits[static_cast<size_t>(r * vocab + cols[c])] - values[static_cast<size_t>(r) * cols.size() + c]));
    return worst;
}

void check_decoder(const std::string& name) {
    const nlohmann::json ref = expected(name + ".fp32.json");
    auto model = LanguageModel::load(fixture("models/" + name));
    TempDir dir;
    const std::string path = dir.file(name + ".onnx");
    const OnnxExportReport report = export_onnx(*model, path);
    ASSERT_EQ(report.files.size(), 2u);
    expect_same_graph(ref, "onnx_crc32", path);
    expect_same_graph(ref, "onnx_with_past_crc32", onnx_with_past_path(path));

    const int64_t V = model->config().n_vocab;
    const auto ids = ref["input_ids"].get<std::vector<int32_t>>();
    std::vector<float> logits(ids.size() * static_cast<size_t>(V));
    model->forward(ids, 0, logits, true);
    const double full = max_abs_diff(logits, ref["logits"]);
    EXPECT_LE(full, 1e-4) << name << ": full-sequence logits vs ONNX Runtime";

    // the decode graph: prompt, then one token at a time with the past
    const int64_t prompt = ref["prompt"];
    std::vector<float> last(static_cast<size_t>(V)), steps;
    model->forward(std::span(ids).first(static_cast<size_t>(prompt)), 0, last, false);
    for (size_t t = static_cast<size_t>(prompt); t < ids.size(); ++t) {
        model->forward(std::span(ids).subspan(t, 1), static_cast<int64_t>(t), last, false);
        steps.insert(steps.end(), last.begin(), last.end());
    }
    const double step = max_abs_diff(steps, ref["step_logits"]);
    EXPECT_LE(step, 1e-4) << name << ": decode-graph logits vs ONNX Runtime";

    // greedy: ORT's tokens from the decode graph = cq's argmax loop from the same prompt (and = cq run's, recorded)
    auto tokens = ref["greedy_prompt"].get<std::vector<int32_t>>();
    const auto ort_greedy = ref["greedy"].get<std::vector<int32_t>>();
    std::vector<int32_t> cq_greedy;
    model->forward(tokens, 0, last, false);
    for (size_t n = 0; n < ort_greedy.size(); ++n) {
        const int32_t next = static_cast<int32_t>(std::max_element(last.begin(), last.end()) - last.begin());
        cq_greedy.push_back(next);
        model->forward(std::span(&next, 1), static_cast<int64_t>(tokens.size()), last, false);
        tokens.push_back(next);
    }
    EXPECT_EQ(cq_greedy, ort_greedy) << name;
    const auto run = ref["cq_run_tokens"].get<std::vector<int32_t>>();
    ASSERT_FALSE(run.empty());
    EXPECT_TRUE(std::equal(run.begin(), run.end(), ort_greedy.begin())) << name << ": cq run's tokens are a prefix of ORT's greedy tokens";
    std::printf("[onnx] %s: max |logits − ORT| full %.3g, decode %.3g; %zu greedy tokens equal\n", name.c_str(), full, step, ort_greedy.size());
}

TEST(OnnxExport, LlamaMatchesOnnxRuntimeEndToEnd) { check_decoder("llama-256d-stories"); }
TEST(OnnxExport, Gpt2MatchesOnnxRuntimeEndToEnd) { check_decoder("gpt2-tiny-stories"); }

TEST(OnnxExport, BertMatchesOnnxRuntime) {
    const nlohmann::json ref = expected("bert-tiny-sst2.fp32.json");
    const char* NAME = "bert-tiny-sst2";
    auto model = EncoderModel::load(fixture("models/bert-tiny-sst2"));
    TempDir dir;
    export_onnx(*model, dir.file("bert.onnx"));
    expect_same_graph(ref, "onnx_crc32", dir.file("bert.onnx"));
    TextBatch batch;
    batch.batch = ref["batch"];
    batch.seq = ref["seq"];
    batch.ids = ref["input_ids"].get<std::vector<int32_t>>();
    batch.mask = ref["attention_mask"].get<std::vector<int32_t>>();
    batch.type_ids = ref["token_type_ids"].get<std::vector<int32_t>>();
    const auto want = ref["logits"].get<std::vector<double>>();
    std::vector<float> logits(want.size());
    model->classify(batch, logits.data());
    double worst = 0;
    for (size_t i = 0; i < want.size(); ++i) worst = std::max(worst, std::fabs(logits[i] - want[i]));
    EXPECT_LE(worst, 1e-4);
    std::printf("[onnx] %s: max |logits − ORT| %.3g over %zu logits\n", NAME, worst, want.size());
}

TEST(OnnxExport, VitMatchesOnnxRuntime) {
    const nlohmann::json ref = expected("vit-tiny-mnist.fp32.json");
    const char* NAME = "vit-tiny-mnist";
    auto model = EncoderModel::load(fixture("models/vit-tiny-mnist"));
    TempDir dir;
    export_onnx(*model, dir.file("vit.onnx"));
    expect_same_graph(ref, "onnx_crc32", dir.file("vit.onnx"));
    const auto pixels = ref["pixels"].get<std::vector<uint8_t>>();
    const auto want = ref["logits"].get<std::vector<double>>();
    std::vector<float> logits(want.size());
    model->classify_images(pixels.data(), ref["batch"], logits.data());
    double worst = 0;
    for (size_t i = 0; i < want.size(); ++i) worst = std::max(worst, std::fabs(logits[i] - want[i]));
    EXPECT_LE(worst, 1e-4);
    std::printf("[onnx] %s: max |logits − ORT| %.3g over %zu logits\n", NAME, worst, want.size());
}

// llama-256d-stories quantized to Q4_0 as cq quantize --type q4_0 writes it (the head Q6_K), loaded from dir/q4_0.gguf.
std::unique_ptr<LanguageModel> llama_q4_0(const TempDir& dir) {
    QuantizeOptions qo;
    qo.type = "q4_0";
    quantize_model(fixture("models/llama-256d-stories"), dir.file("q4_0.gguf"), qo);
    return LanguageModel::load(dir.file("q4_0.gguf"));
}

onnx_ir::Model read_model(const std::string& path) {
    const auto bytes = test::read_bytes(path);
    onnx_ir::Model m;
    std::string error;
    EXPECT_TRUE(onnx_ir::parse(bytes.data(), bytes.size(), m, error)) << error;
    return m;
}

// --cq-activations: every block-typed Linear reads its input quantized as cq's kernels quantize it (Q8_0 blocks for Q4_0,
// Q8_K for the Q6_K head) and MatMulNBits runs at accuracy level 0 on those values; ORT's agreement with cq is measured in
// docs/onnx.md (bench/llm_onnx_int8_vs_ort.sh).
TEST(OnnxExport, CqActivationsQuantizeEveryBlockTypedInput) {
    TempDir dir;
    auto model = llama_q4_0(dir);
    OnnxExportOptions o;
    o.format = OnnxFormat::matmulnbits;
    o.with_past = false;
    o.nbits_cq_activations = true;
    const auto report = export_onnx(*model, dir.file("cq.onnx"), o);
    EXPECT_EQ(report.files[0].linears.at("MatMulNBits 4-bit on cq's activation blocks"), 42);
    EXPECT_EQ(report.files[0].linears.at("MatMul on cq's activation blocks"), 1);  // the Q6_K head, on Q8_K blocks
    int fp16_casts = 0, argmax = 0, nbits = 0;
    for (const auto& n : read_model(dir.file("cq.onnx")).graph.nodes) {
        for (const auto& a : n.attributes) {
            if (n.op_type == "Cast" && a.name == "to" && a.i == onnx_ir::kFloat16) ++fp16_casts;
            if (n.op_type == "MatMulNBits" && a.name == "accuracy_level") EXPECT_EQ(a.i, 0) << n.name;
        }
        argmax += n.op_type == "ArgMax";
        nbits += n.op_type == "MatMulNBits";
    }
    // one Q8_0 quantizer per distinct input (q / k / v and gate / up share theirs): 4 per block; one Q8_K for the head
    EXPECT_EQ(fp16_casts, 4 * model->config().n_layer);
    EXPECT_EQ(argmax, 1);
    EXPECT_EQ(nbits, 42);
}

// Opset 18 moved the Reduce ops' axes from an attribute to an input (ONNX's changelog); an attribute there is an invalid
// model that ONNX Runtime refuses to load. LLaMA's RMSNorm and EfficientNet's pools are Reduce ops.
TEST(OnnxExport, ReduceAxesFollowTheOpset) {
    TempDir dir;
    auto llama = LanguageModel::load(fixture("models/llama-256d-stories"));
    auto efficientnet = EncoderModel::load(test::tests_dir() + "/data/families/efficientnet-tiny-random");
    for (const int opset : {17, 18}) {
        OnnxExportOptions o;
        o.opset = opset;
        o.with_past = false;
        export_onnx(*llama, dir.file("llama.onnx"), o);
        export_onnx(*efficientnet, dir.file("efficientnet.onnx"), o);
        for (const char* file : {"llama.onnx", "efficientnet.onnx"}) {
            int reduces = 0;
            for (const auto& n : read_model(dir.file(file)).graph.nodes) {
                if (n.op_type.rfind("Reduce", 0) != 0) continue;
                ++reduces;
                const bool axes_attribute = std::any_of(n.attributes.begin(), n.attributes.end(), [](const auto& a) { return a.name == "axes"; });
                EXPECT_EQ(axes_attribute, opset < 18) << file << " " << n.name;
                EXPECT_EQ(n.inputs.size(), opset < 18 ? 1u : 2u) << file << " " << n.name;
            }
            EXPECT_GT(reduces, 0) << file;
        }
    }
}

TEST(OnnxExport, ExternalDataHoldsTheSameBytes) {
    auto model = EncoderModel::load(fixture("models/vit-tiny-mnist"));
    TempDir dir;
    export_onnx(*model, dir.file("inline.onnx"));
    OnnxExportOptions options;
    options.external_data_threshold = 0;
    const OnnxExportReport r = export_onnx(*model, dir.file("external.onnx"), options);
    ASSERT_EQ(r.files.size(), 1u);
    ASSERT_EQ(r.files[0].external_data, dir.file("external.onnx.data"));
    const onnx_ir::Model inline_model = read_model(dir.file("inline.onnx")), external = read_model(dir.file("external.onnx"));
    const auto data = test::read_bytes(dir.file("external.onnx.data"));
    ASSERT_EQ(inline_model.graph.initializers.size(), external.graph.initializers.size());
    int moved = 0;
    for (size_t i = 0; i < external.graph.initializers.size(); ++i) {
        const auto& a = inline_model.graph.initializers[i];
        const auto& b = external.graph.initializers[i];
        ASSERT_EQ(a.name, b.name);
        if (b.external_data.empty()) {
            EXPECT_LT(a.raw.size(), 1024u) << a.name;
            EXPECT_EQ(a.raw, b.raw) << a.name;
            continue;
        }
        std::map<std::string, std::string> kv(b.external_data.begin(), b.external_data.end());
        EXPECT_EQ(kv["location"], "external.onnx.data");
        const size_t offset = std::stoull(kv["offset"]), length = std::stoull(kv["length"]);
        EXPECT_EQ(offset % 64, 0u) << a.name;
        ASSERT_LE(offset + length, data.size()) << a.name;
        EXPECT_EQ(a.raw, std::string(reinterpret_cast<const char*>(data.data()) + offset, length)) << a.name;
        ++moved;
    }
    EXPECT_GT(moved, 10);
}

TEST(OnnxExport, SameBytesForAnyThreadCountAndRun) {
    auto model = LanguageModel::load(fixture("models/llama-256d-stories"));
    TempDir dir;
    ThreadPool::set_global_threads(1);
    export_onnx(*model, dir.file("a.onnx"));
    ThreadPool::set_global_threads(3);
    export_onnx(*model, dir.file("b.onnx"));
    ThreadPool::set_global_threads(0);
    EXPECT_EQ(test::read_bytes(dir.file("a.onnx")), test::read_bytes(dir.file("b.onnx")));
    EXPECT_EQ(test::read_bytes(dir.file("a_with_past.onnx")), test::read_bytes(dir.file("b_with_past.onnx")));
}

TEST(OnnxExport, ErrorsAreClearAndLeaveNoFile) {
    auto model = EncoderModel::load(fixture("models/vit-tiny-mnist"));
    EXPECT_THROW(onnx_format_from_name("int3"), InvalidArgument);
    OnnxExportOptions old;
    old.opset = 13;
    TempDir dir;
    try {
        export_onnx(*model, dir.file("old.onnx"), old);
        FAIL() << "opset 13 accepted";
    } catch (const InvalidArgument& e) {
        EXPECT_NE(std::string(e.what()).find("opset 13"), std::string::npos) << e.what();
    }
    EXPECT_THROW(export_onnx(*model, dir.file("missing/dir/x.onnx")), IoError);
    EXPECT_TRUE(std::filesystem::is_empty(dir.path()));
}

TEST(OnnxExport, WithPathNaming) {
    EXPECT_EQ(onnx_with_past_path("out/m.onnx"), "out/m_with_past.onnx");
    EXPECT_EQ(onnx_with_past_path("m"), "m_with_past.onnx");
}

}  // namespace
}  // namespace cq

namespace cq {
namespace {

// MatMulNBits carries cq's blocks value for value: ONNX Runtime's dequantization ((q − zp)·scale, spec'd in
// dequantize_nbits) of the packed weights equals cq's own reference codec for each type.
TEST(OnnxExport, MatMulNBitsCarriesCqsQuantizedValues) {
    auto model = LanguageModel::load(fixture("models/llama-256d-stories"));
    for (DType type : {DType::Q4_0, DType::Q4_1, DType::Q4_K, DType::Q8_0}) {
        Linear& layer = *model->find_linear("blk.1.ffn_down");
        model->quantize_linear(layer, type);
        const auto nb = onnx_export::matmul_nbits_weights(layer);
        ASSERT_TRUE(nb.has_value()) << dtype_name(type);
        EXPECT_EQ(nb->bits, type == DType::Q8_0 ? 8 : 4);
        EXPECT_EQ(nb->zero_points.empty(), type == DType::Q4_0 || type == DType::Q8_0) << dtype_name(type);
        const std::vector<float> want = layer.weight.to_float(), got = onnx_export::dequantize_nbits(*nb);
        ASSERT_EQ(got.size(), want.size());
        for (size_t i = 0; i < want.size(); ++i) {
            // symmetric types are exact; float zero points (−m/d) cost at most a rounding of q·d + m
            const float tol = nb->zero_points.empty() ? 0.0f : 4e-7f * (std::fabs(want[i]) + std::fabs(nb->scales[i / 32]) * 16);
            ASSERT_NEAR(got[i], want[i], tol) << dtype_name(type) << " element " << i;
        }
    }
    // a type MatMulNBits cannot carry exactly stays a float MatMul
    Linear& other = *model->find_linear("blk.1.ffn_up");
    model->quantize_linear(other, DType::Q5_0);
    EXPECT_FALSE(onnx_export::matmul_nbits_weights(other).has_value());
}

}  // namespace
}  // namespace cq

namespace cq {
namespace {

// The W8A8 BERT scripts/onnx_reference quantizes: static from 128 samples of sst2_train.tsv (minmax, 8-bit), or dynamic.
std::string quantize_bert(const TempDir& dir, ActivationQuant mode) {
    EncoderQuantizeOptions o;
    o.activations = mode;
    o.activation_bits = 8;
    if (mode == ActivationQuant::static_per_tensor) {
        o.method = calib::Method::minmax;
        o.calib_data = fixture("data/sst2_train.tsv");
        o.calib_samples = 128;
        // The activation statistics the reference graph was made from (cq quantize --calib-cache on an AVX-512 CPU):
        // calibrating again gives ranges that differ in the last bits between kernel rungs (float sums in another
        // order), hence other scales and another graph than the one ONNX Runtime ran. Read from the file, the
        // container is the same bytes on every CPU and ISA level.
        o.calib_cache = test::tests_dir() + "/expected/onnx/bert-tiny-sst2.w8a8-static-minmax-128.calib.json";
    }
    const std::string out = dir.file(mode == ActivationQuant::static_per_tensor ? "bert-static.gguf" : "bert-dynamic.gguf");
    quantize_encoder(fixture("models/bert-tiny-sst2"), out, o);
    return out;
}

// cq's run of the quantized model vs ONNX Runtime's run of its export: the same argmax and logits within what the
// two integer pipelines' float epilogues (and, for dynamic, per-tensor vs cq's per-token activation scales) allow.
void check_int8_export(const std::string& format, ActivationQuant mode, double tolerance) {
    const nlohmann::json ref = expected("bert-tiny-sst2." + format + ".json");
    TempDir dir;
    auto model = EncoderModel::load(quantize_bert(dir, mode));
    OnnxExportOptions o;
    o.format = onnx_format_from_name(format);
    export_onnx(*model, dir.file("bert.onnx"), o);
    expect_same_graph(ref, "onnx_crc32", dir.file("bert.onnx"));
    TextBatch batch;
    batch.batch = ref["batch"];
    batch.seq = ref["seq"];
    batch.ids = ref["input_ids"].get<std::vector<int32_t>>();
    batch.mask = ref["attention_mask"].get<std::vector<int32_t>>();
    batch.type_ids = ref["token_type_ids"].get<std::vector<int32_t>>();
    const auto want = ref["logits"].get<std::vector<double>>();
    std::vector<float> logits(want.size());
    model->classify(batch, logits.data());
    double worst = 0;
    for (size_t i = 0; i < want.size(); ++i) worst = std::max(worst, std::fabs(logits[i] - want[i]));
    for (int64_t b = 0; b < batch.batch; ++b)
        EXPECT_EQ(logits[2 * b] > logits[2 * b + 1], want[2 * b] > want[2 * b + 1]) << format << " sample " << b;
    EXPECT_LE(worst, tolerance) << format;
    std::printf("[onnx] bert-tiny-sst2 %s: max |logits − ORT| %.3g\n", format.c_str(), worst);
}

TEST(OnnxExport, QdqMatchesOnnxRuntimeEndToEnd) { check_int8_export("qdq", ActivationQuant::static_per_tensor, 0.02); }

// The qdq lowering ONNX Runtime fuses to MatMulIntegerToFloat: every quantized Linear a MatMul over two
// DequantizeLinears (activation u8, weight s8 per output channel on axis 1) with a float bias Add after it, no Gemm and
// no int32 bias; the q, k and v projections of a block read one QuantizeLinear (bert-tiny: 4 blocks × 4 inputs).
TEST(OnnxExport, QdqLinearsAreDequantizedMatMulsSharingTheirInputQuantizer) {
    TempDir dir;
    auto model = EncoderModel::load(quantize_bert(dir, ActivationQuant::static_per_tensor));
    OnnxExportOptions o;
    o.format = OnnxFormat::qdq;
    export_onnx(*model, dir.file("qdq.onnx"), o);
    const onnx_ir::Model m = read_model(dir.file("qdq.onnx"));
    std::map<std::string, const onnx_ir::Node*> producer;
    std::map<std::string, int> count;
    for (const auto& n : m.graph.nodes) {
        ++count[n.op_type];
        for (const auto& out : n.outputs) producer[out] = &n;
    }
    EXPECT_EQ(count["Gemm"], 0);
    EXPECT_EQ(count["QuantizeLinear"], 16);
    int quantized_matmuls = 0;
    for (const auto& n : m.graph.nodes) {
        if (n.op_type != "MatMul") continue;
        const auto a = producer.find(n.inputs[0]), b = producer.find(n.inputs[1]);
        if (b == producer.end() || b->second->op_type != "DequantizeLinear") continue;
        ++quantized_matmuls;
        ASSERT_NE(a, producer.end());
        EXPECT_EQ(a->second->op_type, "DequantizeLinear") << n.name;
        const auto axis = std::find_if(b->second->attributes.begin(), b->second->attributes.end(),
                                       [](const onnx_ir::Attribute& x) { return x.name == "axis"; });
        ASSERT_NE(axis, b->second->attributes.end()) << n.name;
        EXPECT_EQ(axis->i, 1) << n.name;
    }
    EXPECT_EQ(quantized_matmuls, 24);
    for (const auto& t : m.graph.initializers) EXPECT_EQ(t.name.find("bias_quantized"), std::string::npos) << t.name;
}
TEST(OnnxExport, TensorRtQdqRunsInOnnxRuntimeEndToEnd) { check_int8_export("trt-qdq", ActivationQuant::static_per_tensor, 0.2); }
TEST(OnnxExport, DynamicMatchesOnnxRuntimeEndToEnd) { check_int8_export("dynamic", ActivationQuant::dynamic_per_token, 0.2); }

TEST(OnnxExport, MatMulNBitsQ4_0MatchesOnnxRuntimeEndToEnd) {
    const nlohmann::json ref = expected("llama-256d-stories.matmulnbits-q4_0.json");
    TempDir dir;
    auto model = llama_q4_0(dir);
    OnnxExportOptions o;
    o.format = OnnxFormat::matmulnbits;
    const auto report = export_onnx(*model, dir.file("q4_0.onnx"), o);
    EXPECT_EQ(report.files[0].linears.at("MatMulNBits 4-bit"), 42);
    expect_same_graph(ref, "onnx_crc32", dir.file("q4_0.onnx"));
    const int64_t V = model->config().n_vocab;
    const auto ids = ref["input_ids"].get<std::vector<int32_t>>();
    std::vector<float> logits(ids.size() * static_cast<size_t>(V));
    model->forward(ids, 0, logits, true);
    // both quantize activations to int8 in blocks (cq: Q8_0 per 32; ORT: accuracy_level 4), not identically
    // (cq also quantizes the Q6_K head's input, which stays a float MatMul in ONNX), so the logits differ by up to a
    // few hundredths of their ~10 range; every position's top token must agree.
    const double diff = max_abs_diff(logits, ref["logits"]);
    EXPECT_LE(diff, 0.25);
    const auto& l = ref["logits"];
    const auto cols = l["cols"].get<std::vector<int64_t>>();
    const auto values = l["values"].get<std::vector<double>>();
    for (size_t r = 0; r < ids.size(); ++r) {
        const size_t ort_top = static_cast<size_t>(std::max_element(values.begin() + r * cols.size(), values.begin() + (r + 1) * cols.size()) -
                                                   (values.begin() + r * cols.size()));
        const auto row = logits.begin() + static_cast<std::ptrdiff_t>(r * static_cast<size_t>(V));
        EXPECT_EQ(std::max_element(row, row + V) - row, cols[ort_top]) << "position " << r;
    }
    // ORT's greedy tokens through the decode graph = cq run's on the same Q4_0 file
    const auto run = ref["cq_run_tokens"].get<std::vector<int32_t>>(), greedy = ref["greedy"].get<std::vector<int32_t>>();
    EXPECT_TRUE(std::equal(run.begin(), run.end(), greedy.begin()));
    std::printf("[onnx] llama-256d-stories q4_0 matmulnbits: max |logits − ORT| %.3g; %zu greedy tokens = cq run's\n", diff, run.size());
}

// TensorRT's rules: cq's trt-qdq export passes; graphs that break them are rejected, naming the node.
TEST(OnnxExport, TensorRtCheckerAcceptsExportsAndRejectsWrongGraphs) {
    TempDir dir;
    auto model = EncoderModel::load(quantize_bert(dir, ActivationQuant::static_per_tensor));
    OnnxExportOptions o;
    o.format = OnnxFormat::trt_qdq;
    export_onnx(*model, dir.file("trt.onnx"), o);
    EXPECT_TRUE(check_tensorrt_qdq(dir.file("trt.onnx")).empty());

    // ONNX Runtime's QDQ form (u8 activations with zero points) is not TensorRT's
    o.format = OnnxFormat::qdq;
    export_onnx(*model, dir.file("qdq.onnx"), o);
    const auto qdq = check_tensorrt_qdq(dir.file("qdq.onnx"));
    ASSERT_FALSE(qdq.empty());
    EXPECT_NE(qdq.front().find("zero point"), std::string::npos) << qdq.front();

    // deliberately wrong: one activation zero point made 3, one weight DequantizeLinear bypassed
    onnx_ir::Model m = read_model(dir.file("trt.onnx"));
    for (auto& t : m.graph.initializers)
        if (t.name.find(".input_zero_point") != std::string::npos) {
            t.raw[0] = 3;
            break;
        }
    std::string bypassed;
    for (auto& n : m.graph.nodes)
        if (n.op_type == "MatMul" && n.inputs[1].find("DequantizeLinear") != std::string::npos) {
            std::vector<float> w(static_cast<size_t>(128 * 128), 0.0f);
            onnx_ir::Tensor& t = m.graph.initializers.emplace_back();
            t.name = "float_weight";
            t.dims = {128, 128};
            t.raw.assign(reinterpret_cast<const char*>(w.data()), w.size() * 4);
            n.inputs[1] = t.name;
            bypassed = n.name;
            break;
        }
    ASSERT_FALSE(bypassed.empty());
    std::string bytes, error;
    ASSERT_TRUE(onnx_ir::serialize(m, bytes, error)) << error;
    const std::string bad = dir.write("bad.onnx", bytes);
    const auto issues = check_tensorrt_qdq(bad);
    bool zero_point = false, float_input = false;
    for (const auto& i : issues) {
        zero_point = zero_point || i.find("non-zero zero point") != std::string::npos;
        float_input = float_input || (i.find(bypassed) != std::string::npos && i.find("without a DequantizeLinear") != std::string::npos);
    }
    EXPECT_TRUE(zero_point && float_input) << issues.size() << " issues, first: " << (issues.empty() ? "" : issues.front());
}

TEST(OnnxExport, Int8FormatsNeedAW8A8Model) {
    auto model = EncoderModel::load(fixture("models/bert-tiny-sst2"));
    TempDir dir;
    OnnxExportOptions o;
    o.format = OnnxFormat::qdq;
    try {
        export_onnx(*model, dir.file("x.onnx"), o);
        FAIL() << "a float model exported as qdq";
    } catch (const InvalidArgument& e) {
        EXPECT_NE(std::string(e.what()).find("w8a8-static"), std::string::npos) << e.what();
    }
    TempDir q;
    auto dynamic = EncoderModel::load(quantize_bert(q, ActivationQuant::dynamic_per_token));
    EXPECT_THROW(export_onnx(*dynamic, dir.file("y.onnx"), o), InvalidArgument);  // static Q/DQ from run-time scales
    EXPECT_TRUE(std::filesystem::is_empty(dir.path()));
}

}  // namespace
}  // namespace cq
