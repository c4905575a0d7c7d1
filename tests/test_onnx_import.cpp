// ONNX import (cq/onnx_model.h): mnist-8 and SqueezeNet against ONNX Runtime's outputs (tests/expected/onnx/*.ort.json,
// scripts/onnx_reference), the im2col Conv against its direct reference twin on awkward shapes, the static-W8A8 conv
// against the W8A8 Linear over float patches, BatchNormalization
// folding, QDQ weights, and clear errors for unknown operators and hostile files.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <limits>
#include <random>

#include <nlohmann/json.hpp>

#include "cq/calibration.h"
#include "cq/classify.h"
#include "cq/datasets.h"
#include "cq/error.h"
#include "cq/onnx_model.h"
#include "cq/thread_pool.h"
#include "cq/w8a8.h"
#include "onnx/conv2d.h"
#include "onnx/graph_builder.h"
#include "ops/ops.h"
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

TEST(OnnxImport, Mnist8MatchesOnnxRuntimeOnTheTestSetEndToEnd) {
    const nlohmann::json ref = expected("mnist-8.ort.json");
    auto model = OnnxModel::load(fixture("vision/mnist-8.onnx"));
    EXPECT_EQ(model->linears().size(), 3u);  // two Convs and the MatMul
    const auto d = data::load_mnist(fixture("data/t10k-images-idx3-ubyte.gz"), fixture("data/t10k-labels-idx1-ubyte.gz"));
    std::vector<float> x(d.pixels.begin(), d.pixels.end());  // the model zoo's mnist takes raw 0..255 pixels
    const std::vector<float> y = model->run(x.data(), d.count());
    ASSERT_EQ(model->outputs_per_sample(), 10);
    const auto ort = ref["predictions"].get<std::vector<int32_t>>();
    ASSERT_EQ(static_cast<int64_t>(ort.size()), d.count());
    int64_t correct = 0, same = 0;
    for (int64_t i = 0; i < d.count(); ++i) {
        const int32_t p = static_cast<int32_t>(std::max_element(y.begin() + i * 10, y.begin() + i * 10 + 10) - (y.begin() + i * 10));
        correct += p == d.labels[static_cast<size_t>(i)];
        same += p == ort[static_cast<size_t>(i)];
    }
    EXPECT_EQ(same, d.count());
    EXPECT_EQ(correct, 9891);  // 98.91 %, ORT's
    std::printf("[onnx] mnist-8 imported: %.2f %% on the MNIST test set, %lld / %lld predictions = ORT's\n", 100.0 * correct / d.count(),
                static_cast<long long>(same), static_cast<long long>(d.count()));
}

TEST(OnnxImport, SqueezeNetMatchesOnnxRuntime) {
    const nlohmann::json ref = expected("squeezenet_cifar10.ort.json");
    auto model = OnnxModel::load(fixture("vision/squeezenet_cifar10.onnx"));
    const auto x = ref["input"].get<std::vector<float>>();
    const auto want = ref["output"].get<std::vector<double>>();
    const int64_t batch = ref["dims"][0];
    const std::vector<float> y = model->run(x.data(), batch);
    ASSERT_EQ(y.size(), want.size());
    double worst = 0;
    for (size_t i = 0; i < y.size(); ++i) worst = std::max(worst, std::fabs(y[i] - want[i]));
    EXPECT_LE(worst, 1e-4);
    std::printf("[onnx] squeezenet_cifar10 imported: max |output − ORT| %.3g over %zu values\n", worst, y.size());
}

