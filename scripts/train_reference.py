#!/usr/bin/python3
# PyTorch reference for cq's training engine (run with Debian's /usr/bin/python3, which has torch; transformers
# is not needed): the LLaMA fixture rebuilt in plain torch from its safetensors, then
#   grads  — loss and every parameter's gradient on a fixed batch → tests/expected/train/llama_grads.json
#            (per tensor: L2 norm and a seeded sample of entries; small enough to commit);
#   twin   — a 100-step AdamW run (same batches, schedule, clipping as cq finetune) → llama_twin.json;
#   check DUMP — the full norm-wise comparison against every gradient cq wrote (test_train_parity with
#            CQ_TRAIN_GRAD_DUMP=DUMP).
import argparse
import json
import math
import os
import struct
import sys
import zlib

import numpy as np
import torch
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIX = os.path.join(ROOT, "..", "shared", "fixtures")
MODEL = os.path.join(FIX, "models", "llama-256d-stories")
DATA = os.path.join(FIX, "data", "stories_calib.txt")
OUT = os.path.join(ROOT, "tests", "expected", "train")

GRAD_BATCH, GRAD_CTX = 4, 64            # the parity batch: windows 0..3 at ctx 64
TWIN = dict(steps=100, batch=8, ctx=128, lr=1e-3, warmup=10, min_lr_ratio=0.1, weight_decay=0.1,
            beta1=0.9, beta2=0.999, eps=1e-8, clip=1.0)
N_SAMPLES = 48  # entries sampled per tensor: four families' files stay < 300 KB together


def load_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        assert info["dtype"] == "F32", (name, info["dtype"])
        b, e = info["data_offsets"]
        out[name] = torch.from_numpy(np.frombuffer(data[b:e], dtype=np.float32).reshape(info["shape"]).copy())
    return out


