// Non-maximum suppression and COCO-style mean average precision (cq/detection.h). The AP follows pycocotools'
// COCOeval for bbox with area "all": its matching order, its stable sorts, its 101 recall points and its ε in the
// precision, so the numbers are the ones a COCO user would get from the same boxes.
#include "cq/detection.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>
#include <tuple>

#include "cq/error.h"

namespace cq {

namespace {

double box_area(const Box& b) { return std::max(0.0, double(b.x1) - b.x0) * std::max(0.0, double(b.y1) - b.y0); }

void check_box(const Box& b, const char* what, size_t index) {
    if (!std::isfinite(b.x0) || !std::isfinite(b.y0) || !std::isfinite(b.x1) || !std::isfinite(b.y1))
        throw InvalidArgument(std::string("[detection] ") + what + " " + std::to_string(index) + ": box has a non-finite corner");
    if (b.x1 < b.x0 || b.y1 < b.y0)
        throw InvalidArgument(std::string("[detection] ") + what + " " + std::to_string(index) + ": box corners out of order (x1 < x0 or y1 < y0)");
}

// Indices ordered by descending score; equal scores keep their input order (numpy's mergesort, torchvision's stable sort).
std::vector<size_t> by_descending_score(const std::vector<float>& scores) {
    std::vector<size_t> order(scores.size());
    std::iota(order.begin(), order.end(), size_t{0});
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return scores[a] > scores[b]; });
    return order;
}

}  // namespace

double box_iou(const Box& a, const Box& b) {
    const double iw = std::min(double(a.x1), double(b.x1)) - std::max(double(a.x0), double(b.x0));
    const double ih = std::min(double(a.y1), double(b.y1)) - std::max(double(a.y0), double(b.y0));
    if (iw <= 0 || ih <= 0) return 0.0;
    const double inter = iw * ih, uni = box_area(a) + box_area(b) - inter;
    return uni > 0 ? inter / uni : 0.0;
}

Box box_from_center(float cx, float cy, float w, float h) { return Box{cx - 0.5f * w, cy - 0.5f * h, cx + 0.5f * w, cy + 0.5f * h}; }

std::vector<Detection> non_max_suppression(std::vector<Detection> detections, double iou_threshold, int64_t max_per_image,
                                           bool class_agnostic) {
    for (size_t i = 0; i < detections.size(); ++i) check_box(detections[i].box, "detection", i);
    // Group by image (ascending), keeping input order inside each group, then suppress within each group.
    std::stable_sort(detections.begin(), detections.end(), [](const Detection& a, const Detection& b) { return a.image < b.image; });
    std::vector<Detection> kept_all;
    for (size_t begin = 0; begin < detections.size();) {
        size_t end = begin;
        while (end < detections.size() && detections[end].image == detections[begin].image) ++end;
        std::vector<float> scores;
        for (size_t i = begin; i < end; ++i) scores.push_back(detections[i].score);
        const std::vector<size_t> order = by_descending_score(scores);
        std::vector<const Detection*> kept;
        for (size_t o : order) {
            const Detection& d = detections[begin + o];
            bool suppressed = false;
            for (const Detection* k : kept)
                if ((class_agnostic || k->label == d.label) && box_iou(k->box, d.box) > iou_threshold) {
                    suppressed = true;
                    break;
                }
            if (suppressed) continue;
            kept.push_back(&d);
            if (max_per_image > 0 && int64_t(kept.size()) == max_per_image) break;
        }
        for (const Detection* k : kept) kept_all.push_back(*k);
        begin = end;
    }
    return kept_all;
}

