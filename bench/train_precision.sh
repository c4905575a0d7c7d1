#!/usr/bin/env bash
# Mixed-precision training on llama-256d-stories at batch 8 × 256: throughput (forward + backward + AdamW, tokens/s,
# median step after a warm-up step) of --precision bf16 (and fp16) against cq's own fp32, the runs alternating `rounds`
# times, each precision keeping its best round (the least disturbed on a shared machine); with loss_steps > 0, also the
# training loss after that many steps for fp32 and bf16 (the issue's bar: within 1 %).
# Usage: bench/train_precision.sh [threads=2] [steps=5] [rounds=2] [loss_steps=0]   (CQ_BUILD_DIR: default build)
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${1:-2}
steps=${2:-5}
rounds=${3:-2}
loss_steps=${4:-0}
cq=${CQ_BUILD_DIR:-build}/bin/cq
model=../shared/fixtures/models/llama-256d-stories
data=../shared/fixtures/data/stories_calib.txt
echo "cpu: $($cq info --kernels | awk '/^cpu |^features/ {$1=""; printf "%s;", $0}')"
echo "kernels: $($cq info --kernels | awk '/^gemm_bf16 |^gemm_f32 / {printf "%s %s; ", $1, $2}')"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
out=$(mktemp -d)
for r in $(seq "$rounds"); do
  for p in fp32 bf16 fp16; do
    $cq -t "$threads" finetune "$model" --data "$data" --steps $((steps + 1)) --batch 8 --ctx 256 --lr 1e-4 --precision $p --json > "$out/$p.$r.json"
  done
done
if [ "$loss_steps" -gt 0 ]; then
  for p in fp32 bf16; do
    $cq -t "$threads" finetune "$model" --data "$data" --steps "$loss_steps" --batch 8 --ctx 256 --lr 1e-4 --precision $p --json > "$out/$p.loss.json"
  done
fi
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
/usr/bin/python3 - "$out" "$rounds" "$loss_steps" <<'PY'
import json, os, sys
d, n, loss_steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
best = {}
for p in ("fp32", "bf16", "fp16"):
    for r in range(1, n + 1):
        st = sorted(json.load(open(f"{d}/{p}.{r}.json"))["step_seconds"][1:])
        best[p] = max(best.get(p, 0.0), 8 * 256 / st[len(st) // 2])
for p in ("fp32", "bf16", "fp16"):
    print(f"{p}  {best[p]:8.0f} tokens/s  ({best[p] / best['fp32']:.2f}x fp32; best of {n} rounds, median step each)")
if loss_steps:
    curves = {p: json.load(open(f"{d}/{p}.loss.json"))["loss_curve"] for p in ("fp32", "bf16")}
    def tail(c): return sum(c[-10:]) / len(c[-10:])
    a, b = curves["fp32"], curves["bf16"]
    print(f"loss after {loss_steps} steps: fp32 {a[-1]:.4f}, bf16 {b[-1]:.4f} ({100 * (b[-1] - a[-1]) / a[-1]:+.2f} %); "
          f"mean of the last 10 steps: fp32 {tail(a):.4f}, bf16 {tail(b):.4f} ({100 * (tail(b) - tail(a)) / tail(a):+.2f} %)")
    print(f"largest per-step difference: {100 * max(abs(x - y) / x for x, y in zip(a, b)):.2f} %")
PY
rm -rf "$out"
