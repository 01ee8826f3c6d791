"""How large the characters are at the detector's input, per input size (a script to run, not a test).

Reads a COCO split written by Record and prints, for each candidate square input size (the image is resized
keeping its aspect ratio so that its long side fits, as the test pipeline's ``Resize(keep_ratio=True)`` does),
percentiles of character box heights and widths in input pixels, and the share of characters smaller than the
detector's finest stride (RTMDet's P3, 8 px) in either side. Used for the input-size choice in
docs/detection_design.md.

Usage::

    .venv/bin/python benchmarks/char_sizes.py .alpr-bench/bench/dataset/annotations/train.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

SIZES = (256, 320, 384, 416, 480, 640)
STRIDE = 8


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("coco", type=Path, help="COCO JSON of a split (annotations/train.json)")
    p.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    args = p.parse_args(argv)
    coco = json.loads(args.coco.read_text())
    images = {img["id"]: img for img in coco["images"]}
    char_ids = {c["id"] for c in coco["categories"] if len(c["name"]) == 1}
    hw = []
    for ann in coco["annotations"]:
        if ann["category_id"] in char_ids:
            img = images[ann["image_id"]]
            hw.append((ann["bbox"][3], ann["bbox"][2], max(img["width"], img["height"])))
    a = np.asarray(hw, float)
    print(f"{len(a)} characters in {len(images)} images ({args.coco})")
    print(f"{'input':>6} | {'height p5/p50/p95 (px)':>24} | {'width p5/p50/p95 (px)':>23} | < {STRIDE} px")
    for size in args.sizes:
        scale = size / a[:, 2]
        h, w = a[:, 0] * scale, a[:, 1] * scale
        small = float(np.mean((h < STRIDE) | (w < STRIDE)))
        ph, pw = np.percentile(h, [5, 50, 95]), np.percentile(w, [5, 50, 95])
        print(
            f"{size:>6} | {ph[0]:7.1f} {ph[1]:7.1f} {ph[2]:7.1f}  | {pw[0]:7.1f} {pw[1]:7.1f} {pw[2]:7.1f} "
            f"| {small:6.1%}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