// The im2col + kernel-table GEMM Conv against the direct double-precision twin: odd sizes, strides, asymmetric
// pads, dilation. Tolerance: f32 accumulation over K = C·kh·kw products, eps·K·max|x·w|.
TEST(OnnxImport, Im2colConvMatchesReferenceTwin) {
    struct Case { int64_t N, C, H, W, M, kh, kw, s0, s1, p[4], d0, d1; };
    const Case cases[] = {{1, 1, 7, 9, 3, 3, 3, 1, 1, {0, 0, 0, 0}, 1, 1}, {2, 3, 11, 13, 5, 5, 3, 2, 1, {1, 2, 0, 1}, 1, 1},
                          {1, 17, 8, 8, 33, 1, 1, 1, 1, {0, 0, 0, 0}, 1, 1}, {3, 4, 15, 10, 7, 3, 3, 2, 3, {2, 2, 2, 2}, 2, 1},
                          {1, 2, 5, 5, 1, 5, 5, 1, 1, {0, 0, 0, 0}, 1, 1}};
    std::mt19937 rng(5);
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    for (const Case& c : cases) {
        const int64_t OH = (c.H + c.p[0] + c.p[2] - c.d0 * (c.kh - 1) - 1) / c.s0 + 1, OW = (c.W + c.p[1] + c.p[3] - c.d1 * (c.kw - 1) - 1) / c.s1 + 1;
        std::vector<float> x(static_cast<size_t>(c.N * c.C * c.H * c.W)), w(static_cast<size_t>(c.M * c.C * c.kh * c.kw)), b(static_cast<size_t>(c.M));
        for (auto* v : {&x, &w, &b})
            for (float& e : *v) e = u(rng);
        std::vector<float> want(static_cast<size_t>(c.N * c.M * OH * OW)), got(want.size());
        const int64_t stride[2] = {c.s0, c.s1}, dil[2] = {c.d0, c.d1};
        onnx_ops::conv2d_ref(x.data(), c.N, c.C, c.H, c.W, w.data(), c.M, c.kh, c.kw, b.data(), 1, stride, c.p, dil, want.data(), OH, OW);
        onnx_ops::conv2d_im2col(x.data(), c.N, c.C, c.H, c.W, w.data(), c.M, c.kh, c.kw, b.data(), stride, c.p, dil, got.data(), OH, OW);
        const double tol = 1.2e-7 * static_cast<double>(c.C * c.kh * c.kw + 1) * 4;
        for (size_t i = 0; i < want.size(); ++i)
            ASSERT_NEAR(got[i], want[i], tol) << "C=" << c.C << " H=" << c.H << " W=" << c.W << " M=" << c.M << " k=" << c.kh << "x" << c.kw << " index " << i;
    }
}

