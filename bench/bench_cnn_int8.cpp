// An imported ONNX CNN in cq, FP32 against static W8A8, in one run: top-1 agreement of the INT8 model with FP32 on
// held-out inputs, and interleaved latency per batch (JSON on stdout). --qdq writes the calibrated model as the QDQ
// graph ONNX Runtime runs, for scripts/onnx_time_images.js to time the peer on the same model (bench/cnn_vs_ort.sh).
// Inputs: MNIST test images (--mnist, raw 0..255 pixels as mnist-8 takes them) or seeded uniform [0, 1) values in the
// model's input layout (any model; SqueezeNet-CIFAR-10 ships without images). The first --calib samples calibrate,
// the next --eval samples are timed and compared; the two never overlap.
// Usage: bench_cnn_int8 MODEL.onnx [--mnist IMAGES] [--calib 256] [--eval 512] [--batch 32] [--rounds 5]
//        [--method minmax|percentile|mse|entropy] [--qdq OUT.onnx] [--seed 1] [--threads N (default: all cores)]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cq/calibration.h"
#include "cq/cpu_features.h"
#include "cq/datasets.h"
#include "cq/error.h"
#include "cq/kernels.h"
#include "cq/onnx_model.h"
#include "cq/thread_pool.h"

namespace {
double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]);
}
}  // namespace

