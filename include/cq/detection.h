// Object detection results and their scoring: boxes, class-wise non-maximum suppression, and COCO-style mean
// average precision (the numbers pycocotools' COCOeval reports for bbox, area "all"), shared by every detector
// (DETR, YOLO) and by `cq eval` on detection data.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace cq {

/// An axis-aligned box by its corners, in pixels (x0 ≤ x1, y0 ≤ y1).
struct Box {
    float x0 = 0, y0 = 0, x1 = 0, y1 = 0;
};

/// One predicted object of one image.
struct Detection {
    int64_t image = 0;
    int32_t label = 0;
    float score = 0;
    Box box;
};

/// One annotated object of one image.
struct GroundTruth {
    int64_t image = 0;
    int32_t label = 0;
    Box box;
};

/// Intersection over union; 0 where both boxes are empty.
double box_iou(const Box& a, const Box& b);

/// Box conversions of the detectors' heads: centre / size (DETR's normalised cxcywh, YOLO's pixel cxcywh) to corners.
Box box_from_center(float cx, float cy, float w, float h);

/// Greedy non-maximum suppression, per image and (unless class_agnostic) per label, as torchvision.ops.nms /
/// batched_nms: highest score first (ties keep input order); a box is dropped when its IoU with a kept box of the same
/// image (and label) exceeds iou_threshold. Keeps at most max_per_image per image (≤ 0: all). The result is ordered
/// by image, then by descending score.
std::vector<Detection> non_max_suppression(std::vector<Detection> detections, double iou_threshold, int64_t max_per_image = 300,
                                           bool class_agnostic = false);

/// COCO-style average precision over the images and labels present in `truth` and `detections`: for each label and
/// IoU threshold (0.50, 0.55 … 0.95), detections matched greedily by score to the unmatched truth box of highest IoU
/// (at least the threshold), precision made monotone and sampled at 101 recall points; labels without truth boxes are
/// left out of the means. max_per_image: detections kept per image and label, highest scores first (COCO's maxDets).
struct DetectionScore {
    double map = 0;    // mean over labels and the ten IoU thresholds (COCO's AP@[.50:.95])
    double map50 = 0;  // at IoU 0.50
    double map75 = 0;  // at IoU 0.75
    std::vector<int32_t> labels;           // the labels that have truth boxes, ascending
    std::vector<double> ap_per_label;      // AP@[.50:.95] per entry of `labels`
    int64_t n_truth = 0, n_detections = 0;
};
DetectionScore score_detections(const std::vector<Detection>& detections, const std::vector<GroundTruth>& truth,
                                int64_t max_per_image = 100);

/// How far a second detector's boxes are from a first's on the same images: the second's COCO mAP with the first's
/// detections (score ≥ min_score) taken as truth. 1.0 when they agree box for box; what quantization costs a detector
/// where no annotated data is at hand.
DetectionScore detection_agreement(const std::vector<Detection>& reference, const std::vector<Detection>& candidate,
                                   float min_score = 0.0f, int64_t max_per_image = 100);

}  // namespace cq