class Llama:
    """HF LlamaForCausalLM's eager math (nn.Linear products, rotate_half RoPE, repeat_kv GQA, RMSNorm in f32), with
    the parameters as a dict of leaf tensors."""

    def __init__(self, cfg, tensors):
        self.c = cfg
        self.p = {k: v.clone().requires_grad_(True) for k, v in tensors.items()}
        self.names = list(self.p.keys())

    def rope(self, T):
        hd = self.c["head_dim"]
        # Angles in float64, rounded once to f32 (as cq does): positions · θ^(−2i/d).
        inv = self.c["rope_theta"] ** (-torch.arange(0, hd, 2, dtype=torch.float64) / hd)
        ang = torch.arange(T, dtype=torch.float64)[:, None] * inv[None, :]
        cos, sin = torch.cos(ang).float(), torch.sin(ang).float()
        return torch.cat([cos, cos], -1), torch.cat([sin, sin], -1)

    @staticmethod
    def repeat_kv(x, n):  # HF's repeat_kv: [B, Hkv, T, hd] → [B, Hkv·n, T, hd] by expand + reshape
        B, Hkv, T, hd = x.shape
        return x[:, :, None, :, :].expand(B, Hkv, n, T, hd).reshape(B, Hkv * n, T, hd)

    @staticmethod
    def rotate_half(x):
        h = x.shape[-1] // 2
        return torch.cat([-x[..., h:], x[..., :h]], -1)

    def rmsnorm(self, x, w):
        var = x.pow(2).mean(-1, keepdim=True)
        return w * (x * torch.rsqrt(var + self.c["rms_norm_eps"]))

    def loss(self, tokens, targets):
        logits = self.logits(tokens)
        return torch.nn.functional.cross_entropy(logits.view(-1, logits.shape[-1]), targets.reshape(-1))

    def logits(self, tokens):
        c, p = self.c, self.p
        B, T = tokens.shape
        H, Hkv, hd = c["num_attention_heads"], c["num_key_value_heads"], c["head_dim"]
        cos, sin = self.rope(T)
        x = p["model.embed_tokens.weight"][tokens]
        mask = torch.full((T, T), float("-inf")).triu(1)
        for l in range(c["num_hidden_layers"]):
            pre = f"model.layers.{l}."
            h = self.rmsnorm(x, p[pre + "input_layernorm.weight"])
            q = F.linear(h, p[pre + "self_attn.q_proj.weight"]).view(B, T, H, hd).transpose(1, 2)
            k = F.linear(h, p[pre + "self_attn.k_proj.weight"]).view(B, T, Hkv, hd).transpose(1, 2)
            v = F.linear(h, p[pre + "self_attn.v_proj.weight"]).view(B, T, Hkv, hd).transpose(1, 2)
            q = q * cos + self.rotate_half(q) * sin
            k = k * cos + self.rotate_half(k) * sin
            k = self.repeat_kv(k, H // Hkv)
            v = self.repeat_kv(v, H // Hkv)
            s = (q @ k.transpose(-1, -2)) / math.sqrt(hd) + mask
            a = torch.softmax(s, dim=-1) @ v
            a = a.transpose(1, 2).reshape(B, T, H * hd)
            x = x + F.linear(a, p[pre + "self_attn.o_proj.weight"])
            h = self.rmsnorm(x, p[pre + "post_attention_layernorm.weight"])
            g = F.silu(F.linear(h, p[pre + "mlp.gate_proj.weight"])) * F.linear(h, p[pre + "mlp.up_proj.weight"])
            x = x + F.linear(g, p[pre + "mlp.down_proj.weight"])
        x = self.rmsnorm(x, p["model.norm.weight"])
        return F.linear(x, p["lm_head.weight"])


class Gpt2:
    """HF GPT2LMHeadModel's eager math (Conv1D [in, out] weights, fused c_attn, gelu_new, tied head), parameters as a
    dict of leaf tensors named as the file names them."""

    def __init__(self, cfg, tensors):
        self.c = cfg
        self.pre = "transformer." if "transformer.wte.weight" in tensors else ""
        self.p = {k: v.clone().requires_grad_(True) for k, v in tensors.items() if not k.endswith(".attn.bias")}
        self.names = list(self.p.keys())

    def ln(self, x, name):
        return F.layer_norm(x, (x.shape[-1],), self.p[name + ".weight"], self.p[name + ".bias"], self.c["layer_norm_epsilon"])

    def conv1d(self, x, name):
        return torch.addmm(self.p[name + ".bias"], x.reshape(-1, x.shape[-1]), self.p[name + ".weight"]).view(*x.shape[:-1], -1)

    def logits(self, tokens):
        c, p, pre = self.c, self.p, self.pre
        B, T = tokens.shape
        D, H = c["n_embd"], c["n_head"]
        hd = D // H
        x = p[pre + "wte.weight"][tokens] + p[pre + "wpe.weight"][torch.arange(T)]
        mask = torch.full((T, T), float("-inf")).triu(1)
        for l in range(c["n_layer"]):
            b = f"{pre}h.{l}."
            qkv = self.conv1d(self.ln(x, b + "ln_1"), b + "attn.c_attn")
            q, k, v = (t.view(B, T, H, hd).transpose(1, 2) for t in qkv.split(D, dim=-1))
            s = (q @ k.transpose(-1, -2)) / math.sqrt(hd) + mask
            a = (torch.softmax(s, dim=-1) @ v).transpose(1, 2).reshape(B, T, D)
            x = x + self.conv1d(a, b + "attn.c_proj")
            hmid = self.conv1d(self.ln(x, b + "ln_2"), b + "mlp.c_fc")
            hmid = 0.5 * hmid * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (hmid + 0.044715 * torch.pow(hmid, 3.0))))
            x = x + self.conv1d(hmid, b + "mlp.c_proj")
        x = self.ln(x, pre + "ln_f")
        return F.linear(x, p[pre + "wte.weight"])

    def loss(self, tokens, targets):
        logits = self.logits(tokens)
        return F.cross_entropy(logits.view(-1, logits.shape[-1]), targets.reshape(-1))