// The static-W8A8 conv gathers its patches from pixel-major codes with a re-ordered weight; its twin is the plain W8A8
// Linear of the original weight over the float im2col patches (quantized row by row by the kernel table). Integer sums
// are exact, so the two must agree bit for bit: strides, pads, dilations, channel counts off a multiple of 4 (padded
// patch rows), pointwise convs that skip the gather (C = 16) or not (C = 17, stride 2), 7-bit activations, and a
// range whose zero point is mid-scale (the padding value), with and without the fused Relu, from and to either layout
// (NCHW, channels-last), at one and three threads.
TEST(OnnxImport, W8A8ConvFromPixelMajorCodesEqualsW8A8LinearOverFloatPatches) {
    struct Case { int64_t N, C, H, W, M, kh, kw, s0, s1, p[4], d0, d1; int32_t qmax; };
    const Case cases[] = {{1, 1, 7, 9, 3, 3, 3, 1, 1, {0, 0, 0, 0}, 1, 1, 255},   {2, 3, 11, 13, 5, 5, 3, 2, 1, {1, 2, 0, 1}, 1, 1, 255},
                          {1, 17, 8, 8, 33, 1, 1, 1, 1, {0, 0, 0, 0}, 1, 1, 255}, {3, 4, 15, 10, 7, 3, 3, 2, 3, {2, 2, 2, 2}, 2, 1, 127},
                          {2, 16, 6, 5, 20, 1, 1, 1, 1, {0, 0, 0, 0}, 1, 1, 255}, {2, 17, 9, 9, 16, 1, 1, 2, 2, {0, 0, 0, 0}, 1, 1, 255},
                          {1, 2, 5, 5, 1, 5, 5, 1, 1, {0, 0, 0, 0}, 1, 1, 127},   {4, 6, 7, 7, 18, 3, 3, 1, 1, {1, 1, 1, 1}, 1, 1, 255},
                          // an odd element count large enough that the image is quantized by several threads
                          {3, 7, 81, 81, 9, 3, 3, 2, 2, {1, 1, 1, 1}, 1, 1, 255}};
    std::mt19937 rng(9);
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    for (const Case& c : cases) {
        const int64_t OH = (c.H + c.p[0] + c.p[2] - c.d0 * (c.kh - 1) - 1) / c.s0 + 1, OW = (c.W + c.p[1] + c.p[3] - c.d1 * (c.kw - 1) - 1) / c.s1 + 1;
        const int64_t K = c.C * c.kh * c.kw, rows = c.N * OH * OW;
        std::vector<float> x(static_cast<size_t>(c.N * c.C * c.H * c.W));
        for (float& e : x) e = 1.5f * u(rng) + 0.3f;  // a range off centre: the zero point is neither 0 nor mid-scale
        Linear l;
        l.name = "conv";
        l.weight = Tensor::zeros({c.M, K}, DType::F32);
        l.bias = Tensor::zeros({c.M}, DType::F32);
        for (int64_t i = 0; i < c.M * K; ++i) static_cast<float*>(l.weight.mutable_data())[i] = u(rng);
        for (int64_t i = 0; i < c.M; ++i) static_cast<float*>(l.bias->mutable_data())[i] = u(rng);
        l.int8 = quantize_linear_w8a8(l, ActivationQuant::static_per_tensor, calib::u8_params({-1.2f, 1.8f}, c.qmax), c.qmax);
        const int64_t stride[2] = {c.s0, c.s1}, dil[2] = {c.d0, c.d1};
        std::vector<float> patches(static_cast<size_t>(rows * K)), want(static_cast<size_t>(rows * c.M));
        onnx_ops::im2col(x.data(), c.N, c.C, c.H, c.W, c.kh, c.kw, stride, c.p, dil, OH, OW, patches.data());
        ops::linear(l, patches.data(), rows, want.data());
        const auto pixel_major = onnx_ops::pixel_major_weight(*l.int8, c.C, c.kh, c.kw);
        std::vector<float> want_nchw(want.size());
        onnx_ops::nhwc_to_nchw(want.data(), c.N, OH * OW, c.M, want_nchw.data());
        std::vector<float> x_nhwc(x.size());  // the same image channels-last
        for (int64_t n = 0; n < c.N; ++n)
            for (int64_t ch = 0; ch < c.C; ++ch)
                for (int64_t px = 0; px < c.H * c.W; ++px) x_nhwc[static_cast<size_t>((n * c.H * c.W + px) * c.C + ch)] = x[static_cast<size_t>((n * c.C + ch) * c.H * c.W + px)];
        for (int threads : {1, 3})
            for (bool relu : {false, true})
                for (bool x_last : {false, true})
                    for (bool y_last : {false, true}) {
                        ThreadPool::set_global_threads(threads);
                        std::vector<float> got(want.size(), -1.0f);
                        onnx_ops::conv2d_w8a8_static(x_last ? x_nhwc.data() : x.data(), x_last, c.N, c.C, c.H, c.W, *pixel_major, c.kh, c.kw, stride, c.p,
                                                     dil, OH, OW, got.data(), y_last, relu);
                        const std::vector<float>& ref = y_last ? want : want_nchw;
                        for (size_t i = 0; i < want.size(); ++i)
                            ASSERT_EQ(got[i], relu ? std::max(ref[i], 0.0f) : ref[i])
                                << "C=" << c.C << " M=" << c.M << " k=" << c.kh << "x" << c.kw << " qmax " << c.qmax << " threads " << threads
                                << " relu " << relu << " channels-last in / out " << x_last << " / " << y_last << " index " << i;
                        if (!y_last) continue;
                        // channels-last rows 7 floats wider, from channel 3 (a Concat's slice): the rest untouched
                        const int64_t ldy = c.M + 7;
                        std::vector<float> wide(static_cast<size_t>(rows * ldy), -2.0f);
                        onnx_ops::conv2d_w8a8_static(x_last ? x_nhwc.data() : x.data(), x_last, c.N, c.C, c.H, c.W, *pixel_major, c.kh, c.kw, stride, c.p,
                                                     dil, OH, OW, wide.data() + 3, true, relu, ldy);
                        for (int64_t r = 0; r < rows; ++r)
                            for (int64_t j = 0; j < ldy; ++j) {
                                const float v = wide[static_cast<size_t>(r * ldy + j)];
                                if (j < 3 || j >= 3 + c.M) ASSERT_EQ(v, -2.0f);
                                else ASSERT_EQ(v, relu ? std::max(want[static_cast<size_t>(r * c.M + j - 3)], 0.0f) : want[static_cast<size_t>(r * c.M + j - 3)]);
                            }
                    }
        ThreadPool::set_global_threads(0);
    }
}

