#!/usr/bin/env python3
"""Independent reference values for cq's model-file readers.

Parses the GGUF and safetensors fixtures with nothing but the Python standard library
(struct, json, hashlib, zlib) and writes tests/expected/fixtures.json, which tests/test_io_fixtures.cpp
compares with what cq's readers report. None of this code shares anything with cq: it is a
second, minimal implementation of the two formats written from their specifications.

    python3 tests/expected/make_expected.py [--fixtures DIR] [--out FILE]

Defaults: DIR = $CQ_FIXTURES or <repo>/../shared/fixtures, FILE = tests/expected/fixtures.json.

GGUF (v2/v3): magic "GGUF", u32 version, u64 n_tensors, u64 n_kv, then n_kv key-values
(u64-length string key, u32 type, value), then n_tensors tensor infos (name, u32 n_dims,
u64 ne[n_dims] with ne[0] innermost, u32 ggml type, u64 offset relative to the data section);
the data section starts at the next multiple of general.alignment (default 32).

safetensors: u64 LE header length N, a JSON header {name: {dtype, shape, data_offsets}, ...,
"__metadata__": {str: str}}, the data section starts at byte 8 + N.
"""

import argparse
import hashlib
import json
import os
import struct
import sys
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))

GGUF_FILES = [
    "models/stories260K-gguf/stories260K.gguf",
    "tokenizers/llamacpp_vocab/ggml-vocab-llama-spm.gguf",
    "tokenizers/llamacpp_vocab/ggml-vocab-gpt-2.gguf",
    "tokenizers/llamacpp_vocab/ggml-vocab-bert-bge.gguf",
]
HF_DIRS = [
    "models/stories260K-hf/",
    "models/gpt2-tiny-stories/",
    "models/bert-tiny-sst2/",
    "models/vit-tiny-mnist/",
]
CONFIG_KEYS = [
    "model_type", "architectures",
    "hidden_size", "n_embd",
    "num_hidden_layers", "n_layer",
    "num_attention_heads", "n_head",
    "num_key_value_heads", "intermediate_size", "n_inner", "head_dim",
    "vocab_size", "max_position_embeddings", "n_positions", "n_ctx",
    "type_vocab_size", "image_size", "patch_size", "num_channels",
    "tie_word_embeddings", "torch_dtype",
]
N_FIRST_VALUES = 4   # decoded leading elements of F32/F16 tensors
N_FIRST_ITEMS = 5    # leading items of metadata arrays


