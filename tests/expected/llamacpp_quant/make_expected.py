#!/usr/bin/env python3
"""What llama.cpp writes when it quantizes real weights, for tests/test_formats.cpp.

Two parts, both using only the Python standard library (struct, json, hashlib, zlib, ctypes,
subprocess) and a llama.cpp build (llama-quantize and libggml-base.so):

1. `llama_quantize`: runs `llama-quantize --pure IN OUT TYPE 1` (no imatrix) on
   models/stories260K-gguf/stories260K.gguf for each TYPE in TYPES, parses each output GGUF and records,
   per tensor, the ggml type llama.cpp chose (rows of 64 or 172 elements force fallbacks for the
   256-element k-quants and for 172-wide rows), the shape (outermost first), the byte count, sha256 and
   crc32 of the tensor bytes, and, for the types decoded here (f16, q4_0, q4_1, q5_0, q5_1, q8_0),
   the RMSE of the dequantized tensor against the F32 original.
2. `ggml_quantize_chunk`: stories260K's rows are never a multiple of 256, so no k-quant survives
   part 1. For those, F32 tensors from models/gpt2-tiny-stories/model.safetensors (flattened into
   rows of N_PER_ROW elements; every block is quantized independently, so the row length only has to
   be a multiple of 256) go through ggml_quantize_chunk, the function llama-quantize calls, loaded from
   libggml-base.so with ctypes (imatrix NULL). Recorded per tensor and type: bytes, sha256, crc32 and
   the RMSE of ggml's own dequantization (dequantize_row_*) against the original, summed in double in
   element order.

    python3 tests/expected/llamacpp_quant/make_expected.py [--llama-bin DIR] [--fixtures DIR] [--out FILE]

Defaults: DIR = /root/.cache/cq-peers/llama.cpp-src/build/bin, fixtures = $CQ_FIXTURES or
<repo>/../shared/fixtures, FILE = tests/expected/llamacpp_quant/stories260K.json. The quantized GGUFs go
to a temporary folder and are deleted. The output is deterministic for a given llama.cpp build.
"""

import argparse
import ctypes
import hashlib
import json
import math
import os
import struct
import subprocess
import sys
import tempfile
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))

STORIES = "models/stories260K-gguf/stories260K.gguf"
TYPES = ["Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q2_K", "Q3_K", "Q4_K_M", "Q5_K_M", "Q6_K"]

GPT2 = "models/gpt2-tiny-stories/model.safetensors"
GPT2_TENSORS = [
    "transformer.h.0.mlp.c_proj.weight",   # [512, 128]
    "transformer.h.1.attn.c_attn.weight",  # [128, 384]
    "transformer.wpe.weight",              # [256, 128]
]
N_PER_ROW = 256
# ggml type ids for the ctypes part: name -> (id, block size, bytes per block).
CHUNK_TYPES = {
    "q8_0": (8, 32, 34), "q4_0": (2, 32, 18), "q4_1": (3, 32, 20), "q5_0": (6, 32, 22),
    "q5_1": (7, 32, 24), "q2_K": (10, 256, 84), "q3_K": (11, 256, 110), "q4_K": (12, 256, 144),
    "q5_K": (13, 256, 176), "q6_K": (14, 256, 210),
}

# ggml type id -> (name, block size, bytes per block), the ones a quantized stories260K can contain.
GGML_TYPES = {
    0: ("f32", 1, 4), 1: ("f16", 1, 2), 2: ("q4_0", 32, 18), 3: ("q4_1", 32, 20),
    6: ("q5_0", 32, 22), 7: ("q5_1", 32, 24), 8: ("q8_0", 32, 34),
    10: ("q2_K", 256, 84), 11: ("q3_K", 256, 110), 12: ("q4_K", 256, 144),
    13: ("q5_K", 256, 176), 14: ("q6_K", 256, 210), 20: ("iq4_nl", 32, 18), 30: ("bf16", 1, 2),
}


# ---------------------------------------------------------------------------------------------
# GGUF (v2/v3) parsing: enough to find every tensor's type, shape and bytes.

class Reader:
    def __init__(self, data):
        self.data, self.pos = data, 0

    def take(self, n):
        if self.pos + n > len(self.data):
            raise ValueError(f"read of {n} bytes at {self.pos} runs past the end")
        b = self.data[self.pos:self.pos + n]
        self.pos += n
        return b

    def unpack(self, fmt):
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]

    def string(self):
        return self.take(self.unpack("<Q")).decode("utf-8")