// A W8A8 CNN whose activations stay channels-last between the operators that read that layout: an NHWC input through
// Transpose, W8A8 convs with fused Relu, MaxPool, a per-channel Add, channel Concats (one filled in place by its two
// convs), AveragePool with padding, GlobalAveragePool, then Flatten and Gemm in the graph's layout. Its twin is the same quantized model with an observer
// on every Linear, which runs the plain path (float patches, NCHW everywhere); the outputs must be the same bits, at one
// and at three threads.
TEST(OnnxImport, ChannelsLastW8A8RunEqualsThePlainW8A8Run) {
    std::mt19937 rng(17);
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    auto random = [&](size_t n, float scale) {
        std::vector<float> v(n);
        for (float& e : v) e = scale * u(rng);
        return v;
    };
    onnx_ir::Model m;
    m.opsets.emplace_back("", 17);
    onnx_export::GraphBuilder g(m.graph);
    using onnx_export::attr;
    using ints = std::vector<int64_t>;
    g.input("x", onnx_ir::kFloat, {2, 9, 10, 3});
    std::string t = g.op("Transpose", {"x"}, {attr("perm", ints{0, 3, 1, 2})});
    std::string a = g.op("Conv", {t, g.f32("wa", {6, 3, 3, 3}, random(162, 0.5f)), g.f32("ba", {6}, random(6, 0.2f))},
                         {attr("kernel_shape", ints{3, 3}), attr("pads", ints{1, 1, 1, 1})});
    a = g.op("MaxPool", {g.op("Relu", {a})}, {attr("kernel_shape", ints{2, 2}), attr("strides", ints{2, 2})});
    std::string b = g.op("Conv", {a, g.f32("wb", {5, 6, 1, 1}, random(30, 0.5f))}, {attr("kernel_shape", ints{1, 1})});
    b = g.op("Add", {b, g.f32("cb", {5, 1, 1}, random(5, 0.3f))});
    std::string c = g.op("Conv", {a, g.f32("wc", {4, 6, 3, 3}, random(216, 0.3f)), g.f32("bc", {4}, random(4, 0.2f))},
                         {attr("kernel_shape", ints{3, 3}), attr("pads", ints{1, 1, 1, 1})});
    c = g.op("Relu", {c});
    std::string y = g.op("Concat", {b, c}, {attr("axis", int64_t{1})});
    // a Concat of two convs' outputs only (one through its fused Relu): the convs write it in place
    std::string d = g.op("Relu", {g.op("Conv", {a, g.f32("wd", {3, 6, 1, 1}, random(18, 0.5f)), g.f32("bd", {3}, random(3, 0.2f))}, {attr("kernel_shape", ints{1, 1})})});
    std::string e = g.op("Conv", {a, g.f32("we", {2, 6, 3, 3}, random(108, 0.3f))}, {attr("kernel_shape", ints{3, 3}), attr("pads", ints{1, 1, 1, 1})});
    std::string de = g.op("MaxPool", {g.op("Concat", {d, e}, {attr("axis", int64_t{1})})}, {attr("kernel_shape", ints{3, 3}), attr("pads", ints{1, 1, 1, 1})});
    y = g.op("Concat", {y, de}, {attr("axis", int64_t{1})});
    y = g.op("AveragePool", {y}, {attr("kernel_shape", ints{3, 3}), attr("pads", ints{1, 1, 1, 1})});
    y = g.op("Flatten", {g.op("GlobalAveragePool", {y})});
    g.op_to("Gemm", {y, g.f32("fc", {3, 14}, random(42, 1.0f)), g.f32("fcb", {3}, random(3, 0.1f))}, "out", {attr("transB", int64_t{1})});
    g.output("out", onnx_ir::kFloat, {2, 3});
    std::string bytes, error;
    ASSERT_TRUE(onnx_ir::serialize(m, bytes, error)) << error;
    auto model = OnnxModel::from_bytes(bytes.data(), bytes.size(), "channels-last");
    const std::vector<float> calib = random(static_cast<size_t>(8 * 9 * 10 * 3), 1.0f), x = random(static_cast<size_t>(2 * 9 * 10 * 3), 1.0f);
    ASSERT_EQ(quantize_onnx_w8a8_static(*model, calib.data(), 8, 2, 0), 6);
    std::vector<std::vector<float>> runs;
    for (int threads : {1, 3}) {
        ThreadPool::set_global_threads(threads);
        runs.push_back(model->run(x.data(), 2));
    }
    std::vector<ObserverId> ids;
    for (Linear* l : model->linears()) ids.push_back(model->observe(*l, [](const LinearEvent&) {}));
    const std::vector<float> plain = model->run(x.data(), 2);
    for (ObserverId id : ids) model->remove_observer(id);
    ThreadPool::set_global_threads(0);
    ASSERT_EQ(plain.size(), 6u);
    for (const auto& r : runs) ASSERT_EQ(r, plain);
}

