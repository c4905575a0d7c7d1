#!/usr/bin/env python3
"""Logits of an HF sequence classifier (transformers, any pruned_heads in its config) on the first N texts of a
labelled TSV with a header (a "label" column and a text column, in either order), as JSON {"logits": [[...], ...]}; the reference for cq's pruned-encoder test.

usage: hf_encoder_logits.py MODEL_DIR DATA.tsv N [MAX_LEN]
"""
import json
import sys

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer


def main():
    model_dir, data, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    max_len = int(sys.argv[4]) if len(sys.argv) > 4 else 128
    with open(data, encoding="utf-8") as f:
        rows = [line.rstrip("\n").split("\t") for line in f]
    text_col = 1 if rows[0][0] == "label" else 0
    texts = [r[text_col] for r in rows[1:n + 1]]
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    heads = [layer.attention.self.num_attention_heads for layer in model.base_model.encoder.layer]
    with torch.no_grad():
        enc = tok(texts, padding=True, truncation=True, max_length=max_len, return_tensors="pt")
        logits = model(**enc).logits
    print(json.dumps({"logits": logits.tolist(), "heads": heads}))


if __name__ == "__main__":
    main()
