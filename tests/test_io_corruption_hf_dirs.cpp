// Hostile model directories: sharded safetensors indexes (paths outside the directory, disagreement with
// the shards, malformed JSON) and HF directories (config.json, generation_config.json, missing pieces).
#include <gtest/gtest.h>

#include "io_corruption_support.h"
#include "cq/model.h"
#include "cq/quantize.h"

namespace {

using namespace cq::test::hostile;

// ---------------------------------------------------------------------------------------------
// Sharded models: the index must only name plain files next to it, and must agree with the shards.

TEST(ShardedHostile, ValidIndex) {
    ShardedDir d;
    const std::string idx = d.index({{"x", "a.safetensors"}, {"z", "c.safetensors"}});
    const auto m = st::Model::open(idx);
    EXPECT_EQ(m.shards().size(), 2u);
    EXPECT_EQ(m.tensor_count(), 3u);  // every tensor of the shards named: x, shared (a) and z (c)
    EXPECT_NE(m.find_tensor("z"), nullptr);
    EXPECT_EQ(st::Model::open(d.dir.path().string()).index_path(), idx);
}

TEST(ShardedHostile, PathsOutsideTheDirectory) {
    ShardedDir d;
    for (const std::string bad : {"../x.safetensors", "/etc/passwd", "..", ".", "", "sub/a.safetensors", "..\\a.safetensors",
                                  "./a.safetensors", "/tmp/a.safetensors"}) {
        const std::string idx = d.index({{"x", "a.safetensors"}, {"z", bad}});
        EXPECT_TRUE(IsFormatError(run([&] { st::Model::open(idx); }), idx, "not a plain file name")) << "'" << bad << "'";
    }
    // A NUL byte makes the checked name and the opened name differ ("..\0" opens ".."): refused one way or another.
    const std::string idx = d.index({{"x", "a.safetensors"}, {"z", std::string("..\0", 3)}});
    const Outcome o = run([&] { st::Model::open(idx); });
    EXPECT_TRUE(o.kind == Outcome::Format || o.kind == Outcome::Io) << describe(o);
    // (The message itself is cut at the NUL by what(); the file and kind are what matter here.)
    const std::string idx2 = d.index({{"x", std::string("a.safetensors\0/../../etc/passwd", 31)}});
    EXPECT_TRUE(IsFormatError(run([&] { st::Model::open(idx2); }), idx2, "weight_map entry 'x'"));
}

TEST(ShardedHostile, IndexDisagreesWithShards) {
    ShardedDir d;
    // A missing shard: IoError (or FormatError) naming it.
    {
        const std::string idx = d.index({{"x", "a.safetensors"}, {"q", "missing.safetensors"}});
        const Outcome o = run([&] { st::Model::open(idx); });
        EXPECT_TRUE(o.kind == Outcome::Io || o.kind == Outcome::Format) << describe(o);
        EXPECT_NE(o.what.find("missing.safetensors"), std::string::npos) << o.what;
    }
    // A shard without the tensor the index puts there.
    {
        const std::string idx = d.index({{"x", "a.safetensors"}, {"y", "c.safetensors"}});
        EXPECT_TRUE(IsFormatError(run([&] { st::Model::open(idx); }), idx, "no such tensor"));
    }
    // A tensor present in two shards.
    {
        const std::string idx = d.index({{"x", "a.safetensors"}, {"y", "b.safetensors"}});
        const Outcome o = run([&] { st::Model::open(idx); });
        EXPECT_TRUE(IsKind(o, Outcome::Format, "also appears in another shard"));
        EXPECT_TRUE(format_error_contract(o));
        EXPECT_NE(o.what.find("'shared'"), std::string::npos) << o.what;
    }
    // The index naming itself or a non-safetensors file as a shard.
    {
        const std::string idx = d.index({{"x", "model.safetensors.index.json"}});
        EXPECT_TRUE(IsKind(run([&] { st::Model::open(idx); }), Outcome::Format));
    }
    // A corrupt shard: the error names the shard.
    {
        const std::string shard = d.dir.write("bad.safetensors", st_file("{\"x\":1}", 0));
        const std::string idx = d.index({{"x", "bad.safetensors"}});
        EXPECT_TRUE(IsFormatError(run([&] { st::Model::open(idx); }), shard, "not an object"));
    }
}

TEST(ShardedHostile, MalformedIndex) {
    ShardedDir d;
    const std::vector<std::pair<std::string, std::string>> cases = {
        {"{", "malformed JSON"},
        {"[]", "weight_map"},
        {"{}", "weight_map"},
        {R"({"weight_map": []})", "weight_map"},
        {R"({"weight_map": {"x": 1}})", "not a file name"},
        {R"({"weight_map": {"x": null}})", "not a file name"},
        {R"({"weight_map": {"x": "a.safetensors", "x": "b.safetensors"}})", "duplicate JSON key"},
        {"{\"weight_map\": {\"x\": \"a\xff.safetensors\"}}", "malformed JSON"},
        {"{\"weight_map\":" + std::string(50000, '[') + std::string(50000, ']') + "}", "nested deeper"},
    };
    for (const auto& [text, needle] : cases) {
        const std::string idx = d.index_text(text);
        EXPECT_TRUE(IsFormatError(run([&] { st::Model::open(idx); }), idx, needle)) << text.substr(0, 60);
    }
    // An empty weight map is an empty model, not an error.
    const std::string idx = d.index_text(R"({"weight_map": {}})");
    EXPECT_TRUE(IsKind(run([&] { EXPECT_EQ(st::Model::open(idx).tensor_count(), 0u); }), Outcome::Ok));
}

// ---------------------------------------------------------------------------------------------
// HF model directories.

TEST(HfDirHostile, ConfigJson) {
    const std::vector<std::string> malformed = {"{", "{\"model_type\": }", "not json", "{\"a\": \"\xff\"}", ""};
    for (const auto& text : malformed) {
        TempDir dir;
        const std::string cfg = dir.write("config.json", text);
        dir.write("model.safetensors", st_base());
        const Outcome o = run([&] { cq::hf::open_model_dir(dir.path().string()); });
        EXPECT_TRUE(IsFormatError(o, cfg, "malformed JSON")) << text;
        EXPECT_NE(o.what.find("config.json"), std::string::npos) << o.what;
        EXPECT_TRUE(IsFormatError(run([&] { cq::summarize_model(dir.path().string()); }), cfg, "malformed JSON")) << text;
    }
    for (const std::string text : {"[1, 2]", "\"llama\"", "42", "null"}) {
        TempDir dir;
        const std::string cfg = dir.write("config.json", text);
        dir.write("model.safetensors", st_base());
        EXPECT_TRUE(IsFormatError(run([&] { cq::hf::open_model_dir(dir.path().string()); }), cfg, "not a JSON object")) << text;
    }
    // Odd types for the keys the summary reads.
    {
        TempDir dir;
        dir.write("config.json", R"({"model_type": 3, "architectures": "x", "hidden_size": [1,2], "id2label": 5, "_name_or_path": {}})");
        dir.write("model.safetensors", st_base());
        EXPECT_TRUE(IsKind(run([&] { cq::summarize_model(dir.path().string()); }), Outcome::Ok));
    }
}

TEST(ShardedHostile, NumberOverflowInIndex) {
    ShardedDir d;
    const std::string idx = d.index_text(R"({"metadata": {"total_size": 1e999}, "weight_map": {"x": "a.safetensors"}})");
    EXPECT_TRUE(IsFormatError(run([&] { st::Model::open(idx); }), idx, ""));
}

TEST(HfDirHostile, NumberOverflowInConfig) {
    TempDir dir;
    const std::string cfg = dir.write("config.json", R"({"model_type": "llama", "rope_theta": 1e999})");
    dir.write("model.safetensors", st_base());
    EXPECT_TRUE(IsFormatError(run([&] { cq::hf::open_model_dir(dir.path().string()); }), cfg, "config.json"));
}

// Deeply nested but valid JSON in config.json (no depth limit there): reading it must not overflow
// the stack, and neither must summarising it (`cq info`).
std::string deep_config() { return "{\"x\":" + std::string(100000, '[') + std::string(100000, ']') + "}"; }

TEST(HfDirHostile, DeeplyNestedConfigOpen) {
    TempDir dir;
    dir.write("config.json", deep_config());
    dir.write("model.safetensors", st_base());
    EXPECT_TRUE(IsOkOrCqError(run([&] { cq::hf::open_model_dir(dir.path().string()); })));
}

TEST(HfDirHostile, DeeplyNestedConfigSummary) {
    TempDir dir;
    dir.write("config.json", deep_config());
    dir.write("model.safetensors", st_base());
    EXPECT_TRUE(IsOkOrCqError(run([&] { cq::summarize_model(dir.path().string()); })));
}

TEST(HfDirHostile, GenerationConfigAndWeights) {
    {
        TempDir dir;
        dir.write("config.json", R"({"model_type": "llama"})");
        const std::string gen = dir.write("generation_config.json", "{\"bos\": ");
        dir.write("model.safetensors", st_base());
        EXPECT_TRUE(IsFormatError(run([&] { cq::hf::open_model_dir(dir.path().string()); }), gen, "malformed JSON"));
    }
    {
        TempDir dir;
        dir.write("config.json", R"({"model_type": "llama"})");
        const std::string w = dir.write("model.safetensors", prefix(st_base(), 20));
        EXPECT_TRUE(IsFormatError(run([&] { cq::hf::open_model_dir(dir.path().string()); }), w, "runs past the end"));
    }
}

TEST(HfDirHostile, MissingPieces) {
    {
        TempDir dir;
        dir.write("model.safetensors", st_base());
        EXPECT_TRUE(IsKind(run([&] { cq::hf::open_model_dir(dir.path().string()); }), Outcome::Io, "config.json"));
    }
    {
        TempDir dir;
        dir.write("config.json", R"({"model_type": "llama"})");
        dir.write("pytorch_model.bin", Bytes{0x80, 0x02});
        EXPECT_TRUE(IsKind(run([&] { cq::hf::open_model_dir(dir.path().string()); }), Outcome::Unsupported, "pytorch_model.bin"));
        EXPECT_TRUE(IsKind(run([&] { cq::summarize_model(dir.path().string()); }), Outcome::Unsupported));
    }
    {
        TempDir dir;
        dir.write("config.json", R"({"model_type": "llama"})");
        EXPECT_TRUE(IsKind(run([&] { cq::hf::open_model_dir(dir.path().string()); }), Outcome::Io));
    }
    {
        TempDir dir;
        EXPECT_TRUE(IsKind(run([&] { cq::hf::open_model_dir((dir.path() / "nope").string()); }), Outcome::Io));
    }
}

}  // namespace