// MaxPool / AveragePool (planes in parallel, windows clipped to the image) against the ONNX definition written out
// cell by cell: uneven pads, strides, ceil_mode windows that run past the padding, count_include_pad both ways.
TEST(OnnxImport, PoolingMatchesTheDefinitionCellByCell) {
    const int64_t N = 2, C = 3, H = 7, W = 8, k[2] = {3, 2}, st[2] = {2, 3}, p[4] = {1, 0, 2, 1};
    std::mt19937 rng(13);
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    std::vector<float> x(static_cast<size_t>(N * C * H * W));
    for (float& e : x) e = u(rng);
    TempDir dir;
    for (const std::string op : {"MaxPool", "AveragePool"})
        for (int64_t ceil_mode : {0, 1})
            for (int64_t count_pad : {0, 1}) {
                if (op == "MaxPool" && count_pad) continue;
                onnx_ir::Model m;
                m.opsets.emplace_back("", 17);
                onnx_export::GraphBuilder g(m.graph);
                using onnx_export::attr;
                g.input("x", onnx_ir::kFloat, {N, C, H, W});
                std::vector<onnx_ir::Attribute> attrs = {attr("kernel_shape", std::vector<int64_t>{k[0], k[1]}), attr("strides", std::vector<int64_t>{st[0], st[1]}),
                                                         attr("pads", std::vector<int64_t>{p[0], p[1], p[2], p[3]}), attr("ceil_mode", ceil_mode)};
                if (op == "AveragePool") attrs.push_back(attr("count_include_pad", count_pad));
                g.op_to(op, {"x"}, "y", attrs);
                g.output("y", onnx_ir::kFloat, {});
                std::string bytes, error;
                ASSERT_TRUE(onnx_ir::serialize(m, bytes, error)) << error;
                auto model = OnnxModel::from_bytes(bytes.data(), bytes.size(), "pool");
                const std::vector<float> y = model->run(x.data(), std::vector<int64_t>{N, C, H, W});
                auto out_dim = [&](int64_t in, int64_t kk, int64_t ss, int64_t a, int64_t b) {
                    return (ceil_mode ? (in + a + b - kk + ss - 1) / ss : (in + a + b - kk) / ss) + 1;
                };
                const int64_t OH = out_dim(H, k[0], st[0], p[0], p[2]), OW = out_dim(W, k[1], st[1], p[1], p[3]);
                ASSERT_EQ(model->output_shape(), (std::vector<int64_t>{N, C, OH, OW})) << op << " ceil " << ceil_mode;
                for (int64_t nc = 0; nc < N * C; ++nc)
                    for (int64_t oy = 0; oy < OH; ++oy)
                        for (int64_t ox = 0; ox < OW; ++ox) {
                            float best = -std::numeric_limits<float>::infinity();
                            double sum = 0;
                            int64_t count = 0;
                            for (int64_t ky = 0; ky < k[0]; ++ky)
                                for (int64_t kx = 0; kx < k[1]; ++kx) {
                                    const int64_t iy = oy * st[0] - p[0] + ky, ix = ox * st[1] - p[1] + kx;
                                    if (iy >= 0 && iy < H && ix >= 0 && ix < W) {
                                        const float v = x[static_cast<size_t>((nc * H + iy) * W + ix)];
                                        best = std::max(best, v), sum += v, ++count;
                                    } else if (count_pad && iy < H + p[2] && ix < W + p[3]) {
                                        ++count;  // a padding cell, not the part of a ceil_mode window beyond the padding
                                    }
                                }
                            const double want = op == "MaxPool" ? best : sum / static_cast<double>(std::max<int64_t>(count, 1));
                            const float got = y[static_cast<size_t>((nc * OH + oy) * OW + ox)];
                            if (std::isinf(want)) ASSERT_EQ(got, want) << op << " at " << nc << "," << oy << "," << ox;  // a window of no cell
                            else ASSERT_NEAR(got, want, 1e-6)
                                << op << " ceil " << ceil_mode << " count_include_pad " << count_pad << " at " << nc << "," << oy << "," << ox;
                        }
            }
}

