#!/usr/bin/env bash
# Runs the gpt_compression recipe on the GPT-2 fixture; prints the per-stage report (PPL against the original).
# Usage: examples/gpt_compression/run.sh [CQ] [OUT]   (from the repository root; CQ defaults to build/bin/cq)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cq=${1:-build/bin/cq}
out=${2:-$(mktemp -d)/gpt_compression}
"$cq" compress "$here/../../../shared/fixtures/models/gpt2-tiny-stories" --recipe "$here/recipe.yaml" -o "$out"
echo "outputs in $out (report.md, report.json, provenance.json, model.gguf)"
