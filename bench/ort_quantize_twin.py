#!/usr/bin/env python3
# ONNX Runtime's own quantizer on the BERT-base twin's FP32 graph, the peer outputs that cq's `qdq` / `dynamic`
# exports are timed against (bench/onnx_export_vs_ort.sh): quantize_static (QDQ format, MinMax, per-channel s8
# weights, u8 activations) and quantize_dynamic (per-channel s8 weights). Needs PyPI's `onnxruntime` (a venv).
# Usage: ort_quantize_twin.py FP32.onnx OUT_DIR [--calib-batches 8] [--seq 128]
import argparse
import os

import numpy as np
from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                      quantize_dynamic, quantize_static)
from onnxruntime.quantization.shape_inference import quant_pre_process


class Feeds(CalibrationDataReader):
    """ORT's calibration reader over a list of ready input dicts (also bench/ort_quantize_cnn.py's)."""

    def __init__(self, feeds):
        self.it = iter(feeds)

    def get_next(self):
        return next(self.it, None)


def synthetic_ids(batches, seq, seed=777):
    """Token ids as bench_bert_ort.js draws them ([CLS] … [SEP], ids in [1000, 29000)), but from another seed: the twin
    has random weights, so only the activations' spread matters for the ranges, not what the ids mean."""
    rng = np.random.default_rng(seed)
    feeds = []
    for _ in range(batches):
        ids = rng.integers(1000, 29000, size=(1, seq), dtype=np.int64)
        ids[0, 0], ids[0, -1] = 101, 102
        feeds.append({"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)})
    return feeds


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("fp32")
    ap.add_argument("out_dir")
    ap.add_argument("--calib-batches", type=int, default=8)
    ap.add_argument("--seq", type=int, default=128)
    a = ap.parse_args()
    os.makedirs(a.out_dir, exist_ok=True)
    static_path = os.path.join(a.out_dir, "ort-static-qdq.onnx")
    dynamic_path = os.path.join(a.out_dir, "ort-dynamic.onnx")
    # ORT's documented first step: symbolic shape inference and graph optimisation before quantizing
    pre = os.path.join(a.out_dir, "fp32-preprocessed.onnx")
    quant_pre_process(a.fp32, pre)
    quantize_static(pre, static_path, Feeds(synthetic_ids(a.calib_batches, a.seq)), quant_format=QuantFormat.QDQ,
                    op_types_to_quantize=["MatMul", "Gemm"], per_channel=True, activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax)
    quantize_dynamic(pre, dynamic_path, op_types_to_quantize=["MatMul", "Gemm"], per_channel=True, weight_type=QuantType.QInt8)
    for p in (static_path, dynamic_path):
        print(f"wrote {p} ({os.path.getsize(p):,} bytes)")


if __name__ == "__main__":
    main()
