#!/usr/bin/env bash
# Training throughput (forward + backward + AdamW, fp32) of cq finetune vs PyTorch CPU on llama-256d-stories at
# batch 8 × 256, same thread count, median step time after a warm-up step. Needs Debian's /usr/bin/python3 with torch.
# Usage: bench/train_vs_torch.sh [threads=2] [steps=5]   (CQ_BUILD_DIR: the build folder, default build)
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${1:-2}
steps=${2:-5}
cq=${CQ_BUILD_DIR:-build}/bin/cq
model=../shared/fixtures/models/llama-256d-stories
data=../shared/fixtures/data/stories_calib.txt
echo "cpu: $($cq info --kernels | awk '/^cpu |^isa level/ {$1=""; printf "%s;", $0}')"
cqj=$($cq -t "$threads" finetune "$model" --data "$data" --steps $((steps + 1)) --batch 8 --ctx 256 --lr 1e-4 --json)
torchj=$(/usr/bin/python3 scripts/train_reference.py speed --threads "$threads" --steps "$steps" --batch 8 --ctx 256)
/usr/bin/python3 - "$cqj" "$torchj" <<'PY'
import json, sys
cq, t = json.loads(sys.argv[1]), json.loads(sys.argv[2])
st = sorted(cq["step_seconds"][1:])
cq_tps = 8 * 256 / st[len(st) // 2]
print(f"cq    {cq_tps:8.0f} tokens/s (median step {st[len(st) // 2]:.3f} s)")
print(f"torch {t['tokens_per_s']:8.0f} tokens/s (median step {t['median_step_s']:.3f} s, torch {t['torch']}, {t['threads']} threads)")
print(f"cq / torch = {cq_tps / t['tokens_per_s']:.2f}x")
PY
