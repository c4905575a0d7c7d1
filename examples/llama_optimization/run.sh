#!/usr/bin/env bash
# llama_optimization: structured pruning + distillation recovery + GPTQ 4-bit to GGUF on llama-256d-stories, the
# per-stage report (size, PPL, KLD, prompt/generation tokens/s against the original), then the final GGUF in
# llama.cpp's llama-perplexity when it is installed (same text, same context) to check it loads and agrees.
# Usage: examples/llama_optimization/run.sh [CQ] [OUT] [RECIPE]   (from the repository root; RECIPE: recipe.yaml
# for the measured run, recipe-ci.yaml for CI)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
fx="$here/../../../shared/fixtures"
cq=${1:-build/bin/cq}
out=${2:-$(mktemp -d)/llama_optimization}
recipe=${3:-$here/recipe-ci.yaml}
"$cq" compress "$fx/models/llama-256d-stories" --recipe "$recipe" -o "$out"
peer=${LLAMA_PERPLEXITY:-$HOME/.cache/cq-peers/llama.cpp-src/build/bin/llama-perplexity}
if [ -x "$peer" ]; then
  chunks=$(grep -A4 '^evaluation:' "$recipe" | sed -n 's/ *chunks: *//p')
  "$peer" -m "$out/model.gguf" -f "$fx/data/tinystories_valid_subset.txt" -c 128 ${chunks:+--chunks $chunks} 2>&1 | grep 'Final estimate'
  "$cq" perplexity "$out/model.gguf" -f "$fx/data/tinystories_valid_subset.txt" -c 128 ${chunks:+--chunks $chunks} 2>&1 | grep 'PPL'
else
  echo "llama-perplexity not found (set LLAMA_PERPLEXITY): llama.cpp check skipped"
fi
