// The Python extension cq._core: cq's public C++ API (include/cq/) as Python objects — models and their layers,
// weights as zero-copy buffers, quantization, evaluation and benchmarks. The package's own API
// (python/cq/__init__.py: QuantizationConfig, ModelQuantizer, evaluate, ...) is written in Python over this module.
// Long calls release the GIL; progress reaches Python through a callback that takes the GIL back.
#include <pybind11/functional.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstring>
#include <fstream>
#include <sstream>

#include "cq/cq.h"

namespace py = pybind11;
using namespace cq;

namespace {

// A tensor handed to Python. `owner` keeps the memory alive: the model (a weight viewed in place) or the
// tensor itself (a copy). The buffer protocol exposes it without copying; numpy.asarray(t) is a view.
struct PyTensor {
    Tensor tensor;
    std::shared_ptr<const void> owner;
    bool writable = false;
};

// The buffer format and element size Python sees for a dtype. Block-quantized types are exposed as their raw
// bytes, [rows, bytes per row] of uint8: their values exist only through the codec (to_float / dequantize()).
struct BufferLayout {
    std::string format;
    size_t itemsize = 1;
    std::vector<py::ssize_t> shape;
};

BufferLayout buffer_layout(const Tensor& t) {
    BufferLayout b;
    std::vector<py::ssize_t> shape(t.shape().begin(), t.shape().end());
    switch (t.dtype()) {
        case DType::F32: b.format = py::format_descriptor<float>::format(); b.itemsize = 4; b.shape = shape; return b;
        case DType::F16: b.format = "e"; b.itemsize = 2; b.shape = shape; return b;
        case DType::I8: b.format = py::format_descriptor<int8_t>::format(); b.itemsize = 1; b.shape = shape; return b;
        case DType::I32: b.format = py::format_descriptor<int32_t>::format(); b.itemsize = 4; b.shape = shape; return b;
        default: break;
    }
    // BF16 (no buffer-protocol code) and block formats: raw bytes per row.
    const int64_t rows = t.ndim() == 0 ? 1 : static_cast<int64_t>(t.numel() / t.shape().back());
    b.format = py::format_descriptor<uint8_t>::format();
    b.itemsize = 1;
    b.shape = {static_cast<py::ssize_t>(rows), static_cast<py::ssize_t>(rows ? t.nbytes() / rows : 0)};
    return b;
}

py::buffer_info tensor_buffer(PyTensor& p) {
    const BufferLayout b = buffer_layout(p.tensor);
    std::vector<py::ssize_t> strides(b.shape.size());
    py::ssize_t stride = static_cast<py::ssize_t>(b.itemsize);
    for (size_t i = b.shape.size(); i-- > 0;) {
        strides[i] = stride;
        stride *= b.shape[i];
    }
    return py::buffer_info(const_cast<void*>(p.tensor.data()), static_cast<py::ssize_t>(b.itemsize), b.format,
                           static_cast<py::ssize_t>(b.shape.size()), b.shape, strides, !p.writable);
}

PyTensor owned_float(std::vector<float> values, std::vector<int64_t> shape) {
    Tensor t = Tensor::zeros(std::move(shape), DType::F32);
    std::memcpy(t.mutable_data(), values.data(), values.size() * sizeof(float));
    PyTensor p{std::move(t), nullptr, true};
    return p;
}

// A float32 C-contiguous view of any Python buffer of floats (numpy array, array.array, memoryview), with its shape.
std::pair<std::vector<float>, std::vector<int64_t>> floats_from(py::buffer buffer, const char* what) {
    const py::buffer_info info = buffer.request();
    if (info.format != py::format_descriptor<float>::format() && info.format != "f")
        throw InvalidArgument(std::string("[python] ") + what + ": expected float32 values, got buffer format '" +
                              info.format + "' (use numpy.asarray(x, dtype=numpy.float32))");
    std::vector<int64_t> shape(info.shape.begin(), info.shape.end());
    py::ssize_t expect = static_cast<py::ssize_t>(sizeof(float));
    for (size_t i = shape.size(); i-- > 0;) {
        if (info.shape[i] > 1 && info.strides[i] != expect)
            throw InvalidArgument(std::string("[python] ") + what + ": the array must be C-contiguous (numpy.ascontiguousarray)");
        expect *= info.shape[i];
    }
    const size_t n = static_cast<size_t>(info.size);
    std::vector<float> values(n);
    if (n) std::memcpy(values.data(), info.ptr, n * sizeof(float));
    return {std::move(values), std::move(shape)};
}

// Progress from a worker thread of the library to a Python callable: the GIL is taken for the call only.
ProgressFn progress_to(const py::object& callback) {
    if (callback.is_none()) return {};
    auto fn = std::make_shared<py::object>(callback);
    return [fn](int64_t done, int64_t total, double value) {
        py::gil_scoped_acquire gil;
        (*fn)(done, total, value);
    };
}

py::dict layer_dict(const LayerInfo& l) {
    py::dict d;
    d["name"] = l.name;
    d["source_name"] = l.source_name;
    d["block"] = l.block;
    d["shape"] = l.shape;
    d["format"] = l.format;
    d["bytes"] = l.bytes;
    d["is_linear"] = l.is_linear;
    return d;
}

py::dict kld_dict(const KldResult& k) {
    py::dict d;
    d["n"] = k.n;
    d["mean"] = k.mean;
    d["mean_err"] = k.mean_err;
    d["median"] = k.median;
    d["max"] = k.max;
    d["same_top"] = k.same_top;
    d["base_ppl"] = k.base_ppl;
    d["ppl_ratio"] = k.ppl_ratio;
    d["percentiles"] = k.percentiles;
    return d;
}

std::string read_text_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw IoError("[python] cannot read the text file '" + path + "'");
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}