// A small graph written with cq's own builder: input [1, 2, 6, 6] → (DequantizeLinear int8 weight) Conv 3×3 pad 1 →
// BatchNormalization → Relu → GlobalAveragePool → Flatten → Gemm(transB) → output.
struct TinyCnn {
    std::vector<int8_t> wq;
    std::vector<float> wscale, bn_scale, bn_bias, bn_mean, bn_var, fc, fc_b;
    std::string op_after_relu = "GlobalAveragePool";
    std::string write(const TempDir& dir, const std::string& name) {
        onnx_ir::Model m;
        m.opsets.emplace_back("", 17);
        onnx_export::GraphBuilder g(m.graph);
        using onnx_export::attr;
        g.input("x", onnx_ir::kFloat, {1, 2, 6, 6});
        const std::string w = g.typed("wq", onnx_ir::kInt8, {4, 2, 3, 3}, wq.data(), wq.size());
        const std::string zero = g.typed("wz", onnx_ir::kInt8, {4}, std::vector<int8_t>(4, 0).data(), 4);
        const std::string wd = g.op("DequantizeLinear", {w, g.f32("ws", {4}, wscale), zero}, {attr("axis", int64_t{0})});
        std::string y = g.op("Conv", {"x", wd}, {attr("kernel_shape", std::vector<int64_t>{3, 3}), attr("pads", std::vector<int64_t>{1, 1, 1, 1})});
        y = g.op("BatchNormalization", {y, g.f32("g", {4}, bn_scale), g.f32("b", {4}, bn_bias), g.f32("m", {4}, bn_mean), g.f32("v", {4}, bn_var)});
        y = g.op(op_after_relu, {g.op("Relu", {y})});
        y = g.op("Flatten", {y});
        g.op_to("Gemm", {y, g.f32("fc", {3, 4}, fc), g.f32("fc_b", {3}, fc_b)}, "out", {attr("transB", int64_t{1})});
        g.output("out", onnx_ir::kFloat, {1, 3});
        std::string bytes, error;
        EXPECT_TRUE(onnx_ir::serialize(m, bytes, error)) << error;
        return dir.write(name, bytes);
    }
};