SCALAR_FMT = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<B",
              10: "<Q", 11: "<q", 12: "<d"}


def skip_value(r, t):
    if t == 8:
        return r.string()
    if t == 9:
        et, n = r.unpack("<I"), r.unpack("<Q")
        return [skip_value(r, et) for _ in range(n)]
    return r.unpack(SCALAR_FMT[t])


def read_gguf(path):
    """{name: (type name, shape outermost first, bytes)} in file order, plus the metadata dict."""
    with open(path, "rb") as f:
        data = f.read()
    r = Reader(data)
    if r.take(4) != b"GGUF":
        raise ValueError(f"{path}: not a GGUF file")
    version = r.unpack("<I")
    if version not in (2, 3):
        raise ValueError(f"{path}: GGUF version {version}")
    n_tensors, n_kv = r.unpack("<Q"), r.unpack("<Q")
    meta = {}
    for _ in range(n_kv):
        key = r.string()
        meta[key] = skip_value(r, r.unpack("<I"))
    infos = []
    for _ in range(n_tensors):
        name = r.string()
        ne = [r.unpack("<Q") for _ in range(r.unpack("<I"))]
        type_id, offset = r.unpack("<I"), r.unpack("<Q")
        infos.append((name, ne, type_id, offset))
    align = meta.get("general.alignment", 32)
    base = (r.pos + align - 1) // align * align
    tensors = {}
    for name, ne, type_id, offset in infos:
        tname, bs, bpb = GGML_TYPES[type_id]
        n = 1
        for d in ne:
            n *= d
        nbytes = n // bs * bpb
        start = base + offset
        tensors[name] = (tname, list(reversed(ne)), data[start:start + nbytes])
    return tensors, meta


# ---------------------------------------------------------------------------------------------
# Dequantization of the 32-element formats, with f32 rounding where ggml computes in f32.

def f32(v):
    return struct.unpack("<f", struct.pack("<f", v))[0]


def f16(b, off):
    return struct.unpack_from("<e", b, off)[0]


def dequantize(tname, b, n):
    out = []
    if tname == "f32":
        return list(struct.unpack(f"<{n}f", b))
    if tname == "f16":
        return list(struct.unpack(f"<{n}e", b))
    if tname == "q8_0":
        for o in range(0, len(b), 34):
            d = f16(b, o)
            out += [f32(q * d) for q in struct.unpack_from("<32b", b, o + 2)]
        return out
    if tname in ("q4_0", "q4_1"):
        has_m = tname == "q4_1"
        size = 20 if has_m else 18
        for o in range(0, len(b), size):
            d = f16(b, o)
            m = f16(b, o + 2) if has_m else 0.0
            qs = b[o + size - 16:o + size]
            q = [x & 0xF for x in qs] + [x >> 4 for x in qs]
            out += [f32(f32(v * d) + m) for v in q] if has_m else [f32((v - 8) * d) for v in q]
        return out
    if tname in ("q5_0", "q5_1"):
        has_m = tname == "q5_1"
        size = 24 if has_m else 22
        for o in range(0, len(b), size):
            d = f16(b, o)
            m = f16(b, o + 2) if has_m else 0.0
            qh = struct.unpack_from("<I", b, o + size - 20)[0]
            qs = b[o + size - 16:o + size]
            q = [(qs[j] & 0xF) | (((qh >> j) & 1) << 4) for j in range(16)]
            q += [(qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4) for j in range(16)]
            out += [f32(f32(v * d) + m) for v in q] if has_m else [f32((v - 16) * d) for v in q]
        return out
    return None


def rmse(a, b):
    s = 0.0
    for x, y in zip(a, b):
        e = x - y
        s += e * e
    return math.sqrt(s / len(a))


def digest(b):
    return {"nbytes": len(b), "sha256": hashlib.sha256(b).hexdigest(), "crc32": zlib.crc32(b)}


# ---------------------------------------------------------------------------------------------

