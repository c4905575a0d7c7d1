#!/usr/bin/env bash
# Training throughput (forward + backward + AdamW, fp32) of cq finetune vs PyTorch CPU on llama-256d-stories at
# batch 8 × 256, same thread count, median step time after a warm-up step; the two run alternately `rounds` times and
# each keeps its best round (the least disturbed on a shared machine). Needs Debian's /usr/bin/python3 with torch.
# Usage: bench/train_vs_torch.sh [threads=2] [steps=5] [rounds=2]   (CQ_BUILD_DIR: the build folder, default build)
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${1:-2}
steps=${2:-5}
rounds=${3:-2}
cq=${CQ_BUILD_DIR:-build}/bin/cq
model=../shared/fixtures/models/llama-256d-stories
data=../shared/fixtures/data/stories_calib.txt
echo "cpu: $($cq info --kernels | awk '/^cpu |^isa level/ {$1=""; printf "%s;", $0}')"
out=$(mktemp -d)
for r in $(seq "$rounds"); do
  $cq -t "$threads" finetune "$model" --data "$data" --steps $((steps + 1)) --batch 8 --ctx 256 --lr 1e-4 --json > "$out/cq.$r.json"
  /usr/bin/python3 scripts/train_reference.py speed --threads "$threads" --steps "$steps" --batch 8 --ctx 256 > "$out/torch.$r.json"
done
/usr/bin/python3 - "$out" "$rounds" <<'PY'
import json, sys
d, n = sys.argv[1], int(sys.argv[2])
cq_best, torch_best = 0.0, None
for r in range(1, n + 1):
    st = sorted(json.load(open(f"{d}/cq.{r}.json"))["step_seconds"][1:])
    cq_best = max(cq_best, 8 * 256 / st[len(st) // 2])
    t = json.load(open(f"{d}/torch.{r}.json"))
    torch_best = t if torch_best is None or t["tokens_per_s"] > torch_best["tokens_per_s"] else torch_best
print(f"cq    {cq_best:8.0f} tokens/s (best of {n} rounds, median step each)")
print(f"torch {torch_best['tokens_per_s']:8.0f} tokens/s (torch {torch_best['torch']}, {torch_best['threads']} threads)")
print(f"cq / torch = {cq_best / torch_best['tokens_per_s']:.2f}x")
PY
rm -rf "$out"
