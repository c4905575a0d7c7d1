// Detection scoring (cq/detection.h): COCO mAP against pycocotools' COCOeval on committed random cases
// (scripts/make_detection_reference.py), NMS against a brute-force restatement of torchvision's rule, and closed forms.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

#include "cq/detection.h"
#include "cq/error.h"

using namespace cq;

namespace {

Box box_of(const nlohmann::json& j) { return Box{j[0].get<float>(), j[1].get<float>(), j[2].get<float>(), j[3].get<float>()}; }

}  // namespace

TEST(Detection, CocoMapEqualsPycocotools) {
    std::ifstream in(std::string(CQ_TESTS_DIR) + "/data/detection/coco_map_reference.json");
    ASSERT_TRUE(in) << "missing tests/data/detection/coco_map_reference.json";
    const nlohmann::json ref = nlohmann::json::parse(in);
    ASSERT_GE(ref["cases"].size(), 3u);
    for (const auto& c : ref["cases"]) {
        std::vector<GroundTruth> truth;
        std::vector<Detection> dets;
        for (const auto& t : c["truth"]) truth.push_back({t["image"].get<int64_t>(), t["label"].get<int32_t>(), box_of(t["box"])});
        for (const auto& d : c["detections"])
            dets.push_back({d["image"].get<int64_t>(), d["label"].get<int32_t>(), d["score"].get<float>(), box_of(d["box"])});
        const DetectionScore s = score_detections(dets, truth, c["max_per_image"].get<int64_t>());
        const auto& want = c["pycocotools"];
        const int seed = c["seed"].get<int>();
        EXPECT_NEAR(s.map, want["map"].get<double>(), 1e-12) << "case " << seed;
        EXPECT_NEAR(s.map50, want["map50"].get<double>(), 1e-12) << "case " << seed;
        EXPECT_NEAR(s.map75, want["map75"].get<double>(), 1e-12) << "case " << seed;
        ASSERT_EQ(s.labels.size(), want["ap_per_label"].size()) << "case " << seed;
        for (size_t k = 0; k < s.labels.size(); ++k)
            EXPECT_NEAR(s.ap_per_label[k], want["ap_per_label"][std::to_string(s.labels[k])].get<double>(), 1e-12)
                << "case " << seed << " label " << s.labels[k];
        EXPECT_EQ(s.n_truth, int64_t(truth.size()));
        // The scores have no ties, so the order the boxes come in does not matter.
        const DetectionScore r = score_detections(std::vector<Detection>(dets.rbegin(), dets.rend()),
                                                  std::vector<GroundTruth>(truth.rbegin(), truth.rend()), c["max_per_image"].get<int64_t>());
        EXPECT_DOUBLE_EQ(r.map, s.map) << "case " << seed;
    }
}

TEST(Detection, PerfectAndEmptyDetectionsGiveClosedForms) {
    std::vector<GroundTruth> truth = {{0, 1, {0, 0, 10, 10}}, {0, 2, {20, 20, 40, 30}}, {1, 1, {5, 5, 9, 25}}};
    std::vector<Detection> same;
    for (const GroundTruth& g : truth) same.push_back({g.image, g.label, 0.5f, g.box});
    const DetectionScore perfect = score_detections(same, truth);
    EXPECT_DOUBLE_EQ(perfect.map, 1.0);
    EXPECT_DOUBLE_EQ(perfect.map50, 1.0);
    EXPECT_EQ(perfect.labels, (std::vector<int32_t>{1, 2}));
    EXPECT_DOUBLE_EQ(score_detections({}, truth).map, 0.0);
    // One of label 1's two boxes found exactly, nothing else: recall 0.5 at precision 1 → 51 of 101 recall points.
    const DetectionScore half = score_detections({{0, 1, 0.9f, {0, 0, 10, 10}}}, truth);
    EXPECT_NEAR(half.ap_per_label[0], 51.0 / 101.0, 1e-15);
    EXPECT_DOUBLE_EQ(half.ap_per_label[1], 0.0);
    // A box shifted so its IoU is 0.6 counts at thresholds 0.50 and 0.55 and 0.60 (IoU ≥ threshold): 3 of 10.
    const Box shifted{2.5f, 0, 12.5f, 10};  // IoU with [0,0,10,10] = 75 / 125 = 0.6
    ASSERT_DOUBLE_EQ(box_iou(shifted, truth[0].box), 0.6);
    const DetectionScore s = score_detections({{0, 1, 0.9f, shifted}}, {truth[0]});
    EXPECT_NEAR(s.map, 0.3, 1e-15);
    EXPECT_DOUBLE_EQ(s.map50, 1.0);
    EXPECT_DOUBLE_EQ(s.map75, 0.0);
    // Agreement of a detector with itself is 1.
    EXPECT_DOUBLE_EQ(detection_agreement(same, same).map, 1.0);
}