def part_llama_quantize(llama_bin, src_path, fixtures):
    src, _ = read_gguf(src_path)
    orig = {name: list(struct.unpack(f"<{len(b) // 4}f", b)) for name, (t, _, b) in src.items() if t == "f32"}
    exe = os.path.join(llama_bin, "llama-quantize")
    result = {}
    with tempfile.TemporaryDirectory() as tmp:
        for qtype in TYPES:
            out = os.path.join(tmp, f"stories260K-{qtype}.gguf")
            cmd = [exe, "--pure", src_path, out, qtype, "1"]
            p = subprocess.run(cmd, capture_output=True, text=True)
            if p.returncode != 0:
                sys.exit(f"{' '.join(cmd)} failed:\n{p.stdout}\n{p.stderr}")
            tensors, meta = read_gguf(out)
            rows = []
            for name, (tname, shape, b) in tensors.items():
                row = {"name": name, "type": tname, "shape": shape}
                row.update(digest(b))
                n = len(orig.get(name, []))
                deq = dequantize(tname, b, n) if n else None
                if deq is not None and tname != "f32":
                    row["rmse"] = rmse(deq, orig[name])
                rows.append(row)
            result[qtype] = {
                "command": f"llama-quantize --pure {STORIES} OUT {qtype} 1",
                "file_type": meta.get("general.file_type"),
                "tensors": rows,
            }
    return result


def read_safetensors(path, names):
    with open(path, "rb") as f:
        data = f.read()
    n = struct.unpack_from("<Q", data, 0)[0]
    header = json.loads(data[8:8 + n])
    out = {}
    for name in names:
        h = header[name]
        if h["dtype"] != "F32":
            raise ValueError(f"{name}: {h['dtype']}, expected F32")
        a, b = h["data_offsets"]
        out[name] = (h["shape"], data[8 + n + a:8 + n + b])
    return out


def part_ggml_quantize_chunk(llama_bin, fixtures):
    lib = ctypes.CDLL(os.path.join(llama_bin, "libggml-base.so"))
    lib.ggml_quantize_chunk.restype = ctypes.c_size_t
    lib.ggml_quantize_chunk.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64,
                                        ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p]
    tensors = read_safetensors(os.path.join(fixtures, GPT2), GPT2_TENSORS)
    rows = []
    for name in GPT2_TENSORS:
        shape, raw = tensors[name]
        n = len(raw) // 4
        assert n % N_PER_ROW == 0
        nrows = n // N_PER_ROW
        src = (ctypes.c_float * n).from_buffer_copy(raw)
        orig = list(src)
        entry = {"name": name, "shape": shape, "n_per_row": N_PER_ROW, "source": digest(raw), "types": {}}
        for tname, (tid, bs, bpb) in CHUNK_TYPES.items():
            size = n // bs * bpb
            dst = (ctypes.c_uint8 * size)()
            got = lib.ggml_quantize_chunk(tid, src, dst, 0, nrows, N_PER_ROW, None)
            assert got == size, (tname, got, size)
            deq = (ctypes.c_float * n)()
            fn = getattr(lib, f"dequantize_row_{tname}")
            fn.restype = None
            fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
            fn(dst, deq, n)
            rec = digest(bytes(dst))
            rec["rmse"] = rmse(list(deq), orig)
            entry["types"][tname] = rec
        rows.append(entry)
    return rows


def llama_cpp_version(llama_bin):
    """The llama.cpp commit (git, source tree two levels above bin/) and the libggml-base version."""
    src = os.path.dirname(os.path.dirname(os.path.abspath(llama_bin)))
    p = subprocess.run(["git", "-C", src, "rev-parse", "HEAD"], capture_output=True, text=True)
    commit = p.stdout.strip() if p.returncode == 0 else "unknown"
    libs = sorted(f for f in os.listdir(llama_bin) if f.startswith("libggml-base.so."))
    ggml = libs[-1][len("libggml-base.so."):] if libs else "unknown"
    return {"commit": commit, "ggml": ggml}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--llama-bin", default="/root/.cache/cq-peers/llama.cpp-src/build/bin")
    ap.add_argument("--fixtures", default=os.environ.get("CQ_FIXTURES",
                                                         os.path.join(os.path.dirname(REPO), "shared", "fixtures")))
    ap.add_argument("--out", default=os.path.join(HERE, "stories260K.json"))
    args = ap.parse_args()

    src_path = os.path.join(args.fixtures, STORIES)
    quantized = part_llama_quantize(args.llama_bin, src_path, args.fixtures)
    chunks = part_ggml_quantize_chunk(args.llama_bin, args.fixtures)
    doc = {
        "generator": "tests/expected/llamacpp_quant/make_expected.py",
        "llama_cpp": llama_cpp_version(args.llama_bin),
        "source": STORIES,
        "llama_quantize": quantized,
        "ggml_quantize_chunk": {"source": GPT2, "tensors": chunks},
    }
    with open(args.out, "w") as f:
        json.dump(doc, f, indent=1, sort_keys=False)
        f.write("\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
