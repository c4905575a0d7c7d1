#!/usr/bin/env python3
"""Runs llama.cpp's llama-quantize (no imatrix, default mixes) on stories260K for each preset and records
the type llama.cpp gave every tensor, the fallback count it printed, and the file's tensor-data sizes, in
stories260K.json. The GGUF files are parsed with tests/expected/make_expected.py (stdlib only).
Usage: python3 tests/expected/llamacpp_presets/make_expected.py [--bin DIR] [--fixtures DIR]"""
import argparse, json, os, re, subprocess, sys, tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
import make_expected  # noqa: E402

PRESETS = ["Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q2_K", "Q3_K_M", "Q4_K_S", "Q4_K_M", "Q5_K_M", "Q6_K"]

ap = argparse.ArgumentParser()
ap.add_argument("--bin", default=os.path.expanduser("~/.cache/cq-peers/llama.cpp-src/build/bin"))
ap.add_argument("--fixtures", default=os.environ.get("CQ_FIXTURES", os.path.join(HERE, "../../../../shared/fixtures")))
a = ap.parse_args()
src = os.path.join(a.fixtures, "models/stories260K-gguf/stories260K.gguf")
out = {"generator": "tests/expected/llamacpp_presets/make_expected.py",
       "llama_cpp": "llama-quantize from llama.cpp 80fb11ac (node-llama-cpp 3.21.1 bundle), no imatrix",
       "presets": {}}
with tempfile.TemporaryDirectory() as tmp:
    for p in PRESETS:
        dst = os.path.join(tmp, p + ".gguf")
        log = subprocess.run([os.path.join(a.bin, "llama-quantize"), src, dst, p], capture_output=True, text=True)
        if log.returncode != 0:
            sys.exit(log.stdout + log.stderr)
        m = re.search(r"(\d+) of (\d+) tensor\(s\) required fallback", log.stdout + log.stderr)
        info = make_expected.parse_gguf(dst)
        out["presets"][p.lower()] = {
            "command": f"llama-quantize stories260K.gguf OUT.gguf {p}",
            "fallbacks_reported": int(m.group(1)) if m else 0,
            "types": {name: t["dtype"] for name, t in info["tensors"].items()},
            "crc32": {name: t["crc32"] for name, t in info["tensors"].items()},
            "tensor_bytes": sum(t["nbytes"] for t in info["tensors"].values()),
        }
with open(os.path.join(HERE, "stories260K.json"), "w") as f:
    json.dump(out, f, indent=1, sort_keys=True)
    f.write("\n")
print("wrote", os.path.join(HERE, "stories260K.json"))