DetectionScore score_detections(const std::vector<Detection>& detections, const std::vector<GroundTruth>& truth, int64_t max_per_image) {
    if (max_per_image <= 0) throw InvalidArgument("[detection] max detections per image must be positive, got " + std::to_string(max_per_image));
    for (size_t i = 0; i < detections.size(); ++i) {
        check_box(detections[i].box, "detection", i);
        if (!std::isfinite(detections[i].score)) throw InvalidArgument("[detection] detection " + std::to_string(i) + ": score is not finite");
    }
    for (size_t i = 0; i < truth.size(); ++i) check_box(truth[i].box, "truth box", i);

    constexpr int kThresholds = 10, kRecallPoints = 101;
    // COCO's IoU thresholds np.linspace(.5, .95, 10) and recall points np.linspace(0, 1, 101), computed as numpy does
    // (start + k·step, the last one exactly the end) so a recall equal to a threshold compares as it does there.
    double iou_thr[kThresholds], recall_thr[kRecallPoints];
    for (int t = 0; t < kThresholds; ++t) iou_thr[t] = t == kThresholds - 1 ? 0.95 : 0.5 + t * (0.45 / 9);
    for (int r = 0; r < kRecallPoints; ++r) recall_thr[r] = r == kRecallPoints - 1 ? 1.0 : r * (1.0 / 100);

    // (label, image) → indices of its truth boxes and its detections, in input order.
    std::map<std::pair<int32_t, int64_t>, std::pair<std::vector<size_t>, std::vector<size_t>>> cells;
    for (size_t i = 0; i < truth.size(); ++i) cells[{truth[i].label, truth[i].image}].first.push_back(i);
    for (size_t i = 0; i < detections.size(); ++i) cells[{detections[i].label, detections[i].image}].second.push_back(i);

    DetectionScore score;
    score.n_truth = int64_t(truth.size());
    score.n_detections = int64_t(detections.size());
    std::map<int32_t, int64_t> truth_per_label;
    for (const GroundTruth& g : truth) ++truth_per_label[g.label];

    // Per label: every kept detection's score and, per threshold, whether it matched.
    struct Scored {
        float score;
        bool matched[kThresholds];
    };
    std::map<int32_t, std::vector<Scored>> per_label;
    for (auto& [key, cell] : cells) {
        const auto& [gt_idx, dt_idx] = cell;
        std::vector<float> dt_scores;
        for (size_t i : dt_idx) dt_scores.push_back(detections[i].score);
        std::vector<size_t> order = by_descending_score(dt_scores);
        if (int64_t(order.size()) > max_per_image) order.resize(size_t(max_per_image));
        std::vector<Scored>& out = per_label[key.first];
        std::vector<std::vector<bool>> gt_taken(kThresholds, std::vector<bool>(gt_idx.size(), false));
        for (size_t o : order) {
            const Detection& d = detections[dt_idx[o]];
            Scored s{d.score, {}};
            for (int t = 0; t < kThresholds; ++t) {
                // The unmatched truth box of highest IoU, at least the threshold; on equal IoU the later one, as COCOeval.
                double best = std::min(iou_thr[t], 1 - 1e-10);
                int64_t match = -1;
                for (size_t g = 0; g < gt_idx.size(); ++g) {
                    if (gt_taken[t][g]) continue;
                    const double iou = box_iou(d.box, truth[gt_idx[g]].box);
                    if (iou < best) continue;
                    best = iou;
                    match = int64_t(g);
                }
                s.matched[t] = match >= 0;
                if (match >= 0) gt_taken[t][size_t(match)] = true;
            }
            out.push_back(s);
        }
    }

    double sum_all = 0, sum50 = 0, sum75 = 0;
    for (const auto& [label, n_gt] : truth_per_label) {
        std::vector<Scored>& dets = per_label[label];
        // Detections of every image of the label, concatenated in image order, then stably by descending score.
        std::vector<float> scores;
        for (const Scored& s : dets) scores.push_back(s.score);
        const std::vector<size_t> order = by_descending_score(scores);
        double ap_sum = 0;
        for (int t = 0; t < kThresholds; ++t) {
            std::vector<double> recall, precision;
            double tp = 0, fp = 0;
            for (size_t o : order) {
                (dets[o].matched[t] ? tp : fp) += 1;
                recall.push_back(tp / double(n_gt));
                precision.push_back(tp / (fp + tp + 2.220446049250313e-16));
            }
            for (size_t i = precision.size(); i-- > 1;) precision[i - 1] = std::max(precision[i - 1], precision[i]);
            double ap = 0;
            for (int r = 0; r < kRecallPoints; ++r) {
                const size_t at = size_t(std::lower_bound(recall.begin(), recall.end(), recall_thr[r]) - recall.begin());
                if (at >= precision.size()) break;  // recall never reaches this point: it and every later point count 0
                ap += precision[at];
            }
            ap /= kRecallPoints;
            ap_sum += ap;
            if (t == 0) sum50 += ap;
            if (t == 5) sum75 += ap;
        }
        score.labels.push_back(label);
        score.ap_per_label.push_back(ap_sum / kThresholds);
        sum_all += ap_sum / kThresholds;
    }
    const double n_labels = double(score.labels.size());
    if (n_labels > 0) {
        score.map = sum_all / n_labels;
        score.map50 = sum50 / n_labels;
        score.map75 = sum75 / n_labels;
    }
    return score;
}

DetectionScore detection_agreement(const std::vector<Detection>& reference, const std::vector<Detection>& candidate, float min_score,
                                   int64_t max_per_image) {
    std::vector<GroundTruth> truth;
    for (const Detection& d : reference)
        if (d.score >= min_score) truth.push_back(GroundTruth{d.image, d.label, d.box});
    return score_detections(candidate, truth, max_per_image);
}

}  // namespace cq
