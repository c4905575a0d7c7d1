#!/usr/bin/python3
# Writes tiny random RoBERTa and DistilBERT sequence classifiers as HF directories under tests/expected/encoders/
# (config.json, model.safetensors written by hand — RoBERTa's in F16, DistilBERT's in F32 —, tokenizer files) with PyTorch reference logits for padded batches.
#
# The reference is this file's own forward pass in torch (float32), written from HF transformers' semantics
# (RobertaForSequenceClassification, DistilBertForSequenceClassification); it shares no code with cq.
# Tokenization is done here too (a minimal byte-level BPE and WordPiece for the plain lowercase texts used),
# so the ids in reference.json check cq's tokenizers and pair layout independently.
#
# Usage (Debian's /usr/bin/python3 with torch + numpy, from the repository root):
#     /usr/bin/python3 tests/expected/make_encoder_fixtures.py
# Deterministic: reruns give the same bytes.
import json
import math
import os
import struct

import torch

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "encoders")
HIDDEN, LAYERS, HEADS, FFN = 32, 2, 2, 64


# ---- safetensors, by hand: 8-byte LE header length, JSON header padded with spaces to 8, raw data ------------

def write_safetensors(path, tensors, dtype="F32"):
    header, blobs, offset = {"__metadata__": {"format": "pt"}}, [], 0
    torch_dtype = {"F32": torch.float32, "F16": torch.float16}[dtype]
    for name in sorted(tensors):
        data = tensors[name].detach().to(torch_dtype).contiguous().numpy().tobytes()
        header[name] = {"dtype": dtype, "shape": list(tensors[name].shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=1, sort_keys=True)
        f.write("\n")


# ---- random weights ---------------------------------------------------------------------------------------

def rand(gen, *shape, std=0.2):
    return torch.randn(*shape, generator=gen) * std


def linear(gen, sd, name, n_out, n_in):
    sd[name + ".weight"] = rand(gen, n_out, n_in, std=1.0 / math.sqrt(n_in))
    sd[name + ".bias"] = rand(gen, n_out, std=0.1)


def norm(gen, sd, name, n):
    sd[name + ".weight"] = 1.0 + rand(gen, n, std=0.1)
    sd[name + ".bias"] = rand(gen, n, std=0.1)


# ---- the forward pass (HF semantics) ----------------------------------------------------------------------

def act(name, x):
    if name == "gelu":
        return torch.nn.functional.gelu(x)
    if name in ("gelu_new", "gelu_pytorch_tanh"):
        return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))
    if name == "relu":
        return torch.relu(x)
    raise ValueError(name)


def lin(sd, name, x):
    return x @ sd[name + ".weight"].T + sd[name + ".bias"]


def ln(sd, name, x, eps):
    return torch.nn.functional.layer_norm(x, (x.shape[-1],), sd[name + ".weight"], sd[name + ".bias"], eps)


def attention(sd, names, x, mask):
    B, S, D = x.shape
    hd = D // HEADS
    q, k, v = (lin(sd, n, x).view(B, S, HEADS, hd).transpose(1, 2) for n in names[:3])
    scores = q @ k.transpose(-1, -2) / math.sqrt(hd)
    scores = scores + (1.0 - mask[:, None, None, :].float()) * torch.finfo(torch.float32).min  # HF's extended mask
    ctx = (torch.softmax(scores, dim=-1) @ v).transpose(1, 2).reshape(B, S, D)
    return lin(sd, names[3], ctx)


def roberta_forward(sd, cfg, ids, mask):
    pad = cfg["pad_token_id"]
    not_pad = (ids != pad).long()
    positions = torch.cumsum(not_pad, dim=1) * not_pad + pad  # create_position_ids_from_input_ids
    e = "roberta.embeddings."
    x = sd[e + "word_embeddings.weight"][ids] + sd[e + "token_type_embeddings.weight"][torch.zeros_like(ids)]
    x = x + sd[e + "position_embeddings.weight"][positions]
    eps = cfg["layer_norm_eps"]
    x = ln(sd, e + "LayerNorm", x, eps)
    for l in range(LAYERS):
        p = f"roberta.encoder.layer.{l}."
        a = attention(sd, [p + "attention.self.query", p + "attention.self.key", p + "attention.self.value",
                           p + "attention.output.dense"], x, mask)
        x = ln(sd, p + "attention.output.LayerNorm", x + a, eps)
        h = lin(sd, p + "output.dense", act(cfg["hidden_act"], lin(sd, p + "intermediate.dense", x)))
        x = ln(sd, p + "output.LayerNorm", x + h, eps)
    return lin(sd, "classifier.out_proj", torch.tanh(lin(sd, "classifier.dense", x[:, 0])))


