#!/usr/bin/env python3
# Builds tiny random-initialised DETR object detectors (DetrForObjectDetection with transformers' own ResNet backbone,
# no timm) with save_pretrained (safetensors), runs transformers on fixed images and writes reference.json beside each:
# logits, pred_boxes, DetrImageProcessor.post_process_object_detection's detections at a threshold, and a padded batch
# with a pixel mask. tests/test_models_detr.cpp checks cq against these without PyTorch.
#
# Usage (the venv of scripts/make_family_references.py: Debian's torch 1.13 + transformers 4.46.3):
#     /work/venv-fam/bin/python scripts/make_detr_references.py [--out tests/data/families] [--only detr-tiny-random,...]
# Offline and deterministic (fixed seeds). Weights are redrawn after HF's init as make_family_references.py does
# (randomize), convolutions with std 1/sqrt(fan-in), and the frozen BatchNorms' weight / bias buffers (DETR keeps them as
# buffers, which randomize does not draw) 1 + N(0, 0.1²) / N(0, 0.1²), so the outputs are far from degenerate.
import argparse
import os
import sys

import torch
import transformers
from transformers import DetrConfig, DetrForObjectDetection, DetrImageProcessor, ResNetConfig

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_family_references import fresh_dir, randomize, rounded, write_json  # noqa: E402


def build(d, seed, backbone, **cfg):
    fresh_dir(d)
    torch.manual_seed(seed)
    config = DetrConfig(use_timm_backbone=False, backbone=None, use_pretrained_backbone=False, backbone_config=ResNetConfig(**backbone), **cfg)
    config.id2label = {i: f"class_{i}" for i in range(cfg["num_labels"])}
    config.label2id = {v: k for k, v in config.id2label.items()}
    model = randomize(DetrForObjectDetection(config), seed)
    g = torch.Generator().manual_seed(seed + 7)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if p.ndim == 4:
                p.copy_(torch.randn(p.shape, generator=g) / (p[0].numel() ** 0.5))
            elif "position_embeddings" in n or "row_embeddings" in n or "column_embeddings" in n:
                # nn.Embedding's own N(0, 1): the object queries differ only through these, and at 0.2 every query
                # would give nearly the same box
                p.copy_(torch.randn(p.shape, generator=g))
            # Sharper attention (q / k 4× randomize's 0.2), smaller value paths (0.75×), stronger projected features (2×) and
            # heads (3×): with one std for everything the encoder's tokens come out nearly alike (the attention averages
            # them), every object query gives nearly the same box and class, and a test could not tell queries apart.
            if n.endswith(("q_proj.weight", "k_proj.weight")):
                p.mul_(4.0)
            elif n.endswith(("v_proj.weight", "out_proj.weight")):
                p.mul_(0.75)
            elif n.startswith("model.input_projection."):
                p.mul_(2.0)
            elif n.startswith(("class_labels_classifier.", "bbox_predictor.layers.2.")):
                p.mul_(3.0)
        for n, b in model.named_buffers():
            if n.endswith("normalization.weight"):
                b.copy_(1 + 0.1 * torch.randn(b.shape, generator=g))
            elif n.endswith("normalization.bias"):
                b.copy_(0.1 * torch.randn(b.shape, generator=g))
    model.eval()
    model.save_pretrained(d, safe_serialization=True)
    return model


def pick_threshold(scores, margin=2e-3):
    """A threshold near the median score that no score lies within `margin` of, so that rounding cannot move a detection
    across it."""
    s = sorted(float(v) for v in scores.flatten())
    mid = len(s) // 2
    for off in range(len(s)):
        for i in (mid - off, mid + off):
            if 0 < i < len(s) and s[i] - s[i - 1] > 2 * margin:
                return round((s[i] + s[i - 1]) / 2, 4)
    raise RuntimeError("no threshold with a margin")


