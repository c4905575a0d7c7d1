#!/usr/bin/env python3
# ONNX Runtime's own quantizer on an image model, the peer that cq's W8A8 CNN is timed against beside cq's QDQ export
# (bench/cnn_vs_ort.sh): quant_pre_process, then quantize_static in QDQ format (MinMax, per-channel s8 weights, u8
# activations, ORT's default operator list) calibrated on 256 images: MNIST test images [0, 256) as raw 0..255 pixels
# (--mnist, the same images cq calibrates on) or numpy uniform [0, 1) draws (cq draws its own from mt19937: the same
# distribution, not the same values). Needs PyPI's `onnxruntime` (a venv).
# Usage: ort_quantize_cnn.py FP32.onnx OUT.onnx --image C,H,W|H,W,C [--mnist IMAGES.gz] [--calib 256]
import argparse
import gzip
import os

import numpy as np
import onnx
from onnx import version_converter
from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process
import onnxruntime as ort

from ort_quantize_twin import Feeds  # this folder


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("fp32")
    ap.add_argument("out")
    ap.add_argument("--image", required=True)
    ap.add_argument("--mnist")
    ap.add_argument("--calib", type=int, default=256)
    a = ap.parse_args()
    dims = [int(d) for d in a.image.split(",")]
    if a.mnist:
        with gzip.open(a.mnist, "rb") as f:
            raw = np.frombuffer(f.read(), dtype=np.uint8, offset=16)
        samples = raw[: a.calib * 784].astype(np.float32).reshape([a.calib] + dims)
    else:
        samples = np.random.default_rng(777).random([a.calib] + dims, dtype=np.float32)
    pre = a.out + ".pre.onnx"
    model = onnx.load(a.fp32)
    if max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) < 13:
        # per-channel DequantizeLinear needs opset 13; ORT's quantizer writes it into an older file regardless
        model = version_converter.convert_version(model, 13)
    opset13 = a.out + ".opset13.onnx"
    onnx.save(model, opset13)
    quant_pre_process(opset13, pre)
    os.remove(opset13)
    session = ort.InferenceSession(pre, providers=["CPUExecutionProvider"])
    inp = session.get_inputs()[0]
    batch = 1 if isinstance(inp.shape[0], int) and inp.shape[0] == 1 else 32
    batches = [{inp.name: samples[i:i + batch]} for i in range(0, len(samples), batch)]
    per_channel = True
    try:
        quantize_static(pre, a.out, Feeds(batches), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax)
    except ValueError as e:  # ORT 1.30's per-channel bias-scale adjustment fails on some graphs (mnist-8): per tensor then
        print(f"per-channel quantization failed in ORT ({e}); weights per tensor")
        per_channel = False
        quantize_static(pre, a.out, Feeds(batches), quant_format=QuantFormat.QDQ, per_channel=False,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax)
    os.remove(pre)
    print(f"wrote {a.out} ({os.path.getsize(a.out):,} bytes, weights {'per channel' if per_channel else 'per tensor'})")


if __name__ == "__main__":
    main()
