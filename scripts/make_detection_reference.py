#!/usr/bin/env python3
"""Writes tests/data/detection/coco_map_reference.json: random truth boxes and detections (with duplicates, false
positives, labels without truth, images without truth, equal-IoU ties, more detections per image than maxDets) and
the AP numbers pycocotools' COCOeval gives for them, the independent reference of cq's score_detections.

Run: /work/venv-fam/bin/python scripts/make_detection_reference.py   (needs numpy and pycocotools from PyPI)
"""
import contextlib, io, json, os, random, sys

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval


def q(x):  # coordinates on a 1/8-pixel grid: exact in float32 and float64 alike
    return round(x * 8) / 8


def f32(x):  # scores as float32 values, so ranking ties are the same in both implementations
    return float(np.float32(x))


def make_case(seed, n_images, n_labels, max_dets):
    rng = random.Random(seed)
    truth, dets = [], []
    for img in range(n_images):
        if img % 5 == 4:  # an image with detections only
            n_gt = 0
        else:
            n_gt = rng.randint(1, 6)
        for _ in range(n_gt):
            x, y = q(rng.uniform(0, 200)), q(rng.uniform(0, 200))
            w, h = q(rng.uniform(4, 80)), q(rng.uniform(4, 80))
            label = rng.randrange(n_labels - 1)  # the last label never has truth boxes
            truth.append({"image": img, "label": label, "box": [x, y, x + w, y + h]})
            # detections of this box: a few jittered copies (duplicates become false positives), sometimes the wrong label
            for _ in range(rng.randint(0, 3)):
                j = lambda v, s: q(v + rng.gauss(0, s))
                x0, y0 = j(x, w * 0.1), j(y, h * 0.1)
                x1, y1 = max(x0 + 1, j(x + w, w * 0.1)), max(y0 + 1, j(y + h, h * 0.1))
                lab = label if rng.random() < 0.85 else rng.randrange(n_labels)
                dets.append({"image": img, "label": lab, "score": f32(rng.random()), "box": [x0, y0, x1, y1]})
        for _ in range(rng.randint(0, 4) if max_dets > 20 else rng.randint(0, 12)):  # background false positives
            x, y = q(rng.uniform(0, 220)), q(rng.uniform(0, 220))
            w, h = q(rng.uniform(2, 60)), q(rng.uniform(2, 60))
            dets.append({"image": img, "label": rng.randrange(n_labels), "score": f32(rng.random() * 0.7),
                         "box": [x, y, x + w, y + h]})
    # equal-IoU tie: two identical truth boxes of one label and one detection on them
    img = n_images
    for _ in range(2):
        truth.append({"image": img, "label": 0, "box": [10.0, 10.0, 50.0, 40.0]})
    dets.append({"image": img, "label": 0, "score": 0.9, "box": [12.0, 10.0, 52.0, 40.0]})
    return truth, dets


def coco_eval(truth, dets, n_images, n_labels, max_dets):
    gt = {"images": [{"id": i} for i in range(n_images + 1)],
          "categories": [{"id": c} for c in range(n_labels)],
          "annotations": []}
    for k, t in enumerate(truth):
        x0, y0, x1, y1 = t["box"]
        gt["annotations"].append({"id": k + 1, "image_id": t["image"], "category_id": t["label"], "iscrowd": 0,
                                  "bbox": [x0, y0, x1 - x0, y1 - y0], "area": (x1 - x0) * (y1 - y0)})
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = gt
        coco.createIndex()
        res = coco.loadRes([{"image_id": d["image"], "category_id": d["label"], "score": d["score"],
                             "bbox": [d["box"][0], d["box"][1], d["box"][2] - d["box"][0], d["box"][3] - d["box"][1]]}
                            for d in dets])
        ev = COCOeval(coco, res, "bbox")
        ev.params.maxDets = [1, 2, max_dets] if max_dets < 10 else [1, 10, max_dets]  # evaluate() sorts them; the last is ours
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    # per-label AP@[.5:.95] at area all, maxDets[-1]: precision [T, R, K, A, M]
    prec = ev.eval["precision"][:, :, :, 0, -1]
    per_label = {}
    for k, c in enumerate(ev.params.catIds):
        p = prec[:, :, k]
        if (p > -1).any():
            per_label[int(c)] = float(np.mean(p[p > -1]))
    def mean_valid(p):
        return float(np.mean(p[p > -1])) if (p > -1).any() else -1.0
    result = {"map": mean_valid(prec), "map50": mean_valid(prec[0]), "map75": mean_valid(prec[5]), "ap_per_label": per_label}
    if max_dets == 100:  # the same numbers as COCOeval.summarize() prints (its stats use maxDets = 100)
        assert np.allclose([result["map"], result["map50"], result["map75"]], ev.stats[:3], rtol=0, atol=1e-15), ev.stats[:3]
    return result


def main():
    out = os.path.join(os.path.dirname(__file__), "..", "tests", "data", "detection", "coco_map_reference.json")
    cases = []
    for seed, n_images, n_labels, max_dets in [(1, 30, 5, 100), (2, 12, 3, 5), (3, 40, 8, 100)]:
        truth, dets = make_case(seed, n_images, n_labels, max_dets)
        cases.append({"seed": seed, "max_per_image": max_dets, "truth": truth, "detections": dets,
                      "pycocotools": coco_eval(truth, dets, n_images, n_labels, max_dets)})
    with open(out, "w") as f:
        json.dump({"source": "scripts/make_detection_reference.py, pycocotools COCOeval (bbox, area all)", "cases": cases}, f)
    for c in cases:
        print(c["seed"], len(c["truth"]), len(c["detections"]), c["pycocotools"]["map"], c["pycocotools"]["map50"])


if __name__ == "__main__":
    sys.exit(main())
