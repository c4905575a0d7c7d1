#!/usr/bin/env python3
"""Independent per-Linear input statistics for `cq stats`, from PyTorch forward hooks.

Runs with Debian's /usr/bin/python3 (python3-torch, python3-numpy, python3-sentencepiece):
    /usr/bin/python3 tests/expected/layer_stats/make_reference.py ../shared/fixtures > tests/expected/layer_stats/reference.json

llama-256d-stories: an fp32 HF-LLaMA forward (rotate_half RoPE, GQA) written here in torch from the
safetensors bytes, on tinystories_valid_subset.txt (one trailing newline dropped) tokenized by
sentencepiece with BOS first, cut into chunks of 128 tokens with BOS as each chunk's first token
(llama.cpp's perplexity / imatrix scheme). bert-tiny-sst2: an fp32 BERT forward, one sentence at a time
(no padding), on the first 64 rows of sst2_train.tsv, with a WordPiece tokenizer written here
(lower-case, accents stripped, punctuation split, greedy longest match), [CLS] a [SEP] truncated to 128.
A forward hook on every nn.Linear adds x² per input channel in float64; the file holds Σx² / rows.
"""
import json
import math
import struct
import sys
import unicodedata

import numpy as np
import torch

torch.set_grad_enabled(False)
torch.set_num_threads(2)


def load_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        assert info["dtype"] == "F32", name
        a, b = info["data_offsets"]
        out[name] = torch.from_numpy(np.frombuffer(data[a:b], dtype="<f4").reshape(info["shape"]).copy())
    return out


def linear(w, b=None):
    m = torch.nn.Linear(w.shape[1], w.shape[0], bias=b is not None)
    m.weight.copy_(w)
    if b is not None:
        m.bias.copy_(b)
    return m


class Stats:
    def __init__(self):
        self.sums, self.rows = {}, {}

    def hook(self, name):
        def fn(module, inputs, output):
            x = inputs[0].detach().reshape(-1, inputs[0].shape[-1]).double()
            self.sums[name] = self.sums.get(name, 0) + (x * x).sum(0)
            self.rows[name] = self.rows.get(name, 0) + x.shape[0]
        return fn

    def attach(self, modules):
        for name, m in modules.items():
            m.register_forward_hook(self.hook(name))

    def result(self):
        return {n: {"rows": self.rows[n], "channel_mean_square": [float("%.9g" % v) for v in (self.sums[n] / self.rows[n]).tolist()]}
                for n in self.sums}


