#!/usr/bin/env python3
# Builds tiny YOLOv8-architecture detectors in PyTorch (seeded random weights), exports them to ONNX as ultralytics'
# exporter does, and writes tests/data/yolo/: the .onnx files, PyTorch's raw outputs on MNIST-digit canvases and the
# boxes after YOLOv8's post-processing (this file's NMS, torchvision.ops.nms's rule) on ONNX Runtime's outputs
# (scripts/onnx_run.js, onnxruntime-node), and single-operator graphs with ORT's outputs (scripts/yolo_op_cases.py).
# Usage: /work/venv-fam/bin/python scripts/make_yolo_onnx.py [--mnist IMAGES.gz] [--only detectors|ops]
#
# The network follows ultralytics' yolov8.yaml (nn/modules/{conv,block,head}.py): Conv = Conv2d + BN + SiLU, C2f with
# a channel split, Bottleneck, SPPF (three chained 5×5 max pools), a PAN-FPN neck of nearest 2× Upsample + Concat, and
# the decoupled anchor-free Detect head: DFL (softmax over reg_max bins → expectation by a 1×1 conv with arange weights),
# make_anchors (cell centres + 0.5), dist2bbox (xywh) × stride, sigmoid class scores, output [batch, 4 + nc, anchors].
# Widths are tiny so the files stay small; the head's widths c2 / c3 are set per config (ultralytics' formula
# max(16, ch/4, 4·reg_max) gives 64 even at the smallest width, ~440 KB of head weights at reg_max 16).
import argparse
import gzip
import json
import math
import os
import subprocess
import sys
import tempfile
import zlib

import numpy as np
import torch
import torch.nn as nn

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def autopad(k, p=None, d=1):
    if d > 1:
        k = d * (k - 1) + 1 if isinstance(k, int) else [d * (x - 1) + 1 for x in k]
    if p is None:
        p = k // 2 if isinstance(k, int) else [x // 2 for x in k]
    return p


class Conv(nn.Module):
    def __init__(self, c1, c2, k=1, s=1, p=None, g=1, d=1):
        super().__init__()
        self.conv = nn.Conv2d(c1, c2, k, s, autopad(k, p, d), groups=g, dilation=d, bias=False)
        self.bn = nn.BatchNorm2d(c2)
        self.act = nn.SiLU()
        self.fused = False

    def forward(self, x):
        return self.act(self.conv(x) if self.fused else self.bn(self.conv(x)))

    def fuse(self):  # ultralytics' fuse_conv_and_bn before export
        w = self.conv.weight
        bn = self.bn
        f = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        conv = nn.Conv2d(self.conv.in_channels, self.conv.out_channels, self.conv.kernel_size, self.conv.stride, self.conv.padding,
                         dilation=self.conv.dilation, groups=self.conv.groups, bias=True)
        conv.weight.data = w.data * f.view(-1, 1, 1, 1)
        conv.bias.data = bn.bias.data - bn.running_mean * f
        self.conv = conv
        self.fused = True


class Bottleneck(nn.Module):
    def __init__(self, c1, c2, shortcut=True, g=1, k=(3, 3), e=0.5):
        super().__init__()
        c_ = int(c2 * e)
        self.cv1 = Conv(c1, c_, k[0], 1)
        self.cv2 = Conv(c_, c2, k[1], 1, g=g)
        self.add = shortcut and c1 == c2

    def forward(self, x):
        return x + self.cv2(self.cv1(x)) if self.add else self.cv2(self.cv1(x))


class C2f(nn.Module):
    def __init__(self, c1, c2, n=1, shortcut=False, g=1, e=0.5):
        super().__init__()
        self.c = int(c2 * e)
        self.cv1 = Conv(c1, 2 * self.c, 1, 1)
        self.cv2 = Conv((2 + n) * self.c, c2, 1)
        self.m = nn.ModuleList(Bottleneck(self.c, self.c, shortcut, g, k=((3, 3), (3, 3)), e=1.0) for _ in range(n))
        self.use_split = False

    def forward(self, x):
        if self.use_split:  # ultralytics' C2f.forward_split (a Split node)
            y = list(self.cv1(x).split((self.c, self.c), 1))
        else:  # C2f.forward (torch 1.13 exports chunk as two Slices)
            y = list(self.cv1(x).chunk(2, 1))
        y.extend(m(y[-1]) for m in self.m)
        return self.cv2(torch.cat(y, 1))


