#!/usr/bin/env bash
# A QAT step (cq qat: fake quantization of every Linear through its ggml codec, forward, backward, STE, AdamW) against
# a plain training step (cq finetune) on the same model, batch and context; runs interleaved, reports medians and the
# ratio (the issue's bar: ≤ 1.3×), with and without the float teacher, and the load average.
# Usage: bench/qat_step.sh [model=llama-256d-stories] [type=q4_0] [threads=2] [steps=8] [rounds=3]
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:-../shared/fixtures/models/llama-256d-stories}
type=${2:-q4_0}
threads=${3:-2}
steps=${4:-8}
rounds=${5:-3}
cq=${CQ_BUILD_DIR:-build}/bin/cq
data=../shared/fixtures/data/stories_calib.txt
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for r in $(seq "$rounds"); do
  $cq -t "$threads" finetune "$model" --data "$data" --steps "$steps" --batch 8 --ctx 128 --lr 1e-5 --json > "$out/plain_$r.json"
  $cq -t "$threads" qat "$model" --type "$type" --data "$data" --steps "$steps" --batch 8 --ctx 128 --teacher none -o "$out/q.gguf" --json > "$out/qat_$r.json"
  $cq -t "$threads" qat "$model" --type "$type" --data "$data" --steps "$steps" --batch 8 --ctx 128 --teacher fp -o "$out/q.gguf" --json > "$out/qatkd_$r.json"
done
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg); CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)"
OUT="$out" ROUNDS="$rounds" /usr/bin/python3 - <<'PY'
import json, os
out, rounds = os.environ["OUT"], int(os.environ["ROUNDS"])
def med(kind):
    s = []
    for r in range(1, rounds + 1):
        s += json.load(open(f"{out}/{kind}_{r}.json"))["step_seconds"][1:]  # the first step warms caches
    s.sort()
    return s[len(s) // 2]
p, q, k = med("plain"), med("qat"), med("qatkd")
print(f"plain step {p * 1000:.0f} ms, QAT step {q * 1000:.0f} ms (× {q / p:.2f}), QAT + float teacher {k * 1000:.0f} ms (× {k / p:.2f})")
PY
