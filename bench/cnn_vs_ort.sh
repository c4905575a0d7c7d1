#!/usr/bin/env bash
# Same-run latency of an imported ONNX CNN: cq FP32 and cq static W8A8 (bench_cnn_int8, interleaved) against ONNX
# Runtime running the original file (FP32) and cq's QDQ export of the same calibrated model (scripts/onnx_time.js,
# interleaved) and, with ORT_PYTHON (a Python with PyPI's onnxruntime), the output of ORT's own quantizer
# (bench/ort_quantize_cnn.py), alternating cq and ORT rounds so both see the same load. Prints a Markdown table of
# medians per batch. SqueezeNet-CIFAR-10 on seeded uniform [0, 1) inputs (no CIFAR images ship) and mnist-8 on MNIST
# test images.
# Usage: bench/cnn_vs_ort.sh (env: THREADS=2 BATCH=32 ROUNDS=3 CQ_PEERS=~/.cache/cq-peers BUILD=build ORT_PYTHON=)
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
ort_own=()
if [ -n "${ORT_PYTHON:-}" ]; then
  "$ORT_PYTHON" bench/ort_quantize_cnn.py "$F/vision/squeezenet_cifar10.onnx" "$out/squeezenet.ort.onnx" --image 32,32,3 >&2
  "$ORT_PYTHON" bench/ort_quantize_cnn.py "$F/vision/mnist-8.onnx" "$out/mnist.ort.onnx" --image 1,28,28 \
    --mnist "$F/data/t10k-images-idx3-ubyte.gz" >&2
  ort_own=(yes)
fi
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg); $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)" >&2
for round in $(seq "$ROUNDS"); do
  "$BENCH" "$F/vision/squeezenet_cifar10.onnx" --batch "$BATCH" --rounds 5 --threads "$THREADS" --qdq "$out/squeezenet.qdq.onnx" > "$out/cq-squeezenet.$round.json"
  "$BENCH" "$F/vision/mnist-8.onnx" --mnist "$F/data/t10k-images-idx3-ubyte.gz" --batch "$BATCH" --rounds 5 --threads "$THREADS" \
    --qdq "$out/mnist.qdq.onnx" > "$out/cq-mnist.$round.json"
  NODE_PATH=$PEERS/ort/node_modules node scripts/onnx_time.js "$F/vision/squeezenet_cifar10.onnx" "$out/squeezenet.qdq.onnx" \
    ${ort_own:+"$out/squeezenet.ort.onnx"} \
    --image 32,32,3 --batch "$BATCH" --threads "$THREADS" --runs 10 --rounds 2 > "$out/ort-squeezenet.$round.txt"
  NODE_PATH=$PEERS/ort/node_modules node scripts/onnx_time.js "$F/vision/mnist-8.onnx" "$out/mnist.qdq.onnx" \
    ${ort_own:+"$out/mnist.ort.onnx"} \
    --image 1,28,28 --scale 255 --batch "$BATCH" --threads "$THREADS" --runs 10 --rounds 2 > "$out/ort-mnist.$round.txt"
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
python3 - "$out" "$ROUNDS" <<'PY'
import json, re, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
own = any(len(re.findall(r"^\s*[\d.]+ ms\s", open(f"{out}/ort-{n}.1.txt").read(), re.M)) > 2 for n in ("squeezenet", "mnist"))
print("| model (batch, inputs) | cq FP32 ms | cq INT8 ms | ORT FP32 ms | ORT on cq's QDQ ms |" + (" ORT on its own quantizer's QDQ ms |" if own else "") +
      " cq INT8 / cq FP32 | cq INT8 / ORT on cq's QDQ |" + (" cq INT8 / ORT's own QDQ |" if own else "") + " cq INT8 / ORT FP32 | top-1 INT8 = FP32 |")
print("|---|---:|---:|---:|---:|" + ("---:|" if own else "") + "---:|---:|" + ("---:|" if own else "") + "---:|---:|")
spread = []
for name in ("squeezenet", "mnist"):
    cq32, cq8, ort, agree = [], [], [[], [], []], None
    for r in range(1, rounds + 1):
        j = json.load(open(f"{out}/cq-{name}.{r}.json"))
        cq32.append(j["fp32_ms_per_batch"]); cq8.append(j["int8_ms_per_batch"]); agree = j["top1_agreement"]
        ms = [float(m.group(1)) for m in re.finditer(r"^\s*([\d.]+) ms\s", open(f"{out}/ort-{name}.{r}.txt").read(), re.M)]
        for i, v in enumerate(ms): ort[i].append(v)
    a, b = statistics.median(cq32), statistics.median(cq8)
    o = [statistics.median(v) for v in ort if v]
    cells = [f"{a:.2f}", f"{b:.2f}"] + [f"{v:.2f}" for v in o] + [f"{a / b:.2f}×"] + [f"{v / b:.2f}×" for v in o[1:]] + [f"{o[0] / b:.2f}×", f"{agree:.4f}"]
    print(f"| {name} ({j['batch']}, {j['inputs']}) | " + " | ".join(cells) + " |")
    spread.append(f"{name}: cq INT8 {min(cq8):.2f}-{max(cq8):.2f} ms, cq FP32 {min(cq32):.2f}-{max(cq32):.2f}, " +
                  ", ".join(f"ORT {label} {min(v):.2f}-{max(v):.2f}" for label, v in zip(("FP32", "on cq's QDQ", "own QDQ"), ort) if v))
print("\nper-round medians, lowest-highest: " + "; ".join(spread))
PY
