#!/usr/bin/env bash
# Same-run ONNX Runtime latency of cq's int8 exports of the BERT-base twin against ONNX Runtime's own quantizer's
# output of the same model (the issue's bar: ORT runs cq's `qdq` / `dynamic` files at least as fast as its own):
#   ORT static  = quant_pre_process + quantize_static (QDQ, per-channel s8 weights, u8 activations, MinMax)
#   ORT dynamic = quant_pre_process + quantize_dynamic (per-channel s8 weights)   (bench/ort_quantize_twin.py)
#   cq qdq      = cq quantize --type w8a8-static --calib sst2_train.tsv (64 samples), cq export --format qdq
#   cq dynamic  = cq quantize --type w8a8-dynamic --act-bits 8, cq export --format dynamic
# then scripts/onnx_time.js times all four (and the twin's hand-written dynamic-int8 graph) interleaved, batch × seq ids.
# Usage: bench/onnx_export_vs_ort.sh (env: CQ=build/bin/cq ORT_PYTHON=python with PyPI's onnxruntime THREADS=2 BATCH=8
#        SEQ=128 RUNS=5 ROUNDS=3 CQ_PEERS=~/.cache/cq-peers)
set -euo pipefail
cd "$(dirname "$0")/.."
PEERS=${CQ_PEERS:-$HOME/.cache/cq-peers}
MODEL=$PEERS/models/bert-base-random
THREADS=${THREADS:-2} BATCH=${BATCH:-8} SEQ=${SEQ:-128} RUNS=${RUNS:-5} ROUNDS=${ROUNDS:-3}
ORT_PYTHON=${ORT_PYTHON:-python3}
CQ=${CQ:-build/bin/cq}
[ -d "$MODEL" ] && [ -f "$MODEL.onnx" ] || { echo "$MODEL(.onnx) not found (run ../shared/peers/setup.sh)" >&2; exit 1; }
"$ORT_PYTHON" -c "import onnxruntime.quantization" 2>/dev/null ||
  { echo "$ORT_PYTHON cannot import onnxruntime.quantization (python3 -m venv V && V/bin/pip install onnxruntime; ORT_PYTHON=V/bin/python)" >&2; exit 1; }
[ -x "$CQ" ] || bash scripts/build
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
"$ORT_PYTHON" bench/ort_quantize_twin.py "$MODEL.onnx" "$out" --seq "$SEQ" 2>/dev/null
"$CQ" quantize "$MODEL" "$out/static.gguf" --type w8a8-static --calib ../shared/fixtures/data/sst2_train.tsv --calib-samples 64 --json > /dev/null
"$CQ" quantize "$MODEL" "$out/dynamic.gguf" --type w8a8-dynamic --act-bits 8 --json > /dev/null
"$CQ" export "$out/static.gguf" "$out/cq-qdq.onnx" --format qdq --json > /dev/null
"$CQ" export "$out/dynamic.gguf" "$out/cq-dynamic.onnx" --format dynamic --json > /dev/null
NODE_PATH=$PEERS/ort/node_modules node scripts/onnx_time.js "$out/ort-static-qdq.onnx" "$out/cq-qdq.onnx" "$out/ort-dynamic.onnx" \
  "$out/cq-dynamic.onnx" "$MODEL.dynint8.onnx" --threads "$THREADS" --batch "$BATCH" --seq "$SEQ" --runs "$RUNS" --rounds "$ROUNDS" | tee "$out/times.txt"
python3 - "$out/times.txt" <<'PY'
import re, sys
ms = {}
for line in open(sys.argv[1]):
    m = re.match(r"\s+([\d.]+) ms\s+(\S+)", line)
    if m: ms[m.group(2).rsplit("/", 1)[-1]] = float(m.group(1))
print("| graph ORT runs | median ms | ORT's own quantizer / this |")
print("|---|---:|---:|")
for name, peer in (("ort-static-qdq.onnx", None), ("cq-qdq.onnx", "ort-static-qdq.onnx"), ("ort-dynamic.onnx", None),
                   ("cq-dynamic.onnx", "ort-dynamic.onnx"), ("bert-base-random.dynint8.onnx", None)):
    print(f"| {name} | {ms[name]:.1f} | {ms[peer] / ms[name]:.2f}× |" if peer else f"| {name} | {ms[name]:.1f} | |")
PY