TinyCnn tiny_cnn() {
    std::mt19937 rng(11);
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    TinyCnn t;
    for (int i = 0; i < 72; ++i) t.wq.push_back(static_cast<int8_t>(static_cast<int>(u(rng) * 127)));
    auto fill = [&](std::vector<float>& v, size_t n, float lo, float hi) {
        for (size_t i = 0; i < n; ++i) v.push_back(lo + (hi - lo) * (u(rng) + 1) / 2);
    };
    fill(t.wscale, 4, 0.01f, 0.02f);
    fill(t.bn_scale, 4, 0.5f, 1.5f);
    fill(t.bn_bias, 4, -0.2f, 0.2f);
    fill(t.bn_mean, 4, -0.1f, 0.1f);
    fill(t.bn_var, 4, 0.5f, 2.0f);
    fill(t.fc, 12, -1, 1);
    fill(t.fc_b, 3, -1, 1);
    return t;
}

TEST(OnnxImport, QdqWeightsAndFoldedBatchNormMatchTheFormulas) {
    TinyCnn t = tiny_cnn();
    TempDir dir;
    auto model = OnnxModel::load(t.write(dir, "tiny.onnx"));
    ASSERT_EQ(model->linears().size(), 2u);  // Conv (with the BatchNormalization folded in) and Gemm
    std::mt19937 rng(3);
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    std::vector<float> x(72);
    for (float& v : x) v = u(rng);
    const std::vector<float> y = model->run(x.data(), 1);
    // the same by hand: dequantized weights, the direct conv, BN, ReLU, mean, Gemm
    std::vector<float> w(72), conv(4 * 36);
    for (size_t i = 0; i < 72; ++i) w[i] = static_cast<float>(t.wq[i]) * t.wscale[i / 18];
    const int64_t stride[2] = {1, 1}, pads[4] = {1, 1, 1, 1}, dil[2] = {1, 1};
    onnx_ops::conv2d_ref(x.data(), 1, 2, 6, 6, w.data(), 4, 3, 3, nullptr, 1, stride, pads, dil, conv.data(), 6, 6);
    double pooled[4];
    for (int c = 0; c < 4; ++c) {
        double s = 0;
        for (int p = 0; p < 36; ++p) {
            const double v = (conv[static_cast<size_t>(c * 36 + p)] - t.bn_mean[c]) / std::sqrt(t.bn_var[c] + 1e-5) * t.bn_scale[c] + t.bn_bias[c];
            s += std::max(v, 0.0);
        }
        pooled[c] = s / 36;
    }
    ASSERT_EQ(y.size(), 3u);
    for (int o = 0; o < 3; ++o) {
        double want = t.fc_b[o];
        for (int c = 0; c < 4; ++c) want += t.fc[static_cast<size_t>(o * 4 + c)] * pooled[c];
        EXPECT_NEAR(y[o], want, 1e-5) << "output " << o;
    }
}

TEST(OnnxImport, UnknownOperatorNamesTheNode) {
    TinyCnn t = tiny_cnn();
    t.op_after_relu = "GlobalLpPool";
    TempDir dir;
    try {
        OnnxModel::load(t.write(dir, "unknown.onnx"));
        FAIL() << "GlobalLpPool accepted";
    } catch (const Unsupported& e) {
        const std::string msg = e.what();
        EXPECT_NE(msg.find("GlobalLpPool"), std::string::npos) << msg;
        EXPECT_NE(msg.find("node 4"), std::string::npos) << msg;
    }
}