def llama(fixtures):
    d = fixtures + "/models/llama-256d-stories"
    cfg = json.load(open(d + "/config.json"))
    W = load_safetensors(d + "/model.safetensors")
    D, L, H, Hkv, hd = cfg["hidden_size"], cfg["num_hidden_layers"], cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
    eps, theta = cfg["rms_norm_eps"], cfg["rope_theta"]
    mods = {}
    for l in range(L):
        p = "model.layers.%d." % l
        for n in ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]:
            mods[p + n] = linear(W[p + n + ".weight"])
    mods["lm_head"] = linear(W["lm_head.weight"])
    stats = Stats()
    stats.attach(mods)

    def rms(x, w):
        return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + eps) * w

    def rope(x, T):  # x: [T, heads, hd], rotate_half pairing (i, i + hd/2)
        inv = 1.0 / (theta ** (torch.arange(0, hd, 2, dtype=torch.float32) / hd))
        ang = torch.arange(T, dtype=torch.float32)[:, None] * inv[None, :]
        cos, sin = torch.cat([ang.cos(), ang.cos()], -1)[:, None, :], torch.cat([ang.sin(), ang.sin()], -1)[:, None, :]
        x1, x2 = x[..., : hd // 2], x[..., hd // 2:]
        return x * cos + torch.cat([-x2, x1], -1) * sin

    def forward(ids):
        T = len(ids)
        x = W["model.embed_tokens.weight"][torch.tensor(ids)]
        mask = torch.full((T, T), float("-inf")).triu(1)
        for l in range(L):
            p = "model.layers.%d." % l
            h = rms(x, W[p + "input_layernorm.weight"])
            q = rope(mods[p + "self_attn.q_proj"](h).view(T, H, hd), T)
            k = rope(mods[p + "self_attn.k_proj"](h).view(T, Hkv, hd), T).repeat_interleave(H // Hkv, 1)
            v = mods[p + "self_attn.v_proj"](h).view(T, Hkv, hd).repeat_interleave(H // Hkv, 1)
            att = torch.einsum("qhd,khd->hqk", q, k) / math.sqrt(hd) + mask
            o = torch.einsum("hqk,khd->qhd", att.softmax(-1), v).reshape(T, H * hd)
            x = x + mods[p + "self_attn.o_proj"](o)
            h = rms(x, W[p + "post_attention_layernorm.weight"])
            g = mods[p + "mlp.gate_proj"](h)
            x = x + mods[p + "mlp.down_proj"](torch.nn.functional.silu(g) * mods[p + "mlp.up_proj"](h))
        return mods["lm_head"](rms(x, W["model.norm.weight"]))

    import sentencepiece as spm
    sp = spm.SentencePieceProcessor(model_file=d + "/tokenizer.model")
    text = open(fixtures + "/data/tinystories_valid_subset.txt", encoding="utf-8", newline="").read()  # keep its \r\n
    if text.endswith("\n"):
        text = text[:-1]
    tokens = [cfg["bos_token_id"]] + sp.encode(text)
    ctx = 128
    for c in range(len(tokens) // ctx):
        chunk = tokens[c * ctx:(c + 1) * ctx]
        chunk[0] = cfg["bos_token_id"]
        forward(chunk)
    return {"data": "data/tinystories_valid_subset.txt", "ctx": ctx, "chunks": len(tokens) // ctx, "linears": stats.result()}


def wordpiece(vocab, text, max_len):
    def is_punct(ch):
        cp = ord(ch)
        return (33 <= cp <= 47) or (58 <= cp <= 64) or (91 <= cp <= 96) or (123 <= cp <= 126) or unicodedata.category(ch).startswith("P")
    text = unicodedata.normalize("NFD", text.lower())
    text = "".join(ch for ch in text if unicodedata.category(ch) != "Mn")
    words, cur = [], ""
    for ch in text:
        if ch.isspace():
            if cur: words.append(cur)
            cur = ""
        elif is_punct(ch):
            if cur: words.append(cur)
            words.append(ch)
            cur = ""
        else:
            cur += ch
    if cur: words.append(cur)
    ids = []
    for w in words:
        start, pieces = 0, []
        while start < len(w):
            end, found = len(w), None
            while start < end:
                piece = ("##" if start else "") + w[start:end]
                if piece in vocab:
                    found = piece
                    break
                end -= 1
            if found is None:
                pieces = ["[UNK]"]
                break
            pieces.append(found)
            start = end
        ids += [vocab[p] for p in pieces]
    return [vocab["[CLS]"]] + ids[: max_len - 2] + [vocab["[SEP]"]]


def bert(fixtures, n_samples=64, max_len=128):
    d = fixtures + "/models/bert-tiny-sst2"
    cfg = json.load(open(d + "/config.json"))
    W = load_safetensors(d + "/model.safetensors")
    vocab = {t.rstrip("\n"): i for i, t in enumerate(open(d + "/vocab.txt", encoding="utf-8"))}
    D, L, H, eps = cfg["hidden_size"], cfg["num_hidden_layers"], cfg["num_attention_heads"], cfg["layer_norm_eps"]
    mods = {}
    names = ["attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense", "intermediate.dense", "output.dense"]
    for l in range(L):
        p = "bert.encoder.layer.%d." % l
        for n in names:
            mods[p + n] = linear(W[p + n + ".weight"], W[p + n + ".bias"])
    mods["bert.pooler.dense"] = linear(W["bert.pooler.dense.weight"], W["bert.pooler.dense.bias"])
    mods["classifier"] = linear(W["classifier.weight"], W["classifier.bias"])
    stats = Stats()
    stats.attach(mods)
    ln = lambda x, p: torch.nn.functional.layer_norm(x, (D,), W[p + ".weight"], W[p + ".bias"], eps)
    assert cfg.get("hidden_act", "gelu") == "gelu"

    def forward(ids):
        T = len(ids)
        e = "bert.embeddings."
        x = W[e + "word_embeddings.weight"][torch.tensor(ids)] + W[e + "position_embeddings.weight"][:T] + W[e + "token_type_embeddings.weight"][0]
        x = ln(x, e + "LayerNorm")
        hd = D // H
        for l in range(L):
            p = "bert.encoder.layer.%d." % l
            q, k, v = (mods[p + n](x).view(T, H, hd) for n in names[:3])
            att = (torch.einsum("qhd,khd->hqk", q, k) / math.sqrt(hd)).softmax(-1)
            o = torch.einsum("hqk,khd->qhd", att, v).reshape(T, D)
            x = ln(x + mods[p + "attention.output.dense"](o), p + "attention.output.LayerNorm")
            f = torch.nn.functional.gelu(mods[p + "intermediate.dense"](x))
            x = ln(x + mods[p + "output.dense"](f), p + "output.LayerNorm")
        pooled = torch.tanh(mods["bert.pooler.dense"](x[:1]))
        return mods["classifier"](pooled)

    lines = open(fixtures + "/data/sst2_train.tsv", encoding="utf-8", newline="").read().replace("\r\n", "\n").split("\n")
    col = lines[0].split("\t").index("sentence")
    for r in [r for r in lines[1:] if r][:n_samples]:
        forward(wordpiece(vocab, r.split("\t")[col], max_len))
    return {"data": "data/sst2_train.tsv", "samples": n_samples, "max_len": max_len, "linears": stats.result()}


if __name__ == "__main__":
    fixtures = sys.argv[1] if len(sys.argv) > 1 else "../shared/fixtures"
    out = {"generator": "tests/expected/layer_stats/make_reference.py (PyTorch %s forward hooks)" % torch.__version__,
           "llama-256d-stories": llama(fixtures), "bert-tiny-sst2": bert(fixtures)}
    json.dump(out, sys.stdout, separators=(",", ":"))
