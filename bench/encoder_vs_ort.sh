#!/usr/bin/env bash
# Same-run speed comparison on the BERT-base random twin (../shared/peers/make_bert_twin.py): ONNX Runtime
# fp32 and dynamic int8 (bench_bert_ort.js) against cq FP32 and W8A8 dynamic (8- and 7-bit activations; 8-bit with
# INT8 attention, --attention int8),
# batch × seq tokens, same threads, rounds interleaved so all see the same load.
# Usage: bench/encoder_vs_ort.sh (env: CQ=build/bin/cq THREADS=2 BATCH=8 SEQ=128 RUNS=5 ROUNDS=2 CQ_PEERS=~/.cache/cq-peers
#        ISAS="auto avx2": cq once per listed CQ_ISA rung, "auto" = the dispatcher's choice)
set -euo pipefail
cd "$(dirname "$0")/.."
PEERS=${CQ_PEERS:-$HOME/.cache/cq-peers}
MODEL=$PEERS/models/bert-base-random
THREADS=${THREADS:-2} BATCH=${BATCH:-8} SEQ=${SEQ:-128} RUNS=${RUNS:-5} ROUNDS=${ROUNDS:-2} ISAS=${ISAS:-auto}
[ -d "$MODEL" ] || { echo "$MODEL not found (run ../shared/peers/setup.sh)" >&2; exit 1; }
CQ=${CQ:-build/bin/cq}  # the cq binary under test (e.g. CQ=build-kern/bin/cq)
[ -x "$CQ" ] || bash scripts/build
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
"$CQ" quantize "$MODEL" "$out/w8.gguf" --type w8a8-dynamic --act-bits 8 --json > /dev/null
"$CQ" quantize "$MODEL" "$out/w7.gguf" --type w8a8-dynamic --act-bits 7 --json > /dev/null
"$CQ" quantize "$MODEL" "$out/w8i.gguf" --type w8a8-dynamic --act-bits 8 --attention int8 --json > /dev/null
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
for round in $(seq "$ROUNDS"); do
  NODE_PATH=$PEERS/ort/node_modules node ../shared/peers/bench_bert_ort.js "$PEERS/models" --runs "$RUNS" --threads "$THREADS" \
    --batch "$BATCH" --seq "$SEQ" > "$out/ort.$round.txt"
  for isa in $ISAS; do
    [ "$isa" = auto ] && isa_env=() || isa_env=(CQ_ISA="$isa")
    for m in fp32 w8 w7 w8i; do
      path=$MODEL; [ "$m" = fp32 ] || path=$out/$m.gguf
      env "${isa_env[@]}" "$CQ" -t "$THREADS" bench "$path" -b "$BATCH" -s "$SEQ" -r "$RUNS" --json > "$out/cq-$m.$isa.$round.json"
    done
  done
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
python3 - "$out" "$ROUNDS" $ISAS <<'PY'
import json, re, statistics, sys
out, rounds, isas = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
ort = {"fp32": [], "dynint8": []}
cq = {(k, i): [] for i in isas for k in ("fp32", "w8", "w7", "w8i")}
label = {}
for r in range(1, rounds + 1):
    for line in open(f"{out}/ort.{r}.txt"):
        m = re.match(r"\s+(fp32|dynint8)\s+median\s+([\d.]+) ms", line)
        if m: ort[m.group(1)].append(float(m.group(2)))
    for (k, i), v in cq.items():
        j = json.load(open(f"{out}/cq-{k}.{i}.{r}.json"))
        v.append(j["median_ms"]); label[i] = f"auto: {j['isa']}, tuned" if i == "auto" else i
titles = {"fp32": "FP32", "w8": "W8A8 dynamic, 8-bit act.", "w7": "W8A8 dynamic, 7-bit act.",
          "w8i": "W8A8 dynamic, 8-bit act., INT8 attention"}
med = {"ONNX Runtime FP32": statistics.median(ort["fp32"]), "ONNX Runtime dynamic INT8": statistics.median(ort["dynint8"])}
for (k, i), v in cq.items():
    med[f"cq {titles[k]} ({label[i]})"] = statistics.median(v)
print("| engine | median ms | vs ORT FP32 | vs cq FP32 (same rung) | vs ORT INT8 |")
print("|---|---:|---:|---:|---:|")
for name, v in med.items():
    rung = next((label[i] for i in isas if name.endswith(f"({label[i]})")), None)
    own = med[f"cq FP32 ({rung})"] / v if rung else float("nan")
    print(f"| {name} | {v:.1f} | {med['ONNX Runtime FP32'] / v:.2f}× | {own:.2f}× | {med['ONNX Runtime dynamic INT8'] / v:.2f}× |")
PY