TEST(OnnxImport, HostileFilesGetClearErrors) {
    TempDir dir;
    TinyCnn t = tiny_cnn();
    const auto good = test::read_bytes(t.write(dir, "good.onnx"));
    const std::string bytes(good.begin(), good.end());
    // truncated
    EXPECT_THROW(OnnxModel::load(dir.write("truncated.onnx", bytes.substr(0, bytes.size() / 2))), FormatError);
    // not protobuf at all
    EXPECT_THROW(OnnxModel::load(dir.write("text.onnx", "hello, this is not an onnx file\n")), FormatError);
    // empty
    EXPECT_THROW(OnnxModel::load(dir.write("empty.onnx", "")), Error);
    // a cycle: the first node reads the last node's output
    onnx_ir::Model m;
    std::string error;
    ASSERT_TRUE(onnx_ir::parse(bytes.data(), bytes.size(), m, error));
    onnx_ir::Model cyclic = m;
    cyclic.graph.nodes.front().inputs[0] = cyclic.graph.nodes.back().outputs[0];
    std::string out;
    ASSERT_TRUE(onnx_ir::serialize(cyclic, out, error));
    try {
        OnnxModel::load(dir.write("cycle.onnx", out));
        FAIL() << "cycle accepted";
    } catch (const FormatError& e) {
        EXPECT_NE(std::string(e.what()).find("cycle"), std::string::npos) << e.what();
    }
    // an initializer whose bytes do not match its huge shape
    onnx_ir::Model huge = m;
    huge.graph.initializers.front().dims = {int64_t{1} << 40, int64_t{1} << 30};
    ASSERT_TRUE(onnx_ir::serialize(huge, out, error));
    EXPECT_THROW(OnnxModel::load(dir.write("huge.onnx", out)), FormatError);
    // a weight of the wrong type (string tensors are not numbers)
    onnx_ir::Model wrong = m;
    wrong.graph.initializers.front().data_type = onnx_ir::kString;
    ASSERT_TRUE(onnx_ir::serialize(wrong, out, error));
    EXPECT_THROW(OnnxModel::load(dir.write("string.onnx", out)), FormatError);
    // external data pointing outside the folder
    onnx_ir::Model ext = m;
    ext.graph.initializers.front().raw.clear();
    ext.graph.initializers.front().external_data = {{"location", "../../etc/passwd"}};
    ASSERT_TRUE(onnx_ir::serialize(ext, out, error));
    EXPECT_THROW(OnnxModel::load(dir.write("ext.onnx", out)), FormatError);
}

}  // namespace
}  // namespace cq

namespace cq {
namespace {

// Static W8A8 of the imported mnist-8: calibrated on test images [0, 1000) (256 of them), evaluated on [1000, 10000).
TEST(OnnxImport, Mnist8StaticW8A8KeepsAccuracyEndToEnd) {
    auto model = OnnxModel::load(fixture("vision/mnist-8.onnx"));
    const std::string images = fixture("data/t10k-images-idx3-ubyte.gz");
    DataSelection eval;
    eval.first = 1000;
    const OnnxImageOptions raw;  // the model zoo's MNIST takes raw pixels
    const ClassificationResult fp32 = classify_images_onnx(*model, images, eval, raw);
    DataSelection calib;
    calib.count = 1000;
    EXPECT_EQ(quantize_onnx_w8a8_static(*model, images, calib, raw, 256, static_cast<int32_t>(calib::Method::minmax)), 3);
    for (const Linear* l : model->linears()) EXPECT_TRUE(l->int8 != nullptr) << l->name;
    const ClassificationResult int8 = classify_images_onnx(*model, images, eval, raw);
    const PredictionAgreement a = compare_predictions(fp32, int8);
    EXPECT_GE(int8.accuracy, 0.988);
    EXPECT_GE(a.agreement, 0.995);
    std::printf("[onnx] mnist-8 on test [1000, 10000): fp32 %.2f %%, w8a8 static %.2f %%, agreement %.2f %%\n", 100 * fp32.accuracy,
                100 * int8.accuracy, 100 * a.agreement);
}

}  // namespace
}  // namespace cq
