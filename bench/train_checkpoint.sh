#!/usr/bin/env bash
# Activation checkpointing (--checkpoint block and every:K) vs none on a LLaMA-shaped model (default: the peers' random
# 12-layer 768-wide GGUF) at batch 4 × 512: median step time and memory (peak RSS, the trainer's activation
# buffers, and peak RSS minus weights + gradients + AdamW state). Usage: bench/train_checkpoint.sh [model] [threads=2] [steps=3]
# [modes="none block every:2 every:4"] (none must come first: the ratios are against it)
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:-${CQ_PEERS:-$HOME/.cache/cq-peers}/models/random-llama-768d-12L-f32.gguf}
threads=${2:-2}
steps=${3:-3}
modes=${4:-none block every:2 every:4}
cq=${CQ_BUILD_DIR:-build}/bin/cq
data=../shared/fixtures/data/stories_calib.txt
out=$(mktemp -d)
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
for mode in $modes; do
  $cq -t "$threads" finetune "$model" --data "$data" --steps "$steps" --batch 4 --ctx 512 --lr 1e-5 --checkpoint $mode --json > "$out/${mode/:/_}.json"
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
/usr/bin/python3 - "$out" $modes <<'PY'
import json, sys
r = {m: json.load(open(f"{sys.argv[1]}/{m.replace(':', '_')}.json")) for m in sys.argv[2:]}
for m, j in r.items():
    st = sorted(j["step_seconds"][1:] or j["step_seconds"]); med = st[len(st) // 2]
    act = j["peak_rss_bytes"] - j["param_state_bytes"]
    j["_med"], j["_act"] = med, act
    print(f"{m:8s} step {med:7.2f} s  peak RSS {j['peak_rss_bytes'] / 2**20:8.0f} MiB  weights+grads+AdamW {j['param_state_bytes'] / 2**20:6.0f} MiB"
          f"  RSS − that {act / 2**20:7.0f} MiB  activation buffers {j['activation_bytes'] / 2**20:7.0f} MiB")
for m, j in r.items():
    if m == "none": continue
    print(f"{m:8s} activation memory (RSS − state) ÷ {r['none']['_act'] / j['_act']:.2f}, buffers ÷ "
          f"{r['none']['activation_bytes'] / j['activation_bytes']:.2f}, step time × {j['_med'] / r['none']['_med']:.2f}")
PY
rm -rf "$out"
