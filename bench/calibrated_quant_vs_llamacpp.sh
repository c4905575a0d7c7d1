#!/usr/bin/env bash
# Issue 14's table: cq's calibrated methods and automatic mixed precision against llama.cpp (with and without its
# imatrix from the same calibration text) on one LLaMA-shaped model. Every file — cq's and llama.cpp's — is scored
# by the peer's llama-perplexity (--kl-divergence against the F32 model's logits); cq's files are also scored by
# cq perplexity, to show both tools agree on them.
# Usage: bench/calibrated_quant_vs_llamacpp.sh [MODEL (HF dir or GGUF)] > table.md
#   env: CALIB=stories_calib.txt TEXT=tinystories_valid_subset.txt CTX=128 (evaluation) TYPES="q3_k_m q4_k_m q5_k_m"
#        METHODS="rtn imatrix gptq awq awq+gptq" METHOD_TYPES=$TYPES BIN=llama.cpp bin dir CQ=build/bin/cq
#        OUT=dir to keep the files in (a rerun into the same OUT skips what is already scored)
set -euo pipefail
cd "$(dirname "$0")/.."
PEERS=${CQ_PEERS:-$HOME/.cache/cq-peers}
FIX=../shared/fixtures
MODEL=${1:-$FIX/models/llama-256d-stories}
BIN=${BIN:-$PEERS/llama.cpp-src/build/bin}
CALIB=${CALIB:-$FIX/data/stories_calib.txt}
TEXT=${TEXT:-$FIX/data/tinystories_valid_subset.txt}
CTX=${CTX:-128}
TYPES=${TYPES:-"q3_k_m q4_k_m q5_k_m"}
METHODS=${METHODS:-"rtn imatrix gptq awq awq+gptq"}
[ -x "$BIN/llama-perplexity" ] || { echo "llama-perplexity not found in $BIN (run ../shared/peers/setup.sh)" >&2; exit 1; }
[ -x build/bin/cq ] || bash scripts/build >&2
out=${OUT:-$(mktemp -d)}
mkdir -p "$out"
CQ=${CQ:-build/bin/cq}
llama_ppl() {  # MODEL OUT.txt ARGS… (llama-perplexity sometimes exits 0 without its figures here: retry)
  for _ in 1 2 3 4 5; do
    "$BIN/llama-perplexity" -m "$1" -f "$TEXT" -c "$CTX" -b "$CTX" -t 2 "${@:3}" > "$2" 2>&1 || true
    grep -q "Final estimate\|Mean PPL(Q)" "$2" && return 0
  done
  echo "llama-perplexity gave no result for $1" >&2; return 1
}
score() {  # NAME FILE SECONDS: both scorers, the sizes
  [ -f "$out/$1.bytes" ] && return 0  # scored in an earlier run into the same OUT
  llama_ppl "$2" "$out/$1.llama.txt" --kl-divergence-base "$out/llama.base" --kl-divergence
  $CQ perplexity "$2" -f "$TEXT" -c "$CTX" --kld-base "$out/cq.base" --json > "$out/$1.cq.json"
  echo "$3" > "$out/$1.seconds"
  stat -c %s "$2" > "$out/$1.bytes"
}
timed() { local t0; t0=$(date +%s.%N); "$@"; echo "$(date +%s.%N) - $t0" | bc; }

[ -f "$out/f32.gguf" ] || $CQ quantize "$MODEL" "$out/f32.gguf" --type f32 > /dev/null
[ -f "$out/cq.base" ] || $CQ perplexity "$out/f32.gguf" -f "$TEXT" -c "$CTX" --save-logits "$out/cq.base" --json > "$out/f32.cq.json"
[ -f "$out/llama.base" ] || llama_ppl "$out/f32.gguf" "$out/f32.llama.txt" --kl-divergence-base "$out/llama.base"
# llama.cpp: its imatrix from the calibration text (its defaults), then each preset without and with it.
[ -f "$out/llama.imatrix.gguf" ] || "$BIN/llama-imatrix" -m "$out/f32.gguf" -f "$CALIB" -o "$out/llama.imatrix.gguf" -t 2 > "$out/llama-imatrix.log" 2>&1
for t in $TYPES; do
  T=$(echo "$t" | tr a-z A-Z)
  [ -f "$out/llama-imatrix-$t.bytes" ] && continue
  s=$(timed "$BIN/llama-quantize" "$out/f32.gguf" "$out/llama-$t.gguf" "$T" 2>&1 | tail -1) ; score "llama-$t" "$out/llama-$t.gguf" "$s"
  s=$(timed "$BIN/llama-quantize" --imatrix "$out/llama.imatrix.gguf" "$out/f32.gguf" "$out/llama-imatrix-$t.gguf" "$T" 2>&1 | tail -1)
  score "llama-imatrix-$t" "$out/llama-imatrix-$t.gguf" "$s"