def detr(out, name, seed, H, W, mean, std, n_images, padded, backbone, **cfg):
    d = os.path.join(out, name)
    model = build(d, seed, backbone, **cfg)
    C = backbone["num_channels"]
    # DetrImageProcessor resizes (shortest edge 800) and pads; cq takes images at their size, so only rescale and normalise.
    processor = DetrImageProcessor(do_resize=False, do_rescale=True, rescale_factor=1 / 255, do_normalize=True, image_mean=mean, image_std=std,
                                   do_pad=False)
    processor.save_pretrained(d)
    g = torch.Generator().manual_seed(seed + 1)
    pixels = torch.randint(0, 256, (n_images, C, H, W), generator=g, dtype=torch.int64)
    x = (pixels.to(torch.float32) * torch.tensor(1 / 255, dtype=torch.float32) - torch.tensor(mean).view(1, C, 1, 1)) / torch.tensor(std).view(1, C, 1, 1)
    with torch.no_grad():
        outputs = model(pixel_values=x)
    probs = outputs.logits.softmax(-1)[..., :-1].max(-1).values
    threshold = pick_threshold(probs)
    target_sizes = [(H, W)] * n_images
    detections = processor.post_process_object_detection(outputs, threshold=threshold, target_sizes=target_sizes)
    ref = {
        "generator": f"scripts/make_detr_references.py (transformers {transformers.__version__}, torch {torch.__version__})",
        "class": "DetrForObjectDetection", "height": H, "width": W, "pixels_hex": [bytes(p).hex() for p in pixels.reshape(n_images, -1).to(torch.uint8).tolist()],
        "logits": rounded(outputs.logits), "pred_boxes": rounded(outputs.pred_boxes), "threshold": threshold,
        "detections": [{"scores": [round(float(v), 7) for v in r["scores"]], "labels": [int(v) for v in r["labels"]],
                        "boxes": [[round(float(v), 5) for v in b] for b in r["boxes"]]} for r in detections],
    }
    if padded:
        # A padded batch as DetrImageProcessor builds one: image i keeps its top-left real_h × real_w pixels, the rest is
        # 0 after normalisation and 0 in pixel_mask.
        mask = torch.zeros(n_images, H, W, dtype=torch.int64)
        xp = x.clone()
        for i, (rh, rw) in enumerate(padded):
            mask[i, :rh, :rw] = 1
            xp[i, :, rh:, :] = 0
            xp[i, :, :, rw:] = 0
        with torch.no_grad():
            masked = model(pixel_values=xp, pixel_mask=mask)
        ref["padded"] = {"real_sizes": [list(p) for p in padded], "logits": rounded(masked.logits), "pred_boxes": rounded(masked.pred_boxes)}
    write_json(os.path.join(d, "reference.json"), ref)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data", "families"))
    ap.add_argument("--only", help="comma-separated model names to rewrite; default: all")
    args = ap.parse_args()
    only = set(args.only.split(",")) if args.only else None
    imagenet_mean, imagenet_std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    models = {
        # Bottleneck backbone with two stages (stage 2's map, 6×8, feeds the transformer), sine positions, ReLU,
        # a non-square 48×64 image; the padded batch keeps 40×52 and 33×64 of its two images.
        "detr-tiny-random": dict(seed=110, H=48, W=64, mean=imagenet_mean, std=imagenet_std, n_images=2, padded=[(40, 52), (33, 64)],
                                 backbone=dict(num_channels=3, embedding_size=8, hidden_sizes=[16, 32], depths=[1, 1], layer_type="bottleneck",
                                               out_features=["stage2"]),
                                 d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4, decoder_attention_heads=4,
                                 encoder_ffn_dim=64, decoder_ffn_dim=64, num_queries=10, num_labels=5),
        # Differs in every size: MNIST-shaped (one channel, 10 labels, MNIST's normalisation) on a 56×84 canvas, basic
        # blocks over three stages (stage 3's 4×6 map), learned row / column positions, GELU, 1 encoder / 3 decoder layers
        # with 3 / 2 heads and FFN 40 / 56, 7 queries, and auxiliary_loss, which in transformers 4.46 passes every decoder
        # layer's output through the decoder's LayerNorm before the next layer.
        "detr-mnist-random-b": dict(seed=111, H=56, W=84, mean=[0.1307], std=[0.3081], n_images=2, padded=[(56, 84), (44, 60)],
                                    backbone=dict(num_channels=1, embedding_size=8, hidden_sizes=[8, 16, 24], depths=[1, 2, 1], layer_type="basic",
                                                  out_features=["stage3"]),
                                    d_model=24, encoder_layers=1, decoder_layers=3, encoder_attention_heads=3, decoder_attention_heads=2,
                                    encoder_ffn_dim=40, decoder_ffn_dim=56, num_queries=7, num_labels=10, activation_function="gelu",
                                    position_embedding_type="learned", auxiliary_loss=True),
        # A square 40×40 image; bottlenecks that downsample in their first 1×1 conv, GELU in the backbone; two out_features
        # (stage 1 and 2: the last feeds the transformer) and a third stage whose output nothing reads; SiLU, 3 encoder
        # layers / 1 decoder layer, 16 wide with 2 / 4 heads, FFN 32 / 24, 5 queries, 3 labels.
        "detr-stages-random-c": dict(seed=112, H=40, W=40, mean=imagenet_mean, std=imagenet_std, n_images=2, padded=None,
                                     backbone=dict(num_channels=3, embedding_size=16, hidden_sizes=[16, 32, 48], depths=[1, 1, 1],
                                                   layer_type="bottleneck", downsample_in_bottleneck=True, hidden_act="gelu",
                                                   out_features=["stage1", "stage2"]),
                                     d_model=16, encoder_layers=3, decoder_layers=1, encoder_attention_heads=2, decoder_attention_heads=4,
                                     encoder_ffn_dim=32, decoder_ffn_dim=24, num_queries=5, num_labels=3, activation_function="silu"),
    }
    for name, spec in models.items():
        if only is None or name in only:
            detr(args.out, name, **spec)


if __name__ == "__main__":
    main()
