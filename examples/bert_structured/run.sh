#!/usr/bin/env bash
# bert_structured: the encoder compression sequence on the BERT-tiny SST-2 classifier as one cq compress run
# (recipe.yaml): structured prune (30 % of each block's heads, 30 % of its FFN neurons, importance from SST-2 train
# activations) → distillation from the unpruned model on SST-2 train → static W8A8 with a Q4_0 word-embedding table →
# GGUF; every stage measured against FP32 (bytes, SST-2 dev accuracy and agreement, 8×128 batch latency) in the same run.
# Then `cq eval` of the written file and interleaved `cq bench` rounds as an independent check (docs/pipeline.md).
# Usage: examples/bert_structured/run.sh [CQ] [OUT_DIR]   (from the repository root; OUT_DIR must not hold a run)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
fx="$here/../../../shared/fixtures"
cq=${1:-build/bin/cq}
out=${2:-$(mktemp -d)/run}
fp32="$fx/models/bert-tiny-sst2"
"$cq" -t 2 compress "$fp32" --recipe "$here/recipe.yaml" -o "$out"
"$cq" -t 2 eval "$out/model.gguf" --data "$fx/data/sst2_dev.tsv" --compare "$fp32"
ls -l "$fp32/model.safetensors" "$out/model.gguf"
for round in 1 2 3; do   # interleaved, so both see the same load
  "$cq" -t 2 bench "$fp32" -b 8 -s 128 -r 20 | tail -1
  "$cq" -t 2 bench "$out/model.gguf" -b 8 -s 128 -r 20 | tail -1
done
