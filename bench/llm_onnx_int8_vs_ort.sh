#!/usr/bin/env bash
# ONNX Runtime on cq's int8 exports of a decoder LLM against cq's own run of the same quantized model: W8A8 static (qdq),
# static with symmetric ranges (trt-qdq), dynamic per tensor and per token (dynamic), and the Q4_0 weights
# (matmulnbits). For each: the share of scored positions where ORT's top token is cq's (issue 18's bar: ≥ 99.5 %), and
# PPL / KLD against the f32 model from ORT's logits beside cq's own (scripts/onnx_kld.js; cq perplexity's chunks).
# Usage: bench/llm_onnx_int8_vs_ort.sh [MODEL=llama-256d-stories] (env: CQ=build/bin/cq, CTX=128, THREADS=2,
#        CQ_PEERS=~/.cache/cq-peers, FIXTURES=../shared/fixtures, KEEP=dir to keep the files in)
set -euo pipefail
cd "$(dirname "$0")/.."
CQ=${CQ:-build/bin/cq}
F=${FIXTURES:-../shared/fixtures}
M=${1:-llama-256d-stories}
CTX=${CTX:-128} THREADS=${THREADS:-2}
export NODE_PATH=${CQ_PEERS:-$HOME/.cache/cq-peers}/ort/node_modules
[ -d "$NODE_PATH/onnxruntime-node" ] || { echo "onnxruntime-node not found under $NODE_PATH (bash ../shared/peers/setup.sh)" >&2; exit 1; }
tmp=${KEEP:-$(mktemp -d)}
mkdir -p "$tmp"
[ -n "${KEEP:-}" ] || trap 'rm -rf "$tmp"' EXIT
valid=$F/data/tinystories_valid_subset.txt calib=$F/data/stories_calib.txt
# the BOS id cq's perplexity puts first in every chunk (llama.cpp adds none for GPT-2), which ORT's inputs need too
bos=${BOS:-$(python3 -c 'import json,sys; c=json.load(open(sys.argv[1])); print(-1 if c.get("model_type")=="gpt2" else c.get("bos_token_id",1))' "$F/models/$M/config.json")}
ppl() { "$CQ" -t "$THREADS" perplexity "$1" -f "$valid" -c "$CTX" --save-logits "$2" ${3:+--kld-base "$3"} --json; }
ppl "$F/models/$M" "$tmp/base.bin" > "$tmp/base.json"
declare -A make=(
  [w8a8-static]="--type w8a8-static --calib $calib --calib-ctx $CTX"
  [w8a8-static-symmetric]="--type w8a8-static --act-symmetric --calib $calib --calib-ctx $CTX"
  [w8a8-dynamic-tensor]="--type w8a8-dynamic --act-granularity tensor"
  [w8a8-dynamic-token]="--type w8a8-dynamic"
  [q4_0]="--type q4_0"
)
declare -A format=([w8a8-static]=qdq [w8a8-static-symmetric]=trt-qdq [w8a8-dynamic-tensor]=dynamic [w8a8-dynamic-token]=dynamic [q4_0]=matmulnbits)
# matmulnbits three ways: int8 activation blocks in ORT (level 4, the default), float activations (level 0), and cq's own
# activation blocks computed in the graph (--cq-activations)
declare -A nbits=([q4_0]="--accuracy-level 4" [q4_0-level0]="--accuracy-level 0" [q4_0-cq-activations]="--cq-activations")
echo "| model | format | cq PPL | ORT PPL | cq KLD | ORT KLD | ORT top-1 = cq's |"
echo "|---|---|---:|---:|---:|---:|---:|"
for v in w8a8-static w8a8-static-symmetric w8a8-dynamic-tensor w8a8-dynamic-token q4_0 q4_0-level0 q4_0-cq-activations; do
  q=${v%%-level0} q=${q%%-cq-activations}  # the quantized file the variant exports
  if [ ! -f "$tmp/$q.gguf" ]; then
    # shellcheck disable=SC2086
    "$CQ" quantize "$F/models/$M" "$tmp/$q.gguf" ${make[$q]} --json > /dev/null
    ppl "$tmp/$q.gguf" "$tmp/$q.bin" "$tmp/base.bin" > "$tmp/$q.json"
  fi
  # shellcheck disable=SC2086
  "$CQ" export "$tmp/$q.gguf" "$tmp/$v.onnx" --format "${format[$q]}" ${nbits[$v]:-} --no-past --json > /dev/null
  node scripts/onnx_kld.js "$tmp/$v.onnx" "$tmp/base.bin" --compare "$tmp/$q.bin" --bos "$bos" --threads "$THREADS" > "$tmp/$v.ort.json"
  python3 - "$M" "$v" "${format[$q]} ${nbits[$v]:-}" "$tmp/$q.json" "$tmp/$v.ort.json" <<'PY'
import json, sys
m, q, f, cq, ort = sys.argv[1], sys.argv[2], sys.argv[3], json.load(open(sys.argv[4])), json.load(open(sys.argv[5]))
kld = cq.get("kld", {}).get("mean", float("nan"))
print(f"| {m} | {q} → {f} | {cq['ppl']:.4f} | {ort['ppl']:.4f} | {kld:.6f} | {ort['kld_mean']:.6f} | {100 * ort['same_top_vs_compare']:.2f} % ({ort['n']} positions) |")
PY
done