done
# The one command: --calib and a budget, nothing else. Budgets: llama.cpp's Q4_K_M (no imatrix) and Q3_K_M-with-imatrix
# file sizes, and the bits/weight of each preset (cq's RTN files have llama.cpp's bytes, so their report gives them).
auto() {  # NAME ARGS…
  [ -f "$out/cq-auto-$1.bytes" ] && return 0
  $CQ quantize "$out/f32.gguf" "$out/cq-auto-$1.gguf" --calib "$CALIB" "${@:2}" --json > "$out/cq-auto-$1.q.json"
  score "cq-auto-$1" "$out/cq-auto-$1.gguf" "$(python3 -c "import json;print(json.load(open('$out/cq-auto-$1.q.json'))['quantize']['seconds'])")"
}
# The issue's two size bars: llama.cpp's Q4_K_M without imatrix and Q3_K_M with it.
[ -f "$out/llama-q4_k_m.bytes" ] && auto "size-q4_k_m" --target-size "$(cat "$out/llama-q4_k_m.bytes")"
[ -f "$out/llama-imatrix-q3_k_m.bytes" ] && auto "size-imatrix-q3_k_m" --target-size "$(cat "$out/llama-imatrix-q3_k_m.bytes")"
for t in $TYPES; do
  [ -f "$out/cq-rtn-$t.q.json" ] || $CQ quantize "$out/f32.gguf" "$out/cq-rtn-$t.gguf" --type "$t" --json > "$out/cq-rtn-$t.q.json"
  bpw=$(python3 -c "import json;print(json.load(open('$out/cq-rtn-$t.q.json'))['quantize']['bits_per_weight_out'])" 2>/dev/null || true)
  [ -n "$bpw" ] && auto "bpw-$t" --target-bpw "$bpw"
done

for m in $METHODS; do
  for t in ${METHOD_TYPES:-$TYPES}; do
    calib=(); [ "$m" = rtn ] || calib=(--calib "$CALIB")
    [ -f "$out/cq-$m-$t.bytes" ] && continue
    $CQ quantize "$out/f32.gguf" "$out/cq-$m-$t.gguf" --type "$t" --method "$m" "${calib[@]}" --json > "$out/cq-$m-$t.q.json"
    score "cq-$m-$t" "$out/cq-$m-$t.gguf" "$(python3 -c "import json;print(json.load(open('$out/cq-$m-$t.q.json'))['quantize']['seconds'])")"
  done
done
python3 - "$out" "$TYPES" "$METHODS" <<'PY'
import json, os, re, sys
out, types, methods = sys.argv[1], sys.argv[2].split(), sys.argv[3].split()
def llama(name):
    s = open(f"{out}/{name}.llama.txt").read()
    ppl = re.search(r"Mean PPL\(Q\)\s*:\s*([\d.]+)", s) or re.search(r"Final estimate: PPL = ([\d.]+)", s)
    kld = re.search(r"Mean\s+KLD:\s*([-\d.]+)", s)
    top = re.search(r"Same top p:\s*([\d.]+)", s)
    return float(ppl.group(1)), float(kld.group(1)) if kld else 0.0, float(top.group(1)) if top else 100.0
f32 = json.load(open(f"{out}/f32.cq.json"))
params = None
rows = []
def row(label, name):
    if not os.path.exists(f"{out}/{name}.bytes"): return
    b = int(open(f"{out}/{name}.bytes").read())
    lp, lk, lt = llama(name)
    c = json.load(open(f"{out}/{name}.cq.json"))
    q = f"{out}/{name}.q.json"
    bpw = json.load(open(q))["quantize"]["bits_per_weight_out"] if os.path.exists(q) else float("nan")
    sec = float(open(f"{out}/{name}.seconds").read() or "nan")
    agree = abs(c["ppl"] / lp - 1) * 100
    rows.append(f"| {label} | {b:,} | {bpw:.3f} | {lp:.4f} | {c['ppl']:.4f} ({agree:.3f} %) | {lk:.6f} | {lt:.2f} % | {sec:.1f} |")
print(f"F32: PPL {f32['ppl']:.4f} (cq), ctx {f32['n_ctx']}, {f32['n_chunks']} chunks; KLD and same-top from llama-perplexity "
      "--kl-divergence against the F32 logits; bits/weight as cq's report counts them (tensor bytes · 8 / parameters)\n")
print("| file | bytes | bits/weight | PPL (llama-perplexity) | PPL (cq; difference) | mean KLD | same top | quantize s |")
print("|---|---:|---:|---:|---:|---:|---:|---:|")
for t in types:
    row(f"llama.cpp {t}", f"llama-{t}")
    row(f"llama.cpp {t} + imatrix", f"llama-imatrix-{t}")
    for m in methods: row(f"cq {m} {t}", f"cq-{m}-{t}")
for n in sorted(x[:-6] for x in os.listdir(out) if x.startswith("cq-auto-") and x.endswith(".bytes")):
    mth = json.load(open(f"{out}/{n}.q.json"))["quantize"]["method"]
    row(f"cq {n[3:]} ({mth})", n)
print("\n".join(rows))
PY
