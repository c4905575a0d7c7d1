#!/usr/bin/env python3
# (image, caption) pairs for `cq eval` / `cq quantize --calib --eval` on BLIP captioners (docs/model_families.md, BLIP):
# MNIST digits as grey PNGs centred on a black SIZE×SIZE square, each with a caption naming its digit from a few templates,
# and OUT_DIR/captions.tsv (header: image, caption; paths relative to OUT_DIR). Deterministic; numpy + Pillow.
#
#   /work/venv-fam/bin/python scripts/make_blip_captions.py ../shared/fixtures/data/t10k-images-idx3-ubyte.gz \
#       --size 32 --count 256 /tmp/blip32
import argparse
import gzip
import os

import numpy as np
from PIL import Image

WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
TEMPLATES = ["a photo of the digit {d}", "a picture of the number {w}", "handwritten digit {d}", "a small drawn {w}",
             "an image of a black and white {w}", "a large handwritten {w}"]


def read_idx(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    magic = int.from_bytes(data[0:4], "big")
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(magic & 0xFF)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * len(dims)).reshape(dims)


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("images", help="MNIST idx3 images (raw or .gz); the labels file is found by the usual name")
    p.add_argument("out_dir")
    p.add_argument("--labels", help="MNIST idx1 labels (default: images with images-idx3 → labels-idx1)")
    p.add_argument("--size", type=int, default=28, help="the model's image_size (>= 28; digits are centred, not resized)")
    p.add_argument("--first", type=int, default=0)
    p.add_argument("--count", type=int, default=256)
    a = p.parse_args()
    if a.size < 28:
        raise SystemExit("--size must be at least 28 (MNIST digits are not resized)")
    images = read_idx(a.images)
    labels = read_idx(a.labels or a.images.replace("images-idx3", "labels-idx1"))
    if a.first + a.count > len(images):
        raise SystemExit(f"{a.images} holds {len(images)} images, fewer than {a.first} + {a.count}")
    os.makedirs(os.path.join(a.out_dir, "images"), exist_ok=True)
    rows = ["image\tcaption"]
    top = (a.size - 28) // 2
    for n in range(a.first, a.first + a.count):
        canvas = np.zeros((a.size, a.size), dtype=np.uint8)
        canvas[top:top + 28, top:top + 28] = images[n]
        name = f"images/{n:05d}.png"
        Image.fromarray(canvas, mode="L").save(os.path.join(a.out_dir, name))
        d = int(labels[n])
        rows.append(name + "\t" + TEMPLATES[n % len(TEMPLATES)].format(d=d, w=WORDS[d]))
    with open(os.path.join(a.out_dir, "captions.tsv"), "w") as f:
        f.write("\n".join(rows) + "\n")
    print(f"{a.count} pairs ({a.size}×{a.size} grey PNGs) in {a.out_dir}/captions.tsv")


if __name__ == "__main__":
    main()
