#!/usr/bin/env bash
# bert_quantization: static W8A8 of the BERT-tiny SST-2 classifier with a chosen calibrator (percentile by default;
# minmax, entropy, mse are the others), calibrated on SST-2 train samples, then dev accuracy, agreement, KL-divergence
# and batch latency against FP32 in the same run. The CompressionPipeline drives decoder LLMs; encoders go through
# cq quantize directly (docs/pipeline.md).
# Usage: examples/bert_quantization/run.sh [CQ] [OUT] [CALIBRATOR]   (from the repository root)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
fx="$here/../../../shared/fixtures"
cq=${1:-build/bin/cq}
out=${2:-$(mktemp -d)/bert-w8a8}
calibrator=${3:-percentile}
"$cq" quantize "$fx/models/bert-tiny-sst2" "$out" --type w8a8-static --calib "$fx/data/sst2_train.tsv" \
  --calib-samples 256 --calib-method "$calibrator" --eval "$fx/data/sst2_dev.tsv"
