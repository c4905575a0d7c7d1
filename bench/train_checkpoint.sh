#!/usr/bin/env bash
# Activation checkpointing (--checkpoint block) vs none on a LLaMA-shaped model (default: the peers' random
# 12-layer 768-wide GGUF) at batch 4 × 512: median step time and memory (peak RSS, the trainer's activation
# buffers, and peak RSS minus weights + gradients + AdamW state). Usage: bench/train_checkpoint.sh [model] [threads=2] [steps=3]
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:-${CQ_PEERS:-$HOME/.cache/cq-peers}/models/random-llama-768d-12L-f32.gguf}
threads=${2:-2}
steps=${3:-3}
cq=${CQ_BUILD_DIR:-build}/bin/cq
data=../shared/fixtures/data/stories_calib.txt
for mode in none block; do
  $cq -t "$threads" finetune "$model" --data "$data" --steps "$steps" --batch 4 --ctx 512 --lr 1e-5 --checkpoint $mode --json > /tmp/cq_ckpt_$mode.json
done
/usr/bin/python3 - <<'PY'
import json
r = {m: json.load(open(f"/tmp/cq_ckpt_{m}.json")) for m in ("none", "block")}
for m, j in r.items():
    st = sorted(j["step_seconds"][1:] or j["step_seconds"]); med = st[len(st) // 2]
    act = j["peak_rss_bytes"] - j["param_state_bytes"]
    j["_med"], j["_act"] = med, act
    print(f"{m:6s} step {med:7.2f} s  peak RSS {j['peak_rss_bytes'] / 2**20:8.0f} MiB  weights+grads+AdamW {j['param_state_bytes'] / 2**20:6.0f} MiB"
          f"  RSS − that {act / 2**20:7.0f} MiB  activation buffers {j['activation_bytes'] / 2**20:7.0f} MiB")
print(f"activation memory (RSS − state) ÷ {r['none']['_act'] / r['block']['_act']:.2f}, buffers ÷ "
      f"{r['none']['activation_bytes'] / r['block']['activation_bytes']:.2f}, step time × {r['block']['_med'] / r['none']['_med']:.2f}")
PY