def distilbert_forward(sd, cfg, ids, mask):
    e = "distilbert.embeddings."
    positions = torch.arange(ids.shape[1])[None, :].expand_as(ids)
    x = ln(sd, e + "LayerNorm", sd[e + "word_embeddings.weight"][ids] + sd[e + "position_embeddings.weight"][positions], 1e-12)
    for l in range(LAYERS):
        p = f"distilbert.transformer.layer.{l}."
        a = attention(sd, [p + "attention.q_lin", p + "attention.k_lin", p + "attention.v_lin", p + "attention.out_lin"], x, mask)
        x = ln(sd, p + "sa_layer_norm", x + a, 1e-12)
        h = lin(sd, p + "ffn.lin2", act(cfg["activation"], lin(sd, p + "ffn.lin1", x)))
        x = ln(sd, p + "output_layer_norm", x + h, 1e-12)
    return lin(sd, "classifier", torch.relu(lin(sd, "pre_classifier", x[:, 0])))


# ---- tokenizers for plain lowercase ASCII words -------------------------------------------------------------

def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def bpe_encode(text, vocab, merges):
    byte_map = bytes_to_unicode()
    ranks = {m: i for i, m in enumerate(merges)}
    out = []
    for i, word in enumerate(text.split(" ")):  # GPT-2 pre-tokenizer on single-spaced letters: " ?\p{L}+"
        parts = [byte_map[b] for b in ((" " if i else "") + word).encode()]
        while len(parts) > 1:
            pairs = [(ranks.get((a, b), 1 << 30), j) for j, (a, b) in enumerate(zip(parts, parts[1:]))]
            rank, j = min(pairs)
            if rank == 1 << 30:
                break
            parts[j:j + 2] = [parts[j] + parts[j + 1]]
        out += [vocab[p] for p in parts]
    return out


def wordpiece_encode(text, vocab):
    out = []
    for word in text.replace("!", " ! ").replace(".", " . ").split():
        start = 0
        while start < len(word):
            end, piece = len(word), None
            while end > start:
                sub = ("##" if start else "") + word[start:end]
                if sub in vocab:
                    piece = sub
                    break
                end -= 1
            if piece is None:
                out.append(vocab["[UNK]"])
                break
            out.append(vocab[piece])
            start = end
    return out


def pad_batch(seqs, pad):
    S = max(len(s) for s in seqs)
    ids = torch.tensor([s + [pad] * (S - len(s)) for s in seqs])
    mask = torch.tensor([[1] * len(s) + [0] * (S - len(s)) for s in seqs])
    return ids, mask


# ---- the two models -----------------------------------------------------------------------------------------

