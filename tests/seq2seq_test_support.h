// What the encoder–decoder tests (test_models_bart/t5/blip.cpp, test_seq2seq_container.cpp, test_blip_captions_cli.cpp) share: the reference.json that
// scripts/make_family_references.py writes (seq2seq_reference), running a Seq2SeqModel on it, and editing a copy of a
// fixture directory to check load errors.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>

#include <nlohmann/json.hpp>

#include "cq/error.h"
#include "cq/seq2seq.h"
#include "cq/thread_pool.h"
#include "test_support.h"

namespace cq::test::seq2seq {

inline std::string family_dir(const std::string& name) { return tests_dir() + "/data/families/" + name; }
inline std::string pairs_tsv() { return tests_dir() + "/data/families/bart_pairs.tsv"; }

inline nlohmann::json read_json(const std::string& path) {
    std::ifstream in(path);
    return nlohmann::json::parse(in);
}

// A captioner reference's image i (BLIP: pixels_u8, planar [C, H, W]) and its (image, caption) pairs.
inline std::vector<uint8_t> image_of(const nlohmann::json& ref, size_t i) {
    std::vector<uint8_t> px;
    for (const auto& v : ref["pixels_u8"][i]) px.push_back(static_cast<uint8_t>(v.get<int>()));
    return px;
}
inline std::vector<CaptionPair> pairs_of(const nlohmann::json& ref) {
    std::vector<CaptionPair> out;
    for (size_t i = 0; i < ref["captions"].size(); ++i) out.push_back({image_of(ref, i), ref["captions"][i].get<std::string>()});
    return out;
}

// The source's real tokens (its attention-mask ones).
inline std::vector<int32_t> source_of(const nlohmann::json& ref, size_t i) {
    std::vector<int32_t> out;
    for (size_t t = 0; t < ref["input_ids"][i].size(); ++t)
        if (ref["attention_mask"][i][t].get<int>()) out.push_back(ref["input_ids"][i][t].get<int32_t>());
    return out;
}

struct Outputs {
    std::vector<std::vector<int32_t>> generated;
    std::vector<float> logits;
};

// Greedy generations of every reference source and the teacher-forced logits of the reference decoder inputs.
inline Outputs run(Seq2SeqModel& m, const nlohmann::json& ref) {
    Outputs o;
    for (size_t i = 0; i < ref["sources"].size(); ++i) o.generated.push_back(m.generate_greedy(source_of(ref, i), ref["max_new_tokens"].get<int64_t>()));
    for (size_t i = 0; i < ref["decoder_input_ids"].size(); ++i) {
        const auto dec = ref["decoder_input_ids"][i].get<std::vector<int32_t>>();
        std::vector<float> l(dec.size() * static_cast<size_t>(m.config().vocab));
        m.logits(source_of(ref, i), dec, l.data());
        o.logits.insert(o.logits.end(), l.begin(), l.end());
    }
    return o;
}

inline double max_abs_diff(const std::vector<float>& got, const nlohmann::json& ref) {
    std::vector<double> flat;
    for (const auto& seq : ref)
        for (const auto& row : seq)
            for (const auto& v : row) flat.push_back(v.get<double>());
    EXPECT_EQ(flat.size(), got.size());
    double worst = 0;
    for (size_t i = 0; i < std::min(flat.size(), got.size()); ++i) worst = std::max(worst, std::abs(got[i] - flat[i]));
    return worst;
}

// The KV cache gives what recomputing the whole prefix gives: each generated prefix's last-position arg-max, recomputed
// (a step forced_eos_token_id decided is skipped).
inline void expect_cache_matches_recompute(Seq2SeqModel& model, const nlohmann::json& ref, const std::vector<int32_t>& gen, const std::string& name) {
    const auto src = source_of(ref, 0);
    const int64_t V = model.config().vocab;
    std::vector<float> full(gen.size() * static_cast<size_t>(V));
    model.logits(src, std::span(gen).first(gen.size() - 1), full.data());
    for (size_t t = 0; t + 1 < gen.size(); ++t) {
        const float* row = full.data() + t * static_cast<size_t>(V);
        const int32_t best = static_cast<int32_t>(std::max_element(row, row + V) - row);
        const bool forced = model.config().forced_eos_token_id && t + 2 == gen.size() &&
                            static_cast<int64_t>(gen.size()) == ref["max_new_tokens"].get<int64_t>() + 1;
        if (!forced) {
            EXPECT_EQ(best, gen[t + 1]) << name << " step " << t;
        }
    }
}

// The same logits bytes and generations at 1 and 3 threads.
inline void expect_thread_count_independent(Seq2SeqModel& model, const nlohmann::json& ref, const std::string& name) {
    ThreadPool::set_global_threads(1);
    const Outputs one = run(model, ref);
    ThreadPool::set_global_threads(3);
    const Outputs three = run(model, ref);
    ThreadPool::set_global_threads(0);
    EXPECT_EQ(one.logits, three.logits) << name;
    EXPECT_EQ(one.generated, three.generated) << name;
}

// Greedy generations identical to transformers', teacher-forced logits within `tolerance` (printed), the KV cache equal to
// the recomputation and the bytes independent of the thread count. Returns the max |Δlogit|.
inline double expect_matches_reference(Seq2SeqModel& model, const nlohmann::json& ref, const std::string& name, double tolerance) {
    const Outputs o = run(model, ref);
    for (size_t i = 0; i < o.generated.size(); ++i) EXPECT_EQ(o.generated[i], ref["generated"][i].get<std::vector<int32_t>>()) << name << " source " << i;
    const double worst = max_abs_diff(o.logits, ref["logits"]);
    EXPECT_LE(worst, tolerance) << name;
    std::printf("%s: generations identical (%zu), teacher-forced max |Δlogit| vs transformers %.3g\n", name.c_str(), o.generated.size(), worst);
    expect_cache_matches_recompute(model, ref, o.generated[0], name);
    expect_thread_count_independent(model, ref, name);
    return worst;
}

// f() throws a cq::Error whose message holds every needle.
inline void expect_error(const std::function<void()>& f, std::initializer_list<std::string> needles) {
    try {
        f();
        ADD_FAILURE() << "no error; expected one naming '" << *needles.begin() << "'";
    } catch (const Error& e) {
        for (const std::string& needle : needles) EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
}

// A copy of fixture `name` in dir with its config.json edited; returns the copy's path.
inline std::string edited_copy(const TempDir& dir, const std::string& name, const std::function<void(nlohmann::json&)>& edit) {
    const std::string src = family_dir(name);
    for (const auto& e : std::filesystem::directory_iterator(src)) std::filesystem::copy_file(e.path(), std::filesystem::path(dir.path()) / e.path().filename());
    nlohmann::json config = read_json(src + "/config.json");
    edit(config);
    std::ofstream(dir.file("config.json")) << config.dump(1);
    return dir.path();
}

}  // namespace cq::test::seq2seq
