#!/usr/bin/env bash
# Same-run speed comparison of `cq bench` and llama.cpp's `llama-bench` on one GGUF: prompt processing
# (pp) and generation (tg) tokens/s at the same thread count, interleaved so both see the same load.
# Each side's number is the median over rounds of the median of its REPS runs.
# Usage: bench/llm_vs_llamacpp.sh [MODEL.gguf] (env: CQ=build/bin/cq THREADS=2 PP=512 TG=128 REPS=5 ROUNDS=2
#        BIN=llama.cpp bin dir, ISAS="auto avx2": cq once per listed CQ_ISA rung, "auto" = the dispatcher's choice)
set -euo pipefail
cd "$(dirname "$0")/.."
PEERS=${CQ_PEERS:-$HOME/.cache/cq-peers}
MODEL=${1:-$PEERS/models/random-llama-768d-12L-f32.gguf}
BIN=${BIN:-$PEERS/llama.cpp-src/build/bin}
THREADS=${THREADS:-2} PP=${PP:-512} TG=${TG:-128} REPS=${REPS:-5} ROUNDS=${ROUNDS:-2} ISAS=${ISAS:-auto}
[ -x "$BIN/llama-bench" ] || { echo "llama-bench not found in $BIN (run ../shared/peers/setup.sh)" >&2; exit 1; }
CQ=${CQ:-build/bin/cq}  # the cq binary under test (e.g. CQ=build-kern/bin/cq)
[ -x "$CQ" ] || bash scripts/build
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
for round in $(seq "$ROUNDS"); do
  "$BIN/llama-bench" -m "$MODEL" -t "$THREADS" -p "$PP" -n "$TG" -r "$REPS" -o json > "$out/llama.$round.json" 2>/dev/null
  for isa in $ISAS; do
    [ "$isa" = auto ] && isa_env=() || isa_env=(CQ_ISA="$isa")
    env "${isa_env[@]}" "$CQ" -t "$THREADS" bench "$MODEL" -p "$PP" -n "$TG" -r "$REPS" --json > "$out/cq.$isa.$round.json"
  done
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
python3 - "$out" "$ROUNDS" $ISAS <<'PY'
import json, sys, statistics
out, rounds, isas = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
rows = {}  # test → engine → per-round medians
label = {}  # ISAS entry → the rung cq reported
for r in range(1, rounds + 1):
    for e in json.load(open(f"{out}/llama.{r}.json")):
        test = f"pp{e['n_prompt']}" if e["n_prompt"] else f"tg{e['n_gen']}"
        # the median of its runs, as cq reports (avg_ts is a mean, which one slow run drags down)
        rows.setdefault(test, {}).setdefault("llama", []).append(statistics.median(e["samples_ts"]) if e.get("samples_ts") else e["avg_ts"])
    for isa in isas:
        c = json.load(open(f"{out}/cq.{isa}.{r}.json"))
        label[isa] = f"auto: {c['isa']}, tuned" if isa == "auto" else isa
        for s in c["results"]:
            rows.setdefault(s["test"], {}).setdefault(isa, []).append(s["median"])
head = "| test | llama.cpp t/s |" + "".join(f" cq t/s ({label[i]}) | cq ({label[i]}) / llama.cpp |" for i in isas)
print(head)
print("|---|---:|" + "---:|---:|" * len(isas))
for test, v in rows.items():
    l = statistics.median(v["llama"])
    cells = "".join(f" {statistics.median(v[i]):.1f} | {statistics.median(v[i]) / l:.2f} |" for i in isas)
    print(f"| {test} | {l:.1f} |{cells}")
PY
