// DETR in cq's container ("cq-detr"): the FP32 file runs as the directory does, and a W8A8 (dynamic, static) or Q8_0
// file reloads to the in-memory quantized model's logits and boxes bit for bit on the transformers reference images
// (tests/data/families/detr-*/reference.json); `cq quantize` writes it with the sizes in its report, `cq eval` runs it.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>

#include <nlohmann/json.hpp>

#include "command_runner.h"
#include "cq/detr.h"
#include "cq/error.h"
#include "test_support.h"

namespace cq {
namespace {

namespace fs = std::filesystem;

std::string family_dir(const std::string& name) { return test::tests_dir() + "/data/families/" + name; }

struct Images {
    int64_t batch = 0, height = 0, width = 0;
    std::vector<uint8_t> pixels;
};

// The reference images transformers ran (scripts/make_detr_references.py), as u8 [batch, channels, height, width].
Images reference_images(const std::string& name) {
    std::ifstream in(family_dir(name) + "/reference.json");
    const nlohmann::json j = nlohmann::json::parse(in);
    Images r;
    r.height = j["height"].get<int64_t>();
    r.width = j["width"].get<int64_t>();
    for (const auto& image : j["pixels_hex"]) {
        const std::string hex = image.get<std::string>();
        for (size_t i = 0; i + 1 < hex.size(); i += 2) r.pixels.push_back(static_cast<uint8_t>(std::stoi(hex.substr(i, 2), nullptr, 16)));
        ++r.batch;
    }
    return r;
}

struct Outputs {
    std::vector<float> logits, boxes;
};

Outputs run(DetrModel& m, const Images& r) {
    const int64_t Q = m.config().num_queries, L = m.config().num_labels + 1;
    Outputs o{std::vector<float>(static_cast<size_t>(r.batch * Q * L)), std::vector<float>(static_cast<size_t>(r.batch * Q * 4))};
    m.forward(r.pixels.data(), r.batch, r.height, r.width, o.logits.data(), o.boxes.data());
    return o;
}

std::unique_ptr<DetrModel> reload(const std::string& path) {
    std::unique_ptr<Model> m = Model::load(path);  // Model::load routes "cq-detr" files
    auto* detr = dynamic_cast<DetrModel*>(m.get());
    EXPECT_NE(detr, nullptr) << path;
    m.release();
    return std::unique_ptr<DetrModel>(detr);
}

uint64_t safetensors_bytes(const std::string& dir) {
    uint64_t n = 0;
    for (const auto& e : fs::directory_iterator(dir))
        if (e.path().extension() == ".safetensors") n += fs::file_size(e.path());
    return n;
}

TEST(families_detr_container, Fp32ContainerRunsAsTheDirectory) {
    const test::TempDir dir("cq_detr_container");
    for (const char* name : {"detr-tiny-random", "detr-mnist-random-b", "detr-stages-random-c"}) {
        auto model = DetrModel::load(family_dir(name));
        const Images images = reference_images(name);
        const Outputs base = run(*model, images);
        const std::string path = dir.file(std::string(name) + ".gguf");
        model->save(path);
        EXPECT_TRUE(is_detr_model(path));
        auto back = reload(path);
        EXPECT_EQ(back->linears().size(), model->linears().size());
        const Outputs got = run(*back, images);
        EXPECT_EQ(got.logits, base.logits) << name;
        EXPECT_EQ(got.boxes, base.boxes) << name;
        // a container is saved from its directory, not from itself
        EXPECT_THROW(back->save(dir.file("again.gguf")), Unsupported);
    }
}

TEST(families_detr_container, QuantizedContainersReloadBitForBit) {
    const test::TempDir dir("cq_detr_container");
    const std::string mnist = test::fixture("data/t10k-images-idx3-ubyte.gz");
    // detr-mnist-random-b's rows (d_model 24 …) are no whole Q8_0 blocks: its q8_0 form is detr-tiny-random's alone
    struct Case {
        const char* name;
        std::vector<std::string> types;
    };
    for (const Case& c : {Case{"detr-tiny-random", {"w8a8-dynamic", "w8a8-static", "q8_0"}}, Case{"detr-mnist-random-b", {"w8a8-dynamic", "w8a8-static"}}}) {
        const char* name = c.name;
        const Images images = reference_images(name);
        uint64_t f32_bytes = 0;
        {
            auto model = DetrModel::load(family_dir(name));
            model->save(dir.file("f32.gguf"));
            f32_bytes = fs::file_size(dir.file("f32.gguf"));
        }
        for (const std::string& type : c.types) {
            auto model = DetrModel::load(family_dir(name));
            const int64_t channels = model->config().backbone.num_channels;
            int64_t changed = 0;
            if (type == "q8_0") {
                changed = quantize_detr_weights(*model, DType::Q8_0).quantized;
            } else if (type == "w8a8-static") {
                const DetectionSet calib = mnist_detection_set(mnist, "", 1000, 8, channels, 56, 84);
                changed = quantize_detr_w8a8(*model, ActivationQuant::static_per_tensor, &calib);
            } else {
                changed = quantize_detr_w8a8(*model, ActivationQuant::dynamic_per_token);
            }
            ASSERT_GT(changed, 0) << name << " " << type;
            const Outputs memory = run(*model, images);
            const std::string path = dir.file(std::string(name) + "-" + type + ".gguf");
            model->save(path);
            auto back = reload(path);
            int64_t reloaded_changed = 0;
            for (const Linear* l : back->linears()) reloaded_changed += l->int8 != nullptr || dtype_traits(l->weight.dtype()).is_quantized;
            EXPECT_EQ(reloaded_changed, changed) << name << " " << type;
            const Outputs got = run(*back, images);
            EXPECT_EQ(got.logits, memory.logits) << name << " " << type;
            EXPECT_EQ(got.boxes, memory.boxes) << name << " " << type;
            const uint64_t bytes = fs::file_size(path);
            std::printf("%s %s: container %llu bytes (f32 container %llu, safetensors %llu)\n", name, type.c_str(),
                        static_cast<unsigned long long>(bytes), static_cast<unsigned long long>(f32_bytes),
                        static_cast<unsigned long long>(safetensors_bytes(family_dir(name))));
            if (type != "q8_0") {
                EXPECT_LT(bytes, f32_bytes) << name << " " << type;
            }
        }
    }
}

TEST(families_detr_container, CliQuantizeWritesTheContainerAndEvalRunsIt) {
    const test::TempDir dir("cq_detr_container");
    const std::string M = test::fixture("data/t10k-images-idx3-ubyte.gz"), model = family_dir("detr-mnist-random-b");
    const std::string out = dir.file("static.gguf");
    const test::RunResult q = test::run_command(std::string(CQ_CLI_PATH) + " quantize " + model + " " + out + " --type w8a8-static --calib " + M +
                                                " --calib-range 1000:1008 --calib-method minmax --json");
    ASSERT_EQ(q.exit_code, 0) << q.err;
    const nlohmann::json j = nlohmann::json::parse(q.out)["quantize"];
    EXPECT_EQ(j["file_bytes_out"].get<uint64_t>(), fs::file_size(out));
    EXPECT_EQ(j["file_bytes_in"].get<uint64_t>(), safetensors_bytes(model));
    EXPECT_LT(j["file_bytes_out"].get<uint64_t>(), j["file_bytes_in"].get<uint64_t>());
    EXPECT_GT(j["quantized"].get<int64_t>(), 0);

    const test::RunResult e = test::run_command(std::string(CQ_CLI_PATH) + " eval " + out + " --data " + M + " --range 0:8 --json");
    ASSERT_EQ(e.exit_code, 0) << e.err;
    const nlohmann::json ej = nlohmann::json::parse(e.out);
    EXPECT_EQ(ej["task"], "detection");
    EXPECT_NEAR(ej["forms"][0]["agreement_map"].get<double>(), 1.0, 1e-12);
    EXPECT_EQ(ej["forms"][0]["form"], "as loaded (quantized)");
    // its float weights are gone: quantizing it again in memory is refused, naming where to start from
    const test::RunResult again = test::run_command(std::string(CQ_CLI_PATH) + " eval " + out + " --data " + M + " --range 0:8 --w8a8-dynamic");
    EXPECT_NE(again.exit_code, 0);
    EXPECT_NE(again.err.find("already holds quantized Linears"), std::string::npos) << again.err;

    // static without images: one clear error
    const test::RunResult bad = test::run_command(std::string(CQ_CLI_PATH) + " quantize " + model + " " + dir.file("x.gguf") + " --type w8a8-static");
    EXPECT_NE(bad.exit_code, 0);
    EXPECT_NE(bad.err.find("calibration images"), std::string::npos) << bad.err;
}

}  // namespace
}  // namespace cq