def load_gpt2():
    d = os.path.join(FIX, "models", "gpt2-tiny-stories")
    with open(os.path.join(d, "config.json")) as f:
        cfg = json.load(f)
    m = Gpt2(cfg, load_safetensors(os.path.join(d, "model.safetensors")))
    with open(os.path.join(d, "reference.json")) as f:
        ref = json.load(f)
    with torch.no_grad():
        for pr in ref["prompts"]:
            got = m.logits(torch.tensor([pr["ids"]]))[0, -1]
            err = (got - torch.tensor(pr["last_logits"])).abs().max().item()
            assert err < 1e-3, f"torch GPT-2 rebuild differs from reference.json on {pr['prompt']!r}: {err}"
    return m


class Bert:
    """HF BertForSequenceClassification's eager math (post-LN, additive −∞-like padding mask, GELU erf, tanh pooler)
    without dropout, parameters as a dict of leaf tensors named as the file names them."""

    def __init__(self, cfg, tensors):
        self.c = cfg
        self.p = {k: v.clone().requires_grad_(True) for k, v in tensors.items() if "position_ids" not in k}
        self.names = list(self.p.keys())

    def ln(self, x, name):
        return F.layer_norm(x, (x.shape[-1],), self.p[name + ".weight"], self.p[name + ".bias"], self.c["layer_norm_eps"])

    def lin(self, x, name):
        return F.linear(x, self.p[name + ".weight"], self.p[name + ".bias"])

    def logits(self, ids, mask):
        c, p = self.c, self.p
        B, T = ids.shape
        D, H = c["hidden_size"], c["num_attention_heads"]
        hd = D // H
        e = "bert.embeddings."
        x = p[e + "word_embeddings.weight"][ids] + p[e + "position_embeddings.weight"][torch.arange(T)] + \
            p[e + "token_type_embeddings.weight"][torch.zeros_like(ids)]
        x = self.ln(x, e + "LayerNorm")
        add_mask = (1.0 - mask[:, None, None, :].float()) * torch.finfo(torch.float32).min
        for l in range(c["num_hidden_layers"]):
            b = f"bert.encoder.layer.{l}."
            q, k, v = (self.lin(x, b + "attention.self." + n).view(B, T, H, hd).transpose(1, 2) for n in ("query", "key", "value"))
            a = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(hd) + add_mask, dim=-1) @ v
            a = a.transpose(1, 2).reshape(B, T, D)
            x = self.ln(x + self.lin(a, b + "attention.output.dense"), b + "attention.output.LayerNorm")
            h = F.gelu(self.lin(x, b + "intermediate.dense"))
            x = self.ln(x + self.lin(h, b + "output.dense"), b + "output.LayerNorm")
        pooled = torch.tanh(self.lin(x[:, 0], "bert.pooler.dense"))
        return self.lin(pooled, "classifier")


def cmd_bert_grads(_):
    """BERT's fixed batch: the fixture's eight reference sentences, right-padded to the longest (the mask matters)."""
    d = os.path.join(FIX, "models", "bert-tiny-sst2")
    with open(os.path.join(d, "config.json")) as f:
        cfg = json.load(f)
    m = Bert(cfg, load_safetensors(os.path.join(d, "model.safetensors")))
    with open(os.path.join(d, "reference.json")) as f:
        ref = json.load(f)["reference_first8"]
    T = max(len(r["input_ids"]) for r in ref)
    ids = torch.zeros(len(ref), T, dtype=torch.long)
    mask = torch.zeros(len(ref), T, dtype=torch.long)
    for i, r in enumerate(ref):
        ids[i, :len(r["input_ids"])] = torch.tensor(r["input_ids"])
        mask[i, :len(r["input_ids"])] = 1
    labels = torch.tensor([r["label"] for r in ref])
    logits = m.logits(ids, mask)
    err = (logits - torch.tensor([r["logits"] for r in ref])).abs().max().item()
    assert err < 1e-4, f"torch BERT rebuild differs from reference.json: {err}"
    loss = F.cross_entropy(logits, labels)
    loss.backward()
    out = grads_json(m, loss, "scripts/train_reference.py bert-grads: torch " + torch.__version__ + " fp32, HF BERT math, no dropout",
                     {"batch": len(ref), "seq": T, "ids": ids.tolist(), "mask": mask.tolist(), "labels": labels.tolist()})
    with open(os.path.join(OUT, "bert_grads.json"), "w") as f:
        json.dump(out, f, separators=(",", ":"))
    print(f"loss {loss.item():.7f}, logits max diff vs reference.json {err:.2e}; {len(out['params'])} tensors → {OUT}/bert_grads.json")


