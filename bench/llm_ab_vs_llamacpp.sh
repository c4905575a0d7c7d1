#!/usr/bin/env bash
# Two cq builds against llama.cpp in one interleaved run (e.g. a commit against the one before it): per
# round and model, llama-bench, then build A and build B on each listed rung, so all see the same load.
# Prints cq/llama.cpp for A and B and B/A per model, test and rung (medians over rounds of medians of REPS).
# Usage: CQ_A=/path/old/cq CQ_B=build/bin/cq bench/llm_ab_vs_llamacpp.sh MODEL.gguf [MODEL.gguf ...]
#        (env: THREADS=2 PP=512 TG=128 REPS=3 ROUNDS=2 ISAS="auto avx2" BIN=llama.cpp bin dir)
set -euo pipefail
cd "$(dirname "$0")/.."
PEERS=${CQ_PEERS:-$HOME/.cache/cq-peers}
BIN=${BIN:-$PEERS/llama.cpp-src/build/bin}
THREADS=${THREADS:-2} PP=${PP:-512} TG=${TG:-128} REPS=${REPS:-3} ROUNDS=${ROUNDS:-2} ISAS=${ISAS:-"auto avx2"}
: "${CQ_A:?set CQ_A to the baseline cq binary}"
CQ_B=${CQ_B:-build/bin/cq}
[ $# -ge 1 ] || { echo "usage: CQ_A=... $0 MODEL.gguf [...]" >&2; exit 2; }
[ -x "$BIN/llama-bench" ] || { echo "llama-bench not found in $BIN (run ../shared/peers/setup.sh)" >&2; exit 1; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
for round in $(seq "$ROUNDS"); do
  for i in $(seq $#); do
    model=${!i}
    "$BIN/llama-bench" -m "$model" -t "$THREADS" -p "$PP" -n "$TG" -r "$REPS" -o json > "$out/llama.$i.$round.json" 2>/dev/null
    for isa in $ISAS; do
      [ "$isa" = auto ] && isa_env=() || isa_env=(CQ_ISA="$isa")
      env "${isa_env[@]}" "$CQ_A" -t "$THREADS" bench "$model" -p "$PP" -n "$TG" -r "$REPS" --json > "$out/a.$i.$isa.$round.json"
      env "${isa_env[@]}" "$CQ_B" -t "$THREADS" bench "$model" -p "$PP" -n "$TG" -r "$REPS" --json > "$out/b.$i.$isa.$round.json"
    done
  done
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
python3 - "$out" "$ROUNDS" "$#" "$@" -- $ISAS <<'PY'
import json, os, statistics as st, sys
out, rounds, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
models, isas = sys.argv[4:4 + n], sys.argv[4 + n + 1:]
print("| model | test | llama.cpp t/s | rung (A → B) | A / llama.cpp | B / llama.cpp | B / A |")
print("|---|---|---:|---|---:|---:|---:|")
for i, model in enumerate(models, 1):
    llama = {}
    for r in range(1, rounds + 1):
        for e in json.load(open(f"{out}/llama.{i}.{r}.json")):
            test = f"pp{e['n_prompt']}" if e["n_prompt"] else f"tg{e['n_gen']}"
            llama.setdefault(test, []).append(st.median(e["samples_ts"]) if e.get("samples_ts") else e["avg_ts"])
    for isa in isas:
        v, rung = {}, {}
        for side in ("a", "b"):
            for r in range(1, rounds + 1):
                c = json.load(open(f"{out}/{side}.{i}.{isa}.{r}.json"))
                rung[side] = c.get("isa", isa)
                for s in c["results"]:
                    v.setdefault((side, s["test"]), []).append(s["median"])
        for test in sorted(llama):
            l, a, b = st.median(llama[test]), st.median(v[("a", test)]), st.median(v[("b", test)])
            print(f"| {os.path.basename(model)} | {test} | {l:.1f} | {isa}: {rung['a']} → {rung['b']} | {a / l:.2f} | {b / l:.2f} | {b / a:.2f} |")
PY