TEST(Detection, NonMaxSuppressionEqualsGreedyRule) {
    std::mt19937 rng(7);
    std::uniform_real_distribution<float> pos(0, 100), size(5, 40), score(0, 1);
    std::vector<Detection> dets;
    for (int i = 0; i < 400; ++i) {
        const float x = std::round(pos(rng)), y = std::round(pos(rng));
        dets.push_back({int64_t(i % 3), int32_t(i % 4), std::round(score(rng) * 50) / 50, {x, y, x + std::round(size(rng)), y + std::round(size(rng))}});
    }
    for (bool agnostic : {false, true}) {
        const std::vector<Detection> kept = non_max_suppression(dets, 0.45, 0, agnostic);
        // Brute force: a detection survives iff no higher-ranked survivor of its group overlaps it by more than 0.45,
        // the rank being (score desc, input index asc).
        std::vector<Detection> want;
        for (int64_t img = 0; img < 3; ++img) {
            std::vector<size_t> idx;
            for (size_t i = 0; i < dets.size(); ++i)
                if (dets[i].image == img) idx.push_back(i);
            std::stable_sort(idx.begin(), idx.end(), [&](size_t a, size_t b) { return dets[a].score > dets[b].score; });
            std::vector<size_t> alive;
            for (size_t i : idx) {
                bool ok = true;
                for (size_t k : alive)
                    if ((agnostic || dets[k].label == dets[i].label) && box_iou(dets[k].box, dets[i].box) > 0.45) ok = false;
                if (ok) alive.push_back(i);
            }
            for (size_t i : alive) want.push_back(dets[i]);
        }
        ASSERT_EQ(kept.size(), want.size()) << "agnostic " << agnostic;
        for (size_t i = 0; i < kept.size(); ++i) {
            EXPECT_EQ(kept[i].image, want[i].image);
            EXPECT_EQ(kept[i].label, want[i].label);
            EXPECT_EQ(kept[i].score, want[i].score);
            EXPECT_EQ(kept[i].box.x0, want[i].box.x0);
            EXPECT_EQ(kept[i].box.y1, want[i].box.y1);
        }
        EXPECT_LT(kept.size(), dets.size());
    }
    // The per-image cap keeps the highest-scoring survivors.
    const auto capped = non_max_suppression(dets, 0.45, 5);
    const auto all = non_max_suppression(dets, 0.45, 0);
    size_t n_img0 = 0;
    for (const Detection& d : capped) n_img0 += d.image == 0;
    EXPECT_EQ(n_img0, 5u);
    for (size_t i = 0; i < 5; ++i) EXPECT_EQ(capped[i].score, all[i].score);
}

TEST(Detection, BadBoxesAreRefusedWithTheirIndex) {
    const std::vector<GroundTruth> truth = {{0, 0, {0, 0, 1, 1}}};
    try {
        score_detections({{0, 0, 0.5f, {0, 0, 1, 1}}, {0, 0, 0.5f, {5, 0, 1, 1}}}, truth);
        FAIL() << "expected InvalidArgument";
    } catch (const InvalidArgument& e) {
        EXPECT_NE(std::string(e.what()).find("detection 1"), std::string::npos) << e.what();
    }
    EXPECT_THROW(score_detections({{0, 0, NAN, {0, 0, 1, 1}}}, truth), InvalidArgument);
    EXPECT_THROW(score_detections({}, truth, 0), InvalidArgument);
    EXPECT_THROW(non_max_suppression({{0, 0, 0.5f, {0, 0, INFINITY, 1}}}, 0.5), InvalidArgument);
}
