#!/usr/bin/env python3
"""llama.cpp's importance matrix and imatrix-weighted quantization of llama-256d-stories, for tests/test_imatrix.cpp.

Uses only the Python standard library (struct, json, hashlib, ctypes, subprocess) and a llama.cpp build
(llama-imatrix, llama-quantize, libggml-base.so); cq only writes the F32 GGUF of the HF fixture that
llama.cpp reads (`cq quantize DIR OUT --type f32`, a lossless conversion).

1. `llama-imatrix -m F32.gguf -f data/stories_calib.txt -c 128 --chunks 16 --no-ppl -ctk f32 -ctv f32 -fa off` in
   both output formats: llama-256d-stories.c128.imatrix.gguf and .dat (~60 KB each). f32 attention because by
   default llama.cpp runs flash attention with K and V in f16, which moves the Σx² of attn_output's input (and,
   downstream, ffn_down's) by up to ~7e-4 relative; cq computes attention in f32. That default run is kept too,
   as llama-256d-stories.c128.default.imatrix.gguf, so the test also bounds the difference from it.
2. `llama-quantize --pure --imatrix THAT.gguf F32.gguf OUT TYPE` for every type with a weighted search:
   per tensor, the type llama.cpp chose and the sha256 of its bytes (reference.json: `llama_quantize`).
3. `ggml_quantize_chunk` (the function llama-quantize calls) from libggml-base.so via ctypes on synthetic rows
   whose values and importance come from a splitmix64 stream (spelled out below and in the test), with and
   without importance: the sha256 of each result (reference.json: `ggml_quantize_chunk`).

    python3 tests/expected/imatrix/make_reference.py [--llama-bin DIR] [--cq PATH] [--fixtures DIR]

Defaults: DIR = ~/.cache/cq-peers/llama.cpp-src/build/bin, PATH = build/bin/cq, fixtures = $CQ_FIXTURES or
<repo>/../shared/fixtures. Deterministic for a given llama.cpp build.
"""

import argparse
import ctypes
import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))
MODEL = "models/llama-256d-stories"
CALIB = "data/stories_calib.txt"
CTX, CHUNKS = 128, 16
QUANT_TYPES = ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "IQ4_NL", "IQ4_XS"]
# ggml type id -> (name, block size, bytes per block)
GGML_TYPES = {0: ("f32", 1, 4), 1: ("f16", 1, 2), 2: ("q4_0", 32, 18), 3: ("q4_1", 32, 20), 6: ("q5_0", 32, 22),
              7: ("q5_1", 32, 24), 8: ("q8_0", 32, 34), 10: ("q2_K", 256, 84), 11: ("q3_K", 256, 110),
              12: ("q4_K", 256, 144), 13: ("q5_K", 256, 176), 14: ("q6_K", 256, 210), 20: ("iq4_nl", 32, 18),
              23: ("iq4_xs", 256, 136)}
CHUNK_IDS = {"q4_0": 2, "q4_1": 3, "q5_0": 6, "q5_1": 7, "q2_K": 10, "q3_K": 11, "q4_K": 12, "q5_K": 13,
             "q6_K": 14, "iq4_nl": 20, "iq4_xs": 23}
SYNTH_ROWS, SYNTH_N_PER_ROW, SYNTH_SEED = 3, 1024, 20240607


