// cq's run of an encoder / ViT classifier against ONNX Runtime's run of its ONNX export, on the same samples: both
// accuracies, argmax agreement and the largest logit difference (JSON on stdout). The batches cq tokenizes are
// written for scripts/onnx_eval.js, which runs ORT through onnxruntime-node.
// Usage: bench_onnx_vs_ort MODEL EXPORT.onnx DATA [--range A:B] [--batch N] [--node-path DIR] [--threads N]
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cq/classify.h"
#include "cq/datasets.h"
#include "cq/encoder.h"
#include "cq/error.h"

int main(int argc, char** argv) try {
    if (argc < 4) {
        std::cerr << "usage: bench_onnx_vs_ort MODEL EXPORT.onnx DATA [--range A:B] [--batch N] [--node-path DIR] [--threads N]\n";
        return 2;
    }
    std::string model_path = argv[1], onnx = argv[2], data_path = argv[3];
    std::string node_path = std::string(std::getenv("HOME") ? std::getenv("HOME") : "") + "/.cache/cq-peers/ort/node_modules";
    int64_t first = 0, count = -1, batch = 32, threads = 1;
    for (int i = 4; i + 1 < argc; i += 2) {
        const std::string a = argv[i], v = argv[i + 1];
        if (a == "--range") {
            const auto colon = v.find(':');
            first = std::stoll(v.substr(0, colon));
            if (colon != std::string::npos && colon + 1 < v.size()) count = std::stoll(v.substr(colon + 1)) - first;
        } else if (a == "--batch") batch = std::stoll(v);
        else if (a == "--node-path") node_path = v;
        else if (a == "--threads") threads = std::stoll(v);
        else throw cq::InvalidArgument("unknown option " + a);
    }
    auto model = cq::EncoderModel::load(model_path);
    const cq::LabelledData data = cq::load_labelled_data(data_path, *model, cq::DataSelection{first, count, ""});
    cq::ClassifyOptions co;
    co.batch = batch;
    const cq::ClassificationResult mine = cq::classify_dataset(*model, data, co);

    const std::string batches = onnx + ".batches.jsonl", out = onnx + ".ort_logits.bin";
    {
        std::ofstream f(batches);
        const int64_t n = data.count();
        for (int64_t b0 = 0; b0 < n; b0 += batch) {
            const int64_t nb = std::min(batch, n - b0);
            nlohmann::json j;
            if (data.text) {
                std::vector<std::string> texts, pairs;
                for (int64_t i = b0; i < b0 + nb; ++i) {
                    texts.push_back(data.text->examples[static_cast<size_t>(i)].text);
                    pairs.push_back(data.text->examples[static_cast<size_t>(i)].text_pair);
                }
                const bool paired = !data.text->pair_column.empty();
                const cq::TextBatch tb = model->tokenize(texts, co.max_len, paired ? std::span<const std::string>(pairs) : std::span<const std::string>());
                j["dims"] = {tb.batch, tb.seq};
                j["input_ids"] = tb.ids;
                j["attention_mask"] = tb.mask;
                j["token_type_ids"] = tb.type_ids.empty() ? std::vector<int32_t>(tb.ids.size(), 0) : tb.type_ids;
            } else {
                const auto& im = *data.images;
                const auto& c = model->config();
                const int64_t plane = im.height * im.width, per = im.channels * plane;
                std::vector<float> x(static_cast<size_t>(nb * per));
                for (int64_t i = 0; i < nb * per; ++i) {
                    const int64_t ch = (i / plane) % im.channels;
                    x[static_cast<size_t>(i)] = (static_cast<float>(im.pixels[static_cast<size_t>(b0 * per + i)]) * c.rescale_factor -
                                                 c.image_mean[static_cast<size_t>(ch)]) / c.image_std[static_cast<size_t>(ch)];
                }
                j["dims"] = {nb, im.channels, im.height, im.width};
                j["pixel_values"] = x;
            }
            f << j.dump() << "\n";
        }
    }
    const std::string cmd = "NODE_PATH='" + node_path + "' node scripts/onnx_eval.js '" + onnx + "' '" + batches + "' '" + out + "' " +
                            std::to_string(threads);
    if (std::system(cmd.c_str()) != 0) throw cq::Error("ONNX Runtime failed: " + cmd);
    std::ifstream in(out, std::ios::binary);
    std::vector<float> ort(mine.logits.size());
    in.read(reinterpret_cast<char*>(ort.data()), static_cast<std::streamsize>(ort.size() * 4));
    if (in.gcount() != static_cast<std::streamsize>(ort.size() * 4)) throw cq::Error("ONNX Runtime wrote fewer logits than expected");
    std::remove(batches.c_str());
    std::remove(out.c_str());
    const int64_t L = mine.num_labels;
    int64_t agree = 0, ort_correct = 0;
    double max_diff = 0;
    for (int64_t i = 0; i < mine.samples; ++i) {
        const float* row = ort.data() + i * L;
        const int32_t p = static_cast<int32_t>(std::max_element(row, row + L) - row);
        agree += p == mine.predictions[static_cast<size_t>(i)];
        ort_correct += p == mine.labels[static_cast<size_t>(i)];
        for (int64_t k = 0; k < L; ++k) max_diff = std::max(max_diff, static_cast<double>(std::fabs(row[k] - mine.logits[static_cast<size_t>(i * L + k)])));
    }
    const double n = static_cast<double>(mine.samples);
    std::cout << nlohmann::json{{"model", model_path}, {"onnx", onnx}, {"samples", mine.samples}, {"cq_accuracy", mine.accuracy},
                                {"ort_accuracy", ort_correct / n}, {"agreement", agree / n}, {"max_abs_logit_diff", max_diff}}
                     .dump()
              << "\n";
    return 0;
} catch (const std::exception& e) {
    std::cerr << "bench_onnx_vs_ort: " << e.what() << "\n";
    return 1;
}