int main(int argc, char** argv) try {
    if (argc < 2) {
        std::cerr << "usage: bench_cnn_int8 MODEL.onnx [--mnist IMAGES] [--calib 256] [--eval 512] [--batch 32] [--rounds 5] "
                     "[--method minmax] [--qdq OUT.onnx] [--seed 1] [--threads N]\n";
        return 2;
    }
    const std::string path = argv[1];
    std::string mnist, qdq, method_name = "minmax";
    int64_t calib = 256, eval = 512, batch = 32, rounds = 5;
    uint32_t seed = 1;
    for (int i = 2; i < argc; i += 2) {
        const std::string a = argv[i];
        if (i + 1 >= argc) throw cq::InvalidArgument("option " + a + " needs a value");
        const std::string v = argv[i + 1];
        if (a == "--mnist") mnist = v;
        else if (a == "--calib") calib = std::stoll(v);
        else if (a == "--eval") eval = std::stoll(v);
        else if (a == "--batch") batch = std::stoll(v);
        else if (a == "--rounds") rounds = std::stoll(v);
        else if (a == "--method") method_name = v;
        else if (a == "--qdq") qdq = v;
        else if (a == "--threads") cq::ThreadPool::set_global_threads(std::stoi(v));
        else if (a == "--seed") seed = static_cast<uint32_t>(std::stoul(v));
        else throw cq::InvalidArgument("unknown option " + a);
    }
    if (calib <= 0 || eval <= 0 || batch <= 0 || rounds <= 0) throw cq::InvalidArgument("--calib, --eval, --batch and --rounds must be positive");
    const auto method = cq::calib::parse_method(method_name);
    if (!method) throw cq::InvalidArgument("--method " + method_name + ": not minmax, percentile, mse or entropy");

    auto fp32 = cq::OnnxModel::load(path);
    auto int8 = cq::OnnxModel::load(path);
    int64_t per_sample = 1;
    for (size_t d = 1; d < fp32->input_shape().size(); ++d) per_sample *= fp32->input_shape()[d];
    const int64_t total = calib + eval;
    std::vector<float> inputs(static_cast<size_t>(total * per_sample));
    std::string input_kind;
    if (!mnist.empty()) {
        const std::string labels = mnist.substr(0, mnist.find("images-idx3")) + "labels-idx1-ubyte.gz";
        const cq::data::ImageDataset d = cq::data::load_mnist(mnist, labels, 0, total);
        if (d.channels * d.height * d.width != per_sample || d.count() < total)
            throw cq::InvalidArgument(mnist + " does not hold " + std::to_string(total) + " images of the model's input size");
        for (size_t i = 0; i < inputs.size(); ++i) inputs[i] = static_cast<float>(d.pixels[i]);
        input_kind = "MNIST test images [0, " + std::to_string(total) + "), raw 0..255";
    } else {
        std::mt19937 rng(seed);
        std::uniform_real_distribution<float> u(0.0f, 1.0f);
        for (float& v : inputs) v = u(rng);
        input_kind = "uniform [0, 1) values, mt19937 seed " + std::to_string(seed);
    }
    const float* calib_inputs = inputs.data();
    const float* eval_inputs = inputs.data() + calib * per_sample;
    const int64_t quantized = cq::quantize_onnx_w8a8_static(*int8, calib_inputs, calib, batch, static_cast<int32_t>(*method));
    nlohmann::json out;
    if (!qdq.empty()) {
        const cq::OnnxQdqReport r = int8->write_qdq(qdq);
        out["qdq"] = {{"path", r.path}, {"quantized", r.quantized}, {"file_bytes", r.file_bytes}};
    }

    auto run_all = [&](cq::OnnxModel& m, std::vector<float>* y) {
        if (y) y->clear();
        for (int64_t b0 = 0; b0 < eval; b0 += batch) {
            const std::vector<float> o = m.run(eval_inputs + b0 * per_sample, std::min(batch, eval - b0));
            if (y) y->insert(y->end(), o.begin(), o.end());
        }
    };
    std::vector<float> y32, y8;
    run_all(*fp32, &y32);  // also the warm-up
    run_all(*int8, &y8);
    const int64_t classes = fp32->outputs_per_sample();
    int64_t agree = 0;
    for (int64_t i = 0; i < eval; ++i) {
        const auto a = y32.begin() + i * classes, b = y8.begin() + i * classes;
        agree += std::max_element(a, a + classes) - a == std::max_element(b, b + classes) - b;
    }
    std::vector<double> t32, t8;
    for (int64_t r = 0; r < rounds; ++r)
        for (int which = 0; which < 2; ++which) {
            const auto t0 = std::chrono::steady_clock::now();
            run_all(which == 0 ? *fp32 : *int8, nullptr);
            const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
            (which == 0 ? t32 : t8).push_back(ms);
        }
    const double batches = static_cast<double>((eval + batch - 1) / batch);
    out["model"] = path;
    out["inputs"] = input_kind;
    out["calib_samples"] = calib;
    out["eval_samples"] = eval;
    out["method"] = method_name;
    out["linears_quantized"] = quantized;
    out["top1_agreement"] = static_cast<double>(agree) / static_cast<double>(eval);
    auto fnv1a = [](const std::vector<float>& v) {  // of the outputs' bytes: to compare runs, thread counts and builds
        uint64_t hash = 1469598103934665603ull;
        for (const unsigned char b : std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(float))) hash = (hash ^ b) * 1099511628211ull;
        char hex[17];
        std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(hash));
        return std::string(hex);
    };
    out["fp32_outputs_fnv1a"] = fnv1a(y32);
    out["int8_outputs_fnv1a"] = fnv1a(y8);
    out["batch"] = batch;
    out["threads"] = cq::ThreadPool::global().size();
    out["isa"] = std::string(cq::isa_level_name(cq::kernel_table().level));
    out["gemm_u8s8"] = cq::kernel_table().gemm_u8s8.name;
    out["fp32_ms_per_batch"] = median(t32) / batches;
    out["int8_ms_per_batch"] = median(t8) / batches;
    out["int8_speedup"] = median(t32) / median(t8);
    out["rounds_fp32_ms"] = t32;
    out["rounds_int8_ms"] = t8;
    std::cout << out.dump(2) << "\n";
    return 0;
} catch (const std::exception& e) {
    std::cerr << "bench_cnn_int8: " << e.what() << "\n";
    return 1;
}