class Vit:
    """HF ViTForImageClassification's eager math (patch conv, CLS token, learned positions, pre-LN blocks, GELU erf, final
    LayerNorm, classifier on CLS), parameters as a dict of leaf tensors named as the file names them."""

    def __init__(self, cfg, tensors):
        self.c = cfg
        self.p = {k: v.clone().requires_grad_(True) for k, v in tensors.items()}
        self.names = list(self.p.keys())

    def ln(self, x, name):
        return F.layer_norm(x, (x.shape[-1],), self.p[name + ".weight"], self.p[name + ".bias"], self.c["layer_norm_eps"])

    def lin(self, x, name):
        return F.linear(x, self.p[name + ".weight"], self.p[name + ".bias"])

    def logits(self, pixels):
        c, p = self.c, self.p
        B = pixels.shape[0]
        D, H = c["hidden_size"], c["num_attention_heads"]
        hd = D // H
        e = "vit.embeddings."
        x = F.conv2d(pixels, p[e + "patch_embeddings.projection.weight"], p[e + "patch_embeddings.projection.bias"],
                     stride=c["patch_size"]).flatten(2).transpose(1, 2)
        x = torch.cat([p[e + "cls_token"].expand(B, -1, -1), x], dim=1) + p[e + "position_embeddings"]
        T = x.shape[1]
        for l in range(c["num_hidden_layers"]):
            b = f"vit.encoder.layer.{l}."
            h = self.ln(x, b + "layernorm_before")
            q, k, v = (self.lin(h, b + "attention.attention." + n).view(B, T, H, hd).transpose(1, 2) for n in ("query", "key", "value"))
            a = (torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(hd), dim=-1) @ v).transpose(1, 2).reshape(B, T, D)
            x = x + self.lin(a, b + "attention.output.dense")
            h = F.gelu(self.lin(self.ln(x, b + "layernorm_after"), b + "intermediate.dense"))
            x = x + self.lin(h, b + "output.dense")
        return self.lin(self.ln(x, "vit.layernorm")[:, 0], "classifier")


def cmd_vit_grads(_):
    """ViT's fixed batch: the fixture's eight reference images (MNIST t10k 8000..8007) and their labels."""
    import gzip
    d = os.path.join(FIX, "models", "vit-tiny-mnist")
    with open(os.path.join(d, "config.json")) as f:
        cfg = json.load(f)
    with open(os.path.join(d, "reference.json")) as f:
        ref = json.load(f)
    with gzip.open(os.path.join(FIX, "data", "t10k-images-idx3-ubyte.gz")) as f:
        raw = np.frombuffer(f.read(), dtype=np.uint8, offset=16).reshape(-1, 1, 28, 28)
    idx = ref["reference_images"]
    pixels = torch.tensor((raw[idx].astype(np.float32) / 255.0 - 0.1307) / 0.3081)
    m = Vit(cfg, load_safetensors(os.path.join(d, "model.safetensors")))
    logits = m.logits(pixels)
    err = (logits - torch.tensor(ref["reference_logits"])).abs().max().item()
    assert err < 1e-4, f"torch ViT rebuild differs from reference.json: {err}"
    labels = torch.tensor(ref["reference_labels"])
    loss = F.cross_entropy(logits, labels)
    loss.backward()
    out = grads_json(m, loss, "scripts/train_reference.py vit-grads: torch " + torch.__version__ + " fp32, HF ViT math",
                     {"images": idx, "labels": labels.tolist()})
    with open(os.path.join(OUT, "vit_grads.json"), "w") as f:
        json.dump(out, f, separators=(",", ":"))
    print(f"loss {loss.item():.7f}, logits max diff vs reference.json {err:.2e}; {len(out['params'])} tensors → {OUT}/vit_grads.json")


