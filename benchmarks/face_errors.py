"""Reading accuracy per plate type face on a split of the bootstrap data (a script to run, not a test).

The bootstrap annotation version is drawn by :func:`alpr.synth.synthesize` with seed 0, and sample ``i`` depends
only on ``(seed, i)``; so replaying :func:`alpr.synth.render_sample` for an image tells which type face each of its
plates was drawn with. This script replays the images of one split of a training version (``val`` by default:
choices are made on val, never on test), reads the stored JPEGs with the model exactly as ``python -m
alpr.predict`` does, matches readings to the annotated plates (PLATE_SPEC "Metrics": IoU >= 0.5, one-to-one) and
prints, per face, the plates, the exact readings (EIR) and the character accuracy, worst first.

Usage (after ``make bench-train``)::

    .venv/bin/python benchmarks/face_errors.py --workspace .alpr-bench --split val --json face_errors.json

Exit status 1 when the replay does not reproduce the stored annotations (other fonts installed than when the
bootstrap was drawn: the per-face figures would be wrong).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def replay_faces(index: int, seed: int) -> tuple[list[str], dict]:
    """Render sample ``index`` of the run seeded ``seed`` again and return ``(faces, labelme)``: the type face
    (font file stem, or ``hershey:<face>``) of each drawn plate in drawing order, and the sample's labelme dict."""
    from alpr import synth

    faces: list[str] = []
    original = synth._random_stroke

    def recording(rng, path):  # the synthesizer picks a stroke weight exactly once per drawn plate
        faces.append(path if path.startswith("hershey:") else Path(path).stem)
        return original(rng, path)

    synth._random_stroke = recording
    try:
        _, labelme = synth.render_sample(index, seed)
    finally:
        synth._random_stroke = original
    return faces, labelme


def _plate_boxes(labelme: dict) -> list[list[float]]:
    """Bounding boxes of the plate shapes of a labelme dict, in ``group_id`` (drawing) order."""
    plates = sorted((s for s in labelme["shapes"] if s["label"].startswith("plate_")), key=lambda s: s["group_id"])
    boxes = []
    for s in plates:
        xs, ys = [p[0] for p in s["points"]], [p[1] for p in s["points"]]
        boxes.append([min(xs), min(ys), max(xs), max(ys)])
    return boxes


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workspace", type=Path, default=ROOT / ".alpr-bench", help="benchmark workspace")
    p.add_argument("--model", default=None, help="model directory (default <workspace>/bench/model)")
    p.add_argument("--split", default="val", choices=("train", "val", "test"), help="split to read (default val)")
    p.add_argument("--seed", type=int, default=0, help="seed the bootstrap was drawn with (default 0)")
    p.add_argument("--json", type=Path, default=None, help="write the per-face figures as JSON here")
    args = p.parse_args(argv)

    from rapidfuzz.distance import Levenshtein
    from tqdm import tqdm

    from alpr.coco import ground_truth_plates
    from alpr.defaults import BOOTSTRAP_VERSION
    from alpr.labelme import load_labelme
    from alpr.metrics import box_iou, match_plates
    from alpr.predict import predict

    data_dir = args.workspace / "bench" / "dataset"
    labelme_dir = args.workspace / "bootstrap" / BOOTSTRAP_VERSION
    model = args.model or str(args.workspace / "bench" / "model")
    coco = json.loads((data_dir / "annotations" / f"{args.split}.json").read_text())
    images = [data_dir / im["file_name"] for im in coco["images"]]

    per_face: dict[str, dict[str, int]] = defaultdict(lambda: {"plates": 0, "exact": 0, "chars": 0, "distance": 0})
    misread: dict[str, list[str]] = defaultdict(list)
    readings = predict(model, images)
    for image in tqdm(images, desc=f"replaying {args.split}"):
        m = re.fullmatch(r"synth_(\d+)", image.stem)
        if m is None:
            raise SystemExit(f"{image}: not a bootstrap sample (synth_<index>.jpg)")
        faces, labelme = replay_faces(int(m.group(1)), args.seed)
        truth = ground_truth_plates(load_labelme(labelme_dir / f"{image.stem}.json"))
        drawn = _plate_boxes(labelme)
        if len(drawn) != len(truth) or len(faces) != len(truth):
            raise SystemExit(f"{image.stem}: the replay drew {len(drawn)} plates, the annotation has {len(truth)}")
        face_of = []
        for t in truth:
            ious = [box_iou(t["box"], b) for b in drawn]
            best = max(range(len(ious)), key=ious.__getitem__)
            if ious[best] < 0.99:
                raise SystemExit(f"{image.stem}: the replayed plates are not where the annotation has them")
            face_of.append(faces[best])
        pred = readings[image.name]["plates"]
        pairs = dict(match_plates([(t["box"], t["text"]) for t in truth],
                                  [(q["box"], q["text"], q["score"]) for q in pred]))
        for i, t in enumerate(truth):
            got = pred[pairs[i]]["text"] if i in pairs else ""
            row = per_face[face_of[i]]
            row["plates"] += 1
            row["exact"] += got == t["text"]
            row["chars"] += len(t["text"])
            row["distance"] += Levenshtein.distance(t["text"], got)
            if got != t["text"]:
                misread[face_of[i]].append(f"{t['text']} → {got or '(nothing)'}")

    table = sorted(((face, r["exact"] / r["plates"], 1 - r["distance"] / r["chars"], r) for face, r in per_face.items()),
                   key=lambda x: (x[1], x[2]))
    total = {k: sum(r[k] for r in per_face.values()) for k in ("plates", "exact", "chars", "distance")}
    print(f"{args.split}: {total['plates']} plates, EIR {total['exact'] / total['plates']:.3f}, "
          f"char accuracy {1 - total['distance'] / total['chars']:.3f}, {len(per_face)} faces")
    print(f"{'face':<32} {'plates':>6} {'EIR':>6} {'chars':>6}  misreadings")
    for face, eir, ca, r in table:
        print(f"{face:<32} {r['plates']:>6} {eir:>6.3f} {ca:>6.3f}  {'; '.join(misread[face][:3])}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "split": args.split, "model": model, "total": total,
            "faces": [{"face": f, "eir": e, "char_accuracy": c, **r, "misreadings": misread[f]} for f, e, c, r in table],
        }, indent=2, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
