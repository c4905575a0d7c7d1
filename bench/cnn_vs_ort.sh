#!/usr/bin/env bash
# Same-run latency of an imported ONNX CNN: cq FP32 and cq static W8A8 (bench_cnn_int8, interleaved) against ONNX
# Runtime running the original file (FP32) and cq's QDQ export of the same calibrated model (scripts/onnx_time.js,
# interleaved), alternating cq and ORT rounds so both see the same load. Prints a Markdown table of medians per batch.
# Default: SqueezeNet-CIFAR-10 on seeded uniform [0, 1) inputs (no CIFAR images ship) and mnist-8 on MNIST test images.
# Usage: bench/cnn_vs_ort.sh (env: THREADS=2 BATCH=32 ROUNDS=3 CQ_PEERS=~/.cache/cq-peers BUILD=build)
set -euo pipefail
cd "$(dirname "$0")/.."
PEERS=${CQ_PEERS:-$HOME/.cache/cq-peers}
F=../shared/fixtures
THREADS=${THREADS:-2} BATCH=${BATCH:-32} ROUNDS=${ROUNDS:-3} BUILD=${BUILD:-build}
BENCH=$BUILD/bench/bench_cnn_int8
[ -x "$BENCH" ] || { echo "$BENCH not built (ninja -C $BUILD bench/bench_cnn_int8)" >&2; exit 1; }
[ -d "$PEERS/ort/node_modules/onnxruntime-node" ] || { echo "onnxruntime-node not found under $PEERS/ort (run ../shared/peers/setup.sh)" >&2; exit 1; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg); $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)" >&2
for round in $(seq "$ROUNDS"); do
  "$BENCH" "$F/vision/squeezenet_cifar10.onnx" --batch "$BATCH" --rounds 5 --threads "$THREADS" --qdq "$out/squeezenet.qdq.onnx" > "$out/cq-squeezenet.$round.json"
  "$BENCH" "$F/vision/mnist-8.onnx" --mnist "$F/data/t10k-images-idx3-ubyte.gz" --batch "$BATCH" --rounds 5 --threads "$THREADS" \
    --qdq "$out/mnist.qdq.onnx" > "$out/cq-mnist.$round.json"
  NODE_PATH=$PEERS/ort/node_modules node scripts/onnx_time.js "$F/vision/squeezenet_cifar10.onnx" "$out/squeezenet.qdq.onnx" \
    --image 32,32,3 --batch "$BATCH" --threads "$THREADS" --runs 10 --rounds 2 > "$out/ort-squeezenet.$round.txt"
  NODE_PATH=$PEERS/ort/node_modules node scripts/onnx_time.js "$F/vision/mnist-8.onnx" "$out/mnist.qdq.onnx" \
    --image 1,28,28 --scale 255 --batch "$BATCH" --threads "$THREADS" --runs 10 --rounds 2 > "$out/ort-mnist.$round.txt"
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
python3 - "$out" "$ROUNDS" <<'PY'
import json, re, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
print("| model (batch, inputs) | cq FP32 ms | cq INT8 ms | ORT FP32 ms | ORT QDQ ms | cq INT8 / cq FP32 speed | cq INT8 / ORT QDQ speed | cq INT8 / ORT FP32 speed | top-1 agreement INT8 vs FP32 |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
for name in ("squeezenet", "mnist"):
    cq32, cq8, o32, o8, agree = [], [], [], [], None
    for r in range(1, rounds + 1):
        j = json.load(open(f"{out}/cq-{name}.{r}.json"))
        cq32.append(j["fp32_ms_per_batch"]); cq8.append(j["int8_ms_per_batch"]); agree = j["top1_agreement"]
        ms = [float(m.group(1)) for m in re.finditer(r"^\s*([\d.]+) ms\s", open(f"{out}/ort-{name}.{r}.txt").read(), re.M)]
        o32.append(ms[0]); o8.append(ms[1])
    a, b, c, d = (statistics.median(v) for v in (cq32, cq8, o32, o8))
    print(f"| {name} ({j['batch']}, {j['inputs']}) | {a:.2f} | {b:.2f} | {c:.2f} | {d:.2f} | {a / b:.2f}× | {d / b:.2f}× | {c / b:.2f}× | {agree:.4f} |")
PY