def grads_json(m, loss, note, extra):
    params = {}
    for name in m.names:
        g = m.p[name].grad.detach().reshape(-1).double().numpy()
        rng = np.random.default_rng(zlib.crc32(name.encode()))
        idx = np.sort(rng.choice(g.size, size=min(N_SAMPLES, g.size), replace=False))
        params[name] = {"shape": list(m.p[name].shape), "norm": float(np.linalg.norm(g)),
                        "idx": [int(i) for i in idx], "val": [float(f"{g[i]:.9g}") for i in idx]}
    return dict(note=note, **extra, loss=float(loss.item()), params=params)


def cmd_gpt2_grads(_):
    """GPT-2's fixed batch: seeded token ids (no Python BPE here), stored in the file for cq to read."""
    m = load_gpt2()
    rng = np.random.default_rng(1234)
    ids = rng.integers(0, m.c["vocab_size"], size=(GRAD_BATCH, GRAD_CTX + 1))
    inp, tgt = torch.tensor(ids[:, :-1]), torch.tensor(ids[:, 1:])
    loss = m.loss(inp, tgt)
    loss.backward()
    out = grads_json(m, loss, "scripts/train_reference.py gpt2-grads: torch " + torch.__version__ + " fp32, HF GPT-2 math",
                     {"batch": GRAD_BATCH, "ctx": GRAD_CTX, "tokens": ids.tolist()})
    with open(os.path.join(OUT, "gpt2_grads.json"), "w") as f:
        json.dump(out, f, separators=(",", ":"))
    print(f"loss {loss.item():.7f}; {len(out['params'])} tensors → {OUT}/gpt2_grads.json")


def load_model():
    with open(os.path.join(MODEL, "config.json")) as f:
        cfg = json.load(f)
    m = Llama(cfg, load_safetensors(os.path.join(MODEL, "model.safetensors")))
    # The rebuilt model must reproduce the fixture's own reference logits (HF's forward) before it serves as one.
    with open(os.path.join(MODEL, "reference.json")) as f:
        ref = json.load(f)
    with torch.no_grad():
        for pr in ref["prompts"]:
            got = m.logits(torch.tensor([pr["ids"]]))[0, -1]
            err = (got - torch.tensor(pr["last_logits"])).abs().max().item()
            assert err < 1e-4, f"torch rebuild differs from reference.json on {pr['prompt']!r}: {err}"
    return m


def text_tokens():
    """As cq's load_text_windows: one trailing newline dropped, BOS first, the whole text at once."""
    import sentencepiece as spm  # only here: check-hf needs torch and numpy alone
    sp = spm.SentencePieceProcessor(model_file=os.path.join(MODEL, "tokenizer.model"))
    with open(DATA, encoding="utf-8") as f:
        text = f.read()
    if text.endswith("\n"):
        text = text[:-1]
    return np.array([sp.bos_id()] + sp.encode(text), dtype=np.int32), sp.bos_id()


def windows(tokens, bos, ctx, ids):
    inp, tgt = [], []
    for w in ids:
        win = tokens[w * (ctx + 1):(w + 1) * (ctx + 1)].copy()
        inp.append(np.concatenate([[bos], win[1:ctx]]))
        tgt.append(win[1:])
    return torch.tensor(np.array(inp), dtype=torch.long), torch.tensor(np.array(tgt), dtype=torch.long)


def stream_info(tokens):
    return {"n_tokens": int(tokens.size), "crc32": zlib.crc32(tokens.astype("<i4").tobytes()),
            "first": [int(t) for t in tokens[:16]]}


