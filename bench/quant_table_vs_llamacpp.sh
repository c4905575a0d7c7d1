#!/usr/bin/env bash
# The weight-quantization table for one GGUF (default stories260K), cq and llama.cpp side by side: per type,
# file bytes, bits/weight, PPL, ΔPPL against F32, mean KL-divergence and same-top-token % — cq's file scored
# by cq, llama-quantize's file scored by llama-perplexity (--kl-divergence against its own F32 logits).
# Usage: bench/quant_table_vs_llamacpp.sh [MODEL.gguf] (env: TEXT=../shared/fixtures/data/tinystories_valid_subset.txt
#        CTX=128 TYPES="q8_0 q4_0 ..." BIN=llama.cpp bin dir)
set -euo pipefail
cd "$(dirname "$0")/.."
PEERS=${CQ_PEERS:-$HOME/.cache/cq-peers}
MODEL=${1:-../shared/fixtures/models/stories260K-gguf/stories260K.gguf}
BIN=${BIN:-$PEERS/llama.cpp-src/build/bin}
TEXT=${TEXT:-../shared/fixtures/data/tinystories_valid_subset.txt}
CTX=${CTX:-128}
TYPES=${TYPES:-"q8_0 q6_k q5_k_m q5_1 q5_0 q4_k_m q4_k_s q4_1 q4_0 q3_k_m q2_k"}
[ -x "$BIN/llama-perplexity" ] || { echo "llama-perplexity not found in $BIN (run ../shared/peers/setup.sh)" >&2; exit 1; }
[ -x build/bin/cq ] || bash scripts/build
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
# llama-perplexity sometimes exits 0 without its final figures on this machine: retry until they appear.
llama_ppl() {
  for _ in 1 2 3 4 5; do
    "$BIN/llama-perplexity" -m "$1" -f "$TEXT" -c "$CTX" -b "$CTX" -t 2 "${@:2}" > "$out/lp.txt" 2>&1 || true
    grep -q "Final estimate\|Mean PPL(Q)" "$out/lp.txt" && return 0
  done
  echo "llama-perplexity gave no result for $1" >&2; cat "$out/lp.txt" >&2; return 1
}
build/bin/cq perplexity "$MODEL" -f "$TEXT" -c "$CTX" --save-logits "$out/cq.base" --json > "$out/cq-f32.json"
llama_ppl "$MODEL" --kl-divergence-base "$out/llama.base"
grep "Final estimate" "$out/lp.txt" | sed 's/.*PPL = \([0-9.]*\).*/\1/' > "$out/llama-f32.txt"
for t in $TYPES; do
  build/bin/cq quantize "$MODEL" "$out/cq-$t.gguf" --type "$t" --json > "$out/cq-$t.q.json"
  build/bin/cq perplexity "$out/cq-$t.gguf" -f "$TEXT" -c "$CTX" --kld-base "$out/cq.base" --json > "$out/cq-$t.json"
  "$BIN/llama-quantize" "$MODEL" "$out/llama-$t.gguf" "$(echo "$t" | tr a-z A-Z)" > /dev/null 2>&1
  llama_ppl "$out/llama-$t.gguf" --kl-divergence-base "$out/llama.base" --kl-divergence
  cp "$out/lp.txt" "$out/llama-$t.txt"
  stat -c %s "$out/cq-$t.gguf" > "$out/cq-$t.bytes"
  stat -c %s "$out/llama-$t.gguf" > "$out/llama-$t.bytes"
done
python3 - "$out" "$MODEL" "$TYPES" <<'PY'
import json, os, re, sys
out, model, types = sys.argv[1], sys.argv[2], sys.argv[3].split()
cq0 = json.load(open(f"{out}/cq-f32.json"))
ll0 = float(open(f"{out}/llama-f32.txt").read().strip() or "nan")
def llama(t):
    s = open(f"{out}/llama-{t}.txt").read()
    ppl = float(re.search(r"Mean PPL\(Q\)\s*:\s*([\d.]+)", s).group(1))
    kld = float(re.search(r"Mean\s+KLD:\s*([-\d.]+)", s).group(1))
    top = float(re.search(r"Same top p:\s*([\d.]+)", s).group(1))
    return ppl, kld, top
print(f"F32 PPL: cq {cq0['ppl']:.4f}, llama.cpp {ll0:.4f} (ctx {cq0['n_ctx']}, {cq0['n_chunks']} chunks)\n")
print("| type | bytes cq | bytes llama.cpp | bits/weight | PPL cq | PPL llama.cpp | ΔPPL cq | ΔPPL llama.cpp | KLD cq | KLD llama.cpp | same top cq | same top llama.cpp |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for t in types:
    c = json.load(open(f"{out}/cq-{t}.json"))
    lp, lk, lt = llama(t)
    bc, bl = int(open(f"{out}/cq-{t}.bytes").read()), int(open(f"{out}/llama-{t}.bytes").read())
    bpw = json.load(open(f"{out}/cq-{t}.q.json"))["quantize"]["bits_per_weight_out"]
    print(f"| {t} | {bc:,} | {bl:,} | {bpw:.2f} | {c['ppl']:.4f} | {lp:.4f} | {c['ppl'] - cq0['ppl']:+.4f} | {lp - ll0:+.4f} | "
          f"{c['kld']['mean']:.5f} | {lk:.5f} | {100 * c['kld']['same_top']:.2f} % | {lt:.2f} % |")
PY
