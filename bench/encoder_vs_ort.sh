#!/usr/bin/env bash
# Same-run speed comparison on the BERT-base random twin (../shared/peers/make_bert_twin.py): ONNX Runtime
# fp32 and dynamic int8 (bench_bert_ort.js) against cq FP32 and W8A8 dynamic (8- and 7-bit activations),
# batch × seq tokens, same threads, rounds interleaved so all see the same load.
# Usage: bench/encoder_vs_ort.sh (env: THREADS=2 BATCH=8 SEQ=128 RUNS=5 ROUNDS=2 CQ_PEERS=~/.cache/cq-peers)
set -euo pipefail
cd "$(dirname "$0")/.."
PEERS=${CQ_PEERS:-$HOME/.cache/cq-peers}
MODEL=$PEERS/models/bert-base-random
THREADS=${THREADS:-2} BATCH=${BATCH:-8} SEQ=${SEQ:-128} RUNS=${RUNS:-5} ROUNDS=${ROUNDS:-2}
[ -d "$MODEL" ] || { echo "$MODEL not found (run ../shared/peers/setup.sh)" >&2; exit 1; }
[ -x build/bin/cq ] || bash scripts/build
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
build/bin/cq quantize "$MODEL" "$out/w8.gguf" --type w8a8-dynamic --act-bits 8 --json > /dev/null
build/bin/cq quantize "$MODEL" "$out/w7.gguf" --type w8a8-dynamic --act-bits 7 --json > /dev/null
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
for round in $(seq "$ROUNDS"); do
  NODE_PATH=$PEERS/ort/node_modules node ../shared/peers/bench_bert_ort.js "$PEERS/models" --runs "$RUNS" --threads "$THREADS" \
    --batch "$BATCH" --seq "$SEQ" > "$out/ort.$round.txt"
  for m in fp32 w8 w7; do
    path=$MODEL; [ "$m" = fp32 ] || path=$out/$m.gguf
    build/bin/cq -t "$THREADS" bench "$path" -b "$BATCH" -s "$SEQ" -r "$RUNS" --json > "$out/cq-$m.$round.json"
  done
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
python3 - "$out" "$ROUNDS" <<'PY'
import json, re, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
ort = {"fp32": [], "dynint8": []}
cq = {"fp32": [], "w8": [], "w7": []}
isa = "?"
for r in range(1, rounds + 1):
    for line in open(f"{out}/ort.{r}.txt"):
        m = re.match(r"\s+(fp32|dynint8)\s+median\s+([\d.]+) ms", line)
        if m: ort[m.group(1)].append(float(m.group(2)))
    for k in cq:
        j = json.load(open(f"{out}/cq-{k}.{r}.json"))
        cq[k].append(j["median_ms"]); isa = j["isa"]
med = {**{"ort " + k: statistics.median(v) for k, v in ort.items()}, **{"cq " + k: statistics.median(v) for k, v in cq.items()}}
names = {"ort fp32": "ONNX Runtime FP32", "ort dynint8": "ONNX Runtime dynamic INT8", "cq fp32": f"cq FP32 ({isa})",
         "cq w8": "cq W8A8 dynamic, 8-bit act.", "cq w7": "cq W8A8 dynamic, 7-bit act."}
print("| engine | median ms | vs ORT FP32 | vs cq FP32 | vs ORT INT8 |")
print("|---|---:|---:|---:|---:|")
for k, v in med.items():
    print(f"| {names[k]} | {v:.1f} | {med['ort fp32'] / v:.2f}× | {med['cq fp32'] / v:.2f}× | {med['ort dynint8'] / v:.2f}× |")
PY