def cmd_grads(_):
    m = load_model()
    tokens, bos = text_tokens()
    inp, tgt = windows(tokens, bos, GRAD_CTX, range(GRAD_BATCH))
    loss = m.loss(inp, tgt)
    loss.backward()
    params = {}
    for name in m.names:
        g = m.p[name].grad.detach().reshape(-1).double().numpy()
        rng = np.random.default_rng(zlib.crc32(name.encode()))
        idx = np.sort(rng.choice(g.size, size=min(N_SAMPLES, g.size), replace=False))
        params[name] = {"shape": list(m.p[name].shape), "norm": float(np.linalg.norm(g)),
                        "idx": [int(i) for i in idx], "val": [float(f"{g[i]:.9g}") for i in idx]}
    out = {"note": "scripts/train_reference.py grads: torch " + torch.__version__ + " fp32, HF LLaMA math from model.safetensors",
           "batch": GRAD_BATCH, "ctx": GRAD_CTX, "windows": list(range(GRAD_BATCH)), "stream": stream_info(tokens),
           "loss": float(loss.item()), "params": params}
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "llama_grads.json"), "w") as f:
        json.dump(out, f, separators=(",", ":"))
    print(f"loss {loss.item():.7f}; {len(params)} tensors → {OUT}/llama_grads.json")


def lr_at(step, t):
    if t["warmup"] > 0 and step < t["warmup"]:
        return t["lr"] * step / t["warmup"]
    prog = min(1.0, (step - t["warmup"]) / (t["steps"] - t["warmup"]))
    return t["lr"] * (t["min_lr_ratio"] + (1 - t["min_lr_ratio"]) * 0.5 * (1 + math.cos(math.pi * prog)))


def no_decay(name):  # cq's default rules over GGUF names: *norm*, *.bias, *embd* → no decay
    return "norm" in name or name.endswith(".bias") or "embed_tokens" in name


