// Accuracy of an encoder classifier over a dataset, agreement between two models' predictions, and
// batch latency. Samples run in fixed batches in file order, so results are deterministic.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <string>

#include "cq/classify.h"
#include "io/hf/hf_model.h"
#include "core/json_file.h"
#include "cq/error.h"
#include "cq/io/gguf.h"
#include "cq/kernels.h"

namespace cq {

namespace {

using Clock = std::chrono::steady_clock;

void check_labels(const std::vector<int32_t>& labels, int64_t num_labels, const char* what) {
    for (size_t i = 0; i < labels.size(); ++i)
        if (labels[i] < 0 || labels[i] >= num_labels)
            throw InvalidArgument(std::string("[eval] ") + what + " sample " + std::to_string(i) + " has label " + std::to_string(labels[i]) +
                                  " but the model's head has " + std::to_string(num_labels) + " classes: the data does not match this model");
}

void finish(ClassificationResult& r, Clock::time_point start) {
    r.predictions.resize(static_cast<size_t>(r.samples));
    r.correct = 0;
    for (int64_t i = 0; i < r.samples; ++i) {
        const float* row = r.logits.data() + i * r.num_labels;
        r.predictions[static_cast<size_t>(i)] = static_cast<int32_t>(std::max_element(row, row + r.num_labels) - row);
        r.correct += r.predictions[static_cast<size_t>(i)] == r.labels[static_cast<size_t>(i)];
    }
    r.accuracy = r.samples ? static_cast<double>(r.correct) / static_cast<double>(r.samples) : 0.0;
    r.seconds = std::chrono::duration<double>(Clock::now() - start).count();
}

// log-softmax of one row in double.
std::vector<double> log_softmax(const float* x, int64_t n) {
    double mx = x[0];
    for (int64_t i = 1; i < n; ++i) mx = std::max(mx, static_cast<double>(x[i]));
    double sum = 0;
    for (int64_t i = 0; i < n; ++i) sum += std::exp(static_cast<double>(x[i]) - mx);
    const double lse = mx + std::log(sum);
    std::vector<double> out(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) out[static_cast<size_t>(i)] = static_cast<double>(x[i]) - lse;
    return out;
}

}  // namespace

ClassificationResult classify_dataset(EncoderModel& model, const data::TextDataset& data, const ClassifyOptions& options,
                                      const ProgressFn& progress) {
    if (model.is_vision()) throw InvalidArgument("[eval] " + model.config().architecture + " classifies images, but the data is text");
    if (model.is_token_classifier())
        throw Unsupported("[eval] " + model.config().architecture + " labels each token; cq eval's datasets label whole texts (token-level "
                          "datasets are not supported yet)");
    const bool layout = model.config().family == EncoderFamily::layoutlm;
    if (!layout && std::any_of(data.examples.begin(), data.examples.end(), [](const auto& e) { return !e.boxes.empty(); }))
        throw InvalidArgument("[eval] the data has word boxes (column '" + data.bbox_column + "') but " + model.config().architecture +
                              " takes none");
    if (options.batch < 1) throw InvalidArgument("[eval] batch size must be at least 1");
    const auto start = Clock::now();
    ClassificationResult r;
    r.samples = static_cast<int64_t>(data.examples.size());
    r.num_labels = model.config().num_labels;
    for (const auto& e : data.examples) r.labels.push_back(e.label);
    check_labels(r.labels, r.num_labels, "text");
    r.logits.resize(static_cast<size_t>(r.samples * r.num_labels));
    std::vector<std::string> texts, pairs;
    std::vector<std::vector<WordBox>> boxes;
    for (int64_t b0 = 0; b0 < r.samples; b0 += options.batch) {
        const int64_t b1 = std::min(r.samples, b0 + options.batch);
        texts.clear();
        pairs.clear();
        bool has_pairs = false;
        for (int64_t i = b0; i < b1; ++i) {
            texts.push_back(data.examples[static_cast<size_t>(i)].text);
            pairs.push_back(data.examples[static_cast<size_t>(i)].text_pair);
            has_pairs = has_pairs || !pairs.back().empty();
        }
        if (layout && has_pairs) throw Unsupported("[eval] LayoutLM takes one text per sample, but the data has a second text column");
        boxes.clear();
        for (int64_t i = b0; i < b1 && !data.bbox_column.empty(); ++i) boxes.push_back(data.examples[static_cast<size_t>(i)].boxes);
        const TextBatch batch =
            layout ? model.tokenize_with_boxes(texts, boxes, std::min<int64_t>(options.max_len, model.config().max_positions))
                   : model.tokenize(texts, options.max_len, has_pairs ? std::span<const std::string>(pairs) : std::span<const std::string>{});
        model.classify(batch, r.logits.data() + b0 * r.num_labels);
        if (progress) progress(b1, r.samples, 0.0);
    }
    finish(r, start);
    return r;
}

ClassificationResult classify_dataset(EncoderModel& model, const data::ImageDataset& data, const ClassifyOptions& options,
                                      const ProgressFn& progress) {
    const EncoderConfig& c = model.config();
    if (!model.is_vision()) throw InvalidArgument("[eval] " + c.architecture + " classifies text, but the data is images");
    if (options.batch < 1) throw InvalidArgument("[eval] batch size must be at least 1");
    if (data.channels != c.num_channels || data.height != c.image_size || data.width != c.image_size)
        throw InvalidArgument("[eval] the images are " + std::to_string(data.channels) + "×" + std::to_string(data.height) + "×" +
                              std::to_string(data.width) + " but the model takes " + std::to_string(c.num_channels) + "×" +
                              std::to_string(c.image_size) + "×" + std::to_string(c.image_size));
    const auto start = Clock::now();
    ClassificationResult r;
    r.samples = data.count();
    r.num_labels = c.num_labels;
    r.labels = data.labels;
    check_labels(r.labels, r.num_labels, "image");
    r.logits.resize(static_cast<size_t>(r.samples * r.num_labels));
    const int64_t image_bytes = data.channels * data.height * data.width;
    for (int64_t b0 = 0; b0 < r.samples; b0 += options.batch) {
        const int64_t b1 = std::min(r.samples, b0 + options.batch);
        model.classify_images(data.pixels.data() + b0 * image_bytes, b1 - b0, r.logits.data() + b0 * r.num_labels);
        if (progress) progress(b1, r.samples, 0.0);
    }
    finish(r, start);
    return r;
}

bool is_encoder_model(const std::string& path) {
    namespace fs = std::filesystem;
    std::error_code ec;
    try {
        if (fs::is_directory(path, ec)) {
            const std::string type = hf::model_type_of_dir(path);
            // EncoderModel's model types (its kSupported table): CLI commands route these to the encoder engine
            return type == "bert" || type == "roberta" || type == "distilbert" || type == "vit" || type == "deit" || type == "layoutlm" ||
                   type == "resnet" || type == "clip" || type == "deberta-v2" || type == "efficientnet";
        }
        if (!fs::is_regular_file(path, ec)) return false;
        return gguf::File::open(path).get_string("general.architecture") == "cq-encoder";
    } catch (const Error&) {
        return false;  // not readable as either: the caller's own loader reports why
    }
}

int64_t LabelledData::count() const {
    if (text) return static_cast<int64_t>(text->examples.size());
    return images ? images->count() : 0;
}

LabelledData load_labelled_data(const std::string& path, const EncoderModel& model, const DataSelection& selection) {
    namespace fs = std::filesystem;
    const EncoderConfig& c = model.config();
    if (selection.first < 0 || selection.count < -1) throw InvalidArgument("[eval] the sample range must start at 0 or later");
    LabelledData d;
    d.source = path;
    std::error_code ec;
    const std::string name = fs::path(path).filename().string();
    if (fs::is_directory(path, ec)) {
#if defined(CQ_MINIMAL)
        throw Unsupported("[eval] " + path + ": image folders need the full cq build (PNG/JPEG decoding; this is the "
                          "CQ_MINIMAL runtime)");
#else
        d.images = data::load_image_folder(path, c.num_channels, c.image_size, c.image_size, c.labels);
#endif
    } else if (name.find("idx3") != std::string::npos) {
        std::string labels = selection.labels_path;
        if (labels.empty()) {
            std::string derived = name;
            const auto at = derived.find("images-idx3");
            if (at == std::string::npos)
                throw InvalidArgument("[eval] cannot derive the labels file of " + path + "; name it with --labels");
            derived.replace(at, 11, "labels-idx1");
            labels = (fs::path(path).parent_path() / derived).string();
        }
#if defined(CQ_MINIMAL)
        throw Unsupported("[eval] " + path + ": MNIST idx files need the full cq build (gzip; this is the CQ_MINIMAL runtime)");
#else
        LabelledData mnist{std::nullopt, data::load_mnist(path, labels, selection.first, selection.count), path};
        mnist.source += " [" + std::to_string(selection.first) + ", " + std::to_string(selection.first + mnist.images->count()) + ")";
        return mnist;
#endif
    } else {
        d.text = data::load_text_tsv(path, c.labels);
    }
    // Folders and TSVs are read whole; select the range here.
    const int64_t total = d.count();
    if (selection.first > total || (selection.count >= 0 && selection.first + selection.count > total))
        throw InvalidArgument("[eval] samples [" + std::to_string(selection.first) + ", " +
                              std::to_string(selection.first + std::max<int64_t>(selection.count, 0)) + ") lie outside " + path +
                              " (" + std::to_string(total) + " samples)");
    const int64_t n = selection.count < 0 ? total - selection.first : selection.count;
    if (d.text) {
        auto& ex = d.text->examples;
        ex = std::vector<data::TextExample>(ex.begin() + selection.first, ex.begin() + selection.first + n);
    } else {
        auto& im = *d.images;
        const int64_t bytes = im.channels * im.height * im.width;
        im.pixels = std::vector<uint8_t>(im.pixels.begin() + selection.first * bytes, im.pixels.begin() + (selection.first + n) * bytes);
        im.labels = std::vector<int32_t>(im.labels.begin() + selection.first, im.labels.begin() + selection.first + n);
        im.first_index += selection.first;
    }
    if (selection.first != 0 || n != total) d.source += " [" + std::to_string(selection.first) + ", " + std::to_string(selection.first + n) + ")";
    return d;
}

ClassificationResult classify_dataset(EncoderModel& model, const LabelledData& data, const ClassifyOptions& options,
                                      const ProgressFn& progress) {
    if (data.text) return classify_dataset(model, *data.text, options, progress);
    if (data.images) return classify_dataset(model, *data.images, options, progress);
    throw InvalidArgument("[eval] no samples were loaded");
}

PredictionAgreement compare_predictions(const ClassificationResult& base, const ClassificationResult& other) {
    if (base.samples != other.samples || base.num_labels != other.num_labels || base.labels != other.labels)
        throw InvalidArgument("[eval] the two models were not evaluated on the same samples and labels");
    PredictionAgreement a;
    a.samples = base.samples;
    int64_t same = 0;
    double kld_sum = 0;
    for (int64_t i = 0; i < base.samples; ++i) {
        same += base.predictions[static_cast<size_t>(i)] == other.predictions[static_cast<size_t>(i)];
        const float* p = base.logits.data() + i * base.num_labels;
        const float* q = other.logits.data() + i * base.num_labels;
        const auto lp = log_softmax(p, base.num_labels), lq = log_softmax(q, base.num_labels);
        double kld = 0;
        for (int64_t j = 0; j < base.num_labels; ++j) {
            kld += std::exp(lp[static_cast<size_t>(j)]) * (lp[static_cast<size_t>(j)] - lq[static_cast<size_t>(j)]);
            a.max_abs_logit_diff = std::max(a.max_abs_logit_diff, std::fabs(static_cast<double>(p[j]) - static_cast<double>(q[j])));
        }
        kld = std::max(kld, 0.0);  // rounding can leave −1e-17 for identical rows
        kld_sum += kld;
        a.max_kld = std::max(a.max_kld, kld);
    }
    a.agreement = a.samples ? static_cast<double>(same) / static_cast<double>(a.samples) : 0.0;
    a.mean_kld = a.samples ? kld_sum / static_cast<double>(a.samples) : 0.0;
    return a;
}

EncoderBenchResult bench_encoder(EncoderModel& model, int64_t batch, int64_t seq, int64_t repetitions, int64_t warmup,
                                 const ProgressFn& progress) {
    const EncoderConfig& c = model.config();
    if (batch < 1 || repetitions < 1 || warmup < 0) throw InvalidArgument("[bench] batch and repetitions must be at least 1");
    EncoderBenchResult r;
    r.batch = batch;
    r.repetitions = repetitions;
    r.isa = std::string(isa_level_name(kernel_table().level));
    std::vector<float> logits(static_cast<size_t>(batch * c.num_labels));
    std::function<void()> run;
    TextBatch text;
    std::vector<uint8_t> pixels;
    if (model.is_vision()) {
        r.seq = c.max_positions;  // patches + CLS (+ DeiT's distillation token)
        pixels.resize(static_cast<size_t>(batch * c.num_channels * c.image_size * c.image_size));
        for (size_t i = 0; i < pixels.size(); ++i) pixels[i] = static_cast<uint8_t>((i * 2654435761u) >> 24);
        run = [&] { model.classify_images(pixels.data(), batch, logits.data()); };
    } else {
        if (seq < 2 || seq > c.max_positions) throw InvalidArgument("[bench] sequence length must lie in [2, " + std::to_string(c.max_positions) + "]");
        r.seq = seq;
        text.batch = batch;
        text.seq = seq;
        text.ids.resize(static_cast<size_t>(batch * seq));
        text.type_ids.assign(text.ids.size(), 0);
        text.mask.assign(text.ids.size(), 1);
        // Ids from the middle of the vocabulary (real word pieces, no special tokens), fixed pattern; a vocabulary too
        // small to have a middle (tiny test models) is used whole.
        const int64_t first = c.vocab > 2000 ? 1000 : 0, span = c.vocab > 2000 ? c.vocab - 2000 : c.vocab;
        for (size_t i = 0; i < text.ids.size(); ++i)
            text.ids[i] = static_cast<int32_t>(first + static_cast<int64_t>((i * 7919) % static_cast<size_t>(span)));
        if (model.is_token_classifier()) logits.resize(static_cast<size_t>(batch * seq * c.num_labels));
        if (c.feature_extraction) logits.resize(static_cast<size_t>(batch * seq * c.hidden));
        run = [&] {
            if (c.feature_extraction) model.hidden_states(text, logits.data());
            else if (model.is_token_classifier()) model.classify_tokens(text, logits.data());
            else model.classify(text, logits.data());
        };
    }
    for (int64_t i = 0; i < warmup; ++i) run();
    for (int64_t i = 0; i < repetitions; ++i) {
        const auto t0 = Clock::now();
        run();
        r.ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
        if (progress) progress(i + 1, repetitions, r.ms.back());
    }
    summarize_timings(r);
    return r;
}

void summarize_timings(EncoderBenchResult& r) {
    if (r.ms.empty()) return;
    std::vector<double> sorted = r.ms;
    std::sort(sorted.begin(), sorted.end());
    const size_t n = sorted.size();
    r.median_ms = n % 2 ? sorted[n / 2] : 0.5 * (sorted[n / 2 - 1] + sorted[n / 2]);
    r.min_ms = sorted.front();
    r.max_ms = sorted.back();
}

}  // namespace cq