Linear& linear_named(Model& m, const std::string& name) {
    Linear* l = m.find_linear(name);
    if (!l) throw InvalidArgument("[python] the model has no Linear named '" + name + "' (see Model.layers())");
    return *l;
}

std::optional<QuantMethod> method_from(const std::string& name) {
    if (name.empty()) return std::nullopt;
    return parse_quant_method(name);
}

// A QuantizeReport as the dict quantize_model / quantize_llm_w8a8 return (ModelQuantizer.last_report).
py::dict quantize_report_dict(const QuantizeReport& r) {
    py::dict d;
    d["input"] = r.input;
    d["output"] = r.output;
    d["type"] = r.type;
    d["method"] = r.method;
    d["file_bytes_in"] = r.file_bytes_in;
    d["file_bytes_out"] = r.file_bytes_out;
    d["bpw_in"] = r.bpw_in;
    d["bpw_out"] = r.bpw_out;
    d["parameters"] = r.parameters;
    d["tensors_by_type"] = r.tensors_by_type;
    d["warnings"] = r.warnings;
    d["notes"] = r.notes;
    d["calib_kld"] = r.calib_kld;
    d["predicted_kld"] = r.predicted_kld;
    d["seconds"] = r.seconds;
    return d;
}

}  // namespace

PYBIND11_MODULE(_core, m) {
    m.doc() = "cq's C++ core: models, quantization, evaluation (the package cq builds its API on this module)";

    // C++ errors become Python exceptions with the same message: InvalidArgument -> ValueError, FormatError ->
    // cq.FormatError (a ValueError), Unsupported -> NotImplementedError, IoError -> OSError.
    static py::exception<FormatError> format_error(m, "FormatError", PyExc_ValueError);
    py::register_exception_translator([](std::exception_ptr p) {
        try {
            if (p) std::rethrow_exception(p);
        } catch (const FormatError& e) {
            format_error(e.what());
        } catch (const InvalidArgument& e) {
            PyErr_SetString(PyExc_ValueError, e.what());
        } catch (const Unsupported& e) {
            PyErr_SetString(PyExc_NotImplementedError, e.what());
        } catch (const IoError& e) {
            PyErr_SetString(PyExc_OSError, e.what());
        } catch (const Error& e) {
            PyErr_SetString(PyExc_RuntimeError, e.what());
        }
    });

    py::class_<PyTensor>(m, "Tensor", py::buffer_protocol(),
                         "A tensor of a model or a result. numpy.asarray(t) views it without copying: float32 / float16 / int8 as "
                         "their values, block-quantized formats (q4_0, q4_K, ...) as their raw bytes [rows, bytes per row]; "
                         "dequantize() gives float32 values of any format.")
        .def_buffer(&tensor_buffer)
        .def_property_readonly("shape", [](const PyTensor& p) { return p.tensor.shape(); })
        .def_property_readonly("dtype", [](const PyTensor& p) { return std::string(dtype_name(p.tensor.dtype())); })
        .def_property_readonly("nbytes", [](const PyTensor& p) { return p.tensor.nbytes(); })
        .def("dequantize", [](const PyTensor& p) { return owned_float(p.tensor.to_float(), p.tensor.shape()); },
             "The values as float32 (a copy), through the format's own codec.")
        .def("__repr__", [](const PyTensor& p) {
            return "cq.Tensor(" + p.tensor.shape_string() + ", " + std::string(dtype_name(p.tensor.dtype())) + ")";
        });

    py::class_<Model, std::shared_ptr<Model>>(m, "Model")
        .def_property_readonly("kind", [](const Model& x) { return std::string(model_kind_name(x.kind())); })
        .def_property_readonly("architecture", &Model::architecture)
        .def_property_readonly("n_blocks", &Model::n_blocks)
        .def_property_readonly("path", &Model::path)
        .def("layers", [](const Model& x) {
            py::list out;
            for (const LayerInfo& l : x.layers()) out.append(layer_dict(l));
            return out;
        }, "Every layer with weights (Linears, embeddings, norms) in execution order, as dicts.")
        .def("linear_names", [](Model& x) {
            std::vector<std::string> names;
            for (const Linear* l : x.linears()) names.push_back(l->name);
            return names;
        })
        .def("weight", [](std::shared_ptr<Model> self, const std::string& name) {
            const Linear& l = linear_named(*self, name);
            return PyTensor{l.weight, std::shared_ptr<const void>(self, self.get()), false};
        }, py::arg("name"), "The Linear's weight as the model holds it, viewed in place (read-only, no copy).")
        .def("set_weight", [](Model& self, const std::string& name, py::buffer values, const std::string& by) {
            auto [data, shape] = floats_from(values, "set_weight");
            Tensor t = Tensor::zeros(shape, DType::F32);
            if (!data.empty()) std::memcpy(t.mutable_data(), data.data(), data.size() * sizeof(float));
            self.set_weight(linear_named(self, name), std::move(t), by);
        }, py::arg("name"), py::arg("values"), py::arg("by") = "python",
           "Replaces the Linear's weight by float32 values of shape [n_out, n_in] (copied).")
        .def("quantize_linear", [](Model& self, const std::string& name, const std::string& type) {
            const std::optional<DType> t = dtype_from_name(type);
            if (!t) throw InvalidArgument("[python] unknown type '" + type + "'");
            py::gil_scoped_release release;
            self.quantize_linear(linear_named(self, name), *t, "python");
        }, py::arg("name"), py::arg("type"), "Rounds one Linear's weight to a ggml type in memory.")
        .def("save", [](const Model& self, const std::string& path) {
            py::gil_scoped_release release;
            self.save(path);
        }, py::arg("path"), "Writes the model as it is now (atomically).");

    py::class_<LanguageModel, Model, std::shared_ptr<LanguageModel>>(m, "LanguageModel")
        .def_property_readonly("n_vocab", [](const LanguageModel& x) { return x.config().n_vocab; })
        .def_property_readonly("n_embd", [](const LanguageModel& x) { return x.config().n_embd; })
        .def_property_readonly("weight_bytes", &LanguageModel::weight_bytes)
        .def("tokenize", [](const LanguageModel& x, const std::string& text, bool add_special) {
            return x.tokenizer().encode(text, add_special);
        }, py::arg("text"), py::arg("add_special") = true)
        .def("detokenize", [](const LanguageModel& x, const std::vector<int32_t>& ids) { return py::bytes(x.tokenizer().decode(ids)); })
        .def("logits", [](LanguageModel& x, const std::vector<int32_t>& tokens) {
            if (tokens.empty()) throw InvalidArgument("[python] logits: no tokens");
            std::vector<float> out(tokens.size() * static_cast<size_t>(x.config().n_vocab));
            {
                py::gil_scoped_release release;
                x.forward(tokens, 0, out, true);
            }
            return owned_float(std::move(out), {static_cast<int64_t>(tokens.size()), x.config().n_vocab});
        }, py::arg("tokens"), "Logits [len(tokens), n_vocab] of one sequence from position 0.")
        .def("perplexity", [](LanguageModel& x, const std::string& text, int64_t n_ctx, int64_t max_chunks,
                              const std::string& save_logits, const std::string& kld_base, const py::object& progress) {
            PerplexityOptions o;
            o.n_ctx = n_ctx;
            o.max_chunks = max_chunks;
            o.save_logits = save_logits;
            o.kld_base = kld_base;
            const ProgressFn fn = progress_to(progress);
            PerplexityResult r;
            {
                py::gil_scoped_release release;
                r = evaluate_perplexity(x, text, o, fn);
            }
            py::dict d;
            d["ppl"] = r.ppl;
            d["ppl_err"] = r.ppl_err;
            d["mean_nll"] = r.mean_nll;
            d["n_tokens"] = r.n_tokens;
            d["n_chunks"] = r.n_chunks;
            d["n_ctx"] = r.n_ctx;
            d["seconds"] = r.seconds;
            if (r.kld) d["kld"] = kld_dict(*r.kld);
            return d;
        }, py::arg("text"), py::arg("n_ctx") = 512, py::arg("max_chunks") = -1, py::arg("save_logits") = "",
           py::arg("kld_base") = "", py::arg("progress") = py::none(),
           "llama-perplexity's method on `text` (the text itself, not a path).")
        .def("generate", [](LanguageModel& x, const std::string& prompt, int64_t n_predict, float temperature, uint64_t seed) {
            SamplingOptions o;
            o.temperature = temperature;
            o.seed = seed;
            GenerationResult r;
            {
                py::gil_scoped_release release;
                r = generate(x, prompt, n_predict, o);
            }
            return py::bytes(r.text);
        }, py::arg("prompt"), py::arg("n_predict") = 32, py::arg("temperature") = 0.0f, py::arg("seed") = 0)
        .def("bench", [](LanguageModel& x, int64_t n_prompt, int64_t n_gen, int64_t repetitions) {
            BenchOptions o;
            o.n_prompt = n_prompt;
            o.n_gen = n_gen;
            o.repetitions = repetitions;
            BenchResult r;
            {
                py::gil_scoped_release release;
                r = bench_model(x, o);
            }
            py::dict d;
            d["isa"] = r.isa;
            d["threads"] = r.threads;
            d["weight_bytes"] = r.weight_bytes;
            d["n_params"] = r.n_params;
            for (const BenchSeries& s : r.series) d[py::str(s.test)] = s.median;
            return d;
        }, py::arg("n_prompt") = 512, py::arg("n_gen") = 128, py::arg("repetitions") = 3,
           "Median tokens/s of a prompt of n_prompt tokens ('ppN') and of n_gen generated tokens ('tgN').");

    py::class_<EncoderModel, Model, std::shared_ptr<EncoderModel>>(m, "EncoderModel")
        .def_property_readonly("num_labels", [](const EncoderModel& x) { return x.config().num_labels; })
        .def_property_readonly("is_vision", &EncoderModel::is_vision)
        .def("classify_texts", [](EncoderModel& x, const std::vector<std::string>& texts, int64_t max_len) {
            if (x.is_vision()) throw InvalidArgument("[python] classify_texts: this is a vision model");
            if (texts.empty()) throw InvalidArgument("[python] classify_texts: no texts");
            std::vector<float> logits(texts.size() * static_cast<size_t>(x.config().num_labels));
            {
                py::gil_scoped_release release;
                const TextBatch batch = x.tokenize(texts, max_len);
                x.classify(batch, logits.data());
            }
            return owned_float(std::move(logits), {static_cast<int64_t>(texts.size()), x.config().num_labels});
        }, py::arg("texts"), py::arg("max_len") = 128, "Logits [len(texts), num_labels].")
        .def("evaluate", [](EncoderModel& x, const std::string& data, int64_t first, int64_t count, int64_t batch,
                            int64_t max_len, const py::object& progress) {
            DataSelection sel;
            sel.first = first;
            sel.count = count;
            ClassifyOptions o;
            o.batch = batch;
            o.max_len = max_len;
            const ProgressFn fn = progress_to(progress);
            ClassificationResult r;
            {
                py::gil_scoped_release release;
                const LabelledData d = load_labelled_data(data, x, sel);
                r = classify_dataset(x, d, o, fn);
            }
            py::dict d;
            d["accuracy"] = r.accuracy;
            d["samples"] = r.samples;
            d["correct"] = r.correct;
            d["seconds"] = r.seconds;
            d["predictions"] = r.predictions;
            d["labels"] = r.labels;
            d["logits"] = owned_float(std::move(r.logits), {r.samples, r.num_labels});
            return d;
        }, py::arg("data"), py::arg("first") = 0, py::arg("count") = -1, py::arg("batch") = 32, py::arg("max_len") = 128,
           py::arg("progress") = py::none(), "Accuracy on a labelled data file (TSV, MNIST idx, image folder).")
        .def("bench", [](EncoderModel& x, int64_t batch, int64_t seq, int64_t repetitions) {
            EncoderBenchResult r;
            {
                py::gil_scoped_release release;
                r = bench_encoder(x, batch, seq, repetitions, 1);
            }
            py::dict d;
            d["batch"] = r.batch;
            d["seq"] = r.seq;
            d["median_ms"] = r.median_ms;
            d["min_ms"] = r.min_ms;
            d["isa"] = r.isa;
            return d;
        }, py::arg("batch") = 8, py::arg("seq") = 128, py::arg("repetitions") = 5);

    m.def("load", [](const std::string& path) -> std::shared_ptr<Model> {
        std::unique_ptr<Model> model;
        {
            py::gil_scoped_release release;
            model = Model::load(path);
        }
        return std::shared_ptr<Model>(std::move(model));
    }, py::arg("path"), "Loads a model: a GGUF file, an HF directory, or cq's W8A8 container.");

    m.def("profile_memory", [](const std::string& path, int64_t n_prompt, int64_t n_gen, int64_t n_ctx, const std::string& calib_text,
                               int64_t calib_ctx, int64_t calib_chunks, int64_t train_batch, int64_t train_ctx,
                               const std::string& train_checkpoint) {
        MemoryProfileOptions o;
        o.n_prompt = n_prompt, o.n_gen = n_gen, o.n_ctx = n_ctx;
        o.calib_text = calib_text, o.calib_ctx = calib_ctx, o.calib_chunks = calib_chunks;
        o.train_batch = train_batch, o.train_ctx = train_ctx, o.train_checkpoint = train_checkpoint;
        MemoryProfile p;
        {
            py::gil_scoped_release release;
            p = profile_memory(path, o);
        }
        py::dict weights, speed, d;
        for (const FormatBytes& f : p.weights) weights[py::str(f.format)] = f.bytes;
        for (const BenchSeries& s : p.bench.series) speed[py::str(s.test)] = s.median;
        py::list phases;
        for (const MemoryPhase& ph : p.phases) {
            py::dict x;
            x["phase"] = ph.name, x["rss_before"] = ph.rss_before, x["rss_after"] = ph.rss_after, x["peak"] = ph.peak;
            x["analytic"] = ph.analytic, x["rss_anon_after"] = ph.anon_after, x["rss_file_after"] = ph.file_after, x["seconds"] = ph.seconds;
            phases.append(x);
        }
        d["model"] = p.model, d["weights"] = weights, d["weight_bytes"] = p.weight_bytes, d["packed_bytes"] = p.packed_bytes;
        d["kv_cache_bytes"] = p.kv_bytes, d["n_ctx"] = p.n_ctx, d["workspace_bytes"] = p.workspace_bytes;
        d["calibration_stats_bytes"] = p.calib_stats_bytes, d["analytic_total"] = p.analytic_total();
        if (p.training.parameters > 0) {
            py::dict t;
            t["parameters"] = p.training.parameters, t["values_bytes"] = p.training.values_bytes, t["gradient_bytes"] = p.training.grad_bytes;
            t["optimizer_bytes"] = p.training.optimizer_bytes, t["activation_bytes"] = p.training.activation_bytes;
            t["released_packed_bytes"] = p.training.released_packed_bytes, t["released_mapped_bytes"] = p.training.released_mapped_bytes;
            t["total_bytes"] = p.training.total();
            t["batch"] = p.training.batch, t["ctx"] = p.training.ctx, t["checkpoint"] = p.training.checkpoint;
            d["training"] = t;
        }
        d["baseline_rss"] = p.baseline_rss, d["peak_rss"] = p.peak_rss, d["final_rss"] = p.final_rss;
        d["peak_reset_per_phase"] = p.peak_reset, d["phases"] = phases, d["tokens_per_second"] = speed;
        return d;
    }, py::arg("path"), py::arg("n_prompt") = 128, py::arg("n_gen") = 32, py::arg("n_ctx") = 0, py::arg("calib_text") = "",
       py::arg("calib_ctx") = 128, py::arg("calib_chunks") = 4, py::arg("train_batch") = 0, py::arg("train_ctx") = 128,
       py::arg("train_checkpoint") = "none",
       "cq bench --memory: loads the model in this process and measures load, prompt, generation (calibration, a training step).");
    m.def("is_encoder_model", [](const std::string& path) { return is_encoder_model(path); }, py::arg("path"));
    m.def("read_text", [](const std::string& path) { return read_text_file(path); }, py::arg("path"));

    m.def("quantize_model", [](const std::string& input, const std::string& output, const std::string& type,
                               const std::string& method, const std::string& calib_text, int64_t calib_ctx,
                               int64_t calib_chunks, const std::string& imatrix, uint64_t target_size, double target_bpw,
                               const std::vector<std::string>& tensor_types, const py::object& progress) {
        QuantizeOptions o;
        o.type = type;
        o.method = method_from(method);
        o.calib.text_path = calib_text;
        o.calib.n_ctx = calib_ctx;
        o.calib.max_chunks = calib_chunks;
        o.imatrix_file = imatrix;
        o.target_size = target_size;
        o.target_bpw = target_bpw;
        o.tensor_types = tensor_types;
        const ProgressFn fn = progress_to(progress);
        QuantizeReport r;
        {
            py::gil_scoped_release release;
            r = quantize_model(input, output, o, fn);
        }
        return quantize_report_dict(r);
    }, py::arg("input"), py::arg("output"), py::arg("type") = "q8_0", py::arg("method") = "", py::arg("calib_text") = "",
       py::arg("calib_ctx") = 512, py::arg("calib_chunks") = 128, py::arg("imatrix") = "", py::arg("target_size") = 0,
       py::arg("target_bpw") = 0.0, py::arg("tensor_types") = std::vector<std::string>{}, py::arg("progress") = py::none(),
       "cq quantize for decoder LLMs: a GGUF file or HF directory in, a GGUF file out.");

    m.def("quantize_llm_w8a8", [](const std::string& input, const std::string& output, const std::string& mode,
                                  const std::string& calib_text, int64_t calib_ctx, int64_t calib_chunks,
                                  const std::string& calib_method, const std::vector<std::string>& tensor_types,
                                  const py::object& progress) {
        LlmW8A8Options o;
        if (mode == "static") o.activations = ActivationQuant::static_per_tensor;
        else if (mode == "dynamic") o.activations = ActivationQuant::dynamic_per_token;
        else if (mode == "dynamic-tensor") o.activations = ActivationQuant::dynamic_per_tensor;
        else if (mode == "static-symmetric") o.activations = ActivationQuant::static_per_tensor, o.symmetric = true;
        else throw InvalidArgument("[python] quantize_llm_w8a8: mode '" + mode + "' is not static, static-symmetric, dynamic or dynamic-tensor");
        o.calib_text = calib_text;
        o.calib_ctx = calib_ctx;
        o.calib_chunks = calib_chunks;
        if (!calib_method.empty()) {
            const std::optional<calib::Method> method = calib::parse_method(calib_method);
            if (!method)
                throw InvalidArgument("[python] quantize_llm_w8a8: calib_method '" + calib_method + "' is not minmax, percentile, mse or entropy");
            o.method = *method;
        }
        const ProgressFn fn = progress_to(progress);
        QuantizeReport r;
        {
            py::gil_scoped_release release;
            r = quantize_llm_w8a8_file(input, output, o, tensor_types, true, fn);
        }
        return quantize_report_dict(r);
    }, py::arg("input"), py::arg("output"), py::arg("mode") = "dynamic", py::arg("calib_text") = "", py::arg("calib_ctx") = 512,
       py::arg("calib_chunks") = 128, py::arg("calib_method") = "", py::arg("tensor_types") = std::vector<std::string>{},
       py::arg("progress") = py::none(), "W8A8 of a decoder LLM (cq quantize --type w8a8-*): a GGUF with int8 block Linears.");

    m.def("quantize_encoder", [](const std::string& input, const std::string& output, const std::string& mode,
                                 const std::string& calib_data, int64_t calib_samples, const std::string& calib_method,
                                 double percentile, const py::object& progress, const std::string& attention) {
        EncoderQuantizeOptions o;
        const std::optional<AttentionPrecision> precision = attention_precision_from_name(attention);
        if (!precision) throw InvalidArgument("[python] quantize_encoder: attention '" + attention + "' is not 'f32' or 'int8'");
        o.attention = *precision;
        if (mode == "static") {
            o.activations = ActivationQuant::static_per_tensor;
        } else if (mode != "dynamic") {
            throw InvalidArgument("[python] quantize_encoder: mode '" + mode + "' is not 'dynamic' or 'static'");
        }
        o.calib_data = calib_data;
        o.calib_samples = calib_samples;
        if (!calib_method.empty()) {
            const std::optional<calib::Method> method = calib::parse_method(calib_method);
            if (!method)
                throw InvalidArgument("[python] quantize_encoder: calib_method '" + calib_method +
                                      "' is not minmax, percentile, mse or entropy");
            o.method = *method;
        }
        o.percentile = percentile;
        const ProgressFn fn = progress_to(progress);
        EncoderQuantizeReport r;
        {
            py::gil_scoped_release release;
            r = quantize_encoder(input, output, o, fn);
        }
        py::dict d;
        d["input"] = r.input;
        d["output"] = r.output;
        d["type"] = r.type;
        d["method"] = r.method;
        d["file_bytes_in"] = r.file_bytes_in;
        d["file_bytes_out"] = r.file_bytes_out;
        d["tensor_bytes_in"] = r.tensor_bytes_in;
        d["tensor_bytes_out"] = r.tensor_bytes_out;
        d["calib_samples"] = r.calib_samples;
        d["activation_bits"] = r.activation_bits;
        d["attention"] = r.attention;
        d["seconds"] = r.seconds;
        return d;
    }, py::arg("input"), py::arg("output"), py::arg("mode") = "dynamic", py::arg("calib_data") = "",
       py::arg("calib_samples") = 256, py::arg("calib_method") = "", py::arg("percentile") = 99.99,
       py::arg("progress") = py::none(), py::arg("attention") = "f32",
       "W8A8 quantization of an encoder classifier (BERT family, ViT) into cq's container; attention 'int8' runs the "
       "self-attention's products as u8·s8 too.");

    m.def("compress", [](const std::string& model, const std::string& output_dir, const std::string& recipe_text,
                         const std::string& recipe_name, bool resume, const py::object& progress) {
        CompressionConfig config = CompressionConfig::parse(recipe_text, recipe_name);
        std::function<void(const std::string&, int64_t, int64_t)> fn;
        if (!progress.is_none()) {
            auto cb = std::make_shared<py::object>(progress);
            fn = [cb](const std::string& stage, int64_t done, int64_t total) {
                py::gil_scoped_acquire gil;
                (*cb)(stage, done, total);
            };
        }
        CompressionReport r;
        {
            py::gil_scoped_release release;
            r = CompressionPipeline(std::move(config)).run(model, output_dir, resume, fn);
        }
        return std::make_pair(r.json(), r.markdown());
    }, py::arg("model"), py::arg("output_dir"), py::arg("recipe_text"), py::arg("recipe_name") = "<python recipe>",
       py::arg("resume") = false, py::arg("progress") = py::none(),
       "Runs a CompressionPipeline recipe (YAML or JSON text); returns the report as (JSON, Markdown).");

    m.def("layer_stats", [](Model& model, const std::string& data, int64_t n_ctx, int64_t max_chunks, int64_t first,
                            int64_t count, int64_t batch, int64_t max_len, int64_t top, const py::object& progress) {
        LayerStatsOptions o;
        o.n_ctx = n_ctx, o.max_chunks = max_chunks, o.top_channels = top;
        o.selection.first = first, o.selection.count = count;
        o.run.batch = batch, o.run.max_len = max_len;
        const ProgressFn fn = progress_to(progress);
        LayerStatsReport r;
        {
            py::gil_scoped_release release;
            r = collect_layer_stats(model, data, o, fn);
        }
        py::list linears;
        for (const LinearStats& s : r.linears) {
            py::list outliers;
            for (const ChannelOutlier& c : s.outliers) outliers.append(py::make_tuple(c.channel, c.absmax, c.mean_square));
            py::dict l;
            l["name"] = s.name, l["source_name"] = s.source_name, l["role"] = std::string(role_name(s.role)), l["block"] = s.block;
            l["shape"] = std::vector<int64_t>{s.n_out, s.n_in}, l["format"] = s.format, l["rows"] = s.rows;
            l["input_absmax"] = s.input_absmax_all, l["input_mean_square"] = s.input_mean_square_all;
            l["channel_absmax"] = s.input_absmax, l["channel_mean_square"] = s.input_mean_square, l["outliers"] = outliers;
            l["output_mean"] = s.output_mean, l["output_mean_square"] = s.output_mean_square, l["output_absmax"] = s.output_absmax;
            linears.append(l);
        }
        py::dict d;
        d["model"] = r.model, d["data"] = r.data, d["kind"] = std::string(model_kind_name(r.kind)), d["units"] = r.units;
        d["rows"] = r.tokens, d["seconds"] = r.seconds, d["linears"] = linears;
        return d;
    }, py::arg("model"), py::arg("data"), py::arg("n_ctx") = 512, py::arg("max_chunks") = -1, py::arg("first") = 0,
       py::arg("count") = -1, py::arg("batch") = 32, py::arg("max_len") = 128, py::arg("top") = 8, py::arg("progress") = py::none(),
       "cq stats: every Linear's input-activation statistics (per channel mean square and max |x|) on real data.");

    m.def("qat_lm", [](const std::string& input, const std::string& output, const std::string& ptq_output, const std::string& type,
                       const std::string& data, const std::string& init, int64_t steps, int64_t batch, int64_t ctx, float lr,
                       bool teacher, uint64_t seed, const std::vector<std::string>& tensor_types, const py::object& progress) {
        // cq qat's decoder path: post-training quantization (the start), then training through the PTQ file's codecs.
        QatLmOptions q;
        q.data = data, q.output = output, q.steps = steps, q.batch = batch, q.ctx = ctx, q.seed = seed, q.teacher = teacher;
        q.schedule.lr = lr;
        QuantizeOptions qo;
        qo.type = type, qo.tensor_types = tensor_types, qo.method = parse_quant_method(init);
        if (*qo.method != QuantMethod::rtn) qo.calib.text_path = data;
        std::function<void(const FinetuneProgress&)> fn;
        if (!progress.is_none()) {
            auto cb = std::make_shared<py::object>(progress);
            fn = [cb](const FinetuneProgress& p) {
                py::gil_scoped_acquire gil;
                (*cb)(p.step, p.total_steps, p.loss);
            };
        }
        QuantizeReport ptq_report;
        QatReport r;
        {
            py::gil_scoped_release release;
            ptq_report = quantize_model(input, ptq_output, qo);
            LoadOptions train_lo;
            train_lo.pack_for_kernels = false, train_lo.n_ctx = 16;
            auto ptq = LanguageModel::load(ptq_output, train_lo);
            std::unique_ptr<LanguageModel> fp;
            if (teacher) {
                LoadOptions lo;
                lo.n_ctx = ctx;
                fp = LanguageModel::load(input, lo);
            }
            r = qat_lm(*ptq, fp.get(), q, fn);
        }
        py::dict d;
        d["output"] = r.output, d["ptq_output"] = ptq_output, d["ptq_method"] = ptq_report.method, d["type"] = type;
        d["quantized_tensors"] = r.n_quantized, d["steps"] = r.train.steps, d["tokens"] = r.train.tokens;
        d["loss_curve"] = r.train.loss_curve, d["seconds"] = r.train.seconds;
        return d;
    }, py::arg("input"), py::arg("output"), py::arg("ptq_output"), py::arg("type") = "q4_0", py::arg("data") = "",
       py::arg("init") = "rtn", py::arg("steps") = 100, py::arg("batch") = 8, py::arg("ctx") = 128, py::arg("lr") = 1e-4f,
       py::arg("teacher") = true, py::arg("seed") = 1, py::arg("tensor_types") = std::vector<std::string>{},
       py::arg("progress") = py::none(),
       "cq qat for decoder LLMs: PTQ to `ptq_output` (by `init`), then quantization-aware training into `output` (GGUF).");

    m.def("quant_presets", [] {
        std::vector<std::string> names;
        for (const QuantPreset& p : quant_presets()) names.push_back(p.name);
        return names;
    });
    m.def("isa_level", [] { return std::string(isa_level_name(kernel_table().level)); });
}