def sample_indices(n):
    """A few element indices spread over a tensor of n elements (besides the leading ones)."""
    return sorted({i for i in (n // 3, n // 2, n - 1) if i >= N_FIRST_VALUES})

# GGUF metadata value types: id -> (name, struct format or None).
GGUF_VALUE_TYPES = {
    0: ("u8", "<B"), 1: ("i8", "<b"), 2: ("u16", "<H"), 3: ("i16", "<h"),
    4: ("u32", "<I"), 5: ("i32", "<i"), 6: ("f32", "<f"), 7: ("bool", "<B"),
    8: ("string", None), 9: ("array", None),
    10: ("u64", "<Q"), 11: ("i64", "<q"), 12: ("f64", "<d"),
}

# ggml types: id -> (name as ggml spells it, block size, bytes per block).
GGML_TYPES = {
    0: ("f32", 1, 4), 1: ("f16", 1, 2), 2: ("q4_0", 32, 18), 3: ("q4_1", 32, 20),
    6: ("q5_0", 32, 22), 7: ("q5_1", 32, 24), 8: ("q8_0", 32, 34), 9: ("q8_1", 32, 36),
    10: ("q2_K", 256, 84), 11: ("q3_K", 256, 110), 12: ("q4_K", 256, 144),
    13: ("q5_K", 256, 176), 14: ("q6_K", 256, 210), 15: ("q8_K", 256, 292),
    16: ("iq2_xxs", 256, 66), 17: ("iq2_xs", 256, 74), 18: ("iq3_xxs", 256, 98),
    19: ("iq1_s", 256, 50), 20: ("iq4_nl", 32, 18), 21: ("iq3_s", 256, 110),
    22: ("iq2_s", 256, 82), 23: ("iq4_xs", 256, 136),
    24: ("i8", 1, 1), 25: ("i16", 1, 2), 26: ("i32", 1, 4), 27: ("i64", 1, 8),
    28: ("f64", 1, 8), 29: ("iq1_m", 256, 56), 30: ("bf16", 1, 2),
    34: ("tq1_0", 256, 54), 35: ("tq2_0", 256, 66), 39: ("mxfp4", 32, 17),
}

# safetensors dtypes: name -> (bytes per element, struct format for decoding or None).
ST_DTYPES = {
    "F64": (8, "<d"), "F32": (4, "<f"), "F16": (2, "<e"), "BF16": (2, None),
    "I64": (8, None), "I32": (4, None), "I16": (2, None), "I8": (1, None),
    "U64": (8, None), "U32": (4, None), "U16": (2, None), "U8": (1, None),
    "BOOL": (1, None), "F8_E4M3": (1, None), "F8_E5M2": (1, None),
}


class Reader:
    def __init__(self, data):
        self.data = data
        self.pos = 0

    def take(self, n):
        if self.pos + n > len(self.data):
            raise ValueError(f"read of {n} bytes at {self.pos} runs past the end ({len(self.data)})")
        b = self.data[self.pos:self.pos + n]
        self.pos += n
        return b

    def unpack(self, fmt):
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]

    def string(self):
        n = self.unpack("<Q")
        return self.take(n).decode("utf-8")


def numel(shape):
    n = 1
    for d in shape:
        n *= d
    return n


def decode_first(buf, fmt, count):
    size = struct.calcsize(fmt)
    count = min(count, len(buf) // size)
    return [struct.unpack_from(fmt, buf, i * size)[0] for i in range(count)]


def decode_samples(buf, fmt, n):
    """[[index, value], ...] at sample_indices(n)."""
    size = struct.calcsize(fmt)
    return [[i, struct.unpack_from(fmt, buf, i * size)[0]] for i in sample_indices(n)]


def gguf_value(r, type_id):
    """Returns (type name, python value); arrays come back as a descriptor dict."""
    name, fmt = GGUF_VALUE_TYPES[type_id]
    if type_id == 8:
        return name, r.string()
    if type_id == 9:
        elem = r.unpack("<I")
        count = r.unpack("<Q")
        items = [gguf_value(r, elem)[1] for _ in range(count)]
        return name, {"element_type": GGUF_VALUE_TYPES[elem][0], "count": count, "items": items}
    v = r.unpack(fmt)
    if type_id == 7:
        if v not in (0, 1):
            raise ValueError(f"bool value {v}")
        v = bool(v)
    return name, v


def describe_array(arr):
    first = []
    for item in arr["items"][:N_FIRST_ITEMS]:
        if isinstance(item, dict):  # nested array
            first.append({"type": "array", "element_type": item["element_type"], "count": item["count"],
                          "first": describe_array(item)["first"]})
        else:
            first.append(item)
    out = {"type": "array", "element_type": arr["element_type"], "count": arr["count"], "first": first}
    if arr["count"] and not isinstance(arr["items"][-1], dict):
        out["last"] = arr["items"][-1]
    return out


def parse_gguf(path):
    with open(path, "rb") as f:
        data = f.read()
    r = Reader(data)
    if r.take(4) != b"GGUF":
        raise ValueError(f"{path}: not a GGUF file")
    version = r.unpack("<I")
    n_tensors = r.unpack("<Q")
    n_kv = r.unpack("<Q")

    metadata = {}
    kv_keys = []
    alignment = 32
    for _ in range(n_kv):
        record = r.pos
        key = r.string()
        type_id = r.unpack("<I")
        tname, value = gguf_value(r, type_id)
        if key in metadata:
            raise ValueError(f"{path}: duplicate key {key}")
        kv_keys.append(key)
        if type_id == 9:
            metadata[key] = describe_array(value)
        else:
            metadata[key] = {"type": tname, "value": value}
        metadata[key]["record_offset"] = record
        if key == "general.alignment":
            alignment = value

    infos = []
    for _ in range(n_tensors):
        record = r.pos
        name = r.string()
        n_dims = r.unpack("<I")
        ne = [r.unpack("<Q") for _ in range(n_dims)]
        ggml_type = r.unpack("<I")
        offset = r.unpack("<Q")
        infos.append((name, ne, ggml_type, offset, record))
    data_section = (r.pos + alignment - 1) // alignment * alignment

    tensors = {}
    n_params = 0
    bytes_by_dtype = {}
    for name, ne, ggml_type, offset, record in infos:
        tname, block, block_bytes = GGML_TYPES[ggml_type]
        n = numel(ne)
        if n % block:
            raise ValueError(f"{path}: {name}: {n} elements is not a whole number of {tname} blocks")
        nbytes = n // block * block_bytes
        start = data_section + offset
        if start + nbytes > len(data):
            raise ValueError(f"{path}: {name} runs past the end of the file")
        buf = data[start:start + nbytes]
        entry = {"dtype": tname, "shape": list(reversed(ne)), "offset": start, "nbytes": nbytes,
                 "info_offset": record,
                 "sha256": hashlib.sha256(buf).hexdigest(), "crc32": zlib.crc32(buf)}
        if tname in ("f32", "f16"):
            fmt = "<f" if tname == "f32" else "<e"
            entry["first_values"] = decode_first(buf, fmt, N_FIRST_VALUES)
            entry["sample_values"] = decode_samples(buf, fmt, n)
        tensors[name] = entry
        n_params += n
        bytes_by_dtype[tname] = bytes_by_dtype.get(tname, 0) + nbytes

    return {
        "format": "gguf", "version": version, "file_size": len(data),
        "n_tensors": n_tensors, "n_kv": n_kv,
        "alignment": alignment, "data_section_offset": data_section,
        "n_params": n_params, "bytes_by_dtype": bytes_by_dtype,
        "kv_keys": kv_keys, "metadata": metadata,
        "tensor_order": [i[0] for i in infos], "tensors": tensors,
    }


def parse_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack_from("<Q", data, 0)
    header = json.loads(data[8:8 + n].decode("utf-8"))
    meta = header.pop("__metadata__", {})
    base = 8 + n
    tensors = {}
    n_params = 0
    bytes_by_dtype = {}
    for name, info in header.items():
        dtype = info["dtype"]
        shape = info["shape"]
        begin, end = info["data_offsets"]
        elem_bytes, fmt = ST_DTYPES[dtype]
        nbytes = end - begin
        if nbytes != numel(shape) * elem_bytes:
            raise ValueError(f"{path}: {name}: {nbytes} bytes for shape {shape} {dtype}")
        if base + end > len(data):
            raise ValueError(f"{path}: {name} runs past the end of the file")
        buf = data[base + begin:base + end]
        entry = {"dtype": dtype, "shape": shape, "offset": base + begin, "nbytes": nbytes,
                 "sha256": hashlib.sha256(buf).hexdigest(), "crc32": zlib.crc32(buf)}
        if dtype in ("F32", "F16"):
            entry["first_values"] = decode_first(buf, fmt, N_FIRST_VALUES)
            entry["sample_values"] = decode_samples(buf, fmt, numel(shape))
        tensors[name] = entry
        n_params += numel(shape)
        bytes_by_dtype[dtype] = bytes_by_dtype.get(dtype, 0) + nbytes
    order = sorted(tensors, key=lambda k: tensors[k]["offset"])
    return {
        "format": "safetensors", "file_size": len(data),
        "header_size": n, "data_section_offset": base,
        "n_tensors": len(tensors), "n_params": n_params, "bytes_by_dtype": bytes_by_dtype,
        "metadata": meta, "tensor_order": order, "tensors": tensors,
    }


def hf_dir(fixtures, rel, weights):
    with open(os.path.join(fixtures, rel, "config.json"), "rb") as f:
        config = json.loads(f.read().decode("utf-8"))
    return {
        "format": "hf",
        "config": {k: config[k] for k in CONFIG_KEYS if k in config},
        "files": sorted(os.listdir(os.path.join(fixtures, rel))),
        "weights": rel + "model.safetensors",
        "n_tensors": weights["n_tensors"], "n_params": weights["n_params"],
        "bytes_by_dtype": weights["bytes_by_dtype"],
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    default_fixtures = os.environ.get("CQ_FIXTURES") or os.path.join(REPO, "..", "shared", "fixtures")
    ap.add_argument("--fixtures", default=default_fixtures)
    ap.add_argument("--out", default=os.path.join(HERE, "fixtures.json"))
    args = ap.parse_args()
    fixtures = os.path.normpath(args.fixtures)

    out = {}
    for rel in GGUF_FILES:
        out[rel] = parse_gguf(os.path.join(fixtures, rel))
    for rel in HF_DIRS:
        st = rel + "model.safetensors"
        out[st] = parse_safetensors(os.path.join(fixtures, st))
        out[rel] = hf_dir(fixtures, rel, out[st])

    doc = {
        "generator": "tests/expected/make_expected.py (Python standard library only; independent of cq)",
        "files": out,
    }
    text = json.dumps(doc, indent=1, sort_keys=False, allow_nan=False, ensure_ascii=True)
    with open(args.out, "w", encoding="ascii") as f:
        f.write(text + "\n")
    print(f"wrote {args.out}: {len(out)} entries, "
          f"{sum(len(v.get('tensors', {})) for v in out.values())} tensors", file=sys.stderr)


if __name__ == "__main__":
    main()