// A config value of the wrong type is named (file and key) by the one config reader, for every family
// and for the converter, instead of falling back to a default.
TEST(HfDirHostile, WrongTypedConfigValuesAreNamed) {
    struct Case {
        const char* fixture;
        const char* from;
        const char* to;
        const char* key;
    };
    const Case cases[] = {{"models/stories260K-hf", "\"hidden_size\": 64", "\"hidden_size\": \"64\"", "hidden_size"},
                          {"models/gpt2-tiny-stories", "\"n_head\": 4", "\"n_head\": 4.5", "n_head"},
                          {"models/bert-tiny-sst2", "\"num_attention_heads\": 4", "\"num_attention_heads\": [4]", "num_attention_heads"},
                          {"models/vit-tiny-mnist", "\"hidden_act\": \"gelu\"", "\"hidden_act\": 1", "hidden_act"}};
    for (const Case& c : cases) {
        TempDir dir;
        const fs::path src = cq::test::fixture(c.fixture);
        for (const auto& e : fs::directory_iterator(src))
            if (e.path().filename() == "config.json") continue;
            else fs::create_symlink(e.path(), dir.path() / e.path().filename());
        std::ifstream in(src / "config.json");
        std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        const size_t at = text.find(c.from);
        ASSERT_NE(at, std::string::npos) << c.fixture << ": " << c.from;
        text.replace(at, std::strlen(c.from), c.to);
        const std::string cfg = dir.write("config.json", text);
        const Outcome o = run([&] { cq::Model::load(dir.path().string()); });
        EXPECT_TRUE(IsFormatError(o, cfg, c.key)) << c.fixture << ": " << o.what;
        if (std::string(c.fixture).find("stories") != std::string::npos) {
            const Outcome q = run([&] { cq::quantize_model(dir.path().string(), (dir.path() / "out.gguf").string(), {}); });
            EXPECT_TRUE(IsFormatError(q, cfg, c.key)) << q.what;
        }
    }
}