def cmd_twin(args):
    t = dict(TWIN)
    if args.steps:
        t["steps"] = args.steps
    torch.set_num_threads(args.threads)
    m = load_model()
    tokens, bos = text_tokens()
    n_windows = tokens.size // (t["ctx"] + 1)
    params = [m.p[n] for n in m.names]
    groups = [{"params": [m.p[n] for n in m.names if not no_decay(n)], "weight_decay": t["weight_decay"]},
              {"params": [m.p[n] for n in m.names if no_decay(n)], "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=t["lr"], betas=(t["beta1"], t["beta2"]), eps=t["eps"], foreach=False)
    losses = []
    for step in range(t["steps"]):
        ids = [(step * t["batch"] + i) % n_windows for i in range(t["batch"])]
        inp, tgt = windows(tokens, bos, t["ctx"], ids)
        opt.zero_grad()
        loss = m.loss(inp, tgt)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, t["clip"])
        for g in opt.param_groups:
            g["lr"] = lr_at(step, t)
        opt.step()
        losses.append(float(loss.item()))
        print(f"step {step + 1} loss {loss.item():.6f}", file=sys.stderr)
    out = {"note": "scripts/train_reference.py twin: torch " + torch.__version__ + " fp32 AdamW (foreach=False)",
           "hyper": t, "n_windows": int(n_windows), "stream": stream_info(tokens), "loss": losses}
    path = args.out or os.path.join(OUT, "llama_twin.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=0)
    print(f"{t['steps']} steps, final loss {losses[-1]:.6f} → {path}")


def cmd_speed(args):
    """Training throughput (forward + backward + AdamW, tokens/s) at batch × ctx, after one warm-up step."""
    import time
    torch.set_num_threads(args.threads)
    m = load_model()
    try:
        tokens, bos = text_tokens()
    except ImportError:  # no python sentencepiece: the step time does not depend on which ids run
        print("speed: python sentencepiece is missing; timing on seeded random token ids", file=sys.stderr)
        vocab = m.p[m.names[0]].shape[0]
        tokens, bos = np.random.default_rng(0).integers(3, vocab, size=200_000, dtype=np.int32), 1
    n_windows = tokens.size // (args.ctx + 1)
    opt = torch.optim.AdamW([m.p[n] for n in m.names], lr=1e-4, foreach=False)
    times = []
    for step in range(args.steps + 1):
        inp, tgt = windows(tokens, bos, args.ctx, [(step * args.batch + i) % n_windows for i in range(args.batch)])
        t0 = time.perf_counter()
        opt.zero_grad()
        loss = m.loss(inp, tgt)
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    sec = sorted(times[1:])[len(times[1:]) // 2]
    print(json.dumps({"torch": torch.__version__, "threads": args.threads, "batch": args.batch, "ctx": args.ctx,
                      "median_step_s": sec, "tokens_per_s": args.batch * args.ctx / sec}))


def cmd_check_hf(args):
    """The HF directory cq finetune wrote, loaded in torch: its logits on the tokens cq ran vs cq's own logits
    (test_train_parity with CQ_TRAIN_HF_DUMP=DIR writes the directory, cq_tokens.bin and cq_logits.bin)."""
    with open(os.path.join(args.dir, "config.json")) as f:
        cfg = json.load(f)
    m = Llama(cfg, load_safetensors(os.path.join(args.dir, "model.safetensors")))
    tokens = np.fromfile(os.path.join(args.dir, "cq_tokens.bin"), dtype="<i4")
    cq = np.fromfile(os.path.join(args.dir, "cq_logits.bin"), dtype="<f4").reshape(tokens.size, -1)
    with torch.no_grad():
        got = m.logits(torch.tensor(tokens[None, :].astype(np.int64)))[0].numpy()
    diff = np.abs(got - cq).max()
    print(f"{tokens.size} positions × {cq.shape[1]} logits: max |torch − cq| {diff:.3e} (max |logit| {np.abs(cq).max():.2f}), "
          f"same argmax at {(got.argmax(-1) == cq.argmax(-1)).mean() * 100:.1f} % of positions")
    return 0 if diff < 1e-4 else 1


def cmd_check(args):
    """Full norm-wise comparison: ‖g_cq − g_torch‖ / ‖g_torch‖ per tensor, from cq's dump of every gradient."""
    m = load_model()
    tokens, bos = text_tokens()
    inp, tgt = windows(tokens, bos, GRAD_CTX, range(GRAD_BATCH))
    loss = m.loss(inp, tgt)
    loss.backward()
    with open(args.dump, "rb") as f:
        blob = f.read()
    pos, worst, seen = 0, 0.0, 0
    cq_loss = struct.unpack_from("<d", blob, pos)[0]
    pos += 8
    while pos < len(blob):
        n = struct.unpack_from("<I", blob, pos)[0]
        name = blob[pos + 4:pos + 4 + n].decode()
        pos += 4 + n
        numel = struct.unpack_from("<Q", blob, pos)[0]
        pos += 8
        g = np.frombuffer(blob, dtype="<f4", count=numel, offset=pos).astype(np.float64)
        pos += 4 * numel
        ref = m.p[name].grad.detach().reshape(-1).double().numpy()
        rel = np.linalg.norm(g - ref) / np.linalg.norm(ref)
        worst = max(worst, rel)
        seen += 1
        print(f"{name:48s} rel {rel:.3e}")
    print(f"loss cq {cq_loss:.8f} torch {loss.item():.8f} rel {abs(cq_loss - loss.item()) / loss.item():.3e}")
    print(f"{seen} tensors, worst norm-wise relative gradient error {worst:.3e}")
    return 0 if worst <= 1e-4 and seen == len(m.names) else 1


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("grads")
    t = sub.add_parser("twin")
    t.add_argument("--steps", type=int, default=0)
    t.add_argument("--threads", type=int, default=2)
    t.add_argument("--out", default="")
    sub.add_parser("gpt2-grads")
    sub.add_parser("bert-grads")
    sub.add_parser("vit-grads")
    sp = sub.add_parser("speed")
    sp.add_argument("--steps", type=int, default=5)
    sp.add_argument("--threads", type=int, default=2)
    sp.add_argument("--batch", type=int, default=8)
    sp.add_argument("--ctx", type=int, default=256)
    h = sub.add_parser("check-hf")
    h.add_argument("dir")
    c = sub.add_parser("check")
    c.add_argument("dump")
    a = ap.parse_args()
    torch.manual_seed(0)
    sys.exit({"grads": cmd_grads, "gpt2-grads": cmd_gpt2_grads, "bert-grads": cmd_bert_grads, "vit-grads": cmd_vit_grads, "twin": cmd_twin, "speed": cmd_speed, "check": cmd_check, "check-hf": cmd_check_hf}[a.cmd](a) or 0)


if __name__ == "__main__":
    main()