def make_roberta(gen):
    d = os.path.join(OUT, "roberta-tiny-random")
    os.makedirs(d, exist_ok=True)
    merges = [("Ġ", "t"), ("h", "e"), ("Ġt", "he"), ("a", "t"), ("Ġ", "c"), ("Ġc", "at"), ("Ġ", "s"), ("Ġs", "at"),
              ("o", "n"), ("Ġ", "on"), ("Ġ", "d"), ("o", "g"), ("Ġd", "og"), ("a", "n")]
    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
    for ch in sorted(bytes_to_unicode().values()):
        vocab[ch] = len(vocab)
    for a, b in merges:
        vocab[a + b] = len(vocab)
    cfg = {"architectures": ["RobertaForSequenceClassification"], "model_type": "roberta", "hidden_size": HIDDEN,
           "num_hidden_layers": LAYERS, "num_attention_heads": HEADS, "intermediate_size": FFN,
           "max_position_embeddings": 24, "type_vocab_size": 1, "vocab_size": len(vocab), "layer_norm_eps": 1e-5,
           "hidden_act": "gelu_new", "pad_token_id": 1, "bos_token_id": 0, "eos_token_id": 2,
           "id2label": {"0": "negative", "1": "neutral", "2": "positive"}}
    sd = {}
    e = "roberta.embeddings."
    sd[e + "word_embeddings.weight"] = rand(gen, len(vocab), HIDDEN, std=0.5)
    sd[e + "position_embeddings.weight"] = rand(gen, 24, HIDDEN, std=0.5)
    sd[e + "token_type_embeddings.weight"] = rand(gen, 1, HIDDEN, std=0.5)
    norm(gen, sd, e + "LayerNorm", HIDDEN)
    for l in range(LAYERS):
        p = f"roberta.encoder.layer.{l}."
        for n in ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense"):
            linear(gen, sd, p + n, HIDDEN, HIDDEN)
        norm(gen, sd, p + "attention.output.LayerNorm", HIDDEN)
        linear(gen, sd, p + "intermediate.dense", FFN, HIDDEN)
        linear(gen, sd, p + "output.dense", HIDDEN, FFN)
        norm(gen, sd, p + "output.LayerNorm", HIDDEN)
    linear(gen, sd, "classifier.dense", HIDDEN, HIDDEN)
    linear(gen, sd, "classifier.out_proj", 3, HIDDEN)
    # Stored as F16 (half the bytes, and it covers cq's f16 weight path); the reference uses the same rounded values.
    sd = {k: v.half().float() for k, v in sd.items()}

    write_json(os.path.join(d, "config.json"), cfg)
    write_json(os.path.join(d, "vocab.json"), vocab)
    with open(os.path.join(d, "merges.txt"), "w") as f:
        f.write("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
    write_json(os.path.join(d, "tokenizer_config.json"), {"tokenizer_class": "RobertaTokenizer", "bos_token": "<s>",
                                                          "eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>",
                                                          "add_prefix_space": False})
    write_safetensors(os.path.join(d, "model.safetensors"), sd, "F16")

    batches = []
    for texts, pairs in ((["the cat sat on the dog", "a dog", "the cat sat", "on"], None),
                         (["the cat sat", "dog"], ["a dog ran", "the cat sat on the mat"])):
        seqs = []
        for i, t in enumerate(texts):
            s = [0] + bpe_encode(t, vocab, merges) + [2]
            if pairs:
                s += [2] + bpe_encode(pairs[i], vocab, merges) + [2]
            seqs.append(s)
        ids, mask = pad_batch(seqs, cfg["pad_token_id"])
        with torch.no_grad():
            logits = roberta_forward(sd, cfg, ids, mask)
        batches.append({"texts": texts, "pairs": pairs, "input_ids": ids.tolist(), "attention_mask": mask.tolist(),
                        "logits": logits.tolist()})
    write_json(os.path.join(d, "reference.json"), {"framework": f"torch {torch.__version__}, make_encoder_fixtures.py",
                                                   "batches": batches})


def make_distilbert(gen):
    d = os.path.join(OUT, "distilbert-tiny-random")
    os.makedirs(d, exist_ok=True)
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "!", ".", "the", "cat", "sat", "on", "mat", "a", "dog", "ran",
             "far", "away", "play", "##s", "##ing", "good", "bad", "movie", "very"]
    vocab = {w: i for i, w in enumerate(words)}
    cfg = {"architectures": ["DistilBertForSequenceClassification"], "model_type": "distilbert", "dim": HIDDEN,
           "n_layers": LAYERS, "n_heads": HEADS, "hidden_dim": FFN, "max_position_embeddings": 32,
           "vocab_size": len(vocab), "activation": "gelu", "pad_token_id": 0,
           "id2label": {"0": "NEGATIVE", "1": "POSITIVE"}}
    sd = {}
    e = "distilbert.embeddings."
    sd[e + "word_embeddings.weight"] = rand(gen, len(vocab), HIDDEN, std=0.5)
    sd[e + "position_embeddings.weight"] = rand(gen, 32, HIDDEN, std=0.5)
    norm(gen, sd, e + "LayerNorm", HIDDEN)
    for l in range(LAYERS):
        p = f"distilbert.transformer.layer.{l}."
        for n in ("attention.q_lin", "attention.k_lin", "attention.v_lin", "attention.out_lin"):
            linear(gen, sd, p + n, HIDDEN, HIDDEN)
        norm(gen, sd, p + "sa_layer_norm", HIDDEN)
        linear(gen, sd, p + "ffn.lin1", FFN, HIDDEN)
        linear(gen, sd, p + "ffn.lin2", HIDDEN, FFN)
        norm(gen, sd, p + "output_layer_norm", HIDDEN)
    linear(gen, sd, "pre_classifier", HIDDEN, HIDDEN)
    linear(gen, sd, "classifier", 2, HIDDEN)

    write_json(os.path.join(d, "config.json"), cfg)
    with open(os.path.join(d, "vocab.txt"), "w") as f:
        f.write("".join(w + "\n" for w in words))
    write_json(os.path.join(d, "tokenizer_config.json"), {"tokenizer_class": "DistilBertTokenizer", "do_lower_case": True})
    write_safetensors(os.path.join(d, "model.safetensors"), sd)

    batches = []
    for texts, pairs in ((["the cat plays on the mat!", "a very bad movie.", "dog", "the dogs ran far away"], None),
                         (["good movie", "the cat"], ["very good!", "sat on a mat"])):
        seqs = []
        for i, t in enumerate(texts):
            s = [2] + wordpiece_encode(t, vocab) + [3]
            if pairs:
                s += wordpiece_encode(pairs[i], vocab) + [3]
            seqs.append(s)
        ids, mask = pad_batch(seqs, cfg["pad_token_id"])
        with torch.no_grad():
            logits = distilbert_forward(sd, cfg, ids, mask)
        batches.append({"texts": texts, "pairs": pairs, "input_ids": ids.tolist(), "attention_mask": mask.tolist(),
                        "logits": logits.tolist()})
    write_json(os.path.join(d, "reference.json"), {"framework": f"torch {torch.__version__}, make_encoder_fixtures.py",
                                                   "batches": batches})


if __name__ == "__main__":
    torch.set_num_threads(1)
    make_roberta(torch.Generator().manual_seed(1))
    make_distilbert(torch.Generator().manual_seed(2))