def read_gguf(path):
    """{tensor name: (type name, bytes)} of a GGUF v3 file."""
    data = open(path, "rb").read()
    pos = 0

    def take(n):
        nonlocal pos
        b = data[pos:pos + n]
        pos += n
        return b

    def u(fmt):
        return struct.unpack(fmt, take(struct.calcsize(fmt)))[0]

    def string():
        return take(u("<Q")).decode("utf-8")

    scalar = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<B", 10: "<Q", 11: "<q", 12: "<d"}

    def value(t):
        if t == 8:
            return string()
        if t == 9:
            et, n = u("<I"), u("<Q")
            return [value(et) for _ in range(n)]
        return u(scalar[t])

    assert take(4) == b"GGUF"
    u("<I")
    n_tensors, n_kv = u("<Q"), u("<Q")
    meta = {}
    for _ in range(n_kv):
        k = string()
        meta[k] = value(u("<I"))
    infos = []
    for _ in range(n_tensors):
        name = string()
        ne = [u("<Q") for _ in range(u("<I"))]
        infos.append((name, ne, u("<I"), u("<Q")))
    align = meta.get("general.alignment", 32)
    base = (pos + align - 1) // align * align
    out = {}
    for name, ne, tid, off in infos:
        tname, bs, bpb = GGML_TYPES[tid]
        n = 1
        for d in ne:
            n *= d
        out[name] = (tname, data[base + off:base + off + n // bs * bpb])
    return out


def run(cmd):
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{p.stdout}\n{p.stderr}")


# splitmix64; the test (tests/test_imatrix.cpp, SynthRows) generates the same floats.
class Stream:
    def __init__(self, seed):
        self.s = seed

    def next(self):
        m = (1 << 64) - 1
        self.s = (self.s + 0x9E3779B97F4A7C15) & m
        z = self.s
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & m
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & m
        return z ^ (z >> 31)

    def uniform(self):
        return (self.next() >> 11) * (1.0 / 9007199254740992.0)


def f32(v):
    return struct.unpack("<f", struct.pack("<f", v))[0]


def synth_rows():
    """Values (rows × n, outliers ×8, the first 64 of row 1 zero) and importance (1e-3 … 10, skewed)."""
    st = Stream(SYNTH_SEED)
    x = []
    for r in range(SYNTH_ROWS):
        for j in range(SYNTH_N_PER_ROW):
            v = (st.uniform() * 2 - 1) * 0.05
            if st.next() % 37 == 0:
                v *= 8
            x.append(0.0 if (r == 1 and j < 64) else f32(v))
    imp = []
    for j in range(SYNTH_N_PER_ROW):
        uu = st.uniform()
        imp.append(f32(1e-3 + 10 * uu * uu * uu * uu))
    return x, imp


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--llama-bin", default=os.path.expanduser("~/.cache/cq-peers/llama.cpp-src/build/bin"))
    ap.add_argument("--cq", default=os.path.join(REPO, "build", "bin", "cq"))
    ap.add_argument("--fixtures", default=os.environ.get("CQ_FIXTURES", os.path.join(REPO, "..", "shared", "fixtures")))
    a = ap.parse_args()
    model, calib = os.path.join(a.fixtures, MODEL), os.path.join(a.fixtures, CALIB)
    ref = {"generator": "tests/expected/imatrix/make_reference.py", "model": MODEL, "calib": CALIB,
           "ctx": CTX, "chunks": CHUNKS}
    with tempfile.TemporaryDirectory() as tmp:
        f32_gguf = os.path.join(tmp, "f32.gguf")
        run([a.cq, "quantize", model, f32_gguf, "--type", "f32"])
        base = os.path.join(HERE, f"llama-256d-stories.c{CTX}")
        common = ["-m", f32_gguf, "-f", calib, "-c", str(CTX), "--chunks", str(CHUNKS), "--no-ppl", "-t", "2"]
        exact = ["-ctk", "f32", "-ctv", "f32", "-fa", "off"]
        run([os.path.join(a.llama_bin, "llama-imatrix")] + common + exact + ["-o", base + ".imatrix.gguf"])
        run([os.path.join(a.llama_bin, "llama-imatrix")] + common + exact + ["-o", base + ".imatrix.dat", "--output-format", "dat"])
        run([os.path.join(a.llama_bin, "llama-imatrix")] + common + ["-o", base + ".default.imatrix.gguf"])
        ref["imatrix_default_gguf"] = os.path.basename(base + ".default.imatrix.gguf")
        ref["imatrix_gguf"] = os.path.basename(base + ".imatrix.gguf")
        ref["imatrix_dat"] = os.path.basename(base + ".imatrix.dat")
        ref["llama_quantize"] = {}
        for t in QUANT_TYPES:
            out = os.path.join(tmp, f"{t}.gguf")
            run([os.path.join(a.llama_bin, "llama-quantize"), "--pure", "--imatrix", base + ".imatrix.gguf", f32_gguf, out, t, "2"])
            ref["llama_quantize"][t] = {name: {"type": tn, "sha256": hashlib.sha256(b).hexdigest()}
                                        for name, (tn, b) in sorted(read_gguf(out).items()) if tn != "f32"}
    lib = ctypes.CDLL(os.path.join(a.llama_bin, "libggml-base.so"))
    lib.ggml_quantize_chunk.restype = ctypes.c_size_t
    lib.ggml_quantize_chunk.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64,
                                        ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p]
    x, imp = synth_rows()
    src = (ctypes.c_float * len(x))(*x)
    qw = (ctypes.c_float * len(imp))(*imp)
    chunk = {"seed": SYNTH_SEED, "rows": SYNTH_ROWS, "n_per_row": SYNTH_N_PER_ROW, "types": {}}
    for tname, tid in CHUNK_IDS.items():
        _, bs, bpb = GGML_TYPES[tid]
        size = len(x) // bs * bpb
        entry = {}
        for label, w in (("weighted", qw), ("unweighted", None)):
            dst = ctypes.create_string_buffer(size)
            n = lib.ggml_quantize_chunk(tid, src, dst, 0, SYNTH_ROWS, SYNTH_N_PER_ROW, w)
            assert n == size
            entry[label] = hashlib.sha256(dst.raw).hexdigest()
        chunk["types"][tname] = entry
    ref["ggml_quantize_chunk"] = chunk
    with open(os.path.join(HERE, "reference.json"), "w") as f:
        json.dump(ref, f, indent=1, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    main()
