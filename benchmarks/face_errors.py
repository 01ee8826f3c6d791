"""Reading accuracy per plate type face on a split of the bootstrap data (a script to run, not a test).

The bootstrap annotation version is drawn by :func:`alpr.data.synth.synthesize` with seed 0, and sample ``i`` depends
only on ``(seed, i)``; so replaying :func:`alpr.data.synth.render_sample` for an image tells which type face each of its
plates was drawn with. This script replays the images of one split of a training version (``val`` by default:
choices are made on val, never on test), reads the stored JPEGs with the model exactly as ``python -m
alpr.serving.predict`` does, matches readings to the annotated plates (PLATE_SPEC "Metrics": IoU >= 0.5, one-to-one) and
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

from alpr import spec

ROOT = Path(__file__).resolve().parents[1]


def replay_faces(index: int, seed: int) -> tuple[list[str], dict]:
    """Render sample ``index`` of the run seeded ``seed`` again and return ``(faces, labelme)``: the type face
    (font file stem, or ``hershey:<face>``) of each drawn plate in drawing order, and the sample's labelme dict."""
    from alpr.data import synth

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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workspace", type=Path, default=ROOT / ".alpr-bench", help="benchmark workspace")
    p.add_argument("--model", default=None, help="model directory (default <workspace>/bench/model)")
    p.add_argument("--split", default="val", choices=spec.SPLITS, help="split to read (default val)")
    p.add_argument("--seed", type=int, default=0, help="seed the bootstrap was drawn with (default 0)")
    p.add_argument("--json", type=Path, default=None, help="write the per-face figures as JSON here")
    args = p.parse_args(argv)

    from tqdm import tqdm

    from alpr.data.coco import ground_truth_plates
    from alpr.data.labelme import load_labelme
    from alpr.defaults import BOOTSTRAP_VERSION
    from alpr.model.metrics import PlateMetrics, box_iou, match_plates
    from alpr.serving.predict import predict

    data_dir = args.workspace / "bench" / "dataset"
    labelme_dir = args.workspace / "bootstrap" / BOOTSTRAP_VERSION
    model = args.model or str(args.workspace / "bench" / "model")
    coco = json.loads((data_dir / "annotations" / f"{args.split}.json").read_text())
    images = [data_dir / im["file_name"] for im in coco["images"]]

    total, per_face = PlateMetrics(), defaultdict(PlateMetrics)
    misread: dict[str, list[str]] = defaultdict(list)
    readings = predict(model, images)
    for image in tqdm(images, desc=f"replaying {args.split}"):
        m = re.fullmatch(r"synth_(\d+)", image.stem)
        if m is None:
            raise SystemExit(f"{image}: not a bootstrap sample (synth_<index>.jpg)")
        faces, labelme = replay_faces(int(m.group(1)), args.seed)
        stored = load_labelme(labelme_dir / f"{image.stem}.json")
        truth = ground_truth_plates(stored)
        drawn = [s.bounds() for s in sorted(stored.plates(), key=lambda s: s.group_id)]
        if len(faces) != len(truth) or len(drawn) != len(truth):
            raise SystemExit(f"{image.stem}: the replay drew {len(faces)} plates, the annotation has {len(truth)}")
        face_of = []
        for t in truth:
            ious = [box_iou(t["box"], b) for b in drawn]
            best = max(range(len(ious)), key=ious.__getitem__)
            if ious[best] < 0.99:
                raise SystemExit(f"{image.stem}: the replayed plates are not where the annotation has them")
            face_of.append(faces[best])
        reading = readings[image.name]
        total.add(truth, reading)
        pred = reading["plates"]
        pairs = dict(
            match_plates([(t["box"], t["text"]) for t in truth], [(q["box"], q["text"], q["score"]) for q in pred])
        )
        for i, t in enumerate(truth):
            # Each plate scored on its own with the prediction the whole image's matching gave it (or none).
            matched = [pred[pairs[i]]] if i in pairs else []
            per_face[face_of[i]].add([t], {"plates": matched})
            got = matched[0]["text"] if matched else ""
            if got != t["text"]:
                misread[face_of[i]].append(f"{t['text']} → {got or '(nothing)'}")

    def counts(r: dict) -> dict[str, int]:
        return {
            "plates": r["n_truth"],
            "exact": r["n_exact"],
            "chars": r["n_truth_chars"],
            "distance": r["char_distance"],
        }

    table = sorted(
        ((face, m.result()) for face, m in per_face.items()), key=lambda x: (x[1]["eir"], x[1]["char_accuracy"])
    )
    all_plates = total.result()
    print(
        f"{args.split}: {all_plates['n_truth']} plates, EIR {all_plates['eir']:.3f}, "
        f"char accuracy {all_plates['char_accuracy']:.3f}, {len(per_face)} faces"
    )
    print(f"{'face':<32} {'plates':>6} {'EIR':>6} {'chars':>6}  misreadings")
    for face, r in table:
        print(
            f"{face:<32} {r['n_truth']:>6} {r['eir']:>6.3f} {r['char_accuracy']:>6.3f}  {'; '.join(misread[face][:3])}"
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                {
                    "split": args.split,
                    "model": model,
                    "total": counts(all_plates),
                    "faces": [
                        {
                            "face": f,
                            "eir": r["eir"],
                            "char_accuracy": r["char_accuracy"],
                            **counts(r),
                            "misreadings": misread[f],
                        }
                        for f, r in table
                    ],
                },
                indent=2,
                ensure_ascii=False,
            )
            + "\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