class SPPF(nn.Module):
    def __init__(self, c1, c2, k=5):
        super().__init__()
        c_ = c1 // 2
        self.cv1 = Conv(c1, c_, 1, 1)
        self.cv2 = Conv(c_ * 4, c2, 1, 1)
        self.m = nn.MaxPool2d(kernel_size=k, stride=1, padding=k // 2)

    def forward(self, x):
        x = self.cv1(x)
        y1 = self.m(x)
        y2 = self.m(y1)
        return self.cv2(torch.cat((x, y1, y2, self.m(y2)), 1))


class DFL(nn.Module):
    def __init__(self, c1=16):
        super().__init__()
        self.conv = nn.Conv2d(c1, 1, 1, bias=False).requires_grad_(False)
        self.conv.weight.data[:] = torch.arange(c1, dtype=torch.float).view(1, c1, 1, 1)
        self.c1 = c1

    def forward(self, x):
        b, _, a = x.shape
        return self.conv(x.view(b, 4, self.c1, a).transpose(2, 1).softmax(1)).view(b, 4, a)


def make_anchors(feats, strides, grid_cell_offset=0.5):
    anchor_points, stride_tensor = [], []
    dtype, device = feats[0].dtype, feats[0].device
    for i, stride in enumerate(strides):
        _, _, h, w = feats[i].shape
        sx = torch.arange(end=w, device=device, dtype=dtype) + grid_cell_offset
        sy = torch.arange(end=h, device=device, dtype=dtype) + grid_cell_offset
        sy, sx = torch.meshgrid(sy, sx, indexing="ij")
        anchor_points.append(torch.stack((sx, sy), -1).view(-1, 2))
        stride_tensor.append(torch.full((h * w, 1), stride, dtype=dtype, device=device))
    return torch.cat(anchor_points), torch.cat(stride_tensor)


def dist2bbox(distance, anchor_points, xywh=True, dim=-1):
    lt, rb = distance.chunk(2, dim)
    x1y1 = anchor_points - lt
    x2y2 = anchor_points + rb
    if xywh:
        return torch.cat(((x1y1 + x2y2) / 2, x2y2 - x1y1), dim)
    return torch.cat((x1y1, x2y2), dim)


class Detect(nn.Module):
    def __init__(self, nc, ch, reg_max, c2, c3, strides):
        super().__init__()
        self.nc, self.nl, self.reg_max = nc, len(ch), reg_max
        self.no = nc + reg_max * 4
        self.stride = torch.tensor(strides, dtype=torch.float)
        self.cv2 = nn.ModuleList(nn.Sequential(Conv(x, c2, 3), Conv(c2, c2, 3), nn.Conv2d(c2, 4 * reg_max, 1)) for x in ch)
        self.cv3 = nn.ModuleList(nn.Sequential(Conv(x, c3, 3), Conv(c3, c3, 3), nn.Conv2d(c3, nc, 1)) for x in ch)
        self.dfl = DFL(reg_max) if reg_max > 1 else nn.Identity()

    def forward(self, x):
        shape = x[0].shape
        for i in range(self.nl):
            x[i] = torch.cat((self.cv2[i](x[i]), self.cv3[i](x[i])), 1)
        # ultralytics caches anchors per shape; with dynamic=True it recomputes them in the graph (as here, always)
        anchors, strides = (t.transpose(0, 1) for t in make_anchors(x, self.stride, 0.5))
        x_cat = torch.cat([xi.view(shape[0], self.no, -1) for xi in x], 2)
        box, cls = x_cat.split((self.reg_max * 4, self.nc), 1)
        dbox = dist2bbox(self.dfl(box), anchors.unsqueeze(0), xywh=True, dim=1) * strides
        return torch.cat((dbox, cls.sigmoid()), 1)


class YoloV8(nn.Module):
    # ch: the five widths (P1..P5); n: C2f repeats of the backbone's four C2f and the neck's four
    def __init__(self, ch, n_backbone, n_neck, nc, reg_max, c2, c3):
        super().__init__()
        c1_, c2_, c3_, c4_, c5_ = ch
        self.backbone = nn.ModuleList([
            Conv(3, c1_, 3, 2), Conv(c1_, c2_, 3, 2), C2f(c2_, c2_, n_backbone[0], True),
            Conv(c2_, c3_, 3, 2), C2f(c3_, c3_, n_backbone[1], True),
            Conv(c3_, c4_, 3, 2), C2f(c4_, c4_, n_backbone[2], True),
            Conv(c4_, c5_, 3, 2), C2f(c5_, c5_, n_backbone[3], True), SPPF(c5_, c5_, 5)])
        self.up = nn.Upsample(None, 2, "nearest")
        self.h12 = C2f(c5_ + c4_, c4_, n_neck[0])
        self.h15 = C2f(c4_ + c3_, c3_, n_neck[1])
        self.h16 = Conv(c3_, c3_, 3, 2)
        self.h18 = C2f(c3_ + c4_, c4_, n_neck[2])
        self.h19 = Conv(c4_, c4_, 3, 2)
        self.h21 = C2f(c4_ + c5_, c5_, n_neck[3])
        self.detect = Detect(nc, (c3_, c4_, c5_), reg_max, c2, c3, (8.0, 16.0, 32.0))

    def forward(self, x):
        b = self.backbone
        x = b[1](b[0](x))
        x = b[2](x)
        p3 = b[4](b[3](x))
        p4 = b[6](b[5](p3))
        p5 = b[9](b[8](b[7](p4)))
        h12 = self.h12(torch.cat((self.up(p5), p4), 1))
        h15 = self.h15(torch.cat((self.up(h12), p3), 1))
        h18 = self.h18(torch.cat((self.h16(h15), h12), 1))
        h21 = self.h21(torch.cat((self.h19(h18), p5), 1))
        return self.detect([h15, h18, h21])


REG_GAIN = (0.6, 0.15, 0.1)  # the box branch's last conv, per level (strides 8, 16, 32)

CONFIGS = {
    # 64×64, opset 17, Conv+BN fused before export (ultralytics' export path), reg_max 16, 6 classes
    "yolov8-tiny-a": dict(ch=(4, 8, 16, 16, 24), n_backbone=(1, 1, 1, 1), n_neck=(1, 1, 1, 1), nc=6, reg_max=16, c2=16, c3=8,
                          size=(64, 64), opset=17, fuse=True, dynamic=False, seed=1, cls_bias=-3.5, images=(0, 3)),
    # 96×128 (non-square), opset 12, BatchNormalization nodes kept, deeper (n = 2), reg_max 8, 3 classes, other widths
    "yolov8-tiny-b": dict(ch=(4, 8, 12, 16, 24), n_backbone=(1, 2, 1, 1), n_neck=(1, 1, 1, 2), nc=3, reg_max=8, c2=12, c3=8,
                          size=(96, 128), opset=12, fuse=False, dynamic=False, seed=2, cls_bias=-4.0, images=(3, 6), split=True),
    # the same network as -a exported with dynamic batch / height / width (ultralytics' dynamic=True): the anchors and
    # the reshapes are computed in the graph (Shape, Gather, Range, ...); references at 64×64 and 96×64
    "yolov8-tiny-a-dynamic": dict(like="yolov8-tiny-a", size=(64, 64), opset=17, fuse=True, dynamic=True, extra_sizes=[(96, 64)],
                                  images=(0, 3)),
}


def build(cfg, seed):
    torch.manual_seed(seed)
    m = YoloV8(cfg["ch"], cfg["n_backbone"], cfg["n_neck"], cfg["nc"], cfg["reg_max"], cfg["c2"], cfg["c3"])
    # BN statistics from the network's own activations on noise (cumulative average), then γ, β redrawn: every layer
    # sees roughly normalised inputs, so the activations stay far from zero and from saturation
    g = torch.Generator().manual_seed(seed + 100)
    for mod in m.modules():
        if isinstance(mod, nn.BatchNorm2d):
            mod.momentum = None
            mod.reset_running_stats()
    m.train()
    with torch.no_grad():
        h, w = cfg["size"]
        for _ in range(4):
            x = torch.rand(4, 3, h, w, generator=g)
            feats = _backbone_neck(m, x)
            for i in range(m.detect.nl):
                m.detect.cv2[i](feats[i]), m.detect.cv3[i](feats[i])
    m.eval()
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.weight.copy_(0.6 + 0.8 * torch.rand(mod.weight.shape, generator=g))
                mod.bias.copy_(0.2 * torch.randn(mod.bias.shape, generator=g))
        for i in range(m.detect.nl):
            reg = m.detect.cv2[i][2]
            # box distances: the bins favour small values so boxes span a few strides (not the whole image), and the
            # last box conv is scaled down per level. The box rows are pixels (distance × stride), and in a random
            # head the DFL softmax is flat and sensitive: f32 rounding of the logits would reach 1e-4 px at stride 32
            # (a trained head's distributions are peaked and better conditioned)
            bins = torch.arange(cfg["reg_max"], dtype=torch.float)
            reg.bias.copy_((-0.6 * bins).repeat(4) + 0.3 * torch.randn(reg.bias.shape, generator=g))
            reg.weight.mul_(REG_GAIN[i])
            cls = m.detect.cv3[i][2]
            cls.weight.mul_(3.0)
            cls.bias.copy_(cfg["cls_bias"] + 0.5 * torch.randn(cls.bias.shape, generator=g))
    return m


def _backbone_neck(m, x):
    b = m.backbone
    x = b[2](b[1](b[0](x)))
    p3 = b[4](b[3](x))
    p4 = b[6](b[5](p3))
    p5 = b[9](b[8](b[7](p4)))
    h12 = m.h12(torch.cat((m.up(p5), p4), 1))
    h15 = m.h15(torch.cat((m.up(h12), p3), 1))
    h18 = m.h18(torch.cat((m.h16(h15), h12), 1))
    h21 = m.h21(torch.cat((m.h19(h18), p5), 1))
    return [h15, h18, h21]


# ---- inputs: MNIST digits on a textured background (the recipe of cq's mnist_detection_images, src/onnx/yolo.cpp) ----

def load_mnist(path):
    raw = gzip.open(path, "rb").read() if path.endswith(".gz") else open(path, "rb").read()
    n, rows, cols = int.from_bytes(raw[4:8], "big"), int.from_bytes(raw[8:12], "big"), int.from_bytes(raw[12:16], "big")
    return np.frombuffer(raw, np.uint8, offset=16).reshape(n, rows, cols)


def mnist_canvas(digits, index, height, width):
    """u8 [3, height, width]: canvas `index`, made of MNIST digits 3·index, 3·index + 1, 3·index + 2."""
    y, x = np.meshgrid(np.arange(height, dtype=np.int64), np.arange(width, dtype=np.int64), indexing="ij")
    out = np.zeros((3, height, width), np.int64)
    for c in range(3):
        out[c] = 40 + (x * 7 + y * 13 + c * 29 + index * 31) % 64
    for j in range(3):
        d = digits[index * 3 + j].astype(np.int64)
        s = 1 + (index + j) % 2
        if 28 * s > min(height, width):
            s = 1
        dh = 28 * s
        y0 = (index * 19 + j * 41) % max(1, height - dh + 1)
        x0 = (index * 37 + j * 53) % max(1, width - dh + 1)
        big = np.repeat(np.repeat(d, s, axis=0), s, axis=1)
        for c in range(3):
            col = 64 + ((index * 3 + j) * 50 + c * 85) % 192
            bg = out[c, y0:y0 + dh, x0:x0 + dh]
            out[c, y0:y0 + dh, x0:x0 + dh] = (bg * (255 - big) + col * big + 127) // 255
    return out.astype(np.uint8)


# ---- YOLOv8's post-processing (ultralytics ops.non_max_suppression, single label per box) ----

def iou(a, b):
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def postprocess(y, nc, conf, iou_thres, max_det=300):
    """y: [4 + nc, anchors] of one image → list of (label, score, x0, y0, x1, y1) and the closest calls it made."""
    y = y.astype(np.float64)
    scores = y[4:4 + nc]
    best = scores.max(0)
    label = scores.argmax(0)
    margins = {"score": float(np.min(np.abs(best - conf))), "iou": 1.0}
    keep = np.nonzero(best > conf)[0]
    cand = []
    for a in keep:
        cx, cy, w, h = y[0:4, a]
        cand.append((int(label[a]), float(best[a]), cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2, int(a)))
    cand.sort(key=lambda t: (-t[1], t[6]))  # descending score, ties in anchor order (stable)
    kept = []
    for c in cand:
        ok = True
        for k in kept:
            if k[0] != c[0]:
                continue
            v = iou(k[2:6], c[2:6])
            margins["iou"] = min(margins["iou"], abs(v - iou_thres))
            if v > iou_thres:
                ok = False
                break
        if ok:
            kept.append(c)
    kept = kept[:max_det]
    return [list(k[:6]) for k in kept], margins


def export(model, path, size, opset, dynamic, fused):
    x = torch.zeros(1, 3, *size)
    kwargs = dict(opset_version=opset, do_constant_folding=True, input_names=["images"], output_names=["output0"])
    if not fused:  # keep BatchNormalization nodes (the EVAL export folds them into the Convs)
        kwargs["training"] = torch.onnx.TrainingMode.PRESERVE
    if dynamic:
        kwargs["dynamic_axes"] = {"images": {0: "batch", 2: "height", 3: "width"}, "output0": {0: "batch", 2: "anchors"}}
    torch.onnx.export(model, x, path, **kwargs)


def g9(values):
    """floats at 9 significant digits: float32 values round-trip, the JSON stays small"""
    return [float("%.9g" % v) for v in values]


def run_ort(jobs, tmp):
    """ONNX Runtime (onnxruntime-node, scripts/onnx_run.js) on [(model, dims, input floats)] → [(values, dims)]"""
    jobs_path, out_path = os.path.join(tmp, "jobs.json"), os.path.join(tmp, "ort.json")
    with open(jobs_path, "w") as f:
        json.dump([{"model": m, "dims": list(d), "input": [float(v) for v in x]} for m, d, x in jobs], f)
    env = dict(os.environ)
    env.setdefault("NODE_PATH", os.path.expanduser("~/.cache/cq-peers/ort/node_modules"))
    subprocess.run(["node", os.path.join(HERE, "onnx_run.js"), jobs_path, out_path], check=True, env=env)
    out = json.load(open(out_path))
    return [(np.array(r["output"], np.float64), r["dims"]) for r in out["results"]], out["ort_version"]


def same_boxes(a, b, tol=1e-3):
    return len(a) == len(b) and all(x[0] == y[0] and max(abs(u - v) for u, v in zip(x[1:], y[1:])) <= tol for x, y in zip(a, b))


def make_detectors(args, digits, tmp):
    built = {}
    for name, spec in CONFIGS.items():
        cfg = dict(CONFIGS[spec["like"]]) if "like" in spec else {}
        cfg.update(spec)
        if "like" in spec:
            model = built[spec["like"]]
        else:
            model = build(cfg, cfg["seed"])
            if cfg["fuse"]:
                for mod in model.modules():
                    if isinstance(mod, Conv):
                        mod.fuse()
            for mod in model.modules():
                if isinstance(mod, C2f):
                    mod.use_split = cfg.get("split", False)
            built[name] = model
        path = os.path.join(args.out, name + ".onnx")
        export(model, path, cfg["size"], cfg["opset"], cfg["dynamic"], cfg["fuse"])
        sizes = [tuple(cfg["size"])] + [tuple(s) for s in cfg.get("extra_sizes", [])]
        first, end = cfg["images"]
        cases, jobs = [], []
        for (h, w) in sizes:
            for index in range(first, end):
                canvas = mnist_canvas(digits, index, h, w)
                x = torch.from_numpy(canvas.astype(np.float32) / np.float32(255)).unsqueeze(0)
                with torch.no_grad():
                    y = model(x).numpy()[0]
                cases.append(dict(height=h, width=w, canvas=index, canvas_crc32=zlib.crc32(canvas.tobytes()), torch=y))
                jobs.append((path, [1, 3, h, w], x.numpy().reshape(-1)))
        ort_out, ort_version = run_ort(jobs, tmp)
        worst = 0.0
        for k, (c, (o, dims)) in enumerate(zip(cases, ort_out)):
            y = o.reshape(dims[1:])
            worst = max(worst, float(np.max(np.abs(y - c["torch"]))))
            boxes, margins = postprocess(y, cfg["nc"], args.conf, args.iou)
            torch_boxes, _ = postprocess(c["torch"], cfg["nc"], args.conf, args.iou)
            if not same_boxes(boxes, torch_boxes):
                sys.exit(f"{name}: ORT's and PyTorch's boxes differ on canvas {c['canvas']}")
            if margins["score"] < 1e-3 or margins["iou"] < 1e-3:
                sys.exit(f"{name}: canvas {c['canvas']} has a near tie (margins {margins}); pick other canvases or seeds")
            c.update(output_dims=list(y.shape), ort_output=g9(y.reshape(-1)), boxes=[[b[0]] + g9(b[1:]) for b in boxes], margins=margins)
            if k == 0:
                c["torch_output"] = g9(c["torch"].reshape(-1))
            del c["torch"]
            print(f"{name} {c['height']}x{c['width']} canvas {c['canvas']}: output {c['output_dims']}, {len(boxes)} boxes, "
                  f"score margin {margins['score']:.2e}, IoU margin {margins['iou']:.2e}", file=sys.stderr)
        params = sum(p.numel() for p in model.parameters())
        ref = {"model": name + ".onnx", "onnx_crc32": zlib.crc32(open(path, "rb").read()), "nc": cfg["nc"], "reg_max": cfg["reg_max"],
               "opset": cfg["opset"], "fused_bn": cfg["fuse"], "dynamic": cfg["dynamic"], "parameters": params,
               "conf_threshold": args.conf, "iou_threshold": args.iou, "torch_version": torch.__version__, "ort_version": ort_version,
               "torch_vs_ort_max_abs": worst,
               "input": "mnist_detection_images(t10k images, canvas index): u8 / 255 as float32, NCHW RGB", "cases": cases}
        with open(os.path.join(args.out, name + ".reference.json"), "w") as f:
            json.dump(ref, f)
        print(f"{name}: {params} parameters, {os.path.getsize(path)} bytes, max |PyTorch - ORT| {worst:.2e}", file=sys.stderr)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mnist", default=os.path.join(ROOT, "..", "shared", "fixtures", "data", "t10k-images-idx3-ubyte.gz"))
    ap.add_argument("--out", default=os.path.join(ROOT, "tests", "data", "yolo"))
    ap.add_argument("--conf", type=float, default=0.25)
    ap.add_argument("--iou", type=float, default=0.7)
    ap.add_argument("--only", default="detectors,ops", help="detectors, ops or both")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        if "detectors" in args.only:
            make_detectors(args, load_mnist(args.mnist), tmp)
        if "ops" in args.only:
            import yolo_op_cases  # scripts/yolo_op_cases.py (needs the onnx package)
            yolo_op_cases.make(os.path.join(args.out, "ops"), lambda jobs: run_ort(jobs, tmp))


if __name__ == "__main__":
    main()
