#!/usr/bin/env bash
# bert_structured: the encoder compression sequence on the BERT-tiny SST-2 classifier — structured prune (30 % of each
# block's heads, 30 % of its FFN neurons, importance from SST-2 train activations) with recovery by distillation from the
# unpruned model on SST-2 train → static W8A8 with a Q4_0 word-embedding table → dev accuracy, bytes and 8×128 batch
# latency against FP32. cq compress drives decoder LLMs only, so this is the documented CLI sequence (docs/pruning.md).
# Usage: examples/bert_structured/run.sh [CQ] [OUT_DIR]   (from the repository root)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
fx="$here/../../../shared/fixtures"
cq=${1:-build/bin/cq}
out=${2:-$(mktemp -d)}
fp32="$fx/models/bert-tiny-sst2"
"$cq" -t 2 prune "$fp32" -o "$out/pruned" --structured heads=0.3,ffn=0.3 --calib "$fx/data/sst2_train.tsv" \
  --calib-samples 512 --max-len 64 --recover 300 --recover-lr 1e-4 --recover-batch 32
"$cq" -t 2 quantize "$out/pruned" "$out/final.gguf" --type w8a8-static --calib "$fx/data/sst2_train.tsv" --calib-range 0:256 \
  --embeddings q4_0
"$cq" -t 2 eval "$out/final.gguf" --data "$fx/data/sst2_dev.tsv" --compare "$fp32"
ls -l "$fp32/model.safetensors" "$out/final.gguf"
for round in 1 2 3; do   # interleaved, so both see the same load
  "$cq" -t 2 bench "$fp32" -b 8 -s 128 -r 20 | tail -1
  "$cq" -t 2 bench "$out/final.gguf" -b 8 -s 128 -r 20 | tail -1
done
